/**
 * SftpInbound, the framing of what the SFTP server sends: READ answers taken straight into
 * their buffers, every other packet handed to ssh2 whole and in order, however the stream is
 * cut into pieces. Pure: a recording stands in for ssh2's SFTP object.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type InboundTarget, SftpInbound } from "../lib/backend/sftp/inbound.ts";

const DATA = 103;
const STATUS = 101;
const NAME = 104;
const VERSION = 2;

function packet(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  new DataView(out.buffer).setUint32(0, 1 + body.length);
  out[4] = type;
  out.set(body, 5);
  return out;
}

function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function dataPacket(id: number, data: Uint8Array): Uint8Array {
  return packet(DATA, concat(u32(id), u32(data.length), data));
}

function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);
}

/** What the framing did: packets handed to ssh2 (as one byte stream) and READs answered, in order. */
interface Recording extends InboundTarget {
  passed: number[];
  events: Array<{ take: number; passedBefore: number; bytes: number }>;
}

/** A stand-in for ssh2's SFTP object with READs pending for `reads` (id to buffer size). */
function recording(reads: Record<number, number>): Recording & { buffers: Map<number, Buffer> } {
  const buffers = new Map<number, Buffer>();
  const rec: Recording & { buffers: Map<number, Buffer> } = {
    _requests: {},
    passed: [],
    events: [],
    buffers,
    push(data) {
      assert.ok(Buffer.isBuffer(data));
      rec.passed.push(...data);
    },
  };
  for (const [key, size] of Object.entries(reads)) {
    const id = Number(key);
    const buffer = Buffer.alloc(size);
    buffers.set(id, buffer);
    rec._requests[id] = {
      buffer,
      cb: (error, into, n) => {
        assert.equal(error, undefined);
        assert.equal(into, buffer);
        rec.events.push({ take: id, passedBefore: rec.passed.length, bytes: n! });
      },
    };
  }
  return rec;
}

/** The stream: answers to READs 7, 8, 9 and 11 among other packets; 10 has no READ pending here. */
function stream() {
  const small = bytes(3, 1);
  const large = bytes(70_000, 2);
  const tooLarge = bytes(50, 3);
  const packets = [
    { bytes: packet(VERSION, concat(u32(3), new TextEncoder().encode("ext"))), taken: false },
    { bytes: dataPacket(7, small), taken: true, id: 7, data: small },
    { bytes: packet(STATUS, concat(u32(5), u32(0))), taken: false },
    { bytes: dataPacket(8, large), taken: true, id: 8, data: large },
    { bytes: dataPacket(10, bytes(20, 4)), taken: false }, // not a READ of ours: ssh2's
    { bytes: dataPacket(11, tooLarge), taken: false }, // more than asked: ssh2 reports it
    { bytes: packet(NAME, concat(u32(6), u32(0))), taken: false },
    { bytes: dataPacket(9, new Uint8Array(0)), taken: true, id: 9, data: new Uint8Array(0) },
    { bytes: packet(STATUS, u32(12)), taken: false }, // shorter than a DATA header
  ];
  const reads = { 7: 3, 8: 70_000, 9: 16, 11: 10 };
  return { packets, reads, whole: concat(...packets.map((p) => p.bytes)) };
}

/** Checks what the framing did with the stream, fed as `pieces`. */
function check(pieces: Uint8Array[], what: string): void {
  const { packets, reads } = stream();
  const rec = recording(reads);
  const inbound = new SftpInbound(rec);
  for (const piece of pieces) {
    inbound.feed(piece);
    piece.fill(0xee); // the caller reads into its buffer again: nothing may keep a view of it
  }
  const expectedPassed: number[] = [];
  const expectedEvents: Recording["events"] = [];
  for (const p of packets) {
    if (p.taken) expectedEvents.push({ take: p.id!, passedBefore: expectedPassed.length, bytes: p.data!.length });
    else expectedPassed.push(...p.bytes);
  }
  assert.deepEqual(rec.events, expectedEvents, what);
  assert.deepEqual(rec.passed, expectedPassed, what);
  for (const p of packets.filter((p) => p.taken)) {
    assert.deepEqual(new Uint8Array(rec.buffers.get(p.id!)!.subarray(0, p.data!.length)), p.data, what);
    assert.equal(rec._requests[p.id!], undefined, `${what}: answered READs leave ssh2's table`);
  }
  assert.notEqual(rec._requests[11], undefined, `${what}: a READ answered with too much is ssh2's to fail`);
  assert.equal(inbound.taken, 3);
  assert.equal(inbound.takenBytes, 3 + 70_000);
}

Deno.test("SftpInbound takes READ answers into their buffers and hands every other packet to ssh2, in order", async (t) => {
  const { whole } = stream();
  await t.step("in one piece", () => check([whole.slice()], "one piece"));
  await t.step("cut in two at every offset of the first 200 bytes and around the large packet", () => {
    const cuts = [...Array(200).keys(), ...Array.from({ length: 64 }, (_, i) => whole.length - 32 - i)];
    for (const at of cuts) check([whole.slice(0, at), whole.slice(at)], `cut at ${at}`);
  });
  await t.step("byte by byte", () => {
    check(Array.from(whole, (b) => Uint8Array.of(b)), "byte by byte");
  });
  await t.step("in random pieces", () => {
    let seed = 42;
    for (let round = 0; round < 50; round++) {
      const pieces: Uint8Array[] = [];
      for (let at = 0; at < whole.length;) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        const n = 1 + (seed % 9000);
        pieces.push(whole.slice(at, at + n));
        at += n;
      }
      check(pieces, `round ${round}`);
    }
  });
});

Deno.test("SftpInbound hands a packet of length 0 to ssh2, which reports the broken stream", () => {
  const rec = recording({});
  new SftpInbound(rec).feed(concat(u32(0), Uint8Array.of(1, 2, 3)));
  assert.deepEqual(rec.passed.slice(0, 4), [0, 0, 0, 0]);
});
