/**
 * The export formats trainers read, beside `raw`, `chat` and `predictions` (export.ts). Each row
 * shape is a zod schema (the one definition; `forager export` validates every row before writing).
 *
 * - `openai`: the OpenAI fine-tuning chat format (supervised; one JSON object a line with only
 *   `messages`, `tools` and `parallel_tool_calls`, as OpenAI's `FineTuneChatRequestInput` — the API
 *   rejects other keys): assistant messages carry structured `tool_calls`
 *   (`{id, type: "function", function: {name, arguments: JSON text}}`), each observation is a
 *   `tool` message with the `tool_call_id` it answers, and `tools` lists the episode's tool
 *   definitions (`{type: "function", function: {name, description, parameters}}`, tools/registry.ts
 *   openAIFunctions). Chat-mode episodes keep the server's own tool calls (`turn.wire`);
 *   completions-mode (CWM text) episodes have each `<tool: NAME>` call turned into the tool's
 *   JSON arguments ({@link toolArguments}). Source: OpenAI API reference, "Fine-tuning → Training
 *   format for chat models" (platform.openai.com/docs/api-reference/fine-tuning/chat-input).
 * - `parquet`: the same conversations plus the outcome as a Hugging Face dataset: the parquet
 *   file(s) under `data/` named `train-00000-of-00001.parquet` (the Hub's `data/{split}-NNNNN-of-NNNNN`
 *   layout, which `datasets.load_dataset(DIR)` reads) and a README.md whose YAML header declares
 *   the features and `configs: data_files: data/train-*` (Hugging Face Hub docs, "Dataset card" and
 *   "File names and splits"). Nested columns: `messages` is a list of structs (role, content,
 *   tool_call_id, tool_calls as JSON text), `tools` JSON text.
 * - `verl` / `skyrl`: RL prompt sets, one row per TASK (not per trajectory), in the shapes their
 *   dataset loaders read. verl (`RLHFDataset`; verl docs "Prepare Data for Post-Training"):
 *   `data_source`, `prompt` (chat messages), `ability`, `reward_model {style, ground_truth}`,
 *   `extra_info {split, index, …}`. SkyRL (skyrl-train docs "Dataset Preparation"): `data_source`,
 *   `prompt`, `env_class`, `reward_spec {method, ground_truth}`, `extra_info`. The prompt is
 *   forager's own first two messages (system with the tools, user with the issue: agent/prompt.ts),
 *   the ground truth the task's hidden-test record as JSON text (instance id, repository, commit,
 *   FAIL_TO_PASS, PASS_TO_PASS, test patch), so a reward function can run forager's evaluation.
 */
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import type { Trajectory } from "../agent/trajectory";
import { environmentPrompt, firstUserMessage, systemPrompt } from "../agent/prompt";
import { agentConfig } from "../agent/config";
import { openAIFunctions, toolProfile } from "../tools/registry";
import { pyStrip } from "../rewards/similarity";
import type { Task } from "../tasks/schema";

/** Every format `forager export --format` takes. */
export const EXPORT_FORMATS = ["raw", "chat", "openai", "parquet", "verl", "skyrl", "predictions"] as const;
export type AnyExportFormat = (typeof EXPORT_FORMATS)[number];

// ---------------------------------------------------------------------------------------------
// OpenAI fine-tuning chat format

export const OpenAIToolCallSchema = z.object({
  id: z.string().min(1),
  type: z.literal("function"),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
});

/** One message of the OpenAI fine-tuning chat format (strict: no other keys). */
export const OpenAIMessageSchema = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: z.string() }).strict(),
  z.object({ role: z.literal("user"), content: z.string() }).strict(),
  z.object({ role: z.literal("assistant"), content: z.string().nullable(), tool_calls: z.array(OpenAIToolCallSchema).min(1).optional() }).strict(),
  z.object({ role: z.literal("tool"), tool_call_id: z.string().min(1), content: z.string() }).strict(),
]);
export type OpenAIMessage = z.infer<typeof OpenAIMessageSchema>;

export const OpenAIToolSchema = z.object({
  type: z.literal("function"),
  function: z.object({ name: z.string(), description: z.string(), parameters: z.record(z.string(), z.unknown()) }),
});

/** One line of an OpenAI fine-tuning file (see the module comment). Every tool message answers a call made before it. */
export const OpenAIChatRowSchema = z
  .object({
    messages: z.array(OpenAIMessageSchema).min(2),
    tools: z.array(OpenAIToolSchema),
    parallel_tool_calls: z.boolean(),
  })
  .strict()
  .superRefine((row, ctx) => {
    const open = new Set<string>();
    row.messages.forEach((m, i) => {
      if (m.role === "assistant") for (const c of m.tool_calls ?? []) open.add(c.id);
      if (m.role === "tool" && !open.has(m.tool_call_id)) ctx.addIssue({ code: "custom", path: ["messages", i, "tool_call_id"], message: `answers no earlier tool call (${m.tool_call_id})` });
    });
  });
export type OpenAIChatRow = z.infer<typeof OpenAIChatRowSchema>;

/**
 * The JSON arguments of a CWM text tool call (`<tool: NAME>\nARGUMENT\n</tool>`): the inverse of
 * each tool's `toText` (tools/*.ts): bash `{command}`, create `{path, content}` (first line, rest),
 * submit `{path}`, edit `{path, search, replace}` (one SEARCH/REPLACE block). An argument that does
 * not fit its tool's form (a malformed call the tool refused) is kept whole as `{argument}`.
 */
export function toolArguments(tool: string, argument: string): Record<string, string> {
  if (tool === "bash") return { command: argument };
  if (tool === "submit") return { path: argument.trim() };
  const nl = argument.indexOf("\n");
  if (tool === "create") return nl === -1 ? { path: argument, content: "" } : { path: argument.slice(0, nl), content: argument.slice(nl + 1) };
  if (tool === "edit") {
    const m = /^(.*)\n<<<<<<< SEARCH\n([\s\S]*?)\n?=======\n([\s\S]*?)\n?>>>>>>> REPLACE\s*$/.exec(argument);
    if (m) return { path: m[1]!, search: m[2]!, replace: m[3]! };
  }
  return { argument };
}

/** The assistant text without its CWM tool call block (`<tool: NAME>…</tool>`, the last one). */
function withoutToolBlock(text: string): string {
  const i = text.lastIndexOf("<tool: ");
  return (i === -1 ? text : text.slice(0, i)).replace(/\s+$/, "");
}

/** A trajectory as one OpenAI fine-tuning row (see the module comment). */
export function toOpenAIRow(t: Trajectory): OpenAIChatRow {
  const messages: OpenAIMessage[] = [
    { role: "system", content: t.prompt.system },
    { role: "user", content: t.prompt.user },
  ];
  for (const turn of t.turns) {
    let calls: z.infer<typeof OpenAIToolCallSchema>[] = [];
    let content: string;
    if (turn.wire) {
      content = turn.wire.content;
      calls = turn.wire.toolCalls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } }));
    } else {
      const full = t.prompt.assistantPrefix + turn.text;
      if (turn.action) {
        content = withoutToolBlock(full);
        calls = [{ id: turn.toolCallId ?? `call_${turn.index}`, type: "function", function: { name: turn.action.tool, arguments: JSON.stringify(toolArguments(turn.action.tool, turn.action.argument)) } }];
      } else content = full;
    }
    messages.push(calls.length ? { role: "assistant", content: content === "" ? null : content, tool_calls: calls } : { role: "assistant", content });
    if (turn.observation === undefined) continue;
    if (calls.length && turn.observationRole === "tool") for (const c of calls) messages.push({ role: "tool", tool_call_id: c.id, content: turn.observation });
    else messages.push({ role: "user", content: turn.observation });
  }
  const profile = (t.config as { toolProfile?: unknown }).toolProfile;
  const tools = openAIFunctions(toolProfile(profile === "cwm-noplugins" ? "cwm-noplugins" : "cwm")) as z.infer<typeof OpenAIToolSchema>[];
  return { messages, tools, parallel_tool_calls: false };
}

// ---------------------------------------------------------------------------------------------
// Hugging Face parquet dataset of trajectories

/** One row of the `parquet` export (one trajectory). */
export const HfTrajectoryRowSchema = z.object({
  id: z.string(),
  run_id: z.string(),
  task_id: z.string(),
  sample: z.number().int().nonnegative(),
  messages: z.array(z.object({ role: z.string(), content: z.string().nullable(), tool_call_id: z.string().nullable(), tool_calls: z.string().nullable() })),
  /** The `tools` list as JSON text. */
  tools: z.string(),
  reward: z.number(),
  resolved: z.boolean(),
  end_reason: z.string(),
  model: z.string().nullable(),
  turns: z.number().int().nonnegative(),
});
export type HfTrajectoryRow = z.infer<typeof HfTrajectoryRowSchema>;

/** A trajectory as a parquet dataset row (the OpenAI form's messages, flattened for a columnar file). */
export function toHfRow(t: Trajectory, runId: string, sample: number): HfTrajectoryRow {
  const o = toOpenAIRow(t);
  return {
    id: t.id,
    run_id: runId,
    task_id: t.taskId,
    sample,
    messages: o.messages.map((m) => ({
      role: m.role,
      content: m.content,
      tool_call_id: m.role === "tool" ? m.tool_call_id : null,
      tool_calls: m.role === "assistant" && m.tool_calls ? JSON.stringify(m.tool_calls) : null,
    })),
    tools: JSON.stringify(o.tools),
    reward: t.reward,
    resolved: t.evaluation?.resolved ?? false,
    end_reason: t.endReason,
    model: t.policy.model ?? null,
    turns: t.turns.length,
  };
}

// ---------------------------------------------------------------------------------------------
// RL prompt sets (verl, SkyRL)

const PromptMessages = z.array(z.object({ role: z.enum(["system", "user"]), content: z.string() })).min(1);

/** The ground truth of a task's reward (JSON text in the rows): what forager's evaluation needs to grade a patch. */
export const GroundTruthSchema = z.object({
  instance_id: z.string(),
  repo: z.string(),
  base_commit: z.string(),
  FAIL_TO_PASS: z.array(z.string()),
  PASS_TO_PASS: z.array(z.string()),
  test_patch: z.string(),
});

/** A verl RL dataset row (verl `RLHFDataset`). */
export const VerlRowSchema = z.object({
  data_source: z.string(),
  prompt: PromptMessages,
  ability: z.string(),
  reward_model: z.object({ style: z.literal("rule"), ground_truth: z.string() }),
  extra_info: z.object({ split: z.string(), index: z.number().int().nonnegative(), task_id: z.string(), repo: z.string(), kind: z.string() }),
});
export type VerlRow = z.infer<typeof VerlRowSchema>;

/** A SkyRL RL dataset row (skyrl-train `PromptDataset`). */
export const SkyRLRowSchema = z.object({
  data_source: z.string(),
  prompt: PromptMessages,
  env_class: z.string(),
  reward_spec: z.object({ method: z.literal("rule"), ground_truth: z.string() }),
  extra_info: z.object({ split: z.string(), index: z.number().int().nonnegative(), task_id: z.string(), repo: z.string(), kind: z.string() }),
});
export type SkyRLRow = z.infer<typeof SkyRLRowSchema>;

/** The first two messages an episode of `task` starts with under `agent` settings (agent/env.ts does the same). */
export function taskPrompt(task: Task, agent: Record<string, unknown> = {}): Array<{ role: "system" | "user"; content: string }> {
  const config = agentConfig(agent);
  const system = systemPrompt(environmentPrompt(toolProfile(config.toolProfile), config), { think: config.think });
  const user = pyStrip(firstUserMessage(task.problemStatement, task.image.workdir, config.maxPromptTokens).content);
  return [
    { role: "system", content: system },
    { role: "user", content: user },
  ];
}

function groundTruth(t: Task): string {
  return JSON.stringify(GroundTruthSchema.parse({ instance_id: t.id, repo: t.repo, base_commit: t.commit, FAIL_TO_PASS: t.failToPass, PASS_TO_PASS: t.passToPass, test_patch: t.testPatch }));
}

/** A task as a verl row; `index` its position in the set. */
export function toVerlRow(task: Task, index: number, agent: Record<string, unknown> = {}): VerlRow {
  return {
    data_source: `forager/${task.kind}`,
    prompt: taskPrompt(task, agent),
    ability: "swe",
    reward_model: { style: "rule", ground_truth: groundTruth(task) },
    extra_info: { split: "train", index, task_id: task.id, repo: task.repo, kind: task.kind },
  };
}

/** A task as a SkyRL row; `env_class` names the environment that grades it (default "forager"). */
export function toSkyRLRow(task: Task, index: number, agent: Record<string, unknown> = {}, envClass = "forager"): SkyRLRow {
  return {
    data_source: `forager/${task.kind}`,
    prompt: taskPrompt(task, agent),
    env_class: envClass,
    reward_spec: { method: "rule", ground_truth: groundTruth(task) },
    extra_info: { split: "train", index, task_id: task.id, repo: task.repo, kind: task.kind },
  };
}

// ---------------------------------------------------------------------------------------------
// Writing parquet in the Hugging Face layout

type SchemaElement = { name: string; type?: string; converted_type?: string; repetition_type?: string; num_children?: number };
const str = (name: string, req = false): SchemaElement => ({ name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: req ? "REQUIRED" : "OPTIONAL" });
const struct = (name: string, children: SchemaElement[][]): SchemaElement[] => [{ name, repetition_type: "OPTIONAL", num_children: children.length }, ...children.flat()];
const list = (name: string, element: SchemaElement[]): SchemaElement[] => [
  { name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
  { name: "list", repetition_type: "REPEATED", num_children: 1 },
  ...element,
];
const messagesElement = (fields: string[]) => struct("element", fields.map((f) => [str(f)]));
const extraInfo = struct("extra_info", [[str("split")], [{ name: "index", type: "INT64", repetition_type: "OPTIONAL" }], [str("task_id")], [str("repo")], [str("kind")]]);

const EXTRA_FEATURES = `    - name: extra_info\n      struct:\n        - name: split\n          dtype: string\n        - name: index\n          dtype: int64\n        - name: task_id\n          dtype: string\n        - name: repo\n          dtype: string\n        - name: kind\n          dtype: string\n`;

/** Parquet schema and Hugging Face feature list of each parquet-written format. */
const LAYOUTS = {
  parquet: {
    columns: ["id", "run_id", "task_id", "sample", "messages", "tools", "reward", "resolved", "end_reason", "model", "turns"],
    schema: [
      str("id", true), str("run_id", true), str("task_id", true), { name: "sample", type: "INT32", repetition_type: "REQUIRED" },
      ...list("messages", messagesElement(["role", "content", "tool_call_id", "tool_calls"])),
      str("tools", true), { name: "reward", type: "DOUBLE", repetition_type: "REQUIRED" }, { name: "resolved", type: "BOOLEAN", repetition_type: "REQUIRED" },
      str("end_reason", true), str("model"), { name: "turns", type: "INT32", repetition_type: "REQUIRED" },
    ],
    features: `    - name: id\n      dtype: string\n    - name: run_id\n      dtype: string\n    - name: task_id\n      dtype: string\n    - name: sample\n      dtype: int32\n    - name: messages\n      list:\n        - name: role\n          dtype: string\n        - name: content\n          dtype: string\n        - name: tool_call_id\n          dtype: string\n        - name: tool_calls\n          dtype: string\n    - name: tools\n      dtype: string\n    - name: reward\n      dtype: float64\n    - name: resolved\n      dtype: bool\n    - name: end_reason\n      dtype: string\n    - name: model\n      dtype: string\n    - name: turns\n      dtype: int32\n`,
  },
  verl: {
    columns: ["data_source", "prompt", "ability", "reward_model", "extra_info"],
    schema: [str("data_source", true), ...list("prompt", messagesElement(["role", "content"])), str("ability", true), ...struct("reward_model", [[str("style")], [str("ground_truth")]]), ...extraInfo],
    features: `    - name: data_source\n      dtype: string\n    - name: prompt\n      list:\n        - name: role\n          dtype: string\n        - name: content\n          dtype: string\n    - name: ability\n      dtype: string\n    - name: reward_model\n      struct:\n        - name: style\n          dtype: string\n        - name: ground_truth\n          dtype: string\n${EXTRA_FEATURES}`,
  },
  skyrl: {
    columns: ["data_source", "prompt", "env_class", "reward_spec", "extra_info"],
    schema: [str("data_source", true), ...list("prompt", messagesElement(["role", "content"])), str("env_class", true), ...struct("reward_spec", [[str("method")], [str("ground_truth")]]), ...extraInfo],
    features: `    - name: data_source\n      dtype: string\n    - name: prompt\n      list:\n        - name: role\n          dtype: string\n        - name: content\n          dtype: string\n    - name: env_class\n      dtype: string\n    - name: reward_spec\n      struct:\n        - name: method\n          dtype: string\n        - name: ground_truth\n          dtype: string\n${EXTRA_FEATURES}`,
  },
};

export type ParquetFormat = keyof typeof LAYOUTS;

/**
 * Write rows as parquet. `output` ending in `.parquet`: that one file. Otherwise a dataset
 * directory in the Hugging Face layout: `OUTPUT/data/train-00000-of-00001.parquet` and
 * `OUTPUT/README.md` (features, `configs: data_files: data/train-*`).
 * @returns the parquet file written.
 * @throws Error when the output exists and is not empty (nothing is overwritten), or when there is no row.
 */
export async function writeParquetDataset(format: ParquetFormat, rows: readonly Record<string, unknown>[], output: string): Promise<string> {
  if (!rows.length) throw new Error(`nothing to export: no ${format === "parquet" ? "trajectory" : "task"} selected`);
  const { parquetWriteBuffer } = await import("hyparquet-writer");
  const layout = LAYOUTS[format];
  const single = output.endsWith(".parquet");
  const file = single ? output : path.join(output, "data", "train-00000-of-00001.parquet");
  if (fs.existsSync(file) || (!single && fs.existsSync(output) && fs.readdirSync(output).length)) throw new Error(`${single ? file : output} already exists and is not empty: choose a new --output`);
  const columnData = layout.columns.map((name) => ({ name, data: rows.map((r) => (name === "extra_info" ? { ...(r[name] as object), index: BigInt((r[name] as { index: number }).index) } : (r[name] ?? null))) }));
  const buf = parquetWriteBuffer({ columnData: columnData as never, schema: [{ name: "root", num_children: layout.columns.length }, ...layout.schema] as never, kvMetadata: [{ key: "forager.format", value: format }] });
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, Buffer.from(buf));
  if (!single) {
    const card = `---\ndataset_info:\n  features:\n${layout.features}  splits:\n    - name: train\n      num_examples: ${rows.length}\nconfigs:\n  - config_name: default\n    data_files:\n      - split: train\n        path: data/train-*\n---\n\n# forager export (${format})\n\nWritten by \`forager export --format ${format}\` (docs/cli.md, "Formats").\n`;
    fs.writeFileSync(path.join(output, "README.md"), card);
  }
  return file;
}
