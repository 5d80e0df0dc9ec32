/**
 * The real servers that remote-replica tests run against: an OpenSSH sshd (SFTP) and Ceph's
 * radosgw (S3), both on 127.0.0.1, started by `tests/servers/up.sh` (which `.ci/run` calls)
 * and described in `servers.json` in its state folder (`$FOLDERSYNC_TEST_SERVERS`, default
 * `/tmp/foldersync-servers`).
 *
 * Without them the remote tests skip with one visible line saying how to start them; under
 * `CI=true` they run and fail instead.
 *
 * @module
 */

import { join } from "node:path";
import { sayOnce } from "./helpers.ts";
import { S3Client } from "../lib/backend/s3/client.ts";

/** The SFTP server: a test user with key-only login. */
export interface SftpServer {
  host: string;
  port: number;
  user: string;
  /** Private key file that logs in as `user`. */
  key: string;
  /** A known_hosts file holding the server's host key (as `[host]:port`). */
  knownHosts: string;
  /** The user's home folder, a local path on this machine. */
  home: string;
}

/** The S3 server: path-style, plain HTTP. */
export interface S3Server {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  region: string;
}

/** The state folder of `tests/servers/up.sh`. */
export const SERVERS_DIR: string = Deno.env.get("FOLDERSYNC_TEST_SERVERS") ?? "/tmp/foldersync-servers";

const HOW_TO_START = "start them with: sudo bash tests/servers/up.sh start";

function readServers(): { sftp?: SftpServer; s3?: S3Server } {
  try {
    return JSON.parse(Deno.readTextFileSync(join(SERVERS_DIR, "servers.json")));
  } catch {
    return {};
  }
}

/** True when something accepts TCP connections on `host:port`. */
async function listening(host: string, port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: host, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

const CI = Deno.env.get("CI") === "true";

/** The SFTP server if it is up; under CI=true a missing server throws. */
export async function sftpServer(): Promise<SftpServer | undefined> {
  const server = readServers().sftp;
  if (server && await listening(server.host, server.port)) return server;
  if (CI) throw new Error(`CI=true but the SFTP test server is not running (${HOW_TO_START})`);
  return undefined;
}

/** The S3 server if it is up; under CI=true a missing server throws. */
export async function s3Server(): Promise<S3Server | undefined> {
  const server = readServers().s3;
  if (server && await listening(new URL(server.endpoint).hostname, Number(new URL(server.endpoint).port || 80))) {
    return server;
  }
  if (CI) throw new Error(`CI=true but the S3 test server is not running (${HOW_TO_START})`);
  return undefined;
}

/**
 * Registers a test that needs a server: it runs with the server, and without one it is
 * ignored, with one line (once per kind) saying so.
 */
export function remoteTest<S>(
  name: string,
  kind: "sftp" | "s3",
  find: () => Promise<S | undefined>,
  fn: (server: S, t: Deno.TestContext) => Promise<void>,
): void {
  const present = CI || readServers()[kind] !== undefined;
  if (!present) {
    sayOnce(kind, `No ${kind === "sftp" ? "SFTP" : "S3"} test server: the ${kind} tests are skipped (${HOW_TO_START})`);
  }
  Deno.test({
    name,
    ignore: !present,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      const server = await find();
      if (server === undefined) throw new Error(`The ${kind} test server stopped answering (${HOW_TO_START})`);
      await fn(server, t);
    },
  });
}

/**
 * A fresh, empty folder in the SFTP user's home, owned by that user: `url` names it for
 * foldersync, `path` is the same folder seen locally (for the rsync oracle). Removed on dispose.
 */
export async function sftpFolder(
  server: SftpServer,
  prefix = "replica-",
): Promise<{ url: string; path: string; args: string[] } & AsyncDisposable> {
  const name = `${prefix}${crypto.randomUUID().slice(0, 8)}`;
  const path = join(server.home, name);
  await Deno.mkdir(path);
  await run("chown", [`${server.user}:`, path]);
  return {
    url: `sftp://${server.user}@${server.host}:${server.port}${path}`,
    path,
    /** The flags that reach this server: its key and known_hosts. */
    args: ["--ssh-key", server.key, "--known-hosts", server.knownHosts],
    [Symbol.asyncDispose]: async () => {
      await run("chmod", ["-R", "u+rwx", path]).catch(() => {});
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** The flags that reach the test SFTP server, and no ssh config of the machine's (ssh -F /dev/null). */
export function sftpArgs(server: SftpServer): string[] {
  return ["--ssh-key", server.key, "--known-hosts", server.knownHosts, "--ssh-config", "/dev/null"];
}

/** Gives the tree at `path` to the SFTP server's user, as if that user had made it. */
export async function chownTo(server: SftpServer, path: string): Promise<void> {
  const out = await new Deno.Command("chown", { args: ["-R", `${server.user}:`, path] }).output();
  if (!out.success) throw new Error(`chown -R ${server.user}: ${path} failed`);
}

/** Environment for foldersync (and the AWS SDK) to reach `server`; AWS_CA_BUNDLE cleared. */
export function s3Env(server: S3Server): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: server.accessKey,
    AWS_SECRET_ACCESS_KEY: server.secretKey,
    AWS_REGION: server.region,
    AWS_ENDPOINT_URL: server.endpoint,
    AWS_CA_BUNDLE: "",
  };
}

/** Environment that gives rclone a remote named `fss3` for `server` (use `fss3:bucket/path`). */
export function rcloneEnv(server: S3Server): Record<string, string> {
  return {
    RCLONE_CONFIG_FSS3_TYPE: "s3",
    RCLONE_CONFIG_FSS3_PROVIDER: "Ceph",
    RCLONE_CONFIG_FSS3_ENDPOINT: server.endpoint,
    RCLONE_CONFIG_FSS3_ACCESS_KEY_ID: server.accessKey,
    RCLONE_CONFIG_FSS3_SECRET_ACCESS_KEY: server.secretKey,
    RCLONE_CONFIG_FSS3_REGION: server.region,
    RCLONE_CONFIG_FSS3_FORCE_PATH_STYLE: "true",
    AWS_CA_BUNDLE: "",
  };
}

/** Runs rclone against `server` (remote `fss3:`); returns stdout, throws with stderr on failure. */
export async function rclone(server: S3Server, args: string[]): Promise<string> {
  const out = await new Deno.Command("rclone", {
    args,
    env: rcloneEnv(server),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`rclone ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

/** A fresh bucket on `server` (`url` is `s3://NAME`), purged and removed on dispose. */
export async function s3Bucket(
  server: S3Server,
  prefix = "fstest-",
): Promise<{ name: string; url: string } & AsyncDisposable> {
  const name = `${prefix}${crypto.randomUUID().slice(0, 8)}`;
  await rclone(server, ["mkdir", `fss3:${name}`]);
  return {
    name,
    url: `s3://${name}`,
    [Symbol.asyncDispose]: () => removeBucket(server, name).catch(() => {}),
  };
}

/** An S3 client of bucket `bucket` on `server`, with the server's keys. */
export function s3Client(server: S3Server, bucket: string): S3Client {
  return new S3Client({
    endpoint: new URL(server.endpoint),
    pathStyle: true,
    region: server.region,
    credentials: () => Promise.resolve({ accessKeyId: server.accessKey, secretAccessKey: server.secretKey }),
    bucket,
  });
}

/** Points this process's AWS variables at `server` (its keys and endpoint; AWS_PROFILE cleared). */
export function useS3Server(server: S3Server): void {
  for (const [name, value] of Object.entries(s3Env(server))) {
    if (value === "") Deno.env.delete(name);
    else Deno.env.set(name, value);
  }
  Deno.env.delete("AWS_PROFILE");
}

/**
 * Deletes every object of bucket `name` and the bucket. Not through rclone: rclone never deletes
 * `dir/` marker objects (it does not list them as objects), so its purge leaves such a bucket
 * behind.
 */
async function removeBucket(server: S3Server, name: string): Promise<void> {
  const client = s3Client(server, name);
  for (const upload of await client.uploads("")) await client.abortUpload(upload.key, upload.uploadId);
  for await (const page of client.list("")) {
    await Promise.all(page.map((object) => client.delete(object.key)));
  }
  await client.request("DELETE", {});
}

async function run(program: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(program, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${program} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}
