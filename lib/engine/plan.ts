/**
 * PURE: decides, directory by directory, every change that makes the replica equal to the
 * source.
 *
 * Like rclone's march, the {@linkcode Planner} merges the sorted listings of the same
 * directory in both trees, so it never holds a whole tree: only the plan (the changes) and the
 * directories still to visit. The plan is data: `--dry-run` prints it, tests check it without
 * touching a disk, and `apply.ts` executes it. Nothing here does I/O.
 *
 * @module
 */

import { attrsDiffer, decide, type DecideOptions } from "./decide.ts";
import { type Capabilities, FULL_CAPS } from "../model/capabilities.ts";
import { TEMP_PATTERN } from "../model/names.ts";
import {
  BatchCursor,
  compareNames,
  type Entry,
  type EntryKind,
  FAILED,
  INCOMPLETE,
  ListingBatch,
  LOOSENED,
  UNKNOWN_MODE,
  VANISHED,
} from "../model/listing.ts";
import {
  type ContentPair,
  type CopyAction,
  type DirAttrs,
  emptyPlan,
  parentOf,
  type Plan,
  type RemoveAction,
} from "../model/actions.ts";

/** Options for {@linkcode Planner} and {@linkcode plan}. */
export interface PlanOptions {
  /**
   * Compare regular files by content: equal-sized files become {@linkcode ContentPair}s, and
   * are equal only if {@linkcode Planner.finish} is told so; mtime is not used to decide.
   * @default false
   */
  checksum?: boolean;
  /**
   * Replica-relative paths that are neither removed nor created over, nor planned into (the
   * `--backup-dir` folder when it lies inside the replica); under a replica directory being
   * emptied, march still lists them, and they and the directories on their way are kept.
   * (To be folded into excludes.)
   * @default undefined (none)
   */
  protect?: ReadonlySet<string>;
  /**
   * What the replica keeps: only that is compared and set.
   * @default FULL_CAPS (a local folder)
   */
  caps?: Capabilities;
  /**
   * Mtimes within this many milliseconds of each other are equal (`--modify-window`).
   * @default 0
   */
  modifyWindowMs?: number;
}

/**
 * The modes a copy gets where the source does not know its entry's (an object stored without
 * one): what a umask of 022 gives, as rclone does.
 */
const DEFAULT_FILE_MODE = 0o644;
const DEFAULT_DIR_MODE = 0o755;

/** A source directory whose listing the planner still waits for. */
interface PendingDir {
  /** True when the replica has no directory there: everything in it is created. */
  fresh: boolean;
  /** The source directory's own metadata. */
  entry: Entry;
}

/**
 * Builds a {@linkcode Plan} from the listings of both trees, one directory at a time, parents
 * before children. For each directory it {@linkcode Planner.wants}, the caller lists the
 * replica's side (unless the directory is new) and hands both to {@linkcode Planner.add};
 * directories it does not want (under a removed or replaced directory) are skipped.
 *
 * Never plans a removal in a source directory whose listing is incomplete, since nothing there
 * can be proved extraneous, and nothing at all under a source directory that failed to list.
 *
 * @example Planning a new file
 * ```ts
 * const dir = { kind: "dir", size: 0, mtimeMs: 1000, mode: 0o755 } as const;
 * const planner = new Planner(dir, dir);
 * const source = new ListingBatch();
 * source.begin("");
 * source.push("a.txt", { kind: "file", size: 3, mtimeMs: 1000, mode: 0o644 });
 * const replica = new ListingBatch();
 * replica.begin("");
 * planner.add(source, 0, replica, 0);
 * planner.finish().transfers; // [{ op: "copy", path: "a.txt", size: 3, mtimeMs: 1000, mode: 0o644 }]
 * ```
 */
export class Planner {
  /** Source entries seen in the listings planned so far. */
  sourceEntries = 0;
  #plan: Plan = emptyPlan();
  #options: DecideOptions;
  /** See {@linkcode PlanOptions.protect}. */
  #protect: ReadonlySet<string> | undefined;
  #pending = new Map<string, PendingDir>();
  /** Replica directories to remove whose contents the caller must list: path and whether replaced. */
  #toEmpty: Array<{ path: string; replaced: boolean }> = [];
  #dirAttrs = new Map<string, DirAttrs>();
  #pairs: ContentPair[] = [];
  /** Source metadata of directories holding content pairs, in case one of them is updated. */
  #pairDirs = new Map<string, Entry>();

  /** Starts a plan; `replicaRoot` is undefined when the replica does not exist yet. */
  constructor(sourceRoot: Entry, replicaRoot: Entry | undefined, options: PlanOptions = {}) {
    this.#options = { checksum: options.checksum ?? false, caps: options.caps ?? FULL_CAPS };
    if (options.modifyWindowMs) this.#options.modifyWindowMs = options.modifyWindowMs;
    if (options.protect?.size) this.#protect = options.protect;
    if (!replicaRoot) this.#plan.mkdirs.push({ op: "mkdir", path: "" });
    this.#pending.set("", { fresh: !replicaRoot, entry: sourceRoot });
    const differs = replicaRoot && attrsDiffer(sourceRoot, replicaRoot, { ...this.#options, kind: "dir" });
    if (differs) this.#setDirAttrs("", sourceRoot, differs);
  }

  /**
   * Whether the planner wants the listing of source directory `dir`: `"both"` with the
   * replica's listing too, `"source"` when the replica has nothing there, `undefined` when
   * the directory needs no plan.
   */
  wants(dir: string): "both" | "source" | undefined {
    const pending = this.#pending.get(dir);
    return pending === undefined ? undefined : pending.fresh ? "source" : "both";
  }

  /** The pairs `--checksum` must hash before {@linkcode Planner.finish}. */
  get contentPairs(): readonly ContentPair[] {
    return this.#pairs;
  }

  /**
   * Plans directory `source.dirs[k]` from its source listing and, unless it is new (or the
   * replica's side could not be listed), the replica's listing `replica.dirs[rk]`.
   */
  add(source: ListingBatch, k: number, replica?: ListingBatch, rk = 0): void {
    const dir = source.dirs[k]!;
    const pending = this.#pending.get(dir);
    if (!pending) return;
    this.#pending.delete(dir);
    const flags = source.flags[k]!;
    if (flags & (FAILED | VANISHED)) return;
    const r = pending.fresh ? undefined : replica;
    // A replica directory that could not be listed is left alone, subtree and all: planned as
    // empty, its files would be copied again and its subdirectories fail.
    if (r !== undefined && r.flags[rk]! & FAILED) return;
    const prefix = dir === "" ? "" : `${dir}/`;
    let touched = false;
    let i = source.start(k);
    const iEnd = source.end(k);
    let j = r ? r.start(rk) : 0;
    const jEnd = r ? r.end(rk) : 0;
    this.sourceEntries += iEnd - i;

    const sv = new BatchCursor(source);
    const rv = r ? new BatchCursor(r) : undefined;
    while (i < iEnd || j < jEnd) {
      const order = i === iEnd ? 1 : j === jEnd ? -1 : compareNames(source.names[i]!, r!.names[j]!);
      // A protected name is skipped on both sides: never removed, never created over.
      if (this.#protect?.has(prefix + (order > 0 ? r!.names[j]! : source.names[i]!))) {
        if (order <= 0) i++;
        if (order >= 0) j++;
        continue;
      }
      if (order > 0) {
        // Only in the replica: extraneous, unless the source listing is partial.
        if (!(flags & INCOMPLETE)) {
          const kind = r!.kind(j);
          if (kind === "file" && TEMP_PATTERN.test(r!.names[j]!)) {
            this.#plan.leftovers.push({ op: "remove", path: prefix + r!.names[j]!, kind, leftover: true });
          } else {
            this.#remove(prefix + r!.names[j]!, kind, false);
          }
          touched = true;
        }
        j++;
        continue;
      }
      const path = prefix + source.names[i]!;
      switch (decide(sv.at(i), order === 0 ? rv!.at(j) : undefined, this.#options)) {
        case "special":
          this.#plan.skipped.push({ path, reason: "special file (FIFO, socket or device) is not copied" });
          break;
        case "missing":
          this.#create(path, source, i, undefined);
          touched = true;
          break;
        case "type":
          this.#remove(path, r!.kind(j), true);
          this.#create(path, source, i, r!.kind(j));
          touched = true;
          break;
        case "dir": {
          // Decided here, so that a sync of only some directories still puts back a changed mode.
          const entry = source.entry(i);
          this.#pending.set(path, { fresh: false, entry });
          const differs = attrsDiffer(entry, rv!, { ...this.#options, kind: "dir" });
          if (differs) this.#setDirAttrs(path, entry, differs);
          break;
        }
        case "target":
          this.#plan.transfers.push({
            op: "link",
            path,
            target: source.target(i) ?? "",
            mtimeMs: source.mtimeMs(i),
            replace: "symlink",
          });
          touched = true;
          break;
        case "mtime":
          if (sv.kind === "symlink") {
            const mtimeMs = sv.mtimeMs;
            this.#plan.transfers.push({ op: "attrs", path, kind: "symlink", mtimeMs, mode: 0, reason: "mtime" });
            break;
          }
          this.#copy("update", path, source.entry(i), undefined, "mtime");
          touched = true;
          break;
        case "size":
          this.#copy("update", path, source.entry(i), undefined, "size");
          touched = true;
          break;
        case "content":
          this.#pairs.push({ path, source: source.entry(i), replica: r!.entry(j) });
          this.#pairDirs.set(dir, pending.entry);
          break;
        case "mode":
          this.#plan.transfers.push({
            op: "attrs",
            path,
            kind: "file",
            mtimeMs: sv.mtimeMs,
            mode: sv.mode,
            reason: "mode",
          });
          break;
      }
      i++;
      if (order === 0) j++;
    }

    const loosened = r !== undefined && (r.flags[rk]! & LOOSENED) !== 0;
    if (pending.fresh || touched || loosened) this.#setDirAttrs(dir, pending.entry);
  }

  /**
   * Replica directories planned for removal (extraneous, or replaced by a file or link) whose
   * contents must be listed before they can be planned: hand each to
   * {@linkcode Planner.emptyDir} before the next {@linkcode Planner.add} or
   * {@linkcode Planner.takePart}.
   */
  takeDirsToEmpty(): Array<{ path: string; replaced: boolean }> {
    const dirs = this.#toEmpty;
    this.#toEmpty = [];
    return dirs;
  }

  /**
   * Plans the removal of replica directory `dir` and of everything in it, from `contents`:
   * every entry under it, parents before children (as a depth-first walk lists them), with
   * paths relative to the replica root. With `contents` undefined (part of the subtree could
   * not be listed), nothing is planned: what was not seen is never removed, and whatever was
   * to take its place fails on the entry still there. With `keepDir` (it holds excluded
   * entries), `dir` itself stays.
   */
  emptyDir(
    dir: { path: string; replaced: boolean },
    contents: ReadonlyArray<{ path: string; kind: EntryKind }> | undefined,
    keepDir = false,
  ): void {
    if (contents === undefined) return;
    // A protected path, and every directory on the way to it, stays.
    const protect = this.#protect;
    const kept = (path: string) => {
      if (protect === undefined) return false;
      for (const p of protect) if (within(p, path)) return true;
      return false;
    };
    for (let i = contents.length - 1; i >= 0; i--) {
      const { path, kind } = contents[i]!;
      if (kept(path)) continue;
      if (kind === "file" && TEMP_PATTERN.test(path.slice(path.lastIndexOf("/") + 1))) {
        this.#plan.leftovers.push({ op: "remove", path, kind, leftover: true });
      } else {
        this.#plan.removes.push({ op: "remove", path, kind });
      }
    }
    if (keepDir || kept(dir.path)) return; // excluded or protected entries stay inside
    const action: RemoveAction = { op: "remove", path: dir.path, kind: "dir" };
    if (dir.replaced) action.replaced = true;
    this.#plan.removes.push(action);
  }

  /** Actions planned and not yet taken by {@linkcode Planner.takePart}. */
  get pendingActions(): number {
    return this.#plan.mkdirs.length + this.#plan.transfers.length + this.#plan.removes.length +
      this.#plan.leftovers.length;
  }

  /**
   * Takes what has been planned so far as a partial plan (removals, directories, copies,
   * links, attributes), to be applied while the walk goes on: every directory its creations
   * need is in this part or an earlier one, and every removal it holds is complete (a
   * directory's contents come with it). Directory attributes stay for
   * {@linkcode Planner.finish}, since they must come last.
   */
  takePart(): Plan {
    const part: Plan = {
      mkdirs: this.#plan.mkdirs,
      transfers: this.#plan.transfers,
      removes: this.#plan.removes,
      leftovers: this.#plan.leftovers,
      dirAttrs: [],
      skipped: [],
      bytes: this.#plan.bytes,
    };
    this.#plan.mkdirs = [];
    this.#plan.transfers = [];
    this.#plan.removes = [];
    this.#plan.leftovers = [];
    this.#plan.bytes = 0;
    return part;
  }

  /**
   * The finished plan: what {@linkcode Planner.takePart} has not taken, and all directory
   * attributes. With `checksum`, `sameContent` lists the paths of the remaining
   * {@linkcode Planner.contentPairs} whose contents are equal; the others are updated.
   */
  finish(sameContent: ReadonlySet<string> = new Set()): Plan {
    this.settlePairs(sameContent);
    this.#plan.dirAttrs = [...this.#dirAttrs.values()].sort((a, b) => (a.path < b.path ? 1 : a.path > b.path ? -1 : 0));
    return this.#plan;
  }

  /**
   * Decides the {@linkcode Planner.contentPairs} planned so far, now that they are hashed:
   * `sameContent` lists those whose contents are equal, and the others are updated. A
   * `--checksum` sync settles pairs in parts as the walk goes, to keep memory bounded.
   */
  settlePairs(sameContent: ReadonlySet<string>): void {
    for (const { path, source, replica } of this.#pairs) {
      if (!sameContent.has(path)) {
        this.#copy("update", path, source, undefined, "content");
        const dir = parentOf(path);
        if (!this.#dirAttrs.has(dir)) this.#setDirAttrs(dir, this.#pairDirs.get(dir)!);
      } else {
        const differs = attrsDiffer(source, replica, this.#options);
        if (differs) {
          this.#plan.transfers.push({
            op: "attrs",
            path,
            kind: "file",
            mtimeMs: source.mtimeMs,
            mode: source.mode,
            reason: differs,
          });
        }
      }
    }
    this.#pairs = [];
    this.#pairDirs.clear();
  }

  /** Plans removing replica entry `path`; a directory waits for its contents to be listed. */
  #remove(path: string, kind: EntryKind, replaced: boolean): void {
    if (kind === "dir") {
      this.#toEmpty.push({ path, replaced });
      return;
    }
    const action: RemoveAction = { op: "remove", path, kind };
    if (replaced) action.replaced = true;
    this.#plan.removes.push(action);
  }

  #create(path: string, source: ListingBatch, i: number, replace: EntryKind | undefined): void {
    const extra = replace === undefined ? {} : { replace };
    const entry = source.entry(i);
    if (entry.kind === "dir") {
      this.#plan.mkdirs.push({ op: "mkdir", path, ...extra });
      this.#pending.set(path, { fresh: true, entry });
    } else if (entry.kind === "symlink") {
      this.#plan.transfers.push({ op: "link", path, target: entry.target ?? "", mtimeMs: entry.mtimeMs, ...extra });
    } else {
      this.#copy("copy", path, entry, replace);
    }
  }

  #copy(
    op: "copy" | "update",
    path: string,
    entry: Entry,
    replace?: EntryKind,
    reason?: CopyAction["reason"],
  ): void {
    const mode = entry.mode === UNKNOWN_MODE ? DEFAULT_FILE_MODE : entry.mode;
    const action: CopyAction = { op, path, size: entry.size, mtimeMs: entry.mtimeMs, mode };
    if (replace !== undefined) action.replace = replace;
    if (reason !== undefined) action.reason = reason;
    this.#plan.transfers.push(action);
    this.#plan.bytes += entry.size;
  }

  #setDirAttrs(path: string, entry: Entry, reason?: DirAttrs["reason"]): void {
    const mode = entry.mode === UNKNOWN_MODE ? DEFAULT_DIR_MODE : entry.mode;
    const attrs: DirAttrs = { path, mtimeMs: entry.mtimeMs, mode };
    const why = reason ?? this.#dirAttrs.get(path)?.reason;
    if (why !== undefined) attrs.reason = why;
    this.#dirAttrs.set(path, attrs);
  }
}

/** True when `a` is `b`, or one lies inside the other (relative paths). */
function within(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/** Two whole trees, for {@linkcode plan}. */
export interface PlanTree {
  /** The root's own metadata; `undefined` when the root does not exist (a new replica). */
  root?: Entry;
  /** Entries by relative path, `/`-separated. */
  entries: ReadonlyMap<string, Entry>;
  /** Directories whose listing is incomplete. */
  incomplete?: ReadonlySet<string>;
  /** Replica directories whose mode the scan opened up: their mode must be set again. */
  loosened?: ReadonlySet<string>;
  /** Replica directories that could not be listed. */
  failed?: ReadonlySet<string>;
}

const NO_DIR: Entry = { kind: "dir", size: 0, mtimeMs: 0, mode: 0o755 };

/**
 * Plans two whole trees held in memory, through the same {@linkcode Planner} the sync uses:
 * for tests and tools that already have both trees.
 *
 * @example Planning a new file
 * ```ts
 * const file = { kind: "file", size: 3, mtimeMs: 1000, mode: 0o644 } as const;
 * const dir = { kind: "dir", size: 0, mtimeMs: 1000, mode: 0o755 } as const;
 * const p = plan({ root: dir, entries: new Map([["a.txt", file]]) }, { root: dir, entries: new Map() });
 * // p.transfers: [{ op: "copy", path: "a.txt", size: 3, mtimeMs: 1000, mode: 0o644 }]
 * ```
 */
export function plan(
  source: PlanTree,
  replica: PlanTree,
  options: PlanOptions & { sameContent?: ReadonlySet<string> } = {},
): Plan {
  const planner = new Planner(source.root ?? NO_DIR, replica.root, options);
  const sourceDirs = byParent(source.entries);
  const replicaDirs = byParent(replica.entries);
  const listing = (dirs: Map<string, Array<[string, Entry]>>, dir: string, flags: number) => {
    const batch = new ListingBatch();
    batch.flags[batch.begin(dir)] = flags;
    for (const [name, entry] of dirs.get(dir) ?? []) batch.push(name, entry);
    return batch;
  };
  /** The replica's entries under `dir`, parents before children, as a walk lists them. */
  const subtree = (dir: string, out: Array<{ path: string; kind: EntryKind }> = []) => {
    for (const [name, entry] of replicaDirs.get(dir) ?? []) {
      out.push({ path: `${dir}/${name}`, kind: entry.kind });
      if (entry.kind === "dir") subtree(`${dir}/${name}`, out);
    }
    return out;
  };
  const stack = [""];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const wants = planner.wants(dir);
    if (!wants) continue;
    const flags = source.incomplete?.has(dir) ? INCOMPLETE : 0;
    const rFlags = (replica.loosened?.has(dir) ? LOOSENED : 0) | (replica.failed?.has(dir) ? FAILED : 0);
    planner.add(listing(sourceDirs, dir, flags), 0, wants === "both" ? listing(replicaDirs, dir, rFlags) : undefined);
    for (const gone of planner.takeDirsToEmpty()) planner.emptyDir(gone, subtree(gone.path));
    const prefix = dir === "" ? "" : `${dir}/`;
    const children = sourceDirs.get(dir) ?? [];
    for (let i = children.length - 1; i >= 0; i--) {
      if (children[i]![1].kind === "dir") stack.push(prefix + children[i]![0]);
    }
  }
  return planner.finish(options.sameContent);
}

/** Entries grouped by parent directory, each group sorted by name. */
function byParent(entries: ReadonlyMap<string, Entry>): Map<string, Array<[string, Entry]>> {
  const dirs = new Map<string, Array<[string, Entry]>>();
  for (const [path, entry] of entries) {
    const parent = parentOf(path);
    let list = dirs.get(parent);
    if (!list) dirs.set(parent, list = []);
    list.push([path.slice(parent === "" ? 0 : parent.length + 1), entry]);
  }
  for (const list of dirs.values()) list.sort((a, b) => compareNames(a[0], b[0]));
  return dirs;
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
    p.leftovers.length === 0 && p.dirAttrs.length === 0;
}
