/**
 * Worker side of the copy pool: installs batches of files with synchronous calls, each through
 * a temp file and a rename, and reports per file whether it succeeded. It handles only the
 * plain case; anything that fails is retried by the main thread's careful path.
 *
 * @module
 */

/// <reference lib="deno.worker" />

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

const SMALL_FILE = 1 << 20;

function install(job: CopyJob): CopyResult {
  let created = false;
  try {
    if (job.size <= SMALL_FILE) {
      const data = Deno.readFileSync(job.src);
      if (data.length !== job.size) return { ok: false, changed: true };
      created = true;
      // The mode option is applied exactly (not through the umask), and O_EXCL never follows a link.
      Deno.writeFileSync(job.tmp, data, { createNew: true, mode: job.mode });
    } else {
      created = true;
      Deno.copyFileSync(job.src, job.tmp);
      if (Deno.build.os !== "windows") Deno.chmodSync(job.tmp, job.mode);
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
