import assert from "node:assert/strict";
import { join } from "node:path";
import { FAILED, ListingBatch, VANISHED } from "../lib/model/listing.ts";
import { listDirectory, SourceWalk } from "../lib/backend/local/scan.ts";
import { IS_ROOT, POSIX, tempDir, waitFor, writeTree } from "./helpers.ts";

Deno.test("listDirectory() lists one directory with lstat, sorted, with link targets", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  await writeTree(tmp.path, { b: { c: "c" }, a: "a", l: { link: "b" }, B: "upper" });
  const batch = new ListingBatch();
  listDirectory(batch, tmp.path, "");
  listDirectory(batch, tmp.path, "b");
  assert.deepEqual(batch.dirs, ["", "b"]);
  assert.deepEqual(batch.names, ["B", "a", "b", "l", "c"]);
  assert.deepEqual([batch.start(1), batch.end(1)], [4, 5]);
  assert.equal(batch.kind(2), "dir");
  assert.equal(batch.kind(3), "symlink");
  assert.equal(batch.target(3), "b");
  assert.equal(batch.entry(1).size, 1);
  assert.deepEqual(batch.flags, [0, 0]);
});

Deno.test("listDirectory() flags vanished and unreadable directories, and throws for the root", async () => {
  await using tmp = await tempDir();
  await writeTree(tmp.path, { locked: { x: "x" } });
  const batch = new ListingBatch();
  listDirectory(batch, tmp.path, "gone");
  assert.equal(batch.flags[0], VANISHED);
  assert.deepEqual(batch.problems, [{ path: "gone", message: "vanished", directory: true, vanished: true }]);
  batch.problems.length = 0;
  assert.throws(() => listDirectory(new ListingBatch(), join(tmp.path, "missing"), ""), Deno.errors.NotFound);
  if (!POSIX || IS_ROOT) return; // root reads anything
  await Deno.chmod(join(tmp.path, "locked"), 0o000);
  try {
    listDirectory(batch, tmp.path, "locked");
    assert.equal(batch.flags[1], FAILED);
    assert.equal(batch.problems[0]?.path, "locked");
    assert.equal(batch.end(1) - batch.start(1), 0);
  } finally {
    await Deno.chmod(join(tmp.path, "locked"), 0o755);
  }
});

/** Every listing a walk yields, as plain data. */
async function walkAll(walk: SourceWalk, pause = 0): Promise<string[]> {
  const seen: string[] = [];
  try {
    for (let batch; (batch = await walk.next());) {
      for (let k = 0; k < batch.dirs.length; k++) {
        const names = [];
        for (let i = batch.start(k); i < batch.end(k); i++) names.push(`${batch.names[i]}:${batch.kind(i)}`);
        seen.push(`${batch.dirs[k]} [${names.join(" ")}]`);
      }
      if (pause) await new Promise((resolve) => setTimeout(resolve, pause));
    }
  } finally {
    walk.close();
  }
  return seen;
}

Deno.test("SourceWalk hands the walk to its worker and yields what a walk in this thread does", async () => {
  await using tmp = await tempDir();
  for (let d = 0; d < 30; d++) {
    Deno.mkdirSync(join(tmp.path, `d${d}`));
    for (let f = 0; f < 20; f++) Deno.writeFileSync(join(tmp.path, `d${d}`, `f${f}`), new Uint8Array());
  }
  Deno.writeTextFileSync(join(tmp.path, "top"), "t");
  const here = await walkAll(new SourceWalk(tmp.path, { useWorker: false }));
  assert.equal(here.length, 31);
  const top = [...Array.from({ length: 30 }, (_, d) => `d${d}`), "top"].sort();
  assert.equal(here[0], ` [${top.map((name) => `${name}:${name === "top" ? "file" : "dir"}`).join(" ")}]`);

  // The first listing is made here; a pause lets the worker boot, so the rest comes from it.
  // Small batches (about 38) are consumed slowly, so the worker must wait for the planner.
  const walk = new SourceWalk(tmp.path, { batchEntries: 16, workerAfterDirs: 0 });
  const first = await walk.next();
  assert.deepEqual(first?.dirs, [""]);
  const firstLine = (await walkAll(new SourceWalk(tmp.path, { useWorker: false })))[0];
  await waitFor(() => walk.workerReady, 10_000, "the worker to boot");
  const rest = await walkAll(walk, 5);
  assert.ok(walk.inWorker, "the worker took over");
  assert.deepEqual([firstLine, ...rest], here);
});

Deno.test("SourceWalk throws NotFound for a missing root and closes cleanly", async () => {
  await using tmp = await tempDir();
  await assert.rejects(walkAll(new SourceWalk(join(tmp.path, "missing"))), Deno.errors.NotFound);
  new SourceWalk(tmp.path).close(); // must not keep the process or the test alive
});

Deno.test("scan_worker.ts loads no Node built-in or npm package when it starts", async () => {
  // Each one costs every walk's worker its load time and memory (node:path: ~13 ms, ~4 MB).
  const worker = new URL("../lib/backend/local/scan_worker.ts", import.meta.url).href;
  const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json", worker], stdout: "piped" }).output();
  assert.ok(out.success, "deno info failed");
  const graph: {
    modules: Array<{ specifier: string; dependencies?: Array<{ code?: { specifier: string }; isDynamic?: boolean }> }>;
  } = JSON.parse(new TextDecoder().decode(out.stdout));
  const bySpecifier = new Map(graph.modules.map((m) => [m.specifier, m]));
  // What runs at start: static imports that carry code (type-only imports are erased).
  const loaded = new Set<string>();
  const stack = [worker];
  while (stack.length > 0) {
    const specifier = stack.pop()!;
    if (loaded.has(specifier)) continue;
    loaded.add(specifier);
    for (const dep of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dep.code && !dep.isDynamic) stack.push(dep.code.specifier);
    }
  }
  assert.ok(loaded.has(new URL("../lib/backend/local/scan.ts", import.meta.url).href), "the walk is in the graph");
  assert.deepEqual([...loaded].filter((s) => !s.startsWith("file:")), []);
});
