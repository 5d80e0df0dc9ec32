/**
 * Copies one file's content into a new file, the way every copy of foldersync is made: the
 * destination is created exclusively (O_EXCL, so a name is never followed through a symbolic
 * link), large files are copied in chunks (so a copy can be stopped between two chunks and
 * report its progress), and whole blocks of zeros are left as holes, as `rsync -S` does.
 *
 * The same copy comes in two forms: {@linkcode copyFileSync} for the copy workers, whose
 * synchronous calls avoid per-call async overhead, and {@linkcode copyFile} for the main thread,
 * whose reads and writes run off the event loop so that several copies overlap and a signal
 * can stop them.
 *
 * @module
 */

/** Files up to this size are read and written whole: far cheaper per file than a chunked copy. */
export const SMALL_FILE = 1 << 20;

/**
 * Bytes read and written at a time. Measured with bench/copy_file_bench.ts on a 256 MiB file on
 * tmpfs, against Deno.copyFileSync's kernel-side copy: 1.09x with 1 MiB, 1.14x with 256 KiB,
 * 1.13x with 4 MiB (synchronous); eight parallel copies then hold 8 MiB.
 */
export const CHUNK_SIZE = 1 << 20;

/** Holes are looked for in blocks of this size: the page and block size of common file systems. */
const BLOCK = 4096;

/** Options for {@linkcode copyFile} and {@linkcode copyFileSync}. */
export interface CopyFileOptions {
  /**
   * The source's size as last seen; a file up to {@linkcode SMALL_FILE} is copied in one read
   * and one write.
   * @default Infinity (always chunked)
   */
  size?: number;
  /**
   * Permission bits of the new file, applied exactly rather than narrowed by the umask (not on
   * Windows). Without it the file is created owner read-write, for the caller to chmod.
   * @default 0o600
   */
  mode?: number;
  /**
   * Whether whole blocks of zeros become holes, as `rsync -S` makes them, in every file over
   * {@linkcode SMALL_FILE} rather than only in those that have holes already (`cp
   * --sparse=auto`'s rule). Measured on 256 MiB files on tmpfs: looking costs nothing on
   * ordinary data (the first non-zero word ends a block's check), saves a third of the time
   * and all the space on allocated zeros, and costs 15% at worst (one byte at the end of every
   * block).
   * @default true
   */
  sparse?: boolean;
  /**
   * Bytes read and written at a time.
   * @default CHUNK_SIZE
   */
  chunkSize?: number;
  /** Called after each chunk with the bytes done so far, holes included. */
  onProgress?: (bytes: number) => void;
}

/** Options for {@linkcode copyFile}: those of {@linkcode copyFileSync} and a signal. */
export interface CopyFileAsyncOptions extends CopyFileOptions {
  /** Checked between chunks: once aborted, the copy stops, removes its new file and throws. */
  signal?: AbortSignal;
}

/**
 * Copies `from` into a new file `to`, which must not exist, and returns the bytes copied.
 * Synchronous: for workers, where blocking the thread costs nothing.
 *
 * Needs read permission for `from` and write permission for `to`. Throws
 * `Deno.errors.AlreadyExists` if `to` exists (even as a dangling link), and whatever reading
 * or writing throws; it never leaves a partial `to` behind.
 *
 * @example Copying a file with its mode
 * ```ts
 * copyFileSync("/data/src/big.iso", "/backup/src/.foldersync-0123456789.tmp", { mode: 0o644 });
 * ```
 */
export function copyFileSync(from: string, to: string, options: CopyFileOptions = {}): number {
  const { size = Infinity, mode, sparse = true, chunkSize = CHUNK_SIZE, onProgress } = options;
  if (size <= SMALL_FILE) {
    const data = Deno.readFileSync(from);
    writeNewSync(to, data, mode);
    onProgress?.(data.length);
    return data.length;
  }
  using src = Deno.openSync(from, { read: true });
  const dst = Deno.openSync(to, { write: true, createNew: true, mode: 0o600 });
  try {
    const buffer = new Uint8Array(chunkSize);
    const runs = sparse ? new Int32Array(2 * Math.ceil(chunkSize / BLOCK)) : undefined;
    let done = 0;
    let at = 0; // where the destination's file position is
    for (;;) {
      const n = fillSync(src, buffer);
      if (n === 0) break;
      if (!runs) {
        writeAllSync(dst, buffer.subarray(0, n));
        at += n;
      } else {
        const count = dataRuns(buffer, n, runs);
        for (let r = 0; r < count; r += 2) {
          const start = done + runs[r]!;
          if (at !== start) dst.seekSync(start, Deno.SeekMode.Start);
          writeAllSync(dst, buffer.subarray(runs[r]!, runs[r + 1]!));
          at = done + runs[r + 1]!;
        }
      }
      done += n;
      onProgress?.(done);
      if (n < buffer.length) break;
    }
    if (at !== done) dst.truncateSync(done); // the file ends in a hole
    dst.close();
    if (mode !== undefined && Deno.build.os !== "windows") Deno.chmodSync(to, mode);
    return done;
  } catch (error) {
    abandon(dst, to);
    throw error;
  }
}

/**
 * Copies `from` into a new file `to`, which must not exist, and returns the bytes copied. Reads
 * and writes run off the main thread, so copies overlap and `signal` is seen between chunks.
 *
 * Needs read permission for `from` and write permission for `to`. Throws `signal.reason` (an
 * `AbortError` DOMException unless given another) once `signal` is aborted,
 * `Deno.errors.AlreadyExists` if `to` exists (even as a dangling link), and whatever reading
 * or writing throws; it never leaves a partial `to` behind.
 *
 * @example Copying a file that Ctrl+C can stop
 * ```ts
 * const controller = new AbortController();
 * Deno.addSignalListener("SIGINT", () => controller.abort());
 * await copyFile("/data/src/big.iso", "/backup/src/big.iso", { signal: controller.signal });
 * ```
 */
export async function copyFile(from: string, to: string, options: CopyFileAsyncOptions = {}): Promise<number> {
  const { size = Infinity, mode, sparse = true, chunkSize = CHUNK_SIZE, onProgress, signal } = options;
  signal?.throwIfAborted();
  if (size <= SMALL_FILE) {
    // In memory and synchronous: a small file takes microseconds, less than an await costs.
    const data = Deno.readFileSync(from);
    writeNewSync(to, data, mode);
    onProgress?.(data.length);
    return data.length;
  }
  using src = await Deno.open(from, { read: true });
  const dst = await Deno.open(to, { write: true, createNew: true, mode: 0o600 });
  try {
    const buffer = new Uint8Array(chunkSize);
    const runs = sparse ? new Int32Array(2 * Math.ceil(chunkSize / BLOCK)) : undefined;
    let done = 0;
    let at = 0;
    for (;;) {
      signal?.throwIfAborted();
      const n = await fill(src, buffer);
      if (n === 0) break;
      if (!runs) {
        await writeAll(dst, buffer.subarray(0, n));
        at += n;
      } else {
        const count = dataRuns(buffer, n, runs);
        for (let r = 0; r < count; r += 2) {
          const start = done + runs[r]!;
          if (at !== start) await dst.seek(start, Deno.SeekMode.Start);
          await writeAll(dst, buffer.subarray(runs[r]!, runs[r + 1]!));
          at = done + runs[r + 1]!;
        }
      }
      done += n;
      onProgress?.(done);
      if (n < buffer.length) break;
    }
    if (at !== done) await dst.truncate(done);
    dst.close();
    if (mode !== undefined && Deno.build.os !== "windows") Deno.chmodSync(to, mode);
    return done;
  } catch (error) {
    abandon(dst, to);
    throw error;
  }
}

/** Writes `data` to a new file `to`, removing what a failed write left of it. */
function writeNewSync(to: string, data: Uint8Array, mode = 0o600): void {
  try {
    // writeFile applies the mode exactly (not through the umask); createNew is O_EXCL.
    Deno.writeFileSync(to, data, { createNew: true, mode });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) removeQuietly(to);
    throw error;
  }
}

/** Closes and removes a copy that failed part way. */
function abandon(dst: Deno.FsFile, to: string): void {
  try {
    dst.close();
  } catch {
    // closed already
  }
  removeQuietly(to);
}

/** Removes a file this module created, if it is still there. */
function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // gone already
  }
}

/**
 * Finds the runs of `buffer[0, n)` that hold data, in whole blocks (a partial last block counts
 * as data), and writes them to `runs` as start, end pairs; returns the count of numbers written.
 */
function dataRuns(buffer: Uint8Array, n: number, runs: Int32Array): number {
  // Four bytes at a time: an Int32Array element is always a small integer, which V8 compares
  // fastest (a BigUint64Array makes a BigInt per read; a Float64Array takes -0 for 0).
  const words = new Int32Array(buffer.buffer, buffer.byteOffset, buffer.byteLength >> 2);
  let count = 0;
  let start = -1;
  for (let block = 0; block < n; block += BLOCK) {
    const end = Math.min(block + BLOCK, n);
    let zero = end - block === BLOCK;
    if (zero) {
      for (let w = block >> 2, last = end >> 2; w < last; w++) {
        if (words[w] !== 0) {
          zero = false;
          break;
        }
      }
    }
    if (zero) {
      if (start >= 0) {
        runs[count++] = start;
        runs[count++] = block;
        start = -1;
      }
    } else if (start < 0) {
      start = block;
    }
  }
  if (start >= 0) {
    runs[count++] = start;
    runs[count++] = n;
  }
  return count;
}

/** Reads until `buffer` is full or the file ends, so that chunks stay block-aligned. */
function fillSync(file: Deno.FsFile, buffer: Uint8Array): number {
  let n = 0;
  while (n < buffer.length) {
    const got = file.readSync(buffer.subarray(n));
    if (got === null || got === 0) break;
    n += got;
  }
  return n;
}

async function fill(file: Deno.FsFile, buffer: Uint8Array): Promise<number> {
  let n = 0;
  while (n < buffer.length) {
    const got = await file.read(buffer.subarray(n));
    if (got === null || got === 0) break;
    n += got;
  }
  return n;
}

function writeAllSync(file: Deno.FsFile, data: Uint8Array): void {
  for (let n = 0; n < data.length;) n += file.writeSync(data.subarray(n));
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let n = 0; n < data.length;) n += await file.write(data.subarray(n));
}
