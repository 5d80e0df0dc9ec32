/**
 * Checks a server's host key against known_hosts files, as ssh does: plain names, `[host]:port`
 * for ports other than 22, comma lists and wildcard patterns (with `!` negation), hashed names
 * (`|1|salt|hmac-sha1`), `@revoked` keys (refused), `@cert-authority` lines (ignored: no
 * certificates here). There is no trust on first use.
 *
 * @module
 */

import { createHmac } from "node:crypto";
import { Buffer } from "node:buffer";
import { matchPatternList } from "./ssh_config.ts";

/** What the known_hosts files say about a host key. */
export type HostKeyVerdict =
  /** The key is known for the host. */
  | { status: "known" }
  /** The host has no key of this type (maybe keys of `otherTypes`). */
  | { status: "unknown"; otherTypes: string[] }
  /** The host is known with another key of the same type: the key changed. */
  | { status: "changed"; file: string; line: number }
  /** The key is marked `@revoked`. */
  | { status: "revoked"; file: string; line: number };

/** One known_hosts file's text, with its name for messages. */
export interface KnownHostsFile {
  file: string;
  text: string;
}

interface KnownLine {
  file: string;
  line: number;
  marker: string | undefined;
  hosts: string;
  type: string;
  key: string;
}

function* knownLines(files: readonly KnownHostsFile[]): Generator<KnownLine> {
  for (const { file, text } of files) {
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line === "" || line.startsWith("#")) continue;
      const parts = line.split(/\s+/);
      const marker = parts[0]!.startsWith("@") ? parts.shift() : undefined;
      const [hosts, type, key] = parts;
      if (hosts === undefined || type === undefined || key === undefined) continue;
      yield { file, line: i + 1, marker, hosts, type, key };
    }
  }
}

/**
 * The name a host is listed under in known_hosts: `host` for port 22, else `[host]:port`.
 *
 * @example A name with a port
 * ```ts
 * knownHostsName("127.0.0.1", 2222); // "[127.0.0.1]:2222"
 * ```
 */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** True when host field `hosts` (a hashed name, or a comma list of patterns) names `name`. */
export function hostsMatch(hosts: string, name: string): boolean {
  if (hosts.startsWith("|1|")) {
    const [, , salt, hash] = hosts.split("|");
    if (salt === undefined || hash === undefined) return false;
    const mac = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
    return mac === hash;
  }
  return matchPatternList(hosts.split(","), name);
}

/**
 * The key type named inside a public key blob (its first string), e.g. `ssh-ed25519`.
 *
 * @example Reading a key type
 * ```ts
 * keyType(blob); // "ssh-ed25519"
 * ```
 */
export function keyType(blob: Uint8Array): string {
  if (blob.length < 4) return "";
  const length = new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getUint32(0);
  return new TextDecoder().decode(blob.subarray(4, 4 + length));
}

/**
 * PURE: what `files` say about host key `blob` of host `name` (as {@linkcode knownHostsName}
 * writes it).
 *
 * @example Checking a key
 * ```ts
 * checkHostKey([{ file: "known_hosts", text }], "[127.0.0.1]:2222", blob); // { status: "known" }
 * ```
 */
export function checkHostKey(files: readonly KnownHostsFile[], name: string, blob: Uint8Array): HostKeyVerdict {
  const type = keyType(blob);
  const key = Buffer.from(blob).toString("base64");
  let changed: HostKeyVerdict | undefined;
  let known = false;
  const otherTypes = new Set<string>();
  for (const entry of knownLines(files)) {
    if (entry.marker === "@cert-authority") continue;
    if (entry.marker === "@revoked") {
      if (entry.key === key && hostsMatch(entry.hosts, name)) {
        return { status: "revoked", file: entry.file, line: entry.line };
      }
      continue;
    }
    if (entry.marker !== undefined || !hostsMatch(entry.hosts, name)) continue;
    if (entry.key === key) known = true;
    else if (entry.type === type) changed ??= { status: "changed", file: entry.file, line: entry.line };
    else otherTypes.add(entry.type);
  }
  if (known) return { status: "known" };
  return changed ?? { status: "unknown", otherTypes: [...otherTypes] };
}

/**
 * The key types `files` know for host `name`, so that the key exchange can ask for one of
 * them first, as ssh does (else a server offering several keys may show one never recorded).
 */
export function knownKeyTypes(files: readonly KnownHostsFile[], name: string): string[] {
  const types: string[] = [];
  for (const entry of knownLines(files)) {
    if (entry.marker !== undefined || types.includes(entry.type)) continue;
    if (hostsMatch(entry.hosts, name)) types.push(entry.type);
  }
  return types;
}
