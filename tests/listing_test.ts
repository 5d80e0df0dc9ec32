import assert from "node:assert/strict";
import { type Entry, ListingBatch } from "../lib/model/listing.ts";

/** A distinct entry for index `i`, every column different. */
function entryFor(i: number): Entry {
  const entry: Entry = { kind: i % 3 === 0 ? "dir" : "file", size: i * 3, mtimeMs: 1_000 + i, mode: 0o600 + (i % 64) };
  entry.ino = 10_000 + i;
  entry.ctimeMs = 2_000 + i;
  if (i % 7 === 0) {
    entry.kind = "symlink";
    entry.target = `t${i}`;
  }
  return entry;
}

Deno.test("ListingBatch starts with no columns and keeps every entry as it grows, reserved or not", async (t) => {
  for (const [label, reserve] of [["entry by entry", false], ["reserved first", true]] as const) {
    await t.step(label, () => {
      const batch = new ListingBatch();
      const sizes = [0, 1, 15, 16, 17, 600];
      let i = 0;
      for (const [k, size] of sizes.entries()) {
        assert.equal(batch.begin(`d${k}`), k);
        if (reserve) batch.reserve(size);
        for (let n = 0; n < size; n++, i++) batch.push(`n${String(i).padStart(4, "0")}`, entryFor(i));
      }
      i = 0;
      for (const [k, size] of sizes.entries()) {
        assert.equal(batch.end(k) - batch.start(k), size, `d${k}`);
        for (let j = batch.start(k); j < batch.end(k); j++, i++) assert.deepEqual(batch.entry(j), entryFor(i));
      }
      const { packed } = batch.pack();
      const copy = ListingBatch.unpack(packed);
      assert.deepEqual(copy.entry(copy.end(sizes.length - 1) - 1), entryFor(i - 1));
    });
  }
});

Deno.test("ListingBatch.reset() empties a batch that is then filled again", () => {
  const batch = new ListingBatch();
  batch.begin("a");
  for (let i = 0; i < 40; i++) batch.push(`x${i}`, entryFor(i));
  batch.reset();
  assert.equal(batch.names.length, 0);
  batch.begin("b");
  batch.push("y", entryFor(7));
  assert.deepEqual([batch.dirs, batch.start(0), batch.end(0)], [["b"], 0, 1]);
  assert.deepEqual(batch.entry(0), entryFor(7));
});
