/**
 * The operations on a local replica folder that the applier's phases call: remove (or move
 * aside), make a directory, put a file or link in place through a temp name and a rename, set
 * attributes, and copy plain files in parallel workers.
 *
 * Never writes through a symbolic link: every replica path it writes was either created by
 * this run or seen by lstat as a real directory, temp files are created with O_EXCL, and a
 * directory that denies writing is opened up for the owner only, and only when needed.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { AttrsAction, CopyAction, DirAttrs, LinkAction, RemoveAction } from "../../engine/plan.ts";
import type { CopyJob, CopyResult } from "./copy_worker.ts";
import { runInWorkers } from "../../pool.ts";
import { copyFile, SMALL_FILE } from "./copy_file.ts";
import { BackupDir } from "./backup.ts";
import { type Entry, ListingBatch, toEntry } from "../../engine/listing.ts";
import {
  type Capabilities,
  type CopyResult as ReplicaCopyResult,
  type ListOptions,
  type Replica,
  tempName,
} from "../replica.ts";
import { listDirectory } from "./scan.ts";
import { lockReplica } from "./lock.ts";
import { relativeInside } from "../../config.ts";

/** The file-system calls the replica makes; replaceable in tests to inject faults (ENOSPC, EACCES). */
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

/**
 * The real file system, through Deno's APIs (and node:fs for lutimes, which Deno lacks).
 *
 * Metadata calls are synchronous inside async functions: per-call async overhead costs more
 * than these syscalls (measured: 5,000 lstats, 30 ms sync against 335 ms awaited). Files are
 * copied by copy_file.ts: into a new file opened with O_EXCL, so a temp name is never
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

export { TEMP_PATTERN } from "../replica.ts";

/** Thrown when a source file changed while it was being copied. */
export class ChangedError extends Error {
  override name = "ChangedError";
}

const COPY_WORKER = new URL("./copy_worker.ts", import.meta.url);

/**
 * Below this many plain copies, starting workers costs more than it saves: a copy worker
 * takes ~16 ms to start and saves ~35 us a file (measured on 4 KiB files).
 */
const MIN_POOL_FILES = 512;

/** Options for {@linkcode LocalReplica}. */
export interface LocalReplicaOptions {
  /**
   * The file-system layer.
   * @default denoFs
   */
  fs?: FsOps;
  /** Stops copies between chunks, and the copy workers at once. */
  signal?: AbortSignal | undefined;
  /** Absolute path of the folder where removed and overwritten entries go instead (`--backup-dir`). */
  backupDir?: string | undefined;
  /**
   * When the run started: the timestamp of backup names that are taken.
   * @default new Date()
   */
  started?: Date | undefined;
  /** Slot 0 counts the bytes of large files being copied (see lib/run/progress.ts). */
  progress?: BigInt64Array | undefined;
}

/**
 * A local replica folder, filled from a local source folder: paths are relative, `/`-separated,
 * `""` is the root.
 *
 * Needs read permission for `source` and write permission for `replica`.
 *
 * @example Putting one file in place
 * ```ts
 * const replica = new LocalReplica("/data/src", "/backup/src");
 * await replica.copy({ op: "copy", path: "a.txt", size: 3, mtimeMs: 1000, mode: 0o644 });
 * ```
 */
export class LocalReplica implements Replica {
  /** Milliseconds, modes, directory and link times: everything is kept. */
  readonly caps: Capabilities = { modes: true, dirTimes: true, linkTimes: true, mtimeResolutionMs: 1 };
  readonly display: string;
  readonly protect: string | undefined;
  readonly fs: FsOps;
  #source: string;
  #replica: string;
  #signal: AbortSignal | undefined;
  #backup: BackupDir | undefined;
  #progress: BigInt64Array | undefined;

  constructor(source: string, replica: string, options: LocalReplicaOptions = {}) {
    this.#source = source;
    this.#replica = replica;
    this.fs = options.fs ?? denoFs;
    this.#signal = options.signal;
    const { backupDir, started } = options;
    this.#backup = backupDir !== undefined ? new BackupDir(backupDir, started ? { started } : {}) : undefined;
    // A backup folder inside the replica is left alone (checkPaths has refused the replica itself).
    this.protect = backupDir !== undefined ? relativeInside(replica, backupDir) : undefined;
    this.#progress = options.progress;
    this.display = replica;
  }

  /** The root folder's entry, or undefined when it is missing. */
  root(): Promise<Entry | undefined> {
    try {
      return Promise.resolve(toEntry(Deno.statSync(this.#replica)));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return Promise.resolve(undefined);
      return Promise.reject(error);
    }
  }

  /**
   * Lists one directory in this thread (see {@linkcode listDirectory}), opening up a folder
   * that denies listing when asked to. There is no read-ahead: on two cores a third thread
   * walking the replica cost more CPU time and memory than it saved in wall time.
   */
  list(dir: string, options: ListOptions): Promise<ListingBatch> {
    const batch = new ListingBatch();
    try {
      listDirectory(batch, this.#replica, dir, options.fixPermissions, options.filter);
    } catch (error) {
      return Promise.reject(error);
    }
    return Promise.resolve(batch);
  }

  /** Creates the root folder, with its parents only when asked (`--mkpath`). */
  async createRoot(parents: boolean): Promise<void> {
    try {
      await Deno.mkdir(this.#replica, { recursive: parents });
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
  }

  /** An advisory lock on the root folder (see {@linkcode lockReplica}). */
  async lock(): Promise<AsyncDisposable> {
    const held = await lockReplica(this.#replica);
    return { [Symbol.asyncDispose]: () => Promise.resolve(held[Symbol.dispose]()) };
  }

  /** Nothing to close: local calls hold no connection. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** True when removed and overwritten entries are moved aside. */
  get backsUp(): boolean {
    return this.#backup !== undefined;
  }

  /** The absolute replica path of `rel`. */
  at(rel: string): string {
    return rel === "" ? this.#replica : join(this.#replica, rel);
  }

  /** The absolute source path of `rel`. */
  from(rel: string): string {
    return rel === "" ? this.#source : join(this.#source, rel);
  }

  /** True when source entry `rel` no longer exists: deleted while the run went on. */
  sourceGone(rel: string): Promise<boolean> {
    return this.fs.lstat(this.from(rel)).then(() => false, (error) => error instanceof Deno.errors.NotFound);
  }

  /**
   * The one removal primitive: removes replica entry `action.path` (a directory only once it
   * is empty: its contents are planned before it, and nothing unseen is ever removed), or,
   * with a backup folder, moves it there. Returns true when it was moved aside.
   */
  async remove(action: RemoveAction): Promise<boolean> {
    const full = this.at(action.path);
    const backup = this.#backup;
    if (backup) {
      await this.#inWritableDir(dirname(full), () => settle(() => backup.move(full, action.path, action.kind)));
      return true;
    }
    await this.#inWritableDir(dirname(full), () => this.fs.remove(full));
    return false;
  }

  /** Makes directory `rel` (owner-only until its attributes are set); the root never with parents. */
  async mkdir(rel: string): Promise<void> {
    const full = this.at(rel);
    if (rel === "") return await this.fs.mkdir(full);
    await this.#inWritableDir(dirname(full), () => this.fs.mkdir(full, { mode: 0o700 }));
  }

  /**
   * Copies source file `action.path` into place with its mode and mtime; a file written to
   * while it was read is copied once more as it now is. Returns the bytes copied and whether
   * the old version was backed up.
   */
  async copy(action: CopyAction): Promise<ReplicaCopyResult> {
    try {
      return { size: action.size, backedUp: await this.#copyOnce(action) };
    } catch (error) {
      if (!(error instanceof ChangedError)) throw error;
      // As rsync redoes a file whose checksum did not match.
      const now = await this.fs.lstat(this.from(action.path));
      if (!now.isFile) throw error;
      const again: CopyAction = { ...action, size: now.size, mtimeMs: now.mtime?.getTime() ?? 0 };
      again.mode = (now.mode ?? action.mode) & 0o7777;
      return { size: again.size, backedUp: await this.#copyOnce(again) };
    }
  }

  /** Creates or replaces a symbolic link; returns whether the old link was backed up. */
  link(action: LinkAction): Promise<boolean> {
    const fs = this.fs;
    return this.#install(
      action.path,
      async (tmp) => {
        try {
          await fs.symlink(action.target, tmp);
        } catch (error) {
          if (!(error instanceof Deno.errors.NotCapable)) throw error;
          throw new Error(
            "Cannot create a symbolic link with path-scoped permissions (a Deno rule): " +
              "grant plain --allow-read --allow-write to copy links",
            { cause: error },
          );
        }
      },
      (tmp) => fs.lutime(tmp, new Date(action.mtimeMs), new Date(action.mtimeMs)).catch(() => {}),
      action.replace === "symlink",
    );
  }

  /** Sets the mode and mtime of a file, or the mtime of a link, whose content is already equal. */
  async setAttrs(action: AttrsAction): Promise<void> {
    const full = this.at(action.path);
    const mtime = new Date(action.mtimeMs);
    if (action.kind === "symlink") return await this.fs.lutime(full, mtime, mtime);
    const info = await this.fs.lstat(full);
    if (!info.isFile) throw new ChangedError("Replica entry changed during the sync");
    if (((info.mode ?? 0) & 0o7777) !== action.mode && Deno.build.os !== "windows") {
      await this.fs.chmod(full, action.mode);
    }
    await this.fs.utime(full, info.atime ?? new Date(), mtime);
  }

  /** Sets a directory's mode and mtime. */
  async setDirAttrs(entry: DirAttrs): Promise<void> {
    const full = this.at(entry.path);
    if (Deno.build.os !== "windows") await this.fs.chmod(full, entry.mode);
    const mtime = new Date(entry.mtimeMs);
    await this.fs.utime(full, mtime, mtime);
  }

  /**
   * With a backup folder, the present version of `rel` goes there before an update or a new
   * link target takes its place (the rename that follows keeps the replica path atomic).
   * Returns true when something was backed up.
   */
  keepOld(rel: string): boolean {
    return this.#backup !== undefined && this.#backup.keep(this.at(rel), rel) !== undefined;
  }

  /**
   * Copies the plain files among `actions` (new or updated files with nothing to replace, and,
   * with a backup folder, no update) in parallel workers with synchronous calls, when there are
   * enough of them to pay for the workers. Calls `done` for each one copied; returns the
   * actions left for the careful path (everything else, and what a worker could not do: a
   * read-only directory, a full disk, a file that changed).
   */
  async copyMany<T extends { op: string; path: string }>(
    actions: readonly T[],
    how: { workers: number; skip: (action: T) => boolean; done: (action: CopyAction) => void },
  ): Promise<T[]> {
    if (how.workers <= 0 || this.fs !== denoFs) return [...actions];
    const plain: CopyAction[] = [];
    const rest: T[] = [];
    for (const action of actions) {
      const copy = action as unknown as CopyAction;
      const isPlain = (copy.op === "copy" || (copy.op === "update" && !this.#backup)) && copy.replace === undefined;
      if (isPlain && !how.skip(action)) plain.push(copy);
      else rest.push(action);
    }
    if (plain.length < MIN_POOL_FILES) return [...actions];
    const progress = this.#progress;
    const copyJob = (i: number): CopyJob => {
      const action = plain[i]!;
      const dst = this.at(action.path);
      return {
        src: this.from(action.path),
        dst,
        tmp: join(dirname(dst), tempName()),
        size: action.size,
        mode: action.mode,
        mtimeMs: action.mtimeMs,
      };
    };
    const done = new Uint8Array(plain.length);
    await runInWorkers<CopyJob, CopyResult>(COPY_WORKER, plain.length, copyJob, {
      workers: how.workers,
      ...(this.#signal ? { signal: this.#signal } : {}),
      weight: (i) => plain[i]!.size,
      ...(progress ? { init: { progress } } : {}),
      // A worker stopped mid-copy (on abort, or by dying) leaves its temp file behind.
      onUnfinished: (_i, job) => void this.fs.remove(job.tmp).catch(() => {}),
      onResult: (i, result) => {
        if (result.streamed) Atomics.sub(progress!, 0, BigInt(result.streamed));
        if (!result.ok) return;
        done[i] = 1;
        how.done(plain[i]!);
      },
    });
    for (let i = 0; i < plain.length; i++) if (!done[i]) rest.push(plain[i]! as unknown as T);
    return rest;
  }

  /** One copy attempt; throws {@linkcode ChangedError} when the source changed meanwhile. */
  #copyOnce(entry: CopyAction): Promise<boolean> {
    const fs = this.fs;
    const from = this.from(entry.path);
    return this.#install(entry.path, (tmp) => this.#copyInto(from, tmp, entry.size), async (tmp) => {
      const after = await fs.lstat(from);
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
  }

  /** Copies into `tmp`; stops between chunks once the run is aborted; counts large files' chunks. */
  #copyInto(from: string, tmp: string, size: number): Promise<void> {
    const progress = this.#progress;
    return progress && size > SMALL_FILE
      ? copyCounted(progress, (onProgress) => this.fs.copyFile(from, tmp, size, this.#signal, onProgress))
      : this.fs.copyFile(from, tmp, size, this.#signal);
  }

  /**
   * Puts a new entry at `rel` the atomic way: `write` makes it under a temp name in the same
   * directory, `finish` gives it its metadata, and a rename puts it in place. Whatever fails,
   * no temp entry is left behind. Returns whether the old version was backed up first.
   */
  async #install(
    rel: string,
    write: (tmp: string) => Promise<void>,
    finish: (tmp: string) => Promise<void>,
    overwrites: boolean,
  ): Promise<boolean> {
    const dst = this.at(rel);
    const tmp = join(dirname(dst), tempName());
    let created = false;
    try {
      await this.#inWritableDir(dirname(dst), () => {
        created = true; // a failed write may still leave a partial temp entry
        return write(tmp);
      });
      await finish(tmp);
      const backedUp = overwrites && this.keepOld(rel);
      await this.fs.rename(tmp, dst);
      created = false;
      return backedUp;
    } finally {
      if (created) await this.fs.remove(tmp).catch(() => {});
    }
  }

  /** Runs `fn`, and once more after giving the owner write access to `dir` if it was denied. */
  async #inWritableDir<T>(dir: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
      const info = await this.fs.lstat(dir).catch(() => undefined);
      const mode = (info?.mode ?? 0) & 0o7777;
      if (!info?.isDirectory || (mode & 0o700) === 0o700) throw error;
      await this.fs.chmod(dir, mode | 0o700);
      return await fn();
    }
  }
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
