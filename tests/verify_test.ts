/**
 * `foldersync verify`, end to end through main.ts: its lines, its exit codes, that it needs
 * only read permission, and that it changes nothing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { mirrorDiff, POSIX, runMain, snapshot, tempDir, writeTree } from "./helpers.ts";

const READ_ONLY = ["--allow-read"];

/** The message of each line of a run's output, without timestamps and levels. */
function messages(text: string): string[] {
  return text.split("\n").filter((l) => l !== "").map((l) => l.replace(/^\S+ \S+ (INFO |WARN |ERROR) /, ""));
}

Deno.test("verify reports every difference with its reason, exits 1, and changes nothing", {
  ignore: !POSIX,
}, async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, {
    "new.txt": "n",
    newdir: { "f.txt": "f" },
    "size.txt": "longer",
    "mtime.txt": "m",
    "mode.txt": "x",
    "same.txt": "AAAA",
    swap: "a file now",
    link: { link: "new-target" },
    kept: "k",
  });
  await writeTree(dst, {
    "old.txt": "o",
    olddir: { "x.txt": "x" },
    "size.txt": "short",
    "mtime.txt": "m",
    "mode.txt": "x",
    "same.txt": "BBBB",
    swap: { "inner.txt": "i" },
    link: { link: "old-target" },
    kept: "k",
  });
  const when = new Date(1_700_000_000_000);
  for (const name of ["mode.txt", "same.txt", "kept", "size.txt"]) {
    await Deno.utime(join(src, name), when, when);
    await Deno.utime(join(dst, name), when, when);
  }
  await Deno.utime(join(dst, "mtime.txt"), when, when);
  await Deno.chmod(join(src, "mode.txt"), 0o600);
  await Deno.chmod(join(dst, "mode.txt"), 0o644);
  for (const root of [src, dst]) await Deno.utime(root, when, when); // the roots do not differ
  const before = await snapshot(dst);

  await t.step("by size and mtime, with only read permission", async () => {
    const run = await runMain(["verify", src, dst], { permissions: READ_ONLY });
    assert.equal(run.code, 1, run.stderr);
    const lines = messages(run.stdout);
    for (
      const expected of [
        "missing new.txt",
        "missing newdir",
        "missing newdir/f.txt",
        "extra old.txt",
        "extra olddir/x.txt",
        "extra olddir",
        "differs size.txt (size)",
        "differs mtime.txt (mtime)",
        "differs mode.txt (mode)",
        "differs swap (type)",
        "extra swap/inner.txt",
        "differs link (target)",
      ]
    ) {
      assert.ok(lines.includes(expected), `'${expected}' in:\n${run.stdout}`);
    }
    assert.ok(!lines.some((l) => /same\.txt|kept/.test(l)), "equal by size and mtime: not reported");
    assert.match(run.stderr, /WARN {2}Verify: different: 3 missing, 4 extra, 5 differ, 0 errors/);
    assert.deepEqual(await snapshot(dst), before);
  });
  await t.step("--checksum finds a same-size, same-mtime edit", async () => {
    const run = await runMain(["verify", src, dst, "-c"], { permissions: READ_ONLY });
    assert.equal(run.code, 1);
    assert.ok(messages(run.stdout).includes("differs same.txt (content)"), run.stdout);
    assert.ok(!messages(run.stdout).some((l) => l.includes("kept")));
  });
  await t.step("--log-format json gives one object per difference", async () => {
    const run = await runMain(["verify", src, dst, "--log-format", "json"], { permissions: READ_ONLY });
    const records = run.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
    assert.ok(records.some((r) => r.action === "differs" && r.path === "size.txt" && r.reason === "size"));
    assert.ok(records.some((r) => r.action === "missing" && r.path === "new.txt"));
    assert.ok(records.some((r) => r.action === "extra" && r.path === "old.txt"));
  });
  await t.step("-q prints only the summary, for cron", async () => {
    const run = await runMain(["verify", "-q", src, dst], { permissions: READ_ONLY });
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.equal(messages(run.stderr).length, 1, run.stderr);
  });
  await t.step("after a sync: identical, exit 0, as the rsync oracle says", async () => {
    assert.equal((await runMain([src, dst, "-c"])).code, 0);
    assert.equal(await mirrorDiff(src, dst), "");
    const run = await runMain(["verify", src, dst, "-c"], { permissions: READ_ONLY });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.deepEqual(messages(run.stdout).map((l) => l.replace(/ in .*/, "")), [
      "Verify: identical: 0 missing, 0 extra, 0 differ, 0 errors",
    ]);
  });
});

Deno.test("verify rejects bad input with exit 2 and one line", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  await writeTree(src, { "a.txt": "a" });
  const cases: Array<[string[], RegExp]> = [
    [["verify", src, join(tmp.path, "missing")], /Replica does not exist/],
    [["verify", src, join(tmp.path, "missing", "deeper")], /ERROR Replica does not exist: '.*deeper'\n$/],
    [["verify", join(tmp.path, "nope"), src], /Source does not exist/],
    [["verify", src, tmp.path, "--watch"], /Option not valid with verify: '--watch'/],
    [["verify", src, tmp.path, "--max-delete", "3"], /Option not valid with verify: '--max-delete'/],
    [["verify", src, tmp.path, "60"], /Unexpected argument: '60'/],
  ];
  for (const [args, message] of cases) {
    const run = await runMain(args, { permissions: READ_ONLY });
    assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
    assert.match(run.stderr, message);
    assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
  }
});

Deno.test("verify leaves out a --backup-dir inside the replica, as sync does", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const bak = join(dst, ".trash");
  await writeTree(src, { "a.txt": "a", "b.txt": "b" });
  assert.equal((await runMain([src, dst])).code, 0);
  await Deno.remove(join(src, "b.txt"));
  await Deno.writeTextFile(join(src, "a.txt"), "changed");
  assert.equal((await runMain([src, dst, "--backup-dir", bak])).code, 0);
  const run = await runMain(["verify", src, dst, "--backup-dir", bak], { permissions: READ_ONLY });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /Verify: identical/);
  assert.equal(await mirrorDiff(src, dst, { exclude: [".trash"] }), "");
  const without = await runMain(["verify", src, dst], { permissions: READ_ONLY });
  assert.equal(without.code, 1, "without it, the backup folder is extra");
  assert.match(without.stdout, /extra \.trash/);
});
