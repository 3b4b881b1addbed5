/**
 * Human-readable rendering of turns and trajectories for the terminal (`forager run`, `show`).
 */
import type { Evaluation, Trajectory, Turn } from "./trajectory";

/** Cut a text to `maxLines` lines of at most `width` characters, saying how much was left out. */
export function clip(text: string, maxLines: number, width: number): string[] {
  const lines = text.split("\n");
  const out = lines.slice(0, maxLines).map((l) => (l.length > width ? l.slice(0, width - 1) + "…" : l));
  if (lines.length > maxLines) out.push(`… (${lines.length - maxLines} more lines)`);
  return out;
}

function oneLine(s: string, width: number): string {
  const flat = s.replace(/\s+/g, " ").trim();
  return flat.length > width ? flat.slice(0, width - 1) + "…" : flat;
}

/** One turn, compact: reasoning folded to a line, the action, the observation cut for the screen. */
export function formatTurn(turn: Turn, opts: { width?: number; maxLines?: number; full?: boolean } = {}): string {
  const width = opts.width ?? 120;
  const maxLines = opts.full ? Number.POSITIVE_INFINITY : (opts.maxLines ?? 12);
  const out: string[] = [];
  const secs = (turn.modelLatencyMs / 1000).toFixed(1);
  out.push(`── turn ${turn.index + 1} ── ${turn.completionTokens} tok generated, ${turn.usedTokens} tok used, model ${secs} s${turn.toolDurationMs !== undefined ? `, tool ${(turn.toolDurationMs / 1000).toFixed(2)} s` : ""}`);
  if (turn.reasoning !== undefined && turn.reasoning.trim() !== "") {
    if (opts.full) out.push("  think:", ...turn.reasoning.trimEnd().split("\n").map((l) => `    ${l}`));
    else out.push(`  think: ${oneLine(turn.reasoning, width - 9)} (${turn.reasoning.split("\n").length} lines)`);
  }
  if (turn.action) {
    const [first, ...rest] = turn.action.argument.split("\n");
    out.push(`  ▶ ${turn.action.tool}: ${first ?? ""}${rest.length && !opts.full ? `  (+${rest.length} lines)` : ""}`);
    if (opts.full) for (const l of rest) out.push(`      ${l}`);
  } else if (turn.finalAnswer) {
    const answer = turn.text.includes("</think>") ? turn.text.slice(turn.text.indexOf("</think>") + 8) : turn.text;
    out.push("  ✓ final answer:", ...clip(answer.trim(), maxLines, width - 4).map((l) => `    ${l}`));
  } else if (!turn.formatError) {
    out.push(`  (no action: ${oneLine(turn.text, width - 14)})`);
  }
  if (turn.formatError) out.push(`  ✗ ${turn.formatError.type}: ${oneLine(turn.formatError.message, width - 6)}`);
  if (turn.observationRole === "tool" && turn.toolOutput !== undefined) {
    const mark = turn.toolSuccess === false ? `◀ (${turn.errorType ?? "error"})` : "◀";
    const body = turn.toolOutput === "" ? ["(no output)"] : clip(turn.toolOutput, maxLines, width - 4);
    out.push(`  ${mark}`, ...body.map((l) => `    ${l}`));
    if (turn.remainingTurns !== undefined) out.push(`  budget: ${turn.remainingTurns} turns, ${turn.remainingTokens} tokens${turn.observationTruncated ? " (result cut)" : ""}`);
  }
  return out.join("\n");
}

/**
 * The reward scale beside a reward, from the trajectory's `rewardParts` (rewards/reward.ts: mode,
 * scale, threshold; absent → CWM's execution reward with scale 1): `scale: 0 resolved, −1 not
 * resolved, −1.5 forged` — so "reward 0" reads as the success it is on CWM's −1 … −1 + scale range.
 */
export function rewardScale(parts?: Record<string, unknown>): string {
  const n = (x: number) => String(Math.round(x * 1000) / 1000).replace("-", "−");
  const forged = typeof parts?.forgedReward === "number" ? parts.forgedReward : -1.5;
  if (parts?.mode === "pass_only") return `scale: 1 resolved, −1 not resolved, ${n(forged)} forged`;
  const scale = typeof parts?.scale === "number" ? parts.scale : 1;
  const thr = typeof parts?.threshold === "number" ? parts.threshold : undefined;
  return `scale: ${n(-1 + scale)} resolved${thr !== undefined ? `, ${n(-1 + thr * scale)} similar patch (≥ ${thr})` : ""}, −1 not resolved, ${n(forged)} forged`;
}

export function formatEvaluation(ev: Evaluation | undefined, reward: number, parts?: Record<string, unknown>): string {
  const r = `reward ${reward} (${rewardScale(parts)})`;
  if (!ev) return `evaluation: none (no submitted patch evaluated) · ${r}`;
  return `evaluation: ${ev.outcome}${ev.resolved ? " (resolved)" : ""}${ev.reason ? ` — ${ev.reason}` : ""}${ev.seconds !== undefined ? ` [${ev.seconds.toFixed(1)} s]` : ""} · ${r}`;
}

/** Summary line block of a finished trajectory. */
export function formatSummary(t: Trajectory): string {
  return [
    `end: ${t.endReason}${t.endDetail ? ` (${t.endDetail})` : ""}`,
    `turns: ${t.turns.length} · tokens used: ${t.usedTokens} · env retries: ${t.envRetries} · wall ${t.times.totalSeconds.toFixed(1)} s (model ${t.times.modelSeconds.toFixed(1)} s, tools ${t.times.toolSeconds.toFixed(1)} s, eval ${t.times.evalSeconds.toFixed(1)} s)`,
    `submitted patch: ${t.submittedPatch ? `${t.submittedPatch.split("\n").length} lines` : "none"}`,
    t.endReason === "env_error" || t.endReason === "policy_error"
      ? `evaluation: none · no reward: ${t.endReason} is an infrastructure failure (${t.endReason === "policy_error" ? "the model server" : "the engine or the sandbox"}), not the model's; counted apart from rewards and pass@k`
      : formatEvaluation(t.evaluation, t.reward, { ...t.rewardParts, forgedReward: (t.config.reward as { forgedReward?: unknown } | undefined)?.forgedReward }),
  ].join("\n");
}

/** The whole trajectory, readable. `full` shows every line of prompts and observations. */
export function formatTrajectory(t: Trajectory, opts: { full?: boolean; width?: number } = {}): string {
  const width = opts.width ?? 120;
  const out: string[] = [
    `trajectory ${t.id}`,
    `task ${t.taskId} (${t.taskKind}) · image ${t.image}`,
    `policy ${t.policy.kind}${t.policy.model ? ` · model ${t.policy.model}` : ""}${t.policy.weightsVersion ? ` · weights ${t.policy.weightsVersion}` : ""}`,
    `sampling: temperature ${t.sampling.temperature}, top_p ${t.sampling.topP}, max tokens ${t.sampling.maxTokens} · started ${t.times.startedAt}`,
    "",
    "── issue prompt ──",
    ...(opts.full ? t.prompt.user.split("\n") : clip(t.prompt.user, 12, width)),
    "",
  ];
  for (const turn of t.turns) out.push(formatTurn(turn, { width, full: opts.full, maxLines: 20 }), "");
  out.push(formatSummary(t));
  if (t.submittedPatch && opts.full) out.push("", "── submitted patch ──", t.submittedPatch);
  return out.join("\n");
}
