/**
 * The OpenAPI 3.1 document of `forager serve` (GET /openapi.json), generated from the zod schemas
 * of serve/schema.ts with zod's own JSON Schema output (`z.toJSONSchema`; OpenAPI 3.1 schemas are
 * JSON Schema 2020-12). Each schema with a `meta({ id })` is a component; routes refer to them.
 */
import { z } from "zod";
import {
  EnvCreatedSchema,
  EnvCreateSchema,
  ErrorSchema,
  GroupItemSchema,
  GroupProgressSchema,
  ObservationSchema,
  RolloutCreatedSchema,
  RolloutEventSchema,
  RolloutGroupSchema,
  RolloutRequestSchema,
  StepRequestSchema,
  StepResultSchema,
  WeightsRequestSchema,
  WeightsStateSchema,
} from "./schema";
import { TokenRecordSchema } from "./tokens";

const COMPONENTS = {
  RolloutRequest: RolloutRequestSchema,
  RolloutCreated: RolloutCreatedSchema,
  RolloutGroup: RolloutGroupSchema,
  GroupProgress: GroupProgressSchema,
  GroupItem: GroupItemSchema,
  Observation: ObservationSchema,
  RolloutEvent: RolloutEventSchema,
  TokenRecord: TokenRecordSchema,
  EnvCreate: EnvCreateSchema,
  EnvCreated: EnvCreatedSchema,
  StepRequest: StepRequestSchema,
  StepResult: StepResultSchema,
  WeightsRequest: WeightsRequestSchema,
  WeightsState: WeightsStateSchema,
  Error: ErrorSchema,
} as const;
type Component = keyof typeof COMPONENTS;

const ref = (c: Component) => ({ $ref: `#/components/schemas/${c}` });
const json = (c: Component, description: string) => ({ description, content: { "application/json": { schema: ref(c) } } });
const body = (c: Component) => ({ required: true, content: { "application/json": { schema: ref(c) } } });
const err = (description: string) => json("Error", description);
const idParam = (what: string) => [{ name: "id", in: "path", required: true, schema: { type: "string" }, description: what }];

let cached: Record<string, unknown> | undefined;

/** The document (built once). */
export function openApiDocument(): Record<string, unknown> {
  if (cached) return cached;
  const registry = z.registry<{ id: string }>();
  for (const [id, s] of Object.entries(COMPONENTS)) registry.add(s as z.ZodType, { id });
  const { schemas } = z.toJSONSchema(registry, { uri: (id) => `#/components/schemas/${id}`, unrepresentable: "any", io: "input" });
  for (const s of Object.values(schemas)) {
    delete (s as Record<string, unknown>).$schema;
    delete (s as Record<string, unknown>).$id;
  }
  delete schemas.__shared;
  cached = {
    openapi: "3.1.0",
    info: {
      title: "forager serve",
      version: "1",
      description:
        "forager as the rollout engine of an RL trainer: whole-rollout GRPO groups, a gym-style step API, weights versions, token-exact records. Off loopback every route but /healthz needs `Authorization: Bearer TOKEN`.",
    },
    components: { schemas, securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    security: [{ bearer: [] }],
    paths: {
      "/v1/rollouts": {
        post: {
          summary: "Submit a group: every task × samples episodes with one policy",
          requestBody: body("RolloutRequest"),
          responses: { 201: json("RolloutCreated", "the group id"), 400: err("invalid request or unknown task") },
        },
      },
      "/v1/rollouts/{id}": {
        get: {
          summary: "Status; when done every trajectory with its reward and parts, grouped per task",
          parameters: [...idParam("group id"), { name: "partial", in: "query", schema: { type: "string", enum: ["1"] }, description: "show the trajectories so far while running" }],
          responses: { 200: json("RolloutGroup", "the group"), 404: err("unknown group") },
        },
      },
      "/v1/rollouts/{id}/events": {
        get: {
          summary: "Server-sent events: `progress`, `trajectory` (each as it completes), `done`; what happened before the call is replayed first",
          parameters: idParam("group id"),
          responses: { 200: { description: "text/event-stream; each `data:` is a RolloutEvent", content: { "text/event-stream": { schema: ref("RolloutEvent") } } }, 404: err("unknown group") },
        },
      },
      "/v1/rollouts/{id}/tokens": {
        get: {
          summary: "Token records of the group's trajectories: ids, logprobs, loss mask (JSONL; parquet with format=parquet)",
          parameters: [...idParam("group id"), { name: "format", in: "query", schema: { type: "string", enum: ["jsonl", "parquet"] } }],
          responses: {
            200: { description: "one TokenRecord per line", content: { "application/x-ndjson": { schema: ref("TokenRecord") }, "application/vnd.apache.parquet": {} } },
            404: err("unknown group"),
          },
        },
      },
      "/v1/envs": {
        post: {
          summary: "Step API: start an env (a sandbox for the task) and get the first observation",
          requestBody: body("EnvCreate"),
          responses: { 201: json("EnvCreated", "env id and first observation"), 400: err("invalid request"), 429: err("too many envs"), 502: err("the env could not start") },
        },
        get: { summary: "Ids of the envs alive", responses: { 200: { description: "{ envs: string[] }" } } },
      },
      "/v1/envs/{id}/step": {
        post: {
          summary: "One action; the next observation, or done with the reward from the hidden tests",
          parameters: idParam("env id"),
          requestBody: body("StepRequest"),
          responses: { 200: json("StepResult", "observation or final result"), 404: err("unknown, finished, removed or expired env"), 409: err("a step is running") },
        },
      },
      "/v1/envs/{id}": {
        delete: { summary: "Destroy the env (its episode ends, its sandbox is removed)", parameters: idParam("env id"), responses: { 200: { description: "{ deleted: true }" }, 404: err("unknown env") } },
      },
      "/v1/weights": {
        get: { summary: "The weights version and switch state", responses: { 200: json("WeightsState", "state") } },
        post: {
          summary: "Switch weights: pause new model requests, let in-flight ones finish, resume with the new version",
          requestBody: body("WeightsRequest"),
          responses: { 200: json("WeightsState", "state after the switch"), 400: err("invalid request") },
        },
      },
      "/metrics": { get: { summary: "Prometheus metrics (text format 0.0.4)", responses: { 200: { description: "text/plain" } } } },
      "/healthz": { get: { summary: "Liveness (no token needed)", security: [], responses: { 200: { description: "{ ok: true }" } } } },
      "/openapi.json": { get: { summary: "This document", responses: { 200: { description: "OpenAPI 3.1" } } } },
    },
  };
  return cached;
}
