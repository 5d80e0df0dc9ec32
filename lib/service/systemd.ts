/**
 * PURE: systemd unit files for a foldersync service. A long-running service (`--interval`,
 * `--watch`) is one `Type=simple` unit restarted on failure; a scheduled one (`--every`) is
 * a `Type=oneshot` unit plus a `.timer`. Logs go to journald.
 *
 * @module
 */

import { posix } from "node:path";
import { headerLines, type ServiceFile, type ServiceSpec } from "./spec.ts";

/**
 * The unit name of a service: `foldersync-NAME`.
 *
 * @example Unit name
 * ```ts
 * systemdUnitName("docs"); // "foldersync-docs"
 * ```
 */
export function systemdUnitName(name: string): string {
  return `foldersync-${name}`;
}

/**
 * Quotes one word of an `ExecStart=` line: `%` and `$` are escaped everywhere (specifiers
 * and variables), and words with anything but plain path characters are double-quoted.
 *
 * @example Quoting
 * ```ts
 * systemdWord("/srv/my share"); // "\"/srv/my share\""
 * ```
 */
export function systemdWord(word: string): string {
  const escaped = word.replaceAll("%", "%%").replaceAll("$", () => "$$");
  if (/^[A-Za-z0-9_@+=:,./%$-]+$/.test(word)) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** Options for {@linkcode systemdUnits}. */
export interface SystemdOptions {
  /** The directory the unit files go into (`~/.config/systemd/user`, `/etc/systemd/system`). */
  unitDir: string;
}

/**
 * Builds the unit file(s) of a service: `NAME.service`, plus `NAME.timer` when scheduled.
 *
 * @example A scheduled service
 * ```ts
 * const files = systemdUnits({ ...spec, everyMs: 600_000 }, { unitDir: "/etc/systemd/system" });
 * files.map((f) => f.path); // [".../foldersync-docs.service", ".../foldersync-docs.timer"]
 * ```
 */
export function systemdUnits(spec: ServiceSpec, options: SystemdOptions): ServiceFile[] {
  const unit = systemdUnitName(spec.name);
  const comment = headerLines(spec).map((line) => `# ${line}`).join("\n");
  const description = `foldersync ${spec.name}: mirror ${spec.source} into ${spec.replica}`.replaceAll("%", "%%");
  const execStart = spec.command.map(systemdWord).join(" ");
  const wantedBy = spec.scope === "user" ? "default.target" : "multi-user.target";
  const files: ServiceFile[] = [];
  if (spec.everyMs === undefined) {
    files.push({
      path: posix.join(options.unitDir, `${unit}.service`),
      text: `${comment}
[Unit]
Description=${description}
After=local-fs.target

[Service]
Type=simple
ExecStart=${execStart}
Restart=on-failure
RestartSec=10s
SyslogIdentifier=${unit}

[Install]
WantedBy=${wantedBy}
`,
    });
    return files;
  }
  const seconds = Math.round(spec.everyMs / 1000);
  files.push({
    path: posix.join(options.unitDir, `${unit}.service`),
    text: `${comment}
# Started by ${unit}.timer every ${seconds} s.
[Unit]
Description=${description}
After=local-fs.target

[Service]
Type=oneshot
ExecStart=${execStart}
SyslogIdentifier=${unit}
`,
  });
  files.push({
    path: posix.join(options.unitDir, `${unit}.timer`),
    text: `${comment}
[Unit]
Description=Run ${unit}.service every ${seconds} s

[Timer]
OnActiveSec=10s
OnUnitInactiveSec=${seconds}s
Unit=${unit}.service

[Install]
WantedBy=timers.target
`,
  });
  return files;
}
