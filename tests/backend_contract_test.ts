/**
 * The backend contract, after rclone's fstest/fstests: the same cases, through the Backend
 * interface alone (opened as lib/backend/registry.ts opens them), against every backend: a
 * local folder always, an SFTP folder and an S3 prefix on the test servers (under CI=true a
 * missing server fails). What a backend does not keep (modes, directory or link times, mtimes
 * finer than its resolution) is not asked of it: its capabilities say.
 *
 * Each case is judged twice: by the backend's own reading half, in a fresh instance (a second
 * run, nothing remembered), and by an independent view of what is stored: the file system for
 * a local and an SFTP folder (the test server's home is on this machine), rclone for a bucket
 * (a link is rclone's `NAME.rclonelink` object).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import type { Backend, FileReader, SourceFile } from "../lib/backend/backend.ts";
import { LocalBackend } from "../lib/backend/local/local_backend.ts";
import { backendOf, parseTarget } from "../lib/backend/registry.ts";
import { listWalk } from "../lib/engine/walk.ts";
import { mtimeWindow } from "../lib/engine/decide.ts";
import type { CopyAction } from "../lib/model/actions.ts";
import { ChangedError, LockedError } from "../lib/model/errors.ts";
import { HASH_NAMES, type HashName } from "../lib/model/hash_name.ts";
import { compareNames, type Entry, VANISHED } from "../lib/model/listing.ts";
import { LOCK_NAME } from "../lib/model/lock.ts";
import { TEMP_PATTERN } from "../lib/model/names.ts";
import { tempDir } from "./helpers.ts";
import {
  rcloneEnv,
  remoteTest,
  s3Bucket,
  s3Env,
  type S3Server,
  s3Server,
  sftpFolder,
  type SftpServer,
  sftpServer,
} from "./remote_env.ts";

const MIB = 1024 * 1024;
/** An mtime with milliseconds, so that a backend's resolution shows. */
const WHEN = 1_700_000_000_123;

// ---------------------------------------------------------------------------------------------
// What each backend is given: how to open it, and an independent view of what it stores

/** One stored entry as seen without foldersync. */
interface NativeEntry {
  kind: "file" | "dir" | "link";
  size: number;
  mtimeMs: number;
  /** Permission bits, where the storage keeps them (rclone's `mode` metadata in a bucket). */
  mode: number | undefined;
}

/** What a backend stores, read without foldersync. */
interface Native {
  /**
   * Every entry under `dir` (default: the whole tree; only its own entries unless `deep`), by
   * path; a bucket's link is its `NAME.rclonelink` object.
   */
  tree(dir?: string, deep?: boolean): Promise<Map<string, NativeEntry>>;
  /** The stored bytes of file `rel`. */
  read(rel: string): Promise<Uint8Array>;
  /** The stored target of link `rel`: a symbolic link's, or the content of a bucket's `rel.rclonelink`. */
  linkTarget(rel: string): Promise<string>;
  /** Removes file `rel` behind foldersync's back. */
  removeFile(rel: string): Promise<void>;
  /** Removes directory `rel` and everything in it behind foldersync's back. */
  removeTree(rel: string): Promise<void>;
  /** Writes that were begun and not finished: a bucket's incomplete multipart uploads under the prefix. */
  unfinished(): Promise<string[]>;
}

/** One backend under test. */
interface Subject {
  name: string;
  /** Opens a new instance on the same tree (another run's), connected; the caller closes it. */
  open(options?: { readOnly?: boolean; signal?: AbortSignal }): Promise<Backend>;
  native: Native;
}

/** Lstat-based view of a folder on this machine (a local folder, or the SFTP server's). */
function fileSystemView(root: string): Native {
  const walk = async (rel: string, out: Map<string, NativeEntry>, deep: boolean) => {
    for await (const item of Deno.readDir(join(root, rel))) {
      const path = rel === "" ? item.name : `${rel}/${item.name}`;
      const info = await Deno.lstat(join(root, path));
      const kind = info.isSymlink ? "link" : info.isDirectory ? "dir" : "file";
      out.set(path, { kind, size: info.size, mtimeMs: info.mtime!.getTime(), mode: info.mode! & 0o7777 });
      if (kind === "dir" && deep) await walk(path, out, deep);
    }
  };
  return {
    async tree(dir = "", deep = true) {
      const out = new Map<string, NativeEntry>();
      await walk(dir, out, deep);
      return out;
    },
    read: (rel) => Deno.readFile(join(root, rel)),
    linkTarget: (rel) => Deno.readLink(join(root, rel)),
    removeFile: (rel) => Deno.remove(join(root, rel)),
    removeTree: (rel) => Deno.remove(join(root, rel), { recursive: true }),
    unfinished: () => Promise.resolve([]),
  };
}

/** Runs rclone against `server`; returns stdout as bytes, throws with stderr on failure. */
async function rcloneBytes(server: S3Server, args: string[]): Promise<Uint8Array> {
  const out = await new Deno.Command("rclone", { args, env: rcloneEnv(server), stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`rclone ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  return out.stdout;
}

/** rclone's view of prefix `prefix` of bucket `bucket`. */
function rcloneView(server: S3Server, bucket: string, prefix: string): Native {
  const remote = (rel: string) => `fss3:${bucket}/${prefix}${rel === "" ? "" : `/${rel}`}`;
  const text = async (args: string[]) => new TextDecoder().decode(await rcloneBytes(server, args));
  return {
    async tree(dir = "", deep = true) {
      // One listing a folder: a recursive one (ListR) leaves out the markers of empty folders.
      const out = new Map<string, NativeEntry>();
      const walk = async (rel: string) => {
        const listed = JSON.parse(await text(["lsjson", "-M", remote(rel)])) as Array<
          { Path: string; Size: number; ModTime: string; IsDir: boolean; Metadata?: Record<string, string> }
        >;
        for (const item of listed) {
          const path = rel === "" ? item.Path : `${rel}/${item.Path}`;
          const mode = item.Metadata?.mode;
          out.set(path, {
            kind: item.IsDir ? "dir" : "file",
            size: item.Size,
            mtimeMs: Date.parse(item.ModTime),
            mode: mode === undefined ? undefined : parseInt(mode, 8) & 0o7777,
          });
          if (item.IsDir && deep) await walk(path);
        }
      };
      await walk(dir);
      return out;
    },
    read: (rel) => rcloneBytes(server, ["cat", remote(rel)]),
    linkTarget: async (rel) => await text(["cat", remote(`${rel}.rclonelink`)]),
    removeFile: async (rel) => void await rcloneBytes(server, ["deletefile", remote(rel)]),
    removeTree: async (rel) => void await rcloneBytes(server, ["purge", remote(rel)]),
    async unfinished() {
      const all = JSON.parse(await text(["backend", "list-multipart-uploads", `fss3:${bucket}`])) as Record<
        string,
        Array<{ Key: string }> | null
      >;
      return (all[bucket] ?? []).map((upload) => upload.Key).filter((key) => key.startsWith(`${prefix}/`));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers over the Backend interface

/** Bytes that do not repeat within 64 KiB, different for each seed: a misplaced chunk shows. */
function bytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < Math.min(size, 65_536); i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  for (let at = 65_536; at < size; at += 65_536) out.copyWithin(at, 0, Math.min(65_536, size - at));
  for (let at = 0; at < size; at += 4096) out[at] = (at / 4096 + seed) & 0xff;
  return out;
}

/** Every entry of `backend` walked from its root, each listing checked: sorted by UTF-16 code units, whole. */
async function walkTree(backend: Backend): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const walk = listWalk(backend, {});
  try {
    for (let batch; (batch = await walk.next());) {
      const dir = batch.dirs[0]!;
      assert.equal(batch.flags[0], 0, `flags of '${dir}'`);
      assert.deepEqual(batch.problems, [], `problems listing '${dir}'`);
      const names = batch.names.slice(batch.start(0), batch.end(0));
      assert.deepEqual(names, [...names].sort(compareNames), `'${dir}' is listed in UTF-16 order`);
      for (let i = batch.start(0); i < batch.end(0); i++) {
        out.set(dir === "" ? batch.names[i]! : `${dir}/${batch.names[i]}`, batch.entry(i));
      }
    }
  } finally {
    walk.close();
  }
  return out;
}

/** The tree as another run reads it: a fresh read-only instance, walked, closed. */
async function freshTree(subject: Subject): Promise<Map<string, Entry>> {
  const backend = await subject.open({ readOnly: true });
  try {
    return await walkTree(backend);
  } finally {
    await backend.close();
  }
}

/** Reads all of `entry` through `backend`'s reader: in reads of odd sizes, two in flight. */
async function readWhole(backend: Backend, path: string, entry: Entry): Promise<Uint8Array> {
  const reader = await backend.file({ path, size: entry.size, mtimeMs: entry.mtimeMs, mode: entry.mode }).open();
  try {
    const out = new Uint8Array(entry.size);
    const step = 65_537;
    const reads: Promise<number>[] = [];
    for (let at = 0; at < entry.size; at += step) {
      reads.push(reader.read(at, out.subarray(at, Math.min(entry.size, at + step))));
      if (reads.length === 2) await reads.shift();
    }
    await Promise.all(reads);
    assert.equal(await reader.read(entry.size, new Uint8Array(16)), 0, `${path}: nothing past the end`);
    return out;
  } finally {
    await reader.close();
  }
}

/**
 * Writes `data` as `path` into the local source folder with `mtimeMs` and `mode`, and copies
 * it into `backend` from the source's SourceFile: `update` when `backend` has it already.
 */
async function put(
  backend: Backend,
  source: { root: string; backend: LocalBackend },
  path: string,
  data: Uint8Array,
  attrs: { mtimeMs?: number; mode?: number; op?: "copy" | "update" } = {},
): Promise<CopyAction> {
  const { mtimeMs = WHEN, mode = 0o644, op = "copy" } = attrs;
  const full = join(source.root, path);
  await Deno.mkdir(join(full, ".."), { recursive: true });
  await Deno.writeFile(full, data);
  await Deno.chmod(full, mode);
  await Deno.utime(full, new Date(mtimeMs), new Date(mtimeMs));
  const action: CopyAction = { op, path, size: data.length, mtimeMs, mode };
  const done = await backend.copy(action, source.backend.file(action));
  assert.equal(done.size, data.length, `${path}: bytes copied`);
  return action;
}

/** Makes directory `rel` and its missing parents in `backend`, as the planner orders them. */
async function mkdirs(backend: Backend, rel: string): Promise<void> {
  const parts = rel.split("/");
  for (let i = 1; i <= parts.length; i++) {
    const dir = parts.slice(0, i).join("/");
    if ((await backend.stat(dir))?.kind !== "dir") await backend.mkdir(dir);
  }
}

/** Names of foldersync temp entries in a native tree. */
function temps(tree: Map<string, NativeEntry>): string[] {
  return [...tree.keys()].filter((path) => TEMP_PATTERN.test(path.split("/").pop()!));
}

/**
 * A source file that hides it is local (a replica reads it through its reader, as from a remote
 * source) and whose reads of the last byte wait at a gate: the copy is caught mid-write. The
 * gate then lets them go on, or fails them as a read error would.
 */
function gated(from: SourceFile): {
  file: SourceFile;
  reached: Promise<void>;
  release: (how: "go" | "fail") => void;
} {
  const reached = Promise.withResolvers<void>();
  const gate = Promise.withResolvers<"go" | "fail">();
  const file: SourceFile = {
    path: from.path,
    size: from.size,
    mtimeMs: from.mtimeMs,
    mode: from.mode,
    open: async (signal) => {
      const inner = await from.open(signal);
      const reader: FileReader = {
        async read(offset, into) {
          if (offset + into.length >= from.size && into.length > 0) {
            reached.resolve();
            if (await gate.promise === "fail") throw new Error(`Injected read error at ${offset} of '${from.path}'`);
          }
          return await inner.read(offset, into);
        },
        close: () => inner.close(),
      };
      return reader;
    },
    check: () => from.check(),
  };
  return { file, reached: reached.promise, release: gate.resolve };
}

/** The digest of `data` by a program that is not foldersync's (coreutils, xxhsum, b3sum). */
async function independentDigest(data: Uint8Array, hash: HashName): Promise<string> {
  const tools: Record<HashName, [string, string[]]> = {
    md5: ["md5sum", []],
    sha1: ["sha1sum", []],
    sha256: ["sha256sum", []],
    xxh64: ["xxhsum", ["-H1"]],
    xxh128: ["xxhsum", ["-H2"]],
    xxh3: ["xxhsum", ["-H3", "--tag"]],
    blake3: ["b3sum", []],
  };
  const [program, args] = tools[hash];
  const child = new Deno.Command(program, { args: [...args, "-"], stdin: "piped", stdout: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(data);
  await writer.close();
  const out = new TextDecoder().decode((await child.output()).stdout);
  // "HEX  -", or with --tag "XXH3 (-) = HEX"
  const hex = /^([0-9a-f]+)\s/.exec(out)?.[1] ?? / = ([0-9a-f]+)/.exec(out)?.[1];
  assert.ok(hex, `${program} printed no digest: ${out}`);
  return hex;
}

// ---------------------------------------------------------------------------------------------
// The cases

/**
 * Names that break naive code: spaces, precomposed and decomposed accents, CJK, emoji,
 * upper case, and a pair whose UTF-16 order is not their code point (and UTF-8 byte) order:
 * U+1F600 is stored as the surrogates D83D DE00, which sort before U+FB01.
 */
const NAMES_IN_ORDER = [
  "B",
  "Z z",
  "a",
  "a b",
  "emoji 🎉",
  "e\u0301",
  "~tilde",
  "é",
  "日本",
  "\u{1F600}",
  "\uFB01",
];

/** Runs every case against `subject`, as steps of `t`. */
async function contract(subject: Subject, t: Deno.TestContext): Promise<void> {
  const { name, native } = subject;
  await using src = await tempDir();
  const source = { root: src.path, backend: new LocalBackend(src.path, { readOnly: true }) };
  const backend = await subject.open();
  try {
    if (!await backend.root()) await backend.createRoot(false);
    const caps = backend.caps;
    const window = mtimeWindow(caps);

    await t.step(`${name}: list() sorts by UTF-16 code units and keeps names exactly`, async () => {
      assert.notDeepEqual(
        [...NAMES_IN_ORDER].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
        NAMES_IN_ORDER,
        "the names tell UTF-16 order from byte order",
      );
      await mkdirs(backend, "names/dir é 日本");
      for (const [i, file] of [...NAMES_IN_ORDER].reverse().entries()) {
        await put(backend, source, `names/${file}`, bytes(100 + i, i));
      }
      await put(backend, source, "names/dir é 日本/emoji 🎉 inside", bytes(7, 99));
      for (const tree of [await walkTree(backend), await freshTree(subject)]) {
        const listed = [...tree.keys()].filter((p) => p.startsWith("names/") && !p.slice(6).includes("/"))
          .map((p) => p.slice(6));
        assert.deepEqual(listed, ["dir é 日本", ...NAMES_IN_ORDER].sort(compareNames));
        assert.deepEqual(listed.filter((n) => n !== "dir é 日本"), NAMES_IN_ORDER);
        assert.equal(tree.get("names/dir é 日本/emoji 🎉 inside")?.size, 7);
      }
      const stored = [...(await native.tree("names")).keys()].map((p) => p.slice(6)).sort();
      assert.deepEqual(stored, ["dir é 日本", "dir é 日本/emoji 🎉 inside", ...NAMES_IN_ORDER].sort());
      for (const [i, file] of [...NAMES_IN_ORDER].reverse().entries()) {
        assert.deepEqual(await native.read(`names/${file}`), bytes(100 + i, i), `stored bytes of '${file}'`);
      }
    });

    await t.step(
      `${name}: the reading half reads back what copy() wrote: whole, and ranges at any offset`,
      async () => {
        const sizes = [0, 1, 100_003, 3 * MIB + 17];
        await mkdirs(backend, "bytes");
        for (const size of sizes) await put(backend, source, `bytes/${size}.bin`, bytes(size, size));
        const reading = await subject.open({ readOnly: true });
        try {
          const tree = await walkTree(reading);
          for (const size of sizes) {
            const path = `bytes/${size}.bin`;
            const data = bytes(size, size);
            const entry = tree.get(path);
            assert.equal(entry?.kind, "file", path);
            assert.equal(entry.size, size, path);
            assert.deepEqual(await readWhole(reading, path, entry), data, `${path}: whole`);
            assert.deepEqual(await native.read(path), data, `${path}: stored`);
            if (size === 0) continue;
            const reader = await reading.file({ path, ...entry }).open();
            try {
              // Ranges in no order, several in flight, one across the end.
              const ranges = [[size - 1, 1], [0, 1], [Math.floor(size / 3), Math.ceil(size / 5)], [
                Math.max(0, size - 7),
                50,
              ]];
              for (let k = 0; k < 12; k++) {
                const at = (k * 7_919_111 + 13) % size;
                ranges.push([at, Math.min(65_536 + k * 4097, size - at)]);
              }
              const got = await Promise.all(ranges.map(async ([at, length]) => {
                const into = new Uint8Array(length!);
                const n = await reader.read(at!, into);
                return { at: at!, n, into };
              }));
              for (const { at, n, into } of got) {
                const expected = data.subarray(at, Math.min(size, at + into.length));
                assert.equal(n, expected.length, `${path}: read at ${at} of ${into.length} bytes returned ${n}`);
                assert.deepEqual(into.subarray(0, n), expected, `${path}: bytes at ${at}`);
              }
            } finally {
              await reader.close();
            }
          }
        } finally {
          await reading.close();
        }
      },
    );

    await t.step(
      `${name}: a put is atomic: never a partial file under the final name; a failed one keeps the old`,
      async () => {
        await mkdirs(backend, "atomic");
        // Large enough to go up in parts to S3 (16 MiB parts) and to stream over SFTP.
        const size = 17 * MIB + 5;
        const old = bytes(size, 1);
        await put(backend, source, "atomic/big.bin", old);
        const next = bytes(size, 2);
        await Deno.writeFile(join(src.path, "atomic/big.bin"), next);
        await Deno.utime(join(src.path, "atomic/big.bin"), new Date(WHEN + 5000), new Date(WHEN + 5000));
        for (const path of ["atomic/big.bin", "atomic/new.bin"]) {
          if (path === "atomic/new.bin") await Deno.copyFile(join(src.path, "atomic/big.bin"), join(src.path, path));
          await Deno.utime(join(src.path, path), new Date(WHEN + 5000), new Date(WHEN + 5000));
          const action: CopyAction = {
            op: path.endsWith("big.bin") ? "update" : "copy",
            path,
            size,
            mtimeMs: WHEN + 5000,
            mode: 0o644,
          };
          const { file, reached, release } = gated(source.backend.file(action));
          const copying = backend.copy(action, file);
          copying.catch(() => {});
          await reached;
          // Mid-copy: the final name holds the old content, or nothing.
          if (path.endsWith("big.bin")) {
            assert.deepEqual(await native.read(path), old, `${path}: the old content while the copy runs`);
            assert.equal((await backend.stat(path))?.size, size);
          } else {
            assert.equal((await native.tree("atomic")).has(path), false, `${path}: not there while the copy runs`);
          }
          release("fail");
          await assert.rejects(copying, /Injected read error/);
          const tree = await native.tree("atomic");
          assert.deepEqual(temps(tree), [], "no temp entry left");
          assert.deepEqual(await native.unfinished(), [], "no unfinished upload left");
          if (path.endsWith("big.bin")) assert.deepEqual(await native.read(path), old, `${path}: the old content`);
          else assert.equal(tree.has(path), false, `${path}: nothing put in place`);
        }
        await Deno.remove(join(src.path, "atomic/new.bin"));
      },
    );

    await t.step(`${name}: an aborted copy keeps the old content and leaves nothing behind`, async () => {
      const path = "atomic/big.bin";
      const size = 17 * MIB + 5;
      const action: CopyAction = { op: "update", path, size, mtimeMs: WHEN + 5000, mode: 0o644 };
      const stop = new AbortController();
      const stopping = await subject.open({ signal: stop.signal });
      try {
        const { file, reached, release } = gated(source.backend.file(action));
        const copying = stopping.copy(action, file);
        copying.catch(() => {});
        await reached;
        stop.abort();
        release("go");
        await assert.rejects(copying);
      } finally {
        await stopping.close();
      }
      assert.deepEqual(await native.read(path), bytes(size, 1), "the old content");
      assert.deepEqual(temps(await native.tree("atomic")), [], "no temp entry left");
      assert.deepEqual(await native.unfinished(), [], "no unfinished upload left");
    });

    await t.step(
      `${name}: a source changed or gone while copied: ChangedError or NotFound, the old content kept`,
      async () => {
        const path = "atomic/small.txt";
        const text = async () => new TextDecoder().decode(await native.read(path));
        await put(backend, source, path, new TextEncoder().encode("old content"));
        await Deno.writeTextFile(join(src.path, path), "a longer, newer content");
        await Deno.utime(join(src.path, path), new Date(WHEN + 60_000), new Date(WHEN + 60_000));
        const changed: CopyAction = { op: "update", path, size: 11, mtimeMs: WHEN, mode: 0o644 };
        // Read through its reader, as from a remote source: check() finds the change.
        const { file, release } = gated(source.backend.file(changed));
        release("go");
        await assert.rejects(backend.copy(changed, file), ChangedError);
        assert.equal(await text(), "old content");
        // From a local path a backend may instead copy the file as it now is, whole: never the
        // new content under the listed mtime, which would hide the change for good.
        const outcome = await backend.copy(changed, source.backend.file(changed)).then(
          () => "copied",
          (error) => {
            if (error instanceof ChangedError) return "changed";
            throw error;
          },
        );
        const entry = (await freshTree(subject)).get(path)!;
        if (outcome === "changed") {
          assert.equal(await text(), "old content");
          assert.ok(Math.abs(entry.mtimeMs - WHEN) <= window, "the old mtime");
        } else {
          assert.equal(await text(), "a longer, newer content");
          assert.ok(
            Math.abs(entry.mtimeMs - (WHEN + 60_000)) <= window,
            `the new content's own mtime: ${entry.mtimeMs}`,
          );
        }
        const gone: CopyAction = { op: "copy", path: "atomic/ghost.txt", size: 1, mtimeMs: WHEN, mode: 0o644 };
        await assert.rejects(backend.copy(gone, source.backend.file(gone)), Deno.errors.NotFound);
        const tree = await native.tree("atomic");
        assert.equal(tree.has("atomic/ghost.txt"), false);
        assert.deepEqual(temps(tree), []);
        assert.deepEqual(await native.unfinished(), []);
      },
    );

    await t.step(`${name}: attributes: mtime to the backend's resolution, mode where kept`, async () => {
      await mkdirs(backend, "attrs/dir");
      await put(backend, source, "attrs/f.txt", bytes(10), { mtimeMs: WHEN, mode: 0o640 });
      const mtimeOk = (got: number | undefined, want: number) =>
        got !== undefined && Math.abs(got - want) <= window && Math.floor(got / caps.mtimeResolutionMs) ===
          Math.floor(want / caps.mtimeResolutionMs);
      const check = async (path: string, mtimeMs: number, mode: number, kind: "file" | "dir") => {
        const entry = (await freshTree(subject)).get(path);
        assert.equal(entry?.kind, kind, path);
        if (kind === "file" || caps.dirTimes) {
          assert.ok(mtimeOk(entry.mtimeMs, mtimeMs), `${path}: mtime ${entry.mtimeMs}, want ${mtimeMs}`);
        }
        if (caps.modes) assert.equal(entry.mode.toString(8), mode.toString(8), `${path}: mode`);
        if (kind === "file") {
          const stored = (await native.tree("attrs")).get(path);
          assert.ok(mtimeOk(stored?.mtimeMs, mtimeMs), `${path}: stored mtime ${stored?.mtimeMs}, want ${mtimeMs}`);
          if (caps.modes) assert.equal(stored?.mode?.toString(8), mode.toString(8), `${path}: stored mode`);
        }
      };
      await check("attrs/f.txt", WHEN, 0o640, "file");
      // Attributes are set by a run that listed the entry: another instance, as the next run.
      const run = await subject.open();
      try {
        await walkTree(run);
        const mtimeMs = WHEN + 86_400_789;
        await run.setAttrs({ op: "attrs", path: "attrs/f.txt", kind: "file", mtimeMs, mode: 0o600, reason: "mtime" });
        await check("attrs/f.txt", mtimeMs, 0o600, "file");
        await run.setDirAttrs({ path: "attrs/dir", mtimeMs: WHEN - 86_400_000, mode: 0o750 });
        await check("attrs/dir", WHEN - 86_400_000, 0o750, "dir");
        // A source that keeps no time for a folder: the mode alone changes.
        await run.setDirAttrs({ path: "attrs/dir", mtimeMs: NaN, mode: 0o755 });
        await check("attrs/dir", WHEN - 86_400_000, 0o755, "dir");
      } finally {
        await run.close();
      }
    });

    await t.step(
      `${name}: symbolic links: made and replaced atomically, listed with their target, never followed`,
      async () => {
        await mkdirs(backend, "links");
        await put(backend, source, "links/real.txt", bytes(5));
        await backend.link({ op: "link", path: "links/l", target: "real.txt", mtimeMs: WHEN });
        await backend.link({ op: "link", path: "links/dangling ü", target: "../no/such 日本", mtimeMs: WHEN });
        let tree = await freshTree(subject);
        assert.equal(tree.get("links/l")?.kind, "symlink");
        assert.equal(tree.get("links/l")?.target, "real.txt");
        assert.equal(tree.get("links/dangling ü")?.target, "../no/such 日本");
        if (caps.linkTimes) assert.ok(Math.abs(tree.get("links/l")!.mtimeMs - WHEN) <= window, "link mtime");
        assert.equal(await native.linkTarget("links/l"), "real.txt");
        assert.equal(await native.linkTarget("links/dangling ü"), "../no/such 日本");
        await backend.link({ op: "link", path: "links/l", target: "dangling ü", mtimeMs: WHEN, replace: "symlink" });
        tree = await freshTree(subject);
        assert.equal(tree.get("links/l")?.target, "dangling ü");
        assert.equal(await native.linkTarget("links/l"), "dangling ü");
        assert.equal(tree.get("links/real.txt")?.kind, "file", "the link's old target is untouched");
        assert.deepEqual(temps(await native.tree("links")), []);
      },
    );

    await t.step(`${name}: mkdir, remove a file, remove a folder once empty, never its contents`, async () => {
      await mkdirs(backend, "rm/sub");
      await put(backend, source, "rm/sub/f.txt", bytes(3));
      await put(backend, source, "rm/keep.txt", bytes(4));
      assert.equal((await freshTree(subject)).get("rm/sub")?.kind, "dir");
      // A folder that is not empty: refused, or at least nothing in it removed.
      await backend.remove({ op: "remove", path: "rm/sub", kind: "dir" }).catch(() => {});
      assert.equal(
        (await freshTree(subject)).get("rm/sub/f.txt")?.kind,
        "file",
        "a folder's contents are never removed with it",
      );
      await backend.remove({ op: "remove", path: "rm/sub/f.txt", kind: "file" });
      await backend.remove({ op: "remove", path: "rm/sub", kind: "dir" });
      const tree = await freshTree(subject);
      assert.equal(tree.has("rm/sub/f.txt"), false);
      assert.equal(tree.has("rm/sub"), false);
      assert.equal(tree.get("rm/keep.txt")?.kind, "file");
      const stored = await native.tree("rm");
      assert.deepEqual([...stored.keys()], ["rm/keep.txt"]);
      assert.equal(await backend.stat("rm/sub/f.txt"), undefined);
      assert.equal((await backend.stat("rm/keep.txt"))?.size, 4);
    });

    await t.step(`${name}: an empty folder is kept and listed empty`, async () => {
      await mkdirs(backend, "empty/inner");
      const reading = await subject.open({ readOnly: true });
      try {
        const tree = await walkTree(reading);
        assert.equal(tree.get("empty")?.kind, "dir");
        assert.equal(tree.get("empty/inner")?.kind, "dir");
        const batch = await reading.list("empty/inner", { fixPermissions: false });
        assert.equal(batch.flags[0], 0);
        assert.equal(batch.names.length, 0);
      } finally {
        await reading.close();
      }
      assert.equal((await native.tree("empty")).get("empty/inner")?.kind, "dir", "stored");
    });

    await t.step(`${name}: lock() is exclusive: a second is LockedError until the first is released`, async () => {
      let held: AsyncDisposable | undefined = await backend.lock();
      const other = await subject.open();
      try {
        await assert.rejects(other.lock(), LockedError);
        assert.equal((await freshTree(subject)).has(LOCK_NAME), false, "the lock entry is never listed");
        await held[Symbol.asyncDispose]();
        held = undefined;
        const second = await other.lock();
        await second[Symbol.asyncDispose]();
      } finally {
        await held?.[Symbol.asyncDispose]();
        await other.close();
      }
      assert.equal((await native.tree("", false)).has(LOCK_NAME), false, "nothing left once released");
    });

    await t.step(`${name}: digest() is an independent hash of the bytes, for every hash it offers`, async () => {
      if (!backend.digest) {
        assert.equal(caps.hash, undefined, "a backend that declares a known hash offers digest()");
        return;
      }
      await mkdirs(backend, "digest");
      const small = bytes(100_003, 5);
      const big = bytes(17 * MIB + 5, 6);
      await put(backend, source, "digest/small.bin", small);
      await put(backend, source, "digest/big.bin", big);
      // The same content through a reader, as from a remote source: its MD5 computed on the way.
      const action: CopyAction = {
        op: "copy",
        path: "digest/streamed.bin",
        size: big.length,
        mtimeMs: WHEN,
        mode: 0o644,
      };
      await Deno.copyFile(join(src.path, "digest/big.bin"), join(src.path, action.path));
      await Deno.utime(join(src.path, action.path), new Date(WHEN), new Date(WHEN));
      const { file, release } = gated(source.backend.file(action));
      release("go");
      await backend.copy(action, file);
      const reading = await subject.open({ readOnly: true });
      try {
        await walkTree(reading);
        const hashes = caps.hash ? [caps.hash, ...HASH_NAMES.filter((h) => h !== caps.hash)] : [...HASH_NAMES];
        for (const hash of hashes) {
          assert.equal(await reading.digest!("digest/small.bin", hash), await independentDigest(small, hash), hash);
        }
        for (const hash of ["md5", "sha256"] as const) {
          const expected = await independentDigest(big, hash);
          assert.equal(await reading.digest!("digest/big.bin", hash), expected, `big.bin ${hash}`);
          assert.equal(await reading.digest!("digest/streamed.bin", hash), expected, `streamed.bin ${hash}`);
        }
        assert.equal(await reading.digest!("digest/no such file", "md5"), undefined);
      } finally {
        await reading.close();
      }
    });

    await t.step(`${name}: a file removed between listing and reading is NotFound, never a crash`, async () => {
      await mkdirs(backend, "vanish/dir");
      await put(backend, source, "vanish/gone.txt", bytes(30, 3));
      await put(backend, source, "vanish/dir/x.txt", bytes(40, 4));
      const reading = await subject.open({ readOnly: true });
      await using into = await tempDir();
      const local = new LocalBackend(into.path, { probeTimes: true });
      try {
        const tree = await walkTree(reading);
        const entry = tree.get("vanish/gone.txt")!;
        await native.removeFile("vanish/gone.txt");
        await native.removeTree("vanish/dir");
        const gone = reading.file({ path: "vanish/gone.txt", ...entry });
        await assert.rejects(async () => {
          const reader = await gone.open();
          try {
            await reader.read(0, new Uint8Array(entry.size));
          } finally {
            await reader.close();
          }
        }, Deno.errors.NotFound);
        await assert.rejects(gone.check(), Deno.errors.NotFound);
        const action: CopyAction = {
          op: "copy",
          path: "gone.txt",
          size: entry.size,
          mtimeMs: entry.mtimeMs,
          mode: 0o644,
        };
        await assert.rejects(local.copy(action, gone), Deno.errors.NotFound);
        assert.deepEqual([...Deno.readDirSync(into.path)].map((e) => e.name), [], "nothing left by the failed copy");
        assert.equal(await reading.stat("vanish/gone.txt"), undefined);
        if (reading.digest) {
          const digest = await reading.digest("vanish/gone.txt", "md5");
          // A bucket answers from its listing (the ETag): the content listed, or nothing.
          assert.ok(digest === undefined || digest === await independentDigest(bytes(30, 3), "md5"), `${digest}`);
        }
        // A folder removed since the listing: flagged, or listed as it was, never thrown.
        const batch = await reading.list("vanish/dir", { fixPermissions: false });
        if (batch.flags[0] !== 0) assert.equal(batch.flags[0], VANISHED);
        const x = tree.get("vanish/dir/x.txt")!;
        const copyX: CopyAction = { op: "copy", path: "x.txt", size: x.size, mtimeMs: x.mtimeMs, mode: 0o644 };
        await assert.rejects(local.copy(copyX, reading.file({ path: "vanish/dir/x.txt", ...x })), Deno.errors.NotFound);
        // Removing what is gone already: NotFound, or done (a bucket's DELETE cannot tell).
        await backend.remove({ op: "remove", path: "vanish/gone.txt", kind: "file" }).catch((error) => {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        });
      } finally {
        await reading.close();
        await local.close();
      }
    });

    await t.step(`${name}: copy() between backends: from a local file in, and from this backend out`, async () => {
      await mkdirs(backend, "across");
      const files = [
        { path: "across/a b.txt", data: bytes(1234, 11), mtimeMs: WHEN + 1_000, mode: 0o600 },
        { path: "across/日本 🎉.bin", data: bytes(2 * MIB + 3, 12), mtimeMs: WHEN + 2_000, mode: 0o755 },
        { path: "across/empty", data: new Uint8Array(0), mtimeMs: WHEN + 3_000, mode: 0o644 },
      ];
      for (const f of files) await put(backend, source, f.path, f.data, f);
      await using out = await tempDir();
      const local = new LocalBackend(out.path, { probeTimes: true });
      await local.root();
      const reading = await subject.open({ readOnly: true });
      try {
        const tree = await walkTree(reading);
        await local.mkdir("across");
        for (const f of files) {
          const entry = tree.get(f.path)!;
          // Out into a local folder, and into this backend under another name (a bucket copies on the server).
          const action: CopyAction = {
            op: "copy",
            path: f.path,
            size: entry.size,
            mtimeMs: entry.mtimeMs,
            mode: entry.mode,
          };
          await local.copy(action, reading.file({ path: f.path, ...entry }));
          assert.deepEqual(await Deno.readFile(join(out.path, f.path)), f.data, `${f.path}: copied out`);
          const info = await Deno.lstat(join(out.path, f.path));
          assert.equal(info.mtime!.getTime(), entry.mtimeMs, `${f.path}: the mtime listed`);
          if (caps.modes) assert.equal((info.mode! & 0o7777).toString(8), f.mode.toString(8), `${f.path}: mode`);
          const twin: CopyAction = { ...action, path: `${f.path}.twin` };
          await backend.copy(twin, reading.file({ path: f.path, ...entry }));
          assert.deepEqual(await native.read(twin.path), f.data, `${twin.path}: copied within`);
        }
      } finally {
        await reading.close();
        await local.close();
      }
      const twins = await freshTree(subject);
      for (const f of files) {
        const entry = twins.get(`${f.path}.twin`);
        assert.equal(entry?.size, f.data.length);
        assert.ok(Math.abs(entry.mtimeMs - f.mtimeMs) <= window, `${f.path}.twin: mtime`);
      }
    });
  } finally {
    await backend.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The backends

/** Opens target `url` as foldersync does: a local folder directly, a remote one through its descriptor. */
async function openTarget(
  url: string,
  options: { readOnly?: boolean; signal?: AbortSignal; extra?: Record<string, unknown> },
): Promise<Backend> {
  const target = parseTarget(url);
  const { readOnly = false, signal } = options;
  if (target.kind === "local") {
    const local = new LocalBackend(target.path, { readOnly, probeTimes: true, signal });
    await local.root();
    return local;
  }
  return await backendOf(target).open(target, { jobs: 4, readOnly, signal, ...options.extra });
}

Deno.test({
  name: "Backend contract: a local folder",
  fn: async (t) => {
    await using dir = await tempDir();
    await contract({
      name: "local",
      open: (options = {}) => openTarget(dir.path, options),
      native: fileSystemView(dir.path),
    }, t);
  },
});

remoteTest("Backend contract: an SFTP folder", "sftp", sftpServer, async (server: SftpServer, t) => {
  await using folder = await sftpFolder(server, "contract-");
  const extra = {
    sshKey: server.key,
    knownHosts: server.knownHosts,
    sshConfig: "/dev/null",
    sshOptions: ["IdentityAgent=none"],
  };
  await contract({
    name: "sftp",
    open: (options = {}) => openTarget(folder.url, { ...options, extra }),
    native: fileSystemView(folder.path),
  }, t);
});

remoteTest("Backend contract: an S3 prefix", "s3", s3Server, async (server: S3Server, t) => {
  for (const [name, value] of Object.entries(s3Env(server))) {
    if (value === "") Deno.env.delete(name);
    else Deno.env.set(name, value);
  }
  Deno.env.delete("AWS_PROFILE");
  await using bucket = await s3Bucket(server, "contract-");
  const prefix = "tree";
  await contract({
    name: "s3",
    open: (options = {}) =>
      openTarget(`${bucket.url}/${prefix}`, { ...options, extra: { s3Endpoint: server.endpoint } }),
    native: rcloneView(server, bucket.name, prefix),
  }, t);
});
