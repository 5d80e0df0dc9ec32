/**
 * The S3 backend as the rest of foldersync sees it: `s3://bucket/prefix`, `--s3-endpoint`,
 * the AWS credential chain's variables and files. Light: the backend itself is loaded only
 * when a target names a bucket.
 *
 * @module
 */

import { join } from "node:path";
import type { BackendDescriptor } from "../descriptor.ts";
import type { S3Target } from "../target.ts";
import { parseS3 } from "./target.ts";

/** The variables of the AWS credential chain, region and endpoint, and the home that holds ~/.aws. */
export const AWS_ENV = [
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_PROFILE",
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_S3",
  "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_CONFIG_FILE",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "HOME",
  "USERPROFILE",
] as const;

/** The S3 backend's descriptor. */
export const S3: BackendDescriptor<S3Target> = {
  kind: "s3",
  forms: "s3://bucket/prefix",
  schemes: ["s3"],
  parse: parseS3,
  options: ["s3-endpoint"],
  env: AWS_ENV,
  run: [],
  net: true,
  reads: (home) => (home !== undefined ? [join(home, ".aws")] : []),
  open: async (target, options) => (await import("./s3_replica.ts")).openS3Replica(target, options),
};
