/**
 * Worker side of the copy pool: installs batches of files with synchronous calls, each through
 * a temp file and a rename, and reports per file whether it succeeded. It handles only the
 * plain case; anything that fails is retried by the main thread's careful path.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { copyFileSync } from "./copy_file.ts";

/** One file to install: copy `src` to `tmp`, set mode and mtime, rename to `dst`. */
export interface CopyJob {
  src: string;
  dst: string;
  tmp: string;
  size: number;
  mode: number;
  mtimeMs: number;
}

/** What the worker reports for one job. */
export interface CopyResult {
  ok: boolean;
  /** The source changed while it was copied. */
  changed?: boolean;
  /** Why it failed, as `Name: message`. */
  error?: string;
}

function install(job: CopyJob): CopyResult {
  let created = false;
  try {
    // A failed copy removes its own partial file; `created` covers the steps after it.
    const copied = copyFileSync(job.src, job.tmp, { size: job.size, mode: job.mode });
    created = true;
    if (copied !== job.size) {
      Deno.removeSync(job.tmp);
      return { ok: false, changed: true };
    }
    const after = Deno.lstatSync(job.src);
    if (!after.isFile || after.size !== job.size || (after.mtime?.getTime() ?? 0) !== job.mtimeMs) {
      Deno.removeSync(job.tmp);
      return { ok: false, changed: true };
    }
    const mtime = new Date(job.mtimeMs);
    Deno.utimeSync(job.tmp, after.atime ?? mtime, mtime);
    Deno.renameSync(job.tmp, job.dst);
    return { ok: true };
  } catch (error) {
    if (created) {
      try {
        Deno.removeSync(job.tmp);
      } catch {
        // it was never created, or is gone already
      }
    }
    return { ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
  }
}

self.onmessage = (event: MessageEvent<{ id: number; jobs: CopyJob[] }>) => {
  self.postMessage({ id: event.data.id, results: event.data.jobs.map(install) });
};
