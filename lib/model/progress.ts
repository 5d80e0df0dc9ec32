/**
 * What a run feeds the live progress line (drawn by lib/run/progress.ts): the counters, and
 * the slot the copies count their bytes in flight into.
 *
 * @module
 */

/** What a run has done so far, as the progress line shows it. */
export interface ProgressCounters {
  /** Source entries walked so far. */
  scanned: number;
  /** Files to copy or update planned so far (all of them once `final`). */
  filesTotal: number;
  /** Bytes of those files. */
  bytesTotal: number;
  /** True once the walk has ended: the totals no longer grow, and an ETA can be given. */
  final: boolean;
  /** Files copied or updated. */
  filesDone: number;
  /** Bytes copied: whole files done plus the part of the files in flight. */
  bytesDone: number;
  /** False for a dry run, which copies nothing: the line then says what would be copied. */
  applying: boolean;
}

/**
 * What a run feeds (see `RunControl.progress` in lib/engine/sync.ts): counters it sets as it
 * goes, and one shared slot for the bytes of files being copied, in this thread and in copy
 * workers alike (each chunk adds to it; a finished or failed copy takes its bytes back).
 */
export interface ProgressSink {
  /** The counters of the current run. */
  readonly counters: ProgressCounters;
  /** Slot 0: bytes of files in flight, changed with `Atomics`; over a SharedArrayBuffer. */
  readonly inFlight: BigInt64Array;
  /** A run begins: the counters start from zero; `applying` is false for a dry run. */
  begin(applying: boolean): void;
  /** The run has ended: the line is cleared and not drawn again until the next run begins. */
  end(): void;
}
