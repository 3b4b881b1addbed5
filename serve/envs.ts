/**
 * The step API's environments: one agent episode (agent/env.ts EpisodeEnv: the same environment,
 * tools, limits and rewards as `forage`) whose policy is the trainer on the other side of HTTP.
 *
 * `create` opens the environment and answers with the first observation (the whole rendered
 * prompt); `step` hands the trainer's action to the environment's own `step` and answers with the
 * next observation, or, when the episode ended, with the reward (the hidden tests in a fresh
 * container, through the service's evaluator) and the trajectory (agent/episode.ts trajectoryOf).
 * Observations carry token ids: the first is the whole prompt, later ones only what the
 * environment appended after the action, so the trainer's prompt ids = previous prompt ids + its
 * action ids + the observation ids, never a re-tokenization.
 *
 * Nothing leaks: `remove` closes the environment (its sandbox destroyed); an env waiting for an
 * action longer than `idleSeconds` is removed the same way, so a trainer that dies leaves no
 * container behind; `close` removes all.
 */
import { randomUUID } from "node:crypto";
import { EpisodeEnv, trajectoryOf, type SandboxFactory } from "../agent/episode";
import { agentConfig, type AgentConfig, type AgentConfigInput } from "../agent/config";
import type { PolicyStep } from "../agent/policy";
import { EOT } from "../agent/prompt";
import { EOT_TOKEN_ID } from "../agent/token-ledger";
import type { Trajectory } from "../agent/trajectory";
import { decode, encode } from "../inference-client/tokenizer";
import { silentLogger, type Logger } from "../lib/log";
import type { Evaluator } from "../rewards/evaluator";
import { Sandbox } from "../sandbox/sandbox";
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
  config: AgentConfig;
  image: string;
  env: EpisodeEnv;
  started: number;
  lastActive: number;
  busy: boolean;
  /** The rendered prompt at the last observation, and the action that followed it (deltas). */
  prevPrompt: string;
  prevAction?: { text: string; ids?: readonly number[] };
  /** Token ids of the last observation (the next turn's prompt delta), and when it was given (performance.now()). */
  pendingDelta?: number[];
  observedAt?: number;
  ended?: "removed" | "expired";
  /** The trajectory once the env is finished (closed, evaluated), memoised. */
  finishing?: Promise<Trajectory>;
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
   * Open an environment and answer with its first observation.
   * @throws EnvError 429 at `maxEnvs`, 502 when the environment could not start.
   */
  async create(task: Task, agent: AgentConfigInput = {}, image?: string): Promise<{ envId: string; observation: Observation }> {
    if (this.envs.size >= (this.opts.maxEnvs ?? 1024)) throw new EnvError(429, `at most ${this.opts.maxEnvs ?? 1024} envs at once`);
    const id = randomUUID();
    const config = agentConfig({ ...agent, maxEnvRetries: 0 } as AgentConfigInput);
    const started = Date.now();
    const img = image ?? (await this.opts.resolveImage(task).catch((err: unknown) => {
      throw new EnvError(502, `image: ${(err as Error).message}`);
    }));
    let env: EpisodeEnv;
    try {
      env = await EpisodeEnv.open({
        task,
        config,
        image: img,
        sandboxFactory: this.opts.sandboxFactory ?? ((c) => Sandbox.create(c, { logger: this.opts.logger })),
        labels: { "forager.episode": id, "forager.serve": "env" },
      });
    } catch (err) {
      throw new EnvError(502, `the env ended before its first observation: env_error: ${(err as Error).message}`);
    }
    const e: Env = { id, task, config, image: img, env, started, lastActive: Date.now(), busy: false, prevPrompt: "" };
    this.envs.set(id, e);
    const observation = this.observation(e);
    if (!observation) {
      const t = await this.finish(e);
      throw new EnvError(502, `the env ended before its first observation: ${t.endReason}${t.endDetail ? `: ${t.endDetail}` : ""}`);
    }
    return { envId: id, observation };
  }

  /**
   * One action. @throws EnvError 404 (unknown or gone), 409 (a step is already running).
   */
  async step(id: string, req: StepRequest): Promise<StepResult> {
    const e = this.envs.get(id);
    if (!e) throw new EnvError(404, `no env ${id} (never created, finished, removed or expired)`);
    if (e.busy) throw new EnvError(409, `env ${id} is running a step`);
    e.busy = true;
    e.lastActive = Date.now();
    try {
      const a = req.action;
      const ids = "tokenIds" in a ? a.tokenIds : undefined;
      const text = a.text ?? decode(ids ?? []);
      const version = req.weightsVersion ?? this.opts.gate.version;
      // The trainer's time on this action: from the observation to the action.
      const waitedMs = e.observedAt === undefined ? 0 : performance.now() - e.observedAt;
      const step: PolicyStep = {
        text,
        latencyMs: waitedMs,
        ...(ids ? { tokenIds: ids } : { tokenIdsUnavailable: "the action was given as text" }),
        ...("logprobs" in a && a.logprobs ? { logprobs: a.logprobs } : {}),
        ...(version !== undefined ? { weightsVersion: version } : {}),
        ...(e.pendingDelta ? { promptDeltaTokenIds: e.pendingDelta } : {}),
      };
      e.prevAction = { text, ...(ids ? { ids } : {}) };
      const r = await e.env.step(step, waitedMs / 1000);
      const turn = { index: r.turn.index, tool: r.turn.toolName, toolSuccess: r.turn.toolSuccess, errorType: r.turn.errorType };
      const next = r.done || e.ended ? undefined : this.observation(e);
      if (!next) {
        const t = await this.finish(e);
        return { done: true, turn, reward: t.reward, resolved: t.evaluation?.resolved ?? false, endReason: t.endReason, trajectory: t };
      }
      return { done: false, observation: next, turn };
    } finally {
      e.busy = false;
      e.lastActive = Date.now();
    }
  }

  /**
   * Remove an env: its environment is closed and its sandbox destroyed (a step running now ends
   * first, then the env). @returns false when unknown.
   */
  async remove(id: string, how: "removed" | "expired" = "removed"): Promise<boolean> {
    const e = this.envs.get(id);
    if (!e) return false;
    e.ended = how;
    e.env.end("policy_error", `PolicyStopped: env ${how}`);
    if (!e.busy) await this.finish(e).catch(() => undefined);
    return true;
  }

  /**
   * The next observation: the whole prompt first, then only what the environment appended after
   * the previous action (the trainer's own action ids, ending in EOT, stay as it sent them).
   * Undefined when the episode is over.
   */
  private observation(e: Env): Observation | undefined {
    const view = e.env.observe();
    if (!view) return undefined;
    let text = view.prompt;
    if (e.prevAction) {
      text = view.prompt.slice(e.prevPrompt.length + e.prevAction.text.length);
      const ids = e.prevAction.ids;
      if (ids && ids[ids.length - 1] === EOT_TOKEN_ID && text.startsWith(EOT)) text = text.slice(EOT.length);
    }
    const tokenIds = encode(text);
    e.prevPrompt = view.prompt;
    e.pendingDelta = tokenIds;
    e.observedAt = performance.now();
    return { text, tokenIds, turn: view.turn, usedTokens: view.usedTokens, maxTokens: view.maxTokens };
  }

  /** Close the environment, evaluate and reward the episode (removed envs are recorded, not evaluated). */
  private finish(e: Env): Promise<Trajectory> {
    e.finishing ??= this.finishOnce(e);
    return e.finishing;
  }

  private async finishOnce(e: Env): Promise<Trajectory> {
    // Listed until its sandbox is gone (a step meanwhile is refused as running).
    e.busy = true;
    try {
      await e.env.close();
    } finally {
      this.envs.delete(e.id);
    }
    const v = this.opts.gate.version;
    const t = await trajectoryOf(e.env.outcome(), {
      task: e.task,
      config: e.config,
      image: e.image,
      policy: { kind: "remote", model: "trainer (step API)", ...(v ? { weightsVersion: v } : {}) },
      ...(e.ended ? {} : { evaluator: this.opts.evaluator(e.image) }),
      started: e.started,
      id: e.id,
      log: this.log,
    });
    this.opts.onFinished?.(t, e.ended ?? "done");
    return t;
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
