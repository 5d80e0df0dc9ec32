/**
 * The rules of the lock entry a remote replica keeps in its root while a run holds it: its
 * name, what it says, how often it is refreshed, and when one left behind is stale.
 *
 * @module
 */

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
