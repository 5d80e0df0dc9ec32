/**
 * Content comparison for `--checksum`: hashes the file pairs whose sizes match, in parallel
 * workers, skipping files whose digest the hash cache still vouches for, and returns the paths
 * whose content is equal in both trees.
 *
 * Every pair gets a digest on both sides, whatever the backends: a local side's files are
 * hashed here, through its hash cache; a remote side gives its own (SFTP by reading the file
 * through the connection; S3 from the MD5 the server knows, else by reading the object). A
 * digest is never "unknown": a pair is different only when the digests differ, when a side's
 * file is gone, or when a side could not be read (an error, reported).
 *
 * @module
 */

import { join } from "node:path";
import { getHasher, hashFileSync } from "./hash.ts";
import { type HashName } from "../model/hash_name.ts";
import { HashCache } from "./hash_cache.ts";
import type { HashJob, HashResult } from "./hash_worker.ts";
import { runInWorkers } from "../pool.ts";
import type { ContentPair } from "../model/actions.ts";

/** Options for {@linkcode ContentComparer}. */
export interface CompareOptions {
  /** The hash algorithm. */
  hash: HashName;
  /**
   * Upper bound on hashing workers (the number of cores is the other).
   * @default 8
   */
  jobs?: number;
  /** Directory of the hash cache; undefined for none. */
  cacheDir?: string | undefined;
  /**
   * Read the cache but do not write it (dry runs).
   * @default false
   */
  readOnly?: boolean;
  /**
   * Called for each pair a side of which could not be read: an error, not an unknown, so
   * that pair counts as different (and is copied again).
   */
  onError?: (path: string, message: string) => void;
  /** Called when the cache could not be saved. */
  onCacheError?: (message: string) => void;
  /**
   * Stops hashing: the workers are ended at once, and pairs not hashed count as different
   * (an aborted run applies nothing more, so nothing is copied for them).
   */
  signal?: AbortSignal;
}

/**
 * One side of the comparison: a folder on this machine, hashed here through its hash cache,
 * or a remote backend's digests (`Backend.digest`: from what the server knows, or by reading
 * the file through the connection; not cached here, since only the server can vouch for
 * them). A remote digest of undefined means the file is gone (the pair counts as different);
 * a throw is an error ({@linkcode CompareOptions.onError}).
 */
export type CompareSide =
  | { root: string }
  | { digest: (rel: string, hash: HashName) => Promise<string | undefined> };

const HASH_WORKER = new URL("./hash_worker.ts", import.meta.url);

/**
 * Below this many files to hash, starting workers costs more than it saves: a hash worker
 * takes ~45 ms to start (hash-wasm) and saves ~11 us a file (measured on 4 KiB files).
 */
const MIN_POOL_FILES = 4096;

/**
 * Hashes both files of every pair (equal-sized regular files at the same path) and tells
 * which are equal, part after part, with the hash caches of both trees opened once and
 * saved once at the end: a `--checksum` sync hands it the pairs of each part of its walk, so
 * that a million pairs never wait in memory at once.
 *
 * Needs read permission for the source (and the replica, when it is local), and for `cacheDir`
 * read and write permission.
 *
 * @example Comparing in two parts
 * ```ts
 * const comparer = new ContentComparer({ root: "/data/src" }, { root: "/backup/src" }, { hash: "xxh3", cacheDir });
 * const same = [...await comparer.compare(firstPairs), ...await comparer.compare(morePairs)];
 * comparer.save();
 * ```
 */
export class ContentComparer {
  /** Files hashed so far. */
  hashed = 0;
  /** Files whose digest came from the cache so far. */
  cached = 0;
  #sides: readonly [CompareSide, CompareSide];
  #caches: readonly [HashCache, HashCache];
  #options: CompareOptions;

  /** Opens the hash caches of the local sides (a missing or corrupt cache is empty). */
  constructor(source: CompareSide, replica: CompareSide, options: CompareOptions) {
    const { hash, cacheDir } = options;
    this.#sides = [source, replica];
    const open = (side: CompareSide) =>
      "root" in side && cacheDir ? HashCache.open(cacheDir, side.root, hash) : HashCache.none();
    this.#caches = [open(source), open(replica)];
    this.#options = options;
  }

  /** Hashes what the caches cannot vouch for, and returns the paths of `pairs` whose contents are equal. */
  async compare(pairs: readonly ContentPair[]): Promise<Set<string>> {
    const { hash, jobs = 8, onError = () => {} } = this.#options;
    const sides = this.#sides;
    const caches = this.#caches;
    const digests = [new Map<string, string>(), new Map<string, string>()];
    const local = ([0, 1] as const).filter((side) => "root" in sides[side]);

    // Paths are the pairs' own strings; a job's full path is built only when its batch is sent.
    const work: Array<{ side: 0 | 1; pair: ContentPair }> = [];
    const jobOf = (i: number): HashJob => {
      const { side, pair } = work[i]!;
      return { path: join((sides[side] as { root: string }).root, pair.path), size: pair.source.size, hash };
    };
    for (const pair of pairs) {
      for (const side of local) {
        const cached = caches[side].get(pair.path, side === 0 ? pair.source : pair.replica);
        if (cached !== undefined) digests[side]!.set(pair.path, cached);
        else work.push({ side, pair });
      }
    }

    const hashedAt = Date.now();
    const failed = new Set<string>();
    const record = (i: number, result: HashResult) => {
      const { side, pair: { path, source, replica } } = work[i]!;
      if (result.digest !== undefined) {
        digests[side]!.set(path, result.digest);
        caches[side].set(path, side === 0 ? source : replica, result.digest, hashedAt);
      } else if (!failed.has(path)) {
        failed.add(path);
        onError(path, `Cannot hash: ${result.error}`);
      }
    };
    const done = new Uint8Array(work.length);
    if (work.length >= MIN_POOL_FILES) {
      await runInWorkers<HashJob, HashResult>(HASH_WORKER, work.length, jobOf, {
        workers: Math.min(jobs, navigator.hardwareConcurrency ?? 2),
        ...(this.#options.signal ? { signal: this.#options.signal } : {}),
        weight: (i) => work[i]!.pair.source.size,
        onResult: (i, result) => {
          done[i] = 1;
          record(i, result);
        },
      });
    }
    // Small sets, and anything a worker could not do, are hashed here.
    if (done.includes(0)) {
      const hasher = await getHasher(hash);
      for (let i = 0; i < work.length; i++) {
        if (this.#options.signal?.aborted) break;
        if (done[i]) continue;
        try {
          const job = jobOf(i);
          record(i, { digest: hashFileSync(hasher, job.path, job.size) });
        } catch (error) {
          record(i, { error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
        }
      }
    }
    for (const side of [0, 1] as const) {
      const remote = sides[side];
      if ("digest" in remote) await this.#remoteDigests(pairs, remote.digest, digests[side]!, failed, side);
    }
    this.hashed += work.length;
    this.cached += local.length * pairs.length - work.length;

    const same = new Set<string>();
    for (const { path } of pairs) {
      const a = digests[0]!.get(path);
      if (a !== undefined && a === digests[1]!.get(path)) same.add(path);
    }
    return same;
  }

  /** Asks a remote side for the digest of each pair's file, `jobs` at a time; a file gone has none. */
  async #remoteDigests(
    pairs: readonly ContentPair[],
    digest: (rel: string, hash: HashName) => Promise<string | undefined>,
    into: Map<string, string>,
    failed: Set<string>,
    side: 0 | 1,
  ): Promise<void> {
    const { hash, jobs = 8, onError = () => {}, signal } = this.#options;
    let next = 0;
    const lane = async () => {
      while (next < pairs.length && !signal?.aborted) {
        const { path } = pairs[next++]!;
        try {
          const value = await digest(path, hash);
          if (value !== undefined) into.set(path, value);
        } catch (error) {
          if (!failed.has(path)) {
            failed.add(path);
            const which = side === 0 ? "the source's file" : "the replica's copy";
            onError(path, `Cannot hash ${which}: ${error instanceof Error ? error.message : String(error)}`);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, pairs.length)) }, lane));
  }

  /** Writes both caches (not with `readOnly`); a cache that cannot be written is reported, not thrown. */
  save(): void {
    const { readOnly = false, cacheDir, onCacheError = () => {} } = this.#options;
    if (readOnly) return;
    for (const cache of this.#caches) {
      if (!cache.save()) onCacheError(`Cannot save the hash cache in '${cacheDir}'`);
    }
  }
}
