/**
 * A counting semaphore: how the S3 backend bounds the requests and the buffers in flight.
 *
 * @module
 */

/**
 * A counting semaphore.
 *
 * @example Two at a time
 * ```ts
 * const slots = new Slots(2);
 * await Promise.all(urls.map((url) => slots.run(() => fetch(url))));
 * ```
 */
export class Slots {
  #free: number;
  #waiting: Array<() => void> = [];

  constructor(count: number) {
    this.#free = count;
  }

  /** Takes a slot, waiting for one if none is free. */
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  /** Gives a slot back (to the longest waiter, if any). */
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }

  /** Runs `fn` holding a slot. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}
