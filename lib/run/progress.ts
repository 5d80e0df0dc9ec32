/**
 * The live progress line on a terminal: a pure formatter of counters ({@linkcode progressLine})
 * and a thin renderer that redraws it on stderr at most ten times a second, below the log lines.
 *
 * Loaded only when progress is on: main.ts imports it dynamically, and nothing else imports
 * more than its types.
 *
 * @module
 */

import { setConsoleOverlay } from "../log.ts";
import { formatBytes } from "../model/units.ts";
import { MAX_TIMER_MS } from "./timer.ts";

import type { ProgressCounters, ProgressSink } from "../model/progress.ts";

/** All-zero counters for a run that copies. */
export function emptyCounters(): ProgressCounters {
  return { scanned: 0, filesTotal: 0, bytesTotal: 0, final: false, filesDone: 0, bytesDone: 0, applying: true };
}

const count = new Intl.NumberFormat("en-US");

/** `42s`, `3m 05s`, `1h 02m`: short enough for a status line. */
export function formatEta(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  const m = Math.floor(s / 60);
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

/**
 * The progress line for `counters` after `elapsedMs` of a run. Totals that may still grow (the
 * walk goes on) carry a `+`; the rate is the average since the run began, and the ETA, given
 * only once the totals are final, is the longer of what the bytes and the files left predict
 * (many small files cost time per file, not per byte).
 *
 * @example A run half-way through its walk
 * ```ts
 * progressLine({ ...emptyCounters(), scanned: 12345, filesTotal: 5000, bytesTotal: 4 << 30,
 *   filesDone: 1234, bytesDone: 1 << 30 }, 20_000);
 * // "12,345 scanned, 1,234/5,000+ files, 1.0 GiB/4.0 GiB+, 51 MiB/s"
 * ```
 */
export function progressLine(counters: ProgressCounters, elapsedMs: number): string {
  const { scanned, filesTotal, bytesTotal, final, filesDone, bytesDone, applying } = counters;
  const more = final ? "" : "+";
  const head = `${count.format(scanned)} scanned`;
  if (!applying) {
    return filesTotal === 0
      ? head
      : `${head}, ${count.format(filesTotal)}${more} files (${formatBytes(bytesTotal)}${more}) to copy`;
  }
  const seconds = elapsedMs / 1000;
  const parts = [
    head,
    `${count.format(filesDone)}/${count.format(filesTotal)}${more} files`,
    `${formatBytes(bytesDone)}/${formatBytes(bytesTotal)}${more}`,
  ];
  if (final && bytesTotal > 0) parts[2] += ` (${Math.min(100, Math.floor((bytesDone / bytesTotal) * 100))}%)`;
  if (seconds > 0) parts.push(`${formatBytes(Math.round(bytesDone / seconds))}/s`);
  if (final && seconds > 0 && (filesDone > 0 || bytesDone > 0)) {
    const byBytes = bytesDone > 0 ? (bytesTotal - bytesDone) / (bytesDone / seconds) : 0;
    const byFiles = filesDone > 0 ? (filesTotal - filesDone) / (filesDone / seconds) : 0;
    parts.push(`ETA ${formatEta(Math.max(byBytes, byFiles, 0) * 1000)}`);
  }
  return parts.join(", ");
}

/** Options for {@linkcode createProgress}. */
export interface ProgressOptions {
  /**
   * Runs shorter than this show no line at all.
   * @default 1000, or FOLDERSYNC_PROGRESS_DELAY_MS where that variable may be read without asking
   */
  delayMs?: number;
  /**
   * Time between redraws.
   * @default 100
   */
  intervalMs?: number;
  /** Where the line goes; default stderr. */
  write?: (text: string) => void;
  /** Terminal width, to keep the line on one row; default the console's, or no limit. */
  columns?: () => number;
}

const encoder = new TextEncoder();

function writeStderr(text: string): void {
  let bytes = encoder.encode(text);
  try {
    while (bytes.length > 0) bytes = bytes.subarray(Deno.stderr.writeSync(bytes));
  } catch {
    // A closed terminal must not stop a sync.
  }
}

function consoleColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return Infinity; // forced into a pipe: nothing wraps
  }
}

/**
 * The delay before the line shows: tests shorten it through FOLDERSYNC_PROGRESS_DELAY_MS, read
 * only when already granted, so that a run never prompts for it.
 */
function defaultDelay(): number {
  const variable = "FOLDERSYNC_PROGRESS_DELAY_MS";
  if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") return 1000;
  const value = Number(Deno.env.get(variable));
  return Deno.env.get(variable) !== undefined && value >= 0 ? value : 1000;
}

/**
 * A progress line on stderr for the runs that are given it. It draws nothing during the first
 * `delayMs` of a run, then redraws every `intervalMs`; the console log sink clears it before
 * each log line (the next redraw puts it back), and it is cleared when the run ends.
 *
 * Needs no permission (FOLDERSYNC_PROGRESS_DELAY_MS is read only when granted).
 *
 * @example Showing progress for one run
 * ```ts
 * const progress = createProgress();
 * await runOnce(options, { progress });
 * ```
 */
export function createProgress(options: ProgressOptions = {}): ProgressSink {
  const { delayMs = defaultDelay(), intervalMs = 100, write = writeStderr, columns = consoleColumns } = options;
  const inFlight = new BigInt64Array(new SharedArrayBuffer(8));
  let counters = emptyCounters();
  let began = 0;
  let shown = false;
  let delay: ReturnType<typeof setTimeout> | undefined;
  let ticker: ReturnType<typeof setInterval> | undefined;
  const overlay = {
    clear() {
      if (!shown) return;
      shown = false;
      write("\r\x1b[K");
    },
  };
  const draw = () => {
    const now = { ...counters, bytesDone: counters.bytesDone + Number(Atomics.load(inFlight, 0)) };
    let line = progressLine(now, performance.now() - began);
    // The last column would wrap on some terminals; a terminal of no known width (0) cuts nothing.
    const width = columns() - 1;
    if (width > 0 && line.length > width) line = line.slice(0, width);
    // Written over the old line, then the rest of the row cleared: no blank flicker in between.
    write(`\r${line}\x1b[K`);
    shown = true;
  };
  const stop = () => {
    clearTimeout(delay);
    clearInterval(ticker);
    delay = ticker = undefined;
  };
  return {
    get counters() {
      return counters;
    },
    inFlight,
    begin(applying) {
      stop();
      counters = { ...emptyCounters(), applying };
      Atomics.store(inFlight, 0, 0n);
      began = performance.now();
      setConsoleOverlay(overlay);
      const repeat = () => {
        draw();
        const id = setInterval(draw, intervalMs);
        Deno.unrefTimer(id);
        ticker = id;
      };
      if (delayMs <= 0) return repeat();
      // A delay past what one timer holds would fire at once: no run is that long anyway.
      const id = setTimeout(repeat, Math.min(delayMs, MAX_TIMER_MS));
      Deno.unrefTimer(id);
      delay = id;
    },
    end() {
      stop();
      overlay.clear();
      setConsoleOverlay(undefined);
    },
  };
}
