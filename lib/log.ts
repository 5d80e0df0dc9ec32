/**
 * The single logging setup: a console sink and an optional (rotating) file sink, both
 * through LogTape, writing one line per record as text or as JSON.
 *
 * @module
 */

import { configure, getLogger, type LogLevel, type LogRecord, reset, type Sink } from "@logtape/logtape";
import { UsageError } from "./model/errors.ts";

/** How much the console shows. */
export type Verbosity = "quiet" | "normal" | "verbose";

/** The logger foldersync writes to. */
export const logger = getLogger(["foldersync"]);

const CATEGORY = ["foldersync"] as const;

/**
 * Logs one line with `text` as its message and every field as a property (for JSON lines),
 * as `logger.info("{text}", fields)` would, but as a finished record: for the line per
 * operation. LogTape's template path costs about 5 us and keeps each record in a WeakSet
 * (measured: a million lines took 4.8 s and 186 MB that way, 2.2 s and 89 MB this way).
 *
 * @example Logging an operation
 * ```ts
 * logLine("info", { text: "copy a.txt (3 B)", action: "copy", path: "a.txt", size: 3 });
 * ```
 */
export function logLine(level: LogLevel, fields: { text: string } & Record<string, unknown>): void {
  const record: LogRecord = {
    category: CATEGORY,
    level,
    timestamp: Date.now(),
    message: [fields.text],
    rawMessage: fields.text,
    properties: fields,
  };
  logger.emit(record);
}

let operationLines = true;

/**
 * Something drawn on the console below the log lines (the progress line), which the console sink
 * clears before each line it writes; the overlay draws itself again afterwards.
 */
export interface ConsoleOverlay {
  /** Removes the overlay from the screen, if it is there. */
  clear(): void;
}

let overlay: ConsoleOverlay | undefined;

/**
 * Sets (or, with undefined, removes) the overlay the console sink clears before each line, so
 * that log lines print above a status line, never into it.
 *
 * @example Clearing a status line before log lines
 * ```ts
 * setConsoleOverlay({ clear: () => Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K")) });
 * ```
 */
export function setConsoleOverlay(next: ConsoleOverlay | undefined): void {
  overlay = next;
}

/**
 * Whether per-operation info lines reach any sink. With `--quiet` and no log file they do not,
 * and building 50,000 records nobody sees costs a busy sync measurable time.
 *
 * @example Skipping unseen records
 * ```ts
 * if (operationsLogged()) logger.info("{text}", { text: "copy a.txt" });
 * ```
 */
export function operationsLogged(): boolean {
  return operationLines;
}

/** Options for {@linkcode setupLogging}. */
export interface LogSetup {
  /**
   * Console verbosity: quiet shows warnings and errors only (the file still gets every info line).
   * @default "normal"
   */
  verbosity?: Verbosity;
  /** Append lines to this file too. */
  file?: string;
  /**
   * Line format.
   * @default "text"
   */
  format?: "text" | "json";
  /** Rotate the file past this many bytes. */
  maxSize?: number;
  /**
   * Files kept when rotating.
   * @default 5
   */
  keep?: number;
  /** Where console lines go (tests capture them); default stdout and stderr. */
  console?: { out: (line: string) => void; err: (line: string) => void };
}

const LEVEL_RANK: Record<LogLevel, number> = {
  trace: 0,
  debug: 1,
  info: 2,
  warning: 3,
  error: 4,
  fatal: 5,
};

const LEVEL_TEXT: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO ",
  warning: "WARN ",
  error: "ERROR",
  fatal: "FATAL",
};

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

function localTimestamp(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${
    pad(d.getSeconds())
  }.${pad(d.getMilliseconds(), 3)}`;
}

/** The text of a record: the `text` property foldersync always sets. */
function recordText(record: LogRecord): string {
  const text = record.properties.text;
  if (typeof text === "string") return text;
  return record.message.map((part, i) => (i % 2 === 0 ? part : String(part))).join("");
}

/** `2026-11-22 03:53:57.123 INFO  copy a/b.txt (1.2 KiB)` */
function textLine(record: LogRecord): string {
  return `${localTimestamp(record.timestamp)} ${LEVEL_TEXT[record.level]} ${recordText(record)}\n`;
}

/** `{"time":"...","level":"info","action":"copy","path":"a/b.txt","size":1234,"message":"..."}` */
function jsonLine(record: LogRecord): string {
  const { text: _text, summary: _summary, ...fields } = record.properties;
  return `${
    JSON.stringify({
      time: new Date(record.timestamp).toISOString(),
      level: record.level,
      ...fields,
      message: recordText(record),
    })
  }\n`;
}

/**
 * LogTape copies each record's properties before handing it to a sink that might keep it.
 * Sinks marked with this shared symbol (the protocol LogTape's own console and file sinks use)
 * format the record at once, so they get it as it is: at a line per copied file, the copies
 * cost more than the writing.
 */
const IMMEDIATE = Symbol.for("LogTape.sinkSnapshotPolicy.immediate");

function immediate(sink: Sink): Sink {
  Object.defineProperty(sink, IMMEDIATE, { value: true });
  return sink;
}

const encoder = new TextEncoder();

function writeAll(stream: { writeSync(p: Uint8Array): number }, line: string): void {
  let bytes = encoder.encode(line);
  try {
    while (bytes.length > 0) bytes = bytes.subarray(stream.writeSync(bytes));
  } catch {
    // A closed pipe must not stop a sync.
  }
}

/**
 * Configures LogTape for the process and returns a disposer that flushes and closes the file.
 *
 * Needs write permission for `file`. Opens the file for appending: an existing log is never
 * truncated.
 *
 * @throws {UsageError} When the log file cannot be opened.
 * @example Logging to the console and a file
 * ```ts
 * await using _logging = await setupLogging({ file: "/var/log/foldersync.log" });
 * logger.info("{text}", { text: "hello" });
 * ```
 */
export async function setupLogging(setup: LogSetup = {}): Promise<AsyncDisposable> {
  const { verbosity = "normal", file, format = "text", maxSize, keep = 5 } = setup;
  const formatter = format === "json" ? jsonLine : textLine;
  const out = setup.console?.out ?? ((line: string) => writeAll(Deno.stdout, line));
  const err = setup.console?.err ?? ((line: string) => writeAll(Deno.stderr, line));
  const consoleMin = verbosity === "quiet" ? "warning" : verbosity === "verbose" ? "debug" : "info";
  const consoleSink: Sink = (record) => {
    // A summary is an info line like any other: `-q` hides it (a clean cron run prints nothing), and a run with
    // errors logs its summary as a warning, which `-q` shows.
    if (LEVEL_RANK[record.level] < LEVEL_RANK[consoleMin]) return;
    overlay?.clear();
    (LEVEL_RANK[record.level] >= LEVEL_RANK.warning ? err : out)(formatter(record));
  };
  const sinks: Record<string, Sink> = { console: immediate(consoleSink) };
  let fileSink: (Sink & Disposable) | undefined;
  if (file !== undefined) {
    try {
      // Opened once here so that a bad path is a usage error before anything is touched.
      (await Deno.open(file, { append: true, create: true })).close();
      // Loaded only when a log file is asked for: it adds to every start otherwise.
      const { getFileSink, getRotatingFileSink } = await import("@logtape/file");
      const fileOptions = { formatter, bufferSize: 64 * 1024, flushInterval: 500 };
      if (maxSize !== undefined || setup.keep !== undefined) {
        const limit = maxSize ?? 10 * 1024 * 1024;
        // The sink checks the size when it flushes, so a buffer much smaller than the limit
        // keeps each file close to it. It rolls over before a flush that would pass the limit
        // even when the file is empty, which is why the CLI refuses limits below 1K.
        const bufferSize = Math.min(fileOptions.bufferSize, Math.floor(limit / 16));
        fileSink = getRotatingFileSink(file, { ...fileOptions, bufferSize, maxSize: limit, maxFiles: keep });
      } else {
        fileSink = getFileSink(file, fileOptions);
      }
    } catch (error) {
      throw new UsageError(`Cannot open log file: '${file}': ${logOpenProblem(file, error)}`);
    }
    const minFile = verbosity === "verbose" ? "debug" : "info";
    const inner = fileSink;
    sinks.file = immediate((record) => {
      if (LEVEL_RANK[record.level] >= LEVEL_RANK[minFile]) inner(record);
    });
  }
  operationLines = verbosity !== "quiet" || file !== undefined;
  await configure({
    reset: true,
    sinks,
    loggers: [
      { category: ["foldersync"], sinks: Object.keys(sinks), lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  return {
    async [Symbol.asyncDispose]() {
      await reset();
      fileSink?.[Symbol.dispose]();
    },
  };
}

/** Why a log file could not be opened, in words a user can act on. */
function logOpenProblem(file: string, error: unknown): string {
  if (error instanceof Deno.errors.NotCapable) {
    // Deno opens devices and /proc only to --allow-all, whatever --allow-write says.
    return /^\/(dev|proc)\//.test(file)
      ? "Deno opens devices only with --allow-all; the console gets every line already (leave out --log)"
      : "no permission to write it (grant --allow-write for it)";
  }
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Shows a relative path on one line: control characters (a newline in a name, say) are
 * escaped as `\xNN` (C1 controls too), the line separators U+2028 and U+2029 as `\uNNNN`, a
 * backslash as `\\`, and the root is `.`.
 *
 * @example Showing an odd name
 * ```ts
 * showPath("a\nb"); // "a\\x0ab"
 * ```
 */
export function showPath(path: string): string {
  if (path === "") return ".";
  // C0 and C1 controls (U+009B is a terminal's CSI: it would start an escape sequence) and the
  // Unicode line separators would break a line or a terminal: shown as escapes.
  // deno-lint-ignore no-control-regex
  return path.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029\\]/g, (c) => {
    if (c === "\\") return "\\\\"; // so that a name holding `\x0a` itself is told apart
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
  });
}
