/**
 * The one evaluator adapter: how an episode (agent/episode.ts), the orchestrator's evaluation
 * stage and the one-episode commands grade a submitted patch. `harnessEvaluator` wraps
 * rewards/evaluate.ts `evaluatePatch` (a fresh sandbox from the instance image, the hidden tests,
 * SWE-bench semantics and the anti-forgery checks) and records the same report everywhere.
 */
import { evaluatePatch, type EvalResult } from "./evaluate";
import type { Evaluation } from "./outcome";
import type { Task } from "../tasks/schema";

/**
 * Hidden-test evaluation of a submitted patch. Must not throw for the patch's faults (outcomes
 * "fail", "patch_apply_failed", "forged"…); may throw for engine failures (recorded as "env_error").
 * `timeoutSeconds`: the test run's limit; `sandboxLifetimeSeconds`: the evaluation sandbox's.
 */
export type Evaluator = (
  task: Task,
  patch: string,
  opts: { timeoutSeconds: number; sandboxLifetimeSeconds: number; image?: string; signal?: AbortSignal },
) => Promise<Omit<Evaluation, "seconds">>;

/** The report recorded in a trajectory's evaluation (a summary of the EvalResult). */
export function evaluationReport(r: EvalResult): Record<string, unknown> {
  return {
    resolution: r.resolution,
    testsStatus: r.testsStatus,
    applyMethod: r.applyMethod,
    resetFiles: r.resetFiles,
    forgery: r.forgery,
    flags: r.flags,
    outputDroppedBytes: r.outputDroppedBytes,
    testSeconds: r.testSeconds,
    image: r.image,
  };
}

/** An EvalResult as the trajectory's evaluation. */
export function toEvaluation(r: EvalResult): Omit<Evaluation, "seconds"> {
  return { outcome: r.outcome, resolved: r.resolved, ...(r.reason ? { reason: r.reason } : {}), report: evaluationReport(r) };
}

/**
 * The SWE-bench-style harness as an Evaluator: a fresh sandbox from `image` (default the one the
 * episode ran, then the task's instance image), the patch, the hidden tests.
 */
export function harnessEvaluator(image?: string): Evaluator {
  return async (task, patch, opts) => {
    const img = image ?? opts.image;
    const r = await evaluatePatch(task, patch, { ...(img ? { image: img } : {}), timeoutSeconds: opts.timeoutSeconds });
    return toEvaluation(r);
  };
}

/** An Evaluator that records the evaluation as pending (left to a later stage). */
export const pendingEvaluator: Evaluator = async () => ({
  outcome: "fail",
  resolved: false,
  pending: true,
  reason: "evaluation pending (left to the evaluation stage)",
});
