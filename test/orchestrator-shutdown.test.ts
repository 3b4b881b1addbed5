/**
 * `forager worker` (bin/forager, a child process) on SIGTERM / SIGINT, against a private
 * redis-server, with real episodes in Docker (the tiny task): the running episode finishes
 * within the grace period; past it (or on a second signal) it is aborted and its job goes back to
 * the queue without using an attempt. Every time: exit status 0, no container left. The runs use
 * storage "redis", so the worker writes no file of the run.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fakeRollout, keepEvaluation } from "../orchestrator/fake";
import { startRedisServer, type RedisServerHandle } from "../orchestrator/redis-server";
import { hasStagedRedis, RunCollector } from "../orchestrator/redis-storage";
import { closeQueues, openQueues, runStatus, submitRun, waitForRun, writeRunFiles, type StageQueues } from "../orchestrator/run";
import { jobIds, RunSpecSchema, runKeys, runPaths, sampleKey, type RunSpec, type RunSpecInput } from "../orchestrator/spec";
import { readShards } from "../orchestrator/storage";
import { redisConnection, startWorker } from "../orchestrator/worker";
import { dockerClient } from "../sandbox/docker";
import { startScriptedServer, type ScriptedServer } from "./helpers/scripted-server";
import { tinyTask, type TinyTask } from "./helpers/tasks";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-orch-shutdown-"));
let server: RedisServerHandle;
let redis: Redis;
let queues: StageQueues;
let tiny: TinyTask;
let slow: ScriptedServer;

beforeAll(async () => {
  tiny = await tinyTask();
  server = await startRedisServer({ dir: path.join(tmp, "redis") });
  redis = redisConnection(server.url);
  queues = openQueues(server.url);
  slow = await startScriptedServer({ handler: () => ({ text: "thinking", delayMs: 120_000 }) });
});
afterAll(async () => {
  await slow.close();
  await closeQueues(queues);
  redis.disconnect();
  await server.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function newRun(runId: string, extra: Partial<RunSpecInput> = {}): Promise<RunSpec> {
  const spec = RunSpecSchema.parse({
    runId,
    runDir: path.join(tmp, runId),
    createdAt: new Date().toISOString(),
    samples: 1,
    policy: { kind: "oracle" },
    images: { [tiny.task.id]: tiny.image },
    storage: "redis",
    backoffMs: 100,
    ...extra,
  });
  await writeRunFiles(spec, [tiny.task]);
  await submitRun(redis, queues, spec, [tiny.task]);
  return spec;
}

interface Cli {
  child: ChildProcess;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startCliWorker(args: string[]): Cli {
  const child = spawn(path.resolve("bin/forager"), ["worker", "--redis", server.url, "--concurrency", "1", ...args], {
    env: { ...process.env, FORAGER_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  child.stdout!.on("data", () => undefined);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return { child, stderr: () => err, exit };
}

async function until(cond: () => Promise<boolean> | boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Containers of a run (AutoRemove may take a moment: polled for up to 10 s until none). */
async function runContainers(runId: string): Promise<number> {
  let n = 0;
  for (let i = 0; i < 20; i++) {
    n = (await dockerClient().listContainers({ all: true, filters: { label: [`forager.run=${runId}`] } })).length;
    if (n === 0) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  return n;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

/** Finish a run in this process (fake rollouts, evaluation kept) and collect it. */
async function finishRun(spec: RunSpec): Promise<void> {
  const w = await startWorker({ redisUrl: server.url, concurrency: 1, rollout: fakeRollout({}), evaluate: keepEvaluation, reap: false, lockDurationMs: 2000, stalledIntervalMs: 1000 });
  const c = new RunCollector(redis, spec);
  try {
    await waitForRun(redis, queues, spec, [tiny.task], { intervalMs: 100, collector: c });
    await c.finish();
  } finally {
    await c.close();
    await w.close();
  }
}

describe("forager worker: graceful shutdown on SIGTERM / SIGINT (real episodes)", () => {
  it("SIGTERM while an episode runs: it finishes, no new job is taken, exit 0, no container left", async () => {
    const spec = await newRun("sd-graceful");
    const key = sampleKey(spec.runId, tiny.task.id, 0);
    const cli = startCliWorker(["--grace-seconds", "60"]);
    await until(async () => (await redis.hlen(runKeys(spec.runId).running)) === 1, "the episode to start");
    expect(await hasStagedRedis(redis, spec.runId, key)).toBe(false); // still running at the signal
    cli.child.kill("SIGTERM");
    const exit = await withTimeout(cli.exit, 60_000, "worker exit");
    expect(exit, cli.stderr()).toEqual({ code: 0, signal: null });
    expect(cli.stderr()).toMatch(/SIGTERM: taking no new jobs/);
    // The episode was finished and staged; its evaluation was left for another worker.
    expect(await hasStagedRedis(redis, spec.runId, key)).toBe(true);
    expect(await queues.evals.getJobState(jobIds.evaluation(spec.runId, tiny.task.id, 0))).toBe("waiting");
    expect(await runStatus(redis, spec.runId)).toMatchObject({ attemptErrors: 0, failed: 0, inFlight: 0 });
    expect(await runContainers(spec.runId)).toBe(0);
    await finishRun(spec);
    const ts = [...readShards(runPaths(spec.runDir).shards)].map((x) => x.trajectory);
    expect(ts).toHaveLength(1);
    expect(ts[0]!.endReason).toBe("final_answer"); // the oracle's episode, not a re-run by the fake
  });

  it("past the grace period the episode is aborted, its job goes back to the queue (no attempt used); exit 0, no container left", async () => {
    const spec = await newRun("sd-grace-over", { attempts: 1, policy: { kind: "http", endpoints: [{ url: slow.url }] } });
    const before = slow.counts.total;
    const cli = startCliWorker(["--grace-seconds", "1"]);
    await until(() => slow.counts.total > before, "a model request");
    const t0 = Date.now();
    cli.child.kill("SIGTERM");
    const exit = await withTimeout(cli.exit, 30_000, "worker exit");
    expect(exit, cli.stderr()).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(15_000);
    const job = await queues.rollouts.getJob(jobIds.rollout(spec.runId, tiny.task.id, 0));
    expect(await job!.getState()).toBe("waiting");
    expect(job!.attemptsMade).toBe(0);
    expect(await runStatus(redis, spec.runId)).toMatchObject({ attemptErrors: 0, failed: 0, inFlight: 0 });
    expect(await runContainers(spec.runId)).toBe(0);
    await finishRun(spec); // one attempt per job: it would have failed if the shutdown had used it
    expect([...readShards(runPaths(spec.runDir).shards)]).toHaveLength(1);
  });

  it("a second signal aborts the running episode at once; exit 0, no container left", async () => {
    const spec = await newRun("sd-twice", { policy: { kind: "http", endpoints: [{ url: slow.url }] } });
    const before = slow.counts.total;
    const cli = startCliWorker(["--grace-seconds", "600"]);
    await until(() => slow.counts.total > before, "a model request");
    const t0 = Date.now();
    cli.child.kill("SIGTERM");
    await until(() => /taking no new jobs/.test(cli.stderr()), "the first signal's message", 10_000);
    cli.child.kill("SIGINT");
    const exit = await withTimeout(cli.exit, 30_000, "worker exit");
    expect(exit, cli.stderr()).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(cli.stderr()).toMatch(/SIGINT again: aborting/);
    expect(await queues.rollouts.getJobState(jobIds.rollout(spec.runId, tiny.task.id, 0))).toBe("waiting");
    expect(await runContainers(spec.runId)).toBe(0);
    await finishRun(spec);
  });
});
