/**
 * Run metrics: pass@k with the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language
 * Models Trained on Code", §2.1, eq. 1): for a task with n samples of which c are correct,
 * pass@k = 1 − C(n−c, k) / C(n, k), computed as the numerically stable product
 * 1 − ∏_{i=n−c+1}^{n} (1 − k / i) (their Figure 3). The run's pass@k is the mean over tasks.
 *
 * And what the model paid: prefix-cache hit rate, prefill and decode tokens, model seconds, summed
 * from the trajectories' turns ({@link modelUsageOf}, {@link modelFigures}).
 */
import type { Trajectory } from "../agent/trajectory";
import type { ModelUsage } from "./records";

/** pass@k of one task; n samples, c resolved, 1 ≤ k. When n < k: 1 if c > 0 else 0 (too few samples to estimate). */
export function passAtK(n: number, c: number, k: number): number {
  if (!(k >= 1) || n < 0 || c < 0 || c > n) throw new RangeError(`pass@k needs 0 ≤ c ≤ n and k ≥ 1 (n=${n}, c=${c}, k=${k})`);
  if (n === 0) return 0;
  if (n < k) return c > 0 ? 1 : 0;
  if (n - c < k) return 1;
  let prod = 1;
  for (let i = n - c + 1; i <= n; i++) prod *= 1 - k / i;
  return 1 - prod;
}

/** Per-task sample counts. */
export interface TaskCounts {
  taskId: string;
  /** Samples with a trajectory. */
  n: number;
  /** Of which resolved. */
  c: number;
}

/** Mean pass@k over tasks (tasks with n = 0 count as 0); ks default [1, max n]. */
export function passAtKs(tasks: readonly TaskCounts[], ks: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of ks) {
    out[`pass@${k}`] = tasks.length ? tasks.reduce((s, t) => s + passAtK(t.n, t.c, k), 0) / tasks.length : 0;
  }
  return out;
}

/** Group (taskId, resolved) records into per-task counts; `allTasks` adds tasks with no sample. */
export function countByTask(records: Iterable<{ taskId: string; resolved: boolean }>, allTasks: Iterable<string> = []): TaskCounts[] {
  const m = new Map<string, TaskCounts>();
  for (const id of allTasks) m.set(id, { taskId: id, n: 0, c: 0 });
  for (const r of records) {
    const t = m.get(r.taskId) ?? { taskId: r.taskId, n: 0, c: 0 };
    t.n++;
    if (r.resolved) t.c++;
    m.set(r.taskId, t);
  }
  return [...m.values()];
}

/** Nothing yet. */
export function emptyModelUsage(): ModelUsage {
  return { turns: 0, promptTokens: 0, cacheReportedPromptTokens: 0, cachedPromptTokens: 0, completionTokens: 0, modelSeconds: 0, moves: 0 };
}

/** The model's work for one trajectory, from its turns (tokens) and `times.modelSeconds` (seconds). */
export function modelUsageOf(t: Pick<Trajectory, "turns" | "times">): ModelUsage {
  const u = emptyModelUsage();
  for (const turn of t.turns) {
    u.turns++;
    u.promptTokens += turn.promptTokens;
    u.completionTokens += turn.completionTokens;
    if (turn.cachedPromptTokens !== undefined) {
      u.cacheReportedPromptTokens += turn.promptTokens;
      u.cachedPromptTokens += turn.cachedPromptTokens;
    }
    if (turn.endpointMove) u.moves++;
  }
  u.modelSeconds = t.times.modelSeconds;
  return u;
}

/** `a + b`, field by field (a new record). */
export function addModelUsage(a: ModelUsage, b: ModelUsage): ModelUsage {
  return {
    turns: a.turns + b.turns,
    promptTokens: a.promptTokens + b.promptTokens,
    cacheReportedPromptTokens: a.cacheReportedPromptTokens + b.cacheReportedPromptTokens,
    cachedPromptTokens: a.cachedPromptTokens + b.cachedPromptTokens,
    completionTokens: a.completionTokens + b.completionTokens,
    modelSeconds: a.modelSeconds + b.modelSeconds,
    moves: a.moves + b.moves,
  };
}

/** A run's model figures, for summaries and the view (tokens, seconds). */
export interface ModelFigures extends ModelUsage {
  /** cachedPromptTokens / cacheReportedPromptTokens; undefined when no server reported cached tokens. */
  prefixCacheHitRate?: number;
  /** Prompt tokens prefilled: every prompt token not reported as cached (an upper bound where the server did not report). */
  prefillTokens: number;
  /** Completion tokens (decode). */
  decodeTokens: number;
}

/** Derived figures of a usage sum: hit rate, prefill and decode tokens. */
export function modelFigures(u: ModelUsage): ModelFigures {
  return {
    ...u,
    ...(u.cacheReportedPromptTokens > 0 ? { prefixCacheHitRate: u.cachedPromptTokens / u.cacheReportedPromptTokens } : {}),
    prefillTokens: u.promptTokens - u.cachedPromptTokens,
    decodeTokens: u.completionTokens,
  };
}

function tokens(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

/** One line for people: `prefix-cache hit rate 93.1% · prefill 1.20M tokens · decode 40.1k tokens · model 1234.5 s · 2 endpoint moves`. */
export function formatModelUsage(u: ModelUsage): string {
  const f = modelFigures(u);
  const hit =
    f.prefixCacheHitRate === undefined
      ? "prefix-cache hit rate not reported by the server (vLLM: --enable-prompt-tokens-details; SGLang: --enable-cache-report)"
      : `prefix-cache hit rate ${(100 * f.prefixCacheHitRate).toFixed(1)}%${f.cacheReportedPromptTokens < f.promptTokens ? ` (of the ${tokens(f.cacheReportedPromptTokens)} prompt tokens reported)` : ""}`;
  return `${hit} · prefill ${tokens(f.prefillTokens)} tokens · decode ${tokens(f.decodeTokens)} tokens · model ${f.modelSeconds.toFixed(1)} s · ${f.moves} endpoint move${f.moves === 1 ? "" : "s"}`;
}
