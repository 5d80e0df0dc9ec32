import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertMirror,
  mirrorDiff,
  POSIX,
  runMain,
  runMainUnprivileged,
  snapshot,
  spawnMain,
  tempDir,
  waitFor,
  writeTree,
} from "./helpers.ts";

const OPERATION = /INFO {2}(create|copy|update|link|set attrs|remove) /;

Deno.test("main.ts mirrors a fresh tree, and a second run changes nothing", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await writeTree(src, { a: { b: { "c.txt": "deep" } }, "top.txt": "top", empty: {} });
  const first = await runMain([src, dst]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /create dir a\n/);
  assert.match(first.stdout, /copy a\/b\/c\.txt \(4 B\)/);
  assert.match(first.stdout, /Sync done: 3 created, 2 copied/);
  await assertMirror(src, dst);

  const second = await runMain([src, dst]);
  assert.equal(second.code, 0, second.stderr);
  assert.doesNotMatch(second.stdout, OPERATION, "an unchanged tree must log no operation");
  assert.match(second.stdout, /Sync done: 0 created, 0 copied, 0 updated, 0 linked, 0 attrs, 0 removed, 0 errors/);
  await assertMirror(src, dst);
});

Deno.test("main.ts propagates edits, deletions and renames", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await writeTree(src, { keep: "1", edit: "old", gone: "x", olddir: { f: "f" } });
  assert.equal((await runMain([src, dst])).code, 0);
  await Deno.writeTextFile(join(src, "edit"), "new content");
  await Deno.remove(join(src, "gone"));
  await Deno.rename(join(src, "olddir"), join(src, "newdir"));
  const run = await runMain([src, dst]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /update edit/);
  assert.match(run.stdout, /remove gone/);
  assert.match(run.stdout, /remove dir olddir/);
  await assertMirror(src, dst);
});

Deno.test("main.ts copies odd names exactly", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  const names = [
    "caf\u00e9-nfc",
    "cafe\u0301-nfd",
    "with space",
    "new\nline",
    "-leading-dash",
    "--double",
    "*?[]",
    "tab\there",
    "back\\slash",
    "x".repeat(250),
    "\u00e9".repeat(127), // 254 bytes in UTF-8
    "emoji-\u{1F600}",
    ".hidden",
  ];
  await Deno.mkdir(src);
  for (const name of names) await Deno.writeTextFile(join(src, name), name);
  await Deno.mkdir(join(src, "dir with\nnewline"));
  await Deno.writeTextFile(join(src, "dir with\nnewline", "-f"), "x");
  const run = await runMain([src, dst]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /copy new\\x0aline/, "control characters are escaped in log lines");
  assert.equal(run.stdout.split("\n").filter((l) => /copy /.test(l)).length, names.length + 1);
  await assertMirror(src, dst);
});

Deno.test("main.ts mirrors nesting 40 levels deep", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  let deep = src;
  for (let i = 0; i < 40; i++) deep = join(deep, `level${i}`);
  await Deno.mkdir(deep, { recursive: true });
  await Deno.writeTextFile(join(deep, "bottom.txt"), "bottom");
  const run = await runMain([src, dst]);
  assert.equal(run.code, 0, run.stderr);
  await assertMirror(src, dst);
});

Deno.test("main.ts copies symlinks as links, never following them", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  const outside = join(dir, "outside");
  await writeTree(outside, { "secret.txt": "do not copy" });
  await writeTree(src, {
    real: { "f.txt": "f" },
    rel: { link: "real/f.txt" },
    abs: { link: join(outside, "secret.txt") },
    dangling: { link: "no/such/target" },
    todir: { link: "real" },
    toout: { link: outside },
  });
  const run = await runMain([src, dst]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await Deno.readLink(join(dst, "abs")), join(outside, "secret.txt"));
  assert.ok((await Deno.lstat(join(dst, "todir"))).isSymlink);
  assert.ok((await Deno.lstat(join(dst, "toout"))).isSymlink);
  await assertMirror(src, dst);

  await Deno.remove(join(src, "rel"));
  await Deno.symlink("elsewhere", join(src, "rel"));
  const relink = await runMain([src, dst]);
  assert.match(relink.stdout, /link rel -> elsewhere/);
  await assertMirror(src, dst);
});

Deno.test("main.ts replaces a replica pre-filled with conflicting junk", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  const outside = join(dir, "outside");
  await Deno.mkdir(outside);
  await writeTree(src, {
    dirOverFile: { "kid.txt": "k" },
    dirOverLink: { "kid.txt": "k" },
    fileOverDir: "file",
    fileOverLink: "file",
    linkOverFile: { link: "t" },
    linkOverDir: { link: "t" },
    readonly: "new",
    roDir: { "f.txt": "new" },
  });
  await writeTree(dst, {
    dirOverFile: "junk",
    dirOverLink: { link: outside },
    fileOverDir: { deep: { er: { "f": "junk" } } },
    fileOverLink: { link: "/etc/passwd" },
    linkOverFile: "junk",
    linkOverDir: { q: { r: "junk" } },
    readonly: "old content",
    roDir: { "f.txt": "older", "extra.txt": "junk" },
    extraneous: { ro: { deeper: { "f": "junk" } } },
  });
  await Deno.chmod(join(dst, "readonly"), 0o444);
  await Deno.chmod(join(dst, "fileOverDir", "deep", "er"), 0o555);
  await Deno.chmod(join(dst, "roDir", "f.txt"), 0o444);
  await Deno.chmod(join(dst, "roDir"), 0o555);
  await Deno.chmod(join(dst, "extraneous", "ro", "deeper"), 0o555);
  await Deno.chmod(join(dst, "extraneous", "ro"), 0o555);
  await Deno.chmod(join(dst, "linkOverDir", "q"), 0o000);
  const run = await runMain([src, dst]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual([...Deno.readDirSync(outside)], [], "nothing may be written through a replica symlink");
  await assertMirror(src, dst);
});

Deno.test("main.ts keeps modes and the mtimes of files, directories and links", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await writeTree(src, { exec: "#!/bin/sh\n", ro: "r", sub: { "f": "f" }, l: { link: "exec" } });
  await Deno.chmod(join(src, "exec"), 0o750);
  await Deno.chmod(join(src, "ro"), 0o400);
  await Deno.chmod(join(src, "sub"), 0o711);
  await Deno.utime(join(src, "sub", "f"), new Date(2001, 1, 1), new Date(2001, 1, 1));
  await Deno.utime(join(src, "sub"), new Date(2002, 1, 1), new Date(2002, 1, 1));
  const run = await runMain([src, dst]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal((await Deno.stat(join(dst, "sub"))).mtime?.getTime(), new Date(2002, 1, 1).getTime());
  await assertMirror(src, dst);

  await Deno.chmod(join(src, "exec"), 0o700);
  const again = await runMain([src, dst]);
  assert.match(again.stdout, /attrs exec/);
  assert.doesNotMatch(again.stdout, /INFO {2}(copy|update) /);
  await assertMirror(src, dst);
});

Deno.test("main.ts --checksum catches a same-size, same-mtime edit that the quick check misses", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await writeTree(src, { "f.txt": "AAAA", "same.txt": "same" });
  assert.equal((await runMain([src, dst])).code, 0);
  const { mtime } = await Deno.stat(join(dst, "f.txt"));
  await Deno.writeTextFile(join(dst, "f.txt"), "BBBB");
  await Deno.utime(join(dst, "f.txt"), mtime!, mtime!);

  const quick = await runMain([src, dst]);
  assert.doesNotMatch(quick.stdout, OPERATION, "size+mtime cannot see the edit");
  assert.notEqual(await mirrorDiff(src, dst), "", "the oracle (rsync -c) does see it");

  for (const hash of ["xxh128", "md5"]) {
    await Deno.writeTextFile(join(dst, "f.txt"), "BBBB");
    await Deno.utime(join(dst, "f.txt"), mtime!, mtime!);
    const run = await runMain([src, dst, "--checksum", "--hash", hash]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /update f\.txt/);
    assert.doesNotMatch(run.stdout, /same\.txt/);
    assert.equal(await Deno.readTextFile(join(dst, "f.txt")), "AAAA");
    await assertMirror(src, dst);
  }
});

Deno.test("main.ts --dry-run prints every change and changes nothing", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await writeTree(src, { new: { "f": "new" }, changed: "changed!", l: { link: "new" } });
  await writeTree(dst, { changed: "old", extra: { deep: "x" }, stray: "s" });
  // The replica root's own mtime differs from the source root's, as it would a day later.
  await Deno.utime(dst, new Date(1_000_000_000_000), new Date(1_000_000_000_000));
  const before = await snapshot(dst);
  const run = await runMain([src, dst, "-n"]);
  assert.equal(run.code, 0, run.stderr);
  for (
    const line of [
      "would create dir new",
      "would copy new/f",
      "would update changed",
      "would link l -> new",
      "would remove extra/deep",
      "would remove dir extra",
      "would remove stray",
      "would set attrs dir .",
    ]
  ) {
    assert.ok(run.stdout.includes(line), `missing '${line}' in:\n${run.stdout}`);
  }
  assert.match(run.stdout, /Dry run done: 1 created, 1 copied, 1 updated, 1 linked, 1 attrs, 3 removed/);
  assert.deepEqual(await snapshot(dst), before);

  const fresh = join(dir, "fresh");
  const intoMissing = await runMain([src, fresh, "--dry-run"]);
  assert.equal(intoMissing.code, 0, intoMissing.stderr);
  await assert.rejects(Deno.lstat(fresh), Deno.errors.NotFound);
});

Deno.test("main.ts refuses bad input with exit 2, one line on stderr, and touches nothing", async (t) => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await writeTree(src, { "f.txt": "f", inner: { "g": "g" } });
  await writeTree(dst, { "old.txt": "old" });
  await Deno.writeTextFile(join(dir, "afile"), "x");
  if (POSIX) await Deno.symlink(src, join(dir, "srclink"));
  const cases: Array<[string, string[], RegExp]> = [
    ["missing source", [join(dir, "nope"), dst], /Source does not exist/],
    ["source is a file", [join(dir, "afile"), dst], /Source is not a directory/],
    ["replica is a file", [src, join(dir, "afile")], /Replica exists but is not a directory/],
    ["replica equals source", [src, src], /Replica is the source/],
    ["replica inside source", [src, join(src, "inner", "backup")], /Replica is inside the source/],
    ["source inside replica", [join(dst), dir], /Source is inside the replica/],
    ["replica path runs through a file", [src, join(dir, "afile", "sub")], /runs through a file/],
    ["unknown flag", [src, dst, "--frobnicate"], /Unknown option: '--frobnicate'/],
    ["bad interval", [src, dst, "-i", "0"], /Interval must be greater than zero/],
    ["bad jobs", [src, dst, "-j", "x"], /Jobs must be a whole number/],
    ["log inside replica", [src, dst, "-l", join(dst, "sync.log")], /Log file is inside the replica/],
    ["log in a missing directory", [src, dst, "-l", join(dir, "no", "dir", "x.log")], /Cannot open log file/],
    ["missing arguments", [src], /Missing arguments/],
  ];
  if (POSIX) cases.push(["same tree through a symlink", [join(dir, "srclink"), src], /Replica is the source/]);
  const beforeSrc = await snapshot(src);
  const beforeDst = await snapshot(dst);
  for (const [name, args, message] of cases) {
    await t.step(name, async () => {
      const run = await runMain(args);
      assert.equal(run.code, 2, `${name}: ${run.stdout}${run.stderr}`);
      const lines = run.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
      assert.match(lines[0]!, message);
      assert.doesNotMatch(run.stderr, /^\s+at /m, "no stack trace");
      assert.deepEqual(await snapshot(src), beforeSrc);
      assert.deepEqual(await snapshot(dst), beforeDst);
    });
  }
});

Deno.test("main.ts refuses to empty a full replica from an empty source (exit 3)", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await Deno.mkdir(src);
  await writeTree(dst, { "precious.txt": "backup", d: { f: "f" } });
  const before = await snapshot(dst);
  const refused = await runMain([src, dst]);
  assert.equal(refused.code, 3);
  assert.match(refused.stderr, /Source is empty but the replica has files; refusing to empty it/);
  assert.deepEqual(await snapshot(dst), before);

  const allowed = await runMain([src, dst, "--allow-empty-source"]);
  assert.equal(allowed.code, 0, allowed.stderr);
  await assertMirror(src, dst);
});

Deno.test("main.ts appends to its log file and never truncates it", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  const log = join(dir, "sync.log");
  await writeTree(src, { "a.txt": "a" });
  await Deno.writeTextFile(log, "earlier line\n");
  assert.equal((await runMain([src, dst, "-l", log])).code, 0);
  assert.equal((await runMain([src, dst, "--log", log, "--log-format", "json"])).code, 0);
  const lines = (await Deno.readTextFile(log)).trim().split("\n");
  assert.equal(lines[0], "earlier line");
  assert.match(lines[1]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO {2}copy a\.txt \(1 B\)$/);
  assert.match(lines[2]!, /INFO {2}Sync done: 0 created, 1 copied/);
  const summary = JSON.parse(lines[3]!);
  assert.equal(summary.action, "summary");
  assert.equal(summary.copied, 0);
  assert.equal(summary.level, "info");
});

Deno.test("main.ts works under least privilege with absolute paths", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  const logdir = join(dir, "logs");
  await writeTree(src, { a: { "b.txt": "b" }, c: {} });
  await Deno.mkdir(logdir);
  const run = await runMain([src, dst, "-l", join(logdir, "sync.log")], {
    permissions: [`--allow-read=${src},${dst},${logdir}`, `--allow-write=${dst},${logdir}`],
  });
  assert.equal(run.code, 0, run.stderr);
  await assertMirror(src, dst);
  assert.match(await Deno.readTextFile(join(logdir, "sync.log")), /copy a\/b\.txt/);
  const checksum = await runMain([src, dst, "-c"], {
    permissions: [`--allow-read=${src},${dst}`, `--allow-write=${dst}`],
  });
  assert.equal(checksum.code, 0, checksum.stderr);

  // Deno refuses symlink creation under path-scoped grants: one clear line per link, exit 1.
  if (POSIX) {
    await Deno.symlink("a", join(src, "l"));
    const links = await runMain([src, dst], {
      permissions: [`--allow-read=${src},${dst}`, `--allow-write=${dst}`],
    });
    assert.equal(links.code, 1);
    assert.match(links.stderr, /ERROR l: Cannot create a symbolic link with path-scoped permissions/);
    assert.equal((await runMain([src, dst])).code, 0, "plain permissions copy the link");
    await assertMirror(src, dst);
  }
});

Deno.test("main.ts leaves old or new content after SIGKILL mid-replace, and cleans up next run", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await Deno.mkdir(src);
  await Deno.mkdir(dst);
  const size = 256 * 1024 * 1024;
  const chunk = new Uint8Array(1024 * 1024);
  const writeBig = async (path: string, fill: number) => {
    chunk.fill(fill);
    using f = await Deno.open(path, { write: true, create: true, truncate: true });
    for (let i = 0; i < size / chunk.length; i++) await f.write(chunk);
  };
  await writeBig(join(dst, "big.bin"), 0x11); // old content
  await writeBig(join(src, "big.bin"), 0x22); // new content, same size, newer mtime
  await Deno.utime(join(dst, "big.bin"), new Date(2000, 0, 1), new Date(2000, 0, 1));

  const child = spawnMain([src, dst]);
  // Kill as soon as the temp file exists: the copy is in flight.
  await waitFor(() => [...Deno.readDirSync(dst)].some((e) => e.name.endsWith(".tmp")), 20_000, "temp file");
  child.kill("SIGKILL");
  await child.status;
  await child.stdout.cancel();
  await child.stderr.cancel();

  using f = await Deno.open(join(dst, "big.bin"));
  const head = new Uint8Array(1);
  await f.read(head);
  assert.ok(head[0] === 0x11 || head[0] === 0x22, "the final name holds old or new content");
  assert.equal((await Deno.stat(join(dst, "big.bin"))).size, size, "never a partial file at the final name");

  const rerun = await runMain([src, dst]);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.deepEqual([...Deno.readDirSync(dst)].map((e) => e.name), ["big.bin"], "leftover temp files are removed");
  await assertMirror(src, dst);
});

Deno.test("main.ts as a non-root user: read-only replica entries, and an unreadable source directory", {
  ignore: !POSIX,
}, async (t) => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  const many = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`m${i}`, `many ${i}`]));
  // 600 new files (enough for the copy workers) in a read-only replica directory: the workers fail on them, and the
  // careful path must open the directory up and finish the job.
  await writeTree(src, {
    locked: { "a": "a" },
    open: { "b": "b2", "c": "c", ...many },
    roSrc: { "x": "x" },
    listOnly: { "f": "new content" },
  });
  await writeTree(dst, {
    locked: { "a": "a" },
    open: { "b": "old b", "stray": "s", roSub: { deeper: { "f": "f" } } },
    roSrc: { "x": "old x" },
    junk: { ro: { "f": "f" } },
    listOnly: { "f": "old", "stray": "s" },
  });
  await Deno.chmod(join(dst, "listOnly"), 0o444); // readable but not searchable: lstat inside fails
  await Deno.chmod(join(src, "roSrc"), 0o555);
  await Deno.chmod(join(dst, "open", "b"), 0o444);
  await Deno.chmod(join(dst, "open", "roSub", "deeper"), 0o555);
  await Deno.chmod(join(dst, "open", "roSub"), 0o000);
  await Deno.chmod(join(dst, "open"), 0o555);
  await Deno.chmod(join(dst, "junk", "ro"), 0o555);
  await Deno.chmod(dst, 0o555);

  const first = await runMainUnprivileged([src, dst], [src, dst]);
  if (!first) {
    t.step({ name: "no way to run as a non-root user here", ignore: true, fn: () => {} });
    return;
  }
  assert.equal(first.code, 0, first.stdout + first.stderr);
  await assertMirror(src, dst);

  await Deno.chmod(join(src, "locked"), 0o000);
  await Deno.writeTextFile(join(dst, "open", "stray2"), "s");
  await Deno.chmod(join(dst, "open", "stray2"), 0o444);
  const second = await runMainUnprivileged([src, dst], [join(dst, "open", "stray2")]);
  await Deno.chmod(join(src, "locked"), 0o755);
  assert.ok(second);
  assert.equal(second.code, 1, second.stdout + second.stderr);
  assert.match(second.stderr, /locked: Cannot read directory/);
  assert.equal(await Deno.readTextFile(join(dst, "locked", "a")), "a", "kept: not provably extraneous");
  await assert.rejects(Deno.lstat(join(dst, "open", "stray2")), Deno.errors.NotFound);
});

Deno.test("main.ts reports names that are not valid UTF-8 instead of skipping them silently (exit 1)", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await writeTree(src, { "ok.txt": "fine", sub: { "keep.txt": "k" } });
  await writeTree(dst, { sub: { "stray.txt": "s" } });
  // Latin-1 bytes, as an old tool or a foreign disk leaves them; Deno cannot create such a name.
  const made = await new Deno.Command("sh", {
    args: ["-c", "touch \"$(printf 'caf\\351.txt')\" && touch \"sub/$(printf 'x\\377')\""],
    cwd: src,
  }).output();
  if (!made.success) return; // the file system refuses such names (it enforces UTF-8)
  const run = await runMain([src, dst]);
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(run.stderr, /caf\uFFFD\.txt: Name is not valid UTF-8 and cannot be copied/);
  assert.match(run.stderr, /sub\/x\uFFFD: Name is not valid UTF-8/);
  assert.equal(await Deno.readTextFile(join(dst, "ok.txt")), "fine", "the rest is synced");
  assert.equal(await Deno.readTextFile(join(dst, "sub", "stray.txt")), "s", "nothing removed on a partial listing");
});

Deno.test("main.ts follows a rename that changes only case, on any file system", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "readme.txt": "text", docs: { "a.md": "a" } });
  assert.equal((await runMain([src, dst])).code, 0);
  await Deno.rename(join(src, "readme.txt"), join(src, "x.tmp"));
  await Deno.rename(join(src, "x.tmp"), join(src, "README.txt"));
  await Deno.rename(join(src, "docs"), join(src, "y.tmp"));
  await Deno.rename(join(src, "y.tmp"), join(src, "Docs"));
  const run = await runMain([src, dst]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual([...Deno.readDirSync(dst)].map((e) => e.name).sort(), ["Docs", "README.txt"]);
  assert.equal(await Deno.readTextFile(join(dst, "README.txt")), "text");
  assert.equal(await Deno.readTextFile(join(dst, "Docs", "a.md")), "a");
  await assertMirror(src, dst);
});

Deno.test("main.ts says 'set attrs' for a change of mode alone, and 'would set attrs' in a dry run", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "f.txt": "same" });
  assert.equal((await runMain([src, dst])).code, 0);
  await Deno.chmod(join(src, "f.txt"), 0o600);
  const dry = await runMain([src, dst, "-n"]);
  assert.match(dry.stdout, /INFO {2}would set attrs f\.txt\n/);
  const run = await runMain([src, dst]);
  assert.match(run.stdout, /INFO {2}set attrs f\.txt\n/);
  await assertMirror(src, dst);
});

Deno.test("main.ts -q prints nothing on a clean run, and warnings, errors and their summary otherwise", async (t) => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  const log = join(dir, "quiet.log");
  await writeTree(src, { "a.txt": "a", sub: { "b.txt": "b" } });
  await t.step("a clean run prints nothing; the log file still gets every line and the summary", async () => {
    const run = await runMain([src, dst, "-q", "-l", log]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "");
    assert.equal(run.stderr, "");
    const text = await Deno.readTextFile(log);
    assert.match(text, /INFO {2}copy a\.txt/);
    assert.match(text, /INFO {2}Sync done: 1 created, 2 copied/);
    const again = await runMain([src, dst, "-q"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout + again.stderr, "", "a no-op run is silent too");
  });
  if (!POSIX) return;
  await t.step("a run with errors prints the errors and its summary, as warnings, on stderr", async () => {
    await Deno.symlink("a.txt", join(src, "l"));
    const run = await runMain([src, dst, "-q"], {
      permissions: [`--allow-read=${src},${dst}`, `--allow-write=${dst}`],
    });
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /ERROR l: Cannot create a symbolic link/);
    assert.match(run.stderr, /WARN {2}Sync done: .*1 errors/);
  });
});

Deno.test("main.ts writes start-up errors to the log file too, in its format, and once to stderr", async (t) => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  await writeTree(src, { "a.txt": "a" });
  await writeTree(dst, { "old.txt": "old" });
  await Deno.writeTextFile(join(dir, "afile"), "x");
  await t.step("text: a missing source is exit 2, one line on stderr, and the same line in the log", async () => {
    const log = join(dir, "text.log");
    const run = await runMain([join(dir, "not-mounted"), dst, "-l", log]);
    assert.equal(run.code, 2, run.stderr);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /ERROR Source does not exist: '.*not-mounted'$/);
    assert.equal((await Deno.readTextFile(log)).trim(), lines[0]);
  });
  await t.step("json: a replica that is a file is logged as a JSON error line", async () => {
    const log = join(dir, "json.log");
    const run = await runMain([src, join(dir, "afile"), "-l", log, "--log-format", "json"]);
    assert.equal(run.code, 2, run.stderr);
    const record = JSON.parse((await Deno.readTextFile(log)).trim());
    assert.equal(record.level, "error");
    assert.equal(record.action, "error");
    assert.match(record.message, /Replica exists but is not a directory/);
    assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
  });
  await t.step("a log file inside the replica is refused before it is created", async () => {
    await Deno.mkdir(dst, { recursive: true }).catch(() => {});
    const run = await runMain([src, dst, "-l", join(dst, "sync.log")]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^foldersync: Log file is inside the replica/);
    await assert.rejects(Deno.lstat(join(dst, "sync.log")), Deno.errors.NotFound);
  });
});

Deno.test("main.ts creates only the replica folder itself; a missing parent is exit 2 unless --mkpath", async (t) => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const mount = join(dir, "mnt", "backup"); // an unmounted disk: neither folder exists
  const replica = join(mount, "photos");
  await writeTree(src, { "a.txt": "a", sub: { "b.txt": "b" } });
  for (const dryRun of [false, true]) {
    await t.step(`missing parent${dryRun ? ", dry run" : ""}: exit 2, one line, nothing created`, async () => {
      const run = await runMain([src, replica, ...(dryRun ? ["-n"] : [])]);
      assert.equal(run.code, 2, run.stdout + run.stderr);
      const lines = run.stderr.trim().split("\n");
      assert.equal(lines.length, 1, run.stderr);
      assert.match(
        lines[0]!,
        /Replica's parent folder does not exist: '.*mnt\/backup' \(is the disk mounted\? --mkpath creates it\)$/,
      );
      await assert.rejects(Deno.lstat(join(dir, "mnt")), Deno.errors.NotFound);
    });
  }
  await t.step("--mkpath with --dry-run creates nothing", async () => {
    const run = await runMain([src, replica, "--mkpath", "-n"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /would copy sub\/b\.txt/);
    await assert.rejects(Deno.lstat(join(dir, "mnt")), Deno.errors.NotFound);
  });
  await t.step("--mkpath creates the parents and mirrors", async () => {
    const run = await runMain([src, replica, "--mkpath"]);
    assert.equal(run.code, 0, run.stderr);
    await assertMirror(src, replica);
  });
  await t.step("an existing parent: the replica folder is created without --mkpath", async () => {
    const run = await runMain([src, join(mount, "music")]);
    assert.equal(run.code, 0, run.stderr);
    await assertMirror(src, join(mount, "music"));
  });
});

Deno.test("main.ts --log-max-size: below 1K is exit 2; at 1K every rotated file holds lines", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const src = join(dir, "src");
  const dst = join(dir, "dst");
  const log = join(dir, "small.log");
  await Deno.mkdir(src);
  for (let i = 0; i < 60; i++) await Deno.writeTextFile(join(src, `file-${i}.txt`), "x");
  // LogTape's rotating sink rolls over before a write that would pass the limit even when the
  // file is still empty, so a limit smaller than a line left an empty FILE.1 behind.
  const tiny = await runMain([src, dst, "-l", log, "--log-max-size", "1"]);
  assert.equal(tiny.code, 2, tiny.stdout + tiny.stderr);
  assert.match(tiny.stderr, /Log max size must be at least 1K: '1'/);
  await assert.rejects(Deno.lstat(log), Deno.errors.NotFound);

  const run = await runMain([src, dst, "-l", log, "--log-max-size", "1K", "--log-keep", "3"]);
  assert.equal(run.code, 0, run.stderr);
  const logs = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("small.log")).sort();
  assert.deepEqual(logs, ["small.log", "small.log.1", "small.log.2", "small.log.3"]);
  for (const name of logs) {
    const size = (await Deno.stat(join(dir, name))).size;
    assert.ok(size > 0 && size <= 2048, `${name}: ${size} bytes`);
  }
});
