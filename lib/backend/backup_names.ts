/**
 * The names versions get in a backup folder (`--backup-dir`), the same for every backend: an
 * entry keeps its relative path; when that name is taken, the run's start time as a suffix,
 * `name~2026-11-22T20-51-03` (UTC), then `name~2026-11-22T20-51-03-2`, `-3`, ...
 *
 * @module
 */

/**
 * The timestamp suffix for a run started at `date`: `~YYYY-MM-DDTHH-MM-SS`, in UTC.
 *
 * @example A suffix
 * ```ts
 * backupSuffix(new Date("2026-11-22T20:51:03.456Z")); // "~2026-11-22T20-51-03"
 * ```
 */
export function backupSuffix(date: Date): string {
  return `~${date.toISOString().slice(0, 19).replaceAll(":", "-")}`;
}

/**
 * The `n`th choice of name for `name` in a backup folder: 1 is the name itself, 2 the name with
 * the run's `suffix`, 3 and on the suffix with `-2`, `-3` ...
 *
 * @example Choices
 * ```ts
 * backupName("a.txt", 1, "~2026-11-22T20-51-03"); // "a.txt"
 * backupName("a.txt", 3, "~2026-11-22T20-51-03"); // "a.txt~2026-11-22T20-51-03-2"
 * ```
 */
export function backupName(name: string, n: number, suffix: string): string {
  return n === 1 ? name : n === 2 ? `${name}${suffix}` : `${name}${suffix}-${n - 1}`;
}
