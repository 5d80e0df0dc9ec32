/**
 * PURE: the per-entry decision. Given what one name is in the source and in the replica, says
 * what differs, if anything: the planner turns that into an action, and `verify` into a
 * reason. Nothing here does I/O, and nothing else compares entries.
 *
 * @module
 */

import { UNKNOWN_MODE } from "../model/listing.ts";
import type { Capabilities } from "../model/capabilities.ts";
import type { EntryView } from "../model/listing.ts";
import { FULL_CAPS } from "../model/capabilities.ts";

/**
 * What one name needs, named by what differs:
 * - `same`: nothing;
 * - `extra`: only the replica has it (remove it);
 * - `missing`: only the source has it (create it);
 * - `special`: the source has a FIFO, socket or device, which is not copied;
 * - `dir`: a directory on both sides (plan inside it; its own attributes are compared by
 *   {@linkcode attrsDiffer});
 * - `type`: the kinds differ (remove the replica's, create the source's);
 * - `target`: a link's target text differs (relink);
 * - `size`, `mtime`: a file's content differs by size or modification time (update); for a
 *   link, `mtime` alone is an attribute to set;
 * - `content`: with `checksum`, a file of the same size whose content must be hashed to know;
 * - `mode`: a file's permission bits alone differ (set them).
 */
export type Decision =
  | "same"
  | "extra"
  | "missing"
  | "special"
  | "dir"
  | "type"
  | "target"
  | "size"
  | "mtime"
  | "content"
  | "mode";

/** Options for {@linkcode decide}. */
export interface DecideOptions {
  /**
   * Compare regular files of the same size by content (`content`), never by mtime.
   * @default false
   */
  checksum?: boolean;
  /**
   * What the replica keeps: only that is compared (modes, link times), and mtimes to its
   * resolution.
   * @default FULL_CAPS
   */
  caps?: Capabilities;
  /**
   * Mtimes that differ by at most this many milliseconds are equal (rsync's `--modify-window`),
   * on top of the replica's own resolution.
   * @default 0
   */
  modifyWindowMs?: number;
}

/**
 * The largest difference, in milliseconds, between two mtimes that still counts as equal: the
 * replica's resolution less one (a file system that keeps whole seconds truncates or rounds a
 * source's milliseconds away), or the user's `--modify-window`, whichever is larger.
 *
 * @example A replica that keeps whole seconds
 * ```ts
 * mtimeWindow({ modes: true, dirTimes: true, linkTimes: true, mtimeResolutionMs: 1000 }); // 999
 * ```
 */
export function mtimeWindow(caps: Capabilities, modifyWindowMs = 0): number {
  return Math.max(caps.mtimeResolutionMs - 1, modifyWindowMs, 0);
}

/**
 * True when two mtimes are equal within `windowMs` (see {@linkcode mtimeWindow}): a replica
 * that keeps whole seconds matches a source with milliseconds, whether it truncated them or
 * rounded them up (FAT does either, by OS).
 *
 * @example Whole seconds
 * ```ts
 * sameMtime(1_700_000_000_999, 1_700_000_000_000, 999); // true
 * ```
 */
export function sameMtime(a: number, b: number, windowMs: number): boolean {
  return windowMs <= 0 ? a === b : Math.abs(a - b) <= windowMs;
}

/**
 * Decides what one name needs from its source and replica entries (either may be absent).
 *
 * @example Deciding
 * ```ts
 * const file = { kind: "file", size: 3, mtimeMs: 1000, mode: 0o644 } as const;
 * decide(file, { ...file, mtimeMs: 2000 }); // "mtime"
 * decide(file, undefined); // "missing"
 * ```
 */
export function decide(
  source: EntryView | undefined,
  replica: EntryView | undefined,
  options: DecideOptions = {},
): Decision {
  const caps = options.caps ?? FULL_CAPS;
  const window = mtimeWindow(caps, options.modifyWindowMs);
  if (source === undefined) return replica === undefined ? "same" : "extra";
  const kind = source.kind;
  if (kind === "other") return "special";
  if (replica === undefined) return "missing";
  if (kind !== replica.kind) return "type";
  if (kind === "dir") return "dir";
  if (kind === "symlink") {
    if ((source.target ?? "") !== (replica.target ?? "")) return "target";
    return caps.linkTimes && !sameMtime(source.mtimeMs, replica.mtimeMs, window) ? "mtime" : "same";
  }
  if (source.size !== replica.size) return "size";
  if (options.checksum) return "content";
  if (!sameMtime(source.mtimeMs, replica.mtimeMs, window)) return "mtime";
  return caps.modes && modesDiffer(source.mode, replica.mode) ? "mode" : "same";
}

/** Options for {@linkcode attrsDiffer}. */
export interface AttrsOptions extends DecideOptions {
  /**
   * What the entries are: a directory's mtime counts only where the replica keeps directory
   * times.
   * @default "file"
   */
  kind?: "file" | "dir";
}

/**
 * Which kept attribute differs, mtime first, or undefined when none does: for directories (whose
 * mtime counts only where the replica keeps directory times), and for files whose content is
 * equal. An attribute a side does not know (a NaN mtime, {@linkcode UNKNOWN_MODE}) is no
 * difference.
 *
 * @example Comparing attributes
 * ```ts
 * attrsDiffer({ mtimeMs: 1, mode: 0o755 }, { mtimeMs: 1, mode: 0o700 }); // "mode"
 * ```
 */
export function attrsDiffer(
  source: Pick<EntryView, "mtimeMs" | "mode">,
  replica: Pick<EntryView, "mtimeMs" | "mode">,
  options: AttrsOptions = {},
): "mtime" | "mode" | undefined {
  const { caps = FULL_CAPS, kind = "file", modifyWindowMs } = options;
  const times = kind === "file" || caps.dirTimes;
  const timeKnown = !Number.isNaN(replica.mtimeMs) && !Number.isNaN(source.mtimeMs);
  if (times && timeKnown && !sameMtime(source.mtimeMs, replica.mtimeMs, mtimeWindow(caps, modifyWindowMs))) {
    return "mtime";
  }
  return caps.modes && modesDiffer(source.mode, replica.mode) ? "mode" : undefined;
}

/**
 * True when two modes are known and differ: a mode a side does not know ({@linkcode UNKNOWN_MODE},
 * an object stored without one) is no difference.
 *
 * @example An object without a mode
 * ```ts
 * modesDiffer(0o644, UNKNOWN_MODE); // false
 * ```
 */
export function modesDiffer(source: number, replica: number): boolean {
  return source !== replica && source !== UNKNOWN_MODE && replica !== UNKNOWN_MODE;
}
