import assert from "node:assert/strict";
import { join } from "node:path";
import { TEMP_PATTERN } from "../lib/model/names.ts";
import { collect, POSIX, spawnMain, tempDir, waitFor } from "./helpers.ts";

const MiB = 1 << 20;
/** Large enough that copying one takes far longer than a stop may (about a second). */
const BIG_MIB = 400;
const BIG_FILES = ["big0.bin", "big1.bin", "big2.bin"];

/** Writes `mib` MiB of random-looking data with no block of zeros, so that the file has no holes. */
function writeBig(path: string, mib: number, seed: number): void {
  const chunk = new Uint8Array(MiB);
  for (let i = 0; i < chunk.length; i += 65536) crypto.getRandomValues(chunk.subarray(i, i + 65536));
  const view = new DataView(chunk.buffer);
  using f = Deno.openSync(path, { write: true, createNew: true });
  for (let m = 0; m < mib; m++) {
    for (let i = 0; i < chunk.length; i += 4096) view.setUint32(i, 0x01010101 + seed * 65536 + m); // never zero
    f.writeSync(chunk);
  }
}

/** True when both files hold the same bytes. */
function sameContent(a: string, b: string): boolean {
  using fa = Deno.openSync(a);
  using fb = Deno.openSync(b);
  if (fa.statSync().size !== fb.statSync().size) return false;
  const ba = new Uint8Array(4 * MiB);
  const bb = new Uint8Array(4 * MiB);
  for (;;) {
    const na = fa.readSync(ba) ?? 0;
    let nb = 0;
    while (nb < na) nb += fb.readSync(bb.subarray(nb, na)) ?? na;
    if (na === 0) return true;
    const wa = new Int32Array(ba.buffer, 0, na >> 2);
    const wb = new Int32Array(bb.buffer, 0, na >> 2);
    for (let i = 0; i < wa.length; i++) if (wa[i] !== wb[i]) return false;
    for (let i = na & ~3; i < na; i++) if (ba[i] !== bb[i]) return false;
  }
}

/** Every path under `root`, relative, files only. */
function filesUnder(root: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(rel === "" ? root : join(root, rel))) {
    const r = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory) out.push(...filesUnder(root, r));
    else out.push(r);
  }
  return out;
}

Deno.test("main.ts stops within a second on SIGINT mid-copy of large files, leaving no temp or partial file", {
  ignore: !POSIX,
}, async (t) => {
  await using tmp = await tempDir();
  // Three large files alone are copied on the main thread; with 600 small files besides, every
  // plain copy goes to the copy workers.
  const few = join(tmp.path, "few");
  const many = join(tmp.path, "many");
  Deno.mkdirSync(few);
  Deno.mkdirSync(join(many, "small"), { recursive: true });
  BIG_FILES.forEach((name, i) => writeBig(join(few, name), BIG_MIB, i));
  for (const name of BIG_FILES) Deno.linkSync(join(few, name), join(many, name));
  for (let i = 0; i < 600; i++) Deno.writeTextFileSync(join(many, "small", `s${i}`), `small ${i}\n`);

  for (const [where, src] of [["on the main thread", few], ["in copy workers", many]] as const) {
    await t.step(where, async () => {
      const dst = join(tmp.path, `dst-${where.replace(/\W/g, "")}`);
      const child = spawnMain([src, dst]);
      const stdout = collect(child.stdout);
      const stderr = collect(child.stderr);
      const tempIn = (dir: string) => {
        try {
          return [...Deno.readDirSync(dir)].some((e) => TEMP_PATTERN.test(e.name));
        } catch {
          return false; // not created yet
        }
      };
      await waitFor(() => tempIn(dst), 60_000, "the first temp file");
      const signalled = performance.now();
      child.kill("SIGINT");
      const status = await child.status;
      const stopMs = performance.now() - signalled;
      await Promise.all([stdout.done, stderr.done]);
      const output = stdout.text() + stderr.text();

      assert.equal(status.code, 130, output);
      assert.ok(stopMs < 1500, `stopped ${stopMs.toFixed(0)} ms after SIGINT:\n${output}`);
      const left = filesUnder(dst);
      assert.deepEqual(left.filter((p) => TEMP_PATTERN.test(p.split("/").pop()!)), [], "temp files left");
      for (const rel of left) assert.ok(sameContent(join(src, rel), join(dst, rel)), `partial file at '${rel}'`);
      const bigDone = BIG_FILES.filter((name) => left.includes(name));
      assert.ok(bigDone.length < BIG_FILES.length, "the large files in flight were finished instead of stopped");
      assert.doesNotMatch(output, / ERROR /, "an aborted copy is not an error");
      assert.match(output, /Sync stopped: .* 0 errors/);
    });
  }
});
