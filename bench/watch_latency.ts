/**
 * Watch-mode latency: median time from a file being closed in the source to it being in place
 * in the replica, with `foldersync --watch` running, on a tree of a given size (files in
 * directories of 200). Usage: deno task bench:watch [--samples N] [--files N] [--dir DIR]
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const { values } = parseArgs({
  args: Deno.args,
  options: { samples: { type: "string" }, files: { type: "string" }, dir: { type: "string" } },
});
const samples = Number(values.samples ?? 20);
const files = Number(values.files ?? 1000);
const main = fileURLToPath(new URL("../main.ts", import.meta.url));
const work = await Deno.makeTempDir({ prefix: "foldersync-latency-", ...(values.dir ? { dir: values.dir } : {}) });
const src = join(work, "src");
const dst = join(work, "dst");
const dirOf = (i: number) => join(src, `d${Math.floor(i / 200)}`);
for (let i = 0; i < files; i++) {
  if (i % 200 === 0) Deno.mkdirSync(dirOf(i), { recursive: true });
  Deno.writeTextFileSync(join(dirOf(i), `existing${i}.txt`), `${i}`);
}
const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "--allow-read", "--allow-write", main, src, dst, "--watch", "-q"],
  stdout: "null",
  stderr: "null",
}).spawn();
const exists = (p: string) => Deno.lstat(p).then(() => true, () => false);
const last = join(dst, `d${Math.floor((files - 1) / 200)}`, `existing${files - 1}.txt`);
while (!(await exists(last))) await new Promise((r) => setTimeout(r, 20));

const latencies: number[] = [];
for (let i = 0; i < samples; i++) {
  // A new file in a directory in the middle of the tree.
  const rel = join(`d${Math.floor(files / 400)}`, `sample${i}.txt`);
  const started = performance.now();
  await Deno.writeTextFile(join(src, rel), `sample ${i}`);
  while (!(await exists(join(dst, rel)))) await new Promise((r) => setTimeout(r, 5));
  latencies.push(performance.now() - started);
  await new Promise((r) => setTimeout(r, 300));
}
child.kill("SIGTERM");
await child.status;
await Deno.remove(work, { recursive: true });
latencies.sort((a, b) => a - b);
const q = (f: number) => latencies[Math.min(latencies.length - 1, Math.floor(f * latencies.length))]!.toFixed(0);
console.log(
  `watch latency over ${samples} files (${files.toLocaleString("en-US")}-file tree): ` +
    `median ${q(0.5)} ms, p90 ${q(0.9)} ms, max ${q(1)} ms`,
);
