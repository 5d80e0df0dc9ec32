/**
 * `--backup-dir`: moves replica entries that a sync would destroy into a backup folder, under
 * the same relative path, instead of removing or overwriting them.
 *
 * Nothing already in the backup folder is ever overwritten: when `DIR/<path>` is taken, the
 * entry gets the run's timestamp as a suffix, `name~2026-11-22T20-51-03` (UTC, the run's
 * start), then `name~2026-11-22T20-51-03-2`, `-3`, ... Within the folder, a directory on the
 * way that is taken by a file or link gets the same kind of suffix. Folders in DIR are created
 * as needed and never followed through a symbolic link.
 *
 * @module
 */

import { join, relative, sep } from "node:path";
import { copyFileSync } from "./copy_file.ts";
import { describeError } from "../../model/errors.ts";
import type { EntryKind } from "../../model/listing.ts";
import { type BackupRecord, type BackupStore, JOURNAL_NAME, NotEmptyError } from "../backup_journal.ts";
import { tempName } from "../../model/names.ts";
import { backupName, backupSuffix } from "../backup_names.ts";

/** Options for {@linkcode BackupDir}. */
export interface BackupDirOptions {
  /**
   * When the run started: the time in the suffix of entries whose name is taken.
   * @default new Date()
   */
  started?: Date;
}

/** True for the error of a rename or link across file systems. */
function isCrossDevice(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === "EXDEV";
}

/** lstat, or undefined when nothing is there. */
function lstatOrNone(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * A backup folder for one run: {@linkcode BackupDir.move} takes an entry out of the replica
 * into it, {@linkcode BackupDir.keep} puts a copy of an entry about to be overwritten there.
 *
 * Needs write permission for the backup folder and the replica. Its methods throw what the
 * file system throws (`Deno.errors.NotFound` when the replica entry is gone); the replica
 * entry is removed only once its backup is complete.
 *
 * @example Moving a removed file aside
 * ```ts
 * const backup = new BackupDir("/mnt/backup/docs-deleted");
 * backup.move("/mnt/backup/docs/old.txt", "old.txt", "file");
 * ```
 */
export class BackupDir {
  readonly root: string;
  /** What this run put into the folder, for its journal (see lib/backend/backup_journal.ts). */
  readonly records: BackupRecord[] = [];
  #suffix: string;
  /** Backup folders already made or found, by relative path: where their contents go. */
  #dirs = new Map<string, string>();

  constructor(root: string, options: BackupDirOptions = {}) {
    this.root = root;
    this.#suffix = backupSuffix(options.started ?? new Date());
  }

  /**
   * Moves replica entry `full` (relative path `rel`) into the backup folder: a file or link by
   * a rename (across file systems: a copy whose size is checked, then a removal), a directory,
   * which must be empty by now, by making it in the backup folder and removing it. Returns
   * the path it got in the backup folder.
   */
  move(full: string, rel: string, kind: EntryKind): string {
    if (kind === "dir") {
      const info = Deno.lstatSync(full);
      if (!info.isDirectory) throw new Error(`Replica entry changed during the sync: '${rel}'`);
      const dir = this.#dir(rel);
      Deno.removeSync(full);
      return this.#record(dir, "dir");
    }
    const info = Deno.lstatSync(full);
    const to = this.#free(rel);
    try {
      Deno.renameSync(full, to);
    } catch (error) {
      if (!isCrossDevice(error)) throw error;
      this.#copy(full, to, info);
      Deno.removeSync(full);
    }
    return this.#record(to, info.isSymlink ? "symlink" : info.isDirectory ? "dir" : "file");
  }

  /**
   * Puts the present content of replica file or link `full` (relative path `rel`) into the
   * backup folder and leaves it in place, for an update that is about to rename a new file
   * over it: a hard link, or a copy where linking is not possible. Returns the backup path,
   * or undefined when the replica entry is gone.
   */
  keep(full: string, rel: string): string | undefined {
    const info = lstatOrNone(full);
    if (info === undefined) return undefined;
    for (let n = 1;; n++) {
      const to = this.#candidate(rel, n);
      // A link is made anew: link(2) on a symbolic link follows it on some systems.
      if (info.isSymlink) {
        if (lstatOrNone(to) !== undefined) continue;
        this.#copy(full, to, info);
        return this.#record(to, "symlink");
      }
      try {
        Deno.linkSync(full, to);
        return this.#record(to, "file");
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) continue;
        if (error instanceof Deno.errors.NotFound && lstatOrNone(full) === undefined) return undefined;
        // Another file system, or one without hard links: copy.
        if (lstatOrNone(to) !== undefined) continue;
        this.#copy(full, to, info);
        return this.#record(to, "file");
      }
    }
  }

  /** Writes down that `to` (absolute, in the folder) was put there now; returns it. */
  #record(to: string, kind: EntryKind): string {
    this.records.push({ path: relative(this.root, to).split(sep).join("/"), kind, at: Date.now() });
    return to;
  }

  /** A copy of `from` at the new path `to`, with its mode and mtime, checked for size. */
  #copy(from: string, to: string, info: Deno.FileInfo): void {
    if (info.isSymlink) {
      Deno.symlinkSync(Deno.readLinkSync(from), to);
      return;
    }
    try {
      copyFileSync(from, to, { size: info.size, mode: (info.mode ?? 0o600) & 0o7777 });
      const copied = Deno.lstatSync(to);
      if (copied.size !== info.size) {
        throw new Error(`Backup copy has ${copied.size} bytes instead of ${info.size}: '${to}'`);
      }
      const mtime = info.mtime ?? new Date();
      Deno.utimeSync(to, info.atime ?? mtime, mtime);
    } catch (error) {
      try {
        Deno.removeSync(to);
      } catch {
        // nothing was created, or it is gone already
      }
      // Say that it was the backup that failed (a full backup disk, say), not the sync.
      throw new Error(`Backup copy failed, the replica entry is kept: '${to}': ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  /** The `n`th choice of backup path for `rel` (1: the plain name), its folder made. */
  #candidate(rel: string, n: number): string {
    const slash = rel.lastIndexOf("/");
    const dir = this.#dir(slash === -1 ? "" : rel.slice(0, slash));
    const name = slash === -1 ? rel : rel.slice(slash + 1);
    return join(dir, backupName(name, n, this.#suffix));
  }

  /** A backup path for `rel` where nothing is yet. */
  #free(rel: string): string {
    for (let n = 1;; n++) {
      const to = this.#candidate(rel, n);
      if (lstatOrNone(to) === undefined) return to;
    }
  }

  /**
   * The backup folder for replica directory `rel`, made if missing (parents first, never
   * through a link); a name taken by a file or link gets a suffix, for the whole run.
   */
  #dir(rel: string): string {
    const known = this.#dirs.get(rel);
    if (known !== undefined) return known;
    let path: string;
    if (rel === "") {
      Deno.mkdirSync(this.root, { recursive: true });
      if (!Deno.lstatSync(this.root).isDirectory) {
        throw new Error(`Backup directory is not a directory: '${this.root}'`);
      }
      path = this.root;
    } else {
      const slash = rel.lastIndexOf("/");
      const parent = this.#dir(slash === -1 ? "" : rel.slice(0, slash));
      const name = slash === -1 ? rel : rel.slice(slash + 1);
      for (let n = 1;; n++) {
        path = join(parent, backupName(name, n, this.#suffix));
        const info = lstatOrNone(path);
        if (info?.isDirectory) break;
        if (info !== undefined) continue;
        try {
          Deno.mkdirSync(path, { mode: 0o755 });
          break;
        } catch (error) {
          if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
          n--; // made meanwhile: look at it again
        }
      }
    }
    this.#dirs.set(rel, path);
    return path;
  }
}

/**
 * The journal and pruning primitives of local backup folder `root` (see
 * lib/backend/backup_journal.ts). Never follows a symbolic link inside the folder: a path
 * whose folders are not all real folders is treated as gone.
 *
 * Needs read and write permission for `root`.
 *
 * @example Pruning a local backup folder
 * ```ts
 * await pruneBackups(localBackupStore("/mnt/backup/docs-old"), { keepMs, now: Date.now(), onPrune, onError });
 * ```
 */
export function localBackupStore(root: string): BackupStore {
  const journal = join(root, JOURNAL_NAME);
  /**
   * The absolute path of `rel`, once every folder on the way is a real folder (not a link);
   * each folder is checked once per store (pruning removes what is in a folder before it).
   */
  const real = new Set<string>();
  const at = (rel: string): string => {
    const parts = rel.split("/");
    let path = root;
    for (const part of parts.slice(0, -1)) {
      path = join(path, part);
      if (real.has(path)) continue;
      const info = lstatOrNone(path);
      if (!info?.isDirectory) throw new Deno.errors.NotFound(`Not a folder of the backup folder: '${path}'`);
      real.add(path);
    }
    return join(path, parts.at(-1)!);
  };
  return {
    readJournal: () =>
      Deno.readTextFile(journal).catch((error) => {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      }),
    appendJournal: async (text) => {
      await Deno.mkdir(root, { recursive: true });
      await Deno.writeTextFile(journal, text, { append: true, mode: 0o600 });
    },
    writeJournal: async (text) => {
      const tmp = join(root, tempName());
      await Deno.writeTextFile(tmp, text, { createNew: true, mode: 0o600 });
      await Deno.rename(tmp, journal);
    },
    remove: (rel, kind) => {
      try {
        const full = at(rel);
        const info = Deno.lstatSync(full);
        if (kind === "dir" && !info.isDirectory) throw new Deno.errors.NotFound(`No longer a folder: '${rel}'`);
        Deno.removeSync(full);
        return Promise.resolve();
      } catch (error) {
        if ((error as { code?: string }).code === "ENOTEMPTY") {
          return Promise.reject(new NotEmptyError(`Not empty: '${rel}'`));
        }
        return Promise.reject(error);
      }
    },
  };
}
