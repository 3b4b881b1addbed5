/**
 * Fakes for tests and benchmarks: trajectories without Docker or a model, and a rollout function
 * that makes them (optionally slowly, failing or resolving by rule). Real queues, Redis and
 * storage run around them.
 */
import { TRAJECTORY_SCHEMA_VERSION, type Trajectory, type Turn } from "../agent/trajectory";
import { TaskSchema, type Task } from "../tasks/schema";
import type { EvaluateFn, RolloutFn } from "./stages";

/** A small valid task (no image is ever built for it: pass `images` in the run spec or a fake ImageFn). */
export function fakeTask(id: string, extra: Partial<Task> = {}): Task {
  return TaskSchema.parse({
    id,
    kind: "issue-fix",
    repo: "example/fake",
    commit: "0123456789abcdef",
    image: { repo: "example/fake", commit: "0123456789abcdef", testCommand: "true", logParser: "pytest" },
    problemStatement: `fix ${id}`,
    failToPass: [],
    passToPass: [],
    referencePatch: `diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+${id}\n`,
    ...extra,
  });
}

/** A trajectory of `actions` (tool, argument) turns ending with a final answer. */
export function fakeTrajectory(task: Task, opts: { id?: string; actions?: Array<[string, string]>; resolved?: boolean; patch?: string } = {}): Trajectory {
  const actions = opts.actions ?? [
    ["bash", "ls"],
    ["edit", "calc.py"],
    ["submit", "fix.patch"],
  ];
  const turns: Turn[] = actions.map(([tool, argument], index) => ({
    index,
    promptTokens: 100 + index,
    text: `</think>\n<tool: ${tool}>\n${argument}\n</tool>`,
    action: { tool, argument },
    toolName: tool,
    toolSuccess: true,
    observation: "ok",
    observationRole: "tool",
    completionTokens: 10,
    usedTokens: 120 + index * 20,
    modelLatencyMs: 1,
  }));
  turns.push({ index: turns.length, promptTokens: 200, text: "</think>\n## Summary", finalAnswer: true, completionTokens: 5, usedTokens: 300, modelLatencyMs: 1 });
  const resolved = opts.resolved ?? false;
  return {
    schemaVersion: TRAJECTORY_SCHEMA_VERSION,
    id: opts.id ?? `fake/${task.id}`,
    taskId: task.id,
    taskKind: task.kind,
    image: "fake:latest",
    policy: { kind: "fake" },
    sampling: { temperature: 1, topP: 0.95, maxTokens: 1024 },
    config: {},
    prompt: { system: "system", user: task.problemStatement, assistantPrefix: "<think>\n" },
    turns,
    submittedPatch: opts.patch ?? task.referencePatch,
    evaluation: { outcome: resolved ? "pass" : "fail", resolved },
    reward: resolved ? 0 : -1,
    endReason: "final_answer",
    usedTokens: 300,
    times: { startedAt: new Date(0).toISOString(), totalSeconds: 0, sandboxStartSeconds: 0, modelSeconds: 0, toolSeconds: 0, evalSeconds: 0 },
    envRetries: 0,
    envErrors: [],
  };
}

export interface FakeRolloutOptions {
  /** Wall time of one episode, ms (default 0). */
  delayMs?: number;
  /** Turns reported through ctx.onTurn (default 4). */
  turns?: number;
  /** Whether a sample is resolved (default: sample index even). */
  resolved?: (task: Task, sample: number) => boolean;
  /** Throw on these (task, sample, attempt) (default never). */
  fail?: (task: Task, sample: number, attempt: number) => Error | undefined;
  /** Called when an episode starts (tests count calls). */
  onStart?: (task: Task, sample: number) => void;
}

/** A RolloutFn that returns {@link fakeTrajectory} after `delayMs`, spread over `turns` turns. */
export function fakeRollout(o: FakeRolloutOptions = {}): RolloutFn {
  return async (task, sample, ctx) => {
    o.onStart?.(task, sample);
    const turns = o.turns ?? 4;
    for (let i = 0; i < turns; i++) {
      if (o.delayMs) await new Promise((r) => setTimeout(r, o.delayMs! / turns));
      ctx.signal.throwIfAborted();
      ctx.onTurn();
    }
    const err = o.fail?.(task, sample, ctx.attempt);
    if (err) throw err;
    const resolved = (o.resolved ?? ((_t, s) => s % 2 === 0))(task, sample);
    return fakeTrajectory(task, { id: ctx.trajectoryId, resolved, actions: [["bash", `echo ${sample % 2}`], ["submit", "fix.patch"]] });
  };
}

/** An EvaluateFn that keeps the rollout's evaluation. */
export const keepEvaluation: EvaluateFn = async (_task, t) => t;
