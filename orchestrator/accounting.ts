/**
 * Run accounting: the figures `forager status`, `summary.json`, `manifest.json` and `forager view`
 * show, computed in one place from what a run directory holds (the shards' index entries, the
 * failure records, the tasks).
 *
 * - pass@k over completed tasks: a task is done when each of its K samples has a trajectory or a
 *   failure record (or it reached its M successes, `--stop-after`); pass@k (Chen et al. 2021,
 *   metrics.ts) is the mean over done tasks that have at least one trajectory. Failed samples
 *   (`env_error`, `policy_error`: the engine's or the model server's) are infrastructure, not the
 *   model's: they are counted apart (records.ts countFailures) and enter neither rewards nor pass@k.
 * - tokens: prompt and completion tokens summed over the trajectories (each turn's server usage,
 *   else the local estimate), and per resolved trajectory (all tokens spent / resolved).
 * - end reasons: trajectories per `endReason` (agent/trajectory.ts EndReasonSchema).
 * - per repository: tasks, done, trajectories, resolved, failed samples, pass@1.
 */
import { z } from "zod";
import { countByTask, passAtKs } from "./metrics";

/** One repository's row (units: tasks, samples). */
export const RepoRowSchema = z.object({
  repo: z.string(),
  tasks: z.number().int().nonnegative(),
  tasksDone: z.number().int().nonnegative(),
  trajectories: z.number().int().nonnegative(),
  resolved: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  /** pass@1 over the repository's done tasks with a trajectory (absent when there is none). */
  pass1: z.number().min(0).max(1).optional(),
});
export type RepoRow = z.infer<typeof RepoRowSchema>;

/** The accounting of a run (`accounting` in manifest.json and summary.json). */
export const RunAccountingSchema = z.object({
  tasks: z.number().int().nonnegative(),
  /** Tasks whose every sample is settled (trajectory or failure) or that reached M successes. */
  tasksDone: z.number().int().nonnegative(),
  /** Done tasks with at least one trajectory: the tasks pass@k is the mean over. */
  tasksScored: z.number().int().nonnegative(),
  /** pass@1, pass@K over the scored tasks. */
  passAtK: z.record(z.string(), z.number()),
  tokens: z.object({
    prompt: z.number().nonnegative(),
    completion: z.number().nonnegative(),
    /** (prompt + completion) / resolved trajectories; absent with none resolved. */
    perResolved: z.number().nonnegative().optional(),
    /** Trajectories whose index line carried token figures (older lines do not). */
    counted: z.number().int().nonnegative(),
  }),
  endReasons: z.record(z.string(), z.number().int().nonnegative()),
  repos: z.array(RepoRowSchema),
});
export type RunAccounting = z.infer<typeof RunAccountingSchema>;

/** The inputs: trajectories as their index lines say, failures, tasks (id, repo), K and M. */
export interface AccountingInput {
  entries: ReadonlyArray<{ taskId: string; sample: number; resolved: boolean; endReason: string; model?: { promptTokens: number; completionTokens: number } }>;
  failures: ReadonlyArray<{ taskId: string; sample: number }>;
  tasks: ReadonlyArray<{ id: string; repo?: string }>;
  samples: number;
  stopAfterSuccesses?: number;
}

/** Compute the accounting (pure; see the module comment for each figure). */
export function runAccounting(i: AccountingInput): RunAccounting {
  const ks = [...new Set([1, i.samples])];
  const settled = new Map<string, Set<number>>();
  const mark = (taskId: string, sample: number) => {
    const s = settled.get(taskId) ?? new Set<number>();
    s.add(sample);
    settled.set(taskId, s);
  };
  for (const e of i.entries) mark(e.taskId, e.sample);
  for (const f of i.failures) mark(f.taskId, f.sample);
  const counts = new Map(countByTask(i.entries, i.tasks.map((t) => t.id)).map((c) => [c.taskId, c]));
  const isDone = (id: string) => {
    const c = counts.get(id);
    return (settled.get(id)?.size ?? 0) >= i.samples || (i.stopAfterSuccesses !== undefined && (c?.c ?? 0) >= i.stopAfterSuccesses);
  };
  const done = i.tasks.filter((t) => isDone(t.id));
  const scored = done.map((t) => counts.get(t.id)!).filter((c) => c.n > 0);
  let prompt = 0;
  let completion = 0;
  let counted = 0;
  const endReasons: Record<string, number> = {};
  for (const e of i.entries) {
    endReasons[e.endReason] = (endReasons[e.endReason] ?? 0) + 1;
    if (e.model) {
      prompt += e.model.promptTokens;
      completion += e.model.completionTokens;
      counted++;
    }
  }
  const resolved = i.entries.filter((e) => e.resolved).length;
  const failedBy = new Map<string, number>();
  for (const f of i.failures) failedBy.set(f.taskId, (failedBy.get(f.taskId) ?? 0) + 1);
  const byRepo = new Map<string, Array<{ id: string }>>();
  for (const t of i.tasks) byRepo.set(t.repo ?? "-", [...(byRepo.get(t.repo ?? "-") ?? []), t]);
  const repos: RepoRow[] = [...byRepo].sort(([a], [b]) => a.localeCompare(b)).map(([repo, ts]) => {
    const rowDone = ts.filter((t) => isDone(t.id));
    const rowScored = rowDone.map((t) => counts.get(t.id)!).filter((c) => c.n > 0);
    const row: RepoRow = {
      repo,
      tasks: ts.length,
      tasksDone: rowDone.length,
      trajectories: ts.reduce((s, t) => s + (counts.get(t.id)?.n ?? 0), 0),
      resolved: ts.reduce((s, t) => s + (counts.get(t.id)?.c ?? 0), 0),
      failed: ts.reduce((s, t) => s + (failedBy.get(t.id) ?? 0), 0),
    };
    if (rowScored.length) row.pass1 = passAtKs(rowScored, [1])["pass@1"];
    return row;
  });
  return {
    tasks: i.tasks.length,
    tasksDone: done.length,
    tasksScored: scored.length,
    passAtK: scored.length ? passAtKs(scored, ks) : {},
    tokens: { prompt, completion, ...(resolved ? { perResolved: (prompt + completion) / resolved } : {}), counted },
    endReasons,
    repos,
  };
}

const pct = (x: number | undefined) => (x === undefined ? "-" : `${(100 * x).toFixed(1)}%`);

/** `pass@1 50.0% · pass@4 75.0% over 6/16 tasks done` (pass@k "-" while no done task has a trajectory). */
export function formatPassAtK(a: RunAccounting, samples: number): string {
  const ks = [...new Set([1, samples])];
  return `${ks.map((k) => `pass@${k} ${pct(a.passAtK[`pass@${k}`])}`).join(" · ")} over ${a.tasksDone}/${a.tasks} tasks done${a.tasksScored < a.tasksDone ? ` (${a.tasksDone - a.tasksScored} with no trajectory, not scored)` : ""}`;
}

/** The accounting for people: tokens, end reasons, and the per-repository table (indented lines). */
export function formatAccounting(a: RunAccounting, indent = "  "): string[] {
  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  const lines = [
    `${indent}tokens: prompt ${n(a.tokens.prompt)} · completion ${n(a.tokens.completion)}${a.tokens.perResolved !== undefined ? ` · ${n(a.tokens.perResolved)} per resolved trajectory` : ""}`,
    `${indent}end reasons: ${Object.entries(a.endReasons).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v}`).join(", ") || "-"}`,
  ];
  if (a.repos.length) {
    const w = Math.max(10, ...a.repos.map((r) => r.repo.length));
    lines.push(`${indent}${"repository".padEnd(w)}  tasks  done  trajectories  resolved  failed  pass@1`);
    for (const r of a.repos) {
      lines.push(`${indent}${r.repo.padEnd(w)}  ${String(r.tasks).padStart(5)}  ${String(r.tasksDone).padStart(4)}  ${String(r.trajectories).padStart(12)}  ${String(r.resolved).padStart(8)}  ${String(r.failed).padStart(6)}  ${pct(r.pass1).padStart(6)}`);
    }
  }
  return lines;
}
