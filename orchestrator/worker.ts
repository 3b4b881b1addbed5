/**
 * A forager worker: BullMQ workers for the three stage queues (images → rollouts → evaluations)
 * of every run in one Redis. Any number of them, on any machine with a Docker engine; for runs
 * with storage "shared" the run directory must be mounted at the same path, for runs with storage
 * "redis" the worker uses no file of the run (redis-storage.ts).
 *
 * Per sample (run, task, i) the pipeline is a chain of idempotent jobs with derived ids:
 *   image job `img.<run>.<task>` → rollout jobs `roll.<run>.<task>.<i>` (i < K) → evaluation
 *   job `eval.<run>.<task>.<i>` → a trajectory committed to a shard, recorded in the run's
 *   `done` hash, then the job is acknowledged.
 * Each stage first checks what is already durable (done hash, staged trajectory) so a retried,
 * stalled or re-submitted job never produces a second trajectory.
 *
 * Shutdown ({@link ForagerWorker.close}): stop taking jobs, let running ones finish (optionally
 * within a grace period), abort the rest; an aborted rollout or evaluation goes back to waiting
 * without using up an attempt.
 *
 * Concurrency: rollouts from container slots ({@link containerSlots}); model requests are limited
 * globally per endpoint by a Redis semaphore (stages.ts makePolicy).
 */
import os from "node:os";
import path from "node:path";
import { UnrecoverableError, WaitingError, Worker, Queue, type Job } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import { TrajectorySchema, type Trajectory } from "../agent/trajectory";
import { silentLogger, type Logger } from "../lib/log";
import { TaskSchema, type Task } from "../tasks/schema";
import { commitToStream, hasStagedRedis, readStagedRedis, STREAM_ENTRY_PLACEHOLDER, writeStagedRedis } from "./redis-storage";
import { readStaged, scanShards, ShardWriter, stagingPath, writeFileAtomic, writeStaged, type IndexEntry } from "./storage";
import { QUEUE_PREFIX, QUEUES, RunSpecSchema, jobIds, runKeys, runPaths, sampleKey, trajectoryId, type RunSpec } from "./spec";
import { closePolicyClients, defaultEvaluate, defaultImage, defaultRollout, type EvaluateFn, type ImageFn, type RolloutFn } from "./stages";
import fsp from "node:fs/promises";

/** Data of a job of any stage. */
export interface StageJobData {
  runId: string;
  taskId: string;
  /** Rollout and evaluation jobs. */
  sample?: number;
}

/** What the `done` hash records per sample (small; the trajectory is in its shard). */
export interface SampleSummary {
  taskId: string;
  sample: number;
  resolved: boolean;
  reward: number;
  turns: number;
  endReason: string;
  /** Shard file (storage "shared"); `stream:<entry id>` for storage "redis" (the collector picks the shard). */
  shard: string;
  /** Byte offset in the shard (0 for storage "redis"). */
  offset: number;
  worker: string;
}

/** What the `failed` hash (and `failures/<key>.json`) records for a sample whose job failed for good. */
export interface SampleFailure {
  taskId: string;
  sample: number;
  stage: "image" | "rollout" | "evaluation";
  reason: string;
  attempts: number;
  at: string;
}

export interface WorkerOptions {
  redisUrl: string;
  /** Rollouts at once (default {@link containerSlots}). */
  concurrency?: number;
  /** Evaluations at once (default max(1, concurrency / 4)). */
  evalConcurrency?: number;
  /** Image builds at once (default 1). */
  imageConcurrency?: number;
  rollout?: RolloutFn;
  evaluate?: EvaluateFn;
  image?: ImageFn;
  /** BullMQ lock of an active job, ms: a worker that stops renewing it (died) loses the job after this. Default 30000. */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for, ms. Default 15000. */
  stalledIntervalMs?: number;
  /** Times a job may stall (its worker died) before it fails. Default 5. */
  maxStalledCount?: number;
  /** Remove orphaned / expired forager containers at start-up (default true). */
  reap?: boolean;
  logger?: Logger;
  /** Shard writer id (default host-pid-random). */
  writerId?: string;
}

/**
 * Container slots of this machine: min(⌊cpus / cpuPerSlot⌋, ⌊memory / memPerSlot⌋), at least 1.
 * Episodes mostly wait on the model, so a slot is a fraction of a core (default 0.125 CPU: 16
 * per core) and 1 GiB of memory (a SWE-bench container's resident size is typically well under).
 */
export function containerSlots(opts: { cpuPerSlot?: number; memPerSlotBytes?: number; cpus?: number; memBytes?: number } = {}): number {
  const cpus = opts.cpus ?? os.availableParallelism();
  const mem = opts.memBytes ?? os.totalmem();
  return Math.max(1, Math.min(Math.floor(cpus / (opts.cpuPerSlot ?? 0.125)), Math.floor(mem / (opts.memPerSlotBytes ?? 1024 ** 3))));
}

/**
 * ioredis options for a Redis URL, fit for BullMQ: commands wait while Redis is away (never given
 * up: `maxRetriesPerRequest: null`), reconnecting every 0.1–2 s. BullMQ owns (and closes) the
 * connections it makes from options.
 */
export function connectionOptions(url: string): RedisOptions {
  const u = new URL(url);
  return {
    host: u.hostname || "127.0.0.1",
    port: Number(u.port || 6379),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    maxRetriesPerRequest: null,
    retryStrategy: (n: number) => Math.min(100 * n, 2000),
  };
}

/**
 * Wait (at most `maxWaitMs`) until the connections of BullMQ queues / workers have finished their
 * handshake (ready check, script loading, INFO version check), successfully or not. Call it
 * before closing them: BullMQ 5's `RedisConnection.close()` on a connection still in its
 * handshake disconnects the socket under the pending INFO and has already removed every 'error'
 * listener when that INFO fails with "Connection is closed.", so BullMQ's re-emit of the error
 * becomes an unhandled rejection (taskforcesh/bullmq#3546). Bounded because Redis may be away;
 * then the close goes ahead as before.
 */
export async function bullHandshakesSettled(objs: ReadonlyArray<{ waitUntilReady(): Promise<unknown> }>, maxWaitMs = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(objs.map((o) => o.waitUntilReady())),
    new Promise<void>((r) => {
      timer = setTimeout(r, maxWaitMs);
    }),
  ]);
  clearTimeout(timer);
}

/** An ioredis connection with {@link connectionOptions} (errors swallowed: it reconnects). */
export function redisConnection(url: string): Redis {
  const r = new Redis(connectionOptions(url));
  r.on("error", () => undefined);
  return r;
}

interface RunCtx {
  spec: RunSpec;
  tasks: Map<string, Task>;
  images: Map<string, Promise<string>>;
}

/** Options of {@link ForagerWorker.close}. */
export interface CloseOptions {
  /** Abort running jobs at once (they go back to waiting) and do not wait for them. */
  force?: boolean;
  /** Wait this long (ms) for running jobs to finish, then abort them as with `force`. Default: wait as long as they take. */
  graceMs?: number;
  /** After aborting, wait at most this long (ms) for the aborted jobs to hand their jobs back (default 5000). */
  abortWaitMs?: number;
}

export interface ForagerWorker {
  readonly id: string;
  readonly concurrency: number;
  /** Rollouts and evaluations running now. */
  readonly running: number;
  /**
   * Stop taking jobs, wait for the running ones (up to `graceMs`), abort the rest, close the
   * queues, the Redis connections and the shard files. An aborted rollout or evaluation is moved
   * back to waiting without using an attempt (its episode runs again elsewhere); a job that does
   * not stop when aborted (an image build) is left to BullMQ's stalled-job check. Calling again
   * while closing returns the same promise; `force` on a later call aborts the running jobs at once.
   */
  close(opts?: CloseOptions): Promise<void>;
}

/** The reason given to episodes and evaluations aborted by {@link ForagerWorker.close}. */
export class WorkerShutdownError extends Error {
  constructor() {
    super("worker shutting down");
    this.name = "WorkerShutdownError";
  }
}

/** Start the stage workers. */
export async function startWorker(opts: WorkerOptions): Promise<ForagerWorker> {
  const log = (opts.logger ?? silentLogger).child({ component: "worker" });
  if (opts.reap ?? true) {
    try {
      const { reapSandboxes } = await import("../sandbox/reaper");
      const reaped = await reapSandboxes();
      if (reaped.length) log.info({ reaped: reaped.length }, "removed orphaned containers");
    } catch (err) {
      log.warn({ err }, "reaper failed (is Docker reachable?)");
    }
  }
  const concurrency = opts.concurrency ?? containerSlots();
  const redis = redisConnection(opts.redisUrl);
  const rollout = opts.rollout ?? defaultRollout;
  const evaluate = opts.evaluate ?? defaultEvaluate;
  const image = opts.image ?? defaultImage;
  const runs = new Map<string, Promise<RunCtx>>();
  const writers = new Map<string, ShardWriter>();
  const writerBase = opts.writerId;
  const queues = {
    rollouts: new Queue(QUEUES.rollouts, { connection: connectionOptions(opts.redisUrl), prefix: QUEUE_PREFIX }),
    evals: new Queue(QUEUES.evals, { connection: connectionOptions(opts.redisUrl), prefix: QUEUE_PREFIX }),
  };
  const id = writerBase ?? `${os.hostname()}-${process.pid}`;
  const aborts = new Set<AbortController>();
  /** Set once close() began: an abort with WorkerShutdownError hands the job back instead of failing it. */
  let stopping = false;

  /** A job aborted by the shutdown: back to waiting (no attempt used). Always throws. */
  async function handBack(job: Job, token: string | undefined): Promise<never> {
    try {
      await job.moveToWait(token);
    } catch (err) {
      log.warn({ job: job.id, err: (err as Error).message }, "could not hand the job back; the stalled-job check will");
      throw new WorkerShutdownError();
    }
    throw new WaitingError();
  }
  const shutdownAbort = (ac: AbortController) => stopping && ac.signal.aborted && ac.signal.reason instanceof WorkerShutdownError;
  let turnsPending = new Map<string, number>();
  const turnFlush = setInterval(() => void flushTurns(), 1000);

  async function flushTurns(): Promise<void> {
    const pending = turnsPending;
    turnsPending = new Map();
    await Promise.all([...pending].map(([runId, n]) => redis.hincrby(runKeys(runId).stats, "turns", n))).catch(() => undefined);
  }

  function runCtx(runId: string): Promise<RunCtx> {
    let p = runs.get(runId);
    if (!p) {
      p = (async () => {
        const raw = await redis.get(runKeys(runId).spec);
        if (!raw) throw new UnrecoverableError(`run ${runId} is unknown to this Redis`);
        return { spec: RunSpecSchema.parse(JSON.parse(raw)), tasks: new Map(), images: new Map() };
      })();
      p.catch(() => runs.delete(runId));
      runs.set(runId, p);
    }
    return p;
  }

  /** What a rollout or evaluation job works on: its run, task, sample and Redis keys. */
  async function sampleJob(data: StageJobData) {
    const { runId, taskId } = data;
    const sample = data.sample ?? 0;
    return { runId, taskId, sample, ctx: await runCtx(runId), keys: runKeys(runId), key: sampleKey(runId, taskId, sample) };
  }

  async function taskOf(ctx: RunCtx, runId: string, taskId: string): Promise<Task> {
    let t = ctx.tasks.get(taskId);
    if (!t) {
      const raw = await redis.hget(runKeys(runId).tasks, taskId);
      if (!raw) throw new UnrecoverableError(`task ${taskId} of run ${runId} is not in Redis`);
      t = TaskSchema.parse(JSON.parse(raw));
      if (ctx.tasks.size > 10_000) ctx.tasks.clear();
      ctx.tasks.set(taskId, t);
    }
    return t;
  }

  function writerFor(ctx: RunCtx): ShardWriter {
    let w = writers.get(ctx.spec.runId);
    if (!w) {
      w = new ShardWriter(runPaths(ctx.spec.runDir).shards, { shardRecords: ctx.spec.shardRecords, writerId: writerBase });
      writers.set(ctx.spec.runId, w);
    }
    return w;
  }

  const jobOpts = (spec: RunSpec, jobId: string) => ({
    jobId,
    attempts: spec.attempts,
    backoff: { type: "exponential" as const, delay: spec.backoffMs },
    removeOnComplete: true,
    removeOnFail: false,
  });

  /** Record a failure for good (final attempt, or unrecoverable). */
  async function recordFailure(spec: RunSpec, f: SampleFailure): Promise<void> {
    const key = sampleKey(spec.runId, f.taskId, f.sample);
    await redis.hset(runKeys(spec.runId).failed, key, JSON.stringify(f));
    if (spec.storage === "redis") return; // no run directory here: the driver's collector writes the file
    await writeFileAtomic(path.join(runPaths(spec.runDir).failures, `${key}.json`), JSON.stringify(f) + "\n").catch((err: unknown) =>
      log.warn({ err }, "could not write the failure file"),
    );
  }

  const isFinal = (job: Job, err: unknown) => err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);

  // --- image stage: build (or look up) the task's image, then enqueue its K rollouts.
  const imageWorker = new Worker<StageJobData>(
    QUEUES.images,
    async (job) => {
      const { runId, taskId } = job.data;
      const ctx = await runCtx(runId);
      const task = await taskOf(ctx, runId, taskId);
      let tag: string;
      try {
        tag = await image(task, { spec: ctx.spec, logger: log });
      } catch (err) {
        if (isFinal(job, err)) {
          for (let i = 0; i < ctx.spec.samples; i++) {
            await recordFailure(ctx.spec, { taskId, sample: i, stage: "image", reason: (err as Error).message, attempts: job.attemptsMade + 1, at: new Date().toISOString() });
          }
        }
        throw err;
      }
      ctx.images.set(taskId, Promise.resolve(tag));
      await queues.rollouts.addBulk(
        Array.from({ length: ctx.spec.samples }, (_, i) => ({
          name: "rollout",
          data: { runId, taskId, sample: i },
          opts: jobOpts(ctx.spec, jobIds.rollout(runId, taskId, i)),
        })),
      );
      return { image: tag };
    },
    workerOpts(opts.imageConcurrency ?? 1),
  );

  // --- rollout stage: one episode, staged durably, then its evaluation job.
  const rolloutWorker = new Worker<StageJobData>(
    QUEUES.rollouts,
    async (job, token) => {
      const { runId, taskId, sample, ctx, keys, key } = await sampleJob(job.data);
      const addEval = () => queues.evals.add("evaluation", { runId, taskId, sample }, jobOpts(ctx.spec, jobIds.evaluation(runId, taskId, sample)));
      const [done, skipped] = await Promise.all([redis.hexists(keys.done, key), redis.hexists(keys.skipped, key)]);
      if (done || skipped) {
        await redis.hdel(keys.running, key); // a mark left by a worker that died
        return { already: done ? "done" : "skipped" };
      }
      const staged = ctx.spec.storage === "redis" ? await hasStagedRedis(redis, runId, key) : (await readStaged(runPaths(ctx.spec.runDir).staging, key)) !== undefined;
      if (staged) {
        await redis.hdel(keys.running, key);
        await addEval();
        return { staged: true, reused: true };
      }
      const m = ctx.spec.stopAfterSuccesses;
      if (m !== undefined && Number((await redis.hget(keys.successes, taskId)) ?? 0) >= m) {
        await redis.hset(keys.skipped, key, `task reached ${m} resolved samples`);
        return { skipped: true };
      }
      const task = await taskOf(ctx, runId, taskId);
      const ac = new AbortController();
      aborts.add(ac);
      const timer = setTimeout(() => ac.abort(new Error(`episode exceeded ${ctx.spec.episodeTimeoutSeconds} s`)), ctx.spec.episodeTimeoutSeconds * 1000);
      await redis.hset(keys.running, key, `${os.hostname()}:${process.pid} ${Date.now()}`);
      await redis.hincrby(keys.stats, "started", 1);
      try {
        let t: Trajectory;
        try {
          t = await rollout(task, sample, {
            runId,
            spec: ctx.spec,
            trajectoryId: trajectoryId(runId, taskId, sample),
            attempt: job.attemptsMade,
            signal: ac.signal,
            logger: log.child({ run: runId, task: taskId, sample }),
            onTurn: () => turnsPending.set(runId, (turnsPending.get(runId) ?? 0) + 1),
            redis,
            resolveImage: (tk) => {
              let p = ctx.images.get(tk.id);
              if (!p) {
                p = image(tk, { spec: ctx.spec, logger: log });
                p.catch(() => ctx.images.delete(tk.id));
                ctx.images.set(tk.id, p);
              }
              return p;
            },
          });
          t = TrajectorySchema.parse({ ...t, id: trajectoryId(runId, taskId, sample) });
        } catch (err) {
          if (shutdownAbort(ac)) return await handBack(job, token);
          await redis.hincrby(keys.stats, "attemptErrors", 1);
          log.warn({ run: runId, task: taskId, sample, attempt: job.attemptsMade, err: (err as Error).message }, "rollout attempt failed");
          if (isFinal(job, err)) {
            await recordFailure(ctx.spec, { taskId, sample, stage: "rollout", reason: (err as Error).message, attempts: job.attemptsMade + 1, at: new Date().toISOString() });
          }
          throw err;
        }
        if (ctx.spec.storage === "redis") await writeStagedRedis(redis, runId, key, t);
        else await writeStaged(runPaths(ctx.spec.runDir).staging, key, t);
        await addEval();
        return { staged: true };
      } finally {
        clearTimeout(timer);
        aborts.delete(ac);
        await flushTurns();
        await redis.hdel(keys.running, key);
      }
    },
    workerOpts(concurrency),
  );

  // --- evaluation stage: evaluate, commit to a shard (durable), record, acknowledge.
  const evalWorker = new Worker<StageJobData>(
    QUEUES.evals,
    async (job, token) => {
      const { runId, taskId, sample, ctx, keys, key } = await sampleJob(job.data);
      const inRedis = ctx.spec.storage === "redis";
      const stagingDir = runPaths(ctx.spec.runDir).staging;
      const prior = await redis.hget(keys.done, key);
      if (prior) return JSON.parse(prior) as SampleSummary;
      const staged = inRedis ? await readStagedRedis(redis, runId, key) : await readStaged(stagingDir, key);
      if (!staged) {
        // A copy of this job may have committed (and removed the staged trajectory) meanwhile.
        const d = await redis.hget(keys.done, key);
        if (d) return JSON.parse(d) as SampleSummary;
        const err = new UnrecoverableError(`no staged trajectory for ${key} (${inRedis ? "staged key" : "staging file"} missing)`);
        await recordFailure(ctx.spec, { taskId, sample, stage: "evaluation", reason: err.message, attempts: job.attemptsMade + 1, at: new Date().toISOString() });
        throw err;
      }
      const task = await taskOf(ctx, runId, taskId);
      const ac = new AbortController();
      aborts.add(ac);
      let t: Trajectory;
      try {
        await redis.hset(keys.evaluating, key, `${os.hostname()}:${process.pid} ${Date.now()}`);
        t = TrajectorySchema.parse(await evaluate(task, staged, { spec: ctx.spec, signal: ac.signal, logger: log }));
      } catch (err) {
        if (shutdownAbort(ac)) return await handBack(job, token);
        await redis.hincrby(keys.stats, "attemptErrors", 1);
        if (isFinal(job, err)) {
          await recordFailure(ctx.spec, { taskId, sample, stage: "evaluation", reason: (err as Error).message, attempts: job.attemptsMade + 1, at: new Date().toISOString() });
        }
        throw err;
      } finally {
        aborts.delete(ac);
        await redis.hdel(keys.evaluating, key).catch(() => undefined);
      }
      // One committer per sample: a claim (expiring) against concurrent copies of the job (a lock
      // lost while Redis was away), and a `committing` mark (not expiring) against a committer that
      // died between its fsync and its `done` record: the next one looks in the shard indexes first.
      const claimKey = keys.claim + key;
      const me = `${inRedis ? id : writerFor(ctx).writerId} ${Date.now()}`;
      for (let waited = 0; (await redis.set(claimKey, me, "PX", 30_000, "NX")) !== "OK"; waited += 500) {
        const d = await redis.hget(keys.done, key);
        if (d) return JSON.parse(d) as SampleSummary;
        if (waited > 60_000) throw new Error(`sample ${key} is being committed by another worker`);
        await new Promise((r) => setTimeout(r, 500));
      }
      try {
        const d = await redis.hget(keys.done, key);
        if (d) return JSON.parse(d) as SampleSummary;
        if (inRedis) {
          // One atomic script: XADD to the run's results stream + `done` record + staged key deleted.
          const summary: SampleSummary = {
            shard: `stream:${STREAM_ENTRY_PLACEHOLDER}`, // first: the script fills in the first occurrence
            taskId,
            sample,
            resolved: t.evaluation?.resolved ?? false,
            reward: t.reward,
            turns: t.turns.length,
            endReason: t.endReason,
            offset: 0,
            worker: id,
          };
          const r = await commitToStream(redis, runId, { key, taskId, sample, trajectory: t, summary: JSON.stringify(summary) });
          return JSON.parse(r.summary) as SampleSummary;
        }
        let entry: IndexEntry | undefined;
        if (await redis.hexists(keys.committing, key)) {
          const id = trajectoryId(runId, taskId, sample);
          entry = scanShards(runPaths(ctx.spec.runDir).shards).entries.find((e) => e.id === id);
          if (entry) log.warn({ key }, "trajectory found committed by a worker that died before recording it");
        }
        await redis.hset(keys.committing, key, me);
        entry ??= await writerFor(ctx).append(t, sample);
        const summary: SampleSummary = {
          taskId,
          sample,
          resolved: entry.resolved,
          reward: entry.reward,
          turns: entry.turns,
          endReason: entry.endReason,
          shard: entry.shard,
          offset: entry.offset,
          worker: writerFor(ctx).writerId,
        };
        const multi = redis.multi().hset(keys.done, key, JSON.stringify(summary)).hdel(keys.failed, key).hdel(keys.committing, key);
        if (summary.resolved) multi.hincrby(keys.successes, taskId, 1);
        await multi.exec();
        await fsp.rm(stagingPath(stagingDir, key), { force: true });
        await fsp.rm(path.join(runPaths(ctx.spec.runDir).failures, `${key}.json`), { force: true });
        return summary;
      } finally {
        await redis.del(claimKey);
      }
    },
    workerOpts(opts.evalConcurrency ?? Math.max(1, Math.floor(concurrency / 4))),
  );

  function workerOpts(n: number) {
    return {
      connection: connectionOptions(opts.redisUrl),
      prefix: QUEUE_PREFIX,
      concurrency: n,
      lockDuration: opts.lockDurationMs ?? 30_000,
      stalledInterval: opts.stalledIntervalMs ?? 15_000,
      maxStalledCount: opts.maxStalledCount ?? 5,
    };
  }

  const workers = [imageWorker, rolloutWorker, evalWorker];
  for (const w of workers) {
    w.on("error", (err) => log.warn({ err: err.message, queue: w.name }, "worker error"));
  }
  log.info({ id, concurrency }, "worker started");

  let closing: Promise<void> | undefined;
  let forced: (() => void) | undefined;
  const forcedP = new Promise<void>((r) => (forced = r));
  /** Abort every running episode and evaluation (their jobs are handed back), once. */
  function abortRunning(): void {
    stopping = true;
    for (const ac of aborts) if (!ac.signal.aborted) ac.abort(new WorkerShutdownError());
    forced?.();
  }

  async function closeNow(o: CloseOptions): Promise<void> {
    stopping = true;
    // A worker closed right after it started (e.g. resuming a run that is already complete) may
    // still be in its connection handshakes: let them finish first (bullHandshakesSettled).
    await bullHandshakesSettled([...workers, queues.rollouts, queues.evals]);
    // BullMQ: no new jobs from here on; resolves once the running ones are done. Aborted jobs still
    // need the connections to hand their jobs back, so BullMQ's own force close is not used.
    const bull = Promise.all(workers.map((w) => w.close()));
    let grace: NodeJS.Timeout | undefined;
    if (o.force) abortRunning();
    else if (o.graceMs !== undefined) {
      grace = setTimeout(() => {
        if (aborts.size) log.warn({ running: aborts.size, graceMs: o.graceMs }, "grace period over: aborting running jobs");
        abortRunning();
      }, o.graceMs);
    }
    let waitTimer: NodeJS.Timeout | undefined;
    const gaveUp = forcedP.then(
      () =>
        new Promise<"gave up">((r) => {
          waitTimer = setTimeout(() => r("gave up"), o.abortWaitMs ?? 5000);
        }),
    );
    const r = await Promise.race([bull.then(() => "closed" as const), gaveUp]);
    clearTimeout(grace);
    clearTimeout(waitTimer);
    if (r === "gave up") {
      log.warn({ running: aborts.size }, "jobs did not stop when aborted; left to the stalled-job check");
      await Promise.all(workers.map((w) => w.disconnect().catch(() => undefined)));
    }
    clearInterval(turnFlush);
    await flushTurns();
    await Promise.all([...writers.values()].map((w) => w.close()));
    await Promise.all([queues.rollouts.close(), queues.evals.close()]);
    await closePolicyClients();
    redis.disconnect();
  }

  return {
    id,
    concurrency,
    get running() {
      return aborts.size;
    },
    close(o = {}) {
      if (closing) {
        if (o.force) abortRunning();
        return closing;
      }
      closing = closeNow(o);
      return closing;
    },
  };
}
