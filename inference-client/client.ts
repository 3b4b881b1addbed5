/**
 * HTTP client for OpenAI-compatible inference servers (vLLM, SGLang, Meta's CWM server).
 *
 * - One undici `Pool` per endpoint (keep-alive connections, at most `maxConcurrency` of them).
 * - A client-wide FIFO queue: a call waits until some endpoint has a free slot (per-endpoint
 *   `maxConcurrency`). A call with an `affinity` (an episode's session; routing policy "affinity",
 *   the default) goes to its session's endpoint while that endpoint is healthy, free and within the
 *   load bound, else it moves (inference-client/routing.ts; the move is returned and logged). Other
 *   calls go to the free endpoint with the fewest outstanding requests (relative to its limit; ties
 *   rotate round-robin; an endpoint that just failed is avoided).
 * - Retries with exponential backoff and full jitter on connection errors, HTTP 429 and 5xx (a
 *   `Retry-After` header replaces the computed delay); never on other 4xx or malformed responses.
 *   Each retry picks an endpoint again, so a dead server is routed around when there are several.
 * - One deadline per call (AbortSignal) covering queueing, every attempt and every backoff.
 * - What the server reports is returned: prompt, cached prompt (`usage.prompt_tokens_details.cached_tokens`:
 *   vLLM with `--enable-prompt-tokens-details`, SGLang with `--enable-cache-report`) and completion tokens;
 *   with `stream: true`, the time to first token (SSE, `stream_options.include_usage`).
 * - Failures are thrown as {@link InferenceError}.
 */
import pino, { type Logger } from "pino";
import { Pool } from "undici";
import { z } from "zod";
import { InferenceConfigSchema, type Endpoint, type InferenceConfig, type InferenceConfigInput } from "./config";
import { AffinityRouter, type Affinity, type EndpointCondition, type MoveReason } from "./routing";

export type { Affinity, MoveReason } from "./routing";

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
  /**
   * The session this request belongs to (an episode, a serve env) and its group (the K samples of a
   * task): routed to the session's endpoint while it has room (routing policy "affinity"; ignored under
   * "least-outstanding"). See inference-client/routing.ts.
   */
  affinity?: Affinity;
  /**
   * Ask the server to stream (SSE, with `stream_options: {include_usage: true}`) so the time to first
   * token is measured ({@link ResultMeta.ttftMs}); the result is otherwise the same as without.
   */
  stream?: boolean;
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
  /**
   * Prompt tokens the server served from its prefix cache (not prefilled again), when it reports them:
   * OpenAI's `usage.prompt_tokens_details.cached_tokens`, filled by vLLM with
   * `--enable-prompt-tokens-details` and by SGLang with `--enable-cache-report`. Absent otherwise.
   */
  cachedPromptTokens?: number;
}

/** The session of a call left its endpoint (routing policy "affinity"). */
export interface EndpointMove {
  /** Base URL of the session's endpoint before this call. */
  from: string;
  /** Base URL of the endpoint that answered. */
  to: string;
  /** "failing" (a connection error or 5xx) or "saturated" (429, 503 with Retry-After, or the client's concurrency limit for it full). */
  reason: MoveReason;
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
  /** Streaming calls: ms from sending the successful attempt to its first generated token (TTFT). */
  ttftMs?: number;
  /** Set when this call moved its session (`affinity`) to another endpoint. */
  move?: EndpointMove;
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
  /** Sum of the server-reported cached prompt tokens (prefix-cache hits) of the calls completed here. */
  cachedPromptTokens: number;
  /** Sum of the prompt tokens of the calls completed here whose server reported cached tokens. */
  cacheReportedPromptTokens: number;
  /** Live affinity sessions homed here (routing policy "affinity"). */
  sessions: number;
  /** Failing (connection error, 5xx) or saturated (429) now, for routing. */
  unhealthy?: "failing" | "saturated";
}

/** Snapshot returned by {@link InferenceClient.stats}. */
export interface ClientStats {
  /** Calls waiting for a free slot on any endpoint. */
  queued: number;
  endpoints: EndpointStats[];
  /** Live affinity sessions over all endpoints. */
  sessions: number;
  /** Sessions moved to another endpoint so far, by reason. */
  moves: Record<MoveReason, number>;
  /** The largest (sessions on an endpoint / its load bound) right after a placement; ≤ 1 unless a placement had to fall back. */
  peakPlacementRatio: number;
}

/** Options of the {@link InferenceClient} constructor. */
export interface InferenceClientOptions {
  /** Logger (a child with `component: "inference-client"` is used); silent by default. */
  logger?: Logger;
  /** Source of randomness for the backoff jitter, in [0, 1) (tests make it deterministic). */
  random?: () => number;
  /**
   * A slot outside this process to hold while an attempt runs on an endpoint (the orchestrator's
   * global Redis semaphore per endpoint): called with the endpoint's normalized base URL and its index
   * in the configuration once the endpoint is chosen, it may wait; the function
   * it resolves to is called when the attempt ends. Rejecting (e.g. with the signal's reason) fails the call.
   */
  endpointSlot?: (endpoint: { url: string; index: number }, signal: AbortSignal) => Promise<() => void | Promise<void>>;
  /** Clock in ms for routing windows and session idleness (default performance.now; tests inject one). */
  now?: () => number;
}

// ---------------------------------------------------------------------------------------------------
// Response shapes (loose: servers add fields)
// ---------------------------------------------------------------------------------------------------

const UsageWire = z
  .looseObject({
    prompt_tokens: z.number().nullish(),
    completion_tokens: z.number().nullish(),
    prompt_tokens_details: z.looseObject({ cached_tokens: z.number().nullish() }).nullish(),
  })
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
  cachedPromptTokens: number;
  cacheReportedPromptTokens: number;
  /** Until this time (performance.now() ms) the endpoint is avoided when others are free. */
  coolUntil: number;
  /** Until this time (the client's clock, ms) the endpoint counts as {@link unhealthyKind} for routing. */
  unhealthyUntil: number;
  unhealthyKind?: "failing" | "saturated";
  /** GET /v1/models in progress or done (cleared on failure). */
  modelInfo?: Promise<ModelInfo>;
  identity?: Promise<ModelIdentity>;
}

interface Waiter {
  pinned?: EndpointState;
  avoid?: EndpointState;
  affinity?: Affinity;
  resolve: (got: Acquired) => void;
  reject: (err: unknown) => void;
}

/** A slot taken on an endpoint, and the session move it made (affinity routing). */
interface Acquired {
  ep: EndpointState;
  moved?: { from: EndpointState; reason: MoveReason };
}

interface Operation<T> {
  /** e.g. "POST /v1/completions" (for messages and logs). */
  name: string;
  /** Run on this endpoint only. */
  pinned?: EndpointState;
  /** Take a concurrency slot (false for cheap metadata calls). */
  limited: boolean;
  /** The call's session (affinity routing). */
  affinity?: Affinity;
  /** Overrides config.retries. */
  retries?: number;
  /** One attempt on one endpoint. Throws AttemptFailure (or anything, treated as a connection error). */
  exec: (ep: EndpointState, signal: AbortSignal, timing: AttemptTiming) => Promise<T>;
  /** Token usage of a result, for stats. */
  usage?: (value: T) => Usage;
}

interface RunResult<T> {
  value: T;
  ep: EndpointState;
  attempts: number;
  latencyMs: number;
  ttftMs?: number;
  move?: EndpointMove;
}

/** Filled by a streaming attempt: when its request was sent and its first token came (performance.now ms). */
interface AttemptTiming {
  sentAt: number;
  firstTokenAt?: number;
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
  const cached = u?.prompt_tokens_details?.cached_tokens;
  return {
    promptTokens: u?.prompt_tokens ?? 0,
    completionTokens: u?.completion_tokens ?? fallbackCompletion ?? 0,
    ...(typeof cached === "number" ? { cachedPromptTokens: cached } : {}),
  };
}

/** Request fields for streaming or not (usage in the last streamed chunk: OpenAI `stream_options`). */
function streamFields(stream: boolean | undefined): Record<string, unknown> {
  return stream ? { stream: true, stream_options: { include_usage: true } } : { stream: false };
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
// Streaming (server-sent events, OpenAI's stream format as vLLM and SGLang send it)
// ---------------------------------------------------------------------------------------------------

/** The JSON payload of each `data:` event of an SSE body, until `data: [DONE]` or the end. */
async function* sseEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<unknown> {
  const decoder = new TextDecoder();
  let buf = "";
  const parse = function* (block: string): Generator<unknown | typeof DONE> {
    const data = block
      .split(/\r?\n/)
      .filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).replace(/^ /, ""))
      .join("\n");
    if (data === "") return;
    if (data.trim() === "[DONE]") {
      yield DONE;
      return;
    }
    try {
      yield JSON.parse(data) as unknown;
    } catch (e) {
      throw new AttemptFailure("protocol", "a streamed event is not JSON", false, undefined, truncateBody(data), undefined, e);
    }
  };
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let m: RegExpExecArray | null;
    while ((m = /\r?\n\r?\n/.exec(buf))) {
      const block = buf.slice(0, m.index);
      buf = buf.slice(m.index + m[0].length);
      for (const ev of parse(block)) {
        if (ev === DONE) return;
        yield ev;
      }
    }
  }
  buf += decoder.decode();
  for (const ev of parse(buf)) {
    if (ev === DONE) return;
    yield ev;
  }
}
const DONE = Symbol("done");

type Json = Record<string, any>;

/** Does a streamed chunk carry a generated token (text, token ids, reasoning or a tool call)? */
function carriesToken(chunk: unknown): boolean {
  const choices = (chunk as Json | null)?.choices;
  if (!Array.isArray(choices)) return false;
  return choices.some((c: Json) => {
    const d = (c?.delta ?? {}) as Json;
    return (
      (typeof c?.text === "string" && c.text !== "") ||
      (Array.isArray(c?.token_ids) && c.token_ids.length > 0) ||
      (typeof d.content === "string" && d.content !== "") ||
      (typeof d.reasoning_content === "string" && d.reasoning_content !== "") ||
      (typeof d.reasoning === "string" && d.reasoning !== "") ||
      (Array.isArray(d.tool_calls) && d.tool_calls.length > 0)
    );
  });
}

/** The streamed chunks of a completion put together in the non-streamed response shape (first choice). */
function assembleCompletion(chunks: readonly unknown[]): Json {
  let model: string | undefined;
  let usage: unknown;
  const choice: Json = { text: "" };
  const tokens: string[] = [];
  const lps: Array<number | null> = [];
  let ids: number[] | undefined;
  for (const raw of chunks) {
    const c = raw as Json;
    if (typeof c?.model === "string") model = c.model;
    if (c?.usage) usage = c.usage;
    for (const ch of (Array.isArray(c?.choices) ? c.choices : []) as Json[]) {
      if ((ch.index ?? 0) !== 0) continue;
      if (typeof ch.text === "string") choice.text += ch.text;
      if (Array.isArray(ch.token_ids)) ids = [...(ids ?? []), ...(ch.token_ids as number[])];
      if (Array.isArray(ch.prompt_token_ids)) choice.prompt_token_ids = ch.prompt_token_ids;
      if (ch.finish_reason != null) choice.finish_reason = ch.finish_reason;
      if (ch.stop_reason != null) choice.stop_reason = ch.stop_reason;
      const lp = ch.logprobs as Json | null | undefined;
      if (lp && Array.isArray(lp.tokens)) {
        tokens.push(...(lp.tokens as string[]));
        lps.push(...((lp.token_logprobs ?? []) as Array<number | null>));
      }
    }
  }
  if (ids) choice.token_ids = ids;
  if (tokens.length) choice.logprobs = { tokens, token_logprobs: lps };
  return { model, choices: [choice], usage };
}

/** The streamed chunks of a chat completion put together in the non-streamed response shape (first choice). */
function assembleChat(chunks: readonly unknown[]): Json {
  let model: string | undefined;
  let usage: unknown;
  const message: Json = { content: null };
  const choice: Json = { message };
  const calls: Json[] = [];
  for (const raw of chunks) {
    const c = raw as Json;
    if (typeof c?.model === "string") model = c.model;
    if (c?.usage) usage = c.usage;
    for (const ch of (Array.isArray(c?.choices) ? c.choices : []) as Json[]) {
      if ((ch.index ?? 0) !== 0) continue;
      const d = (ch.delta ?? {}) as Json;
      if (typeof d.content === "string") message.content = (message.content ?? "") + d.content;
      for (const k of ["reasoning_content", "reasoning"]) if (typeof d[k] === "string") message[k] = (message[k] ?? "") + d[k];
      for (const tc of (Array.isArray(d.tool_calls) ? d.tool_calls : []) as Json[]) {
        const i = typeof tc.index === "number" ? tc.index : calls.length;
        const call = (calls[i] ??= { function: { name: "", arguments: "" } });
        if (typeof tc.id === "string") call.id = tc.id;
        if (typeof tc.function?.name === "string") call.function.name += tc.function.name;
        if (typeof tc.function?.arguments === "string") call.function.arguments += tc.function.arguments;
      }
      if (ch.finish_reason != null) choice.finish_reason = ch.finish_reason;
      if (ch.stop_reason != null) choice.stop_reason = ch.stop_reason;
    }
  }
  if (calls.length) message.tool_calls = calls.filter(Boolean);
  return { model, choices: [choice], usage };
}

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
  private readonly router?: AffinityRouter;
  private readonly now: () => number;
  private readonly endpointSlot?: InferenceClientOptions["endpointSlot"];
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
    this.now = options.now ?? (() => performance.now());
    this.endpointSlot = options.endpointSlot;
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
        cachedPromptTokens: 0,
        cacheReportedPromptTokens: 0,
        coolUntil: 0,
        unhealthyUntil: 0,
      };
    });
    const routing = this.config.routing;
    if (routing.policy === "affinity") {
      this.router = new AffinityRouter(
        this.endpoints.map((e) => e.url),
        this.endpoints.map((e) => e.config.maxConcurrency),
        { loadFactor: routing.loadFactor, sessionFloor: routing.sessionFloor, sessionIdleMs: routing.sessionIdleSeconds * 1000, now: this.now },
      );
    }
  }

  /**
   * The session `key` is over (its episode ended): it stops counting toward its endpoint's load. Idle
   * sessions are forgotten anyway after `routing.sessionIdleSeconds`. No-op for an unknown key.
   */
  endSession(key: string): void {
    this.router?.end(key);
  }

  /** The endpoint (base URL) session `key` lives on now, if it is live. */
  sessionEndpoint(key: string): string | undefined {
    const i = this.router?.home(key);
    return i === undefined ? undefined : this.endpoints[i]!.url;
  }

  /**
   * Text completion: POST /v1/completions with `n = 1`.
   * @throws {InferenceError} when every attempt failed, on a non-retryable error, or at the deadline.
   */
  async complete(req: CompletionRequest): Promise<CompletionResult> {
    const logprobs = req.returnTokenIds ? Math.max(0, req.logprobs ?? 0) : req.logprobs;
    const base: Record<string, unknown> = {
      prompt: req.prompt, // sent as it is (JSON.stringify copies nothing; a 131k-token prompt is not duplicated)
      n: 1,
      ...streamFields(req.stream),
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
      affinity: req.affinity,
      usage: (v) => v.usage,
      exec: async (ep, signal, timing) => {
        const model = await this.modelFor(ep, signal);
        const sse = req.stream ? { timing, assemble: assembleCompletion } : undefined;
        const json = await this.http(ep, "POST", "/v1/completions", { model, ...base }, signal, sse);
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
    return stripUndefined({ ...r.value, latencyMs: r.latencyMs, endpoint: r.ep.url, attempts: r.attempts, ttftMs: r.ttftMs, move: r.move });
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
      ...streamFields(req.stream),
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
      affinity: req.affinity,
      usage: (v) => v.usage,
      exec: async (ep, signal, timing) => {
        const model = await this.modelFor(ep, signal);
        const sse = req.stream ? { timing, assemble: assembleChat } : undefined;
        const json = await this.http(ep, "POST", "/v1/chat/completions", { model, ...base }, signal, sse);
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
    return stripUndefined({ ...r.value, latencyMs: r.latencyMs, endpoint: r.ep.url, attempts: r.attempts, ttftMs: r.ttftMs, move: r.move });
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
    const sessions = this.router?.sessionCount ?? 0; // forgets idle sessions first
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
        cachedPromptTokens: ep.cachedPromptTokens,
        cacheReportedPromptTokens: ep.cacheReportedPromptTokens,
        sessions: this.router?.load[ep.index] ?? 0,
        ...(this.unhealthy(ep) ? { unhealthy: this.unhealthy(ep) } : {}),
      })),
      sessions,
      moves: { ...(this.router?.moves ?? { failing: 0, saturated: 0 }) },
      peakPlacementRatio: this.router?.peakPlacementRatio ?? 0,
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

  /**
   * One HTTP exchange. Returns the parsed JSON of a 2xx answer; throws AttemptFailure otherwise. With
   * `sse`, a `text/event-stream` answer is read event by event (the first token's time goes to
   * `sse.timing`) and returned put together by `sse.assemble`; a JSON answer is returned as it is.
   */
  private async http(
    ep: EndpointState,
    method: "GET" | "POST",
    path: string,
    body: unknown,
    signal: AbortSignal,
    sse?: { timing: AttemptTiming; assemble: (chunks: readonly unknown[]) => Json },
  ): Promise<unknown> {
    const headers: Record<string, string> = { accept: sse ? "text/event-stream, application/json" : "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (ep.config.apiKey) headers.authorization = `Bearer ${ep.config.apiKey}`;
    let statusCode: number;
    let resHeaders: Record<string, string | string[] | undefined>;
    let text: string | undefined;
    let streamed: unknown[] | undefined;
    try {
      if (sse) sse.timing.sentAt = performance.now();
      const res = await ep.pool.request({
        method,
        path: ep.basePath + path,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
      statusCode = res.statusCode;
      resHeaders = res.headers;
      const type = String(resHeaders["content-type"] ?? "");
      if (sse && statusCode >= 200 && statusCode < 300 && type.includes("text/event-stream")) {
        streamed = [];
        for await (const ev of sseEvents(res.body)) {
          if (sse.timing.firstTokenAt === undefined && carriesToken(ev)) sse.timing.firstTokenAt = performance.now();
          streamed.push(ev);
        }
      } else {
        text = await res.body.text();
      }
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      if (e instanceof AttemptFailure) throw e;
      throw new AttemptFailure("connection", `connection error (${describeError(e)})`, true, undefined, undefined, undefined, e);
    }
    if (streamed) return sse!.assemble(streamed);
    text ??= "";
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
    const affinity = this.router && !op.pinned ? op.affinity : undefined;

    this.active++;
    let attempts = 0;
    let lastEp: EndpointState | undefined;
    let lastFailure: AttemptFailure | undefined;
    /** The session's first move during this call (its endpoint before the call, and why it left). */
    let firstMove: Acquired["moved"];

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
          if (op.limited) {
            const got = await this.acquire(signal, op.pinned, lastFailure ? lastEp : undefined, affinity);
            ep = got.ep;
            if (got.moved) {
              firstMove ??= got.moved;
              this.log.info(
                { from: got.moved.from.url, to: ep.url, reason: got.moved.reason, session: affinity?.key, group: affinity?.group },
                "inference session moved to another endpoint",
              );
            }
          } else {
            ep = op.pinned ?? this.endpoints[0]!;
          }
        } catch (e) {
          throw giveUp(e);
        }
        attempts++;
        lastEp = ep;
        if (attempts > 1) ep.retries++;
        let failure: AttemptFailure;
        let releaseSlot: (() => void | Promise<void>) | undefined;
        const timing: AttemptTiming = { sentAt: performance.now() };
        try {
          if (op.limited && this.endpointSlot) releaseSlot = await this.endpointSlot({ url: ep.url, index: ep.index }, signal);
          const value = await op.exec(ep, signal, timing);
          const latencyMs = performance.now() - started;
          ep.completed++;
          ep.totalLatencyMs += latencyMs;
          ep.unhealthyUntil = 0;
          if (op.usage) {
            const u = op.usage(value);
            ep.promptTokens += u.promptTokens;
            ep.completionTokens += u.completionTokens;
            if (u.cachedPromptTokens !== undefined) {
              ep.cachedPromptTokens += u.cachedPromptTokens;
              ep.cacheReportedPromptTokens += u.promptTokens;
            }
          }
          const ttftMs = timing.firstTokenAt === undefined ? undefined : timing.firstTokenAt - timing.sentAt;
          this.log.debug({ endpoint: ep.url, op: op.name, attempts, latencyMs: Math.round(latencyMs) }, "inference call done");
          const move: EndpointMove | undefined =
            firstMove && firstMove.from !== ep ? { from: firstMove.from.url, to: ep.url, reason: firstMove.reason } : undefined;
          return { value, ep, attempts, latencyMs, ...(ttftMs !== undefined ? { ttftMs } : {}), ...(move ? { move } : {}) };
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
          if (releaseSlot) await Promise.resolve(releaseSlot()).catch(() => undefined);
          if (op.limited) this.release(ep);
        }

        if (!failure.retryable || attempts > maxRetries) throw giveUp(failure);
        const capMs = Math.min(this.config.backoffMaxSeconds * 1000, this.config.backoffBaseSeconds * 1000 * 2 ** (attempts - 1));
        const delayMs = failure.retryAfterMs ?? this.random() * capMs;
        this.markUnhealthy(ep, failure, delayMs);
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
   * After a retryable failure: 429 (or 503 with Retry-After) marks the endpoint saturated for
   * `max(saturatedSeconds, the retry delay)`; a connection error or another 5xx marks it failing for
   * `failingSeconds`. Sessions move away meanwhile; a success clears the mark.
   */
  private markUnhealthy(ep: EndpointState, failure: AttemptFailure, delayMs: number): void {
    const r = this.config.routing;
    const saturated = failure.status === 429 || (failure.status === 503 && failure.retryAfterMs !== undefined);
    const ms = saturated ? Math.max(r.saturatedSeconds * 1000, delayMs) : r.failingSeconds * 1000;
    const until = this.now() + ms;
    if (until > ep.unhealthyUntil || ep.unhealthyKind !== (saturated ? "saturated" : "failing")) {
      ep.unhealthyUntil = until;
      ep.unhealthyKind = saturated ? "saturated" : "failing";
    }
  }

  private unhealthy(ep: EndpointState): "failing" | "saturated" | undefined {
    return ep.unhealthyUntil > this.now() ? ep.unhealthyKind : undefined;
  }

  /**
   * The endpoint for a call, or undefined when none has a free slot. With an affinity (routing
   * "affinity"): {@link AffinityRouter.place}. Otherwise: not the endpoint to avoid, not cooling down
   * after a failure, lowest in-flight/maxConcurrency, round-robin.
   */
  private pick(pinned?: EndpointState, avoid?: EndpointState, affinity?: Affinity): Acquired | undefined {
    if (affinity && this.router && !pinned) {
      const conditions: EndpointCondition[] = this.endpoints.map((ep) => {
        const u = this.unhealthy(ep);
        return { free: ep.inFlight < ep.config.maxConcurrency, ...(u ? { unhealthy: u } : {}) };
      });
      const p = this.router.place(affinity, conditions);
      if (!p) return undefined;
      const ep = this.endpoints[p.endpoint]!;
      return p.moved ? { ep, moved: { from: this.endpoints[p.moved.from]!, reason: p.moved.reason } } : { ep };
    }
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
    return best ? { ep: best } : undefined;
  }

  /** Takes a slot (waiting in the FIFO queue when every eligible endpoint is full). */
  private acquire(signal: AbortSignal, pinned?: EndpointState, avoid?: EndpointState, affinity?: Affinity): Promise<Acquired> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.closed) return Promise.reject(new ClosedReason("client closed"));
    const got = this.pick(pinned, avoid, affinity);
    if (got) {
      got.ep.inFlight++;
      return Promise.resolve(got);
    }
    return new Promise<Acquired>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        pinned,
        avoid,
        affinity,
        resolve: (g) => {
          signal.removeEventListener("abort", onAbort);
          resolve(g);
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
      const got = this.pick(w.pinned, w.avoid, w.affinity);
      if (!got) {
        i++;
        continue;
      }
      this.waiters.splice(i, 1);
      got.ep.inFlight++;
      w.resolve(got);
    }
  }
}

/** Removes keys whose value is undefined (keeps results clean for JSON and deep equality). */
function stripUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] === undefined) delete o[k];
  return o;
}
