/**
 * One episode of the CWM agentic SWE environment, start to trajectory: the environment
 * (agent/env.ts EpisodeEnv: sandbox, start state, prompt, one step per action) driven by a
 * policy (agent/policy.ts), then the evaluation and the reward.
 *
 * 1. an environment on the task's instance image (environment errors, not the model's fault, are
 *    retried as fresh rollouts, up to maxEnvRetries);
 * 2. the loop: observe → the policy acts → step, until the environment says done (or the run is
 *    aborted, or the policy fails: "policy_error");
 * 3. the sandbox is always destroyed; the last submitted patch is evaluated (final answer only,
 *    like the release, unless `evaluateUnfinished`) and rewarded (rewards/reward.ts);
 * 4. the trajectory record ({@link trajectoryOf}: also what `forager serve`'s step API returns).
 */
import { randomUUID } from "node:crypto";
import { silentLogger, type Logger } from "../lib/log";
import { computeReward } from "../rewards/reward";
import type { Evaluator } from "../rewards/evaluator";
import { InferenceError } from "../inference-client/client";
import { patchSimilarity } from "../rewards/similarity";
import { Sandbox } from "../sandbox/sandbox";
import { buildInstanceImage } from "../images/build";
import type { Task } from "../tasks/schema";
import { agentConfig, type AgentConfig, type AgentConfigInput } from "./config";
import { emptyOutcome, EnvStartError, EpisodeEnv, type EpisodeOutcome, type SandboxFactory } from "./env";
import type { Policy, PolicyIdentity } from "./policy";
import { THINK_START } from "./prompt";
import { TRAJECTORY_SCHEMA_VERSION, TrajectorySchema, type Evaluation, type Trajectory, type Turn } from "./trajectory";

export type { Evaluator } from "../rewards/evaluator";
export { EpisodeEnv, TaskSetupError, type EnvSandbox, type SandboxFactory } from "./env";

/** An evaluator that evaluates nothing: outcome "fail", `resolved: false`, reason says why. */
export const noopEvaluator: Evaluator = async () => ({ outcome: "fail", resolved: false, reason: "no evaluator configured" });

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

/** Default image resolution: the instance image of `task.image` (built when missing, cached otherwise). */
export async function defaultResolveImage(task: Task): Promise<string> {
  return (await buildInstanceImage(task.image)).tag;
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
  let result: EpisodeOutcome | undefined;
  for (let attempt = 0; attempt <= config.maxEnvRetries; attempt++) {
    try {
      if (!image) image = await (opts.resolveImage ?? defaultResolveImage)(opts.task);
    } catch (err) {
      result = emptyOutcome("env_error", `image: ${(err as Error).message}`);
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
  return trajectoryOf(result!, {
    task: opts.task,
    config,
    image,
    policy: { kind: opts.policy.kind, ...identity },
    evaluator,
    started,
    envErrors,
    log,
    ...(opts.id !== undefined ? { id: opts.id } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
  });
}

/** What {@link trajectoryOf} needs besides the episode's outcome. */
export interface TrajectoryOfOptions {
  task: Task;
  config: AgentConfig;
  image: string;
  /** The policy as the trajectory records it (kind, model, weights version…). */
  policy: Trajectory["policy"];
  evaluator?: Evaluator;
  /** Start of the episode, ms since the epoch. */
  started: number;
  /** Environment errors of earlier, retried rollouts. */
  envErrors?: string[];
  id?: string;
  signal?: AbortSignal;
  onEvent?: (e: EpisodeEvent) => void;
  log?: Logger;
}

/**
 * The trajectory of a finished episode: the submitted patch evaluated (final answer only, unless
 * `evaluateUnfinished`; in a fresh container), its similarity to the reference patch, the reward,
 * times and marks. Used by {@link runEpisode} and by `forager serve`'s step API.
 */
export async function trajectoryOf(r: EpisodeOutcome, o: TrajectoryOfOptions): Promise<Trajectory> {
  const { task, config } = o;
  const envErrors = o.envErrors ?? [];
  // Turns without a version of their own came from the endpoint's configured weights.
  if (o.policy.weightsVersion !== undefined) for (const t of r.turns) t.weightsVersion ??= o.policy.weightsVersion;
  // Evaluation (after the sandbox is gone, as the release closes the state before evaluating).
  let evaluation: Evaluation | undefined;
  let evalSeconds = 0;
  if (o.evaluator && r.submittedPatch !== undefined && (r.endReason === "final_answer" || config.evaluateUnfinished)) {
    o.onEvent?.({ type: "evaluating", patchBytes: Buffer.byteLength(r.submittedPatch) });
    const t0 = performance.now();
    evaluation = await evaluateWithTimeout(o.evaluator, task, r.submittedPatch, config, o.image || undefined, o.signal);
    evalSeconds = (performance.now() - t0) / 1000;
    evaluation.seconds = evalSeconds;
    o.onEvent?.({ type: "evaluated", evaluation });
  }
  let similarity: number | undefined;
  if (r.submittedPatch !== undefined && task.referencePatch) {
    try {
      const s = patchSimilarity(r.submittedPatch, task.referencePatch);
      similarity = s.files.length ? s.similarity : undefined;
    } catch (err) {
      o.log?.debug({ err }, "similarity not computable");
    }
  }
  const trajectory: Trajectory = {
    schemaVersion: TRAJECTORY_SCHEMA_VERSION,
    id: o.id ?? randomUUID(),
    taskId: task.id,
    taskKind: task.kind,
    image: o.image,
    policy: o.policy,
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
      startedAt: new Date(o.started).toISOString(),
      totalSeconds: (Date.now() - o.started) / 1000,
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

/**
 * One rollout: the environment, the loop (observe → the policy acts → step), the sandbox destroyed
 * whatever happens. Never throws for the policy's or the environment's failures: they end the
 * episode with their reason.
 */
async function rollout(opts: RunEpisodeOptions, config: AgentConfig, image: string, log: Logger): Promise<EpisodeOutcome> {
  const { task, policy } = opts;
  let env: EpisodeEnv;
  try {
    env = await EpisodeEnv.open({
      task,
      config,
      image,
      sandboxFactory: opts.sandboxFactory ?? ((c) => Sandbox.create(c, { logger: log })),
      labels: { "forager.episode": opts.id ?? "", ...(opts.labels ?? {}) },
      ...(opts.onTurn ? { onTurn: opts.onTurn } : {}),
    });
  } catch (err) {
    return { ...emptyOutcome("env_error", (err as Error).message), fatal: err instanceof EnvStartError && err.fatal };
  }
  try {
    opts.onEvent?.({ type: "sandbox_started", sandbox: env.sandboxName, seconds: env.outcome().sandboxStartSeconds });
    await policy.start?.(task, config);
    while (!env.done) {
      if (opts.signal?.aborted) {
        env.end("policy_error", "aborted");
        break;
      }
      const view = env.observe();
      if (!view) break;
      const tm = performance.now();
      let step;
      try {
        step = await policy.next({ ...view, task, config, signal: opts.signal });
      } catch (err) {
        const kind = err instanceof InferenceError ? "inference" : opts.signal?.aborted ? "aborted" : undefined;
        env.fail(`${(err as Error).name}: ${(err as Error).message}`, kind, (performance.now() - tm) / 1000);
        break;
      }
      await env.step(step, (performance.now() - tm) / 1000);
    }
    return env.outcome();
  } finally {
    await env.close();
  }
}
