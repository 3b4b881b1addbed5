/**
 * A scripted OpenAI-compatible HTTP server on 127.0.0.1 (random port) for tests and benchmarks.
 *
 * Serves POST /v1/completions, POST /v1/chat/completions and GET /v1/models. Each generation request
 * (completions or chat) takes the next step of `script`; when the script is used up (or absent) the
 * `handler` answers; without a handler the answer is the text "ok". Everything is deterministic (fixed
 * ids and timestamps). A client that aborts mid-request (including during a delay) is tolerated.
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
  usage?: { promptTokens?: number; completionTokens?: number };
  /** Wait this long (ms) before answering. */
  delayMs?: number;
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

/** A rough, deterministic token count for usage (about 4 characters per token). */
function roughTokens(x: unknown): number {
  if (Array.isArray(x) && x.every((v) => typeof v === "number")) return x.length;
  const s = typeof x === "string" ? x : JSON.stringify(x ?? "");
  return Math.ceil(s.length / 4);
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

  const completionBody = (req: ScriptedRequest, step: GenerationStep, n: number): unknown => {
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
    const promptTokens = step.usage?.promptTokens ?? roughTokens(b.prompt);
    const completionTokens = step.usage?.completionTokens ?? ids?.length ?? roughTokens(text);
    return {
      id: `cmpl-${n}`,
      object: "text_completion",
      created: 0,
      model: typeof b.model === "string" ? b.model : model,
      choices: [choice],
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
    };
  };

  const chatBody = (req: ScriptedRequest, step: GenerationStep, n: number): unknown => {
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
    const promptTokens = step.usage?.promptTokens ?? roughTokens(b.messages);
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
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
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
      const step = await nextStep(rec);
      const delay = (typeof step === "object" ? step.delayMs : undefined) ?? options.delayMs ?? 0;
      if (!(await wait(delay, res))) {
        counts.aborted++;
        return;
      }
      if (isRaw(step)) {
        send(res, step.status, step.body, step.headers);
        return;
      }
      const gen: GenerationStep = typeof step === "string" ? { text: step } : step;
      send(res, 200, isCompletion ? completionBody(rec, gen, n) : chatBody(rec, gen, n));
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
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    counts,
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
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
