/**
 * PURE: decides, from two scans, every change that makes the replica equal to the source.
 *
 * The plan is data: `--dry-run` prints it, tests check it without touching a disk, and
 * `apply.ts` executes it. Like rclone's march/equal split, nothing here does I/O.
 *
 * @module
 */

import type { Entry, EntryKind } from "./scan.ts";

/** Create a directory (first removing a non-directory that stands in its place). */
export interface MkdirAction {
  op: "mkdir";
  path: string;
  /** The kind of replica entry that must be removed first, if any. */
  replace?: EntryKind;
}

/** Copy a regular file: new (`copy`) or changed (`update`). */
export interface CopyAction {
  op: "copy" | "update";
  path: string;
  /** Size of the source file when scanned. */
  size: number;
  /** The kind of replica entry that must be removed first, if any (never `file`). */
  replace?: EntryKind;
}

/** Create or replace a symbolic link. */
export interface LinkAction {
  op: "link";
  path: string;
  /** The link's target text, copied verbatim. */
  target: string;
  /** The kind of replica entry that must be replaced, if any. */
  replace?: EntryKind;
}

/** Set mode and mtime of a file or link whose content is already equal. */
export interface AttrsAction {
  op: "attrs";
  path: string;
  kind: "file" | "symlink";
}

/** Remove an entry the source does not have (a directory with everything in it). */
export interface RemoveAction {
  op: "remove";
  path: string;
  kind: EntryKind;
  /**
   * Remove before anything is created: the path differs from a new entry's only in case or
   * Unicode normalization, so on a case-insensitive file system it is the same name.
   */
  first?: true;
}

/** An entry left alone, with why (special files, entries under unreadable directories). */
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
  /** Extraneous entries to remove, deepest first; a directory is removed with its contents. */
  removes: RemoveAction[];
  /** Directories whose mode and mtime must be set after their contents, deepest first, root last. */
  dirAttrs: string[];
  /** Entries deliberately left alone. */
  skipped: Skip[];
  /** Bytes that copies and updates will write. */
  bytes: number;
}

/** What the planner knows of one tree. */
export interface PlanTree {
  /** The root's own metadata; `undefined` when the root does not exist (a new replica). */
  root?: Entry;
  /** Entries by relative path, `/`-separated, parents before children. */
  entries: ReadonlyMap<string, Entry>;
  /** Directories whose listing is incomplete. */
  incomplete?: ReadonlySet<string>;
  /** Replica directories whose mode the scan opened up: their mode must be set again. */
  loosened?: ReadonlySet<string>;
}

/** Options for {@linkcode plan}. */
export interface PlanOptions {
  /**
   * Compare regular files by content: files of equal size are equal only if listed in
   * `sameContent`; size and mtime are not used to decide.
   * @default false
   */
  checksum?: boolean;
  /** With `checksum`: relative paths whose content hashes are equal in both trees. */
  sameContent?: ReadonlySet<string>;
}

/** The parent of a relative path (`""` for top-level names). */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? "" : path.slice(0, slash);
}

function underAny(path: string, dirs: ReadonlySet<string> | undefined): boolean {
  if (!dirs || dirs.size === 0) return false;
  let p = path;
  while (p !== "") {
    p = parentOf(p);
    if (dirs.has(p)) return true;
  }
  return false;
}

/**
 * Computes the {@linkcode Plan} that turns the replica into an exact copy of the source.
 *
 * Pure: no I/O, no permissions. Never plans a removal under a source directory whose listing
 * is incomplete, since nothing there can be proved extraneous.
 *
 * @example Planning a new file
 * ```ts
 * const file = { kind: "file", size: 3, mtimeMs: 1000, mode: 0o644 } as const;
 * const dir = { kind: "dir", size: 0, mtimeMs: 1000, mode: 0o755 } as const;
 * const p = plan(
 *   { root: dir, entries: new Map([["a.txt", file]]) },
 *   { root: dir, entries: new Map() },
 * );
 * // p.transfers: [{ op: "copy", path: "a.txt", size: 3 }]
 * ```
 */
export function plan(source: PlanTree, replica: PlanTree, options: PlanOptions = {}): Plan {
  const { checksum = false, sameContent = new Set<string>() } = options;
  const result: Plan = { mkdirs: [], transfers: [], removes: [], dirAttrs: [], skipped: [], bytes: 0 };
  /** Directories whose entries change, so their mtime must be put back afterwards. */
  const touched = new Set<string>();
  /** Replica directories removed or replaced as a whole: nothing under them needs a plan. */
  const gone = new Set<string>();
  const dirAttrs = new Set<string>();

  if (!replica.root) {
    result.mkdirs.push({ op: "mkdir", path: "" });
    dirAttrs.add("");
  } else if (source.root && attrsDiffer(source.root, replica.root)) {
    dirAttrs.add("");
  }

  for (const [path, s] of source.entries) {
    const r = replica.entries.get(path);
    if (s.kind === "other") {
      result.skipped.push({ path, reason: "special file (FIFO, socket or device) is not copied" });
      continue;
    }
    if (!r || r.kind !== s.kind) {
      if (r?.kind === "dir") gone.add(path);
      planCreate(result, path, s, r?.kind);
      touched.add(parentOf(path));
      if (s.kind === "dir") dirAttrs.add(path);
      continue;
    }
    switch (s.kind) {
      case "file": {
        const differs = s.size !== r.size ||
          (checksum ? !sameContent.has(path) : s.mtimeMs !== r.mtimeMs);
        if (differs) {
          result.transfers.push({ op: "update", path, size: s.size });
          result.bytes += s.size;
          touched.add(parentOf(path));
        } else if (attrsDiffer(s, r)) {
          result.transfers.push({ op: "attrs", path, kind: "file" });
        }
        break;
      }
      case "symlink":
        if (s.target !== r.target) {
          result.transfers.push({ op: "link", path, target: s.target ?? "", replace: "symlink" });
          touched.add(parentOf(path));
        } else if (s.mtimeMs !== r.mtimeMs) {
          result.transfers.push({ op: "attrs", path, kind: "symlink" });
        }
        break;
      case "dir":
        if (attrsDiffer(s, r)) dirAttrs.add(path);
        break;
    }
  }

  for (const [path, r] of replica.entries) {
    if (source.entries.has(path) || underAny(path, gone)) continue;
    if (source.incomplete?.has(parentOf(path)) || underAny(path, source.incomplete)) {
      continue;
    }
    result.removes.push({ op: "remove", path, kind: r.kind });
    if (r.kind === "dir") gone.add(path);
    touched.add(parentOf(path));
  }
  result.removes.reverse();
  markEarlyRemoves(result);

  for (const dir of touched) dirAttrs.add(dir);
  for (const dir of replica.loosened ?? []) {
    if (dir === "" || (source.entries.get(dir)?.kind === "dir" && !gone.has(dir) && !underAny(dir, gone))) {
      dirAttrs.add(dir);
    }
  }
  result.dirAttrs = [...dirAttrs].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
  return result;
}

/** Folds a path the way case- and normalization-insensitive file systems compare names. */
function foldName(path: string): string {
  return path.normalize("NFC").toLowerCase();
}

/**
 * Marks removals that must come before creations: `a.txt` renamed to `A.txt` is a copy of
 * `A.txt` and a removal of `a.txt`, and on macOS or Windows the removal after the copy would
 * delete the new file.
 */
function markEarlyRemoves(result: Plan): void {
  if (result.removes.length === 0) return;
  const created = new Set<string>();
  for (const m of result.mkdirs) created.add(foldName(m.path));
  for (const t of result.transfers) if (t.op === "copy" || t.op === "link") created.add(foldName(t.path));
  for (const r of result.removes) if (created.has(foldName(r.path))) r.first = true;
}

function planCreate(result: Plan, path: string, s: Entry, replace: EntryKind | undefined): void {
  const extra = replace === undefined ? {} : { replace };
  if (s.kind === "dir") {
    result.mkdirs.push({ op: "mkdir", path, ...extra });
  } else if (s.kind === "symlink") {
    result.transfers.push({ op: "link", path, target: s.target ?? "", ...extra });
  } else {
    result.transfers.push({ op: "copy", path, size: s.size, ...extra });
    result.bytes += s.size;
  }
}

function attrsDiffer(s: Entry, r: Entry): boolean {
  return s.mtimeMs !== r.mtimeMs || s.mode !== r.mode;
}

/**
 * Counts the operations in a plan, for summaries and dry runs.
 *
 * @example Counting
 * ```ts
 * countPlan(p); // { create: 1, copy: 2, update: 0, link: 0, attrs: 0, remove: 1 }
 * ```
 */
export function countPlan(p: Plan): Record<"create" | "copy" | "update" | "link" | "attrs" | "remove", number> {
  const counts = { create: 0, copy: 0, update: 0, link: 0, attrs: 0, remove: 0 };
  for (const m of p.mkdirs) if (m.path !== "") counts.create++;
  for (const t of p.transfers) counts[t.op]++;
  counts.remove = p.removes.length;
  return counts;
}

/** True when the plan changes nothing at all (not even attributes). */
export function isEmptyPlan(p: Plan): boolean {
  return p.mkdirs.length === 0 && p.transfers.length === 0 && p.removes.length === 0 &&
    p.dirAttrs.length === 0;
}
