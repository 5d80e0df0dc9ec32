/**
 * The `foldersync service` command line: argv after `service` to a typed
 * {@linkcode ServiceCommand}. The sync options are parsed by the sync command's own parser,
 * so a service accepts exactly what a sync accepts, and refuses it the same way.
 *
 * @module
 */

import { type CliOptions, parseCommand } from "../cli/cli.ts";
import { UsageError } from "../model/errors.ts";
import { parseDuration } from "../model/units.ts";

/** A service manager foldersync writes definitions for. */
export type Platform = "systemd" | "launchd" | "windows";

/** Whose service it is: the user's (runs as them) or the machine's (runs as root or SYSTEM). */
export type Scope = "user" | "system";

/** The platforms, in the order the help lists them. */
export const PLATFORMS: readonly Platform[] = ["systemd", "launchd", "windows"];

/** What `foldersync service ...` asks for. */
export type ServiceCommand =
  | { action: "help" }
  | {
    action: "print" | "install";
    /** The service's name (letters, digits, `.`, `_`, `-`). */
    name: string;
    /** The service manager to write for. */
    platform: Platform;
    /** User or system service. */
    scope: Scope;
    /** Run once every this many milliseconds (scheduled shape); undefined: long-running. */
    everyMs?: number;
    /** The sync the service runs, as parsed by the sync command. */
    sync: CliOptions;
  }
  | {
    action: "uninstall" | "status";
    /** The service's name. */
    name: string;
    /** The service manager to ask. */
    platform: Platform;
    /** User or system service. */
    scope: Scope;
  };

/** The text of `foldersync service --help`. */
export const SERVICE_HELP = `Run foldersync as a service of the OS (systemd, launchd or the Windows Task Scheduler)

Usage:
  foldersync service print     <name> <source> <replica> [sync options] [service options]
  foldersync service install   <name> <source> <replica> [sync options] [service options]
  foldersync service uninstall <name> [--platform P] [--scope S]
  foldersync service status    <name> [--platform P] [--scope S]

A service either runs continuously (give --interval or --watch) or runs one sync every
DURATION (give --every DURATION, at least 1m). print writes the definition to stdout and
touches nothing; install writes it where the platform expects it, then enables and starts it.

Service options:
  --platform P        systemd, launchd or windows (default: this machine's)
  --scope S           user (default) or system
  --every DURATION    scheduled one-shot runs: 10m, 1h, 1d ...

For a backup that runs unattended, add the guards: --max-change 20% --max-delete 5%
(a rewritten or emptied source changes nothing) and --backup-dir DIR (every overwritten or
removed version is kept).

Exit codes: 0 done; 1 not installed (uninstall, status); 2 usage error or bad input,
nothing written; 6 the files were written (or removed) but the service manager could not
be run or refused (the message says what to run).
`;

const SERVICE_OPTION = /^--(platform|scope|every)(?:=(.*))?$/s;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** The platform of the machine this runs on. */
export function hostPlatform(): Platform {
  switch (Deno.build.os) {
    case "linux":
      return "systemd";
    case "darwin":
      return "launchd";
    case "windows":
      return "windows";
    default:
      throw new UsageError(`No service manager known for this OS: '${Deno.build.os}': choose one with --platform`);
  }
}

/**
 * Parses the arguments after `service` into a {@linkcode ServiceCommand}.
 *
 * The service's own options (`--platform`, `--scope`, `--every`) are taken out first; what
 * is left after the name goes to the sync command's `parseCommand`, so sync options are
 * checked exactly as a sync checks them.
 *
 * @throws {UsageError} On an unknown action, a bad name, a bad option or value, a dry run,
 * or a definition with neither a continuous mode nor `--every`.
 * @example Parsing a scheduled service
 * ```ts
 * const cmd = parseServiceCommand(["print", "docs", "/data", "/backup", "--every", "1h"]);
 * // { action: "print", name: "docs", platform: "systemd", scope: "user", everyMs: 3600000, sync: {...} }
 * ```
 */
export function parseServiceCommand(argv: readonly string[]): ServiceCommand {
  const [action, ...rest] = argv;
  if (action === undefined || action === "--help" || action === "-h" || action === "help") return { action: "help" };
  if (action !== "print" && action !== "install" && action !== "uninstall" && action !== "status") {
    throw new UsageError(`Unknown service action: '${action}': choose print, install, uninstall or status`);
  }

  const own: { platform?: string; scope?: string; every?: string } = {};
  const others: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const token = rest[i]!;
    if (token === "--") {
      others.push(...rest.slice(i));
      break;
    }
    if (token === "--help" || token === "-h") return { action: "help" };
    const match = SERVICE_OPTION.exec(token);
    if (!match) {
      others.push(token);
      continue;
    }
    const key = match[1] as "platform" | "scope" | "every";
    const value = match[2] ?? rest[++i];
    if (value === undefined) throw new UsageError(`Option needs a value: '--${key}'`);
    if (own[key] !== undefined) throw new UsageError(`Option given twice: '--${key}'`);
    own[key] = value;
  }

  const platform = own.platform ?? hostPlatform();
  if (!(PLATFORMS as readonly string[]).includes(platform)) {
    throw new UsageError(`Platform must be systemd, launchd or windows: '${platform}'`);
  }
  const scope = own.scope ?? "user";
  if (scope !== "user" && scope !== "system") throw new UsageError(`Scope must be user or system: '${scope}'`);

  const name = others.shift();
  if (name === undefined || name === "--") {
    throw new UsageError(
      `Missing service name: foldersync service ${action} <name> ... (see foldersync service --help)`,
    );
  }
  if (!NAME.test(name)) {
    throw new UsageError(`Service name must be up to 64 letters, digits, '.', '_' or '-': '${name}'`);
  }
  const base = { name, platform: platform as Platform, scope: scope as Scope };

  if (action === "uninstall" || action === "status") {
    if (own.every !== undefined) throw new UsageError(`Option only for print and install: '--every'`);
    if (others.length > 0) throw new UsageError(`Unexpected argument: '${others[0]}'`);
    return { action, ...base };
  }

  if (others[0] === "service") throw new UsageError(`Source reads as a command: 'service': write './service'`);
  const parsed = parseCommand(others);
  if (parsed.kind !== "sync") return { action: "help" };
  const sync = parsed.options;
  if (sync.dryRun) throw new UsageError(`A service cannot be a dry run: '--dry-run'`);

  let everyMs: number | undefined;
  if (own.every !== undefined) {
    everyMs = parseDuration(own.every);
    if (everyMs === undefined) {
      throw new UsageError(`Every must be a duration such as 10m, 1h or 1d: '${own.every}'`);
    }
    if (everyMs < 60_000 || everyMs % 1000 !== 0) {
      throw new UsageError(`Every must be whole seconds and at least one minute: '${own.every}'`);
    }
    if (platform === "windows" && everyMs > 31 * 86_400_000) {
      throw new UsageError(`Every must be at most 31 days for the Task Scheduler: '${own.every}'`);
    }
    if (sync.watch || sync.intervalMs !== undefined) {
      throw new UsageError(`Choose one of --every (scheduled runs) and --interval or --watch (continuous): '${name}'`);
    }
  } else if (!sync.watch && sync.intervalMs === undefined) {
    throw new UsageError(
      `A service needs --every DURATION (scheduled runs) or --interval or --watch (continuous): '${name}'`,
    );
  }
  return { action, ...base, ...(everyMs !== undefined ? { everyMs } : {}), sync };
}
