/**
 * One sync: scan both trees, compare content if asked, plan, apply, and log one summary.
 *
 * @module
 */

import { type Applier, type ApplyEvent, createApplier, type Stats } from "./apply.ts";
import type { SyncOptions } from "./options.ts";
import type { Backend, Sides } from "../backend/backend.ts";
import { describeError, ExitCode, RefusedError } from "../model/errors.ts";
import { type MarchOptions, marchTrees } from "./march.ts";
import { DEFAULT_HASH } from "../content/hash.ts";
import type { CompareSide, ContentComparer } from "../content/compare.ts";
import { logger, showPath } from "../log.ts";
import type { Plan } from "../model/actions.ts";
import type { Planner } from "./plan.ts";
import {
  createDryRunReporter,
  createVerifyReporter,
  logEntryError,
  logEvent,
  logVanished,
  type VerifyCounts,
} from "./report.ts";
import { type GateVerdict, HeldPlan, isOverwrite, judgeRemovals, type MaxDelete } from "./gate.ts";
import { formatBytes, formatDuration } from "../model/units.ts";
import type { ProgressCounters, ProgressSink } from "../model/progress.ts";
import { OverlapGuard } from "./overlap.ts";

/**
 * Actions applied at a time while the walk goes on: a part holds about 150 bytes an action,
 * and each part starts its copy workers afresh (~16 ms).
 */
const PART_ACTIONS = 50_000;

/** A cap's refusal: its verdict, and which cap it was. */
export type Refusal = GateVerdict & { cap: "max-delete" | "max-change" };

/** What one run did. */
export interface RunResult {
  /** Counts of operations done (for a dry run: planned). */
  stats: Stats;
  /** Wall-clock duration in milliseconds. */
  durationMs: number;
  /** True if the run stopped early because the signal was aborted. */
  aborted: boolean;
  /**
   * Set when a cap refused the run's removals (`maxDelete`: none ran) or its changes to
   * existing entries (`maxChange`: no removal and no overwrite ran).
   */
  refused?: Refusal;
  /** With `verify`, the differences found. */
  differences?: VerifyCounts;
}

/** What {@linkcode runOnce} is given besides the user's options. */
export interface RunControl {
  /** The two backends of the run (see lib/backend/open.ts). */
  sides: Sides;
  /** Stops the run between operations. */
  signal?: AbortSignal;
  /** Actions applied at a time while the walk goes on (default {@linkcode PART_ACTIONS}). */
  partActions?: number;
  /** Sync only these source directories (and whole new ones); see {@linkcode MarchOptions.scope}. */
  scope?: MarchOptions["scope"];
  /**
   * Fail the run, changing nothing, when the replica folder does not exist, instead of
   * creating it: in a loop, a replica that was there and is gone is an unmounted disk, not a
   * folder to fill again.
   * @default false
   */
  replicaMustExist?: boolean;
  /**
   * Compare only: report each difference between the trees (see
   * {@linkcode createVerifyReporter}) and change nothing, not even the hash cache.
   * @default false
   */
  verify?: boolean;
  /**
   * Fed as the run goes (entries scanned, files and bytes planned and done, bytes inside large
   * files) and told when it begins and ends: the live progress line.
   */
  progress?: ProgressSink;
  /**
   * Told how each run of {@linkcode syncOnce} and {@linkcode guardedRun} ended: with its result,
   * or (guardedRun) with the error it logged (the reports to monitoring, lib/run/report.ts).
   */
  onEnd?: (end: RunEnd) => void;
}

/** How a run ended: with a result, or with the error that stopped it before one. */
export type RunEnd = { result: RunResult } | { error: unknown };

/**
 * Makes the replica an exact copy of the source, once, and logs every operation and a summary.
 *
 * Needs read permission for both trees and write permission for the replica (none with
 * `dryRun`). Per-entry failures are logged and counted in `stats.errors`; the run goes on.
 *
 * @throws {RefusedError} When the source is empty, the replica is not, and
 * `allowEmptySource` is not set.
 * @example Syncing once
 * ```ts
 * const options = { source: "/data/src", replica: "/backup/src" };
 * const { stats } = await runOnce(options, { sides: localSides(options) });
 * ```
 */
export async function runOnce(options: SyncOptions, control: RunControl): Promise<RunResult> {
  const { progress } = control;
  if (!progress) return await run(options, control);
  progress.begin(!(control.verify || options.dryRun));
  try {
    return await run(options, control);
  } finally {
    progress.end();
  }
}

/** The body of {@linkcode runOnce}: opens both sides, runs, and closes them whatever happens. */
async function run(options: SyncOptions, control: RunControl): Promise<RunResult> {
  const dryRun = control.verify || (options.dryRun ?? false);
  const started = new Date();
  const source = await control.sides.source({ started });
  try {
    const target = await control.sides.replica({ started, readOnly: dryRun });
    try {
      return await runWith(source, target, options, control);
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

/** The side of a content comparison a backend is: hashed here when local, else its own digests. */
function compareSide(backend: Backend, signal: AbortSignal | undefined): CompareSide {
  const { localRoot, digest } = backend;
  if (localRoot !== undefined || !digest) return { root: localRoot ?? backend.display };
  return { digest: (rel, hash) => digest.call(backend, rel, hash, signal) };
}

/** One run from `from` into `target`. */
async function runWith(
  from: Backend,
  target: Backend,
  options: SyncOptions,
  control: RunControl,
): Promise<RunResult> {
  const {
    checksum = false,
    hash = target.caps.hash ?? from.caps.hash ?? DEFAULT_HASH,
    jobs = target.caps.jobs ?? from.caps.readJobs ?? from.caps.jobs ?? 8,
    cacheDir,
  } = options;
  const { signal, partActions = PART_ACTIONS, replicaMustExist = false, verify = false } = control;
  // Verify compares, whatever the options say: it removes nothing, so it has no guard or cap.
  const dryRun = verify || (options.dryRun ?? false);
  const allowEmptySource = verify || (options.allowEmptySource ?? false);
  const maxDelete = verify ? undefined : options.maxDelete;
  const maxChange = verify ? undefined : options.maxChange;
  const started = performance.now();
  // Verify's plan is differences, not copies: its line shows the entries scanned alone.
  const counters = verify ? undefined : control.progress?.counters;
  if (replicaMustExist && !dryRun) await checkReplicaExists(target);
  const verifier = verify ? createVerifyReporter() : undefined;
  const applier: Applier = verifier ??
    (dryRun ? createDryRunReporter({ backup: target.backsUp }) : createApplier(from, target, {
      jobs,
      ...(signal ? { signal } : {}),
      onEvent: counters ? countingEvents(counters) : (e) => logEvent(e, false),
    }));
  let applyMs = 0;
  // With a cap, removals (and what depends on them; with --max-change, overwrites too) wait for
  // the gate's verdict on the whole run.
  const held = maxDelete || maxChange ? new HeldPlan({ overwrites: maxChange !== undefined }) : undefined;
  /** Applies (or reports) one part of the plan. */
  const applyPart = async (whole: Plan) => {
    if (counters) countPlanned(whole, counters);
    const part = held ? held.split(whole) : whole;
    const t0 = performance.now();
    await applier.apply(part);
    applyMs += performance.now() - t0;
  };

  let hashErrors = 0;
  let vanished = 0;
  // Loaded only for --checksum: the hash cache's node:crypto adds ~30 ms to every start.
  const comparer: ContentComparer | undefined = checksum
    ? new (await import("../content/compare.ts")).ContentComparer(
      compareSide(from, signal),
      compareSide(target, signal),
      {
        hash,
        jobs,
        cacheDir,
        readOnly: dryRun,
        ...(signal ? { signal } : {}),
        onCacheError: (message) => logger.warn("{text}", { text: message }),
        onError: (path, message) => {
          hashErrors++;
          logEntryError(path, message);
        },
      },
    )
    : undefined;
  let compareMs = 0;
  /** Hashes the content pairs planned so far and lets the planner decide them. */
  const settle = async (p: Planner) => {
    const t0 = performance.now();
    p.settlePairs(await comparer!.compare(p.contentPairs));
    compareMs += performance.now() - t0;
  };

  // Loaded only when something is excluded: the glob engine costs every start otherwise.
  const filter = options.filter ? (await import("./filter_compile.ts")).compileFilter(options.filter) : undefined;
  // A backup folder inside the replica is left alone.
  const protect = target.protect !== undefined ? new Set([target.protect]) : undefined;
  const overlap = overlapGuard(from, target);
  const { planner, problems, replicaEntries } = await marchTrees(from, target, {
    overlap,
    ...(filter ? { filter, deleteExcluded: options.deleteExcluded ?? false } : {}),
    checksum,
    ...(protect ? { protect } : {}),
    ...(options.modifyWindowMs ? { modifyWindowMs: options.modifyWindowMs } : {}),
    allowEmptySource,
    // A dry run must not even change modes for a moment, so it does not fix permissions.
    fixPermissions: !dryRun,
    ...(signal ? { signal } : {}),
    ...(control.scope ? { scope: control.scope } : {}),
    onProblem: (side, problem) => {
      if (problem.vanished) {
        vanished++;
        return logVanished(problem.path);
      }
      if (side === "replica") return logEntryError(problem.path, problem.message, "", "replica ");
      const spared = problem.directory ? "nothing under it" : "nothing in its directory";
      logEntryError(problem.path, problem.message, ` (${spared} is removed from the replica)`);
    },
    // Pairs are compared, and the plan applied, in parts as the walk goes, so that memory
    // stays bounded, and a directory's stale entries are removed before its new ones are
    // written (rsync's --delete-during), so that they free their space first.
    onBatch: async (p) => {
      if (control.progress) control.progress.counters.scanned = p.sourceEntries;
      if (comparer && p.contentPairs.length >= partActions) await settle(p);
      if (p.pendingActions >= partActions) {
        // The walk has not seen every source folder yet: make sure none is the replica first.
        if (!dryRun) overlap.beforeFirstWrite();
        await applyPart(p.takePart());
      }
    },
  });
  const walkMs = performance.now() - started - applyMs - compareMs;

  if (comparer && !signal?.aborted) {
    await settle(planner);
    comparer.save();
    logger.debug("{text}", { text: `Checksums: ${comparer.hashed} files hashed, ${comparer.cached} from the cache` });
  }
  const rest = planner.finish();
  for (const skip of rest.skipped) {
    logger.warn("{text}", { text: `${showPath(skip.path)}: skipped: ${skip.reason}`, action: "skip", path: skip.path });
  }

  let refused: Refusal | undefined;
  if (control.progress) Object.assign(control.progress.counters, { scanned: planner.sourceEntries, final: true });
  if (!signal?.aborted) {
    await applyPart(rest);
    if (held) {
      const last = held.release();
      const overwrites = last.transfers.filter(isOverwrite).length;
      const changes = maxChange && judgeRemovals(last.removes.length + overwrites, replicaEntries, maxChange);
      const removals = maxDelete && judgeRemovals(last.removes.length, replicaEntries, maxDelete);
      if (changes && !changes.allowed) {
        // Nothing that exists in the replica is changed or removed; what is new is still copied.
        refused = { ...changes, cap: "max-change" };
        logRefusal(refused, maxChange!, dryRun);
        applier.refuse(last.removes);
        last.removes = [];
        last.transfers = last.transfers.filter((t) => !isOverwrite(t));
      } else if (removals && !removals.allowed) {
        refused = { ...removals, cap: "max-delete" };
        logRefusal(refused, maxDelete!, dryRun);
        applier.refuse(last.removes);
        last.removes = [];
      }
      if (!signal?.aborted) {
        const t0 = performance.now();
        await applier.apply(last);
        applyMs += performance.now() - t0;
      }
    }
    const t0 = performance.now();
    if (!signal?.aborted) await applier.finish(rest);
    applyMs += performance.now() - t0;
  }
  const stats = applier.stats;
  if (options.backupKeepMs !== undefined && target.pruneBackups && !verify && !signal?.aborted) {
    stats.pruned += await target.pruneBackups({
      keepMs: options.backupKeepMs,
      now: Date.now(),
      dryRun,
      onPrune: (record) => {
        const when = new Date(record.at).toISOString().slice(0, 19).replace("T", " ");
        logEvent({ type: "op", action: "prune", path: record.path, detail: ` (backed up ${when} UTC)` }, dryRun);
      },
      onError: (path, message) => {
        stats.errors++;
        logEntryError(path, message, "", "backup folder: ");
      },
    });
  }
  stats.errors += problems + hashErrors + rest.skipped.length;
  stats.vanished += vanished;
  const durationMs = performance.now() - started;
  logger.debug("{text}", {
    text: `Timings: scan and plan ${formatDuration(walkMs)}, compare ${formatDuration(compareMs)}, apply ${
      formatDuration(applyMs)
    }`,
  });
  const aborted = signal?.aborted ?? false;
  const scanned = planner.sourceEntries;
  if (verifier) logVerifySummary(verifier.counts, stats.errors, durationMs, { aborted, scanned });
  else {
    logSummary(stats, durationMs, { dryRun, aborted, scanned, refused, backup: target.backsUp });
  }
  return {
    stats,
    durationMs,
    aborted,
    ...(refused ? { refused } : {}),
    ...(verifier ? { differences: verifier.counts } : {}),
  };
}

/**
 * The guard against a replica (or its backup folder) that is a folder of the source under
 * another path, or the reverse (see overlap.ts).
 */
function overlapGuard(from: Backend, target: Backend): OverlapGuard {
  const backup = target.backupFolder?.();
  return new OverlapGuard({
    source: from.display,
    replica: target.display,
    sourceIdentity: (rel) => from.identity?.(rel),
    replicaIdentity: (rel) => target.identity?.(rel),
    ...(backup ? { writtenFolders: [backup] } : {}),
    ...(from.findDir ? { findSourceDir: (match) => from.findDir!(match) } : {}),
  });
}

/** The summary's note of a refusal: `, 4 removals refused by --max-delete`. */
function refusedText(refused: Refusal | undefined): string {
  if (!refused) return "";
  const what = refused.cap === "max-change" ? "changes" : "removals";
  return `, ${refused.planned} ${what} refused by --${refused.cap}`;
}

/** `1 entry`, `2 entries` (with `what` between: `1 source entry`). */
function entries(count: number, what = ""): string {
  return `${count} ${what}${count === 1 ? "entry" : "entries"}`;
}

/** Adds the copies and updates of `part` to the totals known so far. */
function countPlanned(part: Plan, counters: ProgressCounters): void {
  for (const action of part.transfers) {
    if (action.op === "copy" || action.op === "update") {
      counters.filesTotal++;
      counters.bytesTotal += action.size;
    }
  }
}

/** Logs each applier event, as the run does without progress, and counts the files done. */
function countingEvents(counters: ProgressCounters): (event: ApplyEvent) => void {
  return (event) => {
    if (event.type === "op" && (event.action === "copy" || event.action === "update")) {
      counters.filesDone++;
      counters.bytesDone += event.size ?? 0;
    }
    logEvent(event, false);
  };
}

/** The one line that says a cap stopped every removal (and, for --max-change, every overwrite). */
function logRefusal(verdict: Refusal, cap: MaxDelete, dryRun: boolean): void {
  const what = "count" in cap ? `${cap.count}` : `${cap.percent}% (${entries(verdict.limit)})`;
  const option = `--${verdict.cap}`;
  const [verb, done, kept] = verdict.cap === "max-change"
    ? ["change", "changed or removed in the replica", "new entries"]
    : ["remove", "removed", "the rest"];
  const text = dryRun
    ? `Would refuse to ${verb} ${entries(verdict.planned)}: more than ${option} ${what} allows; ` +
      `nothing would be ${done}, ${kept} would be synced (see them with --dry-run without ${option})`
    : `Refusing to ${verb} ${entries(verdict.planned)}: more than ${option} ${what} allows; ` +
      `nothing was ${done}, ${kept} ${verdict.cap === "max-change" ? "were" : "was"} synced ` +
      `(see them with --dry-run without ${option})`;
  logger.error("{text}", { text, action: "refused", planned: verdict.planned, limit: verdict.limit, cap: verdict.cap });
}

/** Throws when the replica folder is missing; see {@linkcode RunControl.replicaMustExist}. */
async function checkReplicaExists(replica: Backend): Promise<void> {
  try {
    if ((await replica.root())?.kind === "dir") return;
  } catch {
    return; // let the walk report it
  }
  throw new Error(`Replica folder is missing: '${replica.display}': not recreated (is its disk mounted?)`);
}

/** The summary of `verify`: identical, or how many differences of each kind. */
function logVerifySummary(
  counts: VerifyCounts,
  errors: number,
  durationMs: number,
  how: { aborted: boolean; scanned: number },
): void {
  const total = counts.missing + counts.extra + counts.differs;
  const head = how.aborted ? "Verify stopped" : total === 0 && errors === 0 ? "Verify: identical" : "Verify: different";
  const text =
    `${head}: ${counts.missing} missing, ${counts.extra} extra, ${counts.differs} differ, ${errors} errors ` +
    `in ${formatDuration(durationMs)} (${entries(how.scanned, "source ")})`;
  const fields = { text, summary: true, action: "summary", ...counts, errors, durationMs: Math.round(durationMs) };
  if (total > 0 || errors > 0) logger.warn("{text}", fields);
  else logger.info("{text}", fields);
}

function logSummary(
  stats: Stats,
  durationMs: number,
  how: { dryRun: boolean; aborted: boolean; scanned: number; refused: Refusal | undefined; backup: boolean },
): void {
  const head = how.aborted ? "Sync stopped" : how.dryRun ? "Dry run done" : "Sync done";
  const text = `${head}: ${stats.created} created, ${stats.copied} copied, ${stats.updated} updated, ` +
    `${stats.linked} linked, ${stats.attrs} attrs, ${stats.removed} removed, ` +
    `${how.backup ? `${stats.backedUp} backed up, ` : ""}${stats.pruned > 0 ? `${stats.pruned} pruned, ` : ""}` +
    `${stats.errors} errors` +
    `${stats.vanished > 0 ? `, ${stats.vanished} vanished` : ""}` +
    `${refusedText(how.refused)}; ` +
    `${formatBytes(stats.bytes)} in ${formatDuration(durationMs)} (${entries(how.scanned, "source ")})`;
  const fields = {
    text,
    summary: true,
    action: "summary",
    ...stats,
    durationMs: Math.round(durationMs),
    dryRun: how.dryRun,
    aborted: how.aborted,
  };
  if (stats.errors > 0 || how.refused) logger.warn("{text}", fields);
  else logger.info("{text}", fields);
}

/**
 * Compares `options.source` with `options.replica` once, logs each difference and a summary,
 * and changes nothing. Needs only read permission for both trees.
 *
 * Returns 0 when they are identical, 1 when they differ or an entry could not be read.
 *
 * @example Verifying a backup
 * ```ts
 * const options = { source: "/data", replica: "/backup/data", checksum: true };
 * const code = await verifyOnce(options, { sides: localSides(options), signal });
 * ```
 */
export async function verifyOnce(
  options: SyncOptions,
  control: Pick<RunControl, "sides" | "signal" | "progress">,
): Promise<ExitCode> {
  const result = await runOnce(options, { ...control, verify: true });
  if (result.aborted) return ExitCode.Interrupted;
  const d = result.differences!;
  return d.missing + d.extra + d.differs + result.stats.errors > 0 ? ExitCode.Partial : ExitCode.Ok;
}

/**
 * Runs one sync and maps its outcome to an exit code.
 *
 * @throws {RefusedError} When the run is refused for safety.
 * @example Running once
 * ```ts
 * const code = await syncOnce(options, { sides });
 * ```
 */
export async function syncOnce(options: SyncOptions, control: RunControl): Promise<ExitCode> {
  const result = await runOnce(options, control);
  control.onEnd?.({ result });
  if (result.aborted) return ExitCode.Interrupted;
  if (result.refused) return ExitCode.MaxDelete;
  return result.stats.errors > 0 ? ExitCode.Partial : ExitCode.Ok;
}

/**
 * A run inside a loop: every failure is logged and the loop goes on, since the next run may
 * succeed (a disk gets mounted, a permission gets fixed).
 */
export async function guardedRun(options: SyncOptions, control: RunControl): Promise<ExitCode> {
  try {
    return await syncOnce(options, control);
  } catch (error) {
    control.onEnd?.({ error });
    const text = error instanceof RefusedError ? error.message : `Sync failed: ${describeError(error)}`;
    logger.error("{text}", { text, action: "error", error: text });
    return error instanceof RefusedError ? ExitCode.Refused : ExitCode.Partial;
  }
}
