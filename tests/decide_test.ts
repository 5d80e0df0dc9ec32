import assert from "node:assert/strict";
import { attrsDiffer, decide } from "../lib/engine/decide.ts";
import type { Entry } from "../lib/engine/listing.ts";

const file = (size = 3, mtimeMs = 1000, mode = 0o644): Entry => ({ kind: "file", size, mtimeMs, mode });
const dir = (mtimeMs = 1000, mode = 0o755): Entry => ({ kind: "dir", size: 0, mtimeMs, mode });
const link = (target: string, mtimeMs = 1000): Entry => ({ kind: "symlink", size: 1, mtimeMs, mode: 0o777, target });

Deno.test("decide() names what differs between a source and a replica entry", async (t) => {
  const cases: Array<[string, Entry | undefined, Entry | undefined, string, boolean?]> = [
    ["equal files", file(), file(), "same"],
    ["only in the replica", undefined, file(), "extra"],
    ["only in the source", dir(), undefined, "missing"],
    ["a special file", { kind: "other", size: 0, mtimeMs: 1, mode: 0 }, file(), "special"],
    ["file against directory", file(), dir(), "type"],
    ["link against file", link("a"), file(), "type"],
    ["two directories, even with other attributes", dir(5), dir(6, 0o700), "dir"],
    ["link targets", link("a"), link("b"), "target"],
    ["link mtimes", link("a", 1), link("a", 2), "mtime"],
    ["sizes", file(3), file(4), "size"],
    ["mtimes", file(3, 1), file(3, 2), "mtime"],
    ["modes alone", file(3, 1, 0o600), file(3, 1, 0o644), "mode"],
    ["sizes, with checksum", file(3), file(4), "size", true],
    ["same size, with checksum: content decides, not mtime", file(3, 1), file(3, 2), "content", true],
  ];
  for (const [name, source, replica, expected, checksum] of cases) {
    await t.step(name, () => assert.equal(decide(source, replica, { checksum: checksum ?? false }), expected));
  }
});

Deno.test("attrsDiffer() compares mode and mtime only, and names which differs", () => {
  assert.equal(attrsDiffer(dir(1, 0o755), dir(1, 0o755)), undefined);
  assert.equal(attrsDiffer(dir(1, 0o755), dir(2, 0o755)), "mtime");
  assert.equal(attrsDiffer(file(3, 1, 0o600), file(9, 1, 0o644)), "mode");
});

Deno.test("decide() and attrsDiffer() compare only what the replica keeps", async (t) => {
  const seconds = { modes: true, dirTimes: true, linkTimes: false, mtimeResolutionMs: 1000 };
  await t.step("mtimes to the replica's resolution: a whole-second copy is the same file", () => {
    assert.equal(
      decide(file(3, 1_700_000_000_999, 0o644), file(3, 1_700_000_000_000, 0o644), { caps: seconds }),
      "same",
    );
    assert.equal(
      decide(file(3, 1_700_000_001_000, 0o644), file(3, 1_700_000_000_000, 0o644), { caps: seconds }),
      "mtime",
    );
    assert.equal(decide(file(3, 1_700_000_000_999, 0o644), file(3, 1_700_000_000_000, 0o644)), "mtime");
  });
  await t.step("a link's mtime only where link times are kept", () => {
    const a = { kind: "symlink", size: 1, mtimeMs: 1000, mode: 0, target: "x" } as const;
    assert.equal(decide(a, { ...a, mtimeMs: 5000 }, { caps: seconds }), "same");
    assert.equal(decide(a, { ...a, mtimeMs: 5000 }), "mtime");
  });
  await t.step("modes only where modes are kept", () => {
    const noModes = { ...seconds, modes: false };
    assert.equal(decide(file(3, 1000, 0o600), file(3, 1000, 0o644), { caps: noModes }), "same");
    assert.equal(attrsDiffer(dir(1000, 0o700), dir(1000, 0o755), noModes, "dir"), undefined);
  });
  await t.step("directory mtimes only where directory times are kept", () => {
    const noDirTimes = { ...seconds, dirTimes: false };
    assert.equal(attrsDiffer(dir(1000, 0o755), dir(9000, 0o755), noDirTimes, "dir"), undefined);
    assert.equal(attrsDiffer(dir(1000, 0o755), dir(9000, 0o700), noDirTimes, "dir"), "mode");
    assert.equal(attrsDiffer(file(3, 1000, 0o644), file(3, 9000, 0o644), noDirTimes), "mtime");
  });
});
