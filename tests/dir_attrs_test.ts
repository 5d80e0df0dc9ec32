import assert from "node:assert/strict";
import { join } from "node:path";
import { assertMirror, POSIX, runMain, tempDir, writeTree } from "./helpers.ts";

Deno.test({
  name: "main.ts shows and counts a directory's own mode or mtime fix, in a dry run as in a real one",
  ignore: !POSIX,
  async fn() {
    await using tmp = await tempDir();
    const src = join(tmp.path, "src");
    const dst = join(tmp.path, "dst");
    await writeTree(src, { d: { "a.txt": "a" }, e: { "b.txt": "b" } });
    assert.equal((await runMain([src, dst])).code, 0);
    await Deno.chmod(join(dst, "d"), 0o700);
    await Deno.utime(join(dst, "e"), new Date(1_000_000_000_000), new Date(1_000_000_000_000));
    const verify = await runMain(["verify", src, dst]);
    assert.match(verify.stdout, /differs d \(mode\)/);
    assert.match(verify.stdout, /differs e \(mtime\)/);
    const dry = await runMain([src, dst, "--dry-run"]);
    assert.match(dry.stdout, /would set attrs dir d\n/);
    assert.match(dry.stdout, /would set attrs dir e\n/);
    assert.match(dry.stdout, /Dry run done: 0 created, 0 copied, 0 updated, 0 linked, 2 attrs, 0 removed/);
    const run = await runMain([src, dst]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /INFO {2}set attrs dir d\n/);
    assert.match(run.stdout, /Sync done: 0 created, 0 copied, 0 updated, 0 linked, 2 attrs, 0 removed/);
    await assertMirror(src, dst);
    const again = await runMain([src, dst]);
    assert.match(again.stdout, /0 attrs/);
  },
});
