/**
 * Opens remote replicas: loads the backend a URL names (ssh2 and the S3 client are loaded
 * only then: every import costs every start), connects, creates the replica folder when it is
 * missing, and takes the replica's lock for the run.
 *
 * @module
 */

import { describeError, UsageError } from "../errors.ts";
import type { Replica, ReplicaOptions } from "./replica.ts";
import type { S3Target, SftpTarget } from "./target.ts";

/** Options for {@linkcode remoteOpener}: what every connection is told, and `--mkpath`. */
export type OpenerOptions = Omit<ReplicaOptions, "started" | "readOnly"> & {
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
  check(readOnly: boolean): Promise<Replica>;
  /** Opens the replica for one run (see RunControl.openReplica): created if missing, and locked unless `readOnly`. */
  open(run: { started: Date; readOnly: boolean }): Promise<Replica>;
}

/**
 * An opener for the remote replica `target`.
 *
 * Needs network permission for the host (and what the backend reads: ~/.ssh, ~/.aws, the
 * environment). A permission missing is a {@linkcode UsageError} naming the flag to add.
 *
 * @example Syncing into a bucket
 * ```ts
 * const opener = remoteOpener(parseTarget("s3://backups/site") as S3Target, { source: "/srv/site", jobs: 8 });
 * await opener.check(false);
 * await runOnce(options, { openReplica: opener.open });
 * ```
 */
export function remoteOpener(target: SftpTarget | S3Target, options: OpenerOptions): RemoteOpener {
  const { mkpath = false, ...base } = options;
  let kept: Replica | undefined;
  const connect = async (readOnly: boolean, started: Date): Promise<Replica> => {
    try {
      if (target.kind === "sftp") {
        const { openSftpReplica } = await import("./sftp/sftp_replica.ts");
        return await openSftpReplica(target, { ...base, readOnly, started });
      }
      const { openS3Replica } = await import("./s3/s3_replica.ts");
      return await openS3Replica(target, { ...base, readOnly, started });
    } catch (error) {
      throw permissionError(error) ?? error;
    }
  };
  return {
    async check(readOnly) {
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
        // The run closes the replica whatever happens: the lock goes with it.
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

/** Creates the replica folder, as rsync does: only itself, unless `--mkpath`. */
async function createRoot(replica: Replica, mkpath: boolean): Promise<void> {
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
  if (!(error instanceof Deno.errors.NotCapable) && !(error instanceof Deno.errors.PermissionDenied)) return undefined;
  const message = describeError(error);
  const net = /net access to "([^"]+)"/.exec(message)?.[1];
  if (net) return new UsageError(`Permission needed to reach '${net}': add --allow-net=${net}`, { cause: error });
  const env = /env access to "([^"]+)"/.exec(message)?.[1];
  if (env) return new UsageError(`Permission needed to read ${env}: add --allow-env=${env}`, { cause: error });
  const read = /read access to "([^"]+)"/.exec(message)?.[1];
  if (read) return new UsageError(`Permission needed to read '${read}': add --allow-read=${read}`, { cause: error });
  if (/Requires/.test(message)) return new UsageError(`Permission needed: ${message}`, { cause: error });
  return undefined;
}
