/**
 * Queues and workers with a fake rollout, real Redis (a private redis-server) and real BullMQ:
 * idempotent job ids, stop-after-M, retries and failure reasons, a SIGKILLed worker process
 * (stalled jobs picked up again), a Redis restart mid-run, the global request semaphore, and
 * the embedded forage driver (bad task lines reported, the good ones run; resume).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { UnrecoverableError } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EnvironmentError } from "../lib/errors";
import { fakeRollout, fakeTask, keepEvaluation, type FakeRolloutOptions } from "../orchestrator/fake";
import { forage, resume } from "../orchestrator/forage";
import { startRedisServer, type RedisServerHandle } from "../orchestrator/redis-server";
import { closeQueues, openQueues, readFailures, submitRun, waitForRun, writeManifest, writeRunFiles, type StageQueues } from "../orchestrator/run";
import { RedisSemaphore } from "../orchestrator/semaphore";
import { RunSpecSchema, runKeys, runPaths, type RunSpecInput } from "../orchestrator/spec";
import { scanShards } from "../orchestrator/storage";
import { redisConnection, startWorker, type ForagerWorker } from "../orchestrator/worker";
import type { Task } from "../tasks/schema";
import { spawnFakeWorker, waitForLine } from "./helpers/fake-worker";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-orch-queue-"));
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

async function newRun(runId: string, tasks: Task[], extra: Partial<RunSpecInput> = {}) {
  const spec = RunSpecSchema.parse({ runId, runDir: path.join(tmp, runId), createdAt: new Date().toISOString(), samples: 3, policy: { kind: "oracle" }, backoffMs: 50, ...extra });
  await writeRunFiles(spec, tasks);
  return spec;
}

function worker(fake: FakeRolloutOptions, extra: { concurrency?: number } = {}): Promise<ForagerWorker> {
  return startWorker({ redisUrl: server.url, concurrency: extra.concurrency ?? 8, rollout: fakeRollout(fake), ...FAST });
}

/** Every (task, sample) exactly once in the shards. */
function expectOnePerSample(runDir: string, tasks: Task[], samples: number): void {
  const scan = scanShards(runPaths(runDir).shards);
  const want = tasks.flatMap((t) => Array.from({ length: samples }, (_, i) => `${t.id}#${i}`)).sort();
  expect(scan.entries.map((e) => `${e.taskId}#${e.sample}`).sort()).toEqual(want);
}

describe("orchestrator queues (fake rollouts, real Redis and BullMQ)", () => {
  it("runs tasks × K once each; a re-submission yields no second trajectory", async () => {
    const tasks = [fakeTask("q-a"), fakeTask("q-b"), fakeTask("q/c:with odd chars")];
    const spec = await newRun("idem", tasks);
    const starts: string[] = [];
    const w = await worker({ delayMs: 20, onStart: (t, s) => starts.push(`${t.id}#${s}`) });
    try {
      await submitRun(redis, queues, spec, tasks);
      await submitRun(redis, queues, spec, tasks); // re-submitted while running
      const st = await waitForRun(redis, queues, spec, tasks, { intervalMs: 100 });
      expect(st).toMatchObject({ expected: 9, done: 9, failed: 0, skipped: 0, complete: true, turns: 36 });
      await submitRun(redis, queues, spec, tasks); // re-submitted after the end
      await new Promise((r) => setTimeout(r, 500));
      expect(await waitForRun(redis, queues, spec, tasks, { intervalMs: 100 })).toMatchObject({ done: 9 });
    } finally {
      await w.close();
    }
    expect(starts.sort()).toEqual(tasks.flatMap((t) => [0, 1, 2].map((i) => `${t.id}#${i}`)).sort());
    expectOnePerSample(spec.runDir, tasks, 3);
    const m = await writeManifest(spec.runDir);
    expect(m).toMatchObject({ trajectories: 9, resolved: 6, duplicatesDropped: 0, missing: 0 });
    expect(m.metrics["pass@1"]).toBeCloseTo(2 / 3, 10);
    expect(m.metrics["pass@3"]).toBe(1);
    expect(fs.readdirSync(runPaths(spec.runDir).staging)).toEqual([]);
  });

  it("stops a task after M resolved samples", async () => {
    const tasks = [fakeTask("m-a"), fakeTask("m-b")];
    const spec = await newRun("stopm", tasks, { samples: 6, stopAfterSuccesses: 1 });
    const w = await worker({ resolved: (t) => t.id === "m-a" }, { concurrency: 1 });
    try {
      await submitRun(redis, queues, spec, tasks);
      const st = await waitForRun(redis, queues, spec, tasks, { intervalMs: 100 });
      expect(st.complete).toBe(true);
      expect(st.skipped).toBeGreaterThan(0);
      expect(st.done + st.skipped).toBe(12);
    } finally {
      await w.close();
    }
    const byTask = scanShards(runPaths(spec.runDir).shards).entries.reduce<Record<string, number>>((m, e) => ({ ...m, [e.taskId]: (m[e.taskId] ?? 0) + 1 }), {});
    expect(byTask["m-b"]).toBe(6);
    expect(byTask["m-a"]).toBeLessThan(6);
  });

  it("retries environment errors with backoff; keeps the reason of jobs that finally fail", async () => {
    const tasks = [fakeTask("r-flaky"), fakeTask("r-broken"), fakeTask("r-bad")];
    const spec = await newRun("retry", tasks, { samples: 2, attempts: 3 });
    const w = await worker({
      fail: (t, _s, attempt) =>
        t.id === "r-flaky" && attempt < 2 ? new EnvironmentError(`docker hiccup ${attempt}`)
        : t.id === "r-broken" ? new EnvironmentError("engine gone")
        : t.id === "r-bad" ? new UnrecoverableError("task cannot be set up")
        : undefined,
    });
    try {
      await submitRun(redis, queues, spec, tasks);
      const st = await waitForRun(redis, queues, spec, tasks, { intervalMs: 100 });
      expect(st).toMatchObject({ done: 2, failed: 4, complete: true });
      expect(st.attemptErrors).toBe(2 * 2 + 2 * 3 + 2 * 1);
    } finally {
      await w.close();
    }
    const failures = readFailures(spec.runDir);
    expect(failures.map((f) => [f.taskId, f.sample, f.stage, f.reason, f.attempts]).sort()).toEqual([
      ["r-bad", 0, "rollout", "task cannot be set up", 1],
      ["r-bad", 1, "rollout", "task cannot be set up", 1],
      ["r-broken", 0, "rollout", "engine gone", 3],
      ["r-broken", 1, "rollout", "engine gone", 3],
    ]);
    const m = await writeManifest(spec.runDir);
    expect(m.failures).toHaveLength(4);
    expect(m.trajectories).toBe(2);
    // failed BullMQ jobs keep their reason too
    const job = await queues.rollouts.getJob(`roll.retry.${(await import("../orchestrator/spec")).taskKey("r-broken")}.0`);
    expect(job?.failedReason).toBe("engine gone");
  });

  it("a SIGKILLed worker process: its stalled jobs are picked up again, one trajectory per sample", async () => {
    const tasks = Array.from({ length: 4 }, (_, i) => fakeTask(`kill-${i}`));
    const spec = await newRun("kill9", tasks, { samples: 3 });
    await submitRun(redis, queues, spec, tasks);
    const child = spawnFakeWorker(server.url, { FAKE_DELAY_MS: "3000", CONCURRENCY: "6" });
    await waitForLine(child, "ready");
    // wait until the child has episodes in flight, then kill it
    for (let i = 0; i < 100 && Number(await redis.hlen(runKeys("kill9").running)) < 6; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await redis.hlen(runKeys("kill9").running)).toBe(6);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const w = await worker({ delayMs: 100 });
    try {
      const st = await waitForRun(redis, queues, spec, tasks, { intervalMs: 100 });
      expect(st).toMatchObject({ done: 12, failed: 0 });
    } finally {
      await w.close();
    }
    expectOnePerSample(spec.runDir, tasks, 3);
    expect((await writeManifest(spec.runDir)).duplicatesDropped).toBe(0);
  });

  it("Redis restarted during a run: workers reconnect, the run completes, nothing is lost", async () => {
    const tasks = Array.from({ length: 4 }, (_, i) => fakeTask(`rr-${i}`));
    const dir = path.join(tmp, "redis-rr");
    let own = await startRedisServer({ dir });
    const r = redisConnection(own.url);
    const q = openQueues(own.url);
    const spec = await newRun("rrestart", tasks, { samples: 4 });
    const w = await startWorker({ redisUrl: own.url, concurrency: 4, rollout: fakeRollout({ delayMs: 400 }), ...FAST });
    try {
      await submitRun(r, q, spec, tasks);
      for (let i = 0; i < 100 && Number(await r.hlen(runKeys("rrestart").done)) < 3; i++) await new Promise((res) => setTimeout(res, 50));
      await own.stop(); // SHUTDOWN with the AOF (appendfsync always)
      await new Promise((res) => setTimeout(res, 1500));
      own = await startRedisServer({ dir, port: own.port });
      const st = await waitForRun(r, q, spec, tasks, { intervalMs: 200, reconcileMs: 3000 });
      expect(st).toMatchObject({ done: 16, failed: 0 });
    } finally {
      await w.close();
      await closeQueues(q);
      r.disconnect();
      await own.stop();
    }
    expectOnePerSample(spec.runDir, tasks, 4);
  });

  it("closes its queues when Redis died under a command waiting in the offline queue", async () => {
    // The CI failure of `forager view --redis`: Bull Board's poll sat in ioredis' offline queue
    // when Redis went away, and BullMQ's close (QUIT queued behind it) never returned.
    const dir = path.join(tmp, "redis-gone");
    const own = await startRedisServer({ dir });
    const q = openQueues(own.url);
    for (const x of [q.images, q.rollouts, q.evals]) x.on("error", () => undefined);
    await q.rollouts.getJobCounts();
    await own.stop({ kill: true });
    const waiting = q.rollouts.getJobCounts().then(
      () => "answered",
      (e: Error) => e.message,
    );
    await new Promise((res) => setTimeout(res, 300));
    const closed = closeQueues(q, 500).then(() => "closed");
    const hung = new Promise((res) => setTimeout(() => res("hung"), 20_000));
    expect(await Promise.race([closed, hung])).toBe("closed");
    expect(await waiting).toBe("Connection is closed.");
  });

  it("limits concurrent model requests globally with a Redis semaphore", async () => {
    const sem = new RedisSemaphore(redis, "test-endpoint", { limit: 3 });
    const otherConn = redisConnection(server.url);
    const other = new RedisSemaphore(otherConn, "test-endpoint", { limit: 3 });
    let now = 0;
    let max = 0;
    try {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 ? sem : other).use(async () => {
            max = Math.max(max, ++now);
            await new Promise((r) => setTimeout(r, 20));
            now--;
          }),
        ),
      );
    } finally {
      otherConn.disconnect(); // every command on it was awaited above
    }
    expect(max).toBe(3);
    expect(await sem.holders()).toBe(0);
    // an expired lease (a dead holder) frees its slot
    const stale = new RedisSemaphore(redis, "stale", { limit: 1, leaseMs: 100 });
    expect(await stale.tryAcquire()).toBeTruthy();
    expect(await stale.tryAcquire()).toBeUndefined();
    await new Promise((r) => setTimeout(r, 150));
    expect(await stale.tryAcquire()).toBeTruthy();
  });

  it("forage (embedded): private Redis, in-process workers, bad task lines reported, summary; resume is a no-op", async () => {
    const file = path.join(tmp, "forage-tasks.jsonl");
    fs.writeFileSync(file, [JSON.stringify(fakeTask("f-1")), "garbage", JSON.stringify({ id: "f-2" }), JSON.stringify(fakeTask("f-3"))].join("\n") + "\n");
    const out = path.join(tmp, "forage-run");
    const errors: string[] = [];
    const progress: string[] = [];
    const res = await forage({
      taskFiles: [file],
      samples: 4,
      out,
      runId: "emb",
      policy: { kind: "oracle" },
      worker: { concurrency: 4, rollout: fakeRollout({ delayMs: 20 }), ...FAST },
      progressMs: 100,
      onTaskErrors: (e) => errors.push(...e.map((x) => `${x.line}`)),
      onProgress: (s) => progress.push(`${s.done}`),
    });
    expect(errors).toEqual(["2", "3"]);
    expect(res.summary).toMatchObject({ tasks: 2, expected: 8, trajectories: 8, resolved: 4, failed: 0, taskErrors: 2 });
    expect(res.summary!.metrics).toEqual({ "pass@1": 0.5, "pass@4": 1 });
    expect(fs.existsSync(path.join(out, "redis", "appendonlydir"))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(out, "summary.json"), "utf8")).trajectories).toBe(8);
    const starts: string[] = [];
    const again = await resume(out, { worker: { concurrency: 2, rollout: fakeRollout({ onStart: (t) => starts.push(t.id) }), ...FAST }, progressMs: 100 });
    expect(starts).toEqual([]);
    expect(again.summary).toMatchObject({ trajectories: 8, duplicatesDropped: 0 });
    await expect(forage({ taskFiles: [file], samples: 1, out, policy: { kind: "oracle" } })).rejects.toThrow(/already holds a run/);
  });

  it("forage --instances: only the chosen tasks run; an unknown id or no task at all refuses before any run directory", async () => {
    const file = path.join(tmp, "forage-some.jsonl");
    fs.writeFileSync(file, ["s-1", "s-2", "s-3"].map((id) => JSON.stringify(fakeTask(id))).join("\n") + "\n");
    const started: string[] = [];
    const out = path.join(tmp, "forage-some-run");
    const res = await forage({
      taskFiles: [file],
      instances: ["s-3", "s-1"],
      samples: 2,
      out,
      runId: "some",
      policy: { kind: "oracle" },
      worker: { concurrency: 2, rollout: fakeRollout({ onStart: (t) => started.push(t.id) }), ...FAST },
      progressMs: 100,
    });
    expect(res.summary).toMatchObject({ tasks: 2, expected: 4, trajectories: 4 });
    expect([...new Set(started)].sort()).toEqual(["s-1", "s-3"]);
    const bad = path.join(tmp, "forage-bad-run");
    await expect(forage({ taskFiles: [file], instances: ["s-1", "s-9"], samples: 1, out: bad, policy: { kind: "oracle" } })).rejects.toThrow(/unknown instance id\(s\).*s-9/);
    const empty = path.join(tmp, "forage-empty.jsonl");
    fs.writeFileSync(empty, "");
    await expect(forage({ taskFiles: [empty], samples: 1, out: bad, policy: { kind: "oracle" } })).rejects.toThrow(/no task to run .*empty/);
    expect(fs.existsSync(bad)).toBe(false);
  });
});
