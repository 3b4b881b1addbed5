/**
 * What the one-episode commands (`forager run`, `forager debug`) share: the task and image
 * options, the agent settings from the flags, the evaluator (the one adapter,
 * rewards/evaluator.ts), where a trajectory is written, and how episode events are printed.
 */
import path from "node:path";
import type { Command } from "commander";
import { agentConfig, loadAgentConfigArg, type AgentConfig, type AgentConfigInput } from "../agent/config";
import type { EpisodeEvent, Evaluator } from "../agent/episode";
import fs from "node:fs";
import { loadTaskFiles } from "../tasks/files";
import { RecordError } from "../lib/errors";
import { agentConfigOption, existingPath, intAtLeast } from "./options";
import { UsageError } from "./exit-codes";
import type { Task } from "../tasks/schema";
import { parseImagesOption, usePrebuiltImage } from "../images/swebench-prebuilt";
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
  maxTurns?: number;
  contextTokens?: number;
  commandTimeout?: number;
  think?: boolean;
  config?: string;
}

export function addCommonOptions(cmd: Command): Command {
  return cmd
    .requiredOption("--task <id>", "task id")
    .requiredOption("--tasks <file>", "tasks file: JSONL of Task records, or a SWE-bench dataset", existingPath("any", "a tasks file (Task JSONL, or a SWE-bench dataset file or directory)"))
    .option("--repos <dir>", "SWE-bench tasks: directory of local clones (owner+name/repo, owner__name, …; sets FORAGER_REPOS)")
    .option("--image <tag>", "image to run (default: the task's instance image, built if missing)")
    .option("--images <source>", "swebench or swebench=REGISTRY/NAMESPACE: SWE-bench tasks run in the harness's prebuilt image, pulled (also FORAGER_IMAGES)")
    .option("--out <file>", "trajectory file to append to (default runs/single/<task>-<timestamp>.jsonl)")
    .option("--max-turns <n>", "turn limit (default 128)", intAtLeast(1))
    .option("--context-tokens <n>", "context window, tokens (default 131072)", intAtLeast(1))
    .option("--command-timeout <s>", "seconds one bash command may run (default 120)", intAtLeast(1))
    .option("--no-think", "no reasoning mode (no <think> prefill)")
    .option("--config <json|file|preset>", "AgentConfig fields: inline JSON ('{\"temperature\":0.2}'), a JSON file, or a preset of configs/ (cwm-eval, quick, swerl-similarity)", agentConfigOption);
}

/**
 * The task of `--tasks/--task`, and the image to run it in: `--image`, or with `--images swebench`
 * (a SWE-bench task) the harness's prebuilt image, pulled; undefined = built as usual.
 * @throws RecordError when the task is not in the file.
 */
export async function loadTaskAndImage(o: CommonOptions): Promise<{ task: Task; image?: string }> {
  const settings = o.image ? undefined : parseImagesOption(o.images);
  const task = await loadTaskReporting(o.tasks, o.task, { harnessSpecs: settings !== undefined });
  if (o.image) return { task, image: o.image };
  if (!settings) return { task };
  const r = await usePrebuiltImage(task, settings, { onProgress: (p) => console.error(`[images] ${p.message}`) });
  return { task: r.task, ...(r.image ? { image: r.image } : {}) };
}

/**
 * The task `id` of a tasks file, saying (on stderr) which lines of the file were rejected, as
 * `forage` does: a malformed line is never skipped in silence.
 * @throws RecordError when the task is not in the file (or its own line is the bad one).
 */
export async function loadTaskReporting(file: string, id: string, opts: { harnessSpecs?: boolean } = {}): Promise<Task> {
  const { tasks, errors } = await loadTaskFiles([file], opts);
  const bad = errors.find((e) => e.taskId === id);
  if (errors.length) {
    console.error(`${errors.length} bad task line(s) in ${file}, skipped:`);
    for (const e of errors.slice(0, 10)) console.error(`  ${e.file}:${e.line}${e.taskId ? ` (${e.taskId})` : ""}: ${e.message}`);
    if (errors.length > 10) console.error(`  … ${errors.length - 10} more`);
  }
  const task = tasks.find((t) => t.id === id);
  if (task) return task;
  if (bad) throw new RecordError(`task ${id} at ${file}:${bad.line}: ${bad.message}`, file, bad.line || undefined);
  const known = tasks.slice(0, 5).map((t) => t.id).join(", ");
  throw new RecordError(`task ${id} not found in ${file}${tasks.length ? ` (it holds ${tasks.length} task(s): ${known}${tasks.length > 5 ? ", …" : ""})` : ""}`, file);
}

/** `--repos DIR`: where SWE-bench tasks' repositories are found (FORAGER_REPOS). @throws UsageError when DIR is not a directory. */
export function useRepos(o: { repos?: string }): void {
  if (o.repos && !(fs.existsSync(o.repos) && fs.statSync(o.repos).isDirectory())) {
    throw new UsageError(`--repos ${o.repos}: not a directory; expected a directory of local clones (owner+name/repo, owner__name, …)`);
  }
  if (o.repos) process.env.FORAGER_REPOS = [o.repos, process.env.FORAGER_REPOS].filter(Boolean).join(":");
}

export function configFrom(o: CommonOptions, extra: AgentConfigInput = {}): AgentConfig {
  const input: AgentConfigInput = { ...(o.config ? loadAgentConfigArg(o.config) : {}), ...extra };
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

