/**
 * Command line: argv to a typed {@linkcode Command}, plus the help and version texts.
 *
 * Besides its own syntax, foldersync accepts the command lines of the Python scripts it
 * replaces: `<source> <replica> <interval> <log>`, `<source> <replica> <log> <interval>`,
 * `-s/--source`, `-r/--replica`, `-i`, `-l`, `--log_path` and `--log-file`.
 *
 * @module
 */

import { parseNotifyUrl } from "../run/notify.ts";
import { parseArgs } from "node:util";
import { patternProblem } from "../model/filter.ts";
import { UsageError } from "../model/errors.ts";
import type { Verbosity } from "../log.ts";
import { parseCount, parseDuration, parseSize } from "../model/units.ts";
import type { HashName } from "../model/hash_name.ts";
import type { MaxDelete } from "../engine/gate.ts";
import { HASH_NAMES } from "../model/hash_name.ts";
import denoJson from "../../deno.json" with { type: "json" };
import { type ReplicaTarget } from "../backend/target.ts";
import { BACKENDS, parseTarget } from "../backend/registry.ts";
import { checkSshOption } from "../backend/sftp/ssh_command.ts";

/** The version printed by `--version`, from deno.json. */
export const VERSION: string = denoJson.version;

/** Everything the command line says about a sync, before any path is checked. */
export interface CliOptions {
  /** Source folder as typed. */
  source: string;
  /** Replica folder as typed. */
  replica: string;
  /** What the replica names: a local folder, an SFTP folder or an S3 bucket prefix. */
  target: ReplicaTarget;
  /** What the source names, as the replica: a local folder, an SFTP folder or an S3 bucket prefix. */
  sourceTarget: ReplicaTarget;
  /** `--ssh-port`: the port for an SFTP replica written `host:path`. */
  sshPort?: number;
  /** `--ssh-key`: the private key file for an SFTP replica. */
  sshKey?: string;
  /** `--known-hosts`: the known_hosts file that checks an SFTP replica's host key. */
  knownHosts?: string;
  /** `--ssh-config`: the ssh config file for an SFTP replica, instead of ~/.ssh/config. */
  sshConfig?: string;
  /** `--ssh-option Key=Value` (repeatable): more options for ssh, in order. */
  sshOptions?: string[];
  /** `--s3-endpoint`: the S3 endpoint URL (else AWS_ENDPOINT_URL, else AWS). */
  s3Endpoint?: string;
  /** Compare content hashes instead of size and mtime. */
  checksum: boolean;
  /** Hash algorithm for `--checksum`; undefined means the default. */
  hash?: HashName;
  /** Print what would change and change nothing. */
  dryRun: boolean;
  /** Create the replica's missing parent folders too (rsync's `--mkpath`), not only the replica itself. */
  mkpath: boolean;
  /** `--modify-window`: mtimes within this many milliseconds are equal. */
  modifyWindowMs?: number;
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
  /** Patterns to exclude, in gitignore syntax (`--exclude`, repeatable). */
  exclude: string[];
  /** Files of patterns to exclude, one a line (`--exclude-from`, repeatable). */
  excludeFrom: string[];
  /** Remove excluded entries from the replica too. */
  deleteExcluded: boolean;
  /** Remove nothing when a run would remove more than this; see {@linkcode MaxDelete}. */
  maxDelete?: MaxDelete;
  /** Change nothing that exists in the replica when a run would overwrite or remove more than this. */
  maxChange?: MaxDelete;
  /** Parallel file copies and hashes. */
  jobs?: number;
  /** Directory for the checksum cache; `false` disables it; undefined: the default place. */
  cacheDir?: string | false;
  /** Move replica entries that would be removed or overwritten into this folder (as typed). */
  backupDir?: string;
  /** `--backup-keep`: versions moved into the backup folder longer ago than this are removed. */
  backupKeepMs?: number;
  /** `--notify`: POST a JSON report of each run to this URL (checked; may hold `{status}`, `{exit_code}`). */
  notify?: string;
  /** `--metrics`: replace this file after each run with its figures for Prometheus (as typed). */
  metrics?: string;
  /** Console verbosity. */
  verbosity: Verbosity;
  /**
   * The live progress line: true forces it on (`--progress`), false off (`--no-progress`);
   * undefined: on when stderr is a terminal, unless `--quiet` or `--log-format json`.
   */
  progress?: boolean;
}

/** What the command line asks for. */
export type Command =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "sync"; options: CliOptions }
  | { kind: "verify"; options: CliOptions }
  | { kind: "service"; argv: string[] };

/** The text of `--help`. */
export const HELP = `foldersync ${VERSION}: keep a replica folder an exact one-way copy of a source folder

Usage:
  foldersync [sync] <source> <replica> [options]
  foldersync <source> <replica> <interval> [<log>]    (also <log> <interval>)
  foldersync -s <source> -r <replica> [-i <interval>] [-l <log>]
  foldersync verify <source> <replica> [-c] [--hash NAME] [-l FILE] [--log-format json] [-q|-v]
  foldersync service print|install|uninstall|status <name> ...   (see foldersync service --help)

  verify compares the trees and changes nothing: one line per difference (missing, extra,
  differs with the reason), exit 0 when identical and 1 when they differ.

  A first argument sync, verify or service is always the command: write a
  folder of that name as ./sync. A third argument must be an interval; with a fourth,
  exactly one of the two is. A path that starts with - goes after -- (or write ./-x).

Options:
  -c, --checksum            compare files by content hash, not by size and mtime
      --hash NAME           hash for --checksum, which it needs (default xxh3):
                            ${HASH_NAMES.join(", ")}
  -n, --dry-run             print every change that would be made; change nothing
      --modify-window SECS  count mtimes within SECS seconds as equal (rsync's option, for
                            file systems that keep times more coarsely than they say; the
                            replica's own resolution is found by itself: FAT 2s, ext2 1s)
      --mkpath              create the replica's missing parent folders too (without it,
                            only the replica folder itself is created: a missing parent
                            is exit 2, as when a backup disk is not mounted)
  -i, --interval DURATION   sync again every DURATION, at least 1s: 60 (seconds), 30s,
                            10min, 1h, 1d (units ms, s/sec/secs, m/min/mins, h/hr/hrs,
                            d/day/days)
  -w, --watch               sync changes live as they happen (full rescan every
                            --interval, 5m by default)
  -l, --log FILE            also append log lines to FILE (aliases --log-file, --log_path)
      --log-format FORMAT   text (default) or json (one JSON object per line)
      --log-max-size SIZE   rotate the log file past SIZE (10M, 512K ...; at least 1K)
      --log-keep N          rotated log files kept besides the current one (default 5)
      --allow-empty-source  let an empty source empty a non-empty replica
  -x, --exclude PATTERN     leave out what matches PATTERN (gitignore syntax: *.tmp, node_modules/,
                            /build, **/cache/**, !keep.tmp); excluded replica entries are kept
      --exclude-from FILE   read patterns from FILE, one a line (# comments); before --exclude ones
      --delete-excluded     remove excluded entries from the replica too
      --max-delete N|P%     remove nothing at all if a run would remove more than N entries
                            (or P% of the replica's); copies still run, exit code 5
      --max-change N|P%     change nothing that exists in the replica (no update, no removal)
                            if a run would overwrite or remove more than N entries (or P%):
                            a rewritten source (ransomware, a bad export); new files still
                            copied, exit code 5
      --backup-dir DIR      move what a sync would remove or overwrite into DIR, under the
                            same path (a taken name gets a suffix ~YYYY-MM-DDTHH-MM-SS, UTC);
                            DIR may lie inside the replica, which then leaves it alone
      --backup-keep DURATION  after each run, remove the versions moved into the --backup-dir
                            longer ago than DURATION (30d, 12h ...); only those foldersync put
                            there, by its journal .foldersync-backups in DIR
      --notify URL          after each run (and a failure to start), POST a JSON report to
                            URL (http or https): status ok, failed or refused, exit code,
                            the summary's counts; {status} and {exit_code} in URL are
                            filled in (https://hc-ping.com/UUID/{exit_code}); a failed
                            POST is a warning, never an exit code
      --metrics FILE        after each run, replace FILE with the run's figures in
                            Prometheus' text format, for node_exporter's textfile
                            collector (name it NAME.prom); a dry run leaves it alone
  -j, --jobs N              most parallel copies and hashes (default: local 8, SFTP 64,
                            S3 32, a restore from S3 64; worker threads also capped by cores)
      --cache-dir DIR       where --checksum keeps its hash cache
                            (default $XDG_CACHE_HOME/foldersync or ~/.cache/foldersync)
      --no-cache            do not use the hash cache
      --progress            show the live progress line even when stderr is not a terminal,
                            or with --quiet or --log-format json
      --no-progress         never show it (by default it shows on a terminal, once a run
                            takes over a second)
  -q, --quiet               print only warnings and errors (a clean run prints nothing)
  -v, --verbose             print debug detail too
  -s, --source PATH         the source folder (instead of the first argument)
  -r, --replica PATH        the replica folder (instead of the second argument)

Remote folders (either side: the source, the replica or both):
  sftp://[user@]host[:port]/path, or [user@]host:path as rsync writes it (host:dir is in
  the login folder); through the system's OpenSSH client (ssh), so ~/.ssh/config, ssh-agent
  and known_hosts apply as for ssh, scp and rsync; ssh never prompts (BatchMode=yes)
      --ssh-port N          port for the host:path form (ssh -p; default: ~/.ssh/config, else 22)
      --ssh-key FILE        the private key to log in with, and no other (ssh -i FILE
                            -o IdentitiesOnly=yes; default: what ssh offers)
      --known-hosts FILE    host keys to trust (ssh -o UserKnownHostsFile=FILE; default
                            ~/.ssh/known_hosts); an unknown or changed host key is refused
      --ssh-config FILE     the ssh config file to read instead of ~/.ssh/config (ssh -F)
      --ssh-option KEY=VAL  one more ssh option (ssh -o), e.g. ProxyJump=bastion; repeatable
  s3://bucket[/prefix]      S3-compatible storage; credentials and region from the AWS
                            environment variables, AWS_PROFILE and ~/.aws
      --s3-endpoint URL     the S3 server (default AWS_ENDPOINT_URL, else AWS itself)
  -h, --help                print this help
      --version             print the version

Exit codes:
  0    the replica matches the source
  1    the run finished, but some entries failed (see the log)
  2    usage error or bad input; nothing was touched
  3    refused for safety (an empty source and a non-empty replica); nothing was touched
  4    another foldersync is already syncing into this replica; nothing was touched
  5    --max-delete or --max-change refused the run's removals or changes: none was made,
       everything else was synced
  6    service install/uninstall/status: files written, but the service manager failed
  130  a one-shot sync was stopped by SIGINT or SIGTERM before it finished

Every option in full, and the rest (backends, services, safety): docs/usage.md and docs/
`;

/** Command words: a first positional that is one of them is always the command. */
const COMMANDS = ["sync", "verify", "service"] as const;

/** The shortest interval: a shorter one is a busy loop, not a schedule. */
const MIN_INTERVAL_MS = 1000;

/**
 * The smallest `--log-max-size`. LogTape's rotating sink rolls over before any write that
 * would pass the limit, even into an empty file, so a limit below one line left an empty
 * rotated file; at 1 KiB (and a buffer of a sixteenth of it, see setupLogging) a write is
 * one line of usually 100 to 300 bytes.
 */
const MIN_LOG_MAX_SIZE = 1024;

/** Every option the command line takes (node:util parseArgs' table); docs/usage.md documents each (tests/docs_test.ts). */
export const OPTIONS = {
  source: { type: "string", short: "s" },
  replica: { type: "string", short: "r" },
  checksum: { type: "boolean", short: "c" },
  hash: { type: "string" },
  "dry-run": { type: "boolean", short: "n" },
  mkpath: { type: "boolean" },
  "modify-window": { type: "string" },
  interval: { type: "string", short: "i" },
  watch: { type: "boolean", short: "w" },
  log: { type: "string", short: "l" },
  "log-file": { type: "string" },
  "log_path": { type: "string" },
  "log-format": { type: "string" },
  "log-max-size": { type: "string" },
  "log-keep": { type: "string" },
  "allow-empty-source": { type: "boolean" },
  "max-delete": { type: "string" },
  "max-change": { type: "string" },
  exclude: { type: "string", short: "x", multiple: true },
  "exclude-from": { type: "string", multiple: true },
  "delete-excluded": { type: "boolean" },
  "backup-dir": { type: "string" },
  "backup-keep": { type: "string" },
  notify: { type: "string" },
  metrics: { type: "string" },
  "ssh-port": { type: "string" },
  "ssh-key": { type: "string" },
  "known-hosts": { type: "string" },
  "ssh-config": { type: "string" },
  "ssh-option": { type: "string", multiple: true },
  "s3-endpoint": { type: "string" },
  jobs: { type: "string", short: "j" },
  "cache-dir": { type: "string" },
  "no-cache": { type: "boolean" },
  progress: { type: "boolean" },
  "no-progress": { type: "boolean" },
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
    throw new UsageError(parseArgsMessage(error, argv));
  }
  const { values } = parsed;
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };

  const positionals = [...parsed.positionals];
  // A first positional that is a command word is always the command: a folder named so is written ./sync.
  const word = COMMANDS.find((c) => c === positionals[0]);
  if (word !== undefined) positionals.shift();
  const folderHint = word !== undefined ? ` (to name a folder called ${word}, write ./${word})` : "";
  if (word === "service") throw new UsageError("The service command comes first: foldersync service ... (see --help)");
  if (word === "verify") {
    // Everything that schedules, creates or removes belongs to sync alone.
    const syncOnly = [
      "interval",
      "watch",
      "dry-run",
      "max-delete",
      "max-change",
      "backup-keep",
      "allow-empty-source",
      "mkpath",
      "delete-excluded",
      "notify",
      "metrics",
    ] as const;
    const used = syncOnly.find((name) => values[name] !== undefined);
    if (used !== undefined) throw new UsageError(`Option not valid with verify: '--${used}'`);
  }

  let source = values.source;
  let replica = values.replica;
  const replicaIsPositional = replica === undefined;
  if (source === undefined) source = positionals.shift();
  if (replica === undefined) replica = positionals.shift();
  if (source === undefined || replica === undefined) {
    throw new UsageError(
      word !== undefined
        ? `Missing arguments: foldersync ${word} <source> <replica>${folderHint}`
        : "Missing arguments: foldersync <source> <replica> [options] (see --help)",
    );
  }
  if (word !== undefined && replicaIsPositional && positionals.length === 0 && readsAsDuration(replica)) {
    // `foldersync sync /backup 60` meant the folder sync, not a replica named 60.
    throw new UsageError(
      `Replica reads as an interval: '${replica}' (to name a folder called ${word}, write ./${word}; ` +
        `for a replica folder named ${replica}, write ./${replica})`,
    );
  }
  if (source === "" || replica === "") throw new UsageError("Source and replica must not be empty paths");
  const target = parseTarget(replica);
  const sourceTarget = parseTarget(source);
  if (values.watch && sourceTarget.kind !== "local") {
    throw new UsageError(
      `--watch needs a local source (it follows file-system events): '${source}' (use --interval to poll it)`,
    );
  }

  const logs = [values.log, values["log-file"], values["log_path"]].filter((v) => v !== undefined);
  let intervalText = values.interval;
  if (word === "verify" && positionals.length > 0) throw new UsageError(`Unexpected argument: '${positionals[0]}'`);
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
    if (intervalMs < MIN_INTERVAL_MS) {
      throw new UsageError(`Interval must be at least 1s: '${intervalText}'`);
    }
  }

  const hash = values.hash;
  if (hash !== undefined && !(HASH_NAMES as readonly string[]).includes(hash)) {
    throw new UsageError(`Unknown hash: '${hash}': choose one of ${HASH_NAMES.join(", ")}`);
  }
  if (hash !== undefined && !values.checksum) throw new UsageError(`--hash needs --checksum: '${hash}'`);
  const logFormat = values["log-format"] ?? "text";
  if (logFormat !== "text" && logFormat !== "json") {
    throw new UsageError(`Log format must be text or json: '${logFormat}'`);
  }
  if (values.quiet && values.verbose) throw new UsageError("Choose one of --quiet and --verbose");
  if (values.progress && values["no-progress"]) throw new UsageError("Choose one of --progress and --no-progress");
  if (values["cache-dir"] !== undefined && values["no-cache"]) {
    throw new UsageError("Choose one of --cache-dir and --no-cache");
  }

  const options: CliOptions = {
    source,
    replica,
    target,
    sourceTarget,
    checksum: values.checksum ?? false,
    dryRun: values["dry-run"] ?? false,
    mkpath: values.mkpath ?? false,
    logFormat,
    watch: values.watch ?? false,
    allowEmptySource: values["allow-empty-source"] ?? false,
    exclude: (values.exclude ?? []).map(commandLinePattern),
    excludeFrom: values["exclude-from"] ?? [],
    deleteExcluded: values["delete-excluded"] ?? false,
    verbosity: values.quiet ? "quiet" : values.verbose ? "verbose" : "normal",
  };
  if (hash !== undefined) options.hash = hash as HashName;
  if (logs[0] !== undefined) options.log = logs[0];
  if (intervalMs !== undefined) options.intervalMs = intervalMs;
  if (values.jobs !== undefined) options.jobs = parseCount(values.jobs, "Jobs", 1, 256);
  if (values["modify-window"] !== undefined) options.modifyWindowMs = parseModifyWindow(values["modify-window"]);
  if (values["backup-dir"] !== undefined) {
    if (values["backup-dir"] === "") throw new UsageError("Backup directory must not be an empty path");
    options.backupDir = values["backup-dir"];
  }
  if (values["backup-keep"] !== undefined) {
    if (options.backupDir === undefined) throw new UsageError("--backup-keep needs --backup-dir DIR");
    const keep = parseDuration(values["backup-keep"]);
    if (keep === undefined || keep < 1000) {
      throw new UsageError(
        `Backup keep must be a duration of at least 1s, such as 30d or 12h: '${values["backup-keep"]}'`,
      );
    }
    options.backupKeepMs = keep;
  }
  if (values["max-delete"] !== undefined) options.maxDelete = parseCap(values["max-delete"], "Max delete");
  if (values["max-change"] !== undefined) options.maxChange = parseCap(values["max-change"], "Max change");
  if (values.notify !== undefined) options.notify = parseNotifyUrl(values.notify);
  if (values.metrics !== undefined) {
    if (values.metrics === "") throw new UsageError("Metrics file must not be an empty path");
    options.metrics = values.metrics;
  }
  if (values["log-max-size"] !== undefined) {
    options.logMaxSize = parseSize(values["log-max-size"], "Log max size");
    if (options.logMaxSize < MIN_LOG_MAX_SIZE) {
      throw new UsageError(`Log max size must be at least 1K: '${values["log-max-size"]}'`);
    }
  }
  if (values["log-keep"] !== undefined) options.logKeep = parseCount(values["log-keep"], "Log keep", 1, 1000);
  if ((options.logMaxSize !== undefined || options.logKeep !== undefined) && options.log === undefined) {
    throw new UsageError("--log-max-size and --log-keep need --log FILE");
  }
  remoteOptions(values, options);
  if (values.progress) options.progress = true;
  else if (values["no-progress"]) options.progress = false;
  if (values["no-cache"]) options.cacheDir = false;
  else if (values["cache-dir"] !== undefined) options.cacheDir = values["cache-dir"];
  return { kind: word === "verify" ? "verify" : "sync", options };
}

/** The options of remote replicas, each only with a replica of its kind. */
function remoteOptions(
  values: {
    "ssh-port"?: string;
    "ssh-key"?: string;
    "known-hosts"?: string;
    "ssh-config"?: string;
    "ssh-option"?: string[];
    "s3-endpoint"?: string;
  },
  options: CliOptions,
): void {
  // An option of a backend applies to each side of that kind, and needs one.
  const kinds = new Set<string>([options.target.kind, options.sourceTarget.kind]);
  for (const backend of BACKENDS) {
    for (const name of backend.options) {
      const value = (values as Record<string, string | string[] | undefined>)[name];
      if (value === undefined) continue;
      if (!kinds.has(backend.kind)) {
        const what = backend.kind === "s3" ? "S3" : backend.kind.toUpperCase();
        throw new UsageError(`Option needs an ${what} source or replica (${backend.forms}): '--${name}'`);
      }
      if (value === "") throw new UsageError(`Option needs a value: '--${name}'`);
    }
  }
  if (values["s3-endpoint"] !== undefined) {
    const endpoint = values["s3-endpoint"];
    if (!/^https?:\/\/[^/\s]+/.test(endpoint)) {
      throw new UsageError(`S3 endpoint must be an http:// or https:// URL: '${endpoint}'`);
    }
    options.s3Endpoint = endpoint;
  }
  if (values["ssh-port"] !== undefined) options.sshPort = parseCount(values["ssh-port"], "SSH port", 1, 65535);
  if (values["ssh-key"] !== undefined) options.sshKey = values["ssh-key"];
  if (values["known-hosts"] !== undefined) options.knownHosts = values["known-hosts"];
  if (values["ssh-config"] !== undefined) options.sshConfig = values["ssh-config"];
  if (values["ssh-option"] !== undefined) options.sshOptions = values["ssh-option"].map(checkSshOption);
}

/**
 * A pattern from `--exclude`: one that names nothing (`''`, `/`, `!`) is refused, and a
 * leading `#` is a name, not a comment (a comment has no business on a command line).
 */
function commandLinePattern(pattern: string): string {
  const problem = patternProblem(pattern);
  if (problem !== undefined) throw new UsageError(`${problem}: '${pattern}'`);
  return pattern.startsWith("#") ? `\\${pattern}` : pattern;
}

/** True when `text` reads as a duration, even a bad one (`0`, `-5`) that the interval check then reports. */
function readsAsDuration(text: string): boolean {
  try {
    return parseDuration(text) !== undefined;
  } catch {
    return true;
  }
}

/**
 * Sorts the positionals after source and replica into interval and log, as the seeds use
 * them. With one, it must read as a duration (the interval): a typo such as `10minutes`
 * must not become a log file named so. With two, exactly one of them must read as a
 * duration: it is the interval and the other the log file.
 */
function splitSeedPositionals(rest: string[]): { interval?: string; log?: string } {
  if (rest.length === 0) return {};
  if (rest.length > 2) throw new UsageError(`Unexpected argument: '${rest[2]}'`);
  const [a, b] = rest as [string, string | undefined];
  const isDuration = readsAsDuration;
  if (b === undefined) {
    if (isDuration(a)) return { interval: a };
    throw new UsageError(
      `Expected an interval such as 60, 30s or 5m as the third argument: '${a}' ` +
        `(a log file goes after -l, or fourth, after the interval)`,
    );
  }
  if (isDuration(a) && isDuration(b)) {
    throw new UsageError(
      `Expected one interval and one log file, but both read as intervals: '${a}', '${b}' ` +
        `(name the log file with -l, or as ./${b})`,
    );
  }
  if (isDuration(a)) return { interval: a, log: b };
  if (isDuration(b)) return { interval: b, log: a };
  throw new UsageError(`Expected an interval such as 60, 30s or 5m among: '${a}', '${b}'`);
}

/** The names of an option as the user may type them: `'-j'/'--jobs'`, or `'--hash'`. */
function optionNames(option: string): string {
  const name = option.replace(/^-+/, "").split(/[ ,=]/)[0] ?? "";
  const entry = Object.entries(OPTIONS).find(([long, spec]) =>
    long === name || ("short" in spec && spec.short === name)
  );
  if (!entry) return `'${option}'`;
  const [long, spec] = entry;
  return "short" in spec ? `'-${spec.short}'/'--${long}'` : `'--${long}'`;
}

/**
 * One clear line for an error of node:util's parseArgs, naming the option as typed: its own
 * messages name a letter inside a cluster (`-weird-src` gives `'-e'`) or the wrong example.
 */
function parseArgsMessage(error: unknown, argv: readonly string[]): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const option = /'(-[^']*)'/.exec(message)?.[1];
  const beforeDashes = argv.slice(0, argv.includes("--") ? argv.indexOf("--") : argv.length);
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION": {
      if (option === undefined) return `Unknown option: ${message.split("\n")[0]} (see --help)`;
      if (option.startsWith("--")) return `Unknown option: '${option}' (see --help)`;
      // A short option letter: report the whole argument it came from, which is likely a path.
      const letter = option.slice(1);
      const typed = beforeDashes.find((a) => /^-[^-]/.test(a) && a.slice(1).includes(letter)) ?? option;
      return `Unknown option: '${typed}' (a path that starts with '-' goes after --, or write ./${typed})`;
    }
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE": {
      if (option && /ambiguous/.test(message)) {
        const typed = beforeDashes.findIndex((a) => a === option);
        const value = typed >= 0 ? beforeDashes[typed + 1] ?? "-1" : "-1";
        const long = optionNames(option).split("/").pop()!.replaceAll("'", "");
        return `Ambiguous value for ${optionNames(option)}: '${value}' ` +
          `(a value that starts with '-' must be attached, as in ${long}=${value})`;
      }
      return option && /argument missing/.test(message)
        ? `Option needs a value: ${optionNames(option)}`
        : `Invalid option value: ${message.split("\n")[0]}`;
    }
    default:
      return message.split("\n")[0] ?? message;
  }
}

/**
 * `--modify-window SECONDS`: a number of seconds, whole or decimal, from 0 to a day (FAT kept
 * in local time shifts by an hour across daylight saving: `3601` covers it, as with rsync).
 */
function parseModifyWindow(text: string): number {
  const seconds = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(seconds) || seconds > 86_400) {
    throw new UsageError(`Modify window must be a number of seconds from 0 to 86400: '${text}'`);
  }
  return Math.round(seconds * 1000);
}

/** `--max-delete` and `--max-change`: a whole number of entries, or a percentage such as `50%`. */
function parseCap(text: string, what: string): MaxDelete {
  const percent = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text);
  if (percent) {
    const value = Number(percent[1]);
    if (value <= 100) return { percent: value };
  } else if (/^\s*\d+\s*$/.test(text)) {
    return { count: Number(text) };
  }
  throw new UsageError(`${what} must be a number of entries or a percentage from 0% to 100%: '${text}'`);
}
