/**
 * Command line: argv to a typed {@linkcode Command}, plus the help and version texts.
 *
 * Besides its own syntax, foldersync accepts the command lines of the Python scripts it
 * replaces: `<source> <replica> <interval> <log>`, `<source> <replica> <log> <interval>`,
 * `-s/--source`, `-r/--replica`, `-i`, `-l`, `--log_path` and `--log-file`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "./errors.ts";
import { parseCount, parseDuration, parseSize } from "./units.ts";
import type { HashName } from "./hash.ts";
import { HASH_NAMES } from "./hash.ts";
import denoJson from "../deno.json" with { type: "json" };

/** The version printed by `--version`, from deno.json. */
export const VERSION: string = denoJson.version;

/** How much the console shows. */
export type Verbosity = "quiet" | "normal" | "verbose";

/** Everything the command line says about a sync, before any path is checked. */
export interface CliOptions {
  /** Source folder as typed. */
  source: string;
  /** Replica folder as typed. */
  replica: string;
  /** Compare content hashes instead of size and mtime. */
  checksum: boolean;
  /** Hash algorithm for `--checksum`; undefined means the default. */
  hash?: HashName;
  /** Print what would change and change nothing. */
  dryRun: boolean;
  /** Append log lines to this file too. */
  log?: string;
  /** Log line format for the console and the file. */
  logFormat: "text" | "json";
  /** Rotate the log file when it grows past this many bytes. */
  logMaxSize?: number;
  /** How many rotated log files to keep besides the current one. */
  logKeep?: number;
  /** Sync again every this many milliseconds. */
  intervalMs?: number;
  /** Watch the source for changes and sync them as they settle. */
  watch: boolean;
  /** Allow an empty source to empty a non-empty replica. */
  allowEmptySource: boolean;
  /** Parallel file copies and hashes. */
  jobs?: number;
  /** Directory for the checksum cache; `false` disables it; undefined: the default place. */
  cacheDir?: string | false;
  /** Console verbosity. */
  verbosity: Verbosity;
}

/** What the command line asks for. */
export type Command =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "sync"; options: CliOptions }
  | { kind: "service"; argv: string[] };

/** The text of `--help`. */
export const HELP = `foldersync ${VERSION}: keep a replica folder an exact one-way copy of a source folder

Usage:
  foldersync [sync] <source> <replica> [options]
  foldersync <source> <replica> <interval> <log>      (also <log> <interval>)
  foldersync -s <source> -r <replica> [-i <interval>] [-l <log>]
  foldersync service print|install|uninstall|status <name> ...   (see foldersync service --help)

Options:
  -c, --checksum            compare files by content hash, not by size and mtime
      --hash NAME           hash for --checksum: ${HASH_NAMES.join(", ")} (default xxh3)
  -n, --dry-run             print every change that would be made; change nothing
  -i, --interval DURATION   sync again every DURATION: 60 (seconds), 30s, 5m, 1h
  -w, --watch               sync changes live as they happen (full rescan every
                            --interval, 5m by default)
  -l, --log FILE            also append log lines to FILE (aliases --log-file, --log_path)
      --log-format FORMAT   text (default) or json (one JSON object per line)
      --log-max-size SIZE   rotate the log file past SIZE (10M, 512K ...)
      --log-keep N          rotated log files kept besides the current one (default 5)
      --allow-empty-source  let an empty source empty a non-empty replica
  -j, --jobs N              most parallel copies and hashes (default 8; also capped by cores)
      --cache-dir DIR       where --checksum keeps its hash cache
                            (default $XDG_CACHE_HOME/foldersync or ~/.cache/foldersync)
      --no-cache            do not use the hash cache
  -q, --quiet               print only warnings, errors and the summary
  -v, --verbose             print debug detail too
  -s, --source PATH         the source folder (instead of the first argument)
  -r, --replica PATH        the replica folder (instead of the second argument)
  -h, --help                print this help
      --version             print the version

Exit codes:
  0    the replica matches the source
  1    the run finished, but some entries failed (see the log)
  2    usage error or bad input; nothing was touched
  3    refused for safety (an empty source and a non-empty replica); nothing was touched
  4    another foldersync is already syncing into this replica; nothing was touched
  130  a one-shot sync was stopped by SIGINT or SIGTERM before it finished
`;

const OPTIONS = {
  source: { type: "string", short: "s" },
  replica: { type: "string", short: "r" },
  checksum: { type: "boolean", short: "c" },
  hash: { type: "string" },
  "dry-run": { type: "boolean", short: "n" },
  interval: { type: "string", short: "i" },
  watch: { type: "boolean", short: "w" },
  log: { type: "string", short: "l" },
  "log-file": { type: "string" },
  "log_path": { type: "string" },
  "log-format": { type: "string" },
  "log-max-size": { type: "string" },
  "log-keep": { type: "string" },
  "allow-empty-source": { type: "boolean" },
  jobs: { type: "string", short: "j" },
  "cache-dir": { type: "string" },
  "no-cache": { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  verbose: { type: "boolean", short: "v" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

/**
 * Parses argv (without the program name) into a {@linkcode Command}.
 *
 * @throws {UsageError} On unknown options, missing or extra arguments, or bad values.
 * @example Parsing a seed-style command line
 * ```ts
 * const cmd = parseCommand(["src", "dst", "60", "sync.log"]);
 * // { kind: "sync", options: { source: "src", replica: "dst", intervalMs: 60000, log: "sync.log", ... } }
 * ```
 */
export function parseCommand(argv: readonly string[]): Command {
  // `service` has its own parser (lib/service/cli.ts), loaded only when used.
  if (argv[0] === "service") return { kind: "service", argv: argv.slice(1) };
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(parseArgsMessage(error));
  }
  const { values } = parsed;
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };

  const positionals = [...parsed.positionals];
  if (positionals[0] === "sync" && positionals.length >= 3) positionals.shift();

  let source = values.source;
  let replica = values.replica;
  if (source === undefined) source = positionals.shift();
  if (replica === undefined) replica = positionals.shift();
  if (source === undefined || replica === undefined) {
    throw new UsageError("Missing arguments: foldersync <source> <replica> [options] (see --help)");
  }
  if (source === "" || replica === "") throw new UsageError("Source and replica must not be empty paths");

  const logs = [values.log, values["log-file"], values["log_path"]].filter((v) => v !== undefined);
  let intervalText = values.interval;
  const extra = splitSeedPositionals(positionals);
  if (extra.interval !== undefined) {
    if (intervalText !== undefined) throw new UsageError(`Interval given twice: '${extra.interval}'`);
    intervalText = extra.interval;
  }
  if (extra.log !== undefined) logs.push(extra.log);
  if (logs.length > 1) throw new UsageError(`Log file given twice: '${logs[1]}'`);

  let intervalMs: number | undefined;
  if (intervalText !== undefined) {
    intervalMs = parseDuration(intervalText);
    if (intervalMs === undefined) {
      throw new UsageError(`Interval must be a duration such as 60, 30s, 5m or 1h: '${intervalText}'`);
    }
  }

  const hash = values.hash;
  if (hash !== undefined && !(HASH_NAMES as readonly string[]).includes(hash)) {
    throw new UsageError(`Unknown hash: '${hash}': choose one of ${HASH_NAMES.join(", ")}`);
  }
  const logFormat = values["log-format"] ?? "text";
  if (logFormat !== "text" && logFormat !== "json") {
    throw new UsageError(`Log format must be text or json: '${logFormat}'`);
  }
  if (values.quiet && values.verbose) throw new UsageError("Choose one of --quiet and --verbose");
  if (values["cache-dir"] !== undefined && values["no-cache"]) {
    throw new UsageError("Choose one of --cache-dir and --no-cache");
  }

  const options: CliOptions = {
    source,
    replica,
    checksum: values.checksum ?? false,
    dryRun: values["dry-run"] ?? false,
    logFormat,
    watch: values.watch ?? false,
    allowEmptySource: values["allow-empty-source"] ?? false,
    verbosity: values.quiet ? "quiet" : values.verbose ? "verbose" : "normal",
  };
  if (hash !== undefined) options.hash = hash as HashName;
  if (logs[0] !== undefined) options.log = logs[0];
  if (intervalMs !== undefined) options.intervalMs = intervalMs;
  if (values.jobs !== undefined) options.jobs = parseCount(values.jobs, "Jobs", 1, 256);
  if (values["log-max-size"] !== undefined) {
    options.logMaxSize = parseSize(values["log-max-size"], "Log max size");
  }
  if (values["log-keep"] !== undefined) options.logKeep = parseCount(values["log-keep"], "Log keep", 1, 1000);
  if ((options.logMaxSize !== undefined || options.logKeep !== undefined) && options.log === undefined) {
    throw new UsageError("--log-max-size and --log-keep need --log FILE");
  }
  if (values["no-cache"]) options.cacheDir = false;
  else if (values["cache-dir"] !== undefined) options.cacheDir = values["cache-dir"];
  return { kind: "sync", options };
}

/**
 * Sorts the positionals after source and replica into interval and log, as the seeds use
 * them: with two, the one that reads as a duration is the interval; with one, it is the
 * interval if it reads as a duration and the log file otherwise.
 */
function splitSeedPositionals(rest: string[]): { interval?: string; log?: string } {
  if (rest.length === 0) return {};
  if (rest.length > 2) throw new UsageError(`Unexpected argument: '${rest[2]}'`);
  const [a, b] = rest as [string, string | undefined];
  const isDuration = (text: string) => {
    try {
      return parseDuration(text) !== undefined;
    } catch {
      return true; // a number, but a bad one: let the interval check report it
    }
  };
  if (b === undefined) return isDuration(a) ? { interval: a } : { log: a };
  if (isDuration(a)) return { interval: a, log: b };
  if (isDuration(b)) return { interval: b, log: a };
  throw new UsageError(`Expected an interval such as 60 or 5m among: '${a}', '${b}'`);
}

function parseArgsMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const option = /'(-[^']*)'/.exec(message)?.[1];
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `Unknown option: '${option ?? message}' (see --help)`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (option && /ambiguous/.test(message)) {
        return `Ambiguous value for '${option}': a value that starts with '-' must be attached, as in --interval=-5`;
      }
      return option && /argument missing/.test(message)
        ? `Option needs a value: '${option}'`
        : `Invalid option value: ${message.split("\n")[0]}`;
    default:
      return message.split("\n")[0] ?? message;
  }
}
