/**
 * The progress line end to end: main.ts under a pseudo-terminal (util-linux `script`), in pipes
 * and with a log file. FOLDERSYNC_PROGRESS_DELAY_MS=0 makes the line show at once, so that a
 * run of milliseconds draws it.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertMirror,
  CI_LINUX,
  collect,
  MAIN,
  POSIX,
  runMain,
  tempDir,
  toolAvailable,
  waitFor,
  writeTree,
} from "./helpers.ts";

const DELAY_VARIABLE = "FOLDERSYNC_PROGRESS_DELAY_MS";
const PERMISSIONS = ["--allow-read", "--allow-write", `--allow-env=${DELAY_VARIABLE}`];
const hasScript = POSIX && await toolAvailable("script");
if (!hasScript && CI_LINUX) throw new Error("script (util-linux) is missing: .ci/run installs bsdutils");

/** A drawn progress line: `\r`, the text, then erase to the end of the row. */
// deno-lint-ignore no-control-regex
const DRAWN = /\r\d[\d,]* scanned, [^\r\n]*\x1b\[K/;

function quote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** Runs main.ts with stdout and stderr on a pseudo-terminal; returns what the terminal got. */
async function runInTerminal(args: string[]): Promise<{ code: number; screen: string }> {
  const command = [Deno.execPath(), "run", "--no-prompt", ...PERMISSIONS, MAIN, ...args].map(quote).join(" ");
  const out = await new Deno.Command("script", {
    args: ["-q", "-e", "-c", command, "/dev/null"],
    env: { [DELAY_VARIABLE]: "0" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, screen: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

async function fixture(root: string): Promise<{ source: string; replica: string }> {
  const source = join(root, "src");
  const replica = join(root, "dst");
  await writeTree(source, { "big.bin": new Uint8Array(3 << 20).fill(9), a: "a", sub: { b: "bb" } });
  return { source, replica };
}

Deno.test("progress line on a terminal", { ignore: !hasScript }, async (t) => {
  await t.step("shows under a pseudo-terminal, above no log line, and is cleared at the end", async () => {
    await using dir = await tempDir();
    const { source, replica } = await fixture(dir.path);
    const { code, screen } = await runInTerminal([source, replica]);
    assert.equal(code, 0, screen);
    assert.match(screen, DRAWN, "the progress line was drawn");
    // Every drawn line is cleared before the next log line: with the drawings and clearings
    // taken out, each row is a whole log line that starts with its timestamp.
    // deno-lint-ignore no-control-regex
    const rows = screen.replace(/\r[^\r\n]*\x1b\[K/g, "").split("\r\n").filter((row) => row !== "");
    assert.ok(rows.length >= 4, screen);
    for (const row of rows) assert.match(row, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO {2}/, JSON.stringify(row));
    assert.ok(screen.endsWith("\r\n"), "the summary line ends the output: no line is left drawn after it");
    const last = screen.lastIndexOf(" scanned, ");
    assert.ok(last < screen.lastIndexOf("Sync done"), "no progress line after the summary");
    await assertMirror(source, replica);
  });

  await t.step("is not drawn with --no-progress, and with -q or --log-format json only when forced", async () => {
    for (const flags of [["--no-progress"], ["-q"], ["--log-format", "json"]]) {
      await using dir = await tempDir();
      const { source, replica } = await fixture(dir.path);
      const { code, screen } = await runInTerminal([source, replica, ...flags]);
      assert.equal(code, 0, screen);
      assert.doesNotMatch(screen, / scanned, /, flags.join(" "));
      assert.ok(!screen.includes("\x1b["), `no escape sequences with ${flags.join(" ")}`);
      await assertMirror(source, replica);
      if (flags[0] === "--no-progress") continue;
      await Deno.remove(replica, { recursive: true });
      const forced = await runInTerminal([source, replica, ...flags, "--progress"]);
      assert.equal(forced.code, 0, forced.screen);
      assert.match(forced.screen, DRAWN, `--progress brings it back with ${flags.join(" ")}`);
    }
  });

  await t.step("never goes into the log file", async () => {
    await using dir = await tempDir();
    const { source, replica } = await fixture(dir.path);
    const log = join(dir.path, "sync.log");
    const { code, screen } = await runInTerminal([source, replica, "--log", log]);
    assert.equal(code, 0, screen);
    assert.match(screen, DRAWN, "drawn on the terminal");
    const text = await Deno.readTextFile(log);
    assert.match(text, /Sync done/);
    assert.doesNotMatch(text, / scanned, /);
    assert.ok(!text.includes("\x1b") && !text.includes("\r"), "no terminal control in the log file");
  });

  await t.step("verify shows it too", async () => {
    await using dir = await tempDir();
    const { source, replica } = await fixture(dir.path);
    await Deno.mkdir(replica);
    const { code, screen } = await runInTerminal(["verify", source, replica]);
    assert.equal(code, 1, screen);
    // deno-lint-ignore no-control-regex
    assert.match(screen, /\r\d+ scanned\x1b\[K/);
  });
});

Deno.test("progress line in pipes", async (t) => {
  await t.step("is written into a pipe only with --progress, on stderr", async () => {
    await using dir = await tempDir();
    const { source, replica } = await fixture(dir.path);
    const plain = await runMain([source, replica], { permissions: PERMISSIONS, env: { [DELAY_VARIABLE]: "0" } });
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /Sync done/);
    assert.ok(!(plain.stdout + plain.stderr).includes("\x1b"), plain.stderr);
    assert.doesNotMatch(plain.stderr, / scanned/);
    await Deno.remove(replica, { recursive: true });
    const out = await runMain([source, replica, "--progress"], {
      permissions: PERMISSIONS,
      env: { [DELAY_VARIABLE]: "0" },
    });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, DRAWN);
    assert.ok(out.stderr.endsWith("\r\x1b[K"), "cleared at the end");
    assert.doesNotMatch(out.stdout, / scanned/, "never on stdout");
    await assertMirror(source, replica);
  });

  await t.step("--progress and --no-progress together are a usage error", async () => {
    const out = await runMain(["a", "b", "--progress", "--no-progress"]);
    assert.equal(out.code, 2);
    assert.match(out.stderr, /Choose one of --progress and --no-progress/);
  });
});

Deno.test(
  "progress line in --watch mode: each run draws its own",
  { ignore: Deno.build.os === "windows" },
  async () => {
    await using dir = await tempDir();
    const { source, replica } = await fixture(dir.path);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...PERMISSIONS, MAIN, source, replica, "--watch", "--progress"],
      env: { [DELAY_VARIABLE]: "0" },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    try {
      await waitFor(() => out.text().includes("Sync done"), 20_000, "the first sync");
      await waitFor(() => DRAWN.test(err.text()), 5_000, "a progress line");
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await Promise.all([out.done, err.done]);
    }
    await assertMirror(source, replica);
  },
);
