/**
 * A local file read at any offset, for copies out of it that read in parts: the local
 * backend's source files, and an S3 multipart upload of a local file.
 *
 * @module
 */

import type { FileReader } from "./backend.ts";

/** Reads a local file at any offset; reads are taken one at a time (one handle, one position). */
export async function openLocalReader(path: string): Promise<FileReader> {
  const file = await Deno.open(path, { read: true });
  let queue: Promise<unknown> = Promise.resolve();
  const readAt = async (offset: number, into: Uint8Array): Promise<number> => {
    await file.seek(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < into.length) {
      const n = await file.read(into.subarray(done));
      if (n === null) break;
      done += n;
    }
    return done;
  };
  return {
    read(offset, into) {
      const next = queue.then(() => readAt(offset, into));
      queue = next.catch(() => {});
      return next;
    },
    close() {
      file.close();
      return Promise.resolve();
    },
  };
}
