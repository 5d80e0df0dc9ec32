import assert from "node:assert/strict";
import { join } from "node:path";
import { formatDuration, parseDuration } from "../lib/model/units.ts";
import { UsageError } from "../lib/model/errors.ts";
import { assertMirror, POSIX, runMain, startMain, tempDir, waitFor, writeTree } from "./helpers.ts";

Deno.test("formatDuration() writes durations as people do, in a form parseDuration() reads back", async (t) => {
  await t.step("intervals: whole units, largest first", () => {
    const cases: [number, string][] = [
      [1000, "1s"],
      [10_000, "10s"],
      [60_000, "1m"],
      [90_000, "1m30s"],
      [3_600_000, "1h"],
      [5_400_000, "1h30m"],
      [216_000_000, "2d12h"],
      [25 * 86_400_000, "25d"],
      [30 * 86_400_000, "30d"],
      [365 * 86_400_000, "365d"],
      [3_723_000, "1h2m3s"],
    ];
    for (const [ms, text] of cases) {
      assert.equal(formatDuration(ms), text, `${ms}`);
      assert.equal(parseDuration(text), ms, text);
    }
  });
  await t.step("run durations: milliseconds under a second, tenths under a minute", () => {
    const cases: [number, string][] = [
      [0, "0 ms"],
      [0.4, "0 ms"],
      [20, "20 ms"],
      [999, "999 ms"],
      [999.6, "1s"],
      [1500, "1.5s"],
      [2412, "2.4s"],
      [59_940, "59.9s"],
      [59_960, "1m"],
      [61_400, "1m1s"],
    ];
    for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, `${ms}`);
  });
});

Deno.test("parseDuration() takes compound durations, as rclone does, and still refuses nonsense", () => {
  const ok: [string, number][] = [
    ["1h30m", 5_400_000],
    ["2d12h", 216_000_000],
    ["1m30s", 90_000],
    ["1h 30m", 5_400_000],
    ["1H30M", 5_400_000],
    ["1hr30min", 5_400_000],
    ["1day12hrs", 129_600_000],
    ["1m500ms", 60_500],
    ["1.5h30m", 7_200_000],
  ];
  for (const [text, ms] of ok) assert.equal(parseDuration(text), ms, text);
  // Not durations at all: a path, a typo, a bare number in a compound.
  for (const text of ["1m30", "30 1m", "1h30x", "1h-30m", "h30m", "", "-"]) {
    assert.equal(parseDuration(text), undefined, text);
  }
  for (const text of ["1m1h", "1h1h", "30s1m", "-1h30m", "0h0m"]) {
    assert.throws(() => parseDuration(text), UsageError, text);
  }
});

Deno.test("main.ts takes -i 1h30m and says it so; a compound with units out of order is exit 2", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a" });
  for (const bad of ["1m1h", "1m30", "1h30x"]) {
    const out = await runMain([src, dst, "-i", bad]);
    assert.equal(out.code, 2, `${bad}: ${out.stderr}`);
    assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
    assert.ok(out.stderr.includes(`'${bad}'`), out.stderr);
  }
  await assert.rejects(Deno.stat(dst), Deno.errors.NotFound, "nothing created");
  const run = startMain([src, dst, "-i", "1h30m"]);
  try {
    await waitFor(() => run.out.text().includes("Sync done"), 20_000, "first sync");
  } finally {
    await run.stop();
  }
  assert.match(run.out.text(), /Syncing every 1h30m;/);
  assert.match(run.out.text(), /Sync done: .* in \d+ ms \(1 source entry\)/);
  await assertMirror(src, dst);
});
