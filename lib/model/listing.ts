/**
 * Directory listings as data: what an entry is, and batches of listed directories stored
 * column-wise, so that a batch crosses from the scan worker to the planner without copying
 * its metadata (the typed arrays are transferred) and without an object per entry.
 *
 * @module
 */

/** What an entry is; `other` covers FIFOs, sockets and devices. */
export type EntryKind = "file" | "dir" | "symlink" | "other";

/** The metadata the per-entry decision looks at: a {@linkcode BatchCursor} or an {@linkcode Entry}. */
export interface EntryView {
  readonly kind: EntryKind;
  /** Size in bytes (0 for directories). */
  readonly size: number;
  /** Modification time in milliseconds. */
  readonly mtimeMs: number;
  /** Permission bits. */
  readonly mode: number;
  /** Target text of a symbolic link. */
  readonly target?: string | undefined;
}

/** The metadata foldersync compares and preserves for one entry. */
export interface Entry {
  /** File, directory, symbolic link or other. */
  kind: EntryKind;
  /** Size in bytes (0 for directories). */
  size: number;
  /**
   * Modification time in milliseconds since the epoch (Deno reports milliseconds); NaN for a
   * replica directory whose replica does not know it (an S3 prefix without a marker object).
   */
  mtimeMs: number;
  /**
   * Permission bits, `mode & 0o7777` (0 where the OS has none); {@linkcode UNKNOWN_MODE} for a
   * replica entry whose replica does not know them.
   */
  mode: number;
  /** Target text of a symbolic link. */
  target?: string;
  /** Inode number (part of the hash cache key). */
  ino?: number;
  /** Change time in milliseconds (part of the hash cache key; Deno reports whole seconds). */
  ctimeMs?: number;
}

/**
 * The mode of a replica entry whose replica does not know it (an S3 object written without
 * `mode` metadata, as rclone writes by default): never a difference. No permission bits are
 * this value (they fit 0o7777), and it survives the listing's 16-bit mode column.
 */
export const UNKNOWN_MODE = 0xffff;

/** A path that could not be read, with why. */
export interface ScanProblem {
  /** Relative path, `/`-separated; `""` is the root. */
  path: string;
  /** One line saying what went wrong. */
  message: string;
  /** True when a whole directory could not be listed (else one entry in it failed). */
  directory?: true;
  /**
   * True when the entry was listed but was gone by the time it was read: no error, it is
   * simply no longer there (rsync's "file has vanished").
   */
  vanished?: true;
}

/** The kind of an lstat result. */
export function kindOf(info: Deno.FileInfo): EntryKind {
  return info.isFile ? "file" : info.isDirectory ? "dir" : info.isSymlink ? "symlink" : "other";
}

/**
 * Converts a `Deno.FileInfo` from lstat into an {@linkcode Entry} (without a link target).
 *
 * @example Converting an lstat result
 * ```ts
 * const entry = toEntry(Deno.lstatSync("/etc/hostname"));
 * ```
 */
export function toEntry(info: Deno.FileInfo): Entry {
  const kind = kindOf(info);
  const entry: Entry = {
    kind,
    size: kind === "dir" ? 0 : info.size,
    mtimeMs: info.mtime?.getTime() ?? 0,
    mode: (info.mode ?? 0) & 0o7777,
  };
  if (info.ino !== null) entry.ino = info.ino;
  if (info.ctime) entry.ctimeMs = info.ctime.getTime();
  return entry;
}

/**
 * Orders names the way every listing is sorted: by UTF-16 code units, as `Array.sort` does.
 *
 * @example Sorting names
 * ```ts
 * ["b", "a"].sort(compareNames); // ["a", "b"]
 * ```
 */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The directory could not be listed: nothing under it is known. */
export const FAILED = 1;
/** The directory vanished between listing its parent and reading it. */
export const VANISHED = 2;
/** Some entries could not be read: the listing is partial, so nothing in it may be removed. */
export const INCOMPLETE = 4;
/** A replica directory whose mode the scan had to open up; its final mode must be set again. */
export const LOOSENED = 8;

const KINDS: readonly EntryKind[] = ["file", "dir", "symlink", "other"];
/** The columns of a batch before its first entry: never written, the first entry allocates. */
const NO_NUMBERS = new Float64Array(0);
const NO_META = new Uint32Array(0);
const KIND_CODE: Record<EntryKind, number> = { file: 0, dir: 1, symlink: 2, other: 3 };
/** size, mtimeMs, ctimeMs, ino */
const NUMS = 4;

/** The plain-data form of a batch, for `postMessage` (the typed arrays transfer). */
export interface PackedBatch {
  dirs: string[];
  starts: number[];
  flags: number[];
  names: string[];
  numbers: Float64Array<ArrayBuffer>;
  meta: Uint32Array<ArrayBuffer>;
  targets: Array<[number, string]>;
  problems: ScanProblem[];
}

/**
 * Listings of one or more directories: for each, its relative path, flags, and its entries
 * sorted by {@linkcode compareNames}. Entry `i` of the batch is read through the accessors;
 * directory `k` holds entries `start(k)` to `end(k) - 1`.
 *
 * @example Building and reading a listing
 * ```ts
 * const batch = new ListingBatch();
 * const k = batch.begin("docs");
 * batch.push("a.txt", { kind: "file", size: 3, mtimeMs: 1000, mode: 0o644 });
 * batch.entry(batch.start(k)).size; // 3
 * ```
 */
export class ListingBatch {
  /** Relative path of each listed directory (`""` is the root). */
  dirs: string[] = [];
  /** Flags of each directory: {@linkcode FAILED}, {@linkcode VANISHED}, and so on. */
  flags: number[] = [];
  /** Entry names, directory after directory. */
  names: string[] = [];
  /** Paths that could not be read while listing these directories. */
  problems: ScanProblem[] = [];
  #starts: number[] = [];
  // Sized to the listing, from the first entry on: the replica's side makes a batch for each
  // directory, and a fixed 9 KiB to start with, grown by doubling (to 1 MiB for a folder of
  // 18,000 entries), cost the real tree's no-op 3 to 5% of its time and up to 17 MiB of peak.
  #numbers: Float64Array<ArrayBuffer> = NO_NUMBERS;
  /** kind << 16 | mode */
  #meta: Uint32Array<ArrayBuffer> = NO_META;
  #targets = new Map<number, string>();

  /** Starts the listing of `dir` and returns its index. */
  begin(dir: string): number {
    this.dirs.push(dir);
    this.flags.push(0);
    this.#starts.push(this.names.length);
    return this.dirs.length - 1;
  }

  /** First entry of directory `k`. */
  start(k: number): number {
    return this.#starts[k]!;
  }

  /** One past the last entry of directory `k`. */
  end(k: number): number {
    return k + 1 < this.#starts.length ? this.#starts[k + 1]! : this.names.length;
  }

  /** Makes room for `count` more entries, for a caller that knows how many will come. */
  reserve(count: number): void {
    const needed = this.names.length + count;
    if (needed > this.#meta.length) this.#grow(needed);
  }

  /** Adds an entry from an lstat result to the last directory begun, and returns its kind. */
  pushStat(name: string, info: Deno.FileInfo, target?: string): EntryKind {
    const kind = kindOf(info);
    const i = this.#append(name, target);
    const n = i * NUMS;
    this.#numbers[n] = kind === "dir" ? 0 : info.size;
    this.#numbers[n + 1] = info.mtime?.getTime() ?? 0;
    this.#numbers[n + 2] = info.ctime?.getTime() ?? NaN;
    this.#numbers[n + 3] = info.ino ?? NaN;
    this.#meta[i] = (KIND_CODE[kind] << 16) | ((info.mode ?? 0) & 0o7777);
    return kind;
  }

  /** Adds `entry` to the last directory begun (names must come in sorted order). */
  push(name: string, entry: Entry): void {
    const i = this.#append(name, entry.target);
    const n = i * NUMS;
    this.#numbers[n] = entry.size;
    this.#numbers[n + 1] = entry.mtimeMs;
    this.#numbers[n + 2] = entry.ctimeMs ?? NaN;
    this.#numbers[n + 3] = entry.ino ?? NaN;
    this.#meta[i] = (KIND_CODE[entry.kind] << 16) | (entry.mode & 0xffff);
  }

  /** Drops the entries of the last directory begun (to list it again). */
  clearLast(): void {
    const from = this.#starts[this.#starts.length - 1] ?? 0;
    for (const i of this.#targets.keys()) if (i >= from) this.#targets.delete(i);
    this.names.length = from;
  }

  /** Empties the batch for reuse (its buffers are kept). */
  reset(): void {
    this.dirs.length = 0;
    this.flags.length = 0;
    this.names.length = 0;
    this.problems.length = 0;
    this.#starts.length = 0;
    this.#targets.clear();
  }

  kind(i: number): EntryKind {
    return KINDS[this.#meta[i]! >>> 16]!;
  }

  size(i: number): number {
    return this.#numbers[i * NUMS]!;
  }

  mtimeMs(i: number): number {
    return this.#numbers[i * NUMS + 1]!;
  }

  mode(i: number): number {
    return this.#meta[i]! & 0xffff;
  }

  target(i: number): string | undefined {
    return this.#targets.get(i);
  }

  /** Inode number of entry `i`; NaN where the listing has none (remote replicas). */
  ino(i: number): number {
    return this.#numbers[i * NUMS + 3]!;
  }

  /** Entry `i` as an object. */
  entry(i: number): Entry {
    const n = i * NUMS;
    const meta = this.#meta[i]!;
    const entry: Entry = {
      kind: KINDS[meta >>> 16]!,
      size: this.#numbers[n]!,
      mtimeMs: this.#numbers[n + 1]!,
      mode: meta & 0xffff,
    };
    const ctime = this.#numbers[n + 2]!;
    const ino = this.#numbers[n + 3]!;
    if (!Number.isNaN(ctime)) entry.ctimeMs = ctime;
    if (!Number.isNaN(ino)) entry.ino = ino;
    const target = this.#targets.get(i);
    if (target !== undefined) entry.target = target;
    return entry;
  }

  /**
   * The batch as plain data plus the buffers to transfer (copies of the columns). The plain
   * data shares the batch's arrays: post it before the batch changes; once posted (postMessage
   * copies it), the batch may be reset and filled again.
   */
  pack(): { packed: PackedBatch; transfer: ArrayBuffer[] } {
    const count = this.names.length;
    const numbers = this.#numbers.slice(0, count * NUMS);
    const meta = this.#meta.slice(0, count);
    return {
      packed: {
        dirs: this.dirs,
        starts: this.#starts,
        flags: this.flags,
        names: this.names,
        numbers,
        meta,
        targets: [...this.#targets],
        problems: this.problems,
      },
      transfer: [numbers.buffer, meta.buffer],
    };
  }

  /** Rebuilds a batch from {@linkcode ListingBatch.pack}'s output. */
  static unpack(packed: PackedBatch): ListingBatch {
    const batch = new ListingBatch();
    batch.dirs = packed.dirs;
    batch.#starts = packed.starts;
    batch.flags = packed.flags;
    batch.names = packed.names;
    batch.#numbers = packed.numbers;
    batch.#meta = packed.meta;
    batch.#targets = new Map(packed.targets);
    batch.problems = packed.problems;
    return batch;
  }

  #append(name: string, target: string | undefined): number {
    const i = this.names.length;
    if (i === this.#meta.length) this.#grow(i + 1);
    this.names.push(name);
    if (target !== undefined) this.#targets.set(i, target);
    return i;
  }

  #grow(needed: number): void {
    const capacity = Math.max(needed, this.#meta.length * 2, 16);
    const numbers = new Float64Array(capacity * NUMS);
    numbers.set(this.#numbers);
    const meta = new Uint32Array(capacity);
    meta.set(this.#meta);
    this.#numbers = numbers;
    this.#meta = meta;
  }
}

/**
 * A movable view of one entry of a batch, so that the per-entry decision reads the columns
 * directly instead of an object made for every entry.
 *
 * @example Viewing entries
 * ```ts
 * const view = new BatchCursor(batch);
 * view.at(0).size;
 * ```
 */
export class BatchCursor implements EntryView {
  #batch: ListingBatch;
  #i = 0;

  constructor(batch: ListingBatch) {
    this.#batch = batch;
  }

  /** Points the view at entry `i` and returns it. */
  at(i: number): this {
    this.#i = i;
    return this;
  }

  get kind(): EntryKind {
    return this.#batch.kind(this.#i);
  }

  get size(): number {
    return this.#batch.size(this.#i);
  }

  get mtimeMs(): number {
    return this.#batch.mtimeMs(this.#i);
  }

  get mode(): number {
    return this.#batch.mode(this.#i);
  }

  get target(): string | undefined {
    return this.#batch.target(this.#i);
  }
}

/**
 * Pushes the subdirectories of listing `k` (those `keep` approves) in reverse, so that popping
 * visits them in sorted order.
 */
export function pushSubdirs(batch: ListingBatch, k: number, stack: string[], keep?: (dir: string) => boolean): void {
  const dir = batch.dirs[k]!;
  const prefix = dir === "" ? "" : `${dir}/`;
  for (let i = batch.end(k) - 1; i >= batch.start(k); i--) {
    if (batch.kind(i) !== "dir") continue;
    const child = prefix + batch.names[i]!;
    if (!keep || keep(child)) stack.push(child);
  }
}
