/**
 * PURE: reads an SFTP target: `sftp://[user@]host[:port]/path`, or rsync's `[user@]host:path`.
 *
 * @module
 */

import { UsageError } from "../../model/errors.ts";
import { type SftpTarget, trimSlash } from "../target.ts";

/**
 * The SFTP target `text` names, or undefined when it names none. rsync's rule decides the
 * `host:path` form: a colon before the first slash makes it remote (write `./a:b` for a local
 * folder named `a:b`); a single letter before it is a Windows drive (`C:\backup`, and on
 * Windows `C:/backup`).
 *
 * @throws {UsageError} For a malformed URL: no host, a bad port, a password.
 * @example Reading targets
 * ```ts
 * parseSftp("sftp://deploy@web1:2200/var/www"); // { kind: "sftp", user: "deploy", host: "web1", port: 2200, ... }
 * parseSftp("prod:/var/www"); // { kind: "sftp", host: "prod", path: "/var/www", ... }
 * parseSftp("/backup"); // undefined
 * ```
 */
export function parseSftp(text: string): SftpTarget | undefined {
  if (/^sftp:\/\//i.test(text)) return parseSftpUrl(text);
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(text)) return undefined;
  // An IPv6 address in brackets holds colons of its own.
  const colon = text.startsWith("[") && text.includes("]:") ? text.indexOf("]:") + 1 : text.indexOf(":");
  const slash = text.search(/[/\\]/);
  const isDrive = colon === 1 && /^[a-zA-Z]$/.test(text[0]!) &&
    (Deno.build.os === "windows" || text[2] === "\\");
  if (colon > 0 && (slash === -1 || colon < slash) && !isDrive) return parseRsyncForm(text, colon);
  return undefined;
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
