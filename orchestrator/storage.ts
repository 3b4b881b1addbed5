/**
 * Durable, sharded, compressed trajectory storage.
 *
 * Layout (under `<runDir>/shards/`):
 * - `<writer>-<seq>.jsonl.gz`: one gzip member per trajectory (RFC 1952 allows concatenated
 *   members, so `zcat` reads the whole shard as JSONL, one trajectory per line);
 * - `<writer>-<seq>.idx.jsonl`: one {@link IndexEntry} per trajectory (byte offset and length of
 *   its member, task, sample, reward, …). A trajectory is committed when its index line is durable.
 *
 * Each writer (one per worker process: host, pid, random suffix) owns its files and never reopens
 * them, so concurrent workers on shared storage never write the same file. An append writes the
 * member, fsyncs the shard, writes the index line, fsyncs the index (and the directory when the
 * files were just created) and only then resolves: the caller acknowledges the job after that.
 * Appends that arrive together are group-committed (one pair of fsyncs for the batch).
 *
 * A crash mid-append leaves at most a torn tail: bytes after the last index entry of the shard and
 * a partial last index line; readers ignore both. A job retried after its trajectory was committed
 * but before it was acknowledged may append a second copy: readers keep the first entry per
 * trajectory id and count the rest as duplicates (`manifest.duplicatesDropped`).
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import type { Trajectory } from "../agent/trajectory";
import { IndexEntrySchema, parseTrajectoryRecord, type IndexEntry } from "./records";
import { modelUsageOf } from "./metrics";

export type { IndexEntry } from "./records";
export { fsyncDir, writeFileAtomic } from "../lib/fs";
import { fsyncDir, writeFileAtomic } from "../lib/fs";

/** A writer id unique to this process: `<host>-<pid>-<4 random hex>`. */
export function defaultWriterId(): string {
  return `${hostname().replace(/[^A-Za-z0-9_-]/g, "_")}-${process.pid}-${randomBytes(2).toString("hex")}`;
}

interface Pending {
  traj: Trajectory;
  sample: number;
  resolve: (e: IndexEntry) => void;
  reject: (err: unknown) => void;
}

export interface ShardWriterOptions {
  /** Trajectories per shard before rotating (default 1000). */
  shardRecords?: number;
  writerId?: string;
}

/** Appends trajectories to this process's shards; see the module comment for the guarantees. */
export class ShardWriter {
  readonly dir: string;
  readonly writerId: string;
  private readonly shardRecords: number;
  private seq = 0;
  private shard?: { name: string; data: fsp.FileHandle; index: fsp.FileHandle; size: number; records: number };
  private queue: Pending[] = [];
  private flushing = false;
  private closed = false;

  constructor(shardsDir: string, opts: ShardWriterOptions = {}) {
    this.dir = shardsDir;
    this.writerId = opts.writerId ?? defaultWriterId();
    this.shardRecords = opts.shardRecords ?? 1000;
  }

  /** Append one trajectory; resolves once it is durable (data, index and directory fsynced). */
  append(traj: Trajectory, sample: number): Promise<IndexEntry> {
    if (this.closed) return Promise.reject(new Error("shard writer closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ traj, sample, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async open(): Promise<NonNullable<ShardWriter["shard"]>> {
    await fsp.mkdir(this.dir, { recursive: true });
    // Exclusive creation: a name already taken (a restarted writer with the same id) is skipped.
    for (;;) {
      const name = `${this.writerId}-${String(this.seq++).padStart(4, "0")}`;
      let data: fsp.FileHandle;
      try {
        data = await fsp.open(path.join(this.dir, `${name}.jsonl.gz`), "wx");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EEXIST") continue;
        throw err;
      }
      const index = await fsp.open(path.join(this.dir, `${name}.idx.jsonl`), "wx");
      await fsyncDir(this.dir);
      this.shard = { name: `${name}.jsonl.gz`, data, index, size: 0, records: 0 };
      return this.shard;
    }
  }

  private async rotate(): Promise<void> {
    const s = this.shard;
    this.shard = undefined;
    if (s) await Promise.all([s.data.close(), s.index.close()]);
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length) {
        let s: NonNullable<ShardWriter["shard"]>;
        try {
          s = this.shard && this.shard.records < this.shardRecords ? this.shard : (await this.rotate(), await this.open());
        } catch (err) {
          this.queue.splice(0).forEach((p) => p.reject(err));
          break;
        }
        const batch = this.queue.splice(0, Math.max(1, this.shardRecords - s.records));
        try {
          const members = batch.map((p) => gzipSync(JSON.stringify(p.traj) + "\n"));
          const buf = Buffer.concat(members);
          await s.data.write(buf, 0, buf.length, s.size);
          await s.data.sync();
          const entries: IndexEntry[] = [];
          let offset = s.size;
          batch.forEach((p, i) => {
            const t = p.traj;
            entries.push({
              id: t.id,
              taskId: t.taskId,
              sample: p.sample,
              shard: s.name,
              offset,
              length: members[i]!.length,
              reward: t.reward,
              resolved: t.evaluation?.resolved ?? false,
              endReason: t.endReason,
              turns: t.turns.length,
              patch: t.submittedPatch !== undefined && t.submittedPatch !== "",
              committedAt: Date.now(),
              model: modelUsageOf(t),
            });
            offset += members[i]!.length;
          });
          s.size = offset;
          s.records += batch.length;
          await s.index.appendFile(entries.map((e) => JSON.stringify(e) + "\n").join(""));
          await s.index.sync();
          batch.forEach((p, i) => p.resolve(entries[i]!));
        } catch (err) {
          // The shard may now have a torn tail: never write to it again.
          await this.rotate().catch(() => undefined);
          batch.forEach((p) => p.reject(err));
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Wait for pending appends, then close the files. */
  async close(): Promise<void> {
    while (this.flushing || this.queue.length) await new Promise((r) => setTimeout(r, 5));
    this.closed = true;
    await this.rotate();
  }
}

/** What the shards of a run hold: the committed entries (first per id) and the duplicates dropped. */
export interface ShardScan {
  entries: IndexEntry[];
  duplicates: number;
  /** Per shard: file, trajectories (kept), bytes. */
  shards: Array<{ file: string; index: string; records: number; bytes: number }>;
  /** Index lines that did not parse (a torn tail after a crash). */
  tornLines: number;
}

/** Read every shard index of `shardsDir`; entries sorted by task id, then sample. */
export function scanShards(shardsDir: string): ShardScan {
  const out: ShardScan = { entries: [], duplicates: 0, shards: [], tornLines: 0 };
  if (!fs.existsSync(shardsDir)) return out;
  const seen = new Set<string>();
  const files = fs.readdirSync(shardsDir).filter((f) => f.endsWith(".idx.jsonl")).sort();
  for (const idx of files) {
    const data = idx.replace(/\.idx\.jsonl$/, ".jsonl.gz");
    const dataPath = path.join(shardsDir, data);
    const bytes = fs.existsSync(dataPath) ? fs.statSync(dataPath).size : 0;
    let records = 0;
    for (const line of fs.readFileSync(path.join(shardsDir, idx), "utf8").split("\n")) {
      if (!line) continue;
      let e: IndexEntry;
      try {
        const r = IndexEntrySchema.safeParse(JSON.parse(line));
        if (!r.success) throw r.error;
        e = r.data;
      } catch {
        out.tornLines++;
        continue;
      }
      if (e.offset + e.length > bytes) {
        out.tornLines++;
        continue;
      }
      if (seen.has(e.id)) {
        out.duplicates++;
        continue;
      }
      seen.add(e.id);
      records++;
      out.entries.push(e);
    }
    out.shards.push({ file: data, index: idx, records, bytes });
  }
  out.entries.sort((a, b) => (a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : a.sample - b.sample));
  return out;
}

/** Read one committed trajectory (its gzip member) from its shard. */
export function readEntry(shardsDir: string, e: IndexEntry): Trajectory {
  const fd = fs.openSync(path.join(shardsDir, e.shard), "r");
  try {
    const buf = Buffer.alloc(e.length);
    fs.readSync(fd, buf, 0, e.length, e.offset);
    return JSON.parse(gunzipSync(buf).toString("utf8")) as Trajectory;
  } finally {
    fs.closeSync(fd);
  }
}

/** Iterate the committed trajectories of a run (deduplicated), in task/sample order. */
export function* readShards(shardsDir: string, scan: ShardScan = scanShards(shardsDir)): Generator<{ entry: IndexEntry; trajectory: Trajectory }> {
  for (const entry of scan.entries) yield { entry, trajectory: readEntry(shardsDir, entry) };
}

/** Staging file of a sample (the rollout's trajectory waiting for its evaluation), gzip JSON. */
export function stagingPath(stagingDir: string, key: string): string {
  return path.join(stagingDir, `${key}.json.gz`);
}

/** Write a staged trajectory atomically and durably. */
export async function writeStaged(stagingDir: string, key: string, t: Trajectory): Promise<void> {
  await writeFileAtomic(stagingPath(stagingDir, key), gzipSync(JSON.stringify(t)));
}

/**
 * Read a staged trajectory, or undefined when there is none.
 * @throws RecordError when the file holds no valid trajectory.
 */
export async function readStaged(stagingDir: string, key: string): Promise<Trajectory | undefined> {
  const file = stagingPath(stagingDir, key);
  let buf: Buffer;
  try {
    buf = await fsp.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  return parseTrajectoryRecord(JSON.parse(gunzipSync(buf).toString("utf8")), file);
}
