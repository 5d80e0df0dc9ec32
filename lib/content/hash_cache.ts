/**
 * A persistent cache of content hashes for `--checksum`, so that a second run hashes only
 * what changed. One file per tree and algorithm, kept outside both trees.
 *
 * An entry is trusted only while its key still matches the file: path, size, mtime, ctime and
 * inode. Any write to a file changes its ctime, which no user can set back, so a stale entry is
 * never used. A missing, unreadable or corrupt cache file is an empty cache.
 *
 * Deno reports ctime in whole seconds, so a rewrite within the same second would keep the key.
 * As git does for "racily clean" entries, a digest is recorded only when the file's ctime
 * second ended before hashing began: any later write then lands in a later second.
 *
 * The file is a JSON header line, then a line per file: size, mtime, ctime, inode and digest,
 * tab-separated, and the path as a JSON string. In memory the keys sit in one typed array, so
 * a million entries take tens of megabytes, not hundreds (a JSON array of rows took about
 * 250 bytes an entry to parse and keep).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import type { HashName } from "../model/hash_name.ts";
import type { Entry } from "../model/listing.ts";

const VERSION = 2;

/** size, mtimeMs, ctimeMs, ino */
const KEY = 4;

/** Slack for coarse kernel clocks when comparing a ctime with the time hashing began. */
const RACY_MARGIN_MS = 100;

/** Lines written at a time when saving. */
const WRITE_LINES = 10_000;

/** The cache of one tree's digests for one algorithm. */
export class HashCache {
  #file: string | undefined;
  #root: string;
  #hash: string;
  /** Rows loaded from the file: path to row. */
  #index: Map<string, number>;
  #keys: Float64Array;
  #digests: string[];
  /** Loaded rows matched in this run (kept when saving). */
  #used: Uint8Array;
  #usedCount = 0;
  /** Rows recorded in this run. */
  #added: Array<{ path: string; key: [number, number, number, number]; digest: string }> = [];

  private constructor(
    file: string | undefined,
    root: string,
    hash: string,
    loaded: { index: Map<string, number>; keys: Float64Array; digests: string[] },
  ) {
    this.#file = file;
    this.#root = root;
    this.#hash = hash;
    this.#index = loaded.index;
    this.#keys = loaded.keys;
    this.#digests = loaded.digests;
    this.#used = new Uint8Array(loaded.digests.length);
  }

  /** A cache that remembers nothing and saves nothing. */
  static none(): HashCache {
    return new HashCache(undefined, "", "", empty());
  }

  /**
   * Opens the cache of `root`'s digests under `dir`; never throws (a bad cache is empty).
   *
   * Needs read permission for `dir`.
   *
   * @example Opening a cache
   * ```ts
   * const cache = HashCache.open("/home/ana/.cache/foldersync", "/data/src", "xxh3");
   * ```
   */
  static open(dir: string, root: string, hash: HashName): HashCache {
    const id = createHash("sha256").update(`${hash}\0${root}`).digest("hex").slice(0, 32);
    const file = join(dir, `hashes-${id}.txt`);
    let loaded = empty();
    try {
      loaded = parse(Deno.readTextFileSync(file), root, hash);
    } catch {
      // missing, unreadable or corrupt: start empty
    }
    return new HashCache(file, root, hash, loaded);
  }

  /** The cached digest of `path` if its key still matches `entry`. */
  get(path: string, entry: Entry): string | undefined {
    const row = this.#index.get(path);
    if (row === undefined) return undefined;
    const k = row * KEY;
    const keys = this.#keys;
    if (
      keys[k] !== entry.size || keys[k + 1] !== entry.mtimeMs || keys[k + 2] !== (entry.ctimeMs ?? 0) ||
      keys[k + 3] !== (entry.ino ?? 0)
    ) {
      return undefined;
    }
    if (!this.#used[row]) {
      this.#used[row] = 1;
      this.#usedCount++;
    }
    return this.#digests[row];
  }

  /**
   * Records the digest of `path` as scanned in `entry`, hashed from `hashedAt` (ms since the
   * epoch) on; racy entries (changed in the second before) and entries without a ctime are
   * not recorded.
   */
  set(path: string, entry: Entry, digest: string, hashedAt: number): void {
    if (entry.ctimeMs === undefined || entry.ctimeMs + 1000 + RACY_MARGIN_MS > hashedAt) return;
    this.#added.push({ path, key: [entry.size, entry.mtimeMs, entry.ctimeMs, entry.ino ?? 0], digest });
  }

  /**
   * Writes the entries used or set in this run (older ones are dropped) atomically: a temp
   * file and a rename. Returns false, keeping the old file, when it cannot write.
   *
   * Needs write permission for the cache directory.
   */
  save(): boolean {
    if (this.#file === undefined) return true;
    // Unchanged: every old entry was used again and none was added.
    if (this.#added.length === 0 && this.#usedCount === this.#digests.length) return true;
    const tmp = `${this.#file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    const encoder = new TextEncoder();
    let out: Deno.FsFile | undefined;
    try {
      Deno.mkdirSync(dirname(this.#file), { recursive: true });
      out = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
      const write = (text: string) => {
        const bytes = encoder.encode(text);
        for (let done = 0; done < bytes.length;) done += out!.writeSync(bytes.subarray(done));
      };
      write(`${JSON.stringify({ version: VERSION, root: this.#root, hash: this.#hash })}\n`);
      let lines: string[] = [];
      const flushIfFull = () => {
        if (lines.length < WRITE_LINES) return;
        write(lines.join(""));
        lines = [];
      };
      const added = new Set(this.#index.size > 0 ? this.#added.map((a) => a.path) : []);
      for (const [path, row] of this.#index) {
        if (!this.#used[row] || added.has(path)) continue;
        const k = row * KEY;
        const keys = this.#keys;
        lines.push(line(path, [keys[k]!, keys[k + 1]!, keys[k + 2]!, keys[k + 3]!], this.#digests[row]!));
        flushIfFull();
      }
      for (const { path, key, digest } of this.#added) {
        lines.push(line(path, key, digest));
        flushIfFull();
      }
      write(lines.join(""));
      out.close();
      out = undefined;
      Deno.renameSync(tmp, this.#file);
      try {
        // The version 1 file (JSON) of the same tree, if an older foldersync left one.
        Deno.removeSync(this.#file.replace(/\.txt$/, ".json"));
      } catch {
        // there is none
      }
      return true;
    } catch {
      try {
        out?.close();
        Deno.removeSync(tmp);
      } catch {
        // never created
      }
      return false;
    }
  }
}

function empty(): { index: Map<string, number>; keys: Float64Array; digests: string[] } {
  return { index: new Map(), keys: new Float64Array(0), digests: [] };
}

/** One line of the file: `size \t mtime \t ctime \t ino \t digest \t "path"`. */
function line(path: string, key: readonly number[], digest: string): string {
  return `${key[0]}\t${key[1]}\t${key[2]}\t${key[3]}\t${digest}\t${JSON.stringify(path)}\n`;
}

/** Reads a cache file; throws on any line it does not understand (the cache is then empty). */
function parse(text: string, root: string, hash: string) {
  const headerEnd = text.indexOf("\n");
  const header = JSON.parse(text.slice(0, headerEnd));
  if (header?.version !== VERSION || header.root !== root || header.hash !== hash) return empty();
  const index = new Map<string, number>();
  const digests: string[] = [];
  let keys = new Float64Array(KEY * 1024);
  for (let start = headerEnd + 1; start < text.length;) {
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    const row = digests.length;
    if ((row + 1) * KEY > keys.length) {
      const grown = new Float64Array(keys.length * 2);
      grown.set(keys);
      keys = grown;
    }
    let at = start;
    for (let f = 0; f < KEY; f++) {
      const tab = text.indexOf("\t", at);
      if (tab === -1 || tab > end) throw new SyntaxError("Bad cache line");
      const value = Number(text.slice(at, tab));
      if (!Number.isFinite(value)) throw new SyntaxError("Bad cache line");
      keys[row * KEY + f] = value;
      at = tab + 1;
    }
    const tab = text.indexOf("\t", at);
    if (tab === -1 || tab > end) throw new SyntaxError("Bad cache line");
    const quoted = text.slice(tab + 1, end);
    if (quoted.length < 2 || quoted[0] !== '"' || quoted[quoted.length - 1] !== '"') {
      throw new SyntaxError("Bad cache line");
    }
    // Only a path with escapes needs the JSON parser (about 1 us a line).
    const path = quoted.includes("\\") ? JSON.parse(quoted) : quoted.slice(1, -1);
    digests.push(text.slice(at, tab));
    index.set(path, row);
    start = end + 1;
  }
  return { index, keys, digests };
}
