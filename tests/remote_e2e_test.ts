/**
 * End to end through main.ts into remote replicas on real servers: an OpenSSH sshd (SFTP) and
 * Ceph's radosgw (S3), both on 127.0.0.1 (see tests/remote_env.ts). Every sync is judged by an
 * independent oracle: rsync on the SFTP folder (seen locally here; mtimes to the second), and
 * rclone on the bucket (content hashes, and mtimes and modes from its metadata).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { mirrorDiff, runMain, startMain, summaryCounts, tempDir, waitFor, writeTree } from "./helpers.ts";
import {
  rclone,
  remoteTest,
  s3Bucket,
  s3Client,
  s3Env,
  type S3Server,
  s3Server,
  sftpArgs,
  sftpFolder,
  sftpServer,
} from "./remote_env.ts";
import { countingProxy, cuttingProxy, type SeenRequest } from "./proxy.ts";

/** What an S3 run may use: the network, ~/.aws, and the environment the client reads. */
const PERMISSIONS = ["--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-sys"];

/** What an SFTP run may use: ssh, which reads ~/.ssh and reaches the network itself (no --allow-net). */
const SFTP_PERMISSIONS = ["--allow-read", "--allow-write", "--allow-run=ssh", "--allow-env", "--allow-sys"];

const TREE = {
  "a.txt": "alpha",
  "run.sh": "#!/bin/sh\necho hi\n",
  docs: { "b.md": "bravo", deep: { "c.txt": "charlie" } },
  empty: {},
  "link-to-a": { link: "a.txt" },
  "dangling": { link: "nowhere/at/all" },
  "name with spaces & ü.txt": "unicode",
};

/** Writes the test tree with modes and sub-second mtimes that the replica must keep. */
async function writeSource(root: string): Promise<void> {
  await writeTree(root, TREE);
  await Deno.chmod(join(root, "run.sh"), 0o755);
  await Deno.chmod(join(root, "docs"), 0o750);
  await Deno.utime(join(root, "a.txt"), new Date(1_700_000_000_123), new Date(1_700_000_000_789));
}

// ---------------------------------------------------------------------------------------- SFTP

remoteTest("sync into an SFTP replica: initial, no-op, churn and dry run, judged by rsync", "sftp", sftpServer, async (
  server,
  t,
) => {
  await using src = await tempDir();
  await using dst = await sftpFolder(server);
  await writeSource(src.path);
  const args = [src.path, dst.url, ...sftpArgs(server)];

  await t.step("the first run copies everything, modes, links and whole-second mtimes included", async () => {
    const out = await runMain(args, { permissions: SFTP_PERMISSIONS });
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.equal(await mirrorDiff(src.path, dst.path), "");
    assert.equal((await Deno.lstat(join(dst.path, "empty"))).isDirectory, true);
    assert.equal(await Deno.readLink(join(dst.path, "dangling")), "nowhere/at/all");
    assert.equal((await Deno.stat(join(dst.path, "run.sh"))).mode! & 0o777, 0o755);
    assert.equal((await Deno.stat(join(dst.path, "a.txt"))).mtime!.getTime(), 1_700_000_000_000);
    assert.deepEqual([...Deno.readDirSync(dst.path)].filter((e) => e.name.startsWith(".foldersync")), []);
  });

  await t.step("a second run changes nothing: whole-second mtimes are the same file", async () => {
    const out = await runMain(args, { permissions: SFTP_PERMISSIONS });
    assert.equal(out.code, 0, out.stderr);
    const c = summaryCounts(out.stdout);
    assert.deepEqual([c.copied, c.updated, c.attrs, c.removed, c.created], [0, 0, 0, 0, 0], out.stdout);
  });

  await t.step("churn: an update, a removal, a type change and new files", async () => {
    await Deno.writeTextFile(join(src.path, "a.txt"), "ALPHA"); // same size, new content and mtime
    await Deno.remove(join(src.path, "docs/deep"), { recursive: true });
    await Deno.writeTextFile(join(src.path, "docs/deep"), "now a file");
    await Deno.remove(join(src.path, "name with spaces & ü.txt"));
    await writeTree(src.path, { "new": { "n1.txt": "n1", "n2.txt": "n2" } });
    const dry = await runMain([...args, "--dry-run"], { permissions: SFTP_PERMISSIONS });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would remove.*docs\/deep\/c\.txt/);
    assert.notEqual(await mirrorDiff(src.path, dst.path), "", "the dry run changed the replica");
    const out = await runMain(args, { permissions: SFTP_PERMISSIONS });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /remove.*name with spaces/);
    assert.equal(await mirrorDiff(src.path, dst.path), "");
  });

  await t.step("verify: identical, then one difference", async () => {
    const same = await runMain(["verify", src.path, dst.url, ...sftpArgs(server)], { permissions: SFTP_PERMISSIONS });
    assert.equal(same.code, 0, same.stderr + same.stdout);
    await Deno.writeTextFile(join(src.path, "new/n3.txt"), "n3");
    const differs = await runMain(["verify", src.path, dst.url, ...sftpArgs(server)], {
      permissions: SFTP_PERMISSIONS,
    });
    assert.equal(differs.code, 1);
    assert.match(differs.stdout + differs.stderr, /missing.*new\/n3\.txt/);
  });
});

remoteTest("SFTP: rsync's host:path form through an ssh config alias, and --ssh-port", "sftp", sftpServer, async (
  server,
) => {
  await using src = await tempDir();
  await using home = await tempDir();
  await using dst = await sftpFolder(server);
  await writeSource(src.path);
  const config = join(home.path, "config");
  await Deno.writeTextFile(
    config,
    `Host backup-box\n  HostName ${server.host}\n  Port ${server.port}\n  User ${server.user}\n  IdentityFile ${server.key}\n` +
      `  UserKnownHostsFile ${server.knownHosts}\n  IdentityAgent none\n`,
  );
  const out = await runMain([src.path, `backup-box:${dst.path}`, "--ssh-config", config], {
    permissions: SFTP_PERMISSIONS,
  });
  assert.equal(out.code, 0, out.stderr + out.stdout);
  assert.equal(await mirrorDiff(src.path, dst.path), "");
  await Deno.writeTextFile(join(src.path, "more.txt"), "more");
  const direct = await runMain(
    [src.path, `${server.user}@${server.host}:${dst.path}`, "--ssh-port", String(server.port), ...sftpArgs(server)],
    { permissions: SFTP_PERMISSIONS },
  );
  assert.equal(direct.code, 0, direct.stderr + direct.stdout);
  assert.equal(await mirrorDiff(src.path, dst.path), "");
});

remoteTest("SFTP: bad input is exit 2 with one line, and nothing is touched", "sftp", sftpServer, async (server) => {
  await using src = await tempDir();
  await using dst = await sftpFolder(server);
  await using other = await tempDir();
  await writeSource(src.path);
  await Deno.writeTextFile(join(other.path, "empty_known_hosts"), "");
  await new Deno.Command("ssh-keygen", {
    args: ["-q", "-t", "ed25519", "-N", "", "-f", join(other.path, "stranger")],
  }).output();
  const wrongKey =
    `[${server.host}]:${server.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnUd6HQ9ftmAq4kqV0yiBNBFV0Kq4oBGHPEd7s6LJ1r`;
  await Deno.writeTextFile(join(other.path, "changed_known_hosts"), `${wrongKey}\n`);
  const cases: Array<[string, string[], RegExp]> = [
    ["a key the server does not accept", [
      dst.url,
      "--ssh-key",
      join(other.path, "stranger"),
      "--known-hosts",
      server.knownHosts,
    ], /auth/i],
    [
      "an unknown host key",
      [dst.url, "--ssh-key", server.key, "--known-hosts", join(other.path, "empty_known_hosts")],
      /host key/i,
    ],
    [
      "a changed host key",
      [dst.url, "--ssh-key", server.key, "--known-hosts", join(other.path, "changed_known_hosts")],
      /host key/i,
    ],
    ["a refused connection", [`sftp://${server.user}@127.0.0.1:1${dst.path}`, ...sftpArgs(server)], /refused|connect/i],
    ["an unknown host", [`sftp://${server.user}@no-such-host.invalid${dst.path}`, ...sftpArgs(server)], /host/i],
    ["a missing parent folder", [`${dst.url}/no/such/parent`, ...sftpArgs(server)], /parent/i],
    [
      "a backup folder in a bucket",
      [dst.url, ...sftpArgs(server), "--backup-dir", "s3://bucket/old"],
      /Backup directory must be on the replica's host/,
    ],
    [
      "a backup folder on another host",
      [dst.url, ...sftpArgs(server), "--backup-dir", "elsewhere.invalid:/old"],
      /Backup directory must be on the replica's host/,
    ],
    [
      "a backup folder that is the replica",
      [dst.url, ...sftpArgs(server), "--backup-dir", dst.path],
      /Backup directory is the replica itself/,
    ],
  ];
  for (const [what, args, message] of cases) {
    const out = await runMain([src.path, ...args], { permissions: SFTP_PERMISSIONS });
    assert.equal(out.code, 2, `${what}: ${out.stderr}${out.stdout}`);
    const lines = out.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `${what}: one line on stderr: ${out.stderr}`);
    assert.match(lines[0]!, message, what);
    assert.deepEqual([...Deno.readDirSync(dst.path)], [], `${what}: the replica was touched`);
  }
  const noRun = await runMain([src.path, dst.url, ...sftpArgs(server)], {
    permissions: ["--allow-read", "--allow-write", "--allow-env", "--allow-sys", "--allow-net"],
  });
  assert.equal(noRun.code, 2, noRun.stderr);
  assert.equal(noRun.stderr.trim().split("\n").length, 1, noRun.stderr);
  assert.match(noRun.stderr, /add --allow-run=ssh/);
});

remoteTest("SFTP: the guards, the delete cap, backups and the lock", "sftp", sftpServer, async (server, t) => {
  await using src = await tempDir();
  await using empty = await tempDir();
  await using dst = await sftpFolder(server);
  await writeSource(src.path);
  const sync = (from: string, ...more: string[]) =>
    runMain([from, dst.url, ...sftpArgs(server), ...more], { permissions: SFTP_PERMISSIONS });
  assert.equal((await sync(src.path)).code, 0);

  await t.step("an empty source does not empty the replica (exit 3)", async () => {
    const out = await sync(empty.path);
    assert.equal(out.code, 3, out.stderr);
    assert.equal(await mirrorDiff(src.path, dst.path), "");
  });

  await t.step("--max-delete refuses every removal when there are more (exit 5)", async () => {
    await Deno.remove(join(src.path, "a.txt"));
    await Deno.remove(join(src.path, "run.sh"));
    const out = await sync(src.path, "--max-delete", "1");
    assert.equal(out.code, 5, out.stderr + out.stdout);
    await Deno.lstat(join(dst.path, "a.txt"));
    await Deno.lstat(join(dst.path, "run.sh"));
  });

  await t.step("--backup-dir inside the replica keeps what is removed or overwritten", async () => {
    await Deno.writeTextFile(join(src.path, "docs/b.md"), "BRAVO, changed");
    const out = await sync(src.path, "--backup-dir", "_backup");
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.equal(await Deno.readTextFile(join(dst.path, "_backup/a.txt")), "alpha");
    assert.equal(await Deno.readTextFile(join(dst.path, "_backup/docs/b.md")), "bravo");
    assert.equal(await mirrorDiff(src.path, dst.path, { exclude: ["_backup"] }), "");
  });

  await t.step("a lock from another host is exit 4; one from a dead process here is taken over", async () => {
    const lock = join(dst.path, ".foldersync.lock");
    await Deno.writeTextFile(lock, JSON.stringify({ host: "another-host", pid: 42, time: Date.now() }));
    await Deno.writeTextFile(join(src.path, "late.txt"), "late");
    const held = await sync(src.path, "--backup-dir", "_backup");
    assert.equal(held.code, 4, held.stderr + held.stdout);
    assert.match(held.stderr + held.stdout, /another-host/);
    await assert.rejects(Deno.lstat(join(dst.path, "late.txt")));
    await Deno.writeTextFile(lock, JSON.stringify({ host: Deno.hostname(), pid: 2 ** 22 + 7, time: Date.now() }));
    const stale = await sync(src.path, "--backup-dir", "_backup");
    assert.equal(stale.code, 0, stale.stderr + stale.stdout);
    await assert.rejects(Deno.lstat(lock), "the lock is released at the end");
    assert.equal(await mirrorDiff(src.path, dst.path, { exclude: ["_backup"] }), "");
  });

  await t.step("a second foldersync into the same replica is exit 4 while the first runs", async () => {
    const args = [src.path, dst.url, ...sftpArgs(server), "--watch", "--backup-dir", "_backup"];
    const watcher = startMain(args, SFTP_PERMISSIONS);
    try {
      await waitFor(() => watcher.out.text().includes("Sync done"), 20_000, "the watcher's first sync");
      const second = await sync(src.path, "--backup-dir", "_backup");
      assert.equal(second.code, 4, second.stderr + second.stdout);
    } finally {
      await watcher.stop();
    }
  });
});

remoteTest(
  "SFTP: a connection dropped mid-upload is exit 1, leaves no partial file, and the next run completes",
  "sftp",
  sftpServer,
  async (server) => {
    await using src = await tempDir();
    await using dst = await sftpFolder(server);
    await writeTree(src.path, { "small.txt": "small" });
    await writeBig(join(src.path, "big.bin"), 64 << 20);
    await using proxy = cuttingProxy(`tcp://${server.host}:${server.port}`, 8 << 20, "upstream");
    const url = `sftp://${server.user}@127.0.0.1:${proxy.port}${dst.path}`;
    const knownHosts = join(src.path, "..", `kh-${proxy.port}`);
    const key = (await Deno.readTextFile(server.knownHosts)).trim().split(" ").slice(1).join(" ");
    await Deno.writeTextFile(knownHosts, `[127.0.0.1]:${proxy.port} ${key}\n`);
    try {
      const out = await runMain([
        src.path,
        url,
        "--ssh-key",
        server.key,
        "--known-hosts",
        knownHosts,
        "--ssh-config",
        "/dev/null",
      ], {
        permissions: SFTP_PERMISSIONS,
      });
      assert.equal(out.code, 1, out.stderr + out.stdout);
      assert.match(out.stdout + out.stderr, /lost|closed|reset/i);
      await assert.rejects(Deno.lstat(join(dst.path, "big.bin")), "a partial file at the final name");
    } finally {
      await Deno.remove(knownHosts).catch(() => {});
    }
    const again = await runMain([src.path, dst.url, ...sftpArgs(server)], { permissions: SFTP_PERMISSIONS });
    assert.equal(again.code, 0, again.stderr + again.stdout);
    assert.equal(await mirrorDiff(src.path, dst.path), "");
  },
);

// ------------------------------------------------------------------------------------------ S3

/**
 * The rclone oracle for a bucket path: `rclone check` (sizes and MD5s, links as .rclonelink
 * objects), and every file's mtime (to the millisecond) and mode from the metadata rclone reads.
 */
async function s3Diff(server: S3Server, source: string, remote: string): Promise<string> {
  const problems: string[] = [];
  try {
    await rclone(server, ["check", "--links", "--one-way=false", source, remote]);
  } catch (error) {
    problems.push(String(error));
  }
  const listed = JSON.parse(
    await rclone(server, ["lsjson", "-R", "--disable", "ListR", "--metadata", "--links", remote]),
  ) as Array<
    { Path: string; IsDir: boolean; ModTime: string; Metadata?: Record<string, string> }
  >;
  const byPath = new Map(listed.map((e) => [e.Path, e]));
  const walk = (rel: string) => {
    for (const entry of Deno.readDirSync(rel === "" ? source : join(source, rel))) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      const info = Deno.lstatSync(join(source, path));
      if (entry.isDirectory) {
        const hasContent = [...Deno.readDirSync(join(source, path))].length > 0;
        if (!hasContent && !byPath.get(path)?.IsDir) problems.push(`${path}: empty directory missing`);
        walk(path);
        continue;
      }
      const name = entry.isSymlink ? `${path}.rclonelink` : path;
      const object = byPath.get(name);
      if (!object) {
        problems.push(`${name}: missing`);
        continue;
      }
      if (entry.isFile && Date.parse(object.ModTime) !== info.mtime!.getTime()) {
        problems.push(`${path}: mtime ${object.ModTime} vs ${info.mtime!.toISOString()}`);
      }
      const mode = object.Metadata?.mode;
      if (entry.isFile && (mode === undefined || (parseInt(mode, 8) & 0o7777) !== (info.mode! & 0o7777))) {
        problems.push(`${path}: mode ${mode} vs ${(info.mode! & 0o7777).toString(8)}`);
      }
    }
  };
  walk("");
  return problems.join("\n");
}

remoteTest("sync into an S3 bucket: initial, no-op, churn and dry run, judged by rclone", "s3", s3Server, async (
  server,
  t,
) => {
  await using src = await tempDir();
  await using bucket = await s3Bucket(server);
  await writeSource(src.path);
  const env = s3Env(server);
  const url = `${bucket.url}/site`;
  const remote = `fss3:${bucket.name}/site`;
  const run = (...more: string[]) => runMain([src.path, url, ...more], { permissions: PERMISSIONS, env });

  await t.step("the first run uploads everything, with rclone's mtime and mode metadata", async () => {
    const out = await run();
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.equal(await s3Diff(server, src.path, remote), "");
  });

  await t.step("rclone restores the links and the tree", async () => {
    await using back = await tempDir();
    await rclone(server, ["copy", "--links", remote, back.path]);
    assert.equal(await Deno.readLink(join(back.path, "link-to-a")), "a.txt");
    assert.equal(await Deno.readTextFile(join(back.path, "docs/deep/c.txt")), "charlie");
  });

  await t.step("a second run changes nothing", async () => {
    const out = await run();
    assert.equal(out.code, 0, out.stderr);
    const c = summaryCounts(out.stdout);
    assert.deepEqual([c.copied, c.updated, c.attrs, c.removed, c.created], [0, 0, 0, 0, 0], out.stdout);
  });

  await t.step("churn: an update, a removal, a type change and new files", async () => {
    await Deno.writeTextFile(join(src.path, "a.txt"), "ALPHA");
    await Deno.remove(join(src.path, "docs/deep"), { recursive: true });
    await Deno.writeTextFile(join(src.path, "docs/deep"), "now a file");
    await Deno.remove(join(src.path, "name with spaces & ü.txt"));
    await Deno.chmod(join(src.path, "run.sh"), 0o700);
    await writeTree(src.path, { "new": { "n1.txt": "n1" } });
    const dry = await run("--dry-run");
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would remove.*docs\/deep\/c\.txt/);
    assert.notEqual(await s3Diff(server, src.path, remote), "");
    const out = await run();
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.equal(await s3Diff(server, src.path, remote), "");
  });

  await t.step("verify, and --checksum finds equal content by MD5", async () => {
    const same = await runMain(["verify", src.path, url, "-c"], { permissions: PERMISSIONS, env });
    assert.equal(same.code, 0, same.stderr + same.stdout);
    const out = await run("-c");
    assert.equal(out.code, 0, out.stderr);
    assert.equal(summaryCounts(out.stdout).updated, 0, out.stdout);
  });
});

remoteTest("S3: bad input is exit 2 with one line; the guards and the cap hold", "s3", s3Server, async (server, t) => {
  await using src = await tempDir();
  await using empty = await tempDir();
  await using bucket = await s3Bucket(server);
  await writeSource(src.path);
  const env = s3Env(server);
  await t.step("a missing bucket, bad credentials, a refused endpoint", async () => {
    const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
      ["a missing bucket", ["s3://no-such-bucket-here/x"], env, /bucket/i],
      ["bad credentials", [bucket.url], { ...env, AWS_SECRET_ACCESS_KEY: "wrong" }, /credential|signature|access/i],
      ["a refused endpoint", [bucket.url, "--s3-endpoint", "http://127.0.0.1:1"], env, /refused|connect|reach/i],
    ];
    for (const [what, args, caseEnv, message] of cases) {
      const out = await runMain([src.path, ...args], { permissions: PERMISSIONS, env: caseEnv });
      assert.equal(out.code, 2, `${what}: ${out.stderr}${out.stdout}`);
      assert.equal(out.stderr.trim().split("\n").length, 1, `${what}: ${out.stderr}`);
      assert.match(out.stderr, message, what);
    }
    assert.equal((await rclone(server, ["lsf", "-R", `fss3:${bucket.name}`])).trim(), "");
  });
  const url = `${bucket.url}/guarded`;
  const run = (from: string, ...more: string[]) => runMain([from, url, ...more], { permissions: PERMISSIONS, env });
  assert.equal((await run(src.path)).code, 0);
  await t.step("an empty source is refused (exit 3)", async () => {
    assert.equal((await run(empty.path)).code, 3);
    assert.equal(await s3Diff(server, src.path, `fss3:${bucket.name}/guarded`), "");
  });
  await t.step("--max-delete 1 refuses two removals (exit 5)", async () => {
    await Deno.remove(join(src.path, "a.txt"));
    await Deno.remove(join(src.path, "run.sh"));
    const out = await run(src.path, "--max-delete", "1");
    assert.equal(out.code, 5, out.stderr + out.stdout);
    const listed = await rclone(server, ["lsf", `fss3:${bucket.name}/guarded`]);
    assert.match(listed, /a\.txt/);
    assert.match(listed, /run\.sh/);
  });
  await t.step("--backup-dir moves removed objects aside by server-side copy", async () => {
    const out = await run(src.path, "--backup-dir", `${bucket.url}/backup`);
    assert.equal(out.code, 0, out.stderr + out.stdout);
    const backed = await rclone(server, ["lsf", `fss3:${bucket.name}/backup`]);
    assert.match(backed, /a\.txt/);
    assert.equal(await s3Diff(server, src.path, `fss3:${bucket.name}/guarded`), "");
  });
});

remoteTest(
  "S3: a connection dropped mid-upload is exit 1, leaves no object and no upload, and the next run completes",
  "s3",
  s3Server,
  async (server) => {
    await using src = await tempDir();
    await using bucket = await s3Bucket(server);
    await writeTree(src.path, { "small.txt": "small" });
    await writeBig(join(src.path, "big.bin"), 96 << 20);
    await using proxy = cuttingProxy(server.endpoint, 24 << 20, "upstream");
    const env = s3Env(server);
    const out = await runMain([src.path, `${bucket.url}/cut`, "--s3-endpoint", proxy.endpoint], {
      permissions: PERMISSIONS,
      env,
    });
    assert.equal(out.code, 1, out.stderr + out.stdout);
    const listed = await rclone(server, ["lsf", "-R", `fss3:${bucket.name}`]);
    assert.doesNotMatch(listed, /big\.bin/);
    const again = await runMain([src.path, `${bucket.url}/cut`], { permissions: PERMISSIONS, env });
    assert.equal(again.code, 0, again.stderr + again.stdout);
    assert.equal(await s3Diff(server, src.path, `fss3:${bucket.name}/cut`), "");
    const uploads = await rclone(server, ["backend", "list-multipart-uploads", `fss3:${bucket.name}`]);
    assert.doesNotMatch(uploads, /big\.bin/, `an incomplete multipart upload was left: ${uploads}`);
  },
);

remoteTest(
  "S3: a first run over a bucket rclone synced sends no write request: what rclone stores no metadata for is unknown, not different",
  "s3",
  s3Server,
  async (server, t) => {
    await using src = await tempDir();
    await using cache = await tempDir();
    await using bucket = await s3Bucket(server);
    await writeSource(src.path);
    // rclone keeps no empty directory in a bucket: that one would be a real difference.
    await Deno.remove(join(src.path, "empty"));
    const remote = `fss3:${bucket.name}/site`;
    // As rclone 1.60 writes by default: `mtime` metadata, no `mode`, no directory markers.
    await rclone(server, ["sync", "--links", src.path, remote]);
    const listed = JSON.parse(await rclone(server, ["lsjson", "-R", "--metadata", remote])) as Array<
      { Path: string; IsDir: boolean; Metadata?: Record<string, string> }
    >;
    assert.ok(listed.some((e) => !e.IsDir && e.Metadata?.mtime !== undefined), "rclone wrote mtime metadata");
    assert.ok(listed.every((e) => e.Metadata?.mode === undefined), "rclone wrote no mode metadata");
    await using proxy = countingProxy(server.endpoint);
    const args = [
      src.path,
      `${bucket.url}/site`,
      "--s3-endpoint",
      proxy.endpoint,
      "--cache-dir",
      cache.path,
    ];
    const env = s3Env(server);

    for (const run of ["first", "second"]) {
      await t.step(`the ${run} run copies nothing, sets no attribute and writes nothing`, async () => {
        proxy.requests.length = 0;
        const out = await runMain(args, { permissions: PERMISSIONS, env });
        assert.equal(out.code, 0, out.stderr + out.stdout);
        const c = summaryCounts(out.stdout);
        assert.deepEqual(
          [c.copied, c.updated, c.attrs, c.linked, c.removed, c.created],
          [0, 0, 0, 0, 0, 0],
          out.stdout,
        );
        assert.ok(proxy.requests.length > 0, "the run went through the proxy");
        assert.deepEqual(writes(proxy.requests), []);
        await rclone(server, ["check", "--links", src.path, remote]);
      });
    }

    await t.step("verify finds no difference", async () => {
      const out = await runMain(["verify", ...args], { permissions: PERMISSIONS, env });
      assert.equal(out.code, 0, out.stderr + out.stdout);
    });

    await t.step("a real change is still uploaded, with the mode rclone did not store", async () => {
      await Deno.writeTextFile(join(src.path, "run.sh"), "#!/bin/sh\necho HI\n"); // same size, new content
      proxy.requests.length = 0;
      const out = await runMain(args, { permissions: PERMISSIONS, env });
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.equal(summaryCounts(out.stdout).updated, 1, out.stdout);
      assert.ok(writes(proxy.requests).includes(`PUT /${bucket.name}/site/run.sh`), writes(proxy.requests).join("\n"));
      await rclone(server, ["check", "--links", src.path, remote]);
      const run = JSON.parse(await rclone(server, ["lsjson", "--metadata", `${remote}/run.sh`]))[0];
      assert.equal(run.Metadata.mode, "100755");
    });
  },
);

remoteTest(
  "S3: objects written without mtime metadata are updated once, by a metadata copy where their content is equal",
  "s3",
  s3Server,
  async (server, t) => {
    await using src = await tempDir();
    await using cache = await tempDir();
    await using bucket = await s3Bucket(server);
    const big = new Uint8Array(3 << 20).map((_, i) => (i * 7) % 251);
    await writeTree(src.path, { "same.txt": "same content", "docs": { "changed.txt": "abcdef" }, "big.bin": big });
    // Another tool's upload: the content alone, no metadata at all.
    const s3 = s3Client(server, bucket.name);
    await s3.put("x/same.txt", "same content");
    await s3.put("x/docs/changed.txt", "ABCDEF"); // same size, other content
    await s3.put("x/big.bin", big);
    await using proxy = countingProxy(server.endpoint);
    const args = [
      src.path,
      `${bucket.url}/x`,
      "--s3-endpoint",
      proxy.endpoint,
      "--cache-dir",
      cache.path,
    ];
    const env = s3Env(server);

    await t.step("equal content gets its metadata by a server-side copy; changed content is uploaded", async () => {
      const out = await runMain(args, { permissions: PERMISSIONS, env });
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.equal(summaryCounts(out.stdout).updated, 3, out.stdout);
      const files = writes(proxy.requests).filter((w) => !w.endsWith("/")).sort();
      assert.deepEqual(files, [
        `COPY /${bucket.name}/x/big.bin`,
        `COPY /${bucket.name}/x/same.txt`,
        `PUT /${bucket.name}/x/docs/changed.txt`,
      ]);
      assert.equal(await s3Diff(server, src.path, `fss3:${bucket.name}/x`), "");
    });

    await t.step("the next run writes nothing", async () => {
      proxy.requests.length = 0;
      const out = await runMain(args, { permissions: PERMISSIONS, env });
      assert.equal(out.code, 0, out.stderr + out.stdout);
      const c = summaryCounts(out.stdout);
      assert.deepEqual([c.copied, c.updated, c.attrs, c.created], [0, 0, 0, 0], out.stdout);
      assert.deepEqual(writes(proxy.requests), []);
    });
  },
);

remoteTest(
  "S3: --checksum over a bucket rclone wrote copies nothing, a multipart object without md5chksum read once; --hash xxh3 is exit 2 before any request",
  "s3",
  s3Server,
  async (server, t) => {
    await using src = await tempDir();
    await using cache = await tempDir();
    await using bucket = await s3Bucket(server);
    await writeSource(src.path);
    await Deno.remove(join(src.path, "empty"));
    await writeBig(join(src.path, "big.bin"), 12 << 20);
    const remote = `fss3:${bucket.name}/c`;
    // Parts of 5 MiB, and no md5chksum: the big object's ETag is no MD5, and nothing says its MD5.
    await rclone(server, [
      "sync",
      "--links",
      "--s3-disable-checksum",
      "--s3-upload-cutoff",
      "5M",
      "--s3-chunk-size",
      "5M",
      src.path,
      remote,
    ]);
    const big = JSON.parse(await rclone(server, ["lsjson", "--hash", "--metadata", `${remote}/big.bin`]))[0];
    assert.equal(big.Hashes?.md5, undefined, "rclone knows no MD5 for the multipart object");
    await using proxy = countingProxy(server.endpoint);
    const via = ["--s3-endpoint", proxy.endpoint, "--cache-dir", cache.path];
    const env = s3Env(server);
    const run = (...more: string[]) => {
      proxy.requests.length = 0;
      return runMain([src.path, `${bucket.url}/c`, ...via, ...more], { permissions: PERMISSIONS, env });
    };
    const bigReads = () =>
      proxy.requests.filter((r) => r.method === "GET" && r.range && r.target.includes("big.bin")).length;

    await t.step("the first -c run reads the multipart object to hash it, and copies nothing", async () => {
      const out = await run("-c");
      assert.equal(out.code, 0, out.stderr + out.stdout);
      const c = summaryCounts(out.stdout);
      assert.deepEqual([c.copied, c.updated, c.attrs, c.linked, c.created], [0, 0, 0, 0, 0], out.stdout);
      assert.deepEqual(writes(proxy.requests), []);
      assert.ok(bigReads() >= 1, "big.bin was read");
    });

    await t.step("a second -c run copies nothing and reads nothing: the read MD5 is remembered", async () => {
      const out = await run("-c");
      assert.equal(out.code, 0, out.stderr + out.stdout);
      const c = summaryCounts(out.stdout);
      assert.deepEqual([c.copied, c.updated, c.attrs, c.linked, c.created], [0, 0, 0, 0, 0], out.stdout);
      assert.deepEqual(writes(proxy.requests), []);
      assert.equal(bigReads(), 0);
    });

    await t.step("--hash md5 is what the bucket knows: nothing copied", async () => {
      const out = await run("-c", "--hash", "md5");
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.equal(summaryCounts(out.stdout).updated, 0, out.stdout);
    });

    await t.step("--hash xxh3 is exit 2 with one line, before a single request", async () => {
      for (const command of [[], ["verify"]]) {
        proxy.requests.length = 0;
        const out = await runMain([...command, src.path, `${bucket.url}/c`, ...via, "-c", "--hash", "xxh3"], {
          permissions: PERMISSIONS,
          env,
        });
        assert.equal(out.code, 2, out.stderr + out.stdout);
        const lines = out.stderr.trim().split("\n");
        assert.equal(lines.length, 1, out.stderr);
        assert.match(lines[0]!, /'xxh3' is not available for an S3 replica: it knows md5 \(leave out --hash\)/);
        assert.deepEqual(proxy.requests, []);
      }
    });

    await t.step("a changed file of the same size is still found and uploaded", async () => {
      await Deno.writeTextFile(join(src.path, "a.txt"), "ALPHA");
      const out = await run("-c");
      assert.equal(out.code, 0, out.stderr + out.stdout);
      assert.equal(summaryCounts(out.stdout).updated, 1, out.stdout);
      await rclone(server, ["check", "--links", src.path, remote]);
    });
  },
);

// ------------------------------------------------------------------------------------- helpers

/** Writes `size` bytes of incompressible data. */
async function writeBig(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1 << 20);
  for (let done = 0; done < size; done += chunk.length) {
    crypto.getRandomValues(chunk.subarray(0, 65536));
    chunk.copyWithin(65536, 0, chunk.length - 65536);
    await file.write(chunk.subarray(0, Math.min(chunk.length, size - done)));
  }
}

/** The requests that write (PUT, POST, DELETE), the replica's own lock entry left out. */
function writes(requests: readonly SeenRequest[]): string[] {
  return requests
    .filter((r) => ["PUT", "POST", "DELETE"].includes(r.method) && !r.target.includes(".foldersync.lock"))
    .map((r) => `${r.copy ? "COPY" : r.method} ${r.target}`);
}
