/**
 * A folder on another host over SFTP (OpenSSH's sftp-server or internal-sftp, or any SFTP v3
 * server), through the system's OpenSSH client (see connect.ts), read as a source or written
 * as a replica. Loaded only when an argument names a host: `lib/backend/open.ts` imports this
 * module dynamically.
 *
 * Round trips are what a remote folder costs, so requests are pipelined: a small file is
 * put in place in three round trips (open the temp file; write, set attributes and close;
 * rename), 64 files at once, large files keep 16 MiB of writes in flight, files are read with
 * several READ requests in flight (see source_file.ts), and listings are read ahead of the
 * walk, the source's as the replica's (see read_ahead.ts). One session carries it all: a
 * second one (a second sftp-server process on the host) gained nothing for 5,000 small files
 * on two cores (wall 1.00x, CPU 1.05x; whole-process A/B, 9 runs, medians): this client (deno
 * and ssh, 1.1 to 1.2 s of CPU for them) is the limit before the server's sshd (0.6 to 0.8 s)
 * is.
 *
 * Never writes through a symbolic link: files and links are made under fresh temp names
 * opened exclusively and renamed over their final name, and directories written into were
 * listed as real directories or made by this run.
 *
 * @module
 */

import { posix } from "node:path";
import { Buffer } from "node:buffer";
import { ConnectionLostError, errorLine, UsageError } from "../../model/errors.ts";
import { logger } from "../../log.ts";
import {
  compareNames,
  type Entry,
  type EntryKind,
  FAILED,
  INCOMPLETE,
  ListingBatch,
  VANISHED,
} from "../../model/listing.ts";
import type { PathFilter } from "../../model/filter.ts";
import type { AttrsAction, CopyAction, DirAttrs, LinkAction, RemoveAction } from "../../model/actions.ts";
import { getHasher } from "../../content/hash.ts";
import { type HashName } from "../../model/hash_name.ts";
import { ChangedError } from "../../model/errors.ts";
import { SMALL_FILE } from "../local/copy_file.ts";
import { type Capabilities } from "../../model/capabilities.ts";
import {
  type Backend,
  type BackendOptions,
  type CopyResult,
  type FileReader,
  type ListOptions,
  type SourceFile,
} from "../backend.ts";
import { LOCK_NAME } from "../../model/lock.ts";
import { type LockEntry, takeRemoteLock } from "../remote_lock.ts";
import { tempName } from "../../model/names.ts";
import { parseSftp } from "./target.ts";
import { type SftpTarget } from "../target.ts";
import { openSession, planSsh, type SshPlan } from "./connect.ts";
import {
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  type SftpSession,
  type SftpStats,
  type WriteFileOptions,
} from "./session.ts";
import { ReadAhead } from "./read_ahead.ts";
import { mkdirs, RemoteBackup, sftpBackupStore } from "./remote_backup.ts";
import { formatRecords, pruneBackups, type PruneOptions } from "../backup_journal.ts";
import { sftpSourceFile } from "./source_file.ts";

/**
 * Bytes of writes in flight for one large file: 64 requests of 255 KiB where the server takes
 * them (OpenSSH's limits@openssh.com), about 500 of ssh2's 31,952 bytes elsewhere.
 */
const WRITE_WINDOW_BYTES = 16 << 20;
/** Bytes read ahead while hashing a large remote file. */
const READ_SPAN = 4 << 20;
/** readlink requests in flight while listing one directory. */
const READLINK_WINDOW = 32;

/** What tests and tools may set besides {@linkcode BackendOptions}. */
export interface SftpInternals {
  /**
   * Listings read ahead at once; 0 turns the read-ahead off.
   * @default 32
   */
  readAhead?: number;
}

/**
 * Runs ssh to the host of `target` (which logs in and checks the host key as the user's
 * OpenSSH configuration says) and returns the folder there, as a source or a replica. Nothing
 * is written on the host before every check has passed, and nothing at all with
 * `options.readOnly` (a source, a dry run, verify).
 *
 * Needs `--allow-run=ssh` (ssh itself reads ~/.ssh, talks to the agent and the network), and
 * read permission for the local files a replica is sent.
 *
 * @throws {UsageError} When ssh is not installed, for an unknown host name, a refused or
 * timed-out connection, failed authentication, an unknown, changed or revoked host key, a
 * server without the sftp subsystem, or a `--backup-dir` on another host; the message is one
 * line.
 * @example Opening a replica, and a source
 * ```ts
 * const replica = await openSftpReplica(parseTarget("sftp://backup@nas/srv/photos") as SftpTarget, {
 *   jobs: 8,
 *   readOnly: false,
 * });
 * const source = await openSftpReplica(parseTarget("deploy@web1:/var/www") as SftpTarget, {
 *   jobs: 8,
 *   readOnly: true,
 * });
 * ```
 */
export async function openSftpReplica(
  target: SftpTarget,
  options: BackendOptions,
  internals: SftpInternals = {},
): Promise<Backend> {
  const plan = await planSsh(target, options);
  const session = await openSession(plan);
  try {
    const home = target.path.startsWith("/") ? "/" : await session.realpath(".");
    const root = posix.resolve(home, target.path);
    const backup = options.backupDir !== undefined
      ? backupPlace(options.backupDir, root, target, plan, home)
      : undefined;
    return new SftpBackend(target, options, internals, session, root, backup);
  } catch (error) {
    await session.end();
    throw error;
  }
}

/** Where `--backup-dir` puts entries on the host, and the relative path to protect when inside the root. */
function backupPlace(
  backupDir: string,
  root: string,
  target: SftpTarget,
  plan: SshPlan,
  home: string,
): { path: string; protect?: string } {
  let path = backupDir;
  let base = root;
  // Another backend's URL (s3://...) cannot be on this host.
  const elsewhere = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(backupDir) && !/^sftp:\/\//i.test(backupDir);
  if (elsewhere) {
    throw new UsageError(`Backup directory must be on the replica's host '${target.host}': '${backupDir}'`);
  }
  const parsed = parseSftp(backupDir);
  if (parsed) {
    const samePort = (parsed.port ?? plan.resolved.port) === plan.resolved.port;
    const sameHost = parsed.host === target.host || parsed.host === plan.resolved.hostName;
    if (!sameHost || !samePort) {
      throw new UsageError(`Backup directory must be on the replica's host '${target.host}': '${backupDir}'`);
    }
    path = parsed.path;
    base = home; // host:dir is relative to the login folder, as for the replica
  }
  const full = posix.resolve(base, path);
  if (full === root) throw new UsageError(`Backup directory is the replica itself: '${backupDir}'`);
  if (full.startsWith(`${root === "/" ? "" : root}/`)) {
    return { path: full, protect: full.slice(root === "/" ? 1 : root.length + 1) };
  }
  return { path: full };
}

/** The kind of an SFTP mode. */
function kindOfMode(mode: number): EntryKind {
  const type = mode & S_IFMT;
  return type === S_IFREG ? "file" : type === S_IFDIR ? "dir" : type === S_IFLNK ? "symlink" : "other";
}

function toEntry(stats: SftpStats): Entry {
  const kind = kindOfMode(stats.mode);
  return { kind, size: kind === "dir" ? 0 : stats.size, mtimeMs: stats.mtime * 1000, mode: stats.mode & 0o7777 };
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/** A folder on an SFTP host, a source or a replica; see {@linkcode openSftpReplica}. */
class SftpBackend implements Backend {
  readonly display: string;
  readonly caps: Capabilities;
  readonly protect: string | undefined;
  readonly backsUp: boolean;
  #options: BackendOptions;
  #session: SftpSession;
  #root: string;
  #backup: RemoteBackup | undefined;
  #ahead: ReadAhead | undefined;
  #filter: PathFilter | undefined;
  #posixRename: boolean;
  /** The run set the root's attributes: the lock's removal keeps them, not those from before the lock. */
  #rootTimesSet = false;
  /** The root's attributes before this run's lock entry moved its mtime. */
  #rootBeforeLock: SftpStats | undefined;
  #warnedRename = false;
  /** Releases the lock this replica holds; undefined when it holds none. */
  #release: (() => Promise<void>) | undefined;

  constructor(
    target: SftpTarget,
    options: BackendOptions,
    internals: SftpInternals,
    session: SftpSession,
    root: string,
    backup: { path: string; protect?: string } | undefined,
  ) {
    this.display = target.display;
    this.#options = options;
    this.#session = session;
    this.#root = root;
    this.caps = {
      modes: true,
      dirTimes: true,
      linkTimes: session.has("lsetstat@openssh.com"),
      mtimeResolutionMs: 1000,
      // A small file costs 3 round trips: 64 at once (1,000 x 4 KiB: 8 at once 1.96 s, 32 1.03 s; 5,000 files of 1 to
      // 8 KiB: 64 at once 0.91x the wall time of 32, 128 0.94x that of 64 for up to twice the memory).
      jobs: 64,
    };
    this.#posixRename = session.has("posix-rename@openssh.com");
    this.protect = backup?.protect;
    this.backsUp = backup !== undefined;
    if (backup !== undefined) {
      this.#backup = new RemoteBackup(session, backup.path, options.started ?? new Date());
    }
    const protect = this.protect;
    const readAhead = internals.readAhead ?? 32;
    if (readAhead > 0) {
      this.#ahead = new ReadAhead((dir) => this.#listDirectory(dir), {
        concurrency: readAhead,
        ...(protect !== undefined ? { skip: (dir: string) => dir === protect || dir.startsWith(`${protect}/`) } : {}),
      });
    }
  }

  /** The absolute remote path of `rel`. */
  #at(rel: string): string {
    if (rel === "") return this.#root;
    return this.#root === "/" ? `/${rel}` : `${this.#root}/${rel}`;
  }

  #writable(): void {
    if (this.#options.readOnly) throw new Error(`Replica is open read-only: '${this.display}'`);
  }

  async root(): Promise<Entry | undefined> {
    try {
      const entry = toEntry(await this.#session.stat(this.#root));
      // The lock entry moved the root's mtime, and its release puts it back: the root is what it was.
      if (this.#rootBeforeLock) entry.mtimeMs = this.#rootBeforeLock.mtime * 1000;
      return entry;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
  }

  async list(dir: string, options: ListOptions): Promise<ListingBatch> {
    this.#filter = options.filter;
    const ahead = this.#ahead;
    if (ahead === undefined) return await this.#listDirectory(dir);
    return await (ahead.take(dir) ?? ahead.listNow(dir));
  }

  /** Read-ahead hits and misses so far, for measurements. */
  get readAheadStats(): { hits: number; misses: number } {
    return { hits: this.#ahead?.hits ?? 0, misses: this.#ahead?.misses ?? 0 };
  }

  /** One directory's listing, sorted, filtered; problems recorded, not thrown (but for the root). */
  async #listDirectory(dir: string): Promise<ListingBatch> {
    const session = this.#session;
    const batch = new ListingBatch();
    const k = batch.begin(dir);
    const full = this.#at(dir);
    let entries;
    try {
      entries = await session.readdir(full);
    } catch (error) {
      if (dir === "" || error instanceof ConnectionLostError) throw error;
      if (error instanceof Deno.errors.NotFound) {
        batch.flags[k]! |= VANISHED;
        batch.problems.push({ path: dir, message: "vanished", directory: true, vanished: true });
      } else {
        batch.flags[k]! |= FAILED;
        batch.problems.push({ path: dir, message: `Cannot read directory: ${errorLine(error)}`, directory: true });
      }
      return batch;
    }
    const prefix = dir === "" ? "" : `${dir}/`;
    const filter = this.#filter;
    const kept = entries.filter((entry) => {
      if (dir === "" && entry.filename === LOCK_NAME) return false;
      if (entry.filename.includes("\uFFFD")) {
        batch.flags[k]! |= INCOMPLETE;
        batch.problems.push({
          path: prefix + entry.filename,
          message: "Name is not valid UTF-8 and cannot be copied (names are read as UTF-8 text)",
        });
        return false;
      }
      return !filter?.excludes(prefix + entry.filename, (entry.attrs.mode & S_IFMT) === S_IFDIR);
    });
    kept.sort((a, b) => compareNames(a.filename, b.filename));
    const targets = new Map<string, string>();
    const links = kept.filter((entry) => (entry.attrs.mode & S_IFMT) === S_IFLNK);
    const gone = new Set<string>();
    let next = 0;
    const reader = async () => {
      while (next < links.length) {
        const name = links[next++]!.filename;
        try {
          targets.set(name, await session.readlink(`${full}/${name}`));
        } catch (error) {
          if (error instanceof ConnectionLostError) throw error;
          gone.add(name);
          if (error instanceof Deno.errors.NotFound) {
            batch.problems.push({ path: prefix + name, message: "vanished", vanished: true });
          } else {
            batch.flags[k]! |= INCOMPLETE;
            batch.problems.push({ path: prefix + name, message: `Cannot read link: ${errorLine(error)}` });
          }
        }
      }
    };
    if (links.length > 0) {
      await Promise.all(Array.from({ length: Math.min(READLINK_WINDOW, links.length) }, reader));
    }
    for (const entry of kept) {
      if (gone.has(entry.filename)) continue;
      const item = toEntry(entry.attrs);
      const target = targets.get(entry.filename);
      if (target !== undefined) item.target = target;
      batch.push(entry.filename, item);
    }
    return batch;
  }

  /** The entry at `rel` now (lstat; a link's target is not read), or undefined when there is none. */
  async stat(rel: string): Promise<Entry | undefined> {
    try {
      return toEntry(await this.#session.lstat(this.#at(rel)));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
  }

  /** File `entry.path` of this folder, read over this connection (see {@linkcode sftpSourceFile}). */
  file(entry: { path: string; size: number; mtimeMs: number; mode: number }): SourceFile {
    return sftpSourceFile(this.#session, this.#at(entry.path), entry);
  }

  async remove(action: RemoveAction): Promise<boolean> {
    this.#writable();
    const full = this.#at(action.path);
    if (action.kind === "dir") this.#ahead?.forget(action.path);
    if (this.#backup && !action.leftover) {
      await this.#backup.move(full, action.path, action.kind);
      return true;
    }
    if (action.kind === "dir") await this.#session.rmdir(full);
    else await this.#session.unlink(full);
    return false;
  }

  async mkdir(rel: string): Promise<void> {
    this.#writable();
    this.#ahead?.forget(rel);
    await this.#session.mkdir(this.#at(rel), rel === "" ? {} : { mode: 0o700 });
  }

  async copy(action: CopyAction, from: SourceFile): Promise<CopyResult> {
    this.#writable();
    return { size: action.size, backedUp: await this.#copyOnce(action, from) };
  }

  /**
   * One upload attempt from any source: a local file is read from disk straight into the
   * WRITE packets; another backend's file through its reader, as many packets read and
   * written at once as the write window holds. Throws {@linkcode ChangedError} when the
   * source changed meanwhile, what `from` throws when it is gone.
   */
  async #copyOnce(entry: CopyAction, from: SourceFile): Promise<boolean> {
    const session = this.#session;
    const signal = this.#options.signal;
    signal?.throwIfAborted();
    const small = entry.size <= SMALL_FILE;
    const local = from.localPath;
    const dst = this.#at(entry.path);
    const tmp = `${posix.dirname(dst)}/${tempName()}`;
    let data: Uint8Array | undefined;
    let file: Deno.FsFile | undefined;
    let reader: FileReader | undefined;
    let handle: Buffer | undefined;
    let created = false;
    try {
      // Read (or opened) before anything is created on the host: a vanished source leaves nothing behind.
      if (local !== undefined) {
        // Small files are read synchronously: an async read costs a thread hand-off, more than the read.
        if (small) data = Deno.readFileSync(local);
        else file = await Deno.open(local, { read: true });
      } else {
        reader = await from.open(signal);
        if (small) data = await readWhole(reader, entry.size);
      }
      handle = await session.open(tmp, "wx", { mode: 0o600 });
      created = true;
      const opened = handle;
      const written = data !== undefined
        ? await writeAll(session, opened, tmp, data)
        : await this.#counted((options) =>
          file !== undefined
            ? session.writeFile(opened, tmp, file, options)
            : session.writeFrom(opened, tmp, (into, at) => reader!.read(at, into), entry.size, options)
        );
      const attrs = { mode: entry.mode, atime: seconds(Date.now()), mtime: seconds(entry.mtimeMs) };
      handle = undefined;
      await Promise.all([session.fsetstat(opened, attrs, tmp), session.close(opened, tmp), from.check()]);
      if (written !== entry.size) {
        throw new ChangedError("Source file changed while it was being copied; will retry on the next run");
      }
      signal?.throwIfAborted();
      const backedUp = entry.op === "update" && await this.#keepOld(entry.path);
      await this.#rename(tmp, dst);
      created = false;
      return backedUp;
    } finally {
      file?.close();
      await reader?.close();
      if (handle !== undefined) await session.close(handle, tmp).catch(() => {});
      if (created && !session.lost) await session.unlink(tmp).catch(() => {});
    }
  }

  /** Streams a large file: WRITE_WINDOW_BYTES of writes in flight; counts progress; stops on abort. */
  async #counted(write: (options: WriteFileOptions) => Promise<number>): Promise<number> {
    const progress = this.#options.progress;
    let done = 0;
    try {
      return await write({
        window: WRITE_WINDOW_BYTES,
        signal: this.#options.signal,
        onWritten: (bytes) => {
          done += bytes;
          if (progress) Atomics.add(progress, 0, BigInt(bytes));
        },
      });
    } finally {
      if (progress) Atomics.sub(progress, 0, BigInt(done));
    }
  }

  /** Puts `tmp` in place of `dst`: rename(2) over it, where the server offers it. */
  async #rename(tmp: string, dst: string): Promise<void> {
    const session = this.#session;
    if (this.#posixRename) return await session.posixRename(tmp, dst);
    if (!this.#warnedRename) {
      this.#warnedRename = true;
      logger.warn(
        `The SFTP server of '${this.display}' lacks posix-rename@openssh.com: an updated entry is removed, ` +
          "then the new one renamed into place (not atomic)",
      );
    }
    try {
      await session.unlink(dst);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await session.rename(tmp, dst);
  }

  /** With a backup folder, the present version of `rel` goes there first. */
  async #keepOld(rel: string): Promise<boolean> {
    return this.#backup !== undefined && await this.#backup.keep(this.#at(rel), rel) !== undefined;
  }

  async link(action: LinkAction): Promise<boolean> {
    this.#writable();
    const session = this.#session;
    const dst = this.#at(action.path);
    const tmp = `${posix.dirname(dst)}/${tempName()}`;
    let created = false;
    try {
      await session.symlink(action.target, tmp);
      created = true;
      if (this.caps.linkTimes) {
        const mtime = seconds(action.mtimeMs);
        await session.lsetstat(tmp, { atime: mtime, mtime }).catch(() => {});
      }
      const backedUp = action.replace === "symlink" && await this.#keepOld(action.path);
      await this.#rename(tmp, dst);
      created = false;
      return backedUp;
    } finally {
      if (created && !session.lost) await session.unlink(tmp).catch(() => {});
    }
  }

  async setAttrs(action: AttrsAction): Promise<void> {
    this.#writable();
    const session = this.#session;
    const full = this.#at(action.path);
    const mtime = seconds(action.mtimeMs);
    if (action.kind === "symlink") {
      if (!this.caps.linkTimes) return;
      return await session.lsetstat(full, { atime: mtime, mtime });
    }
    // setstat follows links: make sure this is still the file the plan saw.
    const info = await session.lstat(full);
    if ((info.mode & S_IFMT) !== S_IFREG) throw new ChangedError("Replica entry changed during the sync");
    await session.setstat(full, { mode: action.mode, atime: info.atime, mtime });
  }

  async setDirAttrs(entry: DirAttrs): Promise<void> {
    this.#writable();
    if (Number.isNaN(entry.mtimeMs)) {
      // A source that keeps no time for this folder: the mode alone.
      await this.#session.setstat(this.#at(entry.path), { mode: entry.mode });
      return;
    }
    const mtime = seconds(entry.mtimeMs);
    await this.#session.setstat(this.#at(entry.path), { mode: entry.mode, atime: mtime, mtime });
    if (entry.path === "") this.#rootTimesSet = true;
  }

  async digest(rel: string, hash: string, signal?: AbortSignal): Promise<string | undefined> {
    const session = this.#session;
    const full = this.#at(rel);
    const hasher = await getHasher(hash as HashName);
    let info: SftpStats;
    let handle: Buffer;
    try {
      info = await session.lstat(full);
      if ((info.mode & S_IFMT) !== S_IFREG) throw new ChangedError(`Entry is no longer a file: '${rel}'`);
      handle = await session.open(full, "r");
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined; // gone: no digest
      throw error;
    }
    try {
      if (info.size <= SMALL_FILE) {
        const data = await this.#readRange(handle, full, 0, info.size);
        return await this.#exclusive(() => {
          hasher.init();
          hasher.update(data);
          return hasher.digest();
        });
      }
      return await this.#exclusive(() => this.#hashLarge(handle, full, info.size, hash as HashName, signal));
    } finally {
      await session.close(handle, full).catch(() => {});
    }
  }

  #hashing: Promise<unknown> = Promise.resolve();

  /**
   * Runs `fn` once every earlier one has finished: the hasher is shared by every digest in
   * this thread, and a large file's digest spans many reads.
   */
  #exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.#hashing.then(fn);
    this.#hashing = run.catch(() => {});
    return run;
  }

  /** Hashes a large remote file, reading the next span while hashing this one. */
  async #hashLarge(handle: Buffer, full: string, size: number, hash: HashName, signal?: AbortSignal): Promise<string> {
    const hasher = await getHasher(hash);
    hasher.init();
    const span = READ_SPAN;
    let next = this.#readRange(handle, full, 0, Math.min(span, size));
    for (let at = 0; at < size; at += span) {
      signal?.throwIfAborted();
      const data = await next;
      const following = at + span;
      if (following < size) {
        next = this.#readRange(handle, full, following, Math.min(span, size - following));
        next.catch(() => {}); // awaited next turn, unless the run stops first
      }
      hasher.update(data);
    }
    return hasher.digest();
  }

  /** Reads exactly `length` bytes at `offset`, many requests in flight; throws ChangedError at a short read. */
  async #readRange(handle: Buffer, full: string, offset: number, length: number): Promise<Uint8Array> {
    const data = await this.#session.readRange(handle, full, offset, length);
    if (data.length !== length) throw new ChangedError(`File changed while it was read: '${full}'`);
    return data;
  }

  async createRoot(parents: boolean): Promise<void> {
    this.#writable();
    if (parents) return await mkdirs(this.#session, this.#root);
    try {
      await this.#session.mkdir(this.#root);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      throw new Deno.errors.NotFound(
        `Replica's parent folder does not exist on '${this.#session.where}': '${posix.dirname(this.#root)}'`,
        { cause: error },
      );
    }
  }

  async lock(): Promise<AsyncDisposable> {
    if (this.#options.readOnly) return { [Symbol.asyncDispose]: () => Promise.resolve() };
    // The lock entry comes and goes in the root: its mtime is put back as it was, unless the run sets it.
    this.#rootBeforeLock = await this.#session.lstat(this.#root).catch(() => undefined);
    this.#rootTimesSet = false;
    const lock = await takeRemoteLock(this.#lockEntry(), {
      display: this.display,
      ...(this.#options.alive ? { alive: this.#options.alive } : {}),
    });
    const release = async () => {
      this.#release = undefined;
      await lock.release();
    };
    this.#release = release;
    return { [Symbol.asyncDispose]: () => this.#release === release ? release() : Promise.resolve() };
  }

  /**
   * The lock entry in the root, for {@linkcode takeRemoteLock}. SFTP has no conditional write:
   * a replacement looks first whether the entry is still the text last read or written, then
   * takes a stale entry over by a rename of a complete one over it, and refreshes its own in
   * place (the same length: only the time changes), so that a reader never sees it missing.
   * Its removal puts the root's mtime back as the run left it (or as it was before the lock).
   */
  #lockEntry(): LockEntry {
    const session = this.#session;
    const path = this.#at(LOCK_NAME);
    /** The text last read or written, and the text this run last wrote. */
    let seen: string | undefined;
    let written: string | undefined;
    const read = () =>
      this.#readText(path).catch((error) => {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      });
    return {
      create: async (text) => {
        if (!await this.#createLock(path, text)) return false;
        seen = written = text;
        return true;
      },
      read: async () => seen = await read(),
      replace: async (text) => {
        const now = await read();
        if (now !== seen) return false;
        if (now !== undefined && now === written && now.length === text.length) {
          await this.#overwrite(path, text);
        } else {
          const tmp = this.#at(tempName());
          await this.#createLock(tmp, text);
          await session.posixRename(tmp, path).catch(async (error) => {
            await session.unlink(tmp).catch(() => {});
            throw error;
          });
        }
        seen = written = text;
        return true;
      },
      remove: async () => {
        const root = this.#rootTimesSet ? await session.lstat(this.#root).catch(() => undefined) : this.#rootBeforeLock;
        await session.unlink(path).catch(() => {});
        if (root) await session.setstat(this.#root, { atime: root.atime, mtime: root.mtime }).catch(() => {});
      },
    };
  }

  /** Creates `path` exclusively with `text`; false when something is there already. */
  async #createLock(path: string, text: string): Promise<boolean> {
    const session = this.#session;
    let handle: Buffer;
    try {
      handle = await session.open(path, "wx", { mode: 0o644 });
    } catch (error) {
      if (error instanceof ConnectionLostError) throw error;
      // SFTP v3 has no "already exists" status: look.
      try {
        await session.lstat(path);
      } catch {
        throw error;
      }
      return false;
    }
    try {
      const data = Buffer.from(text);
      await session.write(handle, data, 0, data.length, 0, path);
    } finally {
      await session.close(handle, path);
    }
    return true;
  }

  async #overwrite(path: string, text: string): Promise<void> {
    const session = this.#session;
    const handle = await session.open(path, "r+");
    try {
      const data = Buffer.from(text);
      await session.write(handle, data, 0, data.length, 0, path);
    } finally {
      await session.close(handle, path);
    }
  }

  async #readText(path: string): Promise<string> {
    const session = this.#session;
    const info = await session.lstat(path);
    if ((info.mode & S_IFMT) !== S_IFREG) return "";
    const handle = await session.open(path, "r");
    try {
      return new TextDecoder().decode(await this.#readRange(handle, path, 0, Math.min(info.size, 64 * 1024)));
    } catch (error) {
      if (error instanceof ChangedError) return "";
      throw error;
    } finally {
      await session.close(handle, path).catch(() => {});
    }
  }

  /**
   * Prunes the backup folder by its journal (see {@linkcode pruneBackups}), once this run's
   * own versions are written down in it.
   */
  async pruneBackups(options: PruneOptions): Promise<number> {
    if (this.#backup === undefined) return 0;
    await this.#journal();
    return await pruneBackups(sftpBackupStore(this.#session, this.#backup.root), options);
  }

  /** Writes down in the backup folder's journal what this run put there. */
  async #journal(): Promise<void> {
    const records = this.#backup?.records;
    if (!records?.length || this.#session.lost) return;
    await sftpBackupStore(this.#session, this.#backup!.root).appendJournal(formatRecords(records.splice(0)));
  }

  async close(): Promise<void> {
    this.#ahead?.stop();
    await this.#journal().catch((error) => {
      logger.warn(`Cannot write the backup folder's journal: ${errorLine(error)}`);
    });
    await this.#release?.(); // a lock still held goes with the connection
    await this.#session.end();
  }
}

/** Writes a file held in memory: every request sent at once, then waited for. */
async function writeAll(session: SftpSession, handle: Buffer, tmp: string, data: Uint8Array): Promise<number> {
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const chunk = session.maxWrite;
  const writes: Promise<void>[] = [];
  for (let at = 0; at < buffer.length; at += chunk) {
    writes.push(session.write(handle, buffer, at, Math.min(chunk, buffer.length - at), at, tmp));
  }
  await Promise.all(writes);
  return buffer.length;
}

/** Reads a small source file whole; fewer bytes than `size` when it shrank meanwhile. */
async function readWhole(reader: FileReader, size: number): Promise<Uint8Array> {
  const data = new Uint8Array(size);
  return data.subarray(0, await reader.read(0, data));
}
