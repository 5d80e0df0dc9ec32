/**
 * End to end through main.ts with an SFTP folder as the source: a server folder pulled into a
 * local one (`sftp://` and rsync's `user@host:path`), moved into another server folder, and a
 * local tree sent up and pulled back; the guards, bad input, and a connection cut
 * mid-download. Against the real sshd of tests/servers/; every sync is judged by rsync on the
 * server's folder as seen locally (mtimes to the second, as SFTP carries them).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  failsWithOneLine,
  mirrorDiff,
  runMain,
  snapshot,
  summaryCounts,
  tempDir,
  tempsUnder,
  writeTree,
} from "./helpers.ts";
import { chownTo, remoteTest, sftpArgs, sftpFolder, type SftpServer, sftpServer } from "./remote_env.ts";

/** What an SFTP run may use: ssh, which reads ~/.ssh and reaches the network itself (no --allow-net). */
const PERMISSIONS = ["--allow-read", "--allow-write", "--allow-run=ssh", "--allow-env", "--allow-sys"];

/** A 3 MiB file: read in 1 MiB chunks (the reader path), not whole. */
const LARGE = Uint8Array.from({ length: 3 * 1024 * 1024 + 5 }, (_, i) => (i * 7 + (i >> 12)) & 0xff);

const TREE = {
  "a.txt": "alpha",
  "run.sh": "#!/bin/sh\necho hi\n",
  "large.bin": LARGE,
  "docs": { "b.md": "bravo", "deep": { "c.txt": "charlie" } },
  "empty": {},
  "link-to-a": { link: "a.txt" },
  "dangling": { link: "nowhere/at/all" },
  "name with spaces & ü.txt": "unicode",
  "日本語": { "ファイル.txt": "nihongo" },
};

/** Writes TREE into a server folder: modes and sub-second mtimes, owned by the server's user. */
async function writeServerTree(server: SftpServer, root: string): Promise<void> {
  await writeTree(root, TREE);
  await Deno.chmod(join(root, "run.sh"), 0o755);
  await Deno.chmod(join(root, "docs"), 0o750);
  await Deno.utime(join(root, "a.txt"), new Date(1_700_000_000_123), new Date(1_700_000_000_789));
  await chownTo(server, root);
}

remoteTest(
  "pull from an SFTP folder: initial, no-op, churn, dry run, --checksum and verify, judged by rsync",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using src = await sftpFolder(server, "pull-");
    await using dst = await tempDir();
    await writeServerTree(server, src.path);
    const args = [src.url, dst.path, ...sftpArgs(server)];
    const run = (...more: string[]) => runMain([...args, ...more], { permissions: PERMISSIONS });

    await t.step("the first run copies everything into the empty folder", async () => {
      const out = await run();
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.equal(await mirrorDiff(src.path, dst.path), "");
      const c = summaryCounts(out.stdout);
      assert.deepEqual([c.copied, c.linked, c.errors], [7, 2, 0], out.stdout);
      assert.equal((await Deno.lstat(join(dst.path, "empty"))).isDirectory, true);
      assert.equal(await Deno.readLink(join(dst.path, "dangling")), "nowhere/at/all");
      assert.equal((await Deno.stat(join(dst.path, "run.sh"))).mode! & 0o777, 0o755);
      assert.equal((await Deno.stat(join(dst.path, "docs"))).mode! & 0o777, 0o750);
      // SFTP carries whole seconds: the copy has them.
      assert.equal((await Deno.stat(join(dst.path, "a.txt"))).mtime!.getTime(), 1_700_000_000_000);
      assert.deepEqual(await Deno.readFile(join(dst.path, "large.bin")), LARGE);
      assert.deepEqual(await tempsUnder(dst.path), []);
    });

    await t.step("a second run changes nothing", async () => {
      const out = await run();
      assert.equal(out.code, 0, out.stderr);
      const c = summaryCounts(out.stdout);
      assert.deepEqual([c.created, c.copied, c.updated, c.linked, c.attrs, c.removed], [0, 0, 0, 0, 0, 0], out.stdout);
    });

    await t.step("churn on the server: --dry-run shows it and changes nothing; then a run mirrors it", async () => {
      await Deno.writeTextFile(join(src.path, "a.txt"), "ALPHA"); // same size, new content and mtime
      await Deno.remove(join(src.path, "docs/deep"), { recursive: true });
      await Deno.writeTextFile(join(src.path, "docs/deep"), "now a file");
      await Deno.remove(join(src.path, "name with spaces & ü.txt"));
      await Deno.remove(join(src.path, "link-to-a"));
      await Deno.symlink("docs/b.md", join(src.path, "link-to-a"));
      await Deno.chmod(join(src.path, "run.sh"), 0o700);
      await writeTree(src.path, { "new": { "n1.txt": "n1", "n2.txt": "n2" } });
      await chownTo(server, src.path);
      const before = await snapshot(dst.path);
      const dry = await run("--dry-run");
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /would remove.*docs\/deep\/c\.txt/);
      assert.match(dry.stdout, /would (copy|update).*a\.txt/);
      assert.deepEqual(await snapshot(dst.path), before, "the dry run touched the replica");
      const out = await run();
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /remove.*name with spaces/);
      assert.equal(await mirrorDiff(src.path, dst.path), "");
      assert.equal(await Deno.readLink(join(dst.path, "link-to-a")), "docs/b.md");
    });

    await t.step("--checksum finds a change that kept size and mtime", async () => {
      const file = join(src.path, "docs/b.md");
      const { mtime } = await Deno.stat(file);
      await Deno.writeTextFile(file, "BRAVO");
      await Deno.utime(file, mtime!, mtime!);
      const plain = await run();
      assert.equal(plain.code, 0, plain.stderr);
      assert.equal(await Deno.readTextFile(join(dst.path, "docs/b.md")), "bravo", "sizes and mtimes are equal");
      const out = await run("--checksum");
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.equal(summaryCounts(out.stdout).updated, 1, out.stdout);
      assert.equal(await mirrorDiff(src.path, dst.path), "");
    });

    await t.step("verify: identical, then the differences", async () => {
      const same = await runMain(["verify", ...args], { permissions: PERMISSIONS });
      assert.equal(same.code, 0, same.stderr + same.stdout);
      await Deno.writeTextFile(join(src.path, "new/n3.txt"), "n3");
      await chownTo(server, src.path);
      const differs = await runMain(["verify", ...args], { permissions: PERMISSIONS });
      assert.equal(differs.code, 1, differs.stderr + differs.stdout);
      assert.match(differs.stdout + differs.stderr, /missing.*new\/n3\.txt/);
      await assert.rejects(Deno.lstat(join(dst.path, "new/n3.txt")), "verify changed nothing");
    });
  },
);

remoteTest("pull with rsync's user@host:path form and --ssh-port", "sftp", sftpServer, async (server) => {
  await using src = await sftpFolder(server, "pull-");
  await using dst = await tempDir();
  await writeServerTree(server, src.path);
  const from = `${server.user}@${server.host}:${src.path}`;
  // Into a folder that does not exist yet: made, as for a local source.
  const into = join(dst.path, "restored");
  const out = await runMain([from, into, "--ssh-port", String(server.port), ...sftpArgs(server)], {
    permissions: PERMISSIONS,
  });
  assert.equal(out.code, 0, out.stderr + out.stdout);
  assert.equal(await mirrorDiff(src.path, into), "");
  assert.deepEqual(await tempsUnder(into), []);
});

remoteTest(
  "from one SFTP folder into another, and local -> SFTP -> local, judged by rsync against the original",
  "sftp",
  sftpServer,
  async (server, t) => {
    await t.step("SFTP folder to SFTP folder: initial and no-op", async () => {
      await using a = await sftpFolder(server, "pull-");
      await using b = await sftpFolder(server, "replica-");
      await writeServerTree(server, a.path);
      const args = [a.url, b.url, ...sftpArgs(server)];
      const out = await runMain(args, { permissions: PERMISSIONS });
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.equal(await mirrorDiff(a.path, b.path, { exclude: [".foldersync.lock"] }), "");
      assert.deepEqual(await tempsUnder(b.path), []);
      const again = await runMain(args, { permissions: PERMISSIONS });
      assert.equal(again.code, 0, again.stderr);
      const c = summaryCounts(again.stdout);
      assert.deepEqual([c.created, c.copied, c.updated, c.attrs, c.removed], [0, 0, 0, 0, 0], again.stdout);
    });

    await t.step("a local tree sent up and pulled back is the original", async () => {
      await using original = await tempDir();
      await using back = await tempDir();
      await using remote = await sftpFolder(server, "trip-");
      await writeTree(original.path, TREE);
      await Deno.chmod(join(original.path, "run.sh"), 0o755);
      await Deno.chmod(join(original.path, "docs"), 0o750);
      for (const rel of ["a.txt", "docs", "large.bin", ""]) {
        await Deno.utime(join(original.path, rel), 1_650_000_000, 1_650_000_000);
      }
      const up = await runMain([original.path, remote.url, ...sftpArgs(server)], { permissions: PERMISSIONS });
      assert.equal(up.code, 0, up.stderr + up.stdout);
      const down = await runMain([remote.url, back.path, ...sftpArgs(server)], { permissions: PERMISSIONS });
      assert.equal(down.code, 0, down.stderr + down.stdout);
      assert.equal(await mirrorDiff(original.path, back.path), "");
      assert.equal((await Deno.lstat(back.path)).mtime!.getTime(), 1_650_000_000_000, "the root's own mtime");
    });
  },
);

remoteTest(
  "pull: the empty-source guard, a missing server folder, bad input and --watch, with nothing touched",
  "sftp",
  sftpServer,
  async (server, t) => {
    await using src = await sftpFolder(server, "pull-");
    await using empty = await sftpFolder(server, "empty-");
    await using dst = await tempDir();
    await using other = await tempDir();
    await writeServerTree(server, src.path);
    const first = await runMain([src.url, dst.path, ...sftpArgs(server)], { permissions: PERMISSIONS });
    assert.equal(first.code, 0, first.stderr + first.stdout);
    const before = await snapshot(dst.path);
    const untouched = async (what: string) => assert.deepEqual(await snapshot(dst.path), before, what);

    await t.step("an empty server folder does not empty a full local replica (exit 3)", async () => {
      const out = await runMain([empty.url, dst.path, ...sftpArgs(server)], { permissions: PERMISSIONS });
      assert.equal(out.code, 3, out.stderr + out.stdout);
      assert.match(out.stdout + out.stderr, /Source is empty but the replica has files/);
      await untouched("the empty source");
      await Deno.mkdir(join(empty.path, "only-folders/inside"), { recursive: true });
      await chownTo(server, empty.path);
      const folders = await runMain([empty.url, dst.path, ...sftpArgs(server)], { permissions: PERMISSIONS });
      assert.equal(folders.code, 3, folders.stderr + folders.stdout);
      await untouched("a source of empty folders");
    });

    await t.step("a missing server folder: exit 2, Source does not exist", async () => {
      const missing = `${src.url}/no/such/folder`;
      assert.equal(
        await failsWithOneLine([missing, dst.path, ...sftpArgs(server)]),
        `Source does not exist: '${missing}'`,
      );
      const file = `${src.url}/a.txt`;
      assert.equal(await failsWithOneLine([file, dst.path, ...sftpArgs(server)]), `Source does not exist: '${file}'`);
      await untouched("a missing source");
    });

    await t.step("an unknown host, refused authentication, a changed host key: exit 2, one line", async () => {
      await new Deno.Command("ssh-keygen", {
        args: ["-q", "-t", "ed25519", "-N", "", "-f", join(other.path, "stranger")],
      }).output();
      const [, type] = (await Deno.readTextFile(server.knownHosts)).trim().split(/\s+/);
      const otherKey = (await Deno.readTextFile(join(other.path, "stranger.pub"))).split(" ")[1];
      await Deno.writeTextFile(join(other.path, "changed"), `[${server.host}]:${server.port} ${type} ${otherKey}\n`);
      const base = ["--ssh-config", "/dev/null", "--ssh-option", "IdentityAgent=none"];
      assert.equal(
        await failsWithOneLine([`sftp://${server.user}@no-such-host.invalid/srv`, dst.path, ...sftpArgs(server)]),
        "Unknown host name 'no-such-host.invalid'",
      );
      assert.match(
        await failsWithOneLine([
          src.url,
          dst.path,
          ...base,
          "--ssh-key",
          join(other.path, "stranger"),
          "--known-hosts",
          server.knownHosts,
        ]),
        /^Authentication failed for 'fstest@127\.0\.0\.1:\d+'/,
      );
      assert.match(
        await failsWithOneLine([
          src.url,
          dst.path,
          ...base,
          "--ssh-key",
          server.key,
          "--known-hosts",
          join(other.path, "changed"),
        ]),
        /^HOST KEY OF '\[127\.0\.0\.1\]:\d+' HAS CHANGED/,
      );
      await untouched("bad input");
    });

    await t.step("--watch needs a local source: exit 2, one line", async () => {
      assert.match(
        await failsWithOneLine([src.url, dst.path, "--watch", ...sftpArgs(server)]),
        /^--watch needs a local source .*use --interval/,
      );
      await untouched("--watch");
    });
  },
);

remoteTest(
  "pull: a connection cut mid-download is exit 1 with one line, leaves the old file, and the next run completes",
  "sftp",
  sftpServer,
  async (server) => {
    await using src = await sftpFolder(server, "pull-");
    await using dst = await tempDir();
    const size = 64 << 20;
    const fresh = Uint8Array.from({ length: size }, (_, i) => (i * 13 + (i >> 16)) & 0xff);
    await writeTree(src.path, { "small.txt": "small", "big.bin": fresh });
    await chownTo(server, src.path);
    const old = new TextEncoder().encode("the old version");
    await Deno.writeFile(join(dst.path, "big.bin"), old);
    await using proxy = await cuttingProxy(server, 8 << 20);
    const out = await runMain(
      [proxy.url(src.path), dst.path, "--ssh-key", server.key, "--known-hosts", proxy.knownHosts],
      { permissions: PERMISSIONS },
    );
    assert.equal(out.code, 1, out.stderr + out.stdout);
    assert.ok(proxy.cut, "the proxy cut the connection");
    const errors = out.stderr.trim().split("\n");
    assert.equal(errors.length, 1, `one line on stderr: ${out.stderr}`);
    assert.match(errors[0]!, /Connection to '127\.0\.0\.1:\d+' lost/);
    const now = await Deno.readFile(join(dst.path, "big.bin"));
    assert.ok(
      now.length === old.length ? now.every((b, i) => b === old[i]) : now.length === size,
      "the old file or the new one at the final name",
    );
    assert.deepEqual(await tempsUnder(dst.path), []);
    const again = await runMain([src.url, dst.path, ...sftpArgs(server)], { permissions: PERMISSIONS });
    assert.equal(again.code, 0, again.stderr + again.stdout);
    assert.equal(await mirrorDiff(src.path, dst.path), "");
  },
);

/**
 * A TCP proxy to the SFTP server that cuts every connection once `cutAfter` bytes have come
 * down from the server (a download's direction), with a known_hosts file naming the server's
 * key under the proxy's address.
 */
async function cuttingProxy(server: SftpServer, cutAfter: number): Promise<
  { url: (path: string) => string; knownHosts: string; readonly cut: boolean } & AsyncDisposable
> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const open = new Set<Deno.Conn>();
  let down = 0;
  let cut = false;
  const cutAll = () => {
    cut = true;
    for (const conn of open) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
    open.clear();
  };
  const pump = async (from: Deno.Conn, to: Deno.Conn, counted: boolean) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        if (counted && (down += n) > cutAfter) return cutAll();
        for (let off = 0; off < n;) off += await to.write(buffer.subarray(off, n));
      }
    } catch {
      // cut
    }
    await to.closeWrite().catch(() => {});
  };
  const accepting = (async () => {
    for await (const client of listener) {
      const upstream = await Deno.connect({ hostname: server.host, port: server.port });
      open.add(client).add(upstream);
      pump(client, upstream, false);
      pump(upstream, client, true);
    }
  })().catch(() => {});
  const dir = await Deno.makeTempDir({ prefix: "foldersync-proxy-" });
  const knownHosts = join(dir, "known_hosts");
  const key = (await Deno.readTextFile(server.knownHosts)).trim().split(/\s+/).slice(1).join(" ");
  await Deno.writeTextFile(knownHosts, `[127.0.0.1]:${port} ${key}\n`);
  return {
    url: (path) => `sftp://${server.user}@127.0.0.1:${port}${path}`,
    knownHosts,
    get cut() {
      return cut;
    },
    [Symbol.asyncDispose]: async () => {
      listener.close();
      cutAll();
      await accepting;
      await Deno.remove(dir, { recursive: true });
    },
  };
}
