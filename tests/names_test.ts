import assert from "node:assert/strict";
import { join } from "node:path";
import { runMain, tempDir, writeTree } from "./helpers.ts";
import { showPath } from "../lib/log.ts";

Deno.test("showPath() escapes C0 and C1 controls, line separators and backslashes", () => {
  assert.equal(showPath("a\nb"), "a\\x0ab");
  assert.equal(showPath("csi\u009b31m"), "csi\\x9b31m");
  assert.equal(showPath("del\u007f"), "del\\x7f");
  assert.equal(showPath("line\u2028sep"), "line\\u2028sep");
  assert.equal(showPath("back\\x0a"), "back\\\\x0a");
  assert.equal(showPath("café/ü"), "café/ü");
  assert.equal(showPath(""), ".");
});

Deno.test({
  name: "main.ts leaves alone two names Deno reads alike (one not valid UTF-8): one error, no flip-flop",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using tmp = await tempDir();
    const src = join(tmp.path, "src");
    const dst = join(tmp.path, "dst");
    await writeTree(src, { d: { "ok.txt": "fine" } });
    await writeTree(dst, { d: { "stray.txt": "s" } });
    // `a` + 0xFF (not UTF-8) and `a` + U+FFFD (valid): Deno lists both as "a\uFFFD".
    const made = await new Deno.Command("sh", {
      args: ["-c", "printf bad > \"d/$(printf 'a\\377')\" && printf good > \"d/$(printf 'a\\357\\277\\275')\""],
      cwd: src,
    }).output();
    assert.ok(made.success, new TextDecoder().decode(made.stderr));
    for (const run of [1, 2, 3]) {
      const out = await runMain([src, dst]);
      assert.equal(out.code, 1, `run ${run}: ${out.stdout}${out.stderr}`);
      const errors = out.stderr.trim().split("\n").filter((l) => l.includes("ERROR"));
      assert.equal(errors.length, 1, out.stderr);
      assert.match(
        errors[0]!,
        /d\/a\uFFFD: Two names read as the same text: one is not valid UTF-8 \(the shell pattern 'a\*' finds it/,
      );
      assert.doesNotMatch(out.stdout, /remove|copy d\/a/, `run ${run} removed or copied one of them:\n${out.stdout}`);
      assert.equal(await Deno.readTextFile(join(dst, "d", "stray.txt")), "s", "nothing removed on a partial listing");
      assert.equal(await Deno.readTextFile(join(dst, "d", "ok.txt")), "fine");
    }
  },
});
