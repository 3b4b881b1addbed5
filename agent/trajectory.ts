/**
 * The trajectory record (schemaVersion 1): one episode of one task, every turn with what the
 * model saw and did, the submitted patch, its evaluation and reward. Stored as JSONL, one
 * trajectory per line. The zod schema is the one definition; types come from it.
 */
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { formatZodIssues } from "../lib/zod-util";
import { renderAssistantTurn } from "./prompt";
import { EvalOutcomeSchema, EvaluationSchema, type Evaluation } from "../rewards/outcome";

export const TRAJECTORY_SCHEMA_VERSION = 1;

export const EndReasonSchema = z.enum([
  "final_answer",
  "context_exceeded",
  "max_turns",
  "sandbox_timeout",
  "env_error",
  "policy_error",
  /** strictFormat only: a format error ended the episode. */
  "format_error",
]);
export type EndReason = z.infer<typeof EndReasonSchema>;

export { EvalOutcomeSchema };

export { EvaluationSchema, type Evaluation };

export const TurnSchema = z.object({
  /** 0-based turn number. */
  index: z.number().int().nonnegative(),
  /** Tokens of the prompt this turn was generated from (server usage when given, else estimate). */
  promptTokens: z.number().int().nonnegative(),
  /** The model's raw text (after the `<think>\n` prefill). */
  text: z.string(),
  /** Reasoning (text before `</think>`), when in reasoning mode. */
  reasoning: z.string().optional(),
  /** The parsed tool call. */
  action: z.object({ tool: z.string(), argument: z.string() }).optional(),
  /** The format error the model was told about (or that ended the episode). */
  formatError: z.object({ type: z.string(), message: z.string() }).optional(),
  /** This turn was the final answer after a submit. */
  finalAnswer: z.boolean().optional(),
  /** Tokens generated this turn (server usage when given, else estimate). */
  completionTokens: z.number().int().nonnegative(),
  /** Context tokens used after this turn's action (the release's num_tokens). */
  usedTokens: z.number().int().nonnegative(),
  /** The sampled token ids exactly as the server returned them (completions mode). */
  tokenIds: z.array(z.number().int()).optional(),
  logprobs: z.array(z.number()).optional(),
  /**
   * Token ids this turn's prompt added to the previous turn's prompt + `tokenIds` (turn 0: the
   * whole prompt); the prompt sent = the concatenation over the turns so far (agent/token-ledger.ts).
   */
  promptDeltaTokenIds: z.array(z.number().int()).optional(),
  /** Why this turn's token ids are absent or not exact (chat mode, a server that returned none). */
  tokenIdsUnavailable: z.string().optional(),
  /** The weights version that produced this turn (set by `forager serve`'s weights switch or the endpoint). */
  weightsVersion: z.string().optional(),
  finishReason: z.string().optional(),
  /** Model call wall time, ms. */
  modelLatencyMs: z.number().nonnegative(),
  /**
   * Prompt tokens the server served from its prefix cache, as it reported them (OpenAI
   * `usage.prompt_tokens_details.cached_tokens`: vLLM with `--enable-prompt-tokens-details`, SGLang with
   * `--enable-cache-report`); absent when the server did not report them.
   */
  cachedPromptTokens: z.number().int().nonnegative().optional(),
  /** Time to first token of this turn's model call, ms (streamed calls only). */
  ttftMs: z.number().nonnegative().optional(),
  /** Base URL of the model endpoint that answered this turn. */
  endpoint: z.string().optional(),
  /** This turn's request moved the episode to another endpoint: the one it left, and why (inference-client/routing.ts). */
  endpointMove: z.object({ from: z.string(), reason: z.string() }).optional(),
  /** Tool that ran (also set when it failed). */
  toolName: z.string().optional(),
  /** Tool ran without error (tool success flag). */
  toolSuccess: z.boolean().optional(),
  /** The raw tool output (before wrapping). */
  toolOutput: z.string().optional(),
  /** The message content the model saw next (tool result with budget, or the user feedback). */
  observation: z.string().optional(),
  /** Role of that message: `tool` or `user`. */
  observationRole: z.enum(["tool", "user"]).optional(),
  /** Observation was cut to maxToolResultTokens. */
  observationTruncated: z.boolean().optional(),
  /** Error type: the format error type, or the session status of bash (timeout, output_limit, exited), or "tool_error". */
  errorType: z.string().optional(),
  /** Tool wall time, ms. */
  toolDurationMs: z.number().nonnegative().optional(),
  remainingTurns: z.number().int().optional(),
  remainingTokens: z.number().int().optional(),
  /** Chat mode: the OpenAI tool call id. */
  toolCallId: z.string().optional(),
  /**
   * Chat mode: the assistant message as the server sent it — content, reasoning, and the tool calls
   * with their JSON `arguments` text (OpenAI chat completions) — kept for exports in the OpenAI form.
   */
  wire: z
    .object({
      content: z.string(),
      reasoning: z.string().optional(),
      toolCalls: z.array(z.object({ id: z.string(), name: z.string(), arguments: z.string() })),
    })
    .optional(),
});
export type Turn = z.infer<typeof TurnSchema>;

export const TrajectorySchema = z.object({
  schemaVersion: z.literal(TRAJECTORY_SCHEMA_VERSION),
  /** Unique id of the trajectory. */
  id: z.string().min(1),
  taskId: z.string().min(1),
  taskKind: z.string(),
  /** Image tag the sandbox ran. */
  image: z.string(),
  policy: z.object({
    kind: z.string(),
    model: z.string().optional(),
    weightsVersion: z.string().optional(),
    weightsPath: z.string().optional(),
    endpoint: z.string().optional(),
  }),
  sampling: z.object({ temperature: z.number(), topP: z.number(), maxTokens: z.number().int(), seed: z.number().int().optional() }),
  /** The AgentConfig used (snapshot). */
  config: z.record(z.string(), z.unknown()),
  /** The first two messages as the model saw them. */
  prompt: z.object({ system: z.string(), user: z.string(), assistantPrefix: z.string(), userTruncated: z.boolean().optional() }),
  turns: z.array(TurnSchema),
  /** Last successfully submitted patch. */
  submittedPatch: z.string().optional(),
  evaluation: EvaluationSchema.optional(),
  reward: z.number(),
  rewardParts: z.record(z.string(), z.unknown()).optional(),
  endReason: EndReasonSchema,
  /** Why (message) for env/policy errors and limits. */
  endDetail: z.string().optional(),
  /** policy_error: what kind of error ended it ("inference": the model server failed after retries; "aborted"). */
  endErrorKind: z.enum(["inference", "aborted"]).optional(),
  /** Tokens used at the end (the release's num_tokens). */
  usedTokens: z.number().int().nonnegative(),
  /** Wall times, seconds. */
  times: z.object({
    startedAt: z.string(),
    totalSeconds: z.number().nonnegative(),
    sandboxStartSeconds: z.number().nonnegative(),
    modelSeconds: z.number().nonnegative(),
    toolSeconds: z.number().nonnegative(),
    evalSeconds: z.number().nonnegative(),
  }),
  /** Distinct weights versions of the turns, in order of first use (when turns record one). */
  weightsVersions: z.array(z.string()).optional(),
  /** The turns came from more than one weights version (an episode that spanned a weights switch). */
  spansWeightsVersions: z.boolean().optional(),
  /** Fresh rollouts started because of environment errors. */
  envRetries: z.number().int().nonnegative(),
  /** Messages of the environment errors retried. */
  envErrors: z.array(z.string()).default([]),
});
export type Trajectory = z.infer<typeof TrajectorySchema>;
export type TrajectoryInput = z.input<typeof TrajectorySchema>;

/** Append one trajectory as one JSON line (directories created). Validates first. @throws ZodError */
export function writeTrajectory(file: string, t: TrajectoryInput): void {
  const parsed = TrajectorySchema.parse(t);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.appendFileSync(file, JSON.stringify(parsed) + "\n");
}

/** Result of reading a JSONL file: good records, and bad lines by 1-based line number. */
export interface ReadTrajectoriesResult {
  trajectories: Trajectory[];
  errors: Array<{ line: number; message: string }>;
}

/** Read every trajectory of a JSONL file; a bad line is reported (line number, reason), the rest read. */
export function readTrajectories(file: string): ReadTrajectoriesResult {
  const text = fs.readFileSync(file, "utf8");
  const out: ReadTrajectoriesResult = { trajectories: [], errors: [] };
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      out.errors.push({ line: i + 1, message: `invalid JSON: ${(err as Error).message}` });
      return;
    }
    const r = TrajectorySchema.safeParse(value);
    if (r.success) out.trajectories.push(r.data);
    else out.errors.push({ line: i + 1, message: formatZodIssues(r.error) });
  });
  return out;
}

/** A chat training record: OpenAI-style messages plus the outcome. */
export interface ChatRecord {
  id: string;
  taskId: string;
  messages: Array<{ role: "system" | "user" | "assistant" | "tool"; content: string; name?: string }>;
  reward: number;
  resolved: boolean;
  endReason: EndReason;
  policy: Trajectory["policy"];
}

/**
 * The trajectory as chat messages for training: system, user, then per turn the assistant
 * message (prefill + raw text, e.g. `<think>\n…</think>\n<tool: bash>…`) and the observation
 * (`tool` with `name`, or `user` for a format error).
 */
export function toChatRecord(t: Trajectory): ChatRecord {
  const messages: ChatRecord["messages"] = [
    { role: "system", content: t.prompt.system },
    { role: "user", content: t.prompt.user },
  ];
  for (const turn of t.turns) {
    messages.push({ role: "assistant", content: t.prompt.assistantPrefix + turn.text });
    if (turn.observation !== undefined) {
      if (turn.observationRole === "tool") messages.push({ role: "tool", name: turn.toolName, content: turn.observation });
      else messages.push({ role: "user", content: turn.observation });
    }
  }
  return {
    id: t.id,
    taskId: t.taskId,
    messages,
    reward: t.reward,
    resolved: t.evaluation?.resolved ?? false,
    endReason: t.endReason,
    policy: t.policy,
  };
}

/** The whole token stream of a trajectory in the CWM text format (for inspection and tests). */
export function renderTrajectoryText(t: Trajectory): string {
  let s = "<|begin_of_text|>";
  s += `<|start_header_id|>system<|end_header_id|>\n\n${t.prompt.system}<|eot_id|>`;
  s += `<|start_header_id|>user<|end_header_id|>\n\n${t.prompt.user}<|eot_id|>`;
  for (const turn of t.turns) {
    s += renderAssistantTurn(t.prompt.assistantPrefix, turn.text);
    if (turn.observation !== undefined) {
      const role = turn.observationRole === "tool" ? `tool: ${turn.toolName ?? ""}` : "user";
      s += `<|start_header_id|>${role}<|end_header_id|>\n\n${turn.observation}<|eot_id|>`;
    }
  }
  return s;
}
