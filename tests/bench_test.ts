import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Runs `deno task ARGS` in the repository, as a user types it. */
async function task(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["task", ...args], cwd: ROOT, stdin: "null" }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

// The benches load what the tests share (tests/helpers.ts): a permission that module needs and
// the task lacks stops the bench at start, which nothing else would notice until a bench run.
for (const args of [["bench", "--help"], ["bench", "--remote", "--help"]]) {
  Deno.test(`deno task ${args.join(" ")} starts under the task's own permissions and prints its usage`, async () => {
    const out = await task(args);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^Usage: deno task bench/m, out.stdout);
  });
}
