import assert from "node:assert/strict";
import { join } from "node:path";
import * as plist from "plist";
import { DOMParser } from "@xmldom/xmldom";
import { parseServiceCommand } from "../lib/service/cli.ts";
import { EXIT_MANAGER_FAILED, EXIT_NOT_INSTALLED, type RunResult } from "../lib/service/install.ts";
import { type Runtime, syncArguments } from "../lib/service/locate.ts";
import { parseCommand } from "../lib/cli/cli.ts";
import { runService, type RunServiceOptions } from "../lib/service/run.ts";
import { UsageError } from "../lib/model/errors.ts";
import { remoteTest, sftpFolder, sftpServer } from "./remote_env.ts";
import {
  assertMirror,
  CI_LINUX,
  MAIN,
  mirrorDiff,
  POSIX,
  ROOT,
  runMain,
  snapshot,
  tempDir,
  toolAvailable,
  type TreeSpec,
  writeTree,
} from "./helpers.ts";

const FROM_SOURCE: Runtime = { execPath: Deno.execPath(), mainPath: MAIN };
const COMPILED: Runtime = { execPath: Deno.execPath() };
const ok: RunResult = { code: 0, stdout: "", stderr: "" };

/** runService with captured output, an env of our own and a recorder for the service manager. */
async function service(
  argv: string[],
  env: Record<string, string>,
  options: RunServiceOptions & { answer?: (program: string, args: string[]) => RunResult } = {},
) {
  const out: string[] = [];
  const err: string[] = [];
  const calls: string[][] = [];
  const code = await runService(argv, {
    runtime: FROM_SOURCE,
    ...options,
    env: (name) => env[name],
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    run: (program, args) => {
      calls.push([program, ...args]);
      return Promise.resolve(options.answer?.(program, args) ?? ok);
    },
  });
  return { code, out: out.join("\n"), err, calls };
}

/** A source and a (missing) replica whose names need quoting, and a fake home. */
async function setup(root: string) {
  const source = join(root, "my source %h");
  // Windows forbids '"' in names.
  const replica = join(root, POSIX ? 'replica $HOME "q"' : "replica $HOME q");
  const home = join(root, "home");
  await writeTree(source, { "a.txt": "a", d: { "b.txt": "b" } });
  await Deno.mkdir(home);
  return { source, replica, home, env: { HOME: home, LOCALAPPDATA: join(home, "AppData", "Local") } };
}

/** Splits a Windows command line the way CommandLineToArgvW does. */
function splitWindows(line: string): string[] {
  const args: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === " " || line[i] === "\t") i++;
    if (i >= line.length) break;
    let arg = "";
    let quoted = false;
    for (; i < line.length; i++) {
      const ch = line[i]!;
      if (ch === "\\") {
        let n = 0;
        while (line[i] === "\\") n++, i++;
        if (line[i] === '"') {
          arg += "\\".repeat(Math.floor(n / 2));
          if (n % 2 === 1) arg += '"';
          else quoted = !quoted;
        } else {
          arg += "\\".repeat(n);
          i--;
        }
      } else if (ch === '"') quoted = !quoted;
      else if (!quoted && (ch === " " || ch === "\t")) break;
      else arg += ch;
    }
    args.push(arg);
  }
  return args;
}

Deno.test("parseServiceCommand() reads both shapes and refuses a service without a schedule", async (t) => {
  await using dir = await tempDir();
  await t.step("--watch is long-running; --every is scheduled; service options go anywhere", () => {
    const long = parseServiceCommand(["print", "docs", dir.path, "/x", "--watch", "--platform", "launchd"]);
    assert.equal(long.action, "print");
    assert.ok("sync" in long && long.sync.watch && long.everyMs === undefined && long.platform === "launchd");
    const every = parseServiceCommand(["install", "docs", "--every=1h", dir.path, "/x", "--scope", "system", "-c"]);
    assert.ok("sync" in every && every.everyMs === 3_600_000 && every.scope === "system" && every.sync.checksum);
  });
  await t.step("usage errors", () => {
    const cases: [string[], RegExp][] = [
      [["print", "docs", dir.path, "/x"], /needs --every DURATION .* or --interval or --watch/],
      [["print", "docs", dir.path, "/x", "--every", "1h", "-i", "5m"], /Choose one of --every/],
      [["print", "docs", dir.path, "/x", "--every", "30s"], /at least one minute: '30s'/],
      [["print", "docs", dir.path, "/x", "--every", "soon"], /Every must be a duration .*: 'soon'/],
      [["print", "docs", dir.path, "/x", "-w", "--platform", "upstart"], /Platform must be .*: 'upstart'/],
      [["print", "docs", dir.path, "/x", "-w", "--scope", "everyone"], /Scope must be user or system: 'everyone'/],
      [["print", "bad name", dir.path, "/x", "-w"], /Service name must be .*: 'bad name'/],
      [["print", "docs", dir.path, "/x", "-w", "-n"], /cannot be a dry run/],
      [["print", "docs", dir.path, "/x", "-w", "--frobnicate"], /Unknown option: '--frobnicate'/],
      [["restart", "docs"], /Unknown service action: 'restart'/],
      [["status", "docs", "extra"], /Unexpected argument: 'extra'/],
      [["install"], /Missing service name/],
    ];
    for (const [argv, message] of cases) {
      assert.throws(() => parseServiceCommand(argv), (e) => e instanceof UsageError && message.test(e.message));
    }
  });
});

const hasSystemdAnalyze = await toolAvailable("systemd-analyze");

Deno.test({
  name: hasSystemdAnalyze || CI_LINUX
    ? "systemd units of both shapes and scopes pass systemd-analyze verify"
    : "systemd units pass systemd-analyze verify (skipped: systemd-analyze is not installed)",
  ignore: !(hasSystemdAnalyze || CI_LINUX) || !POSIX,
  fn: async (t) => {
    await using dir = await tempDir();
    const { source, replica, env } = await setup(dir.path);
    const runtime = join(dir.path, "runtime");
    await Deno.mkdir(runtime);
    const shapes: [string, string[], Runtime][] = [
      ["long-running from source", ["--watch", "-i", "1h", "-l", join(dir.path, "logs", "s.log")], FROM_SOURCE],
      ["scheduled from source", ["--every", "15m", "-c", "--cache-dir", join(dir.path, "cache")], FROM_SOURCE],
      ["long-running compiled", ["-i", "10m"], COMPILED],
      ["scheduled compiled", ["--every", "1d", "-q"], COMPILED],
    ];
    for (const scope of ["user", "system"]) {
      for (const [what, flags, runtime] of shapes) {
        await t.step(`${what}, ${scope}`, async () => {
          const unitDir = join(dir.path, `units-${scope}-${what.replaceAll(" ", "-")}`);
          const args = ["print", "docs", source, replica, ...flags, "--platform", "systemd", "--scope", scope];
          const printed = await service(args, env, { runtime, unitDir });
          assert.equal(printed.code, 0, printed.err.join("\n"));
          // Install the same definition into the folder with a recorder, then verify the files there.
          const installed = await service(["install", ...args.slice(1)], env, { runtime, unitDir });
          assert.equal(installed.code, 0, installed.err.join("\n"));
          const files = [...Deno.readDirSync(unitDir)].map((e) => join(unitDir, e.name)).sort();
          const scheduled = flags.includes("--every");
          assert.deepEqual(files.map((f) => f.slice(unitDir.length + 1)), [
            "foldersync-docs.service",
            ...(scheduled ? ["foldersync-docs.timer"] : []),
          ]);
          const service_ = Deno.readTextFileSync(files[0]!);
          assert.match(service_, scheduled ? /^Type=oneshot$/m : /^Type=simple$/m);
          if (!scheduled) assert.match(service_, /^Restart=on-failure$/m);
          else assert.match(Deno.readTextFileSync(files[1]!), /^OnUnitInactiveSec=\d+s$/m);
          if (runtime.mainPath) assert.match(service_, /^# Runs from source: 'deno run' with unscoped read and write/m);
          for (const file of files) assert.ok(printed.out.includes(Deno.readTextFileSync(file).trimEnd()));
          const verify = async (extra: string[], envVars: Record<string, string> = {}) => {
            const out = await new Deno.Command("systemd-analyze", {
              args: ["verify", ...extra, ...files],
              env: envVars,
              stdout: "piped",
              stderr: "piped",
            }).output();
            const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
            assert.equal(out.code, 0, text);
            assert.equal(text.trim(), "", `systemd-analyze verify printed:\n${text}`);
          };
          await verify([]);
          if (scope === "user") {
            const runtimeDir = join(dir.path, "xdg-runtime");
            await Deno.mkdir(runtimeDir, { recursive: true, mode: 0o700 });
            await verify(["--user"], { XDG_RUNTIME_DIR: runtimeDir });
          }
        });
      }
    }
  },
});

Deno.test("launchd plist parses as a property list with the right ProgramArguments, and runs a real sync", async (t) => {
  await using dir = await tempDir();
  const { source, replica, home, env } = await setup(dir.path);
  const log = join(home, "Library", "Logs", "foldersync-docs.log");

  await t.step("long-running: KeepAlive, RunAtLoad, its own rotated log", async () => {
    const { code, out, err } = await service(["print", "docs", source, replica, "-w", "--platform", "launchd"], env);
    assert.equal(code, 0, err.join("\n"));
    // deno-lint-ignore no-explicit-any
    const p = plist.parse(out) as any;
    assert.equal(p.Label, "foldersync.docs");
    assert.deepEqual(p.KeepAlive, { SuccessfulExit: false });
    assert.equal(p.RunAtLoad, true);
    assert.equal(p.StartInterval, undefined);
    assert.equal(p.StandardErrorPath, join(home, "Library", "Logs", "foldersync-docs.stderr.log"));
    assert.deepEqual(p.ProgramArguments, [
      Deno.execPath(),
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-write",
      `--deny-write=${source}`,
      "--allow-env=HOME,XDG_CACHE_HOME,LOCALAPPDATA",
      MAIN,
      source,
      replica,
      "--watch",
      "--log",
      log,
      "--log-max-size",
      String(10 * 1024 * 1024),
    ]);
  });

  const python = await toolAvailable("python3");
  await t.step({
    name: python
      ? "python3's plistlib reads the same ProgramArguments"
      : "python3's plistlib reads the same ProgramArguments (skipped: no python3)",
    ignore: !python,
    fn: async () => {
      const { out } = await service(["print", "docs", source, replica, "-w", "--platform", "launchd"], env);
      const child = new Deno.Command("python3", {
        args: ["-c", "import json, plistlib, sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(out));
      await writer.close();
      const result = await child.output();
      assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
      const parsed = JSON.parse(new TextDecoder().decode(result.stdout));
      // deno-lint-ignore no-explicit-any
      assert.deepEqual(parsed.ProgramArguments, (plist.parse(out) as any).ProgramArguments);
      assert.deepEqual(parsed.KeepAlive, { SuccessfulExit: false });
    },
  });

  await t.step("scheduled, compiled: StartInterval and the binary as it is", async () => {
    const argv = [
      "print",
      "docs",
      source,
      replica,
      "--every",
      "2h",
      "--platform",
      "launchd",
      "-l",
      join(dir.path, "x.log"),
    ];
    const { code, out } = await service(argv, env, { runtime: COMPILED });
    assert.equal(code, 0);
    // deno-lint-ignore no-explicit-any
    const p = plist.parse(out) as any;
    assert.equal(p.StartInterval, 7200);
    assert.equal(p.KeepAlive, undefined);
    assert.deepEqual(p.ProgramArguments, [
      Deno.execPath(),
      source,
      replica,
      "--log",
      join(dir.path, "x.log"),
      "--log-max-size",
      "10485760",
    ]);
  });

  await t.step(
    "the ProgramArguments of a scheduled definition from source sync a tree with links under its grants",
    async () => {
      // Enough directories for the walk worker, and --checksum for the hash worker: both need read access to the code.
      const spec: TreeSpec = {};
      for (let i = 0; i < 30; i++) spec[`d${i}`] = { "f.txt": `file ${i}` };
      if (POSIX) Object.assign(spec, { "to-file": { link: "d0/f.txt" }, "to-dir": { link: "d1" } });
      await writeTree(source, spec);
      const cache = join(dir.path, "cache");
      const argv = [
        "print",
        "docs",
        source,
        replica,
        "--every",
        "1h",
        "--platform",
        "launchd",
        "-c",
        "--cache-dir",
        cache,
      ];
      const { out } = await service(argv, env);
      // deno-lint-ignore no-explicit-any
      const [program, ...args] = (plist.parse(out) as any).ProgramArguments as string[];
      await Deno.mkdir(join(home, "Library", "Logs"), { recursive: true });
      const run = await new Deno.Command(program!, { args, stdout: "piped", stderr: "piped" }).output();
      const stderr = new TextDecoder().decode(run.stderr);
      assert.equal(run.code, 0, stderr);
      assert.equal(stderr, "");
      await assertMirror(source, replica);
      assert.match(await Deno.readTextFile(log), /Sync done: .* 0 errors/);
    },
  );
});

Deno.test("Task Scheduler XML parses and names the right command and trigger", async (t) => {
  await using dir = await tempDir();
  const { source, replica, env } = await setup(dir.path);
  const parse = (text: string) => {
    const doc = new DOMParser({
      onError: (level, message) => {
        if (level !== "warning") throw new Error(message);
      },
    }).parseFromString(text, "text/xml");
    const ns = "http://schemas.microsoft.com/windows/2004/02/mit/task";
    const all = (name: string) => Array.from(doc.getElementsByTagNameNS(ns, name));
    const one = (name: string) => all(name)[0]?.textContent ?? undefined;
    assert.equal(doc.documentElement?.localName, "Task");
    return { all, one };
  };
  const dataDir = join(env.LOCALAPPDATA, "foldersync", "docs");

  await t.step("long-running user task: at log-on, never twice, restarted on failure", async () => {
    const { code, out } = await service(["print", "docs", source, replica, "-w", "--platform", "windows"], env);
    assert.equal(code, 0);
    const x = parse(out);
    assert.equal(x.all("LogonTrigger").length, 1);
    assert.equal(x.all("TimeTrigger").length, 0);
    assert.equal(x.one("MultipleInstancesPolicy"), "IgnoreNew");
    assert.equal(x.one("ExecutionTimeLimit"), "PT0S");
    assert.equal(x.all("RestartOnFailure").length, 1);
    assert.equal(x.one("Command"), Deno.execPath());
    const logDir = Deno.build.os === "windows" ? dataDir : dataDir; // printed with the platform's own separators
    const args = splitWindows(x.one("Arguments")!);
    assert.equal(args[0], "run");
    assert.equal(args.at(-5), "--watch");
    assert.deepEqual(args.slice(-7, -5), [source, replica]);
    assert.equal(args.at(-4), "--log");
    assert.ok(args.at(-3)!.startsWith(logDir.slice(0, logDir.indexOf("AppData"))), args.at(-3));
    assert.match(args.at(-3)!, /foldersync.docs.foldersync\.log$/);
    assert.deepEqual(args.slice(-2), ["--log-max-size", "10485760"]);
  });

  await t.step("scheduled system task: a repetition trigger, as SYSTEM", async () => {
    const argv = ["print", "docs", source, replica, "--every", "90m", "--platform", "windows", "--scope", "system"];
    const { code, out } = await service(argv, { ...env, ProgramData: join(dir.path, "ProgramData") }, {
      runtime: COMPILED,
    });
    assert.equal(code, 0);
    const x = parse(out);
    assert.equal(x.all("TimeTrigger").length, 1);
    assert.equal(x.one("Interval"), "PT1H30M");
    assert.equal(x.one("UserId"), "S-1-5-18");
    assert.equal(x.all("BootTrigger").length, 0);
    assert.equal(x.one("MultipleInstancesPolicy"), "IgnoreNew");
    assert.equal(x.one("Command"), Deno.execPath());
    assert.deepEqual(splitWindows(x.one("Arguments")!).slice(0, 2), [source, replica]);
  });
});

Deno.test("install and uninstall write and remove the files and call the service manager as expected", async (t) => {
  await using dir = await tempDir();
  const { source, replica, home, env } = await setup(dir.path);

  await t.step(
    "systemd (unit folder redirected): daemon-reload, enable, restart; then disable --now and reload",
    async () => {
      const unitDir = join(dir.path, "units");
      const argv = ["docs", source, replica, "--every", "1h", "--platform", "systemd"];
      const before = await snapshot(home);
      const inst = await service(["install", ...argv], env, { unitDir });
      assert.equal(inst.code, 0, inst.err.join("\n"));
      assert.deepEqual(await snapshot(home), before, "nothing written outside the unit folder");
      assert.deepEqual(inst.calls, [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "foldersync-docs.timer"],
        ["systemctl", "--user", "restart", "foldersync-docs.timer"],
      ]);
      const printed = await service(["print", ...argv], env, { unitDir });
      const timer = await Deno.readTextFile(join(unitDir, "foldersync-docs.timer"));
      assert.ok(printed.out.includes(timer.trimEnd()));

      const status = await service(["status", "docs", "--platform", "systemd"], env, {
        unitDir,
        answer: () => ({
          code: 0,
          stdout:
            "Id=foldersync-docs.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=exit-code\n" +
            "ExecMainStatus=3\nExecMainExitTimestamp=Sun 2026-11-22 04:00:00 UTC\n\n" +
            "Id=foldersync-docs.timer\nLoadState=loaded\nActiveState=active\nSubState=waiting\n",
          stderr: "",
        }),
      });
      assert.equal(status.code, 0);
      assert.match(status.out, /installed/);
      assert.match(status.out, /last run: exit-code, exit status 3, ended Sun 2026-11-22/);
      assert.match(status.out, /foldersync-docs\.timer: active \(waiting\)/);
      assert.equal(
        status.calls[0]?.slice(0, 5).join(" "),
        "systemctl --user show foldersync-docs.service foldersync-docs.timer",
      );

      const un = await service(["uninstall", "docs", "--platform", "systemd"], env, { unitDir });
      assert.equal(un.code, 0, un.err.join("\n"));
      assert.deepEqual(un.calls, [
        ["systemctl", "--user", "disable", "--now", "foldersync-docs.service", "foldersync-docs.timer"],
        ["systemctl", "--user", "daemon-reload"],
      ]);
      assert.deepEqual([...Deno.readDirSync(unitDir)], []);
      const again = await service(["uninstall", "docs", "--platform", "systemd"], env, { unitDir });
      assert.equal(again.code, 1);
      assert.equal(again.calls.length, 0);
    },
  );

  await t.step("launchd (HOME redirected): unload, load -w; log folder created; unload -w on uninstall", async () => {
    const inst = await service(["install", "docs", source, replica, "-w", "--platform", "launchd"], env);
    assert.equal(inst.code, 0, inst.err.join("\n"));
    const plistPath = join(home, "Library", "LaunchAgents", "foldersync.docs.plist");
    assert.deepEqual(inst.calls, [["launchctl", "unload", plistPath], ["launchctl", "load", "-w", plistPath]]);
    assert.ok((await Deno.stat(join(home, "Library", "Logs"))).isDirectory);
    // deno-lint-ignore no-explicit-any
    assert.equal((plist.parse(await Deno.readTextFile(plistPath)) as any).Label, "foldersync.docs");
    const status = await service(["status", "docs", "--platform", "launchd"], env, {
      answer: () => ({ code: 0, stdout: '{\n\t"LastExitStatus" = 256;\n\t"PID" = 4242;\n};\n', stderr: "" }),
    });
    assert.match(status.out, /running \(pid 4242\)/);
    assert.match(status.out, /last run: exit code 1/);
    const un = await service(["uninstall", "docs", "--platform", "launchd"], env);
    assert.equal(un.code, 0);
    assert.deepEqual(un.calls, [["launchctl", "unload", "-w", plistPath]]);
    await assert.rejects(Deno.stat(plistPath), Deno.errors.NotFound);
  });

  await t.step("windows (LOCALAPPDATA redirected): UTF-16 XML, /Create then /Run; /End and /Delete", async () => {
    const inst = await service(["install", "docs", source, replica, "--every", "1h", "--platform", "windows"], env);
    assert.equal(inst.code, 0, inst.err.join("\n"));
    const xmlPath = join(env.LOCALAPPDATA, "foldersync", "docs", "task.xml");
    assert.deepEqual(inst.calls, [
      ["schtasks", "/End", "/TN", "\\foldersync\\docs"],
      ["schtasks", "/Create", "/TN", "\\foldersync\\docs", "/XML", xmlPath, "/F"],
      ["schtasks", "/Run", "/TN", "\\foldersync\\docs"],
    ]);
    const bytes = await Deno.readFile(xmlPath);
    assert.deepEqual([...bytes.slice(0, 4)], [0xff, 0xfe, 0x3c, 0x00]);
    assert.match(new TextDecoder("utf-16le").decode(bytes), /<Interval>PT1H<\/Interval>/);
    const status = await service(["status", "docs", "--platform", "windows"], env, {
      answer: () => ({
        code: 0,
        stdout: "Status:        Ready\nLast Run Time: 11/22/2026\nLast Result:   0\n",
        stderr: "",
      }),
    });
    assert.match(status.out, /state: Ready/);
    assert.match(status.out, /result 0/);
    const un = await service(["uninstall", "docs", "--platform", "windows"], env);
    assert.equal(un.code, 0);
    assert.deepEqual(un.calls.map((c) => c[1]), ["/End", "/Delete"]);
    await assert.rejects(Deno.stat(xmlPath), Deno.errors.NotFound);
  });

  await t.step("a service manager that fails: files written, what to run said, exit 6", async () => {
    const unitDir = join(dir.path, "units2");
    const inst = await service(["install", "docs", source, replica, "-w", "--platform", "systemd"], env, {
      unitDir,
      answer: () => ({ code: 1, stdout: "", stderr: "Failed to connect to bus: No medium found\n" }),
    });
    assert.equal(inst.code, EXIT_MANAGER_FAILED);
    assert.ok((await Deno.stat(join(unitDir, "foldersync-docs.service"))).isFile);
    assert.match(
      inst.err[0]!,
      /did not enable it: 'systemctl --user daemon-reload' exited 1: Failed to connect to bus/,
    );
    assert.match(inst.err[1]!, /systemctl --user daemon-reload && systemctl --user enable foldersync-docs.service/);
  });
});

Deno.test("main.ts: service print works, and bad input exits 2 with one line and writes nothing", async (t) => {
  await using dir = await tempDir();
  const { source, replica, home } = await setup(dir.path);
  // Deno keeps its cache under HOME unless told: keep it where it is.
  const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" }).output();
  const denoDir: string = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir;
  const env = { HOME: home, XDG_CONFIG_HOME: join(home, ".config"), DENO_DIR: denoDir };
  const permissions = [
    "--quiet",
    "--allow-read",
    "--allow-write",
    "--allow-env=HOME,XDG_CACHE_HOME,XDG_CONFIG_HOME,LOCALAPPDATA",
    "--allow-run=systemctl,launchctl,schtasks",
  ];

  await t.step("print", async () => {
    const out = await runMain(["service", "print", "docs", source, replica, "-w", "--platform", "systemd"], {
      permissions,
      env,
    });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^Type=simple$/m);
    assert.match(out.stdout, /^ExecStart=.* --allow-read --allow-write "--deny-write=.*main\.ts .*--watch$/m);
    assert.deepEqual([...Deno.readDirSync(home)], []);
  });

  await t.step("bad input", async () => {
    const cases: string[][] = [
      ["install", "docs", source, replica],
      ["install", "docs", join(dir.path, "missing"), replica, "-w"],
      ["install", "docs", source, join(source, "inside"), "-w"],
      ["install", "docs", source, replica, "--every", "10s"],
      ["install", "docs", source, replica, "-w", "--platform", "upstart"],
      ["install", "bad/name", source, replica, "-w"],
      ["install", "docs", source, replica, "-w", "--jobs", "0"],
      ["install", "docs", source, replica, "-w", "-l", join(replica, "in-replica.log")],
      ["print", "docs", source, replica, "--every", "1h", "--watch"],
    ];
    const before = await snapshot(dir.path);
    for (const args of cases) {
      const out = await runMain(["service", ...args], { permissions, env });
      assert.equal(out.code, 2, `${args.join(" ")}: ${out.stderr}`);
      const lines = out.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, out.stderr);
      assert.match(lines[0]!, /^foldersync: [A-Z]/);
      assert.equal(out.stdout, "");
    }
    assert.deepEqual(await snapshot(dir.path), before);
  });

  const noSystemd = Deno.build.os === "linux" && await toolAvailable("systemctl") &&
    !(await Deno.stat("/run/systemd/system").then(() => true, () => false));
  await t.step({
    name: noSystemd
      ? "install where systemd is not running: writes the units, says what to run, exits 5"
      : "install where systemd is not running (skipped: systemd runs here, or no systemctl)",
    ignore: !noSystemd,
    fn: async () => {
      const out = await runMain(["service", "install", "docs", source, replica, "--every", "1h"], { permissions, env });
      assert.equal(out.code, 6, out.stderr);
      assert.match(out.stderr, /the files are written, but the service manager did not enable it/);
      assert.match(out.stderr, /enable it with: systemctl --user daemon-reload && systemctl --user enable/);
      const unitDir = join(home, ".config", "systemd", "user");
      assert.deepEqual([...Deno.readDirSync(unitDir)].map((e) => e.name).sort(), [
        "foldersync-docs.service",
        "foldersync-docs.timer",
      ]);
    },
  });
});

Deno.test("main.ts loads lib/service only for the service subcommand", async () => {
  const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json", MAIN], stdout: "piped" }).output();
  const modules: { specifier: string }[] = JSON.parse(new TextDecoder().decode(info.stdout)).modules;
  const statics = modules.map((m) => m.specifier).filter((s) => s.includes("/lib/"));
  assert.ok(statics.some((s) => s.endsWith("/lib/cli/cli.ts")));
  // deno info follows dynamic imports too; what matters is that main.ts imports it only dynamically.
  const main = await Deno.readTextFile(MAIN);
  assert.doesNotMatch(main, /^import .*lib\/service/m);
  assert.match(main, /await import\("\.\/lib\/service\/run\.ts"\)/);
  for (const file of ["cli/cli.ts", "config.ts", "model/errors.ts", "log.ts", "run/schedule.ts"]) {
    assert.doesNotMatch(await Deno.readTextFile(join(ROOT, "lib", file)), /from "(\.\.?\/)+service\//, file);
  }
});

Deno.test("syncArguments() passes excludes on to the service, with --exclude-from files made absolute", () => {
  const command = parseCommand([
    "/data",
    "/backup",
    "-w",
    "-x",
    "*.tmp",
    "--exclude",
    "node_modules/",
    "--delete-excluded",
  ]);
  if (command.kind !== "sync") throw new Error("a sync command");
  const args = syncArguments(command.options, { source: "/data", replica: "/backup", excludeFrom: ["/etc/fs.ignore"] });
  assert.deepEqual(args.slice(args.indexOf("--exclude")), [
    "--exclude",
    "*.tmp",
    "--exclude",
    "node_modules/",
    "--exclude-from",
    "/etc/fs.ignore",
    "--delete-excluded",
  ]);
});

Deno.test("service print for an SFTP replica: ssh to run, its options, no grant for ~/.ssh, no write access to a URL", async () => {
  await using dir = await tempDir();
  const source = join(dir.path, "site");
  const home = join(dir.path, "home");
  await writeTree(source, { "index.html": "hi" });
  await Deno.mkdir(home);
  const key = join(home, "deploy_key");
  const config = join(home, "ssh_config");
  const argv = [
    "print",
    "site",
    source,
    "deploy@web1:/var/www/site",
    "--ssh-key",
    key,
    "--ssh-port",
    "2222",
    "--ssh-config",
    config,
    "--ssh-option",
    "ProxyJump=bastion",
  ];
  const printed = await service([...argv, "-i", "10m", "--platform", "systemd"], { HOME: home });
  assert.equal(printed.code, 0, printed.err.join("\n"));
  const exec = printed.out.split("\n").find((l) => l.startsWith("ExecStart="))!;
  assert.match(exec, / --allow-run=ssh /);
  assert.doesNotMatch(exec, / --allow-net/, "ssh reaches the network itself");
  assert.match(exec, / --allow-sys=hostname /);
  assert.ok(!exec.includes(join(home, ".ssh")), `ssh reads ~/.ssh itself: ${exec}`);
  assert.ok(exec.includes(`--ssh-key ${key}`), exec);
  assert.ok(exec.includes(`--ssh-config ${config}`), exec);
  assert.ok(exec.includes("--ssh-option ProxyJump=bastion"), exec);
  assert.match(exec, /deploy@web1:\/var\/www\/site/);
  assert.match(exec, /--ssh-port 2222/);
  const writes = / --allow-write=(\S*)/.exec(exec)?.[1] ?? "";
  assert.ok(!writes.includes("web1"), `no write grant for a URL: ${writes}`);
});

/** Splits an `ExecStart=` line as systemd does for the words foldersync writes: double quotes, `\` escapes, `%%`, `$$`. */
function splitExecStart(line: string): string[] {
  const words: string[] = [];
  const text = line.replace(/^ExecStart=/, "");
  let i = 0;
  while (i < text.length) {
    while (text[i] === " ") i++;
    if (i >= text.length) break;
    let word = "";
    if (text[i] === '"') {
      for (i++; text[i] !== '"'; i++) {
        if (i >= text.length) throw new Error(`Unterminated quote in: ${line}`);
        word += text[i] === "\\" ? text[++i] : text[i];
      }
      i++;
    } else {
      while (i < text.length && text[i] !== " ") word += text[i++];
    }
    words.push(word.replaceAll("%%", "%").replaceAll("$$", "$"));
  }
  return words;
}

const denoDir: string = JSON.parse(
  new TextDecoder().decode(
    (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" }).output()).stdout,
  ),
).denoDir;

Deno.test({
  name:
    "service print under --allow-read --allow-write alone needs no HOME, and its ExecStart copies a tree with links",
  ignore: !POSIX,
  fn: async () => {
    await using dir = await tempDir();
    const source = join(dir.path, "my photos");
    const replica = join(dir.path, "backup $HOME %h");
    const home = join(dir.path, "home");
    await Deno.mkdir(home);
    await writeTree(source, {
      "a.jpg": "a",
      album: { "b.jpg": "b", "cover.jpg": { link: "b.jpg" } },
      "latest": { link: "album" },
      "dangling": { link: "nowhere/at/all" },
    });
    // The design card's command, with a log beside the source (its folder holds the source).
    const argv = ["service", "print", "photos", "my photos", replica, "--platform", "systemd", "--every", "1h"];
    const printed = await runMain([...argv, "-l", "./rel.log"], { cwd: dir.path });
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stderr, "");
    assert.match(printed.stdout, /^# File: foldersync-photos\.service$/m);
    const line = printed.stdout.split("\n").find((l) => l.startsWith("ExecStart="))!;
    const [program, ...args] = splitExecStart(line);
    assert.equal(program, Deno.execPath());
    assert.deepEqual(args.slice(0, 6), [
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-write",
      `--deny-write=${source}`,
      "--allow-env=HOME,XDG_CACHE_HOME,LOCALAPPDATA",
    ]);
    assert.ok(!args.some((a) => a.startsWith("--allow-write=")), `no grant of a folder: ${line}`);
    // Run exactly that, as systemd would: from /, with the user's HOME (its lock folder).
    const run = await new Deno.Command(program!, {
      args,
      cwd: "/",
      env: { HOME: home, DENO_DIR: denoDir },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 0, stderr + new TextDecoder().decode(run.stdout));
    assert.equal(stderr, "");
    await assertMirror(source, replica);
    assert.equal(await Deno.readLink(join(replica, "latest")), "album");
    const log = await Deno.readTextFile(join(dir.path, "rel.log"));
    assert.match(log, /Sync done: .* 3 linked, .* 0 errors/);
    assert.equal([...Deno.readDirSync(join(home, ".cache", "foldersync", "locks"))].length, 1, "its lock file");
  },
});

Deno.test("serviceCommand() keeps the source read-only unless a file of the service lies in it", async () => {
  await using dir = await tempDir();
  const { source, replica, env } = await setup(dir.path);
  const exec = async (extra: string[]) => {
    const printed = await service(["print", "docs", source, replica, "-w", "--platform", "systemd", ...extra], env);
    assert.equal(printed.code, 0, printed.err.join("\n"));
    return splitExecStart(printed.out.split("\n").find((l) => l.startsWith("ExecStart="))!);
  };
  assert.ok((await exec([])).includes(`--deny-write=${source}`));
  const logInSource = await exec(["-l", join(source, "sync.log")]);
  assert.ok(!logInSource.some((a) => a.startsWith("--deny-write")), logInSource.join(" "));
  const homeIsSource = await service(["print", "docs", source, replica, "-w", "--platform", "systemd"], {
    HOME: source,
  });
  const line = homeIsSource.out.split("\n").find((l) => l.startsWith("ExecStart="))!;
  assert.doesNotMatch(line, /--deny-write/, "the lock folder lies in the source");
});

Deno.test("service print for a remote replica grants the log file and its rotated copies, never the folder holding the source", async () => {
  await using dir = await tempDir();
  const source = join(dir.path, "site");
  const home = join(dir.path, "home");
  await writeTree(source, { "index.html": "hi" });
  await Deno.mkdir(home);
  const log = join(dir.path, "site.log");
  const exec = async (extra: string[]) => {
    const argv = ["print", "site", source, "deploy@web1:/var/www/site", "-i", "10m", "--platform", "systemd", ...extra];
    const printed = await service(argv, { HOME: home });
    assert.equal(printed.code, 0, printed.err.join("\n"));
    const line = printed.out.split("\n").find((l) => l.startsWith("ExecStart="))!;
    const grant = (flag: string) => (new RegExp(` ${flag}=(\\S*)`).exec(line)?.[1] ?? "").split(",");
    return { writes: grant("--allow-write"), reads: grant("--allow-read") };
  };
  // Then the cache folder (the host's lock file of the replica), wherever this machine keeps it.
  const rotating = await exec(["-l", log, "--log-max-size", "2K", "--log-keep", "2"]);
  assert.deepEqual(rotating.writes.slice(0, -1), [log, `${log}.1`, `${log}.2`]);
  assert.match(rotating.writes.at(-1)!, /foldersync$/);
  for (const grants of [rotating.writes, rotating.reads]) assert.ok(!grants.includes(dir.path), grants.join(","));
  const plain = await exec(["-l", log]);
  assert.deepEqual(plain.writes.slice(0, -1), [log]);
  const defaultKeep = await exec(["-l", log, "--log-max-size", "2K"]);
  assert.deepEqual(defaultKeep.writes.slice(0, -1), [log, ...[1, 2, 3, 4, 5].map((n) => `${log}.${n}`)]);
});

remoteTest(
  "a remote service's ExecStart syncs into SFTP under its scoped grants and rotates its log there",
  "sftp",
  sftpServer,
  async (server) => {
    await using dir = await tempDir();
    await using dst = await sftpFolder(server);
    const source = join(dir.path, "site");
    const home = join(dir.path, "home");
    await Deno.mkdir(home);
    const files: TreeSpec = { "link": { link: "f0.txt" } };
    for (let i = 0; i < 80; i++) files[`f${i}.txt`] = `file ${i}`;
    await writeTree(source, files);
    const log = join(dir.path, "site.log");
    const argv = ["print", "site", source, dst.url, ...dst.args, "--every", "1h", "--platform", "systemd"];
    const printed = await service([...argv, "-l", log, "--log-max-size", "1K", "--log-keep", "2"], { HOME: home });
    assert.equal(printed.code, 0, printed.err.join("\n"));
    const [program, ...args] = splitExecStart(printed.out.split("\n").find((l) => l.startsWith("ExecStart="))!);
    const run = await new Deno.Command(program!, {
      args,
      cwd: "/",
      env: { HOME: home, DENO_DIR: denoDir, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 0, stderr);
    assert.equal(stderr, "");
    assert.equal(await mirrorDiff(source, dst.path), "");
    assert.ok((await Deno.stat(`${log}.1`)).isFile, "the log rotated under file grants");
    assert.match(await Deno.readTextFile(log), /Sync done: .* 0 errors/);
  },
);

Deno.test("docs/running.md and docs/safety.md give the exit codes that the service commands return", async () => {
  const running = await Deno.readTextFile(join(ROOT, "docs", "running.md"));
  const section = running.slice(running.indexOf("## Run as a service"), running.indexOf("### Linux (systemd)"));
  const manager = /service manager does not run[^.]*?exits (\d+)/s.exec(section)?.[1];
  assert.equal(Number(manager), EXIT_MANAGER_FAILED, "install where the service manager does not run");
  const status = /`status` [^.]*?exits (\d+) when installed, (\d+)\s+when not/s.exec(section);
  assert.deepEqual([Number(status?.[1]), Number(status?.[2])], [0, EXIT_NOT_INSTALLED]);
  const uninstall = /`uninstall` [^.]*?exits (\d+), or (\d+) when it is not installed\. Both\s+exit (\d+)/s.exec(
    section,
  );
  assert.deepEqual(uninstall?.slice(1).map(Number), [0, EXIT_NOT_INSTALLED, EXIT_MANAGER_FAILED]);
  assert.match(section, /exits 2 and\s+writes nothing/);
  const safety = await Deno.readTextFile(join(ROOT, "docs", "safety.md"));
  const table = safety.slice(safety.indexOf("## Exit codes"));
  assert.match(table, new RegExp(`\\| ${EXIT_MANAGER_FAILED} +\\| \`foldersync service install\``));
});

Deno.test("service print for an S3 replica: the network, the AWS variables and ~/.aws", async () => {
  await using dir = await tempDir();
  const source = join(dir.path, "site");
  const home = join(dir.path, "home");
  await writeTree(source, { "index.html": "hi" });
  await Deno.mkdir(home);
  const printed = await service(["print", "site", source, "s3://bucket/site", "-i", "10m", "--platform", "systemd"], {
    HOME: home,
  });
  assert.equal(printed.code, 0, printed.err.join("\n"));
  const exec = printed.out.split("\n").find((l) => l.startsWith("ExecStart="))!;
  assert.match(exec, / --allow-net /);
  assert.doesNotMatch(exec, /--allow-run/);
  assert.match(exec, / --allow-env=\S*AWS_ACCESS_KEY_ID\S*HOME/);
  assert.ok(exec.includes(join(home, ".aws")), exec);
});

Deno.test("service print for a remote source grants what its backend needs, and leaves the local replica writable", async () => {
  await using dir = await tempDir();
  const home = join(dir.path, "home");
  await Deno.mkdir(home);
  const replica = join(dir.path, "restored");
  const exec = async (source: string) => {
    const printed = await service(["print", "restore", source, replica, "-i", "1h", "--platform", "systemd"], {
      HOME: home,
    });
    assert.equal(printed.code, 0, printed.err.join("\n"));
    return printed.out.split("\n").find((l) => l.startsWith("ExecStart="))!;
  };
  const fromBucket = await exec("s3://backups/photos");
  assert.match(fromBucket, / --allow-read --allow-write /, "a local replica copies links: unscoped grants");
  assert.doesNotMatch(fromBucket, /--deny-write/, "no local source to keep read-only");
  assert.match(fromBucket, / --allow-net /);
  assert.match(fromBucket, / --allow-env=\S*AWS_ACCESS_KEY_ID/);
  assert.match(fromBucket, / s3:\/\/backups\/photos /);
  const fromServer = await exec("deploy@web1:/var/www");
  assert.match(fromServer, / --allow-run=ssh /);
  assert.doesNotMatch(fromServer, /--allow-net/, "ssh reaches the network itself");
});
