/**
 * What every service definition builder takes and gives: a {@linkcode ServiceSpec} in, a
 * list of {@linkcode ServiceFile}s out. Pure data; nothing here touches the disk.
 *
 * @module
 */

import { posix, win32 } from "node:path";
import type { Scope } from "./cli.ts";

/** One service to define, with every path already absolute. */
export interface ServiceSpec {
  /** The service's name, as the user gave it. */
  name: string;
  /** User or system service. */
  scope: Scope;
  /** The program to start and its arguments; `command[0]` is an absolute path. */
  command: string[];
  /**
   * How `command` runs main.ts with `deno run`: with unscoped read and write permissions (a
   * local replica: Deno creates symbolic links only under those), or with grants scoped to
   * the service's own files (a remote replica). Undefined for a compiled binary.
   */
  fromSource?: "unscoped" | "scoped";
  /** Run once every this many milliseconds; undefined for a long-running service. */
  everyMs?: number;
  /** Absolute source path (for descriptions). */
  source: string;
  /** Absolute replica path (for descriptions). */
  replica: string;
  /** The foldersync version writing the definition. */
  version: string;
}

/** A file a definition consists of. */
export interface ServiceFile {
  /** Where the platform expects it, absolute. */
  path: string;
  /** Its content. */
  text: string;
}

/**
 * The comment lines every definition starts with: who wrote it, and how it runs foldersync.
 *
 * @example Header lines
 * ```ts
 * headerLines(spec); // ["Written by foldersync 0.1.0: `foldersync service install docs ...`", ...]
 * ```
 */
export function headerLines(spec: ServiceSpec): string[] {
  const lines = [
    `foldersync ${spec.version} service '${spec.name}': mirrors ${spec.source} into ${spec.replica}.`,
    `Written by 'foldersync service install'; 'foldersync service uninstall ${spec.name}' removes it.`,
  ];
  if (spec.fromSource === "unscoped") {
    lines.push(
      "Runs from source: 'deno run' with unscoped read and write permissions, which Deno needs to create",
      "symbolic links; --deny-write keeps the source read-only (unless a file of the service lies in it).",
    );
  } else if (spec.fromSource === "scoped") {
    lines.push(
      "Runs from source: 'deno run' with read and write permissions scoped to this service's own files",
      "(log file and its rotated copies, hash cache; read access to the source and to foldersync's own folder).",
    );
  } else lines.push("Runs the compiled foldersync binary as it is.");
  return lines;
}

/**
 * Escapes text for XML content and attribute values.
 *
 * @example Escaping
 * ```ts
 * xmlEscape("a & <b>"); // "a &amp; &lt;b&gt;"
 * ```
 */
export function xmlEscape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;");
}

/**
 * Text for an XML comment: `--` may not appear inside one.
 *
 * @example A comment-safe text
 * ```ts
 * xmlComment("--watch"); // "- -watch"
 * ```
 */
export function xmlComment(text: string): string {
  return text.replaceAll("--", "- -");
}

/**
 * The path functions for a path: Windows ones for a drive or UNC path, POSIX ones
 * otherwise, whatever OS this runs on (a definition may be printed, or tested, on another).
 *
 * @example Joining a Windows path on Linux
 * ```ts
 * pathsFor("C:\\Users\\ana").join("C:\\Users\\ana", "x"); // "C:\\Users\\ana\\x"
 * ```
 */
export function pathsFor(path: string): typeof posix {
  return /^[A-Za-z]:[\\/]|^\\\\/.test(path) || Deno.build.os === "windows" ? win32 : posix;
}
