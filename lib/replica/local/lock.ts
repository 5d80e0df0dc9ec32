/**
 * One foldersync per replica: an exclusive advisory lock (flock) on the replica directory.
 *
 * The lock lives on the directory's open file handle, not in a file: nothing appears in the
 * replica for a mirror check to see, and the OS drops it when the process dies, so a killed
 * process never leaves a stale lock behind.
 *
 * @module
 */

import { dirname } from "node:path";
import { LockedError } from "../../errors.ts";

/**
 * Takes the exclusive lock on the directory `replica`, or throws if another process has it.
 *
 * Needs read permission for `replica`. Where directories cannot be opened (Windows), it
 * returns a no-op lock.
 *
 * @throws {LockedError} When another process holds the lock.
 * @example Holding the lock for a run
 * ```ts
 * using _lock = await lockReplica("/backup/photos");
 * ```
 */
export async function lockReplica(replica: string): Promise<Disposable> {
  let handle: Deno.FsFile;
  try {
    handle = await Deno.open(replica, { read: true });
  } catch {
    return { [Symbol.dispose]() {} };
  }
  let locked: boolean;
  try {
    locked = await handle.tryLock(true);
  } catch {
    handle.close();
    return { [Symbol.dispose]() {} };
  }
  if (!locked) {
    handle.close();
    throw new LockedError(`Another foldersync is already syncing into the replica: '${replica}'`);
  }
  return {
    [Symbol.dispose]() {
      try {
        handle.close();
      } catch {
        // already closed
      }
    },
  };
}

/**
 * Takes an exclusive advisory lock (flock) on the file `path`, created with its folder if
 * missing, or returns undefined if another process holds it. The OS drops it when the process
 * dies: a remote replica's lock entry left by a process of this host is stale exactly when
 * this lock can be taken.
 *
 * Needs read and write permission for `path`.
 *
 * @example Holding a lock file
 * ```ts
 * using held = await lockFile("/home/me/.cache/foldersync/locks/abc.lock");
 * ```
 */
export async function lockFile(path: string): Promise<Disposable | undefined> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const handle = await Deno.open(path, { read: true, write: true, create: true });
  let locked: boolean;
  try {
    locked = await handle.tryLock(true);
  } catch (error) {
    handle.close();
    throw error;
  }
  if (!locked) {
    handle.close();
    return undefined;
  }
  return {
    [Symbol.dispose]() {
      try {
        handle.close();
      } catch {
        // already closed
      }
    },
  };
}
