/**
 * Opens remote replicas: loads the backend a URL names (the SFTP and S3 clients are loaded
 * only then: every import costs every start), connects, creates the replica folder when it is
 * missing, and takes the replica's locks: a lock file on this host for the whole process, and
 * the lock entry in the replica for each run.
 *
 * @module
 */

import { join } from "node:path";
import { describeError, LockedError, UsageError } from "../model/errors.ts";
import { processAlive } from "../model/lock.ts";
import type { Backend, BackendOptions, Sides } from "./backend.ts";
import { lockFile } from "./local/lock.ts";
import { type FsOps, LocalBackend } from "./local/local_backend.ts";
import type { LocalTarget, ReplicaTarget } from "./target.ts";
import { backendOf } from "./registry.ts";

/** Options for {@linkcode remoteOpener}: what every connection is told, and `--mkpath`. */
export type OpenerOptions = Omit<BackendOptions, "started" | "readOnly"> & {
  /**
   * Create the replica folder's missing parents too.
   * @default false
   */
  mkpath?: boolean;
};

/** Opens a remote replica for a check and then for each run; see {@linkcode remoteOpener}. */
export interface RemoteOpener {
  /**
   * Connects once, before anything is touched, so that bad input (an unknown host, refused
   * authentication, a changed host key, a missing bucket) is exit 2 with one line. The
   * connection is kept for the first run. Returns the replica, unlocked.
   */
  check(readOnly: boolean): Promise<Backend>;
  /** Opens the replica for one run (see RunControl.openReplica): created if missing, and locked unless `readOnly`. */
  open(run: { started: Date; readOnly: boolean }): Promise<Backend>;
}

/**
 * An opener for the remote replica `target`.
 *
 * Needs `--allow-run=ssh` for an SFTP replica (ssh reads ~/.ssh and reaches the host), network
 * permission for an S3 endpoint (and what its client reads: ~/.aws, the environment). A
 * permission missing is a {@linkcode UsageError} naming the flag to add.
 *
 * @example Syncing into a bucket
 * ```ts
 * const opener = remoteOpener(parseTarget("s3://backups/site") as S3Target, { jobs: 8 });
 * await opener.check(false);
 * await runOnce(options, { openReplica: opener.open });
 * ```
 */
export function remoteOpener(target: Exclude<ReplicaTarget, LocalTarget>, options: OpenerOptions): RemoteOpener {
  const { mkpath = false, ...base } = options;
  let kept: Backend | undefined;
  // While this process holds the replica's lock file on this host, a lock entry in the replica
  // that names this host belongs to a process that is gone (the OS dropped its lock file).
  let holdsLocalLock = false;
  let localHeld: Disposable | undefined;
  base.alive = (pid) => pid !== Deno.pid && !holdsLocalLock && processAlive(pid);
  const connect = async (readOnly: boolean, started: Date): Promise<Backend> => {
    try {
      return await backendOf(target).open(target, { ...base, readOnly, started });
    } catch (error) {
      throw permissionError(error) ?? error;
    }
  };
  return {
    async check(readOnly) {
      // This host's lock on the replica is held for the whole process, as a local replica's
      // is: a second foldersync here is refused even between the runs of a loop.
      if (!readOnly && !holdsLocalLock) {
        localHeld = await localLock(options.cacheDir, target.display);
        holdsLocalLock = localHeld !== undefined;
      }
      kept = await connect(readOnly, new Date());
      return kept;
    },
    async open({ started, readOnly }) {
      const first = kept !== undefined;
      const replica = kept ?? await connect(readOnly, started);
      kept = undefined;
      if (readOnly) return replica;
      try {
        if (!await replica.root()) {
          // Made by the first run only: in a loop, a replica that was there and is gone is a
          // lost mount or a removed folder, not something to fill again.
          if (!first) throw new Error(`Replica folder is missing: '${replica.display}': not recreated`);
          await createRoot(replica, mkpath);
        }
        const lock = await replica.lock();
        const close = replica.close.bind(replica);
        // The run closes the replica whatever happens: the replica's lock entry goes with it.
        replica.close = async () => {
          try {
            await lock[Symbol.asyncDispose]();
          } finally {
            await close();
          }
        };
        return replica;
      } catch (error) {
        await replica.close().catch(() => {});
        throw error;
      }
    },
  };
}

/**
 * The lock file of this replica on this host, in the cache folder (`locks/`): one foldersync
 * per replica here, and the proof that a lock entry of this host in the replica is stale.
 * Undefined without a cache folder (then only time makes such an entry stale).
 */
async function localLock(cacheDir: string | undefined, display: string): Promise<Disposable | undefined> {
  if (cacheDir === undefined) return undefined;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(display)));
  const name = [...digest.slice(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("");
  let held: Disposable | undefined;
  try {
    held = await lockFile(join(cacheDir, "locks", `${name}.lock`));
  } catch {
    return undefined; // a cache folder that cannot be written: the replica's own lock still holds
  }
  if (!held) throw new LockedError(`Another foldersync of this host is already syncing into the replica: '${display}'`);
  return held;
}

/** Creates the replica folder, as rsync does: only itself, unless `--mkpath`. */
async function createRoot(replica: Backend, mkpath: boolean): Promise<void> {
  try {
    await replica.createRoot(mkpath);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(
        `Replica's parent folder does not exist: '${replica.display}' (pass --mkpath to create it)`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** A missing Deno permission as one line that names the flag to add; undefined for other errors. */
function permissionError(error: unknown): UsageError | undefined {
  // The backends may have wrapped it in a line of their own: its text still says what is missing.
  const message = describeError(error);
  if (!/Requires (net|env|read|write|sys|run) access/.test(message)) return undefined;
  const net = /net access to "([^"]+)"/.exec(message)?.[1];
  if (net) return new UsageError(`Permission needed to reach '${net}': add --allow-net=${net}`, { cause: error });
  const env = /env access to "([^"]+)"/.exec(message)?.[1];
  if (env) return new UsageError(`Permission needed to read ${env}: add --allow-env=${env}`, { cause: error });
  const run = /run access to "([^"]+)"/.exec(message)?.[1];
  if (run) return new UsageError(`Permission needed to run '${run}': add --allow-run=${run}`, { cause: error });
  const read = /read access to "([^"]+)"/.exec(message)?.[1];
  if (read) return new UsageError(`Permission needed to read '${read}': add --allow-read=${read}`, { cause: error });
  if (/Requires/.test(message)) return new UsageError(`Permission needed: ${message}`, { cause: error });
  return undefined;
}

/** Options for {@linkcode localSides}. */
export interface LocalSidesOptions {
  /** Absolute path of the source folder. */
  source: string;
  /** Absolute path of the replica folder. */
  replica: string;
  /** Absolute path of the backup folder (`--backup-dir`); undefined for none. */
  backupDir?: string | undefined;
  /** Stops copies in flight. */
  signal?: AbortSignal | undefined;
  /** Slot 0 counts the bytes of large files in flight (see lib/run/progress.ts). */
  progress?: BigInt64Array | undefined;
  /** The replica's file-system layer, for fault injection in tests. */
  fs?: FsOps | undefined;
}

/**
 * The two sides of a run between local folders: the source read, the replica written (its
 * mtime resolution probed, or inferred when read-only).
 *
 * @example Syncing two folders once
 * ```ts
 * const options = { source: "/data/src", replica: "/backup/src" };
 * await runOnce(options, { sides: localSides(options) });
 * ```
 */
export function localSides(options: LocalSidesOptions): Sides {
  const { source, replica, backupDir, signal, progress, fs } = options;
  return {
    source: () => Promise.resolve(new LocalBackend(source, { readOnly: true, signal })),
    replica: ({ started, readOnly }) =>
      Promise.resolve(
        new LocalBackend(replica, {
          ...(fs ? { fs } : {}),
          signal,
          ...(backupDir !== undefined ? { backupDir, started } : {}),
          progress,
          readOnly,
          probeTimes: true,
        }),
      ),
  };
}
