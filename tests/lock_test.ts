import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { LockedError } from "../lib/model/errors.ts";
import { lockFolder, lockReplica } from "../lib/backend/local/lock.ts";
import {
  assertMirror,
  collect,
  MAIN,
  mirrorDiff,
  POSIX,
  runMain,
  snapshot,
  tempDir,
  waitFor,
  writeTree,
} from "./helpers.ts";

/** The grants of `deno task sync` that matter here: the variables that locate the cache folder. */
const WITH_CACHE = ["--allow-read", "--allow-write", "--allow-env=HOME,XDG_CACHE_HOME,LOCALAPPDATA"];

// Deno keeps its own cache under XDG_CACHE_HOME unless told: keep it where it is.
const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" }).output();
const DENO_DIR: string = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir;

/** The environment that puts foldersync's cache folder (and its locks) in `cache`. */
function cacheEnv(cache: string): Record<string, string> {
  return { XDG_CACHE_HOME: cache, DENO_DIR };
}

/** Starts main.ts with `env` added, collecting its output; `stop()` kills it and waits. */
function startWith(args: string[], env: Record<string, string>, permissions = WITH_CACHE) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, MAIN, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  return {
    out,
    err,
    async stop(signal: Deno.Signal = "SIGTERM") {
      child.kill(signal);
      const status = await child.status;
      await Promise.all([out.done, err.done]);
      return status;
    },
  };
}

Deno.test("lockFolder() is locks/ in --cache-dir, else in XDG_CACHE_HOME or ~/.cache, else unknown", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(lockFolder("/var/cache/fs", env({ HOME: "/home/ana" })), join("/var/cache/fs", "locks"));
  if (Deno.build.os === "windows") return;
  assert.equal(lockFolder(undefined, env({ HOME: "/home/ana" })), "/home/ana/.cache/foldersync/locks");
  assert.equal(lockFolder(undefined, env({ HOME: "/h", XDG_CACHE_HOME: "/x" })), "/x/foldersync/locks");
  assert.equal(lockFolder(undefined, env({})), undefined);
});

Deno.test("lockReplica() keys its lock file by the replica's real path", { ignore: !POSIX }, async (t) => {
  await using tmp = await tempDir();
  const replica = join(tmp.path, "dst");
  const lockDir = join(tmp.path, "cache", "locks");
  await Deno.mkdir(replica);
  await Deno.symlink(replica, join(tmp.path, "via-link"));

  await t.step("a replica deleted and made again under a holder is still locked", async () => {
    using _held = await lockReplica(replica, { lockDir });
    await Deno.remove(replica, { recursive: true });
    await Deno.mkdir(replica);
    await assert.rejects(lockReplica(replica, { lockDir }), LockedError);
    // The folder's own lock alone followed the deleted folder: this is what the lock file adds.
    using _folderOnly = await lockReplica(replica);
  });

  await t.step("a symbolic link to the replica and a relative path name the same lock", async () => {
    using _held = await lockReplica(replica, { lockDir });
    await assert.rejects(lockReplica(join(tmp.path, "via-link"), { lockDir }), LockedError);
    await assert.rejects(lockReplica(relative(Deno.cwd(), replica), { lockDir }), LockedError);
  });

  await t.step("released, it can be taken again; the lock file is not in the replica", async () => {
    using _again = await lockReplica(replica, { lockDir });
    assert.deepEqual([...Deno.readDirSync(replica)], []);
    assert.equal([...Deno.readDirSync(lockDir)].filter((e) => e.name.endsWith(".lock")).length, 1);
  });

  await t.step("a lock folder inside the replica is not used (a sync would remove its file)", async () => {
    const inside = join(replica, "cache", "locks");
    using _held = await lockReplica(replica, { lockDir: inside });
    await assert.rejects(Deno.stat(join(replica, "cache")), Deno.errors.NotFound);
  });

  await t.step("a lock folder that cannot be written leaves the folder's own lock", async () => {
    const file = join(tmp.path, "a-file");
    await Deno.writeTextFile(file, "");
    using _held = await lockReplica(replica, { lockDir: join(file, "locks") });
    await assert.rejects(lockReplica(replica), LockedError);
  });
});

Deno.test("main.ts: a replica deleted and made again under a running loop still refuses a second foldersync (exit 4)", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const other = join(tmp.path, "other");
  const dst = join(tmp.path, "dst");
  const env = cacheEnv(join(tmp.path, "cache"));
  await writeTree(src, { "a.txt": "a" });
  await writeTree(other, { "b.txt": "b" });
  const first = startWith([src, dst, "-i", "1h"], env);
  try {
    await waitFor(async () => (await mirrorDiff(src, dst)) === "", 20_000, "the loop's first sync");
    await Deno.remove(dst, { recursive: true });
    await Deno.mkdir(dst);
    await Deno.symlink(dst, join(tmp.path, "link"));
    const before = await snapshot(dst);
    for (
      const [what, replica, cwd] of [["path", dst, tmp.path], ["symlink", join(tmp.path, "link"), tmp.path], [
        "relative path",
        "dst",
        tmp.path,
      ]] as const
    ) {
      const second = await runMain([other, replica], { permissions: WITH_CACHE, env, cwd });
      assert.equal(second.code, 4, `${what}: ${second.stdout}${second.stderr}`);
      assert.match(second.stderr, /Another foldersync is already syncing into the replica/);
      assert.equal(second.stderr.trim().split("\n").length, 1, second.stderr);
    }
    assert.deepEqual(await snapshot(dst), before, "nothing touched");
  } finally {
    await first.stop("SIGKILL");
  }
  // Killed, the holder leaves no stale lock: the lock file is free again.
  const third = await runMain([other, dst], { permissions: WITH_CACHE, env });
  assert.equal(third.code, 0, third.stderr);
  await assertMirror(other, dst);
  assert.equal([...Deno.readDirSync(join(tmp.path, "cache", "foldersync", "locks"))].length, 1);
});

Deno.test("main.ts: a dry run goes ahead while a loop holds the replica, takes no lock and leaves the holder's", {
  ignore: !POSIX,
}, async (t) => {
  for (const [grants, permissions] of [["with the cache folder", WITH_CACHE], ["without", undefined]] as const) {
    await t.step(grants, async () => {
      await using tmp = await tempDir();
      const src = join(tmp.path, "src");
      const other = join(tmp.path, "other");
      const dst = join(tmp.path, "dst");
      const env = cacheEnv(join(tmp.path, "cache"));
      await writeTree(src, { "a.txt": "a" });
      await writeTree(other, { "b.txt": "b" });
      const holder = startWith([src, dst, "-i", "1h"], env, permissions ?? ["--allow-read", "--allow-write"]);
      try {
        await waitFor(async () => (await mirrorDiff(src, dst)) === "", 20_000, "the loop's first sync");
        const before = await snapshot(dst);
        const dry = await runMain([other, dst, "--dry-run"], { env, ...(permissions ? { permissions } : {}) });
        assert.equal(dry.code, 0, dry.stderr);
        assert.match(dry.stdout, /would copy b\.txt|copy b\.txt/);
        assert.match(dry.stdout, /Dry run done/);
        assert.deepEqual(await snapshot(dst), before, "the dry run changed nothing");
        // The holder still holds: a real run is refused.
        const second = await runMain([other, dst], { env, ...(permissions ? { permissions } : {}) });
        assert.equal(second.code, 4, second.stdout + second.stderr);
      } finally {
        const status = await holder.stop();
        assert.equal(status.code, 0, holder.err.text());
      }
      await assertMirror(src, dst);
    });
  }
});

Deno.test("main.ts: a source that holds the cache folder leaves the lock folder out of the replica", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  // A home folder backed up with foldersync's cache folder in it.
  const home = join(tmp.path, "home");
  const dst = join(tmp.path, "dst");
  await writeTree(home, { "notes.txt": "n", ".cache": { "other-app": { "x": "x" } } });
  const run = await runMain([home, dst], { permissions: WITH_CACHE, env: cacheEnv(join(home, ".cache")) });
  assert.equal(run.code, 0, run.stderr);
  assert.equal([...Deno.readDirSync(join(home, ".cache", "foldersync", "locks"))].length, 1, "the lock file");
  await assert.rejects(Deno.lstat(join(dst, ".cache", "foldersync", "locks")), Deno.errors.NotFound);
  assert.equal(await Deno.readTextFile(join(dst, ".cache", "other-app", "x")), "x");
  assert.equal(await mirrorDiff(home, dst, { exclude: [".cache/foldersync/locks"] }), "");
});
