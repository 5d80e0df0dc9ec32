/**
 * The backend interface: everything the engine asks of a tree, with a reading half (the
 * source, and the replica's side of the lockstep walk) and a writing half (the replica). A
 * local folder, a folder on another host over SFTP, and a bucket prefix in S3-compatible
 * storage implement it; the engine never names one.
 *
 * @module
 */

import type { Entry, ListingBatch } from "../model/listing.ts";
import type { PathFilter } from "../model/filter.ts";
import type { HashName } from "../model/hash_name.ts";
import type { AttrsAction, CopyAction, DirAttrs, LinkAction, RemoveAction } from "../model/actions.ts";
import type { Identity } from "../model/identity.ts";
import type { Capabilities } from "../model/capabilities.ts";
import type { PruneOptions } from "./backup_journal.ts";

/** How {@linkcode Backend.list} lists one directory. */
export interface ListOptions {
  /** Open up directories that deny listing, for the owner (local replicas, real runs). */
  fixPermissions: boolean;
  /** Leaves out excluded entries (they are kept, never removed). */
  filter?: PathFilter | undefined;
}

/** How {@linkcode Backend.walk} walks a whole tree. */
export interface WalkOptions {
  /** Leaves out excluded entries: an excluded directory is never entered. */
  filter?: PathFilter | undefined;
  /**
   * Enters only the subdirectories it approves, asked once the caller has handled their
   * parent's listing (watch mode's scoped runs); without it, the whole tree.
   */
  descend?: ((dir: string) => boolean) | undefined;
  /**
   * Walk in this thread only (a local folder otherwise moves its walk to a worker).
   * @default false
   */
  inThread?: boolean | undefined;
}

/**
 * The listings of a whole tree, depth first in sorted order, parents before children: each
 * batch holds one or more directories' listings, valid until the next call.
 */
export interface TreeWalk {
  /** The next batch, or undefined when the walk is done. Throws when the root cannot be listed. */
  next(): Promise<ListingBatch | undefined>;
  /** Stops the walk (a worker, a connection's reads ahead); call when done or abandoning it. */
  close(): void;
}

/** What a copy did. */
export interface CopyResult {
  /** Bytes written (the source may have grown since it was listed). */
  size: number;
  /** The old version went to the backup folder first. */
  backedUp: boolean;
}

/**
 * Reads one source file at any offset; several reads may be in flight at once (a remote
 * backend answers them in parallel).
 */
export interface FileReader {
  /**
   * Reads into `into` from `offset`, and returns how many bytes were read: `into.length`,
   * fewer only at the end of the file, 0 past it.
   */
  read(offset: number, into: Uint8Array): Promise<number>;
  /** Releases the handle. */
  close(): Promise<void>;
}

/**
 * One regular file of the source, as a replica reads it to write its copy: the metadata the
 * source listed, and how to read it and to tell that it did not change meanwhile.
 */
export interface SourceFile {
  /** Relative path, `/`-separated. */
  readonly path: string;
  /** Size as listed. */
  readonly size: number;
  /** Modification time as listed, in milliseconds. */
  readonly mtimeMs: number;
  /** Permission bits as listed. */
  readonly mode: number;
  /**
   * The file's absolute path on this machine, when the source is a local folder: a local
   * replica's fast paths (copy workers, sparse copies) read it directly.
   */
  readonly localPath?: string | undefined;
  /** Opens the file for reading. Throws `Deno.errors.NotFound` when it is gone. */
  open(signal?: AbortSignal): Promise<FileReader>;
  /**
   * Checks, once the copy is written and before it is put in place, that the file is still
   * as listed: throws ChangedError when its size or mtime changed (the engine then
   * copies it once more as it now is), `Deno.errors.NotFound` when it is gone.
   */
  check(): Promise<void>;
  /**
   * The file's MD5 in hex when the source knows it without reading (an S3 ETag or
   * `md5chksum`), for a replica that stores it; undefined otherwise. Optional.
   */
  knownMd5?(): Promise<string | undefined>;
}

/**
 * A backend: a tree foldersync reads from (the source) or writes to (the replica). A local
 * folder, a folder on another host over SFTP, and a bucket prefix in S3-compatible storage
 * implement both halves; the engine talks to this interface only and never names one.
 *
 * Paths are relative to the root, `/`-separated; `""` is the root. Every listing is sorted by
 * {@linkcode compareNames} (UTF-16 code units), whatever order the server gives.
 *
 * The writing half never throws for one entry without saying which (the applier logs the
 * error against the entry and goes on), and never writes through a symbolic link. Writes are
 * atomic per entry: a file is written under a temp name `.foldersync-*.tmp` beside its final
 * name, given its attributes, then renamed over it; a temp file left by a killed run is
 * cleaned by the next run (never backed up, never counted as a removal).
 */
export interface Backend {
  /** The tree as the user wrote it (a path or a URL), for messages. */
  readonly display: string;
  /** What this backend keeps. */
  readonly caps: Capabilities;
  /**
   * The root's absolute path on this machine, for a local folder: the copy workers, the hash
   * cache and file-system events work on it. Undefined for a remote backend.
   */
  readonly localRoot?: string | undefined;
  /**
   * A folder inside the replica that the walk must leave alone (the backup folder when it is
   * inside the replica), relative; undefined when none.
   */
  readonly protect?: string | undefined;
  /** True when removed and overwritten entries are moved aside (`--backup-dir`). */
  readonly backsUp: boolean;

  // ---- The reading half: a source, and the replica's side of the lockstep walk.

  /** The root: its entry, or undefined when it does not exist. Throws when it cannot be read. */
  root(): Promise<Entry | undefined>;

  /**
   * Lists directory `dir` into a new batch (one directory, begun with `batch.begin(dir)`),
   * sorted, excluded entries left out, the backend's own lock entry never shown.
   *
   * Never throws for a directory inside the tree: one that cannot be listed is flagged
   * FAILED with a problem, one that vanished VANISHED, a partial listing INCOMPLETE (see
   * listing.ts). Throws only when the root (`dir` is `""`) cannot be listed.
   */
  list(dir: string, options: ListOptions): Promise<ListingBatch>;

  /**
   * Walks the whole tree (the source's side of the march), faster than a listing at a time
   * where it can (a local folder: in a worker). Optional: the engine walks with
   * {@linkcode Backend.list} otherwise.
   */
  walk?(options: WalkOptions): TreeWalk;

  /** The entry at `rel` now (lstat: a link is not followed), or undefined when there is none. */
  stat(rel: string): Promise<Entry | undefined>;

  /** Source file `entry.path`, to be read by a replica's copy. */
  file(entry: { path: string; size: number; mtimeMs: number; mode: number }): SourceFile;

  /**
   * The content digest of file `rel` in hex, for `--checksum`: from what the server already
   * knows where it can (an S3 single-part ETag or `md5chksum` is the MD5), else by reading the
   * file through the connection and hashing it (SFTP always; S3 for a multipart object without
   * `md5chksum`, or another hash). Never "unknown": undefined only when the file is no longer
   * there; throws when it cannot be read. Optional: a local backend is hashed by the comparer
   * itself, through the hash cache.
   */
  digest?(rel: string, hash: HashName, signal?: AbortSignal): Promise<string | undefined>;

  /**
   * Device and inode numbers of entry `rel` (`""` is the root), where the tree is on this
   * machine: the guard against a replica that is a folder of the source under another path
   * compares them. Optional; undefined when unknown.
   */
  identity?(rel: string): Identity | undefined;

  /**
   * Walks every directory of the tree (excluded ones too) and returns the relative path of
   * the first whose identity `match` accepts (see {@linkcode Backend.identity}). Optional.
   */
  findDir?(match: (identity: Identity) => boolean): string | undefined;

  /**
   * Removes from the backup folder (`--backup-dir`) the versions put there longer ago than
   * `options.keepMs` (`--backup-keep`), by the folder's journal (see backup_journal.ts), and
   * returns how many. Optional: a backend without a backup folder has none.
   */
  pruneBackups?(options: PruneOptions): Promise<number>;

  /**
   * The backup folder (`--backup-dir`) where it is on this machine: its path and identity,
   * which must not be a folder of the source either. Optional; undefined without one.
   */
  backupFolder?(): { path: string; identity: Identity } | undefined;

  // ---- The writing half: the replica.

  /**
   * Told that the whole tree will be listed, depth first in sorted order, with `options`:
   * the backend may read ahead. Optional.
   */
  prefetch?(options: ListOptions): void;

  /**
   * The one removal primitive: removes entry `action.path` (a directory only once it is empty:
   * its contents are planned before it), or moves it to the backup folder, unless it is a
   * `leftover` temp file, which is only removed. Returns true when it was moved aside. Throws
   * `Deno.errors.NotFound` when it is already gone.
   */
  remove(action: RemoveAction): Promise<boolean>;

  /** Makes directory `rel` (its attributes come later, from setDirAttrs). */
  mkdir(rel: string): Promise<void>;

  /**
   * Copies source file `from` to `action.path`, atomically, with its mtime (and mode, where
   * kept): written under a temp name, checked with `from.check()`, then put in place. Throws
   * what `from` throws (ChangedError when the file changed meanwhile: the engine copies it
   * once more; NotFound when it is gone).
   */
  copy(action: CopyAction, from: SourceFile): Promise<CopyResult>;

  /** Creates or replaces a symbolic link; returns whether the old entry was backed up. */
  link(action: LinkAction): Promise<boolean>;

  /** Sets the mode and mtime of a file, or the mtime of a link, whose content is already equal. */
  setAttrs(action: AttrsAction): Promise<void>;

  /** Sets a directory's mode and mtime (only called when `caps.dirTimes` or `caps.modes`). */
  setDirAttrs(entry: DirAttrs): Promise<void>;

  /**
   * A fast path for many plain copies at once from `source` (local to local: copy workers).
   * Calls `done` for each action completed and returns those left for
   * {@linkcode Backend.copy}. Optional.
   */
  copyMany?<T extends { op: string; path: string }>(
    actions: readonly T[],
    how: {
      source: Backend;
      workers: number;
      skip: (action: T) => boolean;
      done: (action: CopyAction) => void;
    },
  ): Promise<T[]>;

  /**
   * Creates the root folder: only itself, or with its parents (`--mkpath`). Throws
   * `Deno.errors.NotFound` when a parent is missing and `parents` is false.
   */
  createRoot(parents: boolean): Promise<void>;

  /**
   * Takes the one-foldersync-per-replica lock, or throws `LockedError` when another run holds
   * it. The returned handle releases it.
   */
  lock(): Promise<AsyncDisposable>;

  /** Closes connections; the backend is not used after. */
  close(): Promise<void>;
}

/**
 * How a run gets its two backends: each opened afresh for the run (a connection dropped
 * between runs costs nothing) and closed at its end, which releases the replica's lock.
 */
export interface Sides {
  /** Opens the source for reading. */
  source(run: { started: Date }): Promise<Backend>;
  /** Opens the replica, connected and (unless `readOnly`) locked. */
  replica(run: { started: Date; readOnly: boolean }): Promise<Backend>;
}

/** How a backend is reached and what it is told; one object for every backend. */
export interface BackendOptions {
  /** Stops transfers in flight (their temp files and uploads are cleaned up). */
  signal?: AbortSignal | undefined;
  /**
   * `--backup-dir` as the user gave it: for a remote replica, a path (SFTP) or key prefix (S3)
   * on the same remote, or a URL naming the same host or bucket; a relative one is inside the
   * replica root (rsync's rule for a relative --backup-dir).
   */
  backupDir?: string | undefined;
  /** When the run started: the timestamp of backup names that are taken. */
  started?: Date | undefined;
  /** Slot 0 counts the bytes of large files in flight (see lib/run/progress.ts). */
  progress?: BigInt64Array | undefined;
  /** Transfers running at once. */
  jobs: number;
  /** Directory of foldersync's caches (the S3 metadata cache lives there); undefined for none. */
  cacheDir?: string | undefined;
  /** Nothing will be written: connect and list only (dry runs, verify). */
  readOnly: boolean;
  /** `--ssh-port`: the port for rsync's `host:path` form (ssh's `-p`). */
  sshPort?: number | undefined;
  /** `--ssh-key FILE`: the private key to log in with (ssh's `-i`, with `IdentitiesOnly=yes`). */
  sshKey?: string | undefined;
  /** `--known-hosts FILE`: where host keys are checked (ssh's `UserKnownHostsFile`). */
  knownHosts?: string | undefined;
  /** `--ssh-config FILE`: the ssh config file instead of ~/.ssh/config (ssh's `-F`). */
  sshConfig?: string | undefined;
  /** `--ssh-option Key=Value`, in order: more options for ssh (each an `-o`). */
  sshOptions?: readonly string[] | undefined;
  /** `--s3-endpoint URL` (else AWS_ENDPOINT_URL, else AWS itself). */
  s3Endpoint?: string | undefined;
  /**
   * `--hash NAME` as the user gave it: a replica whose {@linkcode Capabilities.hash} is another
   * refuses it when opened, before any request (S3: each object compared would be downloaded on
   * every run). Undefined when not given.
   */
  hash?: HashName | undefined;
  /**
   * Whether a process of this host that holds a lock entry still runs: decides, with
   * {@linkcode lockIsStale}, whether a lock left in the replica may be taken over.
   * @default processAlive
   */
  alive?: ((pid: number) => boolean) | undefined;
}
