/**
 * The content hashes `--checksum` knows by name (computed in lib/content/hash.ts; a backend
 * names the one its server knows).
 *
 * @module
 */

/** The algorithms `--hash` accepts. */
export const HASH_NAMES = ["xxh128", "xxh3", "xxh64", "md5", "sha1", "sha256", "blake3"] as const;

/** One of {@linkcode HASH_NAMES}. */
export type HashName = typeof HASH_NAMES[number];
