/**
 * The three named stages of a sample's pipeline, as BullMQ job processors (worker.ts runs them):
 *
 *   {@link imageStage}: image job `img.<run>.<task>` → build (or look up) the task's image, then
 *     enqueue its K rollout jobs;
 *   {@link rolloutStage}: rollout job `roll.<run>.<task>.<i>` → one episode, staged durably in
 *     the run's sink, then its evaluation job;
 *   {@link evaluationStage}: evaluation job `eval.<run>.<task>.<i>` → evaluate, commit to the sink
 *     with the sample's `done` record (durable), then the job is acknowledged.
 *
 * Each stage first checks what is already durable (done hash, staged trajectory), so a retried,
 * stalled or re-submitted job never produces a second trajectory. What a stage does to a task
 * (build, episode, evaluation) is injected (stages.ts); the bookkeeping around it is here.
 */
import os from "node:os";
import { UnrecoverableError, WaitingError, type Job, type Processor, type Queue } from "bullmq";
import type { Redis } from "ioredis";
import { TrajectorySchema, type Trajectory } from "../agent/trajectory";
import { EnvironmentError } from "../lib/errors";
import type { Logger } from "../lib/log";
import { formatZodIssues } from "../lib/zod-util";
import { TaskSchema, type Task } from "../tasks/schema";
import { parseRedisRecord, SampleSummarySchema, StageJobDataSchema, type SampleFailure, type SampleSummary, type StageJobData } from "./records";
import { openSink, type TrajectorySink } from "./sink";
import { jobIds, runKeys, RunSpecSchema, sampleKey, trajectoryId, type RunSpec } from "./spec";
import { InferenceUnavailableError, type EvaluateFn, type ImageFn, type RolloutFn } from "./stages";

/** The reason given to episodes and evaluations aborted by a worker's shutdown (worker.ts close). */
export class WorkerShutdownError extends Error {
  constructor() {
    super("worker shutting down");
    this.name = "WorkerShutdownError";
  }
}

/** A run as one worker process knows it: its spec, tasks read so far, image tags, its sink. */
interface RunCtx {
  spec: RunSpec;
  tasks: Map<string, Task>;
  images: Map<string, Promise<string>>;
  sink: TrajectorySink;
}

/** What the three stages of one worker process share. */
export interface PipelineDeps {
  /** The worker's id (host-pid unless given). */
  id: string;
  /** Shard writer id base (storage "shared"; default per process). */
  writerId?: string;
  redis: Redis;
  queues: { rollouts: Queue; evals: Queue };
  image: ImageFn;
  rollout: RolloutFn;
  evaluate: EvaluateFn;
  log: Logger;
  /** True once the worker's shutdown began (an abort then hands the job back). */
  stopping: () => boolean;
}

/**
 * The shared state and helpers of the stages of one worker process.
 * {@link Pipeline.close} flushes counters and closes the sinks.
 */
export class Pipeline {
  /** Running episodes and evaluations (aborted at shutdown). */
  readonly aborts = new Set<AbortController>();
  private readonly runs = new Map<string, Promise<RunCtx>>();
  private turnsPending = new Map<string, number>();
  private readonly turnFlush: NodeJS.Timeout;

  constructor(readonly d: PipelineDeps) {
    this.turnFlush = setInterval(() => void this.flushTurns(), 1000);
  }

  /** Add the turns counted since the last flush to each run's `stats.turns`. */
  async flushTurns(): Promise<void> {
    const pending = this.turnsPending;
    this.turnsPending = new Map();
    await Promise.all([...pending].map(([runId, n]) => this.d.redis.hincrby(runKeys(runId).stats, "turns", n))).catch(() => undefined);
  }

  countTurn(runId: string): void {
    this.turnsPending.set(runId, (this.turnsPending.get(runId) ?? 0) + 1);
  }

  /** The run's context (spec read from Redis once). @throws UnrecoverableError when the run is unknown. */
  runCtx(runId: string): Promise<RunCtx> {
    let p = this.runs.get(runId);
    if (!p) {
      p = (async () => {
        const key = runKeys(runId).spec;
        const raw = await this.d.redis.get(key);
        if (!raw) throw new UnrecoverableError(`run ${runId} is unknown to this Redis`);
        const spec = parseRedisRecord(RunSpecSchema, raw, { what: "run spec", key });
        return { spec, tasks: new Map(), images: new Map(), sink: openSink(this.d.redis, spec, { writerId: this.d.writerId, workerId: this.d.id, logger: this.d.log }) };
      })();
      p.catch(() => this.runs.delete(runId));
      this.runs.set(runId, p);
    }
    return p;
  }

  /** A task of a run (read from the run's tasks hash once). @throws UnrecoverableError when absent. */
  async taskOf(ctx: RunCtx, taskId: string): Promise<Task> {
    let t = ctx.tasks.get(taskId);
    if (!t) {
      const key = runKeys(ctx.spec.runId).tasks;
      const raw = await this.d.redis.hget(key, taskId);
      if (!raw) throw new UnrecoverableError(`task ${taskId} of run ${ctx.spec.runId} is not in Redis`);
      t = parseRedisRecord(TaskSchema, raw, { what: "task", key, field: taskId });
      if (ctx.tasks.size > 10_000) ctx.tasks.clear();
      ctx.tasks.set(taskId, t);
    }
    return t;
  }

  /** The image tag of a task within a run (the image function, memoised; a failure is not kept). */
  imageOf(ctx: RunCtx, task: Task): Promise<string> {
    let p = ctx.images.get(task.id);
    if (!p) {
      p = this.d.image(task, { spec: ctx.spec, logger: this.d.log });
      p.catch(() => ctx.images.delete(task.id));
      ctx.images.set(task.id, p);
    }
    return p;
  }

  /** What a rollout or evaluation job works on: its run, task, sample and Redis keys (job data schema-checked). */
  async sampleJob(data: unknown) {
    const { runId, taskId, sample = 0 } = parseJobData(data);
    return { runId, taskId, sample, ctx: await this.runCtx(runId), keys: runKeys(runId), key: sampleKey(runId, taskId, sample) };
  }

  /**
   * Record a sample's failure for good (final attempt, or unrecoverable): the `failed` hash, then
   * the sink; with its kind (from `err`) and the run's policy, so it is counted apart, never
   * silently dropped.
   */
  async recordFailure(ctx: RunCtx, f: Omit<SampleFailure, "at" | "kind" | "policy">, err?: unknown): Promise<void> {
    const rec: SampleFailure = { ...f, at: new Date().toISOString(), kind: failureKind(err), policy: policyLabel(ctx.spec) };
    const key = sampleKey(ctx.spec.runId, f.taskId, f.sample);
    await this.d.redis.hset(runKeys(ctx.spec.runId).failed, key, JSON.stringify(rec));
    await ctx.sink.recordFailure(key, rec);
  }

  /** A `done` record of a sample, parsed, or undefined. */
  async doneRecord(runId: string, key: string): Promise<SampleSummary | undefined> {
    const hash = runKeys(runId).done;
    const raw = await this.d.redis.hget(hash, key);
    return raw ? parseRedisRecord(SampleSummarySchema, raw, { what: "sample summary", key: hash, field: key }) : undefined;
  }

  /** True when `ac` was aborted by the shutdown (the job goes back to waiting). */
  shutdownAbort(ac: AbortController): boolean {
    return this.d.stopping() && ac.signal.aborted && ac.signal.reason instanceof WorkerShutdownError;
  }

  /** Stop the turn counter, flush it, close every run's sink. */
  async close(): Promise<void> {
    clearInterval(this.turnFlush);
    await this.flushTurns();
    const ctxs = await Promise.allSettled([...this.runs.values()]);
    await Promise.all(ctxs.map((c) => (c.status === "fulfilled" ? c.value.sink.close() : undefined)));
  }
}

/** The kind of a failure, from the error that ended its last attempt. */
export function failureKind(err: unknown): NonNullable<SampleFailure["kind"]> {
  if (err instanceof EnvironmentError) return "env_error";
  if (err instanceof InferenceUnavailableError) return "policy_error";
  if (err instanceof UnrecoverableError) return "invalid";
  if (err instanceof Error && /exceeded \d+(\.\d+)? s|timed? ?out/i.test(err.message)) return "timeout";
  return "error";
}

/** A run's policy as failure counts name it: `oracle`, or `http:<model of the first endpoint>`. */
export function policyLabel(spec: RunSpec): string {
  const p = spec.policy;
  if (p.kind !== "http") return p.kind;
  const e = p.endpoints[0] as { model?: string; url?: string } | undefined;
  return `http:${e?.model ?? e?.url ?? "?"}`;
}

/** Job data of a stage job, schema-checked. @throws UnrecoverableError naming the bad field (retrying cannot fix it). */
export function parseJobData(data: unknown): StageJobData {
  const r = StageJobDataSchema.safeParse(data);
  if (!r.success) throw new UnrecoverableError(`stage job data: ${formatZodIssues(r.error)}`);
  return r.data;
}

/** BullMQ options of a stage job of a run: derived id, the run's attempts and backoff. */
export function stageJobOptions(spec: RunSpec, jobId: string) {
  return {
    jobId,
    attempts: spec.attempts,
    backoff: { type: "exponential" as const, delay: spec.backoffMs },
    removeOnComplete: true,
    removeOnFail: false,
  };
}

/** Whether this failure of `job` is its last (unrecoverable, or the attempts are used up). */
export function isFinalAttempt(job: Job, err: unknown): boolean {
  return err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

/** A job aborted by the shutdown: back to waiting (no attempt used). Always throws. */
async function handBack(p: Pipeline, job: Job, token: string | undefined): Promise<never> {
  try {
    await job.moveToWait(token);
  } catch (err) {
    p.d.log.warn({ job: job.id, err: (err as Error).message }, "could not hand the job back; the stalled-job check will");
    throw new WorkerShutdownError();
  }
  throw new WaitingError();
}

/** Image stage: build (or look up) the task's image, then enqueue its K rollouts. */
export function imageStage(p: Pipeline): Processor {
  return async (job) => {
    const { runId, taskId } = parseJobData(job.data);
    const ctx = await p.runCtx(runId);
    const task = await p.taskOf(ctx, taskId);
    let tag: string;
    try {
      tag = await p.d.image(task, { spec: ctx.spec, logger: p.d.log });
    } catch (err) {
      if (isFinalAttempt(job, err)) {
        for (let i = 0; i < ctx.spec.samples; i++) {
          await p.recordFailure(ctx, { taskId, sample: i, stage: "image", reason: (err as Error).message, attempts: job.attemptsMade + 1 }, err);
        }
      }
      throw err;
    }
    ctx.images.set(taskId, Promise.resolve(tag));
    await p.d.queues.rollouts.addBulk(
      Array.from({ length: ctx.spec.samples }, (_, i) => ({
        name: "rollout",
        data: { runId, taskId, sample: i } satisfies StageJobData,
        opts: stageJobOptions(ctx.spec, jobIds.rollout(runId, taskId, i)),
      })),
    );
    return { image: tag };
  };
}

/** Rollout stage: one episode, staged durably in the run's sink, then its evaluation job. */
export function rolloutStage(p: Pipeline): Processor {
  const { redis, log } = p.d;
  return async (job, token) => {
    const { runId, taskId, sample, ctx, keys, key } = await p.sampleJob(job.data);
    const addEval = () => p.d.queues.evals.add("evaluation", { runId, taskId, sample } satisfies StageJobData, stageJobOptions(ctx.spec, jobIds.evaluation(runId, taskId, sample)));
    const [done, skipped] = await Promise.all([redis.hexists(keys.done, key), redis.hexists(keys.skipped, key)]);
    if (done || skipped) {
      await redis.hdel(keys.running, key); // a mark left by a worker that died
      return { already: done ? "done" : "skipped" };
    }
    if (await ctx.sink.hasStaged(key)) {
      await redis.hdel(keys.running, key);
      await addEval();
      return { staged: true, reused: true };
    }
    const m = ctx.spec.stopAfterSuccesses;
    if (m !== undefined && Number((await redis.hget(keys.successes, taskId)) ?? 0) >= m) {
      await redis.hset(keys.skipped, key, `task reached ${m} resolved samples`);
      return { skipped: true };
    }
    const task = await p.taskOf(ctx, taskId);
    const ac = new AbortController();
    p.aborts.add(ac);
    const timer = setTimeout(() => ac.abort(new Error(`episode exceeded ${ctx.spec.episodeTimeoutSeconds} s`)), ctx.spec.episodeTimeoutSeconds * 1000);
    await redis.hset(keys.running, key, `${os.hostname()}:${process.pid} ${Date.now()}`);
    await redis.hincrby(keys.stats, "started", 1);
    try {
      let t: Trajectory;
      try {
        t = await p.d.rollout(task, sample, {
          runId,
          spec: ctx.spec,
          trajectoryId: trajectoryId(runId, taskId, sample),
          attempt: job.attemptsMade,
          signal: ac.signal,
          logger: log.child({ run: runId, task: taskId, sample }),
          onTurn: () => p.countTurn(runId),
          redis,
          resolveImage: (tk) => p.imageOf(ctx, tk),
        });
        t = TrajectorySchema.parse({ ...t, id: trajectoryId(runId, taskId, sample) });
      } catch (err) {
        if (p.shutdownAbort(ac)) return await handBack(p, job, token);
        await redis.hincrby(keys.stats, "attemptErrors", 1);
        log.warn({ run: runId, task: taskId, sample, attempt: job.attemptsMade, err: (err as Error).message }, "rollout attempt failed");
        if (isFinalAttempt(job, err)) {
          await p.recordFailure(ctx, { taskId, sample, stage: "rollout", reason: (err as Error).message, attempts: job.attemptsMade + 1 }, err);
        }
        throw err;
      }
      await ctx.sink.stage(key, t);
      await addEval();
      return { staged: true };
    } finally {
      clearTimeout(timer);
      p.aborts.delete(ac);
      await p.flushTurns();
      await redis.hdel(keys.running, key);
    }
  };
}

/** Evaluation stage: evaluate the staged trajectory, commit it to the sink with its `done` record, acknowledge. */
export function evaluationStage(p: Pipeline): Processor {
  const { redis, log } = p.d;
  return async (job, token) => {
    const { runId, taskId, sample, ctx, keys, key } = await p.sampleJob(job.data);
    const prior = await p.doneRecord(runId, key);
    if (prior) return prior;
    const staged = await ctx.sink.readStaged(key);
    if (!staged) {
      // A copy of this job may have committed (and removed the staged trajectory) meanwhile.
      const d = await p.doneRecord(runId, key);
      if (d) return d;
      const err = new UnrecoverableError(`no staged trajectory for ${key} (${ctx.sink.stagedWhere} missing)`);
      await p.recordFailure(ctx, { taskId, sample, stage: "evaluation", reason: err.message, attempts: job.attemptsMade + 1 }, err);
      throw err;
    }
    const task = await p.taskOf(ctx, taskId);
    const ac = new AbortController();
    p.aborts.add(ac);
    let t: Trajectory;
    try {
      await redis.hset(keys.evaluating, key, `${os.hostname()}:${process.pid} ${Date.now()}`);
      t = TrajectorySchema.parse(await p.d.evaluate(task, staged, { spec: ctx.spec, signal: ac.signal, logger: log }));
    } catch (err) {
      if (p.shutdownAbort(ac)) return await handBack(p, job, token);
      await redis.hincrby(keys.stats, "attemptErrors", 1);
      if (isFinalAttempt(job, err)) {
        await p.recordFailure(ctx, { taskId, sample, stage: "evaluation", reason: (err as Error).message, attempts: job.attemptsMade + 1 }, err);
      }
      throw err;
    } finally {
      p.aborts.delete(ac);
      await redis.hdel(keys.evaluating, key).catch(() => undefined);
    }
    // One committer per sample: a claim (expiring) against concurrent copies of the job (a lock
    // lost while Redis was away); the sink guards against a committer that died mid-commit.
    const claimKey = keys.claim + key;
    const me = `${ctx.sink.committerId} ${Date.now()}`;
    for (let waited = 0; (await redis.set(claimKey, me, "PX", 30_000, "NX")) !== "OK"; waited += 500) {
      const d = await p.doneRecord(runId, key);
      if (d) return d;
      if (waited > 60_000) throw new Error(`sample ${key} is being committed by another worker`);
      await new Promise((r) => setTimeout(r, 500));
    }
    try {
      const d = await p.doneRecord(runId, key);
      if (d) return d;
      return await ctx.sink.commit({ key, taskId, sample, trajectory: t });
    } finally {
      await redis.del(claimKey);
    }
  };
}
