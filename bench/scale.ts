/**
 * scale, simulated: rollout jobs through the real pipeline (a private redis-server on a free
 * loopback port, real BullMQ queues, real stage workers from orchestrator/worker.ts startWorker,
 * real storage) with fake rollouts (orchestrator/fake.ts: no Docker, no model; the trajectory's
 * turns are scripted text) in SEVERAL worker processes (child processes of this one).
 *
 * Phases, each on a fresh Redis:
 * 1. queue: `--queue-jobs` rollout jobs added to the rollouts queue (the options a worker uses),
 *    nothing consuming them: Redis `used_memory` delta per queued job, bytes.
 * 2. pipeline "shared": a run of `--jobs` samples (tasks × K) submitted with submitRun (image jobs
 *    → K rollouts each → evaluations → commit to the workers' shards + `done` record), `--workers`
 *    processes × `--concurrency` rollout slots; oracle-sized trajectories (4 turns). Jobs per
 *    second (whole Redis, per worker process), Redis memory per finished sample, shard bytes per
 *    trajectory (gzip members / count).
 * 3. pipeline "redis": the same, storage "redis" (trajectories staged in Redis, committed to the
 *    run's results stream), then one collector (RunCollector, this process) drains the stream into
 *    shards: Redis memory per uncollected trajectory, collector trajectories/s and CPU per trajectory.
 * 4. long: `--long-jobs` samples of `--long-turns`-turn trajectories (default 128) with long
 *    observations (`--obs-bytes` of varied text per turn: listings, source lines, test output),
 *    storage "redis" + collector: shard bytes, stream memory and collector cost per long trajectory.
 *
 * Redis runs as forage's embedded one does (AOF, appendfsync always) unless `--appendfsync` says.
 * Figures (units in the names) end the output as one JSON line.
 *
 *   npm run bench -- scale [--jobs 100000] [--queue-jobs 100000] [--workers 3] [--concurrency 64]
 *                          [--samples 50] [--long-jobs 1000] [--long-turns 128] [--obs-bytes 2048]
 *                          [--appendfsync always|everysec|no]
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { TrajectorySchema, type Trajectory } from "../agent/trajectory";
import { fakeRollout, fakeTask, fakeTrajectory, keepEvaluation } from "../orchestrator/fake";
import { RunCollector } from "../orchestrator/redis-storage";
import { startRedisServer, type RedisServerHandle } from "../orchestrator/redis-server";
import { closeQueues, openQueues, runStatus, submitRun } from "../orchestrator/run";
import { RunSpecSchema, jobIds, runKeys, runPaths, type StorageMode } from "../orchestrator/spec";
import type { RolloutFn } from "../orchestrator/stages";
import { rng } from "../taskgen/mutate/candidates";
import { redisConnection, startWorker } from "../orchestrator/worker";
import { intFlag, round, stringFlag, unknownFlags, type BenchMain } from "./lib";

const CHILD_ENV = "FORAGER_BENCH_SCALE_WORKER";

/** What a worker process is told (JSON in {@link CHILD_ENV}). */
interface ChildConfig {
  redisUrl: string;
  concurrency: number;
  writerId: string;
  longTurns?: number;
  obsBytes?: number;
}
/** What a worker process reports on stdout when told to stop (one JSON line). */
interface ChildReport {
  rollouts: number;
  evaluations: number;
  /** ms since epoch of its first rollout start and last evaluation end. */
  firstMs: number;
  lastMs: number;
  cpuS: number;
}

// --- deterministic text for long observations -----------------------------------------------------
const WORDS = (
  "def class return self import from if else elif for while in not and or None True False assert raise " +
  "test_ parse value result config path file line error index count total buffer request response token " +
  "module package setup build tests src lib utils core models views handler client server cache session"
).split(" ");

/**
 * About `bytes` of tool output in the shapes an episode sees (a directory listing, numbered
 * source lines, pytest lines), varied by `seed`: it compresses roughly like real tool output
 * (far less than a repeated string would).
 */
export function observationText(seed: number, bytes: number): string {
  const r = rng(seed); // mulberry32: every run writes the same bytes
  const w = () => WORDS[Math.floor(r() * WORDS.length)]!;
  const lines: string[] = [];
  let n = 0;
  const kind = seed % 3;
  for (let i = 1; n < bytes; i++) {
    let line: string;
    if (kind === 0) line = `${w()}/${w()}_${w()}${Math.floor(r() * 100)}.py`;
    else if (kind === 1) line = `${String(i).padStart(5)}\t${"    ".repeat(Math.floor(r() * 3))}${w()} ${w()}_${w()}(${w()}, ${w()}=${Math.floor(r() * 1000)}):`;
    else line = `tests/test_${w()}.py::test_${w()}_${w()} ${r() < 0.8 ? "PASSED" : "FAILED"} [${Math.floor(r() * 100)}%]`;
    lines.push(line);
    n += line.length + 1;
  }
  return lines.join("\n").slice(0, bytes);
}

/** A RolloutFn returning a `turns`-turn trajectory with `obsBytes` of observation per turn. */
function longRollout(turns: number, obsBytes: number): RolloutFn {
  return async (task, sample, ctx) => {
    const actions = Array.from({ length: turns - 1 }, (_, i): [string, string] => [i % 4 === 0 ? "edit" : "bash", i % 4 === 0 ? `src/${task.id}.py` : `pytest -x tests/ -k case_${i}`]);
    const t: Trajectory = fakeTrajectory(task, { id: ctx.trajectoryId, resolved: sample % 2 === 0, actions });
    const base = sample * 1000 + task.id.length * 7919;
    t.turns = t.turns.map((turn, i) => (turn.observation === undefined ? turn : { ...turn, observation: observationText(base + i, obsBytes) }));
    for (let i = 0; i < turns; i++) ctx.onTurn();
    return t;
  };
}

// --- child mode: one worker process ---------------------------------------------------------------
if (process.env[CHILD_ENV]) {
  const cfg = JSON.parse(process.env[CHILD_ENV]) as ChildConfig;
  const rep: ChildReport = { rollouts: 0, evaluations: 0, firstMs: 0, lastMs: 0, cpuS: 0 };
  const inner = cfg.longTurns ? longRollout(cfg.longTurns, cfg.obsBytes ?? 2048) : fakeRollout({ turns: 4 });
  const worker = await startWorker({
    redisUrl: cfg.redisUrl,
    concurrency: cfg.concurrency,
    evalConcurrency: cfg.concurrency,
    reap: false,
    writerId: cfg.writerId,
    image: async () => "bench:stub",
    rollout: async (task, sample, ctx) => {
      rep.firstMs ||= Date.now();
      rep.rollouts++;
      return inner(task, sample, ctx);
    },
    evaluate: async (task, t, ctx) => {
      const r = await keepEvaluation(task, t, ctx);
      rep.evaluations++;
      rep.lastMs = Date.now();
      return r;
    },
  });
  process.stdout.write("ready\n");
  process.once("SIGTERM", () => {
    void worker.close().then(() => {
      const u = process.cpuUsage();
      rep.cpuS = (u.user + u.system) / 1e6;
      process.stdout.write(JSON.stringify(rep) + "\n", () => process.exit(0));
    });
  });
}

interface ChildHandle {
  child: ChildProcess;
  report: Promise<ChildReport>;
}

function startChild(cfg: ChildConfig): Promise<ChildHandle> {
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, ["--import", "tsx", self], { env: { ...process.env, [CHILD_ENV]: JSON.stringify(cfg) }, stdio: ["ignore", "pipe", "inherit"] });
  let buf = "";
  let readyResolve: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  const report = new Promise<ChildReport>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      if (buf.includes("ready\n")) readyResolve();
      const m = /^(\{.*\})$/m.exec(buf);
      if (m) resolve(JSON.parse(m[1]!) as ChildReport);
    });
    child.once("exit", (c) => reject(new Error(`worker process exited (${c}) without a report`)));
  });
  report.catch(() => undefined);
  return Promise.race([ready.then(() => ({ child, report })), report.then(() => Promise.reject(new Error("worker reported before ready")))]);
}

/** Redis INFO memory `used_memory`, bytes. */
async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

/** `MEMORY USAGE key` (all elements sampled), bytes; 0 when the key does not exist. */
async function keyMemory(redis: Redis, key: string): Promise<number> {
  return Number((await redis.call("MEMORY", "USAGE", key, "SAMPLES", "0")) ?? 0);
}

/** Bytes and entries of the gzip shards in a directory. */
function shardBytes(dir: string): { bytes: number; count: number; files: number } {
  if (!fs.existsSync(dir)) return { bytes: 0, count: 0, files: 0 };
  let bytes = 0;
  let count = 0;
  let files = 0;
  for (const f of fs.readdirSync(dir)) {
    if (f.endsWith(".jsonl.gz")) {
      bytes += fs.statSync(path.join(dir, f)).size;
      files++;
    } else if (f.endsWith(".idx.jsonl")) count += fs.readFileSync(path.join(dir, f), "utf8").split("\n").filter(Boolean).length;
  }
  return { bytes, count, files };
}

/** CPU seconds (user + system) of a process from /proc (0 when gone; USER_HZ 100). */
function procCpuSeconds(pid: number | undefined): number {
  try {
    const rest = fs.readFileSync(`/proc/${pid}/stat`, "latin1").split(") ")[1]!.split(" ");
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return 0;
  }
}

const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

interface Env {
  tmp: string;
  appendfsync: "always" | "everysec" | "no";
}

async function withRedis<T>(env: Env, name: string, fn: (srv: RedisServerHandle, redis: Redis) => Promise<T>): Promise<T> {
  const srv = await startRedisServer({ dir: path.join(env.tmp, `redis-${name}`), appendfsync: env.appendfsync });
  const redis = redisConnection(srv.url);
  try {
    return await fn(srv, redis);
  } finally {
    redis.disconnect();
    await srv.stop();
  }
}

/** Phase 1: bytes of Redis per queued rollout job. */
async function queuePhase(env: Env, n: number): Promise<Record<string, number>> {
  return withRedis(env, "queue", async (srv, redis) => {
    const q = openQueues(srv.url);
    try {
      await q.rollouts.waitUntilReady();
      const before = await usedMemory(redis);
      const t0 = performance.now();
      const runId = "scaleq";
      const opts = (jobId: string) => ({ jobId, attempts: 4, backoff: { type: "exponential" as const, delay: 5000 }, removeOnComplete: true, removeOnFail: false });
      for (let i = 0; i < n; i += 1000) {
        const m = Math.min(1000, n - i);
        await q.rollouts.addBulk(
          Array.from({ length: m }, (_, j) => {
            const s = i + j;
            const taskId = `bench-${Math.floor(s / 50)}`;
            return { name: "rollout", data: { runId, taskId, sample: s % 50 }, opts: opts(jobIds.rollout(runId, taskId, s % 50)) };
          }),
        );
      }
      const addS = (performance.now() - t0) / 1000;
      const after = await usedMemory(redis);
      const per = (after - before) / n;
      console.log(`queue:    ${n} rollout jobs queued in ${addS.toFixed(1)} s (${(n / addS).toFixed(0)}/s); used_memory +${((after - before) / 1e6).toFixed(1)} MB = ${per.toFixed(0)} B per queued job`);
      return { queue_jobs_count: n, queue_add_jobs_per_s: round(n / addS, 0), redis_bytes_per_queued_job: round(per, 0) };
    } finally {
      await closeQueues(q);
    }
  });
}

interface PipelineOpts {
  name: string;
  storage: StorageMode;
  jobs: number;
  samples: number;
  workers: number;
  concurrency: number;
  longTurns?: number;
  obsBytes?: number;
}

/** Phases 2–4: a run through the whole pipeline in worker processes (and, for "redis", the collector). */
async function pipelinePhase(env: Env, o: PipelineOpts): Promise<Record<string, number>> {
  return withRedis(env, o.name, async (srv, redis) => {
    const tasksN = Math.max(1, Math.ceil(o.jobs / o.samples));
    const total = tasksN * o.samples;
    const runDir = path.join(env.tmp, `run-${o.name}`);
    const runId = `scale-${o.name}`;
    const spec = RunSpecSchema.parse({ runId, runDir, storage: o.storage, createdAt: new Date().toISOString(), samples: o.samples, policy: { kind: "oracle" }, maxTurns: o.longTurns ?? 4 });
    const tasks = Array.from({ length: tasksN }, (_, i) => fakeTask(`bench-${i}`));
    const q = openQueues(srv.url);
    const children: ChildHandle[] = [];
    const p = `[${o.name}]`.padEnd(10);
    try {
      // Workers first (all idle and connected), so the run is spread over all of them from its start.
      children.push(
        ...(await Promise.all(
          Array.from({ length: o.workers }, (_, i) => startChild({ redisUrl: srv.url, concurrency: o.concurrency, writerId: `w${i}`, longTurns: o.longTurns, obsBytes: o.obsBytes })),
        )),
      );
      const m0 = await usedMemory(redis);
      const r0 = procCpuSeconds(srv.process.pid);
      const t0 = performance.now();
      await submitRun(redis, q, spec, tasks);
      let last = 0;
      for (;;) {
        const st = await runStatus(redis, runId);
        if (st.complete) break;
        if (performance.now() - last > 10_000) {
          last = performance.now();
          console.log(`${p} ${st.done}/${total} done, ${st.inFlight} rollouts running, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      const wall = (performance.now() - t0) / 1000;
      const redisCpu = procCpuSeconds(srv.process.pid) - r0;
      const st = await runStatus(redis, runId);
      if (st.done !== total) throw new Error(`${o.name}: ${st.done} of ${total} samples done (${st.failed} failed)`);
      const m2 = await usedMemory(redis);
      const k = runKeys(runId);
      const doneBytes = await keyMemory(redis, k.done);
      const tasksBytes = await keyMemory(redis, k.tasks);
      // Everything the run left in Redis but its tasks hash (the tasks are counted per task).
      const m1 = m0 + tasksBytes;
      const streamBytes = o.storage === "redis" ? await keyMemory(redis, k.results) : 0;
      for (const c of children) c.child.kill("SIGTERM");
      const reports = await Promise.all(children.map((c) => c.report));
      children.length = 0;
      const perWorker = reports.map((r) => r.evaluations / wall);
      const workerCpu = reports.reduce((a, r) => a + r.cpuS, 0);
      console.log(
        `${p} ${total} samples (${tasksN} tasks × ${o.samples}) in ${wall.toFixed(1)} s: ${(total / wall).toFixed(0)} jobs/s, per worker process ${perWorker.map((x) => x.toFixed(0)).join(", ")} /s; ` +
          `worker CPU ${((1000 * workerCpu) / total).toFixed(2)} ms, redis-server CPU ${((1000 * redisCpu) / total).toFixed(3)} ms per sample (${(redisCpu / wall).toFixed(2)} of a core)`,
      );
      console.log(
        `${p} Redis used_memory: tasks hash ${(tasksBytes / tasksN).toFixed(0)} B per task, finished +${((m2 - m1) / 1e6).toFixed(1)} MB = ${((m2 - m1) / total).toFixed(0)} B per finished sample` +
          ` (done hash ${(doneBytes / total).toFixed(0)} B${o.storage === "redis" ? `, results stream ${(streamBytes / total).toFixed(0)} B` : ""} per sample)`,
      );
      const fig: Record<string, number> = {
        [`${o.name}_jobs_count`]: total,
        [`${o.name}_workers_count`]: o.workers,
        [`${o.name}_wall_s`]: round(wall, 1),
        [`${o.name}_jobs_per_s`]: round(total / wall, 1),
        [`${o.name}_jobs_per_s_per_worker_mean`]: round(perWorker.reduce((a, b) => a + b, 0) / perWorker.length, 1),
        [`${o.name}_worker_cpu_ms_per_job`]: round((1000 * workerCpu) / total, 3),
        [`${o.name}_redis_cpu_ms_per_job`]: round((1000 * redisCpu) / total, 3),
        [`${o.name}_redis_cpu_core_fraction`]: round(redisCpu / wall, 3),
        [`${o.name}_redis_bytes_per_finished_job`]: round((m2 - m1) / total, 0),
        [`${o.name}_redis_done_hash_bytes_per_job`]: round(doneBytes / total, 0),
        [`${o.name}_redis_tasks_hash_bytes_per_task`]: round(tasksBytes / tasksN, 0),
      };
      if (o.storage === "redis") {
        fig[`${o.name}_redis_stream_bytes_per_trajectory`] = round(streamBytes / total, 0);
        const collector = new RunCollector(redis, spec, { writerId: "collect" });
        const c0 = cpuSeconds();
        const t1 = performance.now();
        const r = await collector.drain({ batch: 256 });
        const cWall = (performance.now() - t1) / 1000;
        const cCpu = cpuSeconds() - c0;
        await collector.close();
        if (r.collected !== total) throw new Error(`${o.name}: collector collected ${r.collected} of ${total}`);
        const m3 = await usedMemory(redis);
        console.log(`${p} collector: ${r.collected} trajectories in ${cWall.toFixed(1)} s (${(r.collected / cWall).toFixed(0)}/s), CPU ${((1000 * cCpu) / total).toFixed(3)} ms each; Redis after collection ${((m3 - m1) / total).toFixed(0)} B per sample`);
        fig[`${o.name}_collector_trajectories_per_s`] = round(r.collected / cWall, 0);
        fig[`${o.name}_collector_cpu_ms_per_trajectory`] = round((1000 * cCpu) / total, 3);
        fig[`${o.name}_redis_bytes_per_collected_job`] = round((m3 - m1) / total, 0);
      }
      const sh = shardBytes(runPaths(runDir).shards);
      if (sh.count !== total) throw new Error(`${o.name}: shards hold ${sh.count} of ${total} trajectories`);
      console.log(`${p} shards: ${sh.files} files, ${(sh.bytes / 1e6).toFixed(1)} MB, ${(sh.bytes / sh.count).toFixed(0)} B per trajectory (gzip)`);
      fig[`${o.name}_shard_bytes_per_trajectory`] = round(sh.bytes / sh.count, 0);
      fig[`${o.name}_shard_files_count`] = sh.files;
      fs.rmSync(runDir, { recursive: true, force: true });
      return fig;
    } finally {
      for (const c of children) c.child.kill("SIGKILL");
      await closeQueues(q);
    }
  });
}

/**
 * CPU of reading one trajectory back as the workers and the collector do (JSON text → zod
 * TrajectorySchema, orchestrator/records.ts), against JSON.parse alone: ms per trajectory.
 */
function parseCost(name: string, t: Trajectory): Record<string, number> {
  const text = JSON.stringify(t);
  const n = Math.max(200, Math.floor(2e7 / text.length));
  const time = (fn: () => unknown) => {
    for (let i = 0; i < Math.min(n, 200); i++) fn();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    return (performance.now() - t0) / n;
  };
  const json = time(() => JSON.parse(text));
  const zod = time(() => TrajectorySchema.parse(JSON.parse(text)));
  console.log(`[parse]    ${name} trajectory (${text.length} B JSON): JSON.parse ${json.toFixed(4)} ms, + zod schema ${zod.toFixed(4)} ms`);
  return { [`${name}_json_parse_ms_per_trajectory`]: round(json, 4), [`${name}_zod_parse_ms_per_trajectory`]: round(zod, 4) };
}

export const main: BenchMain = async (args) => {
  const bad = unknownFlags(args, ["jobs", "queue-jobs", "workers", "concurrency", "samples", "long-jobs", "long-turns", "obs-bytes", "appendfsync"]);
  if (bad.length) throw new Error(`unknown arguments: ${bad.join(" ")}`);
  const jobs = intFlag(args, "jobs", 100_000);
  const queueJobs = intFlag(args, "queue-jobs", 100_000);
  const workers = intFlag(args, "workers", 3);
  const concurrency = intFlag(args, "concurrency", 64);
  const samples = Math.min(intFlag(args, "samples", 50), jobs);
  const longJobs = intFlag(args, "long-jobs", 1000);
  const longTurns = intFlag(args, "long-turns", 128);
  const obsBytes = intFlag(args, "obs-bytes", 2048);
  const appendfsync = (stringFlag(args, "appendfsync") ?? "always") as Env["appendfsync"];
  if (!["always", "everysec", "no"].includes(appendfsync)) throw new Error(`--appendfsync: always, everysec or no`);
  const env: Env = { tmp: fs.mkdtempSync(path.join(os.tmpdir(), "forager-bench-scale-")), appendfsync };
  console.log(`scale: ${os.availableParallelism()} cores, load ${os.loadavg()[0]!.toFixed(2)}; ${workers} worker processes × ${concurrency} slots; appendfsync ${appendfsync}`);
  const t0 = performance.now();
  try {
    const fig: Record<string, number> = { cores: os.availableParallelism(), load_avg_1m_start: round(os.loadavg()[0]!, 2) };
    const ptask = fakeTask("parse-cost");
    Object.assign(fig, parseCost("oracle", fakeTrajectory(ptask)));
    Object.assign(fig, parseCost("long", await longRollout(longTurns, obsBytes)(ptask, 0, { trajectoryId: "p/0", onTurn: () => undefined } as unknown as Parameters<RolloutFn>[2])));
    Object.assign(fig, await queuePhase(env, queueJobs));
    Object.assign(fig, await pipelinePhase(env, { name: "shared", storage: "shared", jobs, samples, workers, concurrency }));
    Object.assign(fig, await pipelinePhase(env, { name: "redis", storage: "redis", jobs, samples, workers, concurrency }));
    const longSamples = Math.min(samples, longJobs);
    Object.assign(fig, await pipelinePhase(env, { name: "long", storage: "redis", jobs: longJobs, samples: longSamples, workers, concurrency, longTurns, obsBytes }));
    fig.long_turns_count = longTurns;
    fig.long_obs_bytes = obsBytes;
    fig.total_wall_s = round((performance.now() - t0) / 1000, 1);
    fig.load_avg_1m_end = round(os.loadavg()[0]!, 2);
    return fig;
  } finally {
    fs.rmSync(env.tmp, { recursive: true, force: true });
  }
};
