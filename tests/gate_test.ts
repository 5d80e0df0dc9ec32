import assert from "node:assert/strict";
import { join } from "node:path";
import { HeldPlan, judgeRemovals } from "../lib/engine/gate.ts";
import { emptyPlan, type Plan } from "../lib/model/actions.ts";
import { ExitCode } from "../lib/model/errors.ts";
import {
  assertMirror,
  POSIX,
  runLocal,
  runMain,
  snapshot,
  startMain,
  syncLocal,
  tempDir,
  treeDiff,
  waitFor,
  writeTree,
} from "./helpers.ts";

const empty = (): Plan => emptyPlan();

Deno.test("judgeRemovals() allows up to the cap, as a count or a percentage of the replica", () => {
  assert.deepEqual(judgeRemovals(3, 10, { count: 3 }), { allowed: true, limit: 3, planned: 3 });
  assert.deepEqual(judgeRemovals(4, 10, { count: 3 }), { allowed: false, limit: 3, planned: 4 });
  assert.deepEqual(judgeRemovals(1, 10, { count: 0 }), { allowed: false, limit: 0, planned: 1 });
  assert.deepEqual(judgeRemovals(0, 10, { count: 0 }), { allowed: true, limit: 0, planned: 0 });
  assert.deepEqual(judgeRemovals(5, 10, { percent: 50 }), { allowed: true, limit: 5, planned: 5 });
  assert.deepEqual(judgeRemovals(6, 10, { percent: 50 }), { allowed: false, limit: 5, planned: 6 });
});

Deno.test("HeldPlan holds removals and what depends on them, and lets the rest through", () => {
  const held = new HeldPlan();
  const part = empty();
  part.removes.push({ op: "remove", path: "a/old.txt", kind: "file" });
  part.removes.push({ op: "remove", path: "c/swap", kind: "file", replaced: true });
  part.mkdirs.push(
    { op: "mkdir", path: "b" },
    { op: "mkdir", path: "a/new" },
    { op: "mkdir", path: "c/swap", replace: "file" },
  );
  part.transfers.push(
    { op: "copy", path: "b/x", size: 1, mtimeMs: 1, mode: 0o644 },
    { op: "copy", path: "a/OLD.txt", size: 2, mtimeMs: 1, mode: 0o644 },
    { op: "copy", path: "c/swap/y", size: 4, mtimeMs: 1, mode: 0o644 },
  );
  const now = held.split(part);
  assert.deepEqual(now.mkdirs.map((m) => m.path), ["b"]);
  assert.deepEqual(now.transfers.map((t) => t.path), ["b/x"]);
  assert.deepEqual([now.removes.length, now.bytes], [0, 1]);
  // A later part: creations under a held directory wait too.
  const later = empty();
  later.transfers.push({ op: "copy", path: "a/new/z", size: 8, mtimeMs: 1, mode: 0o644 });
  assert.deepEqual(held.split(later).transfers, []);
  const rest = held.release();
  assert.deepEqual(rest.removes.map((r) => r.path), ["a/old.txt", "c/swap"]);
  assert.deepEqual(rest.mkdirs.map((m) => m.path), ["a/new", "c/swap"]);
  assert.deepEqual(rest.transfers.map((t) => t.path), ["a/OLD.txt", "c/swap/y", "a/new/z"]);
  assert.equal(rest.bytes, 14);
});

Deno.test("runOnce() with maxDelete removes nothing past the cap, still copies, and says so", async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const setUp = async () => {
    await Deno.remove(src, { recursive: true }).catch(() => {});
    await Deno.remove(dst, { recursive: true }).catch(() => {});
    await writeTree(src, { "new.txt": "new", "changed.txt": "changed!", swap: "now a file", keep: { "k.txt": "k" } });
    await writeTree(dst, {
      "changed.txt": "old",
      "stale.txt": "s",
      gone: { "a.txt": "a", "b.txt": "b" },
      swap: { "inner.txt": "i" },
      keep: { "k.txt": "k" },
    });
    await Deno.utime(join(dst, "keep", "k.txt"), 1, 1); // an update, whatever the clock did
  };
  // stale.txt 1 + gone/ 3 + swap/ 2 (a type change counts) = 6 removals.
  await t.step("over the cap: no removal at all, every copy done, exit 5", async () => {
    await setUp();
    const run = await runLocal({ source: src, replica: dst, maxDelete: { count: 5 } });
    assert.deepEqual(run.refused, { allowed: false, limit: 5, planned: 6, cap: "max-delete" });
    assert.deepEqual([run.stats.removed, run.stats.copied, run.stats.updated, run.stats.errors], [0, 1, 2, 0]);
    assert.equal(await Deno.readTextFile(join(dst, "new.txt")), "new");
    assert.equal(await Deno.readTextFile(join(dst, "changed.txt")), "changed!");
    assert.equal(await Deno.readTextFile(join(dst, "swap", "inner.txt")), "i", "the type change waits too");
    assert.equal(await Deno.readTextFile(join(dst, "gone", "b.txt")), "b");
    // What is left is what the cap held back: the removals, and the type change that waits with them.
    const left = await treeDiff(src, dst);
    assert.ok(left.every((line) => /: only in replica$/.test(line) || line.startsWith("swap:")), left.join("\n"));
    assert.equal(await syncLocal({ source: src, replica: dst, maxDelete: { count: 5 } }), ExitCode.MaxDelete);
  });
  await t.step("a dry run over the cap plans no removal either, and changes nothing", async () => {
    await setUp();
    const before = await snapshot(dst);
    const run = await runLocal({ source: src, replica: dst, dryRun: true, maxDelete: { count: 0 } });
    assert.equal(run.refused?.planned, 6);
    assert.equal(run.stats.removed, 0);
    assert.deepEqual(await snapshot(dst), before);
  });
  await t.step("at the cap: everything runs", async () => {
    await setUp();
    const run = await runLocal({ source: src, replica: dst, maxDelete: { count: 6 } });
    assert.equal(run.refused, undefined);
    assert.deepEqual([run.stats.removed, run.stats.errors], [6, 0]);
    await assertMirror(src, dst);
  });
  await t.step("a percentage of the replica's entries", async () => {
    await setUp(); // 9 replica entries: 6 removals are 67%
    const refused = await runLocal({ source: src, replica: dst, maxDelete: { percent: 50 } });
    assert.deepEqual(refused.refused, { allowed: false, limit: 4, planned: 6, cap: "max-delete" });
    const allowed = await runLocal({ source: src, replica: dst, maxDelete: { percent: 67 } });
    assert.equal(allowed.refused, undefined);
    await assertMirror(src, dst);
  });
});

Deno.test("main.ts --max-delete: exit 5 with one error line, copies done, nothing removed", async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "new.txt": "new", keep: "k" });
  await writeTree(dst, { keep: "k", old: { "a.txt": "a", "b.txt": "b" }, "stale.txt": "s" });
  const log = join(tmp.path, "sync.log");

  await t.step("a dry run over the cap says what a run would do, in the conditional", async () => {
    const run = await runMain([src, dst, "--max-delete", "3", "--dry-run"]);
    assert.equal(run.code, 5, run.stdout + run.stderr);
    assert.match(
      run.stderr,
      /Would refuse to remove 4 entries: more than --max-delete 3 allows; nothing would be removed/,
    );
    assert.doesNotMatch(run.stderr, /was synced/);
  });
  await t.step("over the cap", async () => {
    const run = await runMain([src, dst, "--max-delete", "3", "-l", log]);
    assert.equal(run.code, 5, run.stdout + run.stderr);
    const errors = run.stderr.split("\n").filter((line) => / ERROR /.test(line));
    assert.equal(errors.length, 1, run.stderr);
    assert.match(errors[0]!, /Refusing to remove 4 entries: more than --max-delete 3 allows; nothing was removed/);
    assert.match(await Deno.readTextFile(log), /ERROR Refusing to remove 4 entries/);
    assert.doesNotMatch(run.stdout, /remove/);
    assert.equal(await Deno.readTextFile(join(dst, "new.txt")), "new", "the copy was made");
    assert.equal(await Deno.readTextFile(join(dst, "old", "b.txt")), "b");
    assert.equal(await Deno.readTextFile(join(dst, "stale.txt")), "s");
  });
  await t.step("--max-delete 0 allows none", async () => {
    assert.equal((await runMain([src, dst, "--max-delete", "0"])).code, 5);
  });
  await t.step("a percentage of the replica's entries (6 entries: 4 are 67%)", async () => {
    assert.equal((await runMain([src, dst, "--max-delete", "50%"])).code, 5);
    const run = await runMain([src, dst, "--max-delete", "67%"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /4 removed/);
    await assertMirror(src, dst);
  });
});

Deno.test("--interval goes on after a run that --max-delete refused, and checks again each run", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { keep: "k" });
  await writeTree(dst, { keep: "k", x: "x", y: "y" });
  const run = startMain([src, dst, "-i", "1s", "--max-delete", "1"]);
  try {
    const refusals = () => run.err.text().match(/Refusing to remove 2 entries/g)?.length ?? 0;
    await waitFor(() => refusals() >= 2, 20_000, "two refusals");
    await Deno.remove(join(dst, "x")); // now within the cap
    await waitFor(() => Deno.lstat(join(dst, "y")).then(() => false, () => true), 20_000, "the allowed removal");
  } finally {
    assert.equal((await run.stop()).status.code, 0);
  }
  await assertMirror(src, dst);
});
