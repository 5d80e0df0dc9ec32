/**
 * Content hashes for `--checksum`: xxHash and BLAKE3 from hash-wasm, MD5 and SHA from node:crypto.
 *
 * @module
 */

import { type HashName } from "../model/hash_name.ts";

/**
 * The default for `--checksum`: xxh3, by measurement. In hash-wasm on this project's machine
 * (1 MiB chunks, warm cache): xxh3 4.0 GiB/s, xxh64 3.3, xxh128 2.05, sha1 1.1, sha256 0.81,
 * md5 0.29, blake3 0.22. A 64-bit digest is ample to tell whether two files differ; for
 * content an adversary may craft, choose sha256.
 */
export const DEFAULT_HASH: HashName = "xxh3";

/** A reusable incremental hash. */
export interface Hasher {
  /** Starts a new digest, forgetting any data fed before. */
  init(): void;
  update(data: Uint8Array): void;
  digest(): string;
}

/**
 * A new hasher of its own for `name`, for digests computed a piece at a time while other
 * digests go on (a remote object read in ranges); {@linkcode getHasher} shares one per thread.
 *
 * @example Hashing two streams at once
 * ```ts
 * const [a, b] = await Promise.all([createHasher("md5"), createHasher("md5")]);
 * ```
 */
export async function createHasher(name: HashName): Promise<Hasher> {
  if (name === "md5" || name === "sha1" || name === "sha256") {
    // Loaded on first use, like hash-wasm: node:crypto adds ~30 ms to every start otherwise.
    const { createHash } = await import("node:crypto");
    let h = createHash(name);
    return { init: () => void (h = createHash(name)), update: (d) => void h.update(d), digest: () => h.digest("hex") };
  }
  // Loaded on first use: the WASM modules add ~35 ms to every start otherwise.
  const wasm = await import("hash-wasm");
  const h = name === "xxh128"
    ? await wasm.createXXHash128()
    : name === "xxh3"
    ? await wasm.createXXHash3()
    : name === "xxh64"
    ? await wasm.createXXHash64()
    : await wasm.createBLAKE3();
  h.init();
  return { init: () => void h.init(), update: (d) => void h.update(d), digest: () => h.digest("hex") };
}

const CHUNK = 1 << 20;
const shared = new Map<HashName, Promise<Hasher>>();

/**
 * The hasher for `name`, created once per thread: hashing is synchronous, so one instance can
 * serve every file (instantiating a WASM hasher per file is slow).
 *
 * @example Getting a hasher
 * ```ts
 * const hasher = await getHasher("xxh3");
 * ```
 */
export function getHasher(name: HashName): Promise<Hasher> {
  let hasher = shared.get(name);
  if (!hasher) {
    hasher = createHasher(name);
    shared.set(name, hasher);
  }
  return hasher;
}

/**
 * Hashes a file's content with `hasher` and returns the hex digest. Synchronous on purpose:
 * it runs in hash workers, and nothing can interleave with the shared hasher. Files up to
 * 1 MiB are read at once, larger ones in 1 MiB chunks.
 *
 * Needs read permission for `path`. Throws what `Deno.readFileSync` and `Deno.openSync` throw
 * (NotFound, PermissionDenied ...).
 *
 * @example Hashing a file
 * ```ts
 * const digest = hashFileSync(await getHasher("xxh3"), "/etc/hostname", 12);
 * ```
 */
export function hashFileSync(hasher: Hasher, path: string, sizeHint = Infinity): string {
  hasher.init();
  if (sizeHint <= CHUNK) {
    hasher.update(Deno.readFileSync(path));
    return hasher.digest();
  }
  using file = Deno.openSync(path, { read: true });
  const buffer = new Uint8Array(CHUNK);
  for (;;) {
    const n = file.readSync(buffer);
    if (n === null) break;
    hasher.update(n === CHUNK ? buffer : buffer.subarray(0, n));
  }
  return hasher.digest();
}
