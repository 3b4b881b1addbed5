/**
 * InferenceClient over real HTTP against the scripted OpenAI-compatible server.
 * No timing assertions: slow paths are bounded by deadlines and per-test timeouts only.
 */
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { InferenceClient, InferenceError, CWM_STOP_TOKEN_IDS, ERROR_BODY_LIMIT_BYTES } from "../inference-client/client";
import type { InferenceConfigInput } from "../inference-client/config";
import { startScriptedServer, type ScriptedServer, type ScriptedServerOptions } from "./helpers/scripted-server";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function server(opts: ScriptedServerOptions = {}): Promise<ScriptedServer> {
  const s = await startScriptedServer(opts);
  cleanups.push(() => s.close());
  return s;
}

function client(
  config: Partial<InferenceConfigInput> & Pick<InferenceConfigInput, "endpoints">,
  random?: () => number,
): InferenceClient {
  const c = new InferenceClient({ backoffBaseSeconds: 0.001, backoffMaxSeconds: 0.01, ...config }, { random });
  cleanups.push(() => c.close());
  return c;
}

/** A port on 127.0.0.1 where nothing listens (bound, then released). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function rejection(p: Promise<unknown>): Promise<InferenceError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(InferenceError);
  return e as InferenceError;
}

describe("InferenceClient.complete", () => {
  it("sends a string prompt with sampling params and learns the model from /v1/models", async () => {
    const s = await server({ script: ["hello world"], model: "cwm-test" });
    const c = client({ endpoints: [{ url: s.url }] });
    const r = await c.complete({
      prompt: "def f():",
      maxTokens: 32,
      temperature: 1,
      topP: 0.95,
      stop: ["</tool>"],
      stopTokenIds: CWM_STOP_TOKEN_IDS,
      seed: 7,
    });
    expect(r).toMatchObject({
      text: "hello world",
      finishReason: "stop",
      endpoint: s.url,
      model: "cwm-test",
      attempts: 1,
    });
    expect(r.tokenIds).toBeUndefined();
    expect(r.usage.promptTokens).toBeGreaterThan(0);
    expect(r.usage.completionTokens).toBeGreaterThan(0);
    expect(r.latencyMs).toBeGreaterThanOrEqual(0);

    expect(s.counts.models).toBe(1);
    const post = s.requests.find((q) => q.path === "/v1/completions")!;
    expect(post.body).toMatchObject({
      model: "cwm-test",
      prompt: "def f():",
      max_tokens: 32,
      temperature: 1,
      top_p: 0.95,
      stop: ["</tool>"],
      stop_token_ids: [128001, 128008, 128009],
      seed: 7,
      n: 1,
    });
    expect(post.body).not.toHaveProperty("logprobs");

    // The model lookup is cached: a second call does not ask again.
    await c.complete({ prompt: "x" });
    expect(s.counts.models).toBe(1);
    expect(await c.modelIdentity()).toEqual({
      model: "cwm-test",
      weightsPath: "/models/cwm-test",
      maxModelLen: 131072,
      endpoint: s.url,
    });
  });

  it("sends a token-id prompt, the configured model, the API key and extra body fields", async () => {
    const s = await server({ handler: (req) => `echo:${JSON.stringify(req.body.prompt)}` });
    const c = client({ endpoints: [{ url: `${s.url}/v1/`, model: "m1", apiKey: "sekret" }] });
    const r = await c.complete({ prompt: [128000, 9906, 1917], extraBody: { skip_special_tokens: false } });
    expect(r.text).toBe("echo:[128000,9906,1917]");
    expect(r.model).toBe("m1");
    expect(r.endpoint).toBe(s.url);
    expect(s.counts.models).toBe(0);
    const req = s.requests[0]!;
    expect(req.body.prompt).toEqual([128000, 9906, 1917]);
    expect(req.body.skip_special_tokens).toBe(false);
    expect(req.headers.authorization).toBe("Bearer sekret");
  });

  it("returns sampled token ids and logprobs (vLLM token_id:N form)", async () => {
    const s = await server({
      script: [{ text: "Hi!", tokenIds: [13347, 0, 128009], logprobs: [-0.5, -0.25, -0.125], stopReason: 128009 }],
    });
    const c = client({ endpoints: [{ url: s.url, model: "m" }] });
    const r = await c.complete({ prompt: "p", returnTokenIds: true, logprobs: 1 });
    expect(r.tokenIds).toEqual([13347, 0, 128009]);
    expect(r.logprobs).toEqual([-0.5, -0.25, -0.125]);
    expect(r.stopReason).toBe(128009);
    expect(r.usage.completionTokens).toBe(3);
    expect(s.requests[0]!.body).toMatchObject({ return_tokens_as_token_ids: true, return_token_ids: true, logprobs: 1 });
  });

  it("returns sampled token ids from a token_ids field, asking for logprobs 0 when none were requested", async () => {
    const s = await server({ script: [{ text: "ab", tokenIds: [64, 65] }], tokenIdsStyle: "field" });
    const c = client({ endpoints: [{ url: s.url, model: "m" }] });
    const r = await c.complete({ prompt: "p", returnTokenIds: true });
    expect(r.tokenIds).toEqual([64, 65]);
    expect(s.requests[0]!.body.logprobs).toBe(0);
  });
});

describe("InferenceClient.chat", () => {
  it("sends messages and tools and parses tool calls and reasoning", async () => {
    const s = await server({
      script: [
        {
          reasoningContent: "I should list files.",
          toolCalls: [{ id: "call_a", name: "bash", arguments: { command: "ls -la" } }],
        },
      ],
    });
    const c = client({ endpoints: [{ url: s.url, model: "m" }] });
    const tools = [
      {
        type: "function" as const,
        function: {
          name: "bash",
          description: "run a command",
          parameters: { type: "object", properties: { command: { type: "string" } }, required: ["command"] },
        },
      },
    ];
    const r = await c.chat({
      messages: [
        { role: "system", content: "You are a helpful agent." },
        { role: "user", content: "List the files." },
      ],
      tools,
      toolChoice: "auto",
      temperature: 0,
      maxTokens: 100,
    });
    expect(r.message).toEqual({
      content: "",
      reasoningContent: "I should list files.",
      toolCalls: [{ id: "call_a", name: "bash", arguments: '{"command":"ls -la"}' }],
    });
    expect(r.finishReason).toBe("tool_calls");
    expect(r.attempts).toBe(1);
    const body = s.requests[0]!.body;
    expect(body.messages).toHaveLength(2);
    expect(body.tools).toEqual(tools);
    expect(body.tool_choice).toBe("auto");
    expect(body).toMatchObject({ model: "m", temperature: 0, max_tokens: 100, n: 1 });
  });

  it("returns plain content without tool calls", async () => {
    const s = await server({ script: [{ text: "Done." }] });
    const c = client({ endpoints: [{ url: s.url, model: "m" }] });
    const r = await c.chat({ messages: [{ role: "user", content: "hi" }] });
    expect(r.message).toEqual({ content: "Done.", toolCalls: [] });
    expect(r.finishReason).toBe("stop");
  });
});

describe("InferenceClient retries and errors", () => {
  it("retries a 500 and succeeds (attempts = 2)", async () => {
    const s = await server({ script: [{ status: 500, body: "boom" }, "recovered"] });
    const c = client({ endpoints: [{ url: s.url, model: "m" }] });
    const r = await c.complete({ prompt: "p" });
    expect(r.text).toBe("recovered");
    expect(r.attempts).toBe(2);
    expect(s.counts.completions).toBe(2);
    const st = c.stats().endpoints[0]!;
    expect(st).toMatchObject({ completed: 1, failed: 1, retries: 1, outstanding: 0 });
  });

  it("honours Retry-After on 429", async () => {
    const s = await server({
      script: [{ status: 429, body: { error: { message: "slow down" } }, headers: { "retry-after": "1" } }, "after wait"],
    });
    // Without Retry-After the computed backoff (jitter pinned to its maximum: 1000 s) would exceed the
    // deadline and the call would fail; with it, the client waits 1 s and succeeds.
    const c = client(
      { endpoints: [{ url: s.url, model: "m" }], backoffBaseSeconds: 1000, backoffMaxSeconds: 1000, requestDeadlineSeconds: 30 },
      () => 0.999,
    );
    const r = await c.complete({ prompt: "p" });
    expect(r.text).toBe("after wait");
    expect(r.attempts).toBe(2);
  });

  it("does not retry a 400; the error names endpoint, status, body and attempts", async () => {
    const s = await server({ script: [{ status: 400, body: { error: { message: "prompt too long: 140000 tokens" } } }] });
    const c = client({ endpoints: [{ url: s.url, model: "m" }], retries: 5 });
    const e = await rejection(c.complete({ prompt: "p" }));
    expect(e.kind).toBe("http");
    expect(e.status).toBe(400);
    expect(e.attempts).toBe(1);
    expect(e.endpoint).toBe(s.url);
    expect(e.body).toContain("prompt too long");
    expect(e.message).toContain(s.url);
    expect(e.message).toContain("400");
    expect(e.message).toContain("prompt too long");
    expect(e.message).toContain("1 attempt");
    expect(s.counts.completions).toBe(1);
  });

  it("truncates a large error body to 2 KiB", async () => {
    const s = await server({ script: [{ status: 503, body: "x".repeat(10_000) }] });
    const c = client({ endpoints: [{ url: s.url, model: "m" }], retries: 0 });
    const e = await rejection(c.complete({ prompt: "p" }));
    expect(e.status).toBe(503);
    expect(e.attempts).toBe(1);
    expect(Buffer.byteLength(e.body!)).toBeLessThanOrEqual(ERROR_BODY_LIMIT_BYTES + 32);
    expect(e.body!.startsWith("x".repeat(2000))).toBe(true);
  });

  it("fails at the deadline on a slow response without hanging, and the server survives the abort", async () => {
    const s = await server({ script: [{ text: "late", delayMs: 60_000 }, "next"] });
    const c = client({ endpoints: [{ url: s.url, model: "m" }] });
    const e = await rejection(c.complete({ prompt: "p", deadlineSeconds: 0.3 }));
    expect(e.kind).toBe("deadline");
    expect(e.endpoint).toBe(s.url);
    expect(e.message).toContain("deadline");
    // The server noticed the client going away and still answers.
    const r = await c.complete({ prompt: "p" });
    expect(r.text).toBe("next");
    expect(c.stats().endpoints[0]!.outstanding).toBe(0);
  }, 10_000);

  it("retries a refused connection, then fails naming the endpoint", async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const c = client({ endpoints: [{ url, model: "m" }], retries: 2 });
    const e = await rejection(c.complete({ prompt: "p" }));
    expect(e.kind).toBe("connection");
    expect(e.attempts).toBe(3);
    expect(e.endpoint).toBe(url);
    expect(e.message).toContain(url);
    expect(e.message).toContain("3 attempts");
    expect(c.stats().endpoints[0]).toMatchObject({ failed: 3, retries: 2, completed: 0 });
  }, 20_000);

  it("routes a retry to the healthy endpoint when one is down", async () => {
    const port = await closedPort();
    const s = await server();
    const c = client({ endpoints: [{ url: `http://127.0.0.1:${port}`, model: "m" }, { url: s.url, model: "m" }] });
    const results = await Promise.all(Array.from({ length: 6 }, () => c.complete({ prompt: "p" })));
    for (const r of results) expect(r.endpoint).toBe(s.url);
  });

  it("aborts with the caller's signal", async () => {
    const s = await server({ delayMs: 60_000 });
    const c = client({ endpoints: [{ url: s.url, model: "m" }] });
    const ac = new AbortController();
    const p = c.complete({ prompt: "p", signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    const e = await rejection(p);
    expect(e.kind).toBe("aborted");
  }, 10_000);
});

describe("InferenceClient balancing and concurrency", () => {
  it("sends more requests to the faster of two endpoints (least outstanding)", async () => {
    const slow = await server({ delayMs: 200 });
    const fast = await server({ delayMs: 2 });
    const c = client({ endpoints: [{ url: slow.url, model: "m" }, { url: fast.url, model: "m" }] });
    const workers = 4;
    const perWorker = 10;
    await Promise.all(
      Array.from({ length: workers }, async () => {
        for (let i = 0; i < perWorker; i++) await c.complete({ prompt: "p" });
      }),
    );
    expect(slow.counts.completions + fast.counts.completions).toBe(workers * perWorker);
    expect(fast.counts.completions).toBeGreaterThan(slow.counts.completions);
    const [sSlow, sFast] = c.stats().endpoints;
    expect(sSlow!.completed).toBe(slow.counts.completions);
    expect(sFast!.completed).toBe(fast.counts.completions);
  }, 30_000);

  it("respects maxConcurrency per endpoint with a queue", async () => {
    const s = await server({ delayMs: 50 });
    const c = client({ endpoints: [{ url: s.url, model: "m", maxConcurrency: 3 }] });
    const calls = Array.from({ length: 12 }, (_, i) => c.complete({ prompt: `p${i}` }));
    expect(c.stats().queued).toBe(9);
    const results = await Promise.all(calls);
    expect(results.map((r) => r.text)).toEqual(Array(12).fill("ok"));
    expect(s.maxInFlight).toBe(3);
    expect(s.counts.completions).toBe(12);
    expect(c.stats()).toMatchObject({ queued: 0, endpoints: [{ outstanding: 0, completed: 12 }] });
  }, 30_000);

  it("rejects queued calls when closed", async () => {
    const s = await server({ delayMs: 100 });
    const c = new InferenceClient({ endpoints: [{ url: s.url, model: "m", maxConcurrency: 1 }] });
    const first = c.complete({ prompt: "a" });
    const queued = c.complete({ prompt: "b" });
    const closing = c.close();
    const e = await rejection(queued);
    expect(e.kind).toBe("closed");
    expect((await first).text).toBe("ok");
    await closing;
  }, 10_000);
});

describe("InferenceClient.modelIdentity", () => {
  it("answers from the configuration when model and weightsVersion are set", async () => {
    const s = await server();
    const c = client({ endpoints: [{ url: s.url, model: "cwm", weightsVersion: "step-1200" }] });
    expect(await c.modelIdentity()).toEqual({ model: "cwm", weightsVersion: "step-1200", endpoint: s.url });
    expect(s.counts.models).toBe(0);
  });

  it("records root as weightsPath and caches the answer", async () => {
    const s = await server({ model: "facebook/cwm", root: "/ckpt/cwm/step-42" });
    const c = client({ endpoints: [{ url: s.url }] });
    const id = await c.modelIdentity(s.url);
    expect(id).toMatchObject({ model: "facebook/cwm", weightsPath: "/ckpt/cwm/step-42", endpoint: s.url });
    await c.modelIdentity();
    expect(s.counts.models).toBe(1);
  });

  it("throws an InferenceError when the model cannot be learned", async () => {
    const port = await closedPort();
    const c = client({ endpoints: [{ url: `http://127.0.0.1:${port}` }], retries: 1 });
    const e = await rejection(c.modelIdentity());
    expect(e.kind).toBe("connection");
    expect(e.attempts).toBe(2);
  }, 20_000);
});
