/**
 * Read-ahead for remote listings: over SFTP a listing costs round trips, not work, so while
 * the walk handles one directory, the directories it will most likely ask for next are
 * listed already, several at once, in the order a depth-first walk in sorted order visits
 * them.
 *
 * @module
 */

import type { ListingBatch } from "../../model/listing.ts";

/** Options for {@linkcode ReadAhead}. */
export interface ReadAheadOptions {
  /**
   * Listings in flight at once.
   * @default 32
   */
  concurrency?: number;
  /**
   * Listings kept (in flight or done, not yet asked for); a full cache stops the read-ahead
   * until the walk catches up.
   * @default 512
   */
  capacity?: number;
  /** Subdirectories never to list ahead (the protected backup folder). */
  skip?: (dir: string) => boolean;
}

/**
 * Lists directories ahead of a depth-first walk. {@linkcode ReadAhead.take} hands over a
 * listing done or in flight (once: a second call lists again); {@linkcode ReadAhead.follow}
 * tells it which subdirectories a listing holds, to be listed next, first child first.
 *
 * @example Listing through the read-ahead
 * ```ts
 * const ahead = new ReadAhead((dir) => listRemote(dir));
 * const batch = await (ahead.take(dir) ?? ahead.listNow(dir));
 * ```
 */
export class ReadAhead {
  #list: (dir: string) => Promise<ListingBatch>;
  #concurrency: number;
  #capacity: number;
  #skip: ((dir: string) => boolean) | undefined;
  /** Directories to list ahead; the top is listed first. */
  #stack: string[] = [];
  /** Listings in flight or done, not yet taken, in the order they were started. */
  #cache = new Map<string, Promise<ListingBatch>>();
  #inFlight = 0;
  #stopped = false;
  /** Listings handed over from the cache, and lists that had to wait for none. */
  hits = 0;
  misses = 0;

  constructor(list: (dir: string) => Promise<ListingBatch>, options: ReadAheadOptions = {}) {
    this.#list = list;
    this.#concurrency = options.concurrency ?? 32;
    this.#capacity = options.capacity ?? 512;
    this.#skip = options.skip;
  }

  /** The listing of `dir`, done or in flight, taken out of the cache; undefined when none. */
  take(dir: string): Promise<ListingBatch> | undefined {
    const listing = this.#cache.get(dir);
    if (listing === undefined) {
      this.misses++;
      // Listed now by the caller: not again ahead (it would stay in the cache for nothing).
      const queued = this.#stack.lastIndexOf(dir);
      if (queued !== -1) this.#stack.splice(queued, 1);
      // The walk is somewhere the read-ahead did not foresee: what it listed may never be asked for.
      if (this.#cache.size >= this.#capacity) this.#evict();
      return undefined;
    }
    this.hits++;
    this.#cache.delete(dir);
    this.#pump();
    return listing;
  }

  /** Lists `dir` now (not through the cache), then reads ahead into its subdirectories. */
  async listNow(dir: string): Promise<ListingBatch> {
    const batch = await this.#list(dir);
    this.follow(batch);
    return batch;
  }

  /** Queues the subdirectories of `batch`'s (only) directory to be listed next. */
  follow(batch: ListingBatch): void {
    if (this.#stopped || batch.dirs.length === 0) return;
    const dir = batch.dirs[0]!;
    const prefix = dir === "" ? "" : `${dir}/`;
    for (let i = batch.end(0) - 1; i >= batch.start(0); i--) {
      if (batch.kind(i) !== "dir") continue;
      const child = prefix + batch.names[i]!;
      if (!this.#skip?.(child)) this.#stack.push(child);
    }
    this.#pump();
  }

  /** Forgets the listing of `dir` (it is about to change). */
  forget(dir: string): void {
    this.#cache.delete(dir);
  }

  /** Lists nothing more ahead. */
  stop(): void {
    this.#stopped = true;
    this.#stack.length = 0;
    this.#cache.clear();
  }

  #pump(): void {
    while (!this.#stopped && this.#inFlight < this.#concurrency && this.#cache.size < this.#capacity) {
      const dir = this.#stack.pop();
      if (dir === undefined) return;
      if (this.#cache.has(dir)) continue;
      this.#inFlight++;
      const listing = this.#list(dir);
      this.#cache.set(dir, listing);
      listing.then(
        (batch) => {
          this.#inFlight--;
          this.follow(batch);
        },
        () => {
          this.#inFlight--;
        },
      );
    }
  }

  /** Drops the older half of the cache. */
  #evict(): void {
    let drop = this.#cache.size >> 1;
    for (const dir of this.#cache.keys()) {
      if (drop-- <= 0) break;
      this.#cache.delete(dir);
    }
    this.#pump();
  }
}
