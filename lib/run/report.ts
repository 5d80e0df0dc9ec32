/**
 * Reports to monitoring: after each run, once, every interval or on watch events alike, one
 * {@linkcode RunReport} goes to the sinks the command line set up (`--notify`, `--metrics`).
 * So does a failure before any run (a missing source, the lock held), and a run of a loop
 * skipped because the source is gone. A sink never throws and never changes an exit code.
 *
 * @module
 */

import { describeError, ExitCode, exitCodeFor } from "../model/errors.ts";
import { emptyStats, type Stats } from "../engine/apply.ts";
import type { RunEnd } from "../engine/sync.ts";

/** How a run ended, as monitoring sees it. */
export type RunStatus = "ok" | "failed" | "refused";

/** What one run did, for monitoring. */
export interface RunReport {
  /** `ok` for exit 0; `refused` for 3, 4 and 5 (refused for safety: nothing, or no removal, was done); else `failed`. */
  status: RunStatus;
  /** The exit code a one-shot run with this outcome exits with. */
  exitCode: number;
  /** True for a `--dry-run`: its counts were planned, not done. */
  dryRun: boolean;
  /** The source folder, absolute. */
  source: string;
  /** The replica: an absolute folder, or a remote replica's URL as given. */
  replica: string;
  /** When the run started (for a failure before any run: when foldersync started). */
  startedAt: Date;
  /** How long the run took, connecting to a remote replica included, in milliseconds. */
  durationMs: number;
  /** The counts of the summary line; all 0 when the run ended before it could change anything. */
  stats: Stats;
  /** Removals that `--max-delete` refused (none of them was made); 0 otherwise. */
  removalsRefused: number;
  /** Changes to existing entries that `--max-change` refused (none was made); 0 otherwise. */
  changesRefused: number;
  /** The line that ended the run, when an error ended it before its summary. */
  error?: string;
}

/** Receives each report; it never throws (a failure is its own warning line). */
export type ReportSink = (report: RunReport) => Promise<void>;

/**
 * The status of an exit code: 0 is `ok`; 3 (an empty source), 4 (the lock held) and 5
 * (`--max-delete`) are `refused`; anything else (1, 2, 130) is `failed`.
 *
 * @example Statuses
 * ```ts
 * statusOf(0); // "ok"
 * statusOf(5); // "refused"
 * statusOf(1); // "failed"
 * ```
 */
export function statusOf(exitCode: number): RunStatus {
  if (exitCode === ExitCode.Ok) return "ok";
  if (exitCode === ExitCode.Refused || exitCode === ExitCode.Locked || exitCode === ExitCode.MaxDelete) {
    return "refused";
  }
  return "failed";
}

/** Which sync the reports are of. */
export interface ReportSubject {
  /** The source folder, absolute. */
  source: string;
  /** The replica: an absolute folder, or a remote replica's URL as given. */
  replica: string;
  /** The runs are dry runs. */
  dryRun: boolean;
}

/**
 * Makes one {@linkcode RunReport} per run and hands it to every sink, each run's reports
 * sent before the next run starts.
 *
 * @example Reporting each run of a loop
 * ```ts
 * const reporter = new RunReporter({ source: "/data", replica: "/backup", dryRun: false });
 * reporter.add(notifySink("https://hc-ping.com/UUID/{exit_code}"));
 * const code = await reporter.run((control) => guardedRun(options, control), control);
 * ```
 */
export class RunReporter {
  readonly #subject: ReportSubject;
  readonly #sinks: ReportSink[] = [];
  /** When foldersync started, as near as it is known: a failure before any run is dated so. */
  readonly #createdAt = new Date();
  readonly #createdMs = performance.now();
  #reported = 0;

  /** Reports on the sync of `subject`; sinks are added with {@linkcode RunReporter.add}. */
  constructor(subject: ReportSubject) {
    this.#subject = subject;
  }

  /** Sends every later report to `sink` too. */
  add(sink: ReportSink): void {
    this.#sinks.push(sink);
  }

  /** How many reports were sent. */
  get reported(): number {
    return this.#reported;
  }

  /**
   * Runs one sync (`run`, given `control` with an `onEnd` that notes how it ended, as
   * `syncOnce` and `guardedRun` call it) and reports it, also when it throws: the report then
   * has the exit code the error maps to, and the error is thrown on.
   */
  async run<C extends { onEnd?: (end: RunEnd) => void }>(
    run: (control: C) => Promise<ExitCode>,
    control: C,
  ): Promise<ExitCode> {
    const startedAt = new Date();
    const started = performance.now();
    let end: RunEnd | undefined;
    const observed: C = {
      ...control,
      onEnd: (e) => {
        end = e;
        control.onEnd?.(e);
      },
    };
    let code: ExitCode;
    try {
      code = await run(observed);
    } catch (error) {
      await this.#send(this.#report(exitCodeFor(error), startedAt, performance.now() - started, end ?? { error }));
      throw error;
    }
    await this.#send(this.#report(code, startedAt, performance.now() - started, end));
    return code;
  }

  /**
   * Reports a failure before any run (a missing source, the lock held), dated from when
   * foldersync started; nothing when a run was reported already (its report says it).
   */
  async startupFailed(error: unknown): Promise<void> {
    if (this.#reported > 0) return;
    await this.#send(this.#report(exitCodeFor(error), this.#createdAt, performance.now() - this.#createdMs, { error }));
  }

  /**
   * Reports a run of a loop that did not start because the source folder is missing: the
   * exit code of a one-shot run then, 2.
   */
  async missingSource(): Promise<void> {
    const error = new Error(`Source folder is missing: '${this.#subject.source}'`);
    await this.#send(this.#report(ExitCode.Usage, new Date(), 0, { error }));
  }

  #report(exitCode: ExitCode, startedAt: Date, durationMs: number, end: RunEnd | undefined): RunReport {
    const result = end && "result" in end ? end.result : undefined;
    return {
      status: statusOf(exitCode),
      exitCode,
      ...this.#subject,
      startedAt,
      durationMs,
      stats: result ? { ...result.stats } : emptyStats(),
      removalsRefused: result?.refused?.cap === "max-delete" ? result.refused.planned : 0,
      changesRefused: result?.refused?.cap === "max-change" ? result.refused.planned : 0,
      ...(end && "error" in end ? { error: describeError(end.error) } : {}),
    };
  }

  async #send(report: RunReport): Promise<void> {
    this.#reported++;
    await Promise.all(this.#sinks.map((sink) => sink(report)));
  }
}
