/**
 * The journal of a backup folder (`--backup-dir`), and its pruning (`--backup-keep`): every
 * version foldersync moves or copies into the folder is written down, with when, in a file at
 * the folder's root, `.foldersync-backups` (one JSON object a line). Pruning removes the
 * versions the journal says were put there longer ago than the keep period, and only those:
 * a file foldersync did not put there is in no journal, so it is never touched, and the age
 * is when the version was moved aside, not its own mtime.
 *
 * Every backend writes the same journal through a {@linkcode BackupStore} of its backup folder.
 *
 * @module
 */

import type { EntryKind } from "../model/listing.ts";
import { errorLine } from "../model/errors.ts";

/** The journal's name, at the root of the backup folder. */
export const JOURNAL_NAME = ".foldersync-backups";

/** One version foldersync put into the backup folder. */
export interface BackupRecord {
  /** Its path in the backup folder, `/`-separated (with the suffix a taken name got). */
  path: string;
  /** What it is. */
  kind: EntryKind;
  /** When it was put there, in milliseconds since the epoch. */
  at: number;
}

/** What a backend offers for its backup folder's journal and pruning; paths relative to that folder. */
export interface BackupStore {
  /** The journal's text, or undefined when there is none yet. */
  readJournal(): Promise<string | undefined>;
  /** Adds `text` at the end of the journal (creating it). */
  appendJournal(text: string): Promise<void>;
  /** Replaces the journal with `text`, atomically. */
  writeJournal(text: string): Promise<void>;
  /**
   * Removes one version: a file or link, or a folder only when it is empty (else it throws
   * {@linkcode NotEmptyError}); throws `Deno.errors.NotFound` when it is gone already.
   */
  remove(path: string, kind: EntryKind): Promise<void>;
}

/** A folder that still holds something: it is kept, and pruned once it is empty. */
export class NotEmptyError extends Error {
  override name = "NotEmptyError";
}

/**
 * PURE: records as journal lines.
 *
 * @example A line
 * ```ts
 * formatRecords([{ path: "a.txt", kind: "file", at: 1 }]); // '{"path":"a.txt","kind":"file","at":1}\n'
 * ```
 */
export function formatRecords(records: readonly BackupRecord[]): string {
  return records.map((r) => `${JSON.stringify({ path: r.path, kind: r.kind, at: r.at })}\n`).join("");
}

/**
 * PURE: the records of a journal's text; lines that are not records (a torn last line of a
 * killed run, say) are passed over.
 *
 * @example Reading a journal
 * ```ts
 * parseJournal('{"path":"a.txt","kind":"file","at":1}\nbroken'); // [{ path: "a.txt", kind: "file", at: 1 }]
 * ```
 */
export function parseJournal(text: string): BackupRecord[] {
  const records: BackupRecord[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const r = JSON.parse(line);
      const kinds = ["file", "dir", "symlink", "other"];
      if (typeof r?.path === "string" && inFolder(r.path) && kinds.includes(r.kind) && Number.isFinite(r.at)) {
        records.push({ path: r.path, kind: r.kind, at: r.at });
      }
    } catch {
      // not a record
    }
  }
  return records;
}

/**
 * True when `path` names an entry under the backup folder: no empty, `.` or `..` part, so that
 * a torn or forged journal line never leads pruning outside it, whatever the backend.
 */
function inFolder(path: string): boolean {
  return path !== "" && !path.split("/").some((part) => part === "" || part === "." || part === "..");
}

/**
 * PURE: which records were put in the backup folder longer ago than `keepMs` at `now`, in the
 * order to remove them (deeper paths first, so that a folder comes after what it holds), and
 * the others.
 *
 * @example One expired, one kept
 * ```ts
 * expiredRecords([{ path: "a", kind: "file", at: 0 }, { path: "b", kind: "file", at: 90 }], 50, 100);
 * // { expired: [{ path: "a", ... }], kept: [{ path: "b", ... }] }
 * ```
 */
export function expiredRecords(
  records: readonly BackupRecord[],
  keepMs: number,
  now: number,
): { expired: BackupRecord[]; kept: BackupRecord[] } {
  const expired: BackupRecord[] = [];
  const kept: BackupRecord[] = [];
  for (const record of records) (now - record.at > keepMs ? expired : kept).push(record);
  const depth = (path: string) => path.split("/").length;
  expired.sort((a, b) => depth(b.path) - depth(a.path) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { expired, kept };
}

/** Options for {@linkcode pruneBackups}. */
export interface PruneOptions {
  /** Versions put there longer ago than this many milliseconds are removed. */
  keepMs: number;
  /** The time to measure the age at, ms since the epoch. */
  now: number;
  /**
   * Only report what would be pruned.
   * @default false
   */
  dryRun?: boolean;
  /** Called for each version pruned (or that would be), with when it was put there. */
  onPrune: (record: BackupRecord) => void;
  /** Called for each version that could not be removed. */
  onError: (path: string, message: string) => void;
}

/**
 * Removes from the backup folder of `store` the versions its journal says were put there
 * longer ago than `keepMs`, then the folders that held only them, and writes the journal
 * back without them. A version already gone is dropped from the journal; a folder that still
 * holds something stays in it, to be pruned once it is empty. Returns how many were pruned.
 *
 * @example Keeping a month
 * ```ts
 * await pruneBackups(store, { keepMs: 30 * 86_400_000, now: Date.now(), onPrune, onError });
 * ```
 */
export async function pruneBackups(store: BackupStore, options: PruneOptions): Promise<number> {
  const { keepMs, now, dryRun = false, onPrune, onError } = options;
  const text = await store.readJournal();
  if (text === undefined) return 0;
  const { expired, kept } = expiredRecords(parseJournal(text), keepMs, now);
  if (expired.length === 0) return 0;
  let pruned = 0;
  const stay: BackupRecord[] = [];
  const parents = new Set<string>();
  for (const record of expired) {
    if (dryRun) {
      onPrune(record);
      pruned++;
      continue;
    }
    try {
      await store.remove(record.path, record.kind);
      onPrune(record);
      pruned++;
      for (let p = parentOf(record.path); p !== ""; p = parentOf(p)) parents.add(p);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      stay.push(record);
      if (!(error instanceof NotEmptyError)) onError(record.path, errorLine(error));
    }
  }
  if (dryRun) return pruned;
  // The folders made to hold the pruned versions, deepest first, where nothing else is left.
  const recorded = new Set(kept.map((r) => r.path));
  for (const dir of [...parents].sort((a, b) => b.length - a.length)) {
    if (recorded.has(dir)) continue;
    await store.remove(dir, "dir").catch(() => {});
  }
  await store.writeJournal(formatRecords([...kept, ...stay]));
  return pruned;
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? "" : path.slice(0, slash);
}
