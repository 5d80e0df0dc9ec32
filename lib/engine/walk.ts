/**
 * A whole-tree walk over {@linkcode Backend.list}, for a source backend that has no walk of its
 * own (a remote folder, a bucket): depth first in sorted order, parents before children, one
 * directory a batch. A backend that reads ahead (SFTP) is told first.
 *
 * @module
 */

import type { Backend, TreeWalk, WalkOptions } from "../backend/backend.ts";
import { type ListingBatch, pushSubdirs } from "../model/listing.ts";

/**
 * Walks `backend` from its root with {@linkcode Backend.list}; see {@linkcode WalkOptions} for
 * `descend` (a scoped walk: subdirectories are entered only once approved, after their
 * parent's listing was handled).
 *
 * @example Walking a remote folder
 * ```ts
 * const walk = listWalk(backend, {});
 * for (let batch; (batch = await walk.next());) console.log(batch.dirs[0]);
 * walk.close();
 * ```
 */
export function listWalk(backend: Backend, options: WalkOptions): TreeWalk {
  const { filter, descend } = options;
  const listing = { fixPermissions: false, ...(filter ? { filter } : {}) };
  if (!descend) backend.prefetch?.(listing);
  const stack = [""];
  let last: ListingBatch | undefined;
  let closed = false;
  return {
    async next() {
      if (last && descend) pushSubdirs(last, 0, stack, descend);
      last = undefined;
      const dir = stack.pop();
      if (dir === undefined || closed) return undefined;
      const batch = await backend.list(dir, listing);
      if (!descend) pushSubdirs(batch, 0, stack);
      last = batch;
      return batch;
    },
    close() {
      closed = true;
    },
  };
}
