/**
 * Episode-affine routing (inference-client/routing.ts) on its own, and through InferenceClient over
 * real HTTP against stand-in servers (test/helpers/scripted-server.ts) with a prefix cache and a cost
 * model. No timing assertions: the stand-ins' time is simulated and only ordering matters.
 */
import { afterEach, describe, expect, it } from "vitest";
import { MemorySandbox } from "../sandbox/memory";
import { runEpisode } from "../agent/episode";
import { HttpPolicy } from "../agent/policy";
import { TrajectorySchema } from "../agent/trajectory";
import { InferenceClient, type CompletionResult } from "../inference-client/client";
import { fakeTask } from "../orchestrator/fake";
import { formatModelUsage, modelFigures, modelUsageOf } from "../orchestrator/metrics";
import type { InferenceConfigInput } from "../inference-client/config";
import { AffinityRouter, boundedCapacity, rendezvousOrder, type EndpointCondition } from "../inference-client/routing";
import { PrefixCache, startScriptedServer, type ScriptedServer, type ScriptedServerOptions } from "./helpers/scripted-server";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function servers(n: number, opts: ScriptedServerOptions = {}): Promise<ScriptedServer[]> {
  const out = await Promise.all(Array.from({ length: n }, () => startScriptedServer({ recordRequests: true, ...opts })));
  for (const s of out) cleanups.push(() => s.close());
  return out;
}

function client(config: Partial<InferenceConfigInput> & Pick<InferenceConfigInput, "endpoints">): InferenceClient {
  const c = new InferenceClient({ backoffBaseSeconds: 0.001, backoffMaxSeconds: 0.01, ...config }, { random: () => 0.5 });
  cleanups.push(() => c.close());
  return c;
}

const ok = (n: number): EndpointCondition[] => Array.from({ length: n }, () => ({ free: true }));
const IDS = ["http://a:8000", "http://b:8000", "http://c:8000", "http://d:8000"];

describe("AffinityRouter (pure)", () => {
  it("orders endpoints by rendezvous hashing: the same order in every process, and removing an endpoint moves only the keys that preferred it", () => {
    const keys = Array.from({ length: 400 }, (_, i) => `task-${i}`);
    const first = keys.map((k) => rendezvousOrder(k, IDS)[0]!);
    expect(keys.map((k) => rendezvousOrder(k, [...IDS])[0])).toEqual(first); // another "process"
    // every endpoint is somebody's first choice, none hoards the keys
    for (let i = 0; i < IDS.length; i++) expect(first.filter((f) => f === i).length).toBeGreaterThan(50);
    const without = IDS.filter((_, i) => i !== 2);
    keys.forEach((k, j) => {
      const now = without[rendezvousOrder(k, without)[0]!];
      if (first[j] !== 2) expect(now).toBe(IDS[first[j]!]);
    });
    // weights bias the first choice toward the heavier endpoint
    const heavy = keys.filter((k) => rendezvousOrder(k, IDS, [4, 1, 1, 1])[0] === 0).length;
    expect(heavy).toBeGreaterThan(150);
  });

  it("keeps a session on its endpoint while it has room, and the K samples of a group together when the load allows", () => {
    const r = new AffinityRouter(IDS, undefined, { loadFactor: 1.25, sessionFloor: 8 });
    const homes = [0, 1, 2, 3].map((k) => r.place({ key: `t1/${k}`, group: "t1" }, ok(4))!.endpoint);
    expect(new Set(homes).size).toBe(1);
    expect(homes[0]).toBe(rendezvousOrder("t1", IDS)[0]);
    for (let turn = 0; turn < 20; turn++) {
      for (let k = 0; k < 4; k++) expect(r.place({ key: `t1/${k}`, group: "t1" }, ok(4))).toEqual({ endpoint: homes[0] });
    }
    expect(r.moves).toEqual({ failing: 0, saturated: 0 });
  });

  it("never lets an endpoint exceed max(ceil(c·M/n), floor) sessions, even when every session prefers it", () => {
    const r = new AffinityRouter(IDS, undefined, { loadFactor: 1.25, sessionFloor: 2 });
    for (let m = 1; m <= 200; m++) {
      r.place({ key: `s${m}`, group: "the-same-task" }, ok(4));
      const cap = Math.max(boundedCapacity(m, 1 / 4, 1.25), 2);
      expect(Math.max(...r.load)).toBeLessThanOrEqual(cap);
      expect(r.load.reduce((a, b) => a + b, 0)).toBe(m);
    }
    expect(r.peakPlacementRatio).toBeLessThanOrEqual(1);
    // with one endpoint failing, the bound is over the three others (W = their weights)
    const failing: EndpointCondition[] = [{ free: true, unhealthy: "failing" }, { free: true }, { free: true }, { free: true }];
    const f = new AffinityRouter(IDS, undefined, { loadFactor: 1.25, sessionFloor: 1 });
    for (let m = 1; m <= 90; m++) f.place({ key: `s${m}`, group: "g" }, failing);
    expect(f.load[0]).toBe(0);
    expect(Math.max(...f.load)).toBeLessThanOrEqual(boundedCapacity(90, 1 / 3, 1.25));
  });

  it("moves a session when its endpoint is failing or saturated, records why, and never for balance alone", () => {
    const t = 0;
    const r = new AffinityRouter(IDS, undefined, { sessionFloor: 1, now: () => t });
    const home = r.place({ key: "e1" }, ok(4))!.endpoint;
    const failing = ok(4);
    failing[home] = { free: true, unhealthy: "failing" };
    const moved = r.place({ key: "e1" }, failing)!;
    expect(moved.moved).toEqual({ from: home, reason: "failing" });
    expect(moved.endpoint).not.toBe(home);
    // it stays on its new endpoint after the old one recovers (its prefix is cached there now)
    expect(r.place({ key: "e1" }, ok(4))).toEqual({ endpoint: moved.endpoint });

    const full = ok(4);
    full[moved.endpoint] = { free: false };
    const again = r.place({ key: "e1" }, full)!;
    expect(again.moved).toEqual({ from: moved.endpoint, reason: "saturated" });

    // not moved for balance alone: when sessions end elsewhere the group stays where its prefix is,
    // and new sessions are placed below the (now lower) bound
    const g = new AffinityRouter(IDS, undefined, { sessionFloor: 1, now: () => t });
    for (let i = 0; i < 100; i++) g.place({ key: `other${i}`, group: `o${i}` }, ok(4));
    for (let i = 0; i < 8; i++) g.place({ key: `k${i}`, group: "g" }, ok(4));
    const homesG = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => g.home(`k${i}`));
    const crowded = [0, 1, 2, 3].find((e) => homesG.filter((h) => h === e).length > 3)!;
    expect(crowded).toBeDefined();
    for (let i = 0; i < 100; i++) g.end(`other${i}`); // M drops to 8: bound ceil(1.25·8/4) = 3 < the crowded endpoint's load
    for (let i = 0; i < 8; i++) expect(g.place({ key: `k${i}`, group: "g" }, ok(4))!.moved).toBeUndefined();
    expect(g.home("k0")).toBe(homesG[0]);
    const fresh = g.place({ key: "new", group: "g" }, ok(4))!;
    expect(fresh.endpoint).not.toBe(crowded);
    expect(g.load[fresh.endpoint]!).toBeLessThanOrEqual(Math.max(boundedCapacity(9, 1 / 4, 1.25), 1));
    expect(g.moves).toEqual({ failing: 0, saturated: 0 });
    expect(g.peakPlacementRatio).toBeLessThanOrEqual(1);
    expect(t).toBe(0);
  });

  it("does not starve: a request always gets a free endpoint while one exists, and waits (undefined) only when none is free", () => {
    const r = new AffinityRouter(IDS, undefined, { sessionFloor: 1 });
    for (let i = 0; i < 40; i++) r.place({ key: `s${i}`, group: "g" }, ok(4));
    const cond: EndpointCondition[] = [{ free: false }, { free: false }, { free: true, unhealthy: "failing" }, { free: false }];
    expect(r.place({ key: "s1", group: "g" }, cond)?.endpoint).toBe(2); // only a failing one is free: use it
    expect(r.place({ key: "new", group: "g" }, cond.map(() => ({ free: false })))).toBeUndefined();
  });

  it("forgets sessions idle longer than sessionIdleMs and sessions that ended", () => {
    let t = 0;
    const r = new AffinityRouter(IDS, undefined, { sessionIdleMs: 1000, now: () => t });
    r.place({ key: "a" }, ok(4));
    r.place({ key: "b" }, ok(4));
    r.end("b");
    expect(r.sessionCount).toBe(1);
    t = 1500;
    expect(r.sessionCount).toBe(0);
    expect(r.load).toEqual([0, 0, 0, 0]);
  });
});

describe("the stand-in's prefix cache", () => {
  it("reports the leading full blocks it holds and evicts the least recently used beyond its capacity", () => {
    const c = new PrefixCache({ capacityTokens: 64, blockTokens: 16 });
    const a = Array.from({ length: 40 }, (_, i) => i);
    expect(c.lookup(a)).toBe(0);
    c.insert(a); // 2 full blocks
    expect(c.lookup([...a, 99, 98])).toBe(32);
    expect(c.lookup(a.slice(0, 33))).toBe(32);
    expect(c.lookup(a.slice(0, 32))).toBe(16); // the last token is always computed
    expect(c.lookup([1000, ...a])).toBe(0); // a different first token: nothing shared
    const b = Array.from({ length: 48 }, (_, i) => 500 + i);
    c.insert(b); // 3 more blocks: capacity 4 → the least recently used of a's goes
    expect(c.evicted).toBe(1);
    expect(c.lookup([...b, 1])).toBe(48);
  });
});

/** One scripted episode: `turns` requests whose token prompt grows by the completion and an observation. */
async function episode(c: InferenceClient, key: string, group: string, turns: number, base: number[]): Promise<CompletionResult[]> {
  let prompt = [...base];
  const out: CompletionResult[] = [];
  for (let t = 0; t < turns; t++) {
    const r = await c.complete({ prompt, maxTokens: 8, returnTokenIds: true, affinity: { key, group }, extraBody: { user: key } });
    out.push(r);
    prompt = [...prompt, ...(r.tokenIds ?? []), ...Array.from({ length: 40 }, (_, i) => 100_000 + t * 100 + i + key.length * 7)];
  }
  return out;
}

const gen = (seed: number) => () => ({ tokenIds: Array.from({ length: 8 }, (_, i) => 50_000 + seed * 10 + i) });

describe("InferenceClient with affinity routing (stand-in servers on loopback)", () => {
  it("keeps every request of an episode on one endpoint while it has room; the recorded cached tokens are what the server reported", async () => {
    const ss = await servers(4, { prefixCache: { capacityTokens: 1_000_000 }, handler: gen(1) });
    const c = client({ endpoints: ss.map((s) => ({ url: s.url, model: "m" })) });
    const results = await Promise.all(Array.from({ length: 8 }, (_, e) => episode(c, `ep-${e}`, `task-${e % 4}`, 6, Array.from({ length: 100 }, (_, i) => e * 1000 + i))));
    results.forEach((rs, e) => {
      expect(new Set(rs.map((r) => r.endpoint)).size).toBe(1);
      expect(rs.every((r) => r.move === undefined)).toBe(true);
      // server side: the episode's requests are all on one server
      const holders = ss.filter((s) => s.requests.some((q) => q.body?.user === `ep-${e}`));
      expect(holders).toHaveLength(1);
      expect(holders[0]!.url).toBe(rs[0]!.endpoint);
    });
    // cached tokens: what each server put in usage.prompt_tokens_details, call by call
    for (const s of ss) {
      const reported = s.requests.filter((q) => q.path === "/v1/completions").length;
      expect(reported).toBe(s.model.requests);
    }
    const recorded = results.flat().reduce((a, r) => a + (r.usage.cachedPromptTokens ?? 0), 0);
    expect(recorded).toBe(ss.reduce((a, s) => a + s.model.cachedTokens, 0));
    expect(recorded).toBeGreaterThan(0);
    for (const rs of results) {
      expect(rs[0]!.usage.cachedPromptTokens).toBe(0); // nothing of this prompt was seen before
      for (const r of rs.slice(1)) expect(r.usage.cachedPromptTokens).toBeGreaterThan(r.usage.promptTokens - 64); // all but the new tokens
    }
    const st = c.stats();
    expect(st.sessions).toBe(8);
    expect(st.endpoints.reduce((a, e) => a + e.cachedPromptTokens, 0)).toBe(recorded);
  });

  it("puts the K samples of a task on one endpoint when the load allows", async () => {
    const ss = await servers(4, { handler: gen(2) });
    const c = client({ endpoints: ss.map((s) => ({ url: s.url, model: "m" })) });
    const results = await Promise.all([0, 1, 2, 3].map((k) => episode(c, `task-A/${k}`, "task-A", 2, [1, 2, 3])));
    expect(new Set(results.flat().map((r) => r.endpoint)).size).toBe(1);
    const holders = ss.filter((s) => s.requests.length > 0);
    expect(holders).toHaveLength(1);
  });

  it("moves an episode off a failing endpoint (recorded, reason failing) and keeps it on its new endpoint", async () => {
    const ss = await servers(3, { prefixCache: { capacityTokens: 100_000 }, handler: gen(3) });
    const c = client({ endpoints: ss.map((s) => ({ url: s.url, model: "m" })), routing: { failingSeconds: 60 } });
    const first = await c.complete({ prompt: [1, 2, 3], affinity: { key: "e" } });
    const home = ss.find((s) => s.url === first.endpoint)!;
    home.failing = true;
    const moved = await c.complete({ prompt: [1, 2, 3, 4], affinity: { key: "e" } });
    expect(moved.endpoint).not.toBe(home.url);
    expect(moved.move).toEqual({ from: home.url, to: moved.endpoint, reason: "failing" });
    expect(moved.attempts).toBe(2); // the failed attempt, then the new endpoint
    home.failing = false;
    const after = await c.complete({ prompt: [1, 2, 3, 4, 5], affinity: { key: "e" } });
    expect(after.endpoint).toBe(moved.endpoint);
    expect(after.move).toBeUndefined();
    expect(c.stats().moves.failing).toBe(1);
  });

  it("moves an episode off a saturated endpoint (429 from a full queue; reason saturated), and no request is lost", async () => {
    // batch of 1, no queue: a second request while one runs is answered 429
    const ss = await servers(2, { costModel: { prefillSecondsPerToken: 0, decodeSecondsPerToken: 0.05, maxBatch: 1, maxQueue: 0, retryAfterSeconds: 0.01 }, handler: gen(4) });
    const c = client({ endpoints: ss.map((s) => ({ url: s.url, model: "m" })), routing: { sessionFloor: 8 } });
    // two sessions of one group: both placed on the group's first choice
    await c.complete({ prompt: [1], affinity: { key: "a", group: "g" } });
    await c.complete({ prompt: [1], affinity: { key: "b", group: "g" } });
    const home = c.sessionEndpoint("a");
    expect(c.sessionEndpoint("b")).toBe(home);
    const [ra, rb] = await Promise.all([
      c.complete({ prompt: [1, 2], affinity: { key: "a", group: "g" } }),
      c.complete({ prompt: [1, 2], affinity: { key: "b", group: "g" } }),
    ]);
    const movedOne = [ra, rb].filter((r) => r.move);
    expect(movedOne).toHaveLength(1);
    expect(movedOne[0]!.move).toMatchObject({ from: home, reason: "saturated" });
    expect(movedOne[0]!.endpoint).not.toBe(home);
    expect(ss.reduce((a, s) => a + s.model.rejected, 0)).toBe(1);
    expect(c.stats().moves.saturated).toBe(1);
  });

  it("moves an episode when the client's own concurrency limit for its endpoint is full", async () => {
    const ss = await servers(2, { delayMs: 150, handler: gen(5) });
    const c = client({ endpoints: ss.map((s) => ({ url: s.url, model: "m", maxConcurrency: 1 })) });
    await c.complete({ prompt: [1], affinity: { key: "a", group: "g" } });
    await c.complete({ prompt: [1], affinity: { key: "b", group: "g" } });
    const home = c.sessionEndpoint("a");
    const pa = c.complete({ prompt: [1, 2], affinity: { key: "a", group: "g" } });
    const rb = await c.complete({ prompt: [1, 2], affinity: { key: "b", group: "g" } });
    expect((await pa).endpoint).toBe(home);
    expect(rb.move).toMatchObject({ from: home, reason: "saturated" });
  });

  it("least-outstanding routing ignores affinity (the baseline of the bench)", async () => {
    const ss = await servers(2, { delayMs: 20, handler: gen(6) });
    const c = client({ endpoints: ss.map((s) => ({ url: s.url, model: "m" })), routing: { policy: "least-outstanding" } });
    await Promise.all([0, 1, 2, 3].map((k) => c.complete({ prompt: [k], affinity: { key: `e${k}`, group: "g" } })));
    expect(ss.every((s) => s.requests.length > 0)).toBe(true);
    expect(c.stats().sessions).toBe(0);
  });
});

describe("streaming and usage details", () => {
  it("streams completions and chat, measures the time to first token and records cached tokens as the server reported them", async () => {
    const [s] = await servers(1, {
      prefixCache: { capacityTokens: 10_000 },
      costModel: { prefillSecondsPerToken: 0.0001, decodeSecondsPerToken: 0.001, maxBatch: 4 },
      handler: (req) =>
        req.path === "/v1/chat/completions"
          ? { text: "done", reasoningContent: "think", toolCalls: [{ name: "bash", arguments: { command: "ls" } }] }
          : { tokenIds: [7, 8, 9, 10], text: "abcd" },
    });
    const c = client({ endpoints: [{ url: s!.url, model: "m" }] });
    const prompt = Array.from({ length: 100 }, (_, i) => i);
    const r1 = await c.complete({ prompt, returnTokenIds: true, stream: true, logprobs: 0 });
    expect(r1).toMatchObject({ text: "abcd", tokenIds: [7, 8, 9, 10], finishReason: "stop", usage: { promptTokens: 100, completionTokens: 4, cachedPromptTokens: 0 } });
    expect(r1.logprobs).toHaveLength(4);
    expect(r1.ttftMs).toBeGreaterThanOrEqual(0);
    expect(r1.ttftMs!).toBeLessThanOrEqual(r1.latencyMs);
    expect(s!.requests.at(-1)!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    const r2 = await c.complete({ prompt: [...prompt, 7, 8, 9, 10, 11, 12], returnTokenIds: true, stream: true });
    expect(r2.usage.cachedPromptTokens).toBe(96); // 6 full blocks of 16 of the 100 + 4 tokens stored
    expect(s!.model.cachedTokens).toBe(96);
    const chat = await c.chat({ messages: [{ role: "user", content: "hi" }], stream: true });
    expect(chat.message).toEqual({ content: "done", reasoningContent: "think", toolCalls: [{ id: expect.any(String), name: "bash", arguments: '{"command":"ls"}' }] });
    expect(chat.finishReason).toBe("tool_calls");
    expect(chat.ttftMs).toBeGreaterThanOrEqual(0);
    // without streaming there is no TTFT, and without a cache report no cached count
    const plain = await c.chat({ messages: [{ role: "user", content: "hi" }] });
    expect(plain.ttftMs).toBeUndefined();
    const [bare] = await servers(1, { script: ["x"] });
    const c2 = client({ endpoints: [{ url: bare!.url, model: "m" }] });
    expect((await c2.complete({ prompt: "p" })).usage.cachedPromptTokens).toBeUndefined();
  });
});

/** A sandbox that is never used: the scripted model never calls a tool (each turn is a format error). */
const stubSandbox = new MemorySandbox("routing-stub");
const NO_TOOL = "Let me think about where the bug could be.\n</think>\nI need to look at the code first.";

describe("an episode records what the model server reported, turn by turn", () => {
  it("cached prompt tokens, TTFT, the endpoint, and the move when its endpoint fails; the run figures sum them", async () => {
    let failAfter = 3;
    const ss: ScriptedServer[] = [];
    const handler = (i: number) => () => {
      if (ss[i]!.model.requests + 1 >= failAfter) ss[i]!.failing = true; // this server's 3rd answer is its last
      return { text: NO_TOOL };
    };
    for (let i = 0; i < 3; i++) {
      const s = await startScriptedServer({ prefixCache: { capacityTokens: 1_000_000 }, costModel: { prefillSecondsPerToken: 0, decodeSecondsPerToken: 0.0001, maxBatch: 8 }, handler: handler(i) });
      cleanups.push(() => s.close());
      ss.push(s);
    }
    const c = client({ endpoints: ss.map((s) => ({ url: s.url, model: "m" })), routing: { failingSeconds: 600 } });
    const task = fakeTask("routing-episode");
    const t = await runEpisode({ task, policy: new HttpPolicy(c, { stream: true }), config: { maxTurns: 6, maxEnvRetries: 0 }, image: "stub", sandboxFactory: async () => stubSandbox });
    failAfter = Infinity;
    expect(TrajectorySchema.parse(t).turns).toHaveLength(6);
    const home = t.turns[0]!.endpoint!;
    const moveAt = t.turns.findIndex((x) => x.endpointMove);
    expect(moveAt).toBe(3); // the home answered turns 0 to 2, then failed turn 3's first attempt
    expect(t.turns[3]!.endpointMove).toEqual({ from: home, reason: "failing" });
    const next = t.turns[3]!.endpoint!;
    expect(next).not.toBe(home);
    expect(t.turns.slice(0, 3).every((x) => x.endpoint === home)).toBe(true);
    expect(t.turns.slice(3).every((x) => x.endpoint === next)).toBe(true);
    // per turn, exactly what the answering server put in usage.prompt_tokens_details.cached_tokens
    // (each server numbers its own requests: the home's answers come first, then the new endpoint's)
    const bySeq = [home, next].flatMap((url) => ss.find((s) => s.url === url)!.requests.filter((q) => q.usage).map((q) => ({ url, q })));
    expect(bySeq).toHaveLength(6);
    expect(ss.reduce((a, s) => a + s.requests.filter((q) => q.usage).length, 0)).toBe(6);
    t.turns.forEach((turn, i) => {
      expect(turn.endpoint).toBe(bySeq[i]!.url);
      expect(turn.cachedPromptTokens).toBe(bySeq[i]!.q.usage!.cachedTokens);
      expect(turn.promptTokens).toBe(bySeq[i]!.q.usage!.promptTokens);
      expect(turn.ttftMs).toBeGreaterThanOrEqual(0);
    });
    expect(t.turns[0]!.cachedPromptTokens).toBe(0);
    expect(t.turns[1]!.cachedPromptTokens).toBeGreaterThan(0); // the prefix of turn 0, on the same server
    expect(t.turns[3]!.cachedPromptTokens).toBe(0); // a new server: nothing cached there
    expect(t.turns[4]!.cachedPromptTokens).toBeGreaterThan(0);
    const u = modelFigures(modelUsageOf(t));
    expect(u.turns).toBe(6);
    expect(u.moves).toBe(1);
    expect(u.cachedPromptTokens).toBe(t.turns.reduce((a, x) => a + (x.cachedPromptTokens ?? 0), 0));
    expect(u.prefixCacheHitRate).toBeCloseTo(u.cachedPromptTokens / u.promptTokens, 10);
    expect(formatModelUsage(u)).toMatch(/prefix-cache hit rate \d+\.\d% · prefill \d+ tokens · decode \d+ tokens · model [\d.]+ s · 1 endpoint move$/);
    expect(c.sessionEndpoint("x")).toBeUndefined();
    expect(c.stats().sessions).toBe(1); // ended by the orchestrator's rollout (policy.end), not by runEpisode
  });
});
