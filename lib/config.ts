/**
 * SyncOptions with their defaults, and the checks on the paths a user gives: missing,
 * not a directory, the same, or one inside the other (compared as real paths).
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { errorLine, UsageError } from "./model/errors.ts";
import { sameIdentity } from "./model/identity.ts";
import { localIdentity } from "./backend/local/identity.ts";
import type { FilterSpec } from "./model/filter.ts";
import { isWithin, relativeInside } from "./model/paths.ts";

/** The outcome of {@linkcode checkPaths}. */
export interface CheckedPaths {
  /** Absolute real path of the source. */
  source: string;
  /** Absolute path of the replica, real where it exists. */
  replica: string;
  /** Absolute path of the hash cache directory, if there is one. */
  cacheDir?: string;
  /** Absolute real path of the backup folder, if there is one. */
  backupDir?: string;
}

/** Options for {@linkcode checkPaths}. */
export interface PathOptions {
  /**
   * The hash cache directory as typed; `false` for none; undefined for the default place
   * (only looked up when `checksum` is set and the process may read the environment).
   */
  cacheDir?: string | false;
  /**
   * Whether the run compares content (and so uses the cache).
   * @default false
   */
  checksum?: boolean;
  /**
   * Whether the replica's missing parent folders may be created. Without it, a replica whose
   * parent folder does not exist is refused: that is an unmounted disk more often than not.
   * @default false
   */
  mkpath?: boolean;
  /** The backup folder (`--backup-dir`) as typed, relative to the current folder; undefined for none. */
  backupDir?: string;
  /**
   * The replica must exist already (`verify`): a missing one is refused as such.
   * @default false
   */
  mustExist?: boolean;
  /**
   * The replica is remote (an `sftp://` or `s3://` URL, or `host:path`): only the source and
   * the cache folder are checked here, the replica and backup folder by its backend when it
   * connects. The cache folder is then looked up without `checksum` too (the S3 backend keeps
   * its metadata cache there).
   * @default false
   */
  remote?: boolean;
  /**
   * The source is remote: it is checked by its backend when it connects, and nothing local
   * can lie inside it.
   * @default false
   */
  remoteSource?: boolean;
}

/**
 * Real path of `path`, resolving as much of it as exists (a replica may not exist yet).
 * Falls back to the plain absolute path where the process may not read an ancestor.
 */
function realPathOfPossiblyMissing(path: string): string {
  const absolute = resolve(path);
  const missing: string[] = [];
  let current = absolute;
  for (;;) {
    try {
      return join(Deno.realPathSync(current), ...missing.reverse());
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        const parent = dirname(current);
        if (parent === current) return absolute;
        missing.push(current.slice(parent.length).replace(/^[\\/]+/, ""));
        current = parent;
        continue;
      }
      return absolute; // NotCapable or PermissionDenied: compare what we can
    }
  }
}

/**
 * Checks the source and replica paths (and the hash cache directory) and returns them
 * absolute and real.
 *
 * Needs read permission for the source and the replica. Touches nothing.
 *
 * @throws {UsageError} When the source is missing, unreadable or not a directory; the
 * replica exists but is not a directory, or is missing and so is its parent (unless
 * `mkpath`); they are the same or one is inside the other; the cache directory given
 * lies inside either tree; or the backup directory lies inside the source, or is or holds
 * either tree.
 * @example Checking paths
 * ```ts
 * const paths = checkPaths("./src", "./backup", { checksum: true });
 * ```
 */
export function checkPaths(source: string, replica: string, options: PathOptions = {}): CheckedPaths {
  const { cacheDir, checksum = false, mkpath = false, backupDir, remote = false, mustExist = false } = options;
  const { remoteSource = false } = options;
  const sourceReal = remoteSource ? undefined : checkSource(source);
  if (remote) {
    const checked: CheckedPaths = { source: sourceReal ?? source, replica };
    if (backupDir !== undefined) checked.backupDir = backupDir;
    const dir = cacheDir === false ? undefined : cacheDir ?? defaultCacheDir();
    if (dir !== undefined) checked.cacheDir = realPathOfPossiblyMissing(dir);
    return checked;
  }
  // A remote source keeps its metadata cache in the cache folder, as a remote replica does.
  const caching = checksum || remoteSource;
  const checked = checkLocalPaths(sourceReal, replica, { cacheDir, checksum: caching, mkpath, backupDir, mustExist });
  return sourceReal === undefined ? { ...checked, source } : checked;
}

/** The source's real path, once it is known to be a readable directory. */
function checkSource(source: string): string {
  let sourceReal: string;
  try {
    sourceReal = Deno.realPathSync(source);
    const info = Deno.statSync(sourceReal);
    if (!info.isDirectory) throw new UsageError(`Source is not a directory: '${source}'`);
    for (const _ of Deno.readDirSync(sourceReal)) break;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    if (error instanceof Deno.errors.NotFound) throw new UsageError(`Source does not exist: '${source}'`);
    throw new UsageError(`Cannot read source: '${source}': ${errorLine(error)}`);
  }
  return sourceReal;
}

/** {@linkcode checkPaths} for a local replica. */
function checkLocalPaths(
  sourceReal: string | undefined,
  replica: string,
  options: {
    cacheDir: string | false | undefined;
    checksum: boolean;
    mkpath: boolean;
    backupDir: string | undefined;
    mustExist: boolean;
  },
): CheckedPaths {
  const { cacheDir, checksum, mkpath, backupDir, mustExist } = options;
  let replicaReal: string;
  try {
    const info = Deno.statSync(replica);
    if (!info.isDirectory) throw new UsageError(`Replica exists but is not a directory: '${replica}'`);
    replicaReal = Deno.realPathSync(replica);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    if (error instanceof Deno.errors.NotADirectory) {
      throw new UsageError(`Replica path runs through a file: '${firstNonDirectoryAncestor(resolve(replica))}'`);
    }
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new UsageError(`Cannot read replica: '${replica}': ${errorLine(error)}`);
    }
    if (mustExist) throw new UsageError(`Replica does not exist: '${replica}'`);
    try {
      if (Deno.lstatSync(replica).isSymlink) {
        throw new UsageError(`Replica is a dangling symbolic link: '${replica}'`);
      }
    } catch (inner) {
      if (inner instanceof UsageError) throw inner;
    }
    replicaReal = realPathOfPossiblyMissing(replica);
    const blocker = firstNonDirectoryAncestor(replicaReal);
    if (blocker) throw new UsageError(`Replica path runs through a file: '${blocker}'`);
    if (!mkpath && isMissing(dirname(replicaReal))) throw missingParent(replica);
  }

  // A remote source (undefined here) holds nothing of this machine, nor this machine it.
  if (sourceReal !== undefined) {
    if (isWithin(sourceReal, replicaReal) && isWithin(replicaReal, sourceReal)) {
      throw new UsageError(`Replica is the source: '${replica}'`);
    }
    if (isWithin(sourceReal, replicaReal)) throw new UsageError(`Replica is inside the source: '${replicaReal}'`);
    if (isWithin(replicaReal, sourceReal)) throw new UsageError(`Source is inside the replica: '${sourceReal}'`);
    checkMountedAgain(sourceReal, replicaReal);
  }

  const checked: CheckedPaths = { source: sourceReal ?? "", replica: replicaReal };
  if (backupDir !== undefined) checked.backupDir = checkBackupDir(backupDir, sourceReal, replicaReal);
  if (checksum && cacheDir !== false) {
    const dir = cacheDir ?? defaultCacheDir();
    if (dir !== undefined) {
      const dirReal = realPathOfPossiblyMissing(dir);
      // Inside the replica a sync would remove it, inside the source it would write into the
      // source: a folder given so is refused. The default place inside the source (a source
      // that is the home folder, say) is excluded from the sync instead.
      const inside = isWithin(replicaReal, dirReal);
      if (inside && cacheDir !== undefined) throw new UsageError(`Cache directory is inside the replica: '${dir}'`);
      if (cacheDir !== undefined && sourceReal !== undefined && isWithin(sourceReal, dirReal)) {
        throw new UsageError(`Cache directory is inside the source: '${dir}'`);
      }
      // The default place inside the replica (a replica in the home directory, say) is quietly not used.
      if (!inside) checked.cacheDir = dirReal;
    }
  }
  return checked;
}

/**
 * Real paths cannot see a folder mounted a second time (a bind mount, another mount of the same
 * file system): compares device and inode numbers of each tree and of every folder above the
 * other. A source folder deeper inside is found by the walk (see lib/engine/overlap.ts).
 */
function checkMountedAgain(sourceReal: string, replicaReal: string, what = "Replica"): void {
  const source = localIdentity(sourceReal);
  if (source === undefined) return;
  const mounted = "(a bind mount, or another mount of the same file system)";
  for (let dir = replicaReal;; dir = dirname(dir)) {
    if (sameIdentity(localIdentity(dir), source)) {
      throw new UsageError(
        dir === replicaReal
          ? `${what} is the source: '${replicaReal}' is the same folder as '${sourceReal}' ${mounted}`
          : `${what} is inside the source: '${dir}' is the same folder as '${sourceReal}' ${mounted}`,
      );
    }
    if (dirname(dir) === dir) break;
  }
  const replica = localIdentity(replicaReal);
  if (replica === undefined) return;
  for (let dir = dirname(sourceReal);; dir = dirname(dir)) {
    if (sameIdentity(localIdentity(dir), replica)) {
      throw new UsageError(
        `Source is inside the ${what.toLowerCase()}: '${dir}' is the same folder as '${replicaReal}' ${mounted}`,
      );
    }
    if (dirname(dir) === dir) break;
  }
}

/**
 * The backup folder's absolute real path, checked against the trees: it may lie inside the
 * replica (the sync then leaves it alone), but it must not be the replica, lie inside the
 * source (moving entries there would change the source), nor hold either tree.
 */
function checkBackupDir(backupDir: string, sourceReal: string | undefined, replicaReal: string): string {
  if (backupDir === "") throw new UsageError("Backup directory must not be an empty path");
  const real = realPathOfPossiblyMissing(backupDir);
  try {
    if (!Deno.statSync(real).isDirectory) throw new UsageError(`Backup directory is not a directory: '${backupDir}'`);
  } catch (error) {
    if (error instanceof UsageError) throw error;
  }
  if (sourceReal !== undefined && isWithin(sourceReal, real)) {
    throw new UsageError(`Backup directory is inside the source: '${backupDir}'`);
  }
  if (isWithin(real, replicaReal)) {
    throw new UsageError(`Backup directory is the replica or holds it: '${backupDir}'`);
  }
  if (sourceReal !== undefined) {
    if (isWithin(real, sourceReal)) throw new UsageError(`Backup directory holds the source: '${backupDir}'`);
    checkMountedAgain(sourceReal, real, "Backup directory");
  }
  return real;
}

/**
 * Checks the log file path before anything else, so that the log can be opened first and
 * every later error reach it: the log must not lie inside the replica (a sync would remove
 * it). Inside the source it is allowed: the sync excludes it (see {@linkcode ownFiles}).
 * Neither tree has to exist yet.
 *
 * Needs read permission for the paths' existing ancestors (to resolve symlinks). Touches
 * nothing.
 *
 * @returns The absolute real path of the log file (as far as it exists).
 * @throws {UsageError} When the log file lies inside the replica.
 * @example Checking a log path
 * ```ts
 * const log = checkLogPath("./sync.log", "/mnt/backup/src");
 * ```
 */
export function checkLogPath(log: string, replica: string | undefined): string {
  return checkOwnFile(log, replica, "Log file");
}

/**
 * Checks the path of a file foldersync writes besides the replica (the log file, the
 * `--metrics` file) as {@linkcode checkLogPath} does: not inside the replica; inside the
 * source it is excluded from the sync (see {@linkcode ownFiles}). Touches nothing.
 *
 * @returns The absolute real path of the file (as far as it exists).
 * @throws {UsageError} When the file lies inside the replica: `${what} is inside the replica: '...'`.
 * @example Checking a metrics file
 * ```ts
 * const metrics = checkOwnFile("/var/lib/node-exporter/foldersync.prom", "/mnt/backup/src", "Metrics file");
 * ```
 */
export function checkOwnFile(path: string, replica: string | undefined, what: string): string {
  const real = realPathOfPossiblyMissing(path);
  if (replica !== undefined && isWithin(realPathOfPossiblyMissing(replica), real)) {
    throw new UsageError(`${what} is inside the replica: '${path}'`);
  }
  return real;
}

/**
 * The filter of a run: `--exclude-from` files (read here, one pattern a line), then
 * `--exclude` patterns, then foldersync's own files inside the source; undefined when nothing
 * is excluded.
 *
 * Needs read permission for the pattern files.
 *
 * @throws {UsageError} When a pattern file cannot be read.
 * @example Building a filter
 * ```ts
 * const filter = filterSpec(["*.tmp"], [".syncignore"], ownFiles(source, { log }));
 * ```
 */
export function filterSpec(
  patterns: readonly string[],
  files: readonly string[],
  own: { ownFiles: string[]; ownDirs: string[] },
): FilterSpec | undefined {
  const fromFiles = files.flatMap((file) => {
    try {
      return Deno.readTextFileSync(file).split(/\r?\n/);
    } catch (error) {
      throw new UsageError(`Cannot read exclude file: '${file}': ${errorLine(error)}`);
    }
  });
  const all = [...fromFiles, ...patterns];
  if (all.length === 0 && own.ownFiles.length === 0 && own.ownDirs.length === 0) return undefined;
  return { patterns: all, ...own };
}

/**
 * foldersync's own files that lie inside the source (the log file, the hash cache), as a
 * filter's `ownFiles` and `ownDirs`: a sync never copies them, and watch mode never syncs for
 * them.
 *
 * `files` are more files of its own, wherever they lie (the metrics file and its temp file).
 *
 * @example Excluding a log file kept in the source
 * ```ts
 * ownFiles("/data/site", { log: "/data/site/sync.log" }); // { ownFiles: ["sync.log"], ownDirs: [] }
 * ```
 */
export function ownFiles(source: string, own: { log?: string; cacheDir?: string; files?: string[] }): {
  ownFiles: string[];
  ownDirs: string[];
} {
  const files = [own.log, ...(own.files ?? [])].flatMap((file) => {
    const rel = file !== undefined ? relativeInside(source, file) : undefined;
    return rel !== undefined ? [rel] : [];
  });
  const cache = own.cacheDir !== undefined ? relativeInside(source, own.cacheDir) : undefined;
  return { ownFiles: files, ownDirs: cache ? [cache] : [] };
}

/**
 * The user's cache directory for foldersync: `$XDG_CACHE_HOME/foldersync`,
 * `~/.cache/foldersync`, or `%LOCALAPPDATA%\foldersync` on Windows; undefined when the
 * process may not read those variables (asking would prompt).
 */
function defaultCacheDir(): string | undefined {
  const env = (name: string) =>
    Deno.permissions.querySync({ name: "env", variable: name }).state === "granted" ? Deno.env.get(name) : undefined;
  if (Deno.build.os === "windows") {
    const local = env("LOCALAPPDATA");
    return local ? join(local, "foldersync") : undefined;
  }
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "foldersync");
  const home = env("HOME");
  return home ? join(home, ".cache", "foldersync") : undefined;
}

/**
 * The error for a replica whose parent folder does not exist, naming the parent as the user
 * typed it.
 *
 * @example Refusing a replica on an unmounted disk
 * ```ts
 * throw missingParent("/mnt/backup/photos");
 * // Replica's parent folder does not exist: '/mnt/backup' (is the disk mounted? --mkpath creates it)
 * ```
 */
export function missingParent(replica: string): UsageError {
  return new UsageError(
    `Replica's parent folder does not exist: '${dirname(resolve(replica))}' (is the disk mounted? --mkpath creates it)`,
  );
}

/** True only when `path` is known not to exist (an unreadable parent is left for mkdir to report). */
function isMissing(path: string): boolean {
  try {
    Deno.statSync(path);
    return false;
  } catch (error) {
    return error instanceof Deno.errors.NotFound;
  }
}

function firstNonDirectoryAncestor(path: string): string | undefined {
  for (let current = dirname(path);; current = dirname(current)) {
    try {
      return Deno.statSync(current).isDirectory ? undefined : current;
    } catch {
      // missing or unreadable: look further up
    }
    if (dirname(current) === current) return undefined;
  }
}
