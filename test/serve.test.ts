/**
 * `forager serve` with real Docker: the step API solves the tiny task and gets its reward from the
 * hidden tests in a fresh container; an env the trainer abandons expires and leaves no container;
 * the Python example client (Debian's python3, standard library only) submits GRPO groups with the
 * oracle policy and with a scripted model server, reads the trajectories and computes advantages.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateWith } from "../orchestrator/stages";
import { dockerClient } from "../sandbox/docker";
import { startService, type Service } from "../serve/server";
import { startScriptedServer, type ScriptedServer } from "./helpers/scripted-server";
import { tinyEvaluator, tinyTask, type TinyTask } from "./helpers/tasks";

const run = promisify(execFile);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-serve-"));
let tiny: TinyTask;
let svc: Service;
let model: ScriptedServer;

beforeAll(async () => {
  tiny = await tinyTask();
  model = await startScriptedServer({ handler: () => ({ text: "Looking.\n</think>\n<tool: bash>\nls\n</tool>" }) });
  svc = await startService({
    dir: path.join(tmp, "svc"),
    port: 0,
    tasks: [tiny.task],
    images: { [tiny.task.id]: tiny.image },
    evaluator: (image) => tinyEvaluator(image),
    worker: { concurrency: 2, evaluate: evaluateWith(() => tinyEvaluator(tiny.image)), reap: false, lockDurationMs: 5000, stalledIntervalMs: 2000 },
    idleSeconds: 1,
    weightsVersion: "step-1",
    pollMs: 100,
  });
});

afterAll(async () => {
  await svc?.close();
  await model?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function call(method: string, p: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(svc.url + p, { method, headers: body !== undefined ? { "content-type": "application/json" } : {}, body: body !== undefined ? JSON.stringify(body) : undefined });
  return { status: r.status, json: await r.json() };
}

async function containersOf(envId: string): Promise<number> {
  return (await dockerClient().listContainers({ all: true, filters: { label: [`forager.episode=${envId}`] } })).length;
}

const act = (reasoning: string, tool: string, arg: string) => `${reasoning}\n</think>\n<tool: ${tool}>\n${arg}\n</tool>`;

describe("forager serve (real Docker)", () => {
  it("step API: an episode solved step by step, rewarded by the hidden tests in a fresh container", async () => {
    const c = await call("POST", "/v1/envs", { task: tiny.task.id });
    expect(c.status).toBe(201);
    const id = c.json.envId;
    expect(await containersOf(id)).toBe(1);
    const patch = tiny.task.referencePatch.endsWith("\n") ? tiny.task.referencePatch : tiny.task.referencePatch + "\n";
    const actions = [
      act("Apply the fix.", "bash", `cat > /tmp/fix.patch <<'PATCH_EOF'\n${patch}PATCH_EOF\ngit apply /tmp/fix.patch && echo applied`),
      act("Write the patch.", "bash", "git add -N NOTES.md && git diff > fix.patch && git diff --stat"),
      act("Submit.", "submit", "fix.patch"),
      "Done.\n</think>\n## Summary\nFixed add and sub.",
    ];
    const results = [];
    for (const text of actions) results.push((await call("POST", `/v1/envs/${id}/step`, { action: { text } })).json);
    expect(results[0].observation.text).toMatch(/applied/);
    expect(results[2].turn).toMatchObject({ tool: "submit", toolSuccess: true });
    const last = results[3];
    expect(last).toMatchObject({ done: true, endReason: "final_answer", resolved: true, reward: 0 });
    expect(last.trajectory.evaluation).toMatchObject({ outcome: "pass", resolved: true });
    expect(last.trajectory.turns.every((t: any) => t.weightsVersion === "step-1")).toBe(true);
    expect(await containersOf(id)).toBe(0);
  });

  it("an env the trainer abandons expires and leaves no container", async () => {
    const c = await call("POST", "/v1/envs", { task: tiny.task.id });
    const id = c.json.envId;
    expect(await containersOf(id)).toBe(1);
    // idleSeconds is 1: wait for the sweep (at most 15 s)
    for (let i = 0; i < 150 && (await call("GET", "/v1/envs")).json.envs.includes(id); i++) await new Promise((r) => setTimeout(r, 100));
    expect((await call("GET", "/v1/envs")).json.envs).not.toContain(id);
    expect(await containersOf(id)).toBe(0);
    expect((await call("POST", `/v1/envs/${id}/step`, { action: { text: "x" } })).status).toBe(404);
    const m = await (await fetch(`${svc.url}/metrics`)).text();
    expect(m).toMatch(/forager_envs 0/);
  });

  it("the Python example: GRPO groups with the oracle and with a scripted model", async () => {
    const script = path.resolve("examples/serve/grpo_client.py");
    const oracle = await run("/usr/bin/python3", [script, "--url", svc.url, "--task", tiny.task.id, "--samples", "2", "--policy", "oracle"], { timeout: 120_000 });
    const o = JSON.parse(oracle.stdout.trim().split("\n").pop()!);
    expect(o).toMatchObject({ status: "done", events: 2 });
    expect(o.tasks).toHaveLength(1);
    expect(o.tasks[0]).toMatchObject({ taskId: tiny.task.id, rewards: [0, 0], advantages: [0, 0] });
    expect(o.tasks[0].trajectories.every((t: any) => t.resolved && t.exact === false)).toBe(true); // the oracle has no token ids
    const scripted = await run("/usr/bin/python3", [script, "--url", svc.url, "--task", tiny.task.id, "--samples", "2", "--model-url", model.url, "--max-turns", "2"], { timeout: 120_000 });
    const s = JSON.parse(scripted.stdout.trim().split("\n").pop()!);
    expect(s.tasks[0].rewards).toEqual([-1, -1]);
    for (const t of s.tasks[0].trajectories) {
      expect(t.exact).toBe(true);
      expect(t.modelTokens).toBeGreaterThan(0);
      expect(t.tokens).toBeGreaterThan(t.modelTokens);
    }
    // the advantages of a mixed group: (r - mean) / (std + eps)
    const adv = await run("/usr/bin/python3", ["-c", "import json, sys; sys.path.insert(0, sys.argv[1]); from grpo_client import grpo_advantages; print(json.dumps(grpo_advantages([0, -1, -1, 0])))", path.dirname(script)]);
    JSON.parse(adv.stdout).forEach((a: number, i: number) => expect(a).toBeCloseTo([1, -1, -1, 1][i]!, 5));
  });
});
