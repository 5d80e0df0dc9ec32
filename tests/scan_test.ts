import assert from "node:assert/strict";
import { join } from "node:path";
import { scanTree, startScanInWorker } from "../lib/scan.ts";
import { POSIX, tempDir, writeTree } from "./helpers.ts";

Deno.test(
  "scanTree() lists entries with lstat, parents first, and reports link targets",
  { ignore: !POSIX },
  async () => {
    await using tmp = await tempDir();
    await writeTree(tmp.path, { b: { c: "c" }, a: "a", l: { link: "b" } });
    const scan = scanTree(tmp.path);
    assert.deepEqual([...scan.entries.keys()], ["a", "b", "l", "b/c"]);
    assert.equal(scan.entries.get("l")?.kind, "symlink");
    assert.equal(scan.entries.get("l")?.target, "b");
    assert.equal(scan.entries.get("b")?.kind, "dir");
    assert.equal(scan.entries.get("a")?.size, 1);
    assert.equal(scan.problems.length, 0);
  },
);

Deno.test("startScanInWorker() returns what scanTree() does, and keeps the error class", async () => {
  await using tmp = await tempDir();
  await writeTree(tmp.path, { b: { c: "c", d: { e: "e" } }, a: "a" });
  const here = scanTree(tmp.path);
  const background = startScanInWorker(tmp.path);
  const there = await background.result;
  assert.ok(background.started);
  assert.deepEqual([...there.entries], [...here.entries]);
  assert.deepEqual(there.problems, []);
  await assert.rejects(startScanInWorker(join(tmp.path, "missing")).result, Deno.errors.NotFound);
  const cancelled = startScanInWorker(tmp.path);
  cancelled.cancel(); // must not keep the process or the test alive
});
