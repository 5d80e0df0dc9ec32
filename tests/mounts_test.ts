/**
 * Tests on real mounts (root only): a replica on a file system that keeps whole seconds, and a
 * replica that is a folder of the source under another path (bind mounts). Not root: skipped
 * with the reason printed; under CI=true they run, and fail if they cannot mount.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertMirror, CI_LINUX, IS_ROOT, runLocal, runMain, snapshot, tempDir, writeTree } from "./helpers.ts";
import { inferResolution, probeResolution, resolutionOf } from "../lib/backend/local/mtime_probe.ts";

const CAN_MOUNT = Deno.build.os === "linux" && (IS_ROOT || CI_LINUX);
if (!CAN_MOUNT) console.log("mounts_test: not root on Linux: the tests on loop and bind mounts are skipped");

async function run(cmd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** A fresh ext2 file system with 128-byte inodes (whole-second times), loop-mounted at `dir/m`. */
async function ext2(dir: string): Promise<{ mount: string } & AsyncDisposable> {
  const image = join(dir, "fs.img");
  const mount = join(dir, "m");
  await Deno.mkdir(mount);
  await run("truncate", "-s", "32M", image);
  await run("mkfs.ext2", "-q", "-F", "-I", "128", image);
  await run("mount", "-o", "loop", image, mount);
  return { mount, [Symbol.asyncDispose]: () => run("umount", mount) };
}

/** `from` bind-mounted at `to` until disposed. */
async function bind(from: string, to: string): Promise<AsyncDisposable> {
  await Deno.mkdir(to, { recursive: true });
  await run("mount", "--bind", from, to);
  return { [Symbol.asyncDispose]: () => run("umount", to) };
}

/** A source whose times have milliseconds, as on ext4 or tmpfs. */
async function sourceTree(src: string): Promise<void> {
  await writeTree(src, { "a.txt": "alpha", d: { "b.txt": "bravo", e: { "c.txt": "charlie" } }, l: { link: "a.txt" } });
  let ms = 1_700_000_000_123;
  for (const rel of ["a.txt", "d/b.txt", "d/e/c.txt", "d/e", "d", ""]) {
    const when = new Date(ms += 7_777);
    await Deno.utime(join(src, rel), when, when);
  }
}

Deno.test("mtime probe: resolutionOf() and inferResolution() tell 1 ms, 10 ms, 1 s and 2 s apart", () => {
  assert.equal(resolutionOf(1_000_000_001_237), 1);
  assert.equal(resolutionOf(1_000_000_001_230), 10);
  assert.equal(resolutionOf(1_000_000_001_000), 1000);
  assert.equal(resolutionOf(1_000_000_002_000), 1000); // rounded up to a whole second
  assert.equal(resolutionOf(1_000_000_000_000), 2000); // FAT, truncated
  assert.equal(resolutionOf(0), 2000); // keeps no time at all
  assert.equal(inferResolution([1_700_000_001_000, 1_700_000_003_000]), 1000);
  assert.equal(inferResolution([2000, 4000, 6000, 8000, 10_000, 12_000, 14_000, 16_000]), 2000);
  assert.equal(inferResolution([2000, 4000]), 1000); // too few to tell 2 s from 1 s
  assert.equal(inferResolution([1_700_000_001_000, 1_700_000_003_001]), 1);
  assert.equal(inferResolution([1_700_000_001_000]), 1);
});

Deno.test("mtime probe: a fine file system probes at 1 ms and keeps the folder's own mtime", async () => {
  await using dir = await tempDir();
  const when = new Date(1_700_000_000_321);
  await Deno.utime(dir.path, when, when);
  assert.equal(probeResolution(dir.path), 1);
  assert.equal((await Deno.stat(dir.path)).mtime?.getTime(), when.getTime());
  assert.deepEqual([...Deno.readDirSync(dir.path)], []);
});

Deno.test({
  name: "main.ts settles on a replica whose file system keeps whole seconds (ext2, 128-byte inodes)",
  ignore: !CAN_MOUNT,
  async fn(t) {
    await using dir = await tempDir();
    await using fs = await ext2(dir.path);
    const src = join(dir.path, "src");
    const dst = join(fs.mount, "r");
    const backup = join(fs.mount, "old");
    await sourceTree(src);
    assert.equal(probeResolution(fs.mount), 1000);
    await t.step("first run copies everything; the oracle finds no difference", async () => {
      const out = await runMain([src, dst, "--backup-dir", backup]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /3 copied/);
      await assertMirror(src, dst, { mtimeResolutionMs: 1000 });
    });
    await t.step("second run changes nothing, backs nothing up", async () => {
      const out = await runMain([src, dst, "--backup-dir", backup]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /Sync done: 0 created, 0 copied, 0 updated, 0 linked, 0 attrs, 0 removed, 0 backed up/);
      await assert.rejects(Deno.stat(backup));
      await assertMirror(src, dst, { mtimeResolutionMs: 1000 });
    });
    await t.step("verify and a dry run agree: identical", async () => {
      const verify = await runMain(["verify", src, dst]);
      assert.equal(verify.code, 0, verify.stderr);
      assert.match(verify.stdout, /Verify: identical/);
      const dry = await runMain([src, dst, "-n"]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.doesNotMatch(dry.stdout, /would/);
    });
    await t.step("a change a second later is still copied", async () => {
      const file = join(src, "d/b.txt");
      await Deno.writeTextFile(file, "BRAVO");
      const old = (await Deno.stat(join(dst, "d/b.txt"))).mtime!.getTime();
      await Deno.utime(file, new Date(old + 1500), new Date(old + 1500));
      const out = await runMain([src, dst]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /update d\/b\.txt/);
      await assertMirror(src, dst, { mtimeResolutionMs: 1000 });
    });
  },
});

Deno.test({
  name: "main.ts --modify-window treats mtimes within the window as equal, as rsync's does",
  async fn() {
    await using dir = await tempDir();
    const src = join(dir.path, "src");
    const dst = join(dir.path, "dst");
    await writeTree(src, { "a.txt": "alpha" });
    await writeTree(dst, { "a.txt": "alpha" });
    await Deno.utime(join(src, "a.txt"), new Date(1_700_000_000_000), new Date(1_700_000_000_000));
    await Deno.utime(join(dst, "a.txt"), new Date(1_700_000_001_500), new Date(1_700_000_001_500));
    const inside = await runMain([src, dst, "-n", "--modify-window", "2"]);
    assert.equal(inside.code, 0, inside.stderr);
    assert.doesNotMatch(inside.stdout, /would update/);
    const outside = await runMain([src, dst, "-n", "--modify-window", "1"]);
    assert.match(outside.stdout, /would update a\.txt/);
    for (const bad of ["-1", "x", "1e3", "100000", ""]) {
      const out = await runMain([src, dst, `--modify-window=${bad}`]);
      assert.equal(out.code, 2, `${bad}: ${out.stderr}`);
      assert.match(out.stderr, /Modify window must be a number of seconds/);
    }
  },
});

Deno.test({
  name: "main.ts refuses a replica that is a folder of the source under another path (bind mounts), exit 2",
  ignore: !CAN_MOUNT,
  async fn(t) {
    await using dir = await tempDir();
    const src = join(dir.path, "src");
    await writeTree(src, { "a.txt": "alpha", sub: { "x.txt": "keep me", deep: { "y.txt": "me too" } }, z: {} });
    const before = await snapshot(src);
    const check = async (args: string[], pattern: RegExp) => {
      const out = await runMain(args);
      assert.equal(out.code, 2, out.stderr);
      assert.match(out.stderr, pattern);
      assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
      assert.deepEqual(await snapshot(src), before);
    };
    await t.step("the replica is a source folder mounted again (the walk finds it)", async () => {
      const mnt = join(dir.path, "mnt");
      await using _ = await bind(join(src, "sub"), mnt);
      await check([src, mnt], /Replica is inside the source: .* is the same folder as '.*\/src\/sub'/);
      await check([src, mnt, "--dry-run"], /Replica is inside the source/);
      await check(["verify", src, mnt], /Replica is inside the source/);
      await check([mnt, src], /Source is inside the replica: .* is the same folder as '.*\/src\/sub'/);
    });
    await t.step("a deeper folder, and the source's parent mounted again (found before the walk)", async () => {
      const mnt = join(dir.path, "mnt2");
      await using _ = await bind(join(src, "sub", "deep"), mnt);
      await check([src, mnt], /Replica is inside the source: .*'.*\/src\/sub\/deep'/);
      const top = join(dir.path, "top");
      await using __ = await bind(dir.path, top);
      await check([src, join(top, "src", "z", "r")], /Replica is inside the source/);
      await check([src, join(top, "src")], /Replica is the source/);
      await check([join(top, "src", "z"), src], /Source is inside the replica/);
    });
    await t.step("a backup folder that is a source folder mounted again", async () => {
      const mnt = join(dir.path, "mnt3");
      await using _ = await bind(join(src, "sub"), mnt);
      const dst = join(dir.path, "dst");
      await check([src, dst, "--backup-dir", mnt], /Backup directory is inside the source/);
      await Deno.remove(dst, { recursive: true }).catch(() => {});
    });
  },
});

Deno.test({
  name: "runOnce() walks the source's folders before the first part it applies while the walk goes on",
  ignore: !CAN_MOUNT,
  async fn() {
    await using dir = await tempDir();
    const src = join(dir.path, "src");
    // "zz/deep" is listed last: the walk applies its first part before it gets there.
    const spec: Record<string, string | Record<string, Record<string, string>>> = {
      zz: { deep: { "x.txt": "keep me" } },
    };
    for (let i = 0; i < 40; i++) spec[`f${i}`] = `file ${i}`;
    await writeTree(src, spec);
    const mnt = join(dir.path, "mnt");
    await using _ = await bind(join(src, "zz", "deep"), mnt);
    const before = await snapshot(src);
    await assert.rejects(
      runLocal({ source: src, replica: mnt }, { partActions: 4 }),
      /Replica is inside the source: .* is the same folder as '.*\/src\/zz\/deep'/,
    );
    assert.deepEqual(await snapshot(src), before);
  },
});

Deno.test({
  name: "main.ts says it was the backup copy that failed when the backup folder's disk is full",
  ignore: !CAN_MOUNT,
  async fn() {
    await using dir = await tempDir();
    const src = join(dir.path, "src");
    const dst = join(dir.path, "dst");
    const bak = join(dir.path, "bak");
    await writeTree(src, { "big.bin": new Uint8Array(256 * 1024).fill(7) });
    assert.equal((await runMain([src, dst])).code, 0);
    await Deno.mkdir(bak);
    await run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", bak);
    try {
      await Deno.writeFile(join(src, "big.bin"), new Uint8Array(256 * 1024).fill(9));
      const out = await runMain([src, dst, "--backup-dir", bak]);
      assert.equal(out.code, 1, out.stdout + out.stderr);
      assert.match(
        out.stderr,
        /big\.bin: Backup copy failed, the replica entry is kept: '.*\/bak\/big\.bin': .*No space left/,
      );
      assert.equal((await Deno.readFile(join(dst, "big.bin")))[0], 7, "the old version stays in place");
    } finally {
      await run("umount", bak);
    }
  },
});
