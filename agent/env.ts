/**
 * One episode as an environment, in the init/step/close shape of SkyRL-gym's environments and
 * the loop of mini-swe-agent: the CWM agentic SWE environment (facebookresearch/cwm
 * `cwm/rl/envs/envs/swerl_tool.py` SWERLToolEnv.start/step; facts in
 * shared/reference/cwm-environment.md), reproduced step for step.
 *
 * - {@link EpisodeEnv.open} (init): a sandbox from the factory (any {@link EnvSandbox}: Docker's
 *   `Sandbox`, or `MemorySandbox` in unit tests), the task's start state (mutate-fix: the bug applied
 *   and history squashed, tasks/start.ts), and the prompt: system (reasoning instruction +
 *   `# Environment`), the issue (cut from the left), the assistant prefill `<think>\n`.
 * - {@link EpisodeEnv.observe}: what the policy sees before its next action (the dialog, the rendered
 *   prompt, tokens used and the most it may generate), or undefined when the context is already
 *   full (the episode then ends with "context_exceeded").
 * - {@link EpisodeEnv.step}: one action (text and what the server said about it): tokens used +=
 *   the action; the context check (used > context → "context_exceeded"), then the turn check
 *   (turn number ≥ maxTurns → "max_turns"), both before the action runs; a format error goes back
 *   as a user message `TYPE: MESSAGE` — or, after a successful submit, a turn without a tool call
 *   is the final answer ("final_answer"); a tool call runs and its result goes back as
 *   `tool: NAME` with `<output>` and `<budget>`. Returns the turn and whether the episode is done.
 * - {@link EpisodeEnv.close}: the sandbox is destroyed (always; the episode's evaluation happens
 *   after, in a fresh container, as the release closes the state before evaluating).
 *
 * Token accounting: the server's `usage` (prompt + completion) when given, else the Llama-3
 * tokenizer estimate; observations are always estimated locally, as the release encodes them.
 */
import { EnvironmentError } from "../lib/errors";
import { countTokens } from "../inference-client/tokenizer";
import type { SandboxConfigInput } from "../sandbox/config";
import { openTaskSandbox, TaskSetupError, type TaskSandbox } from "../tasks/sandbox";
import type { Task } from "../tasks/schema";

export { TaskSetupError } from "../tasks/sandbox";
import { ActionFormatError, parseAction, splitReasoning } from "../tools/parse";
import { toolProfile } from "../tools/registry";
import type { Tool, ToolResult } from "../tools/types";
import type { AgentConfig } from "./config";
import type { PolicyStep } from "./policy";
import {
  EOT,
  THINK_START,
  environmentPrompt,
  firstUserMessage,
  formatErrorMessage,
  observationSegment,
  pyStrip,
  renderDialog,
  systemPrompt,
  toolResultMessage,
  type Message,
} from "./prompt";
import type { EndReason, Turn } from "./trajectory";

/** What an episode's sandbox must be: a runtime for the tools and a container to destroy. */
export type EnvSandbox = TaskSandbox;

/** Makes the agent's sandbox from its configuration (default: a Docker `Sandbox`). */
export type SandboxFactory = (cfg: SandboxConfigInput) => Promise<EnvSandbox>;

/** The sandbox could not be started (`fatal`: the task's fault, not retried). */
export class EnvStartError extends Error {
  constructor(
    message: string,
    readonly fatal: boolean,
  ) {
    super(message);
    this.name = "EnvStartError";
  }
}

/** What an episode produced, for the trajectory (agent/episode.ts). */
export interface EpisodeOutcome {
  turns: Turn[];
  endReason: EndReason;
  endDetail?: string;
  submittedPatch?: string;
  usedTokens: number;
  system: string;
  user: string;
  userTruncated: boolean;
  sandboxStartSeconds: number;
  modelSeconds: number;
  toolSeconds: number;
  /** Not retried even when env_error. */
  fatal?: boolean;
  /** What kind of error ended a policy_error episode (the orchestrator retries inference failures). */
  endErrorKind?: "inference" | "aborted";
}

/** What the policy sees before acting (agent/policy.ts PolicyContext without the task and config). */
export interface EnvObservation {
  tools: readonly Tool[];
  messages: readonly Message[];
  prompt: string;
  prefix: string;
  turn: number;
  usedTokens: number;
  maxTokens: number;
  turns: readonly Turn[];
}

/** The result of one step. */
export interface EnvStep {
  turn: Turn;
  done: boolean;
}

export interface EpisodeEnvOptions {
  task: Task;
  config: AgentConfig;
  image: string;
  sandboxFactory: SandboxFactory;
  /** Labels of the sandbox (episode id, run). */
  labels?: Record<string, string>;
  /** Called after every turn. */
  onTurn?: (turn: Turn) => void;
}

/** The outcome of an episode that never started (no sandbox, no prompt yet). */
export function emptyOutcome(endReason: EndReason, endDetail: string): EpisodeOutcome {
  return { turns: [], endReason, endDetail, usedTokens: 0, system: "", user: "", userTruncated: false, sandboxStartSeconds: 0, modelSeconds: 0, toolSeconds: 0 };
}

/** One episode as an environment (see the module comment). */
export class EpisodeEnv {
  private readonly tools: readonly Tool[];
  private readonly toolNames: string[];
  private readonly prefix: string;
  private readonly messages: Message[];
  private prompt: string;
  private used: number;
  private submitted: string | undefined;
  private readonly sandboxStarted: number;
  private readonly out: EpisodeOutcome;
  private finished = false;
  private closed = false;

  private constructor(
    private readonly opts: EpisodeEnvOptions,
    private readonly sandbox: EnvSandbox,
    sandboxStartSeconds: number,
  ) {
    const { task, config } = opts;
    this.tools = toolProfile(config.toolProfile);
    this.toolNames = this.tools.map((t) => t.name);
    this.prefix = config.think ? THINK_START : "";
    const system = systemPrompt(environmentPrompt(this.tools, config), { think: config.think });
    const first = firstUserMessage(task.problemStatement, task.image.workdir, config.maxPromptTokens);
    const user = pyStrip(first.content);
    this.messages = [
      { role: "system", content: system },
      { role: "user", content: user },
    ];
    this.out = { ...emptyOutcome("final_answer", ""), system, user, userTruncated: first.truncated === true, sandboxStartSeconds };
    this.out.endDetail = undefined;
    this.prompt = renderDialog(this.messages, this.prefix);
    this.used = countTokens(this.prompt);
    this.sandboxStarted = Date.now();
  }

  /**
   * Init: the sandbox and the task's start state, then the prompt.
   * @throws EnvStartError when the sandbox cannot start (`fatal` when the task itself is at fault).
   */
  static async open(opts: EpisodeEnvOptions): Promise<EpisodeEnv> {
    const { task, config } = opts;
    const t0 = performance.now();
    let sandbox: EnvSandbox;
    try {
      sandbox = await openTaskSandbox(task, {
        image: opts.image,
        factory: opts.sandboxFactory,
        config: {
          lifetimeSeconds: config.sandboxLifetimeSeconds,
          commandTimeoutSeconds: config.commandTimeoutSeconds,
          outputLimitBytes: config.outputLimitBytes,
          network: config.network,
          labels: opts.labels ?? {},
        },
      });
    } catch (err) {
      throw new EnvStartError(`sandbox start: ${(err as Error).message}`, err instanceof TaskSetupError);
    }
    return new EpisodeEnv(opts, sandbox, (performance.now() - t0) / 1000);
  }

  /** The sandbox's name (for events and logs). */
  get sandboxName(): string {
    return this.sandbox.name;
  }

  /** Whether the episode has ended. */
  get done(): boolean {
    return this.finished;
  }

  /**
   * What the policy sees before its next action; undefined when the episode is over, or when the
   * context has no room left for an action (the episode then ends "context_exceeded").
   */
  observe(): EnvObservation | undefined {
    if (this.finished) return undefined;
    const maxTokens = Math.min(this.opts.config.maxActionTokens, this.opts.config.contextTokens - this.used);
    if (maxTokens <= 0) {
      this.end("context_exceeded", `Context size exceeded: ${this.used} >= ${this.opts.config.contextTokens}`);
      return undefined;
    }
    return {
      tools: this.tools,
      messages: this.messages,
      prompt: this.prompt,
      prefix: this.prefix,
      turn: this.out.turns.length,
      usedTokens: this.used,
      maxTokens,
      turns: this.out.turns,
    };
  }

  /** The policy failed to act (`kind` says whether inference or an abort is to blame): the episode ends "policy_error". */
  fail(detail: string, kind?: "inference" | "aborted", modelSeconds = 0): void {
    this.out.modelSeconds += modelSeconds;
    if (kind) this.out.endErrorKind = kind;
    this.end("policy_error", detail);
  }

  /**
   * One action: record it, check the context and the turn limit, parse it, run its tool, append
   * the observation. `modelSeconds`: how long the policy took to choose it.
   * @throws Error when the episode is already over.
   */
  async step(step: PolicyStep, modelSeconds = step.latencyMs / 1000): Promise<EnvStep> {
    if (this.finished) throw new Error("the episode is over");
    const { config } = this.opts;
    this.out.modelSeconds += modelSeconds;
    const index = this.out.turns.length;
    const text = step.text;
    const promptTokens = step.usage?.promptTokens ?? this.used;
    const completionTokens = step.usage?.completionTokens ?? step.tokenIds?.length ?? countTokens(text) + (text.endsWith(EOT) ? 0 : 1);
    this.used = (step.usage ? step.usage.promptTokens : this.used) + completionTokens;
    const turn: Turn = {
      index,
      promptTokens,
      text,
      completionTokens,
      usedTokens: this.used,
      tokenIds: step.tokenIds,
      logprobs: step.logprobs,
      finishReason: step.finishReason,
      modelLatencyMs: Math.max(0, step.latencyMs),
      toolCallId: step.toolCallId,
      ...(step.wire ? { wire: step.wire } : {}),
      ...(step.promptDeltaTokenIds ? { promptDeltaTokenIds: step.promptDeltaTokenIds } : {}),
      ...(step.tokenIdsUnavailable ? { tokenIdsUnavailable: step.tokenIdsUnavailable } : {}),
      ...(step.weightsVersion !== undefined ? { weightsVersion: step.weightsVersion } : {}),
      ...(step.usage?.cachedPromptTokens !== undefined ? { cachedPromptTokens: step.usage.cachedPromptTokens } : {}),
      ...(step.ttftMs !== undefined ? { ttftMs: step.ttftMs } : {}),
      ...(step.endpoint !== undefined ? { endpoint: step.endpoint } : {}),
      ...(step.endpointMove ? { endpointMove: step.endpointMove } : {}),
    };
    const split = splitReasoning(text, { think: config.think });
    if (config.think && split.thinkEndCount > 0) turn.reasoning = split.reasoning;
    const stepId = index + 1;
    if (this.used > config.contextTokens) return this.last(turn, "context_exceeded", `Context size exceeded: ${this.used} > ${config.contextTokens}`);
    if (stepId >= config.maxTurns) return this.last(turn, "max_turns", "Max turns reached");

    // --- parse
    let call: { name: string; argument: string };
    try {
      if (step.formatError) throw new ActionFormatError(step.formatError.type, step.formatError.message);
      call = parseAction(text, { think: config.think, tools: this.toolNames });
    } catch (err) {
      if (!(err instanceof ActionFormatError)) throw err;
      turn.formatError = { type: err.errorType, message: err.message };
      if (this.submitted !== undefined && (!config.think || split.thinkEndCount === 1) && (!config.strictFormat || split.answer.includes("##"))) {
        turn.finalAnswer = true;
        turn.formatError = undefined;
        return this.last(turn, "final_answer");
      }
      if (config.strictFormat) return this.last(turn, "format_error", `Tool call format error: ${err.feedback}`);
      const msg = formatErrorMessage(err.errorType, err.message, config.maxToolResultTokens);
      turn.errorType = err.errorType;
      turn.observation = msg.content;
      turn.observationRole = "user";
      this.advance(text, msg, step.finishReason);
      return this.keep(turn);
    }
    turn.action = { tool: call.name, argument: call.argument };
    turn.toolName = call.name;

    // --- run the tool
    if ((Date.now() - this.sandboxStarted) / 1000 >= config.sandboxLifetimeSeconds) {
      return this.last(turn, "sandbox_timeout", `sandbox lifetime of ${config.sandboxLifetimeSeconds} s reached`);
    }
    const tool = this.tools.find((t) => t.name === call.name)!;
    let result: ToolResult;
    const tt = performance.now();
    try {
      result = await tool.run(this.sandbox, call.argument);
    } catch (err) {
      turn.toolDurationMs = performance.now() - tt;
      this.out.toolSeconds += turn.toolDurationMs / 1000;
      const expired = (Date.now() - this.sandboxStarted) / 1000 >= config.sandboxLifetimeSeconds - 1;
      turn.errorType = expired ? "sandbox_timeout" : err instanceof EnvironmentError ? "env_error" : "tool_exception";
      return this.last(turn, expired ? "sandbox_timeout" : "env_error", `${call.name}: ${(err as Error).message}`);
    }
    turn.toolDurationMs = performance.now() - tt;
    this.out.toolSeconds += turn.toolDurationMs / 1000;
    turn.toolSuccess = result.success;
    turn.toolOutput = result.output;
    if (!result.success) {
      const status = result.metadata?.status;
      turn.errorType = typeof status === "string" && status !== "ok" ? status : "tool_error";
    }
    if (call.name === "submit" && result.success && typeof result.metadata?.patch === "string") {
      this.submitted = result.metadata.patch;
      this.out.submittedPatch = this.submitted;
    }
    const obs = toolResultMessage(call.name, result.output, {
      contextTokens: config.contextTokens,
      usedTokens: this.used,
      remainingTurns: config.maxTurns - stepId,
      maxToolResultTokens: config.maxToolResultTokens,
    });
    turn.observation = obs.message.content;
    turn.observationRole = "tool";
    turn.observationTruncated = obs.message.truncated || undefined;
    turn.remainingTurns = config.maxTurns - stepId;
    turn.remainingTokens = obs.remainingTokens;
    this.advance(text, { role: "tool", tool: call.name, content: obs.message.content }, step.finishReason);
    return this.keep(turn);
  }

  /** End the episode now (an abort, a policy failure) with the reason. */
  end(reason: EndReason, detail?: string): void {
    this.finished = true;
    this.out.endReason = reason;
    this.out.endDetail = detail;
  }

  /** What the episode produced so far (complete once it is done). */
  outcome(): EpisodeOutcome {
    return { ...this.out, usedTokens: this.used };
  }

  /** Destroy the sandbox. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sandbox.destroy();
  }

  private keep(turn: Turn): EnvStep {
    this.out.turns.push(turn);
    this.opts.onTurn?.(turn);
    return { turn, done: false };
  }

  private last(turn: Turn, reason: EndReason, detail?: string): EnvStep {
    this.end(reason, detail);
    this.out.turns.push(turn);
    this.opts.onTurn?.(turn);
    return { turn, done: true };
  }

  /** Append the action and the observation to the dialog and the rendered prompt. */
  private advance(action: string, obs: Message, finishReason: string | undefined): void {
    this.messages.push({ role: "assistant", content: this.prefix + action }, obs);
    this.prompt = this.prompt + action + (action.endsWith(EOT) ? "" : EOT) + observationSegment(obs, this.prefix);
    this.used += countTokens(observationSegment(obs, this.prefix)) + (finishReason === "length" ? 1 : 0);
  }
}
