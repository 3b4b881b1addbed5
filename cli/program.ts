/**
 * The forager CLI (commander), loaded by cli/main.ts. Prints for people; logs go to stderr (one human line each, JSON when
 * asked: `--log-json`, `--log-level`, FORAGER_LOG_LEVEL; lib/log.ts). Exit codes: cli/exit-codes.ts.
 */
import { earlySignal } from "./early-signals";
import { Command, CommanderError, Option } from "commander";
import { runDoctor } from "./doctor";
import { registerSandboxCommands } from "./sandbox";
import { registerImageCommands } from "./images";
import { runDemo } from "./demo";
import { registerAgentCommands } from "./run";
import { registerEvalCommand } from "./eval";
import { registerForageCommands } from "./forage";
import { registerTaskCommands } from "./tasks";
import { registerTracesCommand } from "./traces";
import { registerViewCommand } from "./view";
import { registerServeCommand } from "./serve";
import { registerCompletionCommand } from "./completion";
import { addExamples } from "./help";
import { ENV_HELP, EXIT, EXIT_CODES_HELP } from "./exit-codes";
import { describeCliError } from "./errors";
import { interruptHandlerCount, runInterruptHandlers } from "./interrupt";
import { destroyAllSandboxes } from "../sandbox/sandbox";
import { reapSandboxes } from "../sandbox/reaper";
import { childLogger, configureLogging } from "../lib/log";

/** The whole command tree (no parsing, no signal handling: {@link run}). */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name("forager")
    .description("Executable repository environments and agentic SWE trajectories")
    .version("0.1.0")
    .option("--log-json", "logs as pino JSON lines on stderr (default: one human line per warning)")
    .addOption(new Option("--log-level <level>", "log level; also turns on JSON logs (FORAGER_LOG_LEVEL)").choices(["trace", "debug", "info", "warn", "error", "fatal", "silent"]))
    .exitOverride()
    .addHelpText("after", `\n${EXIT_CODES_HELP}\n\n${ENV_HELP}\n\nFirst run, reading results, formats: docs/cli.md`);

  program
    .command("doctor")
    .description("check the Docker engine, its API version, free disk, the base image and Redis")
    .option("--redis <url>", "Redis URL to check (default: REDIS_URL)", process.env.REDIS_URL)
    .action(async (o: { redis?: string }) => {
      const checks = await runDoctor({ redisUrl: o.redis });
      let bad = 0;
      for (const c of checks) {
        const mark = c.ok ? "ok  " : c.optional ? "warn" : "FAIL";
        if (!c.ok && !c.optional) bad++;
        console.log(`${mark}  ${c.name.padEnd(22)} ${c.detail}`);
        if (!c.ok && c.fix) console.log(`      ${"".padEnd(22)} → ${c.fix}`);
      }
      console.log(bad ? `\n${bad} problem(s) to fix.` : "\nforager is ready.");
      process.exitCode = bad ? EXIT.failure : EXIT.ok;
    });

  program
    .command("demo")
    .description("a short demonstration: a sandbox, the four tools, a submitted patch")
    .addOption(new Option("--image <tag>", "image to run in (default: the base image)"))
    .action(async (o: { image?: string }) => {
      await runDemo({ image: o.image });
    });

  /** Commands that start containers: reap orphans of dead forager processes first. */
  const REAP_AT_START = new Set(["run", "debug", "replay", "eval", "forage", "worker", "resume", "mutate", "demo", "serve"]);
  program.hook("preAction", async (_root, action) => {
    const g = program.opts<{ logJson?: boolean; logLevel?: string }>();
    configureLogging({ ...(g.logJson ? { json: true } : {}), ...(g.logLevel ? { level: g.logLevel } : {}) });
    if (!REAP_AT_START.has(action.name())) return;
    const reaped = await reapSandboxes().catch(() => []);
    if (reaped.length) childLogger("reaper").info({ reaped: reaped.length }, "removed orphaned forager containers");
  });

  registerImageCommands(program);
  registerEvalCommand(program);
  registerSandboxCommands(program);
  registerAgentCommands(program);
  registerForageCommands(program);
  registerTaskCommands(program);
  registerTracesCommand(program);
  registerViewCommand(program);
  registerServeCommand(program);
  registerCompletionCommand(program);
  addExamples(program);
  return program;
}

/** Parse the process's arguments and run the command, with forager's signal handling and exit codes. */
export function run(): void {
  const program = buildProgram();

  // Default signal handling: the commands' interrupt handlers (cli/interrupt.ts: stop, say what was
  // saved), then every sandbox of this process destroyed (creations under way included), exit 130;
  // a second signal exits at once. A command that installs its own signal listener takes the signal
  // instead (`forager worker` stops taking jobs and lets running episodes finish: cli/forage.ts).
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.off(sig, earlySignal);
    let seen = false;
    const onSignal = () => {
      if (process.listenerCount(sig) > 1) return;
      if (seen) process.exit(EXIT.interrupted);
      seen = true;
      if (process.stderr.isTTY) process.stderr.write("\n");
      process.stderr.write(`forager: ${sig}: stopping (signal again to exit at once)\n`);
      void (async () => {
        const lines = interruptHandlerCount() ? await runInterruptHandlers().catch(() => []) : ["forager: interrupted (nothing was being saved)"];
        await destroyAllSandboxes({ final: true }).catch(() => undefined);
        for (const l of lines) process.stderr.write(`${l}\n`);
        process.exit(EXIT.interrupted);
      })();
    };
    process.on(sig, onSignal);
  }

  program.parseAsync(process.argv).catch((err: unknown) => {
    if (err instanceof CommanderError) {
      // commander printed its one line (or the help) already
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    const { message, exitCode } = describeCliError(err);
    console.error(`forager: ${message}`);
    void destroyAllSandboxes().finally(() => process.exit(exitCode));
  });
}
