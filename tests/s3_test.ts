/**
 * The S3 replica against a real Ceph radosgw, with rclone as the independent oracle.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { rclone, remoteTest, s3Bucket, s3Client, type S3Server, s3Server, useS3Server } from "./remote_env.ts";
import { openS3Replica, parseMode, parseMtime, type S3Tuning } from "../lib/backend/s3/s3_replica.ts";
import { MetaCache } from "../lib/backend/s3/meta_cache.ts";
import type { ListedObject } from "../lib/backend/s3/client.ts";
import { LOCK_NAME } from "../lib/model/lock.ts";
import { JOURNAL_NAME, parseJournal } from "../lib/backend/backup_journal.ts";
import { type Backend, type BackendOptions } from "../lib/backend/backend.ts";
import { readingFrom, type TestBackend } from "./helpers.ts";
import { type Entry, ListingBatch, UNKNOWN_MODE } from "../lib/model/listing.ts";
import { attrsDiffer, decide } from "../lib/engine/decide.ts";
import { getHasher } from "../lib/content/hash.ts";
import { compileFilter } from "../lib/engine/filter_compile.ts";
import { ConnectionLostError, LockedError, UsageError } from "../lib/model/errors.ts";

/**
 * Runs `fn` with no keys in the environment, HOME at `home` and AWS_PROFILE `profile`, so that
 * credentials come from that profile alone; then puts HOME and the server's keys back.
 */
async function withProfile(server: S3Server, home: string, profile: string, fn: () => Promise<void>): Promise<void> {
  useS3Server(server);
  const saved = Deno.env.get("HOME")!;
  Deno.env.delete("AWS_ACCESS_KEY_ID");
  Deno.env.delete("AWS_SECRET_ACCESS_KEY");
  Deno.env.set("HOME", home);
  Deno.env.set("AWS_PROFILE", profile);
  try {
    await fn();
  } finally {
    Deno.env.set("HOME", saved);
    useS3Server(server);
  }
}

type Opened = TestBackend & AsyncDisposable & { requests: number };

async function open(
  bucket: string,
  prefix: string,
  source: string,
  options: Partial<BackendOptions> = {},
  tuning: S3Tuning = {},
): Promise<Opened> {
  const display = `s3://${bucket}${prefix ? `/${prefix}` : ""}`;
  const replica = await openS3Replica({ kind: "s3", bucket, prefix, display }, {
    jobs: 4,
    readOnly: false,
    ...options,
  }, tuning);
  return Object.assign(readingFrom(replica, source), { [Symbol.asyncDispose]: () => replica.close() }) as Opened;
}

/** Every entry of the replica, walked from the root: path to entry. */
async function walk(replica: Backend, filter?: string[]): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const options = { fixPermissions: false, filter: filter ? compileFilter({ patterns: filter }) : undefined };
  const dirs = [""];
  while (dirs.length > 0) {
    const dir = dirs.shift()!;
    const batch = await replica.list(dir, options);
    assert.equal(batch.flags[0], 0, `flags of '${dir}'`);
    assert.deepEqual(batch.problems, []);
    const names = batch.names.slice();
    assert.deepEqual(names, [...names].sort(), `'${dir}' sorted by UTF-16`);
    for (let i = 0; i < names.length; i++) {
      const path = dir === "" ? names[i]! : `${dir}/${names[i]}`;
      const entry = batch.entry(i);
      out.set(path, entry);
      if (entry.kind === "dir") dirs.push(path);
    }
  }
  return out;
}

async function tempTree(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "fs-s3-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}) };
}

/** One item of `rclone lsjson --metadata --hash`. */
interface LsItem {
  Path: string;
  Size: number;
  ModTime: string;
  Metadata: Record<string, string>;
  Hashes: Record<string, string>;
}

async function lsjson(server: S3Server, path: string, extra: string[] = []): Promise<Map<string, LsItem>> {
  const items: LsItem[] = JSON.parse(
    await rclone(server, ["lsjson", "-R", "--metadata", ...extra, `fss3:${path}`]),
  );
  return new Map(items.map((item) => [item.Path, item]));
}

const MIB = 1024 * 1024;

remoteTest(
  "S3 replica lists what rclone uploaded: nested dirs, links, metadata, UTF-16 order, filter",
  "s3",
  s3Server,
  async (server) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    const src = srcDir.path;
    await Deno.mkdir(join(src, "a/b"), { recursive: true });
    await Deno.writeTextFile(join(src, "a/b/deep.txt"), "deep");
    await Deno.writeTextFile(join(src, "top.txt"), "top");
    await Deno.chmod(join(src, "top.txt"), 0o640);
    await Deno.utime(join(src, "top.txt"), 1_700_000_000, new Date(1_700_000_000_123));
    // UTF-8 byte order (S3's) puts U+FF5A before U+1F600; UTF-16 order puts it after.
    for (const name of ["é", "ｚ", "😀", "skip.tmp"]) await Deno.writeTextFile(join(src, name), name);
    await Deno.symlink("../top.txt", join(src, "a/link"));
    await rclone(server, ["copy", "--links", "--metadata", src, `fss3:${bucket.name}/tree`]);
    await s3Client(server, bucket.name).put("tree/empty/", new Uint8Array(0));

    await using replica = await open(bucket.name, "tree", src);
    const entries = await walk(replica, ["*.tmp"]);
    assert.deepEqual([...entries.keys()], ["a", "empty", "top.txt", "é", "😀", "ｚ", "a/b", "a/link", "a/b/deep.txt"]);
    const top = entries.get("top.txt")!;
    assert.equal(top.kind, "file");
    assert.equal(top.size, 3);
    assert.equal(top.mtimeMs, 1_700_000_000_123);
    assert.equal(top.mode, 0o640);
    const link = entries.get("a/link")!;
    assert.equal(link.kind, "symlink");
    assert.equal(link.target, "../top.txt");
    assert.equal(link.mtimeMs, (await Deno.lstat(join(src, "a/link"))).mtime!.getTime());
    assert.equal(entries.get("empty")!.kind, "dir");
    assert.deepEqual((await replica.root())?.kind, "dir");
    assert.equal(await replica.digest!("top.txt", "md5"), createHash("md5").update("top").digest("hex"));
  },
);

remoteTest(
  "S3 replica copy() writes rclone's metadata; mkdir, link, setAttrs, remove",
  "s3",
  s3Server,
  async (server, t) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    const src = srcDir.path;
    await Deno.mkdir(join(src, "d"));
    await Deno.writeTextFile(join(src, "d/f.txt"), "hello");
    await Deno.chmod(join(src, "d/f.txt"), 0o600);
    await Deno.utime(join(src, "d/f.txt"), 1_600_000_000, new Date(1_600_000_000_456));
    await Deno.symlink("d/f.txt", join(src, "ln"));
    const mtime = (await Deno.lstat(join(src, "d/f.txt"))).mtime!.getTime();
    await using replica = await open(bucket.name, "p", src);
    assert.equal(await replica.root(), undefined);

    await t.step("copies a file with mtime and mode metadata; rclone check agrees", async () => {
      await replica.createRoot(false);
      await replica.mkdir("d");
      await replica.mkdir("empty");
      const result = await replica.copy({ op: "copy", path: "d/f.txt", size: 5, mtimeMs: mtime, mode: 0o600 });
      assert.deepEqual(result, { size: 5, backedUp: false });
      await replica.link({ op: "link", path: "ln", target: "d/f.txt", mtimeMs: 1_500_000_000_000 });
      const listed = await lsjson(server, `${bucket.name}/p`);
      const file = listed.get("d/f.txt")!;
      assert.equal(file.Size, 5);
      assert.equal(Date.parse(file.ModTime), 1_600_000_000_456);
      assert.equal(file.Metadata.mode, "100600");
      assert.equal(Date.parse(listed.get("ln.rclonelink")!.Metadata.mtime!), 1_500_000_000_000);
      await rclone(server, ["check", "--links", "--exclude", "empty/**", src, `fss3:${bucket.name}/p`]);
    });

    await t.step("rclone copy --links restores the link", async () => {
      await using backDir = await tempTree();
      const back = backDir.path;
      await rclone(server, ["copy", "--links", `fss3:${bucket.name}/p`, back]);
      assert.equal(await Deno.readLink(join(back, "ln")), "d/f.txt");
      assert.equal(await Deno.readTextFile(join(back, "d/f.txt")), "hello");
    });

    await t.step("a fresh replica lists what was written, the empty directory included", async () => {
      await using again = await open(bucket.name, "p", src);
      const entries = await walk(again);
      assert.deepEqual([...entries.keys()], ["d", "empty", "ln", "d/f.txt"]);
      assert.equal(entries.get("d/f.txt")!.mtimeMs, mtime);
      assert.equal(entries.get("ln")!.target, "d/f.txt");
    });

    await t.step("setAttrs() and setDirAttrs() change metadata only", async () => {
      await using again = await open(bucket.name, "p", src);
      await walk(again);
      await again.setAttrs({
        op: "attrs",
        path: "d/f.txt",
        kind: "file",
        mtimeMs: 1_000_000_000_000,
        mode: 0o644,
        reason: "mtime",
      });
      await again.setDirAttrs({ path: "d", mtimeMs: 1_100_000_000_000, mode: 0o750 });
      await again.setDirAttrs({ path: "", mtimeMs: 1_200_000_000_000, mode: 0o705 });
      await using third = await open(bucket.name, "p", src);
      const entries = await walk(third);
      assert.equal(entries.get("d/f.txt")!.mtimeMs, 1_000_000_000_000);
      assert.equal(entries.get("d/f.txt")!.mode, 0o644);
      assert.equal(entries.get("d")!.mtimeMs, 1_100_000_000_000);
      assert.equal(entries.get("d")!.mode, 0o750);
      assert.deepEqual(await third.root(), { kind: "dir", size: 0, mtimeMs: 1_200_000_000_000, mode: 0o705 });
      assert.equal((await lsjson(server, `${bucket.name}/p`)).get("d/f.txt")!.Metadata.mode, "100644");
    });

    await t.step("remove() deletes files, links and directory markers", async () => {
      await using again = await open(bucket.name, "p", src);
      await walk(again);
      assert.equal(await again.remove({ op: "remove", path: "d/f.txt", kind: "file" }), false);
      await again.remove({ op: "remove", path: "d", kind: "dir" });
      await again.remove({ op: "remove", path: "ln", kind: "symlink" });
      await again.remove({ op: "remove", path: "empty", kind: "dir" });
      await using fresh = await open(bucket.name, "p", src);
      assert.deepEqual([...(await walk(fresh)).keys()], []);
    });
  },
);

remoteTest(
  "S3 replica multipart: md5chksum as rclone writes it, progress, abort leaves no upload",
  "s3",
  s3Server,
  async (server, t) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    const src = srcDir.path;
    const data = new Uint8Array(12 * MIB);
    for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
    await Deno.writeFile(join(src, "big.bin"), data);
    const tuning = { multipartThreshold: 5 * MIB, partSize: 5 * MIB, partSlots: 2 };
    const info = await Deno.lstat(join(src, "big.bin"));
    const action = {
      op: "copy",
      path: "big.bin",
      size: data.length,
      mtimeMs: info.mtime!.getTime(),
      mode: 0o644,
    } as const;
    const s3 = s3Client(server, bucket.name);

    await t.step("uploads in parts; rclone sees the MD5 and the mtime", async () => {
      const progress = new BigInt64Array(new SharedArrayBuffer(8));
      await using replica = await open(bucket.name, "m", src, { progress }, tuning);
      let peak = 0n;
      const timer = setInterval(() => peak = progress[0]! > peak ? progress[0]! : peak, 1);
      await replica.copy(action);
      clearInterval(timer);
      assert.equal(progress[0], 0n);
      const listed = await lsjson(server, `${bucket.name}/m`, ["--hash"]);
      const md5 = createHash("md5").update(data).digest("hex");
      assert.equal(listed.get("big.bin")!.Hashes.md5, md5);
      assert.equal(listed.get("big.bin")!.Size, data.length);
      assert.equal(Date.parse(listed.get("big.bin")!.ModTime), action.mtimeMs);
      assert.equal(await replica.digest!("big.bin", "md5"), undefined); // not listed in this replica's snapshot
      await rclone(server, ["check", src, `fss3:${bucket.name}/m`]);
      await using again = await open(bucket.name, "m", src, {}, tuning);
      assert.equal(await again.digest!("big.bin", "md5"), md5);
    });

    await t.step("an aborted upload is aborted on the server, nothing at the key", async () => {
      const progress = new BigInt64Array(new SharedArrayBuffer(8));
      const stop = new AbortController();
      await using replica = await open(bucket.name, "n", src, { progress, signal: stop.signal }, tuning);
      const watch = setInterval(() => progress[0]! > 0n && stop.abort(), 1);
      await assert.rejects(replica.copy(action));
      clearInterval(watch);
      assert.deepEqual(await s3.uploads("n/"), []);
      assert.equal(await s3.head("n/big.bin"), undefined);
    });
  },
);

remoteTest(
  "S3 replica --backup-dir moves removed and overwritten objects aside, names never reused",
  "s3",
  s3Server,
  async (server) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    const src = srcDir.path;
    await Deno.writeTextFile(join(src, "f.txt"), "v1");
    const started = new Date("2026-11-22T20:51:03Z");
    const stat = async () => (await Deno.lstat(join(src, "f.txt"))).mtime!.getTime();
    {
      await using replica = await open(bucket.name, "r", src);
      await replica.copy({ op: "copy", path: "f.txt", size: 2, mtimeMs: await stat(), mode: 0o644 });
    }
    await using replica = await open(bucket.name, "r", src, { backupDir: "old", started });
    assert.equal(replica.protect, "old");
    assert.equal(replica.backsUp, true);
    await walk(replica);
    await Deno.writeTextFile(join(src, "f.txt"), "v2");
    const result = await replica.copy({ op: "update", path: "f.txt", size: 2, mtimeMs: await stat(), mode: 0o644 });
    assert.equal(result.backedUp, true);
    assert.equal(await replica.remove({ op: "remove", path: "f.txt", kind: "file" }), true);
    const listed = await lsjson(server, `${bucket.name}/r`);
    assert.deepEqual([...listed.keys()].sort(), ["old", "old/f.txt", "old/f.txt~2026-11-22T20-51-03"]);
    assert.equal(
      await rclone(server, ["cat", `fss3:${bucket.name}/r/old/f.txt`]) +
        await rclone(server, ["cat", `fss3:${bucket.name}/r/old/f.txt~2026-11-22T20-51-03`]),
      "v1v2",
    );
    await replica.close();
    const journal = await s3Client(server, bucket.name).get(`r/old/${JOURNAL_NAME}`);
    assert.deepEqual(
      parseJournal(new TextDecoder().decode(journal!.body)).map((r) => `${r.kind} ${r.path}`),
      ["file f.txt", "file f.txt~2026-11-22T20-51-03"],
      "close() writes down what the run put aside",
    );
    await assert.rejects(
      open(bucket.name, "r", src, { backupDir: "s3://other-bucket/x" }),
      (e) => e instanceof UsageError && /same bucket|replica's bucket/.test(e.message),
    );
  },
);

remoteTest(
  "S3 replica lock(): exclusive, stale takeover, hidden, released; read-only takes none",
  "s3",
  s3Server,
  async (server, t) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    const src = srcDir.path;
    const s3 = s3Client(server, bucket.name);
    await using a = await open(bucket.name, "l", src);
    await using b = await open(bucket.name, "l", src);

    await t.step("a second run is refused while the first holds it", async () => {
      const held = await a.lock();
      await assert.rejects(b.lock(), LockedError);
      await using fresh = await open(bucket.name, "l", src);
      assert.deepEqual([...(await walk(fresh)).keys()], [], "the lock is not listed");
      await held[Symbol.asyncDispose]();
      assert.equal(await s3.head(`l/${LOCK_NAME}`), undefined);
      await (await b.lock())[Symbol.asyncDispose]();
    });

    await t.step("a lock of a dead process on this host is taken over", async () => {
      const dead = { host: Deno.hostname(), pid: 2 ** 22 + 17, time: Date.now() };
      await s3.put(`l/${LOCK_NAME}`, JSON.stringify(dead));
      // As lib/backend/open.ts says once it holds this host's lock file: no other process here holds the replica.
      await using c = await open(bucket.name, "l", src, { alive: (pid) => pid === Deno.pid });
      const held = await c.lock();
      const now = JSON.parse(new TextDecoder().decode((await s3.get(`l/${LOCK_NAME}`))!.body));
      assert.equal(now.pid, Deno.pid);
      await held[Symbol.asyncDispose]();
    });

    await t.step("of two runs taking over one stale lock at once, one wins", async () => {
      const old = { host: "gone", pid: 1, time: Date.now() - 11 * 60_000 };
      await s3.put(`l/${LOCK_NAME}`, JSON.stringify(old));
      const results = await Promise.allSettled([a.lock(), b.lock()]);
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, JSON.stringify(results));
      const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      assert.ok(lost.reason instanceof LockedError, String(lost.reason));
      const now = JSON.parse(new TextDecoder().decode((await s3.get(`l/${LOCK_NAME}`))!.body));
      assert.equal(now.pid, Deno.pid);
      await (won[0] as PromiseFulfilledResult<AsyncDisposable>).value[Symbol.asyncDispose]();
      assert.equal(await s3.head(`l/${LOCK_NAME}`), undefined, "the winner's release removes it");
    });

    await t.step("a live lock elsewhere is respected", async () => {
      await s3.put(`l/${LOCK_NAME}`, JSON.stringify({ host: "elsewhere", pid: 1, time: Date.now() }));
      await assert.rejects(a.lock(), (e) => e instanceof LockedError && /elsewhere/.test(e.message));
      await s3.delete(`l/${LOCK_NAME}`);
    });

    await t.step("read-only: no lock object and no writes", async () => {
      await using ro = await open(bucket.name, "l", src, { readOnly: true });
      const requests = ro.requests;
      await (await ro.lock())[Symbol.asyncDispose]();
      assert.equal(ro.requests, requests);
      await assert.rejects(ro.mkdir("x"));
      assert.equal(await s3.head("l/x/"), undefined);
    });
  },
);

remoteTest(
  "openS3Replica() refuses bad buckets, credentials and endpoints with one line",
  "s3",
  s3Server,
  async (server, t) => {
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    const src = srcDir.path;
    const refused = async (
      name: string,
      pattern: RegExp,
      env: Record<string, string | undefined>,
      endpoint?: string,
    ) => {
      await t.step(name, async () => {
        useS3Server(server);
        for (const [key, value] of Object.entries(env)) {
          if (value === undefined) Deno.env.delete(key);
          else Deno.env.set(key, value);
        }
        try {
          const error = await open(bucket.name, "", src, endpoint ? { s3Endpoint: endpoint } : {}, { attempts: 1 })
            .then(
              () => undefined,
              (e) => e,
            );
          assert.ok(error instanceof UsageError, `UsageError, got ${error}`);
          assert.match(error.message, pattern);
          assert.doesNotMatch(error.message, /\n|\.$/);
        } finally {
          useS3Server(server);
        }
      });
    };
    await t.step("a missing bucket", async () => {
      useS3Server(server);
      await assert.rejects(
        open("nosuch-bucket-fs", "", src),
        (e) => e instanceof UsageError && /^Bucket does not exist: 'nosuch-bucket-fs'/.test(e.message),
      );
    });
    await refused("an unknown access key", /access key.*unknown/, { AWS_ACCESS_KEY_ID: "NOSUCHKEY" });
    await refused("a wrong secret key", /secret key is wrong/, { AWS_SECRET_ACCESS_KEY: "wrong" });
    await refused("a malformed endpoint", /^Malformed S3 endpoint 'ftp:\/\/x'/, {}, "ftp://x");
    await refused("a refused connection", /^Cannot reach S3 endpoint '127\.0\.0\.1:1'/, {}, "http://127.0.0.1:1");
    await refused(
      "an unknown host",
      /^Cannot reach S3 endpoint 'nosuchhost\.invalid'/,
      {},
      "http://nosuchhost.invalid",
    );
    await using homeDir = await tempTree();
    const home = homeDir.path;
    await refused("no credentials at all", /^No AWS credentials for profile 'default'/, {
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
      HOME: home,
    });
    await t.step("credentials from a profile in ~/.aws/credentials", async () => {
      await Deno.mkdir(join(home, ".aws"));
      await Deno.writeTextFile(
        join(home, ".aws/credentials"),
        `[other]\naws_access_key_id = ${server.accessKey}\naws_secret_access_key = ${server.secretKey}\n`,
      );
      await withProfile(server, home, "other", async () => {
        await using replica = await open(bucket.name, "", src);
        assert.deepEqual([...(await walk(replica)).keys()], []);
      });
    });
  },
);

remoteTest(
  "S3 replica takes credentials from a credential_process profile (through the AWS SDK's providers)",
  "s3",
  s3Server,
  async (server) => {
    await using bucket = await s3Bucket(server);
    await using homeDir = await tempTree();
    const home = homeDir.path;
    await Deno.mkdir(join(home, ".aws"));
    const json = JSON.stringify({ Version: 1, AccessKeyId: server.accessKey, SecretAccessKey: server.secretKey });
    await Deno.writeTextFile(join(home, "creds.sh"), `#!/bin/sh\necho '${json}'\n`, { mode: 0o755 });
    await Deno.writeTextFile(
      join(home, ".aws/config"),
      `[profile proc]\ncredential_process = ${join(home, "creds.sh")}\n`,
    );
    await withProfile(server, home, "proc", async () => {
      await using replica = await open(bucket.name, "", home, { readOnly: true });
      assert.deepEqual([...(await walk(replica)).keys()], []);
    });
  },
);

remoteTest(
  "S3 replica no-op: one LIST per 1,000 objects once the metadata cache knows them",
  "s3",
  s3Server,
  async (server) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    const src = srcDir.path;
    await using cacheDir = await tempTree();
    const cache = cacheDir.path;
    const count = 1000;
    for (let d = 0; d < 10; d++) {
      await Deno.mkdir(join(src, `d${d}`));
      for (let i = 0; i < count / 10; i++) await Deno.writeTextFile(join(src, `d${d}/f${i}`), `${d}-${i}`);
    }
    await rclone(server, ["copy", "--transfers", "32", "--metadata", src, `fss3:${bucket.name}/n`]);
    {
      await using first = await open(bucket.name, "n", src, { cacheDir: cache });
      assert.equal((await walk(first)).size, count + 10);
      assert.ok(first.requests >= count, `first run HEADs every object: ${first.requests}`);
    }
    await using second = await open(bucket.name, "n", src, { cacheDir: cache });
    const entries = await walk(second);
    assert.equal(entries.size, count + 10);
    assert.equal(entries.get("d3/f7")!.mtimeMs, (await Deno.lstat(join(src, "d3/f7"))).mtime!.getTime());
    // One LIST page, plus the check for incomplete uploads.
    assert.ok(second.requests <= 3, `no-op requests: ${second.requests}`);
  },
);

/** A TCP proxy to the server that the test can cut: every connection dropped, no new ones taken. */
function proxy(server: S3Server, cutAfterBytes: number): { endpoint: string; cut: Promise<void> } {
  const target = new URL(server.endpoint);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  let forwarded = 0;
  let cut!: () => void;
  const done = new Promise<void>((resolve) => cut = resolve);
  const drop = () => {
    try {
      listener.close();
    } catch {
      // closed already
    }
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
    cut();
  };
  (async () => {
    try {
      for await (const inbound of listener) {
        const outbound = await Deno.connect({ hostname: target.hostname, port: Number(target.port || 80) });
        conns.add(inbound).add(outbound);
        const pump = async (from: Deno.Conn, to: Deno.Conn, counted: boolean) => {
          const buffer = new Uint8Array(64 * 1024);
          try {
            for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
              if (counted && (forwarded += n) > cutAfterBytes) return drop();
              for (let done = 0; done < n;) done += await to.write(buffer.subarray(done, n));
            }
          } catch {
            // dropped
          }
        };
        pump(inbound, outbound, true);
        pump(outbound, inbound, false);
      }
    } catch {
      // listener closed
    }
  })();
  return { endpoint: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`, cut: done };
}

remoteTest(
  "S3 replica: a connection dropped mid-upload is ConnectionLostError; nothing is left",
  "s3",
  s3Server,
  async (server) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    const src = srcDir.path;
    const data = crypto.getRandomValues(new Uint8Array(64 * 1024));
    const big = new Uint8Array(16 * MIB);
    for (let i = 0; i < big.length; i += data.length) big.set(data, i);
    await Deno.writeFile(join(src, "big.bin"), big);
    const mtimeMs = (await Deno.lstat(join(src, "big.bin"))).mtime!.getTime();
    const { endpoint, cut } = proxy(server, 8 * MIB);
    const tuning = { multipartThreshold: 5 * MIB, partSize: 5 * MIB, partSlots: 1 };
    await using replica = await open(bucket.name, "c", src, { s3Endpoint: endpoint }, tuning);
    await assert.rejects(
      replica.copy({ op: "copy", path: "big.bin", size: big.length, mtimeMs, mode: 0o644 }),
      ConnectionLostError,
    );
    await cut;
    const s3 = s3Client(server, bucket.name);
    assert.equal(await s3.head("c/big.bin"), undefined);
    assert.equal((await s3.uploads("c/")).length, 1, "the abort could not reach the server either");
    await using _next = await open(bucket.name, "c", src);
    assert.deepEqual(await s3.uploads("c/"), []);
  },
);

Deno.test("S3 parseMode() reads rclone's mode metadata; none is UNKNOWN_MODE, which decide() never counts", () => {
  assert.equal(parseMode("100640"), 0o640);
  assert.equal(parseMode("40755"), 0o755);
  assert.equal(parseMode(undefined), UNKNOWN_MODE);
  assert.equal(parseMode("rw-r--r--"), UNKNOWN_MODE);
  const caps = { modes: true, dirTimes: true, linkTimes: true, mtimeResolutionMs: 1 };
  const source = { kind: "file", size: 3, mtimeMs: 1_700_000_000_123, mode: 0o644 } as const;
  assert.equal(decide(source, { ...source, mode: UNKNOWN_MODE }, { caps }), "same");
  assert.equal(decide(source, { ...source, mode: 0o600 }, { caps }), "mode");
  assert.equal(decide(source, { ...source, mode: UNKNOWN_MODE, mtimeMs: 1 }, { caps }), "mtime");
  const dir = { mtimeMs: 1_700_000_000_000, mode: 0o755 };
  assert.equal(attrsDiffer(dir, { mtimeMs: NaN, mode: UNKNOWN_MODE }, { caps, kind: "dir" }), undefined);
  assert.equal(attrsDiffer(dir, { mtimeMs: NaN, mode: 0o700 }, { caps, kind: "dir" }), "mode");
  assert.equal(attrsDiffer(dir, { mtimeMs: 1, mode: UNKNOWN_MODE }, { caps, kind: "dir" }), "mtime");
  // A ListingBatch keeps both markers.
  const batch = new ListingBatch();
  batch.begin("");
  batch.push("d", { kind: "dir", size: 0, mtimeMs: NaN, mode: UNKNOWN_MODE });
  assert.ok(Number.isNaN(batch.entry(0).mtimeMs));
  assert.equal(batch.entry(0).mode, UNKNOWN_MODE);
});

Deno.test("S3 MetaCache keeps an unknown mtime, and drops a version 1 cache's mode-0 records", async () => {
  await using dir = await tempTree();
  const cache = MetaCache.open(dir.path, "http://s3", "b", "p");
  cache.set("d/", { size: 0, etag: "e", lastModified: "t", mtimeMs: NaN, mode: UNKNOWN_MODE });
  assert.equal(cache.save(), true);
  const again = MetaCache.open(dir.path, "http://s3", "b", "p");
  assert.ok(Number.isNaN(again.get("d/")!.mtimeMs));
  assert.equal(again.get("d/")!.mode, UNKNOWN_MODE);
  // Version 1 stored "no mode metadata" as 0: those records cannot be told from a real mode 0.
  const [file] = [...Deno.readDirSync(dir.path)];
  const v1 = JSON.stringify({ version: 1, endpoint: "http://s3", bucket: "b", prefix: "p" });
  await Deno.writeTextFile(
    join(dir.path, file!.name),
    `${v1}\n${JSON.stringify(["a", 1, "e1", "t", 5, 0, null, null])}\n${
      JSON.stringify(["b", 1, "e2", "t", 5, 0o644, null, null])
    }\n`,
  );
  const old = MetaCache.open(dir.path, "http://s3", "b", "p");
  assert.equal(old.get("a"), undefined);
  assert.equal(old.get("b")?.mode, 0o644);
});

remoteTest(
  "S3 replica lists what an object lacks as unknown: no mode, a marker-less directory; no mtime is the listed LastModified",
  "s3",
  s3Server,
  async (server) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    await using cacheDir = await tempTree();
    const s3 = s3Client(server, bucket.name);
    await s3.put("u/f.txt", "f", { "x-amz-meta-mtime": "1700000000.123456789" }); // as rclone writes it
    await s3.put("u/g.txt", "g"); // another tool: no metadata at all
    await s3.put("u/d/h.txt", "h", { "x-amz-meta-mtime": "1700000000" }); // d has no marker
    await s3.put("u/m/", new Uint8Array(0)); // a marker without metadata
    // Its LastModified as the listing gives it, to the millisecond (a HEAD gives whole seconds).
    const listed: ListedObject[] = [];
    for await (const page of s3.list("u/")) listed.push(...page);
    const g = listed.find((object) => object.key === "u/g.txt")!;
    for (const pass of ["HEADs", "the metadata cache"]) {
      await using replica = await open(bucket.name, "u", srcDir.path, { cacheDir: cacheDir.path });
      const entries = await walk(replica);
      const f = entries.get("f.txt")!;
      assert.deepEqual([f.mtimeMs, f.mode], [1_700_000_000_123, UNKNOWN_MODE], pass);
      assert.deepEqual([entries.get("g.txt")!.mtimeMs, entries.get("g.txt")!.mode], [
        Date.parse(g.lastModified),
        UNKNOWN_MODE,
      ]);
      for (const name of ["d", "m"]) {
        const dir = entries.get(name)!;
        assert.equal(dir.kind, "dir");
        assert.ok(Number.isNaN(dir.mtimeMs), `${name}: ${pass}`);
        assert.equal(dir.mode, UNKNOWN_MODE);
      }
      const root = (await replica.root())!;
      assert.ok(Number.isNaN(root.mtimeMs));
      assert.equal(root.mode, UNKNOWN_MODE);
      const source = { kind: "file", size: 1, mtimeMs: 1_700_000_000_123, mode: 0o600 } as const;
      assert.equal(decide(source, f, { caps: replica.caps }), "same");
      assert.equal(
        attrsDiffer({ mtimeMs: 1, mode: 0o700 }, entries.get("d")!, { caps: replica.caps, kind: "dir" }),
        undefined,
      );
    }
  },
);

remoteTest(
  "S3 replica digest() reads a multipart object without md5chksum once, any other hash by reading; --hash xxh3 refused at open",
  "s3",
  s3Server,
  async (server) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    await using cacheDir = await tempTree();
    const s3 = s3Client(server, bucket.name);
    const data = new Uint8Array(11 * MIB).map((_, i) => (i * 31) % 253);
    // Another tool's multipart upload: an ETag that is no MD5, and no md5chksum.
    const id = await s3.createUpload("k/big.bin", {});
    const etags = [
      await s3.uploadPart("k/big.bin", id, 1, data.subarray(0, 5 * MIB)),
      await s3.uploadPart("k/big.bin", id, 2, data.subarray(5 * MIB, 10 * MIB)),
      await s3.uploadPart("k/big.bin", id, 3, data.subarray(10 * MIB)),
    ];
    await s3.completeUpload("k/big.bin", id, etags);
    const md5 = createHash("md5").update(data).digest("hex");
    const tuning = { partSize: 5 * MIB };
    {
      await using replica = await open(bucket.name, "k", srcDir.path, { cacheDir: cacheDir.path }, tuning);
      await walk(replica);
      const before = replica.requests;
      assert.equal(await replica.digest!("big.bin", "md5"), md5);
      assert.equal(replica.requests - before, 3, "three ranged GETs of 5 MiB at most");
      const xxh3 = await getHasher("xxh3");
      xxh3.init();
      xxh3.update(data);
      assert.equal(await replica.digest!("big.bin", "xxh3"), xxh3.digest());
    }
    {
      await using replica = await open(bucket.name, "k", srcDir.path, { cacheDir: cacheDir.path }, tuning);
      await walk(replica);
      const before = replica.requests;
      assert.equal(await replica.digest!("big.bin", "md5"), md5);
      assert.equal(replica.requests, before, "the MD5 read before is remembered");
      await s3.delete("k/big.bin");
      assert.equal(await replica.digest!("big.bin", "sha256"), undefined, "gone since the listing");
    }
    // A refused endpoint would say so: the hash is refused first, before any request.
    await assert.rejects(
      open(bucket.name, "k", srcDir.path, { hash: "xxh3", s3Endpoint: "http://127.0.0.1:1" }),
      (error: Error) =>
        error instanceof UsageError &&
        error.message === "Hash 'xxh3' is not available for an S3 replica: it knows md5 (leave out --hash)",
    );
    await using md5Replica = await open(bucket.name, "k", srcDir.path, { hash: "md5" });
    assert.equal(md5Replica.caps.hash, "md5");
  },
);

remoteTest(
  "S3 replica copy() of an update whose content is already there replaces the metadata only, unless the object changed",
  "s3",
  s3Server,
  async (server, t) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using srcDir = await tempTree();
    const src = srcDir.path;
    await Deno.writeTextFile(join(src, "f.txt"), "hello");
    await Deno.chmod(join(src, "f.txt"), 0o640);
    const mtimeMs = (await Deno.lstat(join(src, "f.txt"))).mtime!.getTime();
    const action = { op: "update", path: "f.txt", size: 5, mtimeMs, mode: 0o640 } as const;
    const s3 = s3Client(server, bucket.name);

    await t.step("same content: a copy onto itself, nothing sent", async () => {
      const etag = await s3.put("v/f.txt", "hello");
      await using replica = await open(bucket.name, "v", src);
      await walk(replica);
      assert.deepEqual(await replica.copy(action), { size: 0, backedUp: false });
      const head = (await s3.head("v/f.txt"))!;
      assert.equal(head.etag, etag);
      assert.equal(parseMtime(head.meta.mtime), mtimeMs);
      assert.equal(head.meta.mode, "100640");
      await rclone(server, ["check", src, `fss3:${bucket.name}/v`]);
    });

    await t.step("an object changed since the listing (same size) is uploaded over", async () => {
      await s3.put("w/f.txt", "hello");
      await using replica = await open(bucket.name, "w", src);
      await walk(replica);
      await s3.put("w/f.txt", "HELLO");
      assert.deepEqual(await replica.copy(action), { size: 5, backedUp: false });
      assert.equal(new TextDecoder().decode((await s3.get("w/f.txt"))!.body), "hello");
      assert.equal(parseMtime((await s3.head("w/f.txt"))!.meta.mtime), mtimeMs);
    });

    await t.step("setAttrs() onto an object changed since the listing fails for that entry", async () => {
      await s3.put("z/f.txt", "hello", { "x-amz-meta-mtime": "1", "x-amz-meta-mode": "100600" });
      await using replica = await open(bucket.name, "z", src);
      await walk(replica);
      await s3.put("z/f.txt", "HELLO", { "x-amz-meta-mtime": "1", "x-amz-meta-mode": "100600" });
      await assert.rejects(
        replica.setAttrs({ op: "attrs", path: "f.txt", kind: "file", mtimeMs, mode: 0o640, reason: "mtime" }),
        /changed during the sync/,
      );
      assert.equal((await s3.head("z/f.txt"))!.meta.mtime, "1");
    });
  },
);
