/**
 * The guard against a replica that is a folder of the source under another path, or the
 * reverse: a bind mount (`mount --bind src/sub /mnt/r`), a second mount of the same file
 * system, or a hard-linked folder. Paths alone cannot tell (the "one inside the other" check
 * compares real paths, and a bind mount's real path is its mount point); the device and inode
 * numbers can. A sync into such a replica would remove and overwrite source files.
 *
 * The check rides on the walk: every listing already holds the inode of each subdirectory, so
 * a source directory with the replica root's inode, or a replica directory with the source
 * root's, is found as it is listed, before anything is planned in it; a match is confirmed by
 * device number. Nothing is written before the walk ends unless a part of the plan is applied
 * while it goes on (a run of 50,000 changes or more): the sync then runs
 * {@linkcode OverlapGuard.beforeFirstWrite}, which walks the source's directories once first.
 *
 * @module
 */

import { UsageError } from "../model/errors.ts";
import type { ListingBatch } from "../model/listing.ts";
import { type Identity, sameIdentity } from "../model/identity.ts";

/** What {@linkcode OverlapGuard} needs of the two trees. */
export interface OverlapSides {
  /** The source root as the user named it, for messages. */
  source: string;
  /** The replica root as the user named it, for messages. */
  replica: string;
  /** Identity of source entry `rel` (`""` is the root); undefined where the side has none. */
  sourceIdentity(rel: string): Identity | undefined;
  /** Identity of replica entry `rel`; undefined where the replica has none (a remote one). */
  replicaIdentity(rel: string): Identity | undefined;
  /**
   * Folders the sync writes to outside the replica (the backup folder), by absolute path:
   * none of them may be a folder of the source either.
   */
  writtenFolders?: ReadonlyArray<{ path: string; identity: Identity }>;
  /**
   * Walks every directory of the source (excluded ones too) and returns the relative path
   * of the first whose identity `match` accepts; for {@linkcode OverlapGuard.beforeFirstWrite}.
   */
  findSourceDir?(match: (identity: Identity) => boolean): string | undefined;
}

/**
 * Checks listings of both trees as the walk produces them, and throws a {@linkcode UsageError}
 * (exit 2) at the first sign that one tree holds the other.
 *
 * @example Guarding a walk
 * ```ts
 * const guard = new OverlapGuard(sides);
 * guard.checkSource(sourceBatch); // throws when a source folder is the replica
 * ```
 */
export class OverlapGuard {
  #sides: OverlapSides;
  #source: Identity | undefined;
  /** The replica root and every other folder written to, with how to name them. */
  #targets: Array<{ identity: Identity; name: string }> = [];
  #scanned = false;

  constructor(sides: OverlapSides) {
    this.#sides = sides;
    this.#source = sides.sourceIdentity("");
    const replica = sides.replicaIdentity("");
    if (replica) this.#targets.push({ identity: replica, name: `Replica is inside the source: '${sides.replica}'` });
    for (const folder of sides.writtenFolders ?? []) {
      this.#targets.push({
        identity: folder.identity,
        name: `Backup directory is inside the source: '${folder.path}'`,
      });
    }
  }

  /** True when there is nothing to compare (a remote replica). */
  get idle(): boolean {
    return this.#targets.length === 0 || this.#source === undefined;
  }

  /** Throws when a subdirectory listed in `batch` (source side) is the replica or the backup folder. */
  checkSource(batch: ListingBatch): void {
    if (this.#targets.length === 0) return;
    for (let k = 0; k < batch.dirs.length; k++) {
      const dir = batch.dirs[k]!;
      for (let i = batch.start(k); i < batch.end(k); i++) {
        if (batch.kind(i) !== "dir") continue;
        const ino = batch.ino(i);
        for (const target of this.#targets) {
          if (ino !== target.identity.ino) continue;
          const rel = dir === "" ? batch.names[i]! : `${dir}/${batch.names[i]!}`;
          if (sameIdentity(this.#sides.sourceIdentity(rel), target.identity)) throw this.#inside(target.name, rel);
        }
      }
    }
  }

  /** Throws when a subdirectory listed in `batch` (replica side) is the source root. */
  checkReplica(batch: ListingBatch): void {
    const source = this.#source;
    if (source === undefined) return;
    for (let k = 0; k < batch.dirs.length; k++) {
      const dir = batch.dirs[k]!;
      for (let i = batch.start(k); i < batch.end(k); i++) {
        if (batch.kind(i) !== "dir" || batch.ino(i) !== source.ino) continue;
        const rel = dir === "" ? batch.names[i]! : `${dir}/${batch.names[i]!}`;
        if (sameIdentity(this.#sides.replicaIdentity(rel), source)) {
          throw new UsageError(
            `Source is inside the replica: '${this.#sides.source}' is the same folder as ` +
              `'${join(this.#sides.replica, rel)}' (a bind mount, or another mount of the same file system)`,
          );
        }
      }
    }
  }

  /**
   * Before the first write while the walk still goes on: walks all the source's directories
   * (the walk has not reached them all yet) and throws if one of them is the replica or the
   * backup folder. Runs once; later calls return at once.
   */
  beforeFirstWrite(): void {
    if (this.#scanned || this.#targets.length === 0 || !this.#sides.findSourceDir) return;
    this.#scanned = true;
    let found: { name: string } | undefined;
    const rel = this.#sides.findSourceDir((identity) => {
      found = this.#targets.find((t) => sameIdentity(t.identity, identity));
      return found !== undefined;
    });
    if (rel !== undefined && found) throw this.#inside(found.name, rel);
  }

  #inside(name: string, rel: string): UsageError {
    return new UsageError(
      `${name} is the same folder as '${join(this.#sides.source, rel)}' ` +
        `(a bind mount, or another mount of the same file system)`,
    );
  }
}

/** `root/rel` for messages, whatever the separator of `root`. */
function join(root: string, rel: string): string {
  return rel === "" ? root : `${root.replace(/[\\/]+$/, "")}/${rel}`;
}
