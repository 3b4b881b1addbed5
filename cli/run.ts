/**
 * `forager run`: one episode in the terminal, each turn shown as it happens, then evaluation and
 * reward; the trajectory is saved as one JSONL line. Also registers `debug`, `replay` and `show`
 * (registerAgentCommands).
 */
import { Option, type Command } from "commander";
import { InferenceClient } from "../inference-client/client";
import { childLogger } from "../lib/log";
import type { AgentConfigInput } from "../agent/config";
import { runEpisode } from "../agent/episode";
import { OraclePolicy } from "../agent/oracle";
import { HttpPolicy, type Policy } from "../agent/policy";
import { formatSummary, formatTurn } from "../agent/render";
import { writeTrajectory } from "../agent/trajectory";
import { registerDebugCommand } from "./debug";
import { addCommonOptions, configFrom, defaultOut, loadEvaluator, loadTaskAndImage, printEvent, useRepos, type CommonOptions } from "./episode-options";
import { registerReplayCommand } from "./replay";
import { registerShowCommand } from "./show";
import { EXIT, UsageError } from "./exit-codes";
import { numberIn } from "./options";
import { preflightEndpoints } from "./preflight";
import { rememberTask } from "./trajectory-source";

interface RunOptions extends CommonOptions {
  modelUrl?: string[];
  model?: string;
  apiKey?: string;
  weightsVersion?: string;
  policy: "http" | "oracle";
  mode?: "completions" | "chat";
  temperature?: number;
  topP?: number;
}

async function runCommand(o: RunOptions): Promise<void> {
  useRepos(o);
  if (o.policy === "oracle" && o.modelUrl?.length) throw new UsageError("--policy oracle takes no --model-url: the oracle applies the reference patch and asks no model (drop one of them)");
  if (o.policy !== "oracle" && !o.modelUrl?.length) throw new UsageError("give --model-url URL (repeatable) or --policy oracle");
  // Every endpoint answers before any sandbox starts (a wrong URL: one line, exit 2).
  if (o.policy !== "oracle") await preflightEndpoints(o.modelUrl!, { apiKey: o.apiKey, model: o.model });
  const { task, image } = await loadTaskAndImage(o);
  const extra: AgentConfigInput = {};
  if (o.mode) extra.mode = o.mode;
  if (o.temperature !== undefined) extra.temperature = o.temperature;
  if (o.topP !== undefined) extra.topP = o.topP;
  const config = configFrom(o, extra);
  let policy: Policy;
  let client: InferenceClient | undefined;
  if (o.policy === "oracle") policy = new OraclePolicy();
  else {
    client = new InferenceClient({
      endpoints: o.modelUrl!.map((url) => ({ url, model: o.model, apiKey: o.apiKey, weightsVersion: o.weightsVersion })),
    });
    policy = new HttpPolicy(client);
  }
  const evaluator = loadEvaluator();
  console.log(`task ${task.id} (${task.kind}) · policy ${policy.kind} · ${config.mode} · max ${config.maxTurns} turns`);
  try {
    const t = await runEpisode({
      task,
      policy,
      config,
      evaluator,
      image,
      logger: childLogger("run"),
      onTurn: (turn) => console.log(formatTurn(turn, { width: process.stdout.columns || 120 }) + "\n"),
      onEvent: printEvent,
    });
    console.log("\n" + formatSummary(t));
    const out = o.out ?? defaultOut(task.id);
    writeTrajectory(out, t);
    rememberTask(out, task); // `forager replay OUT` finds the task beside the trajectory
    console.log(`trajectory: ${out}`);
    process.exitCode = t.endReason === "env_error" || t.endReason === "policy_error" ? EXIT.failure : EXIT.ok;
  } finally {
    await client?.close();
  }
}

/** Register run, debug, replay and show on the forager program. */
export function registerAgentCommands(program: Command): void {
  const run = program.command("run").description("run one agent episode on one task, shown turn by turn");
  addCommonOptions(run)
    .option("--model-url <url...>", "OpenAI-compatible server(s) (vLLM, SGLang, …)")
    .option("--model <name>", "model name (default: the server's first)")
    .option("--api-key <key>", "bearer token for the server")
    .option("--weights-version <v>", "identity of the served weights, recorded with the trajectory")
    .addOption(new Option("--policy <kind>", "who acts").choices(["http", "oracle"]).default("http"))
    .addOption(new Option("--mode <mode>", "completions (CWM text format) or chat (OpenAI tools)").choices(["completions", "chat"]))
    .option("--temperature <t>", "sampling temperature, ≥ 0 (default 1.0)", numberIn(0))
    .option("--top-p <p>", "nucleus sampling, 0–1 (default 0.95)", numberIn(0, 1))
    .action(runCommand);
  registerDebugCommand(program);
  registerReplayCommand(program);
  registerShowCommand(program);
}

