/**
 * Whole rollouts for trainers that hand over tasks and receive trajectories (GRPO-style groups:
 * K samples of each task), backed by the same queues, workers and storage as `forage`:
 *
 * - a group is a run (orchestrator/spec.ts RunSpec) in `<dir>/runs/<group id>`, submitted with
 *   orchestrator/run.ts `submitRun` to the service's Redis (a private redis-server by default, or
 *   `redisUrl`);
 * - embedded (default): workers in this process (orchestrator/worker.ts `startWorker`) with a
 *   rollout stage that wraps the model policy in the weights gate (per-turn versions, serve/weights.ts)
 *   and takes sandboxes from the warm pool; remote (`redisUrl`, `embeddedWorker: false`): the
 *   workers of that Redis (`forager worker`), storage "redis", collected here (RunCollector);
 * - progress is the run's Redis bookkeeping (`runStatus`); each committed trajectory is read from
 *   the run's shards once and published (server-sent events), staleness applied.
 */
import fs from "node:fs";
import path from "node:path";
import type { Redis } from "ioredis";
import type { SandboxFactory } from "../agent/episode";
import type { Trajectory } from "../agent/trajectory";
import { silentLogger, type Logger } from "../lib/log";
import type { Task } from "../tasks/schema";
import { newRunId } from "../orchestrator/forage";
import { startRedisServer, type RedisServerHandle } from "../orchestrator/redis-server";
import type { RunCollector } from "../orchestrator/redis-storage";
import { openCollector } from "../orchestrator/sink";
import { closeQueues, openQueues, readFailures, runStatus, submitRun, writeManifest, writeRunFiles, type RunStatus, type StageQueues } from "../orchestrator/run";
import { countFailures, type SampleFailure } from "../orchestrator/records";
import { RunSpecSchema, runPaths, type RunSpec, type RunSpecInput } from "../orchestrator/spec";
import { episodeRollout, type EvaluateFn, type ImageFn, type RolloutFn } from "../orchestrator/stages";
import { readEntry, scanShards } from "../orchestrator/storage";
import { redisConnection, startWorker, type ForagerWorker, type WorkerOptions } from "../orchestrator/worker";
import { registryLocation } from "../orchestrator/cluster";
import type { GroupItem, GroupProgress, RolloutEvent, RolloutGroup, RolloutRequest } from "./schema";
import { GatedPolicy, type WeightsGate } from "./weights";

/** Staleness: trajectories whose oldest turn is more than `maxVersions` behind the current weights. */
export interface StalenessSetting {
  maxVersions: number;
  /** "drop": left out of the group (counted in `dropped`); "tag": kept with `stale: true`. */
  action: "drop" | "tag";
}

export interface RolloutServiceOptions {
  /** Service directory: `runs/<group>` and the private Redis data live here. */
  dir: string;
  /** Remote mode: this Redis (else a private redis-server). */
  redisUrl?: string;
  /** Start workers in this process (default: true without redisUrl, false with). */
  embeddedWorker?: boolean;
  /** Embedded workers' settings (concurrency, stage functions for tests). */
  worker?: Omit<WorkerOptions, "redisUrl" | "rollout">;
  /** The rollout stage (default: {@link servingRollout}). */
  rollout?: RolloutFn;
  gate: WeightsGate;
  /** Sandboxes for embedded rollouts (the warm pool). */
  sandboxFactory?: SandboxFactory;
  staleness?: StalenessSetting;
  /** Image tag per task id, for every group. */
  images?: Record<string, string>;
  /** Poll period of a group's progress, ms (default 250). */
  pollMs?: number;
  logger?: Logger;
  /** Called with every trajectory published (metrics). */
  onTrajectory?: (t: Trajectory) => void;
}

interface Group {
  spec: RunSpec;
  tasks: Task[];
  status: "running" | "done" | "cancelled";
  progress: GroupProgress;
  items: GroupItem[];
  seen: Set<string>;
  listeners: Set<(e: RolloutEvent) => void>;
  collector?: RunCollector;
  finished: Promise<void>;
}

/**
 * The rollout stage of the embedded workers: orchestrator/stages.ts defaultRollout, with the model
 * policy behind the weights gate and sandboxes from `sandboxFactory`.
 */
export function servingRollout(gate: WeightsGate, sandboxFactory?: SandboxFactory): RolloutFn {
  return episodeRollout({ wrapPolicy: (inner, spec) => (spec.policy.kind === "http" ? new GatedPolicy(inner, gate) : inner), sandboxFactory });
}

const emptyProgress = (expected: number): GroupProgress => ({ expected, done: 0, failed: 0, skipped: 0, inFlight: 0, resolved: 0, turns: 0, dropped: 0 });

export class RolloutService {
  private server: RedisServerHandle | undefined;
  private redis!: Redis;
  private queues!: StageQueues;
  private worker: ForagerWorker | undefined;
  private readonly groups = new Map<string, Group>();
  private readonly log: Logger;
  private closing = false;
  private url = "";

  constructor(private readonly opts: RolloutServiceOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: "serve-rollouts" });
  }

  get remote(): boolean {
    return this.opts.redisUrl !== undefined;
  }

  /** Start Redis (private) and the embedded workers. */
  async start(): Promise<void> {
    fs.mkdirSync(this.opts.dir, { recursive: true });
    if (this.opts.redisUrl) this.url = this.opts.redisUrl;
    else {
      this.server = await startRedisServer({ dir: path.join(this.opts.dir, "redis") });
      this.url = this.server.url;
    }
    this.redis = redisConnection(this.url);
    this.queues = openQueues(this.url);
    if (this.opts.embeddedWorker ?? !this.opts.redisUrl) {
      this.worker = await startWorker({
        ...this.opts.worker,
        redisUrl: this.url,
        rollout: this.opts.rollout ?? servingRollout(this.opts.gate, this.opts.sandboxFactory),
        logger: this.opts.worker?.logger ?? this.opts.logger,
      });
    }
  }

  /** Queue depths (waiting + delayed jobs) per stage. */
  async queueDepths(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [name, q] of Object.entries(this.queues) as Array<[string, StageQueues["images"]]>) {
      const c = await q.getJobCounts("waiting", "delayed", "prioritized");
      out[name] = (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
    }
    return out;
  }

  /** Rollouts running now over all groups. */
  inFlight(): number {
    let n = 0;
    for (const g of this.groups.values()) if (g.status === "running") n += g.progress.inFlight;
    return n;
  }

  /** Submit a group. `tasks` are resolved already (ids looked up by the caller). */
  async submit(req: RolloutRequest, tasks: Task[]): Promise<{ id: string; expected: number }> {
    if (this.closing) throw new Error("the service is shutting down");
    const id = `g${newRunId()}-${Math.random().toString(16).slice(2, 6)}`;
    const runDir = path.join(this.opts.dir, "runs", id);
    const spec = RunSpecSchema.parse({
      runId: id,
      runDir,
      createdAt: new Date().toISOString(),
      samples: req.samples,
      maxTurns: req.maxTurns,
      policy: req.policy,
      sampling: req.sampling ?? {},
      agent: req.agent ?? {},
      images: { ...(this.opts.images ?? {}), ...(req.images ?? {}) },
      storage: this.remote && !this.worker ? "redis" : "shared",
      ...(this.opts.worker?.registry ? { registry: registryLocation(this.opts.worker.registry) } : {}),
      attempts: 2,
      backoffMs: 1000,
    } satisfies RunSpecInput);
    await writeRunFiles(spec, tasks);
    const g: Group = {
      spec,
      tasks,
      status: "running",
      progress: emptyProgress(tasks.length * req.samples),
      items: [],
      seen: new Set(),
      listeners: new Set(),
      finished: Promise.resolve(),
    };
    g.collector = openCollector(this.redis, spec, { logger: this.opts.logger });
    this.groups.set(id, g);
    await submitRun(this.redis, this.queues, spec, tasks);
    g.finished = this.follow(g).catch((err: unknown) => this.log.error({ err, group: id }, "following the group failed"));
    return { id, expected: g.progress.expected };
  }

  has(id: string): boolean {
    return this.groups.has(id);
  }

  /** The group as the API returns it (`partial`: the trajectories so far, also while running). */
  view(id: string, partial = false): RolloutGroup | undefined {
    const g = this.groups.get(id);
    if (!g) return undefined;
    const show = g.status !== "running" || partial;
    const byTask = new Map<string, GroupItem[]>(g.tasks.map((t) => [t.id, []]));
    if (show) for (const it of g.items) byTask.get(it.taskId)?.push(it);
    for (const l of byTask.values()) l.sort((a, b) => a.sample - b.sample);
    const failures = g.status === "running" ? [] : readFailures(g.spec.runDir).map((f) => ({ taskId: f.taskId, sample: f.sample, stage: f.stage, ...(f.kind ? { kind: f.kind } : {}), ...(f.policy ? { policy: f.policy } : {}), reason: f.reason, attempts: f.attempts }));
    return {
      id,
      status: g.status,
      progress: g.progress,
      groups: show ? [...byTask].map(([taskId, trajectories]) => ({ taskId, trajectories })) : [],
      failures,
      failureCounts: countFailures(failures.map((f) => ({ stage: f.stage as "image" | "rollout" | "evaluation", kind: f.kind as SampleFailure["kind"] }))).byKind,
    };
  }

  /** The published trajectories of a group. */
  trajectories(id: string): Trajectory[] {
    return (this.groups.get(id)?.items ?? []).map((i) => i.trajectory);
  }

  /**
   * Events of a group: what happened so far is replayed first (progress, each trajectory, done),
   * then live ones. @returns unsubscribe, or undefined for an unknown group.
   */
  subscribe(id: string, fn: (e: RolloutEvent) => void): (() => void) | undefined {
    const g = this.groups.get(id);
    if (!g) return undefined;
    fn({ type: "progress", progress: g.progress });
    for (const item of g.items) fn({ type: "trajectory", item });
    if (g.status !== "running") {
      fn({ type: "done", status: g.status, progress: g.progress });
      return () => undefined;
    }
    g.listeners.add(fn);
    return () => g.listeners.delete(fn);
  }

  private emit(g: Group, e: RolloutEvent): void {
    for (const l of g.listeners) {
      try {
        l(e);
      } catch (err) {
        this.log.warn({ err }, "event listener failed");
      }
    }
  }

  private async follow(g: Group): Promise<void> {
    const shards = runPaths(g.spec.runDir).shards;
    let last = "";
    for (;;) {
      if (this.closing) {
        g.status = "cancelled";
        break;
      }
      if (g.collector) await g.collector.drain({ maxEntries: 1000 }).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, "collect failed"));
      let s: RunStatus;
      try {
        s = await runStatus(this.redis, g.spec.runId);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "run status failed");
        await sleep(this.opts.pollMs ?? 250);
        continue;
      }
      this.publishNew(g, shards);
      g.progress = { expected: s.expected, done: s.done, failed: s.failed, skipped: s.skipped, inFlight: s.inFlight, resolved: s.resolved, turns: s.turns, dropped: g.progress.dropped };
      const key = JSON.stringify(g.progress);
      if (key !== last) {
        last = key;
        this.emit(g, { type: "progress", progress: g.progress });
      }
      if (s.complete && (!g.collector || s.uncollected === 0)) {
        if (g.collector) {
          await g.collector.finish({});
          await g.collector.close();
        }
        this.publishNew(g, shards);
        await writeManifest(g.spec.runDir, { dedup: false });
        g.status = "done";
        break;
      }
      await sleep(this.opts.pollMs ?? 250);
    }
    this.emit(g, { type: "done", status: g.status, progress: g.progress });
    g.listeners.clear();
  }

  /** Read the trajectories committed since the last look, apply staleness, publish. */
  private publishNew(g: Group, shards: string): void {
    if (!fs.existsSync(shards)) return;
    const scan = scanShards(shards);
    for (const e of scan.entries) {
      if (g.seen.has(e.id)) continue;
      g.seen.add(e.id);
      const t = readEntry(shards, e);
      const versions = t.weightsVersions ?? [];
      const st = this.opts.staleness;
      const stale = st !== undefined && versions.length > 0 && this.opts.gate.age(versions) > st.maxVersions;
      this.opts.onTrajectory?.(t);
      if (stale && st!.action === "drop") {
        g.progress = { ...g.progress, dropped: g.progress.dropped + 1 };
        continue;
      }
      const item: GroupItem = {
        taskId: e.taskId,
        sample: e.sample,
        reward: t.reward,
        rewardParts: t.rewardParts,
        resolved: t.evaluation?.resolved ?? false,
        weightsVersions: versions,
        spansWeightsVersions: t.spansWeightsVersions ?? false,
        stale,
        trajectory: t,
      };
      g.items.push(item);
      this.emit(g, { type: "trajectory", item });
    }
  }

  /** Stop following, stop the workers (running episodes aborted), close Redis. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([...this.groups.values()].map((g) => g.finished));
    await this.worker?.close({ force: true }).catch(() => undefined);
    await closeQueues(this.queues).catch(() => undefined);
    for (const g of this.groups.values()) await g.collector?.close().catch(() => undefined);
    this.redis?.disconnect();
    await this.server?.stop();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export type { EvaluateFn, ImageFn };
