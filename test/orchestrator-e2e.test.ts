/**
 * End to end with real episodes: the oracle policy solves a tiny created repository task in real
 * Docker through the orchestrator (embedded Redis, in-process workers, the evaluation stage), the
 * CLI (`forage`, `status`, `export`), and an inference server answering 500 / 429 / slowly / not
 * at all: retries, then a clear failure per job, never a hang. No container is left behind.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerClient } from "../sandbox/docker";
import { forage } from "../orchestrator/forage";
import { freePort } from "../orchestrator/redis-server";
import { readShards } from "../orchestrator/storage";
import { evaluateWith } from "../orchestrator/stages";
import { runPaths } from "../orchestrator/spec";
import { readFailures } from "../orchestrator/run";
import { startScriptedServer } from "./helpers/scripted-server";
import { decode } from "../inference-client/tokenizer";
import { tinyEvaluator, tinyTask, type TinyTask } from "./helpers/tasks";

const run = promisify(execFile);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-orch-e2e-"));
let tiny: TinyTask;
let tasksFile: string;
const FAST = { lockDurationMs: 5000, stalledIntervalMs: 2000, reap: false };

beforeAll(async () => {
  tiny = await tinyTask();
  tasksFile = path.join(tmp, "tiny.jsonl");
  fs.writeFileSync(tasksFile, JSON.stringify(tiny.task) + "\n");
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function runContainers(runId: string): Promise<number> {
  const list = await dockerClient().listContainers({ all: true, filters: { label: [`forager.run=${runId}`] } });
  return list.length;
}

describe("orchestrator end to end (real Docker)", () => {
  it("oracle episodes through the queues: trajectories resolved, pass@k, predictions, no container left", async () => {
    const out = path.join(tmp, "oracle-run");
    const res = await forage({
      taskFiles: [tasksFile],
      samples: 2,
      out,
      runId: "e2e-oracle",
      policy: { kind: "oracle" },
      images: { [tiny.task.id]: tiny.image },
      worker: { concurrency: 2, evaluate: evaluateWith(() => tinyEvaluator(tiny.image)), ...FAST },
      progressMs: 200,
    });
    expect(res.summary).toMatchObject({ tasks: 1, expected: 2, trajectories: 2, resolved: 2, failed: 0 });
    expect(res.summary!.metrics).toEqual({ "pass@1": 1, "pass@2": 1 });
    const ts = [...readShards(runPaths(out).shards)].map((x) => x.trajectory);
    expect(ts.map((t) => t.id)).toEqual(["e2e-oracle/example__tiny-calc-1/0", "e2e-oracle/example__tiny-calc-1/1"]);
    for (const t of ts) {
      expect(t.endReason).toBe("final_answer");
      expect(t.evaluation).toMatchObject({ outcome: "pass", resolved: true });
      expect(t.turns.length).toBeGreaterThan(3);
    }
    // identical oracle runs are near-duplicates
    expect(res.manifest!.nearDuplicates).toMatchObject({ clusters: 1, dropOnFilter: 1 });
    expect(await runContainers("e2e-oracle")).toBe(0);
  });

  it("the CLI: forage (embedded), status, export predictions", async () => {
    const out = path.join(tmp, "cli-run");
    const cli = path.resolve("bin/forager");
    const f = await run(cli, ["forage", "--tasks", tasksFile, "--samples", "1", "--policy", "oracle", "--image", `${tiny.task.id}=${tiny.image}`, "--out", out, "--run-id", "e2e-cli", "--concurrency", "1"], {
      env: { ...process.env, FORAGER_LOG_LEVEL: "warn" },
    }).catch((e: { stdout: string; stderr: string; code: number }) => e);
    expect(f.stdout).toMatch(/trajectories 1/);
    expect(f.stdout).toMatch(/pass@1/);
    const st = await run(cli, ["status", out]);
    expect(st.stdout).toMatch(/trajectories 1\/1/);
    const ex = await run(cli, ["export", out, "--format", "predictions"]);
    const pred = JSON.parse(ex.stdout.trim());
    expect(pred).toMatchObject({ instance_id: tiny.task.id, model_name_or_path: "forager-oracle" });
    expect(pred.model_patch).toContain("diff --git a/calc.py b/calc.py");
    const chat = await run(cli, ["export", out, "--format", "chat"]);
    expect(JSON.parse(chat.stdout.trim().split("\n")[0]!).messages[0].role).toBe("system");
    expect(await runContainers("e2e-cli")).toBe(0);
  });

  it("an inference server answering 500, 429, slowly or not at all: retries, then a clear failure per job", async () => {
    const mk = (id: string) => ({ ...tiny.task, id, problemStatement: `${id}: ${tiny.task.problemStatement}` });
    const tasks = [mk("srv-500"), mk("srv-429"), mk("srv-slow")];
    const file = path.join(tmp, "srv.jsonl");
    fs.writeFileSync(file, tasks.map((t) => JSON.stringify(t)).join("\n") + "\n");
    let requests = 0;
    const server = await startScriptedServer({
      handler: (req) => {
        requests++;
        // prompts go as token ids (agent/token-ledger.ts): the task id is in their decoded text
        const text = Array.isArray(req.body?.prompt) ? decode(req.body.prompt) : JSON.stringify(req.body);
        if (text.includes("srv-500")) return { status: 500, body: "boom" };
        if (text.includes("srv-429")) return { status: 429, body: "slow down", headers: { "retry-after": "0" } };
        return { text: "late", delayMs: 5000 };
      },
    });
    const images = Object.fromEntries(tasks.map((t) => [t.id, tiny.image]));
    const common = {
      samples: 1,
      images,
      attempts: 2,
      backoffMs: 100,
      inference: { retries: 2, backoffBaseSeconds: 0.05, backoffMaxSeconds: 0.1, requestDeadlineSeconds: 1.5 },
      worker: { concurrency: 3, ...FAST },
      progressMs: 200,
    };
    const started = Date.now();
    try {
      const res = await forage({ ...common, taskFiles: [file], out: path.join(tmp, "srv-run"), runId: "e2e-srv", policy: { kind: "http", endpoints: [{ url: server.url, maxConcurrentRequests: 2 }] } });
      expect(res.summary).toMatchObject({ expected: 3, trajectories: 0, failed: 3 });
      const reasons = Object.fromEntries(readFailures(path.join(tmp, "srv-run")).map((f) => [f.taskId, f]));
      expect(reasons["srv-500"]!.reason).toMatch(/HTTP 500/);
      expect(reasons["srv-429"]!.reason).toMatch(/HTTP 429/);
      expect(reasons["srv-slow"]!.reason).toMatch(/deadline/i);
      for (const f of Object.values(reasons)) expect(f).toMatchObject({ stage: "rollout", attempts: 2 });
      expect(requests).toBeGreaterThanOrEqual(2 * 3 * 2); // (retries + 1) × attempts for the 500 and 429 tasks
      // the server gone: connection refused
      const port = await freePort();
      const gone = await forage({ ...common, taskFiles: [file], out: path.join(tmp, "gone-run"), runId: "e2e-gone", policy: { kind: "http", endpoints: [{ url: `http://127.0.0.1:${port}` }] } });
      expect(gone.summary).toMatchObject({ trajectories: 0, failed: 3 });
      for (const f of readFailures(path.join(tmp, "gone-run"))) expect(f.reason).toMatch(/connect|ECONNREFUSED|connection/i);
    } finally {
      await server.close();
    }
    expect(Date.now() - started).toBeLessThan(120_000);
    expect(await runContainers("e2e-srv")).toBe(0);
    expect(await runContainers("e2e-gone")).toBe(0);
  });
});
