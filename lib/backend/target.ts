/**
 * What a source or replica argument names, as data: a local folder, a folder on another host
 * over SFTP, or a bucket and key prefix in S3-compatible storage. Each backend reads its own
 * (its `target.ts`); lib/backend/registry.ts asks them in turn.
 *
 * @module
 */

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

/** What a source or replica argument names: one kind a backend. */
export type ReplicaTarget = LocalTarget | SftpTarget | S3Target;

/** Drops trailing slashes, keeping a lone `/`. */
export function trimSlash(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed === "" ? (path.startsWith("/") ? "/" : ".") : trimmed;
}
