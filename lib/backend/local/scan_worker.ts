/**
 * Worker side of {@linkcode SourceWalk}: says it has booted, then walks the directories it is
 * handed and streams their listings back in batches, waiting while the planner is behind.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { ListingBatch } from "../../model/listing.ts";
import { BATCH_ENTRIES, MAX_AHEAD, type WalkMessage, walkStep } from "./scan.ts";
import type { CompiledFilter, PathFilter } from "../../model/filter.ts";

let root = "";
/** Entries a batch collects before it is sent. */
let batchEntries = BATCH_ENTRIES;
let shared: Int32Array = new Int32Array(2);

let filter: PathFilter | undefined;

type Start = { root: string; shared: Int32Array; batchEntries: number; filter?: CompiledFilter };

self.onmessage = async (event: MessageEvent<Start | { stack: string[] }>) => {
  if ("root" in event.data) {
    ({ root, shared, batchEntries } = event.data);
    // Compiled rules: the glob engine itself is never loaded here.
    const spec = event.data.filter;
    if (spec) filter = (await import("../../model/filter.ts")).PathFilter.of(spec);
    // Shared memory, not a message: the caller is busy in synchronous code and checks it there.
    Atomics.store(shared, 0, 1);
    return;
  }
  const stack = event.data.stack;
  let sent = 0;
  // One batch, filled again after each post: a new one per post grew its columns from 256
  // entries up each time, and that churn of buffers kept the worker's memory high.
  const batch = new ListingBatch();
  try {
    while (stack.length > 0) {
      batch.reset();
      while (stack.length > 0 && batch.names.length < batchEntries) walkStep(batch, root, stack, filter);
      for (let consumed; sent - (consumed = Atomics.load(shared, 1)) >= MAX_AHEAD;) {
        Atomics.wait(shared, 1, consumed, 1000);
      }
      const { packed, transfer } = batch.pack();
      self.postMessage({ batch: packed } satisfies WalkMessage, transfer);
      sent++;
    }
    self.postMessage({ done: true } satisfies WalkMessage);
  } catch (error) {
    self.postMessage({ error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
  }
};
