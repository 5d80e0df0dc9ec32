/**
 * Worker side of the watch loop's watcher: watches one folder with `Deno.watchFs` and sends
 * its events in batches. Each watch runs in a worker of its own because Deno keeps one OS
 * watcher per thread, shared by every `Deno.watchFs` of that thread, and that one does not
 * reliably see a folder that was deleted and made again under the same path (a deploy
 * script's `rm -rf src; mkdir src`): watching it again from the same thread may add no watch
 * at all. Ending the worker ends its OS watcher; a new worker starts from nothing.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { describeError } from "../errors.ts";

/** What the loop asks for: the folder to watch, recursively. */
export interface WatchStart {
  /** Absolute path of the folder. */
  path: string;
}

/** One event, as much of it as the loop uses. */
export interface WatchEvent {
  /** What happened (`Deno.FsEvent`'s kind): `remove` or `rename` of the watched folder itself means it is gone. */
  kind: string;
  /** The paths the event names. */
  paths: string[];
  /** The OS dropped events (inotify's queue overflowed): only a full walk is sure to see every change. */
  rescan: boolean;
}

/** What the worker sends: the watch is armed, some events, or the watch failed. */
export type WatchReport =
  | { armed: true }
  | { events: WatchEvent[] }
  | { error: string };

self.onmessage = async (message: MessageEvent<WatchStart>) => {
  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs(message.data.path, { recursive: true });
  } catch (error) {
    self.postMessage({ error: describeError(error) } satisfies WatchReport);
    return;
  }
  self.postMessage({ armed: true } satisfies WatchReport);
  // A burst of thousands of events crosses as a few messages, not thousands.
  let pending: WatchEvent[] = [];
  const flush = () => {
    const events = pending;
    pending = [];
    self.postMessage({ events } satisfies WatchReport);
  };
  try {
    for await (const event of watcher) {
      if (pending.length === 0) setTimeout(flush, 0);
      pending.push({ kind: event.kind, paths: event.paths, rescan: event.flag === "rescan" });
    }
  } catch (error) {
    self.postMessage({ error: describeError(error) } satisfies WatchReport);
  }
};
