/**
 * ~/.ssh/config, read the way ssh and rsync read it, for the few keywords an SFTP replica
 * needs: `Host` blocks (patterns with `*` and `?`, negation with `!`, several per line), the
 * first value obtained wins (IdentityFile accumulates), `Include` (relative to ~/.ssh, with
 * wildcards), `HostName`, `User`, `Port`, `IdentityFile`, `IdentitiesOnly`, `IdentityAgent`,
 * `UserKnownHostsFile`, `HostKeyAlias` and `ConnectTimeout`, with the `%` tokens ssh expands
 * in them (%% %d %h %l %n %p %r %u, and %h in HostName).
 *
 * `Match` blocks are not evaluated: only `Match all` applies, any other `Match` block is
 * skipped (what it would set is not used).
 *
 * @module
 */

/** What ~/.ssh/config says about one host, as written (tokens not yet expanded). */
export interface SshHostConfig {
  hostName?: string;
  user?: string;
  port?: number;
  /** Every IdentityFile that applies, in order. */
  identityFiles: string[];
  identitiesOnly?: boolean;
  identityAgent?: string;
  userKnownHostsFiles?: string[];
  hostKeyAlias?: string;
  /** Seconds. */
  connectTimeout?: number;
}

/** Options for {@linkcode readSshConfig}. */
export interface SshConfigOptions {
  /**
   * The config file.
   * @default `${home}/.ssh/config`
   */
  file?: string;
  /** The local home folder (for `~` and relative `Include`s). */
  home: string;
  /**
   * Reads a file; undefined when it does not exist.
   * @default Deno.readTextFileSync, NotFound read as undefined
   */
  readFile?: (path: string) => string | undefined;
  /**
   * Lists the names in a folder (for `Include` wildcards); empty when it does not exist.
   * @default Deno.readDirSync
   */
  listDir?: (path: string) => string[];
}

const MAX_INCLUDE_DEPTH = 16;

/**
 * Reads the settings ssh would use for `host` (the name as written on the command line).
 *
 * Needs read permission for the config file and what it includes. Throws only on an
 * unreadable file other than a missing one (a missing config is an empty one).
 *
 * @example Resolving an alias
 * ```ts
 * const config = readSshConfig("prod", { home: "/home/me" });
 * config.hostName; // "web1.example.com"
 * ```
 */
export function readSshConfig(host: string, options: SshConfigOptions): SshHostConfig {
  const { home, file = `${home}/.ssh/config`, readFile = readTextOrNone, listDir = listNames } = options;
  const config: SshHostConfig = { identityFiles: [] };
  const read = (path: string, depth: number) => {
    const text = readFile(path);
    if (text === undefined) return;
    let active = true;
    for (const raw of text.split(/\r?\n/)) {
      const parsed = parseLine(raw);
      if (!parsed) continue;
      const [keyword, args] = parsed;
      if (keyword === "host") {
        active = matchPatternList(args, host);
        continue;
      }
      if (keyword === "match") {
        active = args.length === 1 && args[0]!.toLowerCase() === "all";
        continue;
      }
      if (!active) continue;
      if (keyword === "include") {
        if (depth >= MAX_INCLUDE_DEPTH) continue;
        for (const pattern of args) {
          const full = expandHome(pattern, home);
          const path = full.startsWith("/") ? full : `${home}/.ssh/${full}`;
          for (const match of globFiles(path, listDir)) read(match, depth + 1);
        }
        continue;
      }
      apply(config, keyword, args);
    }
  };
  read(file, 0);
  return config;
}

/** Sets what `keyword` says unless it was obtained already (first value wins). */
function apply(config: SshHostConfig, keyword: string, args: string[]): void {
  const value = args[0];
  if (value === undefined) return;
  switch (keyword) {
    case "hostname":
      config.hostName ??= value;
      break;
    case "user":
      config.user ??= value;
      break;
    case "port": {
      const port = Number(value);
      if (config.port === undefined && Number.isInteger(port) && port > 0 && port < 65536) config.port = port;
      break;
    }
    case "identityfile":
      config.identityFiles.push(value);
      break;
    case "identitiesonly":
      config.identitiesOnly ??= value.toLowerCase() === "yes";
      break;
    case "identityagent":
      config.identityAgent ??= value;
      break;
    case "userknownhostsfile":
      config.userKnownHostsFiles ??= args;
      break;
    case "hostkeyalias":
      config.hostKeyAlias ??= value;
      break;
    case "connecttimeout": {
      const seconds = Number(value);
      if (config.connectTimeout === undefined && seconds > 0) config.connectTimeout = seconds;
      break;
    }
  }
}

/** A config line as its lower-case keyword and arguments (quotes removed); undefined for none. */
export function parseLine(raw: string): [string, string[]] | undefined {
  const line = raw.trim();
  if (line === "" || line.startsWith("#")) return undefined;
  const match = /^([^\s=]+)(?:\s*=\s*|\s+)(.*)$/.exec(line);
  if (!match) return [line.toLowerCase(), []];
  const args: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m; (m = re.exec(match[2]!));) {
    if (m[2]?.startsWith("#")) break;
    args.push(m[1] ?? m[2]!);
  }
  return [match[1]!.toLowerCase(), args];
}

/**
 * True when `text` matches ssh pattern `pattern`: `*` any run of characters, `?` one,
 * case-insensitive as ssh compares host names.
 *
 * @example Matching
 * ```ts
 * matchPattern("*.example.com", "web1.example.com"); // true
 * ```
 */
export function matchPattern(pattern: string, text: string): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp(`^${source}$`, "i").test(text);
}

/**
 * True when `text` matches a list of ssh patterns: some pattern matches and no negated
 * (`!pattern`) one does.
 *
 * @example A list with a negation
 * ```ts
 * matchPatternList(["*.example.com", "!db.example.com"], "db.example.com"); // false
 * ```
 */
export function matchPatternList(patterns: readonly string[], text: string): boolean {
  let matched = false;
  for (const pattern of patterns) {
    for (const part of pattern.split(",")) {
      if (part === "") continue;
      if (part.startsWith("!")) {
        if (matchPattern(part.slice(1), text)) return false;
      } else if (matchPattern(part, text)) {
        matched = true;
      }
    }
  }
  return matched;
}

/** What ssh's `%` tokens stand for. */
export interface SshTokens {
  /** %d: the local home folder. */
  home: string;
  /** %u: the local user. */
  localUser: string;
  /** %h: the remote host name (after HostName). */
  host: string;
  /** %n: the host as written. */
  original: string;
  /** %r: the remote user. */
  user: string;
  /** %p: the port. */
  port: number;
  /** %l: the local host name. */
  localHost: string;
}

/**
 * Expands `~` and ssh's `%` tokens in a file name from the config.
 *
 * @example An identity per host
 * ```ts
 * expandTokens("~/.ssh/%h_%r", { home: "/home/me", host: "web1", user: "deploy", ... }); // "/home/me/.ssh/web1_deploy"
 * ```
 */
export function expandTokens(text: string, tokens: Partial<SshTokens> & { home: string }): string {
  const expanded = text.replace(/%(.)/g, (all, c: string) => {
    const value = c === "%"
      ? "%"
      : c === "d"
      ? tokens.home
      : c === "u"
      ? tokens.localUser
      : c === "h"
      ? tokens.host
      : c === "n"
      ? tokens.original
      : c === "r"
      ? tokens.user
      : c === "p"
      ? tokens.port?.toString()
      : c === "l"
      ? tokens.localHost
      : undefined;
    return value ?? all;
  });
  return expandHome(expanded, tokens.home);
}

/** `~` and `~/...` as the home folder. */
export function expandHome(path: string, home: string): string {
  return path === "~" ? home : path.startsWith("~/") ? `${home}${path.slice(1)}` : path;
}

/** The files `path` names, with `*` and `?` in its last part expanded, sorted. */
function globFiles(path: string, listDir: (dir: string) => string[]): string[] {
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash) || "/";
  const name = path.slice(slash + 1);
  if (!/[*?]/.test(name)) return [path];
  return listDir(dir).filter((entry) => matchPattern(name, entry) && !entry.startsWith(".")).sort()
    .map((entry) => `${dir}/${entry}`);
}

function readTextOrNone(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.IsADirectory) return undefined;
    throw error;
  }
}

function listNames(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((entry) => entry.name);
  } catch {
    return [];
  }
}
