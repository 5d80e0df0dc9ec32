/**
 * The thin impure layer: writes a definition's files, then asks the service manager
 * (`systemctl`, `launchctl` or `schtasks`) to enable and start it; stops and removes it;
 * reports its state. The unit directory comes in with the files and the service manager is
 * an injectable {@linkcode Runner}, so tests use a temp folder and a recorder.
 *
 * @module
 */

import { ExitCode } from "../model/errors.ts";
import { dirname } from "node:path";
import type { Platform, Scope } from "./cli.ts";
import { launchdLabel } from "./launchd.ts";
import type { ServiceFile } from "./spec.ts";
import { systemdUnitName } from "./systemd.ts";
import { windowsTaskName } from "./windows.ts";

/** Exit code when the files were written or removed but the service manager could not be run or refused. */
export const EXIT_MANAGER_FAILED: number = ExitCode.ServiceManager;
/** Exit code of `uninstall` and `status` when the service is not installed. */
export const EXIT_NOT_INSTALLED = 1;

/** The outcome of one service manager command. */
export interface RunResult {
  /** The exit code. */
  code: number;
  /** Its standard output. */
  stdout: string;
  /** Its standard error. */
  stderr: string;
}

/** Runs one service manager command; throws when the program cannot be started. */
export type Runner = (program: string, args: string[]) => Promise<RunResult>;

const decoder = new TextDecoder();

/**
 * Runs a program and collects its output. Needs `--allow-run` for that program.
 *
 * @throws {Deno.errors.NotFound} When the program is not installed; NotCapable without permission.
 * @example Asking systemctl
 * ```ts
 * const { code } = await runProgram("systemctl", ["--user", "daemon-reload"]);
 * ```
 */
export async function runProgram(program: string, args: string[]): Promise<RunResult> {
  const out = await new Deno.Command(program, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Which service, where. */
export interface ServiceTarget {
  /** The service manager. */
  platform: Platform;
  /** User or system service. */
  scope: Scope;
  /** The service's name. */
  name: string;
  /** The files an installed service consists of (some may not exist). */
  files: string[];
}

/** Options for the installer functions. */
export interface InstallerOptions {
  /**
   * Runs the service manager.
   * @default runProgram
   */
  run?: Runner;
  /**
   * Where progress lines go.
   * @default console.log
   */
  out?: (line: string) => void;
  /**
   * Where failure lines go.
   * @default console.error
   */
  err?: (line: string) => void;
}

/** One service manager command; `mayFail` for steps whose failure changes nothing (stop what is not running). */
interface Step {
  program: string;
  args: string[];
  mayFail?: boolean;
}

function systemctl(scope: Scope, ...args: string[]): Step {
  return { program: "systemctl", args: scope === "user" ? ["--user", ...args] : args };
}

/** The unit that is enabled: the timer of a scheduled service, else the service. */
function systemdMain(name: string, files: string[]): string {
  const unit = systemdUnitName(name);
  return files.some((f) => f.endsWith(".timer")) ? `${unit}.timer` : `${unit}.service`;
}

/**
 * The service manager commands that enable and (re)start a service whose files are written.
 *
 * @example systemd
 * ```ts
 * enableSteps({ platform: "systemd", scope: "user", name: "docs", files: [".../foldersync-docs.service"] });
 * ```
 */
export function enableSteps(target: ServiceTarget): { program: string; args: string[]; mayFail?: boolean }[] {
  const { platform, scope, name, files } = target;
  switch (platform) {
    case "systemd": {
      const main = systemdMain(name, files);
      return [systemctl(scope, "daemon-reload"), systemctl(scope, "enable", main), systemctl(scope, "restart", main)];
    }
    case "launchd":
      return [
        { program: "launchctl", args: ["unload", files[0]!], mayFail: true },
        { program: "launchctl", args: ["load", "-w", files[0]!] },
      ];
    case "windows":
      return [
        { program: "schtasks", args: ["/End", "/TN", windowsTaskName(name)], mayFail: true },
        { program: "schtasks", args: ["/Create", "/TN", windowsTaskName(name), "/XML", files[0]!, "/F"] },
        { program: "schtasks", args: ["/Run", "/TN", windowsTaskName(name)] },
      ];
  }
}

/**
 * The commands that stop and unregister a service, before its files are removed.
 *
 * @example launchd
 * ```ts
 * disableSteps({ platform: "launchd", scope: "user", name: "docs", files: ["/Users/ana/Library/LaunchAgents/foldersync.docs.plist"] });
 * ```
 */
export function disableSteps(target: ServiceTarget): { program: string; args: string[]; mayFail?: boolean }[] {
  const { platform, scope, name, files } = target;
  switch (platform) {
    case "systemd": {
      const units = files.map((f) => f.slice(f.lastIndexOf("/") + 1));
      return [systemctl(scope, "disable", "--now", ...units)];
    }
    case "launchd":
      return [{ program: "launchctl", args: ["unload", "-w", files[0]!] }];
    case "windows":
      return [
        { program: "schtasks", args: ["/End", "/TN", windowsTaskName(name)], mayFail: true },
        { program: "schtasks", args: ["/Delete", "/TN", windowsTaskName(name), "/F"] },
      ];
  }
}

function commandLine(step: Step): string {
  return [step.program, ...step.args].map((a) => (/^[\w@%+=:,./\\-]+$/.test(a) ? a : `'${a}'`)).join(" ");
}

async function runSteps(steps: Step[], run: Runner): Promise<string | undefined> {
  for (const step of steps) {
    let result: RunResult;
    try {
      result = await run(step.program, step.args);
    } catch (error) {
      if (step.mayFail) continue;
      const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      return `cannot run ${step.program}: ${detail}`;
    }
    if (result.code !== 0 && !step.mayFail) {
      const detail = (result.stderr.trim() || result.stdout.trim()).split("\n")[0] ?? "";
      return `'${commandLine(step)}' exited ${result.code}${detail ? `: ${detail}` : ""}`;
    }
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

function label(target: Omit<ServiceTarget, "files">): string {
  return `Service '${target.name}' (${target.platform}, ${target.scope})`;
}

/**
 * Writes the files of a definition (creating their folders and `directories`), then enables
 * and starts the service. Needs write access to the unit folder and `--allow-run` for the
 * platform's service manager.
 *
 * Returns 0, or {@linkcode EXIT_MANAGER_FAILED} when the files are written but the service
 * manager could not be run or refused; the message then says what to run by hand.
 *
 * @throws {Deno.errors.PermissionDenied} And other file-system errors when a file cannot be written.
 * @example Installing into a temp folder with a recorder
 * ```ts
 * const calls: string[][] = [];
 * await installService({ platform: "systemd", scope: "user", name: "docs" }, files, {
 *   run: (program, args) => { calls.push([program, ...args]); return Promise.resolve({ code: 0, stdout: "", stderr: "" }); },
 * });
 * ```
 */
export async function installService(
  service: Omit<ServiceTarget, "files">,
  files: ServiceFile[],
  options: InstallerOptions & { directories?: string[] } = {},
): Promise<number> {
  const { run = runProgram, out = console.log, err = console.error, directories = [] } = options;
  for (const dir of directories) await Deno.mkdir(dir, { recursive: true });
  for (const file of files) {
    await Deno.mkdir(dirname(file.path), { recursive: true });
    // The Task Scheduler reads task XML as UTF-16 (with a byte order mark).
    if (service.platform === "windows") await Deno.writeFile(file.path, utf16le(file.text));
    else await Deno.writeTextFile(file.path, file.text);
    out(`Wrote ${file.path}`);
  }
  const steps = enableSteps({ ...service, files: files.map((f) => f.path) });
  const failure = await runSteps(steps, run);
  if (failure === undefined) {
    out(`${label(service)} is installed, enabled and started`);
    return 0;
  }
  err(`foldersync: ${label(service)}: the files are written, but the service manager did not enable it: ${failure}`);
  err(`foldersync: Where ${steps[0]!.program} can run, enable it with: ${steps.map(commandLine).join(" && ")}`);
  return EXIT_MANAGER_FAILED;
}

function utf16le(text: string): Uint8Array {
  const bytes = new Uint8Array(2 + text.length * 2);
  bytes[0] = 0xff;
  bytes[1] = 0xfe;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    bytes[2 + i * 2] = code & 0xff;
    bytes[3 + i * 2] = code >> 8;
  }
  return bytes;
}

/**
 * Stops and unregisters a service, then removes its files (logs are kept). Needs write
 * access to the unit folder and `--allow-run` for the service manager.
 *
 * Returns 0; {@linkcode EXIT_NOT_INSTALLED} when none of its files exist;
 * {@linkcode EXIT_MANAGER_FAILED} when the files are removed but the manager failed.
 *
 * @throws {Deno.errors.PermissionDenied} And other file-system errors when a file cannot be removed.
 * @example Uninstalling
 * ```ts
 * await uninstallService({ platform: "launchd", scope: "user", name: "docs", files: [plistPath] });
 * ```
 */
export async function uninstallService(target: ServiceTarget, options: InstallerOptions = {}): Promise<number> {
  const { run = runProgram, out = console.log, err = console.error } = options;
  const present: string[] = [];
  for (const file of target.files) if (await exists(file)) present.push(file);
  if (present.length === 0) {
    err(`foldersync: ${label(target)} is not installed: no '${target.files.join("', '")}'`);
    return EXIT_NOT_INSTALLED;
  }
  const failure = await runSteps(disableSteps({ ...target, files: present }), run);
  for (const file of present) {
    await Deno.remove(file);
    out(`Removed ${file}`);
  }
  if (target.platform === "systemd" && failure === undefined) {
    const reload = await runSteps([systemctl(target.scope, "daemon-reload")], run);
    if (reload !== undefined) {
      err(`foldersync: ${label(target)}: files removed, but the service manager failed: ${reload}`);
      return EXIT_MANAGER_FAILED;
    }
  }
  if (failure !== undefined) {
    err(`foldersync: ${label(target)}: files removed, but the service manager did not stop it: ${failure}`);
    return EXIT_MANAGER_FAILED;
  }
  out(`${label(target)} is stopped and removed`);
  return 0;
}

/**
 * Reports whether a service is installed, whether it is running, and how its last run
 * ended, as the service manager tells. Needs `--allow-run` for the service manager.
 *
 * Returns 0 when it is installed and the manager answered; {@linkcode EXIT_NOT_INSTALLED}
 * when it is not installed; {@linkcode EXIT_MANAGER_FAILED} when the manager could not be asked.
 *
 * @example Status
 * ```ts
 * await serviceStatus({ platform: "systemd", scope: "user", name: "docs", files });
 * ```
 */
export async function serviceStatus(target: ServiceTarget, options: InstallerOptions = {}): Promise<number> {
  const { run = runProgram, out = console.log, err = console.error } = options;
  const present: string[] = [];
  for (const file of target.files) if (await exists(file)) present.push(file);
  if (present.length === 0) {
    out(`${label(target)}: not installed (no '${target.files.join("', '")}')`);
    return EXIT_NOT_INSTALLED;
  }
  out(`${label(target)}: installed (${present.join(", ")})`);
  const step = statusStep({ ...target, files: present });
  let result: RunResult;
  try {
    result = await run(step.program, step.args);
  } catch (error) {
    err(
      `foldersync: Cannot ask ${step.program}: ${error instanceof Error ? `${error.name}: ${error.message}` : error}`,
    );
    return EXIT_MANAGER_FAILED;
  }
  const lines = describeStatus(target.platform, result);
  if (lines === undefined) {
    const detail = (result.stderr.trim() || result.stdout.trim()).split("\n")[0] ?? "";
    err(`foldersync: '${commandLine(step)}' exited ${result.code}${detail ? `: ${detail}` : ""}`);
    return EXIT_MANAGER_FAILED;
  }
  for (const line of lines) out(`  ${line}`);
  return 0;
}

function statusStep(target: ServiceTarget): Step {
  switch (target.platform) {
    case "systemd":
      return systemctl(
        target.scope,
        "show",
        `${systemdUnitName(target.name)}.service`,
        ...(target.files.some((f) => f.endsWith(".timer")) ? [`${systemdUnitName(target.name)}.timer`] : []),
        "--property=Id,LoadState,ActiveState,SubState,Result,ExecMainStatus,ExecMainExitTimestamp",
      );
    case "launchd":
      return { program: "launchctl", args: ["list", launchdLabel(target.name)] };
    case "windows":
      return { program: "schtasks", args: ["/Query", "/TN", windowsTaskName(target.name), "/V", "/FO", "LIST"] };
  }
}

/**
 * Turns a service manager's status answer into lines for the user; undefined when the
 * manager failed.
 *
 * @example systemd
 * ```ts
 * describeStatus("systemd", { code: 0, stdout: "Id=foldersync-docs.service\nActiveState=active\n...", stderr: "" });
 * ```
 */
export function describeStatus(platform: Platform, result: RunResult): string[] | undefined {
  if (result.code !== 0) return undefined;
  const text = result.stdout;
  const lines: string[] = [];
  switch (platform) {
    case "systemd": {
      for (const block of text.trim().split(/\n\s*\n/)) {
        const p = Object.fromEntries(
          block.split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
        );
        if (p.Id?.endsWith(".timer")) {
          lines.push(`${p.Id}: ${p.ActiveState} (${p.SubState})`);
          continue;
        }
        lines.push(`${p.Id}: ${p.LoadState}, ${p.ActiveState} (${p.SubState})`);
        if (p.ExecMainExitTimestamp) {
          lines.push(`last run: ${p.Result}, exit status ${p.ExecMainStatus}, ended ${p.ExecMainExitTimestamp}`);
        } else lines.push("last run: none finished yet");
      }
      return lines;
    }
    case "launchd": {
      const pid = /"PID"\s*=\s*(\d+);/.exec(text)?.[1];
      const status = /"LastExitStatus"\s*=\s*(-?\d+);/.exec(text)?.[1];
      lines.push(pid ? `running (pid ${pid})` : "not running");
      if (status !== undefined) {
        const n = Number(status);
        lines.push(`last run: ${n === 0 ? "success" : (n & 0xff) === 0 ? `exit code ${n >> 8}` : `wait status ${n}`}`);
      }
      return lines;
    }
    case "windows": {
      const field = (name: string) => new RegExp(`^${name}:\\s*(.*?)\\s*$`, "m").exec(text)?.[1];
      lines.push(`state: ${field("Status") ?? "unknown"}`);
      lines.push(`last run: ${field("Last Run Time") ?? "unknown"}, result ${field("Last Result") ?? "unknown"}`);
      return lines;
    }
  }
}
