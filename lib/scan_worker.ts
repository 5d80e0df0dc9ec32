/**
 * Worker side of {@linkcode scanTreeInWorker}: walks one tree and posts the scan back.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { scanTree } from "./scan.ts";

self.onmessage = (event: MessageEvent<{ root: string }>) => {
  try {
    self.postMessage({ scan: scanTree(event.data.root) });
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    self.postMessage({ error: { name: e.name, message: e.message } });
  }
};
