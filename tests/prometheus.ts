/**
 * A strict reader of Prometheus' text exposition format (version 0.0.4), for the tests of
 * `--metrics`: it refuses what Prometheus' own parser refuses, and more (a missing TYPE or
 * HELP, a trailing comma), and lints the names as `promtool check metrics` does.
 *
 * @module
 */

/** One sample: its metric name, labels and value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed file: each metric's type and help, and every sample in order. */
export interface Exposition {
  types: Map<string, string>;
  help: Map<string, string>;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = ["counter", "gauge", "histogram", "summary", "untyped"];

/** A Go ParseFloat value as the format allows it. */
function parseValue(text: string, where: string): number {
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`${where}: bad value '${text}'`);
  return Number(text);
}

/** A HELP text with its escapes (`\\` and `\n` only) undone. */
function unescapeHelp(text: string, where: string): string {
  return text.replace(/\\(.?)/g, (_, c: string) => {
    if (c === "\\") return "\\";
    if (c === "n") return "\n";
    throw new Error(`${where}: bad escape in HELP: '\\${c}'`);
  });
}

/** Reads `{a="x",b="y"}` from `text` at `i`; returns the labels and the index after `}`. */
function parseLabels(text: string, start: number, where: string): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  let i = start + 1;
  if (text[i] === "}") return [labels, i + 1];
  for (;;) {
    const name = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i))?.[0];
    if (name === undefined) throw new Error(`${where}: bad label name at ${i}`);
    if (name.startsWith("__")) throw new Error(`${where}: reserved label name '${name}'`);
    if (name in labels) throw new Error(`${where}: label '${name}' twice`);
    i += name.length;
    if (text[i] !== "=" || text[i + 1] !== '"') throw new Error(`${where}: expected =" after '${name}'`);
    i += 2;
    let value = "";
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === "\n") throw new Error(`${where}: raw line feed in a label value`);
      if (c === '"') break;
      if (c === "\\") {
        const next = text[i + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else throw new Error(`${where}: bad escape in a label value: '\\${next}'`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    labels[name] = value;
    i++;
    if (text[i] === "}") return [labels, i + 1];
    if (text[i] !== ",") throw new Error(`${where}: expected , or } at ${i}`);
    i++;
    if (text[i] === "}") throw new Error(`${where}: trailing comma in labels`);
  }
}

/**
 * Parses `text`, refusing anything the format does not allow: no final line feed, a sample
 * before its TYPE (or without HELP), HELP or TYPE twice, the samples of one metric not
 * together, a series twice, bad names, escapes or values, timestamps.
 */
export function parseExposition(text: string): Exposition {
  if (!text.endsWith("\n")) throw new Error("The text does not end with a line feed");
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  const done = new Set<string>();
  const series = new Set<string>();
  let current: string | undefined;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, index) => {
    const where = `line ${index + 1}`;
    if (line === "") throw new Error(`${where}: empty line`);
    if (line.startsWith("#")) {
      const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!meta) return; // a comment
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name '${name}'`);
      if (done.has(name) || current === name) {
        throw new Error(`${where}: ${kind} of '${name}' after its samples`);
      }
      const map = kind === "HELP" ? help : types;
      if (map.has(name)) throw new Error(`${where}: ${kind} of '${name}' twice`);
      if (kind === "TYPE" && !TYPES.includes(rest)) throw new Error(`${where}: bad type '${rest}'`);
      map.set(name, kind === "HELP" ? unescapeHelp(rest, where) : rest);
      return;
    }
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (name === undefined) throw new Error(`${where}: bad sample '${line}'`);
    let i = name.length;
    let labels: Record<string, string> = {};
    if (line[i] === "{") [labels, i] = parseLabels(line, i, where);
    if (line[i] !== " ") throw new Error(`${where}: expected one space before the value`);
    const rest = line.slice(i + 1).split(" ");
    if (rest.length !== 1) throw new Error(`${where}: a timestamp or extra text: '${line.slice(i + 1)}'`);
    const value = parseValue(rest[0]!, where);
    if (!types.has(name)) throw new Error(`${where}: sample of '${name}' without a TYPE before it`);
    if (!help.has(name)) throw new Error(`${where}: sample of '${name}' without a HELP before it`);
    if (current !== name) {
      if (current !== undefined) done.add(current);
      if (done.has(name)) throw new Error(`${where}: samples of '${name}' are not together`);
      current = name;
    }
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (series.has(key)) throw new Error(`${where}: series twice: ${key}`);
    series.add(key);
    samples.push({ name, labels, value });
  });
  for (const name of [...types.keys(), ...help.keys()]) {
    if (!samples.some((s) => s.name === name)) throw new Error(`Metric '${name}' has no sample`);
  }
  return { types, help, samples };
}

/**
 * Lints metric and label names as Prometheus' naming guide and `promtool check metrics` do:
 * snake case, counters and only counters end in `_total`, base units (seconds, bytes), no
 * unit in a label, no help text empty. Returns the problems found.
 */
export function lintNames(exposition: Exposition): string[] {
  const problems: string[] = [];
  for (const [name, type] of exposition.types) {
    if (name !== name.toLowerCase()) problems.push(`${name}: not snake case`);
    if (type === "counter" && !name.endsWith("_total")) problems.push(`${name}: a counter without _total`);
    if (type !== "counter" && name.endsWith("_total")) problems.push(`${name}: _total on a ${type}`);
    if (/_(milliseconds|microseconds|nanoseconds|minutes|hours|days|kilobytes|megabytes|bits)(_|$)/.test(name)) {
      problems.push(`${name}: not in a base unit`);
    }
    if (/(time|duration|timestamp)$/.test(name)) problems.push(`${name}: a time without _seconds`);
    if (!name.includes("_")) problems.push(`${name}: no namespace prefix`);
    if ((exposition.help.get(name) ?? "").trim() === "") problems.push(`${name}: empty HELP`);
  }
  for (const sample of exposition.samples) {
    for (const label of Object.keys(sample.labels)) {
      if (!LABEL_NAME.test(label) || label !== label.toLowerCase()) problems.push(`${sample.name}: label '${label}'`);
    }
  }
  return problems;
}

/** The value of the sample of `name` whose labels include `labels`; throws when there is not exactly one. */
export function sampleOf(exposition: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = exposition.samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name}${JSON.stringify(labels)}`);
  return found[0]!.value;
}
