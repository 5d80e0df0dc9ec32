/**
 * foldersync: keeps a replica folder an exact one-way copy of a source folder.
 *
 * The only impure entry point: parse argv, configure logging, run, dispose logs, exit.
 *
 * @module
 */

import { HELP, parseCommand, VERSION } from "./lib/cli.ts";
import { checkPaths } from "./lib/config.ts";
import { describeError, ExitCode, exitCodeFor } from "./lib/errors.ts";
import { lockReplica } from "./lib/lock.ts";
import { logger, setupLogging } from "./lib/log.ts";
import { runSchedule } from "./lib/schedule.ts";

function fail(error: unknown, verbose = false): number {
  console.error(`foldersync: ${describeError(error)}`);
  if (verbose && error instanceof Error && error.stack) console.error(error.stack);
  return exitCodeFor(error);
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
  if (command.kind === "service") {
    const { runService } = await import("./lib/service/run.ts");
    return await runService(command.argv);
  }
  const o = command.options;
  const verbose = o.verbosity === "verbose";
  let paths;
  let logging;
  try {
    paths = checkPaths(o.source, o.replica, {
      checksum: o.checksum,
      ...(o.log !== undefined ? { log: o.log } : {}),
      ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}),
    });
    logging = await setupLogging({
      verbosity: o.verbosity,
      format: o.logFormat,
      ...(paths.log !== undefined ? { file: paths.log } : {}),
      ...(o.logMaxSize !== undefined ? { maxSize: o.logMaxSize } : {}),
      ...(o.logKeep !== undefined ? { keep: o.logKeep } : {}),
    });
  } catch (error) {
    return fail(error, verbose);
  }

  const controller = new AbortController();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"];
  const onSignal = () => {
    if (!controller.signal.aborted) logger.info("{text}", { text: "Stopping: finishing the files in flight" });
    controller.abort();
  };
  for (const s of signals) Deno.addSignalListener(s, onSignal);

  try {
    if (!o.dryRun) await Deno.mkdir(paths.replica, { recursive: true });
    using _lock = await lockReplica(paths.replica);
    return await runSchedule({
      source: paths.source,
      replica: paths.replica,
      checksum: o.checksum,
      dryRun: o.dryRun,
      allowEmptySource: o.allowEmptySource,
      ...(o.hash !== undefined ? { hash: o.hash } : {}),
      ...(o.jobs !== undefined ? { jobs: o.jobs } : {}),
      ...(paths.cacheDir !== undefined ? { cacheDir: paths.cacheDir } : {}),
    }, {
      watch: o.watch,
      signal: controller.signal,
      ...(o.intervalMs !== undefined ? { intervalMs: o.intervalMs } : {}),
    });
  } catch (error) {
    const text = describeError(error);
    logger.error("{text}", { text, action: "error", error: text });
    if (verbose && error instanceof Error) logger.debug("{text}", { text: error.stack ?? text });
    return exitCodeFor(error);
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await logging[Symbol.asyncDispose]();
  }
}

Deno.exit(await main(Deno.args));
