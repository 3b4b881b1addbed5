/**
 * Agent overhead: forager's own cost per turn, excluding the model's and the command's time.
 *
 * 1. One episode against a zero-latency scripted server, every action `bash true`: per turn,
 *    (time between consecutive turns) − model latency − tool duration = forager's overhead
 *    (parsing, rendering, token estimates, budget, bookkeeping). Reported as p50 / p99, ms.
 * 2. `--episodes` (64) concurrent episodes against a scripted server answering in 200 ms (in a
 *    child process, so its CPU is not counted): forager's CPU share (process.cpuUsage over wall,
 *    1.0 = one core busy) and the RSS growth per episode, MB.
 *
 * Flags: --turns N (episode 1, default 200), --episodes N (default 64), --episode-turns N (default 8).
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { InferenceClient } from "../inference-client/client";
import { preloadTokenizer } from "../inference-client/tokenizer";
import { DEFAULT_BASE_IMAGE } from "../images/spec";
import { Sandbox } from "../sandbox/sandbox";
import { TaskSchema, type Task } from "../tasks/schema";
import { runEpisode } from "../agent/episode";
import { HttpPolicy } from "../agent/policy";
import { startScriptedServer } from "../test/helpers/scripted-server";
import { describe, intFlag, round, summarize, unknownFlags } from "./lib";

const ACTION = "Nothing to think about.\n</think>\n<tool: bash>\ntrue\n</tool>";
const SERVER_ENV = "FORAGER_AGENT_BENCH_SERVER_DELAY_MS";

// Child-process mode: serve the scripted model and print its URL.
if (process.env[SERVER_ENV] !== undefined) {
  const s = await startScriptedServer({ handler: () => ACTION, delayMs: Number(process.env[SERVER_ENV]), recordRequests: false });
  process.stdout.write(`${s.url}\n`);
}

function benchTask(): Task {
  return TaskSchema.parse({
    id: "bench__agent-overhead",
    kind: "issue-fix",
    repo: "bench/none",
    commit: "0000000",
    image: { repo: "bench/none", commit: "0000000", testCommand: "true", logParser: "pytest", workdir: "/tmp" },
    problemStatement: "Benchmark: nothing to fix.",
    failToPass: [],
    passToPass: [],
    referencePatch: "",
  });
}

const image = process.env.FORAGER_TEST_IMAGE ?? DEFAULT_BASE_IMAGE;
const factory = (c: Parameters<typeof Sandbox.create>[0]) => Sandbox.create({ ...c, labels: { ...c.labels, "forager.run": "bench" } });

async function childServer(delayMs: number): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, ["--import", "tsx/esm", "--no-warnings", fileURLToPath(import.meta.url)], {
    env: { ...process.env, [SERVER_ENV]: String(delayMs) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = "";
    child.stdout.on("data", (b: Buffer) => {
      buf += b.toString();
      const m = /^(http:\/\/\S+)\n/m.exec(buf);
      if (m) resolve(m[1]!);
    });
    child.on("exit", (code) => reject(new Error(`scripted server exited (${code})`)));
  });
  return { url, stop: () => child.kill("SIGTERM") };
}

export async function main(args: string[]): Promise<Record<string, number>> {
  const bad = unknownFlags(args, ["turns", "episodes", "episode-turns"]);
  if (bad.length) throw new Error(`unknown flags: ${bad.join(" ")}`);
  const turns = intFlag(args, "turns", 200);
  const episodes = intFlag(args, "episodes", 64);
  const episodeTurns = intFlag(args, "episode-turns", 8);
  preloadTokenizer();
  const task = benchTask();

  // ---- 1. per-turn overhead, zero-latency server
  const server = await startScriptedServer({ handler: () => ACTION, recordRequests: false });
  const client = new InferenceClient({ endpoints: [{ url: server.url, model: "bench" }] });
  const overheads: number[] = [];
  try {
    let last = 0;
    const t = await runEpisode({
      task,
      image,
      policy: new HttpPolicy(client),
      config: { maxTurns: turns + 1 },
      sandboxFactory: factory,
      onTurn: (turn) => {
        const now = performance.now();
        if (turn.index > 0 && turn.toolDurationMs !== undefined) overheads.push(now - last - turn.modelLatencyMs - turn.toolDurationMs);
        last = now;
      },
      onEvent: (e) => {
        if (e.type === "sandbox_started") last = performance.now();
      },
    });
    if (t.endReason !== "max_turns") throw new Error(`overhead episode ended with ${t.endReason}: ${t.endDetail ?? ""}`);
  } finally {
    await client.close();
    await server.close();
  }
  const s = summarize(overheads);
  console.log(describe(`forager overhead per turn (${overheads.length} turns, bash true, zero-latency model)`, s));

  // ---- 2. concurrent episodes, 200 ms model
  const remote = await childServer(200);
  const many = new InferenceClient({ endpoints: [{ url: remote.url, model: "bench", maxConcurrency: episodes }] });
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  const rss0 = process.memoryUsage().rss;
  const cpu0 = process.cpuUsage();
  const w0 = performance.now();
  let cpuShare = 0;
  let wall = 0;
  try {
    const results = await Promise.all(
      Array.from({ length: episodes }, () =>
        runEpisode({ task, image, policy: new HttpPolicy(many), config: { maxTurns: episodeTurns }, sandboxFactory: factory }),
      ),
    );
    wall = performance.now() - w0;
    const cpu = process.cpuUsage(cpu0);
    cpuShare = (cpu.user + cpu.system) / 1000 / wall;
    const ends = results.map((r) => r.endReason);
    if (ends.some((e) => e !== "max_turns")) throw new Error(`episodes ended with ${[...new Set(ends)].join(", ")}`);
  } finally {
    clearInterval(sampler);
    await many.close();
    remote.stop();
  }
  const rssPerEpisode = (peakRss - rss0) / 1024 / 1024 / episodes;
  console.log(`${episodes} concurrent episodes × ${episodeTurns} turns, 200 ms model: wall ${(wall / 1000).toFixed(1)} s, forager CPU ${(cpuShare * 100).toFixed(1)} % of one core, RSS +${rssPerEpisode.toFixed(2)} MB per episode (peak ${(peakRss / 1024 / 1024).toFixed(0)} MB)`);
  return {
    forager_turn_overhead_p50_ms: round(s.p50),
    forager_turn_overhead_p99_ms: round(s.p99),
    cpu_share_64_episodes: round(cpuShare),
    rss_per_episode_mb: round(rssPerEpisode),
    episodes,
    episode_wall_s: round(wall / 1000),
  };
}
