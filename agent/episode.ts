/**
 * One episode of the CWM agentic SWE environment (facebookresearch/cwm
 * `cwm/rl/envs/envs/swerl_tool.py` SWERLToolEnv.start/step; facts in
 * shared/reference/cwm-environment.md), reproduced step for step:
 *
 * 1. a sandbox from the task's instance image (mutate-fix: `task.startPatch` applied and folded
 *    into HEAD so `git diff` shows only the agent's changes);
 * 2. prompt: system (reasoning instruction + `# Environment`), the issue (cut from the left), the
 *    assistant prefill `<think>\n`;
 * 3. each turn: the policy acts; tokens used += the action; the context check (used > context →
 *    "context_exceeded"), then the turn check (turn number ≥ maxTurns → "max_turns"), both before
 *    the action runs; a format error goes back as a user message `TYPE: MESSAGE` — or, after a
 *    successful submit, a turn without a tool call is the final answer ("final_answer"); a tool
 *    call runs and its result goes back as `tool: NAME` with `<output>` and `<budget>`;
 * 4. the sandbox is always destroyed; the last submitted patch is evaluated (final answer only,
 *    like the release, unless `evaluateUnfinished`) and rewarded (rewards/reward.ts);
 * 5. environment errors (not the model's fault) are retried as fresh rollouts, up to maxEnvRetries.
 *
 * Token accounting: the server's `usage` (prompt + completion) when given, else the Llama-3
 * tokenizer estimate; observations are always estimated locally, as the release encodes them.
 */
import { randomUUID } from "node:crypto";
import { EnvironmentError } from "../lib/errors";
import { silentLogger, type Logger } from "../lib/log";
import { countTokens } from "../inference-client/tokenizer";
import { computeReward } from "../rewards/reward";
import type { Evaluator } from "../rewards/evaluator";
import { InferenceError } from "../inference-client/client";
import { patchSimilarity } from "../rewards/similarity";
import { Sandbox } from "../sandbox/sandbox";
import type { SandboxConfigInput } from "../sandbox/config";
import { buildInstanceImage } from "../images/build";
import type { Task } from "../tasks/schema";
import { needsStartState, prepareTaskSandbox } from "../tasks/start";
import { ActionFormatError, parseAction, splitReasoning } from "../tools/parse";
import { toolProfile } from "../tools/registry";
import type { ToolResult } from "../tools/types";
import { agentConfig, type AgentConfig, type AgentConfigInput } from "./config";
import type { Policy, PolicyIdentity } from "./policy";
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
import { TRAJECTORY_SCHEMA_VERSION, TrajectorySchema, type EndReason, type Evaluation, type Trajectory, type Turn } from "./trajectory";

export type { Evaluator } from "../rewards/evaluator";

/** An evaluator that evaluates nothing: outcome "fail", `resolved: false`, reason says why. */
export const noopEvaluator: Evaluator = async () => ({ outcome: "fail", resolved: false, reason: "no evaluator configured" });

/** Makes the agent's sandbox (tests pass their own; default Sandbox.create). */
export type SandboxFactory = (cfg: SandboxConfigInput) => Promise<Sandbox>;

/** Progress events besides turns. */
export type EpisodeEvent =
  | { type: "rollout_started"; attempt: number; image: string }
  | { type: "sandbox_started"; sandbox: string; seconds: number }
  | { type: "env_error"; attempt: number; message: string; willRetry: boolean }
  | { type: "evaluating"; patchBytes: number }
  | { type: "evaluated"; evaluation: Evaluation };

export interface RunEpisodeOptions {
  task: Task;
  policy: Policy;
  config?: AgentConfigInput | AgentConfig;
  /** Hidden-test evaluator; without one the submitted patch is not evaluated (no `evaluation` in the trajectory). */
  evaluator?: Evaluator;
  /** Image tag to run; default: {@link RunEpisodeOptions.resolveImage}, else the instance image built/cached by images/build.ts. */
  image?: string;
  resolveImage?: (task: Task) => Promise<string>;
  sandboxFactory?: SandboxFactory;
  /** Called after every turn (the observation is in the turn). */
  onTurn?: (turn: Turn) => void;
  onEvent?: (e: EpisodeEvent) => void;
  logger?: Logger;
  signal?: AbortSignal;
  /** Trajectory id (default a random UUID). */
  id?: string;
  /** Extra sandbox labels. */
  labels?: Record<string, string>;
}

/** The task cannot be set up (bad start patch): not retried. */
export class TaskSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TaskSetupError";
  }
}

/** Default image resolution: the instance image of `task.image` (built when missing, cached otherwise). */
export async function defaultResolveImage(task: Task): Promise<string> {
  return (await buildInstanceImage(task.image)).tag;
}

interface RolloutResult {
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

/**
 * Run one episode and return its trajectory (not written anywhere; see writeTrajectory).
 * Never throws for the model's, the policy's or the environment's failures: they are end reasons.
 * @throws only for programming errors (invalid config → ZodError).
 */
export async function runEpisode(opts: RunEpisodeOptions): Promise<Trajectory> {
  const config = agentConfig(opts.config as AgentConfigInput);
  const log = (opts.logger ?? silentLogger).child({ component: "agent", task: opts.task.id });
  const started = Date.now();
  const evaluator = opts.evaluator;
  let identity: PolicyIdentity = {};
  try {
    identity = (await opts.policy.identity?.()) ?? {};
  } catch (err) {
    log.warn({ err }, "policy identity unavailable");
  }

  let image = opts.image ?? "";
  const envErrors: string[] = [];
  let result: RolloutResult | undefined;
  for (let attempt = 0; attempt <= config.maxEnvRetries; attempt++) {
    try {
      if (!image) image = await (opts.resolveImage ?? defaultResolveImage)(opts.task);
    } catch (err) {
      result = emptyResult("env_error", `image: ${(err as Error).message}`);
    }
    if (image) {
      opts.onEvent?.({ type: "rollout_started", attempt, image });
      result = await rollout(opts, config, image, log);
    }
    if (result!.endReason !== "env_error" || result!.fatal) break;
    const willRetry = attempt < config.maxEnvRetries;
    envErrors.push(result!.endDetail ?? "environment error");
    opts.onEvent?.({ type: "env_error", attempt, message: result!.endDetail ?? "", willRetry });
    log.warn({ attempt, detail: result!.endDetail, willRetry }, "environment error");
    if (!willRetry) break;
  }
  const r = result!;
  // Turns without a version of their own came from the endpoint's configured weights.
  if (identity.weightsVersion !== undefined) for (const t of r.turns) t.weightsVersion ??= identity.weightsVersion;

  // Evaluation (after the sandbox is gone, as the release closes the state before evaluating).
  let evaluation: Evaluation | undefined;
  let evalSeconds = 0;
  if (evaluator && r.submittedPatch !== undefined && (r.endReason === "final_answer" || config.evaluateUnfinished)) {
    opts.onEvent?.({ type: "evaluating", patchBytes: Buffer.byteLength(r.submittedPatch) });
    const t0 = performance.now();
    evaluation = await evaluateWithTimeout(evaluator, opts.task, r.submittedPatch, config, image || undefined, opts.signal);
    evalSeconds = (performance.now() - t0) / 1000;
    evaluation.seconds = evalSeconds;
    opts.onEvent?.({ type: "evaluated", evaluation });
  }
  let similarity: number | undefined;
  if (r.submittedPatch !== undefined && opts.task.referencePatch) {
    try {
      const s = patchSimilarity(r.submittedPatch, opts.task.referencePatch);
      similarity = s.files.length ? s.similarity : undefined;
    } catch (err) {
      log.debug({ err }, "similarity not computable");
    }
  }

  const trajectory: Trajectory = {
    schemaVersion: TRAJECTORY_SCHEMA_VERSION,
    id: opts.id ?? randomUUID(),
    taskId: opts.task.id,
    taskKind: opts.task.kind,
    image,
    policy: { kind: opts.policy.kind, ...identity },
    sampling: { temperature: config.temperature, topP: config.topP, maxTokens: config.maxActionTokens, seed: config.seed },
    config: { ...config } as Record<string, unknown>,
    prompt: { system: r.system, user: r.user, assistantPrefix: config.think ? THINK_START : "", userTruncated: r.userTruncated || undefined },
    turns: r.turns,
    submittedPatch: r.submittedPatch,
    evaluation,
    reward: -1,
    rewardParts: {},
    endReason: r.endReason,
    endDetail: r.endDetail,
    ...(r.endErrorKind ? { endErrorKind: r.endErrorKind } : {}),
    usedTokens: r.usedTokens,
    times: {
      startedAt: new Date(started).toISOString(),
      totalSeconds: (Date.now() - started) / 1000,
      sandboxStartSeconds: r.sandboxStartSeconds,
      modelSeconds: r.modelSeconds,
      toolSeconds: r.toolSeconds,
      evalSeconds,
    },
    ...weightsMarks(r.turns),
    envRetries: envErrors.length && r.endReason !== "env_error" ? envErrors.length : Math.max(0, envErrors.length - 1),
    envErrors,
  };
  return TrajectorySchema.parse(scoreTrajectory(trajectory, evaluation, similarity));
}

/**
 * The reward of a trajectory, computed in one place (rewards/reward.ts computeReward with the
 * episode's reward config): from its evaluation (resolved; `forged` gets the penalty) and the
 * patch similarity. Used by {@link runEpisode} and by the orchestrator's evaluation stage once a
 * pending evaluation is done; returns a new record.
 */
export function scoreTrajectory(t: Trajectory, evaluation: Evaluation | undefined, similarity?: number): Trajectory {
  const cfg = agentConfig(t.config as AgentConfigInput);
  const sim = similarity ?? (typeof t.rewardParts?.similarity === "number" ? (t.rewardParts.similarity as number) : undefined);
  const pending = evaluation?.pending === true;
  const reward = computeReward(
    { passed: !pending && (evaluation?.resolved ?? false), similarity: sim, forged: evaluation?.outcome === "forged" },
    cfg.reward,
  );
  return { ...t, ...(evaluation ? { evaluation } : {}), reward: reward.reward, rewardParts: { ...reward.parts } };
}

/** The distinct weights versions of the turns and whether there is more than one. */
function weightsMarks(turns: readonly Turn[]): Pick<Trajectory, "weightsVersions" | "spansWeightsVersions"> {
  const versions: string[] = [];
  for (const t of turns) if (t.weightsVersion !== undefined && !versions.includes(t.weightsVersion)) versions.push(t.weightsVersion);
  return versions.length ? { weightsVersions: versions, spansWeightsVersions: versions.length > 1 } : {};
}

function emptyResult(endReason: EndReason, endDetail: string): RolloutResult {
  return { turns: [], endReason, endDetail, usedTokens: 0, system: "", user: "", userTruncated: false, sandboxStartSeconds: 0, modelSeconds: 0, toolSeconds: 0 };
}

async function evaluateWithTimeout(evaluator: Evaluator, task: Task, patch: string, config: AgentConfig, image: string | undefined, signal?: AbortSignal): Promise<Evaluation> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Evaluation>((resolve) => {
    // A little grace over the evaluator's own limit, which it should enforce itself.
    timer = setTimeout(() => resolve({ outcome: "timeout", resolved: false, reason: `evaluation exceeded ${config.evalTimeoutSeconds} s` }), (config.evalTimeoutSeconds + 30) * 1000);
  });
  try {
    const ev = await Promise.race([
      evaluator(task, patch, { timeoutSeconds: config.evalTimeoutSeconds, sandboxLifetimeSeconds: config.evalSandboxLifetimeSeconds, image, signal }),
      timeout,
    ]);
    return { ...ev };
  } catch (err) {
    return { outcome: "env_error", resolved: false, reason: `evaluator failed: ${(err as Error).message}` };
  } finally {
    clearTimeout(timer);
  }
}

/** Apply the mutate-fix start patch and fold it into HEAD (author and dates kept). */
/**
 * Mutate-fix start: the bug applied and history squashed to one orphan commit, nothing of the
 * original reachable (tasks/start.ts). A patch that does not apply is the task's fault.
 */
async function applyStartPatch(sandbox: Sandbox, task: Task): Promise<void> {
  try {
    await prepareTaskSandbox(sandbox, task);
  } catch (err) {
    throw new TaskSetupError(`start patch does not apply: ${(err as Error).message.slice(0, 500)}`);
  }
}

async function rollout(opts: RunEpisodeOptions, config: AgentConfig, image: string, log: Logger): Promise<RolloutResult> {
  const { task, policy } = opts;
  const tools = toolProfile(config.toolProfile);
  const toolNames = tools.map((t) => t.name);
  const prefix = config.think ? THINK_START : "";
  const workdir = task.image.workdir;
  const system = systemPrompt(environmentPrompt(tools, config), { think: config.think });
  const first = firstUserMessage(task.problemStatement, workdir, config.maxPromptTokens);
  const user = pyStrip(first.content);
  const messages: Message[] = [
    { role: "system", content: system },
    { role: "user", content: user },
  ];
  const res: RolloutResult = { ...emptyResult("env_error", ""), system, user, userTruncated: first.truncated === true };
  res.endDetail = undefined;

  let sandbox: Sandbox | undefined;
  try {
    const t0 = performance.now();
    try {
      const cfg: SandboxConfigInput = {
        image,
        workdir,
        lifetimeSeconds: config.sandboxLifetimeSeconds,
        commandTimeoutSeconds: config.commandTimeoutSeconds,
        outputLimitBytes: config.outputLimitBytes,
        network: config.network,
        env: task.image.env,
        labels: { "forager.episode": opts.id ?? "", ...(opts.labels ?? {}) },
      };
      sandbox = await (opts.sandboxFactory ?? ((c) => Sandbox.create(c, { logger: log })))(cfg);
      if (needsStartState(task)) await applyStartPatch(sandbox, task);
    } catch (err) {
      res.endReason = "env_error";
      res.endDetail = `sandbox start: ${(err as Error).message}`;
      res.fatal = err instanceof TaskSetupError;
      return res;
    }
    res.sandboxStartSeconds = (performance.now() - t0) / 1000;
    const sandboxStarted = Date.now();
    opts.onEvent?.({ type: "sandbox_started", sandbox: sandbox.name, seconds: res.sandboxStartSeconds });
    await policy.start?.(task, config);

    let prompt = renderDialog(messages, prefix);
    let used = countTokens(prompt);
    let submitted: string | undefined;
    const end = (reason: EndReason, detail?: string) => {
      res.endReason = reason;
      res.endDetail = detail;
    };

    for (let index = 0; ; index++) {
      if (opts.signal?.aborted) {
        end("policy_error", "aborted");
        break;
      }
      const maxTokens = Math.min(config.maxActionTokens, config.contextTokens - used);
      if (maxTokens <= 0) {
        end("context_exceeded", `Context size exceeded: ${used} >= ${config.contextTokens}`);
        break;
      }
      // --- the policy acts
      let step;
      const tm = performance.now();
      try {
        step = await policy.next({ task, config, tools, messages, prompt, prefix, turn: index, usedTokens: used, maxTokens, turns: res.turns, signal: opts.signal });
      } catch (err) {
        res.modelSeconds += (performance.now() - tm) / 1000;
        end("policy_error", `${(err as Error).name}: ${(err as Error).message}`);
        if (err instanceof InferenceError) res.endErrorKind = "inference";
        else if (opts.signal?.aborted) res.endErrorKind = "aborted";
        break;
      }
      res.modelSeconds += (performance.now() - tm) / 1000;
      const text = step.text;
      const promptTokens = step.usage?.promptTokens ?? used;
      const completionTokens = step.usage?.completionTokens ?? step.tokenIds?.length ?? countTokens(text) + (text.endsWith(EOT) ? 0 : 1);
      used = (step.usage ? step.usage.promptTokens : used) + completionTokens;
      const turn: Turn = {
        index,
        promptTokens,
        text,
        completionTokens,
        usedTokens: used,
        tokenIds: step.tokenIds,
        logprobs: step.logprobs,
        finishReason: step.finishReason,
        modelLatencyMs: Math.max(0, step.latencyMs),
        toolCallId: step.toolCallId,
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
      const record = () => {
        res.turns.push(turn);
        opts.onTurn?.(turn);
      };
      const stepId = index + 1;
      if (used > config.contextTokens) {
        end("context_exceeded", `Context size exceeded: ${used} > ${config.contextTokens}`);
        record();
        break;
      }
      if (stepId >= config.maxTurns) {
        end("max_turns", "Max turns reached");
        record();
        break;
      }

      // --- parse
      let call: { name: string; argument: string } | undefined;
      try {
        if (step.formatError) throw new ActionFormatError(step.formatError.type, step.formatError.message);
        call = parseAction(text, { think: config.think, tools: toolNames });
      } catch (err) {
        if (!(err instanceof ActionFormatError)) throw err;
        turn.formatError = { type: err.errorType, message: err.message };
        if (submitted !== undefined && (!config.think || split.thinkEndCount === 1) && (!config.strictFormat || split.answer.includes("##"))) {
          turn.finalAnswer = true;
          turn.formatError = undefined;
          end("final_answer");
          record();
          break;
        }
        if (config.strictFormat) {
          end("format_error", `Tool call format error: ${err.feedback}`);
          record();
          break;
        }
        const msg = formatErrorMessage(err.errorType, err.message, config.maxToolResultTokens);
        turn.errorType = err.errorType;
        turn.observation = msg.content;
        turn.observationRole = "user";
        prompt = advance(prompt, messages, text, msg, prefix);
        used += countTokens(observationSegment(msg, prefix)) + (step.finishReason === "length" ? 1 : 0);
        record();
        continue;
      }
      turn.action = { tool: call.name, argument: call.argument };
      turn.toolName = call.name;

      // --- run the tool
      if ((Date.now() - sandboxStarted) / 1000 >= config.sandboxLifetimeSeconds) {
        end("sandbox_timeout", `sandbox lifetime of ${config.sandboxLifetimeSeconds} s reached`);
        record();
        break;
      }
      const tool = tools.find((t) => t.name === call.name)!;
      let result: ToolResult;
      const tt = performance.now();
      try {
        result = await tool.run(sandbox, call.argument);
      } catch (err) {
        res.toolSeconds += (performance.now() - tt) / 1000;
        turn.toolDurationMs = performance.now() - tt;
        const expired = (Date.now() - sandboxStarted) / 1000 >= config.sandboxLifetimeSeconds - 1;
        end(expired ? "sandbox_timeout" : "env_error", `${call.name}: ${(err as Error).message}`);
        turn.errorType = expired ? "sandbox_timeout" : err instanceof EnvironmentError ? "env_error" : "tool_exception";
        record();
        break;
      }
      turn.toolDurationMs = performance.now() - tt;
      res.toolSeconds += turn.toolDurationMs / 1000;
      turn.toolSuccess = result.success;
      turn.toolOutput = result.output;
      if (!result.success) {
        const status = result.metadata?.status;
        turn.errorType = typeof status === "string" && status !== "ok" ? status : "tool_error";
      }
      if (call.name === "submit" && result.success && typeof result.metadata?.patch === "string") {
        submitted = result.metadata.patch;
        res.submittedPatch = submitted;
      }
      const obs = toolResultMessage(call.name, result.output, {
        contextTokens: config.contextTokens,
        usedTokens: used,
        remainingTurns: config.maxTurns - stepId,
        maxToolResultTokens: config.maxToolResultTokens,
      });
      turn.observation = obs.message.content;
      turn.observationRole = "tool";
      turn.observationTruncated = obs.message.truncated || undefined;
      turn.remainingTurns = config.maxTurns - stepId;
      turn.remainingTokens = obs.remainingTokens;
      const msg: Message = { role: "tool", tool: call.name, content: obs.message.content };
      prompt = advance(prompt, messages, text, msg, prefix);
      used += countTokens(observationSegment(msg, prefix)) + (step.finishReason === "length" ? 1 : 0);
      record();
    }
    res.usedTokens = used;
    return res;
  } finally {
    if (sandbox) await sandbox.destroy();
  }
}

/** Append the action and the observation to the dialog and the rendered prompt. */
function advance(prompt: string, messages: Message[], action: string, obs: Message, prefix: string): string {
  messages.push({ role: "assistant", content: prefix + action }, obs);
  return prompt + action + (action.endsWith(EOT) ? "" : EOT) + observationSegment(obs, prefix);
}
