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
