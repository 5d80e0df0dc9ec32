import assert from "node:assert/strict";
import { join } from "node:path";
import { assertMirror, runMain, tempDir, writeTree } from "./helpers.ts";
import { plan } from "../lib/engine/plan.ts";
import type { Entry } from "../lib/model/listing.ts";

const file: Entry = { kind: "file", size: 3, mtimeMs: 1000, mode: 0o644 };
const dir: Entry = { kind: "dir", size: 0, mtimeMs: 1000, mode: 0o755 };

Deno.test("plan() cleans temp files an interrupted run left, apart from removals", () => {
  const source = { root: dir, entries: new Map<string, Entry>([["a", file]]) };
  const replica = {
    root: dir,
    entries: new Map<string, Entry>([
      ["a", file],
      [".foldersync-abcde12345.tmp", file],
      ["gone", dir],
      ["gone/.foldersync-0123456789.tmp", file],
      ["gone/x", file],
      [".foldersync-not-ours.tmp", file],
    ]),
  };
  const p = plan(source, replica);
  assert.deepEqual(p.leftovers.map((r) => [r.path, r.leftover]).sort(), [
    [".foldersync-abcde12345.tmp", true],
    ["gone/.foldersync-0123456789.tmp", true],
  ]);
  assert.deepEqual(p.removes.map((r) => r.path).sort(), [".foldersync-not-ours.tmp", "gone", "gone/x"]);
});

Deno.test("main.ts cleans temp files a killed run left: never counted, never capped, never backed up", async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const backup = join(tmp.path, "backup");
  await writeTree(src, { "a.txt": "alpha", d: { "b.txt": "bravo" } });
  assert.equal((await runMain([src, dst])).code, 0);
  // What `kill -9` in the middle of copies leaves: partial temp files beside their final names.
  await writeTree(dst, {
    ".foldersync-aaaaa00000.tmp": "torn",
    d: { ".foldersync-bbbbb11111.tmp": "torn too" },
  });
  await t.step("a dry run shows them as clean-ups, not removals", async () => {
    const out = await runMain([src, dst, "-n", "--max-delete", "0", "--backup-dir", backup]);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    assert.match(out.stdout, /would clean up \.foldersync-aaaaa00000\.tmp/);
    assert.match(out.stdout, /would clean up d\/\.foldersync-bbbbb11111\.tmp/);
    assert.match(out.stdout, /0 removed, 0 backed up/);
  });
  await t.step("verify reports them as extra, with why", async () => {
    const out = await runMain(["verify", src, dst]);
    assert.equal(out.code, 1);
    assert.match(out.stdout, /extra \.foldersync-aaaaa00000\.tmp \(a temp file an interrupted run left\)/);
  });
  await t.step("--max-delete 0 lets the clean-up through, and --backup-dir keeps none of it", async () => {
    const out = await runMain([src, dst, "--max-delete", "0", "--backup-dir", backup]);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    assert.doesNotMatch(out.stdout + out.stderr, /Refusing/);
    assert.match(out.stdout, /clean up d\/\.foldersync-bbbbb11111\.tmp/);
    assert.match(out.stdout, /0 removed, 0 backed up, 0 errors/);
    await assert.rejects(Deno.stat(backup));
    await assertMirror(src, dst);
  });
});
