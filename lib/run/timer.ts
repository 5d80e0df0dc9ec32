/**
 * Timers for durations users give (an interval of 30 days, say): `setTimeout` takes at most
 * 2^31 - 1 ms (24.8 days) and fires a longer delay at once, with a TimeoutOverflowWarning, so
 * a long wait is armed as steps of at most that.
 *
 * @module
 */

/** The longest delay one timer takes: 2^31 - 1 ms, about 24.8 days. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The timer functions {@linkcode longTimeout} arms; tests pass a recorder. */
export interface Timers {
  /** Arms a timer, as `globalThis.setTimeout`; returns its handle. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Disarms the timer of a handle, as `globalThis.clearTimeout`. */
  clearTimeout(id: unknown): void;
}

const SYSTEM_TIMERS: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/**
 * Calls `fn` once after `ms` milliseconds, arming timers of at most {@linkcode MAX_TIMER_MS}
 * in turn, and returns a function that cancels it. An infinite wait re-arms the longest
 * timer forever (it keeps the process alive, as a pending timer does).
 *
 * @example Waiting 30 days, cancelled on Ctrl+C
 * ```ts
 * const cancel = longTimeout(() => console.log("a month later"), 30 * 86_400_000);
 * Deno.addSignalListener("SIGINT", cancel);
 * ```
 */
export function longTimeout(fn: () => void, ms: number, timers: Timers = SYSTEM_TIMERS): () => void {
  let left = ms > 0 ? ms : 0;
  let id: unknown;
  const arm = () => {
    const step = Math.min(left, MAX_TIMER_MS);
    left -= step;
    id = timers.setTimeout(() => {
      id = undefined;
      if (left > 0) arm();
      else fn();
    }, step);
  };
  arm();
  return () => {
    if (id !== undefined) timers.clearTimeout(id);
    id = undefined;
    left = 0;
  };
}
