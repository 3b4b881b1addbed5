/**
 * The terminal reward of an agentic SWE episode, as pure functions.
 *
 * Sources: SWE-RL (Wei et al., 2025, arXiv:2502.18449) introduced the difflib patch-similarity
 * reward; the CWM release (facebookresearch/cwm, `cwm/rl/envs/envs/swerl_tool.py`,
 * `_similarities_reward` / `SimilaritiesRewardFn`) combines it with execution:
 *
 * - the patch passes the hidden tests → `−1 + scale`;
 * - otherwise, when a threshold `t` is set and the mean patch similarity `≥ t` → `−1 + t · scale`;
 * - otherwise → `−1`.
 *
 * "pass only" is the plain binary reward `2 · pass − 1` (∈ {−1, 1}).
 */
import { z } from "zod";

/**
 * Reward configuration.
 * - `mode`: `"execution"` (pass → −1 + scale, else −1; no threshold allowed),
 *   `"similarity_threshold"` (as execution, plus −1 + threshold·scale for a failing patch whose
 *   similarity reaches the threshold; `threshold` required), `"pass_only"` (2·pass − 1; scale unused).
 * - `scale`: positive, default 1 (CWM `similarities` = 1, `similarities_2` = 2).
 * - `threshold`: in [0, 1], a mean patch similarity.
 * - `forgedReward`: the reward of a forged run (default {@link DEFAULT_FORGED_REWARD} = −1.5,
 *   strictly below the failure reward −1, so a policy gains nothing by trying to forge; at most
 *   −1); no similarity credit is given to a forged run.
 */
export const RewardConfigSchema = z
  .object({
    mode: z.enum(["execution", "similarity_threshold", "pass_only"]),
    scale: z.number().positive().finite().default(1),
    threshold: z.number().min(0).max(1).optional(),
    /**
     * Reward of a forged run (rewards/outcome.ts `forged`: the run's results were tampered with
     * from inside the test process). Default {@link DEFAULT_FORGED_REWARD} (−1.5), below the
     * failure reward; a value above the failure reward (−1) would pay a policy for forging and
     * is refused.
     */
    forgedReward: z.number().finite().max(-1, "forgedReward above the failure reward (-1) would reward forging").optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.mode === "similarity_threshold" && c.threshold === undefined) {
      ctx.addIssue({ code: "custom", path: ["threshold"], message: 'mode "similarity_threshold" needs a threshold' });
    }
    if (c.mode !== "similarity_threshold" && c.threshold !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["threshold"],
        message: `a threshold has no effect in mode "${c.mode}"; use mode "similarity_threshold"`,
      });
    }
  });

/** The default reward of a forged run: half a point below the failure reward (−1). */
export const DEFAULT_FORGED_REWARD = -1.5;

/** A validated reward configuration (output of {@link RewardConfigSchema}). */
export type RewardConfig = z.output<typeof RewardConfigSchema>;
/** A reward configuration as written by a person (`scale` optional). */
export type RewardConfigInput = z.input<typeof RewardConfigSchema>;

/** What the reward is computed from. */
export interface RewardInput {
  /** Every FAIL_TO_PASS and PASS_TO_PASS test passed with the patch applied. */
  passed: boolean;
  /**
   * Mean patch similarity in [0, 1] (`patchSimilarity(...).similarity`). `undefined` when it was
   * not computed, or when neither patch has a file (CWM gives −1 there).
   */
  similarity?: number;
  /** The evaluation found the run forged (canary evidence): {@link RewardConfig.forgedReward}. */
  forged?: boolean;
}

/** The reward and how it was reached. */
export interface RewardResult {
  /** In [−1, −1 + scale] for execution modes, {−1, 1} for "pass_only"; `forgedReward` (≤ −1, default −1.5) for a forged run. */
  reward: number;
  parts: {
    mode: RewardConfig["mode"];
    passed: boolean;
    similarity: number | undefined;
    scale: number;
    threshold: number | undefined;
    /** Which case applied: the patch passed, its similarity reached the threshold, neither, or the run was forged. */
    branch: "pass" | "similarity" | "fail" | "forged";
  };
}

/**
 * The CWM / SWE-RL reward formula: `passed` → `−1 + scale`; else `threshold` defined and
 * `similarity ≥ threshold` → `−1 + threshold · scale`; else `−1`.
 * A missing or NaN similarity never reaches a threshold.
 */
export function swerlReward(passed: boolean, similarity: number | undefined, scale: number, threshold?: number): number {
  if (passed) return -1 + scale;
  if (threshold !== undefined && similarity !== undefined && similarity >= threshold) return -1 + threshold * scale;
  return -1;
}

/** The binary "pass only" reward `2 · pass − 1`. */
export function passOnlyReward(passed: boolean): number {
  return passed ? 1 : -1;
}

/**
 * The reward of one evaluated patch under `config` (validated with {@link RewardConfigSchema};
 * an invalid config throws a `ZodError`). Pure: no I/O.
 */
export function computeReward(input: RewardInput, config: RewardConfigInput | RewardConfig): RewardResult {
  const c = RewardConfigSchema.parse(config);
  const threshold = c.mode === "similarity_threshold" ? c.threshold : undefined;
  let reward: number;
  let branch: RewardResult["parts"]["branch"];
  if (input.forged) {
    return {
      reward: c.forgedReward ?? DEFAULT_FORGED_REWARD,
      parts: { mode: c.mode, passed: false, similarity: input.similarity, scale: c.scale, threshold, branch: "forged" },
    };
  }
  if (c.mode === "pass_only") {
    reward = passOnlyReward(input.passed);
    branch = input.passed ? "pass" : "fail";
  } else {
    reward = swerlReward(input.passed, input.similarity, c.scale, threshold);
    branch = input.passed
      ? "pass"
      : threshold !== undefined && input.similarity !== undefined && input.similarity >= threshold
        ? "similarity"
        : "fail";
  }
  return {
    reward,
    parts: { mode: c.mode, passed: input.passed, similarity: input.similarity, scale: c.scale, threshold, branch },
  };
}
