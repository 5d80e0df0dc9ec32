/**
 * A file of an SFTP folder as a source: read through an SFTP handle, several READ requests in
 * flight, and checked against its listing (size and whole-second mtime) before a replica puts
 * its copy in place.
 *
 * @module
 */

import type { FileReader, SourceFile } from "../backend.ts";
import { ChangedError } from "../../model/errors.ts";
import { S_IFMT, S_IFREG, type SftpSession, type SftpStats } from "./session.ts";

/** What a listing said of a file: its path relative to the root, size, mtime and mode. */
export interface ListedFile {
  /** Relative path, `/`-separated. */
  path: string;
  /** Size as listed. */
  size: number;
  /** Modification time as listed, in milliseconds (whole seconds over SFTP). */
  mtimeMs: number;
  /** Permission bits as listed. */
  mode: number;
}

/**
 * Source file `entry`, at absolute path `full` on the host of `session`.
 *
 * `open()` opens an SFTP read handle (NotFound when the file is gone); each `read()` sends its
 * READ requests at once, {@linkcode SftpSession.maxRead} bytes each, answered straight into
 * the caller's buffer, so a caller that keeps a few reads in flight keeps the pipe full, and
 * memory is what it asked for. `check()` compares size and mtime, from an lstat, at the
 * server's resolution (whole seconds): the lstat goes out with the read that reaches the end
 * of the file, after it, so that a small file costs two round trips (open; read and lstat),
 * not three. A read sent after that one (a file that grew) makes `check()` ask afresh.
 *
 * @example Reading a remote file into memory
 * ```ts
 * const file = sftpSourceFile(session, "/srv/site/index.html", entry);
 * const reader = await file.open();
 * const data = new Uint8Array(file.size);
 * await reader.read(0, data);
 * await reader.close();
 * await file.check();
 * ```
 */
export function sftpSourceFile(session: SftpSession, full: string, entry: ListedFile): SourceFile {
  const { path, size, mtimeMs, mode } = entry;
  /** The lstat sent behind the read that reached the end; undefined until then, or once a read followed it. */
  let after: Promise<SftpStats> | undefined;
  return {
    path,
    size,
    mtimeMs,
    mode,
    open: async (signal) => {
      after = undefined;
      const reader = await openSftpReader(session, full, signal);
      return {
        read(offset, into) {
          const reading = reader.read(offset, into);
          after = undefined;
          if (offset + into.length >= size && into.length > 0) {
            after = session.lstat(full);
            after.catch(() => {}); // check() may never come: the copy failed
          }
          return reading;
        },
        close: () => reader.close(),
      };
    },
    check: async () => {
      const now = await (after ?? session.lstat(full));
      if ((now.mode & S_IFMT) !== S_IFREG || now.size !== size || now.mtime !== Math.floor(mtimeMs / 1000)) {
        throw new ChangedError("Source file changed while it was being copied; will retry on the next run");
      }
    },
  };
}

/**
 * Opens `full` for reading. Reads may be in flight at once and in any order; once `signal` is
 * aborted, a read rejects with its reason. `close()` never waits for the server (the handle
 * goes with the next requests) and never throws.
 */
export async function openSftpReader(session: SftpSession, full: string, signal?: AbortSignal): Promise<FileReader> {
  signal?.throwIfAborted();
  const handle = await session.open(full, "r");
  let closed = false;
  return {
    read(offset, into) {
      if (closed) return Promise.reject(new Error(`File is closed: '${full}'`));
      if (signal?.aborted) return Promise.reject(signal.reason);
      return into.length === 0 ? Promise.resolve(0) : session.readInto(handle, full, offset, into);
    },
    close() {
      if (!closed) {
        closed = true;
        session.close(handle, full).catch(() => {});
      }
      return Promise.resolve();
    },
  };
}
