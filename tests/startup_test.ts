import assert from "node:assert/strict";
import { join } from "node:path";
import { assertMirror, ROOT, tempDir, writeTree } from "./helpers.ts";

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
