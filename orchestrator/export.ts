/**
 * Export a run's trajectories:
 * - `raw`: the trajectory records (agent/trajectory.ts), one JSON per line;
 * - `chat`: CWM's chat form (agent/trajectory.ts toChatRecord: role/content messages whose
 *   assistant content is the CWM text — reasoning, `<tool: NAME>…</tool>` — and `tool` messages
 *   named by the tool, as CWM's own training data reads; no `tools` list, no `tool_call_id`) plus
 *   `runId`, `sample` and `toolCallFormat: "cwm"`;
 * - `openai`, `parquet`, `verl`, `skyrl`: the forms other trainers read (export-formats.ts);
 * - `predictions`: SWE-bench predictions JSONL (`instance_id`, `model_name_or_path`,
 *   `model_patch`; tasks/predictions.ts), one per task: the first sample's patch (lowest index
 *   with a non-empty patch), or with `vote: "majority"` the patch most samples submitted
 *   (identical after stripping trailing whitespace per line; ties → the lowest sample). A task
 *   without any patch gets `""` (the harness counts it as unresolved).
 * Near-duplicates (dedup.ts) are dropped from raw/chat with `dedup: true`.
 */
import fs from "node:fs";
import { toChatRecord, type Trajectory } from "../agent/trajectory";
import { RecordError } from "../lib/errors";
import { parseRecord } from "../lib/zod-util";
import { OpenAIChatRowSchema, SkyRLRowSchema, VerlRowSchema, HfTrajectoryRowSchema, toHfRow, toOpenAIRow, toSkyRLRow, toVerlRow, writeParquetDataset, type ParquetFormat } from "./export-formats";
import type { PredictionInput } from "../tasks/predictions";
import { dedupRun, readRunFiles } from "./run";
import { runPaths } from "./spec";
import { readShards, scanShards } from "./storage";

/** The line-per-record formats (written to a stream); parquet, verl and skyrl go through {@link exportRunToParquet}. */
export type ExportFormat = "chat" | "raw" | "predictions" | "openai";

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
    if (opts.format === "openai") await write(parseRecord(OpenAIChatRowSchema, toOpenAIRow(trajectory), { what: `openai row of trajectory ${entry.id}`, file: entry.shard }));
    else await write(opts.format === "chat" ? { ...toChatRecord(trajectory as Trajectory), runId: spec.runId, sample: entry.sample, toolCallFormat: "cwm" } : trajectory);
  }
  return res;
}

/**
 * Export as parquet (export-formats.ts): `parquet` (trajectories, with `dedup` / `resolvedOnly`),
 * `verl` and `skyrl` (the run's tasks as an RL prompt set, built with the run's agent settings).
 * Each row is checked against its schema before anything is written.
 * @returns rows written and the parquet file.
 * @throws RecordError naming the row that does not fit; Error when there is nothing to write or the output exists.
 */
export async function exportRunToParquet(runDir: string, opts: { format: ParquetFormat; dedup?: boolean; resolvedOnly?: boolean }, output: string): Promise<ExportResult & { file: string }> {
  const { spec, tasks } = readRunFiles(runDir);
  const res: ExportResult = { lines: 0, droppedAsDuplicates: 0 };
  let rows: Record<string, unknown>[];
  if (opts.format === "parquet") {
    const shardsDir = runPaths(runDir).shards;
    const scan = scanShards(shardsDir);
    const dropped = opts.dedup ? dedupRun(runDir, scan.entries).dropped : new Set<string>();
    rows = [];
    for (const { entry, trajectory } of readShards(shardsDir, scan)) {
      if (dropped.has(entry.id)) {
        res.droppedAsDuplicates++;
        continue;
      }
      if (opts.resolvedOnly && !entry.resolved) continue;
      rows.push(parseRecord(HfTrajectoryRowSchema, toHfRow(trajectory, spec.runId, entry.sample), { what: `parquet row of trajectory ${entry.id}`, file: entry.shard }));
    }
  } else {
    const agent = { ...spec.agent, ...(spec.maxTurns ? { maxTurns: spec.maxTurns } : {}) };
    rows = tasks.map((t, i) => {
      try {
        return opts.format === "verl" ? VerlRowSchema.parse(toVerlRow(t, i, agent)) : SkyRLRowSchema.parse(toSkyRLRow(t, i, agent));
      } catch (err) {
        throw new RecordError(`${opts.format} row of task ${t.id}: ${(err as Error).message}`, runPaths(runDir).tasks, i + 1);
      }
    });
  }
  const file = await writeParquetDataset(opts.format, rows, output);
  res.lines = rows.length;
  return { ...res, file };
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
