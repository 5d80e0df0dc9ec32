/**
 * `--backup-keep`: versions moved into the backup folder are pruned once older than the keep
 * period, by the folder's journal; what foldersync did not put there is never touched.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type BackupRecord, expiredRecords, formatRecords, parseJournal } from "../lib/backend/backup_journal.ts";
import { assertMirror, mirrorDiff, runMain, tempDir, writeTree } from "./helpers.ts";
import {
  rclone,
  remoteTest,
  s3Bucket,
  s3Client,
  s3Env,
  type S3Server,
  s3Server,
  sftpFolder,
  sftpServer,
} from "./remote_env.ts";

Deno.test("parseJournal() and expiredRecords() read the journal and choose by when a version was put there", () => {
  const text = formatRecords([
    { path: "a/old.txt", kind: "file", at: 1000 },
    { path: "a", kind: "dir", at: 1000 },
    { path: "new.txt", kind: "file", at: 9000 },
  ]) + '{"path":"torn",\n';
  const records = parseJournal(text);
  assert.equal(records.length, 3, "a torn last line is passed over");
  const { expired, kept } = expiredRecords(records, 5000, 10_000);
  assert.deepEqual(expired.map((r) => r.path), ["a/old.txt", "a"], "deeper first");
  assert.deepEqual(kept.map((r) => r.path), ["new.txt"]);
});

Deno.test("parseJournal() passes over a line whose path would lead outside the backup folder", () => {
  const forged = ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", ""].map((path) => ({ path, kind: "file", at: 0 }));
  const text = formatRecords([{ path: "a/b.txt", kind: "file", at: 0 }, ...forged] as BackupRecord[]);
  assert.deepEqual(parseJournal(text).map((r) => r.path), ["a/b.txt"]);
});

Deno.test("main.ts --backup-keep prunes old versions, keeps fresh ones and never touches a foreign file", async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const bak = join(tmp.path, "bak");
  await writeTree(src, { "a.txt": "a1", "b.txt": "b1", d: { "c.txt": "c1" } });
  assert.equal((await runMain([src, dst])).code, 0);

  // The first versions go aside: a.txt overwritten, d removed.
  await Deno.writeTextFile(join(src, "a.txt"), "a2");
  await Deno.remove(join(src, "d"), { recursive: true });
  const first = await runMain([src, dst, "--backup-dir", bak, "--backup-keep", "2s"]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /3 backed up/);
  await writeTree(bak, { "mine.txt": "not foldersync's", d: { "also-mine.txt": "mine too" } });
  const journal = parseJournal(await Deno.readTextFile(join(bak, ".foldersync-backups")));
  assert.deepEqual(journal.map((r) => r.path).sort(), ["a.txt", "d", "d/c.txt"]);

  // Older than 2 s by the time the next run ends; what that run puts aside is fresh.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  await Deno.writeTextFile(join(src, "b.txt"), "b2");

  await t.step("a dry run shows what it would prune, and prunes nothing", async () => {
    const dry = await runMain([src, dst, "--backup-dir", bak, "--backup-keep", "2s", "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would prune a\.txt \(backed up \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)/);
    assert.match(dry.stdout, /would prune d\/c\.txt/);
    assert.equal(await Deno.readTextFile(join(bak, "a.txt")), "a1");
  });
  await t.step("a run prunes the old versions, logs and counts each, and keeps its own fresh one", async () => {
    const run = await runMain([src, dst, "--backup-dir", bak, "--backup-keep", "2s"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /INFO {2}prune a\.txt \(backed up /);
    assert.match(run.stdout, /INFO {2}prune d\/c\.txt \(backed up /);
    assert.match(run.stdout, /1 backed up, 2 pruned, 0 errors/);
    await assert.rejects(Deno.stat(join(bak, "a.txt")), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(join(bak, "d", "c.txt")), Deno.errors.NotFound);
    assert.equal(await Deno.readTextFile(join(bak, "b.txt")), "b1", "this run's version is fresh");
    assert.equal(await Deno.readTextFile(join(bak, "mine.txt")), "not foldersync's");
    assert.equal(
      await Deno.readTextFile(join(bak, "d", "also-mine.txt")),
      "mine too",
      "a folder holding a foreign file stays",
    );
    const left = parseJournal(await Deno.readTextFile(join(bak, ".foldersync-backups"))).map((r) => r.path).sort();
    assert.deepEqual(left, ["b.txt", "d"], "the folder stays in the journal until it is empty");
    await assertMirror(src, dst);
  });
  await t.step("--backup-keep needs --backup-dir and a duration", async () => {
    for (const args of [["--backup-keep", "1d"], ["--backup-dir", bak, "--backup-keep", "soon"]]) {
      const run = await runMain([src, dst, ...args]);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /--backup-keep needs --backup-dir|Backup keep must be a duration/);
    }
  });
});

/** What an SFTP run may use: ssh, the variables, the host name. */
const SFTP = ["--allow-read", "--allow-write", "--allow-run=ssh", "--allow-env", "--allow-sys"];

remoteTest(
  "main.ts --backup-keep prunes an SFTP backup folder by its journal, and leaves a foreign file",
  "sftp",
  sftpServer,
  async (server) => {
    await using tmp = await tempDir();
    await using folder = await sftpFolder(server);
    await using old = await sftpFolder(server, "old-");
    const src = join(tmp.path, "src");
    const args = [src, folder.url, ...folder.args, "--ssh-config", "/dev/null", "--backup-dir", old.path];
    await writeTree(src, { "a.txt": "a1", "b.txt": "b1" });
    assert.equal((await runMain(args, { permissions: SFTP })).code, 0);
    // Another size: SFTP keeps whole seconds, and this may all happen within one.
    await Deno.writeTextFile(join(src, "a.txt"), "a-two");
    const first = await runMain([...args, "--backup-keep", "2s"], { permissions: SFTP });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(await Deno.readTextFile(join(old.path, "a.txt")), "a1");
    await Deno.writeTextFile(join(old.path, "mine.txt"), "not foldersync's");
    await new Promise((resolve) => setTimeout(resolve, 2500));
    await Deno.writeTextFile(join(src, "b.txt"), "b-two");
    const run = await runMain([...args, "--backup-keep", "2s"], { permissions: SFTP });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /INFO {2}prune a\.txt \(backed up /);
    assert.match(run.stdout, /1 backed up, 1 pruned, 0 errors/);
    await assert.rejects(Deno.stat(join(old.path, "a.txt")), Deno.errors.NotFound);
    assert.equal(await Deno.readTextFile(join(old.path, "b.txt")), "b1");
    assert.equal(await Deno.readTextFile(join(old.path, "mine.txt")), "not foldersync's");
    assert.equal(await mirrorDiff(src, folder.path), "");
  },
);

/** What an S3 run may use: the network, the variables, the host name. */
const S3 = ["--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-sys"];

/** Every key of bucket `name` with its content (a folder marker as ""), by the S3 client. */
async function bucketKeys(server: S3Server, name: string): Promise<Map<string, string>> {
  const client = s3Client(server, name);
  const keys = new Map<string, string>();
  for await (const page of client.list("")) {
    for (const object of page) {
      const got = await client.get(object.key);
      keys.set(object.key, new TextDecoder().decode(got!.body));
    }
  }
  return keys;
}

remoteTest(
  "main.ts --backup-keep prunes a backup folder in a bucket by its journal, and never a key outside it",
  "s3",
  s3Server,
  async (server, t) => {
    await using tmp = await tempDir();
    await using bucket = await s3Bucket(server);
    const env = s3Env(server);
    const src = join(tmp.path, "src");
    const replica = `${bucket.url}/r`;
    const run = (...more: string[]) =>
      runMain([src, replica, "--cache-dir", join(tmp.path, "cache"), "--backup-dir", `${bucket.url}/old`, ...more], {
        permissions: S3,
        env,
      });
    const check = () => rclone(server, ["check", "--links", "--one-way=false", src, `fss3:${bucket.name}/r`]);
    await writeTree(src, { "a.txt": "a1", "b.txt": "b1", d: { "c.txt": "c1" } });
    await Deno.symlink("a.txt", join(src, "link"));
    assert.equal((await run()).code, 0);

    // The first versions go aside: a.txt overwritten, the link changed, d removed.
    await Deno.writeTextFile(join(src, "a.txt"), "a2");
    await Deno.remove(join(src, "link"));
    await Deno.symlink("b.txt", join(src, "link"));
    await Deno.remove(join(src, "d"), { recursive: true });
    const first = await run("--backup-keep", "2s");
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /4 backed up/);
    await check();
    let keys = await bucketKeys(server, bucket.name);
    const journal = parseJournal(keys.get("old/.foldersync-backups") ?? "");
    assert.deepEqual(journal.map((r) => `${r.kind} ${r.path}`).sort(), [
      "dir d",
      "file a.txt",
      "file d/c.txt",
      "symlink link",
    ]);
    assert.equal(keys.get("old/a.txt"), "a1");
    assert.equal(keys.get("old/link.rclonelink"), "a.txt");

    // What foldersync did not put there, and keys beside the folder that share its name's start.
    const s3 = s3Client(server, bucket.name);
    await s3.put("old/mine.txt", "not foldersync's");
    await s3.put("old/d/also-mine.txt", "mine too");
    await s3.put("oldish/a.txt", "beside the folder");
    // A journal line that names a key outside the folder is never followed there.
    const text = keys.get("old/.foldersync-backups")!;
    await s3.put(
      "old/.foldersync-backups",
      text +
        formatRecords([{ path: "../r/b.txt", kind: "file", at: 0 }, { path: "../oldish/a.txt", kind: "file", at: 0 }]),
    );

    // Older than 2 s by the time the next run ends; what that run puts aside is fresh.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    await Deno.writeTextFile(join(src, "b.txt"), "b-two");
    keys = await bucketKeys(server, bucket.name);

    await t.step("a dry run shows what it would prune, and changes no key", async () => {
      const dry = await run("--backup-keep", "2s", "--dry-run");
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /would prune a\.txt \(backed up \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)/);
      assert.match(dry.stdout, /would prune d\/c\.txt/);
      assert.match(dry.stdout, /would prune link /);
      assert.deepEqual(await bucketKeys(server, bucket.name), keys);
    });

    await t.step("a run prunes the old versions, keeps its own fresh one and every foreign key", async () => {
      const out = await run("--backup-keep", "2s");
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /INFO {2}prune a\.txt \(backed up /);
      assert.match(out.stdout, /INFO {2}prune d\/c\.txt \(backed up /);
      assert.match(out.stdout, /INFO {2}prune link \(backed up /);
      assert.match(out.stdout, /1 backed up, 3 pruned, 0 errors/);
      await check();
      const now = await bucketKeys(server, bucket.name);
      const old = [...now.keys()].filter((k) => k.startsWith("old/")).sort();
      assert.deepEqual(old, ["old/.foldersync-backups", "old/b.txt", "old/d/", "old/d/also-mine.txt", "old/mine.txt"]);
      assert.equal(now.get("old/b.txt"), "b1", "this run's version is fresh");
      assert.equal(now.get("old/mine.txt"), "not foldersync's");
      assert.equal(now.get("oldish/a.txt"), "beside the folder");
      assert.equal(now.get("r/b.txt"), "b-two");
      const left = parseJournal(now.get("old/.foldersync-backups")!).map((r) => r.path).sort();
      assert.deepEqual(left, ["b.txt", "d"], "the folder stays in the journal until it is empty");
    });

    await t.step("once its foreign file is gone, the folder's marker is pruned too", async () => {
      await s3.delete("old/d/also-mine.txt");
      const out = await run("--backup-keep", "2s");
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /INFO {2}prune d \(backed up /);
      const now = await bucketKeys(server, bucket.name);
      assert.equal(now.has("old/d/"), false);
      await check();
    });
  },
);
