/**
 * A forager worker: BullMQ workers for the three stage queues (images → rollouts → evaluations)
 * of every run in one Redis. Any number of them, on any machine with a Docker engine; for runs
 * with storage "shared" the run directory must be mounted at the same path, for runs with storage
 * "redis" the worker uses no file of the run (sink.ts).
 *
 * Per sample (run, task, i) the pipeline is a chain of idempotent jobs with derived ids, one
 * named stage each (pipeline.ts imageStage, rolloutStage, evaluationStage); trajectories go to the
 * run's TrajectorySink (sink.ts), the one place that knows the storage mode.
 *
 * Shutdown ({@link ForagerWorker.close}): stop taking jobs, let running ones finish (optionally
 * within a grace period), abort the rest; an aborted rollout or evaluation goes back to waiting
 * without using up an attempt.
 *
 * Concurrency: rollouts from the host's capacity (cluster.ts hostCapacity: cores, memory and the
 * sandbox limits); model requests are limited globally per endpoint by a Redis semaphore
 * (stages.ts makePolicy).
 *
 * Many hosts (cluster.ts): with a cluster registry (`registry`, or the run's) images are pulled or
 * built once in the cluster and pushed; each worker writes a heartbeat (slots, jobs in flight,
 * images pulled or built, problems) that `forager status` shows.
 */
import os from "node:os";
import { Worker, Queue, type Processor } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import { silentLogger, type Logger } from "../lib/log";
import { reapSandboxes } from "../sandbox/reaper";
import { checkBaseImage, formatRegistry, type RegistrySettings } from "../images/registry";
import { DEFAULT_BASE_IMAGE } from "../images/spec";
import { clusterImage, evaluateHere, hostCapacity, RedisBuildLock, WorkerMonitor, type CapacityInput, type HostCapacity } from "./cluster";
import { evaluationStage, imageStage, Pipeline, rolloutStage, WorkerShutdownError } from "./pipeline";
import { QUEUE_PREFIX, QUEUES } from "./spec";
import { closePolicyClients, defaultEvaluate, defaultRollout, type EvaluateFn, type ImageFn, type RolloutFn } from "./stages";

export { WorkerShutdownError } from "./pipeline";

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
  /**
   * The cluster registry (images/registry.ts): instance images are pulled by their content-hashed
   * names, or built once in the cluster (a Redis lock per image) and pushed. Default: the run's
   * registry, if any; without one every host builds on its own engine.
   */
  registry?: RegistrySettings;
  /** Image state dir of this host (index, source bundles, build logs; default FORAGER_STATE_DIR or ./.forager). */
  stateDir?: string;
  /** How the default slots are derived (cores, memory, sandbox limits; cluster.ts hostCapacity). */
  capacity?: CapacityInput;
  /** Milliseconds between two heartbeats in `forager:workers` (default 5000). */
  heartbeatMs?: number;
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
  await within(Promise.allSettled(objs.map((o) => o.waitUntilReady())), maxWaitMs);
}

/** Whether `p` settled within `ms` milliseconds, with its value if it resolved. */
export async function within<T>(p: Promise<T>, ms: number): Promise<{ settled: boolean; value?: T }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<{ settled: boolean }>((r) => {
    timer = setTimeout(() => r({ settled: false }), ms);
  });
  const done = p.then(
    (value) => ({ settled: true, value }),
    () => ({ settled: true }),
  );
  return Promise.race([done, late]).finally(() => clearTimeout(timer));
}

/** An ioredis connection with {@link connectionOptions} (errors swallowed: it reconnects). */
export function redisConnection(url: string): Redis {
  const r = new Redis(connectionOptions(url));
  r.on("error", () => undefined);
  return r;
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
  /** Rollout slots. */
  readonly concurrency: number;
  /** Evaluation slots. */
  readonly evalConcurrency: number;
  /** How the default slots were derived (undefined when `concurrency` was given). */
  readonly capacity?: HostCapacity;
  /** Counters and heartbeat of this worker. */
  readonly monitor: WorkerMonitor;
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

/** Start the stage workers. */
export async function startWorker(opts: WorkerOptions): Promise<ForagerWorker> {
  const log = (opts.logger ?? silentLogger).child({ component: "worker" });
  if (opts.reap ?? true) {
    try {
      const reaped = await reapSandboxes();
      if (reaped.length) log.info({ reaped: reaped.length }, "removed orphaned containers");
    } catch (err) {
      log.warn({ err }, "reaper failed (is Docker reachable?)");
    }
  }
  const capacity = opts.concurrency === undefined ? hostCapacity(opts.capacity) : undefined;
  const concurrency = opts.concurrency ?? capacity!.slots;
  const evalConcurrency = opts.evalConcurrency ?? (capacity ? capacity.evalSlots : Math.max(1, Math.floor(concurrency / 4)));
  const imageConcurrency = opts.imageConcurrency ?? 1;
  const redis = redisConnection(opts.redisUrl);
  const queues = {
    rollouts: new Queue(QUEUES.rollouts, { connection: connectionOptions(opts.redisUrl), prefix: QUEUE_PREFIX }),
    evals: new Queue(QUEUES.evals, { connection: connectionOptions(opts.redisUrl), prefix: QUEUE_PREFIX }),
  };
  const id = opts.writerId ?? `${os.hostname()}-${process.pid}`;
  const monitor = new WorkerMonitor(redis, {
    id,
    slots: { rollouts: concurrency, evaluations: evalConcurrency, images: imageConcurrency },
    ...(capacity
      ? { capacity: { cores: capacity.cores, memoryBytes: capacity.memoryBytes, byCpu: capacity.byCpu, byMemory: capacity.byMemory, sandboxCpus: capacity.sandboxCpus, sandboxMemoryBytes: capacity.sandboxMemoryBytes } }
      : {}),
    ...(opts.registry ? { registry: formatRegistry(opts.registry) } : {}),
    engine: process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock",
    intervalMs: opts.heartbeatMs,
    logger: log,
  });
  const cluster = { registry: opts.registry, monitor, logger: log, ...(opts.stateDir ? { stateDir: opts.stateDir } : {}) };
  /** Set once close() began: an abort with WorkerShutdownError hands the job back instead of failing it. */
  let stopping = false;
  const pipeline = new Pipeline({
    id,
    writerId: opts.writerId,
    redis,
    queues,
    image: opts.image ?? clusterImage({ ...cluster, lock: new RedisBuildLock(redis, id, { logger: log }) }),
    rollout: opts.rollout ?? defaultRollout,
    evaluate: evaluateHere(opts.evaluate ?? defaultEvaluate, cluster),
    log,
    stopping: () => stopping,
  });
  const aborts = pipeline.aborts;

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

  const stage = (queue: string, processor: Processor, n: number, counted: "images" | "rollouts" | "evaluations") =>
    new Worker(queue, (job, token) => monitor.track(counted, () => processor(job, token)), workerOpts(n));
  const workers = [
    stage(QUEUES.images, imageStage(pipeline), imageConcurrency, "images"),
    stage(QUEUES.rollouts, rolloutStage(pipeline), concurrency, "rollouts"),
    stage(QUEUES.evals, evaluationStage(pipeline), evalConcurrency, "evaluations"),
  ];
  for (const w of workers) {
    w.on("error", (err) => log.warn({ err: err.message, queue: w.name }, "worker error"));
  }
  monitor.start();
  log.info({ id, concurrency, evalConcurrency, ...(capacity ? { capacity } : {}), ...(opts.registry ? { registry: formatRegistry(opts.registry) } : {}) }, "worker started");
  if (opts.registry) {
    // Is this host's base image the cluster's? (A different one hashes every env and instance image differently.)
    const r = opts.registry;
    checkBaseImage(r, DEFAULT_BASE_IMAGE).then(
      (b) => {
        if (b.state === "differs") {
          const msg = `this host's ${DEFAULT_BASE_IMAGE} (${b.localId?.slice(7, 19)}) differs from the registry's (${b.registryId?.slice(7, 19)}): its images hash differently and are not shared; remove it here (docker rmi) to use the cluster's`;
          monitor.problem(msg);
          log.warn({ base: DEFAULT_BASE_IMAGE }, msg);
        } else log.info({ base: DEFAULT_BASE_IMAGE, state: b.state }, "base image checked against the registry");
      },
      (err: unknown) => {
        monitor.problem(`registry ${formatRegistry(r)}: ${(err as Error).message}`);
        log.warn({ err: (err as Error).message }, "could not check the base image against the registry (retried when an image is needed)");
      },
    );
  }

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
    await monitor.setState("stopping");
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
    await pipeline.close();
    await Promise.all([queues.rollouts.close(), queues.evals.close()]);
    await closePolicyClients();
    await monitor.setState("stopped");
    redis.disconnect();
  }

  return {
    id,
    concurrency,
    evalConcurrency,
    ...(capacity ? { capacity } : {}),
    monitor,
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
