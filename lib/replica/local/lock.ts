/**
 * One foldersync per replica: an exclusive advisory lock (flock) on the replica directory.
 *
 * The lock lives on the directory's open file handle, not in a file: nothing appears in the
 * replica for a mirror check to see, and the OS drops it when the process dies, so a killed
 * process never leaves a stale lock behind.
 *
 * @module
 */

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
