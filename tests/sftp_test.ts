/**
 * The SFTP backend as a replica against a real OpenSSH server (tests/remote_env.ts finds it), through the
 * system's ssh, judged from the local view of the server's folder (lstat, rsync). The pure
 * parts (ssh's command line, its stderr as one line) are in ssh_command_test.ts.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { createHmac } from "node:crypto";
import { Buffer } from "node:buffer";
import { chownTo, remoteTest, sftpFolder, type SftpServer, sftpServer } from "./remote_env.ts";
import { mirrorDiff, readingFrom, tempDir, type TestBackend, waitFor, writeTree } from "./helpers.ts";
import { openSftpReplica, type SftpInternals } from "../lib/backend/sftp/sftp_replica.ts";
import { parseTarget } from "../lib/backend/registry.ts";
import { type SftpTarget } from "../lib/backend/target.ts";
import { LOCK_NAME } from "../lib/model/lock.ts";
import { type Backend, type BackendOptions } from "../lib/backend/backend.ts";
import { compareNames, type Entry, type ListingBatch } from "../lib/model/listing.ts";
import { ChangedError, ConnectionLostError, LockedError, UsageError } from "../lib/model/errors.ts";
import { TEMP_PATTERN } from "../lib/model/names.ts";
import { compileFilter } from "../lib/engine/filter_compile.ts";
import { getHasher } from "../lib/content/hash.ts";

// ---------------------------------------------------------------------------------------------
// Against the real server

/**
 * No ssh config (`ssh -F /dev/null`) and no agent: the tests depend on nothing of the
 * machine's ~/.ssh (ssh reads the home of the account, not $HOME).
 */
const EMPTY_CONFIG = "/dev/null";

function options(server: SftpServer, extra: Partial<BackendOptions> = {}): BackendOptions {
  return {
    jobs: 4,
    readOnly: false,
    sshKey: server.key,
    knownHosts: server.knownHosts,
    sshConfig: EMPTY_CONFIG,
    sshOptions: ["IdentityAgent=none"],
    ...extra,
  };
}

async function open(
  server: SftpServer,
  url: string,
  source: string,
  extra: Partial<BackendOptions> = {},
  internals: SftpInternals = {},
): Promise<TestBackend & AsyncDisposable> {
  const replica = await openSftpReplica(parseTarget(url) as SftpTarget, options(server, extra), internals);
  return Object.assign(readingFrom(replica, source), { [Symbol.asyncDispose]: () => replica.close() });
}

function entries(batch: ListingBatch): Array<[string, Entry]> {
  const out: Array<[string, Entry]> = [];
  for (let i = batch.start(0); i < batch.end(0); i++) out.push([batch.names[i]!, batch.entry(i)]);
  return out;
}

async function tempLeft(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) if (TEMP_PATTERN.test(entry.name)) names.push(entry.name);
  return names;
}

/** A source folder with one file of `content`, mode and mtime (whole seconds, as SFTP keeps). */
async function sourceFile(
  dir: string,
  name: string,
  content: string | Uint8Array,
  mode = 0o644,
  mtimeS = 1_700_000_000,
) {
  const path = join(dir, name);
  if (typeof content === "string") await Deno.writeTextFile(path, content);
  else await Deno.writeFile(path, content);
  await Deno.chmod(path, mode);
  await Deno.utime(path, mtimeS, mtimeS);
  const info = await Deno.lstat(path);
  return { op: "copy" as const, path: name, size: info.size, mtimeMs: info.mtime!.getTime(), mode };
}

remoteTest(
  "SftpBackend.list() sorts by UTF-16 order, filters, reads links, hides the lock",
  "sftp",
  sftpServer,
  async (server) => {
    await using folder = await sftpFolder(server);
    await using src = await tempDir();
    await writeTree(folder.path, {
      "b.txt": "bb",
      "B.txt": "B",
      "a.txt": "a",
      "é.txt": "e",
      "_x": "x",
      "skip.tmp": "no",
      "z-dir": { "inner.txt": "i", "deeper": {} },
      "empty": {},
      "link": { link: "a.txt" },
      "dangling": { link: "../nowhere" },
      [LOCK_NAME]: "{}",
    });
    await Deno.chmod(join(folder.path, "a.txt"), 0o600);
    await Deno.utime(join(folder.path, "a.txt"), 1_600_000_000.789, 1_600_000_000.789);
    await chownTo(server, folder.path);
    await using replica = await open(server, folder.url, src.path);
    const filter = compileFilter({ patterns: ["*.tmp"] });
    const batch = await replica.list("", { fixPermissions: false, filter });
    const listed = entries(batch);
    const names = listed.map(([name]) => name);
    assert.deepEqual(names, [...names].sort(compareNames));
    assert.deepEqual(names, ["B.txt", "_x", "a.txt", "b.txt", "dangling", "empty", "link", "z-dir", "é.txt"]);
    const byName = new Map(listed);
    assert.deepEqual(byName.get("a.txt"), { kind: "file", size: 1, mtimeMs: 1_600_000_000_000, mode: 0o600 });
    assert.equal(byName.get("link")!.kind, "symlink");
    assert.equal(byName.get("link")!.target, "a.txt");
    assert.equal(byName.get("dangling")!.target, "../nowhere");
    assert.equal(byName.get("empty")!.kind, "dir");
    assert.equal(byName.get("empty")!.size, 0);
    const sub = entries(await replica.list("z-dir", { fixPermissions: false }));
    assert.deepEqual(sub.map(([n, e]) => [n, e.kind]), [["deeper", "dir"], ["inner.txt", "file"]]);
    const gone = await replica.list("no-such-dir", { fixPermissions: false });
    assert.equal(gone.flags[0]! & 2, 2, "a vanished directory is flagged VANISHED");
    assert.deepEqual(await replica.root().then((e) => e?.kind), "dir");
  },
);

remoteTest(
  "SftpBackend.copy() puts files in place atomically with mode and mtime",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using folder = await sftpFolder(server);
    await using src = await tempDir();
    await using replica = await open(server, folder.url, src.path);

    await t.step("a new file", async () => {
      const action = await sourceFile(src.path, "new.txt", "hello", 0o640, 1_700_000_123);
      const result = await replica.copy(action);
      assert.deepEqual(result, { size: 5, backedUp: false });
      const info = await Deno.lstat(join(folder.path, "new.txt"));
      assert.equal(await Deno.readTextFile(join(folder.path, "new.txt")), "hello");
      assert.equal(info.mode! & 0o7777, 0o640);
      assert.equal(info.mtime!.getTime(), 1_700_000_123_000);
      assert.deepEqual(await tempLeft(folder.path), []);
    });

    await t.step("an update over an existing file, large, counting progress", async () => {
      const big = new Uint8Array(5 * 1024 * 1024 + 123).map((_, i) => (i * 7) & 255);
      await Deno.writeTextFile(join(folder.path, "big.bin"), "old");
      const action = { ...await sourceFile(src.path, "big.bin", big, 0o600), op: "update" as const };
      const progress = new BigInt64Array(new SharedArrayBuffer(8));
      await using other = await open(server, folder.url, src.path, { progress });
      await other.copy(action);
      assert.deepEqual(await Deno.readFile(join(folder.path, "big.bin")), big);
      assert.equal((await Deno.lstat(join(folder.path, "big.bin"))).mode! & 0o7777, 0o600);
      assert.equal(progress[0], 0n, "progress is given back when the copy ends");
      assert.deepEqual(await tempLeft(folder.path), []);
    });

    await t.step("a source that changed since it was listed is ChangedError, and nothing is put in place", async () => {
      // The engine copies it once more as it now is (tests/apply_test.ts).
      const action = await sourceFile(src.path, "moving.txt", "second version");
      await assert.rejects(replica.copy({ ...action, size: 3, mtimeMs: action.mtimeMs - 5000 }), ChangedError);
      await assert.rejects(Deno.lstat(join(folder.path, "moving.txt")), Deno.errors.NotFound);
      assert.deepEqual(await tempLeft(folder.path), []);
    });

    await t.step("a vanished source throws NotFound and leaves nothing", async () => {
      await assert.rejects(
        replica.copy({ op: "copy", path: "ghost.txt", size: 1, mtimeMs: 0, mode: 0o644 }),
        Deno.errors.NotFound,
      );
      assert.deepEqual(await tempLeft(folder.path), []);
    });

    await t.step("an empty file", async () => {
      await replica.copy(await sourceFile(src.path, "empty.txt", ""));
      assert.equal((await Deno.lstat(join(folder.path, "empty.txt"))).size, 0);
    });
  },
);

remoteTest("SftpBackend mirrors a tree that rsync then finds equal", "sftp", sftpServer, async (server) => {
  await using folder = await sftpFolder(server);
  await using src = await tempDir();
  await writeTree(src.path, {
    "a.txt": "a",
    "docs": { "r.md": "readme", "sub": { "deep.txt": "deep" }, "empty": {} },
    "link": { link: "docs/r.md" },
  });
  await Deno.chmod(join(src.path, "docs/sub"), 0o750);
  const paths = ["a.txt", "docs/r.md", "docs/sub/deep.txt", "docs/empty", "docs/sub", "docs", "link", ""];
  for (const [i, rel] of paths.entries()) {
    const full = rel === "" ? src.path : join(src.path, rel);
    const t = 1_650_000_000 + i;
    if (rel === "link") {
      await new Deno.Command("touch", { args: ["-h", "-d", `@${t}`, full] }).output();
    } else await Deno.utime(full, t, t);
  }
  await using replica = await open(server, folder.url, src.path);
  const walk = async (rel: string): Promise<void> => {
    const full = rel === "" ? src.path : join(src.path, rel);
    for await (const entry of Deno.readDir(full)) {
      const child = rel === "" ? entry.name : `${rel}/${entry.name}`;
      const info = await Deno.lstat(join(src.path, child));
      if (info.isDirectory) {
        await replica.mkdir(child);
        await walk(child);
        await replica.setDirAttrs({ path: child, mtimeMs: info.mtime!.getTime(), mode: info.mode! & 0o7777 });
      } else if (info.isSymlink) {
        const target = await Deno.readLink(join(src.path, child));
        await replica.link({ op: "link", path: child, target, mtimeMs: info.mtime!.getTime() });
      } else {
        const copy = { op: "copy" as const, path: child, size: info.size, mtimeMs: info.mtime!.getTime() };
        await replica.copy({ ...copy, mode: info.mode! & 0o7777 });
      }
    }
  };
  await walk("");
  const root = await Deno.lstat(src.path);
  await replica.setDirAttrs({ path: "", mtimeMs: root.mtime!.getTime(), mode: root.mode! & 0o7777 });
  assert.equal(await mirrorDiff(src.path, folder.path), "");
  assert.equal(replica.caps.linkTimes, true, "OpenSSH offers lsetstat@openssh.com");
  assert.equal((await Deno.lstat(join(folder.path, "link"))).mtime!.getTime(), 1_650_000_006_000);
});

remoteTest("SftpBackend links, attributes and removals", "sftp", sftpServer, async (server, t) => {
  await using folder = await sftpFolder(server);
  await using src = await tempDir();
  await writeTree(folder.path, { "f.txt": "f", "d": { "x": "x" }, "old-link": { link: "f.txt" } });
  await chownTo(server, folder.path);
  await using replica = await open(server, folder.url, src.path);

  await t.step("link() makes a new link and replaces one, never leaving a temp name", async () => {
    assert.equal(
      await replica.link({ op: "link", path: "l", target: "some/where", mtimeMs: 1_500_000_000_000 }),
      false,
    );
    assert.equal(await Deno.readLink(join(folder.path, "l")), "some/where");
    assert.equal((await Deno.lstat(join(folder.path, "l"))).mtime!.getTime(), 1_500_000_000_000);
    await replica.link({ op: "link", path: "old-link", target: "d/x", mtimeMs: 1_500_000_000_000, replace: "symlink" });
    assert.equal(await Deno.readLink(join(folder.path, "old-link")), "d/x");
    assert.deepEqual(await tempLeft(folder.path), []);
  });

  await t.step("setAttrs() and setDirAttrs() set modes and mtimes to the second", async () => {
    await replica.setAttrs({
      op: "attrs",
      path: "f.txt",
      kind: "file",
      mtimeMs: 1_400_000_000_999,
      mode: 0o604,
      reason: "mode",
    });
    const info = await Deno.lstat(join(folder.path, "f.txt"));
    assert.equal(info.mode! & 0o7777, 0o604);
    assert.equal(info.mtime!.getTime(), 1_400_000_000_000);
    await replica.setAttrs({
      op: "attrs",
      path: "l",
      kind: "symlink",
      mtimeMs: 1_300_000_000_000,
      mode: 0,
      reason: "mtime",
    });
    assert.equal((await Deno.lstat(join(folder.path, "l"))).mtime!.getTime(), 1_300_000_000_000);
    await replica.setDirAttrs({ path: "d", mtimeMs: 1_200_000_000_000, mode: 0o711 });
    const dir = await Deno.lstat(join(folder.path, "d"));
    assert.equal(dir.mode! & 0o7777, 0o711);
    assert.equal(dir.mtime!.getTime(), 1_200_000_000_000);
  });

  await t.step("remove() removes files, links and emptied directories; NotFound when gone", async () => {
    assert.equal(await replica.remove({ op: "remove", path: "d/x", kind: "file" }), false);
    await replica.remove({ op: "remove", path: "d", kind: "dir" });
    await replica.remove({ op: "remove", path: "l", kind: "symlink" });
    await assert.rejects(Deno.lstat(join(folder.path, "d")), Deno.errors.NotFound);
    await assert.rejects(Deno.lstat(join(folder.path, "l")), Deno.errors.NotFound);
    await assert.rejects(replica.remove({ op: "remove", path: "d", kind: "dir" }), Deno.errors.NotFound);
    await assert.rejects(replica.remove({ op: "remove", path: "nope.txt", kind: "file" }), Deno.errors.NotFound);
  });

  await t.step("mkdir() makes a directory", async () => {
    await replica.mkdir("new-dir");
    assert.ok((await Deno.lstat(join(folder.path, "new-dir"))).isDirectory);
  });
});

remoteTest("SftpBackend.createRoot() and root() for a missing replica folder", "sftp", sftpServer, async (server) => {
  await using folder = await sftpFolder(server);
  await using src = await tempDir();
  await using replica = await open(server, `${folder.url}/a/b`, src.path);
  assert.equal(await replica.root(), undefined);
  await assert.rejects(replica.createRoot(false), Deno.errors.NotFound);
  await replica.createRoot(true);
  assert.ok((await Deno.lstat(join(folder.path, "a/b"))).isDirectory);
  assert.equal((await replica.root())?.kind, "dir");
  await using sibling = await open(server, `${folder.url}/a/c`, src.path);
  await sibling.createRoot(false);
  assert.ok((await Deno.lstat(join(folder.path, "a/c"))).isDirectory);
});

remoteTest("SftpBackend with --backup-dir moves old versions aside", "sftp", sftpServer, async (server, t) => {
  await using folder = await sftpFolder(server);
  await using src = await tempDir();
  await writeTree(folder.path, { "doc.txt": "v1", "gone.txt": "bye", "sub": { "x.txt": "x" } });
  await chownTo(server, folder.path);
  const started = new Date("2026-11-22T20:51:03Z");

  await t.step("a relative backup folder lies inside the replica and is protected", async () => {
    await using replica = await open(server, folder.url, src.path, { backupDir: "old", started });
    assert.equal(replica.protect, "old");
    assert.equal(replica.backsUp, true);
    const update = { ...await sourceFile(src.path, "doc.txt", "v2"), op: "update" as const };
    assert.deepEqual(await replica.copy(update), { size: 2, backedUp: true });
    assert.equal(await Deno.readTextFile(join(folder.path, "doc.txt")), "v2");
    assert.equal(await Deno.readTextFile(join(folder.path, "old/doc.txt")), "v1");
    assert.equal(await replica.remove({ op: "remove", path: "gone.txt", kind: "file" }), true);
    assert.equal(await Deno.readTextFile(join(folder.path, "old/gone.txt")), "bye");
    await replica.remove({ op: "remove", path: "sub/x.txt", kind: "file" });
    await replica.remove({ op: "remove", path: "sub", kind: "dir" });
    assert.equal(await Deno.readTextFile(join(folder.path, "old/sub/x.txt")), "x");
    await assert.rejects(Deno.lstat(join(folder.path, "sub")), Deno.errors.NotFound);
  });

  await t.step("a taken name gets the run's timestamp", async () => {
    await using replica = await open(server, folder.url, src.path, { backupDir: "old", started });
    const update = { ...await sourceFile(src.path, "doc.txt", "v3"), op: "update" as const };
    await replica.copy(update);
    assert.equal(await Deno.readTextFile(join(folder.path, "old/doc.txt~2026-11-22T20-51-03")), "v2");
    await replica.copy({ ...await sourceFile(src.path, "doc.txt", "v4"), op: "update" as const });
    assert.equal(await Deno.readTextFile(join(folder.path, "old/doc.txt~2026-11-22T20-51-03-2")), "v3");
  });

  await t.step("an absolute backup folder outside the replica, and another host refused", async () => {
    const outside = `${folder.path}-bak`;
    try {
      await using replica = await open(server, `${folder.url}/`, src.path, { backupDir: outside, started });
      assert.equal(replica.protect, undefined);
      await replica.remove({ op: "remove", path: "doc.txt", kind: "file" });
      assert.equal(await Deno.readTextFile(join(outside, "doc.txt")), "v4");
    } finally {
      await Deno.remove(outside, { recursive: true }).catch(() => {});
    }
    await assert.rejects(
      open(server, folder.url, src.path, { backupDir: "sftp://elsewhere/bak" }),
      (error: Error) => error instanceof UsageError && /same|host/.test(error.message),
    );
  });
});

remoteTest(
  "SftpBackend.lock() is exclusive, takes over a stale lock, and writes nothing read-only",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using folder = await sftpFolder(server);
    await using src = await tempDir();
    const lockPath = join(folder.path, LOCK_NAME);

    await t.step("a second run is refused while the first holds the lock", async () => {
      await using first = await open(server, folder.url, src.path);
      await using second = await open(server, folder.url, src.path);
      {
        await using _held = await first.lock();
        const info = JSON.parse(await Deno.readTextFile(lockPath));
        assert.equal(info.pid, Deno.pid);
        assert.equal(info.host, Deno.hostname());
        await assert.rejects(second.lock(), LockedError);
      }
      await assert.rejects(Deno.lstat(lockPath), Deno.errors.NotFound, "released on dispose");
    });

    await t.step("a lock left by a dead process on this host is taken over", async () => {
      const dead = new Deno.Command("true").spawn();
      const { pid } = dead;
      await dead.status;
      await Deno.writeTextFile(lockPath, JSON.stringify({ host: Deno.hostname(), pid, time: Date.now() }));
      await chownTo(server, lockPath);
      // As lib/backend/open.ts says once it holds this host's lock file: no other process here holds the replica.
      await using replica = await open(server, folder.url, src.path, { alive: (pid) => pid === Deno.pid });
      {
        await using _held = await replica.lock();
        assert.equal(JSON.parse(await Deno.readTextFile(lockPath)).pid, Deno.pid);
      }
      await assert.rejects(Deno.lstat(lockPath), Deno.errors.NotFound);
    });

    await t.step("a lock of a live process on another host is respected", async () => {
      await Deno.writeTextFile(lockPath, JSON.stringify({ host: "elsewhere", pid: 1, time: Date.now() }));
      await using replica = await open(server, folder.url, src.path);
      await assert.rejects(
        replica.lock(),
        (error: Error) => error instanceof LockedError && /elsewhere/.test(error.message),
      );
      await Deno.remove(lockPath);
    });

    await t.step("close() releases a lock still held", async () => {
      const replica = await open(server, folder.url, src.path);
      await replica.lock();
      await Deno.lstat(lockPath);
      await replica.close();
      await assert.rejects(Deno.lstat(lockPath), Deno.errors.NotFound);
    });

    await t.step("read-only: no lock entry, nothing written", async () => {
      await using replica = await open(server, folder.url, src.path, { readOnly: true });
      await using _held = await replica.lock();
      assert.deepEqual([...Deno.readDirSync(folder.path)], []);
      await assert.rejects(replica.mkdir("x"), /read-only/);
    });
  },
);

remoteTest("SftpBackend.digest() hashes the remote file", "sftp", sftpServer, async (server) => {
  await using folder = await sftpFolder(server);
  await using src = await tempDir();
  const big = new Uint8Array(3 * 1024 * 1024 + 5).map((_, i) => (i * 31) & 255);
  await writeTree(folder.path, { "small.txt": "small", "big.bin": big });
  await using replica = await open(server, folder.url, src.path);
  const hasher = await getHasher("xxh3");
  const local = (data: Uint8Array) => {
    hasher.init();
    hasher.update(data);
    return hasher.digest();
  };
  const [a, b] = await Promise.all([replica.digest!("big.bin", "xxh3"), replica.digest!("small.txt", "xxh3")]);
  assert.equal(a, local(big));
  assert.equal(b, local(new TextEncoder().encode("small")));
  assert.equal(await replica.digest!("small.txt", "sha256"), await sha256(new TextEncoder().encode("small")));
});

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

remoteTest(
  "openSftpReplica() refuses unknown, changed and revoked host keys",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using dir = await tempDir();
    await using src = await tempDir();
    const url = `sftp://${server.user}@${server.host}:${server.port}/tmp`;
    const known = await Deno.readTextFile(server.knownHosts);
    const [, type, realKey] = known.trim().split(/\s+/);
    await new Deno.Command("ssh-keygen", { args: ["-q", "-t", "ed25519", "-N", "", "-f", join(dir.path, "other")] })
      .output();
    const otherKey = (await Deno.readTextFile(join(dir.path, "other.pub"))).split(" ")[1];
    const tryWith = async (text: string) => {
      const file = join(dir.path, "known_hosts");
      await Deno.writeTextFile(file, text);
      return await open(server, url, src.path, { knownHosts: file });
    };

    await t.step("unknown: says how to add it", async () => {
      await assert.rejects(tryWith(""), (error: Error) => {
        assert.ok(error instanceof UsageError, `${error.name}: ${error.message}`);
        assert.match(error.message, /^Unknown host key for '\[127\.0\.0\.1\]:\d+': ssh-ed25519 SHA256:/);
        assert.match(error.message, new RegExp(`ssh-keyscan -p ${server.port} 127\\.0\\.0\\.1 >> `));
        assert.ok(!error.message.includes("\n"));
        return true;
      });
    });
    await t.step("changed: loud", async () => {
      await assert.rejects(
        tryWith(`[${server.host}]:${server.port} ${type} ${otherKey}\n`),
        (error: Error) => error instanceof UsageError && /^HOST KEY OF .* HAS CHANGED/.test(error.message),
      );
    });
    await t.step("revoked", async () => {
      await assert.rejects(
        tryWith(`${known}@revoked * ${type} ${realKey}\n`),
        (error: Error) => error instanceof UsageError && /REVOKED/.test(error.message),
      );
    });
    await t.step("hashed entry: accepted", async () => {
      const salt = crypto.getRandomValues(new Uint8Array(20));
      const name = `[${server.host}]:${server.port}`;
      const hash = createHmac("sha1", salt).update(name).digest("base64");
      await using replica = await tryWith(`|1|${Buffer.from(salt).toString("base64")}|${hash} ${type} ${realKey}\n`);
      assert.equal((await replica.root())?.kind, "dir");
    });
  },
);

remoteTest(
  "openSftpReplica() says in one line why it cannot log in or connect",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using dir = await tempDir();
    await using src = await tempDir();
    const url = `sftp://${server.user}@${server.host}:${server.port}/tmp`;
    const keygen = (name: string, passphrase: string) =>
      new Deno.Command("ssh-keygen", { args: ["-q", "-t", "ed25519", "-N", passphrase, "-f", join(dir.path, name)] })
        .output();

    await t.step("a key the server does not know", async () => {
      await keygen("wrong", "");
      await assert.rejects(
        open(server, url, src.path, { sshKey: join(dir.path, "wrong") }),
        (error: Error) =>
          error instanceof UsageError && /^Authentication failed for 'fstest@127\.0\.0\.1:\d+'/.test(error.message),
      );
    });
    await t.step("the server's own key with a passphrase, and no agent", async () => {
      const locked = join(dir.path, "locked");
      await Deno.copyFile(server.key, locked);
      await Deno.chmod(locked, 0o600);
      const out = await new Deno.Command("ssh-keygen", { args: ["-q", "-p", "-P", "", "-N", "secret", "-f", locked] })
        .output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      await assert.rejects(
        open(server, url, src.path, { sshKey: locked }),
        (error: Error) =>
          error instanceof UsageError && error.message.startsWith(`Key '${locked}' needs a passphrase`) &&
          /ssh-add/.test(error.message),
      );
    });
    await t.step("a key file that does not exist", async () => {
      const missing = join(dir.path, "no-such-key");
      await assert.rejects(
        open(server, url, src.path, { sshKey: missing }),
        (error: Error) =>
          error instanceof UsageError &&
          error.message === `Cannot read the SSH key '${missing}': No such file or directory`,
      );
    });
    await t.step("a refused port", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = listener.addr.port;
      listener.close();
      await assert.rejects(
        open(server, `sftp://${server.user}@127.0.0.1:${port}/tmp`, src.path),
        (error: Error) =>
          error instanceof UsageError && error.message.startsWith(`Connection refused by '127.0.0.1:${port}'`),
      );
    });
    await t.step("an unknown host name", async () => {
      await assert.rejects(
        open(server, `sftp://${server.user}@no-such-host.invalid/tmp`, src.path),
        (error: Error) => error instanceof UsageError && error.message === "Unknown host name 'no-such-host.invalid'",
      );
    });
    await t.step("a server that never answers the handshake (ConnectTimeout)", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const held: Deno.Conn[] = [];
      const accepting = (async () => {
        for await (const conn of listener) held.push(conn);
      })();
      const config = join(dir.path, "config");
      await Deno.writeTextFile(config, "Host *\n  ConnectTimeout 1\n");
      try {
        await assert.rejects(
          open(server, `sftp://${server.user}@127.0.0.1:${listener.addr.port}/tmp`, src.path, { sshConfig: config }),
          (error: Error) =>
            error instanceof UsageError && /^Timed out waiting for the SSH handshake/.test(error.message),
        );
      } finally {
        listener.close();
        for (const conn of held) conn.close();
        await accepting.catch(() => {});
      }
    });
  },
);

remoteTest("openSftpReplica() follows an alias of the ssh config file", "sftp", sftpServer, async (server) => {
  await using dir = await tempDir();
  await using folder = await sftpFolder(server);
  const known = await Deno.readTextFile(server.knownHosts);
  await Deno.writeTextFile(join(dir.path, "known_hosts"), known.replace(/^\S+/, "the-test-server"));
  const config = join(dir.path, "config");
  await Deno.writeTextFile(
    config,
    `Host backup-box\n  HostName ${server.host}\n  Port ${server.port}\n  User ${server.user}\n` +
      `  IdentityFile ${server.key}\n  HostKeyAlias the-test-server\n  UserKnownHostsFile ${dir.path}/known_hosts\n`,
  );
  const replica = await openSftpReplica(
    parseTarget(`backup-box:${folder.path}`) as SftpTarget,
    { jobs: 1, readOnly: true, sshConfig: config },
  );
  try {
    assert.equal((await replica.root())?.kind, "dir");
  } finally {
    await replica.close();
  }
});

remoteTest(
  "SftpBackend: a connection cut mid-upload throws ConnectionLostError and leaves no file",
  "sftp",
  sftpServer,
  async (server) => {
    await using folder = await sftpFolder(server);
    await using src = await tempDir();
    // A TCP proxy that the test can cut, between the client and the real server.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const conns: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of listener) {
        const upstream = await Deno.connect({ hostname: server.host, port: server.port });
        conns.push(conn, upstream);
        conn.readable.pipeTo(upstream.writable).catch(() => {});
        upstream.readable.pipeTo(conn.writable).catch(() => {});
      }
    })();
    const knownHosts = join(src.path, "..", `${src.path.split("/").pop()}-known_hosts`);
    const known = await Deno.readTextFile(server.knownHosts);
    await Deno.writeTextFile(knownHosts, known.replace(/^\S+/, `[127.0.0.1]:${listener.addr.port}`));
    try {
      const big = new Uint8Array(64 * 1024 * 1024);
      const action = await sourceFile(src.path, "big.bin", big);
      const progress = new BigInt64Array(new SharedArrayBuffer(8));
      const url = `sftp://${server.user}@127.0.0.1:${listener.addr.port}${folder.path}`;
      await using replica = await open(server, url, src.path, { progress, knownHosts });
      const copying = replica.copy(action);
      await waitFor(() => progress[0]! > 1024n * 1024n, 20_000, "the upload to start");
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
      await assert.rejects(copying, (error: Error) => {
        assert.ok(error instanceof ConnectionLostError, `${error.name}: ${error.message}`);
        assert.match(error.message, new RegExp(`^Connection to '127\\.0\\.0\\.1:${listener.addr.port}' lost: ssh: `));
        // What ssh said of the connection, not the statistics it prints as it exits.
        assert.doesNotMatch(error.message, /Bytes per second|Transferred/);
        return true;
      });
      await assert.rejects(replica.list("", { fixPermissions: false }), ConnectionLostError);
      await assert.rejects(Deno.lstat(join(folder.path, "big.bin")), Deno.errors.NotFound);
    } finally {
      listener.close();
      await accepting.catch(() => {});
      await Deno.remove(knownHosts).catch(() => {});
    }
  },
);

remoteTest("SftpBackend read-ahead lists the same as listing one by one", "sftp", sftpServer, async (server) => {
  await using folder = await sftpFolder(server);
  await using src = await tempDir();
  const tree: Record<string, Record<string, Record<string, string>>> = {};
  for (let i = 0; i < 12; i++) {
    tree[`d${i}`] = {};
    for (let j = 0; j < 5; j++) tree[`d${i}`]![`e${j}`] = { "f.txt": `${i}/${j}` };
  }
  await writeTree(folder.path, tree);
  const walk = async (replica: Backend) => {
    const seen: string[] = [];
    const stack = [""];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      const batch = await replica.list(dir, { fixPermissions: false });
      const prefix = dir === "" ? "" : `${dir}/`;
      const children: string[] = [];
      for (const [name, entry] of entries(batch)) {
        seen.push(`${prefix}${name}:${entry.kind}:${entry.size}`);
        if (entry.kind === "dir") children.push(prefix + name);
      }
      stack.push(...children.reverse());
    }
    return seen;
  };
  await using plain = await open(server, folder.url, src.path, {}, { readAhead: 0 });
  await using ahead = await open(server, folder.url, src.path, {}, { readAhead: 8 });
  const expected = await walk(plain);
  assert.equal(expected.length, 12 + 12 * 5 + 12 * 5);
  assert.deepEqual(await walk(ahead), expected);
  const stats = (ahead as unknown as { readAheadStats: { hits: number; misses: number } }).readAheadStats;
  assert.ok(stats.hits > 60, `read-ahead hits: ${JSON.stringify(stats)}`);
});

remoteTest(
  "SftpSession reads with many requests in flight, writes a file from disk, and lists, for both directions",
  "sftp",
  sftpServer,
  async (server, t) => {
    const { planSsh, openSession } = await import("../lib/backend/sftp/connect.ts");
    await using folder = await sftpFolder(server);
    await using src = await tempDir();
    const session = await openSession(
      await planSsh(parseTarget(folder.url) as SftpTarget, options(server)),
    );
    try {
      assert.ok(session.maxRead >= 32 * 1024 && session.maxWrite >= 32 * 1024);
      assert.equal(session.maxWrite, 255 * 1024, "OpenSSH's limits@openssh.com: 255 KiB");

      await t.step(
        "writeFile() sends a file of many requests, a few in flight, and counts what is acknowledged",
        async () => {
          const data = new Uint8Array(3 * 1024 * 1024 + 7).map((_, i) => (i * 13) & 255);
          await Deno.writeFile(join(src.path, "up.bin"), data);
          using file = await Deno.open(join(src.path, "up.bin"));
          const remote = `${folder.path}/up.bin`;
          const handle = await session.open(remote, "wx", { mode: 0o600 });
          let acknowledged = 0;
          const written = await session.writeFile(handle, remote, file, {
            window: 2 * session.maxWrite,
            onWritten: (n) => acknowledged += n,
          });
          await session.close(handle, remote);
          assert.equal(written, data.length);
          assert.equal(acknowledged, data.length);
          assert.deepEqual(await Deno.readFile(join(folder.path, "up.bin")), data);
        },
      );

      await t.step("readRange() reads across request boundaries, and fewer bytes at the end of the file", async () => {
        const remote = `${folder.path}/up.bin`;
        const data = await Deno.readFile(join(folder.path, "up.bin"));
        const handle = await session.open(remote, "r");
        try {
          const middle = await session.readRange(handle, remote, 1000, 2 * session.maxRead + 5);
          assert.deepEqual(new Uint8Array(middle), data.subarray(1000, 1000 + 2 * session.maxRead + 5));
          const tail = await session.readRange(handle, remote, data.length - 10, 1024 * 1024);
          assert.deepEqual(new Uint8Array(tail), data.subarray(data.length - 10));
          assert.equal((await session.readRange(handle, remote, data.length + 5, 100)).length, 0);
        } finally {
          await session.close(handle, remote);
        }
      });

      await t.step("stat, lstat, readdir and readlink", async () => {
        await Deno.symlink("up.bin", join(folder.path, "link"));
        await chownTo(server, folder.path);
        const names = (await session.readdir(folder.path)).map((e) => e.filename).sort();
        assert.deepEqual(names, ["link", "up.bin"]);
        assert.equal(await session.readlink(`${folder.path}/link`), "up.bin");
        assert.equal((await session.stat(`${folder.path}/link`)).size, 3 * 1024 * 1024 + 7);
        assert.equal((await session.lstat(`${folder.path}/link`)).mode & 0o170000, 0o120000);
        await assert.rejects(session.lstat(`${folder.path}/none`), Deno.errors.NotFound);
      });
    } finally {
      await session.end();
    }
    await assert.rejects(session.lstat(folder.path), ConnectionLostError, "an ended session refuses requests");
  },
);
