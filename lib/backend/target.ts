/**
 * PURE: what a replica argument names: a local folder, a folder on another host over SFTP
 * (`sftp://[user@]host[:port]/path`, or rsync's `[user@]host:path`), or a bucket and key
 * prefix in S3-compatible storage (`s3://bucket[/prefix]`).
 *
 * @module
 */

import { UsageError } from "../model/errors.ts";

/** A folder on another host, reached over SFTP. */
export interface SftpTarget {
  kind: "sftp";
  /** Login name; undefined for ~/.ssh/config's `User`, else the local user. */
  user?: string | undefined;
  /** Host name or ~/.ssh/config alias, as written. */
  host: string;
  /** Port; undefined for ~/.ssh/config's `Port`, else `--ssh-port`, else 22. */
  port?: number | undefined;
  /**
   * Folder on the host: absolute, or relative to the login folder (`host:dir`,
   * `sftp://host/~/dir`); `"."` is the login folder itself.
   */
  path: string;
  /** The argument as written, for messages. */
  display: string;
}

/** A bucket and key prefix in S3-compatible object storage. */
export interface S3Target {
  kind: "s3";
  bucket: string;
  /** Key prefix without leading or trailing `/`; `""` is the whole bucket. */
  prefix: string;
  /** The argument as written, for messages. */
  display: string;
}

/** A local folder. */
export interface LocalTarget {
  kind: "local";
  path: string;
}

/** What a replica argument names. */
export type ReplicaTarget = LocalTarget | SftpTarget | S3Target;

/**
 * Reads a replica argument. rsync's rule decides the `host:path` form: a colon before the
 * first slash makes it remote (write `./a:b` for a local folder named `a:b`); a single
 * letter before it is a Windows drive (`C:\backup`, and on Windows `C:/backup`).
 *
 * @throws {UsageError} For a malformed URL: no host, a bad port, a bucket name S3 refuses.
 * @example Reading targets
 * ```ts
 * parseTarget("sftp://deploy@web1:2200/var/www"); // { kind: "sftp", user: "deploy", host: "web1", port: 2200, path: "/var/www", ... }
 * parseTarget("prod:/var/www"); // { kind: "sftp", host: "prod", path: "/var/www", ... }
 * parseTarget("s3://backups/photos"); // { kind: "s3", bucket: "backups", prefix: "photos", ... }
 * parseTarget("/backup"); // { kind: "local", path: "/backup" }
 * ```
 */
export function parseTarget(text: string): ReplicaTarget {
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(text)?.[1]?.toLowerCase();
  if (scheme === "sftp") return parseSftpUrl(text);
  if (scheme === "s3") return parseS3Url(text);
  if (scheme !== undefined) {
    throw new UsageError(
      `Unsupported replica URL '${text}': use a local folder, sftp://host/path or s3://bucket/prefix`,
    );
  }
  // An IPv6 address in brackets holds colons of its own.
  const colon = text.startsWith("[") && text.includes("]:") ? text.indexOf("]:") + 1 : text.indexOf(":");
  const slash = text.search(/[/\\]/);
  const isDrive = colon === 1 && /^[a-zA-Z]$/.test(text[0]!) &&
    (Deno.build.os === "windows" || text[2] === "\\");
  if (colon > 0 && (slash === -1 || colon < slash) && !isDrive) return parseRsyncForm(text, colon);
  return { kind: "local", path: text };
}

/** True when `text` names a remote replica (see {@linkcode parseTarget}). */
export function isRemote(text: string): boolean {
  try {
    return parseTarget(text).kind !== "local";
  } catch {
    return true;
  }
}

function parseSftpUrl(text: string): SftpTarget {
  let url: URL;
  try {
    // URL only knows the authority of special schemes: read it as http, then take it apart.
    url = new URL(`http://${text.slice("sftp://".length)}`);
  } catch {
    throw new UsageError(`Malformed SFTP URL '${text}': expected sftp://[user@]host[:port]/path`);
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (host === "") throw new UsageError(`Malformed SFTP URL '${text}': no host`);
  if (url.password !== "") {
    throw new UsageError(`Malformed SFTP URL '${text}': passwords in URLs are not supported; use a key or ssh-agent`);
  }
  if (url.search !== "" || url.hash !== "") {
    throw new UsageError(`Malformed SFTP URL '${text}': '?' and '#' must be written %3F and %23 in a path`);
  }
  // sftp://host names the login folder, as sftp://host/~ does; sftp://host/ the root.
  const raw = text.slice("sftp://".length).includes("/") ? decodeURIComponent(url.pathname) : "/~";
  // sftp://host/~/dir and sftp://host/~ are relative to the login folder, as curl reads them.
  const path = raw === "/~" || raw === "/~/" ? "." : raw.startsWith("/~/") ? raw.slice(3) : raw === "" ? "." : raw;
  return {
    kind: "sftp",
    user: url.username !== "" ? decodeURIComponent(url.username) : undefined,
    host,
    port: url.port !== "" ? Number(url.port) : undefined,
    path: trimSlash(path),
    display: text,
  };
}

function parseRsyncForm(text: string, colon: number): SftpTarget {
  const login = text.slice(0, colon);
  const at = login.lastIndexOf("@");
  const user = at >= 0 ? login.slice(0, at) : undefined;
  let host = at >= 0 ? login.slice(at + 1) : login;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "" || user === "") throw new UsageError(`Malformed remote replica '${text}': expected [user@]host:path`);
  if (/[\s/]/.test(host)) throw new UsageError(`Malformed remote replica '${text}': bad host name '${host}'`);
  const path = text.slice(colon + 1);
  return { kind: "sftp", user, host, path: path === "" ? "." : trimSlash(path), display: text };
}

function parseS3Url(text: string): S3Target {
  const rest = text.slice("s3://".length);
  const slash = rest.indexOf("/");
  const bucket = slash === -1 ? rest : rest.slice(0, slash);
  const prefix = slash === -1 ? "" : rest.slice(slash + 1).replace(/^\/+|\/+$/g, "");
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new UsageError(
      `Malformed S3 URL '${text}': '${bucket}' is not a bucket name (3-63 characters: a-z, 0-9, '.', '-')`,
    );
  }
  if (prefix.split("/").some((part) => part === "" || part === "." || part === "..")) {
    if (prefix !== "") throw new UsageError(`Malformed S3 URL '${text}': empty, '.' or '..' part in the prefix`);
  }
  return { kind: "s3", bucket, prefix, display: text };
}

/** Drops trailing slashes, keeping a lone `/`. */
function trimSlash(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed === "" ? (path.startsWith("/") ? "/" : ".") : trimmed;
}
