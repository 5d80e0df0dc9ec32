/**
 * `--notify URL`: after each run, one HTTP POST of a JSON body that says how it ended, for a
 * monitor (healthchecks.io and the like) or a relay to a chat. The URL may hold `{status}`
 * and `{exit_code}`, filled in per run, for monitors that read the outcome from the URL.
 *
 * @module
 */

import { UsageError } from "../model/errors.ts";
import { formatDuration } from "../model/units.ts";
import { logger } from "../log.ts";
import type { ReportSink, RunReport } from "./report.ts";

/** How long a POST may take before it counts as failed: 10 s. */
export const NOTIFY_TIMEOUT_MS = 10_000;

/** The placeholders a notify URL may hold. */
const PLACEHOLDERS = ["{status}", "{exit_code}"] as const;

/** `template` with its placeholders filled in. */
function fill(template: string, status: string, exitCode: number): string {
  return template.replaceAll("{status}", status).replaceAll("{exit_code}", String(exitCode));
}

/**
 * Checks a `--notify` URL: an `http://` or `https://` URL without spaces or control
 * characters, whose placeholders are only `{status}` and `{exit_code}`, and none of them in
 * its host or port (the service's network grant names them).
 *
 * @returns The URL as given.
 * @throws {UsageError} When it is not such a URL.
 * @example Checking URLs
 * ```ts
 * parseNotifyUrl("https://hc-ping.com/UUID/{exit_code}"); // "https://hc-ping.com/UUID/{exit_code}"
 * parseNotifyUrl("ftp://example.com/"); // throws UsageError
 * ```
 */
export function parseNotifyUrl(text: string): string {
  // A line break would end a service's command line; a URL writes them, and spaces, as %0A and %20.
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x20\x7f]/.test(text)) {
    throw new UsageError(
      `Notify URL must not hold spaces or control characters: '${JSON.stringify(text).slice(1, -1)}'`,
    );
  }
  for (const [placeholder] of text.matchAll(/\{[^{}]*\}/g)) {
    if (!(PLACEHOLDERS as readonly string[]).includes(placeholder)) {
      throw new UsageError(`Unknown placeholder in the notify URL: '${placeholder}': use {status} or {exit_code}`);
    }
  }
  let url: URL;
  try {
    url = new URL(fill(text, "ok", 0));
  } catch {
    throw new UsageError(`Notify URL must be an http:// or https:// URL: '${text}'`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
    throw new UsageError(`Notify URL must be an http:// or https:// URL: '${text}'`);
  }
  if (new URL(fill(text, "refused", 130)).host !== url.host) {
    throw new UsageError(`Notify URL must not hold a placeholder in its host or port: '${text}'`);
  }
  return text;
}

/**
 * The network grant a notify URL needs: `host:port`, the port spelled out (80 or 443 by
 * default), as `--allow-net=` takes it.
 *
 * @example Grants
 * ```ts
 * notifyGrant("https://hc-ping.com/UUID/{exit_code}"); // "hc-ping.com:443"
 * notifyGrant("http://[::1]:8080/hook"); // "[::1]:8080"
 * ```
 */
export function notifyGrant(template: string): string {
  const url = new URL(fill(template, "ok", 0));
  return `${url.hostname}:${url.port || (url.protocol === "https:" ? "443" : "80")}`;
}

/**
 * The URL one report is posted to: `{status}` and `{exit_code}` filled in.
 *
 * @example Filling in the exit code
 * ```ts
 * notifyUrl("https://hc-ping.com/UUID/{exit_code}", report); // "https://hc-ping.com/UUID/5"
 * ```
 */
export function notifyUrl(template: string, report: RunReport): string {
  return fill(template, report.status, report.exitCode);
}

/**
 * The JSON body of one report: status, exit code, the summary's counts, when and how long,
 * which folders on which host; `error` only when an error ended the run.
 *
 * @example A clean run's body
 * ```ts
 * notifyBody(report, "nas");
 * // { status: "ok", exit_code: 0, dry_run: false, source: "/data", replica: "/backup", host: "nas",
 * //   started_at: "2026-11-22T03:00:00.000Z", duration_ms: 1234, created: 0, copied: 3, ... }
 * ```
 */
export function notifyBody(report: RunReport, host: string | null): Record<string, unknown> {
  const { stats } = report;
  return {
    status: report.status,
    exit_code: report.exitCode,
    dry_run: report.dryRun,
    source: report.source,
    replica: report.replica,
    host,
    started_at: report.startedAt.toISOString(),
    duration_ms: Math.round(report.durationMs),
    created: stats.created,
    copied: stats.copied,
    updated: stats.updated,
    linked: stats.linked,
    attrs: stats.attrs,
    removed: stats.removed,
    backed_up: stats.backedUp,
    pruned: stats.pruned,
    errors: stats.errors,
    vanished: stats.vanished,
    bytes: stats.bytes,
    removals_refused: report.removalsRefused,
    changes_refused: report.changesRefused,
    ...(report.error !== undefined ? { error: report.error } : {}),
  };
}

/** Options for {@linkcode notifySink}. */
export interface NotifyOptions {
  /**
   * How long a POST may take.
   * @default NOTIFY_TIMEOUT_MS
   */
  timeoutMs?: number;
  /**
   * The User-Agent header.
   * @default "foldersync"
   */
  userAgent?: string;
  /**
   * The host name the body names.
   * @default this host's name where it may be read without asking (`--allow-sys=hostname`), else null
   */
  host?: string | null;
}

/**
 * The sink that posts each report to `template` (see {@linkcode notifyUrl},
 * {@linkcode notifyBody}). A POST that fails (no connection, no answer within the timeout,
 * a status other than 2xx, a redirect) is one warning line, `Notify failed: 'URL': ...`; it
 * never throws.
 *
 * Needs `--allow-net` for the URL's host and port.
 *
 * @example Posting each run's outcome
 * ```ts
 * reporter.add(notifySink("https://hc-ping.com/UUID/{exit_code}", { userAgent: "foldersync/0.1.0" }));
 * ```
 */
export function notifySink(template: string, options: NotifyOptions = {}): ReportSink {
  const { timeoutMs = NOTIFY_TIMEOUT_MS, userAgent = "foldersync" } = options;
  const host = options.host !== undefined ? options.host : grantedHostname();
  return async (report) => {
    const url = notifyUrl(template, report);
    const problem = await post(url, JSON.stringify(notifyBody(report, host)), { timeoutMs, userAgent });
    if (problem === undefined) return;
    const text = `Notify failed: '${shownUrl(url)}': ${problem}`;
    logger.warn("{text}", { text, action: "notify", error: problem });
  };
}

/** POSTs `body`; undefined when the server took it (2xx), else what went wrong. */
async function post(
  url: string,
  body: string,
  how: { timeoutMs: number; userAgent: string },
): Promise<string | undefined> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": how.userAgent },
      body,
      // fetch would follow a 301 or 302 with a GET and no body: say so instead.
      redirect: "manual",
      signal: AbortSignal.timeout(how.timeoutMs),
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === "TimeoutError") {
      return `no answer within ${formatDuration(how.timeoutMs)}`;
    }
    return fetchProblem(error);
  }
  await response.body?.cancel().catch(() => {});
  if (response.status >= 200 && response.status < 300) return undefined;
  const location = response.headers.get("location");
  return `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}` +
    (location !== null ? ` (redirected to '${location}': give that URL)` : "");
}

/** Why fetch failed, without the URL it repeats: `client error (Connect): tcp connect error: Connection refused`. */
function fetchProblem(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : undefined;
  if (cause !== undefined) return cause.replace(/^error sending request for url \([^)]*\): /, "");
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The URL as a log line shows it: a password in it masked. */
function shownUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "***";
    return parsed.href;
  } catch {
    return url;
  }
}

/** This host's name, where it may be read without asking; else null. */
function grantedHostname(): string | null {
  try {
    return Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted" ? Deno.hostname() : null;
  } catch {
    return null;
  }
}
