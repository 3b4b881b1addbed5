/**
 * `forage` and `resume`: a run from task files to trajectories, a manifest and a summary.
 *
 * Embedded (no Redis URL): a private redis-server (persistence in `<runDir>/redis`, a free
 * loopback port) and workers in this process. Remote (`redisUrl`): the run is enqueued for the
 * workers of that Redis, and (unless `detach`) followed until it completes. With storage "redis"
 * the follower also collects the trajectories from the run's stream into `<runDir>/shards`
 * (redis-storage.ts); a detached run is collected by `forager collect`, `status` or `resume`.
 */
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { silentLogger, type Logger } from "../lib/log";
import type { Task } from "../tasks/schema";
import { formatModelUsage, type ModelFigures } from "./metrics";
import { startRedisServer, type RedisServerHandle } from "./redis-server";
import { closeQueues, openQueues, readRunFiles, runStatus, submitRun, waitForRun, writeManifest, writeRunFiles, type Manifest, type RunStatus } from "./run";
import type { RunCollector } from "./redis-storage";
import { openCollector } from "./sink";
import { formatFailureCounts } from "./records";
import { formatAccounting, formatPassAtK, RunAccountingSchema } from "./accounting";
import { parseRecord } from "../lib/zod-util";
import { z } from "zod";
import { RunSpecSchema, runPaths, type RunSpec, type RunSpecInput } from "./spec";
import { writeFileAtomic } from "./storage";
import { usePrebuiltImage, type PrebuiltProgress, type PrebuiltSettings } from "../images/swebench-prebuilt";
import { RecordError } from "../lib/errors";
import { loadTaskFiles, selectTasks, type TaskLoadError } from "../tasks/files";
import { redisConnection, startWorker, type ForagerWorker, type WorkerOptions } from "./worker";
import type { RegistrySettings } from "../images/registry";
import { publishTaskSources, registryLocation, type PublishedRepo } from "./cluster";

const count = z.number().int().nonnegative();
const counts = z.record(z.string(), count);

/**
 * The end of a run, for people and scripts (`<runDir>/summary.json`): the one definition, checked
 * before it is written. Units: counts, seconds (`wallSeconds`), turns per second.
 */
export const RunSummarySchema = z.object({
  runId: z.string(),
  runDir: z.string(),
  tasks: count,
  samples: count,
  expected: count,
  trajectories: count,
  resolved: count,
  /** resolved / trajectories */
  resolvedRate: z.number().min(0).max(1),
  failed: count,
  /** The failed samples by stage and kind (`evaluation/env_error`…) and by policy: counted apart from rewards and pass@k. */
  failures: z.object({ total: count, byStage: counts, byKind: counts, byPolicy: counts }),
  skipped: count,
  duplicatesDropped: count,
  nearDuplicateClusters: count,
  /** pass@1, pass@K: mean over the done tasks with a trajectory (Chen et al. 2021 unbiased estimator; accounting.ts). */
  metrics: z.record(z.string(), z.number().min(0).max(1)),
  /** Tasks done, tokens (prompt, completion, per resolved trajectory), end reasons, per repository (accounting.ts). */
  accounting: RunAccountingSchema,
  /** Wall time of this invocation, seconds. */
  wallSeconds: z.number().nonnegative(),
  /** Turns of the run (all invocations). */
  turns: count,
  /** Turns taken during this invocation (a resumed run's earlier turns excluded). */
  turnsThisInvocation: count,
  /** Turns per second over the invocation (this invocation's turns / its wall time). */
  turnsPerSecond: z.number().nonnegative(),
  taskErrors: count,
  /** What the model servers did: prefix-cache hit rate, prefill and decode tokens, model seconds (metrics.ts ModelFigures). */
  model: z.custom<ModelFigures>((v) => typeof v === "object" && v !== null).optional(),
});
export type RunSummary = z.infer<typeof RunSummarySchema>;

export interface ForageOptions {
  taskFiles: string[];
  /**
   * SWE-bench tasks run in the harness's prebuilt instance images (`--images swebench`), pulled by
   * this process before the run. The run's image map then holds local tags: remote workers need
   * the same images on their engines (run the command there once, or pull by the harness's names).
   */
  prebuilt?: PrebuiltSettings;
  onPrebuilt?: (p: PrebuiltProgress) => void;
  /** Only these task (instance) ids; an id not among the loaded tasks throws a RecordError. */
  instances?: string[];
  samples: number;
  /** Run directory (created). */
  out: string;
  runId?: string;
  stopAfterSuccesses?: number;
  maxTurns?: number;
  policy: RunSpecInput["policy"];
  sampling?: RunSpecInput["sampling"];
  agent?: Record<string, unknown>;
  inference?: RunSpecInput["inference"];
  images?: Record<string, string>;
  attempts?: number;
  backoffMs?: number;
  episodeTimeoutSeconds?: number;
  shardRecords?: number;
  /**
   * How trajectories reach the run directory (spec.ts StorageModeSchema; default "shared"):
   * "redis" for remote workers without shared storage (this process collects the trajectories).
   */
  storage?: RunSpecInput["storage"];
  /**
   * The cluster registry (`--registry`): recorded in the run spec (workers without their own use
   * it), given to the embedded workers, and the local repositories of the tasks are published to it
   * as git bundles (cluster.ts publishTaskSources) so no worker needs a path of this host.
   */
  registry?: RegistrySettings;
  /** A repository published to the registry (before the run is submitted). */
  onSourcePublished?: (p: PublishedRepo) => void;
  /** The registry did not answer while publishing; retrying (the message says for how long). */
  onRegistryRetry?: (message: string) => void;
  /** Remote mode: enqueue into this Redis. */
  redisUrl?: string;
  /** Remote mode: return once enqueued. */
  detach?: boolean;
  /** Embedded workers' options (concurrency, stage functions, lock timings). */
  worker?: Omit<WorkerOptions, "redisUrl">;
  /** Figures every `progressMs` (default 1000). */
  onProgress?: (s: RunStatus, rates: { turnsPerSecond: number; elapsedSeconds: number }) => void;
  progressMs?: number;
  /** Bad task lines (also written to `<runDir>/task-errors.jsonl`). */
  onTaskErrors?: (errors: TaskLoadError[]) => void;
  logger?: Logger;
  signal?: AbortSignal;
}

export interface ForageResult {
  spec: RunSpec;
  status: RunStatus;
  manifest?: Manifest;
  summary?: RunSummary;
  taskErrors: TaskLoadError[];
}

/** A run id: `<UTC date>-<4 random hex>`, e.g. `20250101T120000-ab12`. */
export function newRunId(): string {
  return `${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "")}-${randomBytes(2).toString("hex")}`;
}

/** Start a run (see module comment). */
export async function forage(opts: ForageOptions): Promise<ForageResult> {
  const runDir = path.resolve(opts.out);
  const loaded = await loadTaskFiles(opts.taskFiles, { harnessSpecs: opts.prebuilt !== undefined });
  if (loaded.errors.length) opts.onTaskErrors?.(loaded.errors);
  let tasks = opts.instances?.length ? selectTasks(loaded, opts.instances) : loaded.tasks;
  if (tasks.length === 0) {
    const why = loaded.errors.length ? `every record was rejected (${loaded.errors.length} error(s))` : "no task in them (empty)";
    throw new RecordError(`no task to run from ${opts.taskFiles.join(", ")}: ${why}`);
  }
  const images: Record<string, string> = { ...(opts.images ?? {}) };
  if (opts.prebuilt) {
    // SWE-bench tasks in the harness's prebuilt images, pulled here before the run (one at a time,
    // with progress); a task whose image cannot be had is built by the workers as usual.
    const settings = opts.prebuilt;
    const out: Task[] = [];
    for (const t of tasks) {
      if (images[t.id]) out.push(t);
      else {
        const r = await usePrebuiltImage(t, settings, { ...(opts.logger ? { logger: opts.logger } : {}), ...(opts.onPrebuilt ? { onProgress: opts.onPrebuilt } : {}) });
        if (r.image) images[t.id] = r.image;
        out.push(r.task);
      }
    }
    tasks = out;
  }
  if (opts.registry) {
    tasks = (
      await publishTaskSources(tasks, opts.registry, {
        ...(opts.onSourcePublished ? { onPublished: opts.onSourcePublished } : {}),
        ...(opts.onRegistryRetry ? { onRetry: opts.onRegistryRetry } : {}),
      })
    ).tasks;
  }
  fs.mkdirSync(runDir, { recursive: true });
  if (loaded.errors.length) {
    await writeFileAtomic(runPaths(runDir).taskErrors, loaded.errors.map((e) => JSON.stringify(e)).join("\n") + "\n");
  }
  if (fs.existsSync(runPaths(runDir).spec)) throw new Error(`${runDir} already holds a run: use \`forager resume ${runDir}\``);
  const spec = RunSpecSchema.parse({
    runId: opts.runId ?? newRunId(),
    runDir,
    createdAt: new Date().toISOString(),
    taskFiles: opts.taskFiles.map((f) => path.resolve(f)),
    samples: opts.samples,
    stopAfterSuccesses: opts.stopAfterSuccesses,
    maxTurns: opts.maxTurns,
    policy: opts.policy,
    sampling: opts.sampling ?? {},
    agent: opts.agent ?? {},
    inference: opts.inference,
    images,
    attempts: opts.attempts,
    backoffMs: opts.backoffMs,
    episodeTimeoutSeconds: opts.episodeTimeoutSeconds,
    shardRecords: opts.shardRecords,
    storage: opts.storage,
    ...(opts.registry ? { registry: registryLocation(opts.registry) } : {}),
  } satisfies RunSpecInput);
  await writeRunFiles(spec, tasks);
  if (opts.redisUrl) {
    const raw = JSON.parse(fs.readFileSync(runPaths(runDir).spec, "utf8")) as Record<string, unknown>;
    await writeFileAtomic(runPaths(runDir).spec, JSON.stringify({ ...raw, redisUrl: opts.redisUrl }, null, 2) + "\n");
  }
  const r = await drive(spec, tasks, opts);
  return { ...r, taskErrors: loaded.errors };
}

/** Resume a run from its directory: re-submit (idempotent), run, finish. */
export async function resume(runDir: string, opts: Omit<ForageOptions, "taskFiles" | "samples" | "out" | "policy"> = {}): Promise<ForageResult> {
  const { spec, tasks } = readRunFiles(path.resolve(runDir));
  const r = await drive(spec, tasks, { ...opts, redisUrl: opts.redisUrl ?? spec.redisUrl });
  return { ...r, taskErrors: [] };
}

async function drive(spec: RunSpec, tasks: Task[], opts: Pick<ForageOptions, "redisUrl" | "detach" | "worker" | "onProgress" | "progressMs" | "logger" | "signal" | "registry">): Promise<Omit<ForageResult, "taskErrors">> {
  const log = (opts.logger ?? silentLogger).child({ component: "forage", run: spec.runId });
  const started = performance.now();
  let server: RedisServerHandle | undefined;
  let worker: ForagerWorker | undefined;
  let redis: Redis | undefined;
  let queues: ReturnType<typeof openQueues> | undefined;
  let collector: RunCollector | undefined;
  try {
    let url = opts.redisUrl;
    if (!url) {
      server = await startRedisServer({ dir: runPaths(spec.runDir).redis });
      url = server.url;
      log.info({ url }, "private redis-server started");
    }
    redis = redisConnection(url);
    queues = openQueues(url);
    await submitRun(redis, queues, spec, tasks);
    if (opts.detach && opts.redisUrl) {
      return { spec, status: await runStatus(redis, spec.runId) };
    }
    if (!opts.redisUrl) worker = await startWorker({ ...opts.worker, redisUrl: url, logger: opts.worker?.logger ?? opts.logger, ...(opts.registry && !opts.worker?.registry ? { registry: opts.registry } : {}) });
    collector = openCollector(redis, spec, { logger: opts.logger });
    let firstTurns: number | undefined;
    let lastTurns = 0;
    let lastT = performance.now();
    const status = await waitForRun(redis, queues, spec, tasks, {
      intervalMs: opts.progressMs ?? 1000,
      signal: opts.signal,
      collector,
      onCollectError: (err) => log.warn({ err: (err as Error).message }, "collecting trajectories failed; retrying"),
      onProgress: (s) => {
        const now = performance.now();
        // The first figures of a resumed run hold its earlier turns: the rate starts from them.
        if (firstTurns === undefined) firstTurns = lastTurns = s.turns;
        const tps = (s.turns - lastTurns) / Math.max(1e-3, (now - lastT) / 1000);
        lastTurns = s.turns;
        lastT = now;
        opts.onProgress?.(s, { turnsPerSecond: tps, elapsedSeconds: (now - started) / 1000 });
      },
    });
    if (worker) {
      await worker.close();
      worker = undefined;
    }
    if (collector) {
      await collector.finish({ signal: opts.signal });
      await collector.close();
      collector = undefined;
    }
    const manifest = await writeManifest(spec.runDir);
    const wallSeconds = (performance.now() - started) / 1000;
    const summary: RunSummary = {
      runId: spec.runId,
      runDir: spec.runDir,
      tasks: tasks.length,
      samples: spec.samples,
      expected: manifest.expected,
      trajectories: manifest.trajectories,
      resolved: manifest.resolved,
      resolvedRate: manifest.trajectories ? manifest.resolved / manifest.trajectories : 0,
      failed: manifest.failures.length,
      failures: manifest.failureCounts,
      skipped: status.skipped,
      duplicatesDropped: manifest.duplicatesDropped,
      nearDuplicateClusters: manifest.nearDuplicates?.clusters ?? 0,
      metrics: manifest.metrics,
      accounting: manifest.accounting,
      wallSeconds,
      turns: status.turns,
      turnsThisInvocation: status.turns - (firstTurns ?? 0),
      turnsPerSecond: (status.turns - (firstTurns ?? 0)) / wallSeconds,
      taskErrors: fs.existsSync(runPaths(spec.runDir).taskErrors) ? fs.readFileSync(runPaths(spec.runDir).taskErrors, "utf8").split("\n").filter(Boolean).length : 0,
      ...(manifest.model ? { model: manifest.model } : {}),
    };
    await writeFileAtomic(runPaths(spec.runDir).summary, JSON.stringify(parseRecord(RunSummarySchema, summary, { what: "run summary", file: runPaths(spec.runDir).summary }), null, 2) + "\n");
    return { spec, status, manifest, summary };
  } finally {
    await collector?.close().catch(() => undefined);
    await worker?.close({ force: true }).catch(() => undefined);
    if (queues) await closeQueues(queues).catch(() => undefined);
    redis?.disconnect();
    await server?.stop();
  }
}

/** One progress line: tasks, episodes in flight (and evaluations), done, resolved rate, turns/s, errors. */
export function formatProgress(s: RunStatus, rates: { turnsPerSecond: number; elapsedSeconds: number }): string {
  const settled = s.done + s.skipped + s.failed;
  const rate = s.done ? ((100 * s.resolved) / s.done).toFixed(1) : "-";
  return (
    `[${rates.elapsedSeconds.toFixed(0)} s] tasks ${s.tasks} · in flight ${s.inFlight}${s.evaluating ? ` (+${s.evaluating} evaluating)` : ""} · done ${settled}/${s.expected}` +
    `${s.skipped ? ` (${s.skipped} skipped)` : ""}${s.uncollected ? ` (${s.uncollected} to collect)` : ""} · resolved ${s.resolved} (${rate}%) · ${rates.turnsPerSecond.toFixed(1)} turns/s · ` +
    `errors ${s.attemptErrors} attempts, ${s.failed} failed`
  );
}

/** The final summary for people. */
export function formatSummary(s: RunSummary): string {
  const pct = (x: number | undefined) => (x === undefined ? "-" : `${(100 * x).toFixed(1)}%`);
  const lines = [
    `run ${s.runId} → ${s.runDir}`,
    `  tasks ${s.tasks} × ${s.samples} samples = ${s.expected}; trajectories ${s.trajectories} (resolved ${s.resolved}, ${pct(s.resolvedRate)}); failed ${s.failed}; skipped ${s.skipped}`,
    ...(s.failed ? [`  ${formatFailureCounts(s.failures)} — not trajectories: kept out of rewards and pass@k (RUN/failures/)`] : []),
    `  ${formatPassAtK(s.accounting, s.samples)}`,
    ...formatAccounting(s.accounting),
    `  ${s.turnsThisInvocation} turns in ${s.wallSeconds.toFixed(1)} s (${s.turnsPerSecond.toFixed(1)} turns/s)${s.turns !== s.turnsThisInvocation ? `, ${s.turns} over the run` : ""}; duplicates dropped ${s.duplicatesDropped}; near-duplicate clusters ${s.nearDuplicateClusters}${s.taskErrors ? `; bad task lines ${s.taskErrors}` : ""}`,
  ];
  if (s.model) lines.push(`  model: ${formatModelUsage(s.model)}`);
  return lines.join("\n");
}
