/**
 * What the S3 replica remembers of each object between runs, so that a no-op run costs one
 * LIST request per 1,000 objects instead of a HEAD per object: the metadata a listing does not
 * show (mtime, mode, a link's target, a multipart object's MD5), keyed by what a listing does
 * show (size, ETag, LastModified).
 *
 * A record is used only while all three still match the listing. Any write to an object,
 * a copy onto itself that replaces its metadata included, gives it a new LastModified, so a
 * record never outlives the object version it describes. Objects this replica writes are
 * recorded at once with the metadata it set and their ETag; their LastModified (which a PUT
 * does not return) is taken from the next listing whose size and ETag match.
 *
 * The file is a JSON header line, then one JSON array per object (an unknown mtime as `null`).
 * A missing, unreadable or corrupt file is an empty cache. A version 1 file is read without its
 * records of mode 0: version 1 stored an object without `mode` metadata as mode 0, which now
 * means an unknown mode (such objects get one HEAD again).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";

const VERSION = 2;

/** One object's remembered metadata. */
export interface MetaRecord {
  size: number;
  /** ETag without quotes. */
  etag: string;
  /** LastModified as the listing gives it; `""` until a listing has shown the object. */
  lastModified: string;
  /**
   * Modification time in ms (from the `mtime` metadata, else a file's LastModified; NaN for a
   * directory marker without it).
   */
  mtimeMs: number;
  /** Permission bits from the `mode` metadata; `UNKNOWN_MODE` when there is none. */
  mode: number;
  /** A link object's content: the link's target. */
  target?: string | undefined;
  /** Hex MD5 of the content, when known (a single-part ETag, or `md5chksum` metadata). */
  md5?: string | undefined;
}

/** The metadata records of one bucket prefix, by key relative to the prefix. */
export class MetaCache {
  #file: string | undefined;
  #header: string;
  #records = new Map<string, MetaRecord>();
  #changed = false;

  private constructor(file: string | undefined, header: string) {
    this.#file = file;
    this.#header = header;
  }

  /**
   * Opens the cache of `endpoint`, `bucket` and `prefix` under `dir` (in memory only when `dir`
   * is undefined); never throws.
   *
   * Needs read permission for `dir`.
   *
   * @example Opening a cache
   * ```ts
   * const cache = MetaCache.open("/home/ana/.cache/foldersync", "https://s3.amazonaws.com", "photos", "2024");
   * ```
   */
  static open(dir: string | undefined, endpoint: string, bucket: string, prefix: string): MetaCache {
    const headerOf = (version: number) => JSON.stringify({ version, endpoint, bucket, prefix });
    const header = headerOf(VERSION);
    if (dir === undefined) return new MetaCache(undefined, header);
    // The file's name stays that of version 1: a version 1 cache is found and read.
    const id = createHash("sha256").update(headerOf(1)).digest("hex").slice(0, 32);
    const cache = new MetaCache(join(dir, `s3-meta-${id}.txt`), header);
    try {
      const lines = Deno.readTextFileSync(cache.#file!).split("\n");
      const v1 = lines[0] === headerOf(1);
      if (lines[0] !== header && !v1) return cache;
      if (v1) cache.#changed = true;
      for (let i = 1; i < lines.length; i++) {
        if (lines[i] === "") continue;
        const [key, size, etag, lastModified, mtimeMs, mode, target, md5] = JSON.parse(lines[i]!);
        if (typeof key !== "string" || typeof size !== "number" || (typeof mtimeMs !== "number" && mtimeMs !== null)) {
          throw new Error();
        }
        if (v1 && mode === 0) continue;
        cache.#records.set(key, {
          size,
          etag,
          lastModified,
          mtimeMs: mtimeMs ?? NaN,
          mode,
          target: target ?? undefined,
          md5: md5 ?? undefined,
        });
      }
    } catch {
      cache.#records.clear();
    }
    return cache;
  }

  /** Records remembered. */
  get size(): number {
    return this.#records.size;
  }

  /**
   * The record of `key` if it describes the listed version (size, ETag and LastModified
   * match); a record still waiting for its LastModified takes the listing's.
   */
  match(key: string, size: number, etag: string, lastModified: string): MetaRecord | undefined {
    const record = this.#records.get(key);
    if (record === undefined || record.size !== size || record.etag !== etag) return undefined;
    if (record.lastModified === lastModified) return record;
    if (record.lastModified !== "") return undefined;
    record.lastModified = lastModified;
    this.#changed = true;
    return record;
  }

  /** The record of `key`, whatever it matches. */
  get(key: string): MetaRecord | undefined {
    return this.#records.get(key);
  }

  /** Remembers `record` for `key`. */
  set(key: string, record: MetaRecord): void {
    this.#records.set(key, record);
    this.#changed = true;
  }

  /** Forgets `key`. */
  delete(key: string): void {
    if (this.#records.delete(key)) this.#changed = true;
  }

  /** Forgets every key not in `seen` (objects gone since), keeping those written since. */
  retain(seen: ReadonlySet<string>): void {
    for (const [key, record] of this.#records) {
      if (!seen.has(key) && record.lastModified !== "") {
        this.#records.delete(key);
        this.#changed = true;
      }
    }
  }

  /**
   * Writes the cache atomically (a temp file and a rename) when it changed. Returns false,
   * keeping the old file, when it cannot write.
   *
   * Needs write permission for the cache directory.
   */
  save(): boolean {
    if (this.#file === undefined || !this.#changed) return true;
    const tmp = `${this.#file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    try {
      Deno.mkdirSync(dirname(this.#file), { recursive: true });
      const lines = [this.#header];
      for (const [key, r] of this.#records) {
        lines.push(
          JSON.stringify([key, r.size, r.etag, r.lastModified, r.mtimeMs, r.mode, r.target ?? null, r.md5 ?? null]),
        );
      }
      Deno.writeTextFileSync(tmp, `${lines.join("\n")}\n`, { createNew: true, mode: 0o600 });
      Deno.renameSync(tmp, this.#file);
      this.#changed = false;
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
