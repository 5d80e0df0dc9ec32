/**
 * Excludes in gitignore syntax, and foldersync's own files, as one test on a relative path.
 *
 * The globs are picomatch's (compiled to regular expressions by filter_compile.ts, the only
 * module that loads it, so that the walk's worker never does); this module adds only
 * gitignore's rules around them: `#`
 * comments, `!` to re-include, a trailing `/` for directories only, a leading or inner `/` to
 * anchor a pattern at the root (else it matches a name at any depth), a trailing `/**` for
 * everything inside, and the last matching pattern wins. The `ignore` package implements the
 * same rules and is the oracle of the tests; it is not used at run time because it tests every
 * parent of a path again and caches every path it has seen (about 2 us a path, and memory that
 * grows with the tree, against 0.3 us and none here, with four everyday patterns): a walk never enters an excluded
 * directory, so the parents are already decided.
 *
 * @module
 */

/** What a filter is made of: plain data, so that it can cross into the walk's worker. */
export interface FilterSpec {
  /** Patterns in gitignore syntax, in order (later ones win). */
  patterns: string[];
  /**
   * foldersync's own files inside the tree (its log file, whose rotated copies `NAME.1`,
   * `NAME.2` ... go with it), as relative paths: always excluded, whatever the patterns say.
   */
  ownFiles?: string[];
  /** foldersync's own directories inside the tree (the hash cache), as relative paths. */
  ownDirs?: string[];
}

/** One gitignore rule, compiled: plain data, so that it can cross into the walk's worker. */
export interface CompiledRule {
  negate: boolean;
  dirOnly: boolean;
  /** Matched against the name alone (a pattern without a slash), else the whole path. */
  byName: boolean;
  /** For `base/**`: only what is inside `base` matches, never `base` itself. */
  inside: boolean;
  /** The glob as a regular expression (picomatch's), source and flags. */
  source: string;
  flags: string;
}

/** A {@linkcode FilterSpec} with its patterns compiled (by filter_compile.ts). */
export interface CompiledFilter {
  rules: CompiledRule[];
  ownFiles: string[];
  ownDirs: string[];
}

interface Rule extends CompiledRule {
  regex: RegExp;
}

/**
 * Whether `base/**` matches `path`: some folder above it matches `base`. To exclude, the parent
 * is enough, since a walk never gets below an excluded folder; to re-include (`!base/**`),
 * every folder above counts, as in git: `!foo/**` keeps `foo/bar/baz.log` too.
 */
function insideMatch(rule: Rule, path: string, slash: number): boolean {
  if (!rule.negate) return rule.regex.test(path.slice(0, slash));
  for (let at = path.indexOf("/"); at !== -1 && at <= slash; at = path.indexOf("/", at + 1)) {
    if (rule.regex.test(path.slice(0, at))) return true;
  }
  return false;
}

/**
 * Why a pattern given on the command line can match nothing, or undefined when it can: an empty
 * one, or one of only `!`, `/` and `*`-free anchors (`-x /` would exclude nothing, not
 * everything). PURE: the globs themselves are checked when they are compiled.
 *
 * @example Checking a pattern
 * ```ts
 * patternProblem("/"); // "Exclude pattern names nothing"
 * patternProblem("*.tmp"); // undefined
 * ```
 */
export function patternProblem(pattern: string): string | undefined {
  let p = pattern.replace(/(?<!\\)[ \t]+$/, "");
  if (p.startsWith("!")) p = p.slice(1);
  p = p.replace(/\/+$/, "").replace(/^\/+/, "").replace(/\/\*\*$/, "");
  return p === "" ? "Exclude pattern names nothing" : undefined;
}

/**
 * A compiled {@linkcode FilterSpec}: {@linkcode PathFilter.excludes} tells whether a path is
 * left out.
 *
 * @example Excluding
 * ```ts
 * const filter = compileFilter({ patterns: ["*.tmp", "!keep.tmp", "node_modules/", "/build"] })!;
 * filter.excludes("a/b.tmp", false); // true
 * filter.excludes("keep.tmp", false); // false
 * filter.excludes("x/node_modules", true); // true
 * filter.excludes("x/build", true); // false: anchored at the root
 * ```
 */
export class PathFilter {
  /** The compiled rules and own files, to make the same filter in the walk's worker. */
  readonly compiled: CompiledFilter;
  #rules: Rule[];
  #ownFiles: Set<string>;
  #ownDirs: Set<string>;

  private constructor(compiled: CompiledFilter) {
    this.compiled = compiled;
    this.#rules = compiled.rules.map((r) => ({ ...r, regex: new RegExp(r.source, r.flags) }));
    this.#ownFiles = new Set(compiled.ownFiles);
    this.#ownDirs = new Set(compiled.ownDirs);
  }

  /** The filter of `compiled`; undefined when it excludes nothing, so that callers skip the test. */
  static of(compiled: CompiledFilter): PathFilter | undefined {
    const empty = compiled.rules.length === 0 && compiled.ownFiles.length === 0 && compiled.ownDirs.length === 0;
    return empty ? undefined : new PathFilter(compiled);
  }

  /**
   * True when the entry at relative path `path` (`/`-separated) is excluded. Its parent
   * directories are taken as not excluded: a walk never enters an excluded directory.
   */
  excludes(path: string, isDir: boolean): boolean {
    if (isDir ? this.#ownDirs.has(path) : this.#isOwnFile(path)) return true;
    const rules = this.#rules;
    const slash = path.lastIndexOf("/");
    const name = slash === -1 ? path : path.slice(slash + 1);
    for (let i = rules.length - 1; i >= 0; i--) {
      const rule = rules[i]!;
      if (rule.dirOnly && !isDir) continue;
      if (rule.inside) {
        if (slash !== -1 && insideMatch(rule, path, slash)) return !rule.negate;
        continue;
      }
      if (rule.regex.test(rule.byName ? name : path)) return !rule.negate;
    }
    return false;
  }

  /**
   * True when `path`, or any directory above it, is excluded: for paths met outside a walk
   * (file-system events), whose kind may be gone. The path itself is tested as a file and as a
   * directory.
   */
  excludesAnywhere(path: string): boolean {
    let slash = path.indexOf("/");
    while (slash !== -1) {
      if (this.excludes(path.slice(0, slash), true)) return true;
      slash = path.indexOf("/", slash + 1);
    }
    return this.excludes(path, false) || this.excludes(path, true);
  }

  #isOwnFile(path: string): boolean {
    if (this.#ownFiles.size === 0) return false;
    if (this.#ownFiles.has(path)) return true;
    const dot = path.lastIndexOf(".");
    return dot > 0 && /^\d+$/.test(path.slice(dot + 1)) && this.#ownFiles.has(path.slice(0, dot));
  }
}
