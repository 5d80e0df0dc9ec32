/**
 * The lines a run prints, and the two reporters that take the applier's place: `--dry-run`
 * prints each part of the plan as the operations it would do, and `verify` prints it as the
 * differences between the trees. Both read the same plan the sync would apply; neither
 * touches a disk.
 *
 * @module
 */

import { type Applier, type ApplyEvent, emptyStats, type Stats } from "./apply.ts";
import { logger, logLine, operationsLogged, showPath } from "../log.ts";
import { countPlan } from "./plan.ts";
import { type Plan, type RemoveAction } from "../model/actions.ts";
import { formatBytes } from "../model/units.ts";

/** How an operation reads in a log line, where it is not its own name. */
const VERBS: Partial<Record<string, string>> = { attrs: "set attrs", backup: "back up", clean: "clean up" };

/**
 * Logs one event of a run: an operation line (`copy a.txt (3 B)`, `would remove b`), an
 * entry's error, a vanished source entry, or debug detail.
 *
 * @example Logging an operation
 * ```ts
 * logEvent({ type: "op", action: "copy", path: "a.txt", size: 3 }, false);
 * ```
 */
export function logEvent(event: ApplyEvent, dryRun: boolean): void {
  const prefix = dryRun ? "would " : "";
  switch (event.type) {
    case "op": {
      if (!operationsLogged()) break;
      const verb = VERBS[event.action] ?? event.action;
      const what = event.kind === "dir" ? `${verb} dir` : verb;
      const detail = event.size !== undefined
        ? ` (${formatBytes(event.size)})`
        : event.target !== undefined
        ? ` -> ${showPath(event.target)}`
        : event.detail ?? "";
      const fields: Record<string, unknown> = { action: event.action, path: event.path };
      if (event.size !== undefined) fields.size = event.size;
      if (event.target !== undefined) fields.target = event.target;
      if (event.kind !== undefined) fields.kind = event.kind;
      if (dryRun) fields.dryRun = true;
      const why = event.action === "clean" ? " (a temp file an interrupted run left)" : "";
      logLine("info", { text: `${prefix}${what} ${showPath(event.path)}${detail}${why}`, ...fields });
      break;
    }
    case "error":
      logEntryError(event.path, event.message);
      break;
    case "vanished":
      logVanished(event.path);
      break;
    case "debug":
      logger.debug("{text}", { text: `${showPath(event.path)}: ${event.message}`, path: event.path });
      break;
  }
}

/**
 * One error line for one entry: `path: message`, with the path as a field for JSON logs.
 *
 * @example Reporting an entry
 * ```ts
 * logEntryError("a/b.txt", "PermissionDenied: Permission denied");
 * ```
 */
export function logEntryError(path: string, message: string, suffix = "", prefix = ""): void {
  logger.error("{text}", {
    text: `${prefix}${showPath(path)}: ${message}${suffix}`,
    action: "error",
    path,
    error: message,
  });
}

/**
 * A source entry deleted while the run went on: a warning, as rsync's "file has vanished".
 *
 * @example Reporting a vanished file
 * ```ts
 * logVanished("tmp/build.o");
 * ```
 */
export function logVanished(path: string): void {
  logger.warn("{text}", { text: `vanished ${showPath(path)}`, action: "vanished", path });
}

/** Options for {@linkcode createDryRunReporter}. */
export interface DryRunOptions {
  /**
   * Whether the run has a backup folder (`--backup-dir`): each removal and each overwrite is
   * also shown as `would back up PATH`, and counted.
   * @default false
   */
  backup?: boolean;
}

/**
 * An {@linkcode Applier} for `--dry-run`: prints each part as the operations it would do, in
 * the order they would be done, and counts them.
 *
 * @example Reporting a plan
 * ```ts
 * const reporter = createDryRunReporter();
 * await reporter.apply(plan);
 * reporter.stats.copied;
 * ```
 */
export function createDryRunReporter(options: DryRunOptions = {}): Applier {
  const { backup = false } = options;
  const stats = emptyStats();
  const emit = (e: ApplyEvent) => logEvent(e, true);
  /** With a backup folder, what a removal or an overwrite would move there. */
  const backUp = (path: string, kind?: "dir") => {
    if (!backup) return;
    stats.backedUp++;
    emit({ type: "op", action: "backup", path, ...(kind ? { kind } : {}) });
  };
  return {
    stats,
    apply(p: Plan) {
      for (const r of p.leftovers) emit({ type: "op", action: "clean", path: r.path });
      for (const r of p.removes) {
        backUp(r.path, r.kind === "dir" ? "dir" : undefined);
        emit({ type: "op", action: "remove", path: r.path, kind: r.kind });
      }
      for (const m of p.mkdirs) {
        if (m.path !== "") emit({ type: "op", action: "create", path: m.path, kind: "dir" });
      }
      for (const t of p.transfers) {
        if (t.op === "update" || (t.op === "link" && t.replace === "symlink")) backUp(t.path);
        if (t.op === "link") emit({ type: "op", action: "link", path: t.path, target: t.target });
        else if (t.op === "attrs") emit({ type: "op", action: "attrs", path: t.path });
        else emit({ type: "op", action: t.op, path: t.path, size: t.size });
      }
      const counts = countPlan(p);
      stats.created += counts.create;
      stats.copied += counts.copy;
      stats.updated += counts.update;
      stats.linked += counts.link;
      stats.attrs += counts.attrs;
      stats.removed += counts.remove;
      stats.bytes += p.bytes;
      return Promise.resolve();
    },
    finish(p: Plan) {
      // Directories whose own mode or mtime differs (not those merely put back after changes inside).
      for (const d of p.dirAttrs) {
        if (!d.reason) continue;
        stats.attrs++;
        emit({ type: "op", action: "attrs", path: d.path, kind: "dir" });
      }
      return Promise.resolve();
    },
    refuse: () => {},
  };
}

/** What `verify` found, by kind of difference. */
export interface VerifyCounts {
  /** Entries only the source has. */
  missing: number;
  /** Entries only the replica has. */
  extra: number;
  /** Entries both have, that differ. */
  differs: number;
}

/** A verify reporter: an {@linkcode Applier} that prints differences, with their counts. */
export interface VerifyReporter extends Applier {
  /** The differences found so far. */
  readonly counts: VerifyCounts;
}

/**
 * An {@linkcode Applier} for `verify`: prints each part of the plan as differences, one line
 * each: `missing PATH`, `extra PATH`, `differs PATH (REASON)`, where the reason is `type`,
 * `target`, `size`, `mtime`, `content` or `mode`. Directory attributes count only where the
 * directory's own mode or mtime differ (see {@linkcode VerifyReporter.finish}).
 *
 * @example Verifying
 * ```ts
 * const reporter = createVerifyReporter();
 * await reporter.apply(plan);
 * await reporter.finish(plan);
 * reporter.counts; // { missing: 1, extra: 0, differs: 2 }
 * ```
 */
export function createVerifyReporter(): VerifyReporter {
  const counts: VerifyCounts = { missing: 0, extra: 0, differs: 0 };
  const line = (kind: keyof VerifyCounts, path: string, reason?: string) => {
    counts[kind]++;
    const text = `${kind} ${showPath(path)}${reason ? ` (${reason})` : ""}`;
    logLine("info", { text, action: kind, path, ...(reason ? { reason } : {}) });
  };
  const apply = (p: Plan) => {
    // A replaced entry is reported once, as a type difference, by what replaces it.
    for (const r of p.leftovers) line("extra", r.path, "a temp file an interrupted run left");
    for (const r of p.removes) if (!r.replaced) line("extra", r.path);
    for (const m of p.mkdirs) {
      if (m.path !== "") line(m.replace ? "differs" : "missing", m.path, m.replace ? "type" : undefined);
    }
    for (const t of p.transfers) {
      if (t.op === "attrs") line("differs", t.path, t.reason);
      else if (t.op === "update") line("differs", t.path, t.reason);
      else if (t.replace === undefined) line("missing", t.path);
      else line("differs", t.path, t.op === "link" && t.replace === "symlink" ? "target" : "type");
    }
    return Promise.resolve();
  };
  const finish = (p: Plan) => {
    for (const d of p.dirAttrs) if (d.reason) line("differs", d.path, d.reason);
    return Promise.resolve();
  };
  return { stats: emptyStats(), counts, apply, finish, refuse: (_: readonly RemoveAction[]) => {} };
}

/**
 * Adds the counts of `more` to `stats`.
 *
 * @example Adding
 * ```ts
 * addStats(total, partStats);
 * ```
 */
export function addStats(stats: Stats, more: Stats): void {
  for (const key of Object.keys(stats) as Array<keyof Stats>) stats[key] += more[key];
}
