/**
 * Runs: submit (idempotent), follow (status, reconciliation), finish (manifest and summary).
 *
 * The run's bookkeeping lives in Redis (runKeys) and on disk (runPaths): Redis says which samples
 * are done / skipped / failed; the shards hold the trajectories; `manifest.json` (written at the
 * end, and by `forager status`) says which shards hold what. A run is complete when every one of
 * its tasks × K samples is done, skipped (the task had its M successes) or failed for good.
 */
import fs from "node:fs";
import path from "node:path";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { parseRecord } from "../lib/zod-util";
import { TaskSchema, type Task } from "../tasks/schema";
import { findNearDuplicates, actionTokens, type DedupReport } from "./dedup";
import { addModelUsage, emptyModelUsage, modelFigures, type ModelFigures } from "./metrics";
import { runAccounting, type RunAccounting } from "./accounting";
import { QUEUE_PREFIX, QUEUES, RUNS_KEY, jobIds, runKeys, runPaths, sampleKey, RunSpecSchema, type RunSpec } from "./spec";
import type { RunCollector } from "./redis-storage";
import { readShards, scanShards, writeFileAtomic, type IndexEntry } from "./storage";
import { countFailures, parseRedisRecord, SampleFailureSchema, type FailureCounts, type SampleFailure, type StageJobData } from "./records";
import { bullHandshakesSettled, connectionOptions, within } from "./worker";

/** The three stage queues for a Redis URL (close them with {@link closeQueues}). */
export function openQueues(redisUrl: string) {
  const mk = (name: string) => new Queue<StageJobData>(name, { connection: connectionOptions(redisUrl), prefix: QUEUE_PREFIX });
  return { images: mk(QUEUES.images), rollouts: mk(QUEUES.rollouts), evals: mk(QUEUES.evals) };
}
export type StageQueues = ReturnType<typeof openQueues>;
/**
 * Close the three stage queues. A queue whose Redis went away while commands were waiting in its
 * offline queue never finishes `close()`: BullMQ 5 awaits ioredis' QUIT, which ioredis 5 queues
 * behind those commands, and they wait for a reconnect that does not come (BullMQ's
 * `disconnect()` waits for an 'end' event that a socket already closed never emits either). After
 * `maxWaitMs` (milliseconds, default 5000) each queue's ioredis client is disconnected (no more
 * reconnects) and its offline queue failed with ioredis' "Connection is closed." error, which
 * BullMQ's close treats as a closed connection: the close then ends.
 * @throws the first error of a close that finished in time with one
 */
export async function closeQueues(q: StageQueues, maxWaitMs = 5000): Promise<void> {
  const all = [q.images, q.rollouts, q.evals];
  await bullHandshakesSettled(all); // a queue not used yet may still be connecting (see there)
  const closing = Promise.all(all.map((x) => x.close()));
  if ((await within(closing, maxWaitMs)).settled) return void (await closing);
  await Promise.all(all.map(async (x) => abandonClient((await within(x.client, 1000)).value)));
  await within(closing, maxWaitMs);
}

/**
 * Stop an ioredis client for good: no reconnect, and every command waiting in its offline queue
 * (a queued QUIT among them) rejected with "Connection is closed." (ioredis' own message for it).
 * `flushQueue` is ioredis 5's internal (TypeScript-private) method that its close handler uses.
 */
function abandonClient(client: unknown): void {
  if (!client || typeof client !== "object") return;
  const c = client as { disconnect(): void; flushQueue?: (e: Error) => void };
  c.disconnect();
  c.flushQueue?.(new Error("Connection is closed."));
}

/** Write the run's spec and tasks to its directory (run.json, tasks.jsonl). */
export async function writeRunFiles(spec: RunSpec, tasks: readonly Task[]): Promise<void> {
  const p = runPaths(spec.runDir);
  fs.mkdirSync(spec.runDir, { recursive: true });
  await writeFileAtomic(p.tasks, tasks.map((t) => JSON.stringify(t)).join("\n") + (tasks.length ? "\n" : ""));
  await writeFileAtomic(p.spec, JSON.stringify(spec, null, 2) + "\n");
}

/** Read run.json (and tasks.jsonl) of a run directory. */
export function readRunFiles(runDir: string): { spec: RunSpec & { redisUrl?: string }; tasks: Task[] } {
  const p = runPaths(runDir);
  if (!fs.existsSync(p.spec)) throw new Error(`${runDir} is not a forager run directory (no run.json)`);
  const raw = JSON.parse(fs.readFileSync(p.spec, "utf8")) as Record<string, unknown>;
  const spec = { ...RunSpecSchema.parse(raw), redisUrl: typeof raw.redisUrl === "string" ? raw.redisUrl : undefined };
  const tasks = fs.existsSync(p.tasks)
    ? fs.readFileSync(p.tasks, "utf8").split("\n").filter(Boolean).map((l) => TaskSchema.parse(JSON.parse(l)))
    : [];
  return { spec, tasks };
}

/**
 * Submit a run: its spec and tasks to Redis, one image job per task (which enqueues the K
 * rollouts). Idempotent: re-submitting (resume) skips what is done; failed samples are cleared
 * and their failed jobs removed so they run again.
 */
export async function submitRun(redis: Redis, queues: StageQueues, spec: RunSpec, tasks: readonly Task[]): Promise<void> {
  const keys = runKeys(spec.runId);
  await redis.set(keys.spec, JSON.stringify(spec));
  await redis.sadd(RUNS_KEY, spec.runId);
  for (let i = 0; i < tasks.length; i += 500) {
    const chunk = tasks.slice(i, i + 500);
    await redis.hset(keys.tasks, Object.fromEntries(chunk.map((t) => [t.id, JSON.stringify(t)])));
  }
  // Failed samples run again: clear their record and remove their failed jobs.
  const failed = await redis.hgetall(keys.failed);
  for (const [key, raw] of Object.entries(failed)) {
    const f = parseRedisRecord(SampleFailureSchema, raw, { what: "sample failure", key: keys.failed, field: key });
    await redis.hdel(keys.failed, key);
    await queues.rollouts.remove(jobIds.rollout(spec.runId, f.taskId, f.sample)).catch(() => undefined);
    await queues.evals.remove(jobIds.evaluation(spec.runId, f.taskId, f.sample)).catch(() => undefined);
    await queues.images.remove(jobIds.image(spec.runId, f.taskId)).catch(() => undefined);
    fs.rmSync(path.join(runPaths(spec.runDir).failures, `${key}.json`), { force: true });
  }
  const opts = (jobId: string) => ({
    jobId,
    attempts: spec.attempts,
    backoff: { type: "exponential" as const, delay: spec.backoffMs },
    removeOnComplete: true,
    removeOnFail: false,
  });
  for (let i = 0; i < tasks.length; i += 500) {
    await queues.images.addBulk(
      tasks.slice(i, i + 500).map((t) => ({ name: "image", data: { runId: spec.runId, taskId: t.id }, opts: opts(jobIds.image(spec.runId, t.id)) })),
    );
  }
}

/** Live figures of a run (from Redis). */
export interface RunStatus {
  runId: string;
  tasks: number;
  /** tasks × K */
  expected: number;
  done: number;
  skipped: number;
  failed: number;
  /** Rollouts running now. */
  inFlight: number;
  /** Evaluations running now (a mark left by a killed worker stays until the sample is retried). */
  evaluating: number;
  resolved: number;
  /** Turns taken so far (all attempts). */
  turns: number;
  /** Failed attempts (retried or not). */
  attemptErrors: number;
  /** Storage "redis": committed trajectories waiting in the run's stream for a collector (0 otherwise). */
  uncollected: number;
  /** Every sample is done, skipped or failed (for storage "redis", `uncollected` may still be > 0). */
  complete: boolean;
}

/** Read the run's figures from Redis. */
export async function runStatus(redis: Redis, runId: string): Promise<RunStatus> {
  const k = runKeys(runId);
  const [spec, tasks, done, skipped, failed, running, evaluating, stats, successes, uncollected] = await Promise.all([
    redis.get(k.spec),
    redis.hlen(k.tasks),
    redis.hlen(k.done),
    redis.hlen(k.skipped),
    redis.hlen(k.failed),
    redis.hlen(k.running),
    redis.hlen(k.evaluating),
    redis.hgetall(k.stats),
    redis.hvals(k.successes),
    redis.xlen(k.results),
  ]);
  if (!spec) throw new Error(`run ${runId} is unknown to this Redis`);
  const samples = RunSpecSchema.parse(JSON.parse(spec)).samples;
  const expected = tasks * samples;
  return {
    runId,
    tasks,
    expected,
    done,
    skipped,
    failed,
    inFlight: running,
    evaluating,
    resolved: successes.reduce((s, v) => s + Number(v), 0),
    turns: Number(stats.turns ?? 0),
    attemptErrors: Number(stats.attemptErrors ?? 0),
    uncollected,
    complete: done + skipped + failed >= expected,
  };
}

/**
 * Find samples whose jobs are gone or failed without a record (a stall limit reached, a job
 * lost with a Redis that lost data) and repair: failed → recorded; gone → re-submitted.
 * @returns how many samples were repaired.
 */
export async function reconcileRun(redis: Redis, queues: StageQueues, spec: RunSpec, tasks: readonly Task[]): Promise<number> {
  const k = runKeys(spec.runId);
  const [done, skipped, failed] = await Promise.all([redis.hkeys(k.done), redis.hkeys(k.skipped), redis.hkeys(k.failed)]);
  const settled = new Set([...done, ...skipped, ...failed]);
  let repaired = 0;
  const resubmit: Task[] = [];
  for (const task of tasks) {
    const open = [...Array(spec.samples).keys()].filter((i) => !settled.has(sampleKey(spec.runId, task.id, i)));
    if (!open.length) continue;
    const imageState = await queues.images.getJobState(jobIds.image(spec.runId, task.id));
    let lost = false;
    for (const i of open) {
      const [rs, es] = await Promise.all([
        queues.rollouts.getJobState(jobIds.rollout(spec.runId, task.id, i)),
        queues.evals.getJobState(jobIds.evaluation(spec.runId, task.id, i)),
      ]);
      const failedJob = es === "failed" ? await queues.evals.getJob(jobIds.evaluation(spec.runId, task.id, i)) : rs === "failed" ? await queues.rollouts.getJob(jobIds.rollout(spec.runId, task.id, i)) : undefined;
      const imageFailed = imageState === "failed" ? await queues.images.getJob(jobIds.image(spec.runId, task.id)) : undefined;
      const fj = failedJob ?? imageFailed;
      if (fj) {
        const f: SampleFailure = {
          taskId: task.id,
          sample: i,
          stage: fj === imageFailed ? "image" : es === "failed" ? "evaluation" : "rollout",
          reason: fj.failedReason || "failed",
          attempts: fj.attemptsMade,
          at: new Date().toISOString(),
        };
        await redis.hset(k.failed, sampleKey(spec.runId, task.id, i), JSON.stringify(f));
        repaired++;
      } else if (rs === "unknown" && es === "unknown" && (imageState === "unknown" || imageState === "completed")) {
        lost = true;
      }
    }
    if (lost) resubmit.push(task);
  }
  if (resubmit.length) {
    // The image job may linger as "completed" only if removeOnComplete was off; remove to re-run it.
    for (const t of resubmit) await queues.images.remove(jobIds.image(spec.runId, t.id)).catch(() => undefined);
    await submitRun(redis, queues, spec, resubmit);
    repaired += resubmit.length;
  }
  return repaired;
}

export interface WaitOptions {
  /** Called every `intervalMs` with the figures. */
  onProgress?: (s: RunStatus) => void;
  /** Poll period, ms (default 1000). */
  intervalMs?: number;
  /** Reconcile period, ms (default 15000); the queues are looked at only while the run is open. */
  reconcileMs?: number;
  signal?: AbortSignal;
  /**
   * Storage "redis": drains the run's results stream into the shards before each poll (at most
   * 1000 entries a poll). Its errors go to `onCollectError` (the next poll tries again).
   */
  collector?: Pick<RunCollector, "drain">;
  onCollectError?: (err: unknown) => void;
}

/**
 * Wait until the run is complete (polling Redis), reconciling now and then. With a collector,
 * what is in the stream when the run completes may still be uncollected: finish with
 * {@link RunCollector.finish}.
 */
export async function waitForRun(redis: Redis, queues: StageQueues, spec: RunSpec, tasks: readonly Task[], opts: WaitOptions = {}): Promise<RunStatus> {
  let lastReconcile = Date.now();
  for (;;) {
    if (opts.collector) await opts.collector.drain({ maxEntries: 1000 }).catch((err: unknown) => opts.onCollectError?.(err));
    const s = await runStatus(redis, spec.runId);
    opts.onProgress?.(s);
    if (s.complete) return s;
    if (opts.signal?.aborted) throw new Error("interrupted");
    if (Date.now() - lastReconcile > (opts.reconcileMs ?? 15_000)) {
      lastReconcile = Date.now();
      await reconcileRun(redis, queues, spec, tasks);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 1000));
  }
}

/** The manifest: which shards hold what (written atomically to `<runDir>/manifest.json`). */
export interface Manifest {
  runId: string;
  createdAt: string;
  samples: number;
  tasks: number;
  expected: number;
  trajectories: number;
  resolved: number;
  /** Copies of an already committed trajectory found in the shards (ignored by readers). */
  duplicatesDropped: number;
  /** Index lines ignored (torn by a crash). */
  tornLines: number;
  shards: Array<{ file: string; index: string; records: number; bytes: number; tasks: Record<string, number[]> }>;
  failures: Array<SampleFailure & { key: string }>;
  /** The failures counted by stage, kind and policy (kept apart from rewards and pass@k). */
  failureCounts: FailureCounts;
  /** Samples with neither a trajectory nor a failure (skipped: M successes reached, or the run is unfinished). */
  missing: number;
  /** pass@1, pass@K over the done tasks with a trajectory (accounting.ts; failed samples excluded). */
  metrics: Record<string, number>;
  /** Tasks done, tokens, end reasons, the per-repository table (accounting.ts). */
  accounting: RunAccounting;
  nearDuplicates?: { pairs: number; clusters: number; dropOnFilter: number };
  /** What the model servers did, summed over the trajectories that recorded it (metrics.ts modelFigures). */
  model?: ModelFigures;
}

/** Read the failure files of a run. */
export function readFailures(runDir: string): Array<SampleFailure & { key: string }> {
  const dir = runPaths(runDir).failures;
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => {
      const file = path.join(dir, f);
      return { key: f.slice(0, -5), ...parseRecord(SampleFailureSchema, JSON.parse(fs.readFileSync(file, "utf8")), { what: "sample failure", file }) };
    });
}

/** Near-duplicate report over the committed trajectories of a run. */
export function dedupRun(runDir: string, entries?: IndexEntry[]): DedupReport {
  const shardsDir = runPaths(runDir).shards;
  const scan = scanShards(shardsDir);
  const items = [];
  for (const { entry, trajectory } of readShards(shardsDir, entries ? { ...scan, entries } : scan)) {
    items.push({ id: entry.id, taskId: entry.taskId, sample: entry.sample, tokens: actionTokens(trajectory) });
  }
  return findNearDuplicates(items);
}

/** Build (and write) the run's manifest from its shards and failure files; pass@1 and pass@K. */
export async function writeManifest(runDir: string, opts: { dedup?: boolean; write?: boolean } = {}): Promise<Manifest> {
  const { spec, tasks } = readRunFiles(runDir);
  const scan = scanShards(runPaths(runDir).shards);
  const committed = new Set(scan.entries.map((e) => `${e.taskId}\u0000${e.sample}`));
  const failures = readFailures(runDir).filter((f) => !committed.has(`${f.taskId}\u0000${f.sample}`));
  const accounting = runAccounting({ entries: scan.entries, failures, tasks, samples: spec.samples, stopAfterSuccesses: spec.stopAfterSuccesses });
  const manifest: Manifest = {
    runId: spec.runId,
    createdAt: new Date().toISOString(),
    samples: spec.samples,
    tasks: tasks.length,
    expected: tasks.length * spec.samples,
    trajectories: scan.entries.length,
    resolved: scan.entries.filter((e) => e.resolved).length,
    duplicatesDropped: scan.duplicates,
    tornLines: scan.tornLines,
    shards: scan.shards.map((s) => {
      const byTask: Record<string, number[]> = {};
      for (const e of scan.entries) if (e.shard === s.file) (byTask[e.taskId] ??= []).push(e.sample);
      return { ...s, tasks: byTask };
    }),
    failures,
    failureCounts: countFailures(failures),
    missing: tasks.length * spec.samples - scan.entries.length - failures.length,
    metrics: accounting.passAtK,
    accounting,
  };
  const usages = scan.entries.flatMap((e) => (e.model ? [e.model] : []));
  if (usages.length) manifest.model = modelFigures(usages.reduce(addModelUsage, emptyModelUsage()));
  if (opts.dedup ?? true) {
    const d = dedupRun(runDir, scan.entries);
    manifest.nearDuplicates = { pairs: d.pairs.length, clusters: d.clusters.length, dropOnFilter: d.dropped.size };
  }
  if (opts.write ?? true) await writeFileAtomic(runPaths(runDir).manifest, JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
}
