/**
 * Error classes a caller must tell apart, and the table from error class to exit code.
 *
 * @module
 */

/** Exit codes of the foldersync process; the README documents each one. */
export const ExitCode = {
  /** The replica matches the source (or, with `--dry-run`, the plan was printed). */
  Ok: 0,
  /** The run finished, but some entries failed; they are logged. */
  Partial: 1,
  /** Usage error or bad input; nothing was touched. */
  Usage: 2,
  /** Refused for safety (for example an empty source); nothing was touched. */
  Refused: 3,
  /** Another foldersync process is syncing into the same replica; nothing was touched. */
  Locked: 4,
  /** The run would have removed more than `--max-delete` allows: it removed nothing. */
  MaxDelete: 5,
  /** `service install`/`uninstall`/`status`: the files are written, but the service manager could not be run. */
  ServiceManager: 6,
  /** A one-shot sync was stopped by SIGINT or SIGTERM before it finished. */
  Interrupted: 130,
} as const;

/** One of the {@linkcode ExitCode} values. */
export type ExitCode = typeof ExitCode[keyof typeof ExitCode];

/**
 * Bad command line or bad input paths; the process exits with code 2 and touches nothing.
 *
 * @example Throwing a usage error
 * ```ts
 * throw new UsageError("Unknown option: '--frobnicate'");
 * ```
 */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * The run was refused because it looked unsafe (an empty source, for example); exit code 3.
 *
 * @example Throwing a refusal
 * ```ts
 * throw new RefusedError("Source is empty but the replica is not: '/mnt/disk'");
 * ```
 */
export class RefusedError extends Error {
  override name = "RefusedError";
}

/**
 * Another foldersync process holds the lock on the replica; exit code 4.
 *
 * @example Throwing a lock error
 * ```ts
 * throw new LockedError("Another foldersync is syncing into '/backup'");
 * ```
 */
export class LockedError extends Error {
  override name = "LockedError";
}

/**
 * A remote replica's connection was lost mid-run (a dropped network, a stopped server): every
 * later operation would fail the same way, so the run stops at once, logs this one line and
 * exits with code 1, having removed nothing after the failure. The next run starts afresh.
 *
 * @example Throwing a lost connection
 * ```ts
 * throw new ConnectionLostError("Connection to 'web1:22' lost: ECONNRESET");
 * ```
 */
export class ConnectionLostError extends Error {
  override name = "ConnectionLostError";
}

/**
 * A source file changed while it was being copied: the copy is made again as the file now is,
 * or, if it changes again, left for the next run. The message says so; the class name is not
 * shown.
 *
 * @example Throwing a change
 * ```ts
 * throw new ChangedError("Source file changed while it was being copied; will retry on the next run");
 * ```
 */
export class ChangedError extends Error {
  override name = "ChangedError";
}

/** Our own error classes: their messages are whole sentences, shown without the class name. */
const OWN_ERRORS = new Set([
  "Error",
  "UsageError",
  "RefusedError",
  "LockedError",
  "ConnectionLostError",
  "ChangedError",
]);

/**
 * Maps an error thrown out of a run to the process exit code.
 *
 * @example Mapping errors
 * ```ts
 * exitCodeFor(new UsageError("x")); // 2
 * ```
 */
export function exitCodeFor(error: unknown): ExitCode {
  if (error instanceof UsageError) return ExitCode.Usage;
  if (error instanceof RefusedError) return ExitCode.Refused;
  if (error instanceof LockedError) return ExitCode.Locked;
  return ExitCode.Partial;
}

/**
 * One human-readable line for an error: its message, without a stack trace.
 *
 * Deno's own errors are prefixed with their class name (NotFound, PermissionDenied ...),
 * which tells the user more than the OS text alone.
 *
 * @example Describing an error
 * ```ts
 * describeError(new Deno.errors.NotFound("No such file")); // "NotFound: No such file"
 * ```
 */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    return OWN_ERRORS.has(error.name) ? error.message : `${error.name}: ${error.message}`;
  }
  return String(error);
}

/**
 * An error as one line with its class name always (`NotFound: ...`), for warnings where the
 * kind of failure matters (see {@linkcode describeError} for the line a user is shown).
 *
 * @example
 * ```ts
 * errorLine(new Deno.errors.NotFound("gone")); // "NotFound: gone"
 * ```
 */
export function errorLine(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
