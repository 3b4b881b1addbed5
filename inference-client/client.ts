/**
 * HTTP client for OpenAI-compatible inference servers (vLLM, SGLang, Meta's CWM server).
 *
 * - One undici `Pool` per endpoint (keep-alive connections, at most `maxConcurrency` of them).
 * - A client-wide FIFO queue: a call waits until some endpoint has a free slot (per-endpoint
 *   `maxConcurrency`), then goes to the free endpoint with the fewest outstanding requests
 *   (relative to its limit; ties rotate round-robin; an endpoint that just failed is avoided).
 * - Retries with exponential backoff and full jitter on connection errors, HTTP 429 and 5xx (a
 *   `Retry-After` header replaces the computed delay); never on other 4xx or malformed responses.
 *   Each retry picks an endpoint again, so a dead server is routed around when there are several.
 * - One deadline per call (AbortSignal) covering queueing, every attempt and every backoff.
 * - Failures are thrown as {@link InferenceError}.
 */
import pino, { type Logger } from "pino";
import { Pool } from "undici";
import { z } from "zod";
import { InferenceConfigSchema, type Endpoint, type InferenceConfig, type InferenceConfigInput } from "./config";

/** Token ids on which CWM (Llama-3 family tokenizer) generation stops: end_of_text, eom, eot. */
export const CWM_STOP_TOKEN_IDS: readonly number[] = Object.freeze([128001, 128008, 128009]);

/** Largest error-response body kept on an {@link InferenceError}, in bytes. */
export const ERROR_BODY_LIMIT_BYTES = 2048;

// ---------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------

/**
 * What went wrong:
 * - `http`: the server answered with an error status (`status`, `body` set);
 * - `connection`: the request could not be sent or the response not read (refused, reset, connect timeout);
 * - `protocol`: a 2xx answer that is not the expected JSON shape;
 * - `deadline`: the call's deadline passed (while queued, during an attempt or during a backoff);
 * - `aborted`: the caller's AbortSignal fired;
 * - `closed`: the client was closed.
 */
export type InferenceErrorKind = "http" | "connection" | "protocol" | "deadline" | "aborted" | "closed";

/** Constructor fields of {@link InferenceError}. */
export interface InferenceErrorInit {
  kind: InferenceErrorKind;
  /** Base URL of the endpoint of the last attempt (or of all endpoints, comma-separated, if none started). */
  endpoint: string;
  /** Number of HTTP attempts made (0 when the call never left the queue). */
  attempts: number;
  /** HTTP status of the last attempt, when the server answered. */
  status?: number;
  /** Response body of the last attempt, truncated to {@link ERROR_BODY_LIMIT_BYTES}. */
  body?: string;
  /** e.g. `POST /v1/completions`. */
  operation?: string;
  /** Human-readable description of the failure. */
  detail?: string;
  cause?: unknown;
}

/**
 * The one error type thrown by {@link InferenceClient}. The message names the operation, the endpoint,
 * the number of attempts, the HTTP status and (a prefix of) the body when there is one.
 */
export class InferenceError extends Error {
  override readonly name = "InferenceError";
  readonly kind: InferenceErrorKind;
  readonly endpoint: string;
  readonly attempts: number;
  readonly status?: number;
  readonly body?: string;

  constructor(init: InferenceErrorInit) {
    const what = init.operation ? `${init.operation} at ${init.endpoint}` : `request to ${init.endpoint}`;
    const tries = `${init.attempts} attempt${init.attempts === 1 ? "" : "s"}`;
    let detail = init.detail ?? init.kind;
    if (init.status !== undefined && !detail.includes(`HTTP ${init.status}`)) detail = `HTTP ${init.status}: ${detail}`;
    if (init.body !== undefined && init.body.length > 0 && !detail.includes(init.body.slice(0, 40))) {
      detail += ` — body: ${init.body.length > 512 ? `${init.body.slice(0, 512)}…` : init.body}`;
    }
    super(`${what} failed after ${tries}: ${detail}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.kind = init.kind;
    this.endpoint = init.endpoint;
    this.attempts = init.attempts;
    this.status = init.status;
    this.body = init.body;
  }
}

/** One failed attempt (internal); turned into an InferenceError when the call gives up. */
class AttemptFailure extends Error {
  constructor(
    readonly kind: "http" | "connection" | "protocol",
    readonly detail: string,
    readonly retryable: boolean,
    readonly status?: number,
    readonly body?: string,
    readonly retryAfterMs?: number,
    cause?: unknown,
  ) {
    super(detail, cause === undefined ? undefined : { cause });
  }
}

// ---------------------------------------------------------------------------------------------------
// Public request / result types
// ---------------------------------------------------------------------------------------------------

/** Per-call options common to every method. */
export interface CallOptions {
  /** Overrides `requestDeadlineSeconds` for this call (seconds; covers queueing, attempts and backoffs). */
  deadlineSeconds?: number;
  /** Cancels the call; the promise then rejects with an InferenceError of kind `aborted`. */
  signal?: AbortSignal;
}

/** Sampling parameters shared by completions and chat (omitted fields use the server's defaults). */
export interface SamplingParams {
  /** Most tokens to generate. */
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  /** Stop strings. */
  stop?: string | string[];
  /** Stop token ids (vLLM / SGLang extension); see {@link CWM_STOP_TOKEN_IDS}. */
  stopTokenIds?: readonly number[];
  seed?: number;
  /**
   * Extra JSON fields merged into the request body last (they may override the fields above), e.g.
   * `{ skip_special_tokens: false }` or `{ chat_template_kwargs: {...} }`.
   */
  extraBody?: Record<string, unknown>;
}

/** Input of {@link InferenceClient.complete}. */
export interface CompletionRequest extends SamplingParams, CallOptions {
  /** The prompt, as text or as token ids (token-in / token-out). */
  prompt: string | readonly number[];
  /** Number of top log-probabilities per sampled token to request (OpenAI `logprobs`). */
  logprobs?: number;
  /**
   * Ask for the ids of the sampled tokens. Sends vLLM's `return_token_ids: true` (vLLM ≥ 0.10.2, answered
   * with `choices[i].token_ids`) and `return_tokens_as_token_ids: true` (older vLLM: the logprobs tokens
   * come back as `"token_id:N"`; this needs `logprobs`, so `logprobs: 0` is sent when none was asked).
   * Whichever form the server answers with is parsed; `tokenIds` stays undefined when neither is present.
   */
  returnTokenIds?: boolean;
}

/** Token accounting reported by the server (tokens). */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

/** Why generation stopped, as reported by the server (`"unknown"` when it reported none). */
export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter" | "abort" | "unknown" | (string & {});

/** Fields common to every result. */
export interface ResultMeta {
  finishReason: FinishReason;
  /** vLLM's `stop_reason`: the stop string or stop token id that ended generation, when reported. */
  stopReason?: string | number;
  usage: Usage;
  /** Wall time of the whole call in ms: queueing, every attempt and every backoff. */
  latencyMs: number;
  /** Base URL of the endpoint that answered. */
  endpoint: string;
  /** Model name as reported in the response (or the one requested). */
  model: string;
  /** Number of HTTP attempts (1 when the first attempt succeeded). */
  attempts: number;
}

/** Output of {@link InferenceClient.complete}. */
export interface CompletionResult extends ResultMeta {
  text: string;
  /** Sampled token ids, when asked for with `returnTokenIds` and returned by the server. */
  tokenIds?: number[];
  /** Log-probability of each sampled token, when the server returned them (`null` entries become NaN). */
  logprobs?: number[];
  /** Prompt token ids as the server tokenized them (vLLM `return_token_ids`), when returned. */
  promptTokenIds?: number[];
}

/** An OpenAI tool call as sent back in an assistant message (wire format). */
export interface ChatToolCallParam {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** An OpenAI chat message (wire format, sent verbatim). */
export interface ChatMessageParam {
  role: "system" | "user" | "assistant" | "tool" | (string & {});
  content: string | null | Array<Record<string, unknown>>;
  name?: string;
  tool_call_id?: string;
  tool_calls?: ChatToolCallParam[];
  reasoning_content?: string;
}

/** An OpenAI function tool definition (wire format, sent verbatim). */
export interface ToolDefinition {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

/** OpenAI `tool_choice`. */
export type ToolChoice = "auto" | "none" | "required" | { type: "function"; function: { name: string } };

/** Input of {@link InferenceClient.chat}. */
export interface ChatRequest extends SamplingParams, CallOptions {
  messages: readonly ChatMessageParam[];
  tools?: readonly ToolDefinition[];
  toolChoice?: ToolChoice;
}

/** A tool call made by the model. `arguments` is the raw JSON text as generated (may be invalid JSON). */
export interface ToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** Output of {@link InferenceClient.chat}. */
export interface ChatResult extends ResultMeta {
  message: {
    /** Text content (`""` when the server sent null, e.g. a tool-call-only turn). */
    content: string;
    /** Reasoning text separated by the server's reasoning parser (`reasoning_content` or `reasoning`). */
    reasoningContent?: string;
    toolCalls: ToolCall[];
  };
}

/** Which model an endpoint serves. */
export interface ModelIdentity {
  /** The model name used in requests (configured, else the first id of GET /v1/models). */
  model: string;
  /** The configured `weightsVersion`, if any. */
  weightsVersion?: string;
  /** vLLM's `root` from GET /v1/models: the path or hub id of the served weights. */
  weightsPath?: string;
  /** vLLM's `max_model_len` (tokens), when reported. */
  maxModelLen?: number;
  /** Base URL of the endpoint. */
  endpoint: string;
}

/** Counters of one endpoint since the client was created. */
export interface EndpointStats {
  url: string;
  maxConcurrency: number;
  /** Requests in flight on this endpoint now. */
  outstanding: number;
  /** Calls that succeeded on this endpoint. */
  completed: number;
  /** Attempts on this endpoint that failed (retried or not). */
  failed: number;
  /** Attempts on this endpoint that were retries of an earlier failed attempt. */
  retries: number;
  /** Sum of `latencyMs` of the calls completed here (ms; includes queueing and backoffs). */
  totalLatencyMs: number;
  /** Sum of the server-reported prompt tokens of the calls completed here. */
  promptTokens: number;
  /** Sum of the server-reported completion tokens of the calls completed here. */
  completionTokens: number;
}

/** Snapshot returned by {@link InferenceClient.stats}. */
export interface ClientStats {
  /** Calls waiting for a free slot on any endpoint. */
  queued: number;
  endpoints: EndpointStats[];
}

/** Options of the {@link InferenceClient} constructor. */
export interface InferenceClientOptions {
  /** Logger (a child with `component: "inference-client"` is used); silent by default. */
  logger?: Logger;
  /** Source of randomness for the backoff jitter, in [0, 1) (tests make it deterministic). */
  random?: () => number;
}

// ---------------------------------------------------------------------------------------------------
// Response shapes (loose: servers add fields)
// ---------------------------------------------------------------------------------------------------

const UsageWire = z
  .looseObject({ prompt_tokens: z.number().nullish(), completion_tokens: z.number().nullish() })
  .nullish();
const StopReasonWire = z.union([z.string(), z.number()]).nullish();

const CompletionWire = z.looseObject({
  model: z.string().nullish(),
  choices: z
    .array(
      z.looseObject({
        text: z.string().nullish(),
        finish_reason: z.string().nullish(),
        stop_reason: StopReasonWire,
        token_ids: z.array(z.number().int()).nullish(),
        prompt_token_ids: z.array(z.number().int()).nullish(),
        logprobs: z
          .looseObject({
            tokens: z.array(z.string()).nullish(),
            token_logprobs: z.array(z.number().nullable()).nullish(),
          })
          .nullish(),
      }),
    )
    .min(1),
  usage: UsageWire,
});

const ChatWire = z.looseObject({
  model: z.string().nullish(),
  choices: z
    .array(
      z.looseObject({
        finish_reason: z.string().nullish(),
        stop_reason: StopReasonWire,
        message: z.looseObject({
          content: z.string().nullish(),
          reasoning_content: z.string().nullish(),
          reasoning: z.string().nullish(),
          tool_calls: z
            .array(
              z.looseObject({
                id: z.string().nullish(),
                function: z.looseObject({
                  name: z.string(),
                  arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
                }),
              }),
            )
            .nullish(),
        }),
      }),
    )
    .min(1),
  usage: UsageWire,
});

const ModelsWire = z.looseObject({
  data: z
    .array(z.looseObject({ id: z.string(), root: z.string().nullish(), max_model_len: z.number().nullish() }))
    .min(1),
});

interface ModelInfo {
  model: string;
  weightsPath?: string;
  maxModelLen?: number;
}

// ---------------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------------

interface EndpointState {
  index: number;
  config: Endpoint;
  /** Normalized base URL (no trailing `/` nor `/v1`). */
  url: string;
  /** Path prefix before `/v1` ("" for most servers). */
  basePath: string;
  pool: Pool;
  inFlight: number;
  completed: number;
  failed: number;
  retries: number;
  totalLatencyMs: number;
  promptTokens: number;
  completionTokens: number;
  /** Until this time (performance.now() ms) the endpoint is avoided when others are free. */
  coolUntil: number;
  /** GET /v1/models in progress or done (cleared on failure). */
  modelInfo?: Promise<ModelInfo>;
  identity?: Promise<ModelIdentity>;
}

interface Waiter {
  pinned?: EndpointState;
  avoid?: EndpointState;
  resolve: (ep: EndpointState) => void;
  reject: (err: unknown) => void;
}

interface Operation<T> {
  /** e.g. "POST /v1/completions" (for messages and logs). */
  name: string;
  /** Run on this endpoint only. */
  pinned?: EndpointState;
  /** Take a concurrency slot (false for cheap metadata calls). */
  limited: boolean;
  /** Overrides config.retries. */
  retries?: number;
  /** One attempt on one endpoint. Throws AttemptFailure (or anything, treated as a connection error). */
  exec: (ep: EndpointState, signal: AbortSignal) => Promise<T>;
  /** Token usage of a result, for stats. */
  usage?: (value: T) => Usage;
}

interface RunResult<T> {
  value: T;
  ep: EndpointState;
  attempts: number;
  latencyMs: number;
}

class DeadlineReason extends Error {}
class ClosedReason extends Error {}

function normalizeUrl(raw: string): { url: string; origin: string; basePath: string } {
  const u = new URL(raw);
  let path = u.pathname.replace(/\/+$/, "");
  if (path.endsWith("/v1")) path = path.slice(0, -3);
  return { url: `${u.origin}${path}`, origin: u.origin, basePath: path };
}

function truncateBody(text: string): string {
  const buf = Buffer.from(text, "utf8");
  if (buf.length <= ERROR_BODY_LIMIT_BYTES) return text;
  // Drop a trailing partial UTF-8 sequence (decoded as U+FFFD).
  return `${buf.subarray(0, ERROR_BODY_LIMIT_BYTES).toString("utf8").replace(/\uFFFD$/, "")}…[truncated]`;
}

/** Parses Retry-After (delay-seconds, possibly fractional, or an HTTP date) into ms. */
function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === "") return undefined;
  const secs = Number(v.trim());
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const date = Date.parse(v);
  if (Number.isFinite(date)) return Math.max(0, date - Date.now());
  return undefined;
}

function describeError(e: unknown): string {
  if (e instanceof AggregateError && e.errors.length > 0) {
    const inner = e.errors.map((x) => describeError(x));
    return [...new Set(inner)].join("; ");
  }
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const msg = e.message || e.name;
    return typeof code === "string" && !msg.includes(code) ? `${code}: ${msg}` : msg;
  }
  return String(e);
}

/** Resolves after `ms`, or rejects with `signal.reason` when the signal fires first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** `p`, or a rejection with `signal.reason` when the signal fires first. */
function raceSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

function toUsage(u: z.infer<typeof UsageWire>, fallbackCompletion?: number): Usage {
  return {
    promptTokens: u?.prompt_tokens ?? 0,
    completionTokens: u?.completion_tokens ?? fallbackCompletion ?? 0,
  };
}

function parseWire<S extends z.ZodType>(schema: S, json: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "invalid";
    throw new AttemptFailure("protocol", `malformed ${what} response (${where})`, false, undefined, truncateBody(JSON.stringify(json) ?? ""));
  }
  return r.data;
}

const TOKEN_ID_RE = /^token_id:(-?\d+)$/;

// ---------------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------------

/**
 * Client for one or more OpenAI-compatible inference endpoints. Safe to share across concurrent callers.
 *
 * @example
 * const client = new InferenceClient({ endpoints: [{ url: "http://127.0.0.1:8000" }] });
 * const r = await client.complete({ prompt: "def add(a, b):", maxTokens: 64, stopTokenIds: CWM_STOP_TOKEN_IDS });
 * await client.close();
 */
export class InferenceClient {
  /** The parsed configuration (defaults applied). */
  readonly config: InferenceConfig;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly endpoints: EndpointState[];
  private readonly waiters: Waiter[] = [];
  private rr = 0;
  private closed = false;
  /** Calls in progress (queued, in flight or backing off). */
  private active = 0;
  private readonly idleWaiters: Array<() => void> = [];

  /**
   * @param config configuration; validated and defaulted with {@link InferenceConfigSchema}.
   * @throws {z.ZodError} when the configuration is invalid.
   */
  constructor(config: InferenceConfigInput, options: InferenceClientOptions = {}) {
    this.config = InferenceConfigSchema.parse(config);
    this.log = (options.logger ?? pino({ level: "silent" })).child({ component: "inference-client" });
    this.random = options.random ?? Math.random;
    this.endpoints = this.config.endpoints.map((cfg, index) => {
      const { url, origin, basePath } = normalizeUrl(cfg.url);
      const pool = new Pool(origin, {
        connections: cfg.maxConcurrency,
        connectTimeout: this.config.connectTimeoutSeconds * 1000,
        // Generation can take minutes before the first byte: the per-call deadline bounds it instead.
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      return {
        index,
        config: cfg,
        url,
        basePath,
        pool,
        inFlight: 0,
        completed: 0,
        failed: 0,
        retries: 0,
        totalLatencyMs: 0,
        promptTokens: 0,
        completionTokens: 0,
        coolUntil: 0,
      };
    });
  }

  /**
   * Text completion: POST /v1/completions with `n = 1`.
   * @throws {InferenceError} when every attempt failed, on a non-retryable error, or at the deadline.
   */
  async complete(req: CompletionRequest): Promise<CompletionResult> {
    const logprobs = req.returnTokenIds ? Math.max(0, req.logprobs ?? 0) : req.logprobs;
    const base: Record<string, unknown> = {
      prompt: typeof req.prompt === "string" ? req.prompt : [...req.prompt],
      n: 1,
      stream: false,
      max_tokens: req.maxTokens,
      temperature: req.temperature,
      top_p: req.topP,
      stop: req.stop,
      stop_token_ids: req.stopTokenIds ? [...req.stopTokenIds] : undefined,
      seed: req.seed,
      logprobs,
      ...(req.returnTokenIds ? { return_token_ids: true, return_tokens_as_token_ids: true } : {}),
      ...req.extraBody,
    };
    const op: Operation<Omit<CompletionResult, "latencyMs" | "endpoint" | "attempts">> = {
      name: "POST /v1/completions",
      limited: true,
      usage: (v) => v.usage,
      exec: async (ep, signal) => {
        const model = await this.modelFor(ep, signal);
        const json = await this.http(ep, "POST", "/v1/completions", { model, ...base }, signal);
        const wire = parseWire(CompletionWire, json, "completion");
        const choice = wire.choices[0]!;
        let tokenIds: number[] | undefined = choice.token_ids ?? undefined;
        const lpTokens = choice.logprobs?.tokens ?? undefined;
        if (!tokenIds && lpTokens && lpTokens.length > 0) {
          const parsed = lpTokens.map((t) => TOKEN_ID_RE.exec(t));
          if (parsed.every((m) => m !== null)) tokenIds = parsed.map((m) => Number(m![1]));
        }
        if (req.returnTokenIds && !tokenIds) {
          this.log.debug({ endpoint: ep.url }, "server returned no token ids for a returnTokenIds request");
        }
        const lps = choice.logprobs?.token_logprobs ?? undefined;
        return {
          text: choice.text ?? "",
          tokenIds,
          logprobs: lps ? lps.map((x) => (x === null ? Number.NaN : x)) : undefined,
          promptTokenIds: choice.prompt_token_ids ?? undefined,
          finishReason: choice.finish_reason ?? "unknown",
          stopReason: choice.stop_reason ?? undefined,
          usage: toUsage(wire.usage, tokenIds?.length),
          model: wire.model ?? model,
        };
      },
    };
    const r = await this.run(op, req);
    return stripUndefined({ ...r.value, latencyMs: r.latencyMs, endpoint: r.ep.url, attempts: r.attempts });
  }

  /**
   * Chat completion: POST /v1/chat/completions with `n = 1`, optional tools.
   * @throws {InferenceError} when every attempt failed, on a non-retryable error, or at the deadline.
   */
  async chat(req: ChatRequest): Promise<ChatResult> {
    const base: Record<string, unknown> = {
      messages: req.messages,
      tools: req.tools && req.tools.length > 0 ? req.tools : undefined,
      tool_choice: req.toolChoice,
      n: 1,
      stream: false,
      max_tokens: req.maxTokens,
      temperature: req.temperature,
      top_p: req.topP,
      stop: req.stop,
      stop_token_ids: req.stopTokenIds ? [...req.stopTokenIds] : undefined,
      seed: req.seed,
      ...req.extraBody,
    };
    const op: Operation<Omit<ChatResult, "latencyMs" | "endpoint" | "attempts">> = {
      name: "POST /v1/chat/completions",
      limited: true,
      usage: (v) => v.usage,
      exec: async (ep, signal) => {
        const model = await this.modelFor(ep, signal);
        const json = await this.http(ep, "POST", "/v1/chat/completions", { model, ...base }, signal);
        const wire = parseWire(ChatWire, json, "chat completion");
        const choice = wire.choices[0]!;
        const msg = choice.message;
        const toolCalls: ToolCall[] = (msg.tool_calls ?? []).map((tc, i) => ({
          id: tc.id ?? `call_${i}`,
          name: tc.function.name,
          arguments:
            typeof tc.function.arguments === "string"
              ? tc.function.arguments
              : JSON.stringify(tc.function.arguments ?? {}),
        }));
        const reasoning = msg.reasoning_content ?? msg.reasoning ?? undefined;
        return {
          message: stripUndefined({ content: msg.content ?? "", reasoningContent: reasoning, toolCalls }),
          finishReason: choice.finish_reason ?? "unknown",
          stopReason: choice.stop_reason ?? undefined,
          usage: toUsage(wire.usage),
          model: wire.model ?? model,
        };
      },
    };
    const r = await this.run(op, req);
    return stripUndefined({ ...r.value, latencyMs: r.latencyMs, endpoint: r.ep.url, attempts: r.attempts });
  }

  /**
   * Which model an endpoint serves (default: the first endpoint). Cached after the first success.
   * With both `model` and `weightsVersion` configured, answers from the configuration without a request;
   * with only `model`, tries GET /v1/models once (to learn `root`) and falls back to the configuration;
   * without `model`, GET /v1/models with the usual retries.
   * @param endpointUrl base URL of a configured endpoint.
   * @throws {InferenceError} when the model cannot be learned; {Error} for an unknown `endpointUrl`.
   */
  modelIdentity(endpointUrl?: string): Promise<ModelIdentity> {
    const ep = this.endpointByUrl(endpointUrl);
    if (!ep.identity) {
      const p = this.loadIdentity(ep);
      ep.identity = p;
      p.catch(() => {
        if (ep.identity === p) ep.identity = undefined;
      });
    }
    return ep.identity;
  }

  /** {@link modelIdentity} of every endpoint, in configuration order. @throws {InferenceError} */
  modelIdentities(): Promise<ModelIdentity[]> {
    return Promise.all(this.endpoints.map((ep) => this.modelIdentity(ep.url)));
  }

  /** A snapshot of the counters of every endpoint. */
  stats(): ClientStats {
    return {
      queued: this.waiters.length,
      endpoints: this.endpoints.map((ep) => ({
        url: ep.url,
        maxConcurrency: ep.config.maxConcurrency,
        outstanding: ep.inFlight,
        completed: ep.completed,
        failed: ep.failed,
        retries: ep.retries,
        totalLatencyMs: ep.totalLatencyMs,
        promptTokens: ep.promptTokens,
        completionTokens: ep.completionTokens,
      })),
    };
  }

  /**
   * Closes the client: queued calls and new calls reject with an InferenceError of kind `closed`; calls in
   * flight finish (without further retries), then the connection pools close.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      const waiters = this.waiters.splice(0);
      for (const w of waiters) w.reject(new ClosedReason("client closed"));
    }
    if (this.active > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await Promise.all(this.endpoints.map((ep) => ep.pool.close().catch(() => undefined)));
  }

  // -------------------------------------------------------------------------------------------------

  private endpointByUrl(endpointUrl?: string): EndpointState {
    if (endpointUrl === undefined) return this.endpoints[0]!;
    const wanted = normalizeUrl(endpointUrl).url;
    const ep = this.endpoints.find((e) => e.url === wanted);
    if (!ep) throw new Error(`unknown endpoint ${endpointUrl}; configured: ${this.endpoints.map((e) => e.url).join(", ")}`);
    return ep;
  }

  private async loadIdentity(ep: EndpointState): Promise<ModelIdentity> {
    const { model, weightsVersion } = ep.config;
    if (model !== undefined && weightsVersion !== undefined) return { model, weightsVersion, endpoint: ep.url };
    const op: Operation<ModelInfo> = {
      name: "GET /v1/models",
      pinned: ep,
      limited: false,
      exec: (e, signal) => this.modelInfo(e, signal),
    };
    try {
      const best = model !== undefined ? { retries: 0, deadlineSeconds: this.config.connectTimeoutSeconds * 2 } : {};
      const { value } = await this.run({ ...op, retries: best.retries }, { deadlineSeconds: best.deadlineSeconds });
      return stripUndefined({
        model: model ?? value.model,
        weightsVersion,
        weightsPath: value.weightsPath,
        maxModelLen: value.maxModelLen,
        endpoint: ep.url,
      });
    } catch (e) {
      if (model === undefined) throw e;
      this.log.debug({ endpoint: ep.url, err: describeError(e) }, "GET /v1/models failed; identity from configuration");
      return stripUndefined({ model, weightsVersion, endpoint: ep.url });
    }
  }

  /** The model name to send to `ep`: configured, else learned once from GET /v1/models (one attempt). */
  private async modelFor(ep: EndpointState, signal: AbortSignal): Promise<string> {
    if (ep.config.model !== undefined) return ep.config.model;
    return (await this.modelInfo(ep, signal)).model;
  }

  /**
   * One shared GET /v1/models attempt per endpoint (cached on success, forgotten on failure). The shared
   * request has its own timeout so that one caller's abort does not fail the others.
   */
  private modelInfo(ep: EndpointState, signal: AbortSignal): Promise<ModelInfo> {
    if (!ep.modelInfo) {
      const timeoutMs = Math.min(this.config.requestDeadlineSeconds, 60) * 1000;
      const p = (async (): Promise<ModelInfo> => {
        const json = await this.http(ep, "GET", "/v1/models", undefined, AbortSignal.timeout(timeoutMs));
        const first = parseWire(ModelsWire, json, "models").data[0]!;
        return stripUndefined({
          model: first.id,
          weightsPath: first.root ?? undefined,
          maxModelLen: first.max_model_len ?? undefined,
        });
      })();
      ep.modelInfo = p;
      p.catch(() => {
        if (ep.modelInfo === p) ep.modelInfo = undefined;
      });
    }
    return raceSignal(ep.modelInfo, signal);
  }

  /** One HTTP exchange. Returns the parsed JSON of a 2xx answer; throws AttemptFailure otherwise. */
  private async http(
    ep: EndpointState,
    method: "GET" | "POST",
    path: string,
    body: unknown,
    signal: AbortSignal,
  ): Promise<unknown> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (ep.config.apiKey) headers.authorization = `Bearer ${ep.config.apiKey}`;
    let statusCode: number;
    let resHeaders: Record<string, string | string[] | undefined>;
    let text: string;
    try {
      const res = await ep.pool.request({
        method,
        path: ep.basePath + path,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
      statusCode = res.statusCode;
      resHeaders = res.headers;
      text = await res.body.text();
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      throw new AttemptFailure("connection", `connection error (${describeError(e)})`, true, undefined, undefined, undefined, e);
    }
    if (statusCode < 200 || statusCode >= 300) {
      const retryable = statusCode === 429 || statusCode >= 500;
      const truncated = truncateBody(text);
      throw new AttemptFailure(
        "http",
        `HTTP ${statusCode}`,
        retryable,
        statusCode,
        truncated,
        retryable ? parseRetryAfter(resHeaders["retry-after"]) : undefined,
      );
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new AttemptFailure("protocol", `response is not JSON`, false, statusCode, truncateBody(text), undefined, e);
    }
  }

  /** Runs an operation with queueing, endpoint choice, retries, backoff and the deadline. */
  private async run<T>(op: Operation<T>, opts: CallOptions): Promise<RunResult<T>> {
    const started = performance.now();
    const deadlineSeconds = opts.deadlineSeconds ?? this.config.requestDeadlineSeconds;
    const deadlineMs = deadlineSeconds * 1000;
    const maxRetries = op.retries ?? this.config.retries;
    const ctl = new AbortController();
    const signal = ctl.signal;
    const timer = setTimeout(() => ctl.abort(new DeadlineReason(`deadline of ${deadlineSeconds} s exceeded`)), deadlineMs);
    const user = opts.signal;
    const onUserAbort = () => ctl.abort(user?.reason ?? new Error("aborted"));
    if (user?.aborted) onUserAbort();
    else user?.addEventListener("abort", onUserAbort, { once: true });

    this.active++;
    let attempts = 0;
    let lastEp: EndpointState | undefined;
    let lastFailure: AttemptFailure | undefined;

    const giveUp = (reason: unknown, extraDetail?: string): InferenceError => {
      const endpoint = lastEp?.url ?? (op.pinned ? op.pinned.url : this.endpoints.map((e) => e.url).join(","));
      let err: InferenceError;
      if (reason instanceof AttemptFailure) {
        err = new InferenceError({
          kind: reason.kind,
          endpoint,
          attempts,
          status: reason.status,
          body: reason.body,
          operation: op.name,
          detail: extraDetail ? `${reason.detail} ${extraDetail}` : reason.detail,
          cause: reason.cause,
        });
      } else {
        const kind: InferenceErrorKind =
          reason instanceof DeadlineReason ? "deadline" : reason instanceof ClosedReason ? "closed" : "aborted";
        let detail = kind === "deadline" ? (reason as Error).message : kind === "closed" ? "client closed" : `aborted (${describeError(reason)})`;
        if (lastFailure) detail += `; last error: ${lastFailure.detail}`;
        err = new InferenceError({
          kind,
          endpoint,
          attempts,
          status: lastFailure?.status,
          body: lastFailure?.body,
          operation: op.name,
          detail,
          cause: reason,
        });
      }
      this.log.warn({ endpoint, attempts, kind: err.kind, status: err.status, op: op.name }, err.message);
      return err;
    };

    try {
      for (;;) {
        if (this.closed) throw giveUp(new ClosedReason("client closed"));
        let ep: EndpointState;
        try {
          ep = op.limited ? await this.acquire(signal, op.pinned, lastFailure ? lastEp : undefined) : op.pinned ?? this.endpoints[0]!;
        } catch (e) {
          throw giveUp(e);
        }
        attempts++;
        lastEp = ep;
        if (attempts > 1) ep.retries++;
        let failure: AttemptFailure;
        try {
          const value = await op.exec(ep, signal);
          const latencyMs = performance.now() - started;
          ep.completed++;
          ep.totalLatencyMs += latencyMs;
          if (op.usage) {
            const u = op.usage(value);
            ep.promptTokens += u.promptTokens;
            ep.completionTokens += u.completionTokens;
          }
          this.log.debug({ endpoint: ep.url, op: op.name, attempts, latencyMs: Math.round(latencyMs) }, "inference call done");
          return { value, ep, attempts, latencyMs };
        } catch (e) {
          if (signal.aborted) {
            if (e instanceof AttemptFailure) lastFailure = e;
            ep.failed++;
            throw giveUp(signal.reason);
          }
          failure =
            e instanceof AttemptFailure
              ? e
              : new AttemptFailure("connection", `connection error (${describeError(e)})`, true, undefined, undefined, undefined, e);
          ep.failed++;
          lastFailure = failure;
        } finally {
          if (op.limited) this.release(ep);
        }

        if (!failure.retryable || attempts > maxRetries) throw giveUp(failure);
        const capMs = Math.min(this.config.backoffMaxSeconds * 1000, this.config.backoffBaseSeconds * 1000 * 2 ** (attempts - 1));
        const delayMs = failure.retryAfterMs ?? this.random() * capMs;
        const remainingMs = deadlineMs - (performance.now() - started);
        if (delayMs >= remainingMs) {
          throw giveUp(failure, `(a retry in ${(delayMs / 1000).toFixed(2)} s would pass the ${deadlineSeconds} s deadline)`);
        }
        ep.coolUntil = performance.now() + Math.max(delayMs, 1);
        this.log.warn(
          { endpoint: ep.url, op: op.name, attempt: attempts, status: failure.status, delayMs: Math.round(delayMs) },
          `inference attempt failed (${failure.detail}); retrying`,
        );
        try {
          await sleep(delayMs, signal);
        } catch (e) {
          throw giveUp(e);
        }
      }
    } finally {
      clearTimeout(timer);
      user?.removeEventListener("abort", onUserAbort);
      if (--this.active === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  /**
   * The best free endpoint for a call, or undefined when none has a free slot. Preference: not the
   * endpoint to avoid, not cooling down after a failure, lowest in-flight/maxConcurrency, round-robin.
   */
  private pick(pinned?: EndpointState, avoid?: EndpointState): EndpointState | undefined {
    const n = this.endpoints.length;
    const now = performance.now();
    let best: EndpointState | undefined;
    let bestKey: [number, number] = [Infinity, Infinity];
    for (let i = 0; i < n; i++) {
      const ep = pinned ?? this.endpoints[(this.rr + i) % n]!;
      if (ep.inFlight < ep.config.maxConcurrency) {
        const penalty = (ep === avoid && n > 1 ? 2 : 0) + (ep.coolUntil > now ? 1 : 0);
        const load = ep.inFlight / ep.config.maxConcurrency;
        if (penalty < bestKey[0] || (penalty === bestKey[0] && load < bestKey[1])) {
          best = ep;
          bestKey = [penalty, load];
        }
      }
      if (pinned) break;
    }
    if (best && !pinned) this.rr = (best.index + 1) % n;
    return best;
  }

  /** Takes a slot (waiting in the FIFO queue when every eligible endpoint is full). */
  private acquire(signal: AbortSignal, pinned?: EndpointState, avoid?: EndpointState): Promise<EndpointState> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.closed) return Promise.reject(new ClosedReason("client closed"));
    const ep = this.pick(pinned, avoid);
    if (ep) {
      ep.inFlight++;
      return Promise.resolve(ep);
    }
    return new Promise<EndpointState>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        pinned,
        avoid,
        resolve: (e) => {
          signal.removeEventListener("abort", onAbort);
          resolve(e);
        },
        reject: (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Gives a slot back and hands free slots to queued calls in FIFO order. */
  private release(ep: EndpointState): void {
    ep.inFlight--;
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i]!;
      const free = this.pick(w.pinned, w.avoid);
      if (!free) {
        i++;
        continue;
      }
      this.waiters.splice(i, 1);
      free.inFlight++;
      w.resolve(free);
    }
  }
}

/** Removes keys whose value is undefined (keeps results clean for JSON and deep equality). */
function stripUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] === undefined) delete o[k];
  return o;
}
