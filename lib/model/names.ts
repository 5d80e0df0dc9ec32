/**
 * Names foldersync gives its own entries: temp files (every backend writes through one, and a
 * run cleans those an interrupted one left) and random ids.
 *
 * @module
 */

/** Temp files are named `.foldersync-<random>.tmp`; short, so that 255-byte names still fit. */
export const TEMP_PATTERN: RegExp = /^\.foldersync-[0-9a-z]{10}\.tmp$/;

/** Ten random characters of `[0-9a-z]`: temp names, lock ids. */
export function randomId(): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${(random[0]! % 36 ** 5).toString(36).padStart(5, "0")}${
    (random[1]! % 36 ** 5).toString(36).padStart(5, "0")
  }`;
}

/** A new temp name, of the shape {@linkcode TEMP_PATTERN} matches: every replica writes through one. */
export function tempName(): string {
  return `.foldersync-${randomId()}.tmp`;
}
