/**
 * foldersync: keeps a replica folder an exact one-way copy of a source folder.
 *
 * The only impure entry point: parse argv, open logging (stderr and the log file), check the
 * folders, run, dispose logs, exit. Errors before the log file is open go to stderr only.
 *
 * @module
 */

import { type CliOptions, HELP, parseCommand, VERSION } from "./lib/cli/cli.ts";
import { type CheckedPaths, checkLogPath, checkPaths, filterSpec, missingParent, ownFiles } from "./lib/config.ts";
import { type SyncOptions } from "./lib/engine/options.ts";
import { describeError, ExitCode, exitCodeFor, UsageError } from "./lib/model/errors.ts";
import { lockFolder, lockReplica } from "./lib/backend/local/lock.ts";
import { logger, setupLogging } from "./lib/log.ts";
import { runSchedule } from "./lib/run/schedule.ts";
import type { RunReporter } from "./lib/run/report.ts";
import { resolve } from "node:path";
import { trackActivity } from "./lib/run/activity.ts";
import { verifyOnce } from "./lib/engine/sync.ts";
import type { ProgressSink } from "./lib/model/progress.ts";
import { localSides, type RemoteOpener, remoteOpener } from "./lib/backend/open.ts";
import type { Sides } from "./lib/backend/backend.ts";
import type { ReplicaTarget } from "./lib/backend/target.ts";

function fail(error: unknown, verbose = false): number {
  console.error(`foldersync: ${describeError(error)}`);
  if (verbose && error instanceof Error && error.stack) console.error(error.stack);
  return exitCodeFor(error);
}

/**
 * Under `deno task sync`, Deno runs main.ts in the folder of deno.json and puts the folder the
 * user stands in into INIT_CWD: go there, so that relative paths mean what the user meant.
 * Only when INIT_CWD may be read without asking (the sync task grants it; a compiled binary
 * or a plain `deno run` does not, and never prompts).
 */
function enterCallerFolder(): void {
  if (Deno.permissions.querySync({ name: "env", variable: "INIT_CWD" }).state !== "granted") return;
  const folder = Deno.env.get("INIT_CWD");
  if (!folder) return;
  try {
    Deno.chdir(folder);
  } catch (error) {
    throw new UsageError(`Cannot enter the folder deno task was started from: '${folder}': ${describeError(error)}`);
  }
}

async function main(args: string[]): Promise<number> {
  let command;
  try {
    command = parseCommand(args);
  } catch (error) {
    return fail(error);
  }
  if (command.kind === "help") {
    console.log(HELP);
    return ExitCode.Ok;
  }
  if (command.kind === "version") {
    console.log(`foldersync ${VERSION}`);
    return ExitCode.Ok;
  }
  try {
    enterCallerFolder();
  } catch (error) {
    return fail(error);
  }
  if (command.kind === "service") {
    const { runService } = await import("./lib/service/run.ts");
    return await runService(command.argv);
  }
  const o = command.options;
  const verbose = o.verbosity === "verbose";
  // The log file is opened before the folders are checked, so that a cron or service user who
  // reads only the log sees why a run failed (an unmounted source, say).
  let logging;
  let log: string | undefined;
  try {
    log = o.log !== undefined ? checkLogPath(o.log, o.target.kind === "local" ? o.replica : undefined) : undefined;
    logging = await setupLogging({
      verbosity: o.verbosity,
      format: o.logFormat,
      ...(log !== undefined ? { file: log } : {}),
      ...(o.logMaxSize !== undefined ? { maxSize: o.logMaxSize } : {}),
      ...(o.logKeep !== undefined ? { keep: o.logKeep } : {}),
    });
  } catch (error) {
    return fail(error, verbose);
  }
  // Reports to monitoring: each run, and a failure before any run (the source missing, the lock held).
  const reporter = o.notify !== undefined || o.metrics !== undefined ? await reporterFor(o) : undefined;
  try {
    return command.kind === "verify" ? await verify(o, log) : await sync(o, log, reporter);
  } catch (error) {
    const text = describeError(error);
    logger.error("{text}", { text, action: "error", error: text });
    if (verbose && error instanceof Error) logger.debug("{text}", { text: error.stack ?? text });
    await reporter?.startupFailed(error);
    return exitCodeFor(error);
  } finally {
    await logging[Symbol.asyncDispose]();
  }
}

/**
 * The options of a run, from the checked folders: the user's excludes and foldersync's own
 * files (`log`, the cache, `files` such as the metrics file) in the source among them.
 * `verify` refuses the options that would change anything before it gets here.
 */
function runOptions(
  o: CliOptions,
  paths: CheckedPaths,
  log: string | undefined,
  lockDir?: string,
  files: string[] = [],
): SyncOptions {
  // The lock folder lies in the cache folder: a source that holds it (a home folder) leaves it out.
  const cacheDir = paths.cacheDir ?? lockDir;
  // foldersync's own files can lie only in a source on this machine.
  const own = o.sourceTarget.kind !== "local" ? { ownFiles: [], ownDirs: [] } : ownFiles(paths.source, {
    ...(log ? { log } : {}),
    ...(cacheDir ? { cacheDir } : {}),
    files,
  });
  const filter = filterSpec(o.exclude, o.excludeFrom, own);
  return {
    source: paths.source,
    replica: paths.replica,
    checksum: o.checksum,
    dryRun: o.dryRun,
    allowEmptySource: o.allowEmptySource,
    deleteExcluded: o.deleteExcluded,
    ...(filter ? { filter } : {}),
    ...(o.maxDelete !== undefined ? { maxDelete: o.maxDelete } : {}),
    ...(o.maxChange !== undefined ? { maxChange: o.maxChange } : {}),
    ...(paths.backupDir !== undefined ? { backupDir: paths.backupDir } : {}),
    ...(o.backupKeepMs !== undefined ? { backupKeepMs: o.backupKeepMs } : {}),
    ...(o.hash !== undefined ? { hash: o.hash } : {}),
    ...(o.jobs !== undefined ? { jobs: o.jobs } : {}),
    ...(o.modifyWindowMs ? { modifyWindowMs: o.modifyWindowMs } : {}),
    ...(paths.cacheDir !== undefined ? { cacheDir: paths.cacheDir } : {}),
  };
}

/** Runs `fn` with a signal that SIGINT and SIGTERM (Ctrl+Break on Windows) abort. */
async function untilStopped<T>(fn: (signal: AbortSignal) => Promise<T>, onStop = () => {}): Promise<T> {
  const controller = new AbortController();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"];
  const onSignal = () => {
    if (!controller.signal.aborted) onStop();
    controller.abort();
  };
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    return await fn(controller.signal);
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}

/**
 * The reporter of `--notify` and `--metrics`, with the notify sink; the metrics sink is added
 * once its path is checked. Their modules are loaded only now.
 */
async function reporterFor(o: CliOptions): Promise<RunReporter> {
  const { RunReporter } = await import("./lib/run/report.ts");
  const reporter = new RunReporter({
    source: o.sourceTarget.kind === "local" ? resolve(o.source) : o.source,
    replica: o.target.kind === "local" ? resolve(o.replica) : o.replica,
    dryRun: o.dryRun,
  });
  if (o.notify !== undefined) {
    const { notifySink } = await import("./lib/run/notify.ts");
    reporter.add(notifySink(o.notify, { userAgent: `foldersync/${VERSION}` }));
  }
  return reporter;
}

/**
 * Checks the `--metrics` path and, unless this is a dry run, adds its sink to `reporter`.
 * Returns the files the source leaves out where they lie in it: the file and its temp file.
 */
async function metricsFile(o: CliOptions, log: string | undefined, reporter: RunReporter): Promise<string[]> {
  const { checkMetricsPath, metricsSink, metricsTempPath } = await import("./lib/run/metrics.ts");
  const file = checkMetricsPath(o.metrics!, {
    ...(o.target.kind === "local" ? { replica: o.replica } : {}),
    ...(log !== undefined ? { log } : {}),
  });
  // A dry run changes nothing: its planned figures must not pass for the replica's last run.
  if (o.dryRun) logger.debug("{text}", { text: `Dry run: the metrics file is left as it is: '${file}'` });
  else reporter.add(metricsSink(file));
  return [file, metricsTempPath(file)];
}

/** Checks the folders, takes the replica's lock and runs the schedule; logging is set up. */
async function sync(o: CliOptions, log: string | undefined, reporter?: RunReporter): Promise<number> {
  const remote = o.target.kind !== "local";
  const metrics = o.metrics !== undefined ? await metricsFile(o, log, reporter!) : [];
  const paths = checkPaths(o.source, o.replica, {
    checksum: o.checksum,
    mkpath: o.mkpath,
    remote,
    remoteSource: o.sourceTarget.kind !== "local",
    ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}),
    ...(o.backupDir !== undefined ? { backupDir: o.backupDir } : {}),
  });
  // A dry run reads and writes nothing: it takes no lock, and may look while a loop syncs.
  const lockDir = remote || o.dryRun ? undefined : lockFolder(typeof o.cacheDir === "string" ? o.cacheDir : undefined);
  const options = runOptions(o, paths, log, lockDir, metrics);
  const progress = await progressFor(o);
  const activity = trackActivity(progress);
  const stopping = () => {
    const text = activity.filesInFlight() ? "Stopping: aborting the files in flight" : "Stopping";
    logger.info("{text}", { text });
  };
  return await untilStopped(async (signal) => {
    const schedule = {
      watch: o.watch,
      signal,
      ...(reporter ? { reporter } : {}),
      ...(o.intervalMs !== undefined ? { intervalMs: o.intervalMs } : {}),
      progress: activity,
    };
    const local = localSides({ ...paths, signal, progress: progress?.inFlight });
    const source = await openSource(o, paths, signal, local.source);
    if (remote) {
      // Each run connects and locks afresh; the first connection checks the input first.
      const opener = remoteOpenerFor(o.target, o, paths, signal, progress);
      await opener.check(o.dryRun);
      return await runSchedule(options, { ...schedule, sides: { source, replica: opener.open } });
    }
    if (o.dryRun) return await runSchedule(options, { ...schedule, sides: { source, replica: local.replica } });
    await createReplica(paths, o);
    using _lock = await lockReplica(paths.replica, lockDir !== undefined ? { lockDir } : {});
    return await runSchedule(options, { ...schedule, sides: { source, replica: local.replica } });
  }, stopping);
}

/**
 * How each run opens the source: a local folder as it is; a remote one connected once now, so
 * that bad input (an unknown host, refused credentials, a missing bucket, prefix or folder) is
 * exit 2 with one line before anything is touched, and afresh for each later run.
 */
async function openSource(
  o: CliOptions,
  paths: CheckedPaths,
  signal: AbortSignal,
  local: Sides["source"],
): Promise<Sides["source"]> {
  if (o.sourceTarget.kind === "local") return local;
  const opener = remoteOpenerFor(o.sourceTarget, o, paths, signal, undefined, "source");
  const source = await opener.check(true);
  if ((await source.root())?.kind !== "dir") {
    await source.close();
    throw new UsageError(`Source does not exist: '${o.source}'`);
  }
  return ({ started }) => opener.open({ started, readOnly: true });
}

/** The opener of a remote source or replica (its backend's module is loaded only when it connects). */
function remoteOpenerFor(
  target: ReplicaTarget,
  o: CliOptions,
  paths: CheckedPaths,
  signal: AbortSignal,
  progress: ProgressSink | undefined,
  side: "source" | "replica" = "replica",
): RemoteOpener {
  if (target.kind === "local") throw new Error("Not a remote backend");
  return remoteOpener(target, {
    signal,
    jobs: o.jobs ?? 8,
    mkpath: o.mkpath,
    progress: progress?.inFlight,
    backupDir: side === "replica" ? paths.backupDir : undefined,
    cacheDir: paths.cacheDir,
    sshPort: o.sshPort,
    sshKey: o.sshKey,
    knownHosts: o.knownHosts,
    sshConfig: o.sshConfig,
    sshOptions: o.sshOptions,
    s3Endpoint: o.s3Endpoint,
    hash: o.hash,
  });
}

/**
 * Compares the folders and reports each difference; logging is set up. Takes no lock and
 * writes nothing (a log file aside): `deno run --allow-read main.ts verify ...` is enough.
 */
async function verify(o: CliOptions, log: string | undefined): Promise<number> {
  const remote = o.target.kind !== "local";
  const paths = checkPaths(o.source, o.replica, {
    checksum: o.checksum,
    remote,
    remoteSource: o.sourceTarget.kind !== "local",
    mustExist: true,
    ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}),
    // Only to leave the backup folder out, where it lies inside the replica: verify moves nothing.
    ...(o.backupDir !== undefined ? { backupDir: o.backupDir } : {}),
  });
  const options = runOptions(o, paths, log);
  const progress = await progressFor(o);
  if (!remote) {
    try {
      if (!Deno.statSync(paths.replica).isDirectory) throw new Deno.errors.NotFound();
    } catch {
      throw new UsageError(`Replica does not exist: '${o.replica}'`);
    }
  }
  return await untilStopped(async (signal) => {
    const local = localSides({ ...paths, signal, progress: progress?.inFlight });
    const source = await openSource(o, paths, signal, local.source);
    const how = { signal, ...(progress ? { progress } : {}) };
    if (!remote) return await verifyOnce(options, { sides: { source, replica: local.replica }, ...how });
    const opener = remoteOpenerFor(o.target, o, paths, signal, progress);
    const replica = await opener.check(true);
    if ((await replica.root())?.kind !== "dir") {
      await replica.close();
      throw new UsageError(`Replica does not exist: '${o.replica}'`);
    }
    return await verifyOnce(options, { sides: { source, replica: opener.open }, ...how });
  });
}

/**
 * The live progress line, when it is wanted: `--progress` / `--no-progress` decide; otherwise
 * only on a terminal, and not with `--quiet` or JSON lines (a JSON console is read by programs).
 * Its module is loaded only then: every import costs every start.
 */
async function progressFor(o: CliOptions): Promise<ProgressSink | undefined> {
  const wanted = o.progress ?? (o.verbosity !== "quiet" && o.logFormat !== "json" && Deno.stderr.isTerminal());
  if (!wanted) return undefined;
  const { createProgress } = await import("./lib/run/progress.ts");
  return createProgress();
}

/**
 * Creates the replica folder if it is missing: only the folder itself, as rsync does, unless
 * `--mkpath` asks for its parents too. checkPaths has refused a missing parent already; this
 * catches one that vanished since (a disk unmounted in between).
 */
async function createReplica(paths: CheckedPaths, o: CliOptions): Promise<void> {
  try {
    await Deno.mkdir(paths.replica, { recursive: o.mkpath });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return;
    if (error instanceof Deno.errors.NotFound) throw missingParent(o.replica);
    throw error;
  }
  // A new folder takes a local source's mtime at once: it is new, not a difference to report.
  if (o.sourceTarget.kind !== "local") return;
  const mtime = Deno.statSync(paths.source).mtime;
  if (mtime) await Deno.utime(paths.replica, mtime, mtime).catch(() => {});
}

Deno.exit(await main(Deno.args));
