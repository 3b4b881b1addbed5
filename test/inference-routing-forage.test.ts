/**
 * `forage` with an http policy over four stand-in model servers (prefix cache, loopback): real
 * orchestrator (private redis-server, BullMQ, the per-endpoint Redis semaphore, shards), real episodes
 * (agent/episode.ts runEpisode with HttpPolicy) whose model never calls a tool, so the sandbox is a
 * stub and no Docker engine is needed. Checks that the K samples of a task share an endpoint, that
 * what the servers reported is what the trajectories record, and that the summary shows the hit rate.
 */
import fs from "node:fs";
import { MemorySandbox } from "../sandbox/memory";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fakeTask, keepEvaluation } from "../orchestrator/fake";
import { forage, formatSummary } from "../orchestrator/forage";
import { formatModelUsage } from "../orchestrator/metrics";
import { writeManifest } from "../orchestrator/run";
import { episodeRollout } from "../orchestrator/stages";
import { readShards } from "../orchestrator/storage";
import { runPaths } from "../orchestrator/spec";
import { startScriptedServer, type ScriptedServer } from "./helpers/scripted-server";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-routing-forage-"));
const servers: ScriptedServer[] = [];
afterAll(async () => {
  await Promise.allSettled(servers.map((s) => s.close()));
  fs.rmSync(tmp, { recursive: true, force: true });
});

const stubSandbox = new MemorySandbox("routing-forage-stub");
const NO_TOOL = "Let me think about where the bug could be.\n</think>\nI need to look at the code first.";

describe("forage over several model endpoints (stand-in servers)", () => {
  it("keeps the K samples of a task on one endpoint, records what the servers reported, and shows the hit rate in the summary and status", async () => {
    for (let i = 0; i < 4; i++) servers.push(await startScriptedServer({ prefixCache: { capacityTokens: 1_000_000 }, handler: () => ({ text: NO_TOOL }) }));
    const tasks = [fakeTask("routing-a"), fakeTask("routing-b")];
    const file = path.join(tmp, "tasks.jsonl");
    fs.writeFileSync(file, tasks.map((t) => JSON.stringify(t)).join("\n") + "\n");
    const out = path.join(tmp, "run");
    const res = await forage({
      taskFiles: [file],
      samples: 4,
      out,
      runId: "routing",
      maxTurns: 5,
      policy: { kind: "http", endpoints: servers.map((s) => ({ url: s.url, model: "stand-in", maxConcurrentRequests: 8 })) },
      images: Object.fromEntries(tasks.map((t) => [t.id, "stub:latest"])),
      worker: {
        concurrency: 8,
        rollout: episodeRollout({ sandboxFactory: async () => stubSandbox }),
        evaluate: keepEvaluation,
        lockDurationMs: 5000,
        stalledIntervalMs: 2500,
        reap: false,
      },
      progressMs: 100,
    });
    expect(res.summary).toMatchObject({ expected: 8, trajectories: 8, failed: 0 });

    const trajectories = [...readShards(runPaths(out).shards)].map((x) => x.trajectory);
    expect(trajectories).toHaveLength(8);
    for (const t of trajectories) expect(t.turns).toHaveLength(5);
    // the K samples of a task: every turn of every sample on one endpoint (2 groups of 4 fit under the floor of 8)
    for (const task of tasks) {
      const eps = new Set(trajectories.filter((t) => t.taskId === task.id).flatMap((t) => t.turns.map((x) => x.endpoint)));
      expect(eps.size).toBe(1);
      expect([...eps][0]).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    }
    // recorded = reported: the cached tokens in the trajectories are what the servers put in their usage
    const recorded = trajectories.flatMap((t) => t.turns).reduce((a, x) => a + (x.cachedPromptTokens ?? 0), 0);
    const reported = servers.reduce((a, s) => a + s.requests.reduce((b, q) => b + (q.usage?.cachedTokens ?? 0), 0), 0);
    expect(recorded).toBe(reported);
    expect(recorded).toBeGreaterThan(0);
    const prompt = trajectories.flatMap((t) => t.turns).reduce((a, x) => a + x.promptTokens, 0);

    const model = res.summary!.model!;
    expect(model).toMatchObject({ turns: 40, cachedPromptTokens: recorded, promptTokens: prompt, cacheReportedPromptTokens: prompt, moves: 0 });
    expect(model.prefixCacheHitRate).toBeCloseTo(recorded / prompt, 10);
    expect(model.prefillTokens).toBe(prompt - recorded);
    expect(model.decodeTokens).toBe(trajectories.flatMap((t) => t.turns).reduce((a, x) => a + x.completionTokens, 0));
    expect(model.modelSeconds).toBeGreaterThan(0);
    expect(formatSummary(res.summary!)).toContain(`model: prefix-cache hit rate ${(100 * model.prefixCacheHitRate!).toFixed(1)}%`);
    expect(JSON.parse(fs.readFileSync(runPaths(out).summary, "utf8")).model.prefixCacheHitRate).toBeCloseTo(model.prefixCacheHitRate!, 10);
    // `forager status` prints the manifest's figures (built from the shard index lines)
    const manifest = await writeManifest(out, { write: false, dedup: false });
    expect(formatModelUsage(manifest.model!)).toBe(formatModelUsage(model));
  });
});
