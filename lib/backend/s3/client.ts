/**
 * A small S3 client over `fetch`: the dozen calls the S3 replica makes, signed with SigV4,
 * retried where that is safe, every request counted. Path-style addressing for custom
 * endpoints; virtual-hosted style on AWS itself (path-style for bucket names with dots).
 *
 * Needs `--allow-net` for the endpoint's host and port.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { ConnectionLostError } from "../../model/errors.ts";
import type { CredentialSource } from "./credentials.ts";
import { EMPTY_SHA256, signRequest, uriEncode } from "./sigv4.ts";

/** An error response from S3: its HTTP status and S3 error code (`NoSuchKey` ...). */
export class S3Error extends Error {
  override name = "S3Error";
  readonly status: number;
  readonly code: string;
  /** The bucket's region, when the server names it (AWS does for a request signed for another). */
  readonly region: string | undefined;

  constructor(status: number, code: string, message: string, region?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.region = region;
  }
}

/** The request never got a response: refused, reset, unknown host, timed out. */
export class NetworkError extends Error {
  override name = "NetworkError";
}

/** One object as a listing shows it. */
export interface ListedObject {
  key: string;
  size: number;
  /** Without quotes. */
  etag: string;
  /** As the server wrote it (ISO 8601). */
  lastModified: string;
}

/** One object's metadata, from HEAD or GET. */
export interface ObjectHead {
  size: number;
  etag: string;
  lastModified: string;
  /** User metadata, keys in lower case without `x-amz-meta-`. */
  meta: Record<string, string>;
}

/** An incomplete multipart upload. */
export interface Upload {
  key: string;
  uploadId: string;
  /** Milliseconds since the epoch. */
  initiated: number;
}

/** Options for {@linkcode S3Client}. */
export interface S3ClientOptions {
  /** Endpoint URL (`http(s)://host[:port]`). */
  endpoint: URL;
  /** Path-style (`endpoint/bucket/key`) rather than virtual-hosted (`bucket.endpoint/key`). */
  pathStyle: boolean;
  region: string;
  credentials: CredentialSource;
  bucket: string;
  /**
   * Attempts for a request that failed on the network or with a 5xx, when it can be sent again.
   * @default 3
   */
  attempts?: number;
}

/** What one request sends. */
interface RequestInput {
  key?: string | undefined;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array | string | undefined;
  /** Sign the body's SHA-256 instead of sending it unsigned. */
  signBody?: boolean;
  signal?: AbortSignal | undefined;
  /** Statuses that are answers, not errors (404 for a HEAD, 412 for a conditional PUT). */
  accept?: readonly number[];
  /**
   * Where a successful answer's body goes: a large one is read into it as it comes (no buffer
   * allocated for it), a small one copied; a body longer than it is read into a buffer of its own.
   */
  into?: Uint8Array | undefined;
}

const XML_ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** PURE: decodes XML text (entities and character references). */
export function xmlText(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (all, ref: string) => {
    if (ref[0] === "#") return String.fromCodePoint(ref[1] === "x" ? parseInt(ref.slice(2), 16) : Number(ref.slice(1)));
    return XML_ENTITIES[ref] ?? all;
  });
}

/** PURE: the decoded text of every `<tag>` element in `xml`. */
export function xmlAll(xml: string, tag: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g");
  for (let m = re.exec(xml); m; m = re.exec(xml)) out.push(m[1]!);
  return out;
}

/** PURE: the decoded text of the first `<tag>` element in `xml`, or undefined. */
export function xmlOne(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return m ? xmlText(m[1]!) : undefined;
}

function unquote(etag: string): string {
  return etag.replace(/^"|"$/g, "");
}

function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&${({ "&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos" })[c]};`);
}

/** The base64 MD5 of `data`, for Content-MD5. */
export function md5Base64(data: Uint8Array | string): string {
  return createHash("md5").update(data).digest("base64");
}

const RETRY_DELAYS_MS = [100, 500, 2000];

/**
 * A body larger than this is read into the caller's buffer as it comes; a smaller one whole, at
 * once (measured on 5,000 files of 1 to 8 KiB: streaming each took 45 MB more memory).
 */
const STREAMED_BODY = 256 * 1024;

/** A request without an answer for this long (plus its body's time at 64 KiB/s) is a lost connection. */
const REQUEST_TIMEOUT_MS = 120_000;
const MIN_BYTES_PER_MS = 64;

/**
 * An S3 client for one bucket. Every method throws {@linkcode S3Error} for an error answer and
 * {@linkcode ConnectionLostError} when the server cannot be reached after retries (the
 * signal's AbortError when aborted).
 *
 * @example Listing a prefix
 * ```ts
 * const client = new S3Client({ endpoint: new URL("http://127.0.0.1:7480"), pathStyle: true,
 *   region: "us-east-1", credentials: () => Promise.resolve({ accessKeyId: "AK", secretAccessKey: "SK" }),
 *   bucket: "photos" });
 * for await (const page of client.list("2024/")) console.log(page.length);
 * ```
 */
export class S3Client {
  /** Requests sent so far (each attempt counts). */
  requests = 0;
  readonly bucket: string;
  #endpoint: URL;
  #pathStyle: boolean;
  #region: string;
  #credentials: CredentialSource;
  #attempts: number;

  constructor(options: S3ClientOptions) {
    this.#endpoint = options.endpoint;
    this.#pathStyle = options.pathStyle;
    this.#region = options.region;
    this.#credentials = options.credentials;
    this.bucket = options.bucket;
    this.#attempts = options.attempts ?? 3;
  }

  /** The region requests are signed for. */
  get region(): string {
    return this.#region;
  }

  /** Signs for another region (AWS names the bucket's region when it differs). */
  set region(region: string) {
    this.#region = region;
  }

  /** `host:port` of the endpoint, for messages. */
  get host(): string {
    return this.#endpoint.host;
  }

  /** Sends one request and returns the response with its body read. */
  async request(
    method: string,
    input: RequestInput = {},
  ): Promise<{ status: number; headers: Headers; body: Uint8Array }> {
    const { key, query = {}, body, signal } = input;
    const bucketInPath = this.#pathStyle ? `/${this.bucket}` : "";
    const host = this.#pathStyle ? this.#endpoint.host : `${this.bucket}.${this.#endpoint.host}`;
    const base = this.#endpoint.pathname.replace(/\/+$/, "");
    const path = uriEncode(`${base}${bucketInPath}/${key ?? ""}`, true);
    const search = Object.entries(query).map(([k, v]) => (v === "" ? uriEncode(k) : `${uriEncode(k)}=${uriEncode(v)}`))
      .join("&");
    const url = `${this.#endpoint.protocol}//${host}${path}${search ? `?${search}` : ""}`;
    const payloadHash = input.signBody
      ? (body === undefined ? EMPTY_SHA256 : createHash("sha256").update(body).digest("hex"))
      : "UNSIGNED-PAYLOAD";
    for (let attempt = 1;; attempt++) {
      signal?.throwIfAborted();
      const headers = signRequest({
        method,
        host,
        path,
        query,
        headers: input.headers ?? {},
        payloadHash,
        region: this.#region,
        credentials: await this.#credentials(),
      });
      let response: Response;
      this.requests++;
      // A server that stops answering mid-request must not hang the run: give up on it in time.
      const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS + (body?.length ?? 0) / MIN_BYTES_PER_MS);
      const stop = signal ? AbortSignal.any([signal, timeout]) : timeout;
      /** A network failure: waits before the next attempt, or throws once the attempts are spent. */
      const failed = async (error: unknown) => {
        if (signal?.aborted) throw signal.reason ?? error;
        if (attempt < this.#attempts) return await delay(RETRY_DELAYS_MS[attempt - 1]!, signal);
        const why = error instanceof Error ? error.message : String(error);
        throw new ConnectionLostError(`Connection to '${this.#endpoint.host}' lost: ${why}`, { cause: error });
      };
      try {
        response = await fetch(url, { method, headers, body: (body ?? null) as BodyInit | null, signal: stop });
      } catch (error) {
        await failed(error);
        continue;
      }
      let bytes: Uint8Array;
      try {
        bytes = method === "HEAD" ? new Uint8Array(0) : input.into && response.status < 300 && response.body &&
            Number(response.headers.get("content-length")) > STREAMED_BODY
          ? await readInto(response.body, input.into)
          : new Uint8Array(await response.arrayBuffer());
      } catch (error) {
        await failed(error);
        continue;
      }
      const status = response.status;
      if (status < 300 || input.accept?.includes(status)) {
        // CompleteMultipartUpload and CopyObject may fail with a 200 and an error body.
        if (status === 200 && bytes.length > 0 && bytes.length < 4096 && (method === "POST" || method === "PUT")) {
          const text = new TextDecoder().decode(bytes);
          if (/^(<\?xml[^>]*>\s*)?<Error>/.test(text)) {
            if (attempt < this.#attempts && /InternalError|SlowDown/.test(text)) continue;
            throw errorFrom(status, text, method, key);
          }
        }
        return { status, headers: response.headers, body: bytes };
      }
      if ((status >= 500 || status === 429) && attempt < this.#attempts) {
        await delay(RETRY_DELAYS_MS[attempt - 1]!, signal);
        continue;
      }
      throw errorFrom(status, new TextDecoder().decode(bytes), method, key, response.headers);
    }
  }

  /** HEAD of the bucket: the region header AWS sends, or throws (NoSuchBucket, AccessDenied ...). */
  async headBucket(): Promise<string | undefined> {
    const { headers } = await this.request("HEAD", {});
    return headers.get("x-amz-bucket-region") ?? undefined;
  }

  /** Every object under `prefix`, a page (up to 1,000) at a time, in the server's (UTF-8) order. */
  async *list(prefix: string, signal?: AbortSignal): AsyncGenerator<ListedObject[]> {
    let token: string | undefined;
    do {
      const query: Record<string, string> = { "list-type": "2", prefix };
      if (token !== undefined) query["continuation-token"] = token;
      const { body } = await this.request("GET", { query, signal });
      const xml = new TextDecoder().decode(body);
      const page: ListedObject[] = [];
      for (const item of xmlAll(xml, "Contents")) {
        page.push({
          key: xmlOne(item, "Key") ?? "",
          size: Number(xmlOne(item, "Size") ?? 0),
          etag: unquote(xmlOne(item, "ETag") ?? ""),
          lastModified: xmlOne(item, "LastModified") ?? "",
        });
      }
      yield page;
      token = xmlOne(xml, "IsTruncated") === "true" ? xmlOne(xml, "NextContinuationToken") : undefined;
    } while (token !== undefined);
  }

  /** The object's metadata, or undefined when there is none at `key`. */
  async head(key: string, signal?: AbortSignal): Promise<ObjectHead | undefined> {
    const { status, headers } = await this.request("HEAD", { key, signal, accept: [404] });
    return status === 404 ? undefined : headOf(headers);
  }

  /** The object's content and metadata, or undefined when there is none at `key`. */
  async get(key: string, signal?: AbortSignal): Promise<{ head: ObjectHead; body: Uint8Array } | undefined> {
    const { status, headers, body } = await this.request("GET", { key, signal, accept: [404] });
    return status === 404 ? undefined : { head: headOf(headers), body };
  }

  /**
   * Bytes `start` up to `end` (exclusive) of the object at `key`, with the ETag of the version
   * read, so that a caller reading an object in ranges can tell when it changed between them.
   * Throws S3Error `NoSuchKey` when there is no object at `key`.
   */
  async getRange(
    key: string,
    start: number,
    end: number,
    signal?: AbortSignal,
  ): Promise<{ etag: string; body: Uint8Array }> {
    const { status, headers, body } = await this.request("GET", {
      key,
      headers: { range: `bytes=${start}-${end - 1}` },
      signal,
    });
    // A server that ignores Range answers 200 with the whole object.
    return { etag: unquote(headers.get("etag") ?? ""), body: status === 206 ? body : body.subarray(start, end) };
  }

  /**
   * Bytes `start` up to `end` (exclusive) of the object at `key`, or all of it without a range,
   * with its metadata (`head.size` is the whole object's size). With `ifMatch`, only while the
   * object's ETag is that one, and with `ifUnmodifiedSince` (a LastModified as listed), only while
   * it was not written since: else S3Error 412 `PreconditionFailed`. Undefined when there is no
   * object at `key`.
   */
  async getObject(
    key: string,
    options: {
      start?: number | undefined;
      end?: number | undefined;
      ifMatch?: string | undefined;
      ifUnmodifiedSince?: string | undefined;
      signal?: AbortSignal | undefined;
      /** Where the body goes (see {@linkcode RequestInput.into}). */
      into?: Uint8Array | undefined;
    } = {},
  ): Promise<{ head: ObjectHead; body: Uint8Array } | undefined> {
    const { start, end, ifMatch, ifUnmodifiedSince, signal, into } = options;
    const headers: Record<string, string> = {};
    if (start !== undefined && end !== undefined) headers.range = `bytes=${start}-${end - 1}`;
    if (ifMatch !== undefined) headers["if-match"] = `"${ifMatch}"`;
    if (ifUnmodifiedSince) headers["if-unmodified-since"] = new Date(ifUnmodifiedSince).toUTCString();
    const response = await this.request("GET", { key, headers, signal, accept: [404], into });
    if (response.status === 404) return undefined;
    const head = headOf(response.headers);
    const total = /\/(\d+)$/.exec(response.headers.get("content-range") ?? "")?.[1];
    let body = response.body;
    if (response.status === 206 && total !== undefined) head.size = Number(total);
    else if (start !== undefined && end !== undefined) {
      // A server that ignores Range answers 200 with the whole object.
      head.size = body.length;
      body = body.subarray(start, end);
    }
    return { head, body };
  }

  /** The first key that starts with `prefix`, or undefined when there is none (one LIST of one key). */
  async first(prefix: string, signal?: AbortSignal): Promise<string | undefined> {
    const query = { "list-type": "2", prefix, "max-keys": "1" };
    const { body } = await this.request("GET", { query, signal });
    const item = xmlAll(new TextDecoder().decode(body), "Contents")[0];
    return item === undefined ? undefined : xmlOne(item, "Key");
  }

  /**
   * Writes an object (with Content-MD5, so that the server checks what it got). Returns its
   * ETag, or undefined when a condition in `headers` (If-None-Match, If-Match) failed.
   */
  async put(
    key: string,
    body: Uint8Array | string,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const response = await this.request("PUT", {
      key,
      body,
      headers: { ...headers, "content-md5": md5Base64(body) },
      signal,
      accept: [412],
    });
    return response.status === 412 ? undefined : unquote(response.headers.get("etag") ?? "");
  }

  /**
   * {@linkcode S3Client.put} only over the version with ETag `etag`; undefined when the object
   * is another version now (or gone). radosgw 16.2 matches If-Match against the bare ETag and
   * refuses the quoted form HTTP prescribes (which AWS takes), so both are tried.
   */
  async putIfMatch(
    key: string,
    body: Uint8Array | string,
    etag: string,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    return await this.put(key, body, { "if-match": etag }, signal) ??
      await this.put(key, body, { "if-match": `"${etag}"` }, signal);
  }

  /**
   * Copies an object within the bucket on the server: with `meta`, its user metadata replaced
   * by it, else kept; with `ifMatch`, only while the source's ETag is that one. Returns the new
   * ETag and LastModified. Throws S3Error `NoSuchKey`, and `PreconditionFailed` (412) when the
   * source is no longer the version `ifMatch` names.
   */
  async copy(
    from: string,
    to: string,
    meta?: Record<string, string>,
    signal?: AbortSignal,
    ifMatch?: string,
  ): Promise<{ etag: string; lastModified: string }> {
    const headers: Record<string, string> = { "x-amz-copy-source": uriEncode(`/${this.bucket}/${from}`, true) };
    if (ifMatch !== undefined) {
      headers["x-amz-copy-source-if-match"] = `"${ifMatch}"`;
      // radosgw (16.2, and later versions' code) reads the condition under this older name alone.
      headers["x-amz-copy-if-match"] = `"${ifMatch}"`;
    }
    if (meta) {
      headers["x-amz-metadata-directive"] = "REPLACE";
      for (const [name, value] of Object.entries(meta)) headers[`x-amz-meta-${name}`] = value;
    }
    const { body } = await this.request("PUT", { key: to, headers, signal });
    const xml = new TextDecoder().decode(body);
    return { etag: unquote(xmlOne(xml, "ETag") ?? ""), lastModified: xmlOne(xml, "LastModified") ?? "" };
  }

  /** Deletes an object (S3 answers the same whether it was there or not). */
  async delete(key: string, headers?: Record<string, string>, signal?: AbortSignal): Promise<void> {
    await this.request("DELETE", { key, signal, ...(headers ? { headers } : {}) });
  }

  /** Starts a multipart upload with these headers (metadata); returns its upload id. */
  async createUpload(key: string, headers: Record<string, string>, signal?: AbortSignal): Promise<string> {
    const { body } = await this.request("POST", { key, query: { uploads: "" }, headers, signal });
    const id = xmlOne(new TextDecoder().decode(body), "UploadId");
    if (!id) throw new S3Error(500, "InvalidResponse", `No UploadId in the answer for '${key}'`);
    return id;
  }

  /** Uploads part `n` (from 1) of an upload; returns its ETag. */
  async uploadPart(key: string, uploadId: string, n: number, body: Uint8Array, signal?: AbortSignal): Promise<string> {
    const { headers } = await this.request("PUT", {
      key,
      query: { partNumber: String(n), uploadId },
      headers: { "content-md5": md5Base64(body) },
      body,
      signal,
    });
    return unquote(headers.get("etag") ?? "");
  }

  /**
   * Makes part `n` (from 1) of an upload from bytes `start` up to `end` (exclusive) of object
   * `from` in this bucket, on the server (UploadPartCopy); with `ifMatch`, only while its ETag is
   * that one (a server may ignore the condition: check the source again before completing).
   * Returns the part's ETag.
   */
  async copyPart(
    key: string,
    uploadId: string,
    n: number,
    from: { key: string; start: number; end: number; ifMatch?: string | undefined },
    signal?: AbortSignal,
  ): Promise<string> {
    const headers: Record<string, string> = {
      "x-amz-copy-source": uriEncode(`/${this.bucket}/${from.key}`, true),
      "x-amz-copy-source-range": `bytes=${from.start}-${from.end - 1}`,
    };
    if (from.ifMatch !== undefined) headers["x-amz-copy-source-if-match"] = `"${from.ifMatch}"`;
    const { body } = await this.request("PUT", { key, query: { partNumber: String(n), uploadId }, headers, signal });
    return unquote(xmlOne(new TextDecoder().decode(body), "ETag") ?? "");
  }

  /**
   * Completes an upload from its parts' ETags, in order; returns the object's ETag (asked with a
   * HEAD when the answer leaves it empty, as radosgw 16.2's does).
   */
  async completeUpload(key: string, uploadId: string, etags: readonly string[], signal?: AbortSignal): Promise<string> {
    const parts = etags.map((etag, i) =>
      `<Part><PartNumber>${i + 1}</PartNumber><ETag>"${escapeXml(etag)}"</ETag></Part>`
    );
    const body = `<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`;
    const response = await this.request("POST", { key, query: { uploadId }, body, signBody: true, signal });
    const etag = unquote(xmlOne(new TextDecoder().decode(response.body), "ETag") ?? "");
    return etag !== "" ? etag : (await this.head(key, signal))?.etag ?? "";
  }

  /** Aborts an upload (an upload already gone is no error). */
  async abortUpload(key: string, uploadId: string): Promise<void> {
    await this.request("DELETE", { key, query: { uploadId }, accept: [404] });
  }

  /** Every incomplete multipart upload under `prefix`. */
  async uploads(prefix: string): Promise<Upload[]> {
    const out: Upload[] = [];
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (;;) {
      const query: Record<string, string> = { uploads: "", prefix };
      if (keyMarker !== undefined) query["key-marker"] = keyMarker;
      if (idMarker !== undefined) query["upload-id-marker"] = idMarker;
      const xml = new TextDecoder().decode((await this.request("GET", { query })).body);
      for (const item of xmlAll(xml, "Upload")) {
        out.push({
          key: xmlOne(item, "Key") ?? "",
          uploadId: xmlOne(item, "UploadId") ?? "",
          initiated: Date.parse(xmlOne(item, "Initiated") ?? ""),
        });
      }
      if (xmlOne(xml, "IsTruncated") !== "true") return out;
      keyMarker = xmlOne(xml, "NextKeyMarker");
      idMarker = xmlOne(xml, "NextUploadIdMarker");
      if (!keyMarker) return out;
    }
  }
}

/** Reads `body` into `into`; a body longer than `into` ends up in a buffer of its own. */
async function readInto(body: ReadableStream<Uint8Array>, into: Uint8Array): Promise<Uint8Array> {
  let done = 0;
  let spill: Uint8Array[] | undefined;
  for await (const chunk of body) {
    if (spill) {
      spill.push(chunk);
      continue;
    }
    if (done + chunk.length <= into.length) {
      into.set(chunk, done);
      done += chunk.length;
      continue;
    }
    spill = [into.slice(0, done), chunk];
  }
  if (!spill) return into.subarray(0, done);
  const whole = new Uint8Array(spill.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of spill) {
    whole.set(c, at);
    at += c.length;
  }
  return whole;
}

function headOf(headers: Headers): ObjectHead {
  const meta: Record<string, string> = {};
  for (const [name, value] of headers) if (name.startsWith("x-amz-meta-")) meta[name.slice(11)] = value;
  const lastModified = headers.get("last-modified");
  return {
    size: Number(headers.get("content-length") ?? 0),
    etag: unquote(headers.get("etag") ?? ""),
    lastModified: lastModified ? new Date(lastModified).toISOString() : "",
    meta,
  };
}

function errorFrom(status: number, text: string, method: string, key: string | undefined, headers?: Headers): S3Error {
  const code = xmlOne(text, "Code") ?? headers?.get("x-amz-error-code") ??
    (status === 404
      ? "NotFound"
      : status === 403
      ? "AccessDenied"
      : status === 301
      ? "PermanentRedirect"
      : `HTTP${status}`);
  const detail = xmlOne(text, "Message");
  const what = key === undefined ? "" : ` '${key}'`;
  const region = xmlOne(text, "Region") ?? headers?.get("x-amz-bucket-region") ?? undefined;
  return new S3Error(status, code, `${method}${what}: ${code}${detail ? `: ${detail}` : ""} (HTTP ${status})`, region);
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}
