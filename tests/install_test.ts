import assert from "node:assert/strict";
import { join } from "node:path";
import denoJson from "../deno.json" with { type: "json" };
import { assertMirror, POSIX, ROOT, tempDir, writeTree } from "./helpers.ts";

const decoder = new TextDecoder();

Deno.test("`deno task install`'s command, with --root, gives a foldersync command that syncs", async (t) => {
  await using dir = await tempDir();
  const root = join(dir.path, "root");
  // The task as written in deno.json, with --root added so that nothing global changes.
  const words = denoJson.tasks.install.split(/\s+/);
  assert.deepEqual(words.slice(0, 2), ["deno", "install"]);
  const args = [words[1]!, "--root", root, ...words.slice(2)];
  const install = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdout: "piped", stderr: "piped" })
    .output();
  assert.equal(install.code, 0, decoder.decode(install.stderr));
  const shim = join(root, "bin", POSIX ? "foldersync" : "foldersync.cmd");

  await t.step("the shim runs with the sync task's permission flags (but INIT_CWD)", async () => {
    const text = await Deno.readTextFile(shim);
    // INIT_CWD aside: only `deno task` runs main.ts away from the user's folder.
    const flags = denoJson.tasks.sync.replace("--allow-env=INIT_CWD,", "--allow-env=").split(/\s+/);
    for (const flag of flags.filter((w) => w.startsWith("--allow-"))) {
      assert.ok(text.includes(flag), `${flag} in:\n${text}`);
    }
    assert.doesNotMatch(text, /--allow-all|-A\b|--allow-run(?!=)/);
  });

  await t.step("foldersync --version", async () => {
    const out = await new Deno.Command(shim, { args: ["--version"], stdout: "piped", stderr: "piped" }).output();
    assert.equal(out.code, 0, decoder.decode(out.stderr));
    assert.equal(decoder.decode(out.stdout).trim(), `foldersync ${denoJson.version}`);
    assert.equal(decoder.decode(out.stderr), "");
  });

  await t.step("foldersync <source> <replica> mirrors a small tree", async () => {
    const source = join(dir.path, "src");
    const replica = join(dir.path, "dst");
    await writeTree(source, { "a.txt": "alpha", sub: { "b.txt": "beta", empty: {} } });
    await writeTree(replica, { "stale.txt": "old" });
    const out = await new Deno.Command(shim, { args: [source, replica], stdout: "piped", stderr: "piped" }).output();
    assert.equal(out.code, 0, decoder.decode(out.stderr));
    assert.match(decoder.decode(out.stdout), /Sync done: .* 0 errors/);
    await assertMirror(source, replica);
  });
});
