/**
 * Executes a {@linkcode Plan}, part by part: each part's removals first (children before
 * parents), then its directories (parents first), then its files and links through a temp file
 * and an atomic rename with bounded concurrency; directory attributes last of all.
 *
 * Never writes through a symbolic link: every replica path it writes was either created by
 * this run or seen by lstat as a real directory, and a failed directory blocks its subtree.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { CopyAction, LinkAction, Plan, RemoveAction } from "./plan.ts";
import type { CopyJob, CopyResult } from "../replica/local/copy_worker.ts";
import { runInWorkers } from "../pool.ts";
import { parentOf } from "./plan.ts";
import { describeError } from "../errors.ts";
import { copyFile, SMALL_FILE } from "../replica/local/copy_file.ts";
import { BackupDir } from "../replica/local/backup.ts";

/** The file-system calls apply makes; replaceable in tests to inject faults (ENOSPC, EACCES). */
export interface FsOps {
  /**
   * Copies a file's content into a new file `to` (which must not exist); `size` is a hint. Once
   * `signal` is aborted it stops within moments, leaving no `to`, and throws an AbortError.
   * `onProgress`, when given, is called after each chunk with the bytes done so far.
   */
  copyFile(
    from: string,
    to: string,
    size: number,
    signal?: AbortSignal,
    onProgress?: (bytes: number) => void,
  ): Promise<void>;
  lstat(path: string): Promise<Deno.FileInfo>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string, options?: { recursive?: boolean }): Promise<void>;
  mkdir(path: string, options?: { recursive?: boolean; mode?: number }): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  utime(path: string, atime: Date, mtime: Date): Promise<void>;
  /** Sets the times of a link itself, not of its target. */
  lutime(path: string, atime: Date, mtime: Date): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
}

/** Runs a synchronous call and hands its result or error over as a promise. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}

const COPY_WORKER = new URL("../replica/local/copy_worker.ts", import.meta.url);

/**
 * Below this many plain copies, starting workers costs more than it saves: a copy worker
 * takes ~16 ms to start and saves ~35 us a file (measured on 4 KiB files).
 */
const MIN_POOL_FILES = 512;

/**
 * The real file system, through Deno's APIs (and node:fs for lutimes, which Deno lacks).
 *
 * Metadata calls are synchronous inside async functions: per-call async overhead costs more
 * than these syscalls (measured: 5,000 lstats, 30 ms sync against 335 ms awaited). Files
 * are copied by lib/replica/local/copy_file.ts: into a new file opened with O_EXCL, so a temp name is never
 * followed; small ones in memory, large ones in chunks that a signal can stop, keeping holes.
 */
export const denoFs: FsOps = {
  copyFile: async (from, to, size, signal, onProgress) => {
    await copyFile(from, to, { size, ...(signal ? { signal } : {}), ...(onProgress ? { onProgress } : {}) });
  },
  lstat: (path) => settle(() => Deno.lstatSync(path)),
  rename: (from, to) => settle(() => Deno.renameSync(from, to)),
  remove: (path, options) => settle(() => Deno.removeSync(path, options)),
  mkdir: (path, options) => settle(() => Deno.mkdirSync(path, options)),
  chmod: (path, mode) => settle(() => Deno.chmodSync(path, mode)),
  utime: (path, atime, mtime) => settle(() => Deno.utimeSync(path, atime, mtime)),
  lutime: async (path, atime, mtime) => (await nodeFs()).lutimesSync(path, atime, mtime),
  symlink: (target, path) => settle(() => Deno.symlinkSync(target, path)),
};

let nodeFsModule: Promise<typeof import("node:fs")> | undefined;

/** node:fs, for lutimes only, loaded on first use: importing it adds ~40 ms to every start. */
function nodeFs(): Promise<typeof import("node:fs")> {
  return nodeFsModule ??= import("node:fs");
}

/** What apply reports as it goes; the sync layer turns these into log lines. */
export type ApplyEvent =
  | {
    type: "op";
    action: "create" | "copy" | "update" | "link" | "attrs" | "remove" | "backup";
    path: string;
    size?: number;
    target?: string;
    kind?: string;
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
    bytes: 0,
    errors: 0,
    vanished: 0,
  };
}

/** Options for {@linkcode applyPlan}. */
export interface ApplyOptions {
  /**
   * Copies running at once.
   * @default 8
   */
  jobs?: number;
  /**
   * The file-system layer.
   * @default denoFs
   */
  fs?: FsOps;
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
  /**
   * Absolute path of the backup folder (`--backup-dir`): every replica entry that a removal
   * or an overwrite would destroy is moved there instead (see {@linkcode BackupDir}).
   * @default undefined (entries are removed)
   */
  backupDir?: string;
  /**
   * When the run started: the timestamp of backup names that are taken.
   * @default new Date()
   */
  started?: Date;
  /**
   * Slot 0 counts the bytes of large files being copied, here and in the copy workers: each
   * chunk adds to it, and a copy that ends takes its bytes back (the `op` event then counts the
   * whole file). Over a SharedArrayBuffer; see lib/run/progress.ts.
   */
  progress?: BigInt64Array;
}

/** Temp files are named `.foldersync-<random>.tmp`; short, so that 255-byte names still fit. */
export const TEMP_PATTERN: RegExp = /^\.foldersync-[0-9a-z]{10}\.tmp$/;

function tempName(): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `.foldersync-${(random[0]! % 36 ** 5).toString(36).padStart(5, "0")}${
    (random[1]! % 36 ** 5).toString(36).padStart(5, "0")
  }.tmp`;
}

/** Thrown when a source file changed while it was being copied. */
class ChangedError extends Error {
  override name = "ChangedError";
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
 * Executes `plan` from `source` into `replica` and returns what it did.
 *
 * Needs read permission for `source` and write permission for `replica`. Never throws for
 * a single entry: each failure is reported through `onEvent` and counted in `errors`, and
 * everything else goes on. A directory that could not be created blocks only its subtree.
 *
 * @example Applying a plan
 * ```ts
 * const stats = await applyPlan(p, "/data/src", "/backup/src");
 * ```
 */
export async function applyPlan(
  plan: Plan,
  source: string,
  replica: string,
  options: ApplyOptions = {},
): Promise<Stats> {
  const applier = createApplier(source, replica, options);
  await applier.apply(plan);
  if (!options.signal?.aborted) await applier.finish(plan);
  return applier.stats;
}

/**
 * An {@linkcode Applier} for `source` into `replica`: the sync hands it each part of the plan
 * as the march produces it, so that a million new files never wait in memory at once. State
 * carries over between parts: a directory that could not be created blocks its subtree in
 * every later part.
 *
 * Needs read permission for `source` and write permission for `replica`. Never throws for a
 * single entry.
 *
 * @example Applying a plan in two parts
 * ```ts
 * const applier = createApplier("/data/src", "/backup/src");
 * await applier.apply(firstPart);
 * await applier.apply(rest);
 * await applier.finish(rest);
 * ```
 */
export function createApplier(source: string, replica: string, options: ApplyOptions = {}): Applier {
  const {
    jobs = 8,
    workers = Math.min(jobs, navigator.hardwareConcurrency ?? 2),
    fs = denoFs,
    signal,
    onEvent = () => {},
    backupDir,
    started = new Date(),
    progress,
  } = options;
  const stats = emptyStats();
  const backup = backupDir !== undefined ? new BackupDir(backupDir, { started }) : undefined;
  const failedDirs = new Set<string>();
  /** Entries whose removal failed: what was to replace them must not be put in their place. */
  const unremoved = new Set<string>();
  const at = (rel: string) => (rel === "" ? replica : join(replica, rel));
  const from = (rel: string) => (rel === "" ? source : join(source, rel));
  const fail = (path: string, error: unknown) => {
    if (signal?.aborted && isAbort(error, signal)) return; // a stopped run, not a failed entry
    stats.errors++;
    onEvent({ type: "error", path, message: describeError(error) });
  };
  /** True when source entry `rel` no longer exists: deleted while the run went on. */
  const sourceGone = (rel: string) =>
    fs.lstat(from(rel)).then(() => false, (error) => error instanceof Deno.errors.NotFound);
  const blocked = (rel: string) => {
    if (failedDirs.size === 0) return false;
    for (let p = parentOf(rel);; p = parentOf(p)) {
      if (failedDirs.has(p)) return true;
      if (p === "") return false;
    }
  };

  /** Runs `fn`, and once more after giving the owner write access to `dir` if it was denied. */
  const inWritableDir = async <T>(dir: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (error) {
      if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
      const info = await fs.lstat(dir).catch(() => undefined);
      const mode = (info?.mode ?? 0) & 0o7777;
      if (!info?.isDirectory || (mode & 0o700) === 0o700) throw error;
      await fs.chmod(dir, mode | 0o700);
      return await fn();
    }
  };

  /**
   * The one removal primitive: removes replica entry `action.path` (a directory only once it
   * is empty: its contents are planned before it, and nothing unseen is ever removed), or,
   * with a backup folder, moves it there.
   */
  const removeEntry = async (action: RemoveAction): Promise<void> => {
    const full = at(action.path);
    if (backup) {
      await inWritableDir(dirname(full), () => settle(() => backup.move(full, action.path, action.kind)));
      stats.backedUp++;
      onEvent({ type: "op", action: "backup", path: action.path, kind: action.kind });
      return;
    }
    await inWritableDir(dirname(full), () => fs.remove(full));
  };

  /**
   * Before an update or a new link target takes the place of replica entry `rel`: with a
   * backup folder, its present version goes there (the rename that follows keeps the replica
   * path atomic).
   */
  const keepOld = (rel: string): void => {
    if (!backup) return;
    if (backup.keep(at(rel), rel) === undefined) return;
    stats.backedUp++;
    onEvent({ type: "op", action: "backup", path: rel });
  };

  const apply = async (plan: Plan): Promise<void> => {
    // 0. Removals, children before parents, before anything is created: a stale entry frees
    //    its name (a type change, a name that differs from a new one only in case on a
    //    case-insensitive file system) and its space (a nearly full replica disk) first.
    for (const action of plan.removes) {
      await breathe();
      if (signal?.aborted) return;
      if (blocked(action.path)) continue;
      try {
        await removeEntry(action);
        stats.removed++;
        onEvent({ type: "op", action: "remove", path: action.path, kind: action.kind });
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) continue;
        unremoved.add(action.path);
        fail(action.path, error);
      }
    }

    // 1. Directories, parents first.
    for (const action of plan.mkdirs) {
      await breathe();
      if (signal?.aborted) return;
      if (blocked(action.path)) {
        failedDirs.add(action.path);
        continue;
      }
      if (action.replace && unremoved.has(action.path)) {
        failedDirs.add(action.path); // the old entry is still there: its error is logged
        continue;
      }
      const full = at(action.path);
      try {
        if (action.path === "") {
          await fs.mkdir(full); // the replica itself, never its parents
        } else {
          await inWritableDir(dirname(full), () => fs.mkdir(full, { mode: 0o700 }));
          stats.created++;
          onEvent({ type: "op", action: "create", path: action.path, kind: "dir" });
        }
      } catch (error) {
        failedDirs.add(action.path);
        fail(action.path, error);
      }
    }

    // 2. Files and links, `jobs` at a time.
    /**
     * Puts a new entry at `rel` the atomic way: `write` makes it under a temp name in the same
     * directory, `finish` gives it its metadata, and a rename puts it in place. Whatever fails,
     * no temp entry is left behind.
     */
    const install = async (
      rel: string,
      write: (tmp: string) => Promise<void>,
      finish: (tmp: string) => Promise<void>,
      overwrites = false,
    ) => {
      const dst = at(rel);
      const tmp = join(dirname(dst), tempName());
      let created = false;
      try {
        await inWritableDir(dirname(dst), () => {
          created = true; // a failed write may still leave a partial temp entry
          return write(tmp);
        });
        await finish(tmp);
        if (overwrites) keepOld(rel);
        await fs.rename(tmp, dst);
        created = false;
      } finally {
        if (created) await fs.remove(tmp).catch(() => {});
      }
    };

    /** Copies into `tmp`; stops between chunks once the run is aborted. */
    const copyInto = (entry: CopyAction, tmp: string) =>
      progress && entry.size > SMALL_FILE
        ? copyCounted(progress, (onProgress) => fs.copyFile(from(entry.path), tmp, entry.size, signal, onProgress))
        : fs.copyFile(from(entry.path), tmp, entry.size, signal);

    const copyOne = (entry: CopyAction) =>
      install(entry.path, (tmp) => copyInto(entry, tmp), async (tmp) => {
        const after = await fs.lstat(from(entry.path));
        const tmpInfo = await fs.lstat(tmp);
        if (
          !after.isFile || after.size !== entry.size || (after.mtime?.getTime() ?? 0) !== entry.mtimeMs ||
          tmpInfo.size !== entry.size
        ) {
          throw new ChangedError("Source file changed while it was being copied; will retry on the next run");
        }
        if (((tmpInfo.mode ?? 0) & 0o7777) !== entry.mode && Deno.build.os !== "windows") {
          await fs.chmod(tmp, entry.mode);
        }
        await fs.utime(tmp, after.atime ?? new Date(), new Date(entry.mtimeMs));
      }, entry.op === "update");

    const linkOne = (entry: LinkAction) =>
      install(
        entry.path,
        async (tmp) => {
          try {
            await fs.symlink(entry.target, tmp);
          } catch (error) {
            if (!(error instanceof Deno.errors.NotCapable)) throw error;
            throw new Error(
              "Cannot create a symbolic link with path-scoped permissions (a Deno rule): " +
                "grant plain --allow-read --allow-write to copy links",
              { cause: error },
            );
          }
        },
        (tmp) => fs.lutime(tmp, new Date(entry.mtimeMs), new Date(entry.mtimeMs)).catch(() => {}),
        entry.replace === "symlink",
      );

    // Plain copies go to parallel workers first; whatever they could not do (a read-only
    // directory, a full disk, a file that changed) takes the careful path below.
    let transfers = plan.transfers;
    if (workers > 0 && fs === denoFs) {
      transfers = await copyPlainInWorkers(transfers);
      if (signal?.aborted) return;
    }

    let next = 0;
    const worker = async () => {
      for (;;) {
        await breathe();
        if (next >= transfers.length || signal?.aborted) break;
        const action = transfers[next++]!;
        if (blocked(action.path) || (action.op !== "attrs" && action.replace && unremoved.has(action.path))) continue;
        try {
          switch (action.op) {
            case "copy":
            case "update": {
              const done = await copyOne(action).catch(async (error) => {
                if (!(error instanceof ChangedError)) throw error;
                // Written to while it was read: copy it once more as it is now, as rsync
                // redoes a file whose checksum did not match.
                const now = await fs.lstat(from(action.path));
                if (!now.isFile) throw error;
                const again = { ...action, size: now.size, mtimeMs: now.mtime?.getTime() ?? 0 };
                again.mode = (now.mode ?? action.mode) & 0o7777;
                await copyOne(again);
                return again;
              }) ?? action;
              if (action.op === "copy") stats.copied++;
              else stats.updated++;
              stats.bytes += done.size;
              onEvent({ type: "op", action: action.op, path: action.path, size: done.size });
              break;
            }
            case "link":
              await linkOne(action);
              stats.linked++;
              onEvent({ type: "op", action: "link", path: action.path, target: action.target });
              break;
            case "attrs": {
              const full = at(action.path);
              const mtime = new Date(action.mtimeMs);
              if (action.kind === "symlink") {
                await fs.lutime(full, mtime, mtime);
              } else {
                const info = await fs.lstat(full);
                if (!info.isFile) throw new ChangedError("Replica entry changed during the sync");
                if (((info.mode ?? 0) & 0o7777) !== action.mode && Deno.build.os !== "windows") {
                  await fs.chmod(full, action.mode);
                }
                await fs.utime(full, info.atime ?? new Date(), mtime);
              }
              stats.attrs++;
              onEvent({ type: "op", action: "attrs", path: action.path });
              break;
            }
          }
        } catch (error) {
          if ((action.op === "copy" || action.op === "update") && await sourceGone(action.path)) {
            stats.vanished++;
            onEvent({ type: "vanished", path: action.path });
          } else {
            fail(action.path, error);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, transfers.length)) }, worker));
    if (signal?.aborted) return;

    /** Hands plain copies to the worker pool; returns the transfers left for the careful path. */
    async function copyPlainInWorkers(all: Plan["transfers"]): Promise<Plan["transfers"]> {
      const plain: CopyAction[] = [];
      const rest: Plan["transfers"] = [];
      for (const action of all) {
        // An update with a backup folder keeps the old file first: not a plain copy.
        const isPlain = (action.op === "copy" || (action.op === "update" && !backup)) && action.replace === undefined;
        if (isPlain && !blocked(action.path)) plain.push(action);
        else rest.push(action);
      }
      if (plain.length < MIN_POOL_FILES) return all;
      const copyJob = (i: number): CopyJob => {
        const action = plain[i]!;
        const dst = at(action.path);
        return {
          src: from(action.path),
          dst,
          tmp: join(dirname(dst), tempName()),
          size: action.size,
          mode: action.mode,
          mtimeMs: action.mtimeMs,
        };
      };
      const done = new Uint8Array(plain.length);
      await runInWorkers<CopyJob, CopyResult>(COPY_WORKER, plain.length, copyJob, {
        workers,
        ...(signal ? { signal } : {}),
        weight: (i) => plain[i]!.size,
        ...(progress ? { init: { progress } } : {}),
        // A worker stopped mid-copy (on abort, or by dying) leaves its temp file behind.
        onUnfinished: (_i, job) => void fs.remove(job.tmp).catch(() => {}),
        onResult: (i, result) => {
          if (result.streamed) Atomics.sub(progress!, 0, BigInt(result.streamed));
          if (!result.ok) return;
          done[i] = 1;
          const action = plain[i]!;
          if (action.op === "copy") stats.copied++;
          else stats.updated++;
          stats.bytes += action.size;
          onEvent({ type: "op", action: action.op, path: action.path, size: action.size });
        },
      });
      for (let i = 0; i < plain.length; i++) if (!done[i]) rest.push(plain[i]!);
      return rest;
    }
  };

  const finish = async (plan: Plan): Promise<void> => {
    // 4. Directory attributes, deepest first, so that later changes do not disturb them.
    for (const entry of plan.dirAttrs) {
      if (signal?.aborted) return;
      const rel = entry.path;
      if (failedDirs.has(rel) || blocked(rel)) continue;
      const full = at(rel);
      try {
        if (Deno.build.os !== "windows") await fs.chmod(full, entry.mode);
        const mtime = new Date(entry.mtimeMs);
        await fs.utime(full, mtime, mtime);
        onEvent({ type: "debug", path: rel, message: "directory attributes set" });
      } catch (error) {
        fail(rel, error);
      }
    }
  };
  const refuse = (removes: readonly RemoveAction[]) => {
    for (const r of removes) unremoved.add(r.path);
  };
  return { stats, apply, finish, refuse };
}

/** Runs one copy that adds each chunk's bytes to `slot` 0, and takes them back when it ends. */
async function copyCounted(
  slot: BigInt64Array,
  copy: (onProgress: (bytes: number) => void) => Promise<void>,
): Promise<void> {
  let streamed = 0;
  try {
    await copy((done) => {
      Atomics.add(slot, 0, BigInt(done - streamed));
      streamed = done;
    });
  } finally {
    Atomics.sub(slot, 0, BigInt(streamed));
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
