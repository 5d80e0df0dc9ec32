/**
 * Reaching an SFTP replica's host through the system's OpenSSH client, as rsync, git, sshfs
 * and rclone's `--sftp-ssh` do: `ssh [options] -s HOST sftp` asks the server for its sftp
 * subsystem, and SFTP v3 runs over ssh's stdin and stdout. OpenSSH reads the user's whole
 * configuration itself (ProxyJump, ProxyCommand, Match, IdentityAgent, certificates,
 * ControlMaster, known_hosts with StrictHostKeyChecking as configured) and encrypts in C.
 *
 * The SFTP protocol layer is ssh2's (lib/protocol/SFTP.js), detached from ssh2's own SSH
 * client: it needs only a function that sends bytes and is fed the bytes that arrive.
 * Measured against ssh2-streams 0.4.10's SFTPStream over the same pipe (3 alternated runs):
 * 2,000 files of 4 KiB (open, write, fsetstat, close, rename; 32 at once) 1.3 to 1.8 s against
 * 2.6 to 2.7 s, since ssh2-streams knows no limits@openssh.com and splits writes at 32 KiB;
 * and ssh2 is a dependency already, while ssh2-streams is the same author's older SFTP code,
 * which ssh2 1.x took in.
 *
 * The pipe is Deno.Command's: node:child_process needs the permission to read every
 * environment variable (to pass them on), and measured no faster (256 MiB upload: wall
 * ratio 0.97, CPU 1.04; whole-process A/B, 7 runs, medians).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { UsageError } from "../../model/errors.ts";
import { logger } from "../../log.ts";
import type { SftpTarget } from "../target.ts";
import {
  changedKeyWarning,
  dumpArgs,
  isOpenSshServer,
  parseSshDump,
  sessionArgs,
  sshFailure,
  sshOptions,
  type SshResolved,
  type SshSettings,
  whereOf,
} from "./ssh_command.ts";
import { type RawSftp, SftpSession } from "./session.ts";
import { type InboundTarget, SftpInbound } from "./inbound.ts";

/** ssh2's SFTP module, as ssh2_sftp.d.ts describes it. */
type Ssh2Sftp = typeof import("./ssh2_sftp.d.ts");
let ssh2Sftp: Promise<Ssh2Sftp> | undefined;

/**
 * ssh2's SFTP layer, loaded once, and first while ssh starts and shakes hands rather than
 * before: the import takes 50 to 60 ms.
 */
function loadSftp(): Promise<Ssh2Sftp> {
  return ssh2Sftp ??= import("ssh2/lib/protocol/SFTP.js") as Promise<Ssh2Sftp>;
}

/** The program run: `ssh` from the PATH (on Windows 10 and later, the OpenSSH client that ships with it). */
const SSH = "ssh";

/** How to reach a host, resolved once per replica, for each session opened to it. */
export interface SshPlan {
  /** The host as the user wrote it (maybe a ~/.ssh/config alias). */
  host: string;
  /** The ssh options from the user's settings (see {@linkcode sshOptions}). */
  options: string[];
  settings: SshSettings;
  /** What ssh says it will use (`ssh -G`). */
  resolved: SshResolved;
  /** `host:port`, for messages. */
  where: string;
}

/**
 * Asks ssh what it will use for `target` (`ssh -G`: the config applied, nothing sent): the
 * host name, port and login name for messages, and whether the config sets ConnectTimeout
 * and ServerAliveInterval (else foldersync's defaults are added).
 *
 * Needs `--allow-run=ssh`.
 *
 * @throws {UsageError} When ssh is not installed, or refuses the config or an option.
 * @example
 * ```ts
 * const plan = await planSsh(parseTarget("prod:/srv") as SftpTarget, { sshConfig: "/etc/fs/ssh_config" });
 * plan.where; // "web1.example.com:22"
 * ```
 */
export async function planSsh(target: SftpTarget, settings: SshSettings): Promise<SshPlan> {
  loadSftp().catch(() => {}); // loads while ssh runs; openSession reports a failure
  const options = sshOptions(target, settings);
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(SSH, {
      args: dumpArgs(options, target.host),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw spawnError(error);
  }
  const stderr = new TextDecoder().decode(output.stderr).trim();
  if (!output.success) {
    const line = stderr.split(/\r?\n/).find((l) => l.trim() !== "") ?? `exit status ${output.code}`;
    throw new UsageError(`ssh refused its configuration: ${line.replace(/^ssh: /, "")}`);
  }
  const resolved = parseSshDump(new TextDecoder().decode(output.stdout));
  return { host: target.host, options, settings, resolved, where: whereOf(resolved) };
}

/** A failure to start ssh as one line: not installed (and how to install it), or a Deno permission missing. */
function spawnError(error: unknown): Error {
  if (error instanceof Deno.errors.NotFound) {
    return new UsageError(
      "The OpenSSH client 'ssh' is needed for SFTP replicas and is not on the PATH: install it " +
        "(Debian, Ubuntu: apt install openssh-client; Fedora, RHEL: dnf install openssh-clients; Alpine: apk add " +
        "openssh-client; macOS and Windows 10 and later ship it)",
      { cause: error },
    );
  }
  return error as Error;
}

/** Lines of ssh's stderr: all of them until the session is up, then the last few that are not debug output. */
class StderrLines {
  setup: string[] = [];
  recent: string[] = [];
  ready = false;
  #partial = "";
  #decoder = new TextDecoder();

  add(bytes: Uint8Array): void {
    const text = this.#partial + this.#decoder.decode(bytes, { stream: true });
    const lines = text.split(/\r?\n/);
    this.#partial = lines.pop()!;
    for (const line of lines) this.#line(line);
  }

  flush(): void {
    if (this.#partial !== "") this.#line(this.#partial);
    this.#partial = "";
  }

  #line(line: string): void {
    if (!this.ready) {
      if (this.setup.length < 2000) this.setup.push(line);
      return;
    }
    if (line.startsWith("debug") || line.trim() === "") return;
    this.recent.push(line);
    if (this.recent.length > 20) this.recent.shift();
  }

  /** Why the session ended, from what ssh said last. */
  reason(code: number | undefined): string {
    const said = [...this.setup.filter((l) => !l.startsWith("debug") && l.trim() !== ""), ...this.recent];
    // Not the notes ssh -v prints on its way out (Transferred, Bytes per second).
    const last = said.filter((line) => !/^Warning: Permanently added|^Transferred: |^Bytes per second: /.test(line))
      .at(-1);
    if (last !== undefined) return `ssh: ${last.trim().replace(/^ssh: /, "")}`;
    return code === undefined ? "ssh's pipe closed" : `ssh exited with status ${code}`;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    Deno.unrefTimer(timer);
  });
}

/**
 * Opens one SFTP session over a new `ssh` process: spawns it, sends SFTP's INIT and waits for
 * the server's VERSION (and, where offered, limits@openssh.com). Every way ssh can fail before
 * that (an unknown host, a refused connection, an unknown or changed host key, failed
 * authentication, no sftp subsystem) is one {@linkcode UsageError} line, read from ssh's
 * stderr. Once open, the session is lost when ssh exits: pending and later requests reject
 * with one ConnectionLostError naming what ssh said last.
 *
 * Needs `--allow-run=ssh`.
 *
 * @throws {UsageError} When the session cannot be opened.
 * @example
 * ```ts
 * const session = await openSession(await planSsh(target, settings));
 * try {
 *   await session.lstat("/srv");
 * } finally {
 *   await session.end();
 * }
 * ```
 */
export async function openSession(plan: SshPlan): Promise<SftpSession> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(SSH, {
      args: sessionArgs(plan.options, plan.host, plan.resolved),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    throw spawnError(error);
  }
  let SFTP: Ssh2Sftp["SFTP"];
  try {
    ({ SFTP } = await loadSftp());
  } catch (error) {
    try {
      child.kill("SIGTERM");
    } catch {
      // exited already
    }
    await child.status;
    throw error;
  }
  return await new SshPipe(child, plan, SFTP).open();
}

/** One ssh process carrying one SFTP session: feeds ssh2's SFTP layer, watches stderr and the exit. */
class SshPipe {
  #child: Deno.ChildProcess;
  #plan: SshPlan;
  #stderr = new StderrLines();
  #code: number | undefined;
  #exited: Promise<void>;
  #errReader: ReadableStreamDefaultReader<Uint8Array>;
  #errDone: Promise<void>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #raw: RawSftp & SftpInternals;
  #session: SftpSession | undefined;
  #closing: Promise<void> | undefined;
  #stdoutEnded: Promise<void>;
  #protocolError: Error | undefined;
  #inbound: SftpInbound;

  constructor(child: Deno.ChildProcess, plan: SshPlan, SFTP: Ssh2Sftp["SFTP"]) {
    this.#child = child;
    this.#plan = plan;
    this.#exited = child.status.then((status) => void (this.#code = status.code));
    this.#errReader = child.stderr.getReader();
    this.#errDone = this.#readStderr();
    this.#writer = child.stdin.getWriter();
    this.#raw = new SFTP(
      { _protocol: { _remoteIdentRaw: undefined, channelData: (_id: number, data: Uint8Array) => this.send(data) } },
      {
        type: "sftp",
        incoming: {},
        // No SSH channel window here: ssh and the pipe carry the flow control.
        outgoing: { id: 0, window: Infinity, packetSize: Infinity, state: "open" },
      },
      {},
    ) as RawSftp & SftpInternals;
    this.#raw.on("error", (error: Error) => {
      this.#protocolError ??= error;
      if (this.#session === undefined) return;
      this.#session.markLost(`the server broke the SFTP protocol: ${error.message}`);
      this.close();
    });
    this.#inbound = new SftpInbound(this.#raw as unknown as InboundTarget);
    this.#stdoutEnded = this.#readStdout();
  }

  /** Starts SFTP and waits for the server's answer; the session, or a UsageError saying why not. */
  async open(): Promise<SftpSession> {
    const raw = this.#raw;
    const plan = this.#plan;
    const stderr = this.#stderr;
    const ready = new Promise<boolean>((resolve) => {
      raw.once("ready", () => resolve(true));
      raw.once("error", () => resolve(false));
      this.#stdoutEnded.then(() => resolve(false));
    });
    raw._init();
    if (!await ready) {
      const protocolError = this.#protocolError;
      await this.#finish(protocolError ? 0 : 5000);
      throw new UsageError(
        protocolError !== undefined && this.#code === undefined
          ? `The server '${plan.where}' did not answer as an SFTP server (${protocolError.message}): ` +
            "a shell start-up file that prints text on a non-interactive login breaks SFTP"
          : sshFailure(stderr.setup.join("\n"), {
            host: plan.host,
            resolved: plan.resolved,
            settings: plan.settings,
            code: this.#code,
          }),
      );
    }
    stderr.ready = true;
    if (isOpenSshServer(stderr.setup, raw._extensions)) {
      raw._isOpenSSH = true;
      if (!("limits@openssh.com" in raw._extensions)) {
        // What ssh2 assumes of OpenSSH (had it made the connection): 256 KiB packets.
        raw._maxReadLen = raw._maxWriteLen = OPENSSH_MAX_DATA;
      }
    }
    const key = plan.settings.sshKey;
    const missing = key === undefined
      ? undefined
      : stderr.setup.find((line) => line.includes(`Identity file ${key} not accessible`));
    if (missing !== undefined) {
      // ssh went on without the named key; a run that names a key means that key.
      await this.close();
      const reason = /not accessible: (.*?)\.?$/.exec(missing)?.[1] ?? "not accessible";
      throw new UsageError(`Cannot read the SSH key '${key}': ${reason}`);
    }
    for (const line of stderr.setup) {
      if (line.startsWith("Warning: ")) logger.warn("{text}", { text: `ssh: ${line.slice("Warning: ".length)}` });
    }
    const changed = changedKeyWarning(stderr.setup, plan.resolved);
    if (changed !== undefined) logger.warn("{text}", { text: changed });
    stderr.setup = stderr.setup.filter((line) => !line.startsWith("debug")).slice(-20);
    this.#session = new SftpSession(raw, plan.where, this);
    return this.#session;
  }

  /**
   * Sends SFTP packets to ssh. Those sent in one turn of the event loop go in one write: one
   * pipe write, one read and one SSH packet for ssh instead of one per request. For 5,000 small
   * files (five requests each; 3 alternated runs): ssh's CPU 0.48 to 0.52 s instead of 0.55 to
   * 0.70, the server's sshd 0.74 to 0.87 s instead of 0.83 to 1.28.
   */
  send(data: Uint8Array): void {
    if (data.length >= COALESCE_BELOW) {
      this.#flush();
      this.#write(data);
      return;
    }
    this.#queued.push(data);
    this.#queuedBytes += data.length;
    if (this.#queuedBytes >= COALESCE_BELOW) this.#flush();
    else if (this.#queued.length === 1) queueMicrotask(() => this.#flush());
  }

  #queued: Uint8Array[] = [];
  #queuedBytes = 0;

  #flush(): void {
    if (this.#queued.length === 0) return;
    const data = this.#queued.length === 1 ? this.#queued[0]! : Buffer.concat(this.#queued, this.#queuedBytes);
    this.#queued = [];
    this.#queuedBytes = 0;
    this.#write(data);
  }

  #write(data: Uint8Array): void {
    this.#writer.write(data).catch(() => {}); // ssh gone: its stdout ends, which #readStdout sees
  }

  /** Ends the session: EOF on ssh's stdin ends the server's sftp process, then ssh. */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#flush();
      await this.#writer.close().catch(() => {});
      await this.#finish(2000);
    })();
  }

  async #readStderr(): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await this.#errReader.read();
        if (done) break;
        this.#stderr.add(value);
      }
    } catch {
      // cancelled by #finish
    }
    this.#stderr.flush();
  }

  /** Feeds what ssh prints to SFTP; at its end, the session is lost (unless it was closed), with ssh's last words. */
  async #readStdout(): Promise<void> {
    try {
      // Read into one buffer, again and again: a plain reader allocates (and zeroes) 64 KiB a read.
      const reader = this.#child.stdout.getReader({ mode: "byob" });
      let buffer = new ArrayBuffer(READ_BUFFER);
      for (;;) {
        const { value, done } = await reader.read(new Uint8Array(buffer));
        if (done) break;
        // Framed here: READ answers go straight into their buffers, the rest to ssh2 as copies (it keeps views).
        this.#inbound.feed(value);
        buffer = value.buffer;
      }
    } catch {
      // the pipe broke: as an end
    }
    const session = this.#session;
    if (session === undefined) return; // open() reports it
    if (this.#closing === undefined) {
      await Promise.race([this.#exited, delay(1000)]);
      await Promise.race([this.#errDone, delay(100)]);
      session.markLost(this.#stderr.reason(this.#code));
    }
    this.#raw.push(null);
    await this.close();
  }

  /** Waits for ssh to exit (killed after `graceMs`), then for what it wrote on stderr. */
  async #finish(graceMs: number): Promise<void> {
    await Promise.race([this.#exited, delay(graceMs)]);
    if (this.#code === undefined) {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // exited meanwhile
      }
      await Promise.race([this.#exited, delay(2000)]);
    }
    // A ControlPersist master started by this ssh keeps stderr open: do not wait for its end.
    await Promise.race([this.#errDone, delay(200)]);
    this.#errReader.cancel().catch(() => {});
  }
}

/** Bytes read from ssh's stdout at once. */
const READ_BUFFER = 256 * 1024;

/** Packets smaller than this wait for the others of the same turn of the event loop, up to this many bytes. */
const COALESCE_BELOW = 64 * 1024;

/** The data in one READ or WRITE that OpenSSH's sftp-server takes: its 256 KiB packet, less ssh2's margin. */
const OPENSSH_MAX_DATA = 256 * 1024 - 2 * 1024;

/** The parts of ssh2's SFTP object that feed and start it. */
interface SftpInternals {
  /** Set by ssh2 from the server's SSH version string, which only ssh sees here: reverses SYMLINK's paths. */
  _isOpenSSH: boolean;
  push(data: Buffer | null): void;
  _init(): void;
  on(event: "error", listener: (error: Error) => void): void;
  once(event: "ready" | "error", listener: (...args: unknown[]) => void): void;
}
