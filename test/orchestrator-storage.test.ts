/**
 * Orchestrator pieces without queues: durable sharded storage (torn tails, duplicates), the
 * manifest, pass@k, MinHash near-duplicates, task files with bad lines, export formats.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { TrajectorySchema } from "../agent/trajectory";
import { actionTokens, estimateJaccard, findNearDuplicates, minhash } from "../orchestrator/dedup";
import { choosePatch, exportRun } from "../orchestrator/export";
import { fakeTask, fakeTrajectory } from "../orchestrator/fake";
import { passAtK, passAtKs } from "../orchestrator/metrics";
import { writeManifest, writeRunFiles } from "../orchestrator/run";
import { RunSpecSchema, jobIds, runPaths, sampleKey } from "../orchestrator/spec";
import { readEntry, readShards, scanShards, ShardWriter } from "../orchestrator/storage";
import { loadTaskFiles } from "../tasks/files";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-orch-storage-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function collect(): { stream: Writable; lines: () => any[] } {
  let buf = "";
  const stream = new Writable({
    write(chunk, _enc, cb) {
      buf += chunk.toString();
      cb();
    },
  });
  return { stream, lines: () => buf.split("\n").filter(Boolean).map((l) => JSON.parse(l)) };
}

describe("pass@k (Chen et al. 2021)", () => {
  it("matches 1 − C(n−c,k)/C(n,k)", () => {
    const comb = (n: number, k: number): number => (k < 0 || k > n ? 0 : k === 0 ? 1 : (comb(n - 1, k - 1) * n) / k);
    for (const [n, c, k] of [
      [10, 3, 1],
      [10, 3, 5],
      [20, 1, 10],
      [5, 0, 2],
      [5, 5, 3],
      [8, 4, 8],
    ] as const) {
      expect(passAtK(n, c, k)).toBeCloseTo(1 - comb(n - c, k) / comb(n, k), 12);
    }
    expect(passAtK(10, 3, 1)).toBeCloseTo(0.3, 12);
    expect(passAtK(3, 1, 5)).toBe(1); // fewer samples than k
    expect(passAtKs([{ taskId: "a", n: 4, c: 2 }, { taskId: "b", n: 4, c: 0 }], [1, 4])).toEqual({ "pass@1": 0.25, "pass@4": 0.5 });
    expect(() => passAtK(2, 3, 1)).toThrow(RangeError);
  });
});

describe("MinHash near-duplicates", () => {
  const task = fakeTask("dedup-1");
  const long = (extra: string) => Array.from({ length: 40 }, (_, i) => ["bash", `grep -n pattern${i} src/file${i}.py ${i === 39 ? extra : ""}`] as [string, string]);

  it("estimates Jaccard and finds near-duplicates within a task", () => {
    const a = actionTokens(fakeTrajectory(task, { actions: long("") }));
    const b = actionTokens(fakeTrajectory(task, { actions: long("x") }));
    const c = actionTokens(fakeTrajectory(task, { actions: [["bash", "something entirely different here"], ["submit", "p"]] }));
    expect(estimateJaccard(minhash(a), minhash(a))).toBe(1);
    expect(estimateJaccard(minhash(a), minhash(b))).toBeGreaterThan(0.85);
    expect(estimateJaccard(minhash(a), minhash(c))).toBeLessThan(0.2);
    const rep = findNearDuplicates(
      [
        { id: "t/0", taskId: "t", sample: 0, tokens: a },
        { id: "t/1", taskId: "t", sample: 1, tokens: [...a] },
        { id: "t/2", taskId: "t", sample: 2, tokens: c },
        { id: "u/0", taskId: "u", sample: 0, tokens: [...a] }, // another task: never paired
      ],
      { threshold: 0.9 },
    );
    expect(rep.clusters).toEqual([["t/0", "t/1"]]);
    expect([...rep.dropped]).toEqual(["t/1"]);
  });
});

describe("durable sharded storage", () => {
  it("commits, rotates shards, reads back, ignores torn tails and drops duplicates", async () => {
    const dir = path.join(tmp, "shards1");
    const w = new ShardWriter(dir, { shardRecords: 3, writerId: "w1" });
    const task = fakeTask("store-1");
    const entries = await Promise.all(Array.from({ length: 7 }, (_, i) => w.append(fakeTrajectory(task, { id: `r/store-1/${i}`, resolved: i === 2 }), i)));
    // a retried job committing the same sample again
    await w.append(fakeTrajectory(task, { id: "r/store-1/2", resolved: true }), 2);
    await w.close();
    expect(new Set(entries.map((e) => e.shard)).size).toBe(3);
    // the shards are plain multi-member gzip JSONL
    const zcat = execFileSync("zcat", [path.join(dir, entries[0]!.shard)], { encoding: "utf8" }).trim().split("\n");
    expect(zcat).toHaveLength(3);
    expect(TrajectorySchema.parse(JSON.parse(zcat[0]!)).id).toBe("r/store-1/0");
    // a torn tail: half an index line and garbage after the last member
    const last = entries[6]!;
    fs.appendFileSync(path.join(dir, last.shard), Buffer.from([0x1f, 0x8b, 0x08, 0x00]));
    fs.appendFileSync(path.join(dir, last.shard.replace(".jsonl.gz", ".idx.jsonl")), '{"id":"r/store-1/9","taskId":"st');
    const scan = scanShards(dir);
    expect(scan.entries.map((e) => e.sample)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(scan.duplicates).toBe(1);
    expect(scan.tornLines).toBe(1);
    expect(readEntry(dir, scan.entries[2]!).evaluation?.resolved).toBe(true);
    expect([...readShards(dir, scan)].map((x) => x.trajectory.id)).toHaveLength(7);
  });

  it("a new writer never appends to an existing shard", async () => {
    const dir = path.join(tmp, "shards2");
    const task = fakeTask("store-2");
    const a = new ShardWriter(dir, { writerId: "same" });
    await a.append(fakeTrajectory(task, { id: "x/0" }), 0);
    await a.close();
    const b = new ShardWriter(dir, { writerId: "same" });
    expect((await b.append(fakeTrajectory(task, { id: "x/1" }), 1)).shard).toBe("same-0001.jsonl.gz");
    await b.close();
    expect(scanShards(dir).entries.map((e) => [e.id, e.shard])).toEqual([
      ["x/0", "same-0000.jsonl.gz"],
      ["x/1", "same-0001.jsonl.gz"],
    ]);
  });
});

describe("job ids", () => {
  it("derive from (run, task, sample) only and are valid BullMQ ids", () => {
    expect(jobIds.rollout("r1", "astropy__astropy-12907", 3)).toBe(jobIds.rollout("r1", "astropy__astropy-12907", 3));
    expect(jobIds.rollout("r1", "a/b:c", 0)).not.toContain(":");
    expect(sampleKey("r1", "t", 0)).not.toBe(sampleKey("r1", "t", 1));
    expect(sampleKey("r1", "t", 0)).not.toBe(sampleKey("r2", "t", 0));
  });
});

describe("task files", () => {
  it("reports bad lines and keeps the good ones (Task JSONL)", async () => {
    const file = path.join(tmp, "tasks.jsonl");
    const good = [fakeTask("good-1"), fakeTask("good-2")];
    fs.writeFileSync(
      file,
      [JSON.stringify(good[0]), "{not json", JSON.stringify({ ...good[1], commit: undefined }), JSON.stringify(good[1]), JSON.stringify(good[0]), ""].join("\n"),
    );
    const r = await loadTaskFiles([file]);
    expect(r.tasks.map((t) => t.id)).toEqual(["good-1", "good-2"]);
    expect(r.errors.map((e) => [e.line, e.message.slice(0, 12)])).toEqual([
      [2, "invalid JSON"],
      [3, "commit: miss"],
      // The duplicate's own line (the fifth), no longer "line 0".
      [5, "duplicate ta"],
    ]);
    expect(r.errors[1]!.taskId).toBe("good-2");
  });

  it("reads SWE-bench rows; a row without an image spec is reported", async () => {
    const file = path.join(tmp, "swe.jsonl");
    const row = {
      repo: "nosuch/repo",
      instance_id: "nosuch__repo-1",
      base_commit: "abcdef0123",
      patch: "diff",
      test_patch: "diff",
      problem_statement: "x",
      version: "1.0",
      FAIL_TO_PASS: "[]",
      PASS_TO_PASS: "[]",
    };
    fs.writeFileSync(file, JSON.stringify(row) + "\n" + JSON.stringify({ ...row, instance_id: 5 }) + "\n");
    const r = await loadTaskFiles([file]);
    expect(r.tasks).toEqual([]);
    expect(r.errors.length).toBe(2);
    expect(r.errors.map((e) => e.message).join("\n")).toMatch(/no forager image spec for repository nosuch\/repo/);
  });
});

describe("manifest and export", () => {
  it("writes the manifest and exports raw, chat and predictions (first / majority)", async () => {
    const runDir = path.join(tmp, "run-export");
    const tasks = [fakeTask("exp-a"), fakeTask("exp-b"), fakeTask("exp-c")];
    const spec = RunSpecSchema.parse({ runId: "exp", runDir, createdAt: new Date().toISOString(), samples: 3, policy: { kind: "oracle" } });
    await writeRunFiles(spec, tasks);
    const w = new ShardWriter(runPaths(runDir).shards, { writerId: "w" });
    const pa = "diff --git a/f b/f\n+A\n";
    const pb = "diff --git a/f b/f\n+B\n";
    const same = Array.from({ length: 30 }, (_, i) => ["bash", `cat file${i}.py | head -n ${i}`] as [string, string]);
    await w.append(fakeTrajectory(tasks[0]!, { id: "exp/exp-a/0", patch: pa, resolved: true, actions: same }), 0);
    await w.append(fakeTrajectory(tasks[0]!, { id: "exp/exp-a/1", patch: pb + "  \n", actions: same }), 1);
    await w.append(fakeTrajectory(tasks[0]!, { id: "exp/exp-a/2", patch: pb, actions: [["bash", "ls"]] }), 2);
    await w.append(fakeTrajectory(tasks[1]!, { id: "exp/exp-b/0", patch: "" }), 0);
    await w.close();
    const m = await writeManifest(runDir);
    expect(m).toMatchObject({ trajectories: 4, resolved: 1, expected: 9, duplicatesDropped: 0, missing: 5 });
    // pass@k over the tasks done (orchestrator/accounting.ts): only exp-a has all 3 samples
    expect(m.accounting).toMatchObject({ tasks: 3, tasksDone: 1, tasksScored: 1 });
    expect(m.metrics["pass@1"]).toBeCloseTo(1 / 3, 10);
    expect(m.metrics["pass@3"]).toBe(1);
    expect(m.shards[0]!.tasks).toEqual({ "exp-a": [0, 1, 2], "exp-b": [0] });
    expect(m.nearDuplicates).toEqual({ pairs: 1, clusters: 1, dropOnFilter: 1 });
    expect(JSON.parse(fs.readFileSync(runPaths(runDir).manifest, "utf8")).trajectories).toBe(4);

    const raw = collect();
    expect((await exportRun(runDir, { format: "raw" }, raw.stream)).lines).toBe(4);
    expect(raw.lines().map((t) => t.id)).toEqual(["exp/exp-a/0", "exp/exp-a/1", "exp/exp-a/2", "exp/exp-b/0"]);
    const dedup = collect();
    expect(await exportRun(runDir, { format: "raw", dedup: true }, dedup.stream)).toEqual({ lines: 3, droppedAsDuplicates: 1 });
    const chat = collect();
    await exportRun(runDir, { format: "chat", resolvedOnly: true }, chat.stream);
    expect(chat.lines()).toHaveLength(1);
    expect(chat.lines()[0]).toMatchObject({ id: "exp/exp-a/0", resolved: true, runId: "exp", sample: 0 });
    expect(chat.lines()[0].messages.map((x: { role: string }) => x.role).slice(0, 4)).toEqual(["system", "user", "assistant", "tool"]);
    const first = collect();
    await exportRun(runDir, { format: "predictions" }, first.stream);
    expect(first.lines()).toEqual([
      { instance_id: "exp-a", model_name_or_path: "forager-oracle", model_patch: pa },
      { instance_id: "exp-b", model_name_or_path: "forager-oracle", model_patch: "" },
      { instance_id: "exp-c", model_name_or_path: "forager-oracle", model_patch: "" },
    ]);
    const maj = collect();
    await exportRun(runDir, { format: "predictions", vote: "majority", modelName: "m" }, maj.stream);
    expect(maj.lines()[0]).toEqual({ instance_id: "exp-a", model_name_or_path: "m", model_patch: pb + "  \n" });
    expect(choosePatch([{ sample: 1, patch: "b" }, { sample: 0, patch: "a" }], "majority")).toBe("a");
  });
});
