import assert from "node:assert/strict";
import { join } from "node:path";
import { assertMirror, planLocal, POSIX, runLocal, tempDir, treeDiff, writeTree } from "./helpers.ts";

Deno.test("marchTrees() with a scope plans only the named directories, plus whole new ones", {
  ignore: !POSIX,
}, async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { a: { "x.txt": "x", deep: { "y.txt": "y" } }, b: { "z.txt": "z" }, c: {} });
  assert.equal((await runLocal({ source: src, replica: dst })).stats.errors, 0);
  // Changes everywhere; the scope names only "a".
  await Deno.writeTextFile(join(src, "a", "x.txt"), "x, edited");
  await Deno.writeTextFile(join(dst, "a", "junk.txt"), "junk");
  await writeTree(join(src, "a", "new"), { n1: { "f.txt": "f" } });
  await Deno.writeTextFile(join(src, "a", "deep", "y.txt"), "y, edited");
  await Deno.writeTextFile(join(src, "b", "z.txt"), "z, edited");
  await Deno.chmod(join(src, "c"), 0o700);

  await t.step("the plan", async () => {
    const p = await planLocal(src, dst, { scope: new Set(["", "a"]), useWorker: false });
    assert.deepEqual(p.mkdirs.map((m) => m.path), ["a/new", "a/new/n1"]);
    assert.deepEqual(p.transfers.map((a) => `${a.op} ${a.path}`).sort(), ["copy a/new/n1/f.txt", "update a/x.txt"]);
    assert.deepEqual(p.removes.map((r) => r.path), ["a/junk.txt"]);
    assert.ok(p.dirAttrs.some((d) => d.path === "c" && d.mode === 0o700), "c is an entry of the listed root");
  });

  await t.step("a scoped run leaves the rest for a full one", async () => {
    const scoped = await runLocal({ source: src, replica: dst }, { scope: new Set(["", "a"]) });
    assert.equal(scoped.stats.errors, 0);
    assert.equal(await Deno.readTextFile(join(dst, "a", "x.txt")), "x, edited");
    assert.equal(await Deno.readTextFile(join(dst, "a", "new", "n1", "f.txt")), "f");
    assert.equal(((await Deno.stat(join(dst, "c"))).mode ?? 0) & 0o777, 0o700);
    const differing = (await treeDiff(src, dst)).map((line) => line.slice(0, line.indexOf(": ")));
    const files = [...new Set(differing)].filter((path) => Deno.statSync(join(src, path)).isFile).sort();
    assert.deepEqual(files, ["a/deep/y.txt", "b/z.txt"], "only what lies outside the scope differs");
    assert.equal((await runLocal({ source: src, replica: dst })).stats.updated, 2);
    await assertMirror(src, dst);
  });
});

Deno.test("marchTrees() with a scope recreates a named directory the replica lost", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { a: { b: { "f.txt": "f", c: { "g.txt": "g" } } } });
  assert.equal((await runLocal({ source: src, replica: dst })).stats.errors, 0);
  await Deno.remove(join(dst, "a"), { recursive: true });
  const run = await runLocal({ source: src, replica: dst }, { scope: new Set(["", "a", "a/b"]) });
  assert.equal(run.stats.errors, 0);
  await assertMirror(src, dst);
});

Deno.test("marchTrees() plans the same with the source walked in a worker as walked in this thread", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  // Enough folders for the source walk to move into its worker (it starts after 16).
  const tree: Record<string, Record<string, string | Record<string, string>>> = {};
  for (let i = 0; i < 60; i++) tree[`d${String(i).padStart(2, "0")}`] = { "f.txt": `f${i}`, sub: { "g.txt": "g" } };
  await writeTree(src, tree);
  assert.equal((await runLocal({ source: src, replica: dst })).stats.errors, 0);
  // Changes in many places: removed folders (one holding an excluded file), a folder that
  // became a file, a file that became a folder, new and changed files, folders only the
  // replica has (deep, and sorted before and after the others).
  await Deno.remove(join(src, "d05"), { recursive: true });
  await Deno.writeTextFile(join(dst, "d06", "sub", "keep.log"), "excluded, kept");
  await Deno.remove(join(src, "d06"), { recursive: true });
  await Deno.remove(join(src, "d10", "sub"), { recursive: true });
  await Deno.writeTextFile(join(src, "d10", "sub"), "now a file");
  await Deno.remove(join(src, "d20", "f.txt"));
  await writeTree(join(src, "d20", "f.txt"), { "inner.txt": "i" });
  await Deno.writeTextFile(join(src, "d30", "f.txt"), "changed, longer");
  await writeTree(join(dst, "a-only"), { x: { y: { "z.txt": "z" } } });
  await writeTree(join(dst, "zz-only"), { "q.txt": "q" });
  await writeTree(join(dst, "d40", "sub", "extra"), { "e.txt": "e" });
  const filter = (await import("../lib/engine/filter_compile.ts")).compileFilter({
    patterns: ["*.log"],
    ownFiles: [],
    ownDirs: [],
  });
  const shape = (p: Awaited<ReturnType<typeof planLocal>>) =>
    JSON.stringify({
      mkdirs: p.mkdirs.map((a) => a.path),
      transfers: p.transfers.map((a) => `${a.op} ${a.path}`).sort(),
      removes: p.removes.map((a) => `${a.path} ${a.kind}`),
      dirAttrs: p.dirAttrs.map((a) => a.path),
    });
  const onDemand = await planLocal(src, dst, { useWorker: false, fixPermissions: false, filter });
  const inWorker = await planLocal(src, dst, { useWorker: true, fixPermissions: false, filter });
  assert.equal(shape(inWorker), shape(onDemand));
  assert.ok(onDemand.removes.some((r) => r.path === "a-only/x/y/z.txt"), "the plan removes replica-only folders");
  assert.ok(!onDemand.removes.some((r) => r.path === "d06/sub/keep.log"), "an excluded file is kept");
  assert.ok(!onDemand.removes.some((r) => r.path === "d06"), "and so is the folder that holds it");
});
