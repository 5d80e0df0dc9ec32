/**
 * `--backup-keep`: versions moved into the backup folder are pruned once older than the keep
 * period, by the folder's journal; what foldersync did not put there is never touched.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { expiredRecords, formatRecords, parseJournal } from "../lib/backend/backup_journal.ts";
import { assertMirror, mirrorDiff, runMain, tempDir, writeTree } from "./helpers.ts";
import { remoteTest, sftpFolder, sftpServer } from "./remote_env.ts";

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
    await Deno.writeTextFile(join(src, "a.txt"), "a2");
    const first = await runMain([...args, "--backup-keep", "2s"], { permissions: SFTP });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(await Deno.readTextFile(join(old.path, "a.txt")), "a1");
    await Deno.writeTextFile(join(old.path, "mine.txt"), "not foldersync's");
    await new Promise((resolve) => setTimeout(resolve, 2500));
    await Deno.writeTextFile(join(src, "b.txt"), "b2");
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
