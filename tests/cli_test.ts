import assert from "node:assert/strict";
import { type CliOptions, parseCommand } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { formatBytes, parseDuration, parseSize } from "../lib/units.ts";

function syncOptions(argv: string[]): CliOptions {
  const cmd = parseCommand(argv);
  assert.equal(cmd.kind, "sync");
  return (cmd as { options: CliOptions }).options;
}

Deno.test("parseCommand() reads the plain and the sync forms", () => {
  for (const argv of [["src", "dst"], ["sync", "src", "dst"]]) {
    const o = syncOptions(argv);
    assert.equal(o.source, "src");
    assert.equal(o.replica, "dst");
    assert.equal(o.checksum, false);
    assert.equal(o.dryRun, false);
    assert.equal(o.intervalMs, undefined);
  }
});

Deno.test("parseCommand() reads every flag", () => {
  const o = syncOptions([
    "-c",
    "--hash",
    "md5",
    "-n",
    "--mkpath",
    "-l",
    "x.log",
    "--log-format",
    "json",
    "--log-max-size",
    "1M",
    "--log-keep",
    "3",
    "-i",
    "5m",
    "-w",
    "--allow-empty-source",
    "-j",
    "4",
    "-q",
    "a",
    "b",
  ]);
  assert.deepEqual(
    { ...o },
    {
      source: "a",
      replica: "b",
      checksum: true,
      hash: "md5",
      dryRun: true,
      mkpath: true,
      log: "x.log",
      logFormat: "json",
      logMaxSize: 1024 * 1024,
      logKeep: 3,
      intervalMs: 300_000,
      watch: true,
      allowEmptySource: true,
      jobs: 4,
      verbosity: "quiet",
    },
  );
});

Deno.test("parseCommand() accepts the seeds' command lines", async (t) => {
  await t.step("<source> <replica> <interval> <log> (seeds 000, 004)", () => {
    const o = syncOptions(["/s", "/r", "60", "/l.log"]);
    assert.equal(o.intervalMs, 60_000);
    assert.equal(o.log, "/l.log");
  });
  await t.step("<source> <replica> <log> <interval> (seed 003)", () => {
    const o = syncOptions(["/s", "/r", "/l.log", "30"]);
    assert.equal(o.intervalMs, 30_000);
    assert.equal(o.log, "/l.log");
  });
  await t.step("-i and -l, and --log_path (seed 001)", () => {
    const o = syncOptions(["/s", "/r", "-i", "1800", "--log_path", "backup.log"]);
    assert.equal(o.intervalMs, 1_800_000);
    assert.equal(o.log, "backup.log");
  });
  await t.step("-s -r -i -l and --log-file (seed 002)", () => {
    const o = syncOptions(["-s", "/s", "-r", "/r", "-i", "120", "--log-file", "/l"]);
    assert.equal(o.source, "/s");
    assert.equal(o.replica, "/r");
    assert.equal(o.intervalMs, 120_000);
    assert.equal(o.log, "/l");
  });
  await t.step("three positionals: a number is the interval, anything else the log", () => {
    assert.equal(syncOptions(["/s", "/r", "10s"]).intervalMs, 10_000);
    assert.equal(syncOptions(["/s", "/r", "sync.log"]).log, "sync.log");
  });
});

Deno.test("parseCommand() returns help and version", () => {
  assert.equal(parseCommand(["-h"]).kind, "help");
  assert.equal(parseCommand(["--help", "x"]).kind, "help");
  assert.equal(parseCommand(["--version"]).kind, "version");
});

Deno.test("parseCommand() rejects bad input with one clear UsageError", async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[], /Missing arguments/],
    [["only-source"], /Missing arguments/],
    [["a", "b", "--frobnicate"], /^Unknown option: '--frobnicate'/],
    [["a", "b", "-i"], /needs a value|Invalid option/],
    [["a", "b", "-i", "0"], /greater than zero: '0'/],
    [["a", "b", "-i", "-5"], /Ambiguous value for '-i'/],
    [["a", "b", "--interval=-5"], /greater than zero/],
    [["a", "b", "-i", "soon"], /duration such as 60.*'soon'/],
    [["a", "b", "-i", "5x"], /duration/],
    [["a", "b", "x.log", "y.log"], /Expected an interval/],
    [["a", "b", "60", "l", "extra"], /Unexpected argument: 'extra'/],
    [["a", "b", "60", "-i", "5"], /Interval given twice/],
    [["a", "b", "-l", "x", "--log-file", "y"], /Log file given twice/],
    [["a", "b", "--hash", "crc"], /Unknown hash: 'crc'/],
    [["a", "b", "-j", "0"], /Jobs must be a whole number/],
    [["a", "b", "-j", "many"], /Jobs must be a whole number/],
    [["a", "b", "--log-format", "xml"], /Log format/],
    [["a", "b", "--log-max-size", "1M"], /need --log/],
    [["a", "b", "-l", "x", "--log-max-size", "lots"], /Log max size/],
    [["a", "b", "-q", "-v"], /quiet and --verbose/],
    [["", "b"], /must not be empty/],
  ];
  for (const [argv, message] of cases) {
    await t.step(argv.join(" ") || "(no arguments)", () => {
      assert.throws(() => parseCommand(argv), (e: unknown) => e instanceof UsageError && message.test(e.message));
    });
  }
});

Deno.test("parseDuration() reads seconds and units, and tells numbers from paths", () => {
  assert.equal(parseDuration("60"), 60_000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("log.txt"), undefined);
  assert.throws(() => parseDuration("0"), UsageError);
  assert.throws(() => parseDuration("400d"), UsageError);
});

Deno.test("parseSize() and formatBytes() agree on binary units", () => {
  assert.equal(parseSize("10M", "x"), 10 * 1024 * 1024);
  assert.equal(parseSize("512KiB", "x"), 512 * 1024);
  assert.equal(parseSize("1GB", "x"), 1e9);
  assert.throws(() => parseSize("0", "x"), UsageError);
  assert.throws(() => parseSize("-1", "x"), UsageError);
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
});

Deno.test("parseCommand() takes paths that start with a dash after --", () => {
  const o = syncOptions(["-q", "--", "-src", "--dst"]);
  assert.equal(o.source, "-src");
  assert.equal(o.replica, "--dst");
  assert.equal(o.verbosity, "quiet");
});
