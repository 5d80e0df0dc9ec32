/**
 * Read-ahead for a local replica's listings: the replica tree is walked in a worker, depth
 * first in sorted order as the source is, while this thread plans; each listing the march asks
 * for is then usually ready. rclone's checkers list ahead in the same spirit.
 *
 * @module
 */

import { FAILED, INCOMPLETE, type ListingBatch } from "../../model/listing.ts";
import type { PathFilter } from "../../model/filter.ts";
import { SourceWalk } from "./scan.ts";

/**
 * Entries held ready before read-ahead gives up and lists on demand: listings the march never
 * asks for (a folder only a concurrent change put there) must not pile up.
 */
const MAX_HELD_ENTRIES = 200_000;

/**
 * The listings of a replica tree, walked ahead of the march in a worker.
 *
 * Needs read permission for `root`.
 *
 * @example Taking listings in walk order
 * ```ts
 * const ahead = new ReadAhead("/backup/src");
 * const root = await ahead.take(""); // undefined: list it yourself
 * ahead.close();
 * ```
 */
export class ReadAhead {
  #walk: SourceWalk | undefined;
  #ready = new Map<string, { batch: ListingBatch; k: number }>();
  /** Directories listed on demand instead: their read-ahead copies (and their subtrees') are dropped when they come. */
  #skipped = new Set<string>();
  #held = 0;

  /**
   * Starts walking `root`, leaving out what `filter` excludes; the walk moves to its worker
   * after `workerAfterDirs` folders (see {@linkcode SourceWalk}).
   */
  constructor(root: string, options: { filter?: PathFilter | undefined; workerAfterDirs?: number } = {}) {
    const { filter, workerAfterDirs } = options;
    this.#walk = new SourceWalk(root, {
      freshBatches: true,
      ...(filter ? { filter } : {}),
      ...(workerAfterDirs !== undefined ? { workerAfterDirs } : {}),
    });
  }

  /**
   * The listing of `dir` (a batch of its own), or undefined when the caller must list it
   * itself: read-ahead has ended, failed, holds too much, or the listing is partial (the caller
   * may be able to open the folder up and read it whole).
   */
  async take(dir: string): Promise<ListingBatch | undefined> {
    for (;;) {
      const hit = this.#ready.get(dir);
      if (hit) {
        this.#ready.delete(dir);
        this.#held -= hit.batch.end(hit.k) - hit.batch.start(hit.k);
        if (hit.batch.flags[hit.k]! & (FAILED | INCOMPLETE)) return undefined;
        return hit.batch.extract(hit.k);
      }
      const walk = this.#walk;
      if (!walk || this.#held > MAX_HELD_ENTRIES) {
        this.skip(dir);
        return undefined;
      }
      let batch: ListingBatch | undefined;
      try {
        batch = await walk.next();
      } catch {
        batch = undefined; // the caller's own listing reports what went wrong
      }
      if (!batch) {
        walk.close();
        this.#walk = undefined;
        continue;
      }
      for (let k = 0; k < batch.dirs.length; k++) {
        const listed = batch.dirs[k]!;
        if (this.#isSkipped(listed)) continue;
        this.#ready.set(listed, { batch, k });
        this.#held += batch.end(k) - batch.start(k);
      }
    }
  }

  /**
   * Says that `dir` and everything under it are listed on demand: what read-ahead holds or
   * will bring of them is dropped.
   */
  skip(dir: string): void {
    if (!this.#walk) return;
    this.#skipped.add(dir);
    const prefix = dir === "" ? "" : `${dir}/`;
    for (const [listed, { batch, k }] of this.#ready) {
      if (listed === dir || listed.startsWith(prefix)) {
        this.#ready.delete(listed);
        this.#held -= batch.end(k) - batch.start(k);
      }
    }
  }

  #isSkipped(dir: string): boolean {
    if (this.#skipped.size === 0) return false;
    for (let d = dir;;) {
      if (this.#skipped.has(d)) return true;
      if (d === "") return false;
      const slash = d.lastIndexOf("/");
      d = slash === -1 ? "" : d.slice(0, slash);
    }
  }

  /** Stops the walk and drops what it holds. */
  close(): void {
    this.#walk?.close();
    this.#walk = undefined;
    this.#ready.clear();
    this.#held = 0;
  }
}
