/**
 * Chaos run with real episodes (oracle policy, tiny created task, real Docker, real Redis and
 * BullMQ): worker processes are SIGKILLed in the middle of episodes and Redis is restarted during
 * the run. Prints the figures (one JSON line last): trajectories expected / written / duplicated,
 * failed samples, containers leaked, kills, Redis restarts.
 *
 *   npx tsx test/chaos/forage-chaos.ts [--tasks N] [--samples K] [--kills N] [--workers N]
 *
 * Pass criteria: written = expected, duplicated = 0 after dedup by id (copies on disk are
 * counted as `duplicatesOnDisk`), failed = 0, leaked = 0.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { dockerClient } from "../../sandbox/docker";
import { LABELS } from "../../sandbox/config";
import { startRedisServer } from "../../orchestrator/redis-server";
import { closeQueues, openQueues, submitRun, waitForRun, writeManifest, writeRunFiles } from "../../orchestrator/run";
import { RunSpecSchema, runKeys, runPaths } from "../../orchestrator/spec";
import { scanShards } from "../../orchestrator/storage";
import { redisConnection } from "../../orchestrator/worker";
import { TaskSchema } from "../../tasks/schema";
import { tinyTask } from "../helpers/tasks";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    tasks: { type: "string", default: "4" },
    samples: { type: "string", default: "3" },
    kills: { type: "string", default: "2" },
    workers: { type: "string", default: "2" },
    concurrency: { type: "string", default: "3" },
    keep: { type: "boolean", default: false },
  },
});
const N = Number(values.tasks);
const K = Number(values.samples);
const KILLS = Number(values.kills);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const tiny = await tinyTask();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-chaos-"));
const runDir = path.join(tmp, "run");
const runId = `chaos-${Date.now().toString(36)}`;
const tasks = Array.from({ length: N }, (_, i) => TaskSchema.parse({ ...tiny.task, id: `${tiny.task.id}-chaos${i}` }));
const spec = RunSpecSchema.parse({
  runId,
  runDir,
  createdAt: new Date().toISOString(),
  samples: K,
  policy: { kind: "oracle" },
  images: Object.fromEntries(tasks.map((t) => [t.id, tiny.image])),
  backoffMs: 500,
});
await writeRunFiles(spec, tasks);

let redisServer = await startRedisServer({ dir: path.join(tmp, "redis") });
const url = redisServer.url;
const redis = redisConnection(url);
const queues = openQueues(url);
const workers = new Set<ChildProcess>();
const pids: number[] = [];

function startWorkerProcess(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(here, "worker.ts")], {
    env: { ...process.env, REDIS_URL: url, IMAGE: tiny.image, CONCURRENCY: values.concurrency, LOCK_MS: "5000", FORAGER_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  workers.add(child);
  pids.push(child.pid!);
  child.once("exit", () => workers.delete(child));
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => d.toString().includes("ready") && resolve(child));
    child.once("exit", (c) => reject(new Error(`worker exited ${c}`)));
  });
}

const started = performance.now();
for (let i = 0; i < Number(values.workers); i++) await startWorkerProcess();
await submitRun(redis, queues, spec, tasks);
const log = (s: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${s}`);

let kills = 0;
let killedInFlight = 0;
let restarts = 0;
const expected = N * K;
for (let k = 0; k < KILLS; k++) {
  // wait for episodes in flight (and not all done), kill -9 the first live worker, start another
  for (let i = 0; i < 600; i++) {
    const running = await redis.hlen(runKeys(runId).running);
    if (running >= 2 || (await redis.hlen(runKeys(runId).done)) >= expected) break;
    await sleep(50);
  }
  const victim = [...workers][0];
  if (!victim) break;
  const marks = Object.values(await redis.hgetall(runKeys(runId).running));
  const inFlight = marks.filter((v) => v.split(" ")[0]!.endsWith(`:${victim.pid}`)).length;
  victim.kill("SIGKILL");
  await new Promise((r) => victim.once("exit", r));
  kills++;
  killedInFlight += inFlight;
  log(`kill -9 worker ${victim.pid} with ${inFlight} episode(s) in flight`);
  await startWorkerProcess();
  if (k === 0) {
    await sleep(1500);
    await redisServer.stop();
    log("redis-server stopped");
    await sleep(2000);
    redisServer = await startRedisServer({ dir: path.join(tmp, "redis"), port: redisServer.port });
    restarts++;
    log("redis-server restarted");
  }
}

const status = await waitForRun(redis, queues, spec, tasks, {
  intervalMs: 1000,
  reconcileMs: 10_000,
  onProgress: (s) => process.stdout.write(`\r  done ${s.done}/${s.expected} in flight ${s.inFlight} failed ${s.failed}   `),
});
process.stdout.write("\n");
log(`run complete: done ${status.done}, failed ${status.failed}`);
for (const w of workers) w.kill("SIGTERM");
await Promise.all([...workers].map((w) => new Promise((r) => w.once("exit", r))));
await sleep(1000);

const scan = scanShards(runPaths(runDir).shards);
const manifest = await writeManifest(runDir);
const perSample = new Map<string, number>();
for (const e of scan.entries) perSample.set(`${e.taskId}#${e.sample}`, (perSample.get(`${e.taskId}#${e.sample}`) ?? 0) + 1);
const leaked = (await dockerClient().listContainers({ all: true, filters: { label: [LABELS.forager] } })).filter((c) => pids.includes(Number(c.Labels?.[LABELS.ownerPid])));
const figures = {
  runs: 1,
  tasks: N,
  samples: K,
  kills,
  episodesInFlightAtKills: killedInFlight,
  redisRestarts: restarts,
  trajectoriesExpected: expected,
  trajectoriesWritten: scan.entries.length,
  samplesWithOneTrajectory: [...perSample.values()].filter((n) => n === 1).length,
  duplicatesOnDisk: scan.duplicates,
  failed: status.failed,
  resolved: manifest.resolved,
  containersLeaked: leaked.length,
  wallSeconds: Math.round((performance.now() - started) / 100) / 10,
};
await closeQueues(queues);
redis.disconnect();
await redisServer.stop();
if (!values.keep) fs.rmSync(tmp, { recursive: true, force: true });
const ok = figures.trajectoriesWritten === expected && figures.samplesWithOneTrajectory === expected && figures.failed === 0 && figures.containersLeaked === 0;
console.log(ok ? "PASS" : "FAIL");
console.log(JSON.stringify(figures));
process.exit(ok ? 0 : 1);
