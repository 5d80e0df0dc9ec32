/**
 * Restores and pulls from S3 end to end through main.ts, against the real radosgw (see
 * tests/remote_env.ts): a tree pushed into a bucket and restored, judged by rsync against the
 * original; a bucket rclone wrote, pulled; the options that keep their meaning with a bucket as
 * the source (--dry-run, --checksum, verify, the empty-source guard); bad input; a no-op that
 * reads no object; a connection cut mid-download. Requests are counted by a proxy of their own,
 * not by foldersync's bookkeeping.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { mirrorDiff, runMain, snapshot, summaryCounts, tempDir, tempsUnder, writeTree } from "./helpers.ts";
import {
  chownTo,
  rclone,
  remoteTest,
  s3Bucket,
  s3Client,
  s3Env,
  s3Server,
  sftpArgs,
  sftpFolder,
  sftpServer,
} from "./remote_env.ts";
import { countingProxy, cuttingProxy, type SeenRequest } from "./proxy.ts";

/** What a run with a bucket may use: the network, ~/.aws and the cache folder, the AWS variables. */
const PERMISSIONS = ["--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-sys"];

const MIB = 1024 * 1024;

/** The tree pushed and restored: every kind, modes, sub-second mtimes, a file uploaded in parts. */
async function writeSource(root: string): Promise<Uint8Array> {
  await writeTree(root, {
    "a.txt": "alpha",
    "run.sh": "#!/bin/sh\necho hi\n",
    docs: { "b.md": "bravo", deep: { "c.txt": "charlie" } },
    empty: {},
    "link-to-a": { link: "a.txt" },
    "dangling": { link: "nowhere/at/all" },
    "name with spaces & ü.txt": "unicode",
  });
  const big = bigBytes(20 * MIB + 5);
  await Deno.writeFile(join(root, "docs/big.bin"), big);
  await Deno.chmod(join(root, "run.sh"), 0o755);
  await Deno.chmod(join(root, "a.txt"), 0o600);
  await Deno.chmod(join(root, "docs"), 0o750);
  await Deno.utime(join(root, "a.txt"), new Date(1_700_000_000_123), new Date(1_700_000_000_789));
  await Deno.utime(join(root, "docs/deep"), new Date(1_600_000_000_000), new Date(1_600_000_000_250));
  return big;
}

/** Bytes that do not repeat within 64 KiB. */
function bigBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  crypto.getRandomValues(out.subarray(0, 65536));
  for (let at = 65536; at < size; at += 65536) out.copyWithin(at, 0, Math.min(65536, size - at));
  for (let at = 0; at < size; at += 4096) out[at] = (at / 4096) & 0xff;
  return out;
}

/** The GETs of an object's content among `requests` (not a LIST, not the lock). */
function objectReads(requests: readonly SeenRequest[]): string[] {
  return requests
    .filter((r) => r.method === "GET" && !/[?&](list-type|uploads)/.test(r.target))
    .filter((r) => !r.target.includes(".foldersync.lock"))
    .map((r) => r.target);
}

remoteTest(
  "restore from S3: local -> S3 -> local is exact by rsync; a no-op reads nothing; dry run, --checksum and verify",
  "s3",
  s3Server,
  async (server, t) => {
    await using src = await tempDir();
    await using restored = await tempDir();
    await using cache = await tempDir();
    await using bucket = await s3Bucket(server);
    await writeSource(src.path);
    const env = s3Env(server);
    const url = `${bucket.url}/site`;
    const target = join(restored.path, "site");
    // Every run through one counting proxy: one endpoint, so one metadata cache.
    await using proxy = countingProxy(server.endpoint);
    const main = (args: string[], cacheDir = cache.path) =>
      runMain([...args, "--s3-endpoint", proxy.endpoint, "--cache-dir", cacheDir], { permissions: PERMISSIONS, env });
    const push = await main([src.path, url]);
    assert.equal(push.code, 0, push.stderr + push.stdout);

    await t.step("the first restore brings back bytes, mtimes, modes, links and empty folders", async () => {
      // Another machine's restore: a cache folder of its own.
      await using fresh = await tempDir();
      const out = await main([url, target], fresh.path);
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.equal(await mirrorDiff(src.path, target), "");
      assert.equal(Deno.readLinkSync(join(target, "dangling")), "nowhere/at/all");
      assert.equal(Deno.lstatSync(join(target, "a.txt")).mtime!.getTime(), 1_700_000_000_789);
      assert.equal(Deno.lstatSync(join(target, "docs/deep")).mtime!.getTime(), 1_600_000_000_250);
    });

    await t.step("a second restore copies nothing and reads no object: one LIST", async () => {
      await main([url, target]); // this machine's cache learns the bucket once
      proxy.requests.length = 0;
      const out = await main([url, target]);
      assert.equal(out.code, 0, out.stderr + out.stdout);
      const c = summaryCounts(out.stdout);
      assert.deepEqual([c.copied, c.updated, c.attrs, c.removed, c.created, c.linked], [0, 0, 0, 0, 0, 0], out.stdout);
      assert.deepEqual(objectReads(proxy.requests), []);
      assert.deepEqual(proxy.requests.map((r) => r.method), ["GET"], "one LIST, for fewer than 1,000 objects");
    });

    await t.step("--dry-run says what it would copy and touches nothing", async () => {
      await Deno.writeTextFile(join(src.path, "a.txt"), "ALPHA, changed");
      await Deno.writeTextFile(join(src.path, "new.txt"), "new");
      assert.equal((await main([src.path, url])).code, 0);
      const before = await snapshot(target);
      const out = await main([url, target, "--dry-run"]);
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.match(out.stdout, /a\.txt/);
      assert.match(out.stdout, /new\.txt/);
      assert.deepEqual(await snapshot(target), before);
      const real = await main([url, target]);
      assert.equal(real.code, 0, real.stderr + real.stdout);
      assert.equal(await mirrorDiff(src.path, target), "");
    });

    await t.step("--checksum compares the local MD5s with the bucket's ETags: one changed file is read", async () => {
      // Same size, same mtime, other bytes: only content tells.
      const path = join(target, "docs/b.md");
      const info = Deno.lstatSync(path);
      await Deno.writeTextFile(path, "BRAVO");
      await Deno.utime(path, info.atime!, info.mtime!);
      const plain = await main([url, target]);
      assert.equal(summaryCounts(plain.stdout).updated, 0, plain.stdout);
      proxy.requests.length = 0;
      const out = await main([url, target, "--checksum"]);
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.equal(summaryCounts(out.stdout).updated, 1, out.stdout);
      assert.deepEqual(objectReads(proxy.requests), [`/${bucket.name}/site/docs/b.md`], "the big file's MD5 is known");
      assert.equal(await mirrorDiff(src.path, target), "");
    });

    await t.step("verify compares the bucket with the folder: identical, then one difference", async () => {
      const same = await main(["verify", url, target]);
      assert.equal(same.code, 0, same.stderr + same.stdout);
      assert.match(same.stdout + same.stderr, /identical/);
      await Deno.writeTextFile(join(target, "run.sh"), "#!/bin/sh\necho other\n");
      const differs = await main(["verify", url, target]);
      assert.equal(differs.code, 1, differs.stderr + differs.stdout);
      assert.match(differs.stdout + differs.stderr, /run\.sh/);
    });
  },
);

remoteTest(
  "pull a bucket rclone wrote: bytes and mtimes by rsync, modes 0644 and 0755 where rclone kept none",
  "s3",
  s3Server,
  async (server) => {
    await using src = await tempDir();
    await using pulled = await tempDir();
    await using cache = await tempDir();
    await using bucket = await s3Bucket(server);
    await writeSource(src.path);
    await rclone(server, ["copy", "--links", src.path, `fss3:${bucket.name}/r`]);
    const env = s3Env(server);
    const args = [`${bucket.url}/r`, pulled.path, "--cache-dir", cache.path];
    const out = await runMain(args, { permissions: PERMISSIONS, env });
    assert.equal(out.code, 0, out.stderr + out.stdout);
    // rclone keeps no modes, no directory times and no empty folders in a bucket.
    const rsync = await new Deno.Command("rsync", {
      args: ["-rlt", "-O", "-J", "-c", "--delete", "-n", "-i", "--exclude=/empty", `${src.path}/`, `${pulled.path}/`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const diff = new TextDecoder().decode(rsync.stdout) + new TextDecoder().decode(rsync.stderr);
    assert.equal(rsync.code, 0, diff);
    assert.equal(diff.trim(), "");
    /** Each file's and folder's mode, against what the copy of an unknown mode gets. */
    const modes = (rel = ""): Array<{ path: string; mode: string; expected: string }> => {
      const found: Array<{ path: string; mode: string; expected: string }> = [];
      for (const entry of Deno.readDirSync(join(pulled.path, rel))) {
        const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
        const mode = (Deno.lstatSync(join(pulled.path, path)).mode! & 0o7777).toString(8);
        if (entry.isDirectory) found.push({ path, mode, expected: "755" }, ...modes(path));
        else if (entry.isFile) found.push({ path, mode, expected: "644" });
      }
      return found;
    };
    const all = modes();
    assert.ok(all.length >= 8, `${all.length} entries`);
    for (const { path, mode, expected } of all) assert.equal(mode, expected, path);
    const again = await runMain(args, { permissions: PERMISSIONS, env });
    assert.equal(again.code, 0, again.stderr + again.stdout);
    const c = summaryCounts(again.stdout);
    assert.deepEqual(
      [c.copied, c.updated, c.attrs],
      [0, 0, 0],
      `unknown modes and times are no difference: ${again.stdout}`,
    );
  },
);

remoteTest(
  "restore from S3: an empty prefix never empties a full folder (exit 3); a missing prefix or bucket is exit 2",
  "s3",
  s3Server,
  async (server, t) => {
    await using local = await tempDir();
    await using cache = await tempDir();
    await using bucket = await s3Bucket(server);
    await writeTree(local.path, { "keep.txt": "keep", sub: { "more.txt": "more" } });
    const env = s3Env(server);
    const main = (args: string[]) => runMain([...args, "--cache-dir", cache.path], { permissions: PERMISSIONS, env });
    const s3 = s3Client(server, bucket.name);
    const before = await snapshot(local.path);

    await t.step("a prefix of empty folders (markers) against a full folder: exit 3, nothing touched", async () => {
      await s3.put("empty/", new Uint8Array(0));
      await s3.put("empty/sub/", new Uint8Array(0));
      const out = await main([`${bucket.url}/empty`, local.path]);
      assert.equal(out.code, 3, out.stderr + out.stdout);
      assert.match(out.stderr + out.stdout, /Source has no files|Source is empty/);
      assert.deepEqual(await snapshot(local.path), before);
    });

    await t.step("a prefix without objects: exit 2, one line, nothing touched", async () => {
      const out = await main([`${bucket.url}/no/such/prefix`, local.path]);
      assert.equal(out.code, 2, out.stderr + out.stdout);
      assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
      assert.match(out.stderr, /Source does not exist: 's3:\/\/[^']+\/no\/such\/prefix'/);
      assert.deepEqual(await snapshot(local.path), before);
      const missing = join(local.path, "not-made");
      const none = await main([`${bucket.url}/no/such/prefix`, missing]);
      assert.equal(none.code, 2, none.stderr + none.stdout);
      assert.equal(await Deno.lstat(missing).catch(() => undefined), undefined, "the replica folder is not made");
    });

    await t.step("a bucket that does not exist: exit 2, one line", async () => {
      const out = await main(["s3://no-such-bucket-here/x", local.path]);
      assert.equal(out.code, 2, out.stderr + out.stdout);
      assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
      assert.match(out.stderr, /Bucket does not exist: 'no-such-bucket-here'/);
      assert.deepEqual(await snapshot(local.path), before);
    });
  },
);

remoteTest(
  "restore from S3: a connection cut mid-download is exit 1, the old file or the new one, no temp file; the next run completes",
  "s3",
  s3Server,
  async (server) => {
    await using src = await tempDir();
    await using local = await tempDir();
    await using cache = await tempDir();
    await using bucket = await s3Bucket(server);
    const old = bigBytes(24 * MIB);
    await Deno.writeFile(join(src.path, "big.bin"), old);
    await Deno.writeTextFile(join(src.path, "small.txt"), "small");
    const env = s3Env(server);
    const main = (args: string[]) => runMain([...args, "--cache-dir", cache.path], { permissions: PERMISSIONS, env });
    const url = `${bucket.url}/c`;
    assert.equal((await main([src.path, url])).code, 0);
    assert.equal((await main([url, local.path])).code, 0);
    // A new version in the bucket, the old one here.
    const next = bigBytes(24 * MIB);
    await Deno.writeFile(join(src.path, "big.bin"), next);
    assert.equal((await main([src.path, url])).code, 0);
    {
      await using proxy = cuttingProxy(server.endpoint, 6 * MIB);
      const out = await main([url, local.path, "--s3-endpoint", proxy.endpoint]);
      assert.equal(out.code, 1, out.stderr + out.stdout);
      assert.match(out.stdout + out.stderr, /lost/i);
      assert.doesNotMatch(out.stderr, /^\s+at /m, "no stack trace");
    }
    const now = await Deno.readFile(join(local.path, "big.bin"));
    assert.ok(
      now.length === old.length && (now.every((b, i) => b === old[i]) || now.every((b, i) => b === next[i])),
      "the old file or the new one at the final name",
    );
    assert.deepEqual(await tempsUnder(local.path), []);
    const again = await main([url, local.path]);
    assert.equal(again.code, 0, again.stderr + again.stdout);
    assert.equal(await mirrorDiff(src.path, local.path), "");
  },
);

remoteTest(
  "server to bucket and back: sftp -> s3 streamed through this machine (MD5 on the way), s3 -> sftp, judged by rclone and rsync",
  "s3",
  s3Server,
  async (s3server) => {
    const server = await sftpServer();
    if (!server) {
      throw new Error("The SFTP test server is not running (start them with: sudo bash tests/servers/up.sh start)");
    }
    await using from = await sftpFolder(server, "to-s3-");
    await using back = await sftpFolder(server, "from-s3-");
    await using cache = await tempDir();
    await using bucket = await s3Bucket(s3server);
    await writeSource(from.path);
    await chownTo(server, from.path);
    const sftp = sftpArgs(server);
    await using proxy = countingProxy(s3server.endpoint);
    const main = (args: string[]) =>
      runMain([...args, ...sftp, "--cache-dir", cache.path, "--s3-endpoint", proxy.endpoint], {
        permissions: [...PERMISSIONS, "--allow-run=ssh"],
        env: s3Env(s3server),
      });
    const url = `${bucket.url}/from-sftp`;
    const up = await main([from.url, url]);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    await rclone(s3server, ["check", "--links", from.path, `fss3:${bucket.name}/from-sftp`]);
    const s3 = s3Client(s3server, bucket.name);
    assert.match((await s3.head("from-sftp/docs/big.bin"))!.etag, /-\d+$/, "uploaded in parts");
    // The MD5 computed on the way is remembered: --checksum reads the server's files, not the bucket's.
    proxy.requests.length = 0;
    const verified = await main(["verify", from.url, url, "--checksum"]);
    assert.equal(verified.code, 0, verified.stderr + verified.stdout);
    assert.deepEqual(objectReads(proxy.requests), []);
    const down = await main([url, back.url]);
    assert.equal(down.code, 0, down.stderr + down.stdout);
    assert.equal(await mirrorDiff(from.path, back.path), "");
    const again = await main([url, back.url]);
    const c = summaryCounts(again.stdout);
    assert.deepEqual([c.copied, c.updated, c.attrs], [0, 0, 0], again.stdout);
  },
);

remoteTest(
  "restore from S3: a no-op over a tree whose root holds only folders lists the bucket once (the guard reads the listing again)",
  "s3",
  s3Server,
  async (server) => {
    await using src = await tempDir();
    await using local = await tempDir();
    await using cache = await tempDir();
    await using bucket = await s3Bucket(server);
    await writeTree(src.path, { d1: { "f.txt": "f" }, d2: { deeper: { "g.txt": "g" } } });
    await using proxy = countingProxy(server.endpoint);
    const main = (args: string[]) =>
      runMain([...args, "--s3-endpoint", proxy.endpoint, "--cache-dir", cache.path], {
        permissions: PERMISSIONS,
        env: s3Env(server),
      });
    const url = `${bucket.url}/folders`;
    assert.equal((await main([src.path, url])).code, 0);
    assert.equal((await main([url, local.path])).code, 0);
    assert.equal(await mirrorDiff(src.path, local.path), "");
    proxy.requests.length = 0;
    const out = await main([url, local.path]);
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.deepEqual(proxy.requests.map((r) => r.method), ["GET"], "one LIST");
  },
);
