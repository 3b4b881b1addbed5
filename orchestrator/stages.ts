/**
 * The three stage functions a worker runs, injectable so tests can replace the expensive ones:
 *
 * - {@link ImageFn}: (task) → image tag (default: the run's pre-built tag, else the cached
 *   instance image of images/build.ts, built when missing);
 * - {@link RolloutFn}: (task, sampleIndex, ctx) → trajectory, not yet evaluated (default: one
 *   agent episode, agent/episode.ts runEpisode, with the run's policy; the hidden-test evaluation
 *   deferred to the next stage);
 * - {@link EvaluateFn}: (task, trajectory) → the trajectory with its evaluation and reward
 *   (default: rewards/evaluate.ts `evaluatePatch` when present, reward by rewards/reward.ts).
 *
 * Errors: throwing from a stage fails the attempt; BullMQ retries it with exponential backoff
 * (run `attempts`, `backoffMs`); throw bullmq's `UnrecoverableError` for failures retrying cannot fix.
 */
import type { Redis } from "ioredis";
import { agentConfig, type AgentConfigInput } from "../agent/config";
import { runEpisode, scoreTrajectory, type SandboxFactory } from "../agent/episode";
import { OraclePolicy } from "../agent/oracle";
import { HttpPolicy } from "../agent/policy";
import { harnessEvaluator, pendingEvaluator, type Evaluator } from "../rewards/evaluator";
import type { Policy, PolicyContext, PolicyStep } from "../agent/policy";
import type { Trajectory } from "../agent/trajectory";
import { buildInstanceImage } from "../images/build";
import { InferenceClient } from "../inference-client/client";
import { EnvironmentError } from "../lib/errors";
import type { Logger } from "../lib/log";
import type { Task } from "../tasks/schema";
import { RedisSemaphore } from "./semaphore";
import type { RunSpec } from "./spec";

/** What a rollout gets besides the task and its sample index. */
export interface RolloutContext {
  runId: string;
  spec: RunSpec;
  /** The trajectory id to use (`<run>/<task>/<sample>`); the worker sets it anyway. */
  trajectoryId: string;
  /** 0-based attempt of this job. */
  attempt: number;
  /** Aborted when the job's time is up or the worker shuts down. */
  signal: AbortSignal;
  logger: Logger;
  /** Call after each turn (live turns/second). */
  onTurn: () => void;
  /** The run's Redis (semaphores). */
  redis: Redis;
  /** The image tag for a task (the worker's ImageFn, memoised). */
  resolveImage: (task: Task) => Promise<string>;
}

export type RolloutFn = (task: Task, sampleIndex: number, ctx: RolloutContext) => Promise<Trajectory>;
export type EvaluateFn = (task: Task, trajectory: Trajectory, ctx: { spec: RunSpec; signal: AbortSignal; logger: Logger }) => Promise<Trajectory>;
export type ImageFn = (task: Task, ctx: { spec: RunSpec; logger: Logger }) => Promise<string>;

/** The Evaluator passed to runEpisode in the rollout stage: records the evaluation as pending (`evaluation.pending`). */
export const deferredEvaluator: Evaluator = pendingEvaluator;

/** Default image stage: the run's pre-built tag, else images/build.ts buildInstanceImage (cached by content). */
export const defaultImage: ImageFn = async (task, { spec }) => {
  const pre = spec.images[task.id];
  if (pre) return pre;
  try {
    return (await buildInstanceImage(task.image)).tag;
  } catch (err) {
    throw new EnvironmentError(`image for ${task.id}: ${(err as Error).message}`, { cause: err });
  }
};

/** The agent settings of a sample: the run's `agent`, then T, sampling, seed + sample; env errors retried by the queue. */
export function episodeConfig(spec: RunSpec, sample: number): AgentConfigInput {
  const cfg: Record<string, unknown> = { maxEnvRetries: 0, ...spec.agent };
  if (spec.maxTurns !== undefined) cfg.maxTurns = spec.maxTurns;
  if (spec.sampling.temperature !== undefined) cfg.temperature = spec.sampling.temperature;
  if (spec.sampling.topP !== undefined) cfg.topP = spec.sampling.topP;
  if (spec.sampling.seed !== undefined) cfg.seed = spec.sampling.seed + sample;
  if (spec.policy.kind === "http" && spec.policy.mode) cfg.mode = spec.policy.mode;
  return agentConfig(cfg as AgentConfigInput);
}

/** The inference failed for good (after the client's retries): retried by the queue, then a job failure. */
export class InferenceUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InferenceUnavailableError";
  }
}

/** Wraps a policy so each model request holds a slot of a global Redis semaphore. */
export class LimitedPolicy implements Policy {
  readonly kind: string;
  constructor(
    private readonly inner: Policy,
    private readonly sem: RedisSemaphore,
  ) {
    this.kind = inner.kind;
  }
  identity() {
    return this.inner.identity?.() ?? Promise.resolve({});
  }
  start(task: Task, config: Parameters<NonNullable<Policy["start"]>>[1]) {
    return this.inner.start?.(task, config);
  }
  next(ctx: PolicyContext): Promise<PolicyStep> {
    return this.sem.use(() => this.inner.next(ctx), ctx.signal);
  }
  end() {
    this.inner.end?.();
  }
}

const clients = new Map<Redis, Map<string, InferenceClient>>();

/** Close the inference clients made by {@link makePolicy} (worker shutdown). */
export async function closePolicyClients(): Promise<void> {
  const all = [...clients.values()].flatMap((m) => [...m.values()]);
  clients.clear();
  await Promise.allSettled(all.map((c) => c.close()));
}

/**
 * The policy of one episode. "http": one InferenceClient per worker (and run settings) over every
 * endpoint of the run, routing by episode affinity with bounded loads (inference-client/routing.ts):
 * the episode's requests, and the K samples of its task, go to the endpoint holding their prefix while
 * it has room, and move when it fails or saturates (recorded per turn). Every attempt holds a slot of
 * its endpoint's global Redis semaphore (`maxConcurrentRequests` over all workers), taken once the
 * client has chosen the endpoint.
 */
export async function makePolicy(spec: RunSpec, redis: Redis): Promise<Policy> {
  if (spec.policy.kind === "oracle") return new OraclePolicy();
  const eps = spec.policy.endpoints;
  const key = JSON.stringify([eps, spec.inference]);
  let byRun = clients.get(redis);
  if (!byRun) clients.set(redis, (byRun = new Map()));
  let client = byRun.get(key);
  if (!client) {
    const sems = eps.map((e) => new RedisSemaphore(redis, `endpoint:${e.url}`, { limit: e.maxConcurrentRequests }));
    client = new InferenceClient(
      {
        endpoints: eps.map((ep) => ({ url: ep.url, model: ep.model, apiKey: ep.apiKey, maxConcurrency: ep.maxConcurrentRequests })),
        retries: spec.inference.retries,
        backoffBaseSeconds: spec.inference.backoffBaseSeconds,
        backoffMaxSeconds: spec.inference.backoffMaxSeconds,
        requestDeadlineSeconds: spec.inference.requestDeadlineSeconds,
        ...(spec.inference.routing ? { routing: { policy: spec.inference.routing } } : {}),
      },
      {
        endpointSlot: async ({ index }, signal) => {
          const sem = sems[index]!;
          const token = await sem.acquire(signal);
          return () => sem.release(token).catch(() => undefined);
        },
      },
    );
    byRun.set(key, client);
  }
  return new HttpPolicy(client, { ...(spec.inference.stream ? { stream: true } : {}) });
}

/** What {@link episodeRollout} may change about the default episode. */
export interface EpisodeRolloutOptions {
  /** Wrap the run's policy (serve/: the weights gate in front of a model policy). */
  wrapPolicy?: (policy: Policy, spec: RunSpec) => Policy;
  /** Where sandboxes come from (serve/: the warm pool); default a fresh container per episode. */
  sandboxFactory?: SandboxFactory;
}

/**
 * A rollout stage running one agent episode (agent/episode.ts runEpisode) with the run's policy
 * and its evaluation deferred to the evaluation stage. An environment error, an inference
 * failure or an abort becomes a thrown error, so the queue retries the sample.
 * @throws EnvironmentError, InferenceUnavailableError, Error (aborted)
 */
export function episodeRollout(o: EpisodeRolloutOptions = {}): RolloutFn {
  return async (task, sample, ctx) => {
    const config = episodeConfig(ctx.spec, sample);
    const inner = await makePolicy(ctx.spec, ctx.redis);
    const policy = o.wrapPolicy ? o.wrapPolicy(inner, ctx.spec) : inner;
    const image = await ctx.resolveImage(task);
    const t = await runEpisode({
      task,
      policy,
      config,
      image,
      evaluator: deferredEvaluator,
      id: ctx.trajectoryId,
      labels: { "forager.run": ctx.runId },
      signal: ctx.signal,
      logger: ctx.logger,
      onTurn: ctx.onTurn,
      ...(o.sandboxFactory ? { sandboxFactory: o.sandboxFactory } : {}),
    }).finally(() => inner.end?.());
    if (t.endReason === "env_error") throw new EnvironmentError(t.endDetail ?? "environment error");
    if (t.endReason === "policy_error" && t.endErrorKind === "inference") throw new InferenceUnavailableError(t.endDetail ?? "inference failed");
    if (t.endReason === "policy_error" && ctx.signal.aborted) throw new Error(`episode aborted: ${String(ctx.signal.reason ?? "timeout")}`);
    return t;
  };
}

/** Default rollout: one agent episode with the run's policy; evaluation deferred. */
export const defaultRollout: RolloutFn = episodeRollout();

export { harnessEvaluator };

/**
 * An EvaluateFn from an Evaluator: trajectories whose evaluation was deferred are evaluated and
 * rewarded (execution reward with the episode's reward config and the recorded patch similarity);
 * others are returned as they are.
 */
export function evaluateWith(getEvaluator: (t: Trajectory) => Evaluator): EvaluateFn {
  return async (task, t, { signal }) => {
    if (t.evaluation?.pending !== true) return t;
    const evaluator = getEvaluator(t);
    const cfg = agentConfig(t.config as AgentConfigInput);
    const t0 = performance.now();
    let ev: Awaited<ReturnType<Evaluator>>;
    try {
      ev = await evaluator(task, t.submittedPatch ?? "", { timeoutSeconds: cfg.evalTimeoutSeconds, sandboxLifetimeSeconds: cfg.evalSandboxLifetimeSeconds, signal });
    } catch (err) {
      throw new EnvironmentError(`evaluation: ${(err as Error).message}`, { cause: err });
    }
    if (ev.outcome === "env_error") throw new EnvironmentError(`evaluation: ${ev.reason ?? "environment error"}`);
    const seconds = (performance.now() - t0) / 1000;
    const { pending: _pending, ...done } = ev;
    return scoreTrajectory(
      { ...t, times: { ...t.times, evalSeconds: seconds, totalSeconds: t.times.totalSeconds + seconds } },
      { ...done, seconds },
    );
  };
}

/** Default evaluation stage: the SWE-bench harness evaluator (rewards/evaluate.ts). */
export const defaultEvaluate: EvaluateFn = evaluateWith((t) => harnessEvaluator(t.image || undefined));
