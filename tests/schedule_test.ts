import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertMirror,
  mirrorDiff,
  POSIX,
  runMain,
  snapshot,
  startMain,
  tempDir,
  waitFor,
  writeTree,
} from "./helpers.ts";

const start = startMain;

const mirrored = (src: string, dst: string) => async () => (await mirrorDiff(src, dst)) === "";
const noTemps = (dir: string) => [...Deno.readDirSync(dir)].every((e) => !e.name.endsWith(".tmp"));

Deno.test("--interval syncs again and again, and SIGTERM stops it cleanly", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const log = join(tmp.path, "sync.log");
  await writeTree(src, { "a.txt": "a" });
  const run = start([src, dst, "-i", "1s", "-l", log]);
  await waitFor(mirrored(src, dst), 20_000, "first sync");
  await Deno.writeTextFile(join(src, "b.txt"), "b");
  await Deno.mkdir(join(src, "sub"));
  await Deno.writeTextFile(join(src, "sub", "c.txt"), "c");
  await waitFor(mirrored(src, dst), 20_000, "periodic propagation");
  await Deno.remove(join(src, "a.txt"));
  await waitFor(mirrored(src, dst), 20_000, "periodic removal");
  const { status, ms } = await run.stop("SIGTERM");
  assert.equal(status.code, 0, run.err.text());
  assert.ok(ms < 2000, `stopped in ${ms} ms`);
  assert.match(run.out.text(), /Stopped/);
  assert.match(await Deno.readTextFile(log), /INFO {2}Stopped/);
  assert.ok((await Deno.readTextFile(log)).split("Sync done").length > 3, "every run's summary is logged");
  assert.ok(noTemps(dst));
  await assertMirror(src, dst);
});

Deno.test("--watch propagates creates, edits, renames, deletions and new nested directories", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a", old: { "x.txt": "x" } });
  const run = start([src, dst, "--watch"]);
  try {
    await waitFor(mirrored(src, dst), 20_000, "initial sync");
    await Deno.writeTextFile(join(src, "new.txt"), "created");
    await waitFor(mirrored(src, dst), 20_000, "create");
    await Deno.writeTextFile(join(src, "a.txt"), "edited, longer");
    await waitFor(mirrored(src, dst), 20_000, "edit");
    await Deno.rename(join(src, "old"), join(src, "renamed"));
    await waitFor(mirrored(src, dst), 20_000, "rename");
    await Deno.remove(join(src, "new.txt"));
    await waitFor(mirrored(src, dst), 20_000, "delete");
    await Deno.mkdir(join(src, "n1", "n2", "n3"), { recursive: true });
    await Deno.writeTextFile(join(src, "n1", "n2", "n3", "deep.txt"), "deep");
    await Deno.writeTextFile(join(src, "n1", "top.txt"), "top");
    await waitFor(mirrored(src, dst), 20_000, "nested new directories filled after creation");
  } finally {
    const { status } = await run.stop("SIGINT");
    assert.equal(status.code, 0, run.err.text());
  }
  assert.match(run.out.text(), /Stopped/);
  await assertMirror(src, dst);
});

Deno.test("--watch brings a 5,000-file burst across without thousands of scans", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await Deno.mkdir(src);
  const run = start([src, dst, "-w"]);
  try {
    await waitFor(() => run.out.text().includes("Sync done"), 20_000, "initial sync");
    await Deno.mkdir(join(src, "burst"));
    for (let i = 0; i < 5000; i++) await Deno.writeTextFile(join(src, "burst", `f${i}.txt`), `${i}`);
    await waitFor(mirrored(src, dst), 60_000, "5,000 creates");
    await Deno.remove(join(src, "burst"), { recursive: true });
    await Deno.writeTextFile(join(src, "keep.txt"), "k");
    await waitFor(mirrored(src, dst), 60_000, "5,000 deletions");
  } finally {
    await run.stop();
  }
  const runs = run.out.text().split("Sync done").length - 1;
  assert.ok(runs < 100, `${runs} full scans for 10,000 events`);
  await assertMirror(src, dst);
});

Deno.test("a second foldersync into the same replica exits 4; a killed one leaves no stale lock", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const other = join(tmp.path, "other");
  await writeTree(src, { "a.txt": "a" });
  await writeTree(other, { "b.txt": "b" });
  const first = start([src, dst, "-i", "1h"]);
  await waitFor(mirrored(src, dst), 20_000, "first instance's sync");
  const before = await snapshot(dst);
  const second = await runMain([other, dst]);
  assert.equal(second.code, 4, second.stderr);
  assert.match(second.stderr, /Another foldersync is already syncing into the replica/);
  assert.deepEqual(await snapshot(dst), before, "nothing touched");
  assert.equal(await mirrorDiff(src, dst), "", "the lock is invisible to the mirror check");

  await first.stop("SIGKILL");
  const third = await runMain([other, dst]);
  assert.equal(third.code, 0, third.stderr);
  await assertMirror(other, dst);
});

Deno.test("seed command lines run the interval loop and log to the file", { ignore: !POSIX }, async (t) => {
  for (const [name, order] of [["<interval> <log>", "interval-first"], ["<log> <interval>", "log-first"]] as const) {
    await t.step(name, async () => {
      await using tmp = await tempDir();
      const src = join(tmp.path, "src");
      const dst = join(tmp.path, "dst");
      const log = join(tmp.path, "seed.log");
      await writeTree(src, { "a.txt": "a" });
      const run = start(order === "interval-first" ? [src, dst, "1h", log] : [src, dst, log, "1h"]);
      await waitFor(async () => (await Deno.readTextFile(log).catch(() => "")).includes("Sync done"), 20_000, "log");
      const { status } = await run.stop();
      assert.equal(status.code, 0);
      assert.match(run.out.text(), /Syncing every 1 h/);
      assert.match(await Deno.readTextFile(log), /copy a\.txt/);
      await assertMirror(src, dst);
    });
  }
});

Deno.test("--log-max-size rotates the log file and --log-keep bounds the files", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const log = join(tmp.path, "rot.log");
  await Deno.mkdir(src);
  for (let i = 0; i < 300; i++) await Deno.writeTextFile(join(src, `file-with-a-longish-name-${i}.txt`), "x");
  const run = await runMain([src, dst, "-l", log, "--log-max-size", "4K", "--log-keep", "3"]);
  assert.equal(run.code, 0, run.stderr);
  const logs = [...Deno.readDirSync(tmp.path)].map((e) => e.name).filter((n) => n.startsWith("rot.log")).sort();
  assert.deepEqual(logs, ["rot.log", "rot.log.1", "rot.log.2", "rot.log.3"], "the current file and 3 rotated");
  for (const name of logs) assert.ok((await Deno.stat(join(tmp.path, name))).size <= 8192);
  await assertMirror(src, dst);
});
