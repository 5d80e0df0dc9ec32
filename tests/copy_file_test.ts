import assert from "node:assert/strict";
import { join } from "node:path";
import { copyFile, copyFileSync, SMALL_FILE } from "../lib/backend/local/copy_file.ts";
import { denoFs } from "../lib/backend/local/local_backend.ts";
import { POSIX, tempDir } from "./helpers.ts";

const MiB = 1 << 20;

/** Writes a sparse file of `size` bytes holding `data` at each of `offsets`, holes elsewhere. */
function writeSparse(path: string, size: number, offsets: number[], data: Uint8Array): void {
  using f = Deno.openSync(path, { write: true, createNew: true });
  for (const offset of offsets) {
    f.seekSync(offset, Deno.SeekMode.Start);
    f.writeSync(data);
  }
  f.truncateSync(size);
}

/** True when both files hold the same bytes, compared a chunk at a time. */
function sameContent(a: string, b: string): boolean {
  using fa = Deno.openSync(a);
  using fb = Deno.openSync(b);
  const ba = new Uint8Array(MiB);
  const bb = new Uint8Array(MiB);
  for (;;) {
    const na = fa.readSync(ba) ?? 0;
    const nb = fb.readSync(bb) ?? 0;
    if (na !== nb) return false;
    if (na === 0) return true;
    for (let i = 0; i < na; i++) if (ba[i] !== bb[i]) return false;
  }
}

const copies = {
  // What apply's main thread calls; before lib/backend/local/copy_file.ts it was Deno.copyFile for large files.
  "denoFs.copyFile": async (from: string, to: string, options: { size?: number } = {}) => {
    await denoFs.copyFile(from, to, options.size ?? Infinity);
    return Deno.statSync(to).size;
  },
  // deno-lint-ignore require-await
  copyFileSync: async (from: string, to: string, options: Parameters<typeof copyFileSync>[2] = {}) =>
    copyFileSync(from, to, options),
  copyFile,
};

Deno.test("copyFile() and copyFileSync() keep the holes of a sparse file, byte for byte", {
  ignore: !POSIX,
}, async (t) => {
  await using tmp = await tempDir();
  const data = new Uint8Array(4096 + 100).map((_, i) => 1 + (i % 251));
  // Data at the start, in the middle, across a chunk boundary, and near (not at) the end, of a
  // size that is no multiple of a block; then a file that ends in a hole.
  const size = 64 * MiB + 1000;
  const src = join(tmp.path, "sparse.img");
  writeSparse(src, size, [0, 5 * MiB + 123, 32 * MiB - 2000, 64 * MiB - 8192], data);
  const tail = join(tmp.path, "tail-hole.img");
  writeSparse(tail, 70 * MiB, [3 * MiB], data);
  const srcBlocks = Deno.statSync(src).blocks!;
  assert.ok(srcBlocks * 512 < MiB, `the test needs a file system with holes (${srcBlocks} blocks)`);

  for (const [name, copy] of Object.entries(copies)) {
    await t.step(`${name} keeps a 64 MiB file with 16 KiB of data to a few blocks`, async () => {
      for (const from of [src, tail]) {
        const to = join(tmp.path, `${name}-${from.endsWith("tail-hole.img") ? "tail" : "sparse"}`);
        const copied = await copy(from, to, { size: Deno.statSync(from).size });
        const info = Deno.statSync(to);
        assert.equal(copied, Deno.statSync(from).size);
        assert.equal(info.size, Deno.statSync(from).size);
        assert.ok(info.blocks! * 512 <= 256 * 1024, `${info.blocks} blocks of 512 bytes: holes were filled`);
        assert.ok(sameContent(from, to), "same content");
      }
    });
  }

  await t.step("blocks of real zeros become holes too, unless sparse is false", async () => {
    const zeros = join(tmp.path, "zeros.bin");
    const bytes = new Uint8Array(4 * MiB);
    bytes[MiB + 5] = 1;
    Deno.writeFileSync(zeros, bytes);
    const holed = join(tmp.path, "zeros-sparse");
    await copyFile(zeros, holed, { size: 4 * MiB });
    assert.ok(Deno.statSync(holed).blocks! * 512 < MiB, "like rsync -S");
    assert.ok(sameContent(zeros, holed));
    const full = join(tmp.path, "zeros-full");
    copyFileSync(zeros, full, { size: 4 * MiB, sparse: false });
    assert.ok(Deno.statSync(full).blocks! * 512 >= 4 * MiB);
  });
});

Deno.test("copyFile() and copyFileSync() never write through an existing name, not even a link", {
  ignore: !POSIX,
}, async (t) => {
  await using tmp = await tempDir();
  const small = join(tmp.path, "small");
  const large = join(tmp.path, "large");
  Deno.writeTextFileSync(small, "small");
  Deno.writeFileSync(large, new Uint8Array(3 * MiB).fill(7));
  const victim = join(tmp.path, "victim");
  for (const [name, copy] of Object.entries(copies)) {
    for (const from of [small, large]) {
      await t.step(`${name} of a ${from === small ? "small" : "large"} file`, async () => {
        Deno.writeTextFileSync(victim, "must survive");
        const link = join(tmp.path, `link-${name}`);
        const dangling = join(tmp.path, `dangling-${name}`);
        Deno.symlinkSync(victim, link);
        Deno.symlinkSync(join(tmp.path, "nowhere"), dangling);
        const size = Deno.statSync(from).size;
        await assert.rejects(copy(from, link, { size }), Deno.errors.AlreadyExists);
        await assert.rejects(copy(from, dangling, { size }), Deno.errors.AlreadyExists);
        assert.equal(Deno.readTextFileSync(victim), "must survive");
        assert.ok(Deno.lstatSync(link).isSymlink, "the link itself is left alone");
        assert.throws(() => Deno.statSync(join(tmp.path, "nowhere")), Deno.errors.NotFound);
        Deno.removeSync(link);
        Deno.removeSync(dangling);
      });
    }
  }
});

Deno.test("copyFile() and copyFileSync() set the exact mode and report progress chunk by chunk", async (t) => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const bytes = new Uint8Array(5 * MiB + 7).map((_, i) => i % 253);
  Deno.writeFileSync(src, bytes);
  for (const [name, copy] of Object.entries({ copyFileSync: copies.copyFileSync, copyFile })) {
    await t.step(name, async () => {
      for (const [size, mode] of [[SMALL_FILE, 0o666], [bytes.length, 0o2775], [bytes.length, 0o640]] as const) {
        const to = join(tmp.path, `${name}-${size}-${mode.toString(8)}`);
        const seen: number[] = [];
        const from = size === SMALL_FILE ? join(tmp.path, "small") : src;
        if (size === SMALL_FILE) Deno.writeFileSync(from, bytes.subarray(0, size));
        await copy(from, to, { size, mode, onProgress: (done) => seen.push(done) });
        if (POSIX) assert.equal(Deno.statSync(to).mode! & 0o7777, mode, "not narrowed by the umask");
        assert.ok(sameContent(from, to));
        assert.equal(seen.at(-1), size);
        if (size > SMALL_FILE) assert.deepEqual(seen, [1, 2, 3, 4, 5, 5].map((m, i) => i < 5 ? m * MiB : size));
      }
    });
  }
});

Deno.test("copyFile() stops between chunks once aborted, and leaves no partial file", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  Deno.writeFileSync(src, new Uint8Array(8 * MiB).fill(1));
  const to = join(tmp.path, "to");
  const controller = new AbortController();
  let chunks = 0;
  await assert.rejects(
    copyFile(src, to, {
      size: 8 * MiB,
      signal: controller.signal,
      onProgress: () => {
        if (++chunks === 2) controller.abort();
      },
    }),
    (error) => error instanceof DOMException && error.name === "AbortError",
  );
  assert.equal(chunks, 2, "no chunk is copied after the abort");
  assert.throws(() => Deno.lstatSync(to), Deno.errors.NotFound);
});
