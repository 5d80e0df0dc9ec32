import assert from "node:assert/strict";
import { join } from "node:path";
import { ListingBatch } from "../lib/model/listing.ts";
import { listDirectory } from "../lib/backend/local/scan.ts";
import { ReadAhead } from "../lib/backend/local/read_ahead.ts";
import { tempDir, writeTree } from "./helpers.ts";

/** A listing as text: its directory, flags and entries. */
function show(batch: ListingBatch): string {
  const lines = [`${batch.dirs[0]} ${batch.flags[0]}`];
  for (let i = batch.start(0); i < batch.end(0); i++) {
    const e = batch.entry(i);
    lines.push(`${batch.names[i]} ${e.kind} ${e.size} ${e.mtimeMs} ${e.mode} ${e.target ?? ""}`);
  }
  return lines.join("\n");
}

Deno.test("ReadAhead gives, from its worker, the listings that listDirectory gives", async (t) => {
  await using tmp = await tempDir();
  const tree: Record<string, unknown> = {};
  for (let i = 0; i < 40; i++) {
    tree[`d${String(i).padStart(2, "0")}`] = { "f.txt": "f".repeat(i), sub: { "g.txt": "g", deeper: {} } };
  }
  await writeTree(tmp.path, { ...tree as Record<string, string>, "link": { link: "d01/f.txt" }, "top.txt": "t" });
  const dirs: string[] = [];
  const stack = [""];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    dirs.push(dir);
    const batch = new ListingBatch();
    listDirectory(batch, tmp.path, dir);
    for (let i = batch.end(0) - 1; i >= batch.start(0); i--) {
      if (batch.kind(i) === "dir") stack.push(dir === "" ? batch.names[i]! : `${dir}/${batch.names[i]}`);
    }
  }
  const direct = (dir: string) => {
    const batch = new ListingBatch();
    listDirectory(batch, tmp.path, dir);
    return show(batch);
  };

  await t.step("every directory in walk order, through the worker", async () => {
    const ahead = new ReadAhead(tmp.path, { workerAfterDirs: 0 });
    await new Promise((resolve) => setTimeout(resolve, 500)); // let the worker boot and take the walk
    try {
      for (const dir of dirs) {
        const got = await ahead.take(dir);
        assert.ok(got, `read ahead: ${dir}`);
        assert.equal(show(got), direct(dir));
      }
    } finally {
      ahead.close();
    }
  });

  await t.step("a skipped subtree is dropped, and later folders still come", async () => {
    const ahead = new ReadAhead(tmp.path, { workerAfterDirs: 0 });
    try {
      assert.ok(await ahead.take(""));
      ahead.skip("d00");
      assert.equal(await ahead.take("d00/sub"), undefined, "under a skipped folder: listed on demand");
      const later = await ahead.take("d39/sub");
      assert.ok(later);
      assert.equal(show(later), direct("d39/sub"));
      assert.equal(await ahead.take("no-such-folder"), undefined);
    } finally {
      ahead.close();
    }
  });

  await t.step("a directory that vanished before it was read ahead says so, as a direct listing does", async () => {
    const ahead = new ReadAhead(join(tmp.path, "d05"));
    try {
      assert.ok(await ahead.take(""));
      await Deno.remove(join(tmp.path, "d05", "sub"), { recursive: true });
      const got = await ahead.take("sub");
      assert.ok(got);
      assert.equal(show(got), direct("d05/sub").replace("d05/sub", "sub"));
    } finally {
      ahead.close();
    }
  });
});
