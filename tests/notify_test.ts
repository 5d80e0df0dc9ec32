import assert from "node:assert/strict";
import { setupLogging } from "../lib/log.ts";
import { ExitCode, LockedError, RefusedError, UsageError } from "../lib/model/errors.ts";
import { emptyStats } from "../lib/engine/apply.ts";
import type { RunEnd, RunResult } from "../lib/engine/sync.ts";
import { notifyBody, notifyGrant, notifySink, notifyUrl, parseNotifyUrl } from "../lib/run/notify.ts";
import { type RunReport, RunReporter, statusOf } from "../lib/run/report.ts";
import { closedPort, notifyServer } from "./notify_server.ts";

/** A report as a clean run makes it. */
function report(overrides: Partial<RunReport> = {}): RunReport {
  return {
    status: "ok",
    exitCode: 0,
    dryRun: false,
    source: "/data",
    replica: "/backup",
    startedAt: new Date("2026-11-22T03:00:00.000Z"),
    durationMs: 1234.4,
    stats: { ...emptyStats(), created: 1, copied: 2, updated: 3, removed: 4, bytes: 5000, errors: 0 },
    removalsRefused: 0,
    changesRefused: 0,
    ...overrides,
  };
}

/** Log lines written while `fn` runs. */
async function logged(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  await using _logging = await setupLogging({ console: { out: (l) => lines.push(l), err: (l) => lines.push(l) } });
  await fn();
  return lines;
}

Deno.test("parseNotifyUrl() takes http and https URLs with {status} and {exit_code}, and refuses the rest", () => {
  for (
    const good of [
      "https://hc-ping.com/2b7c-uuid",
      "https://hc-ping.com/2b7c-uuid/{exit_code}",
      "http://127.0.0.1:8080/hook?status={status}&code={exit_code}",
      "http://[::1]:9000/x",
    ]
  ) assert.equal(parseNotifyUrl(good), good);
  const cases: [string, RegExp][] = [
    ["ftp://example.com/", /^Notify URL must be an http:\/\/ or https:\/\/ URL: 'ftp:\/\/example\.com\/'$/],
    ["example.com/hook", /^Notify URL must be an http/],
    ["", /^Notify URL must be an http/],
    ["file:///tmp/x", /^Notify URL must be an http/],
    ["https://hc-ping.com/uuid/{exit-code}", /^Unknown placeholder in the notify URL: '\{exit-code\}': use/],
    ["https://{status}.example.com/", /^Notify URL must not hold a placeholder in its host or port/],
    ["https://example.com:{exit_code}/", /^Notify URL must not hold a placeholder in its host or port/],
    [
      "https://example.com/a b",
      /^Notify URL must not hold spaces or control characters: 'https:\/\/example.com\/a b'$/,
    ],
    [
      "https://example.com/a\nb",
      /^Notify URL must not hold spaces or control characters: 'https:\/\/example.com\/a\\nb'$/,
    ],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseNotifyUrl(text), (e) => e instanceof UsageError && message.test(e.message), text);
  }
});

Deno.test("notifyGrant() names the host and port a service must reach, the default port spelled out", () => {
  assert.equal(notifyGrant("https://hc-ping.com/uuid/{exit_code}"), "hc-ping.com:443");
  assert.equal(notifyGrant("http://relay.lan/hook"), "relay.lan:80");
  assert.equal(notifyGrant("http://127.0.0.1:8080/x?s={status}"), "127.0.0.1:8080");
  assert.equal(notifyGrant("http://[::1]:9000/x"), "[::1]:9000");
});

Deno.test("notifyUrl() fills in the status and exit code; notifyBody() carries the summary's counts", () => {
  const refused = report({ status: "refused", exitCode: 5, removalsRefused: 7 });
  assert.equal(notifyUrl("https://hc-ping.com/u/{exit_code}", refused), "https://hc-ping.com/u/5");
  assert.equal(notifyUrl("http://h/x?s={status}&c={exit_code}", refused), "http://h/x?s=refused&c=5");
  assert.equal(notifyUrl("https://hc-ping.com/u", refused), "https://hc-ping.com/u");
  assert.deepEqual(notifyBody(report(), "nas"), {
    status: "ok",
    exit_code: 0,
    dry_run: false,
    source: "/data",
    replica: "/backup",
    host: "nas",
    started_at: "2026-11-22T03:00:00.000Z",
    duration_ms: 1234,
    created: 1,
    copied: 2,
    updated: 3,
    linked: 0,
    attrs: 0,
    removed: 4,
    backed_up: 0,
    pruned: 0,
    errors: 0,
    vanished: 0,
    bytes: 5000,
    removals_refused: 0,
    changes_refused: 0,
  });
  const failed = notifyBody(report({ status: "failed", exitCode: 2, error: "Source does not exist: 'x'" }), null);
  assert.equal(failed.error, "Source does not exist: 'x'");
  assert.equal(failed.host, null);
  assert.equal(notifyBody(refused, "h").removals_refused, 7);
});

Deno.test("statusOf() says ok for 0, refused for 3, 4 and 5, failed for the rest", () => {
  assert.equal(statusOf(ExitCode.Ok), "ok");
  for (const code of [ExitCode.Refused, ExitCode.Locked, ExitCode.MaxDelete]) assert.equal(statusOf(code), "refused");
  for (const code of [ExitCode.Partial, ExitCode.Usage, ExitCode.Interrupted]) assert.equal(statusOf(code), "failed");
});

Deno.test("notifySink() posts one JSON body per report to a real server, silently when it answers 2xx", async () => {
  await using server = notifyServer({ status: 204 });
  const lines = await logged(async () => {
    const sink = notifySink(`${server.origin}/ping/{exit_code}?s={status}`, { host: "nas", userAgent: "foldersync/9" });
    await sink(report());
    await sink(report({ status: "refused", exitCode: 5 }));
  });
  assert.deepEqual(lines, []);
  assert.equal(server.received.length, 2);
  const [first, second] = server.received;
  assert.equal(first!.method, "POST");
  assert.equal(first!.path, "/ping/0?s=ok");
  assert.equal(first!.contentType, "application/json");
  assert.equal(first!.userAgent, "foldersync/9");
  assert.deepEqual(first!.body, notifyBody(report(), "nas"));
  assert.equal(second!.path, "/ping/5?s=refused");
  assert.equal(second!.body.exit_code, 5);
});

Deno.test("notifySink() turns every failed POST into one warning line and never throws", async (t) => {
  const warned = async (url: string, timeoutMs?: number) => {
    const lines = await logged(() => notifySink(url, { ...(timeoutMs ? { timeoutMs } : {}) })(report()));
    assert.equal(lines.length, 1, lines.join(""));
    assert.match(lines[0]!, / WARN {2}Notify failed: '/);
    return lines[0]!.trimEnd();
  };
  await t.step("an HTTP error status", async () => {
    await using server = notifyServer({ status: 500 });
    assert.match(
      await warned(`${server.origin}/x`),
      /Notify failed: 'http:\/\/127\.0\.0\.1:\d+\/x': HTTP 500 Internal Server Error$/,
    );
    assert.equal(server.received.length, 1, "posted once, not retried");
  });
  await t.step("a redirect is not followed (fetch would turn the POST into a GET without its body)", async () => {
    await using server = notifyServer({ status: 302, headers: { location: "https://elsewhere.example/x" } });
    assert.match(
      await warned(`${server.origin}/x`),
      /: HTTP 302 Found \(redirected to 'https:\/\/elsewhere\.example\/x': give that URL\)$/,
    );
    assert.equal(server.received.length, 1);
  });
  await t.step("nothing listening", async () => {
    const port = closedPort();
    assert.match(await warned(`http://127.0.0.1:${port}/x`), /: client error \(Connect\): .*Connection refused/);
  });
  await t.step("a server that never answers, within the timeout", async () => {
    await using server = notifyServer({ hang: true });
    const started = performance.now();
    assert.match(await warned(`${server.origin}/x`, 300), /: no answer within 300 ms$/);
    const took = performance.now() - started;
    assert.ok(took >= 280 && took < 5000, `gave up after ${took} ms`);
  });
  await t.step("a password in the URL is masked in the line", async () => {
    const port = closedPort();
    const line = await warned(`http://user:s3cret@127.0.0.1:${port}/x`);
    assert.ok(!line.includes("s3cret"), line);
    assert.match(line, /'http:\/\/user:\*\*\*@127\.0\.0\.1:\d+\/x'/);
  });
});

Deno.test("RunReporter reports each run once, with its result, its error, or a start-up failure", async (t) => {
  const reports: RunReport[] = [];
  const subject = { source: "/data", replica: "/backup", dryRun: false };
  const result: RunResult = {
    stats: { ...emptyStats(), copied: 3, bytes: 30 },
    durationMs: 5,
    aborted: false,
    refused: { allowed: false, limit: 1, planned: 4, cap: "max-delete" },
  };
  await t.step("a run's result and exit code", async () => {
    const reporter = new RunReporter(subject);
    reporter.add((r) => Promise.resolve(void reports.push(r)));
    const code = await reporter.run((control: { onEnd?: (end: RunEnd) => void }) => {
      control.onEnd?.({ result });
      return Promise.resolve(ExitCode.MaxDelete);
    }, {});
    assert.equal(code, ExitCode.MaxDelete);
    assert.equal(reports.length, 1);
    const r = reports[0]!;
    assert.equal(r.status, "refused");
    assert.equal(r.exitCode, 5);
    assert.equal(r.stats.copied, 3);
    assert.equal(r.removalsRefused, 4);
    assert.equal(r.error, undefined);
    assert.equal(r.source, "/data");
    // A start-up failure after a reported run is that run's business: not reported again.
    await reporter.startupFailed(new LockedError("x"));
    assert.equal(reports.length, 1);
  });
  await t.step("a run that throws is reported with the exit code main gives it, and thrown on", async () => {
    reports.length = 0;
    const reporter = new RunReporter(subject);
    reporter.add((r) => Promise.resolve(void reports.push(r)));
    const error = new RefusedError("Source is empty but the replica is not: '/backup'");
    await assert.rejects(
      reporter.run(() => {
        throw error;
      }, {}),
      (e) => e === error,
    );
    assert.equal(reports.length, 1);
    assert.equal(reports[0]!.exitCode, 3);
    assert.equal(reports[0]!.status, "refused");
    assert.equal(reports[0]!.error, "Source is empty but the replica is not: '/backup'");
  });
  await t.step("a start-up failure, once; a missing source in a loop", async () => {
    reports.length = 0;
    const reporter = new RunReporter({ ...subject, dryRun: true });
    reporter.add((r) => Promise.resolve(void reports.push(r)));
    await reporter.startupFailed(new UsageError("Source does not exist: 'x'"));
    assert.equal(reports.length, 1);
    assert.deepEqual([reports[0]!.status, reports[0]!.exitCode, reports[0]!.dryRun], ["failed", 2, true]);
    assert.equal(reports[0]!.error, "Source does not exist: 'x'");
    await reporter.missingSource();
    assert.equal(reports[1]!.exitCode, 2);
    assert.equal(reports[1]!.error, "Source folder is missing: '/data'");
    assert.equal(reporter.reported, 2);
  });
});

Deno.test("parseCommand() checks --notify and --metrics, and verify refuses both", async () => {
  const { parseCommand } = await import("../lib/cli/cli.ts");
  const sync = parseCommand(["src", "dst", "--notify", "https://hc-ping.com/u/{exit_code}", "--metrics", "m.prom"]);
  assert.equal(sync.kind, "sync");
  if (sync.kind === "sync") {
    assert.equal(sync.options.notify, "https://hc-ping.com/u/{exit_code}");
    assert.equal(sync.options.metrics, "m.prom");
  }
  const cases: [string[], RegExp][] = [
    [["src", "dst", "--notify", "mailto:ops@example.com"], /^Notify URL must be an http/],
    [["src", "dst", "--notify"], /^Option needs a value: '--notify'$/],
    [["src", "dst", "--metrics", ""], /^Metrics file must not be an empty path$/],
    [["verify", "src", "dst", "--notify", "http://h/"], /^Option not valid with verify: '--notify'$/],
    [["verify", "src", "dst", "--metrics", "m.prom"], /^Option not valid with verify: '--metrics'$/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => parseCommand(argv), (e) => e instanceof UsageError && message.test(e.message), argv.join(" "));
  }
});
