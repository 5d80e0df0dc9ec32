/**
 * The S3 backend's reading half against a real Ceph radosgw: objects written by foldersync,
 * by rclone (with and without `--metadata`) and by a plain S3 client, listed, stat'ed and read;
 * reads in order and at random offsets; an object replaced mid-read; a missing prefix; copies
 * out of a bucket into a local folder, within the bucket on the server, and into another bucket
 * through the reader; a connection cut mid-download. rclone and the bytes are the oracles.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { rclone, remoteTest, s3Bucket, s3Client, s3Server, useS3Server } from "./remote_env.ts";
import { countingProxy, cuttingProxy } from "./proxy.ts";
import { openS3Backend, s3ObjectOf, type S3Tuning } from "../lib/backend/s3/s3_replica.ts";
import type { ListedObject } from "../lib/backend/s3/client.ts";
import type { Backend, BackendOptions, SourceFile } from "../lib/backend/backend.ts";
import { LocalBackend } from "../lib/backend/local/local_backend.ts";
import { type Entry, UNKNOWN_MODE } from "../lib/model/listing.ts";
import { ChangedError, ConnectionLostError } from "../lib/model/errors.ts";
import { runOnce } from "../lib/engine/sync.ts";
import { tempDir, writeTree } from "./helpers.ts";

const MIB = 1024 * 1024;

type Opened = Backend & AsyncDisposable & { requests: number };

/** Opens `bucket/prefix` as a source (read-only) or, with `readOnly: false`, as a replica. */
async function open(
  bucket: string,
  prefix: string,
  options: Partial<BackendOptions> = {},
  tuning: S3Tuning = {},
): Promise<Opened> {
  const display = `s3://${bucket}${prefix ? `/${prefix}` : ""}`;
  const backend = await openS3Backend({ kind: "s3", bucket, prefix, display }, {
    jobs: 8,
    readOnly: true,
    ...options,
  }, tuning);
  return Object.assign(backend, { [Symbol.asyncDispose]: () => backend.close() });
}

/** Every entry of `backend`, walked from the root as the engine walks a source: path to entry. */
async function walk(backend: Backend): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const options = { fixPermissions: false };
  backend.prefetch?.(options);
  const dirs = [""];
  while (dirs.length > 0) {
    const dir = dirs.pop()!;
    const batch = await backend.list(dir, options);
    assert.equal(batch.flags[0], 0, `flags of '${dir}'`);
    assert.deepEqual(batch.problems, []);
    for (let i = batch.end(0) - 1; i >= batch.start(0); i--) {
      const path = dir === "" ? batch.names[i]! : `${dir}/${batch.names[i]}`;
      out.set(path, batch.entry(i));
      if (batch.kind(i) === "dir") dirs.push(path);
    }
  }
  return out;
}

/** Reads all of source file `file` through its reader, in one read. */
async function readAll(file: SourceFile): Promise<Uint8Array> {
  const reader = await file.open();
  try {
    const into = new Uint8Array(file.size + 1);
    return into.subarray(0, await reader.read(0, into));
  } finally {
    await reader.close();
  }
}

/** Bytes that do not repeat within 64 KiB. */
function bytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  crypto.getRandomValues(out.subarray(0, Math.min(size, 65536)));
  for (let at = 65536; at < size; at += 65536) out.copyWithin(at, 0, Math.min(65536, size - at));
  for (let at = 0; at < size; at += 4096) out[at] = (at / 4096) & 0xff;
  return out;
}

/** The local tree every writer below uploads. */
async function writeSource(root: string): Promise<void> {
  await writeTree(root, {
    "a.txt": "alpha",
    "run.sh": "#!/bin/sh\necho hi\n",
    docs: { "b.md": "bravo", deep: { "c.txt": "charlie" } },
    empty: {},
    "link-to-a": { link: "a.txt" },
    "name with spaces & ü.txt": "unicode",
  });
  await Deno.chmod(join(root, "run.sh"), 0o755);
  await Deno.chmod(join(root, "a.txt"), 0o600);
  await Deno.chmod(join(root, "docs"), 0o750);
  await Deno.utime(join(root, "a.txt"), new Date(1_700_000_000_123), new Date(1_700_000_000_789));
  await Deno.utime(join(root, "docs/deep"), new Date(1_600_000_000_000), new Date(1_600_000_000_250));
}

const FILES = ["a.txt", "docs/b.md", "docs/deep/c.txt", "name with spaces & ü.txt", "run.sh"];

remoteTest(
  "S3 source lists what foldersync, rclone (with and without --metadata) and a plain client wrote",
  "s3",
  s3Server,
  async (server, t) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using src = await tempDir();
    await writeSource(src.path);
    const lstat = (rel: string) => Deno.lstatSync(join(src.path, rel));
    const s3 = s3Client(server, bucket.name);

    // foldersync writes its layout: markers with directory attributes, modes, links.
    await runOnce({ source: src.path, replica: `${bucket.url}/fs` }, {
      sides: {
        source: () => Promise.resolve(new LocalBackend(src.path, { readOnly: true })),
        replica: async () => {
          const replica = await open(bucket.name, "fs", { readOnly: false });
          await replica.createRoot(true);
          return replica;
        },
      },
    });
    await rclone(server, ["copy", "--links", "--metadata", src.path, `fss3:${bucket.name}/rm`]);
    await rclone(server, ["copy", "--links", src.path, `fss3:${bucket.name}/rp`]);
    for (const rel of FILES) await s3.put(`raw/${rel}`, await Deno.readFile(join(src.path, rel)));
    await s3.put("raw/empty/", new Uint8Array(0));
    const listed = new Map<string, ListedObject>();
    for await (const page of s3.list("raw/")) for (const object of page) listed.set(object.key, object);

    await t.step("foldersync's objects: every kind, mtime and mode, directories' too", async () => {
      await using source = await open(bucket.name, "fs");
      const entries = await walk(source);
      assert.deepEqual([...entries.keys()].sort(), [...FILES, "docs", "docs/deep", "empty", "link-to-a"].sort());
      for (const rel of FILES) {
        const entry = entries.get(rel)!;
        assert.deepEqual(
          [entry.kind, entry.size, entry.mtimeMs, entry.mode],
          ["file", lstat(rel).size, lstat(rel).mtime!.getTime(), lstat(rel).mode! & 0o7777],
          rel,
        );
      }
      for (const rel of ["docs", "docs/deep", "empty"]) {
        const entry = entries.get(rel)!;
        assert.deepEqual([entry.kind, entry.mtimeMs, entry.mode], [
          "dir",
          lstat(rel).mtime!.getTime(),
          lstat(rel).mode! & 0o7777,
        ], rel);
      }
      const link = entries.get("link-to-a")!;
      assert.deepEqual([link.kind, link.target, link.mtimeMs], [
        "symlink",
        "a.txt",
        lstat("link-to-a").mtime!.getTime(),
      ]);
      assert.equal((await source.root())?.mtimeMs, lstat("").mtime!.getTime());
    });

    await t.step("rclone --metadata: mtimes and modes; no directory markers, so no empty folder", async () => {
      await using source = await open(bucket.name, "rm");
      const entries = await walk(source);
      assert.deepEqual([...entries.keys()].sort(), [...FILES, "docs", "docs/deep", "link-to-a"].sort());
      for (const rel of FILES) {
        const entry = entries.get(rel)!;
        assert.deepEqual(
          [entry.size, entry.mtimeMs, entry.mode],
          [lstat(rel).size, lstat(rel).mtime!.getTime(), lstat(rel).mode! & 0o7777],
          rel,
        );
      }
      const dir = entries.get("docs/deep")!;
      assert.ok(Number.isNaN(dir.mtimeMs) && dir.mode === UNKNOWN_MODE, "a directory known only from its keys");
      assert.equal(entries.get("link-to-a")!.target, "a.txt");
    });

    await t.step("rclone without --metadata: mtimes, and modes unknown", async () => {
      await using source = await open(bucket.name, "rp");
      const entries = await walk(source);
      for (const rel of FILES) {
        const entry = entries.get(rel)!;
        assert.deepEqual([entry.mtimeMs, entry.mode], [lstat(rel).mtime!.getTime(), UNKNOWN_MODE], rel);
      }
    });

    await t.step("a plain S3 client: LastModified to the millisecond, modes unknown, a bare marker", async () => {
      await using source = await open(bucket.name, "raw");
      const entries = await walk(source);
      assert.deepEqual([...entries.keys()].sort(), [...FILES, "docs", "docs/deep", "empty"].sort());
      for (const rel of FILES) {
        const entry = entries.get(rel)!;
        assert.deepEqual(
          [entry.size, entry.mtimeMs, entry.mode],
          [lstat(rel).size, Date.parse(listed.get(`raw/${rel}`)!.lastModified), UNKNOWN_MODE],
          rel,
        );
      }
      const empty = entries.get("empty")!;
      assert.ok(empty.kind === "dir" && Number.isNaN(empty.mtimeMs) && empty.mode === UNKNOWN_MODE);
    });

    await t.step("stat() asks the server: file, link, directory with and without a marker, nothing", async () => {
      await using source = await open(bucket.name, "fs");
      const a = lstat("a.txt");
      assert.deepEqual(await source.stat("a.txt"), { kind: "file", size: 5, mtimeMs: a.mtime!.getTime(), mode: 0o600 });
      assert.deepEqual(await source.stat("link-to-a"), {
        kind: "symlink",
        size: 5,
        mtimeMs: lstat("link-to-a").mtime!.getTime(),
        mode: 0o777,
        target: "a.txt",
      });
      assert.deepEqual(await source.stat("docs"), {
        kind: "dir",
        size: 0,
        mtimeMs: lstat("docs").mtime!.getTime(),
        mode: 0o750,
      });
      assert.equal(await source.stat("nothing"), undefined);
      assert.equal(await source.stat("doc"), undefined, "a prefix of a name is no directory");
      await using rp = await open(bucket.name, "rp");
      const deep = await rp.stat("docs/deep");
      assert.ok(deep?.kind === "dir" && Number.isNaN(deep.mtimeMs) && deep.mode === UNKNOWN_MODE);
    });

    await t.step("file() reads each file's bytes, knows its MD5, and says where its object lives", async () => {
      for (const prefix of ["fs", "rm", "raw"]) {
        await using source = await open(bucket.name, prefix);
        const entries = await walk(source);
        for (const rel of FILES) {
          const file = source.file({ path: rel, ...entries.get(rel)! });
          const content = await Deno.readFile(join(src.path, rel));
          assert.deepEqual(await readAll(file), content, `${prefix}/${rel}`);
          await file.check();
          assert.equal(await file.knownMd5!(), createHash("md5").update(content).digest("hex"));
          assert.deepEqual(
            { ...s3ObjectOf(file)!, etag: "" },
            {
              endpoint: new URL(server.endpoint).href,
              bucket: bucket.name,
              key: `${prefix}/${rel}`,
              etag: "",
              size: content.length,
            },
          );
        }
      }
    });
  },
);

remoteTest(
  "S3 source reads a 20 MiB object in order and at random offsets; an object replaced meanwhile is ChangedError",
  "s3",
  s3Server,
  async (server, t) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using dst = await tempDir();
    const s3 = s3Client(server, bucket.name);
    const data = bytes(20 * MIB + 12345);
    // Uploaded in parts, as a big file is: an ETag that is no MD5, and md5chksum as rclone writes it.
    const md5 = createHash("md5").update(data).digest("hex");
    const id = await s3.createUpload("r/big.bin", {
      "x-amz-meta-mtime": "1700000000.5",
      "x-amz-meta-md5chksum": Buffer.from(md5, "hex").toString("base64"),
    });
    const etags = [];
    for (let at = 0, n = 1; at < data.length; at += 8 * MIB, n++) {
      etags.push(await s3.uploadPart("r/big.bin", id, n, data.subarray(at, at + 8 * MIB)));
    }
    await s3.completeUpload("r/big.bin", id, etags);
    const tuning = { readBlockSize: 4 * MIB, readAhead: 2, readBlocks: 4 };
    const entry = { path: "big.bin", size: data.length, mtimeMs: 1_700_000_000_500, mode: 0o640 };

    await t.step("in order through a local replica's copy: the bytes, in whole blocks", async () => {
      await using source = await open(bucket.name, "r", {}, tuning);
      await walk(source);
      const before = source.requests;
      const replica = new LocalBackend(dst.path);
      const file = source.file(entry);
      assert.equal(await file.knownMd5!(), md5, "from md5chksum");
      assert.deepEqual(await replica.copy({ op: "copy", ...entry }, file), { size: data.length, backedUp: false });
      assert.deepEqual(await Deno.readFile(join(dst.path, "big.bin")), data);
      const info = await Deno.lstat(join(dst.path, "big.bin"));
      assert.deepEqual([info.mtime!.getTime(), info.mode! & 0o7777], [1_700_000_000_500, 0o640]);
      assert.equal(source.requests - before, Math.ceil(data.length / (4 * MIB)), "one GET a block, no check");
    });

    await t.step("at random offsets, several in flight", async () => {
      await using source = await open(bucket.name, "r", {}, tuning);
      await walk(source);
      const reader = await source.file(entry).open();
      const offsets = Array.from({ length: 24 }, () => Math.floor(Math.random() * data.length));
      offsets.push(0, data.length - 1, data.length - 100);
      await Promise.all(offsets.map(async (at) => {
        const into = new Uint8Array(300_000);
        const n = await reader.read(at, into);
        assert.equal(n, Math.min(into.length, data.length - at));
        assert.deepEqual(into.subarray(0, n), data.subarray(at, at + n), `at ${at}`);
      }));
      assert.equal(await reader.read(data.length, new Uint8Array(10)), 0);
      await reader.close();
    });

    await t.step("replaced mid-read: the next block is ChangedError, and the copy leaves nothing", async () => {
      await using source = await open(bucket.name, "r", {}, { ...tuning, readAhead: 0 });
      await walk(source);
      const reader = await source.file(entry).open();
      const chunk = new Uint8Array(MIB);
      assert.equal(await reader.read(0, chunk), MIB);
      await s3.put("r/big.bin", data.subarray(0, 10 * MIB));
      await assert.rejects(reader.read(8 * MIB, chunk), ChangedError);
      await reader.close();
      const file = source.file(entry);
      const replica = new LocalBackend(dst.path);
      await assert.rejects(replica.copy({ op: "update", ...entry }, file), ChangedError);
      assert.deepEqual([...Deno.readDirSync(dst.path)].map((e) => e.name), ["big.bin"], "no temp file left");
      assert.deepEqual(await Deno.readFile(join(dst.path, "big.bin")), data, "the old file kept");
      // The engine then asks stat(), which takes the object as it now is: the copy goes through.
      const now = (await source.stat("big.bin"))!;
      assert.equal(now.size, 10 * MIB);
      const again = { path: "big.bin", size: now.size, mtimeMs: now.mtimeMs, mode: 0o644 };
      await replica.copy({ op: "update", ...again }, source.file(again));
      assert.deepEqual(await Deno.readFile(join(dst.path, "big.bin")), data.subarray(0, 10 * MIB));
    });

    await t.step("check() of a file never read: the listed version, else ChangedError or NotFound", async () => {
      await s3.put("e/empty", new Uint8Array(0));
      await s3.put("e/gone", new Uint8Array(0));
      await using source = await open(bucket.name, "e");
      await walk(source);
      const empty = source.file({ path: "empty", size: 0, mtimeMs: 0, mode: 0o644 });
      assert.equal(await readAll(empty).then((b) => b.length), 0);
      await empty.check();
      await s3.put("e/empty", "now with content");
      await assert.rejects(empty.check(), ChangedError);
      const gone = source.file({ path: "gone", size: 0, mtimeMs: 0, mode: 0o644 });
      await s3.delete("e/gone");
      await assert.rejects(gone.check(), Deno.errors.NotFound);
    });
  },
);

remoteTest(
  "S3 source root(): a prefix without objects does not exist, a marker alone does, a bucket root always",
  "s3",
  s3Server,
  async (server) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    const s3 = s3Client(server, bucket.name);
    {
      await using whole = await open(bucket.name, "");
      assert.equal((await whole.root())?.kind, "dir", "an empty bucket's root");
      await using missing = await open(bucket.name, "no/such/prefix");
      assert.equal(await missing.root(), undefined);
    }
    await s3.put("marker/", new Uint8Array(0), { "x-amz-meta-mtime": "1700000000", "x-amz-meta-mode": "40750" });
    await s3.put("other/x", "x"); // a prefix of its name is not it: "othe" does not exist
    await using marker = await open(bucket.name, "marker");
    assert.deepEqual(await marker.root(), { kind: "dir", size: 0, mtimeMs: 1_700_000_000_000, mode: 0o750 });
    assert.deepEqual([...(await walk(marker)).keys()], []);
    await using othe = await open(bucket.name, "othe");
    assert.equal(await othe.root(), undefined);
  },
);

remoteTest(
  "S3 backend copies from an S3 source: to a local folder, on the server within the bucket, through the reader across buckets",
  "s3",
  s3Server,
  async (server, t) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using other = await s3Bucket(server);
    await using src = await tempDir();
    await writeSource(src.path);
    const big = bytes(12 * MIB + 7);
    await Deno.writeFile(join(src.path, "docs/big.bin"), big);
    await rclone(server, ["copy", "--links", "--metadata", src.path, `fss3:${bucket.name}/src`]);
    const files = [...FILES, "docs/big.bin"];
    const small = { multipartThreshold: 5 * MIB, partSize: 5 * MIB, readBlockSize: 2 * MIB };
    /** Copies every file of `source` into `replica`, as the engine would (modes as listed). */
    const copyAll = async (source: Backend, replica: Backend, file = (f: SourceFile) => f) => {
      const entries = await walk(source);
      for (const rel of files) {
        const entry = entries.get(rel)!;
        const action = { op: "copy", path: rel, size: entry.size, mtimeMs: entry.mtimeMs, mode: entry.mode } as const;
        assert.equal((await replica.copy(action, file(source.file(action)))).size, entry.size);
      }
    };

    await t.step("into a local folder through the reader: bytes, mtimes and modes", async () => {
      await using dst = await tempDir();
      await using source = await open(bucket.name, "src", {}, small);
      const replica = new LocalBackend(dst.path);
      for (const dir of ["docs", "docs/deep"]) await replica.mkdir(dir);
      await copyAll(source, replica);
      for (const rel of files) {
        const [a, b] = [Deno.lstatSync(join(src.path, rel)), Deno.lstatSync(join(dst.path, rel))];
        assert.deepEqual([b.size, b.mtime!.getTime(), b.mode! & 0o7777], [
          a.size,
          a.mtime!.getTime(),
          a.mode! & 0o7777,
        ]);
        assert.deepEqual(Deno.readFileSync(join(dst.path, rel)), Deno.readFileSync(join(src.path, rel)), rel);
      }
    });

    await t.step("into another prefix of the bucket on the server: no object body is read", async () => {
      await using proxy = countingProxy(server.endpoint);
      // Both sides through one endpoint, as a run names them: the source is seen to be in the same bucket.
      await using source = await open(bucket.name, "src", { s3Endpoint: proxy.endpoint }, small);
      await using replica = await open(bucket.name, "copy", { s3Endpoint: proxy.endpoint, readOnly: false }, {
        ...small,
        maxCopy: 10 * MIB,
        copyPartSize: 5 * MIB,
      });
      await copyAll(source, replica);
      const keys = new Set(files.map((rel) => `/${bucket.name}/src/${rel}`));
      const reads = proxy.requests.filter((r) => r.method === "GET" && keys.has(r.target.split("?")[0]!));
      assert.deepEqual(reads, [], "no GET of a file's object");
      const copies = proxy.requests.filter((r) => r.copy).map((r) => r.target.replace(/uploadId=[^&]+/, "uploadId"));
      assert.equal(copies.length, files.length - 1 + 3, copies.join("\n"));
      assert.ok(copies.some((c) => /big\.bin\?partNumber=3&uploadId/.test(c)), "over maxCopy: copied in parts");
      await rclone(server, ["check", src.path, `fss3:${bucket.name}/copy`, "--exclude", "link-to-a"]);
      const listed = JSON.parse(await rclone(server, ["lsjson", "-R", "--metadata", `fss3:${bucket.name}/copy`]));
      const objects = listed as Array<
        { Path: string; IsDir: boolean; ModTime: string; Metadata: Record<string, string> }
      >;
      assert.deepEqual(objects.filter((item) => !item.IsDir).map((item) => item.Path).sort(), [...files].sort());
      for (const item of objects.filter((item) => !item.IsDir)) {
        const info = Deno.lstatSync(join(src.path, item.Path));
        assert.equal(Date.parse(item.ModTime), info.mtime!.getTime(), item.Path);
        assert.equal(parseInt(item.Metadata.mode!, 8) & 0o7777, info.mode! & 0o7777, item.Path);
      }
    });

    await t.step("into another bucket through the reader: parts read several at a time, the MD5 computed", async () => {
      await using cache = await tempDir();
      {
        await using source = await open(bucket.name, "src", {}, small);
        await using replica = await open(other.name, "dst", { readOnly: false, cacheDir: cache.path }, small);
        // A source that knows no MD5 and lives nowhere a replica can copy from: the bytes are read.
        await copyAll(source, replica, (file) => {
          const plain: SourceFile = { ...file };
          delete (plain as { knownMd5?: unknown }).knownMd5;
          delete (plain as { s3?: unknown }).s3;
          return plain;
        });
      }
      await rclone(server, ["check", "--download", src.path, `fss3:${other.name}/dst`, "--exclude", "link-to-a"]);
      const s3 = s3Client(server, other.name);
      assert.match((await s3.head("dst/docs/big.bin"))!.etag, /-3$/, "uploaded in three parts");
      await using again = await open(other.name, "dst", { cacheDir: cache.path });
      await walk(again);
      const before = again.requests;
      assert.equal(await again.digest!("docs/big.bin", "md5"), createHash("md5").update(big).digest("hex"));
      assert.equal(again.requests, before, "the MD5 computed on the way is remembered: nothing read");
    });
  },
);

remoteTest(
  "S3 source: a connection cut mid-download is ConnectionLostError; the local copy leaves no temp file",
  "s3",
  s3Server,
  async (server) => {
    useS3Server(server);
    await using bucket = await s3Bucket(server);
    await using dst = await tempDir();
    const s3 = s3Client(server, bucket.name);
    const data = bytes(24 * MIB);
    await s3.put("c/big.bin", data);
    await using proxy = cuttingProxy(server.endpoint, 9 * MIB);
    await using source = await open(bucket.name, "c", { s3Endpoint: proxy.endpoint }, {
      readBlockSize: 2 * MIB,
      attempts: 2,
    });
    await walk(source);
    const entry = { path: "big.bin", size: data.length, mtimeMs: 1_700_000_000_000, mode: 0o644 };
    const replica = new LocalBackend(dst.path);
    await assert.rejects(replica.copy({ op: "copy", ...entry }, source.file(entry)), ConnectionLostError);
    await proxy.cut;
    assert.deepEqual([...Deno.readDirSync(dst.path)], [], "no temp file, nothing at the final name");
  },
);
