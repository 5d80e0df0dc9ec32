/**
 * Remote benchmark: foldersync against rsync and rclone over SFTP, and against rclone over S3,
 * on the test servers of `tests/servers/up.sh` (read from `servers.json` in
 * `$FOLDERSYNC_TEST_SERVERS`). Same trees, same servers, tools alternated (A B, B A ...) so
 * machine drift cancels out. Prints medians, foldersync / peer ratios and peak RSS (GNU time).
 * The `sftp pull` rows go the other way: from a folder on the server into a local one,
 * against rsync's pull form (`rsync -a --delete -e ssh host:dir/ local/`); the `s3 restore`
 * rows restore foldersync's copies in a bucket into empty local folders, with foldersync's
 * caches empty (a new machine), against `rclone sync REMOTE:bucket/prefix local/`.
 *
 * A tool that fails shows `failed` in its cell (its error on stderr) and the bench goes on; a
 * foldersync replica that differs from the source shows `wrong`.
 *
 * Usage: deno task bench --remote [--reps N] [--only sftp,pull,s3,restore,memory] [--dir DIR] [--big-mib N]
 *                                 [--memory] [--objects N]
 * (memory, the S3 peak-memory rows at --objects empty files, 100,000 by default, is slow: it
 * runs only when named in --only or with --memory)
 *
 * @module
 */

import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { LOCK_NAME } from "../lib/model/lock.ts";
import { rcloneEnv, s3Env, type S3Server, SERVERS_DIR, type SftpServer } from "../tests/remote_env.ts";

/** One run of a tool: wall time and (with GNU time) peak RSS. */
interface Sample {
  ms: number;
  rssKiB?: number;
}

/** What a tool did in one row: its samples, or why it has none. */
type Cell = { samples: Sample[] } | { failed: "failed" | "wrong" };

/** A tool under test: the command that mirrors `src` into the replica `dst`. */
interface Tool {
  name: string;
  cmd: (src: string, dst: string) => string[];
  env: Record<string, string>;
}

/** One side of the bench: a server, the tools that reach it, and how to make a replica there. */
interface Backend {
  name: "sftp" | "sftp pull" | "s3" | "s3 restore";
  tools: Tool[];
  /** A fresh, empty replica named `name`; returns what the tools take as `dst`. */
  fresh: (name: string) => Promise<string>;
  /** Checks foldersync's replica `dst` holds exactly `src`; returns the differences, or "". */
  verify: (src: string, dst: string) => Promise<string>;
  /** Frees what the replicas took, at the end. */
  cleanup: () => Promise<void>;
}

const decoder = new TextDecoder();
const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const PEERS = ["rsync", "rclone"];

/**
 * Runs the remote benchmark with command-line `args` (without `--remote`) and prints its table.
 *
 * Needs --allow-read, --allow-write, --allow-run and --allow-env, root (to prepare folders in the
 * SFTP user's home), and the test servers running.
 *
 * @throws {Error} When the test servers are not described, or a source tree cannot be made.
 * @example Running it
 * ```ts
 * await benchRemote(["--reps", "3", "--only", "sftp"]);
 * ```
 */
export async function benchRemote(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      help: { type: "boolean", short: "h" },
      reps: { type: "string" },
      only: { type: "string" },
      dir: { type: "string" },
      "big-mib": { type: "string" },
      memory: { type: "boolean" },
      objects: { type: "string" },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno task bench --remote [--reps N] [--only sftp,pull,s3,restore,memory] [--dir DIR] [--big-mib N]\n" +
        "                                [--memory] [--objects N]\n" +
        "(against the test servers of tests/servers/up.sh; memory, the S3 peak-memory rows, runs only when named)",
    );
    return;
  }
  const reps = Number(values.reps ?? 3);
  const only = new Set((values.only ?? "sftp,pull,s3,restore").split(","));
  if (values.memory) only.add("memory");
  const bigMiB = Number(values["big-mib"] ?? 1024);
  const objects = Number(values.objects ?? 100_000);
  const servers = readServers();
  const work = values.dir
    ? join(values.dir, `foldersync-remote-bench-${tag()}`)
    : await Deno.makeTempDir({ prefix: "foldersync-remote-bench-" });
  await Deno.mkdir(work, { recursive: true });
  const bench = new Bench(work, reps);

  console.log(`foldersync remote bench: ${reps} alternating reps, medians; ratio = foldersync / peer`);
  console.log(`machine: ${Deno.build.target}, ${navigator.hardwareConcurrency} cores; deno ${Deno.version.deno}`);
  console.log(`servers: ${join(SERVERS_DIR, "servers.json")}; trees in ${work}`);
  console.log(`| server | scenario | foldersync | ${PEERS.join(" | ")} | ${PEERS.map((p) => `fs/${p}`).join(" | ")} |`);
  console.log(`| --- | --- | --- | ${PEERS.map(() => "---").join(" | ")} | ${PEERS.map(() => "---").join(" | ")} |`);
  const backends: Backend[] = [];
  try {
    console.error("generating trees ...");
    const small = join(work, "src-small");
    const big = join(work, "src-big");
    if (only.has("sftp") || only.has("pull") || only.has("s3") || only.has("restore")) {
      await genSmall(small, 5_000, 100);
      await genBig(big, bigMiB);
    }
    const bigLabel = bigMiB % 1024 === 0 ? `${bigMiB / 1024} GiB` : `${bigMiB} MiB`;
    if (only.has("sftp")) {
      if (!servers.sftp) throw new Error(`No SFTP server in ${join(SERVERS_DIR, "servers.json")}`);
      backends.push(await sftpBackend(servers.sftp, work));
    }
    if (only.has("s3") || only.has("memory")) {
      if (!servers.s3) throw new Error(`No S3 server in ${join(SERVERS_DIR, "servers.json")}`);
      backends.push(await s3Backend(servers.s3, work));
    }
    if (only.has("pull")) {
      if (!servers.sftp) throw new Error(`No SFTP server in ${join(SERVERS_DIR, "servers.json")}`);
      const pull = await sftpPullBackend(servers.sftp, work);
      backends.push(pull);
      // The same trees, on the server this time; the replicas are local folders.
      const [serverSmall, serverBig] = [await pull.upload(small), await pull.upload(big)];
      const replicas = await bench.initial(pull, "5,000 small files, initial copy", serverSmall);
      await bench.initial(pull, `one ${bigLabel} file, initial copy`, serverBig);
      await bench.noop(pull, "5,000 small files, no-op", serverSmall, replicas);
      await bench.churn(pull, "5,000 small files, 1% changed, some added and deleted", serverSmall, replicas);
    }
    if (only.has("restore")) {
      if (!servers.s3) throw new Error(`No S3 server in ${join(SERVERS_DIR, "servers.json")}`);
      const restore = await s3RestoreBackend(servers.s3, work);
      backends.push(restore);
      // foldersync's own copies of the trees, in a bucket; the replicas are local folders.
      const [bucketSmall, bucketBig] = [await restore.upload(small), await restore.upload(big)];
      const restored = await bench.initial(restore, "5,000 small files, restore", bucketSmall);
      await bench.initial(restore, `one ${bigLabel} file, restore`, bucketBig);
      await bench.noop(restore, "5,000 small files, no-op restore", bucketSmall, restored);
      await bench.requests(restore, bucketSmall, restored);
    }
    for (const backend of backends.filter((b) => only.has(b.name))) {
      const replicas = await bench.initial(backend, "5,000 small files, initial copy", small);
      await bench.initial(backend, `one ${bigLabel} file, initial copy`, big);
      await bench.noop(backend, "5,000 small files, no-op", small, replicas);
      if (backend.name === "s3") await bench.requests(backend, small, replicas);
      await bench.churn(backend, "5,000 small files, 1% changed, some added and deleted", small, replicas);
    }
    const s3 = backends.find((b) => b.name === "s3");
    if (s3 && only.has("memory")) {
      console.error(`generating ${objects} empty files ...`);
      const many = join(work, "src-many");
      await genSmall(many, objects, Math.max(1, Math.round(objects / 100)), 0);
      const count = objects.toLocaleString("en");
      const copies = await bench.initial(s3, `${count} empty files, initial copy`, many, 1);
      await bench.noop(s3, `${count} empty files, no-op`, many, copies, 1);
    }
  } finally {
    for (const backend of backends) await backend.cleanup().catch((e) => console.error(String(e)));
    await sh(`rm -rf '${work}'`);
  }
}

/** The rows: each runs every tool of a backend `reps` times, alternating their order. */
class Bench {
  #work: string;
  #reps: number;
  #round = 0;

  constructor(work: string, reps: number) {
    this.#work = work;
    this.#reps = reps;
  }

  /**
   * Copies into a fresh replica each time (emptied untimed before); foldersync's first copy is
   * checked exact. Returns each tool's replica, which the later rows on `src` re-sync.
   */
  async initial(backend: Backend, label: string, src: string, reps = this.#reps): Promise<Map<string, string>> {
    const replicas = new Map<string, string>();
    await this.#row(backend, label, reps, async (tool, rep) => {
      const dst = await backend.fresh(`${tool.name}-${label.replace(/\W+/g, "-")}`);
      replicas.set(tool.name, dst);
      return { dst, check: tool.name === "foldersync" && rep === 0 };
    }, src);
    return replicas;
  }

  /** Each tool re-syncs the replica it made in `replicas`, once untimed to be sure it is up to date. */
  async noop(
    backend: Backend,
    label: string,
    src: string,
    replicas: Map<string, string>,
    reps = this.#reps,
  ): Promise<void> {
    const synced = new Set<string>();
    await this.#row(backend, label, reps, async (tool) => {
      const dst = replicas.get(tool.name)!;
      if (!synced.has(tool.name)) await run(tool.cmd(src, dst), tool.env);
      synced.add(tool.name);
      return { dst };
    }, src);
  }

  /** Each tool first brings its replica up to date (untimed), then the source churns, then the timed run. */
  async churn(backend: Backend, label: string, src: string, replicas: Map<string, string>): Promise<void> {
    await this.#row(backend, label, this.#reps, async (tool) => {
      const dst = replicas.get(tool.name)!;
      await run(tool.cmd(src, dst), tool.env);
      await churn(src, this.#round++);
      return { dst };
    }, src);
  }

  /** How many HTTP requests a no-op sync of a replica in `replicas` sends, from each tool's debug output. */
  async requests(backend: Backend, src: string, replicas: Map<string, string>): Promise<void> {
    const cells = new Map<string, string>();
    for (const tool of backend.tools) {
      const dst = replicas.get(tool.name)!;
      try {
        await run(tool.cmd(src, dst), tool.env); // up to date first: this row counts a no-op
        if (tool.name === "rclone") {
          const { stderr } = await run([...tool.cmd(src, dst), "--dump", "headers", "-v"], tool.env);
          cells.set(tool.name, String(stderr.match(/HTTP REQUEST/g)?.length ?? 0));
        } else if (tool.name === "foldersync") {
          const { stdout, stderr } = await run(
            tool.cmd(src, dst).map((arg) => arg === "-q" ? "--verbose" : arg),
            tool.env,
          );
          // Whatever form foldersync's debug output gives the count in: "12 requests", "requests: 12".
          const found = /(\d[\d,]*)\s+(?:S3\s+|HTTP\s+)?requests?\b/i.exec(stdout + stderr) ??
            /\brequests?\b\D{0,3}(\d[\d,]*)/i.exec(stdout + stderr);
          cells.set(tool.name, found?.[1]?.replace(/,/g, "") ?? "n/a");
        }
      } catch (error) {
        console.error(`${tool.name}: ${firstLines(error)}`);
        cells.set(tool.name, "failed");
      }
    }
    const fs = Number(cells.get("foldersync"));
    const line = [backend.name, "5,000 small files, no-op: HTTP requests", cells.get("foldersync") ?? "-"];
    for (const peer of PEERS) line.push(cells.get(peer) ?? "-");
    for (const peer of PEERS) {
      const n = Number(cells.get(peer));
      line.push(Number.isFinite(fs) && Number.isFinite(n) && n > 0 ? `${(fs / n).toFixed(2)}x` : "-");
    }
    console.log(`| ${line.join(" | ")} |`);
  }

  async #row(
    backend: Backend,
    label: string,
    reps: number,
    prepare: (tool: Tool, rep: number) => Promise<{ dst: string; check?: boolean }>,
    src: string,
  ): Promise<void> {
    const cells = new Map<string, Cell>(backend.tools.map((t) => [t.name, { samples: [] }]));
    for (let rep = 0; rep < reps; rep++) {
      for (const tool of rep % 2 ? [...backend.tools].reverse() : backend.tools) {
        const cell = cells.get(tool.name)!;
        if ("failed" in cell) continue;
        try {
          const { dst, check = false } = await prepare(tool, rep);
          cell.samples.push(await timed(tool.cmd(src, dst), tool.env, this.#work));
          const diff = check ? await backend.verify(src, dst) : "";
          if (diff !== "") {
            console.error(`${tool.name}'s replica differs from the source:\n${diff.slice(0, 2000)}`);
            cells.set(tool.name, { failed: "wrong" });
          }
        } catch (error) {
          console.error(`${backend.name} ${label}: ${tool.name}: ${firstLines(error)}`);
          cells.set(tool.name, { failed: "failed" });
        }
      }
    }
    printRow(backend.name, label, cells);
  }
}

function printRow(server: string, label: string, cells: Map<string, Cell>): void {
  const ms = (name: string): number | undefined => {
    const cell = cells.get(name);
    return cell && "samples" in cell && cell.samples.length ? median(cell.samples.map((s) => s.ms)) : undefined;
  };
  const show = (name: string): string => {
    const cell = cells.get(name);
    if (cell === undefined) return "-";
    if ("failed" in cell) return cell.failed;
    const rss = cell.samples.every((s) => s.rssKiB !== undefined)
      ? `, ${(Math.max(...cell.samples.map((s) => s.rssKiB!)) / 1024).toFixed(0)} MB`
      : "";
    return `${(ms(name)! / 1000).toFixed(3)} s${rss}`;
  };
  const fs = ms("foldersync");
  const ratios = PEERS.map((peer) => {
    const base = ms(peer);
    return fs !== undefined && base !== undefined ? `${(fs / base).toFixed(2)}x` : "-";
  });
  console.log(
    `| ${server} | ${label} | ${show("foldersync")} | ${PEERS.map(show).join(" | ")} | ${ratios.join(" | ")} |`,
  );
}

function readServers(): { sftp?: SftpServer; s3?: S3Server } {
  const file = join(SERVERS_DIR, "servers.json");
  try {
    return JSON.parse(Deno.readTextFileSync(file));
  } catch (error) {
    throw new Error(`No test servers described in '${file}': start them with: sudo bash tests/servers/up.sh start`, {
      cause: error,
    });
  }
}

/** foldersync, rsync and rclone over SFTP, replicas in folders of the SFTP user's home. */
async function sftpBackend(server: SftpServer, work: string): Promise<Backend> {
  const base = join(server.home, `foldersync-bench-${tag()}`);
  await sh(`mkdir -p '${base}' && chown '${server.user}:' '${base}'`);
  const ssh = `ssh -p ${server.port} -i ${server.key} -o UserKnownHostsFile=${server.knownHosts}` +
    " -o StrictHostKeyChecking=yes -o BatchMode=yes";
  const rcloneSftp = {
    RCLONE_CONFIG_FSSFTP_TYPE: "sftp",
    RCLONE_CONFIG_FSSFTP_HOST: server.host,
    RCLONE_CONFIG_FSSFTP_PORT: String(server.port),
    RCLONE_CONFIG_FSSFTP_USER: server.user,
    RCLONE_CONFIG_FSSFTP_KEY_FILE: server.key,
    RCLONE_CONFIG_FSSFTP_KNOWN_HOSTS_FILE: server.knownHosts,
    RCLONE_CONFIG_FSSFTP_SET_MODTIME: "true",
  };
  return {
    name: "sftp",
    tools: [
      {
        name: "foldersync",
        cmd: (src, dst) => [
          Deno.execPath(),
          "run",
          "--quiet",
          "-A",
          MAIN,
          src,
          `sftp://${server.user}@${server.host}:${server.port}${dst}`,
          "--ssh-key",
          server.key,
          "--known-hosts",
          server.knownHosts,
          "-q",
        ],
        env: cacheEnv(work),
      },
      {
        name: "rsync",
        cmd: (src, dst) => ["rsync", "-a", "--delete", "-e", ssh, `${src}/`, `${server.user}@${server.host}:${dst}/`],
        env: {},
      },
      { name: "rclone", cmd: (src, dst) => ["rclone", "sync", src, `fssftp:${dst}`], env: rcloneSftp },
    ],
    fresh: async (name) => {
      const dst = join(base, name);
      await sh(`rm -rf '${dst}' && mkdir '${dst}' && chown '${server.user}:' '${dst}'`);
      return dst;
    },
    // The replica is a local folder too. Content and shape only: SFTP keeps whole-second times.
    verify: async (src, dst) => {
      const { stdout } = await run(
        ["rsync", "-rlc", "--delete", "-n", "-i", `--exclude=/${LOCK_NAME}`, `${src}/`, `${dst}/`],
        {},
      );
      return stdout.trim();
    },
    cleanup: () => sh(`rm -rf '${base}' '${join(work, "rss.txt")}'`),
  };
}

/**
 * foldersync and rsync pulling from a folder on the SFTP server into local folders: `upload`
 * copies a tree to the server first (untimed), owned by the server's user.
 */
async function sftpPullBackend(
  server: SftpServer,
  work: string,
): Promise<Backend & { upload: (tree: string) => Promise<string> }> {
  const base = join(server.home, `foldersync-bench-pull-${tag()}`);
  await sh(`mkdir -p '${base}' && chown '${server.user}:' '${base}'`);
  const ssh = `ssh -p ${server.port} -i ${server.key} -o UserKnownHostsFile=${server.knownHosts}` +
    " -o StrictHostKeyChecking=yes -o BatchMode=yes";
  const local = join(work, "pulled");
  await Deno.mkdir(local, { recursive: true });
  return {
    name: "sftp pull",
    tools: [
      {
        name: "foldersync",
        cmd: (src, dst) => [
          Deno.execPath(),
          "run",
          "--quiet",
          "-A",
          MAIN,
          `sftp://${server.user}@${server.host}:${server.port}${src}`,
          dst,
          "--ssh-key",
          server.key,
          "--known-hosts",
          server.knownHosts,
          "-q",
        ],
        env: cacheEnv(work),
      },
      {
        name: "rsync",
        cmd: (src, dst) => ["rsync", "-a", "--delete", "-e", ssh, `${server.user}@${server.host}:${src}/`, `${dst}/`],
        env: {},
      },
    ],
    fresh: async (name) => {
      const dst = join(local, name);
      await sh(`rm -rf '${dst}' && mkdir '${dst}'`);
      return dst;
    },
    verify: async (src, dst) => {
      const { stdout } = await run(["rsync", "-rlc", "--delete", "-n", "-i", `${src}/`, `${dst}/`], {});
      return stdout.trim();
    },
    upload: async (tree) => {
      const dst = join(base, basename(tree));
      await sh(`cp -a '${tree}' '${dst}' && chown -R '${server.user}:' '${dst}'`);
      return dst;
    },
    cleanup: () => sh(`rm -rf '${base}' '${local}'`),
  };
}

/**
 * foldersync and rclone restoring from a bucket made for the bench into local folders: `upload`
 * puts a tree there with foldersync first (untimed). foldersync restores with a cache folder of
 * its own, emptied with each fresh folder: a restore onto a new machine, where every object's
 * metadata is asked once (a no-op restore then has it).
 */
async function s3RestoreBackend(
  server: S3Server,
  work: string,
): Promise<Backend & { upload: (tree: string) => Promise<string> }> {
  const bucket = `foldersync-bench-restore-${tag()}`;
  const rclone = rcloneEnv(server);
  await run(["rclone", "mkdir", `fss3:${bucket}`], rclone);
  const local = join(work, "restored");
  const cache = join(work, "restore-cache");
  await Deno.mkdir(local, { recursive: true });
  /** The local tree each bucket path holds. */
  const trees = new Map<string, string>();
  return {
    name: "s3 restore",
    tools: [
      {
        name: "foldersync",
        cmd: (
          src,
          dst,
        ) => [Deno.execPath(), "run", "--quiet", "-A", MAIN, `s3://${src}`, dst, "--cache-dir", cache, "-q"],
        env: s3Env(server),
      },
      { name: "rclone", cmd: (src, dst) => ["rclone", "sync", `fss3:${src}`, dst], env: rclone },
    ],
    fresh: async (name) => {
      const dst = join(local, name);
      await sh(`rm -rf '${dst}' '${cache}' && mkdir '${dst}'`);
      return dst;
    },
    // Contents, links, modes and times, against the tree that was put in the bucket.
    verify: async (src, dst) => {
      const { stdout } = await run(
        ["rsync", "-rlptD", "-c", "--delete", "-n", "-i", `${trees.get(src)}/`, `${dst}/`],
        {},
      );
      return stdout.trim();
    },
    upload: async (tree) => {
      const path = `${bucket}/${basename(tree)}`;
      await run([Deno.execPath(), "run", "--quiet", "-A", MAIN, tree, `s3://${path}`, "-q"], {
        ...s3Env(server),
        ...cacheEnv(work),
      });
      trees.set(path, tree);
      return path;
    },
    cleanup: async () => {
      const conf = join(SERVERS_DIR, "s3", "ceph.conf");
      await sh(`rm -rf '${local}' '${cache}'`);
      await run(["radosgw-admin", "-c", conf, "bucket", "rm", `--bucket=${bucket}`, "--purge-objects"], {})
        .catch(() => run(["rclone", "purge", `fss3:${bucket}`], rclone));
      await run(["radosgw-admin", "-c", conf, "gc", "process", "--include-all"], {}).catch(() => {});
    },
  };
}

/** foldersync and rclone over S3, replicas under prefixes of one bucket made for the bench. */
async function s3Backend(server: S3Server, work: string): Promise<Backend> {
  const bucket = `foldersync-bench-${tag()}`;
  const rclone = rcloneEnv(server);
  await run(["rclone", "mkdir", `fss3:${bucket}`], rclone);
  // radosgw frees deleted data later, in its garbage collector: collected at once when the
  // cluster is ours, so that a few 1 GiB copies do not fill the test OSD.
  const conf = join(SERVERS_DIR, "s3", "ceph.conf");
  const collect = () =>
    run(["radosgw-admin", "-c", conf, "gc", "process", "--include-all"], {}).then(() => {}, () => {});
  const made = new Set<string>();
  return {
    name: "s3",
    tools: [
      {
        name: "foldersync",
        cmd: (src, dst) => [Deno.execPath(), "run", "--quiet", "-A", MAIN, src, `s3://${dst}`, "-q"],
        env: { ...s3Env(server), ...cacheEnv(work) },
      },
      { name: "rclone", cmd: (src, dst) => ["rclone", "sync", src, `fss3:${dst}`], env: rclone },
    ],
    fresh: async (name) => {
      // A new prefix each time: rclone's purge leaves foldersync's directory markers (it does not
      // list `dir/` objects), so a purged prefix would not be quite empty.
      let dst = `${bucket}/${name}`;
      for (let n = 2; made.has(dst); n++) dst = `${bucket}/${name}-${n}`;
      made.add(dst);
      await collect();
      return dst;
    },
    verify: async (src, dst) => {
      try {
        await run(["rclone", "check", "--download", "--exclude", `/${LOCK_NAME}`, src, `fss3:${dst}`], rclone);
        return "";
      } catch (error) {
        return firstLines(error, 40);
      }
    },
    cleanup: async () => {
      // The whole bucket, markers included, where the cluster is ours; else what rclone can delete.
      await run(["radosgw-admin", "-c", conf, "bucket", "rm", `--bucket=${bucket}`, "--purge-objects"], {})
        .catch(() => run(["rclone", "purge", `fss3:${bucket}`], rclone));
      await collect();
    },
  };
}

/**
 * foldersync keeps its caches in the work folder: the bench leaves nothing in the user's cache.
 * Deno's own cache stays where it is (it follows XDG_CACHE_HOME too), so that no run downloads.
 */
function cacheEnv(work: string): Record<string, string> {
  return { XDG_CACHE_HOME: join(work, "cache"), DENO_DIR };
}

const DENO_DIR: string = Deno.env.get("DENO_DIR") ??
  JSON.parse(
    decoder.decode(
      new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" }).outputSync().stdout,
    ),
  ).denoDir;

/** Runs a command; returns its output, throws with its stderr when it fails. */
async function run(cmd: string[], env: Record<string, string>): Promise<{ stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd[0]!, { args: cmd.slice(1), env, stdout: "piped", stderr: "piped" }).output();
  const stdout = decoder.decode(out.stdout);
  const stderr = decoder.decode(out.stderr);
  if (!out.success) throw new Error(`${basename(cmd[0]!)} exited with ${out.code}: ${stderr || stdout}`);
  return { stdout, stderr };
}

const HAS_TIME = (() => {
  try {
    return Deno.statSync("/usr/bin/time").isFile;
  } catch {
    return false;
  }
})();

/** Runs a command, returning wall time and (with GNU time) peak RSS; throws when it fails. */
async function timed(cmd: string[], env: Record<string, string>, work: string): Promise<Sample> {
  const rssFile = join(work, "rss.txt");
  const argv = HAS_TIME ? ["/usr/bin/time", "-f", "%M", "-o", rssFile, ...cmd] : cmd;
  const started = performance.now();
  const out = await new Deno.Command(argv[0]!, { args: argv.slice(1), env, stdout: "null", stderr: "piped" })
    .output();
  const ms = performance.now() - started;
  if (!out.success) throw new Error(`${basename(cmd[0]!)} exited with ${out.code}: ${decoder.decode(out.stderr)}`);
  const sample: Sample = { ms };
  if (HAS_TIME) sample.rssKiB = Number((await Deno.readTextFile(rssFile)).trim().split("\n").pop());
  return sample;
}

async function sh(script: string): Promise<void> {
  await run(["sh", "-c", script], {});
}

function firstLines(error: unknown, lines = 3): string {
  return (error instanceof Error ? error.message : String(error)).trim().split("\n").slice(0, lines).join("\n");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function tag(): string {
  return crypto.randomUUID().slice(0, 8);
}

/** A small, seeded generator: the same trees every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `files` files of 1-8 KiB (or of `fixedSize` bytes) spread over `dirs` folders. */
async function genSmall(root: string, files: number, dirs: number, fixedSize?: number): Promise<void> {
  await sh(`rm -rf '${root}'`);
  const next = random(files);
  const payload = new Uint8Array(8192);
  crypto.getRandomValues(payload);
  for (let d = 0; d < dirs; d++) await Deno.mkdir(join(root, `d${d}`), { recursive: true });
  for (let i = 0; i < files; i++) {
    const size = fixedSize ?? 1024 + Math.floor(next() * 7169);
    payload[0] = i & 0xff; // no two files alike, so that no tool can dedupe
    payload[1] = (i >> 8) & 0xff;
    await Deno.writeFile(join(root, `d${i % dirs}`, `file${i}.dat`), payload.subarray(0, size));
  }
}

/** One file of `mib` MiB of random bytes. */
async function genBig(root: string, mib: number): Promise<void> {
  await sh(`rm -rf '${root}'`);
  await Deno.mkdir(root, { recursive: true });
  using file = await Deno.open(join(root, "big.bin"), { write: true, create: true });
  const chunk = new Uint8Array(1 << 20);
  for (let m = 0; m < mib; m++) {
    for (let o = 0; o < chunk.length; o += 65536) crypto.getRandomValues(chunk.subarray(o, o + 65536));
    let written = 0;
    while (written < chunk.length) written += await file.write(chunk.subarray(written));
  }
}

/** Appends to 1% of files (every 100th), deletes every 300th other one and adds as many new ones. */
async function churn(root: string, round: number): Promise<void> {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory) walk(p);
      else if (e.isFile) files.push(p);
    }
  };
  walk(root);
  files.sort();
  for (let i = 0; i < files.length; i += 100) {
    await Deno.writeTextFile(files[i]!, `changed ${round} ${i}\n`, { append: true });
  }
  for (let i = 50; i < files.length; i += 300) {
    await Deno.remove(files[i]!);
    await Deno.writeTextFile(`${files[i]!}.new${round}`, `added ${round} ${i}\n`);
  }
}

if (import.meta.main) await benchRemote(Deno.args);
