import assert from "node:assert/strict";
import { join } from "node:path";
import type { CopyJob, CopyResult } from "../lib/backend/local/copy_worker.ts";
import { runInWorkers } from "../lib/pool.ts";
import { getHasher, hashFileSync } from "../lib/content/hash.ts";
import type { HashJob, HashResult } from "../lib/content/hash_worker.ts";

const COPY_WORKER = new URL("../lib/backend/local/copy_worker.ts", import.meta.url);
import { existsSync } from "node:fs";
import { POSIX, tempDir, waitFor } from "./helpers.ts";

Deno.test("runInWorkers() installs files with mode and mtime, and reports failures per file", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await Deno.mkdir(src);
  await Deno.mkdir(dst);
  const jobs: CopyJob[] = [];
  for (let i = 0; i < 150; i++) {
    const path = join(src, `f${i}`);
    await Deno.writeTextFile(path, `content ${i}`);
    const when = new Date(2001, 0, 1 + (i % 28));
    await Deno.utime(path, when, when);
    const info = await Deno.stat(path);
    jobs.push({
      src: path,
      dst: join(dst, `f${i}`),
      tmp: join(dst, `.t${i}`),
      size: info.size,
      mode: i % 3 === 0 ? 0o666 : i % 3 === 1 ? 0o2775 : 0o640, // not narrowed by the umask
      mtimeMs: info.mtime!.getTime(),
    });
  }
  // A large file onto a temp name that is a link: O_EXCL refuses it rather than write through it.
  const victim = join(tmp.path, "victim");
  await Deno.writeTextFile(victim, "must survive");
  await Deno.writeFile(join(src, "large"), new Uint8Array(3 << 20).fill(1));
  await Deno.symlink(victim, join(dst, ".t5"));
  const large = await Deno.stat(join(src, "large"));
  jobs[5] = { ...jobs[5]!, src: join(src, "large"), size: large.size, mtimeMs: large.mtime!.getTime() };
  // A sparse 8 MiB file (4 bytes of data) keeps its holes.
  await Deno.writeTextFile(join(src, "sparse"), "data");
  await Deno.truncate(join(src, "sparse"), 8 << 20);
  const sparse = await Deno.stat(join(src, "sparse"));
  jobs[6] = { ...jobs[6]!, src: join(src, "sparse"), size: sparse.size, mtimeMs: sparse.mtime!.getTime() };
  jobs[7] = { ...jobs[7]!, src: join(src, "missing") };
  jobs[9] = { ...jobs[9]!, size: 999 }; // the source no longer matches its scan
  const results = new Map<number, CopyResult>();
  await runInWorkers<CopyJob, CopyResult>(COPY_WORKER, jobs.length, (i) => jobs[i]!, {
    workers: 2,
    onResult: (i, r) => results.set(i, r),
  });
  assert.equal(results.size, jobs.length);
  assert.match(results.get(5)!.error ?? "", /AlreadyExists/);
  assert.equal(await Deno.readTextFile(victim), "must survive");
  await Deno.remove(join(dst, ".t5"));
  assert.match(results.get(7)!.error ?? "", /NotFound/);
  assert.equal(results.get(9)!.changed, true);
  for (const [i, job] of jobs.entries()) {
    if (i === 5 || i === 7 || i === 9) continue;
    assert.ok(results.get(i)!.ok, `job ${i}`);
    const info = await Deno.stat(job.dst);
    if (i === 6) {
      assert.equal(info.size, 8 << 20);
      if (POSIX) assert.ok(info.blocks! * 512 <= 64 << 10, `${info.blocks} blocks: the holes were filled`);
      continue;
    }
    assert.equal(info.mtime?.getTime(), new Date(2001, 0, 1 + (i % 28)).getTime());
    if (POSIX) assert.equal(info.mode! & 0o7777, job.mode);
    assert.equal(await Deno.readTextFile(job.dst), `content ${i}`);
  }
  const names = [...Deno.readDirSync(dst)].map((e) => e.name);
  assert.equal(names.length, jobs.length - 3, "no temp file is left, not even for failures");
});

Deno.test("runInWorkers() hands out no more batches once aborted", async () => {
  await using tmp = await tempDir();
  await Deno.writeTextFile(join(tmp.path, "s"), "x");
  const mtimeMs = (await Deno.stat(join(tmp.path, "s"))).mtime!.getTime();
  const jobs: CopyJob[] = Array.from({ length: 1000 }, (_, i) => ({
    src: join(tmp.path, "s"),
    dst: join(tmp.path, `d${i}`),
    tmp: join(tmp.path, `.t${i}`),
    size: 1,
    mode: 0o644,
    mtimeMs,
  }));
  const controller = new AbortController();
  controller.abort();
  let attempted = 0;
  await runInWorkers(COPY_WORKER, jobs.length, (i) => jobs[i]!, {
    workers: 2,
    signal: controller.signal,
    onResult: () => attempted++,
  });
  assert.equal(attempted, 0);
});

Deno.test("runInWorkers() on abort terminates busy workers at once and reports the jobs they held", async () => {
  await using tmp = await tempDir();
  // Jobs are marker paths; each batch holds one job (its weight fills a batch), and each worker
  // holds two batches: jobs 0 to 3 are in flight, 4 to 9 never handed out.
  const jobs = Array.from({ length: 10 }, (_, i) => join(tmp.path, `started${i}`));
  const controller = new AbortController();
  const results: number[] = [];
  const unfinished: Array<[number, string]> = [];
  const run = runInWorkers<string, unknown>(
    new URL("./fixtures/stuck_worker.ts", import.meta.url),
    jobs.length,
    (i) => jobs[i]!,
    {
      workers: 2,
      signal: controller.signal,
      weight: () => 16 << 20,
      onResult: (i) => results.push(i),
      onUnfinished: (i, job) => unfinished.push([i, job]),
    },
  );
  await waitFor(() => [0, 2].every((i) => existsSync(jobs[i]!)), 20_000, "both workers to be busy");
  const stopped = performance.now();
  controller.abort();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    run.then(() => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 3000)),
  ]);
  clearTimeout(timer);
  assert.ok(ended, "runInWorkers() still waits for its busy workers 3 s after the abort");
  assert.ok(performance.now() - stopped < 1000, "stopped within a second");
  assert.deepEqual(results, []);
  assert.deepEqual(unfinished.sort((a, b) => a[0] - b[0]), [0, 1, 2, 3].map((i) => [i, jobs[i]!]));
});

Deno.test("runInWorkers() pairs each reply with its own batch when replies come back out of order", async () => {
  const jobs = Array.from({ length: 300 }, (_, i) => i);
  const seen = new Map<number, number>();
  await runInWorkers<number, number>(new URL("./fixtures/echo_worker.ts", import.meta.url), jobs.length, (i) => i, {
    workers: 1,
    onResult: (i, result) => seen.set(i, result),
  });
  assert.equal(seen.size, jobs.length);
  for (const i of jobs) assert.equal(seen.get(i), i * 2, `job ${i}`);
});

Deno.test("runInWorkers() with the hash worker gives the digests hashing in this thread gives", async () => {
  await using tmp = await tempDir();
  const jobs: HashJob[] = [];
  for (let i = 0; i < 100; i++) {
    const path = join(tmp.path, `f${i}`);
    const size = i === 99 ? 3 << 20 : 100 + i; // one file large enough to be streamed
    await Deno.writeFile(path, new Uint8Array(size).fill(i));
    jobs.push({ path, size, hash: i % 2 ? "xxh3" : "md5" });
  }
  jobs.push({ path: join(tmp.path, "missing"), size: 1, hash: "xxh3" });
  const results = new Map<number, HashResult>();
  await runInWorkers<HashJob, HashResult>(
    new URL("../lib/content/hash_worker.ts", import.meta.url),
    jobs.length,
    (i) => jobs[i]!,
    { workers: 2, onResult: (i, r) => results.set(i, r) },
  );
  assert.equal(results.size, jobs.length);
  for (const [i, job] of jobs.slice(0, 100).entries()) {
    assert.equal(results.get(i)!.digest, hashFileSync(await getHasher(job.hash), job.path, job.size), `job ${i}`);
  }
  assert.match(results.get(100)!.error ?? "", /NotFound/);
});
