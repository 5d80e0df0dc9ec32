/**
 * Walks both trees in lockstep and plans as it goes: each source directory's listing (from
 * {@linkcode SourceWalk}, in a worker once one has booted) is paired with the same directory
 * of the replica, listed here, and both go to the {@linkcode Planner}. Directories that are new,
 * removed or replaced are never listed on the replica's side.
 *
 * @module
 */

import { RefusedError } from "../errors.ts";
import { type EntryKind, FAILED, INCOMPLETE, type ListingBatch, type ScanProblem, toEntry } from "./listing.ts";
import { parentOf, type Plan, Planner, type PlanOptions } from "./plan.ts";
import type { PathFilter } from "./filter.ts";
import { SourceWalk } from "../replica/local/scan.ts";
import { LocalReplica } from "../replica/local/local_replica.ts";
import type { Replica } from "../replica/replica.ts";

/** Options for {@linkcode marchTrees}. */
export interface MarchOptions extends PlanOptions {
  /**
   * Open up replica directories that deny listing (not for dry runs, which change nothing).
   * @default true
   */
  fixPermissions?: boolean;
  /**
   * Plan to empty a non-empty replica when the source is empty (else {@linkcode RefusedError}).
   * @default false
   */
  allowEmptySource?: boolean;
  /**
   * Walk the source in a worker once one has booted.
   * @default true
   */
  useWorker?: boolean;
  /**
   * Leaves out excluded entries: not walked in the source; kept in the replica (never listed,
   * so never removed), unless `deleteExcluded`.
   */
  filter?: PathFilter | undefined;
  /**
   * Lists excluded replica entries too, so that they are removed as extraneous (rsync's
   * `--delete-excluded`).
   * @default false
   */
  deleteExcluded?: boolean;
  /**
   * Called for each path of either tree that could not be read, and for each source entry
   * that vanished while it was listed (`problem.vanished`).
   */
  onProblem?: (side: "source" | "replica", problem: ScanProblem) => void;
  /**
   * Called after each batch of listings, with the planner: the sync applies what has been
   * planned so far here, once enough has piled up. The walk waits for it.
   */
  onBatch?: (planner: Planner) => Promise<void> | void;
  /** Stops the walk between batches; the planner then holds a partial plan. */
  signal?: AbortSignal;
  /**
   * Plan only these directories (relative paths; each one's ancestors must be in it too), plus
   * whole new directories: for watch mode, after events in these directories. Directories
   * outside it are neither listed nor changed, except to remove or replace them as entries
   * of a listed directory.
   */
  scope?: ReadonlySet<string>;
}

/** What {@linkcode marchTrees} found. */
export interface March {
  /** The planner, ready for {@linkcode Planner.finish} (after hashing its content pairs). */
  planner: Planner;
  /** Paths that could not be read, on both sides (vanished entries are not problems). */
  problems: number;
  /** Replica entries listed (all of them, unless the walk had a `scope`). */
  replicaEntries: number;
}

/**
 * Lists `source` and `replica` side by side into a {@linkcode Planner}; `replica` is a local
 * folder's path or any {@linkcode Replica}, whose capabilities decide what is compared.
 *
 * Needs read permission for both trees (and write permission for the replica with
 * `fixPermissions`). Throws if a root cannot be listed, and {@linkcode RefusedError} when the
 * source is empty but the replica is not, unless `allowEmptySource`.
 *
 * @example Planning a sync
 * ```ts
 * const { planner } = await marchTrees("/data/src", "/backup/src");
 * const plan = planner.finish();
 * ```
 */
export async function marchTrees(
  source: string,
  replica: string | Replica,
  options: MarchOptions = {},
): Promise<March> {
  const { fixPermissions = true, allowEmptySource = false, useWorker = true, onProblem = () => {}, signal } = options;
  const filter = options.filter;
  const target: Replica = typeof replica === "string" ? new LocalReplica(source, replica) : replica;
  // The replica's side: excluded entries stay out of sight (kept), unless they are to go.
  const replicaFilter = options.deleteExcluded ? undefined : filter;
  const listing = { fixPermissions, ...(replicaFilter ? { filter: replicaFilter } : {}) };
  const sourceRoot = toEntry(Deno.statSync(source));
  const replicaRoot = await target.root();
  // A whole walk: the replica may list ahead of the march (a scoped walk lists a few folders).
  if (replicaRoot && !options.scope && useWorker) target.prefetch?.(listing);
  const planner = new Planner(sourceRoot, replicaRoot, { ...options, caps: options.caps ?? target.caps });
  let problems = 0;
  let replicaEntries = 0;
  const report = (side: "source" | "replica", list: readonly ScanProblem[]) => {
    for (const problem of list) {
      if (problem.vanished && side === "replica") continue; // already gone: nothing to do there
      onProblem(side, problem);
      if (!problem.vanished) problems++;
    }
  };
  /** Lists the contents of every replica directory the planner wants removed. */
  const emptyDirs = async () => {
    for (const dir of planner.takeDirsToEmpty()) {
      const listed = await listSubtree(target, dir.path, {
        fixPermissions,
        report: (list) => report("replica", list),
        ...(replicaFilter ? { filter: replicaFilter } : {}),
      });
      replicaEntries += listed?.contents.length ?? 0;
      planner.emptyDir(dir, listed?.contents, listed?.keepDir);
    }
  };
  const scope = options.scope;
  const walk = new SourceWalk(
    source,
    scope ? { descend: (dir) => scope.has(dir) || planner.wants(dir) === "source", filter } : { useWorker, filter },
  );
  try {
    for (let batch; (batch = await walk.next());) {
      report("source", batch.problems);
      for (let k = 0; k < batch.dirs.length; k++) {
        const dir = batch.dirs[k]!;
        const wants = planner.wants(dir);
        if (wants !== "both") {
          if (wants) planner.add(batch, k);
          continue;
        }
        const replicaBatch = await target.list(dir, listing);
        replicaEntries += replicaBatch.end(0) - replicaBatch.start(0);
        report("replica", replicaBatch.problems);
        if (dir === "" && !allowEmptySource) {
          await refuseEmptySource(batch, replicaBatch, { source, replica: target, filter, listing });
        }
        planner.add(batch, k, replicaBatch, 0);
        await emptyDirs();
      }
      await options.onBatch?.(planner);
      if (signal?.aborted) break;
    }
  } finally {
    walk.close();
    if (typeof replica === "string") await target.close();
  }
  return { planner, problems, replicaEntries };
}

/**
 * An empty source and a full replica usually mean an unmounted disk, not a wish to erase. A
 * source with no file, link or special file at any depth counts as empty (an empty mount
 * point with a few empty folders in it, say), and so does a replica with only empty folders.
 * Only a source root without any such entry of its own is walked further, and only until the
 * first one is found.
 */
async function refuseEmptySource(
  source: ListingBatch,
  replica: ListingBatch,
  roots: {
    source: string;
    replica: Replica;
    filter?: PathFilter | undefined;
    listing: { fixPermissions: boolean; filter?: PathFilter };
  },
): Promise<void> {
  const sourcePath = roots.source;
  const count = replica.end(0) - replica.start(0);
  // A partial listing removes nothing anyway.
  if (source.flags[0]! & INCOMPLETE || count === 0) return;
  for (let i = source.start(0); i < source.end(0); i++) if (source.kind(i) !== "dir") return;
  if (source.end(0) > source.start(0) && hasContent(sourcePath, roots.filter)) return;
  if (!await replicaHasContent(roots.replica, roots.listing)) return;
  const what = source.end(0) > source.start(0) ? "Source has no files, only empty folders," : "Source is empty";
  throw new RefusedError(
    `${what} but the replica has files; refusing to empty it (is the source disk mounted?): '${sourcePath}'. ` +
      `Pass --allow-empty-source to mirror it anyway`,
  );
}

/**
 * True if the tree at `root` holds anything but directories at any depth, excluded entries
 * aside; a directory that cannot be read counts as holding something, since nothing proves it
 * empty.
 */
function hasContent(root: string, filter?: PathFilter): boolean {
  const stack = [""];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    const prefix = rel === "" ? "" : `${rel}/`;
    try {
      for (const entry of Deno.readDirSync(rel === "" ? root : `${root}/${rel}`)) {
        if (filter?.excludes(prefix + entry.name, entry.isDirectory)) continue;
        if (!entry.isDirectory) return true;
        stack.push(prefix + entry.name);
      }
    } catch {
      return true;
    }
  }
  return false;
}

/** {@linkcode hasContent} for a replica, through its listings (excluded entries left out). */
async function replicaHasContent(
  replica: Replica,
  listing: { fixPermissions: boolean; filter?: PathFilter },
): Promise<boolean> {
  const stack = [""];
  while (stack.length > 0) {
    const batch = await replica.list(stack.pop()!, listing);
    if (batch.flags[0]! & (FAILED | INCOMPLETE)) return true;
    for (let i = batch.start(0); i < batch.end(0); i++) {
      if (batch.kind(i) !== "dir") return true;
      stack.push(batch.dirs[0] === "" ? batch.names[i]! : `${batch.dirs[0]}/${batch.names[i]!}`);
    }
  }
  return false;
}

/**
 * Every entry under replica directory `dir` that may go, parents before children, for its
 * removal; or undefined when part of it could not be listed (and so may hold what nobody has
 * seen). Excluded entries are kept, and so are the directories above them: `keepDir` says
 * that `dir` itself must stay.
 */
async function listSubtree(
  replica: Replica,
  dir: string,
  how: {
    fixPermissions: boolean;
    report: (problems: readonly ScanProblem[]) => void;
    filter?: PathFilter;
  },
): Promise<{ contents: Array<{ path: string; kind: EntryKind }>; keepDir: boolean } | undefined> {
  const { filter } = how;
  const contents: Array<{ path: string; kind: EntryKind }> = [];
  const kept = new Set<string>();
  const stack = [dir];
  while (stack.length > 0) {
    const current = stack.pop()!;
    const batch = await replica.list(current, { fixPermissions: how.fixPermissions });
    how.report(batch.problems);
    if (batch.flags[0]! & (FAILED | INCOMPLETE)) return undefined;
    for (let i = batch.start(0); i < batch.end(0); i++) {
      const path = `${current}/${batch.names[i]!}`;
      const kind = batch.kind(i);
      if (filter?.excludes(path, kind === "dir")) {
        for (let up = current; !kept.has(up); up = parentOf(up)) {
          kept.add(up);
          if (up === dir) break;
        }
        continue;
      }
      contents.push({ path, kind });
      if (kind === "dir") stack.push(path);
    }
  }
  if (kept.size === 0) return { contents, keepDir: false };
  return { contents: contents.filter((c) => !kept.has(c.path)), keepDir: true };
}

/**
 * Plans a sync of `source` into `replica` entirely: walks both trees, and with `checksum`
 * treats every content pair as equal only if `sameContent` lists it. For tests and tools that
 * do not hash.
 *
 * Needs read permission for both trees (and write permission for the replica unless
 * `fixPermissions` is false). Throws as {@linkcode marchTrees} does.
 *
 * @example Printing what a sync would do
 * ```ts
 * const plan = await planTrees("/data/src", "/backup/src", { fixPermissions: false });
 * for (const t of plan.transfers) console.log(t.op, t.path);
 * ```
 */
export async function planTrees(
  source: string,
  replica: string | Replica,
  options: MarchOptions & { sameContent?: ReadonlySet<string> } = {},
): Promise<Plan> {
  const { planner } = await marchTrees(source, replica, options);
  return planner.finish(options.sameContent);
}
