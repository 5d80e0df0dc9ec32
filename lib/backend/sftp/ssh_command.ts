/**
 * PURE: the command lines that run the system's OpenSSH client for an SFTP replica, what its
 * configuration dump (`ssh -G`) says, and its stderr turned into one clear line.
 *
 * OpenSSH reads the user's whole configuration itself (`~/.ssh/config` with every keyword,
 * `Match`, `ProxyJump`, `ProxyCommand`, certificates, the agent, `ControlMaster`, known_hosts
 * with `StrictHostKeyChecking` as configured): foldersync only adds what a batch job needs.
 * ssh keeps the first value it obtains for an option, and the command line comes before the
 * config files, so the order of the options below is the order of precedence.
 *
 * @module
 */

import { UsageError } from "../../model/errors.ts";
import type { SftpTarget } from "../target.ts";

/** How the user told foldersync to run ssh; the fields of BackendOptions of the same names. */
export interface SshSettings {
  /** `--ssh-port`: `-p`, for a target without a port of its own. */
  sshPort?: number | undefined;
  /** `--ssh-key FILE`: `-i FILE` with `IdentitiesOnly=yes` (that key, or the agent's copy of it, and no other). */
  sshKey?: string | undefined;
  /** `--known-hosts FILE`: `-o UserKnownHostsFile=FILE`. */
  knownHosts?: string | undefined;
  /** `--ssh-config FILE`: `-F FILE` (that file instead of `~/.ssh/config`). */
  sshConfig?: string | undefined;
  /** `--ssh-option Key=Value`, each `-o Key=Value`, in order. */
  sshOptions?: readonly string[] | undefined;
}

/**
 * Options every session gets, before anything the user says: never wait at a prompt (a
 * password, a passphrase, an unknown host key), and nothing but the SFTP channel, as
 * OpenSSH's own sftp(1) asks (no terminal, no remote command, no forwarding).
 */
export const FIXED_OPTIONS: readonly string[] = [
  "BatchMode=yes",
  "RequestTTY=no",
  "RemoteCommand=none",
  "ForwardAgent=no",
  "ForwardX11=no",
  "ClearAllForwardings=yes",
  "PermitLocalCommand=no",
];

/** ssh's wait for a TCP connection and the server's banner, unless the config sets ConnectTimeout. */
export const DEFAULT_CONNECT_TIMEOUT_S = 15;
/** Keepalives through the encrypted channel, unless the config sets ServerAliveInterval: a dead link is noticed in 45 s. */
export const DEFAULT_SERVER_ALIVE_S = 15;

/**
 * Checks one `--ssh-option` and returns it as ssh takes it (`Key=Value`).
 *
 * @throws {UsageError} When it is not `Key=Value`, or sets one of {@linkcode FIXED_OPTIONS}.
 * @example An option
 * ```ts
 * checkSshOption("ProxyJump=bastion"); // "ProxyJump=bastion"
 * ```
 */
export function checkSshOption(text: string): string {
  const match = /^\s*([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+)(\S.*)$/.exec(text);
  if (!match) throw new UsageError(`SSH option must be written Key=Value, as ssh -o takes it: '${text}'`);
  const key = match[1]!;
  const fixed = FIXED_OPTIONS.find((option) => option.split("=")[0]!.toLowerCase() === key.toLowerCase());
  if (fixed !== undefined) {
    throw new UsageError(
      `SSH option cannot be changed: '${text}' (foldersync always runs ssh with ${fixed}: ` +
        "a sync never waits at a prompt and opens nothing but its SFTP channel)",
    );
  }
  return `${key}=${match[2]!.trim()}`;
}

/**
 * The ssh options for `target` (without the destination): the user's `--ssh-config` and
 * `--ssh-option`s, the port, login name, key and known_hosts file.
 *
 * @example The options of a URL with a port
 * ```ts
 * sshOptions(parseTarget("sftp://deploy@web1:2200/srv") as SftpTarget, { sshKey: "/k" });
 * // ["-p", "2200", "-l", "deploy", "-i", "/k", "-o", "IdentitiesOnly=yes"]
 * ```
 */
export function sshOptions(target: SftpTarget, settings: SshSettings): string[] {
  const args: string[] = [];
  if (settings.sshConfig !== undefined) args.push("-F", settings.sshConfig);
  for (const option of settings.sshOptions ?? []) args.push("-o", option);
  const port = target.port ?? settings.sshPort;
  if (port !== undefined) args.push("-p", String(port));
  if (target.user !== undefined) args.push("-l", target.user);
  if (settings.sshKey !== undefined) args.push("-i", settings.sshKey, "-o", "IdentitiesOnly=yes");
  if (settings.knownHosts !== undefined) {
    args.push("-o", `UserKnownHostsFile=${quoteValue(escapeTokens(settings.knownHosts))}`);
  }
  return args;
}

/**
 * The arguments of `ssh -G`: what ssh would use for `target`, printed without connecting.
 *
 * @example
 * ```ts
 * dumpArgs(["-p", "2200"], "web1"); // ["-p", "2200", "-G", "--", "web1"]
 * ```
 */
export function dumpArgs(options: readonly string[], host: string): string[] {
  return [...options, "-G", "--", host];
}

/**
 * The arguments of the session: the fixed options, `-v` (its debug lines name the host key
 * and the keys tried, for the error lines), the defaults the config leaves unset, the user's
 * options, then the sftp subsystem request on `host`.
 *
 * @example
 * ```ts
 * sessionArgs(["-p", "2200"], "web1", resolved);
 * // ["-o", "BatchMode=yes", ..., "-v", "-p", "2200", "-s", "--", "web1", "sftp"]
 * ```
 */
export function sessionArgs(options: readonly string[], host: string, resolved: SshResolved): string[] {
  const args = FIXED_OPTIONS.flatMap((option) => ["-o", option]);
  args.push("-v");
  args.push(...options);
  if (resolved.connectTimeoutS === undefined) args.push("-o", `ConnectTimeout=${DEFAULT_CONNECT_TIMEOUT_S}`);
  if (resolved.serverAliveIntervalS === 0) args.push("-o", `ServerAliveInterval=${DEFAULT_SERVER_ALIVE_S}`);
  args.push("-s", "--", host, "sftp");
  return args;
}

/** `%` is a token in ssh's file names: `%%` keeps it. */
function escapeTokens(path: string): string {
  return path.replaceAll("%", "%%");
}

/** A value in double quotes (ssh splits unquoted values at spaces), `\` and `"` escaped. */
function quoteValue(value: string): string {
  return /[\s"\\]/.test(value) ? `"${value.replace(/[\\"]/g, "\\$&")}"` : value;
}

/** What `ssh -G` says about a host: the settings foldersync reads. */
export interface SshResolved {
  /** The host name or address ssh connects to (after HostName, Match, canonicalisation). */
  hostName: string;
  port: number;
  user: string;
  /** Seconds; undefined when unset (`none`). */
  connectTimeoutS: number | undefined;
  /** Seconds; 0 when off. */
  serverAliveIntervalS: number;
  /** The name host keys are recorded under, when the config sets HostKeyAlias. */
  hostKeyAlias: string | undefined;
  /** The user's known_hosts files, tokens expanded. */
  knownHostsFiles: string[];
  /** True when the host is reached through a ProxyCommand or ProxyJump. */
  proxied: boolean;
}

/**
 * Reads the output of `ssh -G`.
 *
 * @throws {Error} When it lacks the host name, port or user.
 * @example
 * ```ts
 * parseSshDump("hostname web1\nport 22\nuser deploy\n").port; // 22
 * ```
 */
export function parseSshDump(text: string): SshResolved {
  const values = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const space = line.indexOf(" ");
    if (space <= 0) continue;
    const key = line.slice(0, space).toLowerCase();
    if (!values.has(key)) values.set(key, line.slice(space + 1).trim());
  }
  const hostName = values.get("hostname");
  const port = Number(values.get("port"));
  const user = values.get("user");
  if (hostName === undefined || !Number.isInteger(port) || user === undefined) {
    throw new Error(`Unexpected output of ssh -G: '${text.split("\n")[0] ?? ""}'`);
  }
  const timeout = values.get("connecttimeout");
  const alive = Number(values.get("serveraliveinterval") ?? "0");
  const alias = values.get("hostkeyalias");
  const proxyCommand = values.get("proxycommand");
  const proxyJump = values.get("proxyjump");
  return {
    hostName,
    port,
    user,
    connectTimeoutS: timeout === undefined || timeout === "none" ? undefined : Number(timeout),
    serverAliveIntervalS: Number.isFinite(alive) ? alive : 0,
    hostKeyAlias: alias === undefined || alias === "none" ? undefined : alias,
    knownHostsFiles: (values.get("userknownhostsfile") ?? "").split(/\s+/).filter((file) => file !== ""),
    proxied: (proxyCommand !== undefined && proxyCommand !== "none") ||
      (proxyJump !== undefined && proxyJump !== "none"),
  };
}

/**
 * The name a host key is recorded under in known_hosts: `host` for port 22, else `[host]:port`.
 *
 * @example A name with a port
 * ```ts
 * knownHostsName("127.0.0.1", 2222); // "[127.0.0.1]:2222"
 * ```
 */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/**
 * True when the server is OpenSSH's (or dropbear's) sftp-server, whose SYMLINK takes its two
 * paths in the reverse of the draft's order, and which takes 256 KiB packets: from the server's
 * software version that ssh prints at `-v`, or, where ssh printed none (a session multiplexed
 * over a ControlMaster), from the extensions only OpenSSH's sftp-server names together.
 *
 * @example
 * ```ts
 * isOpenSshServer(["debug1: Remote protocol version 2.0, remote software version OpenSSH_9.2p1"], {}); // true
 * ```
 */
export function isOpenSshServer(stderr: readonly string[], extensions: Record<string, string>): boolean {
  for (const line of stderr) {
    const version = /remote software version (\S+)/.exec(line)?.[1];
    if (version !== undefined) return /^(?:OpenSSH|dropbear)/.test(version);
  }
  return ["posix-rename@openssh.com", "hardlink@openssh.com", "fsync@openssh.com"].every((name) => name in extensions);
}

/**
 * The warning to log when ssh connected although the host key changed (the user's
 * `StrictHostKeyChecking no` lets it): never silent. Undefined when ssh said nothing of the kind.
 *
 * @example
 * ```ts
 * changedKeyWarning(["WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!"], resolved);
 * ```
 */
export function changedKeyWarning(stderr: readonly string[], resolved: SshResolved): string | undefined {
  if (!stderr.some((line) => /REMOTE HOST IDENTIFICATION HAS CHANGED|REVOKED HOST KEY/i.test(line))) return undefined;
  const name = resolved.hostKeyAlias ?? knownHostsName(resolved.hostName, resolved.port);
  return `ssh: the host key of '${name}' HAS CHANGED (or is revoked), and the ssh config let ssh connect anyway ` +
    "(StrictHostKeyChecking): check the key, someone may be intercepting the connection";
}

/** `host:port` as messages name a server. */
export function whereOf(resolved: Pick<SshResolved, "hostName" | "port">): string {
  return `${resolved.hostName}:${resolved.port}`;
}

/** What {@linkcode sshFailure} knows besides ssh's stderr. */
export interface FailureContext {
  /** The host as the user wrote it (maybe an alias). */
  host: string;
  resolved: SshResolved;
  settings: SshSettings;
  /** ssh's exit code; undefined when it is still running or was killed. */
  code?: number | undefined;
}

/**
 * One line saying why ssh could not open the SFTP session, from its stderr (at `-v`):
 * unknown host name, refused or timed-out connection, an unknown, changed or revoked host
 * key, failed authentication (which key, and whether it needs a passphrase), a missing key,
 * a server without the sftp subsystem, a bad option.
 *
 * @example A refused connection
 * ```ts
 * sshFailure("ssh: connect to host 10.0.0.5 port 22: Connection refused\n", context);
 * // "Connection refused by '10.0.0.5:22': is sshd running on that port?"
 * ```
 */
export function sshFailure(stderr: string, context: FailureContext): string {
  const { resolved, settings } = context;
  const lines = stderr.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== "");
  const said = lines.filter((line) => !line.startsWith("debug"));
  const text = said.join("\n");
  const where = whereOf(resolved);
  const alias = context.host !== resolved.hostName ? ` (HostName of '${context.host}')` : "";
  const find = (re: RegExp) => {
    for (const line of lines) {
      const match = re.exec(line);
      if (match) return match;
    }
    return undefined;
  };

  const resolve = /Could not resolve hostname (.+?): (.*)$/m.exec(text);
  if (resolve) {
    const [, name, reason] = resolve;
    if (/not known|No address|nodename nor servname|No such host|not found/i.test(reason!)) {
      return `Unknown host name '${name}'${name === resolved.hostName ? alias : ""}`;
    }
    return `Cannot resolve host name '${name}': ${reason}`;
  }
  if (/during banner exchange|banner exchange: .*timed out/i.test(text)) {
    return `Timed out waiting for the SSH handshake with '${where}'${alias}`;
  }
  const connect = /connect to host (\S+) port (\d+): (.*)$/m.exec(text);
  if (connect) {
    const [, host, port, reason] = connect;
    const at = `${host}:${port}`;
    if (/refused/i.test(reason!)) return `Connection refused by '${at}'${alias}: is sshd running on that port?`;
    if (/timed out/i.test(reason!)) return `Timed out connecting to '${at}'${alias}`;
    return `Cannot connect to '${at}'${alias}: ${reason}`;
  }

  const keyName = resolved.hostKeyAlias ?? knownHostsName(resolved.hostName, resolved.port);
  const serverKey = find(/Server host key: (\S+) (SHA256:\S+)/);
  const shown = serverKey ? `${serverKey[1]} ${serverKey[2]}` : "its key";
  if (/REVOKED HOST KEY|marked as revoked/i.test(text)) {
    return `Host key of '${keyName}' is REVOKED (${shown}, marked @revoked in known_hosts): refusing to connect`;
  }
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|host key .* has changed|Host key for .* has changed/i.test(text)) {
    const fingerprint = /The fingerprint for the (\S+) key sent by the remote host is\s*(SHA256:[^\s.]+)/.exec(text);
    const shownKey = fingerprint ? `${fingerprint[1]} key ${fingerprint[2]}` : shown;
    const offending = /Offending \S+ key in (.+):(\d+)/.exec(text);
    const place = offending ? `'${offending[1]}' line ${offending[2]}` : "known_hosts";
    const file = offending ? ` -f '${offending[1]}'` : "";
    return `HOST KEY OF '${keyName}' HAS CHANGED: the server shows ${shownKey}, not the key in ${place}; ` +
      `someone may be intercepting the connection. If the host was reinstalled, check the new key and ` +
      `replace the old one (ssh-keygen${file} -R '${keyName}')`;
  }
  if (/Host key verification failed/i.test(text)) {
    const file = settings.knownHosts ?? resolved.knownHostsFiles[0] ?? "~/.ssh/known_hosts";
    const host = resolved.hostName;
    const scan = resolved.port === 22 ? `ssh-keyscan ${host}` : `ssh-keyscan -p ${resolved.port} ${host}`;
    const hint = context.resolved.proxied ? " (through the same ProxyCommand or ProxyJump)" : "";
    return `Unknown host key for '${keyName}': ${shown}; check the fingerprint, then add it with ` +
      `'${scan} >> ${file}'${hint} or by connecting once with ssh`;
  }

  const missing = find(/(?:Identity file|no such identity:) (.+?)(?: not accessible)?: No such file or directory/);
  if (missing && (settings.sshKey === undefined || missing[1] === settings.sshKey)) {
    return `Cannot read the SSH key '${missing[1]}': No such file or directory`;
  }
  if (/Permission denied \(|Too many authentication failures|No more authentication methods/i.test(text)) {
    const login = `'${resolved.user}@${where}'`;
    if (/Too many authentication failures/i.test(text)) {
      return `Authentication failed for ${login}: too many keys were offered (ssh-agent holds many): ` +
        "name the key with --ssh-key, which offers only that one";
    }
    const accepted = find(/Server accepts key: (.+?) [A-Z0-9-]+ SHA256:\S+(.*)$/);
    if (accepted && !/\bagent\b/.test(accepted[2]!)) {
      return `Key '${accepted[1]}' needs a passphrase, and foldersync never prompts (ssh runs with BatchMode): ` +
        "add it to ssh-agent with ssh-add, or give an unencrypted key with --ssh-key";
    }
    const offered: string[] = [];
    for (const line of lines) {
      const match = /Offering public key: (.+?) [A-Z0-9-]+ SHA256:\S+(.*)$/.exec(line);
      if (!match) continue;
      const name = /\bagent\b/.test(match[2]!) ? `ssh-agent's '${match[1]}'` : `'${match[1]}'`;
      if (!offered.includes(name)) offered.push(name);
    }
    const methods = /Permission denied \(([^)]*)\)/.exec(text)?.[1];
    const refused = offered.length > 0
      ? `the server refused ${offered.join(", ")}`
      : "ssh had no key the server accepts";
    const password = /password|keyboard-interactive/.test(methods ?? "")
      ? "; a password is never typed (ssh runs with BatchMode): log in with a key (ssh-copy-id puts one on the server)"
      : "";
    return `Authentication failed for ${login}: ${refused}` +
      (methods !== undefined ? ` (it accepts: ${methods})` : "") + password +
      (settings.sshKey === undefined && password === "" ? "; name the key with --ssh-key" : "");
  }
  if (/subsystem request failed/i.test(text)) {
    return `The server '${where}' has no SFTP subsystem: ssh's request for 'sftp' was refused ` +
      "(its sshd_config needs a line such as 'Subsystem sftp internal-sftp')";
  }
  const config = said.find((line) =>
    /Bad configuration option|line \d+:|Can't open user config file|keyword/i.test(line)
  );
  if (config !== undefined) return `ssh refused its configuration: ${config.replace(/^ssh: /, "")}`;
  const last = said.filter((line) => !/^Warning: Permanently added|^Pseudo-terminal/.test(line)).at(-1);
  if (last !== undefined) return `SSH connection to '${where}'${alias} failed: ${last.replace(/^ssh: /, "")}`;
  return `SSH connection to '${where}'${alias} failed: ssh exited` +
    (context.code !== undefined ? ` with status ${context.code}` : "") + " before the SFTP session started";
}
