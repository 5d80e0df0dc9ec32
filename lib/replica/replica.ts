/**
 * The replica interface: everything the lockstep walk, the planner and the applier ask of the
 * side being written. A local folder ({@linkcode LocalReplica}), a folder on another host over
 * SFTP, and a bucket prefix in S3-compatible storage implement it.
 *
 * Paths are relative to the replica root, `/`-separated; `""` is the root. Every listing is
 * sorted by {@linkcode compareNames} (UTF-16 code units), whatever order the server gives.
 *
 * @module
 */

import type { Entry, ListingBatch } from "../engine/listing.ts";
import type { PathFilter } from "../engine/filter.ts";
import type { HashName } from "../content/hash.ts";
import type { AttrsAction, CopyAction, DirAttrs, LinkAction, RemoveAction } from "../engine/plan.ts";

/** What a replica keeps, and so what the planner compares. */
export interface Capabilities {
  /** Permission bits are kept and listed (else modes are neither compared nor set). */
  modes: boolean;
  /** Directory modification times are kept and listed (else no directory attributes are set). */
  dirTimes: boolean;
  /** Symbolic links' own modification times are kept and listed. */
  linkTimes: boolean;
  /**
   * Modification times are kept to this many milliseconds: 1 locally (Deno reports
   * milliseconds), 1000 over SFTP (whole seconds). Source and replica mtimes are compared
   * after truncating both to it, so that a no-op never copies again.
   */
  mtimeResolutionMs: number;
  /**
   * The hash whose digests the replica knows without reading files (S3: `md5`, from ETags):
   * `--checksum` uses it unless `--hash` names another.
   * @default undefined (digests are computed by reading)
   */
  hash?: HashName;
  /**
   * Transfers in flight by default (`--jobs` overrides): a remote replica hides its round
   * trips behind many requests at once.
   * @default 8
   */
  jobs?: number;
}

/** How {@linkcode Replica.list} lists one directory. */
export interface ListOptions {
  /** Open up directories that deny listing, for the owner (local replicas, real runs). */
  fixPermissions: boolean;
  /** Leaves out excluded entries (they are kept, never removed). */
  filter?: PathFilter | undefined;
}

/** What a copy did. */
export interface CopyResult {
  /** Bytes written (the source may have grown since it was listed). */
  size: number;
  /** The old version went to the backup folder first. */
  backedUp: boolean;
}

/**
 * A replica: the side of a sync that is written. Implementations never throw for one entry
 * without saying which (the applier logs the error against the entry and goes on), and never
 * write through a symbolic link.
 *
 * Writes are atomic per entry: a file is written under a temp name `.foldersync-*.tmp` beside
 * its final name, given its attributes, then renamed over it; a temp file left by a killed run
 * is an extraneous entry that the next run removes.
 */
export interface Replica {
  /** The replica as the user wrote it (a path or a URL), for messages. */
  readonly display: string;
  /** What this replica keeps. */
  readonly caps: Capabilities;
  /**
   * A folder inside the replica that the walk must leave alone (the backup folder when it is
   * inside the replica), relative; undefined when none.
   */
  readonly protect?: string | undefined;
  /** True when removed and overwritten entries are moved aside (`--backup-dir`). */
  readonly backsUp: boolean;

  /** The root: its entry, or undefined when it does not exist. Throws when it cannot be read. */
  root(): Promise<Entry | undefined>;

  /**
   * Lists directory `dir` into a new batch (one directory, begun with `batch.begin(dir)`),
   * sorted, excluded entries left out, the replica's own lock entry never shown.
   *
   * Never throws for a directory inside the tree: one that cannot be listed is flagged
   * FAILED with a problem, one that vanished VANISHED, a partial listing INCOMPLETE (see
   * listing.ts). Throws only when the root (`dir` is `""`) cannot be listed.
   */
  list(dir: string, options: ListOptions): Promise<ListingBatch>;

  /**
   * Told that the whole tree will be listed, depth first in sorted order, with `options`:
   * the replica may read ahead. Optional.
   */
  prefetch?(options: ListOptions): void;

  /**
   * The one removal primitive: removes entry `action.path` (a directory only once it is empty:
   * its contents are planned before it), or moves it to the backup folder. Returns true when it
   * was moved aside. Throws `Deno.errors.NotFound` when it is already gone.
   */
  remove(action: RemoveAction): Promise<boolean>;

  /** Makes directory `rel` (its attributes come later, from setDirAttrs). */
  mkdir(rel: string): Promise<void>;

  /**
   * Copies source file `action.path` into place, atomically, with its mtime (and mode, where
   * kept). A source file that changed while it was read is read once more; throws when the
   * source file is gone.
   */
  copy(action: CopyAction): Promise<CopyResult>;

  /** Creates or replaces a symbolic link; returns whether the old entry was backed up. */
  link(action: LinkAction): Promise<boolean>;

  /** Sets the mode and mtime of a file, or the mtime of a link, whose content is already equal. */
  setAttrs(action: AttrsAction): Promise<void>;

  /** Sets a directory's mode and mtime (only called when `caps.dirTimes` or `caps.modes`). */
  setDirAttrs(entry: DirAttrs): Promise<void>;

  /**
   * A fast path for many plain copies at once (local: copy workers). Calls `done` for each
   * action completed and returns those left for {@linkcode Replica.copy}. Optional.
   */
  copyMany?<T extends { op: string; path: string }>(
    actions: readonly T[],
    how: { workers: number; skip: (action: T) => boolean; done: (action: CopyAction) => void },
  ): Promise<T[]>;

  /**
   * The content digest of file `rel` in hex, for `--checksum`: from what the server already
   * knows where it can (an S3 single-part ETag is the MD5), else by reading the file. Undefined
   * when this replica cannot give `hash` (the comparer then reads the file itself).
   */
  digest?(rel: string, hash: HashName, signal?: AbortSignal): Promise<string | undefined>;

  /** True when source entry `rel` no longer exists (deleted while the run went on). */
  sourceGone(rel: string): Promise<boolean>;

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

  /** Closes connections; the replica is not used after. */
  close(): Promise<void>;
}

/** How a remote replica is reached and what it is told; one object for every backend. */
export interface ReplicaOptions {
  /** Absolute path of the local source folder. */
  source: string;
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
   * Whether a process of this host that holds a lock entry still runs: decides, with
   * {@linkcode lockIsStale}, whether a lock left in the replica may be taken over.
   * @default processAlive
   */
  alive?: ((pid: number) => boolean) | undefined;
}

/** Temp files are named `.foldersync-<random>.tmp`; short, so that 255-byte names still fit. */
export const TEMP_PATTERN: RegExp = /^\.foldersync-[0-9a-z]{10}\.tmp$/;

/** Ten random characters of `[0-9a-z]`: temp names, lock ids. */
export function randomId(): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${(random[0]! % 36 ** 5).toString(36).padStart(5, "0")}${
    (random[1]! % 36 ** 5).toString(36).padStart(5, "0")
  }`;
}

/** A new temp name, of the shape {@linkcode TEMP_PATTERN} matches: every replica writes through one. */
export function tempName(): string {
  return `.foldersync-${randomId()}.tmp`;
}

/** The variables of the AWS credential chain, region and endpoint, and the home that holds ~/.aws. */
export const AWS_ENV = [
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_PROFILE",
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_S3",
  "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_CONFIG_FILE",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "HOME",
  "USERPROFILE",
] as const;

/**
 * Every variable a remote replica's clients may read (a service of one is granted these): the
 * S3 client's. ssh, a process of its own, gets the whole environment without a grant.
 */
export const REMOTE_ENV: readonly string[] = AWS_ENV;

/** The name of the lock entry a remote replica keeps in its root while a run holds it. */
export const LOCK_NAME = ".foldersync.lock";

/** What a remote lock entry says about the run that holds it (stored as JSON). */
export interface LockInfo {
  host: string;
  pid: number;
  /** When the lock was taken or last refreshed, ms since the epoch. */
  time: number;
}

/** A remote lock is refreshed this often while its run goes on. */
export const LOCK_REFRESH_MS = 60_000;

/** A remote lock not refreshed for this long belongs to a run that died on another host. */
export const LOCK_STALE_MS = 10 * 60_000;

/**
 * PURE: the rule for a lock entry found in a remote replica. It is stale, and may be taken
 * over, when it cannot be read as a lock, when it names this host and a process that is not
 * running, or when it has not been refreshed for {@linkcode LOCK_STALE_MS}.
 *
 * @example A lock left by a dead process on this host
 * ```ts
 * lockIsStale({ host: "a", pid: 42, time: Date.now() }, { host: "a", now: Date.now(), alive: () => false }); // true
 * ```
 */
export function lockIsStale(
  info: LockInfo | undefined,
  here: { host: string; now: number; alive: (pid: number) => boolean },
): boolean {
  if (!info || typeof info.host !== "string" || typeof info.pid !== "number" || typeof info.time !== "number") {
    return true;
  }
  if (info.host === here.host && !here.alive(info.pid)) return true;
  return here.now - info.time > LOCK_STALE_MS;
}

/** Parses a lock entry's content; undefined when it is not one. */
export function parseLock(text: string): LockInfo | undefined {
  try {
    const value = JSON.parse(text);
    return value && typeof value === "object" ? value as LockInfo : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when process `pid` is running on this host, read from /proc on Linux (no permission to
 * signal processes is needed); true wherever it cannot tell, so that only time makes it stale.
 */
export function processAlive(pid: number): boolean {
  if (Deno.build.os !== "linux") return true;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound);
  }
}
