import assert from "node:assert/strict";
import { join } from "node:path";
import type { ApplyEvent } from "../lib/engine/apply.ts";
import { denoFs, type FsOps, LocalBackend } from "../lib/backend/local/local_backend.ts";
import type { Backend } from "../lib/backend/backend.ts";
import type { Capabilities } from "../lib/model/capabilities.ts";
import { runOnce } from "../lib/engine/sync.ts";
import { TEMP_PATTERN } from "../lib/model/names.ts";
import { applyLocal, assertMirror, planLocal, POSIX, runLocal, tempDir, writeTree } from "./helpers.ts";

Deno.test("createApplier() on a full disk keeps the old file and leaves no temp file", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "big.txt": "new content that does not fit", "small.txt": "ok" });
  await writeTree(dst, { "big.txt": "old" });
  const fullDisk: FsOps = {
    ...denoFs,
    async copyFile(from, to, size) {
      if (!from.endsWith("big.txt")) return denoFs.copyFile(from, to, size);
      await Deno.writeTextFile(to, "new cont"); // a partial write, then the disk is full
      throw new Error("No space left on device (os error 28)");
    },
  };
  const p = await planLocal(src, dst);
  const events: ApplyEvent[] = [];
  const stats = await applyLocal(p, src, dst, {
    fs: fullDisk,
    onEvent: (e) => events.push(e),
  });
  assert.equal(stats.errors, 1);
  assert.equal(stats.copied, 1, "the other file is still copied");
  assert.ok(events.some((e) => e.type === "error" && e.path === "big.txt" && /No space left/.test(e.message)));
  assert.equal(await Deno.readTextFile(join(dst, "big.txt")), "old");
  const names = [...Deno.readDirSync(dst)].map((e) => e.name).sort();
  assert.deepEqual(names, ["big.txt", "small.txt"]);
  assert.ok(!names.some((n) => TEMP_PATTERN.test(n)));
});

Deno.test("createApplier() never records a file that changed during its copy as synced", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { "busy.log": "line 1\n" });
  await Deno.mkdir(dst);
  const p = await planLocal(src, dst);
  const growing: FsOps = {
    ...denoFs,
    async copyFile(from, to, size) {
      await denoFs.copyFile(from, to, size);
      await Deno.writeTextFile(from, "line 2\n", { append: true }); // written to while copied
    },
  };
  const events: ApplyEvent[] = [];
  const stats = await applyLocal(p, src, dst, {
    fs: growing,
    onEvent: (e) => events.push(e),
  });
  assert.equal(stats.copied, 0);
  assert.equal(stats.errors, 1);
  assert.ok(events.some((e) => e.type === "error" && /changed while it was being copied/.test(e.message)));
  assert.deepEqual([...Deno.readDirSync(dst)], [], "neither the file nor a temp file is left");

  const again = await runLocal({ source: src, replica: dst });
  assert.equal(again.stats.errors, 0);
  await assertMirror(src, dst);
});

Deno.test("createApplier() blocks the subtree of a directory it could not create", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, { d: { e: { "f.txt": "f" } }, "g.txt": "g" });
  await Deno.mkdir(dst);
  const p = await planLocal(src, dst);
  const noMkdir: FsOps = {
    ...denoFs,
    mkdir: (path, options) =>
      path.endsWith("/d") || path.endsWith("\\d")
        ? Promise.reject(new Deno.errors.PermissionDenied("Permission denied"))
        : denoFs.mkdir(path, options),
  };
  const stats = await applyLocal(p, src, dst, { fs: noMkdir });
  assert.equal(stats.errors, 1, "one error for the directory, none for each entry under it");
  assert.equal(stats.copied, 1);
  assert.deepEqual([...Deno.readDirSync(dst)].map((e) => e.name), ["g.txt"]);
});

Deno.test("runOnce() replaces a replica symlink where the source has a directory, never writing through it", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const elsewhere = join(tmp.path, "elsewhere");
  await writeTree(src, { sub: { "f.txt": "f", deeper: { "g.txt": "g" } } });
  await writeTree(elsewhere, { "keep.txt": "must survive" });
  await Deno.mkdir(dst);
  await Deno.symlink(elsewhere, join(dst, "sub"));
  const result = await runLocal({ source: src, replica: dst });
  assert.equal(result.stats.errors, 0);
  assert.deepEqual([...Deno.readDirSync(elsewhere)].map((e) => e.name), ["keep.txt"]);
  assert.ok((await Deno.lstat(join(dst, "sub"))).isDirectory);
  await assertMirror(src, dst);
});

Deno.test("runOnce() applied in parts of two creations gives the same exact mirror", { ignore: !POSIX }, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  await writeTree(src, {
    a: { b: { c: { "deep.txt": "deep" }, "f.txt": "f" }, "g.txt": "g" },
    "README.txt": "renamed in case",
    swap: { "kid.txt": "k" },
    link: { link: "a/g.txt" },
    many: Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`m${i}`, `m${i}`])),
  });
  await writeTree(dst, {
    a: { "old.txt": "old", b: { "f.txt": "stale content" } },
    "readme.txt": "renamed in case",
    swap: "a file where the source has a directory",
    gone: { x: { y: "y" } },
  });
  const result = await runLocal({ source: src, replica: dst }, { partActions: 2 });
  assert.equal(result.stats.errors, 0);
  assert.deepEqual(
    [result.stats.created, result.stats.copied, result.stats.updated, result.stats.linked, result.stats.removed],
    [3, 13, 1, 1, 6],
  );
  await assertMirror(src, dst);
  const again = await runLocal({ source: src, replica: dst }, { partActions: 2 });
  assert.deepEqual([again.stats.copied, again.stats.updated, again.stats.removed], [0, 0, 0]);

  // --checksum compares its pairs in parts too: two same-size, same-mtime edits in different parts.
  for (const rel of ["a/b/c/deep.txt", "many/m7"]) {
    const { mtime } = await Deno.stat(join(dst, rel));
    await Deno.writeTextFile(join(dst, rel), (await Deno.readTextFile(join(dst, rel))).toUpperCase());
    await Deno.utime(join(dst, rel), mtime!, mtime!);
  }
  const checked = await runLocal({ source: src, replica: dst, checksum: true }, { partActions: 2 });
  assert.deepEqual([checked.stats.updated, checked.stats.errors], [2, 0]);
  await assertMirror(src, dst);
});

Deno.test("runOnce() copies as many files at once as the replica's jobs, else the source's readJobs, else its jobs", async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  await writeTree(src, Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`f${i}.txt`, `file ${i}`])));
  /** `backend` with other capabilities; as a replica, copies one at a time per lane, counted, and no copyMany. */
  const dressed = (backend: Backend, caps: Partial<Capabilities>, seen?: { now: number; most: number }): Backend =>
    new Proxy(backend, {
      get(target, key) {
        if (key === "caps") return { ...target.caps, ...caps };
        if (key === "copyMany") return undefined;
        if (key === "copy" && seen) {
          return async (...args: Parameters<Backend["copy"]>) => {
            seen.most = Math.max(seen.most, ++seen.now);
            await new Promise((resolve) => setTimeout(resolve, 15));
            try {
              return await target.copy(...args);
            } finally {
              seen.now--;
            }
          };
        }
        const value = Reflect.get(target, key, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const cases: Array<[string, Partial<Capabilities>, Partial<Capabilities>, number]> = [
    ["the replica's jobs", { jobs: 5, readJobs: 4 }, { jobs: 2 }, 2],
    ["the source's readJobs", { jobs: 5, readJobs: 4 }, {}, 4],
    ["the source's jobs", { jobs: 3 }, {}, 3],
  ];
  for (const [what, sourceCaps, replicaCaps, expected] of cases) {
    await t.step(what, async () => {
      const dst = join(tmp.path, `dst-${expected}`);
      const seen = { now: 0, most: 0 };
      const { stats } = await runOnce({ source: src, replica: dst }, {
        sides: {
          source: () => Promise.resolve(dressed(new LocalBackend(src), sourceCaps)),
          replica: () => Promise.resolve(dressed(new LocalBackend(dst), replicaCaps, seen)),
        },
      });
      assert.equal(stats.copied, 12);
      assert.equal(seen.most, expected);
      await assertMirror(src, dst);
    });
  }
});
