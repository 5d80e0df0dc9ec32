import assert from "node:assert/strict";
import { join } from "node:path";
import { setupLogging } from "../lib/log.ts";
import { UsageError } from "../lib/model/errors.ts";
import { emptyStats } from "../lib/engine/apply.ts";
import { checkMetricsPath, lastSuccessIn, metricsSink, metricsTempPath, metricsText } from "../lib/run/metrics.ts";
import type { RunReport } from "../lib/run/report.ts";
import { CI_LINUX, POSIX, ROOT, tempDir, toolAvailable } from "./helpers.ts";
import { closedPort } from "./notify_server.ts";
import { lintNames, parseExposition, sampleOf } from "./prometheus.ts";

/** A report as a clean run makes it. */
function report(overrides: Partial<RunReport> = {}): RunReport {
  return {
    status: "ok",
    exitCode: 0,
    dryRun: false,
    source: "/data",
    replica: "/backup",
    startedAt: new Date("2026-11-22T03:00:00.000Z"),
    durationMs: 1500,
    stats: { ...emptyStats(), created: 1, copied: 2, updated: 3, removed: 4, backedUp: 5, bytes: 6000, errors: 7 },
    removalsRefused: 0,
    changesRefused: 0,
    ...overrides,
  };
}

const ENDED = Date.parse("2026-11-22T03:00:01.500Z");

Deno.test("parseExposition() (the tests' oracle) refuses what the text format does not allow", () => {
  const good = '# HELP a_b x\n# TYPE a_b gauge\na_b{l="v\\"\\\\\\n"} 1.5\na_b{l="w"} -Inf\n';
  assert.equal(parseExposition(good).samples[0]!.labels.l, 'v"\\\n');
  const bad: [string, RegExp][] = [
    ["# HELP a x\n# TYPE a gauge\na 1", /line feed/],
    ["a 1\n", /without a TYPE/],
    ["# TYPE a gauge\na 1\n", /without a HELP/],
    ["# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n", /TYPE of 'a' twice/],
    ['# HELP a x\n# TYPE a gauge\na 1\n# HELP b y\n# TYPE b gauge\nb 1\na{x="1"} 2\n', /not together/],
    ['# HELP a x\n# TYPE a gauge\na{l="1",} 1\n', /trailing comma/],
    ['# HELP a x\n# TYPE a gauge\na{l="\\t"} 1\n', /bad escape/],
    ['# HELP a x\n# TYPE a gauge\na{l="1"} 1\na{l="1"} 2\n', /series twice/],
    ["# HELP a x\n# TYPE a gauge\na 1 1700000000\n", /timestamp/],
    ["# HELP a x\n# TYPE a gauge\na one\n", /bad value/],
    ['# HELP a x\n# TYPE a gauge\na{__x="1"} 1\n', /reserved/],
    ["# HELP a x\n# TYPE a gauge\na 1\n\n", /empty line/],
    ["# HELP a x\n# TYPE a nope\na 1\n", /bad type/],
  ];
  for (const [text, message] of bad) assert.throws(() => parseExposition(text), message, JSON.stringify(text));
  const lint = lintNames(
    parseExposition("# HELP x_total a\n# TYPE x_total gauge\nx_total 1\n# HELP y_ms b\n# TYPE y_ms counter\ny_ms 1\n"),
  );
  assert.deepEqual(lint, ["x_total: _total on a gauge", "y_ms: a counter without _total"]);
});

Deno.test("metricsText() is strict exposition format with Prometheus' names, and the run's figures", () => {
  const text = metricsText(report(), { endedAt: ENDED, lastSuccess: 1795000000.25 });
  const parsed = parseExposition(text);
  assert.deepEqual(lintNames(parsed), []);
  for (const type of parsed.types.values()) assert.equal(type, "gauge");
  const labels = { source: "/data", replica: "/backup" };
  for (const sample of parsed.samples) {
    assert.deepEqual({ ...sample.labels, action: undefined }, { ...labels, action: undefined });
  }
  assert.equal(sampleOf(parsed, "foldersync_last_run_timestamp_seconds"), ENDED / 1000);
  assert.equal(sampleOf(parsed, "foldersync_last_run_duration_seconds"), 1.5);
  assert.equal(sampleOf(parsed, "foldersync_last_run_exit_code"), 0);
  assert.equal(sampleOf(parsed, "foldersync_last_success_timestamp_seconds"), 1795000000.25);
  const entries = { created: 1, copied: 2, updated: 3, linked: 0, attrs: 0, removed: 4 };
  for (const [action, value] of Object.entries(entries)) {
    assert.equal(sampleOf(parsed, "foldersync_last_run_entries", { action }), value, action);
  }
  assert.equal(parsed.samples.filter((s) => s.name === "foldersync_last_run_entries").length, 6);
  assert.equal(sampleOf(parsed, "foldersync_last_run_backed_up_entries"), 5);
  assert.equal(sampleOf(parsed, "foldersync_last_run_failed_entries"), 7);
  assert.equal(sampleOf(parsed, "foldersync_last_run_vanished_entries"), 0);
  assert.equal(sampleOf(parsed, "foldersync_last_run_refused_removals"), 0);
  assert.equal(sampleOf(parsed, "foldersync_last_run_written_bytes"), 6000);
});

Deno.test("metricsText() escapes any path in its labels, and lastSuccessIn() reads the value back", () => {
  const odd = { source: 'C:\\data\\"quoted"', replica: "/backup/line\nbreak/é {x}" };
  const text = metricsText(report(odd), { endedAt: ENDED, lastSuccess: 1795000000.5 });
  const parsed = parseExposition(text);
  for (const sample of parsed.samples) {
    assert.equal(sample.labels.source, odd.source);
    assert.equal(sample.labels.replica, odd.replica);
  }
  assert.equal(text.split("\n").length, parsed.samples.length + 2 * parsed.types.size + 1, "one line per sample");
  assert.equal(lastSuccessIn(text, odd), 1795000000.5);
  assert.equal(lastSuccessIn(text, { source: "/data", replica: "/backup" }), undefined, "another sync's");
  assert.equal(lastSuccessIn("", odd), undefined);
});

/** Warnings logged while `fn` runs. */
async function logged(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  await using _logging = await setupLogging({ console: { out: (l) => lines.push(l), err: (l) => lines.push(l) } });
  await fn();
  return lines;
}

Deno.test("metricsSink() replaces the file by a rename, keeps the last success, and warns when it cannot write", async (t) => {
  await using dir = await tempDir();
  const file = join(dir.path, "sync.prom");
  const ino = async () => (await Deno.stat(file)).ino;
  await t.step("each run replaces the file: a new inode, no temp file left", async () => {
    const sink = metricsSink(file);
    const lines = await logged(async () => {
      await sink(report());
      const first = await ino();
      await sink(report({ status: "failed", exitCode: 1 }));
      if (POSIX) assert.notEqual(await ino(), first, "renamed over, not rewritten in place");
    });
    assert.deepEqual(lines, []);
    assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), ["sync.prom"]);
    const parsed = parseExposition(await Deno.readTextFile(file));
    assert.equal(sampleOf(parsed, "foldersync_last_run_exit_code"), 1);
    assert.equal(sampleOf(parsed, "foldersync_last_success_timestamp_seconds"), ENDED / 1000, "the first run's end");
  });
  await t.step("a new process carries the last success over from the file; none known is 0", async () => {
    const later = new Date(ENDED + 60_000);
    await metricsSink(file)(report({ status: "refused", exitCode: 5, startedAt: later }));
    let parsed = parseExposition(await Deno.readTextFile(file));
    assert.equal(sampleOf(parsed, "foldersync_last_run_exit_code"), 5);
    assert.equal(sampleOf(parsed, "foldersync_last_success_timestamp_seconds"), ENDED / 1000);
    await metricsSink(file)(report({ status: "failed", exitCode: 2, replica: "/elsewhere" }));
    parsed = parseExposition(await Deno.readTextFile(file));
    assert.equal(sampleOf(parsed, "foldersync_last_success_timestamp_seconds"), 0, "another replica's file");
  });
  await t.step("a reader never sees a part of the file while runs replace it", async () => {
    const sink = metricsSink(file);
    await sink(report());
    let writing = true;
    let reads = 0;
    const reader = (async () => {
      while (writing) {
        const text = await Deno.readTextFile(file);
        parseExposition(text); // throws on a part
        reads++;
      }
    })();
    for (let i = 0; i < 300; i++) await sink(report({ durationMs: i, stats: { ...emptyStats(), copied: i } }));
    writing = false;
    await reader;
    assert.ok(reads > 10, `${reads} reads`);
    assert.equal(
      sampleOf(parseExposition(await Deno.readTextFile(file)), "foldersync_last_run_entries", {
        action: "copied",
      }),
      299,
    );
  });
  await t.step("a folder gone is one warning line, the temp file not left", async () => {
    const gone = join(dir.path, "gone");
    await Deno.mkdir(gone);
    const sink = metricsSink(join(gone, "x.prom"));
    await Deno.remove(gone);
    const lines = await logged(() => sink(report()));
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, / WARN {2}Cannot write the metrics file: '.*x\.prom': NotFound: /);
    await assert.rejects(Deno.lstat(metricsTempPath(join(gone, "x.prom"))), Deno.errors.NotFound);
  });
});

Deno.test("checkMetricsPath() refuses a file in the replica, the log file, a missing folder and a foreign file", async () => {
  await using dir = await tempDir();
  const src = join(dir.path, "src");
  const dst = join(dir.path, "dst");
  await Deno.mkdir(src);
  await Deno.mkdir(dst);
  const log = join(dir.path, "sync.log");
  const ok = join(dir.path, "sync.prom");
  assert.equal(checkMetricsPath(ok, { replica: dst, log }), ok);
  assert.equal(checkMetricsPath(join(src, "in-source.prom"), { replica: dst }), join(src, "in-source.prom"));
  await Deno.writeTextFile(ok, "");
  assert.equal(checkMetricsPath(ok, { replica: dst }), ok, "an empty file");
  await Deno.writeTextFile(ok, metricsText(report(), { endedAt: ENDED, lastSuccess: 0 }));
  assert.equal(checkMetricsPath(ok, { replica: dst }), ok, "one foldersync wrote");
  await Deno.writeTextFile(join(dir.path, "notes.txt"), "my notes\n");
  const cases: [string, { replica?: string; log?: string }, RegExp][] = [
    [join(dst, "x.prom"), { replica: dst }, /^Metrics file is inside the replica: '.*dst\/x\.prom'$/],
    [log, { replica: dst, log }, /^Metrics file is the log file: '.*sync\.log'$/],
    [join(dir.path, "nope", "x.prom"), {}, /^Metrics file's folder does not exist: '.*nope'$/],
    [dst, {}, /^Metrics file is a folder: '.*dst'$/],
    [join(dir.path, "notes.txt"), {}, /^Metrics file exists and was not written by foldersync: '.*notes\.txt'$/],
    ["", {}, /^Metrics file must not be an empty path$/],
  ];
  for (const [path, trees, message] of cases) {
    assert.throws(() => checkMetricsPath(path, trees), (e) => e instanceof UsageError && message.test(e.message), path);
  }
});

const hasNodeExporter = await toolAvailable("prometheus-node-exporter");

Deno.test({
  name: hasNodeExporter || CI_LINUX
    ? "node_exporter's textfile collector reads the metrics file, and refuses a broken one"
    : "node_exporter reads the metrics file (skipped: prometheus-node-exporter is not installed)",
  ignore: !(hasNodeExporter || CI_LINUX) || !POSIX,
  fn: async () => {
    await using dir = await tempDir();
    const odd = { source: '/data/"q"\\b', replica: "/backup/line\nbreak" };
    const file = join(dir.path, "foldersync.prom");
    await metricsSink(file)(report(odd));
    const scrape = await scrapeNodeExporter(dir.path);
    assert.match(scrape, /^node_textfile_scrape_error 0$/m, scrape);
    const ours = scrape.split("\n").filter((l) => l.startsWith("foldersync_") || l.includes(" foldersync_"));
    const parsed = parseExposition(`${ours.join("\n")}\n`);
    assert.equal(sampleOf(parsed, "foldersync_last_run_written_bytes", odd), 6000);
    assert.equal(sampleOf(parsed, "foldersync_last_run_entries", { ...odd, action: "copied" }), 2);
    assert.equal(sampleOf(parsed, "foldersync_last_run_exit_code", odd), 0);
    // The oracle can fail: a file with a sample of a metric declared twice is refused.
    await Deno.writeTextFile(join(dir.path, "broken.prom"), "# TYPE x gauge\n# TYPE x gauge\nx 1\n");
    assert.match(await scrapeNodeExporter(dir.path), /^node_textfile_scrape_error 1$/m);
  },
});

/** Starts node_exporter with the textfile collector alone on `folder`, scrapes it once, stops it. */
async function scrapeNodeExporter(folder: string): Promise<string> {
  const port = closedPort();
  const child = new Deno.Command("prometheus-node-exporter", {
    args: [
      "--collector.disable-defaults",
      "--collector.textfile",
      `--collector.textfile.directory=${folder}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/metrics`);
        return await response.text();
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
}

Deno.test("docs/running.md's table of metrics names every metric the file holds, and no other", async () => {
  const page = await Deno.readTextFile(join(ROOT, "docs", "running.md"));
  const table = page.split("| metric (all gauges)")[1]?.split("\n\n")[0] ?? "";
  const documented = [...table.matchAll(/^\| `(foldersync_[a-z_]+)(?:\{[a-z]+\})?`/gm)].map((m) => m[1]);
  const written = [...parseExposition(metricsText(report(), { endedAt: ENDED, lastSuccess: 0 })).types.keys()];
  assert.deepEqual(documented, written);
});
