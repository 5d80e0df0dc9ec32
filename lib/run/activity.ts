/**
 * What the runs of a process are doing, for the line a stop logs: between runs, or in a run
 * that copies nothing at the moment, a stop has nothing to abort; in a run with copies under
 * way it aborts them.
 *
 * @module
 */

import type { ProgressCounters, ProgressSink } from "../model/progress.ts";

/** A progress sink that also tells whether files are being copied right now. */
export interface RunActivity extends ProgressSink {
  /** True while a run is copying files: some planned copies are not done yet. */
  filesInFlight(): boolean;
}

/**
 * Follows the runs fed to it, and passes everything on to `inner` (the live progress line)
 * when there is one. Its counters are the same a progress line shows, so following them
 * costs what a progress line's bookkeeping does, without drawing anything.
 *
 * @example Saying what a stop does
 * ```ts
 * const activity = trackActivity(progress);
 * Deno.addSignalListener("SIGTERM", () => console.log(activity.filesInFlight() ? "Stopping: aborting the files in flight" : "Stopping"));
 * await runSchedule(options, { progress: activity, signal });
 * ```
 */
export function trackActivity(inner?: ProgressSink): RunActivity {
  const idle = (applying: boolean): ProgressCounters => ({
    scanned: 0,
    filesTotal: 0,
    bytesTotal: 0,
    final: false,
    filesDone: 0,
    bytesDone: 0,
    applying,
  });
  let own = idle(false);
  let running = false;
  const inFlight = inner?.inFlight ?? new BigInt64Array(new SharedArrayBuffer(8));
  const counters = () => inner?.counters ?? own;
  return {
    get counters() {
      return counters();
    },
    inFlight,
    begin(applying) {
      running = true;
      if (inner) inner.begin(applying);
      else {
        own = idle(applying);
        Atomics.store(inFlight, 0, 0n);
      }
    },
    end() {
      running = false;
      inner?.end();
    },
    filesInFlight() {
      const c = counters();
      return running && c.applying && (c.filesDone < c.filesTotal || Atomics.load(inFlight, 0) > 0n);
    },
  };
}
