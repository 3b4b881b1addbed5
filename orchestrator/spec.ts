/**
 * A run: what to forage (tasks × K samples), with which policy and sampling, where results go.
 * The zod schema is the one definition; it is stored in the run directory (`run.json`) and in
 * Redis (`forager:run:<id>:spec`) so that any worker can pick the run's jobs up.
 *
 * Identifiers: job ids are derived from (run, task, sample index) only, so a re-submitted or
 * retried job has the same id and never yields a second trajectory (see {@link sampleKey}).
 * BullMQ custom ids may not contain ":" nor be integers (bullmq 5 `Job.validateOptions`).
 */
import { createHash } from "node:crypto";
import path from "node:path";
import { z } from "zod";
import { RegistryLocationSchema } from "../images/registry";

export const RUN_SPEC_VERSION = 1;

/** A run id: letters, digits, `_` and `-` (it appears in job ids, file names and Redis keys). */
export const RunIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "letters, digits, _ and - only (1–64)");

/** One model endpoint and its global limit of concurrent requests (over every worker). */
export const RunEndpointSchema = z.object({
  /** Base URL of an OpenAI-compatible server, e.g. http://vllm:8000. */
  url: z.string().url(),
  model: z.string().optional(),
  apiKey: z.string().optional(),
  /** Most requests in flight on this endpoint over all workers (a Redis semaphore). */
  maxConcurrentRequests: z.number().int().positive().default(64),
});
export type RunEndpoint = z.infer<typeof RunEndpointSchema>;

/**
 * Where a run's trajectories travel between the stages and to the run directory:
 * - `shared`: workers write staging files (`RUN/staging`) and shards (`RUN/shards`) themselves; the
 *   run directory must be on storage every worker mounts at the same path (embedded runs, NFS, …);
 * - `redis`: workers touch no file of the run; the staged trajectory is a Redis key per sample and
 *   the evaluation stage appends the finished trajectory to the run's Redis stream, which the
 *   run's driver (`forage`, `resume`, `status`, `collect`) drains into `RUN/shards` (redis-storage.ts).
 */
export const StorageModeSchema = z.enum(["shared", "redis"]);
export type StorageMode = z.infer<typeof StorageModeSchema>;

export const RunSpecSchema = z.object({
  version: z.literal(RUN_SPEC_VERSION).default(RUN_SPEC_VERSION),
  runId: RunIdSchema,
  /**
   * Absolute run directory (shards, manifest, staging, embedded Redis data) on the driver's machine.
   * With `storage: "shared"`, shared storage mounted at this path on every worker; with "redis",
   * workers never use it.
   */
  runDir: z.string().min(1),
  /** How trajectories reach the run directory (see {@link StorageModeSchema}); default "shared". */
  storage: StorageModeSchema.default("shared"),
  createdAt: z.string(),
  /** Where the tasks came from (for people). */
  taskFiles: z.array(z.string()).default([]),
  /** K: samples (episodes) per task. */
  samples: z.number().int().positive(),
  /** M: stop starting new samples of a task once it has this many resolved ones (default: never). */
  stopAfterSuccesses: z.number().int().positive().optional(),
  /** T: most turns per episode (agent maxTurns). */
  maxTurns: z.number().int().positive().optional(),
  policy: z.discriminatedUnion("kind", [
    z.object({ kind: z.literal("oracle") }),
    z.object({ kind: z.literal("http"), endpoints: z.array(RunEndpointSchema).min(1), mode: z.enum(["completions", "chat"]).optional() }),
  ]),
  sampling: z
    .object({
      temperature: z.number().min(0).optional(),
      topP: z.number().gt(0).max(1).optional(),
      /** Base seed; sample i uses seed + i. */
      seed: z.number().int().optional(),
    })
    .default({}),
  /** Inference client settings for "http" (inference-client/config.ts; seconds). */
  inference: z
    .object({
      /** Retries of one request (connection errors, 429, 5xx) before the turn fails. */
      retries: z.number().int().min(0).default(5),
      backoffBaseSeconds: z.number().nonnegative().default(0.5),
      backoffMaxSeconds: z.number().nonnegative().default(30),
      /** Wall-clock budget of one model request (queueing, attempts, backoffs), seconds. */
      requestDeadlineSeconds: z.number().positive().default(600),
      /**
       * How requests are spread over the endpoints (inference-client/config.ts RoutingSchema): "affinity"
       * (default: an episode, and the K samples of its task, stay on the endpoint holding their prefix
       * while it has room) or "least-outstanding".
       */
      routing: z.enum(["affinity", "least-outstanding"]).optional(),
      /** Stream the model's answers (SSE) so each turn records its time to first token (default false). */
      stream: z.boolean().optional(),
    })
    .default({ retries: 5, backoffBaseSeconds: 0.5, backoffMaxSeconds: 30, requestDeadlineSeconds: 600 }),
  /** Extra agent settings (agent/config.ts AgentConfigInput), applied under the fields above. */
  agent: z.record(z.string(), z.unknown()).default({}),
  /**
   * The cluster registry (images/registry.ts): workers pull each instance image by its
   * content-hashed name, or build it once (a Redis lock per image) and push it. A worker's own
   * `--registry` wins; absent on both: every host builds on its own engine.
   */
  registry: RegistryLocationSchema.optional(),
  /** Pre-built image tags by task id (skip the build; tests and pre-warmed fleets). */
  images: z.record(z.string(), z.string()).default({}),
  /** Attempts per job (first + retries) for environment and inference errors. */
  attempts: z.number().int().positive().default(4),
  /** Base of the exponential backoff between attempts, ms (delay = base · 2^(attempt−1)). */
  backoffMs: z.number().int().nonnegative().default(5000),
  /** Wall-clock limit of one rollout job, seconds (the episode is aborted then; default 2 h). */
  episodeTimeoutSeconds: z.number().positive().default(7200),
  /** Trajectories per shard file before a new one is started. */
  shardRecords: z.number().int().positive().default(1000),
});
export type RunSpec = z.infer<typeof RunSpecSchema>;
export type RunSpecInput = z.input<typeof RunSpecSchema>;

/** Queue names (shared by every run; workers serve all runs). */
export const QUEUES = { images: "forager-images", rollouts: "forager-rollouts", evals: "forager-evals" } as const;
/** BullMQ key prefix. */
export const QUEUE_PREFIX = "forager";

/** 16 hex digits of sha256(task id): task ids may hold `/`, `:` and other characters job ids must not. */
export function taskKey(taskId: string): string {
  return createHash("sha256").update(taskId).digest("hex").slice(0, 16);
}

/** The key of one sample: `<run>.<taskKey>.<sample>`; stable over re-submissions and retries. */
export function sampleKey(runId: string, taskId: string, sample: number): string {
  return `${runId}.${taskKey(taskId)}.${sample}`;
}

/** Job ids by stage, derived from (run, task, sample index). */
export const jobIds = {
  image: (runId: string, taskId: string) => `img.${runId}.${taskKey(taskId)}`,
  rollout: (runId: string, taskId: string, sample: number) => `roll.${sampleKey(runId, taskId, sample)}`,
  evaluation: (runId: string, taskId: string, sample: number) => `eval.${sampleKey(runId, taskId, sample)}`,
};

/** The trajectory id of a sample (one per sample, whatever the attempts): `<run>/<task id>/<sample>`. */
export function trajectoryId(runId: string, taskId: string, sample: number): string {
  return `${runId}/${taskId}/${sample}`;
}

/** Redis keys of a run's bookkeeping. */
export function runKeys(runId: string) {
  const p = `forager:run:${runId}`;
  return {
    spec: `${p}:spec`,
    /** hash task id → Task JSON */
    tasks: `${p}:tasks`,
    /** hash sample key → SampleSummary JSON (trajectory committed to a shard) */
    done: `${p}:done`,
    /** hash sample key → failure JSON (job failed for good) */
    failed: `${p}:failed`,
    /** hash sample key → reason (not run: the task had its M successes) */
    skipped: `${p}:skipped`,
    /** hash task id → resolved samples so far */
    successes: `${p}:successes`,
    /** hash of counters: turns, attemptErrors, started */
    stats: `${p}:stats`,
    /** hash sample key → `<worker> <ms since epoch>` of rollouts running now */
    running: `${p}:running`,
    /** hash sample key → `<worker> <ms since epoch>` of evaluations running now */
    evaluating: `${p}:evaluating`,
    /** hash sample key → `<writer> <ms>`: a commit to a shard is under way (kept if its worker dies) */
    committing: `${p}:committing`,
    /** prefix of per-sample commit claims (SET NX PX): one committer at a time */
    claim: `${p}:claim:`,
    /** storage "redis": prefix of staged trajectories (string, gzip JSON) by sample key, until committed */
    staged: `${p}:staged:`,
    /** storage "redis": stream of committed trajectories (fields id, key, task, sample, data = gzip JSON) waiting to be collected */
    results: `${p}:results`,
    /** storage "redis": the collector lock (SET NX PX): one process drains `results` at a time */
    collector: `${p}:collector`,
  };
}
/** Set of every run id known to this Redis. */
export const RUNS_KEY = "forager:runs";

/** Files of a run directory. */
export function runPaths(runDir: string) {
  return {
    spec: path.join(runDir, "run.json"),
    tasks: path.join(runDir, "tasks.jsonl"),
    taskErrors: path.join(runDir, "task-errors.jsonl"),
    shards: path.join(runDir, "shards"),
    staging: path.join(runDir, "staging"),
    failures: path.join(runDir, "failures"),
    manifest: path.join(runDir, "manifest.json"),
    redis: path.join(runDir, "redis"),
    summary: path.join(runDir, "summary.json"),
  };
}
