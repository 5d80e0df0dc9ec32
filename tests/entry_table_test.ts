import assert from "node:assert/strict";
import { type Entry, EntryTable } from "../lib/entry_table.ts";

const file = (size: number): Entry => ({
  kind: "file",
  size,
  mtimeMs: 1_795_000_000_123,
  mode: 0o644,
  ctimeMs: 1_795_000_000_000,
  ino: 77,
});

Deno.test("EntryTable behaves as a Map of entries, in insertion order", () => {
  const table = new EntryTable();
  const reference = new Map<string, Entry>();
  for (let i = 0; i < 1000; i++) {
    const entry: Entry = i % 7 === 0
      ? { kind: "symlink", size: 3, mtimeMs: i, mode: 0o777, target: `t${i}` }
      : i % 5 === 0
      ? { kind: "dir", size: 0, mtimeMs: i, mode: 0o2755 }
      : file(i);
    table.set(`p${i}`, entry);
    reference.set(`p${i}`, entry);
  }
  table.set("p3", file(333)); // replace in place: keeps its position
  reference.set("p3", file(333));
  for (const gone of ["p10", "p999", "p0"]) {
    assert.ok(table.delete(gone));
    reference.delete(gone);
  }
  assert.equal(table.delete("nope"), false);
  assert.equal(table.size, reference.size);
  assert.deepEqual([...table], [...reference]);
  assert.deepEqual([...table.keys()], [...reference.keys()]);
  assert.equal(table.get("p7")?.target, "t7");
  assert.equal(table.get("p10"), undefined);
  assert.ok(!table.has("p10") && table.has("p11"));
  const noCacheKey = table.get("p5")!;
  assert.ok(!("ctimeMs" in noCacheKey) && !("ino" in noCacheKey), "absent optional fields stay absent");

  const copy = EntryTable.unpack(structuredClone(table.pack()));
  assert.deepEqual([...copy], [...reference]);
  copy.set("new", file(1)); // an unpacked table still grows
  assert.equal(copy.get("new")?.size, 1);
  assert.equal(copy.size, reference.size + 1);
});
