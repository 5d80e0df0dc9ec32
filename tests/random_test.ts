import assert from "node:assert/strict";
import { join } from "node:path";
import { assertMirror, POSIX, runLocal, tempDir } from "./helpers.ts";

/** A small seeded PRNG (mulberry32), so that a failing round can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const NAMES = ["a", "B", "b", "c.txt", "C.TXT", "d d", "é", "e\u0301", "-x", "[z]", "long-name-0123456789"];

/** Every path under `root`, relative, found by lstat (links are not followed). */
function listAll(root: string, rel = ""): Array<{ rel: string; kind: "file" | "dir" | "symlink" }> {
  const found: Array<{ rel: string; kind: "file" | "dir" | "symlink" }> = [];
  for (const entry of Deno.readDirSync(rel === "" ? root : join(root, rel))) {
    const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
    const kind = entry.isSymlink ? "symlink" : entry.isDirectory ? "dir" : "file";
    found.push({ rel: path, kind });
    if (kind === "dir") found.push(...listAll(root, path));
  }
  return found;
}

/** Makes `count` random changes under `root`: new files, dirs and links, edits, removals, type swaps. */
function mutate(root: string, next: () => number, count: number): void {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  for (let i = 0; i < count; i++) {
    const existing = listAll(root);
    const dirs = ["", ...existing.filter((e) => e.kind === "dir").map((e) => e.rel)];
    const at = (dir: string) => (dir === "" ? "" : `${dir}/`) + pick(NAMES);
    const full = (rel: string) => join(root, rel);
    const clear = (rel: string) => Deno.removeSync(full(rel), { recursive: true });
    const roll = next();
    try {
      if (roll < 0.3) {
        // createNew: never through a link the tree already has at that name (O_EXCL).
        Deno.writeTextFileSync(full(at(pick(dirs))), "x".repeat(Math.floor(next() * 50)), { createNew: true });
      } else if (roll < 0.45) {
        Deno.mkdirSync(full(at(pick(dirs))));
      } else if (roll < 0.55) {
        Deno.symlinkSync(pick(["a", "../b", "/nonexistent", "c.txt"]), full(at(pick(dirs))));
      } else if (roll < 0.7 && existing.length > 0) {
        const victim = pick(existing);
        clear(victim.rel);
        // A type swap: something else under the same name.
        if (next() < 0.5) Deno.writeTextFileSync(full(victim.rel), "swapped", { createNew: true });
        else Deno.mkdirSync(full(victim.rel));
      } else if (roll < 0.85 && existing.length > 0) {
        const file = existing.find((e) => e.kind === "file" && next() < 0.3);
        if (file) {
          Deno.writeTextFileSync(full(file.rel), `edited ${next()}`);
          Deno.chmodSync(full(file.rel), pick([0o600, 0o644, 0o755, 0o444]));
        }
      } else if (existing.length > 0) {
        clear(pick(existing).rel);
      }
    } catch (error) {
      // The name exists already (a looping link, say): that draw changes nothing.
      const harmless = [Deno.errors.AlreadyExists, Deno.errors.NotFound, Deno.errors.FilesystemLoop];
      if (!harmless.some((kind) => error instanceof kind)) throw error;
    }
  }
}

/**
 * A pause between editing the two sides: edits of the same file on both sides to the same size
 * within one kernel clock tick (4 to 10 ms; file times come from a coarse clock) get the same
 * mtime, which no size-and-mtime check can tell apart (rsync's neither).
 */
const settle = () => new Promise((resolve) => setTimeout(resolve, 30));

Deno.test("runOnce() leaves an exact mirror of random trees changed on both sides, applied in small parts", {
  ignore: !POSIX,
}, async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  const dst = join(tmp.path, "dst");
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const next = random(seed);
    Deno.mkdirSync(src, { recursive: true });
    mutate(src, next, 60);
    Deno.mkdirSync(dst, { recursive: true });
    await settle();
    mutate(dst, next, 40); // junk in the replica to replace or remove
    for (let round = 0; round < 3; round++) {
      const result = await runLocal({ source: src, replica: dst, allowEmptySource: true }, {
        partActions: 1 + Math.floor(next() * 5),
      });
      assert.equal(result.stats.errors, 0, `seed ${seed}, round ${round}`);
      await assertMirror(src, dst);
      mutate(src, next, 15);
      await settle();
      mutate(dst, next, 5);
    }
    Deno.removeSync(src, { recursive: true });
    Deno.removeSync(dst, { recursive: true });
  }
});
