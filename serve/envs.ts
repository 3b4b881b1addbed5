/**
 * The step API's environments: one agent episode (agent/episode.ts runEpisode, the same loop,
 * tools, limits and rewards as `forage`) whose policy is the trainer on the other side of HTTP.
 *
 * The episode runs in this process; its policy ({@link RemotePolicy}) hands each observation to
 * the waiting HTTP request and waits for the next action. `create` answers with the first
 * observation (the whole rendered prompt); `step` gives the action and answers with the next
 * observation, or, when the episode ended, with the reward (the hidden tests in a fresh container,
 * through the service's evaluator) and the trajectory. Observations carry token ids: the first is
 * the whole prompt, later ones only what the environment appended after the action, so the trainer's
 * prompt ids = previous prompt ids + its action ids + the observation ids, never a re-tokenization.
 *
 * Nothing leaks: `remove` aborts the episode (its sandbox is destroyed by the episode's own
 * cleanup); an env waiting for an action longer than `idleSeconds` is removed the same way, so a
 * trainer that dies leaves no container behind; `close` removes all.
 */
import { randomUUID } from "node:crypto";
import { runEpisode, type SandboxFactory } from "../agent/episode";
import { agentConfig, type AgentConfigInput } from "../agent/config";
import { PolicyStopped, type Policy, type PolicyContext, type PolicyIdentity, type PolicyStep } from "../agent/policy";
import { EOT } from "../agent/prompt";
import { EOT_TOKEN_ID } from "../agent/token-ledger";
import type { Trajectory, Turn } from "../agent/trajectory";
import { decode, encode } from "../inference-client/tokenizer";
import { silentLogger, type Logger } from "../lib/log";
import type { Evaluator } from "../rewards/evaluator";
import type { Task } from "../tasks/schema";
import type { Observation, StepRequest, StepResult } from "./schema";
import type { WeightsGate } from "./weights";

/** A request the env cannot serve now (HTTP status and message). */
export class EnvError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "EnvError";
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

/** The trainer as a policy: observations out, actions in. */
class RemotePolicy implements Policy {
  readonly kind = "remote";
  observation = deferred<Observation>();
  private action: Deferred<PolicyStep> | undefined;
  private prevPrompt = "";
  private prevAction: { text: string; ids?: readonly number[] } | undefined;

  constructor(
    private readonly weightsVersion: () => string | undefined,
    private readonly signal: AbortSignal,
  ) {}

  async identity(): Promise<PolicyIdentity> {
    const v = this.weightsVersion();
    return { model: "trainer (step API)", ...(v ? { weightsVersion: v } : {}) };
  }

  get waiting(): boolean {
    return this.action !== undefined;
  }

  async next(ctx: PolicyContext): Promise<PolicyStep> {
    // What the environment appended since the previous action (turn 0: the whole prompt).
    let text = ctx.prompt;
    if (this.prevAction) {
      text = ctx.prompt.slice(this.prevPrompt.length + this.prevAction.text.length);
      const ids = this.prevAction.ids;
      if (ids && ids[ids.length - 1] === EOT_TOKEN_ID && text.startsWith(EOT)) text = text.slice(EOT.length);
    }
    const tokenIds = encode(text);
    this.prevPrompt = ctx.prompt;
    const started = performance.now();
    this.action = deferred<PolicyStep>();
    const action = this.action;
    const onAbort = () => action.reject(new PolicyStopped(`env ${String(this.signal.reason ?? "removed")}`));
    if (this.signal.aborted) onAbort();
    else this.signal.addEventListener("abort", onAbort, { once: true });
    this.observation.resolve({ text, tokenIds, turn: ctx.turn, usedTokens: ctx.usedTokens, maxTokens: ctx.maxTokens });
    try {
      const step = await action.promise;
      this.prevAction = { text: step.text, ids: step.tokenIds };
      return { ...step, latencyMs: performance.now() - started, promptDeltaTokenIds: tokenIds };
    } finally {
      this.signal.removeEventListener("abort", onAbort);
      this.action = undefined;
    }
  }

  /** Hand the trainer's action to the episode; the next observation comes on a fresh deferred. */
  act(step: PolicyStep): void {
    if (!this.action) throw new EnvError(409, "the env is not waiting for an action");
    this.observation = deferred<Observation>();
    this.action.resolve(step);
  }
}

export interface EnvManagerOptions {
  /** An env waiting this long for an action is removed, seconds (default 600). */
  idleSeconds?: number;
  /** Most envs at once (default 1024). */
  maxEnvs?: number;
  /** Image tag for a task (the service's images, else the cached instance image). */
  resolveImage: (task: Task) => Promise<string>;
  /** Hidden-test evaluator for an image (default in the service: the SWE-bench harness). */
  evaluator: (image: string) => Evaluator;
  sandboxFactory?: SandboxFactory;
  gate: WeightsGate;
  logger?: Logger;
  /** Called with every finished trajectory (metrics). */
  onFinished?: (t: Trajectory, how: "done" | "removed" | "expired") => void;
}

interface Env {
  id: string;
  task: Task;
  policy: RemotePolicy;
  abort: AbortController;
  episode: Promise<Trajectory>;
  lastActive: number;
  busy: boolean;
  lastTurn?: Turn;
  ended?: "removed" | "expired";
}

/** The step API's envs (see module comment). */
export class EnvManager {
  private readonly envs = new Map<string, Env>();
  private readonly timer: NodeJS.Timeout;
  private readonly log: Logger;
  private readonly idleMs: number;

  constructor(private readonly opts: EnvManagerOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: "serve-envs" });
    this.idleMs = (opts.idleSeconds ?? 600) * 1000;
    this.timer = setInterval(() => void this.sweep(), Math.max(100, Math.min(this.idleMs / 4, 5000)));
    this.timer.unref();
  }

  get size(): number {
    return this.envs.size;
  }

  ids(): string[] {
    return [...this.envs.keys()];
  }

  /**
   * Start an episode and wait for its first observation.
   * @throws EnvError 429 at `maxEnvs`, 502 when the environment could not start (the episode's end detail).
   */
  async create(task: Task, agent: AgentConfigInput = {}, image?: string): Promise<{ envId: string; observation: Observation }> {
    if (this.envs.size >= (this.opts.maxEnvs ?? 1024)) throw new EnvError(429, `at most ${this.opts.maxEnvs ?? 1024} envs at once`);
    const id = randomUUID();
    const abort = new AbortController();
    const policy = new RemotePolicy(() => this.opts.gate.version, abort.signal);
    const config = agentConfig({ ...agent, maxEnvRetries: 0 } as AgentConfigInput);
    const env: Env = { id, task, policy, abort, lastActive: Date.now(), busy: true, episode: undefined as unknown as Promise<Trajectory> };
    this.envs.set(id, env);
    const img = image ?? (await this.opts.resolveImage(task).catch((err: unknown) => {
      this.envs.delete(id);
      throw new EnvError(502, `image: ${(err as Error).message}`);
    }));
    env.episode = runEpisode({
      task,
      policy,
      config,
      image: img,
      evaluator: this.opts.evaluator(img),
      id,
      labels: { "forager.serve": "env" },
      signal: abort.signal,
      logger: this.opts.logger,
      ...(this.opts.sandboxFactory ? { sandboxFactory: this.opts.sandboxFactory } : {}),
      onTurn: (t) => {
        env.lastTurn = t;
      },
    });
    env.episode.then(
      (t) => {
        this.envs.delete(id);
        this.opts.onFinished?.(t, env.ended ?? "done");
      },
      () => this.envs.delete(id),
    );
    const first = await Promise.race([policy.observation.promise, env.episode]);
    env.busy = false;
    env.lastActive = Date.now();
    if ("schemaVersion" in first) throw new EnvError(502, `the env ended before its first observation: ${first.endReason}${first.endDetail ? `: ${first.endDetail}` : ""}`);
    return { envId: id, observation: first };
  }

  /**
   * One action. @throws EnvError 404 (unknown or gone), 409 (a step is already running).
   */
  async step(id: string, req: StepRequest): Promise<StepResult> {
    const env = this.envs.get(id);
    if (!env) throw new EnvError(404, `no env ${id} (never created, finished, removed or expired)`);
    if (env.busy || !env.policy.waiting) throw new EnvError(409, `env ${id} is running a step`);
    env.busy = true;
    env.lastActive = Date.now();
    const a = req.action;
    const ids = "tokenIds" in a ? a.tokenIds : undefined;
    const text = a.text ?? decode(ids ?? []);
    const version = req.weightsVersion ?? this.opts.gate.version;
    const step: PolicyStep = {
      text,
      latencyMs: 0,
      ...(ids ? { tokenIds: ids } : { tokenIdsUnavailable: "the action was given as text" }),
      ...("logprobs" in a && a.logprobs ? { logprobs: a.logprobs } : {}),
      ...(version !== undefined ? { weightsVersion: version } : {}),
    };
    env.policy.act(step);
    try {
      const next = await Promise.race([env.policy.observation.promise, env.episode]);
      const turn = env.lastTurn ? { index: env.lastTurn.index, tool: env.lastTurn.toolName, toolSuccess: env.lastTurn.toolSuccess, errorType: env.lastTurn.errorType } : undefined;
      if ("schemaVersion" in next) {
        return { done: true, turn, reward: next.reward, resolved: next.evaluation?.resolved ?? false, endReason: next.endReason, trajectory: next };
      }
      return { done: false, observation: next, turn };
    } finally {
      env.busy = false;
      env.lastActive = Date.now();
    }
  }

  /** Remove an env: the episode is aborted and its sandbox destroyed. @returns false when unknown. */
  async remove(id: string, how: "removed" | "expired" = "removed"): Promise<boolean> {
    const env = this.envs.get(id);
    if (!env) return false;
    env.ended = how;
    env.abort.abort(how);
    await env.episode.catch(() => undefined);
    this.envs.delete(id);
    return true;
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    const idle = [...this.envs.values()].filter((e) => !e.busy && now - e.lastActive > this.idleMs);
    for (const e of idle) {
      this.log.info({ env: e.id, idleSeconds: (now - e.lastActive) / 1000 }, "env expired");
      await this.remove(e.id, "expired");
    }
  }

  /** Remove every env (service shutdown). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.allSettled(this.ids().map((id) => this.remove(id)));
  }
}
