import assert from "node:assert/strict";
import { join } from "node:path";
import { getHasher, hashFileSync } from "../lib/content/hash.ts";
import { HASH_NAMES } from "../lib/model/hash_name.ts";
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

/**
 * Published digests, as the reference tools print them (xxhsum 0.8 -H1/-H2/-H3, b3sum 1.2,
 * coreutils): "", "abc", and 3 MiB + 17 bytes of `i % 251`, which crosses every chunk size.
 */
const VECTORS: Record<string, Record<string, string>> = {
  "": {
    xxh3: "2d06800538d394c2",
    xxh64: "ef46db3751d8e999",
    xxh128: "99aa06d3014798d86001c324468d497f",
    md5: "d41d8cd98f00b204e9800998ecf8427e",
    sha1: "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    blake3: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
  },
  abc: {
    xxh3: "78af5f94892f3950",
    xxh64: "44bc2cf5ad770999",
    xxh128: "06b05ab6733a618578af5f94892f3950",
    md5: "900150983cd24fb0d6963f7d28e17f72",
    sha1: "a9993e364706816aba3e25717850c26c9cd0d89d",
    sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    blake3: "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
  },
  long: {
    xxh3: "fb45fcd49e8371b7",
    xxh64: "66b2e0520159133b",
    xxh128: "a8d2aaa87f9b2799fb45fcd49e8371b7",
    md5: "7114d559ffda7029526064baa992a30d",
    sha1: "da6de52b0377c05cb5717f7517861dc0eb7ba169",
    sha256: "fe2aaf82bfa2ffec207a0c6fa7ce7d4af268d67e2672fdaec675f3f9b65d0854",
    blake3: "26003c63117013de5d02be76e5e32a2f75bfbc075f17180fd5f9f0b4752d2bfe",
  },
};

Deno.test("hashFileSync() gives every hash's published digest, one-shot and streamed", async (t) => {
  await using tmp = await tempDir();
  const long = new Uint8Array(3 * 1024 * 1024 + 17);
  for (let i = 0; i < long.length; i++) long[i] = i % 251;
  const contents: Record<string, Uint8Array> = { "": new Uint8Array(), abc: new TextEncoder().encode("abc"), long };
  for (const [input, digests] of Object.entries(VECTORS)) {
    const path = join(tmp.path, input || "empty");
    await Deno.writeFile(path, contents[input]!);
    for (const name of HASH_NAMES) {
      await t.step(`${name} of ${input === "long" ? "3 MiB + 17 bytes" : JSON.stringify(input)}`, async () => {
        const hasher = await getHasher(name);
        assert.equal(hashFileSync(hasher, path, contents[input]!.length), digests[name], "one-shot");
        assert.equal(hashFileSync(hasher, path), digests[name], "streamed");
      });
    }
  }
});
