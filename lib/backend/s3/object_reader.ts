/**
 * Reads one object version at any offset, for a replica's copy of an S3 source file, with the
 * ranged GETs an object store answers fast: a read of the whole object is one GET; reads that
 * follow each other (a writer reading the file in order, several chunks in flight) are served
 * from large blocks fetched in parallel ahead of them; any other read is one GET of its range.
 *
 * Memory stays bounded: every block holds a slot of a budget shared by all readers of a
 * backend, prefetching only takes a slot that is free, and a read whose block finds none fetches
 * just its own range instead (so readers never wait for each other's slots: no deadlock). A
 * block is let go once every byte of it has been served, or once reads have moved past it.
 *
 * @module
 */

import type { FileReader } from "../backend.ts";

/** Fetches bytes `start` up to `end` (exclusive) of the object version being read. */
export type FetchRange = (start: number, end: number, signal: AbortSignal) => Promise<Uint8Array>;

/** The budget of blocks shared by the readers of one backend (see {@linkcode Slots}). */
export interface BlockBudget {
  /** Takes a slot if one is free now; returns whether it did. */
  tryAcquire(): boolean;
  /** Gives a slot back. */
  release(): void;
}

/** Options for {@linkcode ObjectReader}. */
export interface ObjectReaderOptions {
  /** Bytes a block holds (one GET). */
  blockSize: number;
  /** Blocks fetched ahead of in-order reads, besides the one they need. */
  ahead: number;
  /** The slots blocks take. */
  budget: BlockBudget;
  /** Stops every fetch of the reader. */
  signal?: AbortSignal | undefined;
}

/** One block: bytes `start` to `end` of the object, fetched or being fetched. */
interface Block {
  start: number;
  end: number;
  data: Promise<Uint8Array>;
  /** Bytes of the block handed to reads so far. */
  served: number;
  released: boolean;
}

/**
 * A {@linkcode FileReader} over an object of `size` bytes whose ranges `fetch` gets.
 *
 * @example Reading an object in order
 * ```ts
 * const reader = new ObjectReader(size, (start, end, signal) => getRange(key, start, end, signal), {
 *   blockSize: 8 << 20, ahead: 3, budget: new Slots(16),
 * });
 * const chunk = new Uint8Array(1 << 20);
 * for (let at = 0; at < size; at += chunk.length) await reader.read(at, chunk);
 * await reader.close();
 * ```
 */
export class ObjectReader implements FileReader {
  /** Ranged fetches sent so far (a test and a debug line read it). */
  fetches = 0;
  #size: number;
  #fetch: FetchRange;
  #blockSize: number;
  #ahead: number;
  #budget: BlockBudget;
  #blocks = new Map<number, Block>();
  /** Where a read that follows the last one starts. */
  #next = 0;
  #stop = new AbortController();
  #signal: AbortSignal;
  #closed = false;

  constructor(size: number, fetch: FetchRange, options: ObjectReaderOptions) {
    this.#size = size;
    this.#fetch = fetch;
    this.#blockSize = Math.max(1, options.blockSize);
    this.#ahead = Math.max(0, options.ahead);
    this.#budget = options.budget;
    this.#signal = options.signal ? AbortSignal.any([options.signal, this.#stop.signal]) : this.#stop.signal;
  }

  /** Blocks held now (fetched or in flight). */
  get blocks(): number {
    return this.#blocks.size;
  }

  /**
   * Reads into `into` from `offset`; returns the bytes read (fewer at the end, 0 past it). A
   * read issued ahead that fails after its consumer gave up (on an earlier read's error) is
   * not an unhandled rejection.
   */
  read(offset: number, into: Uint8Array): Promise<number> {
    const read = this.#read(offset, into);
    read.catch(() => {});
    return read;
  }

  async #read(offset: number, into: Uint8Array): Promise<number> {
    if (this.#closed) throw new Error("Reader is closed");
    if (offset >= this.#size || into.length === 0) return 0;
    const end = Math.min(this.#size, offset + into.length);
    const inOrder = offset === this.#next;
    if (inOrder) this.#next = end;
    // The whole object at once (a small file), or a read out of order: one GET of just that.
    if (!inOrder || (offset === 0 && end === this.#size && this.#blocks.size === 0)) {
      return await this.#direct(offset, end, into);
    }
    const first = Math.floor(offset / this.#blockSize);
    const last = Math.floor((end - 1) / this.#blockSize);
    for (const [k, block] of this.#blocks) if (k < first) this.#drop(k, block);
    const missing: number[] = [];
    for (let k = first; k <= last; k++) if (!this.#blocks.has(k)) missing.push(k);
    let taken = 0;
    while (taken < missing.length && this.#budget.tryAcquire()) taken++;
    if (taken < missing.length) {
      for (; taken > 0; taken--) this.#budget.release();
      return await this.#direct(offset, end, into);
    }
    for (const k of missing) this.#start(k);
    for (let k = last + 1; k <= last + this.#ahead && k * this.#blockSize < this.#size; k++) {
      if (this.#blocks.has(k)) continue;
      if (!this.#budget.tryAcquire()) break;
      this.#start(k);
    }
    let done = 0;
    for (let k = first; k <= last; k++) {
      const block = this.#blocks.get(k);
      if (!block) return done + await this.#direct(offset + done, end, into.subarray(done));
      const data = await block.data;
      const from = Math.max(offset, block.start);
      const to = Math.min(end, block.end);
      into.set(data.subarray(from - block.start, to - block.start), from - offset);
      done += to - from;
      block.served += to - from;
      if (block.served >= block.end - block.start) this.#drop(k, block);
    }
    return done;
  }

  /** Stops the fetches in flight and lets every block go. */
  close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort(new DOMException("Reader closed", "AbortError"));
    for (const [k, block] of this.#blocks) this.#drop(k, block);
    return Promise.resolve();
  }

  /** One fetch of bytes `offset` to `end`, into `into`. */
  async #direct(offset: number, end: number, into: Uint8Array): Promise<number> {
    this.fetches++;
    const data = await this.#fetch(offset, end, this.#signal);
    into.set(data.subarray(0, Math.min(data.length, into.length)));
    return Math.min(data.length, end - offset);
  }

  /** Starts fetching block `k`, in a slot of the budget already taken for it. */
  #start(k: number): void {
    const start = k * this.#blockSize;
    const end = Math.min(this.#size, start + this.#blockSize);
    this.fetches++;
    const block: Block = { start, end, data: this.#fetch(start, end, this.#signal), served: 0, released: false };
    // A failed block is dropped, so that a later read fetches it again; its readers get the error.
    block.data.catch(() => this.#drop(k, block));
    this.#blocks.set(k, block);
  }

  /** Lets block `k` go: out of the map, its slot back. */
  #drop(k: number, block: Block): void {
    if (this.#blocks.get(k) === block) this.#blocks.delete(k);
    if (block.released) return;
    block.released = true;
    this.#budget.release();
  }
}
