import assert from "node:assert/strict";
import ignore from "ignore";
import { compileFilter } from "../lib/engine/filter_compile.ts";
import type { PathFilter } from "../lib/model/filter.ts";

/** What a walk decides: an entry is left out when it, or a directory above it, is excluded. */
function walkExcludes(filter: PathFilter, path: string, isDir: boolean): boolean {
  const parts = path.split("/");
  for (let k = 1; k < parts.length; k++) if (filter.excludes(parts.slice(0, k).join("/"), true)) return true;
  return filter.excludes(path, isDir);
}

const PATTERN_SETS: string[][] = [
  ["*.tmp"],
  ["node_modules/"],
  ["/build"],
  ["**/cache/**"],
  ["*.tmp", "!keep.tmp"],
  ["docs/*.md", "!docs/README.md"],
  ["a/**/b"],
  ["**/foo"],
  ["foo/**"],
  ["*.[oa]"],
  ["[!a]*.c"],
  ["\\#x", "\\!y"],
  ["sp\\ ", "trailing   "],
  ["a?c"],
  [".git"],
  ["x/", "/y/"],
  ["*", "!*.keep", "!*/"],
  ["a/*"],
  ["lib/**/*.ts", "!lib/keep/**"],
  ["# a comment", "", "  ", "*.log"],
  ["build/", "!build/"],
  ["*.bak", "/out/", "!/out/keep.txt"],
  ["*.log", "!foo/**"],
  ["*.log", "!**/foo/**"],
  ["x[1]"],
  ["x[12]", "!x2"],
];

const PATHS: Array<[string, boolean]> = [
  ["foo/baz.log", false],
  ["foo/bar/baz.log", false],
  ["foo/bar", true],
  ["q/foo/bar/baz.log", false],
  ["baz.log", false],
  ["x1", false],
  ["x[1]", false],
  ["x2", false],
  ["a.tmp", false],
  ["keep.tmp", false],
  ["x/keep.tmp", false],
  ["node_modules", true],
  ["a/node_modules", true],
  ["node_modules", false],
  ["build", true],
  ["build", false],
  ["a/build", true],
  ["a/cache/x", false],
  ["a/cache", true],
  ["a/cache/cache", true],
  ["cache/y", false],
  ["docs/a.md", false],
  ["docs/README.md", false],
  ["docs/sub/a.md", false],
  ["a/b", false],
  ["a/x/y/b", true],
  ["foo", false],
  ["z/foo", true],
  ["foo/x", false],
  ["foo", true],
  ["x.o", false],
  ["y.a", false],
  ["b.c", false],
  ["a.c", false],
  ["#x", false],
  ["!y", false],
  ["sp ", false],
  ["trailing", false],
  ["abc", false],
  ["a/abc", false],
  [".git", true],
  ["sub/.git", true],
  ["x", true],
  ["x", false],
  ["q/x", true],
  ["y", true],
  ["q/y", true],
  ["a/z", false],
  ["a/z/w", false],
  ["f.keep", false],
  ["d/f.keep", false],
  ["lib/a.ts", false],
  ["lib/x/y/a.ts", false],
  ["lib/keep/a.ts", false],
  ["c.ts", false],
  ["app.log", false],
  ["logs/app.log", false],
  ["out", true],
  ["out/keep.txt", false],
  ["out/other.txt", false],
  ["a.bak", false],
  [".hidden.tmp", false],
  ["dir.tmp", true],
];

Deno.test("PathFilter decides as the ignore package (gitignore rules) does, for a walk", async (t) => {
  for (const patterns of PATTERN_SETS) {
    await t.step(JSON.stringify(patterns), () => {
      const filter = compileFilter({ patterns })!;
      const oracle = ignore().add(patterns);
      const wrong = PATHS.filter(([path, isDir]) =>
        walkExcludes(filter, path, isDir) !== oracle.ignores(isDir ? `${path}/` : path)
      );
      assert.deepEqual(wrong, [], "paths decided otherwise than by the ignore package");
    });
  }
});

Deno.test("PathFilter excludes foldersync's own files, rotated log copies with them", () => {
  const filter = compileFilter({ patterns: ["!*"], ownFiles: ["logs/sync.log"], ownDirs: [".cache/fs"] })!;
  assert.equal(filter.excludes("logs/sync.log", false), true);
  assert.equal(filter.excludes("logs/sync.log.3", false), true);
  assert.equal(filter.excludes("logs/sync.log.old", false), false);
  assert.equal(filter.excludes("logs/sync.logx", false), false);
  assert.equal(filter.excludes(".cache/fs", true), true);
  assert.equal(filter.excludes(".cache/fs", false), false);
  assert.equal(compileFilter({ patterns: ["", "# only comments"] }), undefined, "nothing to exclude");
});

Deno.test("PathFilter.excludesAnywhere() tests a path's directories too, for watch events", () => {
  const filter = compileFilter({ patterns: ["node_modules/", "*.tmp"] })!;
  assert.equal(filter.excludesAnywhere("web/node_modules/x/y.js"), true);
  assert.equal(filter.excludesAnywhere("web/node_modules"), true);
  assert.equal(filter.excludesAnywhere("a/b.tmp"), true);
  assert.equal(filter.excludesAnywhere("a/b.txt"), false);
});
