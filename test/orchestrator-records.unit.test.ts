/**
 * The orchestrator's records read back from Redis and run directories (orchestrator/records.ts),
 * the sink chosen per storage mode (orchestrator/sink.ts) and diff blocks (lib/diff.ts). No Docker,
 * no Redis: the sinks are constructed, not used.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { UnrecoverableError } from "bullmq";
import { describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { diffBlocks } from "../lib/diff";
import { RecordError } from "../lib/errors";
import { fakeTask, fakeTrajectory } from "../orchestrator/fake";
import { parseJobData } from "../orchestrator/pipeline";
import { parseRedisRecord, SampleFailureSchema, SampleSummarySchema } from "../orchestrator/records";
import { openCollector, openSink, RedisStreamSink, SharedDirectorySink } from "../orchestrator/sink";
import { RunSpecSchema } from "../orchestrator/spec";
import { readStaged, scanShards, stagingPath, writeStaged } from "../orchestrator/storage";
import { gzipSync } from "node:zlib";

const summary = { taskId: "t", sample: 0, resolved: true, reward: 1, turns: 3, endReason: "submitted", shard: "w-0000.jsonl.gz", offset: 0, worker: "w" };

describe("records read back", () => {
  it("a done record parses; one with a bad field fails naming the key, the hash field and the record field", () => {
    expect(parseRedisRecord(SampleSummarySchema, JSON.stringify(summary), { what: "sample summary", key: "forager:run:r:done", field: "r.x.0" })).toEqual(summary);
    let err: unknown;
    try {
      parseRedisRecord(SampleSummarySchema, JSON.stringify({ ...summary, reward: "1" }), { what: "sample summary", key: "forager:run:r:done", field: "r.x.0" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RecordError);
    expect((err as Error).message).toMatch(/forager:run:r:done r\.x\.0/);
    expect((err as Error).message).toMatch(/reward/);
    expect(() => parseRedisRecord(SampleFailureSchema, "{not json", { what: "sample failure", key: "k" })).toThrow(/not JSON/);
    expect(() => parseRedisRecord(SampleFailureSchema, JSON.stringify({ taskId: "t", sample: 0, stage: "nowhere", reason: "", attempts: 1, at: "" }), { what: "f", key: "k" })).toThrow(/stage/);
  });

  it("stage job data is checked; bad data is unrecoverable (retrying cannot fix it)", () => {
    expect(parseJobData({ runId: "r", taskId: "t", sample: 2 })).toEqual({ runId: "r", taskId: "t", sample: 2 });
    expect(() => parseJobData({ runId: "r", sample: -1 })).toThrow(UnrecoverableError);
    expect(() => parseJobData({ runId: "r", sample: -1 })).toThrow(/taskId/);
  });

  it("a staged file that is not a trajectory fails naming the file; a missing one is undefined", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-records-"));
    const task = fakeTask("t1");
    await writeStaged(dir, "k1", fakeTrajectory(task));
    expect((await readStaged(dir, "k1"))?.taskId).toBe("t1");
    expect(await readStaged(dir, "absent")).toBeUndefined();
    fs.writeFileSync(stagingPath(dir, "bad"), gzipSync(JSON.stringify({ id: "x", turns: "none" })));
    await expect(readStaged(dir, "bad")).rejects.toThrow(/bad\.json\.gz/);
  });

  it("shard index lines that do not match the schema count as torn", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-records-"));
    fs.writeFileSync(path.join(dir, "w-0000.jsonl.gz"), Buffer.alloc(10));
    const good = { id: "r/t/0", taskId: "t", sample: 0, shard: "w-0000.jsonl.gz", offset: 0, length: 10, reward: 1, resolved: true, endReason: "x", turns: 1, patch: true, committedAt: 1 };
    fs.writeFileSync(path.join(dir, "w-0000.idx.jsonl"), [good, { ...good, id: "r/t/1", sample: "one" }].map((e) => JSON.stringify(e)).join("\n") + "\n");
    const scan = scanShards(dir);
    expect(scan.entries.map((e) => e.id)).toEqual(["r/t/0"]);
    expect(scan.tornLines).toBe(1);
  });
});

describe("sinks per storage mode", () => {
  const redis = {} as Redis; // never called: construction only
  const base = { runId: "r1", runDir: "/nonexistent/run", createdAt: new Date(0).toISOString(), samples: 1, policy: { kind: "oracle" } };
  it("shared → SharedDirectorySink (its shard writer commits), redis → RedisStreamSink (the worker commits); a collector only for redis", () => {
    const shared = openSink(redis, RunSpecSchema.parse({ ...base, storage: "shared" }), { workerId: "w1", writerId: "wr" });
    const inRedis = openSink(redis, RunSpecSchema.parse({ ...base, storage: "redis" }), { workerId: "w1" });
    expect(shared).toBeInstanceOf(SharedDirectorySink);
    expect(shared.committerId).toBe("wr");
    expect(inRedis).toBeInstanceOf(RedisStreamSink);
    expect(inRedis.committerId).toBe("w1");
    expect(openCollector(redis, RunSpecSchema.parse({ ...base, storage: "shared" }))).toBeUndefined();
    expect(openCollector(redis, RunSpecSchema.parse({ ...base, storage: "redis" }))).toBeDefined();
  });
});

describe("diff blocks", () => {
  it("splits per file with git's header names, quoted or with spaces, renamed", () => {
    const d =
      "preamble\n" +
      "diff --git a/src/x.py b/src/x.py\n--- a/src/x.py\n+++ b/src/x.py\n@@ -1 +1 @@\n-a\n+b\n" +
      'diff --git "a/caf\\303\\251.py" "b/caf\\303\\251.py"\nnew file mode 100644\n' +
      "diff --git a/x y.py b/x y.py\n" +
      "diff --git a/old.py b/new.py\nrename from old.py\nrename to new.py\n";
    const b = diffBlocks(d);
    expect(b.map((x) => x.path)).toEqual(["src/x.py", "café.py", "x y.py", "new.py"]);
    expect(b[3]!.oldPath).toBe("old.py");
    expect(b.map((x) => x.text).join("")).toBe(d.slice("preamble\n".length));
  });
});
