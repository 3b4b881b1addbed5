/**
 * Policies: who chooses the next action of an episode.
 *
 * - {@link HttpPolicy}: a model behind an OpenAI-compatible server. "completions" mode sends the
 *   rendered CWM text prompt (agent/prompt.ts) to /v1/completions with the CWM stop token ids;
 *   "chat" mode sends OpenAI messages with the profile's tools as functions and turns the
 *   returned tool calls into the same `<tool: NAME>` text, so both run the same tools.
 * - {@link ReplayPolicy}: the raw texts of a recorded trajectory, in order.
 * - OraclePolicy (agent/oracle.ts) and HumanPolicy (agent/human.ts).
 */
import { randomUUID } from "node:crypto";
import type { Task } from "../tasks/schema";
import type { Tool } from "../tools/types";
import { TOOLS } from "../tools/registry";
import {
  CWM_STOP_TOKEN_IDS,
  type ChatMessageParam,
  type InferenceClient,
  type ModelIdentity,
  type ToolCall as ChatToolCall,
  type ToolDefinition,
} from "../inference-client/client";
import { openAIFunctions } from "../tools/registry";
import type { AgentConfig } from "./config";
import { THINK_END, type Message } from "./prompt";
import { TokenLedger } from "./token-ledger";
import type { Trajectory, Turn } from "./trajectory";

/** Everything a policy may look at to choose the next action. */
export interface PolicyContext {
  task: Task;
  config: AgentConfig;
  tools: readonly Tool[];
  /** The dialog so far (system, user, then assistant / observation pairs); assistant contents include the prefix. */
  messages: readonly Message[];
  /** The rendered CWM prompt: every message, then the assistant header and `prefix`. */
  prompt: string;
  /** The assistant prefill (`<think>\n` in reasoning mode, else ""). */
  prefix: string;
  /** 0-based turn number. */
  turn: number;
  /** Tokens used so far (the prompt's size), tokens. */
  usedTokens: number;
  /** Most tokens this turn may generate, tokens. */
  maxTokens: number;
  /** The turns recorded so far (with tool outcomes). */
  turns: readonly Turn[];
  signal?: AbortSignal;
}

/** A chat-mode assistant message as it came over the wire (OpenAI chat completions `message`). */
export type WireMessage = NonNullable<Turn["wire"]>;

/** One action chosen by a policy. */
export interface PolicyStep {
  /** The raw text after the prefill (CWM form: reasoning, `</think>`, one tool call or a final answer). */
  text: string;
  tokenIds?: number[];
  logprobs?: number[];
  /** Server token counts, tokens; `cachedPromptTokens` when the server reported prefix-cache hits. */
  usage?: { promptTokens: number; completionTokens: number; cachedPromptTokens?: number };
  /** Wall time of the call, ms. */
  latencyMs: number;
  /** Time to first token, ms (streamed calls). */
  ttftMs?: number;
  /** Base URL of the endpoint that answered. */
  endpoint?: string;
  /** The call moved the episode to another endpoint: the one it left, and why. */
  endpointMove?: { from: string; reason: string };
  finishReason?: string;
  /** Chat mode: the id of the (first) tool call. */
  toolCallId?: string;
  /** Chat mode: the assistant message as the server sent it (content, reasoning, tool calls with JSON arguments). */
  wire?: WireMessage;
  /** A format problem found by the policy itself (chat mode: invalid JSON arguments). */
  formatError?: { type: "FormatError" | "NoSuchToolError"; message: string };
  /**
   * Token ids this turn's prompt added to the previous prompt + completion ids (turn 0: the whole
   * prompt), when the prompt was sent as token ids (agent/token-ledger.ts).
   */
  promptDeltaTokenIds?: number[];
  /** Why this turn has no exact token ids (chat mode, a server that returned none): never filled in silently. */
  tokenIdsUnavailable?: string;
  /** The weights version that produced this turn (serve/weights.ts), when known. */
  weightsVersion?: string;
}

/** Identity recorded with a trajectory. */
export interface PolicyIdentity {
  model?: string;
  weightsVersion?: string;
  weightsPath?: string;
  endpoint?: string;
}

/** A policy. `start` is called at the beginning of every rollout (also a retried one). */
export interface Policy {
  readonly kind: string;
  identity?(): Promise<PolicyIdentity>;
  start?(task: Task, config: AgentConfig): void | Promise<void>;
  /** Called once the episode is over, whatever its end: frees per-episode state (the inference client's affinity session). */
  end?(): void;
  /** @throws anything: the episode ends with "policy_error". */
  next(ctx: PolicyContext): Promise<PolicyStep>;
}

/** A policy gave up (human `:quit`, replay exhausted, oracle out of moves). */
export class PolicyStopped extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PolicyStopped";
  }
}

// ---------------------------------------------------------------------------------------------
// HttpPolicy
// ---------------------------------------------------------------------------------------------

export interface HttpPolicyOptions {
  /** Ask for sampled token ids and their logprobs (completions mode). Default true. */
  returnTokenIds?: boolean;
  /** Extra request body fields. */
  extraBody?: Record<string, unknown>;
  /**
   * Completions mode: send the prompt as token ids kept exact over the episode (previous prompt ids
   * + the completion ids as returned + the tokenized observation; agent/token-ledger.ts) instead of
   * text the server would re-tokenize. Default true; needs `returnTokenIds`.
   */
  tokenPrompt?: boolean;
  /** Stream the model's answers (SSE) so each turn records its time to first token. Default false. */
  stream?: boolean;
}

/**
 * A model behind an OpenAI-compatible server through {@link InferenceClient}. Every request of an
 * episode carries the episode's affinity (a session key made at `start`, the task id as its group), so
 * the client keeps the episode, and the K samples of its task, on the endpoint holding its prefix.
 */
export class HttpPolicy implements Policy {
  readonly kind = "http";
  private session = randomUUID();
  private group: string | undefined;
  /** Chat mode: the assistant wire message of each turn, to send back with the history. */
  private chatTurns = new Map<number, { content: string; reasoning?: string; toolCalls: ChatToolCall[] }>();
  private readonly ledger = new TokenLedger();

  constructor(
    private readonly client: InferenceClient,
    private readonly opts: HttpPolicyOptions = {},
  ) {}

  async identity(): Promise<PolicyIdentity> {
    const id: ModelIdentity = await this.client.modelIdentity();
    return { model: id.model, weightsVersion: id.weightsVersion, weightsPath: id.weightsPath, endpoint: id.endpoint };
  }

  start(task?: Task): void {
    this.chatTurns.clear();
    this.ledger.reset();
    this.client.endSession(this.session);
    this.session = randomUUID();
    this.group = task?.id;
  }

  end(): void {
    this.client.endSession(this.session);
  }

  /** The routing hint of this episode's requests. */
  private affinity(): { key: string; group?: string } {
    return this.group === undefined ? { key: this.session } : { key: this.session, group: this.group };
  }

  /** What every turn records about the call besides the text. */
  private static callFields(r: { ttftMs?: number; endpoint: string; move?: { from: string; reason: string } }): Pick<PolicyStep, "ttftMs" | "endpoint" | "endpointMove"> {
    return {
      endpoint: r.endpoint,
      ...(r.ttftMs !== undefined ? { ttftMs: r.ttftMs } : {}),
      ...(r.move ? { endpointMove: { from: r.move.from, reason: r.move.reason } } : {}),
    };
  }

  next(ctx: PolicyContext): Promise<PolicyStep> {
    return ctx.config.mode === "chat" ? this.nextChat(ctx) : this.nextCompletion(ctx);
  }

  private async nextCompletion(ctx: PolicyContext): Promise<PolicyStep> {
    const wantIds = this.opts.returnTokenIds ?? true;
    const tokenPrompt = wantIds && (this.opts.tokenPrompt ?? true);
    if (ctx.turn === 0) this.ledger.reset();
    let prompt: string | number[] = ctx.prompt;
    let delta: number[] | undefined;
    if (tokenPrompt) {
      const d = this.ledger.next(ctx.prompt);
      if (!this.ledger.broken) {
        prompt = this.ledger.promptIds();
        delta = d.ids;
      }
    }
    const r = await this.client.complete({
      prompt,
      maxTokens: ctx.maxTokens,
      temperature: ctx.config.temperature,
      topP: ctx.config.topP,
      seed: ctx.config.seed,
      stopTokenIds: CWM_STOP_TOKEN_IDS,
      returnTokenIds: wantIds,
      logprobs: wantIds ? 0 : undefined,
      deadlineSeconds: ctx.config.modelDeadlineSeconds,
      signal: ctx.signal,
      extraBody: this.opts.extraBody,
      affinity: this.affinity(),
      stream: this.opts.stream,
    });
    if (tokenPrompt) this.ledger.completed(r.text, r.tokenIds);
    const missing = !wantIds
      ? "token ids not requested"
      : !r.tokenIds
        ? "the server returned no token ids"
        : tokenPrompt && this.ledger.broken
          ? `prompt ids not exact: ${this.ledger.broken}`
          : undefined;
    return {
      text: r.text,
      tokenIds: r.tokenIds,
      logprobs: r.logprobs,
      usage: r.usage,
      latencyMs: r.latencyMs,
      finishReason: r.finishReason,
      ...HttpPolicy.callFields(r),
      ...(delta ? { promptDeltaTokenIds: delta } : {}),
      ...(missing ? { tokenIdsUnavailable: missing } : {}),
    };
  }

  /** The dialog as OpenAI chat messages (tool results as `tool` messages answering the calls). */
  chatMessages(ctx: PolicyContext): ChatMessageParam[] {
    const out: ChatMessageParam[] = [
      { role: "system", content: ctx.messages[0]?.content ?? "" },
      { role: "user", content: ctx.messages[1]?.content ?? "" },
    ];
    for (const turn of ctx.turns) {
      const wire = this.chatTurns.get(turn.index);
      const calls = wire?.toolCalls ?? [];
      out.push({
        role: "assistant",
        content: wire ? wire.content : turn.text,
        ...(calls.length ? { tool_calls: calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } })) } : {}),
      });
      if (turn.observation === undefined) continue;
      if (calls.length) {
        for (const c of calls) out.push({ role: "tool", tool_call_id: c.id, content: turn.observation });
      } else {
        out.push({ role: "user", content: turn.observation });
      }
    }
    return out;
  }

  private async nextChat(ctx: PolicyContext): Promise<PolicyStep> {
    const r = await this.client.chat({
      messages: this.chatMessages(ctx),
      tools: openAIFunctions([...ctx.tools]) as ToolDefinition[],
      maxTokens: ctx.maxTokens,
      temperature: ctx.config.temperature,
      topP: ctx.config.topP,
      seed: ctx.config.seed,
      deadlineSeconds: ctx.config.modelDeadlineSeconds,
      signal: ctx.signal,
      extraBody: this.opts.extraBody,
      affinity: this.affinity(),
      stream: this.opts.stream,
    });
    const m = r.message;
    this.chatTurns.set(ctx.turn, { content: m.content, reasoning: m.reasoningContent, toolCalls: m.toolCalls });
    const { text, formatError } = chatToCwmText(m.content, m.reasoningContent, m.toolCalls, ctx.config.think);
    return {
      text,
      usage: r.usage,
      latencyMs: r.latencyMs,
      finishReason: r.finishReason,
      ...HttpPolicy.callFields(r),
      toolCallId: m.toolCalls[0]?.id,
      wire: { content: m.content, ...(m.reasoningContent !== undefined ? { reasoning: m.reasoningContent } : {}), toolCalls: m.toolCalls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments })) },
      formatError,
      tokenIdsUnavailable: "chat mode: the server returns text and tool calls, not token ids",
    };
  }
}

/**
 * A chat answer in the CWM text form: `REASONING</think>\n` (reasoning mode), the content, then
 * `<tool: NAME>\nARGUMENT\n</tool>` per tool call (arguments through the tool's `toText`).
 * Invalid JSON or arguments that do not fit the tool's parameters give a FormatError.
 */
export function chatToCwmText(
  content: string,
  reasoning: string | undefined,
  calls: readonly ChatToolCall[],
  think: boolean,
): { text: string; formatError?: PolicyStep["formatError"] } {
  let text = think ? `${reasoning ?? ""}${THINK_END}\n` : "";
  text += content;
  let formatError: PolicyStep["formatError"];
  for (const c of calls) {
    const tool = TOOLS[c.name];
    let arg = c.arguments;
    if (tool) {
      try {
        const parsed = tool.parameters.safeParse(JSON.parse(c.arguments));
        if (parsed.success) arg = tool.toText(parsed.data);
        else formatError ??= { type: "FormatError", message: `Invalid arguments for tool '${c.name}': ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}` };
      } catch (err) {
        formatError ??= { type: "FormatError", message: `Invalid JSON arguments for tool '${c.name}': ${(err as Error).message}` };
      }
    }
    text += `${text === "" || text.endsWith("\n") ? "" : "\n"}<tool: ${c.name}>\n${arg}\n</tool>`;
  }
  return { text, formatError };
}

// ---------------------------------------------------------------------------------------------
// ReplayPolicy
// ---------------------------------------------------------------------------------------------

/** Plays back the raw texts of a recorded trajectory; throws PolicyStopped when they run out. */
export class ReplayPolicy implements Policy {
  readonly kind = "replay";
  private i = 0;
  constructor(private readonly recorded: Pick<Trajectory, "turns" | "policy">) {}

  async identity(): Promise<PolicyIdentity> {
    return { model: this.recorded.policy.model, weightsVersion: this.recorded.policy.weightsVersion };
  }

  start(): void {
    this.i = 0;
  }

  async next(): Promise<PolicyStep> {
    const turn = this.recorded.turns[this.i++];
    if (!turn) throw new PolicyStopped("replay: the recorded trajectory has no more turns");
    return { text: turn.text, latencyMs: 0, tokenIds: turn.tokenIds, logprobs: turn.logprobs };
  }
}
