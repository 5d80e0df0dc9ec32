/**
 * Excludes end to end through main.ts, each sync judged by rsync with the same rules.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertMirrorFiltered,
  HAS_RSYNC,
  runMain,
  snapshot,
  startMain,
  tempDir,
  waitFor,
  writeTree,
} from "./helpers.ts";

// rsync (the oracle with filter rules), FIFOs, inotify; without rsync these skip, said once (tests/helpers.ts).
const LINUX = Deno.build.os === "linux" && HAS_RSYNC;

/** A content-deployment tree: what nobody deploys, next to what they do. */
async function siteTrees(root: string) {
  const src = join(root, "src");
  const dst = join(root, "dst");
  await writeTree(src, {
    "index.html": "<h1>hi</h1>",
    "draft.tmp": "scratch",
    "keep.tmp": "kept on purpose",
    node_modules: { pkg: { "index.js": "js" } },
    build: { "out.js": "built" },
    assets: { build: { "logo.svg": "svg" }, cache: { "x.bin": "x" }, "app.css": "css" },
    ".git": { HEAD: "ref" },
  });
  await writeTree(dst, {
    "old.html": "stale",
    "notes.tmp": "the replica's own scratch file",
    node_modules: { "left.js": "from an earlier deploy" },
  });
  return { src, dst };
}

const USER_RULES = ["*.tmp", "!keep.tmp", "node_modules/", "/build", "**/cache/**", ".git/"];
const ARGS = USER_RULES.flatMap((p) => ["--exclude", p]);
/** The same rules in rsync's words (rsync takes the first match; gitignore the last). */
const RSYNC_RULES = [
  "--include=keep.tmp",
  "--exclude=*.tmp",
  "--exclude=node_modules/",
  "--exclude=/build",
  "--exclude=cache/**",
  "--exclude=.git/",
];

Deno.test("--exclude leaves matches out of the copy and keeps them in the replica", { ignore: !LINUX }, async (t) => {
  await using tmp = await tempDir();
  const { src, dst } = await siteTrees(tmp.path);

  await t.step("a dry run shows nothing excluded", async () => {
    const run = await runMain([src, dst, "-n", ...ARGS]);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stdout, /draft\.tmp|node_modules|would copy build|\.git|cache\/x\.bin|notes\.tmp/);
    assert.match(run.stdout, /would copy keep\.tmp/);
    assert.match(run.stdout, /would copy assets\/build\/logo\.svg/, "/build is anchored at the root");
  });
  await t.step("the sync", async () => {
    const run = await runMain([src, dst, ...ARGS]);
    assert.equal(run.code, 0, run.stderr);
    await assertMirrorFiltered(src, dst, RSYNC_RULES);
    assert.equal(await Deno.readTextFile(join(dst, "notes.tmp")), "the replica's own scratch file", "kept");
    assert.equal(await Deno.readTextFile(join(dst, "node_modules", "left.js")), "from an earlier deploy", "kept");
    await assert.rejects(Deno.lstat(join(dst, "old.html")), Deno.errors.NotFound, "not excluded: removed");
    await assert.rejects(Deno.lstat(join(dst, "build")), Deno.errors.NotFound);
    await Deno.lstat(join(dst, "assets", "cache")); // the directory itself, empty: everything inside is excluded
  });
  await t.step("verify with the same excludes finds nothing", async () => {
    const run = await runMain(["verify", src, dst, ...ARGS], { permissions: ["--allow-read"] });
    assert.equal(run.code, 0, run.stdout + run.stderr);
  });
  await t.step("--exclude-from reads the same patterns from a file", async () => {
    const file = join(tmp.path, "deploy.ignore");
    await Deno.writeTextFile(file, `# what is never deployed\n${USER_RULES.join("\n")}\n`);
    const run = await runMain(["verify", src, dst, "--exclude-from", file], { permissions: ["--allow-read"] });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const bad = await runMain([src, dst, "--exclude-from", join(tmp.path, "missing.ignore")]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Cannot read exclude file: '.*missing\.ignore'/);
  });
  await t.step("--delete-excluded removes excluded entries from the replica", async () => {
    const run = await runMain([src, dst, ...ARGS, "--delete-excluded"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /remove notes\.tmp/);
    assert.match(run.stdout, /remove node_modules\/left\.js/);
    await assertMirrorFiltered(src, dst, [...RSYNC_RULES, "--delete-excluded"]);
  });
});

Deno.test("--exclude keeps an excluded entry inside a replica directory that is removed", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a" });
  await writeTree(dst, { gone: { "x.txt": "x", "keep.log": "local log", deep: { "y.txt": "y" } } });
  const run = await runMain([src, dst, "--exclude", "*.log"]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.deepEqual([...Deno.readDirSync(join(dst, "gone"))].map((e) => e.name), ["keep.log"]);
  assert.equal(await Deno.readTextFile(join(dst, "gone", "keep.log")), "local log");
  await assert.rejects(Deno.lstat(join(dst, "gone", "x.txt")), Deno.errors.NotFound);
  await assert.rejects(Deno.lstat(join(dst, "gone", "deep")), Deno.errors.NotFound);
});

Deno.test("--exclude: an excluded directory is never walked, and a source of only excluded entries is empty", {
  ignore: !LINUX,
}, async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a", pipes: {} });
  // A FIFO is an error wherever it is walked: inside an excluded directory, it is never met.
  assert.ok((await new Deno.Command("mkfifo", { args: [join(src, "pipes", "fifo")] }).output()).success);
  await t.step("not walked", async () => {
    const run = await runMain([src, dst, "--exclude", "pipes/"]);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stderr, /fifo/);
  });
  await t.step("only excluded entries: refused like an empty source", async () => {
    await Deno.remove(join(src, "a.txt"));
    const before = await snapshot(dst);
    const run = await runMain([src, dst, "--exclude", "pipes/"]);
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.deepEqual(await snapshot(dst), before);
  });
});

Deno.test("a log file inside the source is excluded, in one-shot and in watch mode", { ignore: !LINUX }, async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a" });
  const log = join(src, "sync.log");
  await t.step("one-shot: not copied, not refused", async () => {
    const run = await runMain([src, dst, "-l", log]);
    assert.equal(run.code, 0, run.stderr);
    await assert.rejects(Deno.lstat(join(dst, "sync.log")), Deno.errors.NotFound);
    assert.match(await Deno.readTextFile(log), /Sync done/);
  });
  await t.step("watch: its own log lines start no sync", async () => {
    const run = startMain([src, dst, "--watch", "-l", log, "-v"]);
    try {
      await waitFor(() => /Sync done/.test(run.out.text()), 20_000, "the first sync");
      await Deno.writeTextFile(join(src, "b.txt"), "b");
      await waitFor(() => Deno.lstat(join(dst, "b.txt")).then(() => true, () => false), 20_000, "b.txt");
      // Each sync writes to the log in the source; were those events counted, syncs would follow one another.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const runs = run.out.text().match(/Sync done/g)?.length ?? 0;
      assert.ok(runs <= 2, `${runs} syncs for one change`);
    } finally {
      await run.stop();
    }
    await assert.rejects(Deno.lstat(join(dst, "sync.log")), Deno.errors.NotFound);
    await assert.rejects(Deno.lstat(join(dst, "sync.log.1")), Deno.errors.NotFound);
  });
});
