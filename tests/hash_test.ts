import assert from "node:assert/strict";
import { join } from "node:path";
import { HASH_NAMES, hashFile } from "../lib/hash.ts";
import { tempDir } from "./helpers.ts";

Deno.test("hashFile() matches known digests, one-shot and streamed alike", async () => {
  await using tmp = await tempDir();
  const abc = join(tmp.path, "abc");
  await Deno.writeTextFile(abc, "abc");
  assert.equal(await hashFile(abc, "md5", 3), "900150983cd24fb0d6963f7d28e17f72");
  assert.equal(
    await hashFile(abc, "sha256"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  const other = join(tmp.path, "other");
  await Deno.writeTextFile(other, "abd");
  for (const name of HASH_NAMES) {
    const oneShot = await hashFile(abc, name, 3);
    assert.equal(await hashFile(abc, name, Infinity), oneShot, `${name}: streamed equals one-shot`);
    assert.equal(await hashFile(abc, name, 3), oneShot, `${name}: the shared hasher starts afresh`);
    assert.notEqual(await hashFile(other, name, 3), oneShot, `${name}: different content differs`);
  }
});
