/**
 * The lock a remote replica holds while a run writes into it, written once for every remote
 * backend over the few primitives each one offers for its lock entry ({@linkcode LockEntry}).
 * The rules are those of lib/model/lock.ts: the entry is created only where there is none; one
 * found is respected unless it is stale, and a stale one is taken over by a replacement that is
 * read back, so that of two runs taking it over at once only one goes on; the entry is
 * refreshed every {@linkcode LOCK_REFRESH_MS} (a refresh that fails is a warning, not the end
 * of the run); and it is removed at the end only while it is still this run's.
 *
 * @module
 */

import { errorLine, LockedError } from "../model/errors.ts";
import { LOCK_REFRESH_MS, type LockInfo, lockIsStale, parseLock, processAlive } from "../model/lock.ts";
import { randomId } from "../model/names.ts";
import { logger } from "../log.ts";

/**
 * What a backend offers for its lock entry. One instance serves one run's lock: it may
 * remember the version it last read or wrote (an ETag, the text), which `replace` is
 * conditional on where the backend can make it so.
 */
export interface LockEntry {
  /** Creates the entry with `text` where there is none; false when one is there already. */
  create(text: string): Promise<boolean>;
  /** The entry's text; undefined when there is none. */
  read(): Promise<string | undefined>;
  /**
   * Replaces the entry with `text`, as a whole (a reader sees the old text or the new one).
   * Returns false when the backend can tell that the entry is no longer the version this
   * instance last read or wrote (someone else wrote it since), and then writes nothing.
   */
  replace(text: string): Promise<boolean>;
  /** Removes the entry (the backend's own cleanup, such as a folder's mtime, goes with it). */
  remove(): Promise<void>;
}

/** Options for {@linkcode takeRemoteLock}. */
export interface RemoteLockOptions {
  /** The replica as messages name it. */
  display: string;
  /**
   * This host's name, written into the entry.
   * @default Deno.hostname()
   */
  host?: string;
  /**
   * This process's id, written into the entry.
   * @default Deno.pid
   */
  pid?: number;
  /**
   * Whether a process of this host is running (a lock of this host naming a dead one is stale).
   * @default processAlive
   */
  alive?: (pid: number) => boolean;
  /**
   * How often the entry is refreshed, in milliseconds.
   * @default LOCK_REFRESH_MS
   */
  refreshMs?: number;
}

/** A remote lock held: disposing of it (or `release`) stops the refresh and removes the entry if still ours. */
export interface RemoteLock extends AsyncDisposable {
  /** Stops refreshing and removes the entry while it is still this run's; never throws. Idempotent. */
  release(): Promise<void>;
}

/** What a lock entry written by {@linkcode takeRemoteLock} holds: who, when, and which run. */
interface OwnLockInfo extends LockInfo {
  /** The run's random id: tells its entry apart from one another run of the same process wrote. */
  id?: string;
}

/** How often a create that failed because the entry was released meanwhile is tried again. */
const ATTEMPTS = 3;

/**
 * Takes the lock of a remote replica through `entry` (see the module's rules), and keeps it
 * refreshed until it is released. Throws {@linkcode LockedError} when another run holds it, or
 * won the takeover of a stale one; throws what the backend throws when the entry cannot be
 * written or read.
 *
 * @example Holding a replica's lock for a run
 * ```ts
 * await using _lock = await takeRemoteLock(entry, { display: "sftp://host/srv/backup" });
 * ```
 */
export async function takeRemoteLock(entry: LockEntry, options: RemoteLockOptions): Promise<RemoteLock> {
  const {
    display,
    host = Deno.hostname(),
    pid = Deno.pid,
    alive = processAlive,
    refreshMs = LOCK_REFRESH_MS,
  } = options;
  const id = randomId();
  const content = () => JSON.stringify({ host, pid, time: Date.now(), id });
  let taken = false;
  for (let attempt = 0; attempt < ATTEMPTS && !taken; attempt++) {
    if (await entry.create(content())) {
      taken = true;
      break;
    }
    const text = await entry.read();
    if (text === undefined) continue; // released meanwhile: create it again
    const held = parseLock(text);
    if (!lockIsStale(held, { host, now: Date.now(), alive })) {
      throw new LockedError(`Another foldersync is already syncing into the replica: '${display}' (${holder(held)})`);
    }
    if (!await entry.replace(content())) throw lostTakeover(display, await entry.read().catch(() => undefined));
    logger.warn(`Took over the stale lock of '${display}' (${holder(held)})`);
    taken = true;
  }
  if (!taken) throw new LockedError(`Cannot take the replica's lock, it keeps coming and going: '${display}'`);
  // A backend without conditional writes (or a server that ignores them) lets two runs both
  // write it: the entry read back says which one holds it.
  const now = await entry.read();
  if (ownId(now) !== id) throw lostTakeover(display, now);

  let refreshing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    refreshing = refreshing.then(async () => {
      try {
        if (!await entry.replace(content())) {
          logger.warn(`Cannot refresh the lock of '${display}': another foldersync holds it now`);
        }
      } catch (error) {
        logger.warn(`Cannot refresh the lock of '${display}': ${errorLine(error)}`);
      }
    });
  }, refreshMs);
  Deno.unrefTimer(timer);
  let released: Promise<void> | undefined;
  const release = () =>
    released ??= (async () => {
      clearInterval(timer);
      await refreshing;
      try {
        if (ownId(await entry.read()) === id) await entry.remove();
      } catch {
        // Left behind, it is stale once this process is gone (this host) or not refreshed (others).
      }
    })();
  return { release, [Symbol.asyncDispose]: release };
}

/** The id in a lock entry's text; undefined when there is none. */
function ownId(text: string | undefined): string | undefined {
  const info = text === undefined ? undefined : parseLock(text) as OwnLockInfo | undefined;
  return typeof info?.id === "string" ? info.id : undefined;
}

function lostTakeover(display: string, text: string | undefined): LockedError {
  const info = text === undefined ? undefined : parseLock(text);
  return new LockedError(
    `Another foldersync took over the replica's stale lock first: '${display}' (${holder(info)})`,
  );
}

/** Who holds a lock, for messages. */
function holder(info: LockInfo | undefined): string {
  if (!info || typeof info.pid !== "number" || typeof info.time !== "number") return "unreadable lock entry";
  const minutes = Math.round((Date.now() - info.time) / 60_000);
  return `held by process ${info.pid} on '${info.host}', refreshed ${minutes} min ago`;
}
