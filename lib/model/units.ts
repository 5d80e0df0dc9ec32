/**
 * Parsing and printing of the quantities users type and read: durations, byte sizes, counts.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  secs: 1000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hrs: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
};

/** One term of a duration: a number and, but for a lone bare number, a unit. */
const DURATION_TERM = /(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)?\s*/iy;

/**
 * Parses a duration such as `60` (seconds), `1.5s`, `5m`, `1h`, `250ms`, or a compound one
 * such as `1h30m`, `2d12h` or `1m30s` (as rclone and Go take them), into milliseconds.
 *
 * Units, in any case: `ms`; `s`, `sec`, `secs`; `m`, `min`, `mins`; `h`, `hr`, `hrs`; `d`,
 * `day`, `days`. A bare number is seconds; in a compound duration every term has a unit,
 * each unit at most once, from the largest to the smallest.
 *
 * Returns `undefined` when the text is not a duration at all, so that callers can tell a
 * number from a path; throws when it looks like one but is zero, negative, absurd, or has
 * its units out of order.
 *
 * @throws {UsageError} When the value is zero, negative or too large, or its units repeat or are out of order.
 * @example Parsing durations
 * ```ts
 * parseDuration("5m"); // 300000
 * parseDuration("10min"); // 600000
 * parseDuration("1h30m"); // 5400000
 * parseDuration("log.txt"); // undefined
 * ```
 */
export function parseDuration(text: string): number | undefined {
  const body = text.trim();
  const negative = body.startsWith("-");
  let at = negative ? 1 : 0;
  let ms = 0;
  const factors: number[] = [];
  let bare = false;
  while (at < body.length) {
    DURATION_TERM.lastIndex = at;
    const match = DURATION_TERM.exec(body);
    if (!match) return undefined;
    at = DURATION_TERM.lastIndex;
    const unit = match[2];
    const factor = DURATION_UNITS[(unit ?? "s").toLowerCase()];
    if (factor === undefined) return undefined;
    if (unit === undefined) bare = true;
    factors.push(factor);
    ms += Number(match[1]) * factor;
  }
  if (factors.length === 0 || (bare && factors.length > 1)) return undefined;
  if (factors.some((factor, i) => i > 0 && factor >= factors[i - 1]!)) {
    throw new UsageError(`Duration must give each unit once, from the largest to the smallest: '${text}'`);
  }
  if (negative || !(ms > 0)) {
    throw new UsageError(`Interval must be greater than zero: '${text}'`);
  }
  if (ms > 365 * DURATION_UNITS.d!) {
    throw new UsageError(`Interval is longer than a year: '${text}'`);
  }
  return Math.max(1, Math.round(ms));
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/**
 * Parses a byte size such as `10M`, `512KiB`, `1GB` or `4096` into bytes.
 *
 * @throws {UsageError} When the text is not a positive size.
 * @example Parsing sizes
 * ```ts
 * parseSize("10M"); // 10485760
 * ```
 */
export function parseSize(text: string, what: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const factor = match ? SIZE_UNITS[(match[2] ?? "").toLowerCase()] : undefined;
  const bytes = match && factor ? Math.round(Number(match[1]) * factor) : NaN;
  if (!(bytes > 0) || !Number.isSafeInteger(bytes)) {
    throw new UsageError(`${what} must be a positive size such as 10M: '${text}'`);
  }
  return bytes;
}

/**
 * Parses a whole number within bounds.
 *
 * @throws {UsageError} When the text is not a whole number in `[min, max]`.
 * @example Parsing a count
 * ```ts
 * parseCount("8", "Jobs", 1, 256); // 8
 * ```
 */
export function parseCount(text: string, what: string, min: number, max: number): number {
  const value = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(`${what} must be a whole number from ${min} to ${max}: '${text}'`);
  }
  return value;
}

/**
 * Formats a byte count for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
 *
 * @example Formatting bytes
 * ```ts
 * formatBytes(1536); // "1.5 KiB"
 * ```
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * Formats a duration in milliseconds the way people write one, in the form
 * {@linkcode parseDuration} reads back: `850 ms` under a second, `2.4s` under a minute, then
 * whole units from days down to seconds: `1m`, `1m30s`, `2h5m`, `30d`.
 *
 * @example Formatting durations
 * ```ts
 * formatDuration(20); // "20 ms"
 * formatDuration(2400); // "2.4s"
 * formatDuration(90_000); // "1m30s"
 * formatDuration(30 * 86_400_000); // "30d"
 * ```
 */
export function formatDuration(ms: number): string {
  if (!(ms >= 0.5)) return "0 ms";
  if (ms < 999.5) return `${Math.round(ms)} ms`;
  const tenths = Math.round(ms / 100);
  if (tenths < 600) return `${tenths / 10}s`;
  let seconds = Math.round(ms / 1000);
  let text = "";
  for (const [unit, size] of [["d", 86_400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    const count = Math.floor(seconds / size);
    seconds -= count * size;
    if (count > 0) text += `${count}${unit}`;
  }
  return text;
}
