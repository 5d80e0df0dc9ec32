import assert from "node:assert/strict";
import { type CliOptions, parseCommand } from "../lib/cli/cli.ts";
import { UsageError } from "../lib/model/errors.ts";
import { formatBytes, parseDuration, parseSize } from "../lib/model/units.ts";

function syncOptions(argv: string[]): CliOptions {
  const cmd = parseCommand(argv);
  assert.equal(cmd.kind, "sync");
  return (cmd as { options: CliOptions }).options;
}

function pick(o: CliOptions): { intervalMs?: number; log?: string } {
  return { ...(o.intervalMs !== undefined ? { intervalMs: o.intervalMs } : {}), ...(o.log ? { log: o.log } : {}) };
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
    "-x",
    "*.tmp",
    "--exclude",
    "node_modules/",
    "--exclude-from",
    "deploy.ignore",
    "--delete-excluded",
    "a",
    "b",
  ]);
  assert.deepEqual(
    { ...o },
    {
      source: "a",
      replica: "b",
      target: { kind: "local", path: "b" },
      sourceTarget: { kind: "local", path: "a" },
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
      exclude: ["*.tmp", "node_modules/"],
      excludeFrom: ["deploy.ignore"],
      deleteExcluded: true,
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
  await t.step("three positionals: the third must be an interval, never a log file", () => {
    assert.equal(syncOptions(["/s", "/r", "10s"]).intervalMs, 10_000);
    assert.equal(syncOptions(["/s", "/r", "10min"]).intervalMs, 600_000);
    for (const third of ["sync.log", "10minutes", "./60"]) {
      assert.throws(
        () => parseCommand(["/s", "/r", third]),
        (e: unknown) =>
          e instanceof UsageError &&
          e.message.startsWith(`Expected an interval such as 60, 30s or 5m as the third argument: '${third}'`) &&
          /-l/.test(e.message),
      );
    }
  });
  await t.step("four positionals: exactly one of the last two is the interval", () => {
    assert.deepEqual(pick(syncOptions(["/s", "/r", "10", "./20"])), { intervalMs: 10_000, log: "./20" });
    assert.deepEqual(pick(syncOptions(["/s", "/r", "sync.log", "2h"])), { intervalMs: 7_200_000, log: "sync.log" });
    assert.throws(
      () => parseCommand(["/s", "/r", "10", "20"]),
      (e: unknown) => e instanceof UsageError && /both read as intervals: '10', '20' .*-l.*\.\/20/.test(e.message),
    );
    assert.throws(
      () => parseCommand(["/s", "/r", "a.log", "b.log"]),
      (e: unknown) => e instanceof UsageError && /Expected an interval .*'a\.log', 'b\.log'/.test(e.message),
    );
  });
});

Deno.test("parseCommand() takes a first positional that is a command word as the command, always", async (t) => {
  await t.step("sync, then the folders", () => {
    assert.deepEqual([syncOptions(["sync", "src", "dst"]).source, syncOptions(["sync", "src", "dst"]).replica], [
      "src",
      "dst",
    ]);
    assert.equal(syncOptions(["sync", "src", "dst", "60"]).intervalMs, 60_000);
  });
  await t.step("a folder named sync is written ./sync", () => {
    const o = syncOptions(["./sync", "/backup", "60"]);
    assert.deepEqual([o.source, o.replica, o.intervalMs], ["./sync", "/backup", 60_000]);
  });
  const refused: Array<[string[], RegExp]> = [
    [["sync", "/backup", "60"], /^Replica reads as an interval: '60' \(to name a folder called sync, write \.\/sync; /],
    [["sync", "/backup"], /^Missing arguments: .*\(to name a folder called sync, write \.\/sync\)$/],
    [["sync"], /^Missing arguments: .*write \.\/sync/],
    [["verify", "a"], /^Missing arguments: foldersync verify .*write \.\/verify\)$/],
    [["-q", "service", "a", "b"], /^The service command comes first/],
  ];
  for (const [argv, message] of refused) {
    await t.step(argv.join(" "), () => {
      assert.throws(() => parseCommand(argv), (e: unknown) => e instanceof UsageError && message.test(e.message));
    });
  }
  await t.step("the interval minimum and the hash rule do not refuse good lines", () => {
    assert.equal(syncOptions(["a", "b", "-i", "1s"]).intervalMs, 1000);
    assert.equal(syncOptions(["a", "b", "-c", "--hash", "md5"]).hash, "md5");
    assert.equal(syncOptions(["a", "b", "-l", "x", "--log-max-size", "1K"]).logMaxSize, 1024);
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
    [["a", "b", "x.log"], /Expected an interval .* as the third argument: 'x\.log'/],
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
    [["a", "b", "-i", "0.0001"], /^Interval must be at least 1s: '0\.0001'$/],
    [["a", "b", "-i", "500ms"], /^Interval must be at least 1s: '500ms'$/],
    [["a", "b", "-w", "--interval", "0.5"], /^Interval must be at least 1s/],
    [["a", "b", "0.5"], /^Interval must be at least 1s/],
    [["a", "b", "--hash", "md5"], /^--hash needs --checksum: 'md5'$/],
    [["-j", "-1", "a", "b"], /^Ambiguous value for '-j'\/'--jobs': '-1' \(.*as in --jobs=-1\)$/],
    [["a", "b", "--jobs", "-1"], /^Ambiguous value for '-j'\/'--jobs'/],
    [
      ["-weird-src", "x"],
      /^Unknown option: '-weird-src' \(a path that starts with '-' goes after --, or write \.\/-weird-src\)$/,
    ],
    [["-q", "-y", "a", "b"], /^Unknown option: '-y' /],
    [["a", "b", "-l", "x", "--log-max-size", "1"], /^Log max size must be at least 1K: '1'$/],
    [["a", "b", "--max-delete", "-1"], /Ambiguous value for '--max-delete'/],
    [["a", "b", "--max-delete", "lots"], /^Max delete must be a number of entries or a percentage .*: 'lots'$/],
    [["a", "b", "--max-delete", "150%"], /^Max delete must be .*: '150%'$/],
    [["a", "b", "-l", "x", "--log-max-size", "1023"], /^Log max size must be at least 1K/],
    [["a", "b", "-x", ""], /^Exclude pattern names nothing: ''$/],
    [["a", "b", "-x", "/"], /^Exclude pattern names nothing: '\/'$/],
    [["a", "b", "--exclude", "!"], /^Exclude pattern names nothing: '!'$/],
    [["a", "b", "--exclude", "  "], /^Exclude pattern names nothing/],
    [["a", "b", "--modify-window", "soon"], /^Modify window must be a number of seconds from 0 to 86400: 'soon'$/],
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
  for (const [text, ms] of [["30sec", 30_000], ["5 secs", 5_000], ["10min", 600_000], ["5mins", 300_000]] as const) {
    assert.equal(parseDuration(text), ms, text);
  }
  for (
    const [text, ms] of [["2H", 7_200_000], ["1hr", 3_600_000], ["3hrs", 10_800_000], ["1day", 86_400_000]] as const
  ) {
    assert.equal(parseDuration(text), ms, text);
  }
  assert.equal(parseDuration("2days"), 2 * 86_400_000);
  for (const text of ["10minutes", "5x", "1.5.log", "3 weeks"]) assert.equal(parseDuration(text), undefined, text);
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

Deno.test("parseCommand() reads a leading # in --exclude as a name, not a comment", () => {
  const cmd = parseCommand(["a", "b", "-x", "#notes", "-x", "*.tmp"]);
  assert.equal(cmd.kind, "sync");
  if (cmd.kind === "sync") assert.deepEqual(cmd.options.exclude, ["\\#notes", "*.tmp"]);
});

Deno.test("parseCommand() takes paths that start with a dash after --", () => {
  const o = syncOptions(["-q", "--", "-src", "--dst"]);
  assert.equal(o.source, "-src");
  assert.equal(o.replica, "--dst");
  assert.equal(o.verbosity, "quiet");
});

Deno.test("parseCommand() reads --max-delete as a count or a percentage", () => {
  assert.deepEqual(syncOptions(["a", "b", "--max-delete", "0"]).maxDelete, { count: 0 });
  assert.deepEqual(syncOptions(["a", "b", "--max-delete", "250"]).maxDelete, { count: 250 });
  assert.deepEqual(syncOptions(["a", "b", "--max-delete", "50%"]).maxDelete, { percent: 50 });
  assert.deepEqual(syncOptions(["a", "b", "--max-delete=2.5%"]).maxDelete, { percent: 2.5 });
  assert.equal(syncOptions(["a", "b"]).maxDelete, undefined);
});

Deno.test("parseCommand() reads verify with the options that compare, and the sync word as sync", () => {
  const verify = parseCommand(["verify", "a", "b", "-c", "--hash", "md5", "-q"]);
  assert.equal(verify.kind, "verify");
  if (verify.kind !== "verify") return;
  assert.deepEqual([verify.options.source, verify.options.replica, verify.options.checksum], ["a", "b", true]);
  assert.equal(parseCommand(["./verify", "b"]).kind, "sync", "a folder named verify is written ./verify");
});

Deno.test("parseCommand() reads remote replicas and their options", async (t) => {
  const parse = (args: string[]) => {
    const command = parseCommand(args);
    if (command.kind !== "sync" && command.kind !== "verify") throw new Error("not a sync");
    return command.options;
  };
  await t.step("an SFTP URL with its key, known hosts and port options", () => {
    const o = parse(["src", "sftp://deploy@web1:2200/var/www", "--ssh-key", "k", "--known-hosts", "kh"]);
    assert.deepEqual(o.target, {
      kind: "sftp",
      user: "deploy",
      host: "web1",
      port: 2200,
      path: "/var/www",
      display: "sftp://deploy@web1:2200/var/www",
    });
    assert.equal(o.sshKey, "k");
    assert.equal(o.knownHosts, "kh");
  });
  await t.step("rsync's host:path form, with --ssh-port", () => {
    const o = parse(["src", "prod:/var/www", "--ssh-port", "2222"]);
    assert.equal(o.target.kind, "sftp");
    assert.equal(o.sshPort, 2222);
  });
  await t.step("an S3 URL with an endpoint", () => {
    const o = parse(["src", "s3://backups/site", "--s3-endpoint", "http://127.0.0.1:7480"]);
    assert.deepEqual(o.target, { kind: "s3", bucket: "backups", prefix: "site", display: "s3://backups/site" });
    assert.equal(o.s3Endpoint, "http://127.0.0.1:7480");
  });
  await t.step("verify takes a remote replica too", () => {
    assert.equal(parse(["verify", "src", "s3://backups"]).target.kind, "s3");
  });
  await t.step("options of one backend are refused when neither side is of its kind", () => {
    assert.throws(() => parse(["src", "dst", "--ssh-key", "k"]), /needs an SFTP source or replica.*'--ssh-key'/);
    assert.throws(() => parse(["src", "host:dst", "--s3-endpoint", "http://x"]), /needs an S3 source or replica/);
    assert.equal(parse(["s3://abc/x", "host:dst", "--s3-endpoint", "http://x", "--ssh-port", "22"]).sshPort, 22);
    assert.throws(() => parse(["src", "s3://abc", "--s3-endpoint", "ftp://x"]), /must be an http/);
    assert.throws(() => parse(["src", "host:dst", "--ssh-port", "70000"]), /SSH port must be a whole number/);
  });
  await t.step("a remote source is read as the replica is, and --watch needs a local one", () => {
    assert.deepEqual(parse(["host:src", "dst"]).sourceTarget, {
      kind: "sftp",
      user: undefined,
      host: "host",
      path: "src",
      display: "host:src",
    });
    assert.equal(parse(["s3://abc/x", "dst"]).sourceTarget.kind, "s3");
    assert.equal(parse(["src", "dst"]).sourceTarget.kind, "local");
    assert.throws(() => parse(["s3://abc/x", "dst", "--watch"]), /--watch needs a local source .*'s3:\/\/abc\/x'/);
  });
  await t.step("malformed URLs are usage errors", () => {
    assert.throws(() => parse(["src", "sftp://"]), UsageError);
    assert.throws(() => parse(["src", "s3://A_B"]), /not a bucket name/);
    assert.throws(() => parse(["src", "ftp://host/x"]), /Unsupported URL/);
    assert.throws(() => parse(["src", "sftp://u:pw@host/x"]), /passwords in URLs/);
  });
});
