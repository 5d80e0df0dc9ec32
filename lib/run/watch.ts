/**
 * Live mode: watch the source with `Deno.watchFs`, and sync once a burst of events settles.
 *
 * A sync after a burst plans only the directories the events named (and their ancestors),
 * plus whole new directories, the way lsyncd hands rsync the changed directories: renames,
 * deletions and new directories filled after creation all arrive, and a change deep in a
 * million-file tree costs a few listings, not a full walk. Bursts of thousands of events
 * collapse into a few runs. A full rescan runs at start, every `rescanMs`, after a run with
 * errors, and whenever the watcher fails or overflows.
 *
 * @module
 */

import { isAbsolute, relative, sep } from "node:path";
import type { SyncOptions } from "../engine/options.ts";
import { describeError } from "../model/errors.ts";
import { logger } from "../log.ts";
import { guardedRun, type RunControl } from "../engine/sync.ts";
import type { ProgressSink } from "../model/progress.ts";
import { ExitCode } from "../model/errors.ts";
import { parentOf } from "../model/actions.ts";
import { formatDuration } from "../model/units.ts";
import { SourceFolder } from "./source.ts";
import { longTimeout } from "./timer.ts";
import type { RunReporter } from "./report.ts";

/** Options for {@linkcode watchLoop}. */
export interface WatchOptions {
  /** Full rescan period in milliseconds, as a safety net. */
  rescanMs: number;
  /** Stops the loop. */
  signal?: AbortSignal;
  /** Reports each run, and the source going missing (once each time it goes). */
  reporter?: RunReporter;
  /**
   * Quiet time after the last event before a sync starts.
   * @default 100
   */
  settleMs?: number;
  /**
   * Longest wait for a burst to settle before syncing anyway.
   * @default 1000
   */
  maxSettleMs?: number;
  /**
   * Wait before a full rescan retries a run that had errors, doubled after each failed retry
   * up to `rescanMs`, so that a lasting error does not spin.
   * @default 1000
   */
  retryMs?: number;
  /**
   * While the source folder is missing, how often to look for it again.
   * @default 1000
   */
  pollMs?: number;
  /**
   * Fail a run, changing nothing, when the replica folder is missing (see
   * {@linkcode RunControl.replicaMustExist}).
   * @default false
   */
  replicaMustExist?: boolean;
  /** The live progress line, shown by each sync that lasts more than a moment. */
  progress?: ProgressSink;
  /** Opens the source and the replica for each run (see {@linkcode RunControl.sides}). */
  sides: RunControl["sides"];
}

/** Text for the OS refusing another watch, with the fix. */
function watchLimitHint(error: unknown): string {
  const text = describeError(error);
  const limit = /limit|ENOSPC|No space left|too many/i.test(text);
  return limit
    ? `Cannot watch the source: ${text}. The OS watch limit is reached; raise it with ` +
      `'sudo sysctl fs.inotify.max_user_watches=1048576' (and persist it in /etc/sysctl.d). ` +
      `Falling back to full scans`
    : `Cannot watch the source: ${text}. Falling back to full scans`;
}

/**
 * Syncs now, then again whenever the source changes, until `signal` aborts.
 *
 * Needs read permission for the source (to watch it) and what {@linkcode guardedRun} needs.
 *
 * @example Watching until Ctrl+C
 * ```ts
 * const controller = new AbortController();
 * Deno.addSignalListener("SIGINT", () => controller.abort());
 * await watchLoop(options, { sides: localSides(options), rescanMs: 300_000, signal: controller.signal });
 * ```
 */
export async function watchLoop(options: SyncOptions, watch: WatchOptions): Promise<void> {
  const {
    rescanMs,
    signal,
    settleMs = 100,
    maxSettleMs = 1000,
    retryMs = 1000,
    pollMs = 1000,
    replicaMustExist = false,
  } = watch;
  let dirty = true;
  let lastEventAt = 0;
  let wake: (() => void) | undefined;
  const kick = () => wake?.();
  const waitForKick = (ms: number) =>
    new Promise<void>((resolve) => {
      // A rescan period of weeks is armed in steps: one timer of that length would fire at once.
      const cancel = longTimeout(done, ms);
      function done() {
        cancel();
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  /** Source directories the events named since the last sync, or "all" for a full walk. */
  let changed: Set<string> | "all" = "all";
  // Events under excluded paths (foldersync's own log file among them) start no sync.
  const filter = options.filter
    ? (await import("../engine/filter_compile.ts")).compileFilter(options.filter)
    : undefined;
  /** Notes the directories `paths` touch; false when every one of them is excluded. */
  const note = (paths: string[]): boolean => {
    let counted = false;
    for (const path of paths) {
      const rel = relative(options.source, path);
      if (rel.startsWith("..") || isAbsolute(rel)) {
        changed = "all"; // a path the scope cannot name (a real path on macOS, say): walk it all
        counted = true;
        continue;
      }
      const slashed = sep === "/" ? rel : rel.replaceAll(sep, "/");
      if (filter?.excludesAnywhere(slashed)) continue;
      counted = true;
      if (changed === "all") continue;
      // The entry's directory lists it; the entry itself, if a directory, may have new entries.
      changed.add(slashed);
      changed.add(parentOf(slashed));
    }
    return counted;
  };

  let watcher: SourceWatcher | undefined;
  let fallbackMs = rescanMs;
  const fallBack = (error: unknown) => {
    fallbackMs = Math.min(rescanMs, 60_000);
    logger.warn("{text}", { text: `${watchLimitHint(error)} every ${formatDuration(fallbackMs)}` });
    dirty = true;
    changed = "all";
    kick();
  };
  /** The watched folder itself was deleted or moved away: its watcher hears nothing more. */
  let gone = false;
  const onEvents = (events: WatchEvent[]) => {
    let counted = false;
    for (const event of events) {
      if ((event.kind === "remove" || event.kind === "rename") && event.paths.some((p) => p === options.source)) {
        gone = true;
      }
      if (event.rescan) {
        logger.debug("{text}", { text: "Watcher overflowed; rescanning" });
        changed = "all";
        counted = true;
      } else if (note(event.paths)) counted = true;
    }
    if (!counted) return;
    dirty = true;
    lastEventAt = performance.now();
    kick();
  };
  const disarm = () => {
    watcher?.close();
    watcher = undefined;
  };
  /** Watches the folder now at the source's path (a new one after it was replaced). */
  const arm = async () => {
    disarm();
    try {
      const started = await startWatcher(options.source, onEvents, (error) => {
        if (!signal?.aborted && watcher === started) fallBack(error);
      });
      watcher = started;
      fallbackMs = rescanMs;
    } catch (error) {
      fallBack(error);
    }
  };
  const folder = new SourceFolder(options.source);
  await arm();
  const onAbort = () => {
    disarm();
    kick();
  };
  signal?.addEventListener("abort", onAbort, { once: true });

  logger.info("{text}", {
    text: `Watching '${options.source}' (full rescan every ${formatDuration(fallbackMs)}); stop with Ctrl+C`,
  });
  let nextRescan = performance.now() + fallbackMs;
  let retryDelay = retryMs;
  let retryAt = Infinity;
  /** While the source is missing: when to look for it again. */
  let pollAt = Infinity;
  /** The source's going missing was reported; it is again only after it was back. */
  let missingReported = false;
  while (!signal?.aborted) {
    if (dirty) {
      const burstStart = performance.now();
      while (!signal?.aborted) {
        const now = performance.now();
        const quietFor = now - lastEventAt;
        if (quietFor >= settleMs || now - burstStart >= maxSettleMs) break;
        await waitForKick(settleMs - quietFor);
      }
      if (signal?.aborted) break;
      dirty = false;
      const state = folder.check(true, gone);
      gone = false;
      if (state === "missing" && !missingReported) {
        missingReported = true;
        await watch.reporter?.missingSource();
      } else if (state !== "missing") missingReported = false;
      if (state === "missing") {
        // A watcher of a deleted folder hears nothing more: look for the folder now and then.
        disarm();
        changed = "all";
        nextRescan = retryAt = Infinity;
        pollAt = performance.now() + pollMs;
        continue;
      }
      pollAt = Infinity;
      if (state !== "present") {
        // Back, or replaced by a new folder of the same name: watch that one, and walk it all.
        await arm();
        changed = "all";
      }
      const scope = changed === "all" ? undefined : withAncestors(changed);
      changed = new Set();
      if (scope) logger.debug("{text}", { text: `Syncing ${scope.size} changed directories` });
      const control: RunControl = {
        replicaMustExist,
        ...(signal ? { signal } : {}),
        ...(scope ? { scope } : {}),
        ...(watch.progress ? { progress: watch.progress } : {}),
        sides: watch.sides,
      };
      const guarded = (c: RunControl) => guardedRun(options, c);
      const code = await (watch.reporter ? watch.reporter.run(guarded, control) : guarded(control));
      if (code === ExitCode.Ok) {
        retryDelay = retryMs;
        retryAt = Infinity;
      } else {
        // Whatever failed is retried by a full walk, soon but not in a spin.
        changed = "all";
        retryAt = performance.now() + retryDelay;
        retryDelay = Math.min(retryDelay * 2, Math.max(retryMs, fallbackMs));
      }
      if (!scope) nextRescan = performance.now() + fallbackMs;
      continue;
    }
    await waitForKick(Math.min(nextRescan, retryAt, pollAt) - performance.now());
    const now = performance.now();
    if (now >= nextRescan || now >= retryAt || now >= pollAt) {
      dirty = true;
      changed = "all";
      retryAt = Infinity;
    }
  }
  signal?.removeEventListener("abort", onAbort);
  onAbort();
}

/** One event, as much of it as the loop uses. */
interface WatchEvent {
  /** What happened (`Deno.FsEvent`'s kind): `remove` or `rename` of the watched folder itself means it is gone. */
  kind: string;
  /** The paths the event names. */
  paths: string[];
  /** The OS dropped events (inotify's queue overflowed): only a full walk is sure to see every change. */
  rescan: boolean;
}

/** What the watch worker sends: the watch is armed, some events, or the watch failed. */
type WatchReport = { armed: true } | { events: WatchEvent[] } | { error: string };

/**
 * The watch worker's whole program: watches the folder it is sent with `Deno.watchFs` and
 * sends its events back. It runs from its own source text (see {@linkcode startWatcher}), so
 * it may use nothing from outside its body.
 *
 * Each watch runs in a worker of its own because Deno keeps one OS watcher per thread, shared
 * by every `Deno.watchFs` of that thread, and that one does not reliably see a folder that was
 * deleted and made again under the same path (`rm -rf src; mkdir src`): watching it again from
 * the same thread may add no OS watch at all. Ending the worker ends its OS watcher; a new
 * worker starts from nothing.
 */
function watchWorker(): void {
  const scope = self as unknown as {
    onmessage: (message: MessageEvent<string>) => void;
    postMessage(report: WatchReport): void;
  };
  const text = (error: unknown) => error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  scope.onmessage = async (message) => {
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(message.data, { recursive: true });
    } catch (error) {
      scope.postMessage({ error: text(error) });
      return;
    }
    scope.postMessage({ armed: true });
    // A lone event crosses at once; the events of a burst that follow it wait for the next
    // turn and cross together: thousands of events make a few messages, not thousands.
    let pending: WatchEvent[] = [];
    let cooling = false;
    const flush = () => {
      cooling = pending.length > 0;
      if (!cooling) return;
      scope.postMessage({ events: pending });
      pending = [];
      setTimeout(flush, 0);
    };
    try {
      for await (const event of watcher) {
        pending.push({ kind: event.kind, paths: event.paths, rescan: event.flag === "rescan" });
        if (!cooling) flush();
      }
    } catch (error) {
      scope.postMessage({ error: text(error) });
    }
  };
}

/**
 * The watch worker's module: its program as a blob, which needs no read permission (a run
 * granted only its folders may watch) and no file to ship in a compiled binary.
 */
let workerUrl: string | undefined;

/** A watch of one folder, in a worker of its own (see {@linkcode watchWorker}). */
interface SourceWatcher {
  /** Ends the watch and its worker. */
  close(): void;
}

/**
 * Starts watching `path` recursively; resolves once the watch is armed, so that a walk that
 * starts then misses no change. Events go to `onEvents`; a watch that fails later goes to
 * `onFailure` (the watcher is then dead).
 *
 * @throws {Error} When the watch cannot be armed (the OS watch limit, a missing folder).
 */
function startWatcher(
  path: string,
  onEvents: (events: WatchEvent[]) => void,
  onFailure: (error: Error) => void,
): Promise<SourceWatcher> {
  return new Promise((resolve, reject) => {
    workerUrl ??= URL.createObjectURL(new Blob([`(${watchWorker})();`], { type: "text/javascript" }));
    const worker = new Worker(workerUrl, { type: "module" });
    let armed = false;
    const fail = (text: string) => {
      worker.terminate();
      if (armed) onFailure(new Error(text));
      else reject(new Error(text));
    };
    worker.onmessage = ({ data }: MessageEvent<WatchReport>) => {
      if ("events" in data) onEvents(data.events);
      else if ("error" in data) fail(data.error);
      else {
        armed = true;
        resolve({ close: () => worker.terminate() });
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      fail(event.message);
    };
    worker.postMessage(path);
  });
}

/** `dirs` with every ancestor of each, `""` (the root) included. */
function withAncestors(dirs: Iterable<string>): Set<string> {
  const scope = new Set<string>([""]);
  for (let dir of dirs) {
    while (dir !== "" && !scope.has(dir)) {
      scope.add(dir);
      dir = parentOf(dir);
    }
  }
  return scope;
}
