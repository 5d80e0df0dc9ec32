/**
 * Watch-mode latency: median time from a file being closed in the source to it being in place
 * in the replica, with `foldersync --watch` running. Usage: deno task bench:watch [samples]
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";

const samples = Number(Deno.args[0] ?? 20);
const main = fileURLToPath(new URL("../main.ts", import.meta.url));
const work = await Deno.makeTempDir({ prefix: "foldersync-latency-" });
const src = join(work, "src");
const dst = join(work, "dst");
await Deno.mkdir(src);
for (let i = 0; i < 1000; i++) await Deno.writeTextFile(join(src, `existing${i}.txt`), `${i}`);
const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "--allow-read", "--allow-write", main, src, dst, "--watch", "-q"],
  stdout: "null",
  stderr: "null",
}).spawn();
const exists = (p: string) => Deno.lstat(p).then(() => true, () => false);
while (!(await exists(join(dst, "existing999.txt")))) await new Promise((r) => setTimeout(r, 20));

const latencies: number[] = [];
for (let i = 0; i < samples; i++) {
  const name = `sample${i}.txt`;
  const started = performance.now();
  await Deno.writeTextFile(join(src, name), `sample ${i}`);
  while (!(await exists(join(dst, name)))) await new Promise((r) => setTimeout(r, 5));
  latencies.push(performance.now() - started);
  await new Promise((r) => setTimeout(r, 300));
}
child.kill("SIGTERM");
await child.status;
await Deno.remove(work, { recursive: true });
latencies.sort((a, b) => a - b);
const q = (f: number) => latencies[Math.min(latencies.length - 1, Math.floor(f * latencies.length))]!.toFixed(0);
console.log(
  `watch latency over ${samples} files (1,000-file tree): median ${q(0.5)} ms, p90 ${q(0.9)} ms, max ${q(1)} ms`,
);
