/**
 * The docs cannot drift from the code: every option the command line takes is documented in
 * docs/usage.md, no page names an option foldersync lacks, and every relative link between
 * README.md, CONTRIBUTING.md and docs/ resolves, its #anchor included.
 */
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { OPTIONS } from "../lib/cli/cli.ts";
import { SERVICE_OPTIONS } from "../lib/service/cli.ts";
import { ROOT } from "./helpers.ts";

/** README, CONTRIBUTING and every page of docs/. */
function pages(): string[] {
  const docs = [...Deno.readDirSync(join(ROOT, "docs"))]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => join(ROOT, "docs", e.name));
  return [join(ROOT, "README.md"), join(ROOT, "CONTRIBUTING.md"), ...docs.sort()];
}

/**
 * Options of other programs that the pages name where they compare or explain: never taken
 * for foldersync's. Kept small and explicit: a test fails when one is no longer named.
 */
const FOREIGN: ReadonlyMap<string, string> = new Map([
  // Deno's permission flags and the commands that install foldersync.
  ["allow-all", "deno"],
  ["allow-env", "deno"],
  ["allow-net", "deno"],
  ["allow-read", "deno"],
  ["allow-run", "deno"],
  ["allow-sys", "deno"],
  ["allow-write", "deno"],
  ["deny-write", "deno"],
  ["root", "deno install --root"],
  ["global", "deno uninstall --global"],
  // rsync and rclone, where foldersync is compared with them.
  ["backup", "rsync --backup"],
  ["delete", "rsync --delete"],
  ["delete-during", "rsync --delete-during"],
  ["links", "rclone copy --links"],
  ["metadata", "rclone --metadata"],
  ["download", "rclone check --download"],
  // Other tools' command lines the pages quote.
  ["bind", "mount --bind"],
  ["check", "sha256sum --check"],
  ["ignore-missing", "sha256sum --ignore-missing"],
  ["repo", "gh attestation verify --repo"],
  ["user", "systemctl --user, journalctl --user"],
  ["collector", "node_exporter --collector.textfile.directory"],
]);

/**
 * The options of the benchmarks (`deno task bench`, `bench --remote`, `bench:watch`), read
 * from their parseArgs tables in bench/, and `--remote`, which bench.ts looks for itself.
 */
function benchOptions(): Set<string> {
  const names = new Set<string>();
  for (const entry of Deno.readDirSync(join(ROOT, "bench"))) {
    if (!entry.name.endsWith(".ts")) continue;
    const text = Deno.readTextFileSync(join(ROOT, "bench", entry.name));
    for (const m of text.matchAll(/"?([a-z][a-z0-9-]*)"?:\s*\{\s*type:\s*"(?:string|boolean)"/g)) names.add(m[1]!);
    for (const m of text.matchAll(/Deno\.args\.includes\("--([a-z][a-z0-9-]*)"\)/g)) names.add(m[1]!);
  }
  return names;
}

/** The benchmarks' options. */
const BENCH: ReadonlySet<string> = benchOptions();

/** The options foldersync takes, sync's and service's. */
const OURS: ReadonlySet<string> = new Set<string>([...Object.keys(OPTIONS), ...SERVICE_OPTIONS]);

/** `--name` as a whole option name in `text`: not the start of a longer one (`--log` in `--log-format`). */
function namesOption(text: string, name: string): boolean {
  const escaped = name.replace(/[-_]/g, (c) => `\\${c}`);
  return new RegExp(`(?<![\\w-])--${escaped}(?![\\w-])`).test(text);
}

/** Every `--name` a text names. */
function optionsNamed(text: string): string[] {
  return [...text.matchAll(/(?<![\w-])--([a-z][a-z0-9]*(?:[-_][a-z0-9]+)*)/g)].map((m) => m[1]!);
}

/** The anchors GitHub makes of a page's headings (outside fenced code), `-1`, `-2` for repeats. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const slug = heading[1]!.toLowerCase().replace(/[^\p{L}\p{N}\p{M} _-]/gu, "").replaceAll(" ", "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

/** The relative links of a page (`[text](target)`), outside fenced code. */
function links(markdown: string): string[] {
  const found: string[] = [];
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced) continue;
    for (const match of line.matchAll(/\]\(([^)\s]+)\)/g)) found.push(match[1]!);
  }
  return found.filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** What is wrong with the relative links of `page`: a file that is not there, or an anchor it lacks. */
function brokenLinks(page: string, text: string): string[] {
  const broken: string[] = [];
  for (const target of links(text)) {
    const hash = target.indexOf("#");
    const file = hash === -1 ? target : target.slice(0, hash);
    const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
    const path = file === "" ? page : join(dirname(page), decodeURIComponent(file));
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch {
      broken.push(`${relative(ROOT, page)}: ${target} (no such file)`);
      continue;
    }
    if (anchor === undefined) continue;
    if (!info.isFile || !path.endsWith(".md")) {
      broken.push(`${relative(ROOT, page)}: ${target} (an anchor into what is not a page)`);
    } else if (!anchors(Deno.readTextFileSync(path)).has(anchor)) {
      broken.push(`${relative(ROOT, page)}: ${target} (no such heading)`);
    }
  }
  return broken;
}

Deno.test("docs/usage.md documents every option the command line takes", () => {
  const usage = Deno.readTextFileSync(join(ROOT, "docs", "usage.md"));
  const missing = [...OURS].filter((name) => !namesOption(usage, name));
  assert.deepEqual(missing, [], "options the CLI takes that docs/usage.md does not name");
});

Deno.test("no page names an option foldersync lacks", () => {
  const unknown: string[] = [];
  for (const page of pages()) {
    for (const name of optionsNamed(Deno.readTextFileSync(page))) {
      if (!OURS.has(name) && !BENCH.has(name) && !FOREIGN.has(name)) unknown.push(`${relative(ROOT, page)}: --${name}`);
    }
  }
  assert.deepEqual([...new Set(unknown)], [], "options the pages name that foldersync does not take");
});

Deno.test("the list of other programs' options holds only names a page uses and foldersync lacks", () => {
  assert.ok(BENCH.has("remote") && BENCH.has("excludes") && BENCH.has("files"), `bench options read: ${[...BENCH]}`);
  const named = new Set(pages().flatMap((page) => optionsNamed(Deno.readTextFileSync(page))));
  const unused = [...FOREIGN.keys()].filter((name) => !named.has(name));
  assert.deepEqual(unused, [], "FOREIGN entries no page names: remove them");
  const ours = [...FOREIGN.keys()].filter((name) => OURS.has(name) || BENCH.has(name));
  assert.deepEqual(ours, [], "FOREIGN entries that are foldersync's or its benchmarks' own options");
});

Deno.test("relative links between README, CONTRIBUTING and docs resolve, anchors included", () => {
  const broken = pages().flatMap((page) => brokenLinks(page, Deno.readTextFileSync(page)));
  assert.deepEqual(broken, [], "links that lead nowhere");
});

Deno.test("anchors() and brokenLinks() follow GitHub's heading slugs and find what is missing", async (t) => {
  await t.step("slugs drop punctuation, keep hyphens and underscores, number repeats", () => {
    const page =
      "# Exit codes\n## Excludes: `--exclude`, `--exclude-from`\n## Exit codes\n```sh\n# not a heading\n```\n";
    assert.deepEqual([...anchors(page)], ["exit-codes", "excludes---exclude---exclude-from", "exit-codes-1"]);
  });
  await t.step("a missing file and a missing heading are both reported; a good link is not", () => {
    const page = join(ROOT, "README.md");
    const text = "[a](docs/usage.md) [b](docs/nope.md) [c](docs/usage.md#no-such-heading) [d](#figures) " +
      "[e](https://example.com/x.md)";
    assert.deepEqual(brokenLinks(page, text), [
      "README.md: docs/nope.md (no such file)",
      "README.md: docs/usage.md#no-such-heading (no such heading)",
    ]);
  });
});
