/**
 * One foldersync per replica: exclusive advisory locks (flock) that the OS drops when the
 * process dies, so a killed process never leaves a stale lock behind.
 *
 * A local replica has two. A lock file in this user's cache folder (`locks/`), named after
 * the replica's real path, as a remote replica's is after its URL: it follows the path, so a
 * replica folder deleted and made again under a running loop is still locked, and a symbolic
 * link or a relative path to the replica names the same lock. And a lock on the replica
 * folder's own open handle, which nothing else needs and which catches the same folder
 * reached through another mount. Neither puts anything in the replica.
 *
 * @module
 */

import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { LockedError } from "../../model/errors.ts";

/** Options for {@linkcode lockReplica}. */
export interface LockOptions {
  /**
   * The folder of this host's lock files (see {@linkcode lockFolder}); without it, only the
   * replica folder itself is locked.
   */
  lockDir?: string;
}

/** Reads a variable only where that is granted already: a run never prompts. */
function grantedEnv(name: string): string | undefined {
  return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted"
    ? Deno.env.get(name)
    : undefined;
}

/**
 * The folder of this host's lock files: `locks/` in `cacheDir` when one is given
 * (`--cache-dir`), else in the user's cache folder (`$XDG_CACHE_HOME/foldersync`,
 * `~/.cache/foldersync`, `%LOCALAPPDATA%\foldersync`), as `env` gives the variables (by
 * default: those that may be read without asking), as a real path (symbolic links resolved as
 * far as it exists). Undefined when the variables are not there.
 *
 * @example The default folder
 * ```ts
 * lockFolder(undefined); // "/home/ana/.cache/foldersync/locks"
 * ```
 */
export function lockFolder(
  cacheDir: string | undefined,
  env: (name: string) => string | undefined = grantedEnv,
): string | undefined {
  if (cacheDir !== undefined) return realPath(join(resolve(cacheDir), "locks"));
  let base: string | undefined;
  if (Deno.build.os === "windows") {
    const local = env("LOCALAPPDATA");
    base = local ? join(local, "foldersync") : undefined;
  } else {
    const xdg = env("XDG_CACHE_HOME");
    const home = env("HOME");
    base = xdg ? join(xdg, "foldersync") : home ? join(home, ".cache", "foldersync") : undefined;
  }
  return base === undefined ? undefined : realPath(join(resolve(base), "locks"));
}

/** True when `path` may be read and written without asking: a run never prompts. */
function granted(path: string): boolean {
  return Deno.permissions.querySync({ name: "read", path }).state === "granted" &&
    Deno.permissions.querySync({ name: "write", path }).state === "granted";
}

/** The real path of `path`, which may not exist yet: its nearest existing folder's, and the rest as it is. */
function realPath(path: string): string {
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return path;
  try {
    return Deno.realPathSync(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(realPath(parent), basename(path));
  }
}

/**
 * The name of the lock file of `key` (a replica's real path, or a remote replica's URL): a
 * digest, so that any path makes a short, plain file name.
 *
 * @example A lock file's name
 * ```ts
 * await lockName("/backup/photos"); // "3f1c...e2.lock" (24 hex digits)
 * ```
 */
export async function lockName(key: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
  return `${[...digest.slice(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("")}.lock`;
}

/** True when `inner` is `outer` or lies inside it. */
function isWithin(outer: string, inner: string): boolean {
  const rel = relative(outer, inner);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * Takes the locks of the replica folder `replica` (see the module's text), or throws if
 * another process holds either. The lock file is left out where `lockDir` is missing, may not
 * be read and written without asking, cannot be written, or lies inside the replica (a sync
 * would remove it); the folder's own lock is left out where directories cannot be opened
 * (Windows).
 *
 * Needs read permission for `replica`, and read and write permission for `lockDir`.
 *
 * @throws {LockedError} When another process holds a lock of this replica.
 * @example Holding the locks for a run
 * ```ts
 * using _lock = await lockReplica("/backup/photos", { lockDir: lockFolder(undefined) });
 * ```
 */
export async function lockReplica(replica: string, options: LockOptions = {}): Promise<Disposable> {
  const held: Disposable[] = [];
  const release = () => {
    for (const lock of held.splice(0).reverse()) lock[Symbol.dispose]();
  };
  const refuse = () => {
    release();
    return new LockedError(`Another foldersync is already syncing into the replica: '${replica}'`);
  };
  let real: string;
  try {
    real = Deno.realPathSync(replica);
  } catch {
    real = resolve(replica);
  }
  const { lockDir } = options;
  if (lockDir !== undefined && !isWithin(real, resolve(lockDir)) && granted(lockDir)) {
    let file: Disposable | undefined | "unusable";
    try {
      file = await lockFile(join(lockDir, await lockName(real)));
    } catch {
      file = "unusable"; // a cache folder that cannot be written: the folder's own lock still holds
    }
    if (file === undefined) throw refuse();
    if (file !== "unusable") held.push(file);
  }
  const folder = await lockFolderHandle(real);
  if (folder === undefined) throw refuse();
  held.push(folder);
  return { [Symbol.dispose]: release };
}

/** The flock on the folder's own open handle; a no-op where it cannot be taken; undefined when held elsewhere. */
async function lockFolderHandle(folder: string): Promise<Disposable | undefined> {
  let handle: Deno.FsFile;
  try {
    handle = await Deno.open(folder, { read: true });
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
