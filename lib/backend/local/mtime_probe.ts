/**
 * How finely a local replica's file system keeps modification times: ext4, XFS, btrfs, APFS and
 * NTFS keep nanoseconds (Deno reports milliseconds), exFAT 10 ms, HFS+ and ext2/3 with 128-byte
 * inodes whole seconds, FAT 2 s, and network mounts whatever their server keeps. A sync that
 * compared to the millisecond there would copy every file again on every run.
 *
 * A run that may write finds out ({@linkcode probeResolution}): it gives a temp file an mtime
 * with an odd second and 237 ms, reads it back, and removes it, as rclone probes a local file
 * system. A read-only run (`--dry-run`, `verify`) writes nothing, so it infers the resolution
 * from the mtimes it finds ({@linkcode inferResolution}).
 *
 * @module
 */

import { join } from "node:path";
import { tempName } from "../../model/names.ts";

/** The resolutions told apart, coarsest first, in milliseconds. */
const STEPS = [2000, 1000, 100, 10] as const;

/** An odd second (FAT's 2 s shows) and 237 ms (whole seconds, 100 ms and 10 ms show). */
const PROBE_MS = 1_000_000_001_237;

/**
 * The resolution that a probe time read back as `readMs` shows, when `PROBE_MS` was written:
 * the finest step that explains the difference, whether the file system truncated or rounded.
 * A difference no step explains (a file system that keeps no times, or one that lies) is
 * taken as 2 s, the coarsest.
 *
 * @example Whole seconds
 * ```ts
 * resolutionOf(1_000_000_001_000); // 1000
 * ```
 */
export function resolutionOf(readMs: number): number {
  const diff = Math.abs(PROBE_MS - readMs);
  if (diff === 0) return 1;
  for (let i = STEPS.length - 1; i >= 0; i--) if (diff < STEPS[i]!) return STEPS[i]!;
  return STEPS[0];
}

/**
 * Finds the mtime resolution of the file system holding directory `dir` by writing a temp file
 * there (named as every foldersync temp file is, so a killed run's leftover is cleaned), then
 * puts the directory's own times back. Undefined when it cannot write there.
 *
 * Needs write permission for `dir`.
 *
 * @example Probing a replica
 * ```ts
 * const ms = probeResolution("/mnt/usb/backup"); // 2000 on FAT
 * ```
 */
export function probeResolution(dir: string): number | undefined {
  let before: Deno.FileInfo;
  try {
    before = Deno.statSync(dir);
  } catch {
    return undefined;
  }
  const probe = join(dir, tempName());
  let created = false;
  try {
    Deno.writeFileSync(probe, new Uint8Array(), { createNew: true, mode: 0o600 });
    created = true;
    const when = new Date(PROBE_MS);
    Deno.utimeSync(probe, when, when);
    const read = Deno.lstatSync(probe).mtime?.getTime();
    return read === undefined ? undefined : resolutionOf(read);
  } catch {
    return undefined;
  } finally {
    if (created) {
      try {
        Deno.removeSync(probe);
      } catch {
        // a leftover temp file is cleaned by the next run
      }
      // Creating and removing the probe moved the directory's mtime: put it back, so that a
      // no-op changes nothing (and sets nothing again next time).
      if (before.mtime) {
        try {
          Deno.utimeSync(dir, before.atime ?? before.mtime, before.mtime);
        } catch {
          // not the owner: the sync sets it like any directory's
        }
      }
    }
  }
}

/**
 * Infers the mtime resolution from mtimes found in one tree, without writing: the coarsest step
 * that every sample is a multiple of. On a fine file system nearly every time has milliseconds,
 * so a few samples tell; 2 s needs at least 8 samples (half of all whole seconds are even).
 * Fewer than 2 samples say nothing: 1 ms.
 *
 * @example Whole seconds
 * ```ts
 * inferResolution([1_700_000_001_000, 1_700_000_004_000, 1_700_000_007_000]); // 1000
 * ```
 */
export function inferResolution(mtimes: readonly number[]): number {
  if (mtimes.length < 2) return 1;
  for (const step of STEPS) {
    if (step === 2000 && mtimes.length < 8) continue;
    if (mtimes.every((ms) => ms % step === 0)) return step;
  }
  return 1;
}

/**
 * The mtimes of directory `dir` and of up to `max` entries in it, for
 * {@linkcode inferResolution}. Needs read permission for `dir`.
 */
export function sampleMtimes(dir: string, max = 32): number[] {
  const times: number[] = [];
  try {
    const own = Deno.statSync(dir).mtime;
    if (own) times.push(own.getTime());
    for (const entry of Deno.readDirSync(dir)) {
      if (times.length > max) break;
      try {
        const mtime = Deno.lstatSync(join(dir, entry.name)).mtime;
        if (mtime) times.push(mtime.getTime());
      } catch {
        // gone or unreadable: sample another
      }
    }
  } catch {
    // unreadable: nothing to infer from
  }
  return times;
}
