/**
 * A bucket and key prefix in S3-compatible object storage, read as a source and written as a
 * replica, laid out as rclone lays it out, so that rclone and foldersync read one bucket alike.
 *
 * - A file is the object `prefix/path`, with its mtime in the user metadata `mtime` (seconds
 *   with a nine-digit fraction, as rclone writes it) and its mode in `mode` (octal with the
 *   file type, `100644`, as `rclone --metadata` writes it). An object uploaded in parts also
 *   carries its MD5 in `md5chksum` (base64), as rclone's do.
 * - A directory is there when any key lies under it; `mkdir` also writes a zero-byte marker
 *   `prefix/path/`, which keeps an empty directory and carries the directory's mtime and mode.
 *
 * What an object lacks is unknown, not different (rclone writes `mtime` but no `mode` unless
 * told `--metadata`, and no directory markers): a file without `mode`, and a directory without
 * a marker or its metadata, list with {@linkcode UNKNOWN_MODE} and a NaN mtime, which the
 * engine never counts as a difference, so a bucket rclone wrote gets no write request. A file
 * without `mtime` lists with its LastModified (as the listing gives it, to the millisecond), as
 * rclone reads it; when its content is equal after all (the update finds the source's MD5
 * equal to the object's), only its metadata is replaced, by a copy onto itself: nothing is
 * uploaded again.
 * - A symbolic link is the object `prefix/path.rclonelink` whose content is the target
 *   (rclone's `--links`), with the link's mtime in its metadata.
 *
 * A no-op run costs one LIST request per 1,000 objects: the whole prefix is listed once, flat,
 * and the metadata a listing lacks comes from {@linkcode MetaCache} (see there why it is
 * exact); only objects it does not know get a HEAD (a link object a GET), once, read ahead of
 * the walk across directories.
 *
 * Reading (a source): a prefix without any object is a source that does not exist. A file is
 * read through ranged GETs that name the listed version (`If-Match` on its ETag), so an object
 * replaced meanwhile fails the copy with a ChangedError (the engine then copies it as it now
 * is) rather than mixing two versions; a small file is one GET, a large one is read in blocks
 * fetched ahead in parallel into reused buffers (see {@linkcode ObjectReader}).
 *
 * Writing (a replica): a file up to the multipart threshold is one PUT from memory with
 * Content-MD5 (an S3 PUT replaces an object atomically, so no temp object is needed); a larger
 * one goes up in parts, several at a time, and an upload that fails or is stopped is always
 * aborted. Uploads a killed run left incomplete are aborted when the replica is next opened for
 * writing and no live run holds its lock. A source file from another backend is read through
 * its reader (its MD5 computed on the way); one from this endpoint and bucket is copied on the
 * server.
 *
 * Needs `--allow-net` for the endpoint, `--allow-env` for the variables in `AWS_ENV` (descriptor.ts), `--allow-read`
 * for a local source, `~/.aws` and the cache folder, `--allow-write` for the cache folder.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { ChangedError, ConnectionLostError, errorLine, UsageError } from "../../model/errors.ts";
import { logger } from "../../log.ts";
import { type Capabilities } from "../../model/capabilities.ts";
import {
  type Backend,
  type BackendOptions,
  type CopyResult,
  type FileReader,
  type ListOptions,
  type SourceFile,
} from "../backend.ts";
import { LOCK_NAME, lockIsStale, parseLock, processAlive } from "../../model/lock.ts";
import { type LockEntry, takeRemoteLock } from "../remote_lock.ts";
import type { S3Target } from "../target.ts";
import {
  compareNames,
  type Entry,
  type EntryKind,
  INCOMPLETE,
  ListingBatch,
  UNKNOWN_MODE,
  VANISHED,
} from "../../model/listing.ts";
import { createHasher } from "../../content/hash.ts";
import { type HashName } from "../../model/hash_name.ts";
import type { AttrsAction, CopyAction, DirAttrs, LinkAction, RemoveAction } from "../../model/actions.ts";
import { backupName, backupSuffix } from "../backup_names.ts";
import { type BackupRecord, formatRecords, pruneBackups, type PruneOptions } from "../backup_journal.ts";
import { s3BackupStore } from "./backup_store.ts";
import { type ListedObject, type ObjectHead, S3Client, S3Error } from "./client.ts";
import { resolveCredentials, resolveRegion } from "./credentials.ts";
import { MetaCache, type MetaRecord } from "./meta_cache.ts";
import { BlockPool, ObjectReader } from "./object_reader.ts";
import { Slots } from "./slots.ts";
import { openLocalReader } from "../local_reader.ts";

/** Fine-tuning of the S3 backend (tests make the sizes small). */
export interface S3Tuning {
  /**
   * Files larger than this go up in parts.
   * @default 16 MiB
   */
  multipartThreshold?: number;
  /**
   * Size of each part (raised for files that would need more than 10,000 parts).
   * @default 16 MiB
   */
  partSize?: number;
  /**
   * Parts in flight at once, over all files (each holds a part in memory). Measured on a 1 GiB
   * upload to radosgw: 8 took 15 to 16 s and 700 MB, 4 took 12 to 13 s and 410 MB, 2 13.5 s and 280 MB.
   * @default 4
   */
  partSlots?: number;
  /**
   * HEAD requests in flight at once while listing.
   * @default 16
   */
  heads?: number;
  /**
   * Attempts for a request that can be sent again.
   * @default 3
   */
  attempts?: number;
  /**
   * Bytes one ranged GET fetches for a copy that reads a source object in order.
   * @default 8 MiB
   */
  readBlockSize?: number;
  /**
   * Blocks fetched ahead of a copy that reads a source object in order, besides the one it needs.
   * @default 3
   */
  readAhead?: number;
  /**
   * Blocks held at once over all copies out of the bucket (each holds `readBlockSize` bytes); a
   * read that finds none free fetches just its own range.
   * @default 12
   */
  readBlocks?: number;
  /**
   * The largest object copied server-side in one request (S3's limit); larger ones are copied
   * in parts on the server.
   * @default 5 GiB
   */
  maxCopy?: number;
  /**
   * Size of each part of a server-side copy in parts.
   * @default 512 MiB
   */
  copyPartSize?: number;
}

/** The suffix of link objects (rclone's `--links`). */
export const LINK_SUFFIX = ".rclonelink";

/** The MD5 of nothing: the ETag of a directory marker. */
const EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e";

/** The hash an S3 replica knows without reading objects: single-part ETags and `md5chksum` are MD5s. */
const S3_HASH: HashName = "md5";

/** An ETag that is the object's MD5 (a single-part upload; a multipart ETag ends in `-N`). */
const MD5_ETAG = /^[0-9a-f]{32}$/;

/** The largest object a single server-side copy can take (larger ones need a multipart copy). */
const MAX_COPY = 5 * 1024 ** 3;

const MIB = 1024 * 1024;

/** A source file's object, for a replica in the same bucket to copy it on the server. */
export interface S3ObjectRef {
  /** The endpoint's URL. */
  endpoint: string;
  bucket: string;
  /** The object's key. */
  key: string;
  /** The version listed, which the copy must take. */
  etag: string;
  size: number;
}

/** A source file of an S3 bucket: where its object lives (see {@linkcode s3ObjectOf}). */
interface S3SourceFile extends SourceFile {
  readonly s3: S3ObjectRef;
}

/**
 * The object behind source file `from` when it is in a bucket, else undefined: an S3 replica
 * on the same endpoint and bucket copies it on the server instead of reading it.
 *
 * @example Telling a bucket's file
 * ```ts
 * const object = s3ObjectOf(source.file(entry));
 * if (object?.bucket === "backups") console.log(object.key);
 * ```
 */
export function s3ObjectOf(from: SourceFile): S3ObjectRef | undefined {
  const ref = (from as Partial<S3SourceFile>).s3;
  return ref !== undefined && typeof ref.key === "string" && typeof ref.etag === "string" ? ref : undefined;
}

/** An object in the flat listing, by key relative to the prefix. */
interface Obj {
  key: string;
  size: number;
  etag: string;
  lastModified: string;
}

/** A directory of the listing: what is directly in it. */
class DirNode {
  dirs = new Map<string, DirNode>();
  files = new Map<string, Obj>();
  links = new Map<string, Obj>();
  marker: Obj | undefined;
}

/**
 * PURE: an mtime in ms as rclone writes it into `mtime` metadata: seconds, nine-digit fraction.
 *
 * @example
 * ```ts
 * formatMtime(1700000000123); // "1700000000.123000000"
 * ```
 */
export function formatMtime(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const fraction = ms - seconds * 1000;
  return `${seconds}.${String(Math.round(fraction * 1e6)).padStart(9, "0")}`;
}

/**
 * PURE: `mtime` metadata (seconds with a fraction, or RFC 3339) in ms, truncated; undefined
 * when it is not a time.
 *
 * @example
 * ```ts
 * parseMtime("1795386890.281145092"); // 1795386890281
 * ```
 */
export function parseMtime(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+)(?:\.(\d*))?$/.exec(text.trim());
  if (match) return Number(match[1]) * 1000 + Number((match[2] ?? "").slice(0, 3).padEnd(3, "0"));
  const seconds = Number(text);
  if (Number.isFinite(seconds)) return Math.floor(seconds * 1000);
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : date;
}

/**
 * PURE: `mode` metadata (octal, possibly with the file type) as permission bits;
 * {@linkcode UNKNOWN_MODE} when there is none (rclone writes none without `--metadata`).
 *
 * @example
 * ```ts
 * parseMode("100640"); // 0o640
 * parseMode(undefined); // UNKNOWN_MODE
 * ```
 */
export function parseMode(text: string | undefined): number {
  if (text === undefined || !/^[0-7]+$/.test(text.trim())) return UNKNOWN_MODE;
  return parseInt(text.trim(), 8) & 0o7777;
}

/** `mode` metadata for permission bits of an entry of `kind`, with the type as rclone writes it. */
function formatMode(kind: EntryKind, mode: number): string {
  const type = kind === "dir" ? 0o040000 : kind === "symlink" ? 0o120000 : 0o100000;
  return (type | (mode & 0o7777)).toString(8);
}

/** The `Deno.errors.NotFound` for a replica entry already gone. */
function gone(rel: string): Deno.errors.NotFound {
  return new Deno.errors.NotFound(`Replica entry is gone: '${rel}'`);
}

/** How the endpoint is reached. */
interface Endpoint {
  url: URL;
  pathStyle: boolean;
}

/** The endpoint: `--s3-endpoint`, else AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS itself. */
function endpointFor(
  option: string | undefined,
  env: (name: string) => string | undefined,
  region: string,
  bucket: string,
): Endpoint {
  const text = option ?? (env("AWS_ENDPOINT_URL_S3") || env("AWS_ENDPOINT_URL") || undefined);
  if (text === undefined) {
    // Virtual-hosted style, except for bucket names with dots (they break the TLS wildcard).
    return { url: new URL(`https://s3.${region}.amazonaws.com`), pathStyle: bucket.includes(".") };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`Malformed S3 endpoint '${text}': expected http(s)://host[:port]`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "" || url.search || url.hash) {
    throw new UsageError(`Malformed S3 endpoint '${text}': expected http(s)://host[:port]`);
  }
  return { url, pathStyle: true };
}

/**
 * Opens a bucket prefix, as a source (read-only) or a replica: resolves credentials, region
 * and endpoint, checks that the bucket can be listed, and lists the prefix once. Unless
 * `options.readOnly`, aborts the incomplete multipart uploads under the prefix when no live run
 * holds its lock. A prefix without any object is there for {@linkcode Backend.root} only once
 * written: a source that does not exist.
 *
 * Needs `--allow-net` for the endpoint, `--allow-env` for the AWS variables, `--allow-read`
 * for `~/.aws` and `options.cacheDir`, `--allow-write` for `options.cacheDir`.
 *
 * @throws {UsageError} Before writing anything, for a `--hash` other than MD5 (before any
 *   request: every object compared would be downloaded on every run), a malformed endpoint, an
 *   endpoint that cannot be reached, no or bad credentials, a bucket that does not exist or
 *   cannot be listed, a backup folder in another bucket.
 * @example Opening a bucket prefix to restore from
 * ```ts
 * const source = await openS3Backend(
 *   { kind: "s3", bucket: "backups", prefix: "photos", display: "s3://backups/photos" },
 *   { jobs: 8, readOnly: true },
 * );
 * ```
 */
export async function openS3Backend(
  target: S3Target,
  options: BackendOptions,
  tuning: S3Tuning = {},
): Promise<Backend & { readonly requests: number }> {
  if (options.hash !== undefined && options.hash !== S3_HASH) {
    throw new UsageError(
      `Hash '${options.hash}' is not available for an S3 replica: it knows ${S3_HASH} (leave out --hash)`,
    );
  }
  const env = (name: string) => Deno.env.get(name);
  const region = resolveRegion(env);
  const endpoint = endpointFor(options.s3Endpoint, env, region, target.bucket);
  const credentials = resolveCredentials(env);
  const client = new S3Client({
    endpoint: endpoint.url,
    pathStyle: endpoint.pathStyle,
    region,
    credentials,
    bucket: target.bucket,
    ...(tuning.attempts !== undefined ? { attempts: tuning.attempts } : {}),
  });
  const backend = new S3Backend(target, options, tuning, client, endpoint.url.href);
  await backend.open();
  return backend;
}

/** {@linkcode openS3Backend} under the name lib/backend/open.ts imports. */
export const openS3Replica: typeof openS3Backend = openS3Backend;

/** A bucket prefix, read and written; made by {@linkcode openS3Backend}. */
class S3Backend implements Backend {
  readonly display: string;
  /** MD5 digests come with the listing (single-part ETags) or the metadata (md5chksum): --checksum uses MD5. */
  readonly caps: Capabilities = {
    modes: true,
    dirTimes: true,
    linkTimes: true,
    mtimeResolutionMs: 1,
    hash: S3_HASH,
    // One request a small file: many at once hide its round trip.
    jobs: 32,
    // A restore into a local folder: GETs are radosgw's cheapest requests, and the local side
    // holds at most 1 MiB a file in memory (5,000 small objects: 0.65x the time of 32 at once,
    // 0.80x the CPU, 5% more memory; 128 gained 6% more for 9% more CPU).
    readJobs: 64,
  };
  readonly protect: string | undefined;
  readonly backsUp: boolean;
  #target: S3Target;
  #options: BackendOptions;
  #client: S3Client;
  #cache: MetaCache;
  #signal: AbortSignal | undefined;
  /** The key prefix with its trailing slash (`""` for the whole bucket). */
  #base: string;
  /** The backup folder's key prefix, with its trailing slash; undefined without one. */
  #backupBase: string | undefined;
  /** What this run put into the backup folder, for its journal (see lib/backend/backup_journal.ts). */
  #backupRecords: BackupRecord[] = [];
  #suffix: string;
  #threshold: number;
  #partSize: number;
  /** Part buffers free for the next part (at most one a part slot). */
  #partBuffers: Uint8Array[] = [];
  #parts: Slots;
  #heads: Slots;
  #headCount: number;
  /** The endpoint's URL, which with the bucket tells a source object a server-side copy can take. */
  #endpoint: string;
  #readAhead: number;
  /** The buffers of the blocks readers of source objects fetch (see {@linkcode ObjectReader}). */
  #readPool: BlockPool;
  #maxCopy: number;
  #copyPartSize: number;
  /** Metadata being read (HEADs, link GETs), by key relative to the prefix: asked once. */
  #pending = new Map<string, Promise<MetaRecord | undefined>>();
  /** Stops the metadata read ahead of the walk. */
  #ahead: AbortController | undefined;
  #tree: DirNode = new DirNode();
  /**
   * The tree is to be listed (again) before it is read from its root: not listed yet, or this
   * backend wrote since. A tree nothing wrote to is listed once however often it is walked (the
   * empty-source guard walks a source of folders again): an instance serves one run.
   */
  #stale = true;

  constructor(target: S3Target, options: BackendOptions, tuning: S3Tuning, client: S3Client, endpoint: string) {
    this.display = target.display;
    this.#target = target;
    this.#options = options;
    this.#client = client;
    this.#signal = options.signal;
    this.#base = target.prefix === "" ? "" : `${target.prefix}/`;
    this.#cache = MetaCache.open(options.cacheDir, endpoint, target.bucket, target.prefix);
    this.#suffix = backupSuffix(options.started ?? new Date());
    this.#threshold = tuning.multipartThreshold ?? 16 * 1024 * 1024;
    this.#partSize = tuning.partSize ?? 16 * 1024 * 1024;
    this.#parts = new Slots(tuning.partSlots ?? 4);
    this.#headCount = tuning.heads ?? 16;
    this.#heads = new Slots(this.#headCount);
    this.#endpoint = endpoint;
    this.#readAhead = tuning.readAhead ?? 3;
    this.#readPool = new BlockPool(tuning.readBlocks ?? 12, tuning.readBlockSize ?? 8 * MIB);
    this.#maxCopy = tuning.maxCopy ?? MAX_COPY;
    this.#copyPartSize = tuning.copyPartSize ?? 512 * MIB;
    const backup = this.#backupPrefix(options.backupDir);
    this.#backupBase = backup?.base;
    this.protect = backup?.protect;
    this.backsUp = backup !== undefined;
  }

  /** Requests sent so far. */
  get requests(): number {
    return this.#client.requests;
  }

  /** The backup folder as a key prefix, and the replica-relative path to protect when it lies inside. */
  #backupPrefix(text: string | undefined): { base: string; protect: string | undefined } | undefined {
    if (text === undefined || text === "") return undefined;
    let key: string;
    if (text.startsWith("s3://")) {
      const rest = text.slice(5);
      const slash = rest.indexOf("/");
      const bucket = slash === -1 ? rest : rest.slice(0, slash);
      if (bucket !== this.#target.bucket) {
        throw new UsageError(`Backup directory must be in the replica's bucket '${this.#target.bucket}': '${text}'`);
      }
      key = slash === -1 ? "" : rest.slice(slash + 1);
    } else if (text.startsWith("/")) {
      key = text;
    } else {
      key = this.#base + text;
    }
    const parts = key.split("/").filter((part) => part !== "");
    if (parts.some((part) => part === "." || part === "..")) {
      throw new UsageError(`Malformed backup directory '${text}': '.' or '..' in a key prefix`);
    }
    const prefix = parts.join("/");
    if (prefix === "" || prefix === this.#target.prefix) {
      throw new UsageError(`Backup directory is the replica itself: '${text}'`);
    }
    const base = `${prefix}/`;
    if (this.#base !== "" && this.#base.startsWith(base)) {
      throw new UsageError(`Backup directory contains the replica: '${text}'`);
    }
    const inside = base.startsWith(this.#base) ? prefix.slice(this.#base.length) : undefined;
    return { base, protect: inside };
  }

  /** The object key of replica path `rel`. */
  #key(rel: string): string {
    return this.#base + rel;
  }

  /** Lists the prefix and cleans up what a killed run left, turning setup failures into one clear line. */
  async open(): Promise<void> {
    try {
      await this.#listTree();
      if (!this.#options.readOnly) await this.#abortStaleUploads();
    } catch (error) {
      throw this.#usage(error);
    }
  }

  /** A failure while opening, as the one line the user sees. */
  #usage(error: unknown): unknown {
    if (error instanceof UsageError) return error;
    const endpoint = this.#client.host;
    const bucket = this.#target.bucket;
    if (error instanceof ConnectionLostError) {
      const why = error.cause instanceof Error ? error.cause.message : error.message;
      return new UsageError(`Cannot reach S3 endpoint '${endpoint}': ${why}`, { cause: error });
    }
    if (error instanceof S3Error) {
      switch (error.code) {
        case "NoSuchBucket":
          return new UsageError(`Bucket does not exist: '${bucket}' at '${endpoint}'`, { cause: error });
        case "InvalidAccessKeyId":
          return new UsageError(`S3 rejected the access key for bucket '${bucket}': the key is unknown`, {
            cause: error,
          });
        case "SignatureDoesNotMatch":
          return new UsageError(`S3 rejected the credentials for bucket '${bucket}': the secret key is wrong`, {
            cause: error,
          });
        case "AccessDenied":
          return new UsageError(`Access denied to bucket '${bucket}': ${error.message}`, { cause: error });
      }
      return new UsageError(`Cannot list bucket '${bucket}' at '${endpoint}': ${error.message}`, { cause: error });
    }
    return error;
  }

  /** One flat listing of the prefix, into the tree; the metadata of known objects from the cache. */
  async #listTree(): Promise<void> {
    const tree = new DirNode();
    const seen = new Set<string>();
    const start = this.#client.requests;
    let objects = 0;
    let redirected = false;
    for (;;) {
      try {
        for await (const page of this.#client.list(this.#base, this.#signal)) {
          for (const object of page) {
            objects++;
            this.#place(tree, object, seen);
          }
        }
        break;
      } catch (error) {
        // AWS names the bucket's region when a request was signed for another: sign for it.
        if (!redirected && error instanceof S3Error && error.region && error.region !== this.#client.region) {
          this.#client.region = error.region;
          redirected = true;
          continue;
        }
        throw error;
      }
    }
    this.#cache.retain(seen);
    this.#tree = tree;
    this.#stale = false;
    logger.debug("{text}", {
      text: `S3 listing of '${this.display}': ${objects} objects in ${this.#client.requests - start} requests`,
    });
  }

  /** Puts one listed object into the tree (keys that cannot be paths are left out). */
  #place(tree: DirNode, object: ListedObject, seen: Set<string>): void {
    const key = object.key.slice(this.#base.length);
    if (key === LOCK_NAME) return;
    if (key === "") {
      // The root's own marker, `prefix/`: it carries the root's attributes.
      seen.add(key);
      tree.marker = { key, size: object.size, etag: object.etag, lastModified: object.lastModified };
      return;
    }
    const isMarker = key.endsWith("/");
    const parts = (isMarker ? key.slice(0, -1) : key).split("/");
    if (parts.some((part) => part === "" || part === "." || part === "..")) {
      logger.debug("{text}", { text: `S3 key left out (not a path): '${object.key}'` });
      return;
    }
    seen.add(key);
    const obj: Obj = { key, size: object.size, etag: object.etag, lastModified: object.lastModified };
    let dir = tree;
    const last = isMarker ? parts.length : parts.length - 1;
    for (let i = 0; i < last; i++) {
      const name = parts[i]!;
      let next = dir.dirs.get(name);
      if (!next) dir.dirs.set(name, next = new DirNode());
      dir = next;
    }
    if (isMarker) {
      dir.marker = obj;
      return;
    }
    const name = parts[parts.length - 1]!;
    if (name.endsWith(LINK_SUFFIX) && name.length > LINK_SUFFIX.length) {
      dir.links.set(name.slice(0, -LINK_SUFFIX.length), obj);
    } else {
      dir.files.set(name, obj);
    }
  }

  /** The tree's node of directory `rel`, or undefined. */
  #node(rel: string): DirNode | undefined {
    let dir: DirNode | undefined = this.#tree;
    if (rel === "") return dir;
    for (const name of rel.split("/")) {
      dir = dir.dirs.get(name);
      if (!dir) return undefined;
    }
    return dir;
  }

  /**
   * The metadata of a listed object: from the cache, else a HEAD (a GET for a link), then
   * cached; asked of the server once however many callers wait for it.
   */
  #meta(obj: Obj, kind: EntryKind): Promise<MetaRecord | undefined> {
    const known = this.#cache.match(obj.key, obj.size, obj.etag, obj.lastModified);
    if (known) return Promise.resolve(known);
    const id = `${kind}\0${obj.key}\0${obj.etag}\0${obj.lastModified}`;
    let pending = this.#pending.get(id);
    if (!pending) {
      pending = this.#readMeta(obj, kind).finally(() => this.#pending.delete(id));
      this.#pending.set(id, pending);
    }
    return pending;
  }

  /**
   * Reads the metadata of the whole tree that the cache does not know, in the order the walk
   * lists it, {@linkcode S3Tuning.heads} at a time, so that no listing waits for its objects'
   * HEADs one directory at a time. Excluded entries are left alone; the listings themselves
   * report what fails.
   */
  prefetch(options: ListOptions): void {
    this.#ahead?.abort();
    const stop = this.#ahead = new AbortController();
    const todo = this.#unknown(options.filter);
    const worker = async () => {
      for (let next = todo.next(); !next.done && !stop.signal.aborted; next = todo.next()) {
        await this.#meta(next.value.obj, next.value.kind).catch(() => {});
      }
    };
    for (let i = 0; i < this.#headCount; i++) void worker();
  }

  /** The objects of the tree whose metadata the cache does not know, depth first in walk order. */
  *#unknown(filter: ListOptions["filter"]): Generator<{ obj: Obj; kind: EntryKind }> {
    const stack: Array<[string, DirNode]> = [["", this.#tree]];
    const known = (obj: Obj) => this.#cache.match(obj.key, obj.size, obj.etag, obj.lastModified) !== undefined;
    while (stack.length > 0) {
      const [dir, node] = stack.pop()!;
      const prefix = dir === "" ? "" : `${dir}/`;
      const subdirs: Array<[string, DirNode]> = [];
      for (const [name, child] of node.dirs) {
        if (filter?.excludes(prefix + name, true)) continue;
        subdirs.push([prefix + name, child]);
        if (child.marker && !known(child.marker)) yield { obj: child.marker, kind: "dir" };
      }
      for (const [name, obj] of node.files) {
        if (!node.dirs.has(name) && !filter?.excludes(prefix + name, false) && !known(obj)) yield { obj, kind: "file" };
      }
      for (const [name, obj] of node.links) {
        const kind = node.dirs.has(name) || node.files.has(name) ? "file" : "symlink";
        const shown = kind === "file" ? name + LINK_SUFFIX : name;
        if (!filter?.excludes(prefix + shown, false) && !known(obj)) yield { obj, kind };
      }
      subdirs.sort((a, b) => compareNames(b[0], a[0]));
      stack.push(...subdirs);
    }
  }

  /** Reads the metadata of a listed object from the server, and caches it. */
  async #readMeta(obj: Obj, kind: EntryKind): Promise<MetaRecord | undefined> {
    return await this.#heads.run(async () => {
      let head: ObjectHead | undefined;
      let target: string | undefined;
      if (kind === "symlink") {
        const got = await this.#client.get(this.#key(obj.key), this.#signal);
        if (got) {
          head = got.head;
          target = new TextDecoder().decode(got.body);
        }
      } else {
        head = await this.#client.head(this.#key(obj.key), this.#signal);
      }
      if (!head) return undefined;
      // Changed between the listing and now: right for this run, but not to be cached under the listing's key.
      if (head.etag !== obj.etag || head.size !== obj.size) return recordOf(head, kind, target);
      // The listing's LastModified has milliseconds; the HEAD's Last-Modified whole seconds.
      const record = recordOf({ ...head, lastModified: obj.lastModified || head.lastModified }, kind, target);
      this.#cache.set(obj.key, record);
      return record;
    });
  }

  async root(): Promise<Entry | undefined> {
    if (this.#stale) await this.#listTree();
    const tree = this.#tree;
    const empty = tree.dirs.size === 0 && tree.files.size === 0 && tree.links.size === 0;
    if (this.#base !== "" && empty && !tree.marker) {
      const marker = await this.#client.head(this.#base, this.#signal);
      if (!marker) return undefined;
      tree.marker = { key: "", size: marker.size, etag: marker.etag, lastModified: marker.lastModified };
    }
    return await this.#dirEntry(tree);
  }

  /** A directory's entry: its marker's mtime and mode (unknown without a marker). */
  async #dirEntry(node: DirNode): Promise<Entry> {
    // The bucket's root has no marker: its attributes live only in the cache.
    const record = node === this.#tree && this.#base === ""
      ? this.#cache.get("")
      : node.marker
      ? await this.#meta(node.marker, "dir")
      : undefined;
    return { kind: "dir", size: 0, mtimeMs: record?.mtimeMs ?? NaN, mode: record?.mode ?? UNKNOWN_MODE };
  }

  async list(dir: string, options: ListOptions): Promise<ListingBatch> {
    if (dir === "" && this.#stale) await this.#listTree();
    const batch = new ListingBatch();
    const k = batch.begin(dir);
    const node = this.#node(dir);
    if (!node) {
      if (dir !== "") batch.flags[k]! |= VANISHED;
      return batch;
    }
    const prefix = dir === "" ? "" : `${dir}/`;
    const items = new Map<string, { kind: EntryKind; obj?: Obj; node?: DirNode }>();
    for (const [name, child] of node.dirs) items.set(name, { kind: "dir", node: child });
    for (const [name, obj] of node.files) if (!items.has(name)) items.set(name, { kind: "file", obj });
    for (const [name, obj] of node.links) {
      // A link shadowed by a file or directory of its name shows as the plain object it is.
      if (!items.has(name)) items.set(name, { kind: "symlink", obj });
      else if (!items.has(name + LINK_SUFFIX)) items.set(name + LINK_SUFFIX, { kind: "file", obj });
    }
    const names = [...items.keys()]
      .filter((name) => !options.filter?.excludes(prefix + name, items.get(name)!.kind === "dir"))
      .sort(compareNames);
    const entries = await Promise.all(names.map(async (name): Promise<Entry | undefined> => {
      const item = items.get(name)!;
      if (item.kind === "dir") return await this.#dirEntry(item.node!);
      try {
        const record = await this.#meta(item.obj!, item.kind);
        if (!record) return undefined; // gone since the listing
        if (item.kind === "symlink") {
          const target = record.target ?? "";
          return {
            kind: "symlink",
            size: new TextEncoder().encode(target).length,
            mtimeMs: record.mtimeMs,
            mode: 0o777,
            target,
          };
        }
        return { kind: "file", size: record.size, mtimeMs: record.mtimeMs, mode: record.mode };
      } catch (error) {
        if (error instanceof ConnectionLostError || this.#signal?.aborted) throw error;
        batch.problems.push({ path: prefix + name, message: error instanceof Error ? error.message : String(error) });
        batch.flags[k]! |= INCOMPLETE;
        return undefined;
      }
    }));
    for (let i = 0; i < names.length; i++) {
      const entry = entries[i];
      if (entry) batch.push(names[i]!, entry);
    }
    return batch;
  }

  /** The object of file or link `rel` in the listing, if it was listed. */
  #listed(rel: string, kind: EntryKind): Obj | undefined {
    const slash = rel.lastIndexOf("/");
    const node = this.#node(slash === -1 ? "" : rel.slice(0, slash));
    const name = slash === -1 ? rel : rel.slice(slash + 1);
    return kind === "symlink" ? node?.links.get(name) : node?.files.get(name);
  }

  /** The key (relative to the prefix) of entry `rel` of `kind`. */
  #relKey(rel: string, kind: EntryKind): string {
    return kind === "dir" ? `${rel}/` : kind === "symlink" ? `${rel}${LINK_SUFFIX}` : rel;
  }

  /**
   * The entry at `rel` now, asked of the server: a file (HEAD), else a link (its
   * `.rclonelink` object), else a directory (its marker, or any key under it); undefined when
   * there is none. A file or link found so replaces the listed version, so that a copy made
   * after it reads the object as it now is.
   */
  async stat(rel: string): Promise<Entry | undefined> {
    if (rel === "") return await this.root();
    const key = this.#key(rel);
    const head = await this.#client.head(key, this.#signal);
    if (head) {
      this.#relist(rel, "file", head);
      const record = recordOf(head, "file", undefined);
      return { kind: "file", size: record.size, mtimeMs: record.mtimeMs, mode: record.mode };
    }
    const link = await this.#client.get(this.#key(rel + LINK_SUFFIX), this.#signal);
    if (link) {
      this.#relist(rel, "symlink", link.head);
      const target = new TextDecoder().decode(link.body);
      const record = recordOf(link.head, "symlink", target);
      return { kind: "symlink", size: link.body.length, mtimeMs: record.mtimeMs, mode: 0o777, target };
    }
    const first = await this.#client.first(`${key}/`, this.#signal);
    if (first === undefined) return undefined;
    const marker = first === `${key}/` ? await this.#client.head(first, this.#signal) : undefined;
    const record = marker ? recordOf(marker, "dir", undefined) : undefined;
    return { kind: "dir", size: 0, mtimeMs: record?.mtimeMs ?? NaN, mode: record?.mode ?? UNKNOWN_MODE };
  }

  /** Puts the object of file or link `rel` as `head` shows it now into the listed tree. */
  #relist(rel: string, kind: "file" | "symlink", head: ObjectHead): void {
    const parts = rel.split("/");
    const name = parts.pop()!;
    let node = this.#tree;
    for (const part of parts) {
      let next = node.dirs.get(part);
      if (!next) node.dirs.set(part, next = new DirNode());
      node = next;
    }
    const key = kind === "symlink" ? rel + LINK_SUFFIX : rel;
    const obj = { key, size: head.size, etag: head.etag, lastModified: head.lastModified };
    (kind === "symlink" ? node.links : node.files).set(name, obj);
  }

  /**
   * Source file `entry.path`: the object version listed (or found by {@linkcode stat} since),
   * read with ranged GETs that name its ETag (`If-Match`), so that an object replaced
   * meanwhile is a {@linkcode ChangedError}, never a mix of two versions. Reads in order are
   * served from blocks fetched ahead in parallel (see {@linkcode ObjectReader}). Its `s3` field
   * tells a replica in the same bucket where the object lives, to copy it on the server.
   */
  file(entry: { path: string; size: number; mtimeMs: number; mode: number }): SourceFile {
    const rel = entry.path;
    const key = this.#key(rel);
    const listed = this.#listed(rel, "file");
    const version = listed ? { ...listed } : undefined;
    /** A GET that named the listed version succeeded: what was read is that version. */
    let confirmed = false;
    /** The version to read: the listed one, else the object as it is now. */
    const resolve = async (): Promise<Obj> => {
      if (version) return version;
      const head = await this.#client.head(key, this.#signal);
      if (!head) throw new Deno.errors.NotFound(`Source file is gone: '${rel}'`);
      return { key: rel, size: head.size, etag: head.etag, lastModified: head.lastModified };
    };
    const file: SourceFile & { s3?: S3ObjectRef } = {
      path: rel,
      size: entry.size,
      mtimeMs: entry.mtimeMs,
      mode: entry.mode,
      open: async (signal?: AbortSignal): Promise<FileReader> => {
        const obj = await resolve();
        const stop = signal && this.#signal ? AbortSignal.any([signal, this.#signal]) : signal ?? this.#signal;
        const fetch = async (start: number, end: number, abort: AbortSignal, into?: Uint8Array) => {
          const body = await this.#readVersion(rel, obj, { start, end, into }, abort);
          confirmed = true;
          return body;
        };
        return new ObjectReader(obj.size, fetch, { ahead: this.#readAhead, pool: this.#readPool, signal: stop });
      },
      check: async () => {
        if (confirmed) return;
        const obj = await resolve();
        const head = await this.#client.head(key, this.#signal);
        if (!head) throw new Deno.errors.NotFound(`Source file is gone: '${rel}'`);
        if (head.etag !== obj.etag) throw changed();
      },
      knownMd5: async () => {
        const obj = await resolve();
        return MD5_ETAG.test(obj.etag) ? obj.etag : (await this.#meta(obj, "file"))?.md5;
      },
    };
    if (version) {
      file.s3 = {
        endpoint: this.#endpoint,
        bucket: this.#target.bucket,
        key,
        etag: version.etag,
        size: version.size,
      };
    }
    return file;
  }

  /**
   * Bytes `range.start` to `range.end` of version `obj` of source file `rel` (all of it
   * without a Range header when that is the whole object), into `range.into` when given. Throws {@linkcode ChangedError} when the object is
   * another version now, `Deno.errors.NotFound` when it is gone.
   */
  async #readVersion(
    rel: string,
    obj: Obj,
    range: { start: number; end: number; into?: Uint8Array | undefined },
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const { start, end, into } = range;
    const whole = start === 0 && end === obj.size;
    let got: { head: ObjectHead; body: Uint8Array } | undefined;
    try {
      got = await this.#client.getObject(this.#key(rel), {
        ...(whole ? {} : { start, end }),
        ifMatch: obj.etag,
        into,
        signal,
      });
    } catch (error) {
      if (error instanceof S3Error && error.status === 412) throw changed();
      throw error;
    }
    if (!got) throw new Deno.errors.NotFound(`Source file is gone: '${rel}'`);
    // A server that ignores If-Match still names the version it sent.
    if (got.head.etag !== obj.etag || got.body.length !== end - start) throw changed();
    return got.body;
  }

  async remove(action: RemoveAction): Promise<boolean> {
    this.#writable();
    const relKey = this.#relKey(action.path, action.kind);
    if (this.#backupBase !== undefined && !action.leftover) {
      await this.#backup(action.path, action.kind, true);
      return true;
    }
    // S3 answers a DELETE of a missing key as of a present one: an entry gone already is removed too.
    await this.#client.delete(this.#key(relKey), undefined, this.#signal);
    this.#cache.delete(relKey);
    return false;
  }

  /**
   * Copies entry `rel` into the backup folder on the server (metadata kept), under a name not
   * yet taken there, then, with `remove`, deletes it. Returns false when there was nothing to
   * back up.
   */
  async #backup(rel: string, kind: EntryKind, remove: boolean): Promise<boolean> {
    const relKey = this.#relKey(rel, kind);
    const from = this.#key(relKey);
    if (kind === "dir") {
      const to = `${this.#backupBase}${rel}/`;
      try {
        await this.#client.copy(from, to, undefined, this.#signal);
      } catch (error) {
        if (!(error instanceof S3Error && error.status === 404)) throw error;
        await this.#client.put(to, new Uint8Array(0), {}, this.#signal);
      }
      this.#backupRecords.push({ path: rel, kind, at: Date.now() });
    } else {
      for (let n = 1;; n++) {
        const name = backupName(rel, n, this.#suffix);
        const to = `${this.#backupBase}${this.#relKey(name, kind)}`;
        if (await this.#client.head(to, this.#signal)) continue;
        try {
          await this.#client.copy(from, to, undefined, this.#signal);
        } catch (error) {
          if (error instanceof S3Error && error.status === 404) {
            if (remove) throw gone(rel);
            return false;
          }
          throw error;
        }
        this.#backupRecords.push({ path: name, kind, at: Date.now() });
        break;
      }
    }
    if (remove) {
      await this.#client.delete(from, undefined, this.#signal);
      this.#cache.delete(relKey);
    }
    return true;
  }

  async mkdir(rel: string): Promise<void> {
    this.#writable();
    if (rel === "") return await this.createRoot(true);
    await this.#client.put(this.#key(`${rel}/`), new Uint8Array(0), {}, this.#signal);
  }

  async createRoot(_parents: boolean): Promise<void> {
    this.#writable();
    // Prefixes have no parents to make; the bucket's root always exists.
    if (this.#base === "") return;
    await this.#client.put(this.#base, new Uint8Array(0), {}, this.#signal);
  }

  /**
   * Copies source file `from` to the object of `action.path`, with its mtime and mode in the
   * metadata: from a local file by path; from an object of this endpoint and bucket on the
   * server; from any other source through its reader. Returns the bytes copied (0 when only the
   * metadata had to change).
   */
  async copy(action: CopyAction, from: SourceFile): Promise<CopyResult> {
    this.#writable();
    const backedUp = action.op === "update" && this.#backupBase !== undefined &&
      await this.#backup(action.path, "file", false);
    if (from.localPath !== undefined) return { size: await this.#upload(action.path, from.localPath), backedUp };
    const object = s3ObjectOf(from);
    if (object && object.endpoint === this.#endpoint && object.bucket === this.#target.bucket) {
      return { size: await this.#copyOnServer(action, object, from), backedUp };
    }
    return { size: await this.#uploadFrom(action, from), backedUp };
  }

  /** The metadata of a copy of `action`: its mtime, and its mode unless the source does not know it. */
  #metaOf(action: CopyAction): Record<string, string> {
    const meta: Record<string, string> = { mtime: formatMtime(action.mtimeMs) };
    if (action.mode !== UNKNOWN_MODE) meta.mode = formatMode("file", action.mode);
    return meta;
  }

  /**
   * Uploads source file `rel` with its mtime and mode; returns the bytes sent. When the object
   * there already holds the same content (its known MD5 is the source's: an object written
   * without `mtime` metadata, or a file touched but not changed), only its metadata is
   * replaced, by a copy onto itself, and nothing is sent (as rclone sets the mtime when the
   * modification times differ but the hashes match). The MD5 is computed for the upload anyway.
   */
  async #upload(rel: string, from: string): Promise<number> {
    // Synchronous: for small files the async calls' overhead costs more than the calls (as in LocalReplica).
    const before = Deno.lstatSync(from);
    if (!before.isFile) throw new ChangedError(`Source entry is no longer a file: '${rel}'`);
    const mtimeMs = before.mtime?.getTime() ?? 0;
    const mode = (before.mode ?? 0o644) & 0o7777;
    const meta = { mtime: formatMtime(mtimeMs), mode: formatMode("file", mode) };
    const key = this.#key(rel);
    const listed = this.#listed(rel, "file");
    const there = listed && listed.size === before.size && before.size <= this.#maxCopy
      ? await this.#knownMd5(listed)
      : undefined;
    let etag: string;
    let md5: string;
    if (before.size <= this.#threshold) {
      const data = Deno.readFileSync(from);
      this.#unchanged(from, before, data.length);
      md5 = createHash("md5").update(data).digest("hex");
      if (md5 === there && await this.#replaceMeta(rel, listed!, meta, md5, mode, mtimeMs)) return 0;
      etag = await this.#client.put(key, data, metaHeaders(meta), this.#signal) ?? "";
    } else {
      md5 = await md5File(from, this.#signal);
      if (md5 === there) {
        this.#unchanged(from, before, before.size);
        if (await this.#replaceMeta(rel, listed!, meta, md5, mode, mtimeMs)) return 0;
      }
      const reader = await openLocalReader(from);
      try {
        etag = await this.#multipart(key, before.size, meta, {
          md5,
          fill: (offset, part) => reader.read(offset, part),
          check: () => this.#unchanged(from, before, before.size),
        });
      } finally {
        await reader.close();
      }
    }
    this.#cache.set(rel, { size: before.size, etag, lastModified: "", mtimeMs, mode, md5 });
    return before.size;
  }

  /**
   * Uploads source file `from` of any backend through its reader: a small one in one PUT, a
   * large one in parts read several at a time; its MD5 comes from the source where it knows it
   * (then a content already there only gets its metadata replaced), else is computed on the
   * way and remembered in the metadata cache. A source that changed meanwhile
   * (`from.check()`) is a {@linkcode ChangedError}, and nothing is put in place.
   */
  async #uploadFrom(action: CopyAction, from: SourceFile): Promise<number> {
    const { path: rel, size, mtimeMs, mode } = action;
    const meta = this.#metaOf(action);
    const key = this.#key(rel);
    const known = await from.knownMd5?.();
    const listed = this.#listed(rel, "file");
    const there = listed && listed.size === size && size <= this.#maxCopy ? await this.#knownMd5(listed) : undefined;
    if (known !== undefined && known === there && await this.#replaceMeta(rel, listed!, meta, known, mode, mtimeMs)) {
      return 0;
    }
    const reader = await from.open(this.#signal);
    let etag: string;
    let md5: string;
    try {
      if (size <= this.#threshold) {
        const data = new Uint8Array(size);
        if (size > 0 && await reader.read(0, data) !== size) throw shrank();
        await from.check();
        md5 = known ?? createHash("md5").update(data).digest("hex");
        if (md5 === there && await this.#replaceMeta(rel, listed!, meta, md5, mode, mtimeMs)) return 0;
        etag = await this.#client.put(key, data, metaHeaders(meta), this.#signal) ?? "";
      } else {
        const hash = known === undefined ? createHash("md5") : undefined;
        etag = await this.#multipart(key, size, meta, {
          md5: known,
          hash,
          fill: (offset, part) => reader.read(offset, part),
          check: () => from.check(),
        });
        md5 = known ?? hash!.digest("hex");
      }
    } finally {
      await reader.close();
    }
    this.#cache.set(rel, { size, etag, lastModified: "", mtimeMs, mode, md5 });
    return size;
  }

  /**
   * Copies object `object` of this bucket to file `action.path`'s object on the server, its
   * metadata replaced by the action's, only while it is the version listed (else a
   * {@linkcode ChangedError}): one request up to {@linkcode S3Tuning.maxCopy}, else a multipart
   * upload whose parts are copied on the server. Returns the object's size.
   */
  async #copyOnServer(action: CopyAction, object: S3ObjectRef, from: SourceFile): Promise<number> {
    const rel = action.path;
    const key = this.#key(rel);
    const meta = this.#metaOf(action);
    const md5 = MD5_ETAG.test(object.etag) ? object.etag : await from.knownMd5?.();
    // A copy's ETag need not be its MD5: rclone's md5chksum keeps it known.
    if (md5 !== undefined) meta.md5chksum = Buffer.from(md5, "hex").toString("base64");
    let etag: string;
    if (object.size <= this.#maxCopy) {
      try {
        etag = (await this.#client.copy(object.key, key, meta, this.#signal, object.etag)).etag;
      } catch (error) {
        throw sourceError(error, rel);
      }
    } else {
      etag = await this.#copyParts(key, object, meta, rel);
    }
    this.#cache.set(rel, {
      size: object.size,
      etag,
      lastModified: "",
      mtimeMs: action.mtimeMs,
      mode: action.mode,
      md5,
    });
    logger.debug("{text}", { text: `${rel}: copied on the server from '${object.key}'` });
    return object.size;
  }

  /**
   * Copies `object` to `key` in parts on the server (UploadPartCopy), a few at a time; checks
   * that the source is still the version listed before completing (radosgw ignores the
   * condition on part copies). A failed copy is aborted.
   */
  async #copyParts(key: string, object: S3ObjectRef, meta: Record<string, string>, rel: string): Promise<string> {
    const partSize = Math.max(this.#copyPartSize, Math.ceil(object.size / 10_000));
    const count = Math.ceil(object.size / partSize);
    const uploadId = await this.#client.createUpload(key, metaHeaders(meta), this.#signal);
    try {
      const etags: string[] = [];
      let next = 1;
      const lane = async () => {
        for (let n = next++; n <= count; n = next++) {
          const start = (n - 1) * partSize;
          const end = Math.min(object.size, start + partSize);
          const from = { key: object.key, start, end, ifMatch: object.etag };
          try {
            etags[n - 1] = await this.#client.copyPart(key, uploadId, n, from, this.#signal);
          } catch (error) {
            throw sourceError(error, rel);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(count, 4) }, lane));
      const now = await this.#client.head(object.key, this.#signal);
      if (!now) throw new Deno.errors.NotFound(`Source file is gone: '${rel}'`);
      if (now.etag !== object.etag) throw changed();
      return await this.#client.completeUpload(key, uploadId, etags, this.#signal);
    } catch (error) {
      await this.#abort(key, uploadId);
      throw error;
    }
  }

  /** Aborts an upload; one that cannot be aborted now is left to the next run, with a warning. */
  async #abort(key: string, uploadId: string): Promise<void> {
    await this.#client.abortUpload(key, uploadId).catch((abortError) => {
      logger.warning("{text}", {
        text: `Could not abort the upload of '${key}' (the next run aborts it): ${abortError.message}`,
      });
    });
  }

  /** The MD5 of a listed object when it is known without reading it: its ETag, or its metadata's. */
  async #knownMd5(obj: Obj): Promise<string | undefined> {
    if (MD5_ETAG.test(obj.etag)) return obj.etag;
    return (await this.#meta(obj, "file"))?.md5;
  }

  /**
   * Replaces the metadata of file `rel`'s object, whose content is the source's, by a copy onto
   * itself, only while it is still the listed version. False when it is not (changed or gone
   * since the listing): then it is uploaded.
   */
  async #replaceMeta(
    rel: string,
    obj: Obj,
    meta: Record<string, string>,
    md5: string,
    mode: number,
    mtimeMs: number,
  ): Promise<boolean> {
    const key = this.#key(rel);
    const headers = obj.etag.includes("-") ? { ...meta, md5chksum: Buffer.from(md5, "hex").toString("base64") } : meta;
    let copied: { etag: string };
    try {
      copied = await this.#client.copy(key, key, headers, this.#signal, obj.etag);
    } catch (error) {
      if (error instanceof S3Error && (error.status === 412 || error.status === 404)) return false;
      throw error;
    }
    // A server that ignored the condition shows the change by the copy's ETag, where it is an MD5.
    if (MD5_ETAG.test(copied.etag) && copied.etag !== md5) return false;
    this.#cache.set(rel, { size: obj.size, etag: copied.etag, lastModified: "", mtimeMs, mode, md5 });
    logger.debug("{text}", {
      text: `${rel}: content already in the bucket (same MD5): metadata replaced, nothing sent`,
    });
    return true;
  }

  /** Throws {@linkcode ChangedError} when source file `path` is no longer as `before` saw it. */
  #unchanged(path: string, before: Deno.FileInfo, read: number): void {
    const after = Deno.lstatSync(path);
    if (
      !after.isFile || after.size !== before.size || read !== before.size ||
      after.mtime?.getTime() !== before.mtime?.getTime()
    ) {
      throw changed();
    }
  }

  /**
   * Uploads `size` bytes to `key` in parts, several at a time (each holds a part slot and its
   * buffer): `how.fill` reads a part (they may overlap), `how.hash`, when given, takes the
   * parts in order, and `how.check` runs once all are sent, before the upload is completed. With
   * the MD5 known before (`how.md5`), it goes into `md5chksum`, as rclone does. Returns the
   * object's ETag. A failed or stopped upload is aborted.
   */
  async #multipart(
    key: string,
    size: number,
    meta: Record<string, string>,
    how: {
      md5?: string | undefined;
      hash?: { update(data: Uint8Array): unknown } | undefined;
      fill: (offset: number, part: Uint8Array) => Promise<number>;
      check: () => void | Promise<void>;
    },
  ): Promise<string> {
    const headers = metaHeaders(
      how.md5 !== undefined ? { ...meta, md5chksum: Buffer.from(how.md5, "hex").toString("base64") } : meta,
    );
    const partSize = Math.max(this.#partSize, Math.ceil(size / 10_000));
    const count = Math.max(1, Math.ceil(size / partSize));
    const progress = this.#options.progress;
    let streamed = 0;
    const uploadId = await this.#client.createUpload(key, headers, this.#signal);
    try {
      const etags: string[] = [];
      const inFlight = new Set<Promise<void>>();
      let failure: unknown;
      let hashed: Promise<unknown> = Promise.resolve();
      for (let n = 1; n <= count && failure === undefined; n++) {
        await this.#parts.acquire();
        // Part buffers are reused: allocating one a part left hundreds of MB for the collector.
        let buffer = this.#partBuffers.pop();
        if (!buffer || buffer.length < partSize) buffer = new Uint8Array(partSize);
        const offset = (n - 1) * partSize;
        const part = buffer.subarray(0, Math.min(partSize, size - offset));
        const filled = how.fill(offset, part).then((got) => {
          if (got !== part.length) throw shrank();
        });
        const digested = hashed = hashed.then(() => filled).then(() => how.hash?.update(part));
        const sent = filled.then(() => this.#client.uploadPart(key, uploadId, n, part, this.#signal)).then((etag) => {
          etags[n - 1] = etag;
          if (progress) Atomics.add(progress, 0, BigInt(part.length));
          streamed += part.length;
        });
        const done: Promise<void> = Promise.all([sent, digested]).then(
          () => {},
          (error) => void (failure ??= error),
        ).finally(() => {
          this.#partBuffers.push(buffer);
          this.#parts.release();
          inFlight.delete(done);
        });
        inFlight.add(done);
      }
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure;
      await how.check();
      return await this.#client.completeUpload(key, uploadId, etags, this.#signal);
    } catch (error) {
      await this.#abort(key, uploadId);
      throw error;
    } finally {
      if (progress) Atomics.sub(progress, 0, BigInt(streamed));
    }
  }

  async link(action: LinkAction): Promise<boolean> {
    this.#writable();
    const backedUp = action.replace === "symlink" && this.#backupBase !== undefined &&
      await this.#backup(action.path, "symlink", false);
    const relKey = this.#relKey(action.path, "symlink");
    const meta = { mtime: formatMtime(action.mtimeMs), mode: formatMode("symlink", 0o777) };
    const body = new TextEncoder().encode(action.target);
    const etag = await this.#client.put(this.#key(relKey), body, metaHeaders(meta), this.#signal) ?? "";
    this.#cache.set(relKey, {
      size: body.length,
      etag,
      lastModified: "",
      mtimeMs: action.mtimeMs,
      mode: 0o777,
      target: action.target,
    });
    return backedUp;
  }

  async setAttrs(action: AttrsAction): Promise<void> {
    this.#writable();
    const relKey = this.#relKey(action.path, action.kind);
    const obj = this.#listed(action.path, action.kind);
    const old = obj ? await this.#meta(obj, action.kind) : undefined;
    if (!old) throw gone(action.path);
    const mode = action.kind === "symlink" ? 0o777 : action.mode;
    const meta: Record<string, string> = { mtime: formatMtime(action.mtimeMs), mode: formatMode(action.kind, mode) };
    if (old.md5 && obj!.etag.includes("-")) meta.md5chksum = Buffer.from(old.md5, "hex").toString("base64");
    let copied: { etag: string; lastModified: string };
    try {
      // Only onto the version listed: the source's mtime on other content would hide it for good.
      copied = await this.#client.copy(this.#key(relKey), this.#key(relKey), meta, this.#signal, obj!.etag);
    } catch (error) {
      if (error instanceof S3Error && error.status === 404) throw gone(action.path);
      if (error instanceof S3Error && error.status === 412) {
        throw new ChangedError(`Replica entry changed during the sync: '${action.path}'`);
      }
      throw error;
    }
    // A copy onto itself keeps the content: the ETag of a multipart object may still change form.
    this.#cache.set(relKey, { ...old, etag: copied.etag, lastModified: "", mtimeMs: action.mtimeMs, mode });
  }

  async setDirAttrs(entry: DirAttrs): Promise<void> {
    this.#writable();
    // A source that keeps no time for this folder (NaN): the mode alone changes; the time the folder has is kept.
    const node = Number.isNaN(entry.mtimeMs) ? this.#node(entry.path) : undefined;
    const mtimeMs = node ? (await this.#dirEntry(node)).mtimeMs : entry.mtimeMs;
    const record: MetaRecord = { size: 0, etag: EMPTY_MD5, lastModified: "", mtimeMs, mode: entry.mode };
    if (entry.path === "" && this.#base === "") return this.#cache.set("", record);
    const relKey = entry.path === "" ? "" : `${entry.path}/`;
    const meta: Record<string, string> = { mode: formatMode("dir", entry.mode) };
    if (!Number.isNaN(mtimeMs)) meta.mtime = formatMtime(mtimeMs);
    record.etag = await this.#client.put(this.#key(relKey), new Uint8Array(0), metaHeaders(meta), this.#signal) ??
      EMPTY_MD5;
    this.#cache.set(relKey, record);
  }

  /**
   * The digest of file `rel`. An MD5 comes from what the server knows where it can (a
   * single-part ETag, `md5chksum`); else, as any other hash, from reading the object (ranged
   * GETs, a part's size each) and hashing it. An MD5 read so is remembered in the metadata
   * cache, so an object is read once. Undefined when the object is gone.
   */
  async digest(rel: string, hash: HashName, signal?: AbortSignal): Promise<string | undefined> {
    const obj = this.#listed(rel, "file");
    if (!obj) return undefined;
    if (hash === S3_HASH && MD5_ETAG.test(obj.etag)) return obj.etag;
    const record = await this.#meta(obj, "file");
    if (!record) return undefined;
    if (hash === S3_HASH && record.md5) return record.md5;
    logger.debug("{text}", { text: `${rel}: reading the object to hash it (${hash} is not known for it)` });
    const digest = await this.#hashObject(obj, hash, signal ?? this.#signal);
    if (digest !== undefined && hash === S3_HASH && record.etag === obj.etag && record.size === obj.size) {
      this.#cache.set(obj.key, { ...record, md5: digest });
    }
    return digest;
  }

  /**
   * Reads listed object `obj` in ranges and hashes it; undefined when it is gone. Throws when it
   * changed since the listing (its ETag is another).
   */
  async #hashObject(obj: Obj, hash: HashName, signal: AbortSignal | undefined): Promise<string | undefined> {
    const hasher = await createHasher(hash);
    hasher.init();
    const key = this.#key(obj.key);
    for (let at = 0; at < obj.size; at += this.#partSize) {
      signal?.throwIfAborted();
      const end = Math.min(obj.size, at + this.#partSize);
      let got: { etag: string; body: Uint8Array };
      try {
        // A part slot bounds the memory that reads hold, as it does for uploads.
        got = await this.#parts.run(() => this.#client.getRange(key, at, end, signal));
      } catch (error) {
        if (error instanceof S3Error && error.status === 404) return undefined;
        throw error;
      }
      if (got.etag !== obj.etag || got.body.length !== end - at) {
        throw new Error(`Replica object changed while it was read: '${key}'`);
      }
      hasher.update(got.body);
    }
    return hasher.digest();
  }

  /**
   * Refuses writes in a read-only replica (a dry run or a verify must never change it); else
   * the listed tree is stale from now on.
   */
  #writable(): void {
    if (this.#options.readOnly) throw new Error(`Replica is open read-only: '${this.display}'`);
    this.#stale = true;
  }

  /**
   * Aborts the incomplete multipart uploads under the prefix when no live run holds the lock:
   * they are what a killed run left behind, and would be billed for ever. With a live lock
   * they may be that run's own uploads, and are left to it.
   */
  async #abortStaleUploads(): Promise<void> {
    const uploads = await this.#client.uploads(this.#base);
    if (uploads.length === 0) return;
    const lock = await this.#client.get(this.#key(LOCK_NAME), this.#signal);
    if (lock && !lockIsStale(parseLock(new TextDecoder().decode(lock.body)), this.#here())) return;
    for (const upload of uploads) {
      await this.#client.abortUpload(upload.key, upload.uploadId);
      logger.debug("{text}", { text: `Aborted an incomplete upload left by a killed run: '${upload.key}'` });
    }
  }

  #here(): { host: string; now: number; alive: (pid: number) => boolean } {
    return { host: Deno.hostname(), now: Date.now(), alive: this.#options.alive ?? processAlive };
  }

  async lock(): Promise<AsyncDisposable> {
    if (this.#options.readOnly) return { [Symbol.asyncDispose]: () => Promise.resolve() };
    return await takeRemoteLock(this.#lockEntry(), {
      display: this.display,
      ...(this.#options.alive ? { alive: this.#options.alive } : {}),
    });
  }

  /**
   * The lock object, for {@linkcode takeRemoteLock}: created with If-None-Match, replaced with
   * If-Match on the version last read or written, where the server honours the conditions
   * (radosgw, AWS); takeRemoteLock reads it back for a server that ignores them.
   */
  #lockEntry(): LockEntry {
    const key = this.#key(LOCK_NAME);
    /** The ETag of the version last read or written; undefined when there was none. */
    let etag: string | undefined;
    return {
      create: async (text) => {
        const written = await this.#client.put(key, text, { "if-none-match": "*" }, this.#signal);
        if (written !== undefined) etag = written;
        return written !== undefined;
      },
      // Not with the run's signal: a run stopped by it still reads and removes its lock.
      read: async () => {
        const got = await this.#client.get(key);
        etag = got?.head.etag;
        return got && new TextDecoder().decode(got.body);
      },
      replace: async (text) => {
        const written = etag === undefined
          ? await this.#client.put(key, text, { "if-none-match": "*" }, this.#signal)
          : await this.#client.putIfMatch(key, text, etag, this.#signal);
        if (written !== undefined) etag = written;
        return written !== undefined;
      },
      remove: () => this.#client.delete(key),
    };
  }

  /**
   * Prunes the backup folder by its journal (see {@linkcode pruneBackups}), once this run's
   * own versions are written down in it.
   */
  async pruneBackups(options: PruneOptions): Promise<number> {
    if (this.#backupBase === undefined) return 0;
    await this.#journal();
    return await pruneBackups(s3BackupStore(this.#client, this.#backupBase, this.#backupKey, this.#signal), options);
  }

  /** The key under the backup folder of a version's path there, named as the replica names its objects. */
  #backupKey = (path: string, kind: EntryKind): string => this.#relKey(path, kind);

  /** Writes down in the backup folder's journal what this run put there. */
  async #journal(): Promise<void> {
    if (this.#backupBase === undefined || this.#backupRecords.length === 0) return;
    // Not with the run's signal: a run stopped by it still writes down what it moved aside.
    await s3BackupStore(this.#client, this.#backupBase, this.#backupKey).appendJournal(
      formatRecords(this.#backupRecords.splice(0)),
    );
  }

  async close(): Promise<void> {
    this.#ahead?.abort();
    this.#cache.save();
    await this.#journal().catch((error) => {
      logger.warning("{text}", { text: `Cannot write the backup folder's journal: ${errorLine(error)}` });
    });
    logger.debug("{text}", { text: `S3 requests to '${this.display}': ${this.#client.requests}` });
  }
}

/** The error of a source file that changed while it was read. */
function changed(): ChangedError {
  return new ChangedError("Source file changed while it was being copied; will retry on the next run");
}

/** The error of a source file that ended before its listed size. */
function shrank(): ChangedError {
  return new ChangedError("Source file shrank while it was being copied; will retry on the next run");
}

/**
 * A failed server-side copy as the source's error: the source object is another version now
 * ({@linkcode ChangedError}), or gone (`Deno.errors.NotFound`); else `error` itself.
 */
function sourceError(error: unknown, rel: string): unknown {
  if (error instanceof S3Error && error.status === 412) return changed();
  if (error instanceof S3Error && error.status === 404) {
    return new Deno.errors.NotFound(`Source file is gone: '${rel}'`, { cause: error });
  }
  return error;
}

/** Metadata as request headers. */
function metaHeaders(meta: Record<string, string>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(meta)) headers[`x-amz-meta-${name}`] = value;
  return headers;
}

/**
 * The record of an object of `kind` from its HEAD (or GET) and, for a link, its content.
 * Without `mtime` metadata a file's or link's mtime is its LastModified, as rclone reads it: an
 * upload time, which differs from the source's, so the file is updated once (by a metadata copy
 * when its content is equal); a directory marker's is unknown, since a directory's mtime is an
 * attribute alone.
 */
function recordOf(head: ObjectHead, kind: EntryKind, target: string | undefined): MetaRecord {
  const md5 = MD5_ETAG.test(head.etag)
    ? head.etag
    : head.meta.md5chksum
    ? Buffer.from(head.meta.md5chksum, "base64").toString("hex")
    : undefined;
  return {
    size: head.size,
    etag: head.etag,
    lastModified: head.lastModified,
    mtimeMs: parseMtime(head.meta.mtime) ?? (kind === "dir" ? NaN : Date.parse(head.lastModified) || 0),
    mode: parseMode(head.meta.mode),
    target,
    md5,
  };
}

/** The hex MD5 of a file, read in 1 MiB chunks. */
async function md5File(path: string, signal: AbortSignal | undefined): Promise<string> {
  const hash = createHash("md5");
  using file = await Deno.open(path);
  const buffer = new Uint8Array(1 << 20);
  for (;;) {
    signal?.throwIfAborted();
    const n = await file.read(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}
