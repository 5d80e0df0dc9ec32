/**
 * Walks both trees in lockstep and plans as it goes: each source directory's listing (from
 * {@linkcode SourceWalk}, in a worker once one has booted) is paired with the same directory
 * of the replica, listed here, and both go to the {@linkcode Planner}. Directories that are new,
 * removed or replaced are never listed on the replica's side.
 *
 * @module
 */

import { RefusedError } from "./errors.ts";
import { type Entry, INCOMPLETE, ListingBatch, type ScanProblem, toEntry } from "./listing.ts";
import { type Plan, Planner, type PlanOptions } from "./plan.ts";
import { listDirectory, SourceWalk } from "./scan.ts";

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
  /** Called for each path of either tree that could not be read. */
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
  /** Paths that could not be read, on both sides. */
  problems: number;
}

/**
 * Lists `source` and `replica` side by side into a {@linkcode Planner}.
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
export async function marchTrees(source: string, replica: string, options: MarchOptions = {}): Promise<March> {
  const { fixPermissions = true, allowEmptySource = false, useWorker = true, onProblem = () => {}, signal } = options;
  const sourceRoot = toEntry(Deno.statSync(source));
  let replicaRoot: Entry | undefined;
  try {
    replicaRoot = toEntry(Deno.statSync(replica));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const planner = new Planner(sourceRoot, replicaRoot, options);
  const replicaBatch = new ListingBatch();
  let problems = 0;
  const scope = options.scope;
  const walk = new SourceWalk(
    source,
    scope ? { descend: (dir) => scope.has(dir) || planner.wants(dir) === "source" } : { useWorker },
  );
  try {
    for (let batch; (batch = await walk.next());) {
      for (const problem of batch.problems) onProblem("source", problem);
      problems += batch.problems.length;
      for (let k = 0; k < batch.dirs.length; k++) {
        const dir = batch.dirs[k]!;
        const wants = planner.wants(dir);
        if (wants !== "both") {
          if (wants) planner.add(batch, k);
          continue;
        }
        replicaBatch.reset();
        listDirectory(replicaBatch, replica, dir, fixPermissions);
        for (const problem of replicaBatch.problems) onProblem("replica", problem);
        problems += replicaBatch.problems.length;
        if (dir === "" && !allowEmptySource) refuseEmptySource(batch, replicaBatch, source);
        planner.add(batch, k, replicaBatch, 0);
      }
      await options.onBatch?.(planner);
      if (signal?.aborted) break;
    }
  } finally {
    walk.close();
  }
  return { planner, problems };
}

/** An empty source and a full replica usually mean an unmounted disk, not a wish to erase. */
function refuseEmptySource(source: ListingBatch, replica: ListingBatch, path: string): void {
  const count = replica.end(0) - replica.start(0);
  // A partial listing removes nothing anyway.
  if (source.end(0) > source.start(0) || source.flags[0]! & INCOMPLETE || count === 0) return;
  throw new RefusedError(
    `Source is empty but the replica has ${count} top-level ${count === 1 ? "entry" : "entries"}; ` +
      `refusing to empty it (is the source disk mounted?): '${path}'. Pass --allow-empty-source to mirror it anyway`,
  );
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
  replica: string,
  options: MarchOptions & { sameContent?: ReadonlySet<string> } = {},
): Promise<Plan> {
  const { planner } = await marchTrees(source, replica, options);
  return planner.finish(options.sameContent);
}
