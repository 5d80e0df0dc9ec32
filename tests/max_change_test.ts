/**
 * `--max-change`: a cap on mass overwrites, all or nothing, as `--max-delete` is on removals,
 * through main.ts on real trees and into the test servers' SFTP folder and S3 bucket.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { HeldPlan, isOverwrite } from "../lib/engine/gate.ts";
import { emptyPlan } from "../lib/model/actions.ts";
import { assertMirror, mirrorDiff, runMain, snapshot, tempDir, writeTree } from "./helpers.ts";
import { rclone, remoteTest, s3Bucket, s3Env, type S3Server, s3Server, sftpFolder, sftpServer } from "./remote_env.ts";

/** What a remote run may use (ssh, the network, the variables, the host name). */
const REMOTE = ["--allow-read", "--allow-write", "--allow-net", "--allow-run=ssh", "--allow-env", "--allow-sys"];

/** A source of `count` files and a replica in sync with it. */
async function synced(
  dir: string,
  count: number,
  target = join(dir, "dst"),
  extra: string[] = [],
  how: Parameters<typeof runMain>[1] = {},
) {
  const src = join(dir, "src");
  const files: Record<string, string> = {};
  for (let i = 0; i < count; i++) files[`f${String(i).padStart(2, "0")}.txt`] = `version 1 of ${i}`;
  await writeTree(src, files);
  const first = await runMain([src, target, ...extra], how);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  return src;
}

/** Rewrites every file of `src` (same names, new content), as ransomware or a bad `sed -i` would. */
async function rewriteAll(src: string): Promise<void> {
  for (const entry of Deno.readDirSync(src)) {
    if (entry.isFile) await Deno.writeTextFile(join(src, entry.name), `ENCRYPTED ${entry.name} !!`);
  }
}

Deno.test("HeldPlan with overwrites holds updates and relinks, and isOverwrite() names them", () => {
  const held = new HeldPlan({ overwrites: true });
  const part = emptyPlan();
  part.transfers.push(
    { op: "update", path: "a", size: 1, mtimeMs: 1, mode: 0o644, reason: "size" },
    { op: "copy", path: "b", size: 1, mtimeMs: 1, mode: 0o644 },
    { op: "link", path: "c", target: "x", mtimeMs: 1, replace: "symlink" },
    { op: "attrs", path: "d", kind: "file", mtimeMs: 2, mode: 0o600, reason: "mode" },
  );
  const now = held.split(part);
  assert.deepEqual(now.transfers.map((t) => t.path), ["b", "d"]);
  assert.deepEqual(held.release().transfers.filter(isOverwrite).map((t) => t.path), ["a", "c"]);
  // Without --max-change an update goes at once; a relink replaces a link, and waits as removals do.
  assert.deepEqual(new HeldPlan().split(part).transfers.map((t) => t.path), ["a", "b", "d"]);
});

Deno.test("main.ts --max-change: a source rewritten whole changes nothing in the replica, exit 5", async (t) => {
  await using tmp = await tempDir();
  const dst = join(tmp.path, "dst");
  const src = await synced(tmp.path, 10);
  const before = await snapshot(dst);
  await rewriteAll(src);
  await writeTree(src, { "new.txt": "a new file", more: { "deep.txt": "also new" } });
  await Deno.remove(join(src, "f09.txt"));

  await t.step("a dry run says it would refuse, and touches nothing", async () => {
    const run = await runMain([src, dst, "--max-change", "50%", "--dry-run"]);
    assert.equal(run.code, 5, run.stdout + run.stderr);
    assert.match(run.stderr, /Would refuse to change 10 entries: more than --max-change 50% \(5 entries\) allows/);
    assert.deepEqual(await snapshot(dst), before);
  });
  await t.step("over the cap: no file of the replica is overwritten or removed, new ones are copied", async () => {
    const run = await runMain([src, dst, "--max-change", "50%"]);
    assert.equal(run.code, 5, run.stdout + run.stderr);
    const errors = run.stderr.split("\n").filter((line) => / ERROR /.test(line));
    assert.equal(errors.length, 1, run.stderr);
    assert.match(
      errors[0]!,
      /Refusing to change 10 entries: more than --max-change 50% \(5 entries\) allows; nothing was changed or removed in the replica, new entries were synced/,
    );
    assert.match(
      run.stderr,
      /Sync done: 1 created, 2 copied, 0 updated, .* 0 removed, .* 10 changes refused by --max-change/,
    );
    for (let i = 0; i < 10; i++) {
      const name = `f${String(i).padStart(2, "0")}.txt`;
      assert.equal(await Deno.readTextFile(join(dst, name)), `version 1 of ${i}`, `${name} kept byte for byte`);
    }
    assert.equal(await Deno.readTextFile(join(dst, "new.txt")), "a new file");
    assert.equal(await Deno.readTextFile(join(dst, "more", "deep.txt")), "also new");
  });
  await t.step("a count cap counts the same way", async () => {
    assert.equal((await runMain([src, dst, "--max-change", "9"])).code, 5);
    const allowed = await runMain([src, dst, "--max-change", "10"]);
    assert.equal(allowed.code, 0, allowed.stderr);
    await assertMirror(src, dst);
  });
  await t.step("bad values are exit 2 with one line", async () => {
    for (const bad of ["lots", "150%", ""]) {
      const run = await runMain([src, dst, `--max-change=${bad}`]);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /Max change must be a number of entries or a percentage/);
    }
    const verify = await runMain(["verify", src, dst, "--max-change", "5"]);
    assert.equal(verify.code, 2);
    assert.match(verify.stderr, /Option not valid with verify: '--max-change'/);
  });
});

Deno.test("main.ts --max-change with --max-delete: each cap judges its own count", async () => {
  await using tmp = await tempDir();
  const dst = join(tmp.path, "dst");
  const src = await synced(tmp.path, 4);
  await Deno.remove(join(src, "f00.txt"));
  await Deno.writeTextFile(join(src, "f01.txt"), "changed");
  // Two changes (one removal, one update): within --max-change 2, over --max-delete 0.
  const run = await runMain([src, dst, "--max-change", "2", "--max-delete", "0"]);
  assert.equal(run.code, 5, run.stderr);
  assert.match(run.stderr, /Refusing to remove 1 entry: more than --max-delete 0 allows/);
  assert.equal(await Deno.readTextFile(join(dst, "f01.txt")), "changed", "the update is within --max-change");
  assert.ok((await Deno.stat(join(dst, "f00.txt"))).isFile, "the removal waits");
});

remoteTest(
  "main.ts --max-change into an SFTP replica: nothing overwritten, new files copied",
  "sftp",
  sftpServer,
  async (server) => {
    await using tmp = await tempDir();
    await using folder = await sftpFolder(server);
    const args = [...folder.args, "--ssh-config", "/dev/null"];
    const how = { permissions: REMOTE };
    const src = await synced(tmp.path, 6, folder.url, args, how);
    await rewriteAll(src);
    await writeTree(src, { "new.txt": "new" });
    const run = await runMain([src, folder.url, ...args, "--max-change", "3"], how);
    assert.equal(run.code, 5, run.stdout + run.stderr);
    assert.match(run.stderr, /Refusing to change 6 entries: more than --max-change 3 allows/);
    assert.equal(await Deno.readTextFile(join(folder.path, "f00.txt")), "version 1 of 0");
    assert.equal(await Deno.readTextFile(join(folder.path, "new.txt")), "new");
    const allowed = await runMain([src, folder.url, ...args], how);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(await mirrorDiff(src, folder.path), "");
  },
);

remoteTest(
  "main.ts --max-change into an S3 replica: nothing overwritten, new files copied",
  "s3",
  s3Server,
  async (server: S3Server) => {
    await using tmp = await tempDir();
    await using bucket = await s3Bucket(server);
    const how = { permissions: REMOTE, env: s3Env(server) };
    const url = `${bucket.url}/site`;
    const src = await synced(tmp.path, 6, url, [], how);
    await rewriteAll(src);
    await writeTree(src, { "new.txt": "new" });
    const run = await runMain([src, url, "--max-change", "50%"], how);
    assert.equal(run.code, 5, run.stdout + run.stderr);
    assert.match(run.stderr, /Refusing to change 6 entries: more than --max-change 50%/);
    assert.equal(await rclone(server, ["cat", `fss3:${bucket.name}/site/f00.txt`]), "version 1 of 0");
    assert.equal(await rclone(server, ["cat", `fss3:${bucket.name}/site/new.txt`]), "new");
  },
);
