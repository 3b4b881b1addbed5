/**
 * A scripted OpenAI-compatible HTTP server on 127.0.0.1 (random port) for tests and benchmarks.
 *
 * Serves POST /v1/completions, POST /v1/chat/completions and GET /v1/models. Each generation request
 * (completions or chat) takes the next step of `script`; when the script is used up (or absent) the
 * `handler` answers; without a handler the answer is the text "ok". Everything is deterministic (fixed
 * ids and timestamps). A client that aborts mid-request (including during a delay) is tolerated.
 *
 * A stand-in for the MODEL only (no weights, no GPU), optionally with what makes a model server's
 * time: a prefix cache ({@link PrefixCacheOptions}: LRU over token blocks, cached tokens reported in
 * `usage.prompt_tokens_details.cached_tokens` as vLLM does with `--enable-prompt-tokens-details`) and
 * a cost model ({@link CostModelOptions}: prefill time per uncached token on one prefill lane, decode
 * time per token, a batch limit with a FIFO queue, optionally a bounded queue answering 429), in
 * simulated seconds scaled to wall time. Requests with `stream: true` are answered as server-sent
 * events (the first token when the prefill is done, usage last when `stream_options.include_usage`).
 *
 * @example
 * const server = await startScriptedServer({ script: ["hello", { status: 500, body: "boom" }] });
 * // ... point a client at server.url ...
 * await server.close();
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A tool call the scripted model makes. `arguments` objects are sent as JSON text. */
export interface ScriptedToolCall {
  id?: string;
  name: string;
  arguments: string | Record<string, unknown>;
}

/** A raw HTTP answer: any status, a body (objects are sent as JSON), extra headers. */
export interface RawStep {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Wait this long (ms) before answering. */
  delayMs?: number;
}

/** A generated answer, rendered in the completions or chat shape depending on the request. */
export interface GenerationStep {
  text?: string;
  /** Sampled token ids (returned as vLLM `"token_id:N"` logprob tokens or as `token_ids`; see options). */
  tokenIds?: number[];
  /** Log-probabilities of the sampled tokens (default 0 for each). */
  logprobs?: number[];
  /** Chat only: tool calls (finish_reason becomes "tool_calls"). */
  toolCalls?: ScriptedToolCall[];
  /** Chat only: `reasoning_content`. */
  reasoningContent?: string;
  /** Default "tool_calls" when there are tool calls, else "stop". */
  finishReason?: string;
  /** vLLM `stop_reason`. */
  stopReason?: string | number;
  /** Usage to report instead of the computed one; `cachedTokens` adds `prompt_tokens_details.cached_tokens`. */
  usage?: { promptTokens?: number; completionTokens?: number; cachedTokens?: number };
  /** Wait this long (ms) before answering. */
  delayMs?: number;
}

/**
 * The stand-in's prefix cache: vLLM's automatic prefix caching in miniature. The prompt (token ids;
 * a text prompt or chat messages count one token per 4 characters) is cut into full blocks, each
 * identified by a hash of its tokens and of every token before it; a request's cached tokens are its
 * leading blocks found in the cache (at most the prompt less one token, as vLLM always computes the
 * last one). When its prefill is done a request's prompt blocks are stored, and when it finishes the
 * blocks of prompt + generated tokens (token-id prompts); beyond `capacityTokens` the least recently
 * used blocks are evicted. (vLLM never evicts blocks of running requests; this cache may.)
 */
export interface PrefixCacheOptions {
  /** KV-cache capacity, tokens (rounded down to whole blocks). */
  capacityTokens: number;
  /** Tokens per block (vLLM's default block size: 16). */
  blockTokens?: number;
  /** Report `usage.prompt_tokens_details.cached_tokens` (vLLM: `--enable-prompt-tokens-details`); default true. */
  report?: boolean;
}

/**
 * The stand-in's cost model, in SIMULATED seconds (wall time = simulated × `timeScale`):
 * - at most `maxBatch` requests run at once (vLLM `--max-num-seqs`); more wait in a FIFO queue, and
 *   with `maxQueue` set, a request finding the queue full is answered 429 with a Retry-After;
 * - a running request's prefill takes `prefillSecondsPerToken` × its uncached prompt tokens on the
 *   server's one prefill lane (prefill is compute-bound: one at a time, in arrival order), so its
 *   time to first token includes the prefills queued before it;
 * - then it decodes for `decodeSecondsPerToken` × its completion tokens (decode is memory-bound: the
 *   running batch decodes in parallel).
 * Totals are kept in {@link ScriptedServer.model}.
 */
export interface CostModelOptions {
  prefillSecondsPerToken: number;
  decodeSecondsPerToken: number;
  maxBatch: number;
  /** Most requests waiting for the batch; beyond, 429 (default: unbounded). */
  maxQueue?: number;
  /** Retry-After sent with that 429, simulated seconds (default 1). */
  retryAfterSeconds?: number;
  /** Wall seconds per simulated second (default 1; 0.01 runs the model 100× faster than real time). */
  timeScale?: number;
}

/** What the stand-in model did (tokens; seconds are simulated). */
export interface ModelStats {
  /** Generation requests answered 200. */
  requests: number;
  promptTokens: number;
  /** Prompt tokens served from the prefix cache. */
  cachedTokens: number;
  /** Prompt tokens prefilled (= prompt − cached). */
  prefillTokens: number;
  /** Completion tokens generated. */
  decodeTokens: number;
  /** Simulated prefill seconds: prefillTokens × prefillSecondsPerToken. */
  prefillSeconds: number;
  /** Simulated decode seconds: decodeTokens × decodeSecondsPerToken. */
  decodeSeconds: number;
  /** Answered 429 because the queue was full. */
  rejected: number;
  /** Answered 500 while failing. */
  failed: number;
  /** Most requests running at once. */
  maxRunning: number;
  /** Blocks evicted from the prefix cache. */
  evictedBlocks: number;
}

/** One step of a script: a completion text, a raw HTTP answer, or a generated answer. */
export type ScriptStep = string | RawStep | GenerationStep;

/** A request as the server received it. */
export interface ScriptedRequest {
  /** 0-based order of arrival over all paths. */
  seq: number;
  method: string;
  /** Path without the query string, e.g. "/v1/completions". */
  path: string;
  headers: IncomingMessage["headers"];
  /** Parsed JSON body (undefined for GET or an empty body; the raw text if it is not JSON). */
  body: any;
  /** The usage the answer reported (generation requests answered 200), tokens. */
  usage?: { promptTokens: number; completionTokens: number; cachedTokens?: number };
}

/** Options of {@link startScriptedServer}. */
export interface ScriptedServerOptions {
  /** Steps consumed in order by generation requests. */
  script?: ScriptStep[];
  /** Answers generation requests once the script is used up (or always, without a script). */
  handler?: (req: ScriptedRequest) => ScriptStep | Promise<ScriptStep>;
  /** Delay (ms) before every generation answer, unless the step sets its own. */
  delayMs?: number;
  /** Model id served by /v1/models and echoed in responses (default "scripted-model"). */
  model?: string;
  /** `root` reported by /v1/models (default `/models/<model>`); null to omit it. */
  root?: string | null;
  /**
   * How sampled token ids are returned: "auto" (default) answers vLLM-style `"token_id:N"` logprob tokens
   * when the request sets `return_tokens_as_token_ids` and asks for logprobs, else a `token_ids` field when
   * the request sets `return_token_ids`; "field" always uses the `token_ids` field (SGLang-like) when asked.
   */
  tokenIdsStyle?: "auto" | "field";
  /** Keep every request in `requests` (default true; turn off for long benchmarks). */
  recordRequests?: boolean;
  /** A prefix cache (reports cached tokens). */
  prefixCache?: PrefixCacheOptions;
  /** A cost model: answers take the simulated model time instead of `delayMs`. */
  costModel?: CostModelOptions;
  /**
   * Serve `GET /_scripted/stats` (the {@link ModelStats}), `POST /_scripted/failing` (`{"failing": bool}`) and
   * `POST /_scripted/reset` (`{"costModel"?, "prefixCache"?}`: empty cache, zero figures), for a stand-in
   * running in another process (bench/scripted-model.ts). Default false.
   */
  control?: boolean;
  /** Address to listen on (default 127.0.0.1; the cluster bench listens in its hub namespace). */
  host?: string;
}

/** Per-path request counters. */
export interface ScriptedCounts {
  total: number;
  completions: number;
  chat: number;
  models: number;
  other: number;
  /** Requests whose client went away before the answer was written. */
  aborted: number;
}

/** A running scripted server. */
export interface ScriptedServer {
  /** Base URL, e.g. "http://127.0.0.1:43210" (no /v1). */
  url: string;
  port: number;
  /** Every request received, in order of arrival (empty when `recordRequests` is false). */
  requests: ScriptedRequest[];
  counts: ScriptedCounts;
  /** Generation requests being handled right now. */
  readonly inFlight: number;
  /** Most generation requests handled at the same time. */
  readonly maxInFlight: number;
  /** What the stand-in model did (prefix cache and cost model figures). */
  readonly model: ModelStats;
  /** While true, every generation request is answered HTTP 500 (a failing server). */
  failing: boolean;
  /** Stops listening, drops open connections and cancels pending delays. */
  close(): Promise<void>;
}

function isRaw(step: ScriptStep): step is RawStep {
  return typeof step === "object" && step !== null && typeof (step as RawStep).status === "number";
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
    req.on("aborted", () => reject(new Error("request aborted")));
  });
}

/** Figures the stand-in model computed for an answer (tokens). */
interface Computed {
  promptTokens?: number;
  cachedTokens?: number;
}

/** A non-streamed answer cut into stream chunks: the first token's, and the rest (with the finish reason). */
function streamChunks(isCompletion: boolean, body: any): { first: unknown[]; rest: unknown[] } {
  const head = { id: body.id, object: isCompletion ? "text_completion" : "chat.completion.chunk", created: 0, model: body.model };
  const c = body.choices[0];
  if (isCompletion) {
    const chars = Array.from((c.text ?? "") as string);
    const ids = c.token_ids as number[] | undefined;
    const lp = c.logprobs as { tokens: string[]; token_logprobs: number[] } | null;
    const part = (from: number, to?: number) => ({
      index: 0,
      text: chars.slice(from, to).join(""),
      logprobs: lp ? { tokens: lp.tokens.slice(from, to), token_logprobs: lp.token_logprobs.slice(from, to) } : null,
      ...(ids ? { token_ids: ids.slice(from, to) } : {}),
    });
    return {
      first: [{ ...head, choices: [{ ...part(0, 1), finish_reason: null, stop_reason: null }], usage: null }],
      rest: [{ ...head, choices: [{ ...part(1), finish_reason: c.finish_reason, stop_reason: c.stop_reason ?? null }], usage: null }],
    };
  }
  const m = c.message;
  const content = Array.from((m.content ?? "") as string);
  const reasoning = m.reasoning_content as string | undefined;
  const calls = ((m.tool_calls ?? []) as any[]).map((tc, index) => ({ index, ...tc }));
  const chunk = (delta: Record<string, unknown>, finish: unknown = null) => ({ ...head, choices: [{ index: 0, delta, finish_reason: finish, ...(finish ? { stop_reason: c.stop_reason ?? null } : {}) }] });
  let first: Record<string, unknown>;
  let rest: Record<string, unknown>;
  if (reasoning) {
    first = { role: "assistant", reasoning_content: reasoning.slice(0, 1) };
    rest = { reasoning_content: reasoning.slice(1), content: content.join("") };
  } else if (content.length > 0) {
    first = { role: "assistant", content: content[0] };
    rest = { content: content.slice(1).join("") };
  } else {
    first = { role: "assistant", content: "" };
    rest = {};
  }
  if (calls.length) rest.tool_calls = calls;
  return { first: [chunk(first)], rest: [chunk(rest), chunk({}, c.finish_reason)] };
}

/** The usage of an answer body, as {@link ScriptedRequest.usage}. */
function reportedUsage(body: any): ScriptedRequest["usage"] {
  const u = body.usage;
  const cached = u.prompt_tokens_details?.cached_tokens;
  return { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens, ...(cached !== undefined ? { cachedTokens: cached } : {}) };
}

/** A rough, deterministic token count for usage (about 4 characters per token). */
function roughTokens(x: unknown): number {
  if (Array.isArray(x) && x.every((v) => typeof v === "number")) return x.length;
  const s = typeof x === "string" ? x : JSON.stringify(x ?? "");
  return Math.ceil(s.length / 4);
}

/**
 * The tokens of a prompt for the prefix cache: token ids as sent, else one pseudo token per 4
 * characters of the text (chat: of the messages' JSON), so a text prompt that grows by appending
 * keeps its leading blocks.
 */
export function promptTokensOf(body: any): number[] {
  const p = body?.prompt ?? body?.messages;
  if (Array.isArray(p) && p.every((v) => typeof v === "number")) return p as number[];
  const text = typeof p === "string" ? p : JSON.stringify(p ?? "");
  const out: number[] = [];
  for (let i = 0; i < text.length; i += 4) {
    let h = 0x811c9dc5;
    for (let j = i; j < Math.min(i + 4, text.length); j++) h = Math.imul(h ^ text.charCodeAt(j), 0x01000193);
    out.push(h >>> 0);
  }
  return out;
}

/** LRU prefix cache over chained block hashes (see {@link PrefixCacheOptions}). */
export class PrefixCache {
  readonly blockTokens: number;
  private readonly capacityBlocks: number;
  /** Block hash → true, in least-recently-used order. */
  private readonly blocks = new Map<number, true>();
  evicted = 0;

  constructor(opts: PrefixCacheOptions) {
    this.blockTokens = opts.blockTokens ?? 16;
    this.capacityBlocks = Math.floor(opts.capacityTokens / this.blockTokens);
  }

  /** Blocks held now. */
  get size(): number {
    return this.blocks.size;
  }

  /** Chained hashes of the full blocks of `tokens` (53-bit numbers: two 32-bit FNV-style lanes). */
  hashes(tokens: readonly number[]): number[] {
    const b = this.blockTokens;
    const out: number[] = [];
    let h1 = 0x811c9dc5;
    let h2 = 0x9747b28c;
    for (let i = 0; i + b <= tokens.length; i += b) {
      for (let j = i; j < i + b; j++) {
        const t = tokens[j]! | 0;
        h1 = Math.imul(h1 ^ t, 0x01000193);
        h2 = Math.imul(h2 ^ t, 0x5bd1e995) ^ (h2 >>> 15);
      }
      out.push((h1 >>> 0) * 2097152 + ((h2 >>> 0) & 0x1fffff));
    }
    return out;
  }

  /**
   * Cached prompt tokens of a prompt of `length` tokens whose block hashes are `hs` (of the prompt, or of
   * a longer sequence it starts): leading blocks present, at most `length − 1` tokens (touches them).
   */
  lookupHashes(hs: readonly number[], length: number): number {
    const limit = Math.min(hs.length, Math.floor(Math.max(0, length - 1) / this.blockTokens));
    let n = 0;
    for (; n < limit; n++) {
      const h = hs[n]!;
      if (!this.blocks.has(h)) break;
      this.blocks.delete(h);
      this.blocks.set(h, true);
    }
    return n * this.blockTokens;
  }

  /** Cached prompt tokens of `tokens`: leading blocks present, at most `tokens.length − 1` (touches them). */
  lookup(tokens: readonly number[]): number {
    return this.lookupHashes(this.hashes(tokens), tokens.length);
  }

  /** Stores (or refreshes) every full block of `tokens`, evicting least recently used blocks beyond capacity. */
  insert(tokens: readonly number[]): void {
    this.insertHashes(this.hashes(tokens));
  }

  /** Stores (or refreshes) blocks by hash, evicting least recently used blocks beyond capacity. */
  insertHashes(hs: readonly number[]): void {
    for (const h of hs) {
      this.blocks.delete(h);
      this.blocks.set(h, true);
    }
    while (this.blocks.size > this.capacityBlocks) {
      this.blocks.delete(this.blocks.keys().next().value!);
      this.evicted++;
    }
  }
}

/**
 * Starts a scripted server on 127.0.0.1 with a random free port.
 * @returns the running server; call `close()` when done.
 */
export async function startScriptedServer(options: ScriptedServerOptions = {}): Promise<ScriptedServer> {
  const model = options.model ?? "scripted-model";
  const root = options.root === undefined ? `/models/${model}` : options.root;
  const script = [...(options.script ?? [])];
  const requests: ScriptedRequest[] = [];
  const counts: ScriptedCounts = { total: 0, completions: 0, chat: 0, models: 0, other: 0, aborted: 0 };
  let inFlight = 0;
  let maxInFlight = 0;
  let seq = 0;
  let closing = false;
  let cache = options.prefixCache ? new PrefixCache(options.prefixCache) : undefined;
  let cost = options.costModel;
  let scale = cost?.timeScale ?? 1;
  const stats: ModelStats = {
    requests: 0,
    promptTokens: 0,
    cachedTokens: 0,
    prefillTokens: 0,
    decodeTokens: 0,
    prefillSeconds: 0,
    decodeSeconds: 0,
    rejected: 0,
    failed: 0,
    maxRunning: 0,
    evictedBlocks: 0,
  };
  const state = { failing: false };
  let running = 0;
  const batchQueue: Array<() => void> = [];
  /** performance.now() ms when the prefill lane is free. */
  let prefillFreeAt = 0;

  /** Cancels every pending delay (used by close()). */
  const pendingDelays = new Set<() => void>();
  /** Waits `ms`; resolves false if the client went away or the server is closing. */
  const wait = (ms: number, res: ServerResponse): Promise<boolean> =>
    new Promise((resolve) => {
      if (ms <= 0 || res.destroyed || closing) {
        resolve(!res.destroyed && !closing);
        return;
      }
      const finish = (ok: boolean) => {
        clearTimeout(t);
        pendingDelays.delete(cancel);
        res.off("close", onClose);
        resolve(ok && !res.destroyed && !closing);
      };
      const onClose = () => finish(false);
      const cancel = () => finish(false);
      const t = setTimeout(() => finish(true), ms);
      pendingDelays.add(cancel);
      res.once("close", onClose);
    });

  /**
   * Server-sent events of an answer (OpenAI's stream format as vLLM sends it): the first token's chunk
   * (with the response head, unless `headSent`), then when `end` the rest, the finish reason, the usage
   * chunk when `includeUsage`, and `data: [DONE]`.
   */
  const sendStream = (res: ServerResponse, isCompletion: boolean, body: any, includeUsage: boolean, end: boolean, headSent = false): void => {
    if (res.destroyed || res.writableEnded) return;
    const { first, rest } = streamChunks(isCompletion, body);
    const event = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
    if (!headSent) {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      first.forEach(event);
    }
    if (!end) return;
    rest.forEach(event);
    if (includeUsage) event({ id: body.id, object: body.object, created: 0, model: body.model, choices: [], usage: body.usage });
    res.end("data: [DONE]\n\n");
  };

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    if (res.destroyed || res.writableEnded) return;
    const text = typeof body === "string" ? body : body === undefined ? "" : JSON.stringify(body);
    const isJson = typeof body !== "string" && body !== undefined;
    res.writeHead(status, {
      "content-type": isJson ? "application/json" : "text/plain; charset=utf-8",
      "content-length": Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  };

  /** Usage of an answer: the step's own figures first, then what the model computed. */
  const usageOf = (step: GenerationStep, computed: Computed, promptTokens: number, completionTokens: number): Record<string, unknown> => {
    const u: Record<string, unknown> = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    const cached = step.usage?.cachedTokens ?? (cache && options.prefixCache?.report !== false ? computed.cachedTokens : undefined);
    if (cached !== undefined) u.prompt_tokens_details = { cached_tokens: cached };
    return u;
  };

  const completionBody = (req: ScriptedRequest, step: GenerationStep, n: number, computed: Computed = {}): unknown => {
    const b = req.body ?? {};
    const text = step.text ?? "";
    const wantLogprobs = typeof b.logprobs === "number";
    const asIds = b.return_tokens_as_token_ids === true && wantLogprobs && options.tokenIdsStyle !== "field";
    const ids = step.tokenIds ?? (b.return_token_ids || asIds ? [...text].map((c) => c.codePointAt(0)!) : undefined);
    const choice: Record<string, unknown> = {
      index: 0,
      text,
      finish_reason: step.finishReason ?? "stop",
      stop_reason: step.stopReason ?? null,
      logprobs: null,
    };
    if (wantLogprobs) {
      const tokens = asIds && ids ? ids.map((id) => `token_id:${id}`) : ids ? ids.map(String) : [...text];
      choice.logprobs = {
        tokens,
        token_logprobs: tokens.map((_, i) => step.logprobs?.[i] ?? 0),
        top_logprobs: tokens.map(() => ({})),
        text_offset: tokens.map((_, i) => i),
      };
    }
    if (ids && !asIds && (b.return_token_ids === true || options.tokenIdsStyle === "field")) choice.token_ids = ids;
    const promptTokens = step.usage?.promptTokens ?? computed.promptTokens ?? roughTokens(b.prompt);
    const completionTokens = step.usage?.completionTokens ?? ids?.length ?? roughTokens(text);
    return {
      id: `cmpl-${n}`,
      object: "text_completion",
      created: 0,
      model: typeof b.model === "string" ? b.model : model,
      choices: [choice],
      usage: usageOf(step, computed, promptTokens, completionTokens),
    };
  };

  const chatBody = (req: ScriptedRequest, step: GenerationStep, n: number, computed: Computed = {}): unknown => {
    const b = req.body ?? {};
    const toolCalls = (step.toolCalls ?? []).map((tc, i) => ({
      id: tc.id ?? `call_${n}_${i}`,
      type: "function",
      function: { name: tc.name, arguments: typeof tc.arguments === "string" ? tc.arguments : JSON.stringify(tc.arguments) },
    }));
    const message: Record<string, unknown> = {
      role: "assistant",
      content: step.text ?? (toolCalls.length > 0 ? null : ""),
    };
    if (step.reasoningContent !== undefined) message.reasoning_content = step.reasoningContent;
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    const promptTokens = step.usage?.promptTokens ?? computed.promptTokens ?? roughTokens(b.messages);
    const completionTokens = step.usage?.completionTokens ?? step.tokenIds?.length ?? roughTokens(step.text ?? "");
    return {
      id: `chatcmpl-${n}`,
      object: "chat.completion",
      created: 0,
      model: typeof b.model === "string" ? b.model : model,
      choices: [
        {
          index: 0,
          message,
          finish_reason: step.finishReason ?? (toolCalls.length > 0 ? "tool_calls" : "stop"),
          stop_reason: step.stopReason ?? null,
        },
      ],
      usage: usageOf(step, computed, promptTokens, completionTokens),
    };
  };

  let generations = 0;
  const nextStep = async (req: ScriptedRequest): Promise<ScriptStep> => {
    const s = script.shift();
    if (s !== undefined) return s;
    if (options.handler) return options.handler(req);
    return "ok";
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const raw = await readBody(req);
    let body: any;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    const path = (req.url ?? "/").split("?")[0]!;
    const rec: ScriptedRequest = { seq: seq++, method: req.method ?? "GET", path, headers: req.headers, body };
    if (options.recordRequests !== false) requests.push(rec);
    counts.total++;

    if (options.control && path.startsWith("/_scripted/")) {
      if (rec.method === "GET" && path === "/_scripted/stats") send(res, 200, { ...stats, evictedBlocks: cache?.evicted ?? 0, cacheBlocks: cache?.size ?? 0, failing: state.failing });
      else if (rec.method === "POST" && path === "/_scripted/failing") {
        state.failing = body?.failing === true;
        send(res, 200, { failing: state.failing });
      } else if (rec.method === "POST" && path === "/_scripted/reset") {
        // an empty cache, zero figures, not failing; optionally another cost model or cache size (an idle server only)
        const prefix: PrefixCacheOptions | undefined = body?.prefixCache ?? options.prefixCache;
        cache = prefix ? new PrefixCache(prefix) : undefined;
        cost = body?.costModel ?? options.costModel;
        scale = cost?.timeScale ?? 1;
        prefillFreeAt = 0;
        state.failing = false;
        for (const k of Object.keys(stats) as Array<keyof ModelStats>) stats[k] = 0;
        send(res, 200, { reset: true });
      } else send(res, 404, { error: { message: `no route ${rec.method} ${path}` } });
      return;
    }
    if (rec.method === "GET" && path === "/v1/models") {
      counts.models++;
      const entry: Record<string, unknown> = { id: model, object: "model", created: 0, owned_by: "forager", max_model_len: 131072 };
      if (root !== null) entry.root = root;
      send(res, 200, { object: "list", data: [entry] });
      return;
    }
    const isCompletion = rec.method === "POST" && path === "/v1/completions";
    const isChat = rec.method === "POST" && path === "/v1/chat/completions";
    if (!isCompletion && !isChat) {
      counts.other++;
      send(res, 404, { error: { message: `no route ${rec.method} ${path}`, type: "NotFound", code: 404 } });
      return;
    }
    if (isCompletion) counts.completions++;
    else counts.chat++;
    const n = generations++;

    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      if (state.failing) {
        stats.failed++;
        send(res, 500, { error: { message: "the stand-in server is failing", type: "InternalServerError", code: 500 } });
        return;
      }
      const step = await nextStep(rec);
      if (isRaw(step)) {
        const delay = step.delayMs ?? options.delayMs ?? 0;
        if (!(await wait(delay, res))) {
          counts.aborted++;
          return;
        }
        send(res, step.status, step.body, step.headers);
        return;
      }
      const gen: GenerationStep = typeof step === "string" ? { text: step } : step;
      const b = rec.body ?? {};
      const stream = b.stream === true;
      const tokens = cache || cost ? promptTokensOf(b) : undefined;
      const genIds = gen.tokenIds ?? (isCompletion ? [...(gen.text ?? "")].map((c) => c.codePointAt(0)!) : undefined);
      const completionTokens = gen.usage?.completionTokens ?? genIds?.length ?? roughTokens(gen.text ?? "");
      const computed: Computed = tokens ? { promptTokens: tokens.length } : {};
      // One pass of block hashes over prompt + generated tokens (token prompts: the next turn's prompt
      // starts with both); the prompt's full blocks are its first floor(length / block) hashes.
      const hs = cache && tokens ? cache.hashes(Array.isArray(b.prompt) && genIds ? tokens.concat(genIds) : tokens) : undefined;
      const promptBlocks = cache && tokens ? Math.floor(tokens.length / cache.blockTokens) : 0;
      const body = () => (isCompletion ? completionBody(rec, gen, n, computed) : chatBody(rec, gen, n, computed));
      const finish = () => {
        if (cache && hs) cache.insertHashes(hs);
        stats.requests++;
        stats.promptTokens += tokens?.length ?? 0;
        stats.cachedTokens += computed.cachedTokens ?? 0;
        stats.prefillTokens += (tokens?.length ?? 0) - (computed.cachedTokens ?? 0);
        stats.decodeTokens += completionTokens;
        if (cost) {
          stats.prefillSeconds += ((tokens?.length ?? 0) - (computed.cachedTokens ?? 0)) * cost.prefillSecondsPerToken;
          stats.decodeSeconds += completionTokens * cost.decodeSecondsPerToken;
        }
        stats.evictedBlocks = cache?.evicted ?? 0;
      };

      if (!cost) {
        if (cache && hs) computed.cachedTokens = cache.lookupHashes(hs, tokens!.length);
        if (!(await wait(gen.delayMs ?? options.delayMs ?? 0, res))) {
          counts.aborted++;
          return;
        }
        if (cache && hs) cache.insertHashes(hs.slice(0, promptBlocks));
        finish();
        const answer = body();
        rec.usage = reportedUsage(answer);
        if (stream) sendStream(res, isCompletion, answer, b.stream_options?.include_usage === true, true);
        else send(res, 200, answer);
        return;
      }

      // The cost model: the batch, the prefill lane, decode.
      if (running >= cost.maxBatch) {
        if (cost.maxQueue !== undefined && batchQueue.length >= cost.maxQueue) {
          stats.rejected++;
          const retry = (cost.retryAfterSeconds ?? 1) * scale;
          send(res, 429, { error: { message: "the stand-in server's queue is full", type: "TooManyRequests", code: 429 } }, { "retry-after": retry.toFixed(3) });
          return;
        }
        await new Promise<void>((resolve) => batchQueue.push(resolve));
      }
      running++;
      stats.maxRunning = Math.max(stats.maxRunning, running);
      try {
        if (res.destroyed || closing) {
          counts.aborted++;
          return;
        }
        computed.cachedTokens = cache && hs ? cache.lookupHashes(hs, tokens!.length) : 0;
        const prefillMs = (tokens!.length - computed.cachedTokens) * cost.prefillSecondsPerToken * scale * 1000;
        const now = performance.now();
        prefillFreeAt = Math.max(now, prefillFreeAt) + prefillMs;
        if (!(await wait(prefillFreeAt - now, res))) {
          counts.aborted++;
          return;
        }
        if (cache && hs) cache.insertHashes(hs.slice(0, promptBlocks));
        if (stream) sendStream(res, isCompletion, body(), false, false);
        if (!(await wait(completionTokens * cost.decodeSecondsPerToken * scale * 1000, res))) {
          counts.aborted++;
          return;
        }
        finish();
        const done = body();
        rec.usage = reportedUsage(done);
        if (stream) sendStream(res, isCompletion, done, b.stream_options?.include_usage === true, true, true);
        else send(res, 200, done);
      } finally {
        running--;
        batchQueue.shift()?.();
      }
    } finally {
      inFlight--;
    }
  };

  const server = createServer((req, res) => {
    res.on("error", () => undefined);
    req.on("error", () => undefined);
    handle(req, res).catch((err: unknown) => {
      if (res.destroyed) {
        counts.aborted++;
        return;
      }
      send(res, 500, { error: { message: String(err), type: "ScriptedServerError", code: 500 } });
    });
  });
  server.on("clientError", (_err, socket) => {
    socket.destroy();
  });
  server.keepAliveTimeout = 5000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://${options.host ?? "127.0.0.1"}:${port}`,
    port,
    requests,
    counts,
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    get model() {
      return { ...stats, evictedBlocks: cache?.evicted ?? 0 };
    },
    get failing() {
      return state.failing;
    },
    set failing(v: boolean) {
      state.failing = v;
    },
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        for (const cancel of [...pendingDelays]) cancel();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
