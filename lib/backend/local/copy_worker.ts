/**
 * Worker side of the copy pool: installs batches of files with synchronous calls, each through
 * a temp file and a rename, and reports per file whether it succeeded. It handles only the
 * plain case; anything that fails is retried by the main thread's careful path.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { copyFileSync, SMALL_FILE } from "./copy_file.ts";

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
  /** Bytes this job added to the shared progress slot, for the main thread to take back. */
  streamed?: number;
}

/** Slot 0: bytes of the files in flight, shared with the main thread's progress line. */
let progress: BigInt64Array | undefined;

function install(job: CopyJob): CopyResult {
  const result = installFile(job);
  if (streamed > 0) {
    result.streamed = streamed;
    streamed = 0;
  }
  return result;
}

/** Bytes the current job added to {@linkcode progress}. */
let streamed = 0;

/** Adds a chunk's bytes to the shared slot: only large files, so a small one costs nothing. */
function onProgress(done: number): void {
  Atomics.add(progress!, 0, BigInt(done - streamed));
  streamed = done;
}

function installFile(job: CopyJob): CopyResult {
  let created = false;
  try {
    // A failed copy removes its own partial file; `created` covers the steps after it.
    const copied = copyFileSync(job.src, job.tmp, {
      size: job.size,
      mode: job.mode,
      ...(progress && job.size > SMALL_FILE ? { onProgress } : {}),
    });
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

self.onmessage = (event: MessageEvent<{ id: number; jobs: CopyJob[] } | { init: { progress?: BigInt64Array } }>) => {
  if ("init" in event.data) {
    progress = event.data.init.progress;
    return;
  }
  self.postMessage({ id: event.data.id, results: event.data.jobs.map(install) });
};
