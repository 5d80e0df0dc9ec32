/**
 * Worker side of hashing for `--checksum`: hashes batches of files, one result per file.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { getHasher, hashFileSync } from "./hash.ts";
import { type HashName } from "../model/hash_name.ts";

/** One file to hash. */
export interface HashJob {
  path: string;
  size: number;
  hash: HashName;
}

/** A digest, or why there is none. */
export interface HashResult {
  digest?: string;
  error?: string;
}

self.onmessage = async (event: MessageEvent<{ id: number; jobs: HashJob[] }>) => {
  const results: HashResult[] = [];
  for (const job of event.data.jobs) {
    try {
      results.push({ digest: hashFileSync(await getHasher(job.hash), job.path, job.size) });
    } catch (error) {
      results.push({ error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
    }
  }
  self.postMessage({ id: event.data.id, results });
};
