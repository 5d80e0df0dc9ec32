/**
 * A persistent cache of content hashes for `--checksum`, so that a second run hashes only
 * what changed. One JSON file per tree and algorithm, kept outside both trees.
 *
 * An entry is trusted only while its key still matches the file: path, size, mtime, ctime and
 * inode. Any write to a file changes its ctime, which no user can set back, so a stale entry is
 * never used. A missing, unreadable or corrupt cache file is an empty cache.
 *
 * Deno reports ctime in whole seconds, so a rewrite within the same second would keep the key.
 * As git does for "racily clean" entries, a digest is recorded only when the file's ctime
 * second ended before hashing began: any later write then lands in a later second.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import type { HashName } from "./hash.ts";
import type { Entry } from "./listing.ts";

/** size, mtimeMs, ctimeMs, ino, digest */
type Row = [number, number, number, number, string];

const VERSION = 1;

/** Slack for coarse kernel clocks when comparing a ctime with the time hashing began. */
const RACY_MARGIN_MS = 100;

/** The cache of one tree's digests for one algorithm. */
export class HashCache {
  /** Entries loaded and not yet looked up; each leaves it when looked up, to keep one copy. */
  #old: Map<string, Row>;
  #loaded: number;
  #new = new Map<string, Row>();
  #added = false;
  #file: string | undefined;
  #root: string;
  #hash: string;

  private constructor(file: string | undefined, root: string, hash: string, rows: Map<string, Row>) {
    this.#file = file;
    this.#root = root;
    this.#hash = hash;
    this.#old = rows;
    this.#loaded = rows.size;
  }

  /** A cache that remembers nothing and saves nothing. */
  static none(): HashCache {
    return new HashCache(undefined, "", "", new Map());
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
    const file = join(dir, `hashes-${id}.json`);
    const rows = new Map<string, Row>();
    try {
      const data = JSON.parse(Deno.readTextFileSync(file));
      if (data?.version === VERSION && data.root === root && data.hash === hash && Array.isArray(data.rows)) {
        for (const item of data.rows) {
          if (Array.isArray(item) && item.length === 6 && typeof item[0] === "string" && typeof item[5] === "string") {
            rows.set(item[0], item.slice(1) as Row);
          }
        }
      }
    } catch {
      // missing, unreadable or corrupt: start empty
    }
    return new HashCache(file, root, hash, rows);
  }

  /** The cached digest of `path` if its key still matches `entry`. */
  get(path: string, entry: Entry): string | undefined {
    const row = this.#old.get(path);
    if (!row) return undefined;
    this.#old.delete(path);
    if (!matches(row, entry)) return undefined;
    this.#new.set(path, row);
    return row[4];
  }

  /**
   * Records the digest of `path` as scanned in `entry`, hashed from `hashedAt` (ms since the
   * epoch) on; racy entries (changed in the second before) and entries without a ctime are
   * not recorded.
   */
  set(path: string, entry: Entry, digest: string, hashedAt: number): void {
    if (entry.ctimeMs === undefined || entry.ctimeMs + 1000 + RACY_MARGIN_MS > hashedAt) return;
    this.#new.set(path, [entry.size, entry.mtimeMs, entry.ctimeMs, entry.ino ?? 0, digest]);
    this.#added = true;
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
    if (!this.#added && this.#new.size === this.#loaded) return true;
    const rows = [...this.#new].map(([path, row]) => [path, ...row]);
    const tmp = `${this.#file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    try {
      Deno.mkdirSync(dirname(this.#file), { recursive: true });
      Deno.writeTextFileSync(tmp, JSON.stringify({ version: VERSION, root: this.#root, hash: this.#hash, rows }));
      Deno.renameSync(tmp, this.#file);
      return true;
    } catch {
      try {
        Deno.removeSync(tmp);
      } catch {
        // never created
      }
      return false;
    }
  }
}

function matches(row: Row, entry: Entry): boolean {
  return row[0] === entry.size && row[1] === entry.mtimeMs && row[2] === (entry.ctimeMs ?? 0) &&
    row[3] === (entry.ino ?? 0);
}
