/**
 * Micro-benchmark of lib/backend/local/copy_file.ts: chunk sizes, sync and async, holes on and off, against
 * Deno.copyFileSync (a kernel-side copy), on one file. Prints the median of each and its ratio
 * to Deno.copyFileSync.
 *
 * Usage: deno run --allow-read --allow-write bench/copy_file_bench.ts [--dir DIR] [--mib N]
 * [--reps N] [--sparse] (with --sparse, the file is a hole with 4 KiB of data at its start)
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { copyFile, copyFileSync } from "../lib/backend/local/copy_file.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    dir: { type: "string" },
    mib: { type: "string" },
    reps: { type: "string" },
    sparse: { type: "boolean" },
  },
});
const MIB = Number(values.mib ?? 256);
const REPS = Number(values.reps ?? 5);
const dir = await Deno.makeTempDir({ prefix: "copy-file-bench-", ...(values.dir ? { dir: values.dir } : {}) });
const src = join(dir, "src");
{
  using f = Deno.openSync(src, { write: true, create: true });
  if (values.sparse) {
    f.writeSync(new Uint8Array(4096).fill(1));
    f.truncateSync(MIB << 20);
  } else {
    const chunk = new Uint8Array(1 << 20);
    for (let m = 0; m < MIB; m++) {
      crypto.getRandomValues(chunk.subarray(0, 65536));
      chunk.set(chunk.subarray(0, 65536), 65536 * (1 + (m % 15)));
      f.writeSync(chunk);
    }
  }
}

const cases: Array<[string, (to: string) => unknown]> = [
  ["Deno.copyFileSync", (to) => Deno.copyFileSync(src, to)],
  ...[256 << 10, 1 << 20, 4 << 20].flatMap((chunkSize): Array<[string, (to: string) => unknown]> => [
    [`copyFileSync ${chunkSize >> 10} KiB`, (to) => copyFileSync(src, to, { chunkSize, sparse: false })],
    [`copyFileSync ${chunkSize >> 10} KiB, holes`, (to) => copyFileSync(src, to, { chunkSize, sparse: true })],
    [`copyFile ${chunkSize >> 10} KiB`, (to) => copyFile(src, to, { chunkSize, sparse: false })],
    [`copyFile ${chunkSize >> 10} KiB, holes`, (to) => copyFile(src, to, { chunkSize, sparse: true })],
  ]),
];
const times = new Map<string, number[]>();
try {
  for (let rep = 0; rep < REPS; rep++) {
    for (const [name, run] of rep % 2 ? [...cases].reverse() : cases) {
      const to = join(dir, "dst");
      const t0 = performance.now();
      await run(to);
      const ms = performance.now() - t0;
      Deno.removeSync(to);
      times.set(name, [...(times.get(name) ?? []), ms]);
    }
  }
} finally {
  Deno.removeSync(dir, { recursive: true });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(times.get("Deno.copyFileSync")!);
console.log(`${MIB} MiB ${values.sparse ? "sparse" : "random"} file, ${REPS} reps, medians`);
for (const [name, xs] of times) {
  const ms = median(xs);
  console.log(
    `${name.padEnd(32)} ${ms.toFixed(0).padStart(6)} ms  ${(ms / base).toFixed(2)}x  ${
      ((MIB / ms) * 1000 / 1024).toFixed(2)
    } GiB/s`,
  );
}
