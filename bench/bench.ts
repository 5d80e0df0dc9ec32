/**
 * Side-by-side benchmark: foldersync against rsync, rclone (when installed) and cp -a on the
 * same generated trees in the same run, tools alternated (A B A B ...) so machine drift
 * cancels out. Prints medians, ratios to rsync, and peak RSS (GNU time, when installed).
 *
 * Usage: deno task bench [--quick] [--reps N] [--only small,large,real,huge] [--dir DIR] [--excludes]
 * (huge, a million empty files for the memory row, runs only when named)
 *
 * `deno task bench --remote [...]` runs the SFTP and S3 bench instead (bench/remote.ts, its own options).
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

/** What `--help` prints. */
const USAGE = `Usage: deno task bench [--quick] [--reps N] [--only small,large,real,huge] [--dir DIR] [--excludes]
       deno task bench --remote --help   (the SFTP and S3 bench, its own options)
(huge, a million empty files for the memory row, runs only when named)`;

if (Deno.args.includes("--remote")) {
  // Loaded only when asked for: it needs the test servers and takes other options.
  const { benchRemote } = await import("./remote.ts");
  await benchRemote(Deno.args.filter((arg) => arg !== "--remote"));
  Deno.exit(0);
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    help: { type: "boolean", short: "h" },
    quick: { type: "boolean" },
    reps: { type: "string" },
    only: { type: "string" },
    dir: { type: "string" },
    excludes: { type: "boolean" },
  },
});
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const QUICK = values.quick ?? false;
const REPS = Number(values.reps ?? (QUICK ? 3 : 5));
const ONLY = new Set((values.only ?? "small,large,real").split(","));
const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
/** `--excludes`: every tool gets the same few everyday excludes, in its own syntax. */
const EXCLUDES = values.excludes ?? false;
const FS_EXCLUDES = EXCLUDES ? ["-x", "*.tmp", "-x", "node_modules/", "-x", "/build", "-x", "**/cache/**"] : [];
const RSYNC_EXCLUDES = EXCLUDES
  ? ["--exclude=*.tmp", "--exclude=node_modules/", "--exclude=/build", "--exclude=cache/**"]
  : [];
const RCLONE_EXCLUDES = EXCLUDES
  ? ["--exclude", "*.tmp", "--exclude", "node_modules/**", "--exclude", "/build/**", "--exclude", "cache/**"]
  : [];
const WORK = values.dir ?? await Deno.makeTempDir({ prefix: "foldersync-bench-" });

const SIZES = QUICK
  ? { smallFiles: 5_000, smallDirs: 200, largeFiles: 2, largeMiB: 64 }
  : { smallFiles: 50_000, smallDirs: 2_000, largeFiles: 8, largeMiB: 256 };

function which(cmd: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" }).outputSync().success;
  } catch {
    return false;
  }
}
const HAS_TIME = which("/usr/bin/time");
const HAS_RCLONE = which("rclone");

interface Sample {
  ms: number;
  rssKiB?: number;
}

/** Runs a command, returning wall time and (with GNU time) peak RSS; fails loudly on error. */
async function timed(cmd: string[]): Promise<Sample> {
  const rssFile = join(WORK, "rss.txt");
  const argv = HAS_TIME ? ["/usr/bin/time", "-f", "%M", "-o", rssFile, ...cmd] : cmd;
  const started = performance.now();
  const out = await new Deno.Command(argv[0]!, { args: argv.slice(1), stdout: "null", stderr: "piped" }).output();
  const ms = performance.now() - started;
  if (!out.success) throw new Error(`${cmd.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  const sample: Sample = { ms };
  if (HAS_TIME) sample.rssKiB = Number((await Deno.readTextFile(rssFile)).trim().split("\n").pop());
  return sample;
}

async function sh(script: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stderr: "piped" }).output();
  if (!out.success) throw new Error(`${script}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A tool under test: the command that mirrors src into dst. */
interface Tool {
  name: string;
  cmd: (src: string, dst: string, checksum: boolean) => string[];
  checksum: boolean;
}

const deno = Deno.execPath();
const TOOLS: Tool[] = [
  {
    name: "foldersync",
    // The hash cache lives in the work directory, so the bench leaves nothing in the user's cache.
    cmd: (s, d, c) => [
      deno,
      "run",
      "--allow-read",
      "--allow-write",
      MAIN,
      s,
      d,
      "-q",
      ...FS_EXCLUDES,
      ...(c ? ["-c", "--cache-dir", join(WORK, "hash-cache", d.replace(/\W/g, "_"))] : []),
    ],
    checksum: true,
  },
  {
    name: "rsync",
    cmd: (s, d, c) => ["rsync", "-a", "--delete", ...RSYNC_EXCLUDES, ...(c ? ["-c"] : []), `${s}/`, `${d}/`],
    checksum: true,
  },
  ...(HAS_RCLONE
    ? [{
      name: "rclone",
      cmd: (s: string, d: string, c: boolean) => [
        "rclone",
        "sync",
        "--links",
        ...RCLONE_EXCLUDES,
        ...(c ? ["--checksum"] : []),
        s,
        d,
      ],
      checksum: true,
    }]
    : []),
  { name: "cp -a", cmd: (s, d) => ["cp", "-a", `${s}/.`, d], checksum: false },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function genSmall(root: string): Promise<void> {
  const payload = new Uint8Array(8192);
  crypto.getRandomValues(payload.subarray(0, 8192));
  const dirs: string[] = [];
  for (let d = 0; d < SIZES.smallDirs; d++) {
    const dir = join(root, `d${d % 50}`, `e${Math.floor(d / 50) % 40}`, `f${d}`);
    dirs.push(dir);
    await Deno.mkdir(dir, { recursive: true });
  }
  for (let i = 0; i < SIZES.smallFiles; i++) {
    const size = 1024 + ((i * 7919) % 7169);
    await Deno.writeFile(join(dirs[i % dirs.length]!, `file${i}.dat`), payload.subarray(0, size));
  }
}

async function genLarge(root: string): Promise<void> {
  await Deno.mkdir(root, { recursive: true });
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < SIZES.largeFiles; i++) {
    using f = await Deno.open(join(root, `big${i}.bin`), { write: true, create: true });
    for (let m = 0; m < SIZES.largeMiB; m++) {
      crypto.getRandomValues(chunk.subarray(0, 65536));
      chunk[0] = m;
      await f.write(chunk);
    }
  }
}

/** 1,000,000 empty files in 10,000 directories: the memory row (only with --only huge). */
async function genHuge(root: string): Promise<void> {
  const files = QUICK ? 100_000 : 1_000_000;
  for (let d = 0; d < 10_000; d++) Deno.mkdirSync(join(root, `d${d % 100}`, `e${d}`), { recursive: true });
  for (let i = 0; i < files; i++) {
    Deno.writeFileSync(join(root, `d${(i % 10_000) % 100}`, `e${i % 10_000}`, `f${i}`), EMPTY);
  }
  await Promise.resolve();
}
const EMPTY = new Uint8Array(0);

async function genReal(root: string): Promise<void> {
  await sh(`mkdir -p '${root}' && cp -a /usr/share/. '${root}/' 2>/dev/null || true`);
}

/** Changes 1% of files, adds 1% and deletes 1% (every 100th file of each kind). */
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
    const f = files[i]!;
    const third = (i / 100) % 3;
    if (third === 0) await Deno.writeTextFile(f, `changed ${round} ${i}\n`, { append: true });
    else if (third === 1) await Deno.remove(f);
    else await Deno.writeTextFile(`${f}.new${round}`, `added ${round}\n`);
  }
}

interface Row {
  tree: string;
  scenario: string;
  results: Map<string, Sample[]>;
}

const rows: Row[] = [];

async function scenario(
  tree: string,
  name: string,
  src: string,
  prepare: (dst: string, tool: Tool) => Promise<void>,
  opts: { checksum?: boolean; tools?: string[]; reps?: number } = {},
) {
  const row: Row = { tree, scenario: name, results: new Map() };
  const tools = TOOLS.filter((t) =>
    (opts.tools ? opts.tools.includes(t.name) : true) && (!opts.checksum || t.checksum)
  );
  for (let rep = 0; rep < (opts.reps ?? REPS); rep++) {
    for (const tool of rep % 2 ? [...tools].reverse() : tools) {
      const dst = join(WORK, `dst-${tool.name.replace(/\W/g, "")}`);
      await prepare(dst, tool);
      const sample = await timed(tool.cmd(src, dst, opts.checksum ?? false));
      if (tool.name === "foldersync" && rep === 0) await verifyMirror(src, dst);
      const list = row.results.get(tool.name) ?? [];
      list.push(sample);
      row.results.set(tool.name, list);
    }
  }
  rows.push(row);
  printRow(row);
}

/** Speed means nothing unless the copy is exact: the rsync oracle must find no difference. */
async function verifyMirror(src: string, dst: string): Promise<void> {
  const out = await new Deno.Command("rsync", {
    args: ["-rlptD", "-c", "--delete", "-n", "-i", ...RSYNC_EXCLUDES, `${src}/`, `${dst}/`],
    stdout: "piped",
  }).output();
  const diff = new TextDecoder().decode(out.stdout).trim();
  if (!out.success || diff !== "") {
    throw new Error(`foldersync's replica differs from the source:\n${diff.slice(0, 2000)}`);
  }
}

const fresh = (dst: string) => sh(`chmod -R u+rwx '${dst}' 2>/dev/null; rm -rf '${dst}' && mkdir -p '${dst}'`);
const mirrorOf = (src: string) => async (dst: string) => {
  await fresh(dst);
  await sh(`rsync -a --delete '${src}/' '${dst}/'`);
};

function printRow(row: Row): void {
  const rsync = row.results.get("rsync");
  const base = rsync ? median(rsync.map((s) => s.ms)) : undefined;
  const cells = [...row.results].map(([tool, samples]) => {
    const ms = median(samples.map((s) => s.ms));
    const rss = samples[0]?.rssKiB !== undefined
      ? ` ${(Math.max(...samples.map((s) => s.rssKiB!)) / 1024).toFixed(0)} MB`
      : "";
    const ratio = base ? ` (${(ms / base).toFixed(2)}x)` : "";
    return `${tool}: ${(ms / 1000).toFixed(3)} s${ratio}${rss}`;
  });
  console.log(`| ${row.tree} | ${row.scenario} | ${cells.join(" | ")} |`);
}

async function benchTree(tree: string, gen: (root: string) => Promise<void>) {
  const src = join(WORK, `src-${tree}`);
  console.error(`generating ${tree} tree ...`);
  await sh(`rm -rf '${src}'`);
  await gen(src);
  if (tree === "huge") {
    // The memory row: peak RSS at a million files, for an initial copy and a no-op.
    await scenario(tree, "initial copy", src, (dst) => fresh(dst), { tools: ["foldersync", "rsync"], reps: 1 });
    await scenario(tree, "no-op resync", src, () => Promise.resolve(), { tools: ["foldersync", "rsync"], reps: 1 });
    return;
  }
  await scenario(tree, "initial copy", src, (dst) => fresh(dst));
  await scenario(tree, "no-op resync", src, async (dst, tool) => {
    if (!(await Deno.stat(dst).catch(() => undefined))) await mirrorOf(src)(dst);
    void tool;
  }, { tools: ["foldersync", "rsync", "rclone"] });
  let round = 0;
  await scenario(tree, "1% changed/added/deleted", src, async (dst) => {
    await mirrorOf(src)(dst);
    await churn(src, round++); // same churn for each tool: restored below
  }, { tools: ["foldersync", "rsync", "rclone"] });
  await scenario(tree, "--checksum, first run", src, mirrorOf(src), {
    checksum: true,
    tools: ["foldersync", "rsync", "rclone"],
  });
  await scenario(tree, "--checksum, second run", src, () => Promise.resolve(), {
    checksum: true,
    tools: ["foldersync", "rsync", "rclone"],
  });
  if (tree !== "real") {
    const t0 = performance.now();
    await sh(`find '${src}' '${join(WORK, "dst-foldersync")}' -printf '%s %T@\\n' > /dev/null`);
    console.log(`| ${tree} | find src dst -printf '%s %T@' | ${((performance.now() - t0) / 1000).toFixed(3)} s |`);
  }
}

console.log(
  `foldersync bench: ${QUICK ? "quick" : "full"} sizes, ${REPS} alternating reps, medians; ratio = tool / rsync`,
);
console.log(`machine: ${Deno.build.target}, ${navigator.hardwareConcurrency} cores; deno ${Deno.version.deno}`);
console.log("every foldersync result below was checked exact with rsync -rlptD -c --delete -n -i");
console.log(`| tree | scenario | results |`);
console.log(`| --- | --- | --- |`);
try {
  if (ONLY.has("small")) await benchTree("small", genSmall);
  if (ONLY.has("large")) await benchTree("large", genLarge);
  if (ONLY.has("real")) await benchTree("real", genReal);
  if (ONLY.has("huge")) await benchTree("huge", genHuge);
} finally {
  if (!values.dir) await sh(`chmod -R u+rwx '${WORK}'; rm -rf '${WORK}'`);
}
