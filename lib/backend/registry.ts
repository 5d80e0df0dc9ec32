/**
 * Every backend foldersync knows, in one list: the command line reads its arguments through
 * them, the opener opens them, and services grant what they need. A new backend is a folder of
 * its own (the Backend, its target, its descriptor) and one line here; CONTRIBUTING.md says
 * what it must do.
 *
 * @module
 */

import { UsageError } from "../model/errors.ts";
import type { BackendDescriptor } from "./descriptor.ts";
import type { ReplicaTarget } from "./target.ts";
import { SFTP } from "./sftp/descriptor.ts";
import { S3 } from "./s3/descriptor.ts";

/** The remote backends, asked in this order; anything none of them reads is a local folder. */
export const BACKENDS: readonly BackendDescriptor[] = [SFTP, S3] as readonly BackendDescriptor[];

/**
 * What a source or replica argument names: the first backend that reads it, else a local
 * folder. An unknown URL scheme is refused.
 *
 * @throws {UsageError} For an unknown scheme, or a malformed argument of a backend's.
 * @example Reading targets
 * ```ts
 * parseTarget("sftp://deploy@web1:2200/var/www"); // { kind: "sftp", user: "deploy", host: "web1", port: 2200, ... }
 * parseTarget("prod:/var/www"); // { kind: "sftp", host: "prod", path: "/var/www", ... }
 * parseTarget("s3://backups/photos"); // { kind: "s3", bucket: "backups", prefix: "photos", ... }
 * parseTarget("/backup"); // { kind: "local", path: "/backup" }
 * ```
 */
export function parseTarget(text: string): ReplicaTarget {
  for (const backend of BACKENDS) {
    const target = backend.parse(text);
    if (target !== undefined) return target;
  }
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(text)) {
    throw new UsageError(
      `Unsupported URL '${text}': use a local folder, ${BACKENDS.map((b) => b.forms.split(" or ")[0]).join(" or ")}`,
    );
  }
  return { kind: "local", path: text };
}

/** True when `text` names a remote tree (see {@linkcode parseTarget}). */
export function isRemote(text: string): boolean {
  try {
    return parseTarget(text).kind !== "local";
  } catch {
    return true;
  }
}

/** The descriptor of a remote target's backend. */
export function backendOf<T extends ReplicaTarget>(target: T): BackendDescriptor<T> {
  const found = BACKENDS.find((backend) => backend.kind === target.kind);
  if (!found) throw new Error(`No backend for '${target.kind}'`);
  return found as unknown as BackendDescriptor<T>;
}

/** Every variable a remote backend's clients may read (a service of one is granted these). */
export const REMOTE_ENV: readonly string[] = [...new Set(BACKENDS.flatMap((b) => b.env))];
