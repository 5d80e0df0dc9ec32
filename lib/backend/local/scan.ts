/**
 * Reads trees with lstat, never following symbolic links, one directory at a time: the listing
 * of one directory ({@linkcode listDirectory}), a depth-first walk ({@linkcode walkStep}), and
 * the source walk that moves to a Worker once one has booted ({@linkcode SourceWalk}).
 *
 * Nothing here holds a whole tree: the planner consumes listings as they come, so memory
 * follows the depth and breadth of the walk, not the number of files.
 *
 * The calls are synchronous on purpose: per-call async overhead dominates a metadata walk
 * (measured on /usr/share: readDirSync + lstatSync 0.6 s, async lstat pools 2.4 s and more).
 *
 * @module
 */

import type { PathFilter } from "../../model/filter.ts";
import {
  compareNames,
  FAILED,
  INCOMPLETE,
  ListingBatch,
  LOOSENED,
  type PackedBatch,
  pushSubdirs,
  VANISHED,
} from "../../model/listing.ts";

/**
 * The path separator, without node:path: the walk's worker would load Node's path module and
 * what it pulls in (~13 ms of CPU time and ~4 MB for each worker) for this one character.
 */
const SEP = Deno.build.os === "windows" ? "\\" : "/";

/**
 * Lists directory `rel` of the tree at `root` into `batch`, sorted by name, one lstat per
 * entry (and a readlink per symbolic link).
 *
 * Never throws for a directory inside the tree: a directory that cannot be listed is flagged
 * {@linkcode FAILED} with a problem, one that vanished {@linkcode VANISHED}, and entries that
 * cannot be read make it {@linkcode INCOMPLETE}. Throws only if the root itself (`rel` is
 * `""`) cannot be listed. With `fixPermissions` (the replica), a directory that denies
 * listing gets owner rwx for the rest of the run and is flagged {@linkcode LOOSENED}.
 *
 * Needs read permission for `root`, and write permission too with `fixPermissions`.
 *
 * @example Listing a root
 * ```ts
 * const batch = new ListingBatch();
 * listDirectory(batch, "/data/src", "");
 * ```
 */
export function listDirectory(
  batch: ListingBatch,
  root: string,
  rel: string,
  fixPermissions = false,
  filter?: PathFilter,
): void {
  const k = batch.begin(rel);
  const full = rel === "" ? root : `${root}${SEP}${rel.replaceAll("/", SEP)}`;
  try {
    try {
      readEntries(batch, k, full, rel, fixPermissions, filter);
    } catch (error) {
      if (!fixPermissions || !(error instanceof Deno.errors.PermissionDenied)) throw error;
      // Opened up for the whole run (subdirectories need the search bit too); the plan puts
      // the mode back afterwards, or the directory is removed.
      const mode = (Deno.lstatSync(full).mode ?? 0) & 0o7777;
      Deno.chmodSync(full, mode | 0o700);
      batch.clearLast();
      try {
        readEntries(batch, k, full, rel, false, filter);
        batch.flags[k]! |= LOOSENED;
      } catch (retryError) {
        Deno.chmodSync(full, mode);
        throw retryError;
      }
    }
  } catch (error) {
    if (rel === "") throw error; // the root itself: the caller must know
    batch.clearLast();
    if (error instanceof Deno.errors.NotFound) {
      batch.flags[k]! |= VANISHED;
      batch.problems.push({ path: rel, message: "vanished", directory: true, vanished: true });
      return;
    }
    batch.flags[k]! |= FAILED;
    batch.problems.push({ path: rel, message: `Cannot read directory: ${errorText(error)}`, directory: true });
  }
}

/**
 * The hot loop of every walk: one readDir, then one lstat per entry written straight into the
 * batch. With `strict`, a permission error on an entry is thrown (for the caller to open the
 * directory up and retry) instead of being recorded.
 */
function readEntries(
  batch: ListingBatch,
  k: number,
  full: string,
  rel: string,
  strict: boolean,
  filter: PathFilter | undefined,
): void {
  const names: string[] = [];
  const prefix = rel === "" ? "" : `${rel}/`;
  if (filter) {
    // Excluded entries are dropped before their lstat: an excluded directory is never entered.
    for (const dirent of Deno.readDirSync(full)) {
      const known = dirent.isFile || dirent.isDirectory || dirent.isSymlink;
      const isDir = known ? dirent.isDirectory : isDirectory(`${full}${SEP}${dirent.name}`);
      if (!filter.excludes(prefix + dirent.name, isDir)) names.push(dirent.name);
    }
  } else {
    for (const dirent of Deno.readDirSync(full)) names.push(dirent.name);
  }
  names.sort(compareNames);
  batch.reserve(names.length);
  for (let n = 0; n < names.length; n++) {
    const name = names[n]!;
    if (names[n + 1] === name) {
      // Deno reads bytes that are not UTF-8 as U+FFFD, so such a name and a valid one holding
      // U+FFFD read alike: neither can be told from the other, nor reached for sure. Both are
      // left alone, and the partial listing keeps anything here from being removed.
      while (names[n + 1] === name) n++;
      batch.flags[k]! |= INCOMPLETE;
      batch.problems.push({
        path: prefix + name,
        message: `Two names read as the same text: one is not valid UTF-8 (${findHint(name)}); ` +
          "both are left alone",
      });
      continue;
    }
    const childFull = `${full}${SEP}${name}`;
    try {
      const info = Deno.lstatSync(childFull);
      batch.pushStat(name, info, info.isSymlink ? Deno.readLinkSync(childFull) : undefined);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        if (!name.includes("\uFFFD")) {
          // Deleted since the directory was read: it is not there, so the listing is still whole.
          batch.problems.push({ path: prefix + name, message: "vanished", vanished: true });
          continue;
        }
        // Deno turns bytes that are not UTF-8 into U+FFFD, so such a name cannot be reached
        // at all: say so, and keep the directory from being judged on a partial listing.
        batch.flags[k]! |= INCOMPLETE;
        batch.problems.push({
          path: prefix + name,
          message: `Name is not valid UTF-8 and cannot be copied (${findHint(name)})`,
        });
        continue;
      }
      if (strict && error instanceof Deno.errors.PermissionDenied) throw error;
      batch.flags[k]! |= INCOMPLETE;
      batch.problems.push({ path: prefix + name, message: `Cannot stat: ${errorText(error)}` });
    }
  }
}

/**
 * One step of a depth-first walk: lists the directory on top of `stack` into `batch` and
 * pushes its subdirectories so that they are visited in sorted order, parents before children.
 *
 * Needs read permission for `root`; throws only if the root itself cannot be listed.
 *
 * @example Walking a whole tree
 * ```ts
 * const batch = new ListingBatch();
 * const stack = [""];
 * while (stack.length > 0) walkStep(batch, "/data/src", stack);
 * ```
 */
export function walkStep(batch: ListingBatch, root: string, stack: string[], filter?: PathFilter): void {
  listDirectory(batch, root, stack.pop()!, false, filter);
  pushSubdirs(batch, batch.dirs.length - 1, stack);
}

/**
 * How to find a name Deno read with U+FFFD in place of bytes that are not UTF-8: the shell
 * pattern that matches it, and `ls -b`, which shows its bytes.
 */
function findHint(name: string): string {
  const pattern = name.replace(/\uFFFD+/g, "*").replaceAll("'", "'\\''");
  return `the shell pattern '${pattern}' finds it, ls -b shows its bytes; rename it to copy it`;
}

/** For a file system that does not report entry types in listings. */
function isDirectory(path: string): boolean {
  try {
    return Deno.lstatSync(path).isDirectory;
  } catch {
    return false;
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** What the scan worker posts: a batch of listings, the end of the walk, or a failure. */
export interface WalkMessage {
  batch?: PackedBatch;
  done?: true;
  error?: string;
}

/** Batches in flight from the worker before it waits for the planner to catch up. */
export const MAX_AHEAD = 4;

/**
 * Entries the worker collects into a batch before it posts it (a directory is never split).
 * Peak memory grows with it (measured on the small no-op: 2,048 entries, 95-99 MiB; 512, 90;
 * 256, 84), likely because a large batch lives, as the worker fills it and the planner works
 * through it, long enough to be moved to V8's old generation. 256 cost the real tree's no-op
 * (3,300 folders of 16 entries on average) 2 to 6% more CPU and wall time, in more posts and
 * waits; 512 costs nothing measurable there.
 */
export const BATCH_ENTRIES = 512;

/**
 * The source tree's listings, in depth-first order, parents before children.
 *
 * Walking the source in a Worker lets the caller list the replica at the same time, one core
 * each, but a worker takes ~100 ms to boot. So the walk starts in this thread and hands what
 * is left to the worker as soon as it is ready; a small tree is done before that. The worker
 * streams batches and waits when {@linkcode MAX_AHEAD} are unconsumed, so memory stays small
 * however fast it runs.
 *
 * Needs read permission for `root` (workers inherit the process's permissions).
 *
 * @example Walking a tree
 * ```ts
 * const walk = new SourceWalk("/data/src");
 * try {
 *   for (let batch; (batch = await walk.next());) console.log(batch.dirs);
 * } finally {
 *   walk.close();
 * }
 * ```
 */
export class SourceWalk {
  #root: string;
  #stack: string[] = [""];
  #local = new ListingBatch();
  #worker: Worker | undefined;
  /** [0]: the worker has booted; [1]: batches the caller has consumed. */
  #shared = new Int32Array(new SharedArrayBuffer(8));
  #remote = false;
  #queue: WalkMessage[] = [];
  #waiting: ((message: WalkMessage) => void) | undefined;
  #received = 0;
  #descend: ((dir: string) => boolean) | undefined;
  #filter: PathFilter | undefined;

  /** Directories still to list in this thread before a worker is started; -1 for none. */
  #beforeWorker: number;
  #batchEntries: number;

  /**
   * Starts walking `root`; `useWorker: false` keeps the whole walk in this thread. A worker is
   * started once `workerAfterDirs` directories (default 16) have been listed here, so that a
   * small tree never pays for one (~17 ms of this thread's time); `batchEntries` sets how many
   * entries it puts in a batch (default {@linkcode BATCH_ENTRIES}). With `descend`, the walk
   * stays in this thread and enters only the subdirectories it approves, asked once the caller
   * has handled their parent's listing. With `filter`, excluded entries are left out of every listing (and the
   * worker compiles the same filter from its spec).
   */
  constructor(
    root: string,
    options: {
      useWorker?: boolean;
      workerAfterDirs?: number;
      batchEntries?: number;
      descend?: (dir: string) => boolean;
      filter?: PathFilter | undefined;
    } = {},
  ) {
    this.#root = root;
    this.#descend = options.descend;
    this.#filter = options.filter;
    this.#batchEntries = options.batchEntries ?? BATCH_ENTRIES;
    this.#beforeWorker = options.useWorker === false || this.#descend ? -1 : options.workerAfterDirs ?? 16;
    if (this.#beforeWorker === 0) this.#startWorker();
  }

  #startWorker(): void {
    try {
      const worker = new Worker(new URL("./scan_worker.ts", import.meta.url), { type: "module" });
      worker.onmessage = (event: MessageEvent<WalkMessage>) => this.#deliver(event.data);
      worker.onerror = (event) => {
        event.preventDefault();
        this.#deliver({ error: event.message || "Scan worker failed" });
      };
      worker.postMessage({
        root: this.#root,
        shared: this.#shared,
        batchEntries: this.#batchEntries,
        ...(this.#filter ? { filter: this.#filter.compiled } : {}),
      });
      this.#worker = worker;
    } catch {
      // no workers here: walk in this thread
    }
  }

  /**
   * The next batch of listings, or `undefined` when the walk is done. A batch is valid until
   * the next call. Throws if the root cannot be listed.
   */
  async next(): Promise<ListingBatch | undefined> {
    if (this.#remote) {
      if (this.#received > 0) {
        Atomics.add(this.#shared, 1, 1);
        Atomics.notify(this.#shared, 1);
      }
      const message = this.#queue.shift() ?? await new Promise<WalkMessage>((resolve) => (this.#waiting = resolve));
      this.#received++;
      if (message.error !== undefined) throw new Error(`Source walk failed: ${message.error}`);
      return message.batch ? ListingBatch.unpack(message.batch) : (this.close(), undefined);
    }
    if (this.#descend) return this.#nextChosen(this.#descend);
    if (this.#stack.length === 0) {
      this.close();
      return undefined;
    }
    if (this.#stack[0] !== "" && this.workerReady) {
      this.#worker!.postMessage({ stack: this.#stack });
      this.#stack = [];
      this.#remote = true;
      return this.next();
    }
    this.#local.reset();
    walkStep(this.#local, this.#root, this.#stack, this.#filter);
    if (this.#beforeWorker > 0 && --this.#beforeWorker === 0) this.#startWorker();
    return this.#local;
  }

  /** True once the worker has booted and could take the walk over. */
  get workerReady(): boolean {
    return this.#worker !== undefined && Atomics.load(this.#shared, 0) === 1;
  }

  /** True once the worker has taken the walk over. */
  get inWorker(): boolean {
    return this.#remote;
  }

  /** The next listing of a walk that enters only the directories `descend` approves. */
  #nextChosen(descend: (dir: string) => boolean): ListingBatch | undefined {
    const last = this.#local;
    if (last.dirs.length > 0) pushSubdirs(last, 0, this.#stack, descend);
    last.reset();
    const next = this.#stack.pop();
    if (next === undefined) return undefined;
    listDirectory(last, this.#root, next, false, this.#filter);
    return last;
  }

  /** Stops the worker; call when done or abandoning the walk. */
  close(): void {
    this.#beforeWorker = -1;
    this.#worker?.terminate();
    this.#worker = undefined;
  }

  #deliver(message: WalkMessage): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting(message);
    else this.#queue.push(message);
  }
}
