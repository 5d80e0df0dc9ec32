/**
 * Where each platform expects a service's files and logs, and the command line the service
 * runs (the compiled binary as it is, or `deno run` with permissions scoped to the
 * service's own paths).
 *
 * @module
 */

import { posix, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { CliOptions } from "../cli/cli.ts";
import type { CheckedPaths } from "../config.ts";

/** The checked paths of a service's sync, with its log file (checked by `checkLogPath`). */
export type ServicePaths = CheckedPaths & {
  log?: string;
  /** The `--exclude-from` files, absolute. */
  excludeFrom?: string[];
  /** The folder of this host's lock files, as the service will find it (lib/backend/local/lock.ts). */
  lockDir?: string;
  /** The `--metrics` file, absolute (checked by `checkMetricsPath`). */
  metrics?: string;
  /**
   * For a remote replica (`paths.replica` is then its URL): what the service reads besides
   * the trees (~/.aws for S3; nothing for SFTP, whose ssh reads ~/.ssh itself), absolute.
   * Undefined for a local one.
   */
  remoteReads?: string[];
};
import { UsageError } from "../model/errors.ts";
import { backendOf, parseTarget } from "../backend/registry.ts";
import type { Platform, Scope } from "./cli.ts";
import { launchdLabel } from "./launchd.ts";
import { pathsFor } from "./spec.ts";
import { systemdUnitName } from "./systemd.ts";
import { notifyGrant } from "../run/notify.ts";
import { metricsTempPath } from "../run/metrics.ts";

/** Reads an environment variable, or undefined where it is unset or may not be read. */
export type EnvReader = (name: string) => string | undefined;

/**
 * Reads an environment variable only where the permission is already granted, so that
 * nothing prompts.
 *
 * @example Reading HOME
 * ```ts
 * grantedEnv("HOME"); // "/home/ana", or undefined without --allow-env=HOME
 * ```
 */
export function grantedEnv(name: string): string | undefined {
  return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted"
    ? Deno.env.get(name)
    : undefined;
}

/** Where a service's files live on its platform. */
export interface ServiceLocation {
  /** The directory the definition files go into. */
  unitDir: string;
  /** The default log file where the platform keeps no logs itself; undefined for journald. */
  logFile?: string;
  /** launchd only: where the process's stderr goes. */
  stderrPath?: string;
  /** The files that make up an installed service (for uninstall and status). */
  files: string[];
}

function need(env: EnvReader, name: string, platform: Platform): string {
  const value = env(name);
  if (!value) {
    throw new UsageError(
      `Cannot locate the ${platform} service folder: '${name}' is not set or not readable (grant --allow-env=${name})`,
    );
  }
  return value;
}

/**
 * The unit directory and default log of a service.
 *
 * @throws {UsageError} When a variable the place depends on (HOME, LOCALAPPDATA) is unset.
 * @example A systemd user service
 * ```ts
 * locateService({ platform: "systemd", scope: "user", name: "docs" }, grantedEnv).unitDir; // "/home/ana/.config/systemd/user"
 * ```
 */
export function locateService(
  service: { platform: Platform; scope: Scope; name: string },
  env: EnvReader,
): ServiceLocation {
  const { platform, scope, name } = service;
  switch (platform) {
    case "systemd": {
      const unitDir = scope === "system"
        ? "/etc/systemd/system"
        : posix.join(env("XDG_CONFIG_HOME") || posix.join(need(env, "HOME", platform), ".config"), "systemd", "user");
      const unit = systemdUnitName(name);
      return { unitDir, files: [posix.join(unitDir, `${unit}.service`), posix.join(unitDir, `${unit}.timer`)] };
    }
    case "launchd": {
      const home = scope === "system" ? "/" : need(env, "HOME", platform);
      const unitDir = posix.join(home, "Library", scope === "system" ? "LaunchDaemons" : "LaunchAgents");
      const logs = posix.join(home, "Library", "Logs");
      return {
        unitDir,
        logFile: posix.join(logs, `foldersync-${name}.log`),
        stderrPath: posix.join(logs, `foldersync-${name}.stderr.log`),
        files: [posix.join(unitDir, `${launchdLabel(name)}.plist`)],
      };
    }
    case "windows": {
      const base = scope === "system" ? env("ProgramData") || "C:\\ProgramData" : need(env, "LOCALAPPDATA", platform);
      const { join } = pathsFor(base);
      const unitDir = join(base, "foldersync", name);
      return { unitDir, logFile: join(unitDir, "foldersync.log"), files: [join(unitDir, "task.xml")] };
    }
  }
}

/** How this process runs: a compiled binary, or deno with a main module. */
export interface Runtime {
  /** Absolute path of the running executable (`deno`, or the compiled binary). */
  execPath: string;
  /** Absolute path of main.ts when running from source; undefined for a compiled binary. */
  mainPath?: string;
}

/**
 * This process's {@linkcode Runtime}: compiled when `Deno.build.standalone` says so.
 *
 * @throws {UsageError} When running from source with a main module that is not a local file.
 * @example The current runtime
 * ```ts
 * currentRuntime(); // { execPath: "/usr/bin/deno", mainPath: "/home/ana/foldersync/main.ts" }
 * ```
 */
export function currentRuntime(): Runtime {
  if (Deno.build.standalone) return { execPath: Deno.execPath() };
  if (!Deno.mainModule.startsWith("file:")) {
    throw new UsageError(`A service runs foldersync from a local clone, not from: '${Deno.mainModule}'`);
  }
  return { execPath: Deno.execPath(), mainPath: fileURLToPath(Deno.mainModule) };
}

/** Default `--log-max-size` where the platform does not rotate logs (10 MiB). */
export const DEFAULT_LOG_MAX_SIZE: number = 10 * 1024 * 1024;

/** The folder of a path, whichever OS's path it is (a definition may be printed for another OS). */
function folderOf(path: string): string {
  return pathsFor(path).dirname(path);
}

function durationText(ms: number): string {
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * The arguments a sync with these (checked) options is run with: absolute paths, every
 * option spelled out, nothing that depends on the current directory.
 *
 * @example Arguments
 * ```ts
 * syncArguments(options, { source: "/data", replica: "/backup" }); // ["/data", "/backup", "--watch"]
 * ```
 */
export function syncArguments(o: CliOptions, paths: ServicePaths): string[] {
  const args = [paths.source, paths.replica];
  if (o.checksum) args.push("--checksum");
  if (o.hash !== undefined) args.push("--hash", o.hash);
  if (o.intervalMs !== undefined) args.push("--interval", durationText(o.intervalMs));
  if (o.watch) args.push("--watch");
  if (paths.log !== undefined) args.push("--log", paths.log);
  if (o.logFormat !== "text") args.push("--log-format", o.logFormat);
  if (o.logMaxSize !== undefined) args.push("--log-max-size", String(o.logMaxSize));
  if (o.logKeep !== undefined) args.push("--log-keep", String(o.logKeep));
  if (o.allowEmptySource) args.push("--allow-empty-source");
  if (o.mkpath) args.push("--mkpath");
  if (o.modifyWindowMs) args.push("--modify-window", String(o.modifyWindowMs / 1000));
  for (const pattern of o.exclude) args.push("--exclude", pattern);
  for (const file of paths.excludeFrom ?? []) args.push("--exclude-from", file);
  if (o.deleteExcluded) args.push("--delete-excluded");
  if (o.maxDelete !== undefined) {
    args.push("--max-delete", "count" in o.maxDelete ? String(o.maxDelete.count) : `${o.maxDelete.percent}%`);
  }
  if (o.maxChange !== undefined) {
    args.push("--max-change", "count" in o.maxChange ? String(o.maxChange.count) : `${o.maxChange.percent}%`);
  }
  if (o.jobs !== undefined) args.push("--jobs", String(o.jobs));
  if (o.cacheDir === false) args.push("--no-cache");
  else if (paths.cacheDir !== undefined) args.push("--cache-dir", paths.cacheDir);
  if (paths.backupDir !== undefined) args.push("--backup-dir", paths.backupDir);
  if (o.backupKeepMs !== undefined) args.push("--backup-keep", durationText(o.backupKeepMs));
  if (o.notify !== undefined) args.push("--notify", o.notify);
  if (paths.metrics !== undefined) args.push("--metrics", paths.metrics);
  if (o.sshPort !== undefined) args.push("--ssh-port", String(o.sshPort));
  if (o.sshKey !== undefined) args.push("--ssh-key", resolve(o.sshKey));
  if (o.knownHosts !== undefined) args.push("--known-hosts", resolve(o.knownHosts));
  if (o.sshConfig !== undefined) args.push("--ssh-config", resolve(o.sshConfig));
  for (const option of o.sshOptions ?? []) args.push("--ssh-option", option);
  if (o.s3Endpoint !== undefined) args.push("--s3-endpoint", o.s3Endpoint);
  if (o.verbosity !== "normal") args.push(`--${o.verbosity}`);
  return args;
}

/** `--log-keep`'s default in lib/log.ts: the rotated files a rotating log keeps. */
export const DEFAULT_LOG_KEEP = 5;

/** The variables a local sync reads to find the cache folder that holds its lock file (lib/backend/local/lock.ts). */
const LOCK_ENV = ["HOME", "XDG_CACHE_HOME", "LOCALAPPDATA"];

/** True when `inner` is `outer` or lies inside it, whichever OS's paths they are. */
function isWithin(outer: string, inner: string): boolean {
  const path = pathsFor(outer);
  const rel = path.relative(outer, inner);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/**
 * The files a log writes: the file itself and, when it rotates, its rotated siblings
 * `FILE.1` to `FILE.N` (LogTape renames each up by one, and the file to `FILE.1`).
 *
 * @example A rotating log that keeps 2
 * ```ts
 * logFiles("/var/log/fs.log", 2); // ["/var/log/fs.log", "/var/log/fs.log.1", "/var/log/fs.log.2"]
 * ```
 */
export function logFiles(log: string, keep: number | undefined): string[] {
  return [log, ...Array.from({ length: keep ?? 0 }, (_, i) => `${log}.${i + 1}`)];
}

/** How the service's sync is set up, for {@linkcode serviceCommand}. */
export interface CommandSetup {
  /** The checked paths. */
  paths: ServicePaths;
  /** How foldersync runs. */
  runtime: Runtime;
  /**
   * The rotated log files kept (`--log-keep`, or its default where the log rotates);
   * undefined when the log does not rotate.
   */
  logKeep?: number;
  /** The `--notify` URL: the network grant names its host and port. */
  notify?: string;
}

/**
 * The full command a service runs. Compiled: the binary itself. From source: `deno run
 * --no-prompt`, then main.ts, with
 *
 * - for a local replica: unscoped `--allow-read` and `--allow-write`, since Deno creates
 *   symbolic links only under those, and `--deny-write` for the source where no file of the
 *   service lies in it (its log, hash cache, lock folder or metrics file); `--allow-env` for
 *   the variables that locate the lock folder; with `--notify`, the network for the URL's
 *   host and port alone and the host name (the report names the host);
 * - for a remote replica: `--allow-read` and `--allow-write` scoped to the service's own
 *   files (the log file and its rotated siblings, never its folder; the hash cache; the
 *   metrics file and its temp file), read access to the source and the app's folder (its
 *   workers), and the network.
 *
 * @throws {UsageError} When a path holds a comma, which Deno's permission lists cannot name.
 * @example The command from source
 * ```ts
 * serviceCommand(["/data", "/backup", "--watch"], { paths, runtime: { execPath: "/usr/bin/deno", mainPath: "/src/main.ts" } });
 * // ["/usr/bin/deno", "run", "--no-prompt", "--allow-read", "--allow-write", "--deny-write=/data", "--allow-env=...", "/src/main.ts", ...]
 * ```
 */
export function serviceCommand(args: string[], how: CommandSetup): string[] {
  const { paths, runtime, logKeep, notify } = how;
  if (runtime.mainPath === undefined) return [runtime.execPath, ...args];
  const logs = paths.log !== undefined ? logFiles(paths.log, logKeep) : [];
  const noComma = (list: string[]) => {
    for (const path of list) {
      if (path.includes(",")) {
        throw new UsageError(`Path holds a comma, which Deno's permission flags cannot name: '${path}'`);
      }
    }
  };
  // What the remote sides' backends need: the programs they run (ssh), the network (fetch),
  // their variables; and this host's name for their locks and the report.
  const remotes = [paths.source, paths.replica].map(parseTarget).filter((t) => t.kind !== "local")
    .map((t) => backendOf(t));
  const runs = [...new Set(remotes.flatMap((b) => b.run))];
  const env = [...new Set(remotes.flatMap((b) => b.env))];
  const net = remotes.some((b) => b.net) ? "" : notify !== undefined ? notifyGrant(notify) : undefined;
  if (net) noComma([net]);
  const remoteGrants = [
    ...(runs.length > 0 ? [`--allow-run=${runs.join(",")}`] : []),
    ...(net !== undefined ? [net === "" ? "--allow-net" : `--allow-net=${net}`] : []),
    ...(remotes.length > 0 || net !== undefined ? ["--allow-sys=hostname"] : []),
  ];
  const localSource = parseTarget(paths.source).kind === "local";
  if (paths.remoteReads === undefined) {
    // Deno refuses Deno.symlink under path-scoped grants, and a backup must copy links.
    const own = [paths.log, paths.cacheDir, paths.lockDir, paths.metrics].filter((p) => p !== undefined);
    const readOnlySource = localSource && own.every((p) => !isWithin(paths.source, p));
    if (readOnlySource) noComma([paths.source]);
    return [
      runtime.execPath,
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-write",
      ...(readOnlySource ? [`--deny-write=${paths.source}`] : []),
      ...remoteGrants,
      `--allow-env=${[...new Set([...LOCK_ENV, ...env])].join(",")}`,
      runtime.mainPath,
      ...args,
    ];
  }
  // A remote replica and its backup folder are not local paths: the network reaches them.
  const writes = [
    ...logs,
    ...(paths.cacheDir !== undefined ? [paths.cacheDir] : []),
    ...(paths.metrics !== undefined ? [paths.metrics, metricsTempPath(paths.metrics)] : []),
  ];
  // The app's own folder too: Deno checks read access when it loads the walk, copy and hash workers.
  const reads = [
    ...(localSource ? [paths.source] : []),
    folderOf(runtime.mainPath),
    ...(paths.excludeFrom ?? []),
    ...writes,
    ...paths.remoteReads,
  ];
  noComma(reads);
  return [
    runtime.execPath,
    "run",
    "--no-prompt",
    `--allow-read=${reads.join(",")}`,
    // Deno refuses an empty list ("Empty path is not allowed"): no files, no flag.
    ...(writes.length > 0 ? [`--allow-write=${writes.join(",")}`] : []),
    // SFTP runs ssh, which reaches the network itself; S3 is fetch.
    ...remoteGrants,
    ...(env.length > 0 ? [`--allow-env=${env.join(",")}`] : []),
    runtime.mainPath,
    ...args,
  ];
}
