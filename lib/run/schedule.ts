/**
 * The loops around {@linkcode runOnce}: once, every interval, or live on file-system events.
 * Runs never overlap; an AbortSignal stops any of them between operations.
 *
 * @module
 */

import type { SyncOptions } from "../engine/options.ts";
import { ExitCode } from "../model/errors.ts";
import { logger } from "../log.ts";
import { guardedRun, type RunControl, syncOnce } from "../engine/sync.ts";
import { formatDuration } from "../model/units.ts";
import { SourceFolder } from "./source.ts";
import { watchLoop } from "./watch.ts";
import type { ProgressSink } from "../model/progress.ts";
import { longTimeout, type Timers } from "./timer.ts";
import type { RunReporter } from "./report.ts";

/** How to repeat runs. */
export interface ScheduleOptions {
  /** Sync again this many milliseconds after each run started; undefined: once. */
  intervalMs?: number;
  /**
   * Watch the source and sync changes as they settle (full rescans every `intervalMs`).
   * @default false
   */
  watch?: boolean;
  /** Stops the loop. */
  signal?: AbortSignal;
  /** Reports each run (`--notify`, `--metrics`), and each run of a loop skipped for a missing source. */
  reporter?: RunReporter;
  /**
   * The live progress line, fed by every run (once, interval or watch).
   */
  progress?: ProgressSink;
  /** Opens the source and the replica for each run (see {@linkcode RunControl.sides}). */
  sides: RunControl["sides"];
}

/** The full-rescan period in watch mode when no interval is given: 5 minutes. */
export const DEFAULT_WATCH_RESCAN_MS = 5 * 60_000;

/**
 * Resolves after `ms`, or early when `signal` aborts. Waits of any length, 30 days say, are
 * armed in steps that timers take (see {@linkcode longTimeout}).
 *
 * @example Waiting a minute unless stopped
 * ```ts
 * await sleep(60_000, controller.signal);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal, timers?: Timers): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const cancel = longTimeout(done, ms, timers);
    function done() {
      cancel();
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Runs syncs as `schedule` says and returns the process exit code. The replica must exist
 * (unless `options.dryRun`): a run that finds it missing fails, and a loop goes on.
 *
 * Once: the run's code. Interval and watch: runs until `signal` aborts, then logs "stopped"
 * and returns 0.
 *
 * @example Syncing every minute until Ctrl+C
 * ```ts
 * const controller = new AbortController();
 * Deno.addSignalListener("SIGINT", () => controller.abort());
 * await runSchedule(options, { sides: localSides(options), intervalMs: 60_000, signal: controller.signal });
 * ```
 */
export async function runSchedule(options: SyncOptions, schedule: ScheduleOptions): Promise<ExitCode> {
  const { intervalMs, watch = false, signal, progress, sides } = schedule;
  // The caller made the replica (or found it) before the first run; a later run that finds it
  // gone reports it, and the loop goes on until it is back.
  const control = {
    replicaMustExist: !options.dryRun,
    ...(signal ? { signal } : {}),
    ...(progress ? { progress } : {}),
    sides,
  };
  const reporter = schedule.reporter;
  if (watch) {
    await watchLoop(options, {
      rescanMs: intervalMs ?? DEFAULT_WATCH_RESCAN_MS,
      ...control,
      ...(reporter ? { reporter } : {}),
    });
  } else if (intervalMs === undefined) {
    const once = (c: RunControl) => syncOnce(options, c);
    return await (reporter ? reporter.run(once, control) : once(control));
  } else {
    logger.info("{text}", { text: `Syncing every ${formatDuration(intervalMs)}; stop with Ctrl+C` });
    // A source that is gone is said once, and its runs are skipped until it is back.
    const source = new SourceFolder(options.source);
    while (!signal?.aborted) {
      const started = performance.now();
      const guarded = (c: RunControl) => guardedRun(options, c);
      if (source.check() !== "missing") await (reporter ? reporter.run(guarded, control) : guarded(control));
      else await reporter?.missingSource();
      if (signal?.aborted) break;
      const elapsed = performance.now() - started;
      if (elapsed >= intervalMs) {
        logger.warn("{text}", {
          text: `Run took ${formatDuration(elapsed)}, longer than the interval of ${
            formatDuration(intervalMs)
          }; starting the next run now`,
        });
        continue;
      }
      await sleep(intervalMs - elapsed, signal);
    }
  }
  logger.info("{text}", { text: "Stopped", action: "stopped", summary: true });
  return ExitCode.Ok;
}
