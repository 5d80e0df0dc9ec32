/**
 * What a backend keeps of an entry (modes, directory and link times, how finely mtimes), and
 * so what the per-entry decision compares and the applier sets.
 *
 * @module
 */

import type { HashName } from "./hash_name.ts";

/** What a backend keeps, and so what the planner compares. */
export interface Capabilities {
  /** Permission bits are kept and listed (else modes are neither compared nor set). */
  modes: boolean;
  /** Directory modification times are kept and listed (else no directory attributes are set). */
  dirTimes: boolean;
  /** Symbolic links' own modification times are kept and listed. */
  linkTimes: boolean;
  /**
   * Modification times are kept to this many milliseconds: 1 locally (Deno reports
   * milliseconds), 1000 over SFTP (whole seconds). Source and replica mtimes are compared
   * after truncating both to it, so that a no-op never copies again.
   */
  mtimeResolutionMs: number;
  /**
   * The hash whose digests the replica knows without reading files (S3: `md5`, from ETags and
   * `md5chksum`): `--checksum` uses it. A replica that declares one refuses another `--hash`
   * when it is opened ({@linkcode ReplicaOptions.hash}).
   * @default undefined (digests are computed by reading)
   */
  hash?: HashName;
  /**
   * Transfers in flight by default (`--jobs` overrides): a remote replica hides its round
   * trips behind many requests at once.
   * @default 8
   */
  jobs?: number;
  /**
   * Transfers in flight by default when this backend is the source and the replica names no
   * `jobs` of its own (a bucket restored into a local folder): reads may go wider than writes.
   * @default jobs
   */
  readJobs?: number;
}

/** A replica that keeps everything to the millisecond: a local folder. */
export const FULL_CAPS: Capabilities = { modes: true, dirTimes: true, linkTimes: true, mtimeResolutionMs: 1 };
