/**
 * Reads one object version at any offset, for a replica's copy of an S3 source file, with the
 * ranged GETs an object store answers fast: a read of the whole object is one GET; reads that
 * follow each other (a writer reading the file in order, several chunks in flight) are served
 * from large blocks fetched in parallel ahead of them; any other read is one GET of its range.
 *
 * Memory stays bounded: every block is read into a buffer of a pool shared by all readers of a
 * backend, prefetching only takes a buffer that is free, and a read whose block finds none
 * fetches just its own range, straight into the reader's buffer (so readers never wait for each
 * other's buffers: no deadlock). A block is let go once every byte of it has been served, or
 * once reads have moved past it; its buffer goes back to the pool once nothing reads it.
 *
 * @module
 */

import type { FileReader } from "../backend.ts";

/**
 * Fetches bytes `start` up to `end` (exclusive) of the object version being read, into `into`
 * when given (the bytes it returns are then `into`'s, unless the server sent more).
 */
export type FetchRange = (start: number, end: number, signal: AbortSignal, into?: Uint8Array) => Promise<Uint8Array>;

/**
 * The buffers blocks are read into, shared by the readers of one backend: at most `count`, of
 * `size` bytes each, made when first needed and reused after (a buffer a block would
 * otherwise cost the memory and the page faults of a fresh allocation).
 *
 * @example A pool of twelve 8 MiB buffers
 * ```ts
 * const pool = new BlockPool(12, 8 << 20);
 * ```
 */
export class BlockPool {
  /** Bytes a buffer holds: a block. */
  readonly size: number;
  #count: number;
  #made = 0;
  #free: Uint8Array[] = [];

  constructor(count: number, size: number) {
    this.#count = count;
    this.size = Math.max(1, size);
  }

  /** Buffers free now (made or still to make). */
  get free(): number {
    return this.#free.length + this.#count - this.#made;
  }

  /** A free buffer, or undefined when every one is taken. */
  take(): Uint8Array | undefined {
    const buffer = this.#free.pop();
    if (buffer) return buffer;
    if (this.#made === this.#count) return undefined;
    this.#made++;
    return new Uint8Array(this.size);
  }

  /** Gives `buffer` back. */
  give(buffer: Uint8Array): void {
    this.#free.push(buffer);
  }
}

/** Options for {@linkcode ObjectReader}. */
export interface ObjectReaderOptions {
  /** Blocks fetched ahead of in-order reads, besides the ones they need. */
  ahead: number;
  /** Where blocks are read into; its buffers' size is the block size. */
  pool: BlockPool;
  /** Stops every fetch of the reader. */
  signal?: AbortSignal | undefined;
}

/** One block: bytes `start` to `end` of the object, fetched or being fetched into `buffer`. */
interface Block {
  start: number;
  end: number;
  buffer: Uint8Array;
  data: Promise<Uint8Array>;
  /** Bytes of the block handed to reads so far. */
  served: number;
  /** Reads waiting on the block or copying out of it. */
  users: number;
  /** The fetch has ended, well or not: nothing writes into the buffer any more. */
  settled: boolean;
  /** Out of the reader's map: its buffer goes back once settled and unused. */
  dropped: boolean;
  returned: boolean;
}

/**
 * A {@linkcode FileReader} over an object of `size` bytes whose ranges `fetch` gets.
 *
 * @example Reading an object in order
 * ```ts
 * const reader = new ObjectReader(size, (start, end, signal, into) => get(key, start, end, signal, into), {
 *   ahead: 3, pool: new BlockPool(12, 8 << 20),
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
  #pool: BlockPool;
  #blocks = new Map<number, Block>();
  /** Where a read that follows the last one starts. */
  #next = 0;
  #stop = new AbortController();
  #signal: AbortSignal;
  #closed = false;

  constructor(size: number, fetch: FetchRange, options: ObjectReaderOptions) {
    this.#size = size;
    this.#fetch = fetch;
    this.#pool = options.pool;
    this.#blockSize = options.pool.size;
    this.#ahead = Math.max(0, options.ahead);
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
    const buffers: Uint8Array[] = [];
    for (let buffer; buffers.length < missing.length && (buffer = this.#pool.take());) buffers.push(buffer);
    if (buffers.length < missing.length) {
      for (const buffer of buffers) this.#pool.give(buffer);
      return await this.#direct(offset, end, into);
    }
    missing.forEach((k, i) => this.#start(k, buffers[i]!));
    for (let k = last + 1; k <= last + this.#ahead && k * this.#blockSize < this.#size; k++) {
      if (this.#blocks.has(k)) continue;
      const buffer = this.#pool.take();
      if (!buffer) break;
      this.#start(k, buffer);
    }
    const blocks: Array<[number, Block]> = [];
    for (let k = first; k <= last; k++) {
      const block = this.#blocks.get(k)!;
      block.users++;
      blocks.push([k, block]);
    }
    try {
      for (const [, block] of blocks) {
        const data = await block.data;
        const from = Math.max(offset, block.start);
        const to = Math.min(end, block.end);
        into.set(data.subarray(from - block.start, to - block.start), from - offset);
        block.served += to - from;
      }
    } finally {
      for (const [k, block] of blocks) {
        block.users--;
        if (block.served >= block.end - block.start) this.#drop(k, block);
        else this.#release(block);
      }
    }
    return end - offset;
  }

  /** Stops the fetches in flight and lets every block go. */
  close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort(new DOMException("Reader closed", "AbortError"));
    for (const [k, block] of this.#blocks) this.#drop(k, block);
    return Promise.resolve();
  }

  /** One fetch of bytes `offset` to `end`, straight into `into`. */
  async #direct(offset: number, end: number, into: Uint8Array): Promise<number> {
    this.fetches++;
    const target = into.subarray(0, end - offset);
    const data = await this.#fetch(offset, end, this.#signal, target);
    if (data.buffer !== target.buffer || data.byteOffset !== target.byteOffset) {
      target.set(data.subarray(0, target.length));
    }
    return Math.min(data.length, target.length);
  }

  /** Starts fetching block `k` into `buffer`, a buffer of the pool taken for it. */
  #start(k: number, buffer: Uint8Array): void {
    const start = k * this.#blockSize;
    const end = Math.min(this.#size, start + this.#blockSize);
    this.fetches++;
    const block: Block = {
      start,
      end,
      buffer,
      data: this.#fetch(start, end, this.#signal, buffer.subarray(0, end - start)),
      served: 0,
      users: 0,
      settled: false,
      dropped: false,
      returned: false,
    };
    const settle = () => {
      block.settled = true;
      this.#release(block);
    };
    // A failed block is dropped, so that a later read fetches it again; its readers get the error.
    block.data.then(settle, () => {
      settle();
      this.#drop(k, block);
    });
    this.#blocks.set(k, block);
  }

  /** Lets block `k` go: out of the map; its buffer back once nothing uses it. */
  #drop(k: number, block: Block): void {
    if (this.#blocks.get(k) === block) this.#blocks.delete(k);
    block.dropped = true;
    this.#release(block);
  }

  /** Gives a dropped block's buffer back once its fetch has ended and no read uses it. */
  #release(block: Block): void {
    if (!block.dropped || !block.settled || block.users > 0 || block.returned) return;
    block.returned = true;
    this.#pool.give(block.buffer);
  }
}
