/**
 * The outcome of one hidden-test evaluation: the one definition, used by rewards/evaluate.ts and
 * by the trajectory record (agent/trajectory.ts).
 *
 * - `pass`: resolved (every FAIL_TO_PASS and PASS_TO_PASS test passed);
 * - `fail`: graded and not resolved, or the submission's own fault before grading (empty or too
 *   large a patch, output or sizes it caused);
 * - `patch_apply_failed`: no apply command applied the patch, or it was refused (unsafe paths);
 * - `timeout`: the tests ran past the time limit;
 * - `forged`: the run's results were forged from inside the test process (canary evidence): not
 *   resolved, with a penalty reward (rewards/reward.ts `forgedReward`);
 * - `env_error`: forager's or the engine's own failure (never the submission's).
 */
import { z } from "zod";

export const EvalOutcomeSchema = z.enum(["pass", "fail", "patch_apply_failed", "timeout", "forged", "env_error"]);
export type EvalOutcome = z.infer<typeof EvalOutcomeSchema>;

/**
 * The evaluation of a trajectory's submitted patch, as recorded in the trajectory (what an
 * Evaluator returns, rewards/evaluator.ts). `pending`: not evaluated yet (the orchestrator's
 * rollout stage leaves the evaluation to its evaluation stage).
 */
export const EvaluationSchema = z.object({
  outcome: EvalOutcomeSchema,
  resolved: z.boolean(),
  reason: z.string().optional(),
  /** The evaluator's report (rewards/evaluate.ts: resolution, tests status, apply method, forgery evidence, flags). */
  report: z.unknown().optional(),
  /** Wall time of the evaluation, seconds. */
  seconds: z.number().nonnegative().optional(),
  /** Evaluation left to a later stage; outcome and resolved are placeholders until then. */
  pending: z.boolean().optional(),
});
export type Evaluation = z.infer<typeof EvaluationSchema>;
