/**
 * PURE: a Windows Task Scheduler task (XML, schema 1.2) for a foldersync service. A
 * long-running service starts at log-on (user) or boot (system) and is never started twice
 * (`MultipleInstancesPolicy` `IgnoreNew`); a scheduled one has a repeating time trigger.
 * The Task Scheduler keeps no output, so the sync writes its own rotated log file beside
 * the task's XML.
 *
 * @module
 */

import { headerLines, pathsFor, type ServiceFile, type ServiceSpec, xmlComment, xmlEscape } from "./spec.ts";

/**
 * The task's path in the Task Scheduler: `\foldersync\NAME`.
 *
 * @example Task name
 * ```ts
 * windowsTaskName("docs"); // "\\foldersync\\docs"
 * ```
 */
export function windowsTaskName(name: string): string {
  return `\\foldersync\\${name}`;
}

/**
 * Quotes one argument the way `CommandLineToArgvW` (and so Deno) splits it back.
 *
 * @example Quoting
 * ```ts
 * windowsArg("C:\\my dir\\"); // "\"C:\\my dir\\\\\""
 * ```
 */
export function windowsArg(arg: string): string {
  if (arg !== "" && !/[ \t\n\v"]/.test(arg)) return arg;
  let out = '"';
  let backslashes = 0;
  for (const ch of arg) {
    if (ch === "\\") {
      backslashes++;
      continue;
    }
    out += ch === '"' ? "\\".repeat(backslashes * 2 + 1) + '"' : "\\".repeat(backslashes) + ch;
    backslashes = 0;
  }
  return out + "\\".repeat(backslashes * 2) + '"';
}

/**
 * An ISO 8601 duration as the Task Scheduler writes them: `PT1H30M`.
 *
 * @example Duration
 * ```ts
 * isoDuration(5_400_000); // "PT1H30M"
 * ```
 */
export function isoDuration(ms: number): string {
  let seconds = Math.round(ms / 1000);
  const days = Math.floor(seconds / 86_400);
  seconds -= days * 86_400;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  const time = `${hours ? `${hours}H` : ""}${minutes ? `${minutes}M` : ""}${seconds ? `${seconds}S` : ""}`;
  return `P${days ? `${days}D` : ""}${time ? `T${time}` : ""}`;
}

/** Options for {@linkcode windowsTask}. */
export interface WindowsOptions {
  /** The task's own folder (`%LOCALAPPDATA%\foldersync\NAME`): its XML and its log. */
  unitDir: string;
}

/**
 * Builds `task.xml`, registered with `schtasks /Create /XML`.
 *
 * @example A scheduled task
 * ```ts
 * const [xml] = windowsTask({ ...spec, everyMs: 3_600_000 }, { unitDir: "C:\\Users\\ana\\AppData\\Local\\foldersync\\docs" });
 * ```
 */
export function windowsTask(spec: ServiceSpec, options: WindowsOptions): ServiceFile[] {
  const [program = "", ...args] = spec.command;
  const system = spec.scope === "system";
  const trigger = spec.everyMs !== undefined
    ? `    <TimeTrigger>
      <StartBoundary>2026-01-01T00:00:00</StartBoundary>
      <Enabled>true</Enabled>
      <Repetition>
        <Interval>${isoDuration(spec.everyMs)}</Interval>
        <StopAtDurationEnd>false</StopAtDurationEnd>
      </Repetition>
    </TimeTrigger>`
    : system
    ? `    <BootTrigger>\n      <Enabled>true</Enabled>\n    </BootTrigger>`
    : `    <LogonTrigger>\n      <Enabled>true</Enabled>\n    </LogonTrigger>`;
  const principal = system
    ? `      <UserId>S-1-5-18</UserId>\n      <RunLevel>HighestAvailable</RunLevel>`
    : `      <LogonType>InteractiveToken</LogonType>\n      <RunLevel>LeastPrivilege</RunLevel>`;
  const restart = spec.everyMs === undefined
    ? `\n    <RestartOnFailure>\n      <Interval>PT1M</Interval>\n      <Count>999</Count>\n    </RestartOnFailure>`
    : "";
  const comment = headerLines(spec).map((line) => `  ${xmlComment(line)}`).join("\n");
  return [{
    path: pathsFor(options.unitDir).join(options.unitDir, "task.xml"),
    text: `<?xml version="1.0" encoding="UTF-16"?>
<!--
${comment}
-->
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>${xmlEscape(`foldersync ${spec.name}: mirror ${spec.source} into ${spec.replica}`)}</Description>
    <URI>${xmlEscape(windowsTaskName(spec.name))}</URI>
  </RegistrationInfo>
  <Triggers>
${trigger}
  </Triggers>
  <Principals>
    <Principal id="Author">
${principal}
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <StartWhenAvailable>true</StartWhenAvailable>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>${restart}
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>${xmlEscape(program)}</Command>
      <Arguments>${xmlEscape(args.map(windowsArg).join(" "))}</Arguments>
    </Exec>
  </Actions>
</Task>
`,
  }];
}
