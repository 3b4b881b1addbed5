/**
 * The forager CLI (commander). Prints for people; logs (pino JSON) go to stderr.
 */
import { Command, Option } from "commander";
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
import { destroyAllSandboxes } from "../sandbox/sandbox";
import { reapSandboxes } from "../sandbox/reaper";
import { childLogger } from "../lib/log";

const program = new Command();
program.name("forager").description("Executable repository environments and agentic SWE trajectories").version("0.1.0");

program
  .command("doctor")
  .description("check the Docker engine, its API version, free disk, the base image and Redis")
  .option("--redis <url>", "Redis URL to check", process.env.REDIS_URL)
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
    process.exitCode = bad ? 1 : 0;
  });

program
  .command("demo")
  .description("a short demonstration: a sandbox, the four tools, a submitted patch")
  .addOption(new Option("--image <tag>", "image to run in"))
  .action(async (o: { image?: string }) => {
    await runDemo({ image: o.image });
  });

/** Commands that start containers: reap orphans of dead forager processes first. */
const REAP_AT_START = new Set(["run", "debug", "replay", "eval", "forage", "worker", "resume", "mutate", "demo", "serve"]);
program.hook("preAction", async (_root, action) => {
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

// Default signal handling: destroy this process's sandboxes and exit 130 (a second signal kills at
// once). A command that installs its own handler takes the signal instead (`forager worker` stops
// taking jobs and lets running episodes finish: cli/forage.ts).
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  const onSignal = () => {
    if (process.listenerCount(sig) > 1) return;
    process.off(sig, onSignal);
    void destroyAllSandboxes().finally(() => process.exit(130));
  };
  process.on(sig, onSignal);
}

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`forager: ${(err as Error).message}`);
  void destroyAllSandboxes().finally(() => process.exit(1));
});
