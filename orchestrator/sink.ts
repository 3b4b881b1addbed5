/**
 * Where a worker puts trajectories: the one place that knows a run's storage mode
 * (spec.ts StorageModeSchema). A {@link TrajectorySink} stages a rollout's trajectory until its
 * evaluation, commits the evaluated one exactly once per sample together with the run's `done`
 * record, and writes failure records where the run's driver reads them.
 *
 * - {@link SharedDirectorySink} (storage "shared"): staging files and durable shards in the run
 *   directory, which every worker mounts at the same path (storage.ts).
 * - {@link RedisStreamSink} (storage "redis"): staged keys and the run's results stream; workers
 *   touch no file of the run, the driver's {@link RunCollector} drains the stream into the shards
 *   (redis-storage.ts).
 *
 * The caller (the evaluation stage) holds the sample's commit claim around {@link TrajectorySink.commit}.
 */
import fsp from "node:fs/promises";
import path from "node:path";
import type { Redis } from "ioredis";
import type { Trajectory } from "../agent/trajectory";
import { silentLogger, type Logger } from "../lib/log";
import { parseRedisRecord, SampleSummarySchema, type IndexEntry, type SampleFailure, type SampleSummary } from "./records";
import { commitToStream, hasStagedRedis, readStagedRedis, RunCollector, STREAM_ENTRY_PLACEHOLDER, writeStagedRedis, type RunCollectorOptions } from "./redis-storage";
import { runKeys, runPaths, trajectoryId, type RunSpec, type StorageMode } from "./spec";
import { readStaged, scanShards, ShardWriter, stagingPath, writeFileAtomic, writeStaged } from "./storage";

/** One sample's evaluated trajectory, ready to commit. */
export interface CommitRequest {
  /** Sample key (spec.ts sampleKey). */
  key: string;
  taskId: string;
  sample: number;
  trajectory: Trajectory;
}

/** The storage of one run, as a worker sees it. */
export interface TrajectorySink {
  readonly storage: StorageMode;
  /** Who commits (recorded in {@link SampleSummary.worker} and in commit claims). */
  readonly committerId: string;
  /** What holds a staged trajectory, for messages ("staging file", "staged key"). */
  readonly stagedWhere: string;
  /** Whether the sample has a staged trajectory (cheaper than reading it). */
  hasStaged(key: string): Promise<boolean>;
  /** Stage a rollout's trajectory durably until its evaluation commits it. */
  stage(key: string, t: Trajectory): Promise<void>;
  /** The staged trajectory, or undefined (never staged, or already committed). @throws RecordError when it does not parse. */
  readStaged(key: string): Promise<Trajectory | undefined>;
  /**
   * Commit the evaluated trajectory with the sample's `done` record (and its success count),
   * clear its failure and staged copies; returns what `done` holds. A sample committed before
   * (a retried job) is not committed twice where the mode can tell (see each implementation).
   */
  commit(c: CommitRequest): Promise<SampleSummary>;
  /** After the `failed` hash got `f`: write it where the run's driver reads it (nothing to do for storage "redis"). */
  recordFailure(key: string, f: SampleFailure): Promise<void>;
  /** Wait for pending writes and close files. */
  close(): Promise<void>;
}

/** Storage "shared": staging files and this process's shard writer in the run directory. */
export class SharedDirectorySink implements TrajectorySink {
  readonly storage = "shared" as const;
  readonly stagedWhere = "staging file";
  private readonly writer: ShardWriter;
  private readonly paths: ReturnType<typeof runPaths>;
  private readonly keys: ReturnType<typeof runKeys>;
  private readonly log: Logger;

  constructor(
    private readonly redis: Redis,
    private readonly spec: Pick<RunSpec, "runId" | "runDir" | "shardRecords">,
    opts: { writerId?: string; logger?: Logger } = {},
  ) {
    this.paths = runPaths(spec.runDir);
    this.keys = runKeys(spec.runId);
    this.writer = new ShardWriter(this.paths.shards, { shardRecords: spec.shardRecords, writerId: opts.writerId });
    this.log = opts.logger ?? silentLogger;
  }

  get committerId(): string {
    return this.writer.writerId;
  }

  async hasStaged(key: string): Promise<boolean> {
    return (await this.readStaged(key)) !== undefined;
  }

  stage(key: string, t: Trajectory): Promise<void> {
    return writeStaged(this.paths.staging, key, t);
  }

  readStaged(key: string): Promise<Trajectory | undefined> {
    return readStaged(this.paths.staging, key);
  }

  /**
   * Append to this writer's shard (durable), then record `done` in one MULTI. A `committing`
   * mark (not expiring) is set before the append: a committer that died between its fsync and
   * its `done` record left it, and the next one finds the trajectory in the shard indexes instead
   * of appending a second copy.
   */
  async commit(c: CommitRequest): Promise<SampleSummary> {
    const { key, taskId, sample } = c;
    let entry: IndexEntry | undefined;
    if (await this.redis.hexists(this.keys.committing, key)) {
      const id = trajectoryId(this.spec.runId, taskId, sample);
      entry = scanShards(this.paths.shards).entries.find((e) => e.id === id);
      if (entry) this.log.warn({ key }, "trajectory found committed by a worker that died before recording it");
    }
    await this.redis.hset(this.keys.committing, key, `${this.writer.writerId} ${Date.now()}`);
    entry ??= await this.writer.append(c.trajectory, sample);
    const summary: SampleSummary = {
      taskId,
      sample,
      resolved: entry.resolved,
      reward: entry.reward,
      turns: entry.turns,
      endReason: entry.endReason,
      shard: entry.shard,
      offset: entry.offset,
      worker: this.writer.writerId,
    };
    const multi = this.redis.multi().hset(this.keys.done, key, JSON.stringify(summary)).hdel(this.keys.failed, key).hdel(this.keys.committing, key);
    if (summary.resolved) multi.hincrby(this.keys.successes, taskId, 1);
    await multi.exec();
    await fsp.rm(stagingPath(this.paths.staging, key), { force: true });
    await fsp.rm(path.join(this.paths.failures, `${key}.json`), { force: true });
    return summary;
  }

  async recordFailure(key: string, f: SampleFailure): Promise<void> {
    await writeFileAtomic(path.join(this.paths.failures, `${key}.json`), JSON.stringify(f) + "\n").catch((err: unknown) =>
      this.log.warn({ err }, "could not write the failure file"),
    );
  }

  close(): Promise<void> {
    return this.writer.close();
  }
}

/** Storage "redis": staged keys and the run's results stream; no file of the run is touched. */
export class RedisStreamSink implements TrajectorySink {
  readonly storage = "redis" as const;
  readonly stagedWhere = "staged key";

  constructor(
    private readonly redis: Redis,
    private readonly runId: string,
    readonly committerId: string,
  ) {}

  hasStaged(key: string): Promise<boolean> {
    return hasStagedRedis(this.redis, this.runId, key);
  }

  stage(key: string, t: Trajectory): Promise<void> {
    return writeStagedRedis(this.redis, this.runId, key, t);
  }

  readStaged(key: string): Promise<Trajectory | undefined> {
    return readStagedRedis(this.redis, this.runId, key);
  }

  /** One atomic script: XADD to the results stream + `done` record + staged key deleted; a sample already done adds nothing. */
  async commit(c: CommitRequest): Promise<SampleSummary> {
    const t = c.trajectory;
    const summary: SampleSummary = {
      shard: `stream:${STREAM_ENTRY_PLACEHOLDER}`, // first: the script fills in the first occurrence
      taskId: c.taskId,
      sample: c.sample,
      resolved: t.evaluation?.resolved ?? false,
      reward: t.reward,
      turns: t.turns.length,
      endReason: t.endReason,
      offset: 0,
      worker: this.committerId,
    };
    const r = await commitToStream(this.redis, this.runId, { key: c.key, taskId: c.taskId, sample: c.sample, trajectory: t, summary: JSON.stringify(summary) });
    return parseRedisRecord(SampleSummarySchema, r.summary, { what: "sample summary", key: runKeys(this.runId).done, field: c.key });
  }

  async recordFailure(): Promise<void> {
    // The `failed` hash is the record; the driver's collector writes RUN/failures (redis-storage.ts).
  }

  async close(): Promise<void> {}
}

/**
 * The sink of a run for a worker process.
 * @param opts.writerId shard writer id (storage "shared"; default host-pid-random)
 * @param opts.workerId the worker's id (storage "redis": recorded as the committer)
 */
export function openSink(redis: Redis, spec: RunSpec, opts: { writerId?: string; workerId: string; logger?: Logger }): TrajectorySink {
  switch (spec.storage) {
    case "redis":
      return new RedisStreamSink(redis, spec.runId, opts.workerId);
    case "shared":
      return new SharedDirectorySink(redis, spec, { writerId: opts.writerId, logger: opts.logger });
  }
}

/**
 * The driver's side: a collector draining the run's results stream into `spec.runDir`'s shards
 * when the run's storage needs one (storage "redis"), else undefined (workers write the shards).
 */
export function openCollector(redis: Redis, spec: Pick<RunSpec, "runId" | "runDir" | "shardRecords" | "storage">, opts: RunCollectorOptions = {}): RunCollector | undefined {
  return spec.storage === "redis" ? new RunCollector(redis, spec, opts) : undefined;
}
