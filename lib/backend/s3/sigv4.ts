/**
 * PURE apart from hashing: AWS Signature Version 4 for S3 requests, header-based, with the
 * payload either unsigned (`UNSIGNED-PAYLOAD`, integrity then comes from Content-MD5) or
 * hashed. The reference is AWS's "Signature Version 4 signing process" and its S3 variant
 * (paths are encoded once, not twice).
 *
 * @module
 */

import { createHash, createHmac } from "node:crypto";

/** Static credentials, as the credential chain resolves them. */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
  /** When temporary credentials expire (ms since the epoch); undefined for long-lived keys. */
  expiresAt?: number | undefined;
}

/** The hash of an empty payload. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/**
 * Encodes `text` as SigV4 wants: every byte but the unreserved `A-Z a-z 0-9 - . _ ~` as
 * `%XX` (upper case), and `/` too unless `keepSlash`.
 *
 * @example Encoding a key
 * ```ts
 * uriEncode("a b/c+d", true); // "a%20b/c%2Bd"
 * ```
 */
export function uriEncode(text: string, keepSlash = false): string {
  const encoded = encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return keepSlash ? encoded.replaceAll("%2F", "/") : encoded;
}

/** The canonical query string: pairs encoded, sorted by key then value. */
export function canonicalQuery(query: Readonly<Record<string, string>>): string {
  return Object.entries(query)
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

/** What {@linkcode signRequest} signs. */
export interface SignInput {
  method: string;
  /** Host header value (`host[:port]`). */
  host: string;
  /** The path, already encoded with {@linkcode uriEncode} (slashes kept). */
  path: string;
  query: Readonly<Record<string, string>>;
  /** Headers to sign besides host and the x-amz ones this adds; names in lower case. */
  headers: Record<string, string>;
  /** Hex SHA-256 of the payload, or `UNSIGNED-PAYLOAD`. */
  payloadHash: string;
  region: string;
  credentials: Credentials;
  /** Signing time; now by default. */
  now?: Date;
}

const keyCache = new Map<string, Buffer>();

function signingKey(secret: string, day: string, region: string): Buffer {
  const id = `${secret}\0${day}\0${region}`;
  let key = keyCache.get(id);
  if (!key) {
    const kDate = createHmac("sha256", `AWS4${secret}`).update(day).digest();
    const kRegion = createHmac("sha256", kDate).update(region).digest();
    const kService = createHmac("sha256", kRegion).update("s3").digest();
    key = createHmac("sha256", kService).update("aws4_request").digest();
    if (keyCache.size > 16) keyCache.clear();
    keyCache.set(id, key);
  }
  return key;
}

/**
 * Signs an S3 request: returns the headers to send (the given ones plus `x-amz-date`,
 * `x-amz-content-sha256`, `x-amz-security-token` where there is one, and `authorization`).
 *
 * @example Signing a GET
 * ```ts
 * const headers = signRequest({ method: "GET", host: "s3.amazonaws.com", path: "/b/k", query: {},
 *   headers: {}, payloadHash: EMPTY_SHA256, region: "us-east-1",
 *   credentials: { accessKeyId: "AK", secretAccessKey: "SK" } });
 * ```
 */
export function signRequest(input: SignInput): Record<string, string> {
  const { credentials } = input;
  const stamp = (input.now ?? new Date()).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const day = stamp.slice(0, 8);
  const headers: Record<string, string> = {
    ...input.headers,
    "x-amz-date": stamp,
    "x-amz-content-sha256": input.payloadHash,
  };
  if (credentials.sessionToken) headers["x-amz-security-token"] = credentials.sessionToken;
  const signed: Record<string, string> = { ...headers, host: input.host };
  const names = Object.keys(signed).sort();
  const canonicalHeaders = names.map((n) => `${n}:${signed[n]!.trim().replace(/\s+/g, " ")}\n`).join("");
  const signedHeaders = names.join(";");
  const canonical = [
    input.method,
    input.path,
    canonicalQuery(input.query),
    canonicalHeaders,
    signedHeaders,
    input.payloadHash,
  ].join("\n");
  const scope = `${day}/${input.region}/s3/aws4_request`;
  const toSign = `AWS4-HMAC-SHA256\n${stamp}\n${scope}\n${createHash("sha256").update(canonical).digest("hex")}`;
  const signature = createHmac("sha256", signingKey(credentials.secretAccessKey, day, input.region))
    .update(toSign)
    .digest("hex");
  headers.authorization =
    `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return headers;
}
