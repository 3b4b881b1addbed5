/**
 * Storage mode "redis" (spec.ts {@link StorageModeSchema}): remote workers without shared storage.
 *
 * Workers never touch the run directory:
 * - the rollout stage stages its trajectory under `forager:run:<id>:staged:<sample key>` (a
 *   string: gzip JSON), where any worker's evaluation stage finds it, on every retry, until the
 *   sample is committed;
 * - the evaluation stage commits in one Lua script (atomic): unless the sample is already in the
 *   `done` hash, XADD the finished trajectory (gzip JSON) to the run's `results` stream, record
 *   the sample in `done`, clear its failure and `committing` marks, count a success, delete the
 *   staged key. So the stream receives at most one entry per sample while `done` is intact.
 *
 * The run's driver (forage, resume, status, collect) drains the stream with a {@link RunCollector}:
 * read a batch (XRANGE), append each trajectory to the run directory's shards with the durable
 * {@link ShardWriter} (data, index and directory fsynced), and only then XDEL the batch. A
 * collector that dies between the append and the XDEL leaves the entries in the stream; the next
 * one skips the trajectory ids already in the shard indexes (and readers keep the first entry per
 * id anyway). One collector per run at a time (a lock, `SET NX PX`, renewed per batch).
 */
import fs from "node:fs";
import path from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import type { Redis } from "ioredis";
import type { Trajectory } from "../agent/trajectory";
import { silentLogger, type Logger } from "../lib/log";
import { parseTrajectoryRecord } from "./records";
import { runKeys, runPaths, type RunSpec } from "./spec";
import { defaultWriterId, scanShards, ShardWriter, writeFileAtomic } from "./storage";

/** Stage a rollout's trajectory in Redis (gzip JSON under the run's staged key of `key`). */
export async function writeStagedRedis(redis: Redis, runId: string, key: string, t: Trajectory): Promise<void> {
  await redis.set(runKeys(runId).staged + key, gzipSync(JSON.stringify(t)));
}

/**
 * The staged trajectory of a sample, or undefined when there is none (never staged, or committed).
 * @throws RecordError naming the key when it holds no valid trajectory.
 */
export async function readStagedRedis(redis: Redis, runId: string, key: string): Promise<Trajectory | undefined> {
  const k = runKeys(runId).staged + key;
  const buf = await redis.getBuffer(k);
  return buf ? parseTrajectoryRecord(JSON.parse(gunzipSync(buf).toString("utf8")), k) : undefined;
}

/** Whether a sample has a staged trajectory in Redis. */
export async function hasStagedRedis(redis: Redis, runId: string, key: string): Promise<boolean> {
  return (await redis.exists(runKeys(runId).staged + key)) === 1;
}

/** Placeholder of the stream entry id in the summary JSON handed to {@link COMMIT_SCRIPT}. */
export const STREAM_ENTRY_PLACEHOLDER = "@ENTRY@";

// KEYS: done, failed, committing, successes, staged key, results stream.
// ARGV: sample key, summary JSON (with the placeholder), task id, "1" if resolved, trajectory id, gzip data, sample.
const COMMIT_SCRIPT = `
local prior = redis.call('HGET', KEYS[1], ARGV[1])
if prior then return {0, prior} end
local entry = redis.call('XADD', KEYS[6], '*', 'id', ARGV[5], 'key', ARGV[1], 'task', ARGV[3], 'sample', ARGV[7], 'data', ARGV[6])
local summary = (string.gsub(ARGV[2], '${STREAM_ENTRY_PLACEHOLDER}', entry, 1))
redis.call('HSET', KEYS[1], ARGV[1], summary)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[4], ARGV[3], 1) end
redis.call('DEL', KEYS[5])
return {1, summary}
`;

/**
 * Commit a finished trajectory to the run's results stream, atomically with its `done` record
 * (see the module comment). `summary` is the JSON recorded in `done`; the first occurrence of
 * {@link STREAM_ENTRY_PLACEHOLDER} in it becomes the stream entry id (put that field first).
 * @returns `committed: false` and the prior summary when the sample was already done (nothing added).
 */
export async function commitToStream(
  redis: Redis,
  runId: string,
  c: { key: string; taskId: string; sample: number; trajectory: Trajectory; summary: string },
): Promise<{ committed: boolean; summary: string }> {
  const k = runKeys(runId);
  const res = (await redis.eval(
    COMMIT_SCRIPT,
    6,
    k.done,
    k.failed,
    k.committing,
    k.successes,
    k.staged + c.key,
    k.results,
    c.key,
    c.summary,
    c.taskId,
    c.trajectory.evaluation?.resolved ? "1" : "0",
    c.trajectory.id,
    gzipSync(JSON.stringify(c.trajectory) + "\n"),
    String(c.sample),
  )) as [number, string];
  return { committed: res[0] === 1, summary: res[1] };
}

/** What one {@link RunCollector.drain} did. */
export interface CollectResult {
  /** Trajectories appended to the shards (durable) and removed from the stream. */
  collected: number;
  /** Stream entries whose trajectory id was already in the shards (removed without a second append). */
  duplicates: number;
  /** Entries that could not be read as a trajectory: saved to `RUN/collect-errors/<entry>.json`, then removed. */
  corrupt: number;
  /** Entries left in the stream after this call (XLEN). */
  remaining: number;
  /** Set when another collector holds the run's lock (nothing was collected): its lock value. */
  lockedBy?: string;
}

export interface DrainOptions {
  /** Entries read per batch (default 64). */
  batch?: number;
  /** Stop after this many entries (default: until the stream is empty). */
  maxEntries?: number;
  /**
   * Called after a batch's shard appends are durable and before its entries are deleted (tests:
   * throwing here is a collector that died between the two).
   */
  afterAppend?: (trajectoryIds: string[]) => void | Promise<void>;
}

export interface RunCollectorOptions {
  /** Shard writer id (default `collect-<host>-<pid>-<random>`). */
  writerId?: string;
  /** Lock lifetime, ms (renewed by every drain and batch; default 30000): how long a collector that died keeps others out. */
  lockMs?: number;
  logger?: Logger;
}

// 1: still ours (renewed); 2: newly acquired; 0: held by another (returned as its value).
const LOCK_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return {1, v} end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return {2, ARGV[1]} end
return {0, v}
`;
const UNLOCK_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Drains a run's results stream (storage "redis") into `<runDir>/shards` (see the module comment).
 * `spec.runDir` is this process's run directory (the driver's), `spec.runId` names the stream.
 * Keep one per process and run (each owns a shard writer); {@link close} when done.
 */
export class RunCollector {
  readonly writerId: string;
  private readonly writer: ShardWriter;
  private readonly keys: ReturnType<typeof runKeys>;
  private readonly lockMs: number;
  private readonly log: Logger;
  /** Trajectory ids in the shards (scanned when the lock is (re)acquired). */
  private seen: Set<string> | undefined;
  private running: Promise<CollectResult> | undefined;
  /** Failure records already written to `RUN/failures` by this collector (sample key → JSON). */
  private readonly failuresWritten = new Map<string, string>();

  constructor(
    private readonly redis: Redis,
    private readonly spec: Pick<RunSpec, "runId" | "runDir" | "shardRecords">,
    opts: RunCollectorOptions = {},
  ) {
    this.writerId = opts.writerId ?? `collect-${defaultWriterId()}`;
    this.writer = new ShardWriter(runPaths(spec.runDir).shards, { shardRecords: spec.shardRecords, writerId: this.writerId });
    this.keys = runKeys(spec.runId);
    this.lockMs = opts.lockMs ?? 30_000;
    this.log = (opts.logger ?? silentLogger).child({ component: "collector", run: spec.runId });
  }

  /** Take or renew the lock; false when another collector holds it. */
  private async lock(): Promise<{ ok: boolean; holder: string }> {
    const [state, holder] = (await this.redis.eval(LOCK_SCRIPT, 1, this.keys.collector, this.writerId, String(this.lockMs))) as [number, string];
    if (state === 2) this.seen = undefined; // someone else may have collected since we last held it
    return { ok: state !== 0, holder };
  }

  /**
   * Collect what the stream holds now (a call made while a drain is running waits for it, then
   * drains on its own). Errors (a shard append failing, Redis errors) are thrown after nothing of the failed
   * batch was deleted from the stream.
   */
  drain(opts: DrainOptions = {}): Promise<CollectResult> {
    const p = (this.running ?? Promise.resolve()).catch(() => undefined).then(() => this.drainNow(opts));
    this.running = p;
    return p;
  }

  private async drainNow(opts: DrainOptions): Promise<CollectResult> {
    const out: CollectResult = { collected: 0, duplicates: 0, corrupt: 0, remaining: 0 };
    const batchSize = opts.batch ?? 64;
    const max = opts.maxEntries ?? Infinity;
    const dirs = runPaths(this.spec.runDir);
    let first = true;
    for (let taken = 0; taken < max; ) {
      const l = await this.lock();
      if (!l.ok) {
        out.lockedBy = l.holder;
        break;
      }
      if (first) {
        first = false;
        await this.syncFailures();
      }
      this.seen ??= new Set(scanShards(dirs.shards).entries.map((e) => e.id));
      const entries = await this.redis.xrangeBuffer(this.keys.results, "-", "+", "COUNT", Math.min(batchSize, max - taken));
      if (!entries.length) break;
      taken += entries.length;
      const ids: string[] = [];
      const appends: Array<Promise<unknown>> = [];
      const sampleKeys: string[] = [];
      for (const [rawId, rawFields] of entries) {
        const entryId = rawId.toString();
        ids.push(entryId);
        const fields = new Map<string, Buffer>();
        for (let i = 0; i + 1 < rawFields.length; i += 2) fields.set(rawFields[i]!.toString(), rawFields[i + 1]!);
        let t: Trajectory;
        let sample: number;
        try {
          const data = fields.get("data");
          if (!data) throw new Error("no data field");
          t = parseTrajectoryRecord(JSON.parse(gunzipSync(data).toString("utf8")), `${this.keys.results} ${entryId}`);
          sample = Number(fields.get("sample")?.toString());
          if (!Number.isInteger(sample) || sample < 0) throw new Error(`sample field is not a sample index: ${fields.get("sample")?.toString()}`);
        } catch (err) {
          await this.saveCorrupt(entryId, fields, (err as Error).message);
          out.corrupt++;
          continue;
        }
        if (this.seen.has(t.id)) {
          out.duplicates++;
          continue;
        }
        this.seen.add(t.id);
        const key = fields.get("key")?.toString();
        if (key) sampleKeys.push(key);
        appends.push(
          this.writer.append(t, sample).catch((err: unknown) => {
            this.seen?.delete(t.id);
            throw err;
          }),
        );
      }
      const settled = await Promise.allSettled(appends);
      const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
      if (failed) throw failed.reason;
      out.collected += appends.length;
      await opts.afterAppend?.(ids);
      await this.redis.xdel(this.keys.results, ...ids);
      for (const key of sampleKeys) fs.rmSync(path.join(dirs.failures, `${key}.json`), { force: true });
    }
    out.remaining = await this.redis.xlen(this.keys.results);
    if (out.collected || out.duplicates || out.corrupt) this.log.info({ ...out }, "collected trajectories");
    return out;
  }

  /** Write `RUN/failures/<key>.json` for failures recorded in Redis (workers write no file in this mode). */
  private async syncFailures(): Promise<void> {
    const failed = await this.redis.hgetall(this.keys.failed);
    const dir = runPaths(this.spec.runDir).failures;
    for (const [key, raw] of Object.entries(failed)) {
      if (this.failuresWritten.get(key) === raw) continue;
      const file = path.join(dir, `${key}.json`);
      if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== raw + "\n") await writeFileAtomic(file, raw + "\n");
      this.failuresWritten.set(key, raw);
    }
  }

  private async saveCorrupt(entryId: string, fields: Map<string, Buffer>, reason: string): Promise<void> {
    const rec = { entryId, reason, fields: Object.fromEntries([...fields].map(([k, v]) => [k, v.toString("base64")])) };
    await writeFileAtomic(path.join(this.spec.runDir, "collect-errors", `${entryId}.json`), JSON.stringify(rec) + "\n");
    this.log.warn({ entryId, reason }, "unreadable stream entry saved to collect-errors/");
  }

  /**
   * Drain until the stream is empty, waiting (polling every `pollMs`, default 500) while another
   * collector holds the lock. Use at the end of a run, when no more entries will arrive.
   * @throws when `signal` is aborted.
   */
  async finish(opts: DrainOptions & { signal?: AbortSignal; pollMs?: number } = {}): Promise<CollectResult> {
    const total: CollectResult = { collected: 0, duplicates: 0, corrupt: 0, remaining: 0 };
    let warned = false;
    for (;;) {
      const r = await this.drain(opts);
      total.collected += r.collected;
      total.duplicates += r.duplicates;
      total.corrupt += r.corrupt;
      total.remaining = r.remaining;
      total.lockedBy = r.lockedBy;
      if (!r.remaining) return total;
      if (r.lockedBy && !warned) {
        warned = true;
        this.log.warn({ holder: r.lockedBy }, "another collector holds the run's stream: waiting for it to drain");
      }
      opts.signal?.throwIfAborted();
      await new Promise((res) => setTimeout(res, opts.pollMs ?? 500));
    }
  }

  /** Wait for a drain in progress, release the lock, close the shard files. */
  async close(): Promise<void> {
    await this.running?.catch(() => undefined);
    await this.redis.eval(UNLOCK_SCRIPT, 1, this.keys.collector, this.writerId).catch(() => undefined);
    await this.writer.close();
  }
}
