/**
 * A bucket prefix pulled into an SFTP folder end to end through main.ts (s3 -> sftp: read from
 * the bucket in ranged GETs, written to the server through temp names), against the real
 * radosgw and sshd (see tests/remote_env.ts). Judged by two oracles that are not foldersync:
 * rsync of the SFTP folder (on this machine) against the local tree that was pushed into the
 * bucket, and rclone check of the bucket against the SFTP folder. The reverse direction,
 * sftp -> s3, is in s3_restore_e2e_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { mirrorDiff, runMain, snapshot, summaryCounts, tempDir, writeTree } from "./helpers.ts";
import {
  rclone,
  remoteTest,
  s3Bucket,
  s3Env,
  type S3Server,
  s3Server,
  sftpArgs,
  sftpFolder,
  sftpServer,
} from "./remote_env.ts";
import { TEMP_PATTERN } from "../lib/model/names.ts";
import { LOCK_NAME } from "../lib/model/lock.ts";

/** What a run between a bucket and an SFTP host may use: the network and ~/.aws, the AWS variables, ssh. */
const PERMISSIONS = ["--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-sys", "--allow-run=ssh"];

const MIB = 1024 * 1024;

/** The tree pushed into the bucket: every kind, modes, sub-second mtimes, odd names, a file read in blocks. */
async function writeSource(root: string): Promise<void> {
  await writeTree(root, {
    "a.txt": "alpha",
    "run.sh": "#!/bin/sh\necho hi\n",
    docs: { "b.md": "bravo", deep: { "c.txt": "charlie" } },
    empty: {},
    "link-to-a": { link: "a.txt" },
    "dangling": { link: "nowhere/at/all" },
    "name with spaces & ü.txt": "unicode",
    "日本 🎉": { "é.txt": "accents" },
  });
  await Deno.writeFile(join(root, "docs/big.bin"), bigBytes(20 * MIB + 5));
  await Deno.chmod(join(root, "run.sh"), 0o755);
  await Deno.chmod(join(root, "a.txt"), 0o600);
  await Deno.chmod(join(root, "docs"), 0o750);
  await Deno.utime(join(root, "a.txt"), new Date(1_700_000_000_123), new Date(1_700_000_000_789));
  await Deno.utime(join(root, "docs/deep"), new Date(1_600_000_000_000), new Date(1_600_000_000_250));
}

/** Bytes that do not repeat within 64 KiB. */
function bigBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  crypto.getRandomValues(out.subarray(0, 65536));
  for (let at = 65536; at < size; at += 65536) out.copyWithin(at, 0, Math.min(65536, size - at));
  for (let at = 0; at < size; at += 4096) out[at] = (at / 4096) & 0xff;
  return out;
}

/** foldersync's own entries left anywhere under `root` (temp files, the lock entry). */
async function leftovers(root: string, rel = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(join(root, rel))) {
    const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
    if (TEMP_PATTERN.test(entry.name) || entry.name === LOCK_NAME) found.push(path);
    if (entry.isDirectory) found.push(...await leftovers(root, path));
  }
  return found;
}

/** rclone check of bucket prefix `remote` against local folder `path`: both ways, links as rclone's `.rclonelink`. */
async function rcloneCheck(server: S3Server, remote: string, path: string): Promise<void> {
  // Throws with rclone's report when anything differs or is on one side only.
  await rclone(server, ["check", "--links", remote, path]);
}

remoteTest(
  "s3 -> sftp: a bucket prefix pulled into an SFTP folder, judged by rsync and rclone; no-op, change and removal, --dry-run",
  "s3",
  s3Server,
  async (s3server, t) => {
    const server = await sftpServer();
    if (!server) {
      throw new Error("The SFTP test server is not running (start them with: sudo bash tests/servers/up.sh start)");
    }
    await using src = await tempDir();
    await using into = await sftpFolder(server, "from-s3-");
    await using cache = await tempDir();
    await using bucket = await s3Bucket(s3server);
    await writeSource(src.path);
    const sftp = sftpArgs(server);
    const run = (args: string[]) =>
      runMain([...args, "--cache-dir", cache.path], { permissions: PERMISSIONS, env: s3Env(s3server) });
    /** A pull into the SFTP folder (the ssh options are refused without an SFTP side). */
    const main = (args: string[]) => run([...args, ...sftp]);
    const url = `${bucket.url}/site`;
    const remote = `fss3:${bucket.name}/site`;
    const push = await run([src.path, url]);
    assert.equal(push.code, 0, push.stderr + push.stdout);
    await rcloneCheck(s3server, remote, src.path);

    await t.step("the first pull brings bytes, whole-second mtimes, modes, links and empty folders", async () => {
      const out = await main([url, into.url]);
      assert.equal(out.code, 0, out.stderr + out.stdout);
      const c = summaryCounts(out.stdout);
      assert.deepEqual([c.created, c.copied, c.linked, c.errors], [4, 7, 2, 0], out.stdout);
      assert.equal(await mirrorDiff(src.path, into.path), "");
      await rcloneCheck(s3server, remote, into.path);
      assert.deepEqual(await leftovers(into.path), []);
      assert.equal(Deno.readLinkSync(join(into.path, "dangling")), "nowhere/at/all");
      assert.equal(Deno.lstatSync(join(into.path, "empty")).isDirectory, true);
      assert.equal(Deno.lstatSync(join(into.path, "docs")).mode! & 0o7777, 0o750);
      // SFTP carries whole seconds.
      assert.equal(Deno.lstatSync(join(into.path, "a.txt")).mtime!.getTime(), 1_700_000_000_000);
      assert.equal(Deno.lstatSync(join(into.path, "docs/deep")).mtime!.getTime(), 1_600_000_000_000);
    });

    await t.step("a second pull changes nothing", async () => {
      const before = await snapshot(into.path);
      const out = await main([url, into.url]);
      assert.equal(out.code, 0, out.stderr + out.stdout);
      const c = summaryCounts(out.stdout);
      assert.deepEqual([c.created, c.copied, c.updated, c.linked, c.attrs, c.removed], [0, 0, 0, 0, 0, 0], out.stdout);
      assert.deepEqual(await snapshot(into.path), before);
    });

    await t.step("a change and removals in the bucket: --dry-run says them and touches nothing", async () => {
      await Deno.writeTextFile(join(src.path, "a.txt"), "ALPHA, changed");
      await Deno.remove(join(src.path, "docs/deep"), { recursive: true });
      await Deno.remove(join(src.path, "run.sh"));
      await Deno.remove(join(src.path, "link-to-a"));
      await Deno.writeTextFile(join(src.path, "日本 🎉/new.txt"), "new");
      const pushed = await run([src.path, url]);
      assert.equal(pushed.code, 0, pushed.stderr + pushed.stdout);
      await rcloneCheck(s3server, remote, src.path);
      const before = await snapshot(into.path);
      const dry = await main([url, into.url, "--dry-run"]);
      assert.equal(dry.code, 0, dry.stderr + dry.stdout);
      assert.match(dry.stdout, /would update.*a\.txt/);
      assert.match(dry.stdout, /would copy.*日本 🎉\/new\.txt/);
      assert.match(dry.stdout, /would remove.*docs\/deep\/c\.txt/);
      assert.match(dry.stdout, /would remove.*run\.sh/);
      assert.match(dry.stdout, /would remove.*link-to-a/);
      assert.deepEqual(await snapshot(into.path), before, "the dry run touched the SFTP folder");
    });

    await t.step("the run then mirrors them: exact by rsync and rclone", async () => {
      const out = await main([url, into.url]);
      assert.equal(out.code, 0, out.stderr + out.stdout);
      const c = summaryCounts(out.stdout);
      // Removed: docs/deep/c.txt, docs/deep, run.sh, link-to-a.
      assert.deepEqual([c.copied, c.updated, c.removed, c.errors], [1, 1, 4, 0], out.stdout);
      assert.equal(await mirrorDiff(src.path, into.path), "");
      await rcloneCheck(s3server, remote, into.path);
      assert.deepEqual(await leftovers(into.path), []);
      const again = await main([url, into.url]);
      const n = summaryCounts(again.stdout);
      assert.deepEqual([n.copied, n.updated, n.attrs, n.removed], [0, 0, 0, 0], again.stdout);
    });

    await t.step("a prefix that does not exist: exit 2, one line, the SFTP folder untouched", async () => {
      const before = await snapshot(into.path);
      const out = await main([`${bucket.url}/no/such/prefix`, into.url]);
      assert.equal(out.code, 2, out.stderr + out.stdout);
      assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
      assert.match(out.stderr, /Source does not exist: 's3:\/\/[^']+\/no\/such\/prefix'/);
      assert.deepEqual(await snapshot(into.path), before);
    });
  },
);
