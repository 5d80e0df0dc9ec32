/**
 * The SFTP backend's reading half against the real OpenSSH server of tests/servers/: a folder
 * on the server listed, stat'ed and read as a source, its files copied into a local folder
 * (LocalBackend's reader path) and into another SFTP folder, judged by the bytes and by rsync
 * on the server's folder seen locally. The framing of what the server sends is in
 * sftp_inbound_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { chownTo, remoteTest, sftpFolder, type SftpServer, sftpServer } from "./remote_env.ts";
import { mirrorDiff, tempDir, tempsUnder, writeTree } from "./helpers.ts";
import { openSftpReplica, type SftpInternals } from "../lib/backend/sftp/sftp_replica.ts";
import { parseTarget } from "../lib/backend/registry.ts";
import { type SftpTarget } from "../lib/backend/target.ts";
import type { Backend, BackendOptions, FileReader } from "../lib/backend/backend.ts";
import { LocalBackend } from "../lib/backend/local/local_backend.ts";
import { compareNames, type Entry, type ListingBatch } from "../lib/model/listing.ts";
import { ChangedError, ConnectionLostError } from "../lib/model/errors.ts";
import { listWalk } from "../lib/engine/walk.ts";
import { getHasher } from "../lib/content/hash.ts";

function options(server: SftpServer, extra: Partial<BackendOptions> = {}): BackendOptions {
  return {
    jobs: 4,
    readOnly: true,
    sshKey: server.key,
    knownHosts: server.knownHosts,
    sshConfig: "/dev/null",
    sshOptions: ["IdentityAgent=none"],
    ...extra,
  };
}

/** The folder at `url`, opened as a source is (read-only) unless `extra` says otherwise. */
async function open(
  server: SftpServer,
  url: string,
  extra: Partial<BackendOptions> = {},
  internals: SftpInternals = {},
): Promise<Backend & AsyncDisposable> {
  const backend = await openSftpReplica(parseTarget(url) as SftpTarget, options(server, extra), internals);
  return Object.assign(backend, { [Symbol.asyncDispose]: () => backend.close() });
}

function entries(batch: ListingBatch): Array<[string, Entry]> {
  const out: Array<[string, Entry]> = [];
  for (let i = batch.start(0); i < batch.end(0); i++) out.push([batch.names[i]!, batch.entry(i)]);
  return out;
}

/** `size` bytes that differ at every offset from those of a shifted copy. */
function pattern(size: number, seed = 1): Uint8Array {
  const data = new Uint8Array(size);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    data[i] = x & 0xff;
  }
  return data;
}

/** Reads `size` bytes through `reader` as LocalBackend's writer does: 1 MiB chunks, 8 in flight. */
async function readSequentially(reader: FileReader, size: number): Promise<Uint8Array> {
  const chunk = 1 << 20;
  const out = new Uint8Array(size);
  const reads: Promise<number>[] = [];
  for (let at = 0; at < size; at += chunk) {
    if (reads.length >= 8) await reads[reads.length - 8];
    reads.push(reader.read(at, out.subarray(at, Math.min(size, at + chunk))));
  }
  const counts = await Promise.all(reads);
  assert.equal(counts.reduce((a, b) => a + b, 0), size);
  return out;
}

/** A listed file of the local folder `root`, as the engine hands it to a copy. */
async function listed(root: string, rel: string) {
  const info = await Deno.lstat(join(root, rel));
  return { path: rel, size: info.size, mtimeMs: info.mtime!.getTime(), mode: info.mode! & 0o7777 };
}

const TREE = {
  "a.txt": "alpha",
  "name with spaces & ü.txt": "unicode",
  "日本語.md": "nihongo",
  "docs": { "b.md": "bravo", "deep": { "c.txt": "charlie" } },
  "empty": {},
  "link-to-a": { link: "a.txt" },
  "dangling": { link: "nowhere/at/all" },
  "dir-link": { link: "docs" },
};

/** Writes TREE into the server folder at `path`, with modes and mtimes to find again. */
async function writeServerTree(server: SftpServer, path: string): Promise<void> {
  await writeTree(path, TREE);
  await Deno.chmod(join(path, "a.txt"), 0o640);
  await Deno.chmod(join(path, "docs"), 0o750);
  // Sub-second mtimes: SFTP v3 carries whole seconds.
  await Deno.utime(join(path, "a.txt"), 1_600_000_000.25, 1_600_000_000.75);
  await Deno.utime(join(path, "docs"), 1_650_000_001, 1_650_000_001);
  await new Deno.Command("touch", { args: ["-h", "-d", "@1500000002", join(path, "link-to-a")] }).output();
  await chownTo(server, path);
}

remoteTest(
  "SftpBackend as a source: root, sorted listings with link targets, modes and whole-second mtimes, and stat",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using folder = await sftpFolder(server, "source-");
    await writeServerTree(server, folder.path);
    await using source = await open(server, folder.url);

    await t.step("root() is the folder; a missing folder is undefined", async () => {
      assert.equal((await source.root())?.kind, "dir");
      await using missing = await open(server, `${folder.url}/no/such/folder`);
      assert.equal(await missing.root(), undefined);
    });

    await t.step("list() gives every entry as the server has it", async () => {
      const listing = entries(await source.list("", { fixPermissions: false }));
      const names = listing.map(([name]) => name);
      assert.deepEqual(names, [...names].sort(compareNames));
      assert.deepEqual(names, [
        "a.txt",
        "dangling",
        "dir-link",
        "docs",
        "empty",
        "link-to-a",
        "name with spaces & ü.txt",
        "日本語.md",
      ]);
      const byName = new Map(listing);
      assert.deepEqual(byName.get("a.txt"), { kind: "file", size: 5, mtimeMs: 1_600_000_000_000, mode: 0o640 });
      assert.deepEqual(byName.get("docs"), { kind: "dir", size: 0, mtimeMs: 1_650_000_001_000, mode: 0o750 });
      const link = byName.get("link-to-a")!;
      assert.deepEqual([link.kind, link.target, link.mtimeMs], ["symlink", "a.txt", 1_500_000_002_000]);
      assert.equal(byName.get("dangling")!.target, "nowhere/at/all");
      assert.deepEqual([byName.get("dir-link")!.kind, byName.get("dir-link")!.target], ["symlink", "docs"]);
      assert.equal(byName.get("empty")!.kind, "dir");
      assert.equal(byName.get("日本語.md")!.size, 7);
      const deep = entries(await source.list("docs/deep", { fixPermissions: false }));
      assert.deepEqual(deep.map(([n, e]) => [n, e.kind, e.size]), [["c.txt", "file", 7]]);
      assert.deepEqual(entries(await source.list("empty", { fixPermissions: false })), []);
    });

    await t.step("stat() is lstat: a link is not followed; a missing entry is undefined", async () => {
      assert.deepEqual(await source.stat("a.txt"), { kind: "file", size: 5, mtimeMs: 1_600_000_000_000, mode: 0o640 });
      assert.equal((await source.stat("dir-link"))?.kind, "symlink");
      assert.equal((await source.stat("dangling"))?.kind, "symlink");
      assert.equal((await source.stat("docs/deep"))?.kind, "dir");
      assert.equal((await source.stat("name with spaces & ü.txt"))?.size, 7);
      assert.equal(await source.stat("no-such-file"), undefined);
      assert.equal(await source.stat("docs/no/such"), undefined);
    });

    await t.step("digest() hashes a file, and is undefined for one that is gone", async () => {
      const hasher = await getHasher("xxh3"); // the backend's too: used before it hashes
      hasher.init();
      hasher.update(new TextEncoder().encode("alpha"));
      const expected = hasher.digest();
      assert.equal(await source.digest!("a.txt", "xxh3"), expected);
      assert.equal(await source.digest!("no-such-file", "xxh3"), undefined);
    });
  },
);

remoteTest(
  "SftpBackend.file() reads a 20 MiB file in order and at random offsets, and check() sees changes",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using folder = await sftpFolder(server, "source-");
    const size = 20 * 1024 * 1024 + 12_345;
    const data = pattern(size);
    await Deno.writeFile(join(folder.path, "big.bin"), data);
    await Deno.writeTextFile(join(folder.path, "small.txt"), "small");
    await chownTo(server, folder.path);
    await using source = await open(server, folder.url);
    const entry = async (rel: string) => (await source.stat(rel))!;

    await t.step("in order, 1 MiB at a time with 8 reads in flight", async () => {
      const file = source.file({ path: "big.bin", ...await entry("big.bin") });
      assert.equal(file.localPath, undefined);
      const reader = await file.open();
      try {
        assert.deepEqual(await readSequentially(reader, size), data);
      } finally {
        await reader.close();
      }
      await file.check();
    });

    await t.step("at random offsets and lengths, many at once; fewer bytes at the end, none past it", async () => {
      const file = source.file({ path: "big.bin", ...await entry("big.bin") });
      const reader = await file.open();
      try {
        let seed = 7;
        const next = (n: number) => {
          seed = (seed * 1103515245 + 12345) % 2 ** 31;
          return seed % n;
        };
        const reads = Array.from({ length: 40 }, async () => {
          const offset = next(size);
          const into = new Uint8Array(1 + next(3 * 1024 * 1024));
          const n = await reader.read(offset, into);
          assert.equal(n, Math.min(into.length, size - offset));
          assert.deepEqual(into.subarray(0, n), data.subarray(offset, offset + n));
        });
        await Promise.all(reads);
        const tail = new Uint8Array(1000);
        assert.equal(await reader.read(size - 10, tail), 10);
        assert.deepEqual(tail.subarray(0, 10), data.subarray(size - 10));
        assert.equal(await reader.read(size, tail), 0);
        assert.equal(await reader.read(size + 5000, tail), 0);
        assert.equal(await reader.read(0, new Uint8Array(0)), 0);
      } finally {
        await reader.close();
      }
      await reader.close(); // twice: no error
    });

    await t.step("a file changed during a read: check() throws ChangedError", async () => {
      const file = source.file({ path: "big.bin", ...await entry("big.bin") });
      const reader = await file.open();
      const first = new Uint8Array(1 << 20);
      assert.equal(await reader.read(0, first), first.length);
      // Rewritten in place, same size, a new mtime: what a writer on the server does.
      const other = pattern(size, 2);
      await Deno.writeFile(join(folder.path, "big.bin"), other);
      await Deno.utime(join(folder.path, "big.bin"), 1_700_000_000, 1_700_000_000);
      const rest = new Uint8Array(size - first.length);
      assert.equal(await reader.read(first.length, rest), rest.length);
      await reader.close();
      await assert.rejects(file.check(), ChangedError);
    });

    await t.step("check() judges the file as it was read: a change after the last read is the next run's", async () => {
      // Its lstat goes out with the read that reaches the end (one round trip less a file).
      const listedNow = await entry("small.txt");
      const file = source.file({ path: "small.txt", ...listedNow });
      const reader = await file.open();
      const data = new Uint8Array(listedNow.size);
      assert.equal(await reader.read(0, data), 5);
      await reader.close();
      await Deno.writeTextFile(join(folder.path, "small.txt"), "later, longer");
      await file.check();
      await assert.rejects(source.file({ path: "small.txt", ...listedNow }).check(), ChangedError, "afresh");
      await Deno.writeTextFile(join(folder.path, "small.txt"), "small");
      await Deno.utime(join(folder.path, "small.txt"), listedNow.mtimeMs / 1000, listedNow.mtimeMs / 1000);
    });

    await t.step("a file that grew, or only got a new mtime, is ChangedError too", async () => {
      const listed = await entry("small.txt");
      const file = source.file({ path: "small.txt", ...listed });
      await file.check();
      await Deno.writeTextFile(join(folder.path, "small.txt"), "!", { append: true });
      await Deno.utime(join(folder.path, "small.txt"), listed.mtimeMs / 1000, listed.mtimeMs / 1000);
      await assert.rejects(file.check(), ChangedError, "grew");
      const now = await entry("small.txt");
      const again = source.file({ path: "small.txt", ...now });
      await Deno.utime(join(folder.path, "small.txt"), now.mtimeMs / 1000 + 1, now.mtimeMs / 1000 + 1);
      await assert.rejects(again.check(), ChangedError, "touched");
      // A sub-second difference the server cannot carry is no change.
      const same = source.file({ path: "small.txt", ...await entry("small.txt") });
      const s = (await entry("small.txt")).mtimeMs / 1000;
      await Deno.utime(join(folder.path, "small.txt"), s + 0.5, s + 0.5);
      await same.check();
    });

    await t.step("a vanished file: open() and check() throw NotFound", async () => {
      const file = source.file({ path: "small.txt", ...await entry("small.txt") });
      await Deno.remove(join(folder.path, "small.txt"));
      await assert.rejects(file.open(), Deno.errors.NotFound);
      await assert.rejects(file.check(), Deno.errors.NotFound);
    });

    await t.step("an aborted read rejects with the signal's reason", async () => {
      const controller = new AbortController();
      const file = source.file({ path: "big.bin", ...await entry("big.bin") });
      const reader = await file.open(controller.signal);
      controller.abort(new Error("stop"));
      await assert.rejects(reader.read(0, new Uint8Array(10)), /stop/);
      await reader.close();
    });
  },
);

remoteTest(
  "LocalBackend.copy() and SftpBackend.copy() from an SFTP source: bytes, modes and mtimes, atomically",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using folder = await sftpFolder(server, "source-");
    await using other = await sftpFolder(server, "replica-");
    await using local = await tempDir();
    const big = pattern(5 * 1024 * 1024 + 777, 3);
    const huge = pattern(1024 * 1024 + 1, 4); // just over the in-memory size
    await writeTree(folder.path, { "small.txt": "small", "empty.txt": "", "big.bin": big, "d": { "huge.bin": huge } });
    await Deno.chmod(join(folder.path, "big.bin"), 0o600);
    await Deno.chmod(join(folder.path, "small.txt"), 0o755);
    for (const [i, rel] of ["small.txt", "empty.txt", "big.bin", "d/huge.bin"].entries()) {
      await Deno.utime(join(folder.path, rel), 1_650_000_000 + i, 1_650_000_000 + i);
    }
    await chownTo(server, folder.path);
    await Deno.mkdir(join(local.path, "d"));
    await Deno.mkdir(join(other.path, "d"));
    await chownTo(server, other.path);
    await using source = await open(server, folder.url);
    const progress = new BigInt64Array(new SharedArrayBuffer(8));
    const localReplica = new LocalBackend(local.path, { progress });
    await using sftpReplica = await open(server, other.url, { readOnly: false, progress });
    const files = ["small.txt", "empty.txt", "big.bin", "d/huge.bin"];

    for (
      const [name, replica, root] of [
        ["into a local folder (the generic reader path)", localReplica, local.path],
        ["into another SFTP folder (reads and writes in flight)", sftpReplica, other.path],
      ] as const
    ) {
      await t.step(name, async () => {
        const results = await Promise.all(files.map(async (rel) => {
          const entry = await listed(folder.path, rel);
          return await replica.copy({ op: "copy", ...entry }, source.file(entry));
        }));
        assert.deepEqual(results.map((r) => r.size), [5, 0, big.length, huge.length]);
        for (const rel of files) {
          const a = await Deno.lstat(join(folder.path, rel));
          const b = await Deno.lstat(join(root, rel));
          assert.equal(b.mode! & 0o7777, a.mode! & 0o7777, rel);
          assert.equal(b.mtime!.getTime(), a.mtime!.getTime(), rel);
        }
        // Then the folders' attributes, as the engine sets them last.
        for (const dir of ["d", ""]) {
          const info = await Deno.lstat(join(folder.path, dir));
          await replica.setDirAttrs({ path: dir, mtimeMs: info.mtime!.getTime(), mode: info.mode! & 0o7777 });
        }
        assert.deepEqual(await Deno.readFile(join(root, "big.bin")), big);
        assert.deepEqual(await Deno.readFile(join(root, "d/huge.bin")), huge);
        assert.equal(await mirrorDiff(folder.path, root), "");
        assert.deepEqual(await tempsUnder(root), []);
        assert.equal(progress[0], 0n, "progress is given back when the copies end");
      });
    }

    await t.step("a source that changed since it was listed: ChangedError, nothing put in place", async () => {
      for (const [replica, root] of [[localReplica, local.path], [sftpReplica, other.path]] as const) {
        for (const rel of ["small.txt", "big.bin"]) {
          const entry = await listed(folder.path, rel);
          const stale = { ...entry, path: `${rel}.stale`, mtimeMs: entry.mtimeMs - 5000 };
          const from = { ...source.file({ ...entry, mtimeMs: stale.mtimeMs }), path: stale.path };
          await assert.rejects(replica.copy({ op: "copy", ...stale }, from), ChangedError, `${root} ${rel}`);
          await assert.rejects(Deno.lstat(join(root, stale.path)), Deno.errors.NotFound);
        }
        assert.deepEqual(await tempsUnder(root), []);
      }
    });

    await t.step("a source that vanished: NotFound, and nothing left behind", async () => {
      const ghost = { path: "ghost.bin", size: 3 << 20, mtimeMs: 1_650_000_000_000, mode: 0o644 };
      for (const [replica, root] of [[localReplica, local.path], [sftpReplica, other.path]] as const) {
        await assert.rejects(replica.copy({ op: "copy", ...ghost }, source.file(ghost)), Deno.errors.NotFound);
        await assert.rejects(Deno.lstat(join(root, "ghost.bin")), Deno.errors.NotFound);
        assert.deepEqual(await tempsUnder(root), []);
      }
    });
  },
);

remoteTest(
  "SftpBackend.copy() and LocalBackend.copy(): many large files at once share the memory budgets, and every byte arrives",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using folder = await sftpFolder(server, "source-");
    await using other = await sftpFolder(server, "replica-");
    await using local = await tempDir();
    await using up = await sftpFolder(server, "up-");
    const files = Array.from({ length: 24 }, (_, i) => [`f${i}.bin`, pattern((3 << 19) + i * 4099, 10 + i)] as const);
    await writeTree(folder.path, Object.fromEntries(files));
    await chownTo(server, folder.path);
    await using source = await open(server, folder.url);
    const localSource = new LocalBackend(folder.path, { readOnly: true });
    await using sftpReplica = await open(server, other.url, { readOnly: false });
    await using upReplica = await open(server, up.url, { readOnly: false });
    for (
      const [name, replica, root, from] of [
        ["from SFTP into a local folder", new LocalBackend(local.path), local.path, source],
        ["from SFTP into SFTP", sftpReplica, other.path, source],
        ["from a local folder into SFTP", upReplica, up.path, localSource],
      ] as const
    ) {
      await t.step(name, async () => {
        await Promise.all(files.map(async ([rel]) => {
          const entry = await listed(folder.path, rel);
          await replica.copy({ op: "copy", ...entry }, from.file(entry));
        }));
        for (const [rel, data] of files) assert.deepEqual(await Deno.readFile(join(root, rel)), data, rel);
        assert.deepEqual(await tempsUnder(root), []);
      });
    }
  },
);

remoteTest("SftpBackend as a source: the engine's walk is served by the read-ahead", "sftp", sftpServer, async (
  server,
) => {
  await using folder = await sftpFolder(server, "source-");
  const tree: Record<string, Record<string, Record<string, string>>> = {};
  for (let i = 0; i < 12; i++) {
    tree[`d${i}`] = {};
    for (let j = 0; j < 5; j++) tree[`d${i}`]![`e${j}`] = { "f.txt": `${i}/${j}` };
  }
  await writeTree(folder.path, tree);
  await chownTo(server, folder.path);
  const walkAll = async (backend: Backend) => {
    const seen: string[] = [];
    const walk = listWalk(backend, {});
    try {
      for (let batch; (batch = await walk.next());) {
        const dir = batch.dirs[0]!;
        for (const [name, entry] of entries(batch)) seen.push(`${dir}/${name}:${entry.kind}:${entry.size}`);
      }
    } finally {
      walk.close();
    }
    return seen;
  };
  await using plain = await open(server, folder.url, {}, { readAhead: 0 });
  await using ahead = await open(server, folder.url);
  const expected = await walkAll(plain);
  assert.equal(expected.length, 12 + 12 * 5 + 12 * 5);
  assert.deepEqual(await walkAll(ahead), expected);
  const stats = (ahead as unknown as { readAheadStats: { hits: number; misses: number } }).readAheadStats;
  assert.equal(stats.hits, 12 + 12 * 5, `read-ahead: ${JSON.stringify(stats)}`);
  assert.equal(stats.misses, 1, "only the root is listed on demand");
});

remoteTest(
  "SftpBackend as a source: a connection cut mid-download is ConnectionLostError, and the copy leaves nothing",
  "sftp",
  sftpServer,
  async (server) => {
    await using folder = await sftpFolder(server, "source-");
    await using local = await tempDir();
    const size = 64 * 1024 * 1024;
    await Deno.writeFile(join(folder.path, "big.bin"), pattern(size, 5));
    await chownTo(server, folder.path);
    await using proxy = await cutProxy(server);
    await using source = await open(server, proxy.url(folder.path), { knownHosts: proxy.knownHosts });
    const progress = new BigInt64Array(new SharedArrayBuffer(8));
    const replica = new LocalBackend(local.path, { progress });
    const entry = (await source.stat("big.bin"))!;
    const copying = replica.copy({ op: "copy", path: "big.bin", ...entry }, source.file({ path: "big.bin", ...entry }));
    for (let i = 0; progress[0]! < 4n << 20n; i++) {
      assert.ok(i < 2000, "the download did not start");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    proxy.cut();
    await assert.rejects(copying, (error: Error) => {
      assert.ok(error instanceof ConnectionLostError, `${error.name}: ${error.message}`);
      assert.match(error.message, /^Connection to '127\.0\.0\.1:\d+' lost: ssh: /);
      return true;
    });
    assert.deepEqual([...Deno.readDirSync(local.path)], [], "no temp file and nothing at the final name");
    await assert.rejects(source.stat("big.bin"), ConnectionLostError);
  },
);

/**
 * A TCP proxy to the SFTP server that the test cuts when it likes, with a known_hosts file
 * naming the server's key under the proxy's address.
 */
async function cutProxy(server: SftpServer): Promise<
  { url: (path: string) => string; knownHosts: string; cut: () => void } & AsyncDisposable
> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const conns = new Set<Deno.Conn>();
  const cut = () => {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
    conns.clear();
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      const upstream = await Deno.connect({ hostname: server.host, port: server.port });
      conns.add(conn).add(upstream);
      conn.readable.pipeTo(upstream.writable).catch(() => {});
      upstream.readable.pipeTo(conn.writable).catch(() => {});
    }
  })().catch(() => {});
  const dir = await Deno.makeTempDir({ prefix: "foldersync-proxy-" });
  const knownHosts = join(dir, "known_hosts");
  const key = (await Deno.readTextFile(server.knownHosts)).trim().split(/\s+/).slice(1).join(" ");
  await Deno.writeTextFile(knownHosts, `[127.0.0.1]:${port} ${key}\n`);
  return {
    url: (path) => `sftp://${server.user}@127.0.0.1:${port}${path}`,
    knownHosts,
    cut,
    [Symbol.asyncDispose]: async () => {
      listener.close();
      cut();
      await accepting;
      await Deno.remove(dir, { recursive: true });
    },
  };
}
