/**
 * Test helpers: temp trees, running main.ts as a subprocess, and rsync as the oracle.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { TEMP_PATTERN } from "../lib/model/names.ts";
import { localSides } from "../lib/backend/open.ts";
import { type FsOps, LocalBackend } from "../lib/backend/local/local_backend.ts";
import type { Backend, CopyResult, Sides, SourceFile } from "../lib/backend/backend.ts";
import { type ApplyOptions, createApplier, type Stats } from "../lib/engine/apply.ts";
import { type March, type MarchOptions, marchTrees, planTrees } from "../lib/engine/march.ts";
import { type RunControl, runOnce, type RunResult, syncOnce } from "../lib/engine/sync.ts";
import type { SyncOptions } from "../lib/engine/options.ts";
import type { CopyAction, Plan } from "../lib/model/actions.ts";
import type { ExitCode } from "../lib/model/errors.ts";

/** The repository root. */
export const ROOT: string = dirname(dirname(fileURLToPath(import.meta.url)));
/** The entry point under test. */
export const MAIN: string = join(ROOT, "main.ts");
/** True on POSIX systems, where modes, symlinks and signals behave as tests expect. */
export const POSIX: boolean = Deno.build.os !== "windows";
/** True when running as root, where permission bits do not stop the process. */
export const IS_ROOT: boolean = POSIX && Deno.uid() === 0;

/**
 * Prints `line` once for the whole test run, though every test file loads this module in its
 * own isolate: the first to create the run's marker for `key` (in the temp folder, by the
 * process id) says it.
 */
export function sayOnce(key: string, line: string): void {
  const marker = join(Deno.env.get("TMPDIR") ?? "/tmp", `foldersync-test-said-${Deno.pid}-${key}`);
  try {
    Deno.writeTextFileSync(marker, "", { createNew: true });
  } catch {
    return; // said already
  }
  console.log(line);
}

/** True on Linux under CI=true, where `.ci/run` has installed every test tool: a missing one is a failure. */
export const CI_LINUX: boolean = Deno.build.os === "linux" && Deno.env.get("CI") === "true";

/**
 * True when `program` runs (`program --version` succeeds). Tests that need a tool skip
 * without it, except under {@linkcode CI_LINUX}, where they run and fail.
 */
export async function toolAvailable(program: string): Promise<boolean> {
  try {
    return (await new Deno.Command(program, { args: ["--version"], stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}

if (!POSIX) {
  console.log("Windows: the tests marked ignored need POSIX symbolic links, modes, signals or users, and are skipped");
}

const decoder = new TextDecoder();

/** A temp directory that removes itself, even when tests left read-only entries in it. */
export async function tempDir(prefix = "foldersync-test-"): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return { path, [Symbol.asyncDispose]: () => forceRemove(path) };
}

/** Removes a tree whatever its modes. */
export async function forceRemove(path: string): Promise<void> {
  if (POSIX) await new Deno.Command("chmod", { args: ["-R", "u+rwx", path], stderr: "null" }).output();
  await Deno.remove(path, { recursive: true }).catch(() => {});
}

/** A tree description: a string is a file's content, `{ link }` a symlink, an object a directory. */
export type TreeSpec = { [name: string]: string | Uint8Array | { link: string } | TreeSpec };

/** Writes `spec` under `root` (created if needed). */
export async function writeTree(root: string, spec: TreeSpec): Promise<void> {
  await Deno.mkdir(root, { recursive: true });
  for (const [name, value] of Object.entries(spec)) {
    const path = join(root, name);
    if (typeof value === "string") await Deno.writeTextFile(path, value);
    else if (value instanceof Uint8Array) await Deno.writeFile(path, value);
    else if ("link" in value && typeof value.link === "string") await Deno.symlink(value.link, path);
    else await writeTree(path, value as TreeSpec);
  }
}

/** The output of a finished subprocess. */
export interface RunOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run <permissions> main.ts <args>` and waits for it. */
export async function runMain(
  args: string[],
  options: { permissions?: string[]; env?: Record<string, string>; cwd?: string } = {},
): Promise<RunOutput> {
  const permissions = options.permissions ?? ["--allow-read", "--allow-write"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    ...(options.env ? { env: options.env } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Starts main.ts without waiting; the caller must consume or cancel its output. */
export function spawnMain(args: string[], permissions = ["--allow-read", "--allow-write"]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
}

/** Options for {@linkcode mirrorDiff} and {@linkcode assertMirror}. */
export interface MirrorOptions {
  /**
   * Relative paths (from the roots, `/`-separated) left out of the comparison on both sides,
   * as rsync's anchored `--exclude=/PATH` leaves them: a `--backup-dir` inside the replica.
   */
  exclude?: readonly string[];
  /**
   * The replica's file system keeps mtimes this coarsely (ms): the tree comparison accepts a
   * difference below it (rsync compares whole seconds anyway).
   * @default 1
   */
  mtimeResolutionMs?: number;
}

/**
 * The independent oracle: `rsync -rlptD -J -c --delete -n -i src/ dst/` lists every
 * difference; an exact mirror prints nothing. Where rsync is missing (Windows runners) or too
 * old (macOS), a tree comparison by lstat and content stands in.
 */
export async function mirrorDiff(source: string, replica: string, options: MirrorOptions = {}): Promise<string> {
  const exclude = options.exclude ?? [];
  if (await hasRsync()) {
    const out = await new Deno.Command("rsync", {
      args: [
        "-rlptD",
        "-J",
        "-c",
        "--delete",
        "-n",
        "-i",
        ...exclude.map((p) => `--exclude=/${p}`),
        `${source}/`,
        `${replica}/`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
    return out.code === 0 ? text.trim() : `rsync exited ${out.code}: ${text}`;
  }
  return (await treeDiff(source, replica, "", exclude, (options.mtimeResolutionMs ?? 1) - 1)).join("\n");
}

let rsyncAvailable: boolean | undefined;

/**
 * True when rsync 3.1 or later is on the PATH. Tests that need it (rsync's own filter rules as
 * the oracle) skip without it, saying so once; under CI=true its absence fails the run.
 */
export const HAS_RSYNC: boolean = await hasRsync();
/**
 * True when an rsync of 3.1 or later is on the PATH (`-J` is from 3.1). macOS ships an older
 * one (or openrsync, which reports 2.6.9) and Windows none: there the tree comparison is the oracle.
 */
async function hasRsync(): Promise<boolean> {
  if (rsyncAvailable === undefined) {
    try {
      const out = await new Deno.Command("rsync", { args: ["--version"], stdout: "piped", stderr: "null" }).output();
      const version = /rsync\s+version\s+v?(\d+)\.(\d+)/.exec(decoder.decode(out.stdout));
      rsyncAvailable = out.success && version !== null &&
        (Number(version[1]) > 3 || (Number(version[1]) === 3 && Number(version[2]) >= 1));
    } catch {
      rsyncAvailable = false;
    }
    if (!rsyncAvailable && CI_LINUX) throw new Error("rsync 3.1 or later is missing: .ci/run installs it");
    if (!rsyncAvailable) {
      sayOnce(
        "rsync",
        "rsync 3.1 or later is missing: the tree comparison is the oracle, and the tests that need rsync's filter " +
          "rules are skipped (bash .ci/run installs it)",
      );
    }
  }
  return rsyncAvailable;
}

/**
 * The rsync oracle with filter rules (`--exclude=...`, `--include=...`, `--delete-excluded`)
 * that say in rsync's terms what foldersync's excludes say: nothing may differ. Needs rsync.
 */
export async function assertMirrorFiltered(source: string, replica: string, rules: string[]): Promise<void> {
  const out = await new Deno.Command("rsync", {
    args: ["-rlptD", "-J", "-c", "--delete", "-n", "-i", ...rules, `${source}/`, `${replica}/`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (decoder.decode(out.stdout) + decoder.decode(out.stderr)).trim();
  assert.equal(out.code, 0, text);
  assert.equal(text, "", `replica differs from source (rsync ${rules.join(" ")}):\n${text}`);
}

/** Asserts that the replica is an exact mirror of the source, by the oracle. */
export async function assertMirror(source: string, replica: string, options: MirrorOptions = {}): Promise<void> {
  const diff = await mirrorDiff(source, replica, options);
  assert.equal(diff, "", `replica differs from source:\n${diff}`);
  const own = await treeDiff(source, replica, "", options.exclude ?? [], (options.mtimeResolutionMs ?? 1) - 1);
  assert.deepEqual(own, [], `tree comparison found differences`);
}

/** Compares two trees by lstat (kind, size, mode, mtime in ms), link targets and content. */
export async function treeDiff(
  a: string,
  b: string,
  rel = "",
  exclude: readonly string[] = [],
  windowMs = 0,
): Promise<string[]> {
  const diffs: string[] = [];
  const names = new Set<string>();
  for (const [root, side] of [[a, "replica"], [b, "source"]] as const) {
    try {
      for await (const e of Deno.readDir(join(root, rel))) names.add(e.name);
    } catch (error) {
      // A side that does not exist (yet): everything is only on the other one.
      if (!(error instanceof Deno.errors.NotFound) || rel !== "") throw error;
      return [`.: only in ${side}`];
    }
  }
  for (const name of [...names].sort()) {
    const r = rel === "" ? name : `${rel}/${name}`;
    if (exclude.includes(r)) continue;
    const ia = await Deno.lstat(join(a, r)).catch(() => undefined);
    const ib = await Deno.lstat(join(b, r)).catch(() => undefined);
    if (!ia || !ib) {
      diffs.push(`${r}: only in ${ia ? "source" : "replica"}`);
      continue;
    }
    const kind = (i: Deno.FileInfo) => (i.isFile ? "file" : i.isDirectory ? "dir" : i.isSymlink ? "link" : "other");
    if (kind(ia) !== kind(ib)) {
      diffs.push(`${r}: ${kind(ia)} vs ${kind(ib)}`);
      continue;
    }
    if (POSIX && (ia.mode! & 0o7777) !== (ib.mode! & 0o7777)) diffs.push(`${r}: mode`);
    if (ia.isSymlink) {
      if (await Deno.readLink(join(a, r)) !== await Deno.readLink(join(b, r))) diffs.push(`${r}: target`);
      continue;
    }
    if (Math.abs((ia.mtime?.getTime() ?? 0) - (ib.mtime?.getTime() ?? 0)) > windowMs) diffs.push(`${r}: mtime`);
    if (ia.isDirectory) {
      diffs.push(...await treeDiff(a, b, r, exclude, windowMs));
    } else if (ia.isFile) {
      if (ia.size !== ib.size) diffs.push(`${r}: size`);
      else if (!(await sameBytes(join(a, r), join(b, r)))) diffs.push(`${r}: content`);
    }
  }
  return diffs;
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Every path under `root`, with kind and content or target, for "nothing was touched" checks. */
export async function snapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    const full = rel === "" ? root : join(root, rel);
    const info = await Deno.lstat(full);
    const stamp = `${info.mode! & 0o7777} ${info.mtime?.getTime()}`;
    if (info.isSymlink) out.push(`${rel} link ${await Deno.readLink(full)} ${stamp}`);
    else if (info.isFile) out.push(`${rel} file ${await Deno.readTextFile(full).catch(() => "?")} ${stamp}`);
    else if (info.isDirectory) {
      out.push(`${rel} dir ${stamp}`);
      const names: string[] = [];
      for await (const e of Deno.readDir(full)) names.push(e.name);
      for (const n of names.sort()) await walk(rel === "" ? n : `${rel}/${n}`);
    }
  };
  await walk("");
  return out;
}

/**
 * The counts of a run's summary line (`Sync done: 1 created, 2 copied, ...`, or a dry run's),
 * by what they count; a count the line does not show is undefined.
 */
export function summaryCounts(stdout: string): Record<string, number> {
  const line = stdout.split("\n").find((l) => /Sync done|Dry run done/.test(l)) ?? "";
  const result: Record<string, number> = {};
  for (const [, n, what] of line.matchAll(/(\d+) (created|copied|updated|linked|attrs|removed|errors)/g)) {
    result[what!] = Number(n);
  }
  return result;
}

/** Temp files foldersync left anywhere under `dir` (full paths). */
export async function tempsUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (at: string) => {
    for await (const entry of Deno.readDir(at)) {
      if (TEMP_PATTERN.test(entry.name)) found.push(join(at, entry.name));
      if (entry.isDirectory) await walk(join(at, entry.name));
    }
  };
  await walk(dir);
  return found;
}

/** Runs main.ts, expecting exit 2 and one line on stderr, which it returns without its time and level. */
export async function failsWithOneLine(
  args: string[],
  permissions = ["--allow-read", "--allow-write", "--allow-run=ssh", "--allow-env", "--allow-sys"],
): Promise<string> {
  const out = await runMain(args, { permissions });
  assert.equal(out.code, 2, `exit code: ${out.stderr}${out.stdout}`);
  const lines = out.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line on stderr: ${out.stderr}`);
  return lines[0]!.replace(/^\S+ \S+ ERROR +|^foldersync: /, ""); // the log line's time and level, or the usage prefix
}

/** Polls `check` until it returns true or `timeoutMs` passes; never a fixed sleep. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Reads a child's stream into a growing string that tests can poll. */
export function collect(stream: ReadableStream<Uint8Array>): { text: () => string; done: Promise<void> } {
  let text = "";
  const done = (async () => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  })();
  return { text: () => text, done };
}

/** A running main.ts, with its output collected as it comes; {@linkcode startMain} makes one. */
export interface RunningMain {
  child: Deno.ChildProcess;
  out: { text: () => string; done: Promise<void> };
  err: { text: () => string; done: Promise<void> };
  /** Sends `signal` (default SIGTERM), waits for the exit and the output, and says how long that took. */
  stop(signal?: Deno.Signal): Promise<{ status: Deno.CommandStatus; ms: number }>;
}

/** Starts main.ts with `args` and collects its output; the caller must `stop()` it. */
export function startMain(args: string[], permissions?: string[]): RunningMain {
  const child = spawnMain(args, permissions);
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  return {
    child,
    out,
    err,
    async stop(signal: Deno.Signal = "SIGTERM") {
      const started = Date.now();
      child.kill(signal);
      const status = await child.status;
      await Promise.all([out.done, err.done]);
      return { status, ms: Date.now() - started };
    },
  };
}

let unprivileged: Promise<{ app: string; denoDir: string } | undefined> | undefined;

/**
 * Prepares a copy of the app and of Deno's npm cache that an unprivileged user can read, so
 * that tests running as root can still run main.ts as `nobody` (uid 65534) with setpriv.
 * Resolves to undefined where that is not possible (not root, no setpriv, Windows).
 */
function prepareUnprivileged(): Promise<{ app: string; denoDir: string } | undefined> {
  unprivileged ??= (async () => {
    if (!IS_ROOT) return undefined;
    /** Runs one set-up command; a failure says which and why. */
    const step = async (cmd: string, args: string[]) => {
      const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
      if (!out.success) throw new Error(`${cmd} ${args.join(" ")}: ${decoder.decode(out.stderr).trim()}`);
      return out;
    };
    try {
      const base = await Deno.makeTempDir({ prefix: "foldersync-nobody-" });
      const info = await step(Deno.execPath(), ["info", "--json"]);
      const denoDir = JSON.parse(decoder.decode(info.stdout)).denoDir as string;
      const app = join(base, "app");
      await Deno.mkdir(app);
      for (const name of ["main.ts", "lib", "deno.json", "deno.lock"]) await step("cp", ["-r", join(ROOT, name), app]);
      await Deno.mkdir(join(base, "deno"));
      await step("cp", ["-r", join(denoDir, "npm"), join(base, "deno")]);
      await step("chown", ["-R", "65534:65534", base]);
      await Deno.chmod(base, 0o755);
      await step("setpriv", ["--version"]);
      globalThis.addEventListener("unload", () => Deno.removeSync(base, { recursive: true }));
      return { app, denoDir: join(base, "deno") };
    } catch (error) {
      // Under CI=true the set-up must work: a test that quietly skips tests nothing.
      if (CI_LINUX) throw new Error(`Cannot set up a run as an unprivileged user: ${error}`, { cause: error });
      console.log(`Running as an unprivileged user is not possible here (${error}): those tests are skipped`);
      return undefined;
    }
  })();
  return unprivileged;
}

/**
 * Runs main.ts as an unprivileged user: directly when the tests are not root, through
 * `setpriv` as nobody when they are. `paths` are handed to that user first (chown).
 * Resolves to undefined where neither is possible.
 */
export async function runMainUnprivileged(args: string[], paths: string[]): Promise<RunOutput | undefined> {
  if (!POSIX) return undefined;
  if (!IS_ROOT) return await runMain(args);
  const setup = await prepareUnprivileged();
  if (!setup) return undefined;
  for (const p of paths) {
    const owned = await new Deno.Command("chown", { args: ["-R", "65534:65534", p], stderr: "piped" }).output();
    if (!owned.success) throw new Error(`chown -R 65534:65534 ${p}: ${decoder.decode(owned.stderr).trim()}`);
  }
  for (const p of paths) await Deno.chmod(dirname(p), 0o755).catch(() => {});
  const out = await new Deno.Command("setpriv", {
    args: [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      Deno.execPath(),
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-write",
      join(setup.app, "main.ts"),
      ...args,
    ],
    env: { DENO_DIR: setup.denoDir, HOME: "/nonexistent", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Options of the local runs below: a run's control, and the replica's file-system layer for fault injection. */
export type LocalControl = Partial<RunControl> & { fs?: FsOps };

/** The sides of a run between two local folders (see lib/backend/open.ts). */
export function sidesOf(options: SyncOptions, control: LocalControl = {}): Sides {
  return localSides({
    source: options.source,
    replica: options.replica,
    backupDir: options.backupDir,
    signal: control.signal,
    progress: control.progress?.inFlight,
    fs: control.fs,
  });
}

/** {@linkcode runOnce} between two local folders. */
export function runLocal(options: SyncOptions, control: LocalControl = {}): Promise<RunResult> {
  const { fs: _fs, ...rest } = control;
  return runOnce(options, { sides: sidesOf(options, control), ...rest });
}

/** {@linkcode syncOnce} between two local folders. */
export function syncLocal(options: SyncOptions, control: LocalControl = {}): Promise<ExitCode> {
  const { fs: _fs, ...rest } = control;
  return syncOnce(options, { sides: sidesOf(options, control), ...rest });
}

/** The two local backends of a plan: the source read, the replica as a real run (or a dry run) sees it. */
export function localPair(source: string, replica: string, fixPermissions = true): [LocalBackend, LocalBackend] {
  return [
    new LocalBackend(source, { readOnly: true }),
    new LocalBackend(replica, { readOnly: !fixPermissions, probeTimes: true }),
  ];
}

/** {@linkcode planTrees} between two local folders. */
export function planLocal(
  source: string,
  replica: string,
  options: MarchOptions & { sameContent?: ReadonlySet<string> } = {},
): Promise<Plan> {
  return planTrees(...localPair(source, replica, options.fixPermissions ?? true), options);
}

/** {@linkcode marchTrees} between two local folders. */
export function marchLocal(source: string, replica: string, options: MarchOptions = {}): Promise<March> {
  return marchTrees(...localPair(source, replica, options.fixPermissions ?? true), options);
}

/** Applies `plan` from one local folder into another, and returns what it did. */
export async function applyLocal(
  plan: Plan,
  source: string,
  replica: string,
  options: ApplyOptions & { fs?: FsOps; backupDir?: string; started?: Date; progress?: BigInt64Array } = {},
): Promise<Stats> {
  const { fs, backupDir, started, progress, ...apply } = options;
  const target = new LocalBackend(replica, {
    ...(fs ? { fs } : {}),
    signal: apply.signal,
    ...(backupDir !== undefined ? { backupDir } : {}),
    ...(started ? { started } : {}),
    progress,
  });
  const applier = createApplier(new LocalBackend(source, { readOnly: true }), target, apply);
  await applier.apply(plan);
  if (!apply.signal?.aborted) await applier.finish(plan);
  return applier.stats;
}

/**
 * A backend whose `copy` reads from a local folder when no source file is given: for the
 * backends' own tests, which copy files one action at a time.
 */
export type TestBackend = Omit<Backend, "copy"> & {
  copy(action: CopyAction, from?: SourceFile): Promise<CopyResult>;
};

/** See {@linkcode TestBackend}. */
export function readingFrom<T extends Backend>(replica: T, source: string): Omit<T, "copy"> & TestBackend {
  const local = new LocalBackend(source, { readOnly: true });
  const copy = replica.copy.bind(replica);
  replica.copy = (action, from) => copy(action, from ?? local.file(action));
  return replica;
}
