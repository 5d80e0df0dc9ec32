/**
 * The S3 source's reader without a server: reads served from blocks fetched ahead, the shared
 * pool of block buffers, reads out of order, errors and closing.
 */

import assert from "node:assert/strict";
import { BlockPool, ObjectReader } from "../lib/backend/s3/object_reader.ts";

const KIB = 1024;

/** An object of `size` bytes (byte i is i mod 251) behind a fetch that records each range. */
function object(size: number, fail?: (start: number) => Error | undefined) {
  const bytes = new Uint8Array(size).map((_, i) => i % 251);
  const ranges: Array<[number, number]> = [];
  let inFlight = 0;
  let peak = 0;
  const fetch = async (start: number, end: number, signal: AbortSignal, into?: Uint8Array) => {
    ranges.push([start, end]);
    peak = Math.max(peak, ++inFlight);
    try {
      // Written in two halves, a tick apart, as a body comes off the network.
      const out = into ?? new Uint8Array(end - start);
      const half = Math.floor((end - start) / 2);
      await new Promise((resolve) => setTimeout(resolve, 1));
      out.set(bytes.subarray(start, start + half));
      await new Promise((resolve) => setTimeout(resolve, 1));
      signal.throwIfAborted();
      const error = fail?.(start);
      if (error) throw error;
      out.set(bytes.subarray(start + half, end), half);
      return out.subarray(0, end - start);
    } finally {
      inFlight--;
    }
  };
  return { bytes, ranges, fetch, peak: () => peak, inFlight: () => inFlight };
}

/** Reads the whole object in `chunk`-byte reads, `inFlight` at a time, in order; returns what it read. */
async function readInOrder(reader: ObjectReader, size: number, chunk: number, inFlight: number): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  const pending: Array<Promise<number>> = [];
  let next = 0;
  const issue = () => {
    if (next >= size) return;
    const at = next;
    next += chunk;
    const read = reader.read(at, out.subarray(at, Math.min(size, at + chunk)));
    read.catch(() => {}); // awaited in turn; one that fails after an earlier failure is not unhandled
    pending.push(read);
  };
  for (let i = 0; i < inFlight; i++) issue();
  while (pending.length > 0) {
    assert.ok(await pending.shift()! > 0);
    issue();
  }
  return out;
}

/** Waits until no fetch of `o` is in flight. */
async function waitSettled(o: { inFlight: () => number }): Promise<void> {
  while (o.inFlight() > 0) await new Promise((resolve) => setTimeout(resolve, 1));
}

Deno.test("ObjectReader reads the whole object in one fetch, and an empty one in none", async () => {
  const o = object(10 * KIB);
  const pool = new BlockPool(4, 4 * KIB);
  const reader = new ObjectReader(o.bytes.length, o.fetch, { ahead: 2, pool });
  const into = new Uint8Array(10 * KIB);
  assert.equal(await reader.read(0, into), 10 * KIB);
  assert.deepEqual(into, o.bytes);
  assert.deepEqual(o.ranges, [[0, 10 * KIB]]);
  assert.equal(await reader.read(10 * KIB, new Uint8Array(5)), 0, "past the end");
  await reader.close();
  const empty = object(0);
  const none = new ObjectReader(0, empty.fetch, { ahead: 2, pool });
  assert.equal(await none.read(0, new Uint8Array(KIB)), 0);
  assert.deepEqual(empty.ranges, []);
  assert.equal(pool.free, 4);
});

Deno.test("ObjectReader serves reads in order from blocks fetched ahead, in parallel, and gives every buffer back for reuse", async () => {
  const size = 100 * KIB + 17;
  const o = object(size);
  const pool = new BlockPool(6, 16 * KIB);
  const reader = new ObjectReader(size, o.fetch, { ahead: 3, pool });
  const out = await readInOrder(reader, size, 4 * KIB, 8);
  assert.deepEqual(out, o.bytes);
  // Whole blocks, each fetched once, several at a time.
  const blocks = Math.ceil(size / (16 * KIB));
  assert.deepEqual(
    [...o.ranges].sort((a, b) => a[0] - b[0]),
    Array.from({ length: blocks }, (_, k) => [k * 16 * KIB, Math.min(size, (k + 1) * 16 * KIB)]),
  );
  assert.ok(o.peak() > 1, `blocks fetched in parallel: ${o.peak()}`);
  assert.equal(reader.blocks, 0, "every block let go once served");
  assert.equal(pool.free, 6);
  // Buffers are reused: a second reader's blocks come from the same buffers.
  const taken = [pool.take()!, pool.take()!];
  assert.equal(pool.free, 4);
  taken.forEach((buffer) => pool.give(buffer));
  assert.deepEqual(await readInOrder(new ObjectReader(size, o.fetch, { ahead: 3, pool }), size, 4 * KIB, 8), o.bytes);
  await reader.close();
});

Deno.test("ObjectReader fetches only a read's own range when the pool has no buffer free, and out of order", async () => {
  const size = 64 * KIB;
  const o = object(size);
  const pool = new BlockPool(1, 16 * KIB);
  const held = pool.take()!; // another reader holds the only buffer
  const reader = new ObjectReader(size, o.fetch, { ahead: 3, pool });
  assert.deepEqual(await readInOrder(reader, size, 4 * KIB, 4), o.bytes);
  assert.ok(o.ranges.every(([start, end]) => end - start === 4 * KIB), "each read its own range");
  pool.give(held);
  // Out of order: one fetch of just what is asked, at any offset.
  o.ranges.length = 0;
  const random = new ObjectReader(size, o.fetch, { ahead: 3, pool });
  for (const at of [50 * KIB + 3, 7, 33 * KIB]) {
    const into = new Uint8Array(1000);
    assert.equal(await random.read(at, into), 1000);
    assert.deepEqual(into, o.bytes.subarray(at, at + 1000));
  }
  assert.deepEqual(o.ranges, [[50 * KIB + 3, 50 * KIB + 1003], [7, 1007], [33 * KIB, 33 * KIB + 1000]]);
  const tail = new Uint8Array(1000);
  assert.equal(await random.read(size - 10, tail), 10, "fewer at the end");
  assert.deepEqual(tail.subarray(0, 10), o.bytes.subarray(size - 10));
  await random.close();
  assert.equal(pool.free, 1);
});

Deno.test("ObjectReader passes a failed fetch to its reads, and close() stops the fetches ahead", async () => {
  const size = 64 * KIB;
  const broken = new Error("Connection to 'x' lost");
  const o = object(size, (start) => (start === 32 * KIB ? broken : undefined));
  const pool = new BlockPool(8, 16 * KIB);
  const reader = new ObjectReader(size, o.fetch, { ahead: 3, pool });
  await assert.rejects(readInOrder(reader, size, 4 * KIB, 4), (e) => e === broken);
  await reader.close();
  await waitSettled(o);
  assert.equal(pool.free, 8, "no buffer kept by a failed or closed reader");
  await assert.rejects(reader.read(0, new Uint8Array(1)), /closed/);
  // Closing while blocks are in flight aborts them.
  const slow = object(size);
  const stopped = new ObjectReader(size, slow.fetch, { ahead: 3, pool });
  const first = stopped.read(0, new Uint8Array(KIB));
  await stopped.close();
  assert.ok(pool.free < 8, "a buffer a fetch still writes into is not reused");
  await assert.rejects(first, (e: Error) => e.name === "AbortError");
  await waitSettled(slow);
  assert.equal(pool.free, 8, "buffers back once their fetches ended");
});
