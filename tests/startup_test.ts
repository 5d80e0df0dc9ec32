import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULT_HASH } from "../lib/content/hash.ts";
import { assertMirror, collect, POSIX, ROOT, runMain, spawnMain, tempDir, waitFor, writeTree } from "./helpers.ts";

const decoder = new TextDecoder();

/** Runs `deno task --config <repo>/deno.json sync <args>` from `cwd`, as a user in another folder would. */
async function denoTaskSync(args: string[], cwd: string, env: Record<string, string> = {}) {
  // `deno task test` sets INIT_CWD for the tests, and deno task keeps an INIT_CWD it inherits: drop it.
  const { INIT_CWD: _, ...inherited } = Deno.env.toObject();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "--config", join(ROOT, "deno.json"), "sync", ...args],
    cwd,
    env: { ...inherited, ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("deno task sync resolves relative paths from the caller's folder and uses the hash cache", async (t) => {
  await using tmp = await tempDir();
  const here = tmp.path;
  await writeTree(join(here, "rel", "src"), { "a.txt": "a", sub: { "b.txt": "b" } });
  const cache = join(here, "cache");

  await t.step("relative source, replica and log resolve from where the user stands", async () => {
    const run = await denoTaskSync(["rel/src", "rel/dst", "-l", "rel/sync.log"], here);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    await assertMirror(join(here, "rel", "src"), join(here, "rel", "dst"));
    assert.match(await Deno.readTextFile(join(here, "rel", "sync.log")), /copy a\.txt/);
    await assert.rejects(Deno.lstat(join(ROOT, "rel")), Deno.errors.NotFound, "nothing lands in the repository");
  });

  await t.step("--checksum keeps its hash cache in the default place", async () => {
    const [src, dst] = [join(here, "rel", "src"), join(here, "rel", "dst")];
    const run = await denoTaskSync([src, dst, "-c"], here, { XDG_CACHE_HOME: cache });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const files = [...Deno.readDirSync(join(cache, "foldersync"))];
    assert.ok(files.length > 0, "a cache file was written");
  });
});

Deno.test("SyncOptions documents the hash that is the default", async () => {
  const source = await Deno.readTextFile(join(ROOT, "lib", "engine", "options.ts"));
  const documented = /Hash algorithm for `checksum`\.\s*\*\s*@default "(\w+)"/.exec(source)?.[1];
  assert.equal(documented, DEFAULT_HASH);
});

Deno.test(
  "main.ts says only 'Stopping' on SIGINT between runs, with no file in flight",
  { ignore: !POSIX },
  async () => {
    await using tmp = await tempDir();
    const src = join(tmp.path, "src");
    const dst = join(tmp.path, "dst");
    await writeTree(src, { "a.txt": "a" });
    const child = spawnMain([src, dst, "-i", "1h"]);
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    await waitFor(() => out.text().includes("Sync done"), 20_000, "first sync");
    child.kill("SIGINT");
    const status = await child.status;
    await Promise.all([out.done, err.done]);
    assert.equal(status.code, 0, err.text());
    assert.match(out.text(), /INFO {2}Stopping\n/);
    assert.doesNotMatch(out.text(), /aborting/);
  },
);

Deno.test("main.ts never turns a mistyped interval into a log file in the current folder", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  await writeTree(src, { "a.txt": "a" });
  for (const extra of [["10minutes"], ["10", "20"]]) {
    const run = await runMain(["src", "dst", ...extra], { cwd: tmp.path });
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
    assert.deepEqual([...Deno.readDirSync(tmp.path)].map((e) => e.name), ["src"], "nothing created");
  }
});
