/**
 * `forager run`: one episode in the terminal, each turn shown as it happens, then evaluation and
 * reward; the trajectory is saved as one JSONL line. Also registers `debug`, `replay` and `show`
 * (registerAgentCommands).
 */
import path from "node:path";
import { Option, type Command } from "commander";
import { InferenceClient } from "../inference-client/client";
import { childLogger } from "../lib/log";
import { agentConfig, type AgentConfig, type AgentConfigInput } from "../agent/config";
import { runEpisode, type EpisodeEvent, type Evaluator } from "../agent/episode";
import { OraclePolicy } from "../agent/oracle";
import { HttpPolicy, type Policy } from "../agent/policy";
import { formatSummary, formatTurn } from "../agent/render";
import { loadTask } from "../tasks/files";
import type { Task } from "../tasks/schema";
import { parseImagesOption, usePrebuiltImage } from "../images/swebench-prebuilt";
import { writeTrajectory } from "../agent/trajectory";
import { registerDebugCommand } from "./debug";
import { registerReplayCommand } from "./replay";
import { registerShowCommand } from "./show";
import { harnessEvaluator } from "../rewards/evaluator";

/** The evaluator of the CLI: the one adapter (rewards/evaluator.ts harnessEvaluator), in a fresh sandbox from the episode's image. */
export function loadEvaluator(): Evaluator {
  return harnessEvaluator();
}


/** Options shared by run and debug. */
export interface CommonOptions {
  task: string;
  tasks: string;
  repos?: string;
  image?: string;
  images?: string;
  out?: string;
  maxTurns?: string;
  contextTokens?: string;
  commandTimeout?: string;
  think?: boolean;
  config?: string;
}

export function addCommonOptions(cmd: Command): Command {
  return cmd
    .requiredOption("--task <id>", "task id")
    .requiredOption("--tasks <file>", "tasks file: JSONL of Task records, or a SWE-bench dataset")
    .option("--repos <dir>", "SWE-bench tasks: directory of local clones (owner+name/repo, owner__name, …; sets FORAGER_REPOS)")
    .option("--image <tag>", "image to run (default: the task's instance image, built if missing)")
    .option("--images <source>", "swebench or swebench=REGISTRY/NAMESPACE: SWE-bench tasks run in the harness's prebuilt image, pulled (also FORAGER_IMAGES)")
    .option("--out <file>", "trajectory file to append to (default runs/single/<task>-<timestamp>.jsonl)")
    .option("--max-turns <n>", "turn limit (default 128)")
    .option("--context-tokens <n>", "context window, tokens (default 131072)")
    .option("--command-timeout <s>", "seconds one bash command may run (default 120)")
    .option("--no-think", "no reasoning mode (no <think> prefill)")
    .option("--config <json>", "AgentConfig fields as JSON, e.g. '{\"temperature\":0.2}'");
}

/**
 * The task of `--tasks/--task`, and the image to run it in: `--image`, or with `--images swebench`
 * (a SWE-bench task) the harness's prebuilt image, pulled; undefined = built as usual.
 * @throws RecordError when the task is not in the file.
 */
export async function loadTaskAndImage(o: CommonOptions): Promise<{ task: Task; image?: string }> {
  const settings = o.image ? undefined : parseImagesOption(o.images);
  const task = await loadTask(o.tasks, o.task, { harnessSpecs: settings !== undefined });
  if (o.image) return { task, image: o.image };
  if (!settings) return { task };
  const r = await usePrebuiltImage(task, settings, { onProgress: (p) => console.error(`[images] ${p.message}`) });
  return { task: r.task, ...(r.image ? { image: r.image } : {}) };
}

/** `--repos DIR`: where SWE-bench tasks' repositories are found (FORAGER_REPOS). */
export function useRepos(o: { repos?: string }): void {
  if (o.repos) process.env.FORAGER_REPOS = [o.repos, process.env.FORAGER_REPOS].filter(Boolean).join(":");
}

export function configFrom(o: CommonOptions, extra: AgentConfigInput = {}): AgentConfig {
  const input: AgentConfigInput = { ...(o.config ? (JSON.parse(o.config) as AgentConfigInput) : {}), ...extra };
  if (o.maxTurns) input.maxTurns = Number(o.maxTurns);
  if (o.contextTokens) input.contextTokens = Number(o.contextTokens);
  if (o.commandTimeout) input.commandTimeoutSeconds = Number(o.commandTimeout);
  if (o.think === false) input.think = false;
  return agentConfig(input);
}

export function defaultOut(taskId: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  return path.join("runs", "single", `${taskId.replace(/[^\w.-]+/g, "_")}-${stamp}.jsonl`);
}

export function printEvent(e: EpisodeEvent): void {
  if (e.type === "rollout_started") console.log(`sandbox from ${e.image}${e.attempt ? ` (retry ${e.attempt})` : ""} …`);
  else if (e.type === "sandbox_started") console.log(`sandbox ${e.sandbox} ready in ${e.seconds.toFixed(1)} s\n`);
  else if (e.type === "env_error") console.log(`environment error: ${e.message}${e.willRetry ? " — retrying with a fresh sandbox" : ""}`);
  else if (e.type === "evaluating") console.log(`\nevaluating the submitted patch (${e.patchBytes} bytes) with the hidden tests …`);
}

interface RunOptions extends CommonOptions {
  modelUrl?: string[];
  model?: string;
  apiKey?: string;
  weightsVersion?: string;
  policy: "http" | "oracle";
  mode?: "completions" | "chat";
  temperature?: string;
  topP?: string;
}

async function runCommand(o: RunOptions): Promise<void> {
  useRepos(o);
  const { task, image } = await loadTaskAndImage(o);
  const extra: AgentConfigInput = {};
  if (o.mode) extra.mode = o.mode;
  if (o.temperature) extra.temperature = Number(o.temperature);
  if (o.topP) extra.topP = Number(o.topP);
  const config = configFrom(o, extra);
  let policy: Policy;
  let client: InferenceClient | undefined;
  if (o.policy === "oracle") policy = new OraclePolicy();
  else {
    if (!o.modelUrl?.length) throw new Error("give --model-url URL (repeatable) or --policy oracle");
    client = new InferenceClient({
      endpoints: o.modelUrl.map((url) => ({ url, model: o.model, apiKey: o.apiKey, weightsVersion: o.weightsVersion })),
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
    console.log(`trajectory: ${out}`);
    process.exitCode = t.endReason === "env_error" || t.endReason === "policy_error" ? 1 : 0;
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
    .option("--temperature <t>", "sampling temperature (default 1.0)")
    .option("--top-p <p>", "nucleus sampling (default 0.95)")
    .action(runCommand);
  registerDebugCommand(program);
  registerReplayCommand(program);
  registerShowCommand(program);
}

