/**
 * Storage mode "redis" (remote workers without shared storage) and worker shutdown, with fake
 * stages, a private redis-server and real BullMQ (no Docker):
 * - a worker process whose run directory is a different, private one: nothing of the run on its
 *   disk, the driver collects every trajectory exactly once;
 * - a retried evaluation still finds the staged trajectory; a commit is never streamed twice;
 * - a collector that dies between the shard append and the XDEL: the next one loses nothing and
 *   writes no second copy;
 * - `forager collect` and `forager status` (the CLI) drain the stream;
 * - embedded `forage --storage redis`;
 * - ForagerWorker.close: running episodes finish within the grace period; past it they are
 *   aborted and their jobs go back to waiting without using an attempt.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EnvironmentError } from "../lib/errors";
import { fakeRollout, fakeTask, fakeTrajectory, keepEvaluation, type FakeRolloutOptions } from "../orchestrator/fake";
import { forage, resume } from "../orchestrator/forage";
import { startRedisServer, type RedisServerHandle } from "../orchestrator/redis-server";
import { commitToStream, RunCollector } from "../orchestrator/redis-storage";
import { closeQueues, openQueues, runStatus, submitRun, waitForRun, writeManifest, writeRunFiles, type StageQueues } from "../orchestrator/run";
import { jobIds, RunSpecSchema, runKeys, runPaths, sampleKey, trajectoryId, type RunSpec, type RunSpecInput } from "../orchestrator/spec";
import { readShards, scanShards } from "../orchestrator/storage";
import type { EvaluateFn } from "../orchestrator/stages";
import { redisConnection, startWorker, type WorkerOptions } from "../orchestrator/worker";
import type { Task } from "../tasks/schema";
import { spawnFakeWorker, waitForLine } from "./helpers/fake-worker";

const run = promisify(execFile);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-orch-remote-"));
let server: RedisServerHandle;
let redis: Redis;
let queues: StageQueues;

beforeAll(async () => {
  server = await startRedisServer({ dir: path.join(tmp, "redis") });
  redis = redisConnection(server.url);
  queues = openQueues(server.url);
});
afterAll(async () => {
  await closeQueues(queues);
  redis.disconnect();
  await server.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const FAST = { lockDurationMs: 2000, stalledIntervalMs: 1000, reap: false, image: async () => "fake:latest", evaluate: keepEvaluation };

async function newRun(runId: string, tasks: Task[], extra: Partial<RunSpecInput> = {}): Promise<RunSpec> {
  const spec = RunSpecSchema.parse({ runId, runDir: path.join(tmp, runId), createdAt: new Date().toISOString(), samples: 3, policy: { kind: "oracle" }, backoffMs: 50, storage: "redis", ...extra });
  await writeRunFiles(spec, tasks);
  return spec;
}

function inProcessWorker(fake: FakeRolloutOptions, extra: Partial<WorkerOptions> = {}) {
  return startWorker({ redisUrl: server.url, concurrency: 4, rollout: fakeRollout(fake), ...FAST, ...extra });
}

/** Every (task, sample) exactly once in the shards, no copy dropped. */
function expectOnePerSample(runDir: string, tasks: Task[], samples: number): void {
  const scan = scanShards(runPaths(runDir).shards);
  const want = tasks.flatMap((t) => Array.from({ length: samples }, (_, i) => `${t.id}#${i}`)).sort();
  expect(scan.entries.map((e) => `${e.taskId}#${e.sample}`).sort()).toEqual(want);
  expect(scan.duplicates).toBe(0);
}

/** Every file under a directory (relative paths). */
function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => fs.statSync(path.join(dir, f)).isFile());
}

async function until(cond: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("storage redis: remote workers without shared storage", () => {
  it("a worker process with a different, private run directory: the driver collects every trajectory exactly once", async () => {
    const tasks = Array.from({ length: 4 }, (_, i) => fakeTask(`rem-${i}`));
    const spec = await newRun("remote", tasks);
    // What the worker's machine sees as the run directory: a private, empty one (nothing shared).
    const privateDir = path.join(tmp, "worker-machine", "remote");
    fs.mkdirSync(privateDir, { recursive: true });
    await submitRun(redis, queues, { ...spec, runDir: privateDir }, tasks);
    const child = spawnFakeWorker(server.url, { FAKE_DELAY_MS: "200", CONCURRENCY: "4" }, privateDir);
    const collector = new RunCollector(redis, spec);
    try {
      await waitForLine(child, "ready");
      const st = await waitForRun(redis, queues, spec, tasks, { intervalMs: 100, collector });
      expect(st).toMatchObject({ expected: 12, done: 12, failed: 0 });
      const fin = await collector.finish();
      expect(fin.remaining).toBe(0);
      // re-submitted after the end: nothing runs or streams again
      await submitRun(redis, queues, spec, tasks);
      await new Promise((r) => setTimeout(r, 500));
      expect((await runStatus(redis, spec.runId)).uncollected).toBe(0);
    } finally {
      await collector.close();
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
    expect(filesUnder(privateDir)).toEqual([]);
    expect(fs.existsSync(runPaths(spec.runDir).staging)).toBe(false);
    expectOnePerSample(spec.runDir, tasks, 3);
    const scan = scanShards(runPaths(spec.runDir).shards);
    expect(new Set(scan.shards.map((s) => s.file.replace(/-\d{4}\.jsonl\.gz$/, "")))).toEqual(new Set([collector.writerId]));
    const ts = [...readShards(runPaths(spec.runDir).shards)].map((x) => x.trajectory);
    expect(ts.map((t) => t.id).sort()).toEqual(tasks.flatMap((t) => [0, 1, 2].map((i) => trajectoryId("remote", t.id, i))).sort());
    const m = await writeManifest(spec.runDir);
    expect(m).toMatchObject({ trajectories: 12, resolved: 8, duplicatesDropped: 0, missing: 0 });
    expect(await redis.keys(`${runKeys("remote").staged}*`)).toEqual([]);
    expect(await redis.xlen(runKeys("remote").results)).toBe(0);
    const done = Object.values(await redis.hgetall(runKeys("remote").done)).map((v) => JSON.parse(v) as { shard: string });
    expect(done).toHaveLength(12);
    for (const d of done) expect(d.shard).toMatch(/^stream:\d+-\d+$/);
  });

  it("a retried evaluation finds the staged trajectory in Redis; failures reach RUN/failures through the collector", async () => {
    const tasks = [fakeTask("retry-ok"), fakeTask("retry-bad")];
    const spec = await newRun("evalretry", tasks, { samples: 2, attempts: 3 });
    const attempts = new Map<string, number>();
    const evaluate: EvaluateFn = async (task, t) => {
      const n = (attempts.get(t.id) ?? 0) + 1;
      attempts.set(t.id, n);
      if (task.id === "retry-bad") throw new EnvironmentError("evaluation sandbox gone");
      if (n < 3) throw new EnvironmentError(`flaky evaluation ${n}`);
      return t;
    };
    const starts: string[] = [];
    const w = await inProcessWorker({ onStart: (t, s) => starts.push(`${t.id}#${s}`) }, { evaluate });
    const collector = new RunCollector(redis, spec);
    try {
      await submitRun(redis, queues, { ...spec, runDir: path.join(tmp, "nowhere") }, tasks);
      const st = await waitForRun(redis, queues, spec, tasks, { intervalMs: 100, collector });
      expect(st).toMatchObject({ done: 2, failed: 2, complete: true });
      await collector.finish();
    } finally {
      await collector.close();
      await w.close();
    }
    expect(starts.sort()).toEqual(["retry-bad#0", "retry-bad#1", "retry-ok#0", "retry-ok#1"]); // each episode ran once
    expect([...attempts.values()]).toEqual([3, 3, 3, 3]);
    expectOnePerSample(spec.runDir, [tasks[0]!], 2);
    const m = await writeManifest(spec.runDir);
    expect(m.failures.map((f) => [f.taskId, f.sample, f.stage, f.reason]).sort()).toEqual([
      ["retry-bad", 0, "evaluation", "evaluation sandbox gone"],
      ["retry-bad", 1, "evaluation", "evaluation sandbox gone"],
    ]);
    // the failed samples' trajectories stay staged for a resumed run; the committed ones are gone
    const staged = (await redis.keys(`${runKeys("evalretry").staged}*`)).map((k) => k.slice(runKeys("evalretry").staged.length)).sort();
    expect(staged).toEqual([sampleKey("evalretry", "retry-bad", 0), sampleKey("evalretry", "retry-bad", 1)].sort());
    expect(fs.existsSync(path.join(tmp, "nowhere"))).toBe(false);
  });

  it("commitToStream adds one entry per sample, however often it is called", async () => {
    const task = fakeTask("once");
    const t = fakeTrajectory(task, { id: trajectoryId("once", task.id, 0), resolved: true });
    const key = sampleKey("once", task.id, 0);
    const summary = JSON.stringify({ taskId: task.id, sample: 0, shard: "stream:@ENTRY@" });
    const results = await Promise.all(Array.from({ length: 5 }, () => commitToStream(redis, "once", { key, taskId: task.id, sample: 0, trajectory: t, summary })));
    expect(results.filter((r) => r.committed)).toHaveLength(1);
    expect(new Set(results.map((r) => r.summary)).size).toBe(1);
    expect(JSON.parse(results[0]!.summary).shard).toMatch(/^stream:\d+-\d+$/);
    expect(await redis.xlen(runKeys("once").results)).toBe(1);
    expect(await redis.hget(runKeys("once").successes, task.id)).toBe("1");
  });

  it("a collector that dies after the shard append but before XDEL: the next one loses nothing and writes no copy", async () => {
    const tasks = Array.from({ length: 4 }, (_, i) => fakeTask(`crash-${i}`));
    const spec = await newRun("collcrash", tasks);
    const w = await inProcessWorker({});
    try {
      await submitRun(redis, queues, spec, tasks);
      const st = await waitForRun(redis, queues, spec, tasks, { intervalMs: 100 }); // nobody collects yet
      expect(st).toMatchObject({ done: 12, uncollected: 12 });
    } finally {
      await w.close();
    }
    // The first collector takes 5, then dies with 4 more appended but not deleted from the stream
    // (its lock is never released: it expires).
    const first = new RunCollector(redis, spec, { lockMs: 400 });
    expect(await first.drain({ batch: 5, maxEntries: 5 })).toMatchObject({ collected: 5, remaining: 7 });
    await expect(
      first.drain({
        batch: 4,
        afterAppend: () => {
          throw new Error("killed");
        },
      }),
    ).rejects.toThrow("killed");
    expect(scanShards(runPaths(spec.runDir).shards).entries).toHaveLength(9);
    expect(await redis.xlen(runKeys("collcrash").results)).toBe(7);
    // A new collector (another process): locked out until the dead one's lock expires.
    const second = new RunCollector(redis, spec);
    const locked = await second.drain();
    expect(locked.lockedBy).toBe(first.writerId);
    expect(locked.collected).toBe(0);
    const r = await second.finish({ pollMs: 100 });
    await second.close();
    expect(r).toMatchObject({ collected: 3, duplicates: 4, corrupt: 0, remaining: 0 });
    expectOnePerSample(spec.runDir, tasks, 3);
    const m = await writeManifest(spec.runDir);
    expect(m).toMatchObject({ trajectories: 12, duplicatesDropped: 0, missing: 0 });
    await first.close();
  });

  it("`forager collect` on its own drains the stream into the shards; `forager status` then finds nothing left", async () => {
    const tasks = [fakeTask("cli-a"), fakeTask("cli-b")];
    const spec = await newRun("clicollect", tasks);
    const w = await inProcessWorker({});
    try {
      await submitRun(redis, queues, spec, tasks);
      expect(await waitForRun(redis, queues, spec, tasks, { intervalMs: 100 })).toMatchObject({ done: 6, uncollected: 6 });
    } finally {
      await w.close();
    }
    const cli = path.resolve("bin/forager");
    const c = await run(cli, ["collect", spec.runDir, "--redis", server.url]);
    expect(c.stdout).toMatch(/collected 6 trajectories; 0 left in the stream/);
    expect(c.stdout).toMatch(/trajectories 6\/6 in 1 shard\(s\); duplicates dropped 0/);
    expectOnePerSample(spec.runDir, tasks, 3);
    const st = JSON.parse((await run(cli, ["status", spec.runDir, "--redis", server.url, "--json"])).stdout) as {
      storage: string;
      manifest: { trajectories: number };
      live: { uncollected: number; done: number };
      collected: { collected: number; remaining: number };
    };
    expect(st).toMatchObject({ storage: "redis", manifest: { trajectories: 6 }, live: { uncollected: 0, done: 6 }, collected: { collected: 0, remaining: 0 } });
  });

  it("forage (embedded) with storage redis: no staging files, shards written by the collector; resume is a no-op", async () => {
    const file = path.join(tmp, "emb-tasks.jsonl");
    fs.writeFileSync(file, [fakeTask("e-1"), fakeTask("e-2")].map((t) => JSON.stringify(t)).join("\n") + "\n");
    const out = path.join(tmp, "emb-run");
    const progress: number[] = [];
    const res = await forage({
      taskFiles: [file],
      samples: 3,
      out,
      runId: "embredis",
      storage: "redis",
      policy: { kind: "oracle" },
      worker: { concurrency: 4, rollout: fakeRollout({ delayMs: 20 }), ...FAST },
      progressMs: 50,
      onProgress: (s) => progress.push(s.uncollected),
    });
    expect(res.spec.storage).toBe("redis");
    expect(res.summary).toMatchObject({ expected: 6, trajectories: 6, failed: 0, duplicatesDropped: 0 });
    expect(JSON.parse(fs.readFileSync(path.join(out, "run.json"), "utf8")).storage).toBe("redis");
    expect(fs.existsSync(runPaths(out).staging)).toBe(false);
    expect(scanShards(runPaths(out).shards).shards.every((s) => s.file.startsWith("collect-"))).toBe(true);
    const starts: string[] = [];
    const again = await resume(out, { worker: { concurrency: 2, rollout: fakeRollout({ onStart: (t) => starts.push(t.id) }), ...FAST }, progressMs: 50 });
    expect(starts).toEqual([]);
    expect(again.summary).toMatchObject({ trajectories: 6, duplicatesDropped: 0 });
  });
});

describe("worker shutdown (close with a grace period)", () => {
  it("running episodes finish within the grace period; no new jobs are taken", async () => {
    const tasks = [fakeTask("grace-a")];
    const spec = await newRun("grace", tasks, { samples: 2 });
    const w = await inProcessWorker({ delayMs: 1500 }, { concurrency: 2 });
    await submitRun(redis, queues, spec, tasks);
    await until(async () => (await redis.hlen(runKeys("grace").running)) === 2, "2 episodes running");
    const t0 = Date.now();
    await w.close({ graceMs: 20_000 });
    expect(Date.now() - t0).toBeLessThan(5000);
    // Both episodes were staged; their evaluations were not taken by the closing worker.
    expect(await redis.keys(`${runKeys("grace").staged}*`)).toHaveLength(2);
    expect(await redis.hlen(runKeys("grace").done)).toBe(0);
    expect(await queues.evals.getJobState(jobIds.evaluation("grace", "grace-a", 0))).toBe("waiting");
    const st = await runStatus(redis, "grace");
    expect(st).toMatchObject({ attemptErrors: 0, failed: 0, inFlight: 0, evaluating: 0 });
    const starts: string[] = [];
    const w2 = await inProcessWorker({ onStart: (t, s) => starts.push(`${t.id}#${s}`) });
    const collector = new RunCollector(redis, spec);
    try {
      await waitForRun(redis, queues, spec, tasks, { intervalMs: 100, collector });
      await collector.finish();
    } finally {
      await collector.close();
      await w2.close();
    }
    expect(starts).toEqual([]);
    expectOnePerSample(spec.runDir, tasks, 2);
  });

  it("past the grace period (or on a forced close) episodes are aborted and their jobs go back to waiting, no attempt used", async () => {
    const tasks = [fakeTask("abort-a")];
    const spec = await newRun("abort", tasks, { samples: 3, attempts: 1 });
    const w = await inProcessWorker({ delayMs: 60_000, turns: 200 }, { concurrency: 2 });
    await submitRun(redis, queues, spec, tasks);
    await until(async () => (await redis.hlen(runKeys("abort").running)) === 2, "2 episodes running");
    const t0 = Date.now();
    await w.close({ graceMs: 300 });
    expect(Date.now() - t0).toBeLessThan(3000);
    const st = await runStatus(redis, "abort");
    expect(st).toMatchObject({ attemptErrors: 0, failed: 0, inFlight: 0, done: 0 });
    const states = await Promise.all([0, 1, 2].map((i) => queues.rollouts.getJobState(jobIds.rollout("abort", "abort-a", i))));
    expect(states.sort()).toEqual(["waiting", "waiting", "waiting"]);
    for (const i of [0, 1, 2]) expect((await queues.rollouts.getJob(jobIds.rollout("abort", "abort-a", i)))!.attemptsMade).toBe(0);

    // A forced close on top of a graceful one: aborted at once.
    const w2 = await inProcessWorker({ delayMs: 60_000, turns: 200 }, { concurrency: 3 });
    await until(async () => (await redis.hlen(runKeys("abort").running)) === 3, "3 episodes running");
    const t1 = Date.now();
    const graceful = w2.close({ graceMs: 60_000 });
    await new Promise((r) => setTimeout(r, 200));
    await w2.close({ force: true });
    await graceful;
    expect(Date.now() - t1).toBeLessThan(3000);
    expect(await runStatus(redis, "abort")).toMatchObject({ attemptErrors: 0, failed: 0, inFlight: 0 });

    // With a single attempt per job, a shutdown that had used one would have failed the samples.
    const w3 = await inProcessWorker({});
    const collector = new RunCollector(redis, spec);
    try {
      expect(await waitForRun(redis, queues, spec, tasks, { intervalMs: 100, collector })).toMatchObject({ done: 3, failed: 0 });
      await collector.finish();
    } finally {
      await collector.close();
      await w3.close();
    }
    expectOnePerSample(spec.runDir, tasks, 3);
  });
});
