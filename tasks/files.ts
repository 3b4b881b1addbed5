/**
 * Tasks for a run from one or more files: JSONL of the shared Task record (tasks/schema.ts), or a
 * SWE-bench dataset (JSON array / object / JSONL rows; tasks/swebench.ts, image specs from
 * images/swebench-specs.ts). Bad lines are reported (file, 1-based line, reason) and the good ones
 * kept; a task id seen twice is reported and the first kept.
 */
import fs from "node:fs";
import { RecordError } from "../lib/errors";
import { formatZodIssues } from "../lib/zod-util";
import { TaskSchema, type Task } from "./schema";

/** A line (or row) that could not become a task. */
export interface TaskLoadError {
  file: string;
  /** 1-based line. */
  line: number;
  message: string;
  taskId?: string;
}

export interface TasksLoadResult {
  tasks: Task[];
  errors: TaskLoadError[];
}

/** Whether the text looks like Task JSONL (its first JSON object has `problemStatement` or `kind`). */
export function looksLikeTaskJsonl(text: string): boolean {
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    if (!line.startsWith("{")) return false;
    try {
      const v = JSON.parse(line) as Record<string, unknown>;
      return typeof v === "object" && v !== null && ("problemStatement" in v || "kind" in v);
    } catch {
      continue; // a bad first line: keep looking
    }
  }
  return false;
}

/** Parse Task JSONL text; every bad line is reported. */
export function parseTaskJsonl(text: string, file = "<text>"): TasksLoadResult {
  const out: TasksLoadResult = { tasks: [], errors: [] };
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (err) {
      out.errors.push({ file, line: i + 1, message: `invalid JSON: ${(err as Error).message}` });
      return;
    }
    const r = TaskSchema.safeParse(v);
    if (r.success) out.tasks.push(r.data);
    else {
      const id = (v as { id?: unknown } | null)?.id;
      out.errors.push({ file, line: i + 1, message: formatZodIssues(r.error), taskId: typeof id === "string" ? id : undefined });
    }
  });
  return out;
}

/** Load tasks from files (Task JSONL or SWE-bench). I/O errors (missing file) throw. */
export async function loadTaskFiles(files: readonly string[]): Promise<TasksLoadResult> {
  const out: TasksLoadResult = { tasks: [], errors: [] };
  const seen = new Map<string, string>();
  for (const file of files) {
    const text = fs.readFileSync(file, "utf8");
    let part: TasksLoadResult;
    if (looksLikeTaskJsonl(text)) part = parseTaskJsonl(text, file);
    else {
      const { parseSweBench, sweBenchRowToTask } = await import("./swebench");
      const { specForSweBenchLocal } = await import("../images/swebench-specs");
      const parsed = parseSweBench(text);
      part = { tasks: [], errors: parsed.errors.map((e) => ({ file, line: e.line, message: e.message, taskId: e.instanceId })) };
      for (const row of parsed.rows) {
        try {
          part.tasks.push(sweBenchRowToTask(row, (r) => specForSweBenchLocal({ ...r, version: String(r.version ?? "") })));
        } catch (err) {
          part.errors.push({ file, line: 0, message: (err as Error).message, taskId: row.instance_id });
        }
      }
    }
    out.errors.push(...part.errors);
    for (const t of part.tasks) {
      const first = seen.get(t.id);
      if (first !== undefined) {
        out.errors.push({ file, line: 0, taskId: t.id, message: `duplicate task id ${t.id} (first in ${first}); ignored` });
        continue;
      }
      seen.set(t.id, file);
      out.tasks.push(t);
    }
  }
  return out;
}

/**
 * One task by id from a file (Task JSONL or a SWE-bench dataset), for the one-episode commands.
 * @throws RecordError naming the file and line when the task's record does not validate, or when
 *   the id is not in the file.
 */
export async function loadTask(file: string, id: string): Promise<Task> {
  const { tasks, errors } = await loadTaskFiles([file]);
  const task = tasks.find((t) => t.id === id);
  if (task) return task;
  const bad = errors.find((e) => e.taskId === id);
  if (bad) throw new RecordError(`task ${id} at ${file}:${bad.line}: ${bad.message}`, file, bad.line || undefined);
  throw new RecordError(`task ${id} not found in ${file}`, file);
}
