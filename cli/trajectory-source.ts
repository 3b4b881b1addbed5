/**
 * Where `show`, `replay` and friends read trajectories from: a trajectory JSONL file (`forager run`),
 * a forage run directory (through its shards' index: `RUN/shards/*.idx.jsonl`), or one gzip shard
 * (`RUN/shards/*.jsonl.gz`, concatenated gzip members of one JSON line each). And the task of a
 * trajectory: the run's `tasks.jsonl`, or the `<file>.tasks.jsonl` that `forager run` writes beside
 * its trajectory file.
 */
import fs from "node:fs";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { readTrajectories, TrajectorySchema, type Trajectory } from "../agent/trajectory";
import { readRunFiles } from "../orchestrator/run";
import { runPaths } from "../orchestrator/spec";
import { readShards, scanShards } from "../orchestrator/storage";
import { formatZodIssues } from "../lib/zod-util";
import { TaskSchema, type Task } from "../tasks/schema";
import { UsageError } from "./exit-codes";

/** One trajectory read, with the sample index when the source knows it. */
export interface SourcedTrajectory {
  trajectory: Trajectory;
  sample?: number;
}

/** What a source held: trajectories, bad records (`where`: file:line), and the run directory if any. */
export interface TrajectorySource {
  items: SourcedTrajectory[];
  errors: Array<{ where: string; message: string }>;
  runDir?: string;
}

/** The run directory a path belongs to: the path itself (holds run.json) or a shard's `RUN/shards/..`. */
export function runDirOf(p: string): string | undefined {
  const abs = path.resolve(p);
  const dir = fs.existsSync(abs) && fs.statSync(abs).isDirectory() ? abs : path.dirname(path.dirname(abs));
  return fs.existsSync(runPaths(dir).spec) ? dir : undefined;
}

/**
 * Read trajectories from `p` (see the module comment), keeping those of `task` and `sample` when given.
 * @throws UsageError for a path that does not exist, or a directory that is no run.
 */
export function readTrajectorySource(p: string, filter: { task?: string; sample?: number } = {}): TrajectorySource {
  if (!fs.existsSync(p)) throw new UsageError(`${p}: no such file or directory; expected a trajectory JSONL file, a run directory or a shard (RUN/shards/*.jsonl.gz)`);
  const keep = (taskId: string, sample: number | undefined) => (filter.task === undefined || taskId === filter.task) && (filter.sample === undefined || sample === filter.sample);
  const st = fs.statSync(p);
  if (st.isDirectory()) {
    const runDir = runDirOf(p);
    if (!runDir) throw new UsageError(`${p} is a directory but not a forager run (no run.json); expected a trajectory JSONL file, a run directory or a shard`);
    const shardsDir = runPaths(runDir).shards;
    const scan = scanShards(shardsDir);
    const entries = scan.entries.filter((e) => keep(e.taskId, e.sample));
    const items = [...readShards(shardsDir, { ...scan, entries })].map(({ entry, trajectory }) => ({ trajectory, sample: entry.sample }));
    return { items, errors: [], runDir };
  }
  if (p.endsWith(".gz")) {
    let text: string;
    try {
      text = gunzipSync(fs.readFileSync(p)).toString("utf8");
    } catch (err) {
      throw new UsageError(`${p}: not a gzip file (${(err as Error).message})`);
    }
    const out: TrajectorySource = { items: [], errors: [], runDir: runDirOf(p) };
    text.split("\n").forEach((line, i) => {
      if (!line.trim()) return;
      try {
        const r = TrajectorySchema.safeParse(JSON.parse(line));
        if (!r.success) return void out.errors.push({ where: `${p} record ${i + 1}`, message: formatZodIssues(r.error) });
        const sample = Number(/\/(\d+)$/.exec(r.data.id)?.[1]);
        if (keep(r.data.taskId, Number.isFinite(sample) ? sample : undefined)) out.items.push({ trajectory: r.data, ...(Number.isFinite(sample) ? { sample } : {}) });
      } catch (err) {
        out.errors.push({ where: `${p} record ${i + 1}`, message: `invalid JSON: ${(err as Error).message}` });
      }
    });
    return out;
  }
  const { trajectories, errors } = readTrajectories(p);
  return {
    items: trajectories.filter((t) => keep(t.taskId, undefined)).map((trajectory) => ({ trajectory })),
    errors: errors.map((e) => ({ where: `${p}:${e.line}`, message: e.message })),
    runDir: runDirOf(p),
  };
}

/** The tasks file `forager run` keeps beside a trajectory file: `X.jsonl` → `X.tasks.jsonl`. */
export function sidecarTasksFile(trajectoryFile: string): string {
  return trajectoryFile.replace(/\.jsonl$/, "") + ".tasks.jsonl";
}

/** Append `task` to the sidecar of `trajectoryFile` unless a task with its id is there already. */
export function rememberTask(trajectoryFile: string, task: Task): void {
  const f = sidecarTasksFile(trajectoryFile);
  const have = fs.existsSync(f) ? fs.readFileSync(f, "utf8").split("\n").some((l) => l.includes(`"id":${JSON.stringify(task.id)}`)) : false;
  if (!have) fs.appendFileSync(f, JSON.stringify(task) + "\n");
}

/** The task of a trajectory from its source (run directory, or the sidecar of a `forager run` file); undefined when neither knows it. */
export function taskFromSource(p: string, taskId: string): Task | undefined {
  const runDir = runDirOf(p);
  if (runDir) return readRunFiles(runDir).tasks.find((t) => t.id === taskId);
  const side = sidecarTasksFile(p);
  if (!fs.existsSync(side)) return undefined;
  for (const line of fs.readFileSync(side, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const r = TaskSchema.safeParse(JSON.parse(line));
    if (r.success && r.data.id === taskId) return r.data;
  }
  return undefined;
}
