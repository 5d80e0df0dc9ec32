/**
 * The source folder of a loop, checked before each run: a folder that is gone (an unmounted
 * disk, `rm -rf src` in a deploy script) is one clear line rather than a raw error at every
 * run, and a folder that was replaced by another of the same name (`rm -rf src; mkdir src`)
 * is told apart, since a watcher of the old one hears nothing of the new one.
 *
 * @module
 */

import { logger } from "../log.ts";

/** What {@linkcode SourceFolder.check} found. */
export type SourceState =
  /** The folder is there, the same one as at the last check. */
  | "present"
  /** The folder is missing (or is no longer a folder). */
  | "missing"
  /** The folder was missing at the last check and is there again. */
  | "back"
  /** A different folder now has the source's path (deleted and made again, or moved away and replaced). */
  | "replaced";

/**
 * Which folder `path` is (device and inode), `""` where the OS gives no inode, or undefined
 * when it is missing or not a folder. Other errors (a permission) count as present: the run
 * reports them.
 */
function identityOf(path: string): string | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return undefined;
    return "";
  }
  if (!info.isDirectory) return undefined;
  // File systems give a deleted folder's inode number to the next one made: its birth time tells them apart.
  return info.ino === null ? "" : `${info.dev}:${info.ino}:${info.birthtime?.getTime() ?? ""}`;
}

/**
 * Follows the source folder of a loop between runs, and logs its comings and goings: one
 * line when it goes missing (not one per run), one when it is back.
 *
 * Needs read permission for `path`.
 *
 * @example Skipping the runs of a loop while the source is gone
 * ```ts
 * const folder = new SourceFolder("/srv/site");
 * if (folder.check() !== "missing") await guardedRun(options, control);
 * ```
 */
export class SourceFolder {
  /** The folder's absolute path. */
  readonly path: string;
  #identity: string | undefined;

  /** Starts following `path`, as it is now. */
  constructor(path: string) {
    this.path = path;
    this.#identity = identityOf(path);
  }

  /**
   * Looks at the folder again. Logs `Source folder is missing: '...'` (an error) when it went
   * missing since the last check, and `Source folder is back: '...'` when it returned;
   * `watching` adds to that line that the watch follows the folder again, and logs a
   * replaced folder too. `gone` says the folder at the path was deleted or moved away since
   * the last check (a watcher saw it go): one there now is a new one, whatever its inode.
   */
  check(watching = false, gone = false): SourceState {
    const was = this.#identity;
    const now = identityOf(this.path);
    this.#identity = now;
    if (now === undefined) {
      if (was !== undefined) {
        const text = `Source folder is missing: '${this.path}': waiting for it to come back`;
        logger.error("{text}", { text, action: "error", error: text });
      }
      return "missing";
    }
    if (was === undefined) {
      logger.info("{text}", {
        text: `Source folder is back: '${this.path}'${watching ? "; watching it again" : ""}`,
      });
      return "back";
    }
    if (gone || (now !== was && now !== "" && was !== "")) {
      if (watching) {
        logger.info("{text}", { text: `Source folder was replaced: '${this.path}'; watching the new one` });
      }
      return "replaced";
    }
    return "present";
  }
}
