/**
 * What `forager view` shows, read from disk with the project's own schemas and readers: a run
 * directory (orchestrator/spec.ts runPaths: run.json, tasks.jsonl, shards/, failures/, manifest.json,
 * summary.json) or a trajectory JSONL file (agent/trajectory.ts). Nothing here writes.
 *
 * Sources are re-read when their files change (a signature of sizes and modification times), so a
 * run in progress is seen as it grows; committed shard members never change, so per-episode rows
 * are cached by trajectory id.
 */
import fs from "node:fs";
import path from "node:path";
import { readTrajectories, TrajectorySchema, type Trajectory } from "../agent/trajectory";
import { addModelUsage, countByTask, emptyModelUsage, modelFigures, modelUsageOf, passAtKs, type ModelFigures } from "../orchestrator/metrics";
import type { ModelUsage } from "../orchestrator/records";
import { runAccounting, type RunAccounting } from "../orchestrator/accounting";
import { readFailures, readRunFiles, type Manifest } from "../orchestrator/run";
import { runPaths, type RunSpec } from "../orchestrator/spec";
import { readEntry, scanShards, type IndexEntry } from "../orchestrator/storage";
import type { RunSummary } from "../orchestrator/forage";
import type { SampleFailure } from "../orchestrator/records";
import { TestsStatusSchema, type TestsStatus } from "../rewards/grading";
import type { Task } from "../tasks/schema";
import { formatZodIssues } from "../lib/zod-util";

/** One episode as the run page lists it (units: seconds, tokens). */
export interface EpisodeRow {
  id: string;
  taskId: string;
  sample: number;
  resolved: boolean;
  reward: number;
  endReason: string;
  /** Evaluation outcome (pass, fail, patch_apply_failed, timeout, env_error) or "none". */
  outcome: string;
  turns: number;
  /** Context tokens used at the end. */
  usedTokens: number;
  /** Completion tokens summed over turns. */
  completionTokens: number;
  patch: boolean;
  /** Episode wall time, seconds. */
  episodeSeconds: number;
  /** Evaluation wall time, seconds (the evaluation's own figure, else the trajectory's). */
  evalSeconds: number;
  /** Task kind (issue-fix, mutate-fix). */
  taskKind: string;
  /** Mutate-fix: the task's mutation operator(s) (`metadata.operator`, taskgen/mutate/generate.ts). */
  operator?: string;
  /** What the model servers did for this episode (tokens, seconds; orchestrator/metrics.ts). */
  model: ModelUsage;
}

/** The overview of one source (run directory or trajectory file). */
export interface SourceOverview {
  /** Short id used in URLs. */
  id: string;
  kind: "run" | "file";
  path: string;
  runId?: string;
  spec?: RunSpec;
  /** Tasks of the run (file sources: distinct task ids seen). */
  tasks: number;
  samples?: number;
  /** tasks × K (run sources). */
  expected?: number;
  trajectories: number;
  resolved: number;
  /** pass@1, pass@K (orchestrator/metrics.ts, Chen et al. 2021): runs, over the done tasks with a trajectory (orchestrator/accounting.ts); files, over their tasks. */
  metrics: Record<string, number>;
  /** Runs: tasks done, tokens, end reasons, the per-repository table — the figures of `forager status` and summary.json (orchestrator/accounting.ts). */
  accounting?: RunAccounting;
  /** What the model servers did over the episodes: prefix-cache hit rate, prefill/decode tokens, model seconds. */
  model: ModelFigures;
  failures: Array<SampleFailure & { key: string }>;
  /** The run's manifest.json as written by `forage` / `status` (undefined while none is written). */
  manifest?: Manifest;
  /** The run's summary.json (written when `forage` or `resume` ends). */
  summary?: RunSummary;
  /** Bad lines of a trajectory file (1-based line, reason). */
  errors: Array<{ line: number; message: string }>;
  episodes: EpisodeRow[];
  /** Per task: samples with a trajectory and resolved ones. */
  perTask: Array<{ taskId: string; n: number; c: number }>;
  /** A run is complete when done + failed ≥ expected (skipped samples count as missing until then). */
  complete: boolean;
  /** Changes whenever the source's files change (for live updates). */
  signature: string;
}

/** The evaluation report parts the trajectory page renders. */
export interface TrajectoryView {
  trajectory: Trajectory;
  /** FAIL_TO_PASS / PASS_TO_PASS / … statuses when the report carries them (rewards/grading.ts). */
  testsStatus?: TestsStatus;
  /** The task, when the source knows it (run directories). */
  task?: Task;
}

function rowOf(t: Trajectory, sample: number): EpisodeRow {
  return {
    id: t.id,
    taskId: t.taskId,
    sample,
    resolved: t.evaluation?.resolved ?? false,
    reward: t.reward,
    endReason: t.endReason,
    outcome: t.evaluation?.outcome ?? "none",
    turns: t.turns.length,
    usedTokens: t.usedTokens,
    completionTokens: t.turns.reduce((s, x) => s + x.completionTokens, 0),
    patch: t.submittedPatch !== undefined && t.submittedPatch !== "",
    episodeSeconds: t.times.totalSeconds,
    evalSeconds: t.evaluation?.seconds ?? t.times.evalSeconds,
    taskKind: t.taskKind,
    model: modelUsageOf(t),
  };
}

/** The model figures of a list of episodes. */
function modelOf(rows: readonly EpisodeRow[]): ModelFigures {
  return modelFigures(rows.reduce((a, r) => addModelUsage(a, r.model), emptyModelUsage()));
}

function stat(p: string): string {
  try {
    const s = fs.statSync(p);
    return `${s.size}:${s.mtimeMs}`;
  } catch {
    return "-";
  }
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

/** Parse a stored trajectory with the schema; the error names the field and where it came from. */
function parseTrajectory(value: unknown, where: string): Trajectory {
  const r = TrajectorySchema.safeParse(value);
  if (!r.success) throw new Error(`${where}: ${formatZodIssues(r.error)}`);
  return r.data;
}

/** A source: a run directory or a trajectory JSONL file, re-read when its files change. */
export abstract class Source {
  readonly id: string;
  readonly path: string;
  abstract readonly kind: "run" | "file";
  protected cached?: SourceOverview;

  constructor(id: string, file: string) {
    this.id = id;
    this.path = path.resolve(file);
  }

  /** A cheap signature of the files (sizes, modification times). */
  abstract signature(): string;
  protected abstract build(signature: string): SourceOverview;
  /** One trajectory by id, or undefined. @throws Error when the stored record does not parse. */
  abstract trajectory(id: string): TrajectoryView | undefined;
  /** One task by id (run directories only). */
  abstract task(id: string): Task | undefined;

  /** The overview, rebuilt only when the signature changed. */
  overview(): SourceOverview {
    const sig = this.signature();
    if (!this.cached || this.cached.signature !== sig) this.cached = this.build(sig);
    return this.cached;
  }
}

function testsStatusOf(t: Trajectory): TestsStatus | undefined {
  const rep = t.evaluation?.report as { testsStatus?: unknown; tests_status?: unknown } | undefined;
  const r = TestsStatusSchema.safeParse(rep?.testsStatus ?? rep?.tests_status);
  return r.success ? r.data : undefined;
}

/** A run directory made by `forager forage` (orchestrator/). */
export class RunSource extends Source {
  readonly kind = "run" as const;
  private rows = new Map<string, EpisodeRow>();
  private files?: { sig: string; spec: RunSpec; tasks: Task[] };

  signature(): string {
    const p = runPaths(this.path);
    const parts = [stat(p.spec), stat(p.tasks), stat(p.manifest), stat(p.summary)];
    for (const dir of [p.shards, p.failures]) {
      let names: string[] = [];
      try {
        names = fs.readdirSync(dir).sort();
      } catch {
        /* not there yet */
      }
      parts.push(`${dir}:${names.length}`);
      for (const n of names) if (!n.endsWith(".jsonl.gz")) parts.push(`${n}=${stat(path.join(dir, n))}`);
    }
    return parts.join("|");
  }

  private runFiles(): { spec: RunSpec; tasks: Task[] } {
    const p = runPaths(this.path);
    const sig = stat(p.spec) + stat(p.tasks);
    if (!this.files || this.files.sig !== sig) this.files = { sig, ...readRunFiles(this.path) };
    return this.files;
  }

  protected build(signature: string): SourceOverview {
    const p = runPaths(this.path);
    const { spec, tasks } = this.runFiles();
    const scan = scanShards(p.shards);
    const operators = new Map(tasks.map((t) => [t.id, typeof t.metadata.operator === "string" ? t.metadata.operator : undefined]));
    const episodes: EpisodeRow[] = [];
    for (const e of scan.entries) {
      let row = this.rows.get(e.id);
      if (!row) {
        row = rowOf(parseTrajectory(readEntry(p.shards, e), `${p.shards}/${e.shard} @${e.offset}`), e.sample);
        this.rows.set(e.id, row);
      }
      episodes.push({ ...row, operator: operators.get(e.taskId) });
    }
    const committed = new Set(scan.entries.map((e) => `${e.taskId}\u0000${e.sample}`));
    const failures = readFailures(this.path).filter((f) => !committed.has(`${f.taskId}\u0000${f.sample}`));
    const perTask = countByTask(scan.entries, tasks.map((t) => t.id));
    const expected = tasks.length * spec.samples;
    const accounting = runAccounting({ entries: scan.entries, failures, tasks, samples: spec.samples, stopAfterSuccesses: spec.stopAfterSuccesses });
    return {
      id: this.id,
      kind: "run",
      path: this.path,
      runId: spec.runId,
      spec,
      tasks: tasks.length,
      samples: spec.samples,
      expected,
      trajectories: scan.entries.length,
      resolved: scan.entries.filter((e) => e.resolved).length,
      metrics: accounting.passAtK,
      accounting,
      model: modelOf(episodes),
      failures,
      manifest: readJson<Manifest>(p.manifest),
      summary: readJson<RunSummary>(p.summary),
      errors: [],
      episodes,
      perTask,
      complete: scan.entries.length + failures.length >= expected || fs.existsSync(p.summary),
      signature,
    };
  }

  private entry(id: string): IndexEntry | undefined {
    return scanShards(runPaths(this.path).shards).entries.find((e) => e.id === id);
  }

  trajectory(id: string): TrajectoryView | undefined {
    const e = this.entry(id);
    if (!e) return undefined;
    const shards = runPaths(this.path).shards;
    const trajectory = parseTrajectory(readEntry(shards, e), `${shards}/${e.shard} @${e.offset}`);
    return { trajectory, testsStatus: testsStatusOf(trajectory), task: this.task(trajectory.taskId) };
  }

  task(id: string): Task | undefined {
    return this.runFiles().tasks.find((t) => t.id === id);
  }
}

/** A trajectory JSONL file (`forager run --out`, `forager export`-like records). */
export class FileSource extends Source {
  readonly kind = "file" as const;
  private records: Trajectory[] = [];

  signature(): string {
    return stat(this.path);
  }

  protected build(signature: string): SourceOverview {
    const { trajectories, errors } = readTrajectories(this.path);
    this.records = trajectories;
    const seen = new Map<string, number>();
    const episodes = trajectories.map((t) => {
      const sample = seen.get(t.taskId) ?? 0;
      seen.set(t.taskId, sample + 1);
      return rowOf(t, sample);
    });
    const perTask = countByTask(episodes);
    const k = Math.max(1, ...perTask.map((t) => t.n));
    return {
      id: this.id,
      kind: "file",
      path: this.path,
      tasks: perTask.length,
      trajectories: episodes.length,
      resolved: episodes.filter((e) => e.resolved).length,
      metrics: passAtKs(perTask, [...new Set([1, k])]),
      model: modelOf(episodes),
      failures: [],
      errors,
      episodes,
      perTask,
      complete: true,
      signature,
    };
  }

  trajectory(id: string): TrajectoryView | undefined {
    this.overview();
    const trajectory = this.records.find((t) => t.id === id);
    return trajectory && { trajectory, testsStatus: testsStatusOf(trajectory) };
  }

  task(): Task | undefined {
    return undefined;
  }
}

/**
 * Open the sources named on the command line: a run directory (has run.json), a directory of run
 * directories (each child with run.json), or a trajectory JSONL file. Ids are the base names,
 * made unique with a numeric suffix.
 * @throws Error naming the path when it is none of these.
 */
export function openSources(paths: readonly string[]): Source[] {
  const out: Source[] = [];
  const used = new Set<string>();
  const idFor = (p: string) => {
    const base = path.basename(p).replace(/\.jsonl$/, "").replace(/[^A-Za-z0-9_.-]/g, "_") || "source";
    let id = base;
    for (let i = 2; used.has(id); i++) id = `${base}-${i}`;
    used.add(id);
    return id;
  };
  for (const p of paths) {
    if (!fs.existsSync(p)) throw new Error(`${p}: no such file or directory`);
    if (fs.statSync(p).isDirectory()) {
      if (fs.existsSync(runPaths(p).spec)) {
        out.push(new RunSource(idFor(p), p));
        continue;
      }
      const runs = fs
        .readdirSync(p)
        .sort()
        .map((n) => path.join(p, n))
        .filter((d) => fs.existsSync(runPaths(d).spec));
      if (!runs.length) throw new Error(`${p}: neither a run directory (no run.json) nor a directory of run directories`);
      for (const d of runs) out.push(new RunSource(idFor(d), d));
    } else {
      out.push(new FileSource(idFor(p), p));
    }
  }
  return out;
}
