import assert from "node:assert/strict";
import { join } from "node:path";
import { createProgress, emptyCounters, formatEta, progressLine } from "../lib/run/progress.ts";
import { type ProgressCounters } from "../lib/model/progress.ts";
import { logger, setupLogging } from "../lib/log.ts";
import { createApplier } from "../lib/engine/apply.ts";
import { denoFs, type FsOps, LocalBackend } from "../lib/backend/local/local_backend.ts";
import { runInWorkers } from "../lib/pool.ts";
import type { CopyJob, CopyResult } from "../lib/backend/local/copy_worker.ts";
import { runLocal, tempDir, writeTree } from "./helpers.ts";

const MiB = 1 << 20;

function counters(fields: Partial<ProgressCounters>): ProgressCounters {
  return { ...emptyCounters(), ...fields };
}

Deno.test("progressLine() formats the counters", async (t) => {
  await t.step("totals known so far carry a + and give no ETA", () => {
    const line = progressLine(
      counters({
        scanned: 12345,
        filesTotal: 5000,
        bytesTotal: 4 * 1024 * MiB,
        filesDone: 1234,
        bytesDone: 1024 * MiB,
      }),
      20_000,
    );
    assert.equal(line, "12,345 scanned, 1,234/5,000+ files, 1.0 GiB/4.0 GiB+, 51 MiB/s");
  });
  await t.step("final totals give a percentage and an ETA from the average rate", () => {
    const line = progressLine(
      counters({
        scanned: 100,
        filesTotal: 10,
        bytesTotal: 400 * MiB,
        filesDone: 5,
        bytesDone: 100 * MiB,
        final: true,
      }),
      10_000,
    );
    // 10 MiB/s, 300 MiB left: 30 s by bytes; 5 files in 10 s, 5 left: 10 s by files.
    assert.equal(line, "100 scanned, 5/10 files, 100 MiB/400 MiB (25%), 10 MiB/s, ETA 30s");
  });
  await t.step("many small files: the ETA follows the files left, not the few bytes", () => {
    const line = progressLine(
      counters({
        scanned: 50000,
        filesTotal: 50000,
        bytesTotal: 50000,
        filesDone: 10000,
        bytesDone: 40000,
        final: true,
      }),
      2_000,
    );
    // 5,000 files a second, 40,000 left: 8 s (the bytes alone would say 0.5 s).
    assert.match(line, /, ETA 8s$/);
  });
  await t.step("in-file bytes move the line before a file ends", () => {
    const line = progressLine(counters({ filesTotal: 1, bytesTotal: 2 * MiB, bytesDone: MiB, final: true }), 1000);
    assert.equal(line, "0 scanned, 0/1 files, 1.0 MiB/2.0 MiB (50%), 1.0 MiB/s, ETA 1s");
  });
  await t.step("a dry run says what would be copied", () => {
    assert.equal(progressLine(counters({ applying: false, scanned: 7 }), 500), "7 scanned");
    assert.equal(
      progressLine(counters({ applying: false, scanned: 7, filesTotal: 3, bytesTotal: 3 * MiB }), 500),
      "7 scanned, 3+ files (3.0 MiB+) to copy",
    );
  });
  await t.step("nothing done yet: no rate division by zero, no ETA", () => {
    assert.equal(progressLine(counters({ filesTotal: 2, final: true }), 0), "0 scanned, 0/2 files, 0 B/0 B");
  });
});

Deno.test("formatEta() shortens durations", () => {
  assert.equal(formatEta(0), "0s");
  assert.equal(formatEta(41_200), "42s");
  assert.equal(formatEta(185_000), "3m 05s");
  assert.equal(formatEta(3_720_000), "1h 02m");
});

Deno.test("createProgress() draws after its delay, gives way to log lines and clears at the end", async () => {
  const written: string[] = [];
  const consoleLines: string[] = [];
  await using _logging = await setupLogging({
    console: { out: (line) => consoleLines.push(line), err: (line) => consoleLines.push(line) },
  });
  const progress = createProgress({
    delayMs: 0,
    intervalMs: 10,
    write: (text) => written.push(text),
    columns: () => 30,
  });
  progress.begin(true);
  assert.equal(written.length, 1, "drawn at once with no delay");
  // deno-lint-ignore no-control-regex
  assert.match(written[0]!, /^\r0 scanned, 0\/0\+ files.*\x1b\[K$/);
  assert.ok(written[0]!.length <= 1 + 29 + 3, "cut to the terminal width");
  progress.counters.scanned = 3;
  Atomics.add(progress.inFlight, 0, 5n);
  logger.info("{text}", { text: "a log line" });
  assert.equal(written.at(-1), "\r\x1b[K", "cleared before the log line");
  assert.equal(consoleLines.length, 1);
  const before = written.length;
  while (written.length === before) await new Promise((r) => setTimeout(r, 5));
  assert.match(written.at(-1)!, /^\r3 scanned, 0\/0\+ files, 5 B\//, "redrawn with the in-flight bytes");
  progress.end();
  assert.equal(written.at(-1), "\r\x1b[K", "cleared at the end");
  const after = written.length;
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(written.length, after, "not drawn after the end");
  logger.info("{text}", { text: "after the run" });
  assert.equal(written.length, after, "nothing to clear after the end");
  progress.begin(false); // the next run of an --interval loop starts from zero
  assert.deepEqual({ ...progress.counters }, { ...emptyCounters(), applying: false });
  assert.equal(Atomics.load(progress.inFlight, 0), 0n);
  progress.end();
});

Deno.test("createProgress() shows nothing for a run shorter than its delay", async () => {
  const written: string[] = [];
  const progress = createProgress({ delayMs: 60_000, write: (text) => written.push(text) });
  progress.begin(true);
  await new Promise((r) => setTimeout(r, 20));
  progress.end();
  assert.deepEqual(written, []);
});

Deno.test("copy workers add each chunk of a large file to the shared progress slot", async () => {
  await using dir = await tempDir();
  const src = join(dir.path, "big");
  await Deno.writeFile(src, new Uint8Array(3 * MiB + 5).fill(7));
  const slot = new BigInt64Array(new SharedArrayBuffer(8));
  const results: CopyResult[] = [];
  const job: CopyJob = {
    src,
    dst: join(dir.path, "copy"),
    tmp: join(dir.path, "tmp"),
    size: 3 * MiB + 5,
    mode: 0o644,
    mtimeMs: (await Deno.stat(src)).mtime!.getTime(),
  };
  await runInWorkers<CopyJob, CopyResult>(
    new URL("../lib/backend/local/copy_worker.ts", import.meta.url),
    1,
    () => job,
    { workers: 1, init: { progress: slot }, onResult: (_i, r) => results.push(r) },
  );
  assert.equal(results[0]?.ok, true);
  assert.equal(results[0]?.streamed, 3 * MiB + 5, "the worker says what it added");
  assert.equal(Atomics.load(slot, 0), BigInt(3 * MiB + 5), "the shared slot holds the chunks");
});

Deno.test("the applier reports a large file's bytes while it is copied, then takes them back", async () => {
  await using dir = await tempDir();
  const source = join(dir.path, "src");
  const replica = join(dir.path, "dst");
  await writeTree(source, { "big.bin": new Uint8Array(4 * MiB + 1).fill(1) });
  await Deno.mkdir(replica);
  const slot = new BigInt64Array(new SharedArrayBuffer(8));
  const seen: number[] = [];
  const fs: FsOps = {
    ...denoFs,
    copyFile: (from, to, size, signal, onProgress) =>
      denoFs.copyFile(from, to, size, signal, (bytes) => {
        onProgress?.(bytes);
        seen.push(Number(Atomics.load(slot, 0)));
      }),
  };
  const info = await Deno.stat(join(source, "big.bin"));
  const applier = createApplier(
    new LocalBackend(source, { readOnly: true }),
    new LocalBackend(replica, { fs, progress: slot }),
  );
  await applier.apply({
    mkdirs: [],
    transfers: [{ op: "copy", path: "big.bin", size: info.size, mode: 0o644, mtimeMs: info.mtime!.getTime() }],
    removes: [],
    leftovers: [],
    dirAttrs: [],
    skipped: [],
    bytes: info.size,
  });
  assert.equal(applier.stats.copied, 1);
  assert.deepEqual(seen, [MiB, 2 * MiB, 3 * MiB, 4 * MiB, 4 * MiB + 1]);
  assert.equal(Atomics.load(slot, 0), 0n, "a finished copy takes its bytes back");
});

Deno.test("runOnce() feeds its progress sink: scanned, planned and done", async () => {
  await using dir = await tempDir();
  const source = join(dir.path, "src");
  const replica = join(dir.path, "dst");
  await writeTree(source, { a: "aaa", sub: { b: "bb", c: "c" } });
  await using _logging = await setupLogging({ console: { out: () => {}, err: () => {} } });
  const progress = createProgress({ delayMs: 60_000, write: () => {} });
  const { stats } = await runLocal({ source, replica }, { progress });
  assert.equal(stats.copied, 3);
  assert.deepEqual(progress.counters, {
    scanned: 4,
    filesTotal: 3,
    bytesTotal: 6,
    final: true,
    filesDone: 3,
    bytesDone: 6,
    applying: true,
  });
});

Deno.test("parseCommand() reads --progress and --no-progress", async () => {
  const { parseCommand } = await import("../lib/cli/cli.ts");
  const progressOf = (...flags: string[]) => {
    const command = parseCommand(["src", "dst", ...flags]);
    assert.equal(command.kind, "sync");
    return command.kind === "sync" ? command.options.progress : "?";
  };
  assert.equal(progressOf(), undefined, "undecided: main.ts asks whether stderr is a terminal");
  assert.equal(progressOf("--progress"), true);
  assert.equal(progressOf("--no-progress"), false);
  assert.throws(() => parseCommand(["src", "dst", "--progress", "--no-progress"]), /Choose one of/);
  const verify = parseCommand(["verify", "src", "dst", "--no-progress"]);
  assert.equal(verify.kind === "verify" && verify.options.progress, false);
});
