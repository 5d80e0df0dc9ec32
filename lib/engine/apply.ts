/**
 * Executes a {@linkcode Plan}, part by part, one function per phase: each part's removals
 * first (children before parents), then its directories (parents first), then its files,
 * links and attributes with bounded concurrency; directory attributes last of all. The
 * phases decide order, counting and what a failure blocks (a directory that could not be made
 * blocks its subtree; an entry that could not be removed blocks what was to replace it), and
 * the policy every backend shares: a file that changed while it was copied is copied once more
 * as it now is, and one that vanished is a warning. The backends do the work.
 *
 * @module
 */

import {
  type AttrsAction,
  type CopyAction,
  type DirAttrs,
  type LinkAction,
  type MkdirAction,
  parentOf,
  type Plan,
  type RemoveAction,
} from "../model/actions.ts";
import { ChangedError, ConnectionLostError, describeError } from "../model/errors.ts";
import type { Backend, CopyResult } from "../backend/backend.ts";

/** What apply reports as it goes; the sync layer turns these into log lines. */
export type ApplyEvent =
  | {
    type: "op";
    action: "create" | "copy" | "update" | "link" | "attrs" | "remove" | "backup" | "clean" | "prune";
    path: string;
    size?: number;
    target?: string;
    kind?: string;
    /** More of the line, after the path (`prune`: when the version was backed up). */
    detail?: string;
  }
  | { type: "error"; path: string; message: string }
  | { type: "vanished"; path: string }
  | { type: "debug"; path: string; message: string };

/** Counts of what a run did. */
export interface Stats {
  created: number;
  copied: number;
  updated: number;
  linked: number;
  attrs: number;
  removed: number;
  /** Replica entries moved (or, before an overwrite, copied) into the backup folder. */
  backedUp: number;
  /** Versions in the backup folder put there longer ago than `--backup-keep`, removed. */
  pruned: number;
  /** Bytes written by copies and updates. */
  bytes: number;
  /** Entries that failed. */
  errors: number;
  /** Source entries that were deleted while the run went on: warnings, not errors. */
  vanished: number;
}

/** A fresh, all-zero {@linkcode Stats}. */
export function emptyStats(): Stats {
  return {
    created: 0,
    copied: 0,
    updated: 0,
    linked: 0,
    attrs: 0,
    removed: 0,
    backedUp: 0,
    pruned: 0,
    bytes: 0,
    errors: 0,
    vanished: 0,
  };
}

/** Options for {@linkcode createApplier}. */
export interface ApplyOptions {
  /**
   * Copies running at once.
   * @default 8
   */
  jobs?: number;
  /**
   * Worker threads for plain file copies; 0 copies everything in-process. Only used with the
   * real file system.
   * @default min(jobs, cores)
   */
  workers?: number;
  /** Stops starting new operations once aborted; operations in flight finish or are undone. */
  signal?: AbortSignal;
  /** Called for every operation done and every error. */
  onEvent?: (event: ApplyEvent) => void;
}

/** Applies a plan in parts, each as it is planned, then the directory attributes. */
export interface Applier {
  /** What has been done so far. */
  readonly stats: Stats;
  /** The removals, then the directories, then the files and links of `part`. */
  apply(part: Plan): Promise<void>;
  /** The directory attributes (deepest first) of the whole plan. */
  finish(plan: Plan): Promise<void>;
  /**
   * Marks removals the gate refused: what was to take their place is not created (nor
   * anything under it), and they are not counted.
   */
  refuse(removes: readonly RemoveAction[]): void;
}

/**
 * An {@linkcode Applier} from `source` into `replica`: the sync hands it each part of the plan
 * as the march produces it, so that a million new files never wait in memory at once. State
 * carries over between parts: a directory that could not be created blocks its subtree in
 * every later part.
 *
 * Never throws for a single entry. A lost connection to a remote backend stops it: the phases
 * start nothing more, and the error is thrown from `apply`/`finish` once.
 *
 * @example Applying a plan in two parts
 * ```ts
 * const applier = createApplier(source, replica);
 * await applier.apply(firstPart);
 * await applier.apply(rest);
 * await applier.finish(rest);
 * ```
 */
export function createApplier(source: Backend, replica: Backend, options: ApplyOptions = {}): Applier {
  const {
    jobs = 8,
    workers = Math.min(jobs, navigator.hardwareConcurrency ?? 2),
    signal,
    onEvent = () => {},
  } = options;
  const ctx: Context = {
    source,
    replica,
    stats: emptyStats(),
    lost: undefined,
    failedDirs: new Set(),
    unremoved: new Set(),
    signal,
    onEvent,
    jobs,
    workers,
  };
  return {
    stats: ctx.stats,
    async apply(part: Plan) {
      // Removals first: a stale entry frees its name (a type change, a name that differs
      // from a new one only in case on a case-insensitive disk) and its space first; the temp
      // files an interrupted run left go before anything, and free the most.
      await leftoverPhase(ctx, part.leftovers);
      if (await removePhase(ctx, part.removes) && await mkdirPhase(ctx, part.mkdirs)) {
        await transferPhase(ctx, part.transfers);
      }
      if (ctx.lost) throw ctx.lost;
    },
    async finish(plan: Plan) {
      if (ctx.replica.caps.dirTimes || ctx.replica.caps.modes) await dirAttrsPhase(ctx, plan.dirAttrs);
      if (ctx.lost) throw ctx.lost;
    },
    refuse(removes: readonly RemoveAction[]) {
      for (const r of removes) ctx.unremoved.add(r.path);
    },
  };
}

/** What the phases share, from one part to the next. */
interface Context {
  source: Backend;
  replica: Backend;
  stats: Stats;
  /** Set once the remote replica's connection is lost: nothing more is started. */
  lost: ConnectionLostError | undefined;
  /** Directories that could not be made: their subtrees are skipped. */
  failedDirs: Set<string>;
  /** Entries whose removal failed or was refused: what was to replace them is not put there. */
  unremoved: Set<string>;
  signal: AbortSignal | undefined;
  onEvent: (event: ApplyEvent) => void;
  jobs: number;
  workers: number;
}

/** Records the failure of one entry, unless it is the run being stopped. */
function fail(ctx: Context, path: string, error: unknown): void {
  if (ctx.signal?.aborted && isAbort(error, ctx.signal)) return;
  if (error instanceof ConnectionLostError) {
    ctx.lost ??= error; // one line for the run, not one an entry
    return;
  }
  ctx.stats.errors++;
  ctx.onEvent({ type: "error", path, message: describeError(error) });
}

/** True once the run is stopped, or the replica's connection lost. */
function stopped(ctx: Context): boolean {
  return ctx.lost !== undefined || (ctx.signal?.aborted ?? false);
}

/** True when a directory above `rel` could not be made. */
function blocked(ctx: Context, rel: string): boolean {
  if (ctx.failedDirs.size === 0) return false;
  for (let p = parentOf(rel);; p = parentOf(p)) {
    if (ctx.failedDirs.has(p)) return true;
    if (p === "") return false;
  }
}

/** Counts and reports what went to the backup folder. */
function backedUp(ctx: Context, path: string, kind?: string): void {
  ctx.stats.backedUp++;
  ctx.onEvent({ type: "op", action: "backup", path, ...(kind ? { kind } : {}) });
}

/**
 * Temp files left by an interrupted run: foldersync's own, so removed outright (never backed
 * up), logged as `clean up`, and not counted as removals.
 */
async function leftoverPhase(ctx: Context, leftovers: readonly RemoveAction[]): Promise<void> {
  for (const action of leftovers) {
    await breathe();
    if (stopped(ctx)) return;
    if (blocked(ctx, action.path)) continue;
    try {
      await ctx.replica.remove(action);
      ctx.onEvent({ type: "op", action: "clean", path: action.path });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) fail(ctx, action.path, error);
    }
  }
}

/** Removals, children before parents, through the one primitive. False once the run is stopped. */
async function removePhase(ctx: Context, removes: readonly RemoveAction[]): Promise<boolean> {
  for (const action of removes) {
    await breathe();
    if (stopped(ctx)) return false;
    if (blocked(ctx, action.path)) continue;
    try {
      if (await ctx.replica.remove(action)) backedUp(ctx, action.path, action.kind);
      ctx.stats.removed++;
      ctx.onEvent({ type: "op", action: "remove", path: action.path, kind: action.kind });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      ctx.unremoved.add(action.path);
      fail(ctx, action.path, error);
    }
  }
  return true;
}

/** Directories, parents first; one that cannot be made blocks its subtree. */
async function mkdirPhase(ctx: Context, mkdirs: readonly MkdirAction[]): Promise<boolean> {
  for (const action of mkdirs) {
    await breathe();
    if (stopped(ctx)) return false;
    if (blocked(ctx, action.path) || (action.replace && ctx.unremoved.has(action.path))) {
      ctx.failedDirs.add(action.path); // the old entry is still there: its error is logged
      continue;
    }
    try {
      await ctx.replica.mkdir(action.path);
      if (action.path === "") continue;
      ctx.stats.created++;
      ctx.onEvent({ type: "op", action: "create", path: action.path, kind: "dir" });
    } catch (error) {
      ctx.failedDirs.add(action.path);
      fail(ctx, action.path, error);
    }
  }
  return true;
}

/** Counts and reports one file copied or updated. */
function copied(ctx: Context, action: CopyAction, size: number): void {
  if (action.op === "copy") ctx.stats.copied++;
  else ctx.stats.updated++;
  ctx.stats.bytes += size;
  ctx.onEvent({ type: "op", action: action.op, path: action.path, size });
}

/**
 * Files and links, and attributes: plain copies in parallel workers first, then the rest
 * (and whatever the workers could not do) `jobs` at a time on the careful path.
 */
async function transferPhase(ctx: Context, all: Plan["transfers"]): Promise<void> {
  const { replica, stats } = ctx;
  const skip = (a: Plan["transfers"][number]) =>
    blocked(ctx, a.path) || (a.op !== "attrs" && a.replace !== undefined && ctx.unremoved.has(a.path));
  const done = (action: CopyAction) => copied(ctx, action, action.size);
  const transfers = replica.copyMany
    ? await replica.copyMany(all, { source: ctx.source, workers: ctx.workers, skip, done })
    : all;
  if (stopped(ctx)) return;
  let next = 0;
  const lane = async () => {
    for (;;) {
      await breathe();
      if (next >= transfers.length || stopped(ctx)) break;
      const action = transfers[next++]!;
      if (skip(action)) continue;
      try {
        await transferOne(ctx, action);
      } catch (error) {
        if (
          !(error instanceof ConnectionLostError) && (action.op === "copy" || action.op === "update") &&
          await sourceGone(ctx, action.path)
        ) {
          stats.vanished++;
          ctx.onEvent({ type: "vanished", path: action.path });
        } else {
          fail(ctx, action.path, error);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(ctx.jobs, transfers.length)) }, lane));
}

/** One file, link or attribute change on the careful path. */
async function transferOne(ctx: Context, action: CopyAction | LinkAction | AttrsAction): Promise<void> {
  switch (action.op) {
    case "copy":
    case "update": {
      const done = await copyOne(ctx, action);
      if (done.backedUp) backedUp(ctx, action.path);
      copied(ctx, action, done.size);
      return;
    }
    case "link":
      if (await ctx.replica.link(action)) backedUp(ctx, action.path);
      ctx.stats.linked++;
      ctx.onEvent({ type: "op", action: "link", path: action.path, target: action.target });
      return;
    case "attrs":
      await ctx.replica.setAttrs(action);
      ctx.stats.attrs++;
      ctx.onEvent({ type: "op", action: "attrs", path: action.path });
  }
}

/**
 * One file copied from the source: once more, as it now is, when it changed while it was read
 * (as rsync redoes a file whose checksum did not match); what changes again waits for the next
 * run.
 */
async function copyOne(ctx: Context, action: CopyAction): Promise<CopyResult> {
  try {
    return await ctx.replica.copy(action, ctx.source.file(action));
  } catch (error) {
    if (!(error instanceof ChangedError)) throw error;
    const now = await ctx.source.stat(action.path);
    if (now?.kind !== "file") throw error;
    const again: CopyAction = { ...action, size: now.size, mtimeMs: now.mtimeMs, mode: now.mode };
    return await ctx.replica.copy(again, ctx.source.file(again));
  }
}

/** True when source entry `rel` no longer exists (deleted while the run went on). */
async function sourceGone(ctx: Context, rel: string): Promise<boolean> {
  try {
    return (await ctx.source.stat(rel)) === undefined;
  } catch {
    return false;
  }
}

/** Directory attributes, deepest first, so that later changes do not disturb them. */
async function dirAttrsPhase(ctx: Context, dirAttrs: readonly DirAttrs[]): Promise<void> {
  for (const entry of dirAttrs) {
    if (stopped(ctx)) return;
    if (ctx.failedDirs.has(entry.path) || blocked(ctx, entry.path)) continue;
    try {
      await ctx.replica.setDirAttrs(entry);
      if (entry.reason) {
        // The directory's own mode or mtime differed: a change, shown and counted as one.
        ctx.stats.attrs++;
        ctx.onEvent({ type: "op", action: "attrs", path: entry.path, kind: "dir" });
      } else {
        ctx.onEvent({ type: "debug", path: entry.path, message: "directory attributes put back" });
      }
    } catch (error) {
      fail(ctx, entry.path, error);
    }
  }
}

let lastBreath = performance.now();

/**
 * Lets timers and signal handlers run every 50 ms: the fast paths are synchronous, and a
 * SIGTERM must still stop the run within moments.
 */
async function breathe(): Promise<void> {
  if (performance.now() - lastBreath < 50) return;
  await new Promise((resolve) => setTimeout(resolve, 0));
  lastBreath = performance.now();
}

/** Whether `error` is the abort of `signal` rather than a failure of its own. */
function isAbort(error: unknown, signal: AbortSignal): boolean {
  return error === signal.reason || (error instanceof DOMException && error.name === "AbortError");
}
