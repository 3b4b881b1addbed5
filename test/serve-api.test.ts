/**
 * `forager serve` without Docker: a stub sandbox (the scripted model's actions are turns without a
 * tool call, so no tool runs), a scripted OpenAI-compatible server whose token ids differ from what
 * re-tokenizing its text gives, a private Redis and the embedded workers. Covers the OpenAPI
 * document, the bearer token, token exactness through the rollouts API and the step API, the
 * token export, the weights switch (gate and through the service) and the staleness setting.
 */
import fs from "node:fs";
import { MemorySandbox } from "../sandbox/memory";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encode } from "../inference-client/tokenizer";
import { fakeTask } from "../orchestrator/fake";
import { keepEvaluation } from "../orchestrator/fake";
import { startService, type Service } from "../serve/server";
import { servingRollout } from "../serve/rollouts";
import { startRedisServer } from "../orchestrator/redis-server";
import { startWorker } from "../orchestrator/worker";
import { tokenRecord } from "../serve/tokens";
import { WeightsGate } from "../serve/weights";
import { WarmPool } from "../serve/pool";
import { EOT_TOKEN_ID, TokenLedger } from "../agent/token-ledger";
import type { Trajectory } from "../agent/trajectory";
import { startScriptedServer, type ScriptedServer } from "./helpers/scripted-server";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-serve-api-"));
const stub = new MemorySandbox("serve-stub");
/** A turn without a tool call: a format error goes back, no sandbox needed. */
const TEXT = "Thinking about it.\n</think>\nNo tool call here.";
/** The server's ids: one id per character (a valid Llama-3 split, but not what encode(TEXT) gives). */
const IDS = [...TEXT].map((c) => encode(c)[0]!);

const auth = { authorization: "Bearer secret" };
let model: ScriptedServer;
let svc: Service;
const task = fakeTask("example__serve-1");

async function api(method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(svc.url + p, { method, headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers }, body: body !== undefined ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, text };
}

async function waitDone(id: string): Promise<any> {
  for (;;) {
    const r = await api("GET", `/v1/rollouts/${id}`, undefined, auth);
    if (r.json.status !== "running") {
      if (!r.json.status) throw new Error(`GET /v1/rollouts/${id}: ${r.status} ${r.text}`);
      return r.json;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

beforeAll(async () => {
  expect(encode(TEXT)).not.toEqual(IDS); // the test means something only if they differ
  model = await startScriptedServer({ handler: () => ({ text: TEXT, tokenIds: IDS, logprobs: IDS.map((_, i) => -0.01 * (i + 1)), delayMs: 20 }) });
  svc = await startService({
    dir: path.join(tmp, "svc"),
    port: 0,
    token: "secret",
    tasks: [task],
    images: { [task.id]: "serve:stub" },
    sandboxFactory: async () => stub,
    evaluator: () => async () => ({ outcome: "fail", resolved: false }),
    worker: { concurrency: 4, evaluate: keepEvaluation, image: async () => "serve:stub", reap: false, lockDurationMs: 5000, stalledIntervalMs: 2000 },
    idleSeconds: 60,
    weightsVersion: "v1",
    staleness: { maxVersions: 0, action: "tag" },
    pollMs: 50,
  });
});

afterAll(async () => {
  await svc?.close();
  await model?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});


const call = (method: string, p: string, body?: unknown) => api(method, p, body, auth);

describe("forager serve (stub sandbox, scripted model)", () => {
  it("serves an OpenAPI 3.1 document generated from the zod schemas, behind the bearer token", async () => {
    expect((await api("GET", "/openapi.json")).status).toBe(401);
    expect((await api("GET", "/healthz")).status).toBe(200);
    const doc = (await call("GET", "/openapi.json")).json;
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/rollouts", "/v1/rollouts/{id}", "/v1/rollouts/{id}/events", "/v1/envs", "/v1/envs/{id}/step", "/v1/envs/{id}", "/v1/weights"]));
    expect(doc.components.schemas.RolloutRequest.required).toEqual(expect.arrayContaining(["tasks", "samples", "policy"]));
    expect(doc.components.schemas.StepRequest.properties.action.anyOf).toHaveLength(2);
    expect(JSON.stringify(doc)).not.toMatch(/__shared|\$defs/);
    // invalid bodies are refused with the zod issues
    const bad = await call("POST", "/v1/rollouts", { tasks: [], samples: 0 });
    expect(bad.status).toBe(400);
    expect(bad.json.issues.join("\n")).toMatch(/samples/);
    expect((await call("POST", "/v1/rollouts", { tasks: ["nope"], samples: 1, policy: { kind: "oracle" } })).json.error).toMatch(/unknown task "nope"/);
  });

  it("refuses to bind off loopback without a token", async () => {
    await expect(startService({ dir: path.join(tmp, "x"), host: "0.0.0.0", port: 0 })).rejects.toThrow(/needs a bearer token/);
  });

  it("rollouts: a group's prompts are token-exact (previous prompt ids + the server's ids + the tokenized observation)", async () => {
    const before = model.requests.length;
    const created = await call("POST", "/v1/rollouts", { tasks: [task.id], samples: 2, maxTurns: 3, policy: { kind: "http", endpoints: [{ url: model.url }] } });
    expect(created.status).toBe(201);
    const g = await waitDone(created.json.id);
    expect(g.status).toBe("done");
    expect(g.groups).toHaveLength(1);
    const items = g.groups[0].trajectories;
    expect(items.map((i: any) => i.sample)).toEqual([0, 1]);
    const reqs = model.requests.slice(before).filter((r) => r.path === "/v1/completions");
    expect(reqs).toHaveLength(6);
    for (const item of items) {
      const t: Trajectory = item.trajectory;
      expect(t.turns).toHaveLength(3);
      for (const turn of t.turns) {
        expect(turn.tokenIds).toEqual(IDS); // the server's ids, not encode(text)
        expect(turn.weightsVersion).toBe("v1");
        expect(turn.tokenIdsUnavailable).toBeUndefined();
      }
      // Each prompt sent = concatenation of the deltas and completions before it.
      let stream: number[] = [];
      const sent = t.turns.map((turn) => {
        stream = [...stream, ...turn.promptDeltaTokenIds!];
        const p = [...stream];
        stream = [...stream, ...turn.tokenIds!];
        return p;
      });
      for (const p of sent) expect(reqs.some((r) => JSON.stringify(r.body.prompt) === JSON.stringify(p))).toBe(true);
      // turn 1's prompt: turn 0's prompt + the server's ids + the observation tokens only
      const obs = t.turns[0]!.observation!;
      expect(t.turns[1]!.promptDeltaTokenIds).toEqual(encode(`<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n${obs}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<think>\n`));
      expect(t.turns[0]!.promptDeltaTokenIds).toEqual(encode(reqs.length ? decodeFirstPrompt(t) : ""));
      expect(item.weightsVersions).toEqual(["v1"]);
      expect(item.spansWeightsVersions).toBe(false);
    }
    // the token export: ids, logprobs and a loss mask over exactly those tokens
    const tok = await call("GET", `/v1/rollouts/${created.json.id}/tokens`);
    const recs = tok.text.trim().split("\n").map((l) => JSON.parse(l));
    expect(recs).toHaveLength(2);
    for (const r of recs) {
      expect(r.exact).toBe(true);
      expect(r.lossMask.filter((m: number) => m === 1)).toHaveLength(3 * IDS.length);
      expect(r.inputIds).toHaveLength(r.lossMask.length);
      expect(r.logprobs).toHaveLength(r.lossMask.length);
      const start = r.turnStarts[1];
      expect(r.inputIds.slice(start, start + IDS.length)).toEqual(IDS);
      expect(r.logprobs[start]).toBeCloseTo(-0.01);
      expect(r.lossMask[start - 1]).toBe(0);
    }
    const pq = await fetch(`${svc.url}/v1/rollouts/${created.json.id}/tokens?format=parquet`, { headers: auth });
    const bytes = Buffer.from(await pq.arrayBuffer());
    expect(bytes.subarray(0, 4).toString()).toBe("PAR1");
    // metrics
    const m = (await call("GET", "/metrics")).text;
    expect(m).toMatch(/forager_trajectories_total\{source="rollouts",end_reason="max_turns"\} 2/);
    expect(m).toMatch(/forager_queue_depth\{queue="rollouts"\} 0/);
    expect(m).toMatch(/forager_episode_seconds_total\{part="model"\}/);
  });

  it("chat mode says it has no token ids instead of filling them", async () => {
    const created = await call("POST", "/v1/rollouts", { tasks: [task.id], samples: 1, maxTurns: 2, policy: { kind: "http", mode: "chat", endpoints: [{ url: model.url }] } });
    const g = await waitDone(created.json.id);
    const t: Trajectory = g.groups[0].trajectories[0].trajectory;
    for (const turn of t.turns) {
      expect(turn.tokenIds).toBeUndefined();
      expect(turn.tokenIdsUnavailable).toMatch(/chat mode/);
    }
    const rec = tokenRecord(t);
    expect(rec).toMatchObject({ exact: false, inputIds: [], lossMask: [] });
    expect(rec.reason).toMatch(/chat mode/);
  });

  it("step API: observations as text and ids, actions as token ids kept as given", async () => {
    const c = await call("POST", "/v1/envs", { task: task.id, agent: { maxTurns: 3 } });
    expect(c.status).toBe(201);
    const { envId, observation } = c.json;
    expect(observation.text.startsWith("<|begin_of_text|><|start_header_id|>system")).toBe(true);
    expect(observation.tokenIds).toEqual(encode(observation.text));
    let stream: number[] = [...observation.tokenIds];
    const s1p = call("POST", `/v1/envs/${envId}/step`, { action: { tokenIds: IDS, logprobs: IDS.map(() => -0.5) } });
    const s1 = await s1p;
    expect(s1.json.done).toBe(false);
    expect(s1.json.turn).toMatchObject({ index: 0, errorType: "FormatError" });
    expect(s1.json.observation.text.startsWith("<|eot_id|><|start_header_id|>user")).toBe(true);
    expect(s1.json.observation.tokenIds).toEqual(encode(s1.json.observation.text));
    stream = [...stream, ...IDS, ...s1.json.observation.tokenIds];
    const s2 = await call("POST", `/v1/envs/${envId}/step`, { action: { tokenIds: IDS }, weightsVersion: "trainer-7" });
    stream = [...stream, ...IDS, ...s2.json.observation.tokenIds];
    const s3 = await call("POST", `/v1/envs/${envId}/step`, { action: { text: TEXT } });
    expect(s3.json).toMatchObject({ done: true, endReason: "max_turns", reward: -1 });
    const t: Trajectory = s3.json.trajectory;
    expect(t.turns[0]!.tokenIds).toEqual(IDS);
    expect(t.turns[0]!.logprobs).toEqual(IDS.map(() => -0.5));
    expect(t.turns.map((x) => x.weightsVersion)).toEqual(["v1", "trainer-7", "v1"]);
    expect(t.turns[2]!.tokenIdsUnavailable).toMatch(/as text/);
    // the trainer's stream equals what the record says the prompts were
    const rec: number[] = [];
    for (const turn of t.turns.slice(0, 2)) rec.push(...turn.promptDeltaTokenIds!, ...turn.tokenIds!);
    rec.push(...t.turns[2]!.promptDeltaTokenIds!);
    expect(rec).toEqual(stream);
    expect((await call("POST", `/v1/envs/${envId}/step`, { action: { text: TEXT } })).status).toBe(404);
  });

  it("step API: DELETE ends the env; an idle env expires", async () => {
    const c = await call("POST", "/v1/envs", { task: task.id });
    expect((await call("GET", "/v1/envs")).json.envs).toContain(c.json.envId);
    expect((await call("DELETE", `/v1/envs/${c.json.envId}`)).json).toEqual({ deleted: true });
    expect((await call("GET", "/v1/envs")).json.envs).not.toContain(c.json.envId);
    expect((await call("DELETE", `/v1/envs/${c.json.envId}`)).status).toBe(404);
  });

  it("the weights gate: a switch waits for in-flight requests, new ones wait for the switch", async () => {
    const gate = new WeightsGate("a");
    const lease = await gate.acquire();
    let switched = false;
    const sw = gate.switchTo("b").then(() => (switched = true));
    await new Promise((r) => setImmediate(r));
    expect(gate.state()).toMatchObject({ paused: true, inFlight: 1, version: "a" });
    let got: string | undefined;
    const waiting = gate.acquire().then((l) => {
      got = l.version;
      l.release();
    });
    await new Promise((r) => setImmediate(r));
    expect(switched).toBe(false);
    expect(got).toBeUndefined();
    expect(lease.version).toBe("a");
    lease.release();
    await sw;
    await waiting;
    expect(got).toBe("b");
    expect(gate.state()).toMatchObject({ paused: false, inFlight: 0, version: "b", history: ["a", "b"] });
    expect(gate.age(["a", "b"])).toBe(1);
    expect(gate.age(["b"])).toBe(0);
  });

  it("a switch during a group: turns record their version, spanning trajectories are marked and tagged stale", async () => {
    const slow = await startScriptedServer({ handler: () => ({ text: TEXT, tokenIds: IDS, delayMs: 150 }) });
    try {
      const created = await call("POST", "/v1/rollouts", { tasks: [task.id], samples: 2, maxTurns: 6, policy: { kind: "http", endpoints: [{ url: slow.url }] }, weightsVersion: "v2" });
      // switch once the first requests have been answered
      while (slow.counts.completions < 3) await new Promise((r) => setTimeout(r, 20));
      const w = await call("POST", "/v1/weights", { version: "v3" });
      expect(w.json).toMatchObject({ version: "v3", paused: false });
      expect(w.json.history.slice(-2)).toEqual(["v2", "v3"]);
      const g = await waitDone(created.json.id);
      for (const item of g.groups[0].trajectories) {
        const versions = item.trajectory.turns.map((x: any) => x.weightsVersion);
        expect(versions[0]).toBe("v2");
        expect(versions[versions.length - 1]).toBe("v3");
        // never back to an older version
        expect(versions.join(",")).toMatch(/^(v2,)+(v3,?)+$/);
        expect(item).toMatchObject({ weightsVersions: ["v2", "v3"], spansWeightsVersions: true, stale: true });
        expect(item.trajectory.spansWeightsVersions).toBe(true);
      }
    } finally {
      await slow.close();
    }
  });
});

/** The rendered first prompt of a trajectory (system, user, assistant header and prefix). */
function decodeFirstPrompt(t: Trajectory): string {
  return `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n${t.prompt.system.trim()}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n${t.prompt.user.trim()}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n${t.prompt.assistantPrefix}`;
}

describe("token ledger and warm pool (no service)", () => {
  const P0 = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
  const OBS = "<|start_header_id|>user<|end_header_id|>\n\nagain<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
  it("keeps the server's ids; adds <|eot_id|> only when they do not end with it", () => {
    const l = new TokenLedger();
    expect(l.next(P0).ids).toEqual(encode(P0));
    const ids = [...TEXT].map((c) => encode(c)[0]!);
    l.completed(TEXT, ids);
    // the rendered prompt appends the closing <|eot_id|> after the text
    const d1 = l.next(P0 + TEXT + "<|eot_id|>" + OBS);
    expect(d1.ids).toEqual(encode("<|eot_id|>" + OBS));
    expect(l.promptIds()).toEqual([...encode(P0), ...ids, ...encode("<|eot_id|>" + OBS)]);
    // a completion whose ids end with <|eot_id|> (text without it): not added twice
    const ids2 = [...ids, EOT_TOKEN_ID];
    l.completed(TEXT, ids2);
    const before = l.promptIds();
    const d2 = l.next(P0 + TEXT + "<|eot_id|>" + OBS + TEXT + "<|eot_id|>" + OBS);
    expect(d2.ids).toEqual(encode(OBS));
    expect(l.promptIds()).toEqual([...before, ...ids2, ...encode(OBS)]);
    expect(l.broken).toBeUndefined();
    // a completion without ids breaks the ledger, and it says why
    l.completed(TEXT, undefined);
    l.next(P0);
    expect(l.broken).toMatch(/no token ids/);
  });

  it("the warm pool hands out started sandboxes and refills", async () => {
    let made = 0;
    const destroyed: string[] = [];
    const create = async () => {
      const name = `fake-${made++}`;
      const sb = new MemorySandbox(name);
      sb.destroy = async () => void destroyed.push(name);
      return sb;
    };
    const pool = new WarmPool({ size: 2, create });
    const cfg = { image: "img:1", lifetimeSeconds: 60 };
    const first = await pool.factory(cfg); // a miss: it teaches the pool the configuration
    await pool.settled();
    expect(pool.stats()).toMatchObject({ ready: 2, hits: 0, misses: 1 });
    const second = await pool.factory({ ...cfg, labels: { "forager.episode": "x" } });
    expect(second.name).not.toBe(first.name);
    await pool.settled();
    expect(pool.stats()).toMatchObject({ ready: 2, hits: 1, misses: 1 });
    await pool.factory({ image: "img:2" }); // another configuration: a miss
    expect(pool.stats().misses).toBe(2);
    await pool.close();
    expect(destroyed.length).toBe(4); // the ready ones of both configurations
  });
});

describe("forager serve with remote workers (--redis)", () => {
  it("a group runs on a worker of another Redis; trajectories travel through Redis (storage redis)", async () => {
    const redis = await startRedisServer({ dir: path.join(tmp, "remote-redis") });
    const worker = await startWorker({ redisUrl: redis.url, concurrency: 2, rollout: servingRollout(new WeightsGate("w"), async () => stub), evaluate: keepEvaluation, reap: false, lockDurationMs: 5000, stalledIntervalMs: 2000 });
    const remote = await startService({ dir: path.join(tmp, "remote-svc"), port: 0, redisUrl: redis.url, tasks: [task], images: { [task.id]: "serve:stub" }, sandboxFactory: async () => stub, pollMs: 50 });
    try {
      const r = await fetch(`${remote.url}/v1/rollouts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tasks: [task.id], samples: 2, maxTurns: 2, policy: { kind: "http", endpoints: [{ url: model.url }] } }) });
      const { id } = (await r.json()) as { id: string };
      let g: any;
      for (;;) {
        g = await (await fetch(`${remote.url}/v1/rollouts/${id}`)).json();
        if (g.status !== "running") break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(g.status).toBe("done");
      expect(g.groups[0].trajectories.map((i: any) => i.sample)).toEqual([0, 1]);
      expect(fs.existsSync(path.join(tmp, "remote-svc", "runs", id, "staging"))).toBe(false); // storage redis: the worker wrote no file of the run
      for (const i of g.groups[0].trajectories) expect(i.trajectory.turns[0].tokenIds).toEqual(IDS);
    } finally {
      await remote.close();
      await worker.close({ force: true });
      await redis.stop();
    }
  });
});

describe("staleness drop", () => {
  it("drops trajectories older than the setting allows and counts them", async () => {
    const slow = await startScriptedServer({ handler: () => ({ text: TEXT, tokenIds: IDS, delayMs: 100 }) });
    const s2 = await startService({ dir: path.join(tmp, "drop-svc"), port: 0, tasks: [task], images: { [task.id]: "serve:stub" }, sandboxFactory: async () => stub, worker: { concurrency: 2, evaluate: keepEvaluation, reap: false }, weightsVersion: "d1", staleness: { maxVersions: 0, action: "drop" }, pollMs: 50 });
    try {
      const post = (p: string, body: unknown) => fetch(`${s2.url}${p}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.json() as Promise<any>);
      const { id } = await post("/v1/rollouts", { tasks: [task.id], samples: 2, maxTurns: 4, policy: { kind: "http", endpoints: [{ url: slow.url }] } });
      while (slow.counts.completions < 2) await new Promise((r) => setTimeout(r, 20));
      await post("/v1/weights", { version: "d2" });
      let g: any;
      for (;;) {
        g = await (await fetch(`${s2.url}/v1/rollouts/${id}`)).json();
        if (g.status !== "running") break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(g.progress).toMatchObject({ done: 2, dropped: 2 });
      expect(g.groups[0].trajectories).toEqual([]);
    } finally {
      await s2.close();
      await slow.close();
    }
  });
});

describe("forager serve as an attack surface (round 3)", () => {
  let local: Service;
  beforeAll(async () => {
    local = await startService({ dir: path.join(tmp, "local-svc"), port: 0, tasks: [task], images: { [task.id]: "serve:stub" }, sandboxFactory: async () => stub, pollMs: 50 });
  });
  afterAll(async () => local?.close());
  const port = () => new URL(local.url).port;
  /** A raw request with a chosen Host header (fetch would not let a page set it; a browser after DNS rebinding sends its own name). */
  const raw = (method: string, p: string, host: string, body?: unknown) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        { host: "127.0.0.1", port: Number(port()), method, path: p, headers: { host, ...(data ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) } : {}) } },
        (res) => {
          let text = "";
          res.on("data", (c) => (text += c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on("error", reject);
      if (data) req.write(data);
      req.end();
    });

  it("on loopback without a token, the Host header must name a loopback host (DNS rebinding)", async () => {
    for (const host of ["evil.example", "127.0.0.1.evil.example", `attacker.test:${port()}`, "10.0.0.1"]) {
      const r = await raw("GET", "/openapi.json", host);
      expect(r.status, host).toBe(403);
      expect(r.text).toMatch(/Host must be a loopback name/);
    }
    for (const host of [`127.0.0.1:${port()}`, `localhost:${port()}`, `[::1]:${port()}`]) expect((await raw("GET", "/healthz", host)).status, host).toBe(200);
  });

  it("whole Task records are refused by default; with --allow-task-records, never one naming a host path, bundle or URL", async () => {
    const host = `127.0.0.1:${port()}`;
    const withSource = (source: unknown) => ({ ...task, id: "private", image: { ...task.image, source } });
    for (const record of [withSource({ type: "path", path: "/root/private-repo" }), withSource({ type: "git", url: "file:///srv/secret.git" }), task]) {
      const r = await raw("POST", "/v1/envs", host, { task: record });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.text).error).toMatch(/whole Task records are not accepted/);
    }
    const open = await startService({ dir: path.join(tmp, "records-svc"), port: 0, allowTaskRecords: true, images: {}, sandboxFactory: async () => stub, pollMs: 50 });
    try {
      const post = async (body: unknown) => {
        const r = await fetch(`${open.url}/v1/rollouts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        return { status: r.status, json: (await r.json()) as { error: string } };
      };
      const oracle = { kind: "oracle" };
      for (const source of [{ type: "path", path: "/root/private-repo" }, { type: "bundle", path: "/srv/secret.bundle" }, { type: "git", url: "https://internal.example/secret.git" }]) {
        const r = await post({ tasks: [withSource(source)], samples: 1, policy: oracle });
        expect(r.status).toBe(400);
        expect(r.json.error).toMatch(/an image source from a request \((path|bundle|git)\) is refused/);
      }
      const other = await post({ tasks: [{ ...task, image: { ...task.image, baseImage: "private/secrets:latest" } }], samples: 1, policy: oracle });
      expect(other.json.error).toMatch(/is not forager's/);
    } finally {
      await open.close();
    }
  });

  it("errors echo at most a few hundred characters of the request", async () => {
    const host = `127.0.0.1:${port()}`;
    const huge = "x".repeat(8 * 1024 * 1024);
    const cases: [string, unknown][] = [
      ["/v1/rollouts", { tasks: [huge], samples: 1, policy: { kind: "oracle" } }],
      ["/v1/envs", { task: huge }],
      ["/v1/rollouts", { tasks: [task.id], samples: 1, policy: { kind: huge } }],
    ];
    for (const [p, body] of cases) {
      const r = await raw("POST", p, host, body);
      expect(r.status).toBe(400);
      expect(r.text.length).toBeLessThan(8000);
    }
  });
});
