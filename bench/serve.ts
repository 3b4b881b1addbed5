/**
 * `forager serve` against `forage`, side by side, same work:
 *
 * 1. rollouts: `--tasks` × `--samples` episodes of `--turns` turns with a model policy against a
 *    scripted OpenAI-compatible server in a SEPARATE process (answers after `--latency-ms`), a
 *    stub sandbox (every answer is a turn without a tool call, so no container), the same rollout
 *    stage (serve/rollouts.ts servingRollout) and embedded workers (`--concurrency` slots) both
 *    ways: once through `forage()` (orchestrator/forage.ts), once as one group through the service
 *    (POST /v1/rollouts, followed to the end over HTTP). Figures: rollouts per minute both ways and
 *    the service's overhead in %.
 * 2. steps: `--envs` envs at once through the step API (stub sandbox), `--steps` steps each, all
 *    concurrent; step latency p50 / p99 over HTTP, and the same steps in-process (EnvManager.step,
 *    no HTTP) as the direct reference; plus one env alone (no contention) both ways.
 * 3. warm pool (when the engine answers; `--no-docker` skips it): POST /v1/envs latency (container
 *    start on the path) with no pool against a pool of 2 started sandboxes, `--pool-envs` envs each.
 *
 *   npm run bench -- serve [--tasks 16] [--samples 4] [--turns 8] [--latency-ms 100] [--concurrency 32]
 *                          [--envs 256] [--steps 4] [--pool-envs 4] [--no-docker]
 */
import fs from "node:fs";
import { MemorySandbox } from "../sandbox/memory";
import os from "node:os";
import path from "node:path";
import { DEFAULT_BASE_IMAGE } from "../images/spec";
import { fakeTask, keepEvaluation } from "../orchestrator/fake";
import { forage } from "../orchestrator/forage";
import { dockerClient } from "../sandbox/docker";
import { EnvManager } from "../serve/envs";
import { servingRollout } from "../serve/rollouts";
import { startService, type Service } from "../serve/server";
import { WeightsGate } from "../serve/weights";
import { intFlag, percentile, round, SCRIPTED_TURN_TEXT, startScriptedModel, unknownFlags, type BenchMain } from "./lib";



const stub = new MemorySandbox("serve-bench-stub");
const stubFactory = async () => stub;

async function post(url: string, body: unknown): Promise<any> {
  const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`POST ${url}: ${r.status} ${await r.text()}`);
  return r.json();
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99) };
};

async function dockerAnswers(): Promise<boolean> {
  try {
    await dockerClient().ping();
    return true;
  } catch {
    return false;
  }
}

export const main: BenchMain = async (args) => {
  const bad = unknownFlags(args, ["tasks", "samples", "turns", "latency-ms", "concurrency", "envs", "steps", "pool-envs", "no-docker"]);
  if (bad.length) throw new Error(`unknown arguments: ${bad.join(" ")}`);
  const nTasks = intFlag(args, "tasks", 16);
  const samples = intFlag(args, "samples", 4);
  const turns = intFlag(args, "turns", 8);
  const latencyMs = intFlag(args, "latency-ms", 100);
  const concurrency = intFlag(args, "concurrency", 32);
  const nEnvs = intFlag(args, "envs", 256);
  const steps = intFlag(args, "steps", 4);
  const poolEnvs = intFlag(args, "pool-envs", 4);
  const docker = args.includes("--no-docker") ? false : await dockerAnswers();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-bench-serve-"));
  const model = await startScriptedModel(latencyMs);
  const out: Record<string, number> = {};
  try {
    const tasks = Array.from({ length: nTasks }, (_, i) => fakeTask(`bench__serve-${i}`));
    const tasksFile = path.join(tmp, "tasks.jsonl");
    fs.writeFileSync(tasksFile, tasks.map((t) => JSON.stringify(t)).join("\n") + "\n");
    const images = Object.fromEntries(tasks.map((t) => [t.id, "bench:stub"]));
    const worker = { concurrency, evaluate: keepEvaluation, image: async () => "bench:stub", reap: false };
    const policy = { kind: "http" as const, endpoints: [{ url: model.url, maxConcurrentRequests: 256 }] };
    const episodes = nTasks * samples;

    // --- 1. rollouts: forage vs serve ------------------------------------------------------------
    const f0 = performance.now();
    const fr = await forage({
      taskFiles: [tasksFile],
      samples,
      out: path.join(tmp, "forage"),
      policy,
      maxTurns: turns,
      images,
      worker: { ...worker, rollout: servingRollout(new WeightsGate(), stubFactory) },
      progressMs: 100,
    });
    const forageS = (performance.now() - f0) / 1000;
    if (fr.summary?.trajectories !== episodes) throw new Error(`forage: ${fr.summary?.trajectories} of ${episodes} trajectories`);
    console.log(`forage: ${episodes} episodes × ${turns} turns in ${forageS.toFixed(1)} s`);

    const st0 = performance.now();
    const svc: Service = await startService({ dir: path.join(tmp, "svc"), port: 0, tasks, images, sandboxFactory: stubFactory, worker, pollMs: 100, evaluator: () => async () => ({ outcome: "fail", resolved: false }), maxEnvs: nEnvs + 8 });
    const startS = (performance.now() - st0) / 1000;
    try {
      const s0 = performance.now();
      const g = await post(`${svc.url}/v1/rollouts`, { tasks: tasks.map((t) => t.id), samples, maxTurns: turns, policy });
      let view: any;
      for (;;) {
        view = await (await fetch(`${svc.url}/v1/rollouts/${g.id}`)).json();
        if (view.status !== "running") break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const serveS = (performance.now() - s0) / 1000;
      const got = view.groups.reduce((n: number, x: any) => n + x.trajectories.length, 0);
      if (got !== episodes) throw new Error(`serve: ${got} of ${episodes} trajectories`);
      console.log(`serve:  ${episodes} episodes × ${turns} turns in ${serveS.toFixed(1)} s`);
      out.rollout_episodes = episodes;
      out.rollout_turns = turns;
      out.model_latency_ms = latencyMs;
      out.forage_rollouts_per_min = round((60 * episodes) / forageS, 1);
      out.serve_rollouts_per_min = round((60 * episodes) / serveS, 1);
      out.serve_overhead_pct = round((100 * (serveS - forageS)) / forageS, 1);
      // forage's wall includes starting its private Redis and workers; the service pays that once
      out.serve_start_s = round(startS, 2);
      out.serve_incl_start_rollouts_per_min = round((60 * episodes) / (serveS + startS), 1);
      out.serve_incl_start_overhead_pct = round((100 * (serveS + startS - forageS)) / forageS, 1);

      // --- 2. steps: 256 concurrent envs, HTTP vs in-process -------------------------------------
      const task = tasks[0]!;
      const httpLat: number[] = [];
      /** Steps after each env's first (its connection and first turn behind it). */
      const httpLatLater: number[] = [];
      const created = await Promise.all(Array.from({ length: nEnvs }, () => post(`${svc.url}/v1/envs`, { task: task.id, agent: { maxTurns: steps + 1 } })));
      out.envs_concurrent = created.length;
      out.envs_alive_peak = svc.envs.size;
      await Promise.all(
        created.map(async (c) => {
          for (let i = 0; i < steps; i++) {
            const t0 = performance.now();
            await post(`${svc.url}/v1/envs/${c.envId}/step`, { action: { text: SCRIPTED_TURN_TEXT } });
            httpLat.push(performance.now() - t0);
            if (i > 0) httpLatLater.push(performance.now() - t0);
          }
        }),
      );
      await Promise.all(created.map((c) => fetch(`${svc.url}/v1/envs/${c.envId}`, { method: "DELETE" })));
      const direct = new EnvManager({ resolveImage: async () => "bench:stub", evaluator: () => async () => ({ outcome: "fail", resolved: false }), sandboxFactory: stubFactory, gate: new WeightsGate(), maxEnvs: nEnvs + 8 });
      const dirLat: number[] = [];
      const dEnvs = await Promise.all(Array.from({ length: nEnvs }, () => direct.create(task, { maxTurns: steps + 1 })));
      await Promise.all(
        dEnvs.map(async (c) => {
          for (let i = 0; i < steps; i++) {
            const t0 = performance.now();
            await direct.step(c.envId, { action: { text: SCRIPTED_TURN_TEXT } });
            dirLat.push(performance.now() - t0);
          }
        }),
      );
      await direct.close();
      const h = stats(httpLat);
      const d = stats(dirLat);
      out.step_concurrent_http_p50_ms = round(h.p50, 2);
      out.step_concurrent_http_p99_ms = round(h.p99, 2);
      if (httpLatLater.length) {
        const hl = stats(httpLatLater);
        out.step_concurrent_http_later_p50_ms = round(hl.p50, 2);
        out.step_concurrent_http_later_p99_ms = round(hl.p99, 2);
      }
      out.step_concurrent_direct_p50_ms = round(d.p50, 2);
      out.step_concurrent_direct_p99_ms = round(d.p99, 2);
      // one env alone
      const one = async (fn: () => Promise<unknown>) => {
        const xs: number[] = [];
        for (let i = 0; i < 50; i++) {
          const t0 = performance.now();
          await fn();
          xs.push(performance.now() - t0);
        }
        return stats(xs);
      };
      const e1 = await post(`${svc.url}/v1/envs`, { task: task.id, agent: { maxTurns: 60 } });
      const h1 = await one(() => post(`${svc.url}/v1/envs/${e1.envId}/step`, { action: { text: SCRIPTED_TURN_TEXT } }));
      const direct1 = new EnvManager({ resolveImage: async () => "bench:stub", evaluator: () => async () => ({ outcome: "fail", resolved: false }), sandboxFactory: stubFactory, gate: new WeightsGate() });
      const d1e = await direct1.create(task, { maxTurns: 60 });
      const d1 = await one(() => direct1.step(d1e.envId, { action: { text: SCRIPTED_TURN_TEXT } }));
      await direct1.close();
      out.step_single_http_p50_ms = round(h1.p50, 2);
      out.step_single_http_p99_ms = round(h1.p99, 2);
      out.step_single_direct_p50_ms = round(d1.p50, 2);
      out.step_single_direct_p99_ms = round(d1.p99, 2);
      console.log(`steps: ${nEnvs} envs × ${steps}: HTTP p50 ${h.p50.toFixed(1)} ms p99 ${h.p99.toFixed(1)} ms; in-process p50 ${d.p50.toFixed(1)} ms p99 ${d.p99.toFixed(1)} ms; one env: HTTP p50 ${h1.p50.toFixed(2)} ms, in-process ${d1.p50.toFixed(2)} ms`);
    } finally {
      await svc.close();
    }

    // --- 3. warm pool (real containers) ----------------------------------------------------------
    if (docker) {
      const base = process.env.FORAGER_TEST_IMAGE ?? DEFAULT_BASE_IMAGE;
      const t = fakeTask("bench__serve-pool");
      const measure = async (pool: number): Promise<number[]> => {
        const s = await startService({ dir: path.join(tmp, `pool-${pool}`), port: 0, tasks: [t], images: { [t.id]: base }, warmPool: pool, worker: { ...worker, concurrency: 1 } });
        try {
          const xs: number[] = [];
          for (let i = 0; i < poolEnvs; i++) {
            if (pool) {
              // the pool learns the configuration from the first take; let it fill before each measure
              await s.pool.settled();
            }
            const t0 = performance.now();
            const c = await post(`${s.url}/v1/envs`, { task: t.id });
            xs.push(performance.now() - t0);
            await fetch(`${s.url}/v1/envs/${c.envId}`, { method: "DELETE" });
          }
          return pool ? xs.slice(1) : xs; // with a pool the first take is a miss (it teaches the pool the configuration)
        } finally {
          await s.close();
        }
      };
      const cold = stats(await measure(0));
      const warm = stats(await measure(2));
      out.env_start_no_pool_p50_ms = round(cold.p50, 1);
      out.env_start_warm_pool_p50_ms = round(warm.p50, 1);
      console.log(`env start (POST /v1/envs, real container): no pool p50 ${cold.p50.toFixed(0)} ms; warm pool p50 ${warm.p50.toFixed(0)} ms`);
    }
    return out;
  } finally {
    await model.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
};
