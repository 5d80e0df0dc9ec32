/**
 * PURE: reads an S3 target: `s3://bucket[/prefix]`.
 *
 * @module
 */

import { UsageError } from "../../model/errors.ts";
import type { S3Target } from "../target.ts";

/**
 * The S3 target `text` names, or undefined when it names none.
 *
 * @throws {UsageError} For a bucket name S3 refuses, or an empty, `.` or `..` part in the prefix.
 * @example Reading a target
 * ```ts
 * parseS3("s3://backups/photos"); // { kind: "s3", bucket: "backups", prefix: "photos", display: "s3://backups/photos" }
 * ```
 */
export function parseS3(text: string): S3Target | undefined {
  return /^s3:\/\//i.test(text) ? parseS3Url(text) : undefined;
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
