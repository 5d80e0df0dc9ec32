/**
 * Device and inode numbers of local entries, and a walk over a tree's directories that looks
 * for one: what {@linkcode OverlapGuard} compares to catch a replica that is a folder of the
 * source under another path (a bind mount, a second mount, a hard-linked folder).
 *
 * @module
 */

import { join } from "node:path";
import type { Identity } from "../../model/identity.ts";

/**
 * The device and inode numbers of `path` (lstat: a link is not followed); undefined where it
 * cannot be read or the OS reports none (Windows).
 *
 * @example Comparing two paths
 * ```ts
 * const a = localIdentity("/data/src"), b = localIdentity("/mnt/bound");
 * ```
 */
export function localIdentity(path: string): Identity | undefined {
  try {
    const info = Deno.lstatSync(path);
    return info.dev !== null && info.ino !== null && info.ino !== 0 ? { dev: info.dev, ino: info.ino } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Walks every directory under `root` (links are not followed; excludes do not apply, since an
 * excluded folder is still the user's) and returns the relative path of the first one whose
 * identity `match` accepts, or undefined. Directories that cannot be read are passed over.
 *
 * Needs read permission for `root`.
 *
 * @example Looking for a folder
 * ```ts
 * findDir("/data/src", (id) => id.ino === 1234 && id.dev === 64769); // "photos/2026" or undefined
 * ```
 */
export function findDir(root: string, match: (identity: Identity) => boolean): string | undefined {
  const stack = [""];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(rel === "" ? root : join(root, rel))];
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (entry.isSymlink || entry.isFile) continue;
      const child = rel === "" ? entry.name : `${rel}/${entry.name}`;
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(join(root, child));
      } catch {
        continue;
      }
      if (!info.isDirectory || info.dev === null || info.ino === null) continue;
      if (match({ dev: info.dev, ino: info.ino })) return child;
      stack.push(child);
    }
  }
  return undefined;
}
