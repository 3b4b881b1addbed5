/**
 * Configuration of the inference client: the one definition (zod schemas); the TypeScript types are
 * inferred from them. Durations are in SECONDS here (the client converts to ms internally).
 */
import { z } from "zod";

/**
 * One OpenAI-compatible server (vLLM, SGLang, Meta's CWM server, ...).
 *
 * - `url`: base URL such as `http://127.0.0.1:8000` (a path prefix such as `http://host/llm` is kept);
 *   the client appends `/v1/...` itself. A trailing `/` or `/v1` is tolerated and stripped.
 * - `model`: the model name sent in each request; when absent, the first id of `GET /v1/models`.
 * - `apiKey`: sent as `Authorization: Bearer <apiKey>` when present.
 * - `maxConcurrency`: most requests in flight on this endpoint at once (default 64); more wait in a queue.
 * - `weightsVersion`: an identity for the served weights (for example a checkpoint step or hash) that the
 *   operator configures; recorded with trajectories, never sent to the server.
 */
export const EndpointSchema = z.object({
  url: z
    .string()
    .min(1)
    .refine((s) => {
      try {
        const u = new URL(s);
        return u.protocol === "http:" || u.protocol === "https:";
      } catch {
        return false;
      }
    }, "must be an absolute http(s) URL such as http://127.0.0.1:8000"),
  model: z.string().min(1).optional(),
  apiKey: z.string().min(1).optional(),
  maxConcurrency: z.number().int().positive().default(64),
  weightsVersion: z.string().min(1).optional(),
});

/**
 * How requests are spread over the endpoints (inference-client/routing.ts; the argument in
 * inference-client/README.md, "Routing"):
 *
 * - `policy`: "affinity" (default): a request carrying an `affinity` (an episode, a serve env) goes
 *   to its session's endpoint while that endpoint has room, sessions of one group (the K samples of
 *   a task) are placed together when the load allows, with bounded loads; requests without an
 *   affinity, and every request under "least-outstanding", go to the free endpoint with the fewest
 *   requests in flight relative to its limit.
 * - `loadFactor`: c > 1 of the bound `max(ceil(c · M · w_i / W), sessionFloor)` on the live sessions
 *   of endpoint i (M live sessions, weights w = maxConcurrency); default 1.25.
 * - `sessionFloor`: sessions an endpoint may always hold whatever the average, so a group of K ≤ floor
 *   samples lands together while the load is low (default 8).
 * - `sessionIdleSeconds`: a session without a request for this long no longer counts (default 600 s).
 * - `failingSeconds`: after a connection error or a 5xx, the endpoint counts as failing this long:
 *   its sessions move, new ones go elsewhere (default 10 s; a success ends it earlier).
 * - `saturatedSeconds`: after a 429 (or a 503 with Retry-After), the endpoint counts as saturated
 *   this long, or the Retry-After if longer (default 1 s).
 */
export const RoutingSchema = z.object({
  policy: z.enum(["affinity", "least-outstanding"]).default("affinity"),
  loadFactor: z.number().gt(1).default(1.25),
  sessionFloor: z.number().int().min(1).default(8),
  sessionIdleSeconds: z.number().positive().default(600),
  failingSeconds: z.number().nonnegative().default(10),
  saturatedSeconds: z.number().nonnegative().default(1),
});

/**
 * The whole client configuration.
 *
 * - `endpoints`: at least one; requests are spread over them by `routing`.
 * - `retries`: how many times a failed attempt is retried (so at most `retries + 1` attempts), default 5.
 *   Retried: connection errors, HTTP 429 and 5xx. Never retried: other 4xx, malformed responses.
 * - `backoffBaseSeconds` / `backoffMaxSeconds`: exponential backoff with full jitter, the n-th retry
 *   waits a uniform random time in `[0, min(max, base * 2^(n-1))]` seconds; a `Retry-After` header
 *   replaces that delay. Defaults 0.5 s and 30 s.
 * - `requestDeadlineSeconds`: wall-clock budget of one call, covering queueing, every attempt and every
 *   backoff (default 600 s).
 * - `connectTimeoutSeconds`: TCP/TLS connect timeout of one attempt (default 10 s).
 */
export const InferenceConfigSchema = z.object({
  endpoints: z.array(EndpointSchema).min(1),
  retries: z.number().int().min(0).default(5),
  backoffBaseSeconds: z.number().nonnegative().default(0.5),
  backoffMaxSeconds: z.number().nonnegative().default(30),
  requestDeadlineSeconds: z.number().positive().default(600),
  connectTimeoutSeconds: z.number().positive().default(10),
  routing: RoutingSchema.default({ policy: "affinity", loadFactor: 1.25, sessionFloor: 8, sessionIdleSeconds: 600, failingSeconds: 10, saturatedSeconds: 1 }),
});

/** An endpoint after parsing (defaults applied). */
export type Endpoint = z.infer<typeof EndpointSchema>;
/** An endpoint as written by a user (defaults optional). */
export type EndpointInput = z.input<typeof EndpointSchema>;
/** Routing settings after parsing (defaults applied). */
export type RoutingConfig = z.infer<typeof RoutingSchema>;
/** The client configuration after parsing (defaults applied). */
export type InferenceConfig = z.infer<typeof InferenceConfigSchema>;
/** The client configuration as written by a user (defaults optional). */
export type InferenceConfigInput = z.input<typeof InferenceConfigSchema>;

/**
 * Parses and validates a configuration, applying defaults.
 * @throws {z.ZodError} when the configuration is invalid.
 */
export function parseInferenceConfig(input: unknown): InferenceConfig {
  return InferenceConfigSchema.parse(input);
}
