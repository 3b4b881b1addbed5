/**
 * The records of `forager serve`'s HTTP API: the one definition (zod). Request bodies are parsed
 * with these schemas; the OpenAPI document at /openapi.json is generated from them (openapi.ts).
 * Units are in the field names (seconds, ms, tokens).
 */
import { z } from "zod";
import { TaskSchema } from "../tasks/schema";
import { TrajectorySchema } from "../agent/trajectory";
import { RunEndpointSchema } from "../orchestrator/spec";

/** A task: the id of a task loaded by `--tasks`, or a whole Task record (tasks/schema.ts). */
export const TaskRefSchema = z.union([z.string().min(1).describe("id of a task loaded with --tasks"), TaskSchema]);

/** Who acts in the episodes of a rollout group. */
export const RolloutPolicySchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("oracle") }).describe("solves from the reference patch through the real tools (tests, baselines)"),
  z
    .object({
      kind: z.literal("http"),
      endpoints: z.array(RunEndpointSchema).min(1).describe("OpenAI-compatible servers (vLLM, SGLang, CWM's)"),
      mode: z.enum(["completions", "chat"]).optional().describe("completions (token-exact, default) or chat (no token ids)"),
    })
    .describe("a model behind OpenAI-compatible endpoints"),
]);

export const SamplingSchema = z.object({
  temperature: z.number().min(0).optional(),
  topP: z.number().gt(0).max(1).optional(),
  /** Base seed; sample i uses seed + i. */
  seed: z.number().int().optional(),
});

/** POST /v1/rollouts: a GRPO-style group, K samples of each task. */
export const RolloutRequestSchema = z
  .object({
    tasks: z.array(TaskRefSchema).min(1),
    samples: z.number().int().positive().max(1024).describe("samples (episodes) per task: the group size"),
    policy: RolloutPolicySchema,
    sampling: SamplingSchema.optional(),
    maxTurns: z.number().int().positive().optional(),
    /** Extra agent settings (agent/config.ts). */
    agent: z.record(z.string(), z.unknown()).optional(),
    /** Image tag per task id (skip the build). */
    images: z.record(z.string(), z.string()).optional(),
    weightsVersion: z.string().min(1).optional().describe("the trainer's current weights version; a new one switches the service to it first"),
  })
  .meta({ id: "RolloutRequest" });
export type RolloutRequest = z.infer<typeof RolloutRequestSchema>;

export const RolloutCreatedSchema = z.object({ id: z.string(), expected: z.number().int(), tasks: z.number().int() }).meta({ id: "RolloutCreated" });

/** Progress of a group (from the run's Redis bookkeeping). */
export const GroupProgressSchema = z
  .object({
    expected: z.number().int(),
    done: z.number().int(),
    failed: z.number().int(),
    skipped: z.number().int(),
    inFlight: z.number().int(),
    resolved: z.number().int(),
    turns: z.number().int(),
    dropped: z.number().int().describe("trajectories dropped as stale (staleness setting)"),
  })
  .meta({ id: "GroupProgress" });
export type GroupProgress = z.infer<typeof GroupProgressSchema>;

/** One trajectory of a group, with what a trainer needs next to the full record. */
export const GroupItemSchema = z
  .object({
    taskId: z.string(),
    sample: z.number().int(),
    reward: z.number(),
    rewardParts: z.record(z.string(), z.unknown()).optional(),
    resolved: z.boolean(),
    weightsVersions: z.array(z.string()),
    spansWeightsVersions: z.boolean(),
    stale: z.boolean().describe("older than the staleness setting allows (tagged, not dropped)"),
    trajectory: TrajectorySchema,
  })
  .meta({ id: "GroupItem" });
export type GroupItem = z.infer<typeof GroupItemSchema>;

/** A sample that failed for good (no trajectory: kept out of rewards), with its kind (`env_error`, `policy_error`, …) and the run's policy. */
export const FailureSchema = z.object({
  taskId: z.string(),
  sample: z.number().int(),
  stage: z.string(),
  kind: z.string().optional(),
  policy: z.string().optional(),
  reason: z.string(),
  attempts: z.number().int(),
});

export const RolloutGroupSchema = z
  .object({
    id: z.string(),
    status: z.enum(["running", "done", "cancelled"]),
    progress: GroupProgressSchema,
    /** Per task, every trajectory (present once done; `?partial=1` shows the ones so far). */
    groups: z.array(z.object({ taskId: z.string(), trajectories: z.array(GroupItemSchema) })),
    failures: z.array(FailureSchema),
    /** The failures counted by `stage/kind` (orchestrator/records.ts countFailures). */
    failureCounts: z.record(z.string(), z.number().int()).optional(),
  })
  .meta({ id: "RolloutGroup" });
export type RolloutGroup = z.infer<typeof RolloutGroupSchema>;

/** Server-sent events of GET /v1/rollouts/{id}/events (the `data:` JSON of each event type). */
export const RolloutEventSchema = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("progress"), progress: GroupProgressSchema }),
    z.object({ type: z.literal("trajectory"), item: GroupItemSchema }),
    z.object({ type: z.literal("done"), status: z.enum(["done", "cancelled"]), progress: GroupProgressSchema }),
  ])
  .meta({ id: "RolloutEvent" });
export type RolloutEvent = z.infer<typeof RolloutEventSchema>;

// --- step API -------------------------------------------------------------------------------------

/** POST /v1/envs. */
export const EnvCreateSchema = z
  .object({
    task: TaskRefSchema,
    /** Extra agent settings (agent/config.ts), e.g. maxTurns, think. Environment errors are not retried. */
    agent: z.record(z.string(), z.unknown()).optional(),
    image: z.string().optional().describe("image tag to run (default: the service's image for the task, else built)"),
  })
  .meta({ id: "EnvCreate" });
export type EnvCreate = z.infer<typeof EnvCreateSchema>;

/** What the policy sees next: the text appended to the token stream and its token ids. */
export const ObservationSchema = z
  .object({
    /** First observation: the whole rendered prompt; later: only what the environment appended after the action. */
    text: z.string(),
    /** Token ids of `text` (Llama-3 tokenizer): append them to prompt + action ids for the next prompt. */
    tokenIds: z.array(z.number().int()),
    turn: z.number().int().describe("0-based turn the next action will be"),
    usedTokens: z.number().int(),
    maxTokens: z.number().int().describe("most tokens the next action may have"),
  })
  .meta({ id: "Observation" });
export type Observation = z.infer<typeof ObservationSchema>;

export const EnvCreatedSchema = z.object({ envId: z.string(), observation: ObservationSchema, done: z.literal(false) }).meta({ id: "EnvCreated" });

/** POST /v1/envs/{id}/step: the action as text, or as token ids with their logprobs (decoded for the tools, kept as given in the record). */
export const StepRequestSchema = z
  .object({
    action: z.union([
      z.object({ text: z.string() }),
      z.object({ tokenIds: z.array(z.number().int()).min(1), logprobs: z.array(z.number()).optional(), text: z.string().optional() }),
    ]),
    weightsVersion: z.string().optional().describe("the weights that produced the action (default: the service's current version)"),
  })
  .meta({ id: "StepRequest" });
export type StepRequest = z.infer<typeof StepRequestSchema>;

export const StepResultSchema = z
  .object({
    done: z.boolean(),
    observation: ObservationSchema.optional(),
    /** The turn just taken: its tool, outcome and any format error. */
    turn: z.object({ index: z.number().int(), tool: z.string().optional(), toolSuccess: z.boolean().optional(), errorType: z.string().optional() }).optional(),
    /** Final step: the reward from the hidden tests in a fresh container, the end reason, the trajectory. */
    reward: z.number().optional(),
    resolved: z.boolean().optional(),
    endReason: z.string().optional(),
    trajectory: TrajectorySchema.optional(),
  })
  .meta({ id: "StepResult" });
export type StepResult = z.infer<typeof StepResultSchema>;

// --- weights ----------------------------------------------------------------------------------------

export const WeightsRequestSchema = z.object({ version: z.string().min(1) }).meta({ id: "WeightsRequest" });
export const WeightsStateSchema = z
  .object({
    version: z.string().optional(),
    history: z.array(z.string()),
    paused: z.boolean(),
    inFlight: z.number().int().describe("model requests in flight now"),
    drainedMs: z.number().optional().describe("POST: how long in-flight requests took to finish, ms"),
  })
  .meta({ id: "WeightsState" });

export const ErrorSchema = z.object({ error: z.string(), issues: z.array(z.string()).optional() }).meta({ id: "Error" });

/** A 400 body from a zod error. */
export function badRequest(err: z.ZodError): z.infer<typeof ErrorSchema> {
  return { error: "invalid request", issues: err.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`) };
}
