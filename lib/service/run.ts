/**
 * `foldersync service ...`: parse, check the sync exactly as a sync would, build the
 * definition for the platform, then print, install, uninstall or report it. main.ts loads
 * this module only for the `service` subcommand.
 *
 * @module
 */

import { resolve } from "node:path";
import { type CliOptions, VERSION } from "../cli/cli.ts";
import { checkLogPath, checkPaths, filterSpec } from "../config.ts";
import { describeError, exitCodeFor, UsageError } from "../model/errors.ts";
import { hostPlatform, parseServiceCommand, type Platform, type Scope, SERVICE_HELP } from "./cli.ts";
import { installService, type Runner, serviceStatus, uninstallService } from "./install.ts";
import { launchdPlist } from "./launchd.ts";
import {
  currentRuntime,
  DEFAULT_LOG_KEEP,
  DEFAULT_LOG_MAX_SIZE,
  type EnvReader,
  grantedEnv,
  locateService,
  type Runtime,
  serviceCommand,
  type ServiceLocation,
  type ServicePaths,
  syncArguments,
} from "./locate.ts";
import type { ServiceFile, ServiceSpec } from "./spec.ts";
import { systemdUnits } from "./systemd.ts";
import { lockFolder } from "../backend/local/lock.ts";
import { backendOf } from "../backend/registry.ts";
import { windowsTask } from "./windows.ts";
import { checkMetricsPath } from "../run/metrics.ts";

/** Options for {@linkcode runService}; every field is there for tests. */
export interface RunServiceOptions {
  /**
   * Reads environment variables (HOME, XDG_CONFIG_HOME, LOCALAPPDATA, ProgramData).
   * @default grantedEnv
   */
  env?: EnvReader;
  /**
   * How foldersync itself is run (compiled, or deno and main.ts).
   * @default currentRuntime()
   */
  runtime?: Runtime;
  /**
   * The folder definition files go into, instead of the platform's.
   * @default the platform's folder
   */
  unitDir?: string;
  /**
   * Runs the service manager.
   * @default runProgram
   */
  run?: Runner;
  /**
   * Where output lines go.
   * @default console.log
   */
  out?: (line: string) => void;
  /**
   * Where error lines go.
   * @default console.error
   */
  err?: (line: string) => void;
}

/**
 * Runs `foldersync service` with the arguments after `service` and returns the exit code.
 * Errors are printed as one line; nothing is written before every check has passed.
 *
 * Needs read access to the source and replica; install and uninstall need write access to
 * the unit folder and `--allow-run=systemctl,launchctl,schtasks`.
 *
 * @example Printing a unit
 * ```ts
 * const code = await runService(["print", "docs", "/data", "/backup", "--every", "1h"]);
 * ```
 */
export async function runService(argv: readonly string[], options: RunServiceOptions = {}): Promise<number> {
  const { env = grantedEnv, out = console.log, err = console.error } = options;
  try {
    const command = parseServiceCommand(argv);
    if (command.action === "help") {
      out(SERVICE_HELP);
      return 0;
    }
    const { platform, scope, name } = command;
    const location = locate(command.action, { platform, scope, name }, env);
    const unitDir = options.unitDir ?? location.unitDir;
    const relocate = (path: string) => options.unitDir === undefined ? path : path.replace(location.unitDir, unitDir);
    const files = location.files.map(relocate);
    const io = { ...(options.run ? { run: options.run } : {}), out, err };
    if (!("sync" in command)) {
      const target = { platform, scope, name, files };
      return command.action === "uninstall" ? await uninstallService(target, io) : await serviceStatus(target, io);
    }

    const sync = { ...command.sync };
    const logFile = location.logFile !== undefined ? relocate(location.logFile) : undefined;
    const defaultLog = sync.log === undefined ? logFile : undefined;
    // The default log is checked like a user's only on this OS; printed for another, it is taken as it is.
    const native = Deno.build.os !== "linux" && Deno.build.os !== "darwin" && Deno.build.os !== "windows"
      ? false
      : platform === hostPlatform();
    if (defaultLog !== undefined && native) sync.log = defaultLog;
    if (location.logFile !== undefined && sync.logMaxSize === undefined) sync.logMaxSize = DEFAULT_LOG_MAX_SIZE;
    const remote = sync.target.kind !== "local";
    const log = sync.log !== undefined ? checkLogPath(sync.log, remote ? undefined : sync.replica) : undefined;
    const paths: ServicePaths = checkPaths(sync.source, sync.replica, {
      checksum: sync.checksum,
      mkpath: sync.mkpath,
      remote,
      remoteSource: sync.sourceTarget.kind !== "local",
      ...(sync.cacheDir !== undefined ? { cacheDir: sync.cacheDir } : {}),
      ...(sync.backupDir !== undefined ? { backupDir: sync.backupDir } : {}),
    });
    if (log !== undefined) paths.log = log;
    if (sync.metrics !== undefined) {
      paths.metrics = checkMetricsPath(sync.metrics, {
        ...(remote ? {} : { replica: sync.replica }),
        ...(log !== undefined ? { log } : {}),
      });
    }
    if (remote) paths.remoteReads = remoteReads(sync, env);
    else {
      const lockDir = lockFolder(typeof sync.cacheDir === "string" ? sync.cacheDir : undefined, env);
      if (lockDir !== undefined) paths.lockDir = lockDir;
    }
    // Read now, so that a missing file is exit 2 here rather than a failing service later.
    filterSpec(sync.exclude, sync.excludeFrom, { ownFiles: [], ownDirs: [] });
    if (sync.excludeFrom.length > 0) paths.excludeFrom = sync.excludeFrom.map((file) => resolve(file));
    if (defaultLog !== undefined && !native) paths.log = defaultLog;
    for (const path of [paths.source, paths.replica, paths.log, paths.cacheDir, paths.backupDir, paths.metrics]) {
      if (path !== undefined && /[\r\n]/.test(path)) throw new UsageError(`Path holds a line break: '${path}'`);
    }
    const runtime = options.runtime ?? currentRuntime();
    const rotates = sync.logMaxSize !== undefined || sync.logKeep !== undefined;
    const spec: ServiceSpec = {
      name,
      scope,
      command: serviceCommand(syncArguments(sync, paths), {
        paths,
        runtime,
        ...(rotates ? { logKeep: sync.logKeep ?? DEFAULT_LOG_KEEP } : {}),
        ...(sync.notify !== undefined ? { notify: sync.notify } : {}),
      }),
      ...(runtime.mainPath !== undefined ? { fromSource: remote ? "scoped" : "unscoped" } : {}),
      source: paths.source,
      replica: paths.replica,
      version: VERSION,
      ...(command.everyMs !== undefined ? { everyMs: command.everyMs } : {}),
    };
    let built: ServiceFile[];
    switch (platform) {
      case "systemd":
        built = systemdUnits(spec, { unitDir });
        break;
      case "launchd":
        built = launchdPlist(spec, { unitDir, stderrPath: relocate(location.stderrPath!) });
        break;
      case "windows":
        built = windowsTask(spec, { unitDir });
        break;
    }
    if (command.action === "print") {
      out(built.map((f) => (built.length > 1 ? `# File: ${f.path}\n${f.text}` : f.text)).join("\n").trimEnd());
      return 0;
    }
    const logDir = paths.log !== undefined && location.logFile !== undefined
      ? [paths.log.slice(0, Math.max(paths.log.lastIndexOf("/"), paths.log.lastIndexOf("\\")))]
      : [];
    return await installService({ platform, scope, name }, built, { ...io, directories: logDir });
  } catch (error) {
    err(`foldersync: ${describeError(error)}`);
    return exitCodeFor(error);
  }
}

/**
 * Where the service's files go. Only `install`, `uninstall` and `status` need the unit folder:
 * a systemd unit (journald keeps its logs) is printed without it where it cannot be located
 * (HOME not granted), its files then named without a folder.
 */
function locate(
  action: "print" | "install" | "uninstall" | "status",
  service: { platform: Platform; scope: Scope; name: string },
  env: EnvReader,
): ServiceLocation {
  try {
    return locateService(service, env);
  } catch (error) {
    if (action !== "print" || service.platform !== "systemd" || !(error instanceof UsageError)) throw error;
    return { unitDir: "", files: [] };
  }
}

/**
 * What a service of a remote source or replica reads besides the trees, as its backends say:
 * ~/.aws (profiles) for S3; nothing for SFTP, whose ssh reads ~/.ssh, the key and known_hosts
 * itself.
 */
function remoteReads(sync: CliOptions, env: EnvReader): string[] {
  const home = env("HOME") ?? env("USERPROFILE");
  const remotes = [sync.sourceTarget, sync.target].filter((t) => t.kind !== "local");
  return [...new Set(remotes.flatMap((t) => backendOf(t).reads(home)))];
}
