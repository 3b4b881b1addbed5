/**
 * forage throughput: real agent episodes (agent/episode.ts runEpisode, HttpPolicy, the
 * inference client, prompt rendering and token counting) against a scripted OpenAI-compatible
 * server answering every turn after a fixed latency (default 200 ms), in a SEPARATE process so
 * its CPU is not counted as forager's. Every answer is a turn without a tool call (the agent gets
 * a format-error message back), so no Docker sandbox is needed: the sandbox is a stub, and the
 * figures are forager's own work per turn. Episodes end at `--turns` (maxTurns).
 *
 * Two ways, side by side, same episodes:
 * 1. direct: the rollout function called in-process, `--concurrency` at a time, no queue, no
 *    storage (a promise pool);
 * 2. orchestrated: the same rollout through forage's embedded mode (private redis-server,
 *    BullMQ image → rollout → evaluation jobs, Redis semaphore per model request, durable
 *    sharded storage with fsync, bookkeeping), `--concurrency` rollout slots.
 *
 * Figures (units in the names): episodes in flight (peak, mean), turns per second, forager's CPU
 * per turn and as a fraction of one core (this process + the private redis-server), and the
 * orchestration overhead per episode against the direct run (wall and CPU).
 *
 *   npm run bench -- forage-throughput [--episodes 256] [--concurrency 64] [--turns 10] [--latency-ms 200]
 */
import fs from "node:fs";
import { MemorySandbox } from "../sandbox/memory";
import os from "node:os";
import path from "node:path";
import { runEpisode } from "../agent/episode";
import { HttpPolicy, type Policy } from "../agent/policy";
import { InferenceClient } from "../inference-client/client";
import { fakeTask } from "../orchestrator/fake";
import { forage } from "../orchestrator/forage";
import { makePolicy, type RolloutFn } from "../orchestrator/stages";
import { intFlag, round, startScriptedModel, unknownFlags, type BenchMain } from "./lib";


/** A turn without a tool call: the agent answers with a format-error message, no sandbox needed. */


/** CPU seconds (user + system) of a process from /proc (0 when gone). */
function procCpuSeconds(pid: number): number {
  try {
    const rest = fs.readFileSync(`/proc/${pid}/stat`, "latin1").split(") ")[1]!.split(" ");
    return (Number(rest[11]) + Number(rest[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return 0;
  }
}

const stubSandbox = new MemorySandbox("bench-stub");

interface Tracker {
  inFlight: number;
  peak: number;
  turns: number;
  /** Sum of episode wall times, ms. */
  episodeMs: number;
  /** performance.now() of the first episode start and the last episode end. */
  first?: number;
  last?: number;
}
const tracker = (): Tracker => ({ inFlight: 0, peak: 0, turns: 0, episodeMs: 0 });
/** Seconds from the first episode start to the last episode end. */
const phase = (t: Tracker) => ((t.last ?? 0) - (t.first ?? 0)) / 1000;

/** The rollout both ways run: one real episode with a stub sandbox. */
function benchRollout(policyFor: (ctx: Parameters<RolloutFn>[2]) => Promise<Policy>, tr: Tracker, turns: number): RolloutFn {
  return async (task, _sample, ctx) => {
    tr.inFlight++;
    tr.peak = Math.max(tr.peak, tr.inFlight);
    const t0 = performance.now();
    tr.first ??= t0;
    try {
      return await runEpisode({
        task,
        policy: await policyFor(ctx),
        config: { maxTurns: turns, maxEnvRetries: 0 },
        image: "bench:stub",
        sandboxFactory: async () => stubSandbox,
        id: ctx.trajectoryId,
        signal: ctx.signal,
        onTurn: () => {
          tr.turns++;
          ctx.onTurn();
        },
      });
    } finally {
      tr.inFlight--;
      tr.last = performance.now();
      tr.episodeMs += tr.last - t0;
    }
  };
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export const main: BenchMain = async (args) => {
  const bad = unknownFlags(args, ["episodes", "concurrency", "turns", "latency-ms"]);
  if (bad.length) throw new Error(`unknown arguments: ${bad.join(" ")}`);
  const episodes = intFlag(args, "episodes", 256);
  const concurrency = intFlag(args, "concurrency", 64);
  const turns = intFlag(args, "turns", 10);
  const latencyMs = intFlag(args, "latency-ms", 200);
  const tasksN = Math.max(1, Math.floor(episodes / 4));
  const samples = Math.ceil(episodes / tasksN);
  const total = tasksN * samples;
  const tasks = Array.from({ length: tasksN }, (_, i) => fakeTask(`bench-${i}`));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-bench-forage-"));
  const server = await startScriptedModel(latencyMs);
  console.log(`scripted server ${server.url} (pid ${server.pid}), ${latencyMs} ms per turn; ${total} episodes × ${turns} turns, ${concurrency} at a time, ${os.availableParallelism()} cores`);
  const client = new InferenceClient({ endpoints: [{ url: server.url, maxConcurrency: concurrency }], retries: 2 });
  try {
    // --- warm-up (JIT, tokenizer, connections)
    const warm: Tracker = tracker();
    const warmFn = benchRollout(async () => new HttpPolicy(client), warm, turns);
    await pool(Array.from({ length: Math.min(32, total) }, (_, i) => i), concurrency, (i) => warmFn(tasks[i % tasksN]!, i, directCtx(i)));

    // --- 1. direct
    const d: Tracker = tracker();
    const directFn = benchRollout(async () => new HttpPolicy(client), d, turns);
    const items = tasks.flatMap((t) => Array.from({ length: samples }, (_, s) => [t, s] as const));
    const dCpu0 = cpuSeconds();
    const dT0 = performance.now();
    await pool(items, concurrency, ([t, s]) => directFn(t, s, directCtx(s)));
    const dWall = (performance.now() - dT0) / 1000;
    const dCpu = cpuSeconds() - dCpu0;
    console.log(`direct:       ${dWall.toFixed(2)} s wall, ${d.turns} turns (${(d.turns / dWall).toFixed(0)}/s), peak ${d.peak} in flight, CPU ${dCpu.toFixed(2)} s`);

    // --- 2. orchestrated (embedded forage)
    const o: Tracker = tracker();
    const file = path.join(tmp, "tasks.jsonl");
    fs.writeFileSync(file, tasks.map((t) => JSON.stringify(t)).join("\n") + "\n");
    let redisPid = 0;
    const oCpu0 = cpuSeconds();
    const oT0 = performance.now();
    const res = await forage({
      taskFiles: [file],
      samples,
      out: path.join(tmp, "run"),
      runId: "bench",
      policy: { kind: "http", endpoints: [{ url: server.url, maxConcurrentRequests: concurrency }] },
      agent: { maxTurns: turns },
      progressMs: 250,
      onProgress: () => {
        if (!redisPid) redisPid = Number(readPidOfPort(path.join(tmp, "run", "redis")));
      },
      worker: {
        concurrency,
        evalConcurrency: concurrency,
        reap: false,
        image: async () => "bench:stub",
        rollout: benchRollout((ctx) => makePolicy(ctx.spec, ctx.redis), o, turns),
      },
    });
    const oWall = (performance.now() - oT0) / 1000;
    const oCpuSelf = cpuSeconds() - oCpu0;
    const redisCpu = redisPid ? redisCpuSeen : 0;
    const oCpu = oCpuSelf + redisCpu;
    if (res.summary?.trajectories !== total) throw new Error(`orchestrated run wrote ${res.summary?.trajectories} of ${total} trajectories`);
    console.log(`orchestrated: ${oWall.toFixed(2)} s wall, ${o.turns} turns (${(o.turns / oWall).toFixed(0)}/s), peak ${o.peak} in flight, CPU ${oCpuSelf.toFixed(2)} s + redis ${redisCpu.toFixed(2)} s`);

    const fig = {
      episodes: total,
      turns_per_episode: turns,
      model_latency_ms: latencyMs,
      concurrency,
      cores: os.availableParallelism(),
      direct_wall_s: round(dWall, 2),
      direct_episode_phase_s: round(phase(d), 2),
      direct_turns_per_s: round(d.turns / dWall, 1),
      direct_episodes_in_flight_peak: d.peak,
      direct_episodes_in_flight_mean: round(d.episodeMs / 1000 / phase(d), 1),
      direct_cpu_ms_per_turn: round((1000 * dCpu) / d.turns, 3),
      direct_cpu_core_fraction: round(dCpu / dWall, 3),
      orch_wall_s: round(oWall, 2),
      orch_turns_per_s: round(o.turns / oWall, 1),
      orch_episodes_in_flight_peak: o.peak,
      orch_episode_phase_s: round(phase(o), 2),
      orch_episodes_in_flight_mean: round(o.episodeMs / 1000 / phase(o), 1),
      orch_cpu_ms_per_turn: round((1000 * oCpu) / o.turns, 3),
      orch_cpu_core_fraction: round(oCpu / oWall, 3),
      orch_redis_cpu_s: round(redisCpu, 2),
      /** Episode phase (first start → last end) against the direct run: queueing and bookkeeping between episodes. */
      overhead_phase_ratio: round(phase(o) / phase(d) - 1, 4),
      /** Whole invocation (private Redis start, submit, workers, manifest with dedup, shutdown). */
      overhead_wall_ratio: round(oWall / dWall - 1, 4),
      overhead_fixed_s: round(oWall - phase(o), 2),
      overhead_cpu_ms_per_episode: round(((oCpu - dCpu) * 1000) / total, 2),
      overhead_cpu_ratio_of_episode_wall: round((oCpu - dCpu) / total / (d.episodeMs / 1000 / total), 4),
    };
    return fig;
  } finally {
    await client.close();
    await server.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
};

let redisCpuSeen = 0;
/** The redis-server pid of the embedded run (found by its port file), CPU sampled while it lives. */
function readPidOfPort(dir: string): number {
  try {
    const port = fs.readFileSync(path.join(dir, "port"), "utf8").trim();
    for (const p of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, "latin1");
      if (cmd.startsWith("/usr/bin/redis-server") || cmd.includes("redis-server")) {
        if (cmd.includes(`:${port}`) || cmd.split("\0").includes(port)) {
          const pid = Number(p);
          const tick = setInterval(() => {
            const c = procCpuSeconds(pid);
            if (c > 0) redisCpuSeen = c;
            else clearInterval(tick);
          }, 200);
          tick.unref();
          return pid;
        }
      }
    }
  } catch {
    // not yet
  }
  return 0;
}

function directCtx(sample: number): Parameters<RolloutFn>[2] {
  return {
    runId: "direct",
    spec: undefined as never,
    trajectoryId: `direct/${sample}`,
    attempt: 0,
    signal: new AbortController().signal,
    logger: undefined as never,
    onTurn: () => undefined,
    redis: undefined as never,
    resolveImage: async () => "bench:stub",
  };
}

/** Run `fn` over `items`, at most `n` at a time. */
async function pool<T>(items: readonly T[], n: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}
