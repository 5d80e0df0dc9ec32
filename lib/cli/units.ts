/**
 * Parsing and printing of the quantities users type and read: durations, byte sizes, counts.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

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

/**
 * Parses a duration such as `60` (seconds), `1.5s`, `5m`, `1h` or `250ms` into milliseconds.
 *
 * Units, in any case: `ms`; `s`, `sec`, `secs`; `m`, `min`, `mins`; `h`, `hr`, `hrs`; `d`,
 * `day`, `days`. A bare number is seconds.
 *
 * Returns `undefined` when the text is not a duration at all, so that callers can tell a
 * number from a path; throws when it looks like one but is zero, negative or absurd.
 *
 * @throws {UsageError} When the value is zero, negative or too large.
 * @example Parsing durations
 * ```ts
 * parseDuration("5m"); // 300000
 * parseDuration("10min"); // 600000
 * parseDuration("log.txt"); // undefined
 * ```
 */
export function parseDuration(text: string): number | undefined {
  const match = /^\s*(-?\d+(?:\.\d+)?|-?\.\d+)\s*([a-z]+)?\s*$/i.exec(text);
  if (!match) return undefined;
  const value = Number(match[1]);
  const factor = DURATION_UNITS[(match[2] ?? "s").toLowerCase()];
  if (factor === undefined) return undefined;
  const ms = value * factor;
  if (!(ms > 0)) {
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
 * Formats a duration in milliseconds for people: `850 ms`, `2.4 s`, `5 m`.
 *
 * @example Formatting a duration
 * ```ts
 * formatDuration(2400); // "2.4 s"
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(1)} m`;
  return `${+(ms / 3_600_000).toFixed(1)} h`;
}
