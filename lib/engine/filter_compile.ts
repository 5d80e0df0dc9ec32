/**
 * Compiles a {@linkcode FilterSpec}'s gitignore lines into rules with picomatch. Loaded only
 * when something is excluded, and only in the thread that plans (loading an npm module costs
 * every thread that does ~40 ms): the walk's worker gets the compiled rules as plain data.
 *
 * @module
 */

// @ts-types="npm:@types/picomatch@4.0.3"
import picomatch from "picomatch";
import { type CompiledFilter, type CompiledRule, type FilterSpec, PathFilter } from "../model/filter.ts";

// literalBrackets false: `x[1]` is a bracket expression (matching `x1`), as in git, not also the name `x[1]`.
const GLOB = { dot: true, nonegate: true, noext: true, nobrace: true, literalBrackets: false } as const;

/** One gitignore line as a rule, or undefined for a blank line or a comment. */
function compileRule(line: string): CompiledRule | undefined {
  if (line === "" || line.startsWith("#")) return undefined;
  let p = line.replace(/(?<!\\)[ \t]+$/, "");
  if (p === "") return undefined;
  let negate = false;
  if (p.startsWith("!")) {
    negate = true;
    p = p.slice(1);
  } else if (p.startsWith("\\!") || p.startsWith("\\#")) {
    p = p.slice(1);
  }
  let dirOnly = false;
  if (p.endsWith("/")) {
    dirOnly = true;
    p = p.slice(0, -1);
  }
  const anchored = p.includes("/");
  if (p.startsWith("/")) p = p.slice(1);
  let inside = false;
  if (p.endsWith("/**")) {
    inside = true;
    p = p.slice(0, -3);
  }
  if (p === "") return undefined;
  // gitignore (POSIX) negates a bracket expression with `[!...]`, which picomatch misreads.
  p = p.replace(/(?<!\\)\[!/g, "[^");
  const regex = picomatch.makeRe(p, GLOB);
  // A name pattern is matched against the name, which PathFilter.excludes() cuts once.
  return { negate, dirOnly, byName: !anchored, inside, source: regex.source, flags: regex.flags };
}

/**
 * Compiles `spec` into a {@linkcode PathFilter}; undefined when it excludes nothing.
 *
 * @example Excluding
 * ```ts
 * const filter = compileFilter({ patterns: ["*.tmp", "node_modules/"] });
 * filter?.excludes("a/b.tmp", false); // true
 * ```
 */
export function compileFilter(spec: FilterSpec | undefined): PathFilter | undefined {
  if (!spec) return undefined;
  const compiled: CompiledFilter = {
    rules: spec.patterns.map(compileRule).filter((r): r is CompiledRule => r !== undefined),
    ownFiles: spec.ownFiles ?? [],
    ownDirs: spec.ownDirs ?? [],
  };
  return PathFilter.of(compiled);
}
