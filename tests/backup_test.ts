/**
 * `--backup-dir`: what a sync removes or overwrites is moved into the backup folder, end to
 * end through main.ts, and the move primitive itself (names taken, other file systems).
 *
 * @module
 */

import assert from "node:assert/strict";
import { JOURNAL_NAME } from "../lib/backend/backup_journal.ts";
import { join } from "node:path";
import { BackupDir, backupSuffix } from "../lib/backend/local/backup.ts";
import { parseCommand } from "../lib/cli/cli.ts";
import { serviceCommand, syncArguments } from "../lib/service/locate.ts";
import { plan } from "../lib/engine/plan.ts";
import type { Entry } from "../lib/model/listing.ts";
import { assertMirror, IS_ROOT, runMain, snapshot, startMain, tempDir, waitFor, writeTree } from "./helpers.ts";

/** Everything under `root` as `path: file CONTENT | link TARGET | dir`, sorted; [] when missing. */
async function contents(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel === "" ? root : join(root, rel))) {
      const path = rel === "" ? e.name : `${rel}/${e.name}`;
      if (path === JOURNAL_NAME) continue; // the folder's journal (tests/backup_keep_test.ts)
      const full = join(root, path);
      const info = await Deno.lstat(full);
      if (info.isSymlink) out.push(`${path}: link ${await Deno.readLink(full)}`);
      else if (info.isFile) out.push(`${path}: file ${await Deno.readTextFile(full)}`);
      else {
        out.push(`${path}: dir`);
        await walk(path);
      }
    }
  };
  await walk("").catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  return out.sort();
}

/** The log lines of a run without their time stamp and level. */
const lines = (stdout: string) => stdout.split("\n").map((line) => line.replace(/^.* INFO {2}/, ""));

const SUFFIX = /~\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d$/;

Deno.test("main.ts --backup-dir moves overwritten, removed and type-changed entries into DIR", async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const bak = join(tmp.path, "bak");
  await writeTree(src, {
    "a.txt": "old",
    keep: "k",
    "stray.txt": "s",
    gone: { deep: { z: "z" }, w: "w" },
    f2d: "was a file",
    d2f: { x: "x", sub: { y: "y" } },
    ln: { link: "old-target" },
  });
  const first = await runMain([src, dst]);
  assert.equal(first.code, 0, first.stderr);

  await t.step("overwrites, removals (a nested directory too) and type changes both ways", async () => {
    await Deno.writeTextFile(join(src, "a.txt"), "new content");
    await Deno.remove(join(src, "stray.txt"));
    await Deno.remove(join(src, "gone"), { recursive: true });
    await Deno.remove(join(src, "f2d"));
    await writeTree(src, { f2d: { inner: "i" } });
    await Deno.remove(join(src, "d2f"), { recursive: true });
    await Deno.writeTextFile(join(src, "d2f"), "now a file");
    await Deno.remove(join(src, "ln"));
    await Deno.symlink("a.txt", join(src, "ln"));
    const oldMtime = (await Deno.lstat(join(dst, "a.txt"))).mtime?.getTime();

    const run = await runMain([src, dst, "--backup-dir", bak]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    await assertMirror(src, dst);
    assert.deepEqual(
      await contents(bak),
      [
        "a.txt: file old",
        "d2f/sub/y: file y",
        "d2f/sub: dir",
        "d2f/x: file x",
        "d2f: dir",
        "f2d: file was a file",
        "gone/deep/z: file z",
        "gone/deep: dir",
        "gone/w: file w",
        "gone: dir",
        "ln: link old-target",
        "stray.txt: file s",
      ].sort(),
    );
    assert.equal((await Deno.lstat(join(bak, "a.txt"))).mtime?.getTime(), oldMtime, "the backup keeps its mtime");
    for (const line of ["back up a.txt", "back up dir gone", "back up gone/deep/z", "back up f2d", "back up ln"]) {
      assert.ok(lines(run.stdout).includes(line), `'${line}' in:\n${run.stdout}`);
    }
    assert.match(run.stdout, /Sync done: .* 1 updated, 1 linked, 1 attrs, 10 removed, 12 backed up, 0 errors/);
  });

  await t.step("a name already in DIR is never overwritten: the new entry gets a timestamp suffix", async () => {
    await Deno.writeTextFile(join(src, "a.txt"), "third version");
    await Deno.remove(join(src, "keep"));
    const run = await runMain([src, dst, "--backup-dir", bak, "--log-format", "json"]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    await assertMirror(src, dst);
    const now = await contents(bak);
    assert.ok(now.includes("a.txt: file old"), "the first backup is untouched");
    assert.ok(now.includes("keep: file k"));
    const suffixed = now.filter((line) => line.startsWith("a.txt~"));
    assert.equal(suffixed.length, 1, now.join("\n"));
    assert.match(suffixed[0]!.split(":")[0]!, SUFFIX);
    assert.ok(suffixed[0]!.endsWith(": file new content"));
    const summary = JSON.parse(run.stdout.trim().split("\n").at(-1)!);
    assert.equal(summary.backedUp, 2);
    assert.equal(summary.removed, 1);
  });
});

Deno.test("main.ts --backup-dir keeps every overwritten file when there are enough copies for the workers", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const bak = join(tmp.path, "bak");
  const files = 600; // past MIN_POOL_FILES, where plain copies go to the copy workers
  const names = Array.from({ length: files }, (_, i) => `f${String(i).padStart(4, "0")}`);
  await writeTree(src, Object.fromEntries(names.map((n) => [n, "v1"])));
  assert.equal((await runMain([src, dst])).code, 0);
  for (const n of names) await Deno.writeTextFile(join(src, n), "version 2");
  const run = await runMain([src, dst, "--backup-dir", bak]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, new RegExp(`Sync done: .* ${files} updated, .* ${files} backed up, 0 errors`));
  await assertMirror(src, dst);
  assert.deepEqual(await contents(bak), names.map((n) => `${n}: file v1`));
});

Deno.test("main.ts --backup-dir with --max-delete: a refused run moves nothing out of the replica (exit 5)", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const bak = join(tmp.path, "bak");
  await writeTree(src, { "a.txt": "a", "b.txt": "b", "c.txt": "c" });
  assert.equal((await runMain([src, dst])).code, 0);
  await Deno.remove(join(src, "b.txt"));
  await Deno.remove(join(src, "c.txt"));
  const refused = await runMain([src, dst, "--backup-dir", bak, "--max-delete", "1"]);
  assert.equal(refused.code, 5, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /Refusing to remove 2 entries: more than --max-delete 1/);
  assert.deepEqual(await contents(bak), []);
  assert.deepEqual(await contents(dst), ["a.txt: file a", "b.txt: file b", "c.txt: file c"]);
  const allowed = await runMain([src, dst, "--backup-dir", bak, "--max-delete", "2"]);
  assert.equal(allowed.code, 0, allowed.stdout + allowed.stderr);
  assert.deepEqual(await contents(bak), ["b.txt: file b", "c.txt: file c"]);
  await assertMirror(src, dst);
});

Deno.test("main.ts refuses --backup-dir inside the source (exit 2), touching nothing", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "new content" });
  await writeTree(dst, { "a.txt": "old", "b.txt": "b" });
  await Deno.symlink(src, join(tmp.path, "via-link"));
  const before = [await snapshot(src), await snapshot(dst)];
  for (const dir of [join(src, "bak"), join(tmp.path, "via-link", "bak"), src]) {
    const run = await runMain([src, dst, "--backup-dir", dir]);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.stderr, /^[^\n]* ERROR Backup directory is inside the source: '[^\n]*'\n$/);
    assert.deepEqual([await snapshot(src), await snapshot(dst)], before);
  }
  const replica = await runMain([src, dst, "--backup-dir", dst]);
  assert.equal(replica.code, 2);
  assert.match(replica.stderr, /Backup directory is the replica or holds it/);
  assert.deepEqual([await snapshot(src), await snapshot(dst)], before);
});

Deno.test("main.ts protects a --backup-dir inside the replica: never removed, mirrored over or counted", async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const bak = join(dst, ".trash");
  await writeTree(src, { "a.txt": "a" });
  assert.equal((await runMain([src, dst])).code, 0);
  await writeTree(src, { ".trash": { "from-source": "not mirrored" } });
  await writeTree(dst, { "gone.txt": "g", ".trash": { "old.txt": "o", sub: { x: "x" } } });

  await t.step("first run: the removal lands in DIR, DIR's own contents stay", async () => {
    const run = await runMain([src, dst, "--backup-dir", bak]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.doesNotMatch(run.stdout, /\.trash/);
    assert.match(run.stdout, /Sync done: 0 created, 0 copied, 0 updated, .* 1 removed, 1 backed up, 0 errors/);
    assert.deepEqual(await contents(bak), [
      "gone.txt: file g",
      "old.txt: file o",
      "sub/x: file x",
      "sub: dir",
    ]);
    await assertMirror(src, dst, { exclude: [".trash"] });
  });
  await t.step("second run: nothing to do, DIR unchanged", async () => {
    const before = await snapshot(bak);
    const run = await runMain([src, dst, "--backup-dir", bak]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /Sync done: 0 created, 0 copied, 0 updated, 0 linked, 0 attrs, 0 removed, 0 backed up/);
    assert.deepEqual(await snapshot(bak), before);
    await assertMirror(src, dst, { exclude: [".trash"] });
  });
  await t.step("without --backup-dir the same folder is extraneous: the protection is what kept it", async () => {
    const dry = await runMain([src, dst, "--dry-run"]);
    assert.match(dry.stdout, /would remove dir \.trash/);
  });
});

Deno.test("main.ts --backup-dir --dry-run shows 'would back up' and changes nothing", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const bak = join(tmp.path, "bak");
  await writeTree(src, { "a.txt": "new content" });
  await writeTree(dst, { "a.txt": "old", old: { "b.txt": "b" } });
  const before = await snapshot(dst);
  const run = await runMain([src, dst, "--backup-dir", bak, "--dry-run"]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  const shown = lines(run.stdout);
  for (const line of ["would back up a.txt", "would back up old/b.txt", "would back up dir old"]) {
    assert.ok(shown.includes(line), `'${line}' in:\n${run.stdout}`);
  }
  assert.ok(shown.indexOf("would back up old/b.txt") < shown.indexOf("would remove old/b.txt"));
  assert.match(run.stdout, /Dry run done: .* 1 updated, .* 2 removed, 3 backed up, 0 errors/);
  assert.deepEqual(await snapshot(dst), before);
  assert.deepEqual(await contents(bak), [], "DIR is not even created");
});

Deno.test("main.ts --backup-dir with --interval: every run backs up into the same DIR, with suffixes", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const bak = join(tmp.path, "bak");
  await writeTree(src, { "a.txt": "1" });
  await writeTree(dst, { "a.txt": "0!" });
  const running = startMain([src, dst, "--backup-dir", bak, "--interval", "1s"]);
  try {
    await waitFor(async () => (await contents(bak)).includes("a.txt: file 0!"), 20_000, "the first backup");
    await Deno.writeTextFile(join(src, "a.txt"), "two");
    await waitFor(
      async () => (await contents(bak)).some((line) => /^a\.txt~.*: file 1$/.test(line)),
      20_000,
      "the second backup, under a suffixed name",
    );
  } finally {
    await running.stop();
  }
  await assertMirror(src, dst);
  assert.ok((await contents(bak)).includes("a.txt: file 0!"));
});

Deno.test("main.ts --backup-dir with --watch: an edit and a deletion are backed up as they happen", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const bak = join(tmp.path, "bak");
  await writeTree(src, { "a.txt": "1", "b.txt": "b" });
  const first = await runMain([src, dst]);
  assert.equal(first.code, 0, first.stderr);
  const running = startMain([src, dst, "--backup-dir", bak, "--watch"]);
  try {
    await waitFor(() => /Sync done/.test(running.out.text()), 20_000, "the first sync");
    await Deno.writeTextFile(join(src, "a.txt"), "two");
    await Deno.remove(join(src, "b.txt"));
    await waitFor(
      async () => {
        const now = await contents(bak);
        return now.includes("a.txt: file 1") && now.includes("b.txt: file b");
      },
      20_000,
      "both backups",
    );
    await waitFor(() => /back up b\.txt\n[^\n]*remove b\.txt/.test(running.out.text()), 20_000, "the removal's line");
  } finally {
    await running.stop();
  }
  await assertMirror(src, dst);
});

Deno.test("BackupDir puts a taken name under the run's suffix, then -2, -3, and never follows links", async () => {
  await using tmp = await tempDir();
  const replica = join(tmp.path, "replica");
  const root = join(tmp.path, "bak");
  const started = new Date("2026-11-22T20:51:03.456Z");
  assert.equal(backupSuffix(started), "~2026-11-22T20-51-03");
  const backup = new BackupDir(root, { started });
  const moved: string[] = [];
  for (const text of ["1", "22", "333"]) {
    await writeTree(replica, { d: { "f.txt": text } });
    moved.push(backup.move(join(replica, "d", "f.txt"), "d/f.txt", "file"));
  }
  assert.deepEqual(moved, [
    join(root, "d", "f.txt"),
    join(root, "d", "f.txt~2026-11-22T20-51-03"),
    join(root, "d", "f.txt~2026-11-22T20-51-03-2"),
  ]);
  assert.deepEqual(await contents(root), [
    "d/f.txt: file 1",
    "d/f.txt~2026-11-22T20-51-03-2: file 333",
    "d/f.txt~2026-11-22T20-51-03: file 22",
    "d: dir",
  ]);

  // A folder in DIR taken by a file, or by a link to elsewhere: a suffixed folder, nothing followed.
  const elsewhere = join(tmp.path, "elsewhere");
  await Deno.mkdir(elsewhere);
  await writeTree(root, { x: "a file", l: { link: elsewhere } });
  await writeTree(replica, { x: { y: "y" }, l: { z: "z" } });
  assert.equal(backup.move(join(replica, "x", "y"), "x/y", "file"), join(root, "x~2026-11-22T20-51-03", "y"));
  assert.equal(backup.move(join(replica, "l", "z"), "l/z", "file"), join(root, "l~2026-11-22T20-51-03", "z"));
  assert.equal(backup.move(join(replica, "x"), "x", "dir"), join(root, "x~2026-11-22T20-51-03"));
  assert.deepEqual(await contents(elsewhere), []);

  // keep(): the replica entry stays, its present content is in DIR (a hard link here).
  await writeTree(replica, { k: "before" });
  const kept = backup.keep(join(replica, "k"), "k")!;
  await Deno.writeTextFile(join(tmp.path, "new"), "after");
  await Deno.rename(join(tmp.path, "new"), join(replica, "k"));
  assert.equal(await Deno.readTextFile(kept), "before");
  assert.equal(backup.keep(join(replica, "missing"), "missing"), undefined);
});

Deno.test(
  "BackupDir copies, checks and removes across file systems (a tmpfs replica)" +
    (IS_ROOT && Deno.build.os === "linux" ? "" : " [skipped: needs root on Linux to mount a tmpfs]"),
  {
    ignore: Deno.build.os !== "linux" || !IS_ROOT,
  },
  async () => {
    await using tmp = await tempDir();
    const replica = join(tmp.path, "replica");
    await Deno.mkdir(replica);
    const mounted = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=8m", "tmpfs", replica] })
      .output();
    assert.ok(mounted.success, "mount a small tmpfs");
    try {
      const big = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff);
      await writeTree(replica, { d: { "big.bin": big, "small.txt": "small" }, ln: { link: "d/small.txt" }, u: "old" });
      await Deno.chmod(join(replica, "d", "small.txt"), 0o640);
      const mtime = (await Deno.lstat(join(replica, "d", "small.txt"))).mtime;
      const root = join(tmp.path, "bak");
      const backup = new BackupDir(root);
      // A rename across the mount fails with EXDEV: the primitive must copy, check and remove.
      assert.throws(() => Deno.renameSync(join(replica, "u"), join(tmp.path, "probe")), /cross-device/i);
      backup.move(join(replica, "d", "big.bin"), "d/big.bin", "file");
      backup.move(join(replica, "d", "small.txt"), "d/small.txt", "file");
      backup.move(join(replica, "d"), "d", "dir");
      backup.move(join(replica, "ln"), "ln", "symlink");
      const kept = backup.keep(join(replica, "u"), "u")!;
      assert.deepEqual(await contents(replica), ["u: file old"]);
      assert.deepEqual(await Deno.readFile(join(root, "d", "big.bin")), big);
      const small = await Deno.lstat(join(root, "d", "small.txt"));
      assert.equal(small.mode! & 0o7777, 0o640);
      assert.equal(small.mtime?.getTime(), mtime?.getTime());
      assert.equal(await Deno.readLink(join(root, "ln")), "d/small.txt");
      assert.equal(await Deno.readTextFile(kept), "old");
    } finally {
      await new Deno.Command("umount", { args: [replica] }).output();
    }
  },
);

Deno.test("plan() with protect leaves a protected path and the folders on its way alone", () => {
  const dir: Entry = { kind: "dir", size: 0, mtimeMs: 1000, mode: 0o755 };
  const file: Entry = { kind: "file", size: 1, mtimeMs: 1000, mode: 0o644 };
  const source = { root: dir, entries: new Map<string, Entry>([["keep", file], ["bak", dir], ["bak/s", file]]) };
  const replica = {
    root: dir,
    entries: new Map<string, Entry>([
      ["keep", file],
      ["bak", dir],
      ["bak/r", file],
      ["old", dir],
      ["old/x", file],
      ["old/trash", dir],
      ["old/trash/t", file],
    ]),
  };
  const p = plan(source, replica, { protect: new Set(["bak", "old/trash"]) });
  assert.deepEqual(p.removes.map((r) => r.path), ["old/x"]);
  assert.deepEqual(p.transfers, []);
  assert.deepEqual(p.mkdirs, []);
  const unprotected = plan(source, replica);
  assert.deepEqual(unprotected.removes.map((r) => r.path).sort(), [
    "bak/r",
    "old",
    "old/trash",
    "old/trash/t",
    "old/x",
  ]);
});

Deno.test("parseCommand() takes --backup-dir for sync (and verify, to leave it out), and a service passes it on", () => {
  const cmd = parseCommand(["src", "dst", "--backup-dir", "../deleted"]);
  assert.equal(cmd.kind === "sync" && cmd.options.backupDir, "../deleted");
  const verify = parseCommand(["verify", "src", "dst", "--backup-dir", "x"]);
  assert.equal(verify.kind === "verify" && verify.options.backupDir, "x");
  assert.throws(() => parseCommand(["src", "dst", "--backup-dir="]), /must not be an empty path/);
  if (cmd.kind !== "sync") throw new Error("sync expected");
  const paths = { source: "/data", replica: "/backup", backupDir: "/deleted" };
  const args = syncArguments(cmd.options, paths);
  assert.deepEqual(args.slice(-2), ["--backup-dir", "/deleted"]);
  const command = serviceCommand(args, { paths, runtime: { execPath: "/usr/bin/deno", mainPath: "/app/main.ts" } });
  // Unscoped, as copying links needs, but never the source.
  assert.deepEqual(command.slice(3, 6), ["--allow-read", "--allow-write", "--deny-write=/data"], command.join(" "));
});
