/**
 * Run metrics: pass@k with the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language
 * Models Trained on Code", §2.1, eq. 1): for a task with n samples of which c are correct,
 * pass@k = 1 − C(n−c, k) / C(n, k), computed as the numerically stable product
 * 1 − ∏_{i=n−c+1}^{n} (1 − k / i) (their Figure 3). The run's pass@k is the mean over tasks.
 */

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
