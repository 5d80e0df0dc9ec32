/**
 * `--metrics FILE`: after each run, FILE is replaced, atomically, by the run's figures in
 * Prometheus' text exposition format, for node_exporter's textfile collector (which reads
 * `*.prom` files from one folder at every scrape).
 *
 * @module
 */

import { dirname } from "node:path";
import { checkOwnFile } from "../config.ts";
import { UsageError } from "../model/errors.ts";
import { logger } from "../log.ts";
import type { ReportSink, RunReport } from "./report.ts";

/**
 * The temp file a metrics file is written as before it is renamed over it: beside it, so that
 * the rename stays on one file system, and not ending in `.prom`, so that node_exporter never
 * reads it half written.
 *
 * @example The temp file
 * ```ts
 * metricsTempPath("/var/lib/node-exporter/backup.prom"); // "/var/lib/node-exporter/backup.prom.tmp"
 * ```
 */
export function metricsTempPath(file: string): string {
  return `${file}.tmp`;
}

/**
 * Checks a `--metrics` path: not inside the replica (a sync would remove it), not the log
 * file, not a folder, in a folder that exists, and either missing, empty or a file foldersync
 * wrote (a mistyped path does not replace another file). Inside the source it is allowed: the
 * sync leaves it and its temp file out, as it does the log file. Needs read permission for it.
 *
 * @returns The absolute real path of the file (as far as it exists).
 * @throws {UsageError} When it is none of that.
 * @example Checking a metrics path
 * ```ts
 * const file = checkMetricsPath("/var/lib/node-exporter/backup.prom", { replica: "/mnt/backup" });
 * ```
 */
export function checkMetricsPath(file: string, trees: { replica?: string; log?: string }): string {
  if (file === "") throw new UsageError("Metrics file must not be an empty path");
  const real = checkOwnFile(file, trees.replica, "Metrics file");
  if (real === trees.log) throw new UsageError(`Metrics file is the log file: '${file}'`);
  let folder: Deno.FileInfo | undefined;
  try {
    folder = Deno.statSync(dirname(real));
  } catch (error) {
    // A grant of the file alone (a service's) cannot see its folder: the first write tells.
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      throw new UsageError(`Metrics file's folder does not exist: '${dirname(real)}'`);
    }
  }
  if (folder !== undefined && !folder.isDirectory) {
    throw new UsageError(`Metrics file's folder is not a folder: '${dirname(real)}'`);
  }
  let existing: string;
  try {
    if (Deno.statSync(real).isDirectory) throw new UsageError(`Metrics file is a folder: '${file}'`);
    existing = readStart(real);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    return real; // missing (or unreadable: the first write reports it)
  }
  // A mistyped path must not replace a file of another kind (`--metrics ~/.profile`).
  if (existing !== "" && !existing.startsWith("# HELP foldersync_")) {
    throw new UsageError(`Metrics file exists and was not written by foldersync: '${file}'`);
  }
  return real;
}

/** The first bytes of a file, as text. */
function readStart(path: string): string {
  using file = Deno.openSync(path);
  const buffer = new Uint8Array(64);
  const read = file.readSync(buffer) ?? 0;
  return new TextDecoder().decode(buffer.subarray(0, read));
}

/** One metric: its name, type, help text, and samples (extra labels, value). */
interface Metric {
  name: string;
  help: string;
  samples: [labels: Record<string, string>, value: number][];
}

/** A label value as the exposition format writes it: `\`, `"` and line feeds escaped. */
function labelValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** A number as the exposition format writes it (Go's ParseFloat reads it back). */
function sampleValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "+Inf" : "-Inf";
  return String(value);
}

/** Seconds from milliseconds, to the millisecond. */
function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}

/** The labels every sample carries: which sync it is. */
function subjectLabels(report: Pick<RunReport, "source" | "replica">): Record<string, string> {
  return { source: report.source, replica: report.replica };
}

/** `{source="...",replica="..."}` */
function labelText(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).map(([name, value]) => `${name}="${labelValue(value)}"`);
  return `{${pairs.join(",")}}`;
}

/** The sample line prefix of the last success of this sync: `foldersync_last_success_timestamp_seconds{...} `. */
function lastSuccessPrefix(report: Pick<RunReport, "source" | "replica">): string {
  return `foldersync_last_success_timestamp_seconds${labelText(subjectLabels(report))} `;
}

/**
 * The last success of the same sync in a metrics file this module wrote, in seconds since the
 * epoch; undefined when the file holds none (or another sync's).
 *
 * @example Reading the last success back
 * ```ts
 * lastSuccessIn(text, { source: "/data", replica: "/backup" }); // 1795000000.5
 * ```
 */
export function lastSuccessIn(text: string, subject: Pick<RunReport, "source" | "replica">): number | undefined {
  const prefix = lastSuccessPrefix(subject);
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  if (line === undefined) return undefined;
  const value = Number(line.slice(prefix.length));
  return Number.isFinite(value) && value >= 0 ? value : undefined;
}

/**
 * PURE: the metrics file for one report, in Prometheus' text exposition format (version
 * 0.0.4): every metric a gauge with HELP and TYPE lines, in base units (seconds, bytes), each
 * sample labelled with `source` and `replica`.
 *
 * `lastSuccess` is the end of the last run that exited 0, in seconds since the epoch (0 when
 * there was none); `endedAt` is when this run ended, in milliseconds since the epoch.
 *
 * @example The file after a run
 * ```ts
 * metricsText(report, { endedAt: Date.now(), lastSuccess: 0 });
 * // # HELP foldersync_last_run_timestamp_seconds ...
 * // # TYPE foldersync_last_run_timestamp_seconds gauge
 * // foldersync_last_run_timestamp_seconds{source="/data",replica="/backup"} 1795000000.5
 * // ...
 * ```
 */
export function metricsText(report: RunReport, times: { endedAt: number; lastSuccess: number }): string {
  const { stats } = report;
  const one = (value: number): Metric["samples"] => [[{}, value]];
  const actions: [string, number][] = [
    ["created", stats.created],
    ["copied", stats.copied],
    ["updated", stats.updated],
    ["linked", stats.linked],
    ["attrs", stats.attrs],
    ["removed", stats.removed],
  ];
  const metrics: Metric[] = [
    {
      name: "foldersync_last_run_timestamp_seconds",
      help: "When the last run ended, in seconds since the Unix epoch.",
      samples: one(seconds(times.endedAt)),
    },
    {
      name: "foldersync_last_run_duration_seconds",
      help: "How long the last run took.",
      samples: one(seconds(report.durationMs)),
    },
    {
      name: "foldersync_last_run_exit_code",
      help: "Exit code of the last run: 0 ok, 1 some entries failed, 2 bad input (a missing source), " +
        "3 refused (an empty source), 4 locked, 5 --max-delete refused its removals, 130 stopped.",
      samples: one(report.exitCode),
    },
    {
      name: "foldersync_last_success_timestamp_seconds",
      help: "When the last run that exited 0 ended, in seconds since the Unix epoch; 0 if none is known.",
      samples: one(times.lastSuccess),
    },
    {
      name: "foldersync_last_run_entries",
      help: "Replica entries the last run changed, by action.",
      samples: actions.map(([action, value]) => [{ action }, value]),
    },
    {
      name: "foldersync_last_run_backed_up_entries",
      help: "Replica entries the last run moved into --backup-dir before removing or overwriting them.",
      samples: one(stats.backedUp),
    },
    {
      name: "foldersync_last_run_failed_entries",
      help: "Entries the last run failed on; each is logged.",
      samples: one(stats.errors),
    },
    {
      name: "foldersync_last_run_vanished_entries",
      help: "Source entries deleted while the last run read them.",
      samples: one(stats.vanished),
    },
    {
      name: "foldersync_last_run_refused_removals",
      help: "Removals --max-delete refused in the last run (none of them was made).",
      samples: one(report.removalsRefused),
    },
    {
      name: "foldersync_last_run_refused_changes",
      help: "Changes to existing entries --max-change refused in the last run (none of them was made).",
      samples: one(report.changesRefused),
    },
    {
      name: "foldersync_last_run_written_bytes",
      help: "Bytes the last run wrote by copies and updates.",
      samples: one(stats.bytes),
    },
  ];
  const subject = subjectLabels(report);
  const lines: string[] = [];
  for (const metric of metrics) {
    lines.push(`# HELP ${metric.name} ${metric.help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n")}`);
    lines.push(`# TYPE ${metric.name} gauge`);
    for (const [labels, value] of metric.samples) {
      lines.push(`${metric.name}${labelText({ ...subject, ...labels })} ${sampleValue(value)}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/**
 * The sink that replaces `file` after each run: the text is written to
 * {@linkcode metricsTempPath}, then renamed over `file`, so that a reader sees the old file or
 * the new one, never a part. The last success is carried over from the file there at the first
 * run (a scheduled service starts a new process for each run), then kept. A file that cannot be
 * written is one warning line, `Cannot write the metrics file: 'FILE': ...`; it never throws.
 *
 * Needs read and write permission for `file` and its temp file.
 *
 * @example Writing metrics after each run
 * ```ts
 * reporter.add(metricsSink("/var/lib/node-exporter/backup.prom"));
 * ```
 */
export function metricsSink(file: string): ReportSink {
  let lastSuccess: number | undefined;
  return async (report) => {
    const endedAt = report.startedAt.getTime() + report.durationMs;
    lastSuccess ??= await previousSuccess(file, report);
    if (report.exitCode === 0) lastSuccess = seconds(endedAt);
    const tmp = metricsTempPath(file);
    try {
      await Deno.writeTextFile(tmp, metricsText(report, { endedAt, lastSuccess }));
      await Deno.rename(tmp, file);
    } catch (error) {
      await Deno.remove(tmp).catch(() => {});
      const problem = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      const text = `Cannot write the metrics file: '${file}': ${problem}`;
      logger.warn("{text}", { text, action: "metrics", error: problem });
    }
  };
}

/** The last success the file there now records for this sync; 0 when it records none. */
async function previousSuccess(file: string, report: RunReport): Promise<number> {
  try {
    return lastSuccessIn(await Deno.readTextFile(file), report) ?? 0;
  } catch {
    return 0;
  }
}
