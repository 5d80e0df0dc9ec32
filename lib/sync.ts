/**
 * One sync: scan both trees, compare content if asked, plan, apply, and log one summary.
 *
 * @module
 */

import { type ApplyEvent, applyPlan, emptyStats, type FsOps, type Stats } from "./apply.ts";
import type { SyncOptions } from "./config.ts";
import { describeError, ExitCode, RefusedError } from "./errors.ts";
import { DEFAULT_HASH } from "./hash.ts";
import { compareContent } from "./compare.ts";
import { logger, operationsLogged, showPath } from "./log.ts";
import { countPlan, type Plan, plan } from "./plan.ts";
import { EntryTable } from "./entry_table.ts";
import { type Entry, scanTree, startScanInWorker, toEntry, type TreeScan } from "./scan.ts";
import { formatBytes, formatDuration } from "./units.ts";

/** What one run did. */
export interface RunResult {
  /** Counts of operations done (for a dry run: planned). */
  stats: Stats;
  /** The plan that was applied (or, with `dryRun`, printed). */
  plan: Plan;
  /** Wall-clock duration in milliseconds. */
  durationMs: number;
  /** True if the run stopped early because the signal was aborted. */
  aborted: boolean;
}

/** Extra knobs for {@linkcode runOnce} that are not user options. */
export interface RunControl {
  /** Stops the run between operations. */
  signal?: AbortSignal;
  /** File-system layer for fault injection in tests. */
  fs?: FsOps;
}

function logEvent(event: ApplyEvent, dryRun: boolean): void {
  const prefix = dryRun ? "would " : "";
  switch (event.type) {
    case "op": {
      if (!operationsLogged()) break;
      const what = event.kind === "dir" ? `${event.action} dir` : event.action;
      const detail = event.size !== undefined
        ? ` (${formatBytes(event.size)})`
        : event.target !== undefined
        ? ` -> ${showPath(event.target)}`
        : "";
      const fields: Record<string, unknown> = { action: event.action, path: event.path };
      if (event.size !== undefined) fields.size = event.size;
      if (event.target !== undefined) fields.target = event.target;
      if (event.kind !== undefined) fields.kind = event.kind;
      if (dryRun) fields.dryRun = true;
      logger.info("{text}", { text: `${prefix}${what} ${showPath(event.path)}${detail}`, ...fields });
      break;
    }
    case "error":
      logEntryError(event.path, event.message);
      break;
    case "debug":
      logger.debug("{text}", { text: `${showPath(event.path)}: ${event.message}`, path: event.path });
      break;
  }
}

/** One error line for one entry: `path: message`, with the path as a field for JSON logs. */
function logEntryError(path: string, message: string, suffix = "", prefix = ""): void {
  logger.error("{text}", {
    text: `${prefix}${showPath(path)}: ${message}${suffix}`,
    action: "error",
    path,
    error: message,
  });
}

/** Reports a plan as the operations it would do, without doing them. */
function reportPlan(p: Plan): Stats {
  const stats = emptyStats();
  const emit = (e: ApplyEvent) => logEvent(e, true);
  for (const m of p.mkdirs) {
    if (m.path !== "") emit({ type: "op", action: "create", path: m.path, kind: "dir" });
  }
  for (const t of p.transfers) {
    if (t.op === "link") emit({ type: "op", action: "link", path: t.path, target: t.target });
    else if (t.op === "attrs") emit({ type: "op", action: "attrs", path: t.path });
    else emit({ type: "op", action: t.op, path: t.path, size: t.size });
  }
  for (const r of p.removes) emit({ type: "op", action: "remove", path: r.path, kind: r.kind });
  const counts = countPlan(p);
  Object.assign(stats, {
    created: counts.create,
    copied: counts.copy,
    updated: counts.update,
    linked: counts.link,
    attrs: counts.attrs,
    removed: counts.remove,
    bytes: p.bytes,
  });
  return stats;
}

/** Scans the replica, or returns an empty scan when it does not exist yet. */
function scanReplica(replica: string, dryRun: boolean): { scan: TreeScan; root?: Entry } {
  let root: Entry;
  try {
    root = toEntry(Deno.statSync(replica));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return {
        scan: { root: replica, entries: new EntryTable(), incomplete: new Set(), problems: [], loosened: new Set() },
      };
    }
    throw error;
  }
  // A dry run must not even change modes for a moment, so it does not fix permissions.
  return { scan: scanTree(replica, { fixPermissions: !dryRun }), root };
}

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
 * const { stats } = await runOnce({ source: "/data/src", replica: "/backup/src" });
 * ```
 */
export async function runOnce(options: SyncOptions, control: RunControl = {}): Promise<RunResult> {
  const {
    source,
    replica,
    checksum = false,
    hash = DEFAULT_HASH,
    dryRun = false,
    allowEmptySource = false,
    jobs = 8,
    cacheDir,
  } = options;
  const started = performance.now();
  const sourceRoot = toEntry(Deno.statSync(source));
  // A worker walks the source while this thread walks the replica; if the worker has not even
  // booted by then (a small tree), this thread walks the source too.
  const background = startScanInWorker(source);
  let replicaScan: TreeScan;
  let replicaRoot: Entry | undefined;
  try {
    ({ scan: replicaScan, root: replicaRoot } = scanReplica(replica, dryRun));
  } catch (error) {
    background.cancel();
    throw error;
  }
  let sourceScan: TreeScan;
  if (background.started) {
    sourceScan = await background.result;
  } else {
    background.cancel();
    sourceScan = scanTree(source);
  }
  const scanned = performance.now();
  for (const problem of sourceScan.problems) {
    const spared = problem.directory ? "nothing under it" : "nothing in its directory";
    logEntryError(problem.path, problem.message, ` (${spared} is removed from the replica)`);
  }
  for (const problem of replicaScan.problems) logEntryError(problem.path, problem.message, "", "replica ");

  if (sourceScan.entries.size === 0 && replicaScan.entries.size > 0 && !allowEmptySource) {
    throw new RefusedError(
      `Source is empty but the replica has ${replicaScan.entries.size} entries; refusing to empty it ` +
        `(is the source disk mounted?): '${source}'. Pass --allow-empty-source to mirror it anyway`,
    );
  }

  let sameContent: Set<string> | undefined;
  let hashErrors = 0;
  if (checksum) {
    const compared = await compareContent(sourceScan, replicaScan, {
      hash,
      jobs,
      cacheDir,
      readOnly: dryRun,
      onCacheError: (message) => logger.warn("{text}", { text: message }),
      onError: (path, message) => {
        hashErrors++;
        logEntryError(path, message);
      },
    });
    sameContent = compared.same;
    logger.debug("{text}", { text: `Checksums: ${compared.hashed} files hashed, ${compared.cached} from the cache` });
  }

  const thePlan = plan(
    { root: sourceRoot, entries: sourceScan.entries, incomplete: sourceScan.incomplete },
    replicaRoot
      ? { root: replicaRoot, entries: replicaScan.entries, loosened: replicaScan.loosened }
      : { entries: replicaScan.entries },
    checksum ? { checksum, sameContent: sameContent ?? new Set() } : {},
  );
  for (const skip of thePlan.skipped) {
    logger.warn("{text}", { text: `${showPath(skip.path)}: skipped: ${skip.reason}`, action: "skip", path: skip.path });
  }

  const planned = performance.now();
  let stats: Stats;
  if (dryRun) {
    stats = reportPlan(thePlan);
  } else {
    stats = await applyPlan(thePlan, source, replica, {
      sourceEntries: sourceScan.entries,
      sourceRoot,
      jobs,
      ...(control.fs ? { fs: control.fs } : {}),
      ...(control.signal ? { signal: control.signal } : {}),
      onEvent: (e) => logEvent(e, false),
    });
  }
  stats.errors += sourceScan.problems.length + replicaScan.problems.length + hashErrors + thePlan.skipped.length;
  const durationMs = performance.now() - started;
  logger.debug("{text}", {
    text: `Timings: scan ${formatDuration(scanned - started)}, compare and plan ${
      formatDuration(planned - scanned)
    }, apply ${formatDuration(performance.now() - planned)}`,
  });
  const aborted = control.signal?.aborted ?? false;
  logSummary(stats, durationMs, { dryRun, aborted, scanned: sourceScan.entries.size });
  return { stats, plan: thePlan, durationMs, aborted };
}

function logSummary(
  stats: Stats,
  durationMs: number,
  how: { dryRun: boolean; aborted: boolean; scanned: number },
): void {
  const head = how.aborted ? "Sync stopped" : how.dryRun ? "Dry run done" : "Sync done";
  const text = `${head}: ${stats.created} created, ${stats.copied} copied, ${stats.updated} updated, ` +
    `${stats.linked} linked, ${stats.attrs} attrs, ${stats.removed} removed, ${stats.errors} errors; ` +
    `${formatBytes(stats.bytes)} in ${formatDuration(durationMs)} (${how.scanned} source entries)`;
  const fields = {
    text,
    summary: true,
    action: "summary",
    ...stats,
    durationMs: Math.round(durationMs),
    dryRun: how.dryRun,
    aborted: how.aborted,
  };
  if (stats.errors > 0) logger.warn("{text}", fields);
  else logger.info("{text}", fields);
}

/**
 * Runs one sync and maps its outcome to an exit code.
 *
 * @throws {RefusedError} When the run is refused for safety.
 * @example Running once
 * ```ts
 * const code = await syncOnce({ source: "/src", replica: "/dst" });
 * ```
 */
export async function syncOnce(options: SyncOptions, signal?: AbortSignal): Promise<ExitCode> {
  const result = await runOnce(options, signal ? { signal } : {});
  if (result.aborted) return ExitCode.Interrupted;
  return result.stats.errors > 0 ? ExitCode.Partial : ExitCode.Ok;
}

/**
 * A run inside a loop: every failure is logged and the loop goes on, since the next run may
 * succeed (a disk gets mounted, a permission gets fixed).
 */
export async function guardedRun(options: SyncOptions, signal?: AbortSignal): Promise<ExitCode> {
  try {
    return await syncOnce(options, signal);
  } catch (error) {
    const text = error instanceof RefusedError ? error.message : `Sync failed: ${describeError(error)}`;
    logger.error("{text}", { text, action: "error", error: text });
    return error instanceof RefusedError ? ExitCode.Refused : ExitCode.Partial;
  }
}
