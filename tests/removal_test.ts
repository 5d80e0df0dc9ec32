/**
 * Removals and the guards around them, end to end: type changes, the empty-source guard at
 * every depth, the order of removals and writes, vanished source files, replica directories
 * that cannot be listed, and a replica that disappears while a loop runs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { denoFs, type FsOps } from "../lib/backend/local/local_backend.ts";
import {
  assertMirror,
  IS_ROOT,
  POSIX,
  runLocal,
  runMain,
  runMainUnprivileged,
  snapshot,
  startMain,
  tempDir,
  waitFor,
  writeTree,
} from "./helpers.ts";

Deno.test("main.ts plans, shows, logs and counts every removal under a directory that a file replaces", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { d2f: "now a file", d2l: { link: "d2f" }, keep: "k" });
  await writeTree(dst, { d2f: { sub: { z: "z" }, y: "y" }, d2l: { x: "x" }, keep: "k" });
  const before = await snapshot(dst);

  const dry = await runMain([src, dst, "--dry-run"]);
  assert.equal(dry.code, 0, dry.stderr);
  const dryLines = dry.stdout.split("\n").map((line) => line.replace(/^.* INFO {2}/, ""));
  const planned = [
    "would remove d2f/y",
    "would remove d2f/sub/z",
    "would remove dir d2f/sub",
    "would remove dir d2f",
    "would remove d2l/x",
    "would remove dir d2l",
  ];
  for (const line of planned) assert.ok(dryLines.includes(line), `dry run shows '${line}':\n${dry.stdout}`);
  assert.ok(dryLines.indexOf("would remove dir d2f") < dryLines.findIndex((l) => l.startsWith("would copy d2f")));
  assert.match(dry.stdout, /Dry run done: .* 6 removed/);
  assert.deepEqual(await snapshot(dst), before, "a dry run changes nothing");

  const run = await runMain([src, dst]);
  assert.equal(run.code, 0, run.stderr);
  for (const line of planned) assert.match(run.stdout, new RegExp(`INFO  ${line.slice(6)}\\n`));
  assert.match(run.stdout, /Sync done: .* 1 copied, .* 1 linked, .* 6 removed, 0 errors/);
  await assertMirror(src, dst);
});

Deno.test("main.ts refuses a source of only empty folders when the replica has files (exit 3)", async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { photos: { "2024": {}, "2025": {} }, docs: {} });
  await writeTree(dst, { photos: { "2024": { "a.jpg": "jpeg" } }, docs: { "cv.pdf": "pdf" } });
  const before = await snapshot(dst);

  await t.step("refused, nothing touched, even in a dry run", async () => {
    for (const args of [[src, dst], [src, dst, "--dry-run"]]) {
      const run = await runMain(args);
      assert.equal(run.code, 3, run.stdout + run.stderr);
      assert.match(run.stderr, /Source has no files, only empty folders, but the replica has files/);
      assert.deepEqual(await snapshot(dst), before);
    }
  });
  await t.step("a replica of only empty folders is mirrored", async () => {
    await using other = await tempDir();
    await writeTree(other.path, { old: { deeper: {} } });
    const run = await runMain([src, other.path]);
    assert.equal(run.code, 0, run.stderr);
    await assertMirror(src, other.path);
  });
  await t.step("one file anywhere in the source lets the sync run", async () => {
    await Deno.writeTextFile(join(src, "photos", "2025", "b.jpg"), "jpeg");
    const run = await runMain([src, dst]);
    assert.equal(run.code, 0, run.stderr);
    await assertMirror(src, dst);
  });
  await t.step("--allow-empty-source mirrors it anyway", async () => {
    await Deno.remove(join(src, "photos", "2025", "b.jpg"));
    const run = await runMain([src, dst, "--allow-empty-source"]);
    assert.equal(run.code, 0, run.stderr);
    await assertMirror(src, dst);
  });
});

Deno.test("main.ts removes a directory's stale entries before writing its new ones (a nearly full disk)", {
  ignore: Deno.build.os !== "linux" || !IS_ROOT, // mounts a 1 MiB tmpfs as the replica
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await Deno.mkdir(dst);
  const mounted = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dst] }).output();
  assert.ok(mounted.success, "mount a small tmpfs");
  try {
    const bytes = (seed: number) => new Uint8Array(700 * 1024).map((_, i) => (i * seed) & 0xff);
    await writeTree(src, { media: { "new.bin": bytes(7) } });
    await writeTree(dst, { media: { "old.bin": bytes(3) } });
    const run = await runMain([src, dst]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const lines = run.stdout.split("\n");
    const removed = lines.findIndex((l) => l.endsWith("remove media/old.bin"));
    const copied = lines.findIndex((l) => /copy media\/new\.bin/.test(l));
    assert.ok(removed !== -1 && removed < copied, run.stdout);
    await assertMirror(src, dst);
  } finally {
    await new Deno.Command("umount", { args: [dst] }).output();
  }
});

Deno.test("runOnce() counts a source file that vanished mid-run as a warning, not an error", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "gone.txt": "soon deleted", "stay.txt": "stays" });
  const vanishing: FsOps = {
    ...denoFs,
    copyFile: async (from, to, size) => {
      if (from.endsWith("gone.txt")) await new Promise((r) => setTimeout(r, 30)).then(() => Deno.remove(from));
      await denoFs.copyFile(from, to, size);
    },
  };
  const run = await runLocal({ source: src, replica: dst }, { fs: vanishing });
  assert.deepEqual([run.stats.errors, run.stats.vanished, run.stats.copied], [0, 1, 1]);
  assert.deepEqual([...Deno.readDirSync(dst)].map((e) => e.name), ["stay.txt"], "no temp file is left");
  // The removal (30 ms on: past the kernel's timestamp tick) moved the source root's mtime after
  // it was listed: the run set the time it listed, and the next run, with nothing to copy, the new one.
  const next = await runLocal({ source: src, replica: dst });
  assert.deepEqual([next.stats.errors, next.stats.copied, next.stats.vanished], [0, 0, 0]);
  await assertMirror(src, dst);
});

Deno.test("main.ts leaves alone, with one error, a replica directory it cannot list", {
  ignore: !IS_ROOT, // needs a directory the unprivileged user cannot open up: root's, mode 000
}, async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { locked: { "a.txt": "a", sub: { "b.txt": "b" } }, "top.txt": "t" });
  await writeTree(dst, { locked: { "a.txt": "a", sub: { "b.txt": "b" } } });
  await new Deno.Command("chown", { args: ["-R", "65534:65534", src, dst] }).output();
  await new Deno.Command("chown", { args: ["0:0", join(dst, "locked")] }).output();
  await Deno.chmod(join(dst, "locked"), 0o000);
  await Deno.chmod(tmp.path, 0o755);
  try {
    for (const dryRun of [true, false]) {
      const run = await runMainUnprivileged([src, dst, ...(dryRun ? ["-n"] : [])], []);
      if (!run) {
        await t.step({ name: "no way to run as a non-root user here", ignore: true, fn: () => {} });
        return;
      }
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.equal(run.stderr.match(/locked: Cannot read directory/g)?.length, 1, run.stderr);
      assert.doesNotMatch(run.stdout + run.stderr, /locked\/(a\.txt|sub)/, "nothing under it is planned");
      assert.match(run.stdout, dryRun ? /would copy top\.txt/ : /copy top\.txt/);
    }
  } finally {
    await Deno.chmod(join(dst, "locked"), 0o755);
  }
});

Deno.test("--interval reports a replica that disappeared each run, never recreates it, and resumes", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a" });
  const run = startMain([src, dst, "-i", "1s"]);
  try {
    await waitFor(() => /Sync done/.test(run.out.text()), 20_000, "the first sync");
    await Deno.remove(dst, { recursive: true });
    const reports = () => run.err.text().match(/Replica folder is missing/g)?.length ?? 0;
    await waitFor(() => reports() >= 2, 20_000, "two reports");
    await assert.rejects(Deno.lstat(dst), Deno.errors.NotFound, "never recreated");
    await Deno.mkdir(dst);
    await waitFor(() => Deno.lstat(join(dst, "a.txt")).then(() => true, () => false), 20_000, "the resumed sync");
  } finally {
    await run.stop();
  }
  await assertMirror(src, dst);
});

Deno.test("--watch retries a run that had errors promptly, and backs off while the error lasts", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a" });
  // A FIFO cannot be copied: every run ends with an error, and nothing changes to send events.
  assert.ok((await new Deno.Command("mkfifo", { args: [join(src, "pipe")] }).output()).success);
  const run = startMain([src, dst, "--watch"]);
  const runs = () => (run.out.text() + run.err.text()).match(/Sync done/g)?.length ?? 0;
  try {
    await waitFor(() => runs() >= 1, 20_000, "the first sync");
    const first = Date.now();
    await waitFor(() => runs() >= 2, 5_000, "a retry without any file event");
    assert.ok(Date.now() - first >= 500, "not at once");
    await new Promise((resolve) => setTimeout(resolve, 3_000 - (Date.now() - first)));
    assert.ok(runs() <= 3, `backed off: ${runs()} runs in 3 s`);
  } finally {
    await run.stop();
  }
});
