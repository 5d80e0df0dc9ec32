import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertMirror,
  mirrorDiff,
  POSIX,
  runMain,
  snapshot,
  startMain,
  tempDir,
  waitFor,
  writeTree,
} from "./helpers.ts";
import { longTimeout, MAX_TIMER_MS } from "../lib/run/timer.ts";
import { sleep } from "../lib/run/schedule.ts";
import { trackActivity } from "../lib/run/activity.ts";

const start = startMain;

const mirrored = (src: string, dst: string) => async () => (await mirrorDiff(src, dst)) === "";
const noTemps = (dir: string) => [...Deno.readDirSync(dir)].every((e) => !e.name.endsWith(".tmp"));

Deno.test("--interval syncs again and again, and SIGTERM stops it cleanly", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const log = join(tmp.path, "sync.log");
  await writeTree(src, { "a.txt": "a" });
  const run = start([src, dst, "-i", "1s", "-l", log]);
  await waitFor(mirrored(src, dst), 20_000, "first sync");
  await Deno.writeTextFile(join(src, "b.txt"), "b");
  await Deno.mkdir(join(src, "sub"));
  await Deno.writeTextFile(join(src, "sub", "c.txt"), "c");
  await waitFor(mirrored(src, dst), 20_000, "periodic propagation");
  await Deno.remove(join(src, "a.txt"));
  await waitFor(mirrored(src, dst), 20_000, "periodic removal");
  const { status, ms } = await run.stop("SIGTERM");
  assert.equal(status.code, 0, run.err.text());
  assert.ok(ms < 2000, `stopped in ${ms} ms`);
  assert.match(run.out.text(), /Stopped/);
  assert.match(await Deno.readTextFile(log), /INFO {2}Stopped/);
  assert.ok((await Deno.readTextFile(log)).split("Sync done").length > 3, "every run's summary is logged");
  assert.ok(noTemps(dst));
  await assertMirror(src, dst);
});

Deno.test("--watch propagates creates, edits, renames, deletions and new nested directories", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a", old: { "x.txt": "x" } });
  const run = start([src, dst, "--watch"]);
  try {
    await waitFor(mirrored(src, dst), 20_000, "initial sync");
    await Deno.writeTextFile(join(src, "new.txt"), "created");
    await waitFor(mirrored(src, dst), 20_000, "create");
    await Deno.writeTextFile(join(src, "a.txt"), "edited, longer");
    await waitFor(mirrored(src, dst), 20_000, "edit");
    await Deno.rename(join(src, "old"), join(src, "renamed"));
    await waitFor(mirrored(src, dst), 20_000, "rename");
    await Deno.remove(join(src, "new.txt"));
    await waitFor(mirrored(src, dst), 20_000, "delete");
    await Deno.mkdir(join(src, "n1", "n2", "n3"), { recursive: true });
    await Deno.writeTextFile(join(src, "n1", "n2", "n3", "deep.txt"), "deep");
    await Deno.writeTextFile(join(src, "n1", "top.txt"), "top");
    await waitFor(mirrored(src, dst), 20_000, "nested new directories filled after creation");
  } finally {
    const { status } = await run.stop("SIGINT");
    assert.equal(status.code, 0, run.err.text());
  }
  assert.match(run.out.text(), /Stopped/);
  await assertMirror(src, dst);
});

Deno.test("--watch brings a 5,000-file burst across without thousands of scans", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await Deno.mkdir(src);
  const run = start([src, dst, "-w"]);
  try {
    await waitFor(() => run.out.text().includes("Sync done"), 20_000, "initial sync");
    await Deno.mkdir(join(src, "burst"));
    for (let i = 0; i < 5000; i++) await Deno.writeTextFile(join(src, "burst", `f${i}.txt`), `${i}`);
    await waitFor(mirrored(src, dst), 60_000, "5,000 creates");
    await Deno.remove(join(src, "burst"), { recursive: true });
    await Deno.writeTextFile(join(src, "keep.txt"), "k");
    await waitFor(mirrored(src, dst), 60_000, "5,000 deletions");
  } finally {
    await run.stop();
  }
  const runs = run.out.text().split("Sync done").length - 1;
  assert.ok(runs < 100, `${runs} full scans for 10,000 events`);
  await assertMirror(src, dst);
});

Deno.test("a second foldersync into the same replica exits 4; a killed one leaves no stale lock", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const other = join(tmp.path, "other");
  await writeTree(src, { "a.txt": "a" });
  await writeTree(other, { "b.txt": "b" });
  const first = start([src, dst, "-i", "1h"]);
  await waitFor(mirrored(src, dst), 20_000, "first instance's sync");
  const before = await snapshot(dst);
  const second = await runMain([other, dst]);
  assert.equal(second.code, 4, second.stderr);
  assert.match(second.stderr, /Another foldersync is already syncing into the replica/);
  assert.deepEqual(await snapshot(dst), before, "nothing touched");
  assert.equal(await mirrorDiff(src, dst), "", "the lock is invisible to the mirror check");

  await first.stop("SIGKILL");
  const third = await runMain([other, dst]);
  assert.equal(third.code, 0, third.stderr);
  await assertMirror(other, dst);
});

Deno.test("seed command lines run the interval loop and log to the file", { ignore: !POSIX }, async (t) => {
  for (const [name, order] of [["<interval> <log>", "interval-first"], ["<log> <interval>", "log-first"]] as const) {
    await t.step(name, async () => {
      await using tmp = await tempDir();
      const src = join(tmp.path, "src");
      const dst = join(tmp.path, "dst");
      const log = join(tmp.path, "seed.log");
      await writeTree(src, { "a.txt": "a" });
      const run = start(order === "interval-first" ? [src, dst, "1h", log] : [src, dst, log, "1h"]);
      await waitFor(async () => (await Deno.readTextFile(log).catch(() => "")).includes("Sync done"), 20_000, "log");
      const { status } = await run.stop();
      assert.equal(status.code, 0);
      assert.match(run.out.text(), /Syncing every 1h;/);
      assert.match(await Deno.readTextFile(log), /copy a\.txt/);
      await assertMirror(src, dst);
    });
  }
});

Deno.test("--log-max-size rotates the log file and --log-keep bounds the files", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const log = join(tmp.path, "rot.log");
  await Deno.mkdir(src);
  for (let i = 0; i < 300; i++) await Deno.writeTextFile(join(src, `file-with-a-longish-name-${i}.txt`), "x");
  const run = await runMain([src, dst, "-l", log, "--log-max-size", "4K", "--log-keep", "3"]);
  assert.equal(run.code, 0, run.stderr);
  const logs = [...Deno.readDirSync(tmp.path)].map((e) => e.name).filter((n) => n.startsWith("rot.log")).sort();
  assert.deepEqual(logs, ["rot.log", "rot.log.1", "rot.log.2", "rot.log.3"], "the current file and 3 rotated");
  for (const name of logs) assert.ok((await Deno.stat(join(tmp.path, name))).size <= 8192);
  await assertMirror(src, dst);
});

/** A timer recorder: nothing fires until the test says so. */
function fakeTimers() {
  const armed = new Map<number, { fn: () => void; ms: number }>();
  const delays: number[] = [];
  let next = 1;
  return {
    delays,
    armed,
    setTimeout(fn: () => void, ms: number) {
      delays.push(ms);
      armed.set(next, { fn, ms });
      return next++;
    },
    clearTimeout(id: unknown) {
      armed.delete(id as number);
    },
    /** Fires the one armed timer; false when none is. */
    fire(): boolean {
      const [id, timer] = [...armed][0] ?? [];
      if (id === undefined || !timer) return false;
      armed.delete(id);
      timer.fn();
      return true;
    },
  };
}

Deno.test("longTimeout() arms no timer over 2^31 - 1 ms, fires once after the whole wait, and cancels", async (t) => {
  await t.step("60 days: two longest steps, then the rest", () => {
    const timers = fakeTimers();
    let fired = 0;
    longTimeout(() => fired++, 60 * 86_400_000, timers);
    for (let step = 1; timers.fire(); step++) assert.equal(fired, step === 3 ? 1 : 0, `after step ${step}`);
    assert.deepEqual(timers.delays, [MAX_TIMER_MS, MAX_TIMER_MS, 60 * 86_400_000 - 2 * MAX_TIMER_MS]);
    assert.equal(fired, 1);
  });
  await t.step("a short wait is one timer; a negative or NaN one is 0 ms", () => {
    for (const [ms, expected] of [[1500, 1500], [MAX_TIMER_MS, MAX_TIMER_MS], [-5, 0], [NaN, 0]]) {
      const timers = fakeTimers();
      let fired = 0;
      longTimeout(() => fired++, ms!, timers);
      assert.deepEqual(timers.delays, [expected]);
      timers.fire();
      assert.equal(fired, 1);
    }
  });
  await t.step("cancelled half-way, it never fires and leaves no timer armed", () => {
    const timers = fakeTimers();
    let fired = 0;
    const cancel = longTimeout(() => fired++, 30 * 86_400_000, timers);
    timers.fire();
    cancel();
    assert.equal(timers.armed.size, 0);
    assert.equal(fired, 0);
  });
  await t.step("an infinite wait keeps one longest timer armed", () => {
    const timers = fakeTimers();
    longTimeout(() => assert.fail("fired"), Infinity, timers);
    for (let i = 0; i < 5; i++) timers.fire();
    assert.deepEqual(timers.delays, Array(6).fill(MAX_TIMER_MS));
    assert.equal(timers.armed.size, 1);
  });
  await t.step("sleep() of 25 days waits in steps and ends early on abort", async () => {
    const timers = fakeTimers();
    const controller = new AbortController();
    let done = false;
    const slept = sleep(25 * 86_400_000, controller.signal, timers).then(() => done = true);
    timers.fire();
    await Promise.resolve();
    assert.equal(done, false, "still waiting after the first step");
    assert.ok(timers.delays.every((ms) => ms <= MAX_TIMER_MS), `${timers.delays}`);
    controller.abort();
    await slept;
    assert.equal(timers.armed.size, 0, "the pending step is cleared");
  });
});

Deno.test("main.ts -i 25d and -w -i 25d run once, say the interval as 25d, and warn of no timer overflow", {
  ignore: !POSIX,
}, async (t) => {
  for (const mode of [["-i", "25d"], ["-w", "-i", "25d"]]) {
    await t.step(mode.join(" "), async () => {
      await using tmp = await tempDir();
      const src = join(tmp.path, "src");
      const dst = join(tmp.path, "dst");
      await writeTree(src, { "a.txt": "a" });
      const run = start([src, dst, ...mode]);
      try {
        await waitFor(() => run.out.text().includes("Sync done"), 20_000, "first sync");
        // A busy loop runs hundreds of times a second: two seconds of quiet prove there is none.
        await new Promise((r) => setTimeout(r, 2000));
      } finally {
        const { status } = await run.stop("SIGTERM");
        assert.equal(status.code, 0, run.err.text());
      }
      assert.equal(run.out.text().split("Sync done").length - 1, 1, run.out.text());
      assert.doesNotMatch(run.err.text(), /TimeoutOverflowWarning|Warning/);
      assert.match(run.out.text(), mode[0] === "-w" ? /full rescan every 25d\)/ : /Syncing every 25d;/);
      await assertMirror(src, dst);
    });
  }
});

Deno.test("--watch follows a source folder deleted, or moved away, and made again, and says so in one line", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a", sub: { "b.txt": "b" } });
  const run = start([src, dst, "--watch"]);
  try {
    await waitFor(mirrored(src, dst), 20_000, "initial sync");
    // What deploy scripts do: the folder itself goes, and a new one takes its name.
    const replacements = [
      () => Deno.remove(src, { recursive: true }),
      () => Deno.rename(src, join(tmp.path, "src.old")),
    ];
    for (const [round, replace] of replacements.entries()) {
      await replace();
      await Deno.mkdir(src);
      await Deno.writeTextFile(join(src, "first.txt"), `${round}`);
      await waitFor(mirrored(src, dst), 20_000, `round ${round}: the new folder's first file`);
      // Files written later arrive by the watcher's events alone (the rescan is 5 minutes away).
      for (let i = 0; i < 3; i++) {
        await Deno.writeTextFile(join(src, `later-${i}.txt`), `${round}.${i}`);
        await waitFor(mirrored(src, dst), 10_000, `round ${round}: later file ${i}`);
      }
    }
  } finally {
    const { status } = await run.stop("SIGTERM");
    assert.equal(status.code, 0, run.err.text());
  }
  const said = (run.out.text() + run.err.text()).split("\n").filter((l) =>
    /Source folder (was replaced|is back)/.test(l)
  );
  assert.equal(said.length, 2, run.out.text() + run.err.text());
  assert.doesNotMatch(run.out.text() + run.err.text(), /NotFound|os error/);
  await assertMirror(src, dst);
});

Deno.test("a loop says once that its source is missing, keeps waiting, and resumes when it is back", {
  ignore: !POSIX,
}, async (t) => {
  for (const mode of [["--watch"], ["-i", "1s"]]) {
    await t.step(mode.join(" "), async () => {
      await using tmp = await tempDir();
      const src = join(tmp.path, "src");
      const dst = join(tmp.path, "dst");
      const log = join(tmp.path, "sync.log");
      await writeTree(src, { "a.txt": "a" });
      const run = start([src, dst, ...mode, "-l", log]);
      const text = () => run.out.text() + run.err.text();
      try {
        await waitFor(mirrored(src, dst), 20_000, "initial sync");
        await Deno.remove(src, { recursive: true });
        await waitFor(() => text().includes("Source folder is missing"), 20_000, "the missing line");
        // Several polls (watch) and runs (interval) while it is gone.
        await new Promise((r) => setTimeout(r, 3000));
        await writeTree(src, { "a.txt": "a", "back.txt": "back" });
        await waitFor(mirrored(src, dst), 20_000, "sync after the source is back");
      } finally {
        const { status } = await run.stop("SIGTERM");
        assert.equal(status.code, 0, run.err.text());
      }
      const lines = text().split("\n");
      assert.deepEqual(lines.filter((l) => l.includes("Source folder is missing")).length, 1, text());
      assert.match(run.err.text(), new RegExp(`ERROR Source folder is missing: '${src}'`));
      assert.equal(lines.filter((l) => l.includes(`Source folder is back: '${src}'`)).length, 1, text());
      assert.doesNotMatch(text(), /Sync failed|NotFound|os error/);
      assert.match(await Deno.readTextFile(log), /Source folder is missing/);
      await assertMirror(src, dst);
    });
  }
});

Deno.test("trackActivity() says files are in flight only while a run has copies not done", () => {
  const activity = trackActivity();
  assert.equal(activity.filesInFlight(), false, "before any run");
  activity.begin(true);
  assert.equal(activity.filesInFlight(), false, "walking, nothing planned yet");
  Object.assign(activity.counters, { filesTotal: 3, filesDone: 1 });
  assert.equal(activity.filesInFlight(), true);
  activity.counters.filesDone = 3;
  assert.equal(activity.filesInFlight(), false, "every planned copy done");
  Atomics.store(activity.inFlight, 0, 4096n);
  assert.equal(activity.filesInFlight(), true, "bytes of a large file in flight");
  activity.end();
  assert.equal(activity.filesInFlight(), false, "between runs");
  activity.begin(false);
  Object.assign(activity.counters, { filesTotal: 3, filesDone: 0 });
  assert.equal(activity.filesInFlight(), false, "a dry run copies nothing");
});

Deno.test("main.ts says it aborts the files in flight only when a stop finds copies under way", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const files: Record<string, string> = {};
  for (let i = 0; i < 4000; i++) files[`f${i}.txt`] = `${i}`;
  await writeTree(src, { many: files });
  const run = start([src, dst, "-j", "1"]);
  await waitFor(() => /INFO {2}copy /.test(run.out.text()), 20_000, "the first copy");
  const { status } = await run.stop("SIGINT");
  assert.match(run.out.text(), /INFO {2}Stopping: aborting the files in flight\n/);
  assert.equal(status.code, 130, run.err.text());
});

Deno.test("--watch under grants of its two folders alone watches, and follows a replaced source", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "a.txt": "a" });
  // Not even read access to foldersync's own folder: the watcher's worker needs none.
  const run = start([src, dst, "--watch"], [`--allow-read=${src},${dst}`, `--allow-write=${dst}`]);
  try {
    await waitFor(mirrored(src, dst), 20_000, "initial sync");
    await Deno.writeTextFile(join(src, "b.txt"), "b");
    await waitFor(mirrored(src, dst), 10_000, "an event");
    await Deno.remove(src, { recursive: true });
    await Deno.mkdir(src);
    await Deno.writeTextFile(join(src, "c.txt"), "c");
    await waitFor(mirrored(src, dst), 20_000, "the new folder's first file");
    await Deno.writeTextFile(join(src, "d.txt"), "d");
    await waitFor(mirrored(src, dst), 10_000, "an event in the new folder");
  } finally {
    const { status } = await run.stop("SIGTERM");
    assert.equal(status.code, 0, run.err.text());
  }
  assert.doesNotMatch(run.out.text() + run.err.text(), /Cannot watch|Requires/);
  await assertMirror(src, dst);
});
