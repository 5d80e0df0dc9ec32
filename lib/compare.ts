/**
 * Content comparison for `--checksum`: hashes the file pairs whose sizes match and returns
 * the paths whose content is equal in both trees.
 *
 * @module
 */

import { join } from "node:path";
import { hashFile, type HashName } from "./hash.ts";
import type { TreeScan } from "./scan.ts";
import { describeError } from "./errors.ts";

/** Options for {@linkcode compareContent}. */
export interface CompareOptions {
  /** The hash algorithm. */
  hash: HashName;
  /**
   * Files hashed at once.
   * @default 8
   */
  jobs?: number;
  /** Called for each file that could not be hashed; that pair counts as different. */
  onError?: (path: string, message: string) => void;
}

/**
 * Hashes every regular file present in both trees with equal sizes, and returns the relative
 * paths whose digests are equal. Pairs of different sizes are different without hashing.
 *
 * Needs read permission for both trees. Never throws for a single file.
 *
 * @example Comparing two scans
 * ```ts
 * const same = await compareContent(scanTree(src), scanTree(dst), { hash: "xxh128" });
 * ```
 */
export async function compareContent(
  source: TreeScan,
  replica: TreeScan,
  options: CompareOptions,
): Promise<Set<string>> {
  const { hash, jobs = 8, onError = () => {} } = options;
  const candidates: string[] = [];
  for (const [path, s] of source.entries) {
    const r = replica.entries.get(path);
    if (s.kind === "file" && r?.kind === "file" && r.size === s.size) candidates.push(path);
  }
  const same = new Set<string>();
  let next = 0;
  const worker = async () => {
    while (next < candidates.length) {
      const path = candidates[next++]!;
      try {
        const size = source.entries.get(path)!.size;
        const a = await hashFile(join(source.root, path), hash, size);
        const b = await hashFile(join(replica.root, path), hash, size);
        if (a === b) same.add(path);
      } catch (error) {
        onError(path, `Cannot hash: ${describeError(error)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, candidates.length)) }, worker));
  return same;
}
