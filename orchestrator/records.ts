/**
 * The orchestrator's records that cross a process boundary (Redis hashes, streams, job data,
 * shard index lines, failure files): one zod schema each, the types come from them. Every record
 * read back from Redis or from a run directory is parsed here, so a record written by another
 * version or torn by a crash fails with a message naming the key (or file) and the field, instead
 * of flowing on as a half-typed object.
 */
import { z } from "zod";
import { TrajectorySchema, type Trajectory } from "../agent/trajectory";
import { RecordError } from "../lib/errors";
import { parseRecord } from "../lib/zod-util";

/**
 * What the model servers did for one or more trajectories, summed over their turns (tokens, seconds):
 * `promptTokens` of every turn (server usage, else the local estimate); `cacheReportedPromptTokens`, the
 * prompt tokens of the turns whose server reported prefix-cache hits (vLLM `--enable-prompt-tokens-details`,
 * SGLang `--enable-cache-report`), of which `cachedPromptTokens` were served from the cache;
 * `completionTokens` (decode); `modelSeconds` (wall time in model calls, `times.modelSeconds`);
 * `moves`, the turns whose request moved the episode to another endpoint. Derived figures:
 * orchestrator/metrics.ts {@link modelFigures}.
 */
export const ModelUsageSchema = z.object({
  turns: z.number().int().nonnegative(),
  promptTokens: z.number().nonnegative(),
  cacheReportedPromptTokens: z.number().nonnegative(),
  cachedPromptTokens: z.number().nonnegative(),
  completionTokens: z.number().nonnegative(),
  modelSeconds: z.number().nonnegative(),
  moves: z.number().int().nonnegative(),
});
export type ModelUsage = z.infer<typeof ModelUsageSchema>;

/** Data of a job of any stage queue (images, rollouts, evaluations). */
export const StageJobDataSchema = z.object({
  runId: z.string().min(1),
  taskId: z.string().min(1),
  /** Rollout and evaluation jobs: the 0-based sample index. */
  sample: z.number().int().nonnegative().optional(),
});
export type StageJobData = z.infer<typeof StageJobDataSchema>;

/** What a run's `done` hash records per sample (small; the trajectory itself is in its shard). */
export const SampleSummarySchema = z.object({
  taskId: z.string(),
  sample: z.number().int().nonnegative(),
  resolved: z.boolean(),
  reward: z.number(),
  turns: z.number().int().nonnegative(),
  endReason: z.string(),
  /** Shard file (storage "shared"); `stream:<entry id>` for storage "redis" (the collector picks the shard). */
  shard: z.string(),
  /** Byte offset in the shard (0 for storage "redis"). */
  offset: z.number().int().nonnegative(),
  /** Shard writer id (shared) or worker id (redis) that committed it. */
  worker: z.string(),
});
export type SampleSummary = z.infer<typeof SampleSummarySchema>;

/** The stage a sample failed in for good. */
export const FailureStageSchema = z.enum(["image", "rollout", "evaluation"]);

/** What the `failed` hash (and `RUN/failures/<key>.json`) records for a sample whose job failed for good. */
export const SampleFailureSchema = z.object({
  taskId: z.string(),
  sample: z.number().int().nonnegative(),
  stage: FailureStageSchema,
  reason: z.string(),
  /** Attempts made, counting the last. */
  attempts: z.number().int().nonnegative(),
  /** ISO 8601 time of the record. */
  at: z.string(),
  /**
   * What kind of failure: `env_error` (forager's or the engine's: Docker, an image, an evaluation
   * sandbox), `policy_error` (the model server), `timeout` (the episode's wall-clock limit),
   * `invalid` (a record retrying cannot fix), `error` (anything else). Kept apart from rewards
   * and pass@k: a failed sample has no trajectory in the shards. Absent in older records.
   */
  kind: z.enum(["env_error", "policy_error", "timeout", "invalid", "error"]).optional(),
  /** The run's policy (`oracle`, `http:<model>`), for counts per policy. */
  policy: z.string().optional(),
});
export type SampleFailure = z.infer<typeof SampleFailureSchema>;

/** Failures of a run counted by stage, by kind (`stage/kind`) and by policy. */
export interface FailureCounts {
  total: number;
  byStage: Record<string, number>;
  byKind: Record<string, number>;
  byPolicy: Record<string, number>;
}

/** Count failure records (those without a kind count as `error`, without a policy as `unknown`). */
export function countFailures(fs: readonly Pick<SampleFailure, "stage" | "kind" | "policy">[]): FailureCounts {
  const c: FailureCounts = { total: fs.length, byStage: {}, byKind: {}, byPolicy: {} };
  for (const f of fs) {
    c.byStage[f.stage] = (c.byStage[f.stage] ?? 0) + 1;
    const k = `${f.stage}/${f.kind ?? "error"}`;
    c.byKind[k] = (c.byKind[k] ?? 0) + 1;
    const p = f.policy ?? "unknown";
    c.byPolicy[p] = (c.byPolicy[p] ?? 0) + 1;
  }
  return c;
}

/** One line for people: `2 failed: evaluation/env_error 2 (oracle 2)`. */
export function formatFailureCounts(c: FailureCounts): string {
  if (!c.total) return "0 failed";
  const kinds = Object.entries(c.byKind).map(([k, n]) => `${k} ${n}`).join(", ");
  const pols = Object.entries(c.byPolicy).map(([k, n]) => `${k} ${n}`).join(", ");
  return `${c.total} failed: ${kinds} (${pols})`;
}

/** One committed trajectory, as its shard index line records it (orchestrator/storage.ts). */
export const IndexEntrySchema = z.object({
  /** Trajectory id (`<run>/<task>/<sample>`). */
  id: z.string(),
  taskId: z.string(),
  /** 0-based sample index within the task. */
  sample: z.number().int().nonnegative(),
  /** Shard file name, relative to the shards directory. */
  shard: z.string(),
  /** Byte offset of the gzip member in the shard. */
  offset: z.number().int().nonnegative(),
  /** Byte length of the gzip member. */
  length: z.number().int().nonnegative(),
  reward: z.number(),
  resolved: z.boolean(),
  endReason: z.string(),
  turns: z.number().int().nonnegative(),
  /** Has a submitted patch. */
  patch: z.boolean(),
  /** When committed, ms since epoch. */
  committedAt: z.number(),
  /** The model's work for this trajectory (absent in index lines written before it was recorded). */
  model: ModelUsageSchema.optional(),
});
export type IndexEntry = z.infer<typeof IndexEntrySchema>;

/**
 * Parse a JSON record read from Redis: `what` names it, `key` and `field` say where it was read.
 * @throws RecordError naming the key, the field of the hash and the record's bad field (also for text that is not JSON).
 */
export function parseRedisRecord<S extends z.ZodTypeAny>(schema: S, raw: string, where: { what: string; key: string; field?: string }): z.infer<S> {
  const loc = where.field === undefined ? where.key : `${where.key} ${where.field}`;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new RecordError(`${where.what} at ${loc}: not JSON (${(err as Error).message})`, loc);
  }
  return parseRecord(schema, value, { what: where.what, file: loc });
}

/**
 * A trajectory read back (staged file or key, stream entry, shard member): schema-checked.
 * @throws RecordError naming `where` and the bad field.
 */
export function parseTrajectoryRecord(value: unknown, where: string): Trajectory {
  return parseRecord(TrajectorySchema, value, { what: "trajectory", file: where });
}

/** What a worker process counts about the images it needed (images/registry.ts obtainInstanceImage). */
export const WorkerImageCountsSchema = z.object({
  /** Distinct images this worker found on its host, pulled from the registry, built, pushed. */
  local: z.number().int().nonnegative(),
  pulled: z.number().int().nonnegative(),
  built: z.number().int().nonnegative(),
  pushed: z.number().int().nonnegative(),
  /** Bytes downloaded by pulls (every layer: base, env, instance), and uploaded by pushes. */
  bytesPulled: z.number().nonnegative(),
  bytesPushed: z.number().nonnegative(),
  /** Seconds spent pulling, and building. */
  pullSeconds: z.number().nonnegative(),
  buildSeconds: z.number().nonnegative(),
});
export type WorkerImageCounts = z.infer<typeof WorkerImageCountsSchema>;

/**
 * A worker's heartbeat (hash `forager:workers`, field = worker id), written every `intervalMs`
 * and once more when it stops; a worker killed without a goodbye keeps its last one, which
 * `forager status` shows as silent. Times are ms since the epoch.
 */
export const WorkerHeartbeatSchema = z.object({
  /** The worker id (`<host>-<pid>` unless given). */
  id: z.string().min(1),
  /** Host name of its machine (what container owner labels carry). */
  host: z.string().min(1),
  pid: z.number().int().nonnegative(),
  startedAt: z.number(),
  heartbeatAt: z.number(),
  /** Milliseconds between two heartbeats (a silent worker is one not heard for 3 of them). */
  intervalMs: z.number().positive(),
  state: z.enum(["running", "stopping", "stopped"]),
  /** Jobs at once per stage. */
  slots: z.object({ rollouts: z.number().int().positive(), evaluations: z.number().int().positive(), images: z.number().int().positive() }),
  /** How the rollout slots were derived (orchestrator/cluster.ts hostCapacity); absent when given by hand. */
  capacity: z
    .object({
      cores: z.number().positive(),
      memoryBytes: z.number().nonnegative(),
      byCpu: z.number().int().nonnegative(),
      byMemory: z.number().int().nonnegative(),
      sandboxCpus: z.number().positive(),
      sandboxMemoryBytes: z.number().positive(),
    })
    .optional(),
  /** Jobs running now, and finished (successfully or not) since start, per stage. */
  inFlight: z.object({ rollouts: z.number().int().nonnegative(), evaluations: z.number().int().nonnegative(), images: z.number().int().nonnegative() }),
  finished: z.object({ rollouts: z.number().int().nonnegative(), evaluations: z.number().int().nonnegative(), images: z.number().int().nonnegative() }),
  images: WorkerImageCountsSchema,
  /** The cluster registry it uses (`HOST:PORT[/NAMESPACE]`), when set on the worker. */
  registry: z.string().optional(),
  /** Its Docker engine (DOCKER_HOST, or the default socket). */
  engine: z.string(),
  /** The last problem it reported (registry unreachable, a failed build…) and when. */
  lastProblem: z.object({ at: z.number(), message: z.string() }).optional(),
});
export type WorkerHeartbeat = z.infer<typeof WorkerHeartbeatSchema>;

/** One entry of the image event stream `forager:images:events` (orchestrator/cluster.ts): an image found, pulled, built or pushed by a worker. */
export const ImageEventSchema = z.object({
  kind: z.enum(["local", "pulled", "built", "pushed"]),
  /** The local tag (`forager/instance:…`, `forager/env:…`, `forager/base:…`, a run image). */
  tag: z.string().min(1),
  worker: z.string().min(1),
  host: z.string().min(1),
  /** Bytes moved (pulled, pushed), seconds taken (pulled, built). */
  bytes: z.coerce.number().nonnegative(),
  seconds: z.coerce.number().nonnegative(),
  /** ms since the epoch. */
  at: z.coerce.number(),
});
export type ImageEvent = z.infer<typeof ImageEventSchema>;
