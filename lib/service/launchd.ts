/**
 * PURE: a launchd property list for a foldersync service: `KeepAlive` for a long-running
 * one, `StartInterval` for scheduled runs. launchd does not rotate logs, so the sync writes
 * its own rotated log file (`--log ... --log-max-size`) and launchd's stdout goes nowhere.
 *
 * @module
 */

import { posix } from "node:path";
import { headerLines, type ServiceFile, type ServiceSpec, xmlComment, xmlEscape } from "./spec.ts";

/**
 * The launchd label of a service: `foldersync.NAME`.
 *
 * @example Label
 * ```ts
 * launchdLabel("docs"); // "foldersync.docs"
 * ```
 */
export function launchdLabel(name: string): string {
  return `foldersync.${name}`;
}

/** Options for {@linkcode launchdPlist}. */
export interface LaunchdOptions {
  /** `~/Library/LaunchAgents` (user) or `/Library/LaunchDaemons` (system). */
  unitDir: string;
  /** Where launchd sends the process's stderr (start-up failures); absolute. */
  stderrPath: string;
}

/**
 * Builds `foldersync.NAME.plist`.
 *
 * @example A long-running agent
 * ```ts
 * const [plist] = launchdPlist(spec, { unitDir: "/Users/ana/Library/LaunchAgents", stderrPath: "/Users/ana/Library/Logs/foldersync-docs.stderr.log" });
 * ```
 */
export function launchdPlist(spec: ServiceSpec, options: LaunchdOptions): ServiceFile[] {
  const label = launchdLabel(spec.name);
  const s = (text: string) => `<string>${xmlEscape(text)}</string>`;
  const args = spec.command.map((arg) => `\t\t${s(arg)}`).join("\n");
  const schedule = spec.everyMs === undefined
    ? `\t<key>KeepAlive</key>\n\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n\t<key>ThrottleInterval</key>\n\t<integer>10</integer>`
    : `\t<key>StartInterval</key>\n\t<integer>${Math.round(spec.everyMs / 1000)}</integer>`;
  const comment = headerLines(spec).map((line) => `     ${xmlComment(line)}`).join("\n");
  return [{
    path: posix.join(options.unitDir, `${label}.plist`),
    text: `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!--
${comment}
-->
<plist version="1.0">
<dict>
\t<key>Label</key>
\t${s(label)}
\t<key>ProgramArguments</key>
\t<array>
${args}
\t</array>
\t<key>RunAtLoad</key>
\t<true/>
${schedule}
\t<key>ProcessType</key>
\t<string>Background</string>
\t<key>StandardOutPath</key>
\t<string>/dev/null</string>
\t<key>StandardErrorPath</key>
\t${s(options.stderrPath)}
</dict>
</plist>
`,
  }];
}
