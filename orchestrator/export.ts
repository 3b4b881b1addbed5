/**
 * Export a run's trajectories:
 * - `raw`: the trajectory records (agent/trajectory.ts), one JSON per line;
 * - `chat`: training records (agent/trajectory.ts toChatRecord: OpenAI-style messages, reward,
 *   resolved) plus `runId` and `sample`;
 * - `predictions`: SWE-bench predictions JSONL (`instance_id`, `model_name_or_path`,
 *   `model_patch`; tasks/predictions.ts), one per task: the first sample's patch (lowest index
 *   with a non-empty patch), or with `vote: "majority"` the patch most samples submitted
 *   (identical after stripping trailing whitespace per line; ties → the lowest sample). A task
 *   without any patch gets `""` (the harness counts it as unresolved).
 * Near-duplicates (dedup.ts) are dropped from raw/chat with `dedup: true`.
 */
import fs from "node:fs";
import { toChatRecord, type Trajectory } from "../agent/trajectory";
import type { PredictionInput } from "../tasks/predictions";
import { dedupRun, readRunFiles } from "./run";
import { runPaths } from "./spec";
import { readShards, scanShards } from "./storage";

export type ExportFormat = "chat" | "raw" | "predictions";

export interface ExportOptions {
  format: ExportFormat;
  /** Drop near-duplicate trajectories (raw, chat). */
  dedup?: boolean;
  /** Only resolved trajectories (raw, chat). */
  resolvedOnly?: boolean;
  /** predictions: "first" (default) or "majority". */
  vote?: "first" | "majority";
  /** predictions: model_name_or_path (default: the policy's model, else `forager-<policy>`). */
  modelName?: string;
}

export interface ExportResult {
  lines: number;
  droppedAsDuplicates: number;
}

/** Normalise a patch for voting: trailing whitespace per line and at the end removed. */
export function normalizePatch(p: string): string {
  return p
    .split("\n")
    .map((l) => l.replace(/\s+$/, ""))
    .join("\n")
    .trimEnd();
}

/** Choose one patch out of a task's samples (see module comment). */
export function choosePatch(samples: ReadonlyArray<{ sample: number; patch?: string }>, vote: "first" | "majority"): string {
  const withPatch = [...samples].filter((s) => s.patch && s.patch.trim() !== "").sort((a, b) => a.sample - b.sample);
  if (!withPatch.length) return "";
  if (vote === "first") return withPatch[0]!.patch!;
  const groups = new Map<string, { count: number; first: number; patch: string }>();
  for (const s of withPatch) {
    const k = normalizePatch(s.patch!);
    const g = groups.get(k);
    if (g) g.count++;
    else groups.set(k, { count: 1, first: s.sample, patch: s.patch! });
  }
  return [...groups.values()].sort((a, b) => b.count - a.count || a.first - b.first)[0]!.patch;
}

/** Write the export to `out` (a writable stream, e.g. process.stdout or a file stream). */
export async function exportRun(runDir: string, opts: ExportOptions, out: NodeJS.WritableStream): Promise<ExportResult> {
  const { spec, tasks } = readRunFiles(runDir);
  const shardsDir = runPaths(runDir).shards;
  const scan = scanShards(shardsDir);
  const res: ExportResult = { lines: 0, droppedAsDuplicates: 0 };
  const write = async (obj: unknown) => {
    res.lines++;
    if (!out.write(JSON.stringify(obj) + "\n")) await new Promise((r) => out.once("drain", r));
  };
  if (opts.format === "predictions") {
    const byTask = new Map<string, Array<{ sample: number; patch?: string }>>();
    for (const { entry, trajectory } of readShards(shardsDir, { ...scan, entries: scan.entries.filter((e) => e.patch) })) {
      const list = byTask.get(entry.taskId) ?? [];
      list.push({ sample: entry.sample, patch: trajectory.submittedPatch });
      byTask.set(entry.taskId, list);
    }
    const model = opts.modelName ?? defaultModelName(spec.policy.kind === "http" ? spec.policy.endpoints[0]?.model : undefined, spec.policy.kind);
    for (const t of tasks) {
      const p: PredictionInput = { instance_id: t.id, model_name_or_path: model, model_patch: choosePatch(byTask.get(t.id) ?? [], opts.vote ?? "first") };
      await write(p);
    }
    return res;
  }
  const dropped = opts.dedup ? dedupRun(runDir, scan.entries).dropped : new Set<string>();
  for (const { entry, trajectory } of readShards(shardsDir, scan)) {
    if (dropped.has(entry.id)) {
      res.droppedAsDuplicates++;
      continue;
    }
    if (opts.resolvedOnly && !entry.resolved) continue;
    await write(opts.format === "chat" ? { ...toChatRecord(trajectory as Trajectory), runId: spec.runId, sample: entry.sample } : trajectory);
  }
  return res;
}

function defaultModelName(model: string | undefined, kind: string): string {
  return model ?? `forager-${kind}`;
}

/** Export to a file (atomic enough for a one-shot: written, then fsynced). */
export async function exportRunToFile(runDir: string, opts: ExportOptions, file: string): Promise<ExportResult> {
  const stream = fs.createWriteStream(file);
  const r = await exportRun(runDir, opts, stream);
  await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return r;
}
