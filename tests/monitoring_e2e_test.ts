/**
 * `--notify` and `--metrics` end to end: main.ts as a subprocess on real trees, a real HTTP
 * server that records each POST, and the metrics file read back by a strict parser.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertMirror,
  mirrorDiff,
  POSIX,
  ROOT,
  runMain,
  snapshot,
  startMain,
  tempDir,
  treeDiff,
  waitFor,
  writeTree,
} from "./helpers.ts";
import { closedPort, notifyServer, type Received } from "./notify_server.ts";
import { parseExposition, sampleOf } from "./prometheus.ts";
import { remoteTest, sftpFolder, sftpServer } from "./remote_env.ts";

/** What a run with a notify URL on 127.0.0.1 needs (the host name goes into the body). */
const NET = ["--allow-read", "--allow-write", "--allow-net=127.0.0.1", "--allow-sys=hostname"];
const HOST = Deno.hostname();

/** Runs main.ts with the network grant. */
const run = (args: string[], permissions = NET) => runMain(args, { permissions });

/** The body's counts as the summary line prints them. */
function counts(body: Record<string, unknown>) {
  const { created, copied, updated, linked, attrs, removed, backed_up, errors, vanished, bytes } = body;
  return { created, copied, updated, linked, attrs, removed, backed_up, errors, vanished, bytes };
}

const ZERO = {
  created: 0,
  copied: 0,
  updated: 0,
  linked: 0,
  attrs: 0,
  removed: 0,
  backed_up: 0,
  errors: 0,
  vanished: 0,
  bytes: 0,
};

/**
 * The replica mirrors the source but for `own`, a file of foldersync's in the source's root
 * folder: its rename after each run gives that folder a new time, so the replica's root may
 * lag by that (rsync compares whole seconds: in the same second it sees nothing).
 */
async function assertMirrorButRootTime(src: string, dst: string, own: string): Promise<void> {
  const diff = await mirrorDiff(src, dst, { exclude: [own] });
  assert.ok(diff === "" || diff === ".d..t...... ./", `replica differs from source:\n${diff}`);
  assert.deepEqual(await treeDiff(src, dst, "", [own]), [], "every entry in the folder the same");
}

/** Checks the fields every body has, for this source and replica, and that it started in [before, after]. */
function assertCommon(got: Received, where: { source: string; replica: string; before: number; after: number }) {
  assert.equal(got.method, "POST");
  assert.equal(got.contentType, "application/json");
  assert.match(got.userAgent ?? "", /^foldersync\/\d+\.\d+\.\d+/);
  const body = got.body;
  assert.equal(body.source, where.source);
  assert.equal(body.replica, where.replica);
  assert.equal(body.host, HOST);
  assert.equal(typeof body.started_at, "string");
  const started = Date.parse(body.started_at as string);
  assert.equal(new Date(started).toISOString(), body.started_at, "ISO 8601 in UTC");
  assert.ok(started >= where.before - 1000 && started <= where.after, `started_at ${body.started_at}`);
  assert.ok(Number.isInteger(body.duration_ms) && (body.duration_ms as number) >= 0);
  assert.ok((body.duration_ms as number) <= where.after - where.before + 1000, `duration_ms ${body.duration_ms}`);
}

Deno.test(
  "main.ts --notify posts one body per one-shot run: clean, refused (5), empty source (3), failed to start (2), locked (4)",
  {
    ignore: !POSIX,
  },
  async (t) => {
    await using tmp = await tempDir();
    await using server = notifyServer();
    const src = join(tmp.path, "src");
    const dst = join(tmp.path, "dst");
    const url = `${server.origin}/ping/{exit_code}?status={status}`;
    await writeTree(src, { "a.txt": "aaa", sub: { "b.txt": "bb" } });

    await t.step("a clean run: ok, exit 0, the counts of its summary", async () => {
      const before = Date.now();
      const out = await run([src, dst, "--notify", url]);
      const after = Date.now();
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stderr, "");
      assert.match(
        out.stdout,
        /Sync done: 1 created, 2 copied, 0 updated, 0 linked, 0 attrs, 0 removed, 0 errors; 5 B/,
      );
      await assertMirror(src, dst);
      assert.equal(server.received.length, 1, "one body per run");
      const [got] = server.received;
      assert.equal(got!.path, "/ping/0?status=ok");
      assertCommon(got!, { source: src, replica: dst, before, after });
      assert.equal(got!.body.status, "ok");
      assert.equal(got!.body.exit_code, 0);
      assert.equal(got!.body.dry_run, false);
      assert.equal(got!.body.removals_refused, 0);
      assert.equal("error" in got!.body, false);
      assert.deepEqual(counts(got!.body), { ...ZERO, created: 1, copied: 2, bytes: 5 });
    });

    await t.step("--max-delete refuses the removals: refused, exit 5, the removals refused counted", async () => {
      server.received.length = 0;
      await writeTree(dst, { "stale1.txt": "x", "stale2.txt": "y" });
      await Deno.writeTextFile(join(src, "new.txt"), "new!");
      const before = Date.now();
      const out = await run([src, dst, "--notify", url, "--max-delete", "1"]);
      const after = Date.now();
      assert.equal(out.code, 5, out.stderr);
      assert.equal(server.received.length, 1);
      const [got] = server.received;
      assert.equal(got!.path, "/ping/5?status=refused");
      assertCommon(got!, { source: src, replica: dst, before, after });
      assert.equal(got!.body.status, "refused");
      assert.equal(got!.body.exit_code, 5);
      assert.equal(got!.body.removals_refused, 2);
      // The root folder's time may or may not count as an attrs change, as the times fall: not compared.
      assert.deepEqual(counts(got!.body), { ...ZERO, copied: 1, bytes: 4, attrs: got!.body.attrs });
      assert.equal(await Deno.readTextFile(join(dst, "new.txt")), "new!");
      const again = await run([src, dst]);
      assert.equal(again.code, 0, again.stderr);
      await assertMirror(src, dst);
    });

    await t.step("an empty source and a full replica: refused, exit 3, the error line", async () => {
      server.received.length = 0;
      const empty = join(tmp.path, "empty");
      await Deno.mkdir(empty);
      const out = await run([empty, dst, "--notify", url]);
      assert.equal(out.code, 3, out.stderr);
      assert.equal(server.received.length, 1);
      const body = server.received[0]!.body;
      assert.deepEqual([body.status, body.exit_code, body.source], ["refused", 3, empty]);
      assert.match(body.error as string, /^Source is empty/);
      assert.deepEqual(counts(body), ZERO);
    });

    await t.step("a missing source fails before any run: failed, exit 2, the error line, nothing touched", async () => {
      server.received.length = 0;
      const before = await snapshot(dst);
      const missing = join(tmp.path, "no-such-source");
      const out = await run([missing, dst, "--notify", url]);
      assert.equal(out.code, 2, out.stderr);
      assert.match(out.stderr, /Source does not exist: '.*no-such-source'/);
      assert.deepEqual(await snapshot(dst), before);
      assert.equal(server.received.length, 1);
      const got = server.received[0]!;
      assert.equal(got.path, "/ping/2?status=failed");
      assert.deepEqual([got.body.status, got.body.exit_code, got.body.source], ["failed", 2, missing]);
      assert.equal(got.body.error, `Source does not exist: '${missing}'`);
      assert.deepEqual(counts(got.body), ZERO);
    });

    await t.step("another foldersync holds the replica: refused, exit 4", async () => {
      server.received.length = 0;
      const loop = startMain([src, dst, "-i", "1h"], NET);
      try {
        await waitFor(() => /Sync done/.test(loop.out.text()), 20_000, "the loop's first run");
        const out = await run([src, dst, "--notify", url]);
        assert.equal(out.code, 4, out.stderr);
        assert.equal(server.received.length, 1);
        const body = server.received[0]!.body;
        assert.deepEqual([body.status, body.exit_code], ["refused", 4]);
        assert.match(body.error as string, /Another foldersync/i);
      } finally {
        await loop.stop();
      }
    });
  },
);

Deno.test("main.ts --notify: a one-shot run stopped by SIGTERM posts failed with exit 130, and its metrics say so", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  await using server = notifyServer();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const metrics = join(tmp.path, "sync.prom");
  await Deno.mkdir(src);
  await Deno.mkdir(dst);
  // A large sparse file: the copy takes long enough to be stopped in flight.
  using file = await Deno.open(join(src, "big.bin"), { write: true, create: true });
  await file.truncate(1024 * 1024 * 1024);
  const running = startMain([src, dst, "--notify", server.origin, "--metrics", metrics], NET);
  await waitFor(() => [...Deno.readDirSync(dst)].some((e) => e.name.endsWith(".tmp")), 20_000, "the copy in flight");
  const { status } = await running.stop("SIGTERM");
  assert.equal(status.code, 130, running.err.text());
  assert.equal(server.received.length, 1);
  const body = server.received[0]!.body;
  assert.deepEqual([body.status, body.exit_code, body.copied], ["failed", 130, 0]);
  const m = parseExposition(await Deno.readTextFile(metrics));
  assert.equal(sampleOf(m, "foldersync_last_run_exit_code"), 130);
  assert.equal(sampleOf(m, "foldersync_last_success_timestamp_seconds"), 0);
});

Deno.test("main.ts --notify in loops: --interval and --watch post one body per run, and a missing source", {
  ignore: !POSIX,
}, async (t) => {
  await using tmp = await tempDir();
  await using server = notifyServer();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a" });

  await t.step("--interval: a body per run; a source gone is a body per run with exit 2", async () => {
    const loop = startMain([src, dst, "-i", "1s", "--notify", `${server.origin}/interval`], NET);
    try {
      await server.waitFor(2);
      const [first, second] = server.received;
      assert.deepEqual(counts(first!.body), { ...ZERO, copied: 1, bytes: 1 });
      assert.deepEqual(counts(second!.body), ZERO, "the second run had nothing to do");
      for (const got of [first!, second!]) assert.deepEqual([got.body.status, got.body.exit_code], ["ok", 0]);
      assert.ok(Date.parse(second!.body.started_at as string) - Date.parse(first!.body.started_at as string) >= 900);
      const moved = join(tmp.path, "src-away");
      await Deno.rename(src, moved);
      await waitFor(() => server.received.some((r) => r.body.exit_code === 2), 20_000, "a body for the missing source");
      const gone = server.received.find((r) => r.body.exit_code === 2)!;
      assert.equal(gone.body.status, "failed");
      assert.equal(gone.body.error, `Source folder is missing: '${src}'`);
      await Deno.rename(moved, src);
      await Deno.writeTextFile(join(src, "b.txt"), "bb");
      await waitFor(() => server.received.some((r) => r.body.copied === 1 && r.body.bytes === 2), 20_000, "b.txt");
    } finally {
      const { status } = await loop.stop();
      assert.equal(status.code, 0, loop.err.text());
    }
    assert.equal(loop.err.text().match(/Notify failed/g), null);
    await assertMirror(src, dst);
  });

  await t.step(
    "--watch: a body for the first run and one for each change; a metrics file in the source starts none",
    async () => {
      server.received.length = 0;
      const metrics = join(src, "sync.prom");
      const loop = startMain([src, dst, "-w", "--notify", `${server.origin}/watch`, "--metrics", metrics], NET);
      try {
        await server.waitFor(1);
        await Deno.writeTextFile(join(src, "c.txt"), "ccc");
        await waitFor(() => server.received.some((r) => r.body.copied === 1 && r.body.bytes === 3), 20_000, "c.txt");
        const runs = server.received.length;
        // The metrics file and its temp file change after every run: were they watched, runs would follow runs.
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(server.received.length, runs, "no run for foldersync's own files");
        assert.ok(server.received.every((r) => r.body.status === "ok"));
      } finally {
        const { status } = await loop.stop();
        assert.equal(status.code, 0, loop.err.text());
      }
      await assertMirrorButRootTime(src, dst, "sync.prom");
      await assert.rejects(Deno.lstat(join(dst, "sync.prom")), Deno.errors.NotFound);
      assert.equal(sampleOf(parseExposition(await Deno.readTextFile(metrics)), "foldersync_last_run_exit_code"), 0);
      await Deno.remove(metrics);
    },
  );
});

Deno.test("main.ts --notify: a failed POST is one warning line, in the log too, and never changes the exit code", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const log = join(tmp.path, "sync.log");
  await writeTree(src, { "a.txt": "a" });
  const url = `http://127.0.0.1:${closedPort()}/hook`;
  const clean = await run([src, dst, "--notify", url, "-l", log, "-q"]);
  assert.equal(clean.code, 0, clean.stderr);
  const lines = clean.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, clean.stderr);
  assert.match(lines[0]!, new RegExp(`WARN {2}Notify failed: '${url}': client error \\(Connect\\)`));
  assert.match(await Deno.readTextFile(log), /WARN {2}Notify failed: '/);
  await assertMirror(src, dst);
  await Deno.writeTextFile(join(dst, "stale.txt"), "x");
  const refused = await run([src, dst, "--notify", url, "--max-delete", "0", "-q"]);
  assert.equal(refused.code, 5, refused.stderr);
  assert.equal(refused.stderr.match(/Notify failed/g)?.length, 1);
  // Without the network grant, the line names the flag to add.
  const denied = await run([src, dst, "--notify", url, "-q"], ["--allow-read", "--allow-write"]);
  assert.equal(denied.code, 0, denied.stderr);
  assert.match(denied.stderr, /Notify failed: '.*': NotCapable: Requires net access to "127\.0\.0\.1:\d+"/);
});

Deno.test("main.ts refuses a bad --notify URL with one line and exit 2, touching nothing and posting nothing", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  await writeTree(src, { "a.txt": "a" });
  for (const url of ["ftp://127.0.0.1/x", "http://127.0.0.1/{exit-code}", "127.0.0.1:8080/x"]) {
    const out = await run([src, join(tmp.path, "dst"), "--notify", url]);
    assert.equal(out.code, 2);
    assert.equal(out.stdout, "");
    assert.match(
      out.stderr,
      /^foldersync: (Notify URL must be an http|Unknown placeholder in the notify URL)[^\n]*\n$/,
    );
  }
  await assert.rejects(Deno.lstat(join(tmp.path, "dst")), Deno.errors.NotFound);
});

Deno.test("main.ts --dry-run posts its body with dry_run true and leaves the metrics file as it is", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  await using server = notifyServer();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const metrics = join(tmp.path, "sync.prom");
  await writeTree(src, { "a.txt": "a", "b.txt": "b" });
  const out = await run([src, dst, "-n", "--notify", server.origin, "--metrics", metrics]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(server.received.length, 1);
  const body = server.received[0]!.body;
  assert.deepEqual([body.status, body.exit_code, body.dry_run], ["ok", 0, true]);
  assert.deepEqual(counts(body), { ...ZERO, copied: 2, bytes: 2 }, "what it would do");
  await assert.rejects(Deno.lstat(metrics), Deno.errors.NotFound);
  await assert.rejects(Deno.lstat(dst), Deno.errors.NotFound);
});

Deno.test("main.ts --metrics: figures after a clean run and failed ones, the file replaced, the last success kept", {
  ignore: !POSIX,
}, async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const metricsDir = join(tmp.path, "textfile");
  const metrics = join(metricsDir, "backup.prom");
  await Deno.mkdir(metricsDir);
  await writeTree(src, { "a.txt": "aaaa", d: { "b.txt": "bb" } });
  const read = async () => parseExposition(await Deno.readTextFile(metrics));
  const files = () => [...Deno.readDirSync(metricsDir)].map((e) => e.name);
  let success = 0;
  let inode: number | null = null;

  await t.step("a clean run", async () => {
    const before = Date.now() / 1000;
    const out = await runMain([src, dst, "--metrics", metrics]);
    const after = Date.now() / 1000;
    assert.equal(out.code, 0, out.stderr);
    await assertMirror(src, dst);
    const m = await read();
    assert.equal(sampleOf(m, "foldersync_last_run_exit_code", { source: src, replica: dst }), 0);
    const ended = sampleOf(m, "foldersync_last_run_timestamp_seconds");
    assert.ok(ended >= before && ended <= after, `${before} <= ${ended} <= ${after}`);
    success = sampleOf(m, "foldersync_last_success_timestamp_seconds");
    assert.equal(success, ended);
    const duration = sampleOf(m, "foldersync_last_run_duration_seconds");
    assert.ok(duration > 0 && duration <= after - before, `${duration}`);
    assert.equal(sampleOf(m, "foldersync_last_run_entries", { action: "created" }), 1);
    assert.equal(sampleOf(m, "foldersync_last_run_entries", { action: "copied" }), 2);
    assert.equal(sampleOf(m, "foldersync_last_run_written_bytes"), 6);
    assert.equal(sampleOf(m, "foldersync_last_run_failed_entries"), 0);
    assert.deepEqual(files(), ["backup.prom"]);
    inode = (await Deno.stat(metrics)).ino;
  });

  await t.step("a run with a failed entry: exit 1 counted, the last success kept", async () => {
    await Deno.symlink("a.txt", join(src, "link"));
    // Deno makes no symbolic link under scoped grants: one failed entry.
    const out = await runMain([src, dst, "--metrics", metrics], {
      permissions: [`--allow-read=${src},${dst},${metricsDir}`, `--allow-write=${dst},${metricsDir}`],
    });
    assert.equal(out.code, 1, out.stderr);
    const m = await read();
    assert.equal(sampleOf(m, "foldersync_last_run_exit_code"), 1);
    assert.equal(sampleOf(m, "foldersync_last_run_failed_entries"), 1);
    assert.equal(sampleOf(m, "foldersync_last_success_timestamp_seconds"), success);
    assert.ok(sampleOf(m, "foldersync_last_run_timestamp_seconds") > success);
    assert.notEqual((await Deno.stat(metrics)).ino, inode, "replaced by a rename");
    assert.deepEqual(files(), ["backup.prom"], "no temp file left");
    await Deno.remove(join(src, "link"));
  });

  await t.step("a source gone before the run: exit 2 in the file, the last success kept", async () => {
    const away = join(tmp.path, "src-away");
    await Deno.rename(src, away);
    const out = await runMain([src, dst, "--metrics", metrics]);
    assert.equal(out.code, 2, out.stderr);
    const m = await read();
    assert.equal(sampleOf(m, "foldersync_last_run_exit_code", { source: src }), 2);
    assert.equal(sampleOf(m, "foldersync_last_success_timestamp_seconds"), success);
    await Deno.rename(away, src);
  });

  await t.step("a file inside the replica is refused before anything is touched", async () => {
    const before = await snapshot(dst);
    const out = await runMain([src, dst, "--metrics", join(dst, "x.prom")]);
    assert.equal(out.code, 2);
    assert.match(out.stderr, /^.*ERROR Metrics file is inside the replica: '.*dst\/x\.prom'\n$/);
    assert.deepEqual(await snapshot(dst), before);
  });

  await t.step(
    "a file inside the source is left out of the sync; its folder's time changes after each run",
    async () => {
      const inSource = join(src, "sync.prom");
      for (let i = 0; i < 2; i++) {
        const out = await runMain([src, dst, "--metrics", inSource]);
        assert.equal(out.code, 0, out.stderr);
        assert.match(out.stdout, /Sync done: .* 0 errors/);
        assert.doesNotMatch(out.stdout, /sync\.prom/);
      }
      await assert.rejects(Deno.lstat(join(dst, "sync.prom")), Deno.errors.NotFound);
      assert.deepEqual([...Deno.readDirSync(src)].map((e) => e.name).sort(), ["a.txt", "d", "sync.prom"]);
      await assertMirrorButRootTime(src, dst, "sync.prom");
    },
  );
});

/** Splits an `ExecStart=` line as systemd does for the words foldersync writes. */
function execStartWords(text: string): string[] {
  const line = text.split("\n").find((l) => l.startsWith("ExecStart="))!;
  const words: string[] = [];
  const rest = line.replace(/^ExecStart=/, "");
  let i = 0;
  while (i < rest.length) {
    while (rest[i] === " ") i++;
    if (i >= rest.length) break;
    let word = "";
    if (rest[i] === '"') {
      for (i++; rest[i] !== '"'; i++) word += rest[i] === "\\" ? rest[++i] : rest[i];
      i++;
    } else {
      while (i < rest.length && rest[i] !== " ") word += rest[i++];
    }
    words.push(word.replaceAll("%%", "%").replaceAll("$$", "$"));
  }
  return words;
}

const denoDir: string = JSON.parse(
  new TextDecoder().decode(
    (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" }).output()).stdout,
  ),
).denoDir;

/** Runs a printed service command as systemd would: from /, with a clean environment. */
async function runAsService(words: string[], home: string) {
  const [program, ...args] = words;
  const out = await new Deno.Command(program!, {
    args,
    cwd: "/",
    // systemd gives a service a PATH (ssh is found on it).
    env: { HOME: home, DENO_DIR: denoDir, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("service print carries --notify and --metrics with the grants they need, and the printed command runs", {
  ignore: !POSIX,
}, async (t) => {
  await using tmp = await tempDir();
  await using server = notifyServer();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const home = join(tmp.path, "home");
  const metricsDir = join(tmp.path, "textfile");
  await Deno.mkdir(home);
  await Deno.mkdir(metricsDir);
  await writeTree(src, { "a.txt": "a", "l": { link: "a.txt" } });
  const url = `${server.origin}/hc/{exit_code}`;
  const print = async (extra: string[]) => {
    const out = await runMain(
      ["service", "print", "docs", src, dst, "--every", "1h", "--platform", "systemd", "--notify", url, ...extra],
      { cwd: tmp.path },
    );
    assert.equal(out.code, 0, out.stderr);
    return execStartWords(out.stdout);
  };

  await t.step("a local replica: the network for the URL's host and port alone, the host name", async () => {
    const words = await print(["--metrics", "textfile/docs.prom"]);
    const metrics = join(metricsDir, "docs.prom");
    assert.ok(words.includes(`--allow-net=127.0.0.1:${server.port}`), words.join(" "));
    assert.ok(words.includes("--allow-sys=hostname"));
    assert.ok(words.includes(`--deny-write=${src}`), "the metrics file is not in the source");
    assert.deepEqual(words.slice(words.indexOf("--notify"), words.indexOf("--notify") + 2), ["--notify", url]);
    assert.deepEqual(words.slice(words.indexOf("--metrics"), words.indexOf("--metrics") + 2), ["--metrics", metrics]);
    const out = await runAsService(words, home);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stderr, "");
    await assertMirror(src, dst);
    assert.equal(server.received.length, 1);
    assert.equal(server.received[0]!.path, "/hc/0");
    assert.deepEqual([server.received[0]!.body.host, server.received[0]!.body.linked], [HOST, 1]);
    assert.equal(sampleOf(parseExposition(await Deno.readTextFile(metrics)), "foldersync_last_run_exit_code"), 0);
  });

  await t.step("a metrics file in the source lifts --deny-write; without --notify, no network", async () => {
    const withFile = await print(["--metrics", join(src, "docs.prom")]);
    assert.ok(!withFile.some((w) => w.startsWith("--deny-write")), withFile.join(" "));
    const out = await runMain(["service", "print", "docs", src, dst, "--every", "1h", "--platform", "systemd"]);
    const plain = execStartWords(out.stdout);
    assert.ok(!plain.some((w) => w.startsWith("--allow-net") || w.startsWith("--allow-sys")), plain.join(" "));
  });

  await t.step("bad values are exit 2 before anything is printed", async () => {
    for (
      const [extra, message] of [
        [["--notify", "ftp://x/"], /Notify URL must be an http/],
        [["--metrics", join(dst, "x.prom")], /Metrics file is inside the replica/],
        [["--metrics", join(tmp.path, "nope", "x.prom")], /Metrics file's folder does not exist/],
      ] as const
    ) {
      const out = await runMain([
        "service",
        "print",
        "docs",
        src,
        dst,
        "--every",
        "1h",
        "--platform",
        "systemd",
        ...extra,
      ]);
      assert.equal(out.code, 2, out.stderr);
      assert.equal(out.stdout, "");
      assert.match(out.stderr, message);
    }
  });
});

remoteTest(
  "a remote service's printed command posts its report and writes its metrics under scoped grants",
  "sftp",
  sftpServer,
  async (sftp) => {
    await using tmp = await tempDir();
    await using dst = await sftpFolder(sftp);
    await using server = notifyServer();
    const src = join(tmp.path, "site");
    const home = join(tmp.path, "home");
    const metricsDir = join(tmp.path, "textfile");
    const metrics = join(metricsDir, "site.prom");
    await Deno.mkdir(home);
    await Deno.mkdir(metricsDir);
    await writeTree(src, { "index.html": "hi", css: { "a.css": "body{}" } });
    const argv = ["service", "print", "site", src, dst.url, ...dst.args, "--every", "1h", "--platform", "systemd"];
    const printed = await runMain([...argv, "--notify", `${server.origin}/site`, "--metrics", metrics], {
      permissions: ["--allow-read", "--allow-write", `--allow-env=HOME`],
      env: { HOME: home },
    });
    assert.equal(printed.code, 0, printed.stderr);
    const words = execStartWords(printed.stdout);
    const grant = (flag: string) =>
      (words.find((w) => w.startsWith(`${flag}=`)) ?? "").slice(flag.length + 1).split(",");
    assert.ok(grant("--allow-write").includes(metrics) && grant("--allow-write").includes(`${metrics}.tmp`));
    assert.ok(!grant("--allow-write").includes(metricsDir), "the file, not its folder");
    const out = await runAsService(words, home);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stderr, "");
    assert.equal(await mirrorDiff(src, dst.path), "");
    assert.equal(server.received.length, 1);
    const body = server.received[0]!.body;
    assert.deepEqual([body.status, body.exit_code, body.replica, body.copied], ["ok", 0, dst.url, 2]);
    const m = parseExposition(await Deno.readTextFile(metrics));
    assert.equal(sampleOf(m, "foldersync_last_run_exit_code", { replica: dst.url }), 0);
    assert.equal(sampleOf(m, "foldersync_last_run_entries", { action: "copied" }), 2);
    assert.deepEqual([...Deno.readDirSync(metricsDir)].map((e) => e.name), ["site.prom"]);
  },
);

Deno.test("docs/running.md's chat relay, run as written there, forwards a failed run's report and not a clean one's", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  await using chat = notifyServer();
  const page = await Deno.readTextFile(join(ROOT, "docs", "running.md"));
  const code = /```ts\n(\/\/ relay\.ts[^]*?)```/.exec(page)?.[1];
  assert.ok(code, "the relay's code block in docs/running.md");
  const port = closedPort();
  assert.match(code, /port: 8787/);
  const relayFile = join(tmp.path, "relay.ts");
  await Deno.writeTextFile(relayFile, code.replace("port: 8787", `port: ${port}`));
  const relay = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", `--allow-net=127.0.0.1`, "--allow-env=CHAT_WEBHOOK", relayFile],
    env: { CHAT_WEBHOOK: `${chat.origin}/services/T0/B0/token` },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    await waitFor(
      async () => {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          return true;
        } catch {
          return false;
        }
      },
      20_000,
      "the relay to listen",
    );
    const src = join(tmp.path, "src");
    const dst = join(tmp.path, "dst");
    await writeTree(src, { "a.txt": "a" });
    const clean = await run([src, dst, "--notify", `http://127.0.0.1:${port}/`, "-q"]);
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(clean.stderr, "", "the relay took it");
    assert.equal(chat.received.length, 0, "a clean run is not worth a message");
    const missing = join(tmp.path, "gone");
    const failed = await run([missing, dst, "--notify", `http://127.0.0.1:${port}/`, "-q"]);
    assert.equal(failed.code, 2);
    assert.doesNotMatch(failed.stderr, /Notify failed/);
    assert.equal(chat.received.length, 1);
    assert.equal(chat.received[0]!.path, "/services/T0/B0/token");
    assert.deepEqual(chat.received[0]!.body, {
      text: `foldersync on ${HOST}: failed (exit 2), ${missing} -> ${dst}: Source does not exist: '${missing}'`,
    });
  } finally {
    relay.kill("SIGTERM");
    await relay.status;
    await relay.stderr.cancel();
  }
});
