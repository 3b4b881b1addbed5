/**
 * Model routing: what the model servers pay with least-outstanding routing versus episode-affine
 * routing with bounded loads (inference-client/routing.ts), in one run, side by side.
 *
 * `npm run bench -- model-routing [--servers 4] [--episodes 64] [--samples 4] [--turns 40] [--time-scale 0.05]`
 *
 * Stand-in model servers (bench/scripted-model.ts, in a child process: test/helpers/scripted-server.ts
 * with a prefix cache and a cost model) serve `--episodes` concurrent synthetic episodes, `--samples`
 * (K) per task, driven through the real InferenceClient over loopback HTTP. An episode's prompt is
 * token ids: the task prompt (3,000 tokens, shared by the K samples), then per turn the server's
 * 256 completion tokens and a 1,200-token observation, so turn 40's prompt is ~60k tokens; between
 * turns the tool runs 2 s. Cost model per server (simulated seconds): prefill 2e-5 s per uncached
 * token (50k tokens/s) on one prefill lane, decode 0.02 s per token, batch 32, prefix cache 1.5M tokens
 * (LRU over 16-token blocks). SIMULATED TIME: the servers wait `--time-scale` wall seconds per
 * simulated second, and the client's own waits (tools, backoffs, routing windows) are scaled alike,
 * so 40 turns of 64 episodes take about 4 minutes of wall time for the six runs. Hit rates and prefill
 * seconds are exact (tokens × rate, whatever the machine's load); rollouts per minute come from the
 * wall makespan divided by the scale, so they carry the machine's noise: the client's and the
 * stand-ins' CPU shares are printed (near a core, their own work stretches the simulated clock).
 * Each stand-in runs in its own process.
 *
 * Three conditions, each with both routings (fresh caches every time):
 * - `normal`: four healthy servers;
 * - `saturated`: server 0 has only 4 batch slots and a queue of 2 (an external tenant holds the rest),
 *   answering 429 (Retry-After) beyond;
 * - `failing`: server 0 answers 500 from the moment a quarter of all turns are done.
 *
 * Figures (last line, JSON): per routing and condition the prefix-cache hit rate (client-recorded
 * cached / prompt tokens), simulated prefill seconds (the servers' own sum), rollouts per simulated
 * minute, episodes completed, moves, the longest turn (simulated seconds, a stall would show here) and
 * the peak of (sessions on an endpoint / its bound) sampled after every call; the ratios affinity /
 * least-outstanding; and the ideal (every reusable prefix cached, no queueing).
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { InferenceClient, type ClientStats } from "../inference-client/client";
import { boundedCapacity } from "../inference-client/routing";
import { intFlag, round, STANDIN_ENV, stringFlag, unknownFlags, type BenchMain, type StandInConfig } from "./lib";

const TASK_PROMPT_TOKENS = 3000;
const COMPLETION_TOKENS = 256;
const OBSERVATION_TOKENS = 1200;
const TOOL_SECONDS = 2;
const PREFILL_S_PER_TOKEN = 2e-5;
const DECODE_S_PER_TOKEN = 0.02;
const MAX_BATCH = 32;
const CACHE_TOKENS = 1_500_000;
const BLOCK = 16;
const LOAD_FACTOR = 1.25;
const SESSION_FLOOR = 8;

type Routing = "least-outstanding" | "affinity";
type Condition = "normal" | "saturated" | "failing";

/** A deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const tokensOf = (rand: () => number, n: number): number[] => Array.from({ length: n }, () => Math.floor(rand() * 120_000));

/** One stand-in server per child process (their CPU is neither the client's nor each other's); resolves once they listen. */
async function startStandIns(cfg: StandInConfig): Promise<{ urls: string[]; pids: number[]; stop: () => Promise<void> }> {
  const script = new URL("./scripted-model.ts", import.meta.url).pathname;
  const children = Array.from({ length: cfg.servers }, () =>
    spawn(process.execPath, ["--import", "tsx", script], { env: { ...process.env, [STANDIN_ENV]: JSON.stringify({ ...cfg, servers: 1 }) }, stdio: ["ignore", "pipe", "inherit"] }),
  );
  const stop = () =>
    Promise.all(
      children.map(
        (child) =>
          new Promise<void>((r) => {
            if (child.exitCode !== null) return r();
            child.once("exit", () => r());
            child.kill("SIGTERM");
          }),
      ),
    ).then(() => undefined);
  try {
    const urls = await Promise.all(
      children.map(
        (child) =>
          new Promise<string>((resolve, reject) => {
            let buf = "";
            child.stdout!.on("data", (d: Buffer) => {
              buf += d.toString();
              const i = buf.indexOf("\n");
              if (i >= 0) resolve(buf.slice(0, i).trim());
            });
            child.once("exit", (c) => reject(new Error(`a stand-in server exited (${c})`)));
          }),
      ),
    );
    return { urls, pids: children.map((c) => c.pid!), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** CPU seconds (user + system) of a process from /proc (0 when unreadable). */
function procCpuSeconds(pid: number): number {
  try {
    const rest = readFileSync(`/proc/${pid}/stat`, "latin1").split(") ")[1]!.split(" ");
    return (Number(rest[11]) + Number(rest[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return 0;
  }
}

async function control(url: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}${path}`, body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${url}${path}: HTTP ${res.status}`);
  return res.json();
}

interface Scenario {
  routing: Routing;
  condition: Condition;
}

interface Outcome {
  hitRate: number;
  promptTokens: number;
  cachedTokens: number;
  prefillSeconds: number;
  rolloutsPerMinute: number;
  completed: number;
  moves: number;
  maxTurnSeconds: number;
  /** Most sessions on one endpoint, sampled after every call. */
  peakSessions: number;
  peakPlacementRatio: number;
  makespanSeconds: number;
  retries: number;
  /** This process's CPU over the scenario's wall time (1 = one core): near 1, the client's own work distorts the simulated clock. */
  cpuShare: number;
  /** The stand-ins' CPU over the same wall time (all of them; 1 = one core). */
  serverCpuShare: number;
}

/** The ideal of the workload: every reusable prefix cached (block-aligned), no queueing. */
function ideal(episodes: number, samples: number, turns: number): { hitRate: number; prefillSeconds: number; rolloutsPerMinute: number } {
  let prompt = 0;
  let cached = 0;
  let longest = 0;
  for (let e = 0; e < episodes; e++) {
    let len = TASK_PROMPT_TOKENS;
    let seconds = 0;
    for (let t = 0; t < turns; t++) {
      const reusable = t === 0 ? (e % samples === 0 ? 0 : TASK_PROMPT_TOKENS) : len - OBSERVATION_TOKENS;
      const c = Math.floor(Math.min(reusable, len - 1) / BLOCK) * BLOCK;
      prompt += len;
      cached += c;
      seconds += (len - c) * PREFILL_S_PER_TOKEN + COMPLETION_TOKENS * DECODE_S_PER_TOKEN + (t < turns - 1 ? TOOL_SECONDS : 0);
      len += COMPLETION_TOKENS + OBSERVATION_TOKENS;
    }
    longest = Math.max(longest, seconds);
  }
  return { hitRate: cached / prompt, prefillSeconds: (prompt - cached) * PREFILL_S_PER_TOKEN, rolloutsPerMinute: episodes / (longest / 60) };
}

async function run(s: Scenario, urls: string[], pids: number[], o: { episodes: number; samples: number; turns: number; scale: number }): Promise<Outcome> {
  const costModel = { prefillSecondsPerToken: PREFILL_S_PER_TOKEN, decodeSecondsPerToken: DECODE_S_PER_TOKEN, maxBatch: MAX_BATCH, timeScale: o.scale };
  await Promise.all(
    urls.map((u, i) =>
      control(u, "/_scripted/reset", {
        costModel: s.condition === "saturated" && i === 0 ? { ...costModel, maxBatch: 4, maxQueue: 2, retryAfterSeconds: 1 } : costModel,
      }),
    ),
  );
  const client = new InferenceClient({
    endpoints: urls.map((url) => ({ url, model: "stand-in" })),
    retries: 20,
    backoffBaseSeconds: 0.5 * o.scale,
    backoffMaxSeconds: 10 * o.scale,
    requestDeadlineSeconds: 3600,
    routing: { policy: s.routing, loadFactor: LOAD_FACTOR, sessionFloor: SESSION_FLOOR, failingSeconds: 10 * o.scale, saturatedSeconds: 1 * o.scale },
  });
  const sleep = (simSeconds: number) => new Promise((r) => setTimeout(r, simSeconds * o.scale * 1000));
  const tasks = Math.ceil(o.episodes / o.samples);
  const taskPrompts = Array.from({ length: tasks }, (_, i) => tokensOf(prng(1000 + i), TASK_PROMPT_TOKENS));
  const totalTurns = o.episodes * o.turns;
  let turnsDone = 0;
  let failed = false;
  let promptTokens = 0;
  let cachedTokens = 0;
  let maxTurn = 0;
  let peak = 0;
  let completed = 0;
  const sampleLoad = (st: ClientStats) => {
    for (const e of st.endpoints) peak = Math.max(peak, e.sessions);
  };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const serverCpu0 = pids.reduce((a, p) => a + procCpuSeconds(p), 0);
  await Promise.all(
    Array.from({ length: o.episodes }, async (_, e) => {
      const task = Math.floor(e / o.samples);
      const rand = prng(7 + e);
      await sleep(rand() * 10); // episodes start over the first 10 s, as sandboxes come up
      let prompt = [...taskPrompts[task]!];
      const key = `task-${task}/${e % o.samples}`;
      for (let t = 0; t < o.turns; t++) {
        const started = performance.now();
        const r = await client.complete({ prompt, maxTokens: COMPLETION_TOKENS, returnTokenIds: true, affinity: { key, group: `task-${task}` } });
        maxTurn = Math.max(maxTurn, (performance.now() - started) / 1000 / o.scale);
        promptTokens += r.usage.promptTokens;
        cachedTokens += r.usage.cachedPromptTokens ?? 0;
        sampleLoad(client.stats());
        if (++turnsDone >= totalTurns / 4 && s.condition === "failing" && !failed) {
          failed = true;
          await control(urls[0]!, "/_scripted/failing", { failing: true });
        }
        if (t === o.turns - 1) break;
        prompt = prompt.concat(r.tokenIds ?? [], tokensOf(rand, OBSERVATION_TOKENS));
        await sleep(TOOL_SECONDS);
      }
      client.endSession(key);
      completed++;
    }),
  );
  const wallSeconds = (performance.now() - t0) / 1000;
  const makespan = wallSeconds / o.scale;
  const cpu = process.cpuUsage(cpu0);
  const cpuShare = (cpu.user + cpu.system) / 1e6 / wallSeconds;
  const serverCpuShare = (pids.reduce((a, p) => a + procCpuSeconds(p), 0) - serverCpu0) / wallSeconds;
  const st = client.stats();
  await client.close();
  const server = await Promise.all(urls.map((u) => control(u, "/_scripted/stats")));
  await control(urls[0]!, "/_scripted/failing", { failing: false });
  return {
    hitRate: cachedTokens / promptTokens,
    promptTokens,
    cachedTokens,
    prefillSeconds: server.reduce((a, x) => a + (x.prefillSeconds as number), 0),
    rolloutsPerMinute: completed / (makespan / 60),
    completed,
    moves: st.moves.failing + st.moves.saturated,
    peakPlacementRatio: st.peakPlacementRatio,
    maxTurnSeconds: maxTurn,
    peakSessions: peak,
    makespanSeconds: makespan,
    retries: st.endpoints.reduce((a, x) => a + x.retries, 0),
    cpuShare,
    serverCpuShare,
  };
}

export const main: BenchMain = async (args) => {
  const bad = unknownFlags(args, ["servers", "episodes", "samples", "turns", "time-scale"]);
  if (bad.length) throw new Error(`unknown arguments: ${bad.join(" ")}`);
  const servers = intFlag(args, "servers", 4);
  const episodes = intFlag(args, "episodes", 64);
  const samples = intFlag(args, "samples", 4);
  const turns = intFlag(args, "turns", 40);
  const scale = Number(stringFlag(args, "time-scale") ?? 0.05);
  if (!(scale > 0)) throw new Error("--time-scale wants a positive number (wall seconds per simulated second)");
  const standIns = await startStandIns({
    servers,
    completionTokens: COMPLETION_TOKENS,
    prefixCache: { capacityTokens: CACHE_TOKENS, blockTokens: BLOCK },
    costModel: { prefillSecondsPerToken: PREFILL_S_PER_TOKEN, decodeSecondsPerToken: DECODE_S_PER_TOKEN, maxBatch: MAX_BATCH, timeScale: scale },
  });
  const figures: Record<string, number> = {};
  try {
    const id = ideal(episodes, samples, turns);
    console.log(
      `${servers} stand-in servers (prefill ${PREFILL_S_PER_TOKEN} s/token, decode ${DECODE_S_PER_TOKEN} s/token, batch ${MAX_BATCH}, cache ${CACHE_TOKENS} tokens), ` +
        `${episodes} episodes × ${turns} turns, K = ${samples}; time scale ${scale} wall s per simulated s`,
    );
    console.log(`ideal (every prefix cached, no queueing): hit rate ${id.hitRate.toFixed(3)}, prefill ${id.prefillSeconds.toFixed(1)} s, ${id.rolloutsPerMinute.toFixed(2)} rollouts/min`);
    const bound = (n: number) => Math.max(boundedCapacity(episodes, 1 / n, LOAD_FACTOR), SESSION_FLOOR);
    console.log(`session bound with all ${episodes} live: ${bound(servers)} per endpoint (${bound(servers - 1)} with one endpoint out); load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
    figures.bound_sessions_count = bound(servers);
    figures.bound_one_out_sessions_count = bound(servers - 1);
    figures.ideal_hit_rate_ratio = round(id.hitRate);
    figures.ideal_prefill_s = round(id.prefillSeconds, 1);
    figures.ideal_rollouts_per_min = round(id.rolloutsPerMinute, 2);
    for (const condition of ["normal", "saturated", "failing"] as Condition[]) {
      const out: Partial<Record<Routing, Outcome>> = {};
      for (const routing of ["least-outstanding", "affinity"] as Routing[]) {
        const wall = performance.now();
        const r = await run({ routing, condition }, standIns.urls, standIns.pids, { episodes, samples, turns, scale });
        out[routing] = r;
        const tag = routing === "affinity" ? "affinity" : "lo";
        console.log(
          `${condition.padEnd(9)} ${routing.padEnd(17)} hit rate ${r.hitRate.toFixed(3)} · prefill ${r.prefillSeconds.toFixed(1)} s · ${r.rolloutsPerMinute.toFixed(2)} rollouts/min ` +
            `(makespan ${r.makespanSeconds.toFixed(0)} s) · completed ${r.completed}/${episodes} · longest turn ${r.maxTurnSeconds.toFixed(1)} s · moves ${r.moves} · retries ${r.retries}` +
            `${routing === "affinity" ? ` · peak sessions on one endpoint ${r.peakSessions} (load/bound at placement ≤ ${r.peakPlacementRatio.toFixed(2)})` : ""} · wall ${((performance.now() - wall) / 1000).toFixed(1)} s, CPU client ${r.cpuShare.toFixed(2)} / stand-ins ${r.serverCpuShare.toFixed(2)} core`,
        );
        figures[`${condition}_${tag}_hit_rate_ratio`] = round(r.hitRate);
        figures[`${condition}_${tag}_prefill_s`] = round(r.prefillSeconds, 1);
        figures[`${condition}_${tag}_rollouts_per_min`] = round(r.rolloutsPerMinute, 2);
        figures[`${condition}_${tag}_completed_count`] = r.completed;
        figures[`${condition}_${tag}_max_turn_s`] = round(r.maxTurnSeconds, 1);
        figures[`${condition}_${tag}_moves_count`] = r.moves;
        if (routing === "affinity") {
          figures[`${condition}_affinity_peak_placement_to_bound_ratio`] = round(r.peakPlacementRatio);
          figures[`${condition}_affinity_peak_sessions_count`] = r.peakSessions;
        }
      }
      const a = out.affinity!;
      const l = out["least-outstanding"]!;
      figures[`${condition}_prefill_affinity_to_lo_ratio`] = round(a.prefillSeconds / l.prefillSeconds);
      figures[`${condition}_rollouts_per_min_affinity_to_lo_ratio`] = round(a.rolloutsPerMinute / l.rolloutsPerMinute);
      console.log(
        `${condition.padEnd(9)} affinity / least-outstanding: prefill ×${(a.prefillSeconds / l.prefillSeconds).toFixed(3)}, rollouts/min ×${(a.rolloutsPerMinute / l.rolloutsPerMinute).toFixed(3)}`,
      );
    }
    console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  } finally {
    await standIns.stop();
  }
  return figures;
};
