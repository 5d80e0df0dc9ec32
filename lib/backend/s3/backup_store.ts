/**
 * The journal and pruning primitives of a backup folder in a bucket (`--backup-dir` of an S3
 * replica, `--backup-keep`; see lib/backend/backup_journal.ts). The folder is a key prefix; the
 * journal is the object `.foldersync-backups` under it. S3 cannot append: an entry is added by
 * reading the journal and writing it back only over the version read (If-Match, or
 * If-None-Match where there was none), again when another run wrote it meanwhile.
 *
 * @module
 */

import { type BackupStore, JOURNAL_NAME, NotEmptyError } from "../backup_journal.ts";
import type { EntryKind } from "../../model/listing.ts";
import type { S3Client } from "./client.ts";

/** How often an append whose condition failed (another run wrote the journal meanwhile) is tried. */
const APPEND_ATTEMPTS = 5;

/**
 * The backup folder at key prefix `base` (with its trailing slash) of `client`'s bucket as a
 * {@linkcode BackupStore}. Its paths are the versions' paths under the folder, as journals
 * name them; `relKey` gives the key (relative to `base`) of a path of a kind, as the replica
 * names its objects (`dir/`, `link.rclonelink`). It never touches a key outside `base`: a path
 * with an empty, `.` or `..` part is treated as gone. Needs network access to the endpoint;
 * its methods throw what the client throws (S3Error).
 *
 * @example Pruning a bucket's backup folder
 * ```ts
 * const store = s3BackupStore(client, "backups/photos/", (path, kind) => kind === "dir" ? `${path}/` : path);
 * await pruneBackups(store, { keepMs, now: Date.now(), onPrune, onError });
 * ```
 */
export function s3BackupStore(
  client: S3Client,
  base: string,
  relKey: (path: string, kind: EntryKind) => string,
  signal?: AbortSignal,
): BackupStore {
  const journal = `${base}${JOURNAL_NAME}`;
  const read = async () => {
    const got = await client.get(journal, signal);
    return got && { text: new TextDecoder().decode(got.body), etag: got.head.etag };
  };
  /** The key of version `path` of `kind` (parseJournal lets through only paths under the folder). */
  const keyOf = (path: string, kind: EntryKind): string => `${base}${relKey(path, kind)}`;
  return {
    async readJournal() {
      return (await read())?.text;
    },
    async appendJournal(text) {
      for (let attempt = 1;; attempt++) {
        const now = await read();
        const written = now === undefined
          ? await client.put(journal, text, { "if-none-match": "*" }, signal)
          : await client.putIfMatch(journal, now.text + text, now.etag, signal);
        if (written !== undefined) return;
        if (attempt === APPEND_ATTEMPTS) {
          throw new Error(`Backup journal keeps changing while it is written: '${journal}'`);
        }
      }
    },
    async writeJournal(text) {
      await client.put(journal, text, {}, signal);
    },
    async remove(path, kind) {
      const key = keyOf(path, kind);
      if (kind !== "dir") {
        if (await client.head(key, signal) === undefined) throw new Deno.errors.NotFound(`Gone: '${path}'`);
        return await client.delete(key, undefined, signal);
      }
      // A folder is its marker object; it holds something while any other key starts with it.
      let marker = false;
      for await (const page of client.list(key, signal)) {
        for (const object of page) {
          if (object.key !== key) throw new NotEmptyError(`Not empty: '${path}'`);
          marker = true;
        }
      }
      if (!marker) throw new Deno.errors.NotFound(`Gone: '${path}'`);
      await client.delete(key, undefined, signal);
    },
  };
}
