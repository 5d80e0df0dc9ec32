import assert from "node:assert/strict";
import { attrsDiffer, decide, modesDiffer, mtimeWindow, sameMtime } from "../lib/engine/decide.ts";
import { type Entry, UNKNOWN_MODE } from "../lib/model/listing.ts";

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
    assert.equal(attrsDiffer(dir(1000, 0o700), dir(1000, 0o755), { caps: noModes, kind: "dir" }), undefined);
  });
  await t.step("directory mtimes only where directory times are kept", () => {
    const noDirTimes = { ...seconds, dirTimes: false };
    assert.equal(attrsDiffer(dir(1000, 0o755), dir(9000, 0o755), { caps: noDirTimes, kind: "dir" }), undefined);
    assert.equal(attrsDiffer(dir(1000, 0o755), dir(9000, 0o700), { caps: noDirTimes, kind: "dir" }), "mode");
    assert.equal(attrsDiffer(file(3, 1000, 0o644), file(3, 9000, 0o644), { caps: noDirTimes }), "mtime");
  });
});

Deno.test("decide() settles on a replica that rounds mtimes up as well as one that truncates them", async (t) => {
  const fat = { modes: true, dirTimes: true, linkTimes: true, mtimeResolutionMs: 2000 };
  await t.step("FAT keeps 2 s: truncated (Linux) or rounded up (Windows), the copy is the same", () => {
    assert.equal(decide(file(3, 1_700_000_001_500), file(3, 1_700_000_000_000), { caps: fat }), "same");
    assert.equal(decide(file(3, 1_700_000_001_500), file(3, 1_700_000_002_000), { caps: fat }), "same");
    assert.equal(decide(file(3, 1_700_000_003_500), file(3, 1_700_000_000_000), { caps: fat }), "mtime");
  });
  await t.step("--modify-window widens the window, and never narrows the replica's own", () => {
    const ms = { ...fat, mtimeResolutionMs: 1 };
    assert.equal(decide(file(3, 10_000), file(3, 12_000), { caps: ms }), "mtime");
    assert.equal(decide(file(3, 10_000), file(3, 12_000), { caps: ms, modifyWindowMs: 2000 }), "same");
    assert.equal(decide(file(3, 10_000), file(3, 12_001), { caps: ms, modifyWindowMs: 2000 }), "mtime");
    assert.equal(mtimeWindow(fat, 1000), 1999);
    assert.equal(attrsDiffer(dir(10_000), dir(13_000), { caps: ms, kind: "dir", modifyWindowMs: 3000 }), undefined);
  });
  await t.step("sameMtime() is exact with no window", () => {
    assert.equal(sameMtime(1, 2, 0), false);
    assert.equal(sameMtime(2, 2, 0), true);
  });
});

Deno.test("decide() and attrsDiffer() take what a side does not know as no difference, on either side", () => {
  const unknown = { kind: "file", size: 3, mtimeMs: 1000, mode: UNKNOWN_MODE } as const;
  assert.equal(decide(unknown, file(3, 1000, 0o600)), "same");
  assert.equal(decide(file(3, 1000, 0o600), unknown), "same");
  assert.equal(attrsDiffer(dir(NaN, 0o755), dir(5000, 0o755), { kind: "dir" }), undefined);
  assert.equal(attrsDiffer(dir(NaN, UNKNOWN_MODE), dir(5000, 0o700), { kind: "dir" }), undefined);
  assert.equal(modesDiffer(0o644, 0o600), true);
});
