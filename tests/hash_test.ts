import assert from "node:assert/strict";
import { join } from "node:path";
import { getHasher, HASH_NAMES, hashFileSync } from "../lib/content/hash.ts";
import { tempDir } from "./helpers.ts";

Deno.test("hashFileSync() matches known digests, one-shot and streamed alike", async () => {
  await using tmp = await tempDir();
  const abc = join(tmp.path, "abc");
  await Deno.writeTextFile(abc, "abc");
  assert.equal(hashFileSync(await getHasher("md5"), abc, 3), "900150983cd24fb0d6963f7d28e17f72");
  assert.equal(
    hashFileSync(await getHasher("sha256"), abc),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  const other = join(tmp.path, "other");
  await Deno.writeTextFile(other, "abd");
  for (const name of HASH_NAMES) {
    const hasher = await getHasher(name);
    const oneShot = hashFileSync(hasher, abc, 3);
    assert.equal(hashFileSync(hasher, abc, Infinity), oneShot, `${name}: streamed equals one-shot`);
    assert.equal(hashFileSync(hasher, abc, 3), oneShot, `${name}: the shared hasher starts afresh`);
    assert.notEqual(hashFileSync(hasher, other, 3), oneShot, `${name}: different content differs`);
  }
});
