/**
 * The plan as data: each action a sync can take on one replica entry, and a whole plan, in
 * the order its phases run. The planner makes them, the gate holds some back, the applier and
 * every backend carry them out, and `--dry-run` and `verify` print them.
 *
 * @module
 */

import type { Entry, EntryKind } from "./listing.ts";

/** Create a directory (first removing a non-directory that stands in its place). */
export interface MkdirAction {
  op: "mkdir";
  path: string;
  /** The kind of replica entry that must be removed first, if any. */
  replace?: EntryKind;
}

/** Copy a regular file: new (`copy`) or changed (`update`), with the source's metadata. */
export interface CopyAction {
  op: "copy" | "update";
  path: string;
  /** Size of the source file when scanned. */
  size: number;
  /** Modification time of the source file when scanned. */
  mtimeMs: number;
  /** Permission bits of the source file. */
  mode: number;
  /** The kind of replica entry that must be removed first, if any (never `file`). */
  replace?: EntryKind;
  /** For an update, what differs (as {@linkcode decide} names it). */
  reason?: "size" | "mtime" | "content";
}

/** Create or replace a symbolic link. */
export interface LinkAction {
  op: "link";
  path: string;
  /** The link's target text, copied verbatim. */
  target: string;
  /** Modification time of the source link. */
  mtimeMs: number;
  /** The kind of replica entry that must be replaced, if any. */
  replace?: EntryKind;
}

/** Set mode and mtime of a file or link whose content is already equal. */
export interface AttrsAction {
  op: "attrs";
  path: string;
  kind: "file" | "symlink";
  /** The source's modification time. */
  mtimeMs: number;
  /** The source's permission bits (not used for links). */
  mode: number;
  /** What differs: the mtime, else the mode. */
  reason: "mode" | "mtime";
}

/**
 * Remove one replica entry: one the source does not have, one inside a directory being
 * removed, or one whose type changed (a creation with `replace` then takes its place). A
 * directory is removed only after everything planned inside it, and only once it is empty.
 */
export interface RemoveAction {
  op: "remove";
  path: string;
  kind: EntryKind;
  /** Set when the entry's type changed: a new entry of another kind takes its place. */
  replaced?: true;
  /**
   * Set for a temp file that an interrupted run left (its name matches `TEMP_PATTERN`):
   * foldersync's own, so it is removed outright, never backed up, and never counted as a
   * removal (nor against `--max-delete`).
   */
  leftover?: true;
}

/** Give a directory the source's mode and mtime, once everything in it is done. */
export interface DirAttrs {
  path: string;
  /** The source's mtime; NaN where the source keeps none for this folder (then only the mode is set). */
  mtimeMs: number;
  mode: number;
  /**
   * What differs, when the directory's own attributes differ; absent when they are only put
   * back after changes inside it (or on a new directory).
   */
  reason?: "mode" | "mtime";
}

/** An entry left alone, with why (special files). */
export interface Skip {
  path: string;
  reason: string;
}

/** Everything one sync will do, in the order it must be done. */
export interface Plan {
  /** Directories to create, parents first. `""` is the replica root. */
  mkdirs: MkdirAction[];
  /** Files and links to copy, and attributes to set. */
  transfers: Array<CopyAction | LinkAction | AttrsAction>;
  /**
   * Replica entries to remove, one action each, children before their parents; a part's
   * removals run before its creations, so that stale entries free their names and space first.
   */
  removes: RemoveAction[];
  /** Temp files left by an interrupted run, removed first of all (see {@linkcode RemoveAction.leftover}). */
  leftovers: RemoveAction[];
  /** Directories whose mode and mtime must be set after their contents, deepest first, root last. */
  dirAttrs: DirAttrs[];
  /** Entries deliberately left alone. */
  skipped: Skip[];
  /** Bytes that copies and updates will write. */
  bytes: number;
}

/** The parent of a relative path (`""` for top-level names). */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? "" : path.slice(0, slash);
}

/**
 * A plan with nothing in it.
 *
 * @example Starting a plan
 * ```ts
 * const p = emptyPlan(); // { mkdirs: [], transfers: [], removes: [], leftovers: [], ... }
 * ```
 */
export function emptyPlan(): Plan {
  return { mkdirs: [], transfers: [], removes: [], leftovers: [], dirAttrs: [], skipped: [], bytes: 0 };
}

/** A pair of equal-sized files whose contents `--checksum` must compare. */
export interface ContentPair {
  path: string;
  source: Entry;
  replica: Entry;
}
