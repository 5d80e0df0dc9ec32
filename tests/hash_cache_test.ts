import assert from "node:assert/strict";
import { join } from "node:path";
import { type CompareOptions, ContentComparer } from "../lib/content/compare.ts";
import { HashCache } from "../lib/content/hash_cache.ts";
import type { Entry } from "../lib/model/listing.ts";
import { assertMirror, marchLocal, runMain, tempDir, waitFor, writeTree } from "./helpers.ts";

/** A name with every character the cache file format must escape. */
const ODD = 'tab\there\nnewline "quotes" back\\slash \u00e9';

const noCtime = (): Entry => {
  const { ctimeMs: _, ...rest } = entry();
  return rest;
};
const entry = (over: Partial<Entry> = {}): Entry => ({
  kind: "file",
  size: 3,
  mtimeMs: 1000,
  mode: 0o644,
  ctimeMs: 2000,
  ino: 42,
  ...over,
});

Deno.test("HashCache trusts an entry only while path, size, mtime, ctime and inode match", async (t) => {
  await using tmp = await tempDir();
  const first = HashCache.open(tmp.path, "/data/src", "xxh3");
  first.set("a", entry(), "digest-a", 10_000);
  first.set("b", entry(), "digest-b", 10_000);
  first.set("racy", entry({ ctimeMs: 9_500 }), "digest-racy", 10_000);
  first.set("no-ctime", noCtime(), "digest-none", 10_000);
  first.set(ODD, entry(), "digest-odd", 10_000);
  assert.ok(first.save());

  const second = HashCache.open(tmp.path, "/data/src", "xxh3");
  assert.equal(second.get("a", entry()), "digest-a");
  assert.equal(second.get(ODD, entry()), "digest-odd", "any name survives the file format");
  for (
    const [what, changed] of Object.entries({
      size: { size: 4 },
      mtime: { mtimeMs: 1 },
      ctime: { ctimeMs: 1 },
      inode: { ino: 7 },
    })
  ) {
    await t.step(`a changed ${what} is a miss`, () => assert.equal(second.get("b", entry(changed)), undefined));
  }
  assert.equal(second.get("missing", entry()), undefined);
  assert.equal(second.get("racy", entry({ ctimeMs: 9_500 })), undefined, "changed in the second before hashing");
  assert.equal(second.get("no-ctime", noCtime()), undefined, "no ctime, no trust");
  assert.equal(HashCache.open(tmp.path, "/data/src", "md5").get("a", entry()), undefined, "per algorithm");
  assert.equal(HashCache.open(tmp.path, "/data/other", "xxh3").get("a", entry()), undefined, "per tree");

  assert.ok(second.save());
  const third = HashCache.open(tmp.path, "/data/src", "xxh3");
  assert.equal(third.get("a", entry()), "digest-a");
  assert.equal(third.get("b", entry()), undefined, "entries not used in a run are dropped");
});

Deno.test("HashCache treats a corrupt or foreign cache file as empty", async () => {
  await using tmp = await tempDir();
  const cache = HashCache.open(tmp.path, "/r", "xxh3");
  cache.set("a", entry(), "d", 10_000);
  cache.save();
  const [file] = [...Deno.readDirSync(tmp.path)].map((e) => join(tmp.path, e.name));
  for (const junk of ["{not json", "null", '{"version":1,"root":"/r","hash":"xxh3","rows":[[1,2]]}', ""]) {
    await Deno.writeTextFile(file!, junk);
    assert.equal(HashCache.open(tmp.path, "/r", "xxh3").get("a", entry()), undefined, junk);
  }
});

/** Hashes every content pair of `src` and `dst` as a `--checksum` sync would. */
async function compare(src: string, dst: string, options: CompareOptions) {
  const { planner } = await marchLocal(src, dst, { checksum: true, useWorker: false });
  const comparer = new ContentComparer({ root: src }, { root: dst }, options);
  const same = await comparer.compare(planner.contentPairs);
  comparer.save();
  return { same, hashed: comparer.hashed, cached: comparer.cached };
}

/** Waits until every file under `root` changed more than a full ctime second ago. */
async function untilSettled(root: string) {
  let newest = 0;
  const visit = (path: string) => {
    const info = Deno.lstatSync(path);
    newest = Math.max(newest, info.ctime?.getTime() ?? 0);
    if (info.isDirectory) { for (const child of Deno.readDirSync(path)) visit(join(path, child.name)); }
  };
  visit(root);
  await waitFor(() => Date.now() > newest + 1200, 5000, "files older than their ctime second");
}

Deno.test("ContentComparer uses the cache, and a rewrite that restores size and mtime still misses it", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const cacheDir = join(tmp.path, "cache");
  const files = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}`, `content ${i}`]));
  await writeTree(src, files);
  assert.equal((await runMain([src, dst])).code, 0);
  await untilSettled(tmp.path);

  const cold = await compare(src, dst, { hash: "xxh3", cacheDir });
  assert.deepEqual([cold.same.size, cold.hashed, cold.cached], [40, 80, 0]);
  const saved = [...Deno.readDirSync(cacheDir)].map((e) => Deno.statSync(join(cacheDir, e.name)).mtime?.getTime());
  const warm = await compare(src, dst, { hash: "xxh3", cacheDir });
  assert.deepEqual([warm.same.size, warm.hashed, warm.cached], [40, 0, 80]);
  const after = [...Deno.readDirSync(cacheDir)].map((e) => Deno.statSync(join(cacheDir, e.name)).mtime?.getTime());
  assert.deepEqual(after, saved, "an unchanged cache is not written again");

  const { mtime } = await Deno.stat(join(dst, "f7"));
  await Deno.writeTextFile(join(dst, "f7"), "CONTENT 7");
  await Deno.utime(join(dst, "f7"), mtime!, mtime!);
  const edited = await compare(src, dst, { hash: "xxh3", cacheDir });
  assert.deepEqual([edited.same.size, edited.hashed], [39, 1], "only the rewritten file is hashed again");
  assert.ok(!edited.same.has("f7"), "the new ctime keeps the stale digest from being trusted");
});

Deno.test("ContentComparer does not cache files changed in the second before hashing", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const cacheDir = join(tmp.path, "cache");
  await writeTree(src, { a: "fresh" });
  await writeTree(dst, { a: "fresh" });
  await compare(src, dst, { hash: "xxh3", cacheDir });
  const again = await compare(src, dst, { hash: "xxh3", cacheDir });
  assert.equal(again.hashed, 2, "racy entries are hashed again");
});

Deno.test("main.ts --checksum keeps its cache outside the replica and stays exact on later runs", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  const cacheDir = join(tmp.path, "cache");
  await writeTree(src, { a: "aaaa", sub: { b: "bbbb" } });
  assert.equal((await runMain([src, dst])).code, 0);
  await untilSettled(tmp.path);
  for (let run = 0; run < 2; run++) {
    const out = await runMain([src, dst, "-c", "-v", "--cache-dir", cacheDir]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, run === 0 ? /4 files hashed, 0 from the cache/ : /0 files hashed, 4 from the cache/);
    await assertMirror(src, dst);
  }
  // Beside them, locks/ holds the replica's lock file.
  assert.equal([...Deno.readDirSync(cacheDir)].filter((e) => e.isFile).length, 2, "one cache file per tree");
  const { mtime } = await Deno.stat(join(dst, "a"));
  await Deno.writeTextFile(join(dst, "a"), "AAAA");
  await Deno.utime(join(dst, "a"), mtime!, mtime!);
  const third = await runMain([src, dst, "-c", "--cache-dir", cacheDir]);
  assert.match(third.stdout, /update a /);
  await assertMirror(src, dst);

  const inside = await runMain([src, dst, "-c", "--cache-dir", join(dst, "cache")]);
  assert.equal(inside.code, 2);
  assert.match(inside.stderr, /Cache directory is inside the replica/);
  const inSource = await runMain([src, dst, "-c", "--cache-dir", join(src, "cache")]);
  assert.equal(inSource.code, 2);
  assert.match(inSource.stderr, /Cache directory is inside the source: '.*\/src\/cache'/);
  await assert.rejects(Deno.stat(join(src, "cache")));
});
