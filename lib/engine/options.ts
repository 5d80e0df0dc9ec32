/**
 * What one sync is told: the two trees and the user's options, defaults applied where they
 * are unpacked.
 *
 * @module
 */

import type { HashName } from "../model/hash_name.ts";
import type { MaxDelete } from "./gate.ts";
import type { FilterSpec } from "../model/filter.ts";

/** Options for one sync, with every path already checked and made absolute. */
export interface SyncOptions {
  /** Absolute real path of the source directory. */
  source: string;
  /** Absolute path of the replica directory (real, as far as it exists). */
  replica: string;
  /**
   * Compare file content by hash instead of size and mtime.
   * @default false
   */
  checksum?: boolean;
  /**
   * Hash algorithm for `checksum`.
   * @default "xxh3"
   */
  hash?: HashName;
  /**
   * Report what would change and change nothing.
   * @default false
   */
  dryRun?: boolean;
  /**
   * Let an empty source empty a non-empty replica.
   * @default false
   */
  allowEmptySource?: boolean;
  /**
   * Parallel copies and hashes.
   * @default 8
   */
  jobs?: number;
  /**
   * Directory of the `checksum` hash cache, outside both trees; undefined for no cache.
   * @default undefined
   */
  cacheDir?: string;
  /**
   * Remove nothing at all when a run would remove more than this many replica entries (a
   * directory counts 1 plus everything in it; a type change counts); copies still run.
   * @default undefined (no cap)
   */
  maxDelete?: MaxDelete;
  /**
   * Change nothing that exists in the replica (no overwrite, no removal) when a run would
   * overwrite, replace or remove more than this many replica entries; new entries are still
   * copied (`--max-change`: a rewritten source, ransomware, a broken export).
   * @default undefined (no cap)
   */
  maxChange?: MaxDelete;
  /**
   * Excludes (gitignore syntax) and foldersync's own files inside the source: left out of the
   * source and kept in the replica.
   * @default undefined (nothing excluded)
   */
  filter?: FilterSpec;
  /**
   * Remove excluded entries from the replica too.
   * @default false
   */
  deleteExcluded?: boolean;
  /**
   * Mtimes that differ by at most this many milliseconds count as equal (rsync's
   * `--modify-window`), for file systems that keep times more coarsely than they say.
   * @default 0 (the replica's own resolution alone)
   */
  modifyWindowMs?: number;
  /**
   * Absolute real path of the backup folder (`--backup-dir`): replica entries that the run
   * would remove or overwrite are moved there instead. Inside the replica, it is left alone
   * by the sync.
   * @default undefined (entries are removed)
   */
  backupDir?: string;
  /**
   * After each run, remove from the backup folder the versions foldersync put there longer
   * ago than this many milliseconds (`--backup-keep`), by the folder's journal.
   * @default undefined (versions are kept)
   */
  backupKeepMs?: number;
}
