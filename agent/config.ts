/**
 * Settings of one agent episode: every limit of the CWM environment is a setting, with the
 * release's default (facebookresearch/cwm `cwm/rl/envs/envs/swerl_tool.py` SWERLConfig and the
 * `swerl_tool_env:think_tag:modal:eval` registration; facts in shared/reference/cwm-environment.md).
 * Units are in the names: tokens, seconds.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { formatZodIssues } from "../lib/zod-util";
import { RewardConfigSchema } from "../rewards/reward";

export const AgentConfigSchema = z
  .object({
    /** Context window, tokens: prompt + every turn (CWM context_size 131072). */
    contextTokens: z.number().int().positive().default(131072),
    /** Turns per episode (CWM max_turns 128). The turn that reaches it ends the episode before its action runs. */
    maxTurns: z.number().int().positive().default(128),
    /** Most tokens one model turn may generate (CWM max_action_len 65536). */
    maxActionTokens: z.number().int().positive().default(65536),
    /** Most tokens of one tool-result / feedback message, cut from the right with `[...]` (CWM max_user_turn_len 32768). */
    maxToolResultTokens: z.number().int().positive().default(32768),
    /** Most tokens of the first user message, cut from the left with `[...]` (CWM max_prompt_len 8192). */
    maxPromptTokens: z.number().int().positive().default(8192),
    /** Seconds one bash command may run (CWM session_timeout 120). */
    commandTimeoutSeconds: z.number().positive().default(120),
    /** Bytes of output one bash command may produce (CWM: 480 KiB). */
    outputLimitBytes: z.number().int().positive().default(480 * 1024),
    /** Seconds the agent's sandbox may live (CWM training 2400). */
    sandboxLifetimeSeconds: z.number().positive().default(2400),
    /** Seconds an evaluation sandbox may live (CWM eval 7200). Passed to the evaluator. */
    evalSandboxLifetimeSeconds: z.number().positive().default(7200),
    /** Seconds the hidden-test evaluation may take (CWM eval 600); a longer one counts as "timeout". */
    evalTimeoutSeconds: z.number().positive().default(600),
    /** Sampling temperature (CWM SWE-bench Verified 1.0). */
    temperature: z.number().min(0).default(1.0),
    /** Nucleus sampling (CWM SWE-bench Verified 0.95). */
    topP: z.number().gt(0).max(1).default(0.95),
    /** Optional sampling seed. */
    seed: z.number().int().optional(),
    /** Reasoning mode: system prompt asks for `<think>` … `</think>`, each assistant turn is pre-filled with `<think>\n`. */
    think: z.boolean().default(true),
    /** Tool profile (tools/registry.ts). */
    toolProfile: z.enum(["cwm", "cwm-noplugins"]).default("cwm"),
    /** Environment errors retried as fresh rollouts (CWM: 3). */
    maxEnvRetries: z.number().int().min(0).default(3),
    /** Strict format: any format error ends the episode (CWM eval: false; then they go back as user messages). */
    strictFormat: z.boolean().default(false),
    /** "completions": the CWM text format on /v1/completions; "chat": /v1/chat/completions with OpenAI tools. */
    mode: z.enum(["completions", "chat"]).default("completions"),
    /** Seconds one model call may take (queueing, retries, backoffs); undefined: the client's default. */
    modelDeadlineSeconds: z.number().positive().optional(),
    /** Network of the agent sandbox ("none" by default). */
    network: z.string().default("none"),
    /** Evaluate a submitted patch even when the episode did not end with a final answer (CWM: no). */
    evaluateUnfinished: z.boolean().default(false),
    /** Reward (rewards/reward.ts); CWM eval: execution only. */
    reward: RewardConfigSchema.default({ mode: "execution", scale: 1 }),
  })
  .strict();

/** A validated agent configuration. */
export type AgentConfig = z.output<typeof AgentConfigSchema>;
/** An agent configuration as written by a person (every field optional). */
export type AgentConfigInput = z.input<typeof AgentConfigSchema>;

/** Parse with defaults. @throws ZodError on invalid settings. */
export function agentConfig(input: AgentConfigInput = {}): AgentConfig {
  return AgentConfigSchema.parse(input);
}

/** The folder of named configurations (`configs/` at the repository's root). */
export const PRESETS_DIR = fileURLToPath(new URL("../configs/", import.meta.url));

/** The names of the configurations in {@link PRESETS_DIR}. */
export function presetNames(dir = PRESETS_DIR): string[] {
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort();
  } catch {
    return [];
  }
}

/**
 * An agent configuration from the `--config` argument: inline JSON (`{...}`), a JSON file's path,
 * or the name of a preset in `configs/` (`cwm-eval`, `quick`, …), validated by
 * {@link AgentConfigSchema} (every field optional).
 * @throws Error whose message names the argument, the file and the field at fault.
 */
export function loadAgentConfigArg(arg: string, dir = PRESETS_DIR): AgentConfigInput {
  const text = arg.trim();
  let where: string;
  let raw: string;
  if (text.startsWith("{")) {
    where = "--config (inline JSON)";
    raw = text;
  } else if (fs.existsSync(text) && fs.statSync(text).isFile()) {
    where = `--config ${text}`;
    raw = fs.readFileSync(text, "utf8");
  } else if (presetNames(dir).includes(text)) {
    where = `--config ${text} (${path.join(dir, `${text}.json`)})`;
    raw = fs.readFileSync(path.join(dir, `${text}.json`), "utf8");
  } else {
    throw new Error(`--config ${JSON.stringify(arg)}: not JSON, not a file, not a preset (presets: ${presetNames(dir).join(", ") || "none"})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new Error(`${where}: not valid JSON: ${(err as Error).message}`);
  }
  const r = AgentConfigSchema.safeParse(value);
  if (!r.success) throw new Error(`${where}: ${formatZodIssues(r.error)}`);
  return value as AgentConfigInput;
}
