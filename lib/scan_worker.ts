/**
 * Worker side of {@linkcode scanTreeInWorker}: walks one tree and posts the scan back.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { packScan, type ScanReply, scanTree } from "./scan.ts";

self.onmessage = (event: MessageEvent<{ root: string; started: Int32Array }>) => {
  // Shared memory, not a message: the caller is busy in synchronous code and checks it there.
  Atomics.store(event.data.started, 0, 1);
  try {
    const { packed, transfer } = packScan(scanTree(event.data.root));
    self.postMessage({ scan: packed } satisfies ScanReply, transfer);
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    self.postMessage({ error: { name: e.name, message: e.message } } satisfies ScanReply);
  }
};
