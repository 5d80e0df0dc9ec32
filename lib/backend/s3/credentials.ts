/**
 * The AWS credential chain and region, as the AWS CLI and SDKs resolve them, for the cases
 * that need no AWS service: environment keys first, then the profile's keys in the shared
 * credentials and config files. Profiles that need a service call (SSO, assumed roles,
 * `credential_process`, web identity, container or instance credentials) are handed to the
 * AWS SDK's own provider chain, loaded only then.
 *
 * Reads the environment variables in `AWS_ENV` (descriptor.ts) and, for profiles, `~/.aws/credentials`
 * and `~/.aws/config` (or the files AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE name).
 *
 * @module
 */

import { join } from "node:path";
import { UsageError } from "../../model/errors.ts";
import type { Credentials } from "./sigv4.ts";

/** Every environment variable this module and the S3 replica read (listed beside the SSH ones). */

/** Where credentials come from: fixed ones, or a function that fetches (and refreshes) them. */
export type CredentialSource = () => Promise<Credentials>;

/** A profile's settings: the credentials file's section merged over the config file's. */
export type Profile = Record<string, string>;

/**
 * PURE: the sections of an AWS INI file (`[name]`, `key = value`; `#` and `;` comments;
 * indented lines continue a nested block and are skipped).
 *
 * @example Reading a credentials file
 * ```ts
 * parseIni("[default]\naws_access_key_id = AK\n"); // { default: { aws_access_key_id: "AK" } }
 * ```
 */
export function parseIni(text: string): Record<string, Profile> {
  const sections: Record<string, Profile> = {};
  let current: Profile | undefined;
  for (const raw of text.split(/\r?\n/)) {
    if (/^\s/.test(raw) && current) continue;
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[\s*([^\]]+?)\s*\]/.exec(line);
    if (section) {
      current = sections[section[1]!] ??= {};
      continue;
    }
    const eq = line.indexOf("=");
    if (eq > 0 && current) current[line.slice(0, eq).trim().toLowerCase()] = line.slice(eq + 1).trim();
  }
  return sections;
}

function readOptional(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** The named profile, from the shared credentials file over the config file. */
export function loadProfile(env: (name: string) => string | undefined, name: string): Profile {
  const home = env("HOME") ?? env("USERPROFILE") ?? "";
  const credentialsFile = env("AWS_SHARED_CREDENTIALS_FILE") ?? join(home, ".aws", "credentials");
  const configFile = env("AWS_CONFIG_FILE") ?? join(home, ".aws", "config");
  const config = parseIni(readOptional(configFile));
  const fromConfig = (name === "default" ? config.default ?? config["profile default"] : config[`profile ${name}`]) ??
    {};
  const fromCredentials = parseIni(readOptional(credentialsFile))[name] ?? {};
  return { ...fromConfig, ...fromCredentials };
}

/** Keys in a profile that only the SDK's providers can turn into credentials. */
const SDK_KEYS = ["sso_session", "sso_start_url", "role_arn", "credential_process", "web_identity_token_file"];

/**
 * The credential chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN),
 * else the keys of profile AWS_PROFILE (default `default`), else, for a profile or an
 * environment that names a credential service, the AWS SDK's provider chain.
 *
 * @throws {UsageError} When no credentials are configured at all, or the SDK's chain fails.
 * @example Resolving credentials
 * ```ts
 * const source = resolveCredentials((name) => Deno.env.get(name));
 * const { accessKeyId } = await source();
 * ```
 */
export function resolveCredentials(env: (name: string) => string | undefined): CredentialSource {
  const accessKeyId = env("AWS_ACCESS_KEY_ID");
  const secretAccessKey = env("AWS_SECRET_ACCESS_KEY");
  if (accessKeyId && secretAccessKey) {
    const fixed: Credentials = { accessKeyId, secretAccessKey, sessionToken: env("AWS_SESSION_TOKEN") || undefined };
    return () => Promise.resolve(fixed);
  }
  const name = env("AWS_PROFILE") || "default";
  const profile = loadProfile(env, name);
  if (profile.aws_access_key_id && profile.aws_secret_access_key) {
    const fixed: Credentials = {
      accessKeyId: profile.aws_access_key_id,
      secretAccessKey: profile.aws_secret_access_key,
      sessionToken: profile.aws_session_token || undefined,
    };
    return () => Promise.resolve(fixed);
  }
  const needsSdk = SDK_KEYS.some((key) => profile[key]) || env("AWS_WEB_IDENTITY_TOKEN_FILE") ||
    env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  if (!needsSdk) {
    throw new UsageError(
      `No AWS credentials for profile '${name}': set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with keys in ~/.aws/credentials`,
    );
  }
  return sdkCredentials(name);
}

/** The SDK's provider chain for profile `name`, refreshed five minutes before expiry. */
function sdkCredentials(name: string): CredentialSource {
  let current: Credentials | undefined;
  return async () => {
    if (current && (current.expiresAt === undefined || current.expiresAt - Date.now() > 5 * 60_000)) return current;
    try {
      // Loaded only for profiles that need an AWS service to get credentials.
      const { fromNodeProviderChain } = await import("@aws-sdk/credential-providers");
      const got = await fromNodeProviderChain({ profile: name })();
      current = {
        accessKeyId: got.accessKeyId,
        secretAccessKey: got.secretAccessKey,
        sessionToken: got.sessionToken,
        expiresAt: got.expiration?.getTime(),
      };
      return current;
    } catch (error) {
      throw new UsageError(
        `No AWS credentials for profile '${name}': ${error instanceof Error ? error.message : error}`,
        { cause: error },
      );
    }
  };
}

/** The region: AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`, else `us-east-1`. */
export function resolveRegion(env: (name: string) => string | undefined): string {
  return env("AWS_REGION") || env("AWS_DEFAULT_REGION") ||
    loadProfile(env, env("AWS_PROFILE") || "default").region || "us-east-1";
}
