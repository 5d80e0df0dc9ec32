import assert from "node:assert/strict";
import { countPlan, isEmptyPlan, plan, type PlanTree } from "../lib/engine/plan.ts";
import { type Entry, UNKNOWN_MODE } from "../lib/model/listing.ts";

const dir = (mtimeMs = 1000, mode = 0o755): Entry => ({ kind: "dir", size: 0, mtimeMs, mode });
const file = (size = 3, mtimeMs = 1000, mode = 0o644): Entry => ({ kind: "file", size, mtimeMs, mode });
const link = (target: string, mtimeMs = 1000): Entry => ({
  kind: "symlink",
  size: target.length,
  mtimeMs,
  mode: 0o777,
  target,
});
const paths = (list: Array<{ path: string }>) => list.map((item) => item.path);
const tree = (entries: Record<string, Entry>, extra: Partial<PlanTree> = {}): PlanTree => ({
  root: dir(),
  entries: new Map(Object.entries(entries)),
  ...extra,
});

Deno.test("plan() of identical trees is empty", () => {
  const t = { a: dir(), "a/x": file(), l: link("a/x") };
  const p = plan(tree(t), tree(t));
  assert.ok(isEmptyPlan(p));
  assert.deepEqual(countPlan(p), { create: 0, copy: 0, update: 0, link: 0, attrs: 0, remove: 0 });
});

Deno.test("plan() creates directories parents first and copies new files", () => {
  const p = plan(tree({ a: dir(), "a/b": dir(), "a/b/f": file(10) }), tree({}));
  assert.deepEqual(p.mkdirs.map((m) => m.path), ["a", "a/b"]);
  assert.deepEqual(p.transfers, [{ op: "copy", path: "a/b/f", size: 10, mtimeMs: 1000, mode: 0o644 }]);
  assert.equal(p.bytes, 10);
  assert.deepEqual(paths(p.dirAttrs), ["a/b", "a", ""]);
  assert.deepEqual(p.dirAttrs[0], { path: "a/b", mtimeMs: 1000, mode: 0o755 });
});

Deno.test("plan() creates the replica root when it does not exist", () => {
  const p = plan(tree({ f: file() }), { entries: new Map() });
  assert.deepEqual(p.mkdirs, [{ op: "mkdir", path: "" }]);
  assert.ok(paths(p.dirAttrs).includes(""));
});

Deno.test("plan() updates a file whose size or mtime differ", async (t) => {
  await t.step("size", () => {
    const p = plan(tree({ f: file(4) }), tree({ f: file(3) }));
    assert.deepEqual(p.transfers, [{ op: "update", path: "f", size: 4, mtimeMs: 1000, mode: 0o644, reason: "size" }]);
  });
  await t.step("mtime", () => {
    const p = plan(tree({ f: file(3, 2000) }), tree({ f: file(3, 1000) }));
    assert.deepEqual(p.transfers, [{ op: "update", path: "f", size: 3, mtimeMs: 2000, mode: 0o644, reason: "mtime" }]);
  });
  await t.step("mode only: attributes, no copy", () => {
    const p = plan(tree({ f: file(3, 1000, 0o600) }), tree({ f: file(3, 1000, 0o644) }));
    assert.deepEqual(p.transfers, [{
      op: "attrs",
      path: "f",
      kind: "file",
      mtimeMs: 1000,
      mode: 0o600,
      reason: "mode",
    }]);
    assert.deepEqual(p.dirAttrs, [], "chmod does not change the parent directory");
  });
});

Deno.test("plan() with checksum decides by content, not mtime", async (t) => {
  await t.step("same size and mtime but different content is updated", () => {
    const p = plan(tree({ f: file() }), tree({ f: file() }), { checksum: true, sameContent: new Set() });
    assert.deepEqual(p.transfers, [
      { op: "update", path: "f", size: 3, mtimeMs: 1000, mode: 0o644, reason: "content" },
    ]);
    assert.deepEqual(paths(p.dirAttrs), [""], "the rename changes the parent's mtime, which is put back");
  });
  await t.step("equal content with another mtime only gets attributes", () => {
    const p = plan(tree({ f: file(3, 5000) }), tree({ f: file(3, 1000) }), {
      checksum: true,
      sameContent: new Set(["f"]),
    });
    assert.deepEqual(p.transfers, [
      { op: "attrs", path: "f", kind: "file", mtimeMs: 5000, mode: 0o644, reason: "mtime" },
    ]);
    assert.deepEqual(p.dirAttrs, []);
  });
});

Deno.test("plan() replaces entries whose type changed, in every direction", async (t) => {
  await t.step("file became a directory", () => {
    const p = plan(tree({ x: dir(), "x/f": file() }), tree({ x: file() }));
    assert.deepEqual(p.mkdirs, [{ op: "mkdir", path: "x", replace: "file" }]);
    assert.deepEqual(p.transfers, [{ op: "copy", path: "x/f", size: 3, mtimeMs: 1000, mode: 0o644 }]);
    assert.deepEqual(p.removes, [{ op: "remove", path: "x", kind: "file", replaced: true }]);
  });
  await t.step("directory became a file: its replica contents are removed one by one first", () => {
    const p = plan(tree({ x: file() }), tree({ x: dir(), "x/a": file(), "x/b": dir(), "x/b/c": file() }));
    assert.deepEqual(p.transfers, [{ op: "copy", path: "x", size: 3, mtimeMs: 1000, mode: 0o644, replace: "dir" }]);
    assert.deepEqual(paths(p.removes), ["x/b/c", "x/b", "x/a", "x"]);
  });
  await t.step("symlink became a directory (never written through)", () => {
    const p = plan(tree({ x: dir(), "x/f": file() }), tree({ x: link("/elsewhere") }));
    assert.deepEqual(p.mkdirs, [{ op: "mkdir", path: "x", replace: "symlink" }]);
  });
  await t.step("directory became a symlink", () => {
    const p = plan(tree({ x: link("t") }), tree({ x: dir(), "x/f": file() }));
    assert.deepEqual(p.transfers, [{ op: "link", path: "x", target: "t", mtimeMs: 1000, replace: "dir" }]);
    assert.deepEqual(paths(p.removes), ["x/f", "x"]);
  });
  await t.step("file became a symlink and back", () => {
    assert.deepEqual(plan(tree({ x: link("t") }), tree({ x: file() })).transfers, [
      { op: "link", path: "x", target: "t", mtimeMs: 1000, replace: "file" },
    ]);
    assert.deepEqual(plan(tree({ x: file() }), tree({ x: link("t") })).transfers, [
      { op: "copy", path: "x", size: 3, mtimeMs: 1000, mode: 0o644, replace: "symlink" },
    ]);
  });
});

Deno.test("plan() relinks a symlink whose target text changed, and keeps link mtimes", () => {
  assert.deepEqual(plan(tree({ l: link("new") }), tree({ l: link("old") })).transfers, [
    { op: "link", path: "l", target: "new", mtimeMs: 1000, replace: "symlink" },
  ]);
  assert.deepEqual(plan(tree({ l: link("t", 2000) }), tree({ l: link("t", 1000) })).transfers, [
    { op: "attrs", path: "l", kind: "symlink", mtimeMs: 2000, mode: 0, reason: "mtime" },
  ]);
});

Deno.test("plan() removes every extraneous entry, each one, children before their directory", () => {
  const p = plan(
    tree({ keep: dir() }),
    tree({
      keep: dir(),
      "keep/old": file(),
      gone: dir(),
      "gone/a": dir(),
      "gone/a/b": file(),
      "gone/c": file(),
      z: link("q"),
    }),
  );
  assert.deepEqual(paths(p.removes), ["z", "gone/c", "gone/a/b", "gone/a", "gone", "keep/old"]);
  assert.deepEqual(p.removes.map((r) => r.kind), ["symlink", "file", "file", "dir", "dir", "file"]);
  assert.equal(countPlan(p).remove, 6, "a removed directory counts 1 plus everything inside it");
  assert.deepEqual(paths(p.dirAttrs), ["keep", ""]);
});

Deno.test("plan() plans the removal of a directory's contents when a file or link replaces it", () => {
  const p = plan(
    tree({ d2f: file(), d2l: link("x") }),
    tree({ d2f: dir(), "d2f/sub": dir(), "d2f/sub/z": file(), d2l: dir(), "d2l/y": file() }),
  );
  assert.deepEqual(
    p.removes.map((r) => `${r.path}${r.replaced ? " (replaced)" : ""}`),
    ["d2f/sub/z", "d2f/sub", "d2f (replaced)", "d2l/y", "d2l (replaced)"],
  );
  assert.deepEqual(p.transfers.map((t) => `${t.op} ${t.path}`), ["copy d2f", "link d2l"]);
  assert.equal(countPlan(p).remove, 5);
});

Deno.test("plan() plans the removal of a file or link that a directory replaces", () => {
  const p = plan(tree({ f2d: dir(), "f2d/x": file() }), tree({ f2d: file() }));
  assert.deepEqual(p.removes, [{ op: "remove", path: "f2d", kind: "file", replaced: true }]);
  assert.deepEqual(p.mkdirs, [{ op: "mkdir", path: "f2d", replace: "file" }]);
});

Deno.test("plan() leaves alone, subtree and all, a replica directory that could not be listed", () => {
  const p = plan(
    tree({ locked: dir(), "locked/a": file(), "locked/sub": dir(), "locked/sub/b": file(), other: file() }),
    tree({ locked: dir(), "locked/stale": file() }, { failed: new Set(["locked"]) }),
  );
  assert.deepEqual(p.transfers.map((t) => t.path), ["other"]);
  assert.deepEqual(p.mkdirs, []);
  assert.deepEqual(p.removes, []);
});

Deno.test("plan() removes nothing under a source directory whose listing is incomplete", () => {
  const p = plan(
    tree({ locked: dir(), other: dir() }, { incomplete: new Set(["locked"]) }),
    tree({
      locked: dir(),
      "locked/a": file(),
      "locked/a2": dir(),
      "locked/a2/b": file(),
      other: dir(),
      "other/x": file(),
    }),
  );
  assert.deepEqual(p.removes.map((r) => r.path), ["other/x"]);
});

Deno.test("plan() removes nothing at all when the source root listing is incomplete", () => {
  const p = plan(tree({}, { incomplete: new Set([""]) }), tree({ a: file(), b: dir(), "b/c": file() }));
  assert.deepEqual(p.removes, []);
});

Deno.test("plan() skips special files and leaves the replica's entry alone", () => {
  const special: Entry = { kind: "other", size: 0, mtimeMs: 1, mode: 0o644 };
  const p = plan(tree({ fifo: special }), tree({ fifo: file() }));
  assert.equal(p.skipped.length, 1);
  assert.deepEqual(p.removes, []);
  assert.deepEqual(p.transfers, []);
});

Deno.test("plan() sets directory attributes when only they differ", () => {
  const p = plan(tree({ d: dir(2000, 0o700) }), tree({ d: dir(1000, 0o755) }));
  assert.deepEqual(p.dirAttrs, [{ path: "d", mtimeMs: 2000, mode: 0o700, reason: "mtime" }]);
  assert.equal(p.transfers.length, 0);
});

Deno.test("plan() puts back the mode of replica directories the scan opened up", () => {
  const p = plan(
    tree({ kept: dir(), "kept/x": dir() }),
    tree({ kept: dir(), "kept/x": dir(), extra: dir() }, { loosened: new Set(["kept/x", "extra"]) }),
  );
  assert.deepEqual(paths(p.dirAttrs), ["kept/x", ""], "the removed 'extra' needs none");
  assert.deepEqual(p.removes.map((r) => r.path), ["extra"]);
});

Deno.test("plan() keeps a part's removals apart from its creations, to be applied first", () => {
  // A name that differs from a new one only in case or normalization is the same name on a
  // case-insensitive file system: its removal must come before the creation, as all do.
  const p = plan(
    tree({ "A.txt": file(), "caf\u00e9": dir(), keep: file() }),
    tree({ "a.txt": file(), "cafe\u0301": dir(), "cafe\u0301/x": file(), other: file() }),
  );
  assert.deepEqual(paths(p.removes).sort(), ["a.txt", "cafe\u0301", "cafe\u0301/x", "other"]);
  assert.deepEqual(paths(p.mkdirs), ["caf\u00e9"]);
});

Deno.test("plan() gives what it creates from a source that keeps no mode 0644 and 0755", () => {
  const dir = { kind: "dir", size: 0, mtimeMs: 1000, mode: UNKNOWN_MODE } as const;
  const file = { kind: "file", size: 3, mtimeMs: 1000, mode: UNKNOWN_MODE } as const;
  const p = plan({ root: dir, entries: new Map<string, Entry>([["d", dir], ["d/f", file]]) }, { entries: new Map() });
  assert.deepEqual(p.transfers.map((t) => [t.path, t.op === "copy" ? t.mode : undefined]), [["d/f", 0o644]]);
  assert.deepEqual(p.dirAttrs.map((d) => [d.path, d.mode]), [["d", 0o755], ["", 0o755]]);
});
