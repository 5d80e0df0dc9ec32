/**
 * `--backup-dir` on an SFTP replica's host, with the local backup folder's rules (see
 * lib/backend/local/backup.ts): an entry keeps its relative path under the backup folder;
 * a name already taken there gets the run's timestamp, `name~2026-11-22T20-51-03`, then
 * `-2`, `-3` ...; a directory on the way taken by a file or link gets the same kind of
 * suffix; folders are made as needed and never followed through a link. Nothing already in
 * the backup folder is overwritten: entries are moved with SFTP's plain rename, which refuses
 * to replace.
 *
 * @module
 */

import { backupName, backupSuffix } from "../backup_names.ts";
import type { EntryKind } from "../../model/listing.ts";
import { type BackupRecord, type BackupStore, JOURNAL_NAME, NotEmptyError } from "../backup_journal.ts";
import { tempName } from "../../model/names.ts";
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type SftpSession, type SftpStats } from "./session.ts";
import { Buffer } from "node:buffer";
import { ConnectionLostError } from "../../model/errors.ts";

/** Bytes per read or write request when the server copies a file for us. */
const COPY_CHUNK = 64 * 1024;
/** Requests in flight for one file. */
const COPY_WINDOW = 16;

/**
 * A backup folder on the replica's host, for one run: {@linkcode RemoteBackup.move} takes an
 * entry out of the replica into it, {@linkcode RemoteBackup.keep} puts the present version of
 * an entry about to be overwritten there.
 *
 * @example Moving a removed file aside
 * ```ts
 * const backup = new RemoteBackup(session, "/srv/backup-deleted", new Date());
 * await backup.move("/srv/backup/old.txt", "old.txt", "file");
 * ```
 */
export class RemoteBackup {
  /** Absolute path of the backup folder on the host. */
  readonly root: string;
  /** What this run put into the folder, for its journal (see lib/backend/backup_journal.ts). */
  readonly records: BackupRecord[] = [];
  #session: SftpSession;
  #suffix: string;
  #dirs = new Map<string, Promise<string>>();
  /** Backup paths chosen by this run and not yet taken, so that two moves never pick one. */
  #reserved = new Set<string>();

  constructor(session: SftpSession, root: string, started: Date) {
    this.#session = session;
    this.root = root;
    this.#suffix = backupSuffix(started);
  }

  /**
   * Moves replica entry `full` (relative path `rel`) into the backup folder: a file or link by
   * a rename (across file systems: a copy, then a removal), a directory, which is empty by
   * now, by making it in the backup folder and removing it. Throws `Deno.errors.NotFound` when
   * the entry is gone.
   */
  async move(full: string, rel: string, kind: EntryKind): Promise<string> {
    const session = this.#session;
    const info = await session.lstat(full);
    if (kind === "dir") {
      if ((info.mode & S_IFMT) !== S_IFDIR) throw new Error(`Replica entry changed during the sync: '${rel}'`);
      const dir = await this.#dir(rel);
      await session.rmdir(full);
      return this.#record(dir, "dir");
    }
    const kind2: EntryKind = (info.mode & S_IFMT) === S_IFLNK ? "symlink" : "file";
    for (let n = 1;; n++) {
      const to = await this.#candidate(rel, n);
      if (this.#reserved.has(to) || await exists(session, to)) continue;
      this.#reserved.add(to);
      try {
        await session.rename(full, to);
        return this.#record(to, kind2);
      } catch (error) {
        if (error instanceof ConnectionLostError || error instanceof Deno.errors.NotFound) throw error;
        if (await exists(session, to)) continue; // taken meanwhile
        // Another file system: OpenSSH's rename does not copy.
        await this.#copy(full, to, info);
        await session.unlink(full);
        return this.#record(to, kind2);
      } finally {
        this.#reserved.delete(to);
      }
    }
  }

  /**
   * Puts the present content of replica file or link `full` (relative path `rel`) into the
   * backup folder and leaves it in place, for an update about to rename a new version over
   * it: a hard link (hardlink@openssh.com), else a copy made on the server. Returns the
   * backup path, or undefined when the replica entry is gone.
   */
  async keep(full: string, rel: string): Promise<string | undefined> {
    const session = this.#session;
    let info: SftpStats;
    try {
      info = await session.lstat(full);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
    for (let n = 1;; n++) {
      const to = await this.#candidate(rel, n);
      if (this.#reserved.has(to) || await exists(session, to)) continue;
      this.#reserved.add(to);
      try {
        if ((info.mode & S_IFMT) === S_IFREG && session.has("hardlink@openssh.com")) {
          try {
            await session.hardlink(full, to);
            return this.#record(to, "file");
          } catch (error) {
            if (await exists(session, to)) continue;
            if (error instanceof Deno.errors.NotFound) return undefined;
          }
        }
        await this.#copy(full, to, info);
        return this.#record(to, (info.mode & S_IFMT) === S_IFLNK ? "symlink" : "file");
      } finally {
        this.#reserved.delete(to);
      }
    }
  }

  /** Writes down that `to` (absolute, in the folder) was put there now; returns it. */
  #record(to: string, kind: EntryKind): string {
    this.records.push({ path: to.slice(this.root.length + 1), kind, at: Date.now() });
    return to;
  }

  /** A copy of remote `from` at the new remote path `to`, made through this client. */
  async #copy(from: string, to: string, info: SftpStats): Promise<void> {
    const session = this.#session;
    if ((info.mode & S_IFMT) === S_IFLNK) {
      await session.symlink(await session.readlink(from), to);
      return;
    }
    await copyRemoteFile(session, from, to, info);
  }

  /** The `n`th choice of backup path for `rel` (1: the plain name), its folder made. */
  async #candidate(rel: string, n: number): Promise<string> {
    const slash = rel.lastIndexOf("/");
    const dir = await this.#dir(slash === -1 ? "" : rel.slice(0, slash));
    const name = slash === -1 ? rel : rel.slice(slash + 1);
    return `${dir}/${backupName(name, n, this.#suffix)}`;
  }

  /** The backup folder for replica directory `rel`, made if missing (once per run). */
  #dir(rel: string): Promise<string> {
    let dir = this.#dirs.get(rel);
    if (dir === undefined) {
      dir = this.#makeDir(rel);
      this.#dirs.set(rel, dir);
      dir.catch(() => this.#dirs.delete(rel));
    }
    return dir;
  }

  async #makeDir(rel: string): Promise<string> {
    const session = this.#session;
    if (rel === "") {
      await mkdirs(session, this.root);
      const info = await session.lstat(this.root);
      if ((info.mode & S_IFMT) !== S_IFDIR) throw new Error(`Backup directory is not a directory: '${this.root}'`);
      return this.root;
    }
    const slash = rel.lastIndexOf("/");
    const parent = await this.#dir(slash === -1 ? "" : rel.slice(0, slash));
    const name = slash === -1 ? rel : rel.slice(slash + 1);
    for (let n = 1;; n++) {
      const path = `${parent}/${backupName(name, n, this.#suffix)}`;
      const info = await lstatOrNone(session, path);
      if (info !== undefined) {
        if ((info.mode & S_IFMT) === S_IFDIR) return path;
        continue;
      }
      try {
        await session.mkdir(path, { mode: 0o755 });
        return path;
      } catch (error) {
        if (await lstatOrNone(session, path) === undefined) throw error;
        n--; // made meanwhile: look at it again
      }
    }
  }
}

/** lstat, or undefined when nothing is there. */
export async function lstatOrNone(session: SftpSession, path: string): Promise<SftpStats | undefined> {
  try {
    return await session.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function exists(session: SftpSession, path: string): Promise<boolean> {
  return await lstatOrNone(session, path) !== undefined;
}

/** Makes folder `path` and its missing parents (absolute path); never through a link. */
export async function mkdirs(session: SftpSession, path: string): Promise<void> {
  const info = await lstatOrNone(session, path);
  if (info !== undefined) return;
  const parent = path.slice(0, path.lastIndexOf("/")) || "/";
  if (parent !== path) await mkdirs(session, parent);
  try {
    await session.mkdir(path, { mode: 0o755 });
  } catch (error) {
    if (await lstatOrNone(session, path) === undefined) throw error;
  }
}

/**
 * Copies remote file `from` to the new remote file `to` (created exclusively) through this
 * client, with its mode and mtime; checks the size. A failed copy leaves no `to`.
 */
export async function copyRemoteFile(session: SftpSession, from: string, to: string, info: SftpStats): Promise<void> {
  const source = await session.open(from, "r");
  let target: Buffer | undefined;
  try {
    target = await session.open(to, "wx", { mode: 0o600 });
  } catch (error) {
    await session.close(source, from).catch(() => {});
    throw error;
  }
  try {
    let next = 0;
    let copied = 0;
    const worker = async () => {
      const buf = Buffer.allocUnsafe(COPY_CHUNK);
      while (next < info.size) {
        const at = next;
        next += COPY_CHUNK;
        const length = Math.min(COPY_CHUNK, info.size - at);
        let got = 0;
        while (got < length) {
          const n = await session.read(source, buf, got, length - got, at + got, from);
          if (n === 0) break;
          got += n;
        }
        await session.write(target!, buf, 0, got, at, to);
        copied += got;
      }
    };
    await Promise.all(Array.from({ length: COPY_WINDOW }, worker));
    if (copied !== info.size) throw new Error(`Backup copy has ${copied} bytes instead of ${info.size}: '${to}'`);
    await session.fsetstat(target, { mode: info.mode & 0o7777, atime: info.atime, mtime: info.mtime }, to);
    const handle = target;
    target = undefined;
    await session.close(handle, to);
  } catch (error) {
    if (target !== undefined) await session.close(target, to).catch(() => {});
    await session.unlink(to).catch(() => {}); // created above: ours to remove
    throw error;
  } finally {
    await session.close(source, from).catch(() => {});
  }
}

/**
 * The journal and pruning primitives of backup folder `root` on an SFTP host (see
 * lib/backend/backup_journal.ts). Never follows a symbolic link inside the folder: a path
 * whose folders are not all real folders is treated as gone.
 *
 * @example Pruning a backup folder on a host
 * ```ts
 * await pruneBackups(sftpBackupStore(session, "/srv/backup-old"), { keepMs, now: Date.now(), onPrune, onError });
 * ```
 */
export function sftpBackupStore(session: SftpSession, root: string): BackupStore {
  const journal = `${root}/${JOURNAL_NAME}`;
  /**
   * The absolute path of `rel`, once every folder on the way is a real folder (not a link);
   * each folder is checked once per store, not once per version in it (a round trip each).
   */
  const real = new Set<string>();
  const at = async (rel: string): Promise<string> => {
    const parts = rel.split("/");
    let path = root;
    for (const part of parts.slice(0, -1)) {
      path = `${path}/${part}`;
      if (real.has(path)) continue;
      const info = await lstatOrNone(session, path);
      if (!info || (info.mode & S_IFMT) !== S_IFDIR) {
        throw new Deno.errors.NotFound(`Not a folder of the backup folder: '${path}'`);
      }
      real.add(path);
    }
    return `${path}/${parts.at(-1)!}`;
  };
  /** Writes `text` to `path` with `flags`, from offset 0 (with "a", the server appends). */
  const write = async (path: string, flags: string, text: string) => {
    const data = Buffer.from(text);
    const handle = await session.open(path, flags, { mode: 0o600 });
    try {
      for (let off = 0; off < data.length; off += session.maxWrite) {
        await session.write(handle, data, off, Math.min(session.maxWrite, data.length - off), off, path);
      }
    } finally {
      await session.close(handle, path);
    }
  };
  return {
    async readJournal() {
      let handle: Buffer;
      try {
        handle = await session.open(journal, "r");
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      }
      try {
        const chunks: Uint8Array[] = [];
        for (let at = 0;;) {
          const chunk = await session.readRange(handle, journal, at, 1024 * 1024);
          if (chunk.length === 0) break;
          chunks.push(chunk);
          at += chunk.length;
        }
        return new TextDecoder().decode(Buffer.concat(chunks));
      } finally {
        await session.close(handle, journal);
      }
    },
    async appendJournal(text) {
      await mkdirs(session, root);
      await write(journal, "a", text);
    },
    async writeJournal(text) {
      const tmp = `${root}/${tempName()}`;
      await write(tmp, "wx", text);
      await session.posixRename(tmp, journal);
    },
    async remove(rel, kind) {
      const full = await at(rel);
      const info = await session.lstat(full);
      if (kind !== "dir") {
        if ((info.mode & S_IFMT) === S_IFDIR) throw new Deno.errors.NotFound(`Now a folder: '${rel}'`);
        return await session.unlink(full);
      }
      if ((info.mode & S_IFMT) !== S_IFDIR) throw new Deno.errors.NotFound(`No longer a folder: '${rel}'`);
      try {
        await session.rmdir(full);
      } catch (error) {
        // SFTP v3 has no "not empty" status: look.
        const left = (await session.readdir(full).catch(() => [])).filter((e) =>
          e.filename !== "." && e.filename !== ".."
        );
        if (left.length > 0) throw new NotEmptyError(`Not empty: '${rel}'`);
        throw error;
      }
    },
  };
}
