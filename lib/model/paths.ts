/**
 * Paths on this machine: whether one lies inside another (by text; case-insensitively where
 * the file system usually is), and the relative path between them.
 *
 * @module
 */

import { isAbsolute, relative, sep } from "node:path";

/** True if `inner` is `outer` or lies below it. */
export function isWithin(outer: string, inner: string): boolean {
  const fold = Deno.build.os === "windows" || Deno.build.os === "darwin"
    ? (p: string) => p.toLowerCase()
    : (p: string) => p;
  const rel = relative(fold(outer), fold(inner));
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

/**
 * The `/`-separated path of `inner` relative to `outer` when it lies strictly inside it (both
 * absolute and real); undefined otherwise.
 *
 * @example Relative paths
 * ```ts
 * relativeInside("/mnt/backup", "/mnt/backup/trash/2026"); // "trash/2026"
 * relativeInside("/mnt/backup", "/mnt/other"); // undefined
 * ```
 */
export function relativeInside(outer: string, inner: string): string | undefined {
  if (!isWithin(outer, inner)) return undefined;
  const rel = relative(outer, inner);
  return rel === "" ? undefined : rel.split(sep).join("/");
}
