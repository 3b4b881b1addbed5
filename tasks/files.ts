/**
 * Tasks for a run from one or more files: JSONL of the shared Task record (tasks/schema.ts), or a
 * SWE-bench dataset (JSON array / object / JSONL rows, a parquet file, or a directory laid out as a
 * downloaded Hugging Face dataset repository; tasks/swebench.ts, image specs from
 * images/swebench-specs.ts). Bad lines are reported (file, 1-based line, reason) and the good ones
 * kept; a task id seen twice is reported with both places and the first kept. Lines with invalid
 * UTF-8 are reported and their records rejected.
 */
import fs from "node:fs";
import { RecordError } from "../lib/errors";
import { formatZodIssues } from "../lib/zod-util";
import { harnessImageSpec } from "../images/swebench-prebuilt";
import { specForSweBenchLocal } from "../images/swebench-specs";
import { TaskSchema, type Task } from "./schema";
import { decodeUtf8, loadSweBench, sweBenchRowToTask } from "./swebench";

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
  /** Where each kept task is: task id → file and 1-based line (parquet: row). */
  where?: Map<string, { file: string; line: number }>;
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

/** Parse Task JSONL text; every bad line (invalid JSON, a bad record, invalid UTF-8) is reported. */
export function parseTaskJsonl(text: string, file = "<text>", invalidUtf8Lines: readonly number[] = []): TasksLoadResult {
  const out: TasksLoadResult = { tasks: [], errors: [], where: new Map() };
  const badUtf8 = new Set(invalidUtf8Lines);
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    if (badUtf8.has(i + 1)) {
      out.errors.push({ file, line: i + 1, message: `invalid UTF-8 on line ${i + 1}; this record is ignored` });
      return;
    }
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (err) {
      out.errors.push({ file, line: i + 1, message: `invalid JSON: ${(err as Error).message}` });
      return;
    }
    const r = TaskSchema.safeParse(v);
    if (r.success) {
      const first = out.where!.get(r.data.id);
      if (first) {
        out.errors.push({ file, line: i + 1, taskId: r.data.id, message: `duplicate task id ${r.data.id} (first at ${file}:${first.line}); ignored` });
        return;
      }
      out.tasks.push(r.data);
      out.where!.set(r.data.id, { file, line: i + 1 });
    } else {
      const id = (v as { id?: unknown } | null)?.id;
      out.errors.push({ file, line: i + 1, message: formatZodIssues(r.error), taskId: typeof id === "string" ? id : undefined });
    }
  });
  return out;
}

/** Whether a dataset path holds Task JSONL (rather than SWE-bench rows): a text file whose first record is a Task. */
export function isTaskJsonlFile(file: string): boolean {
  if (fs.statSync(file).isDirectory() || /\.parquet$/i.test(file)) return false;
  return looksLikeTaskJsonl(fs.readFileSync(file, "utf8"));
}

/**
 * Load tasks from files: Task JSONL, or a SWE-bench dataset (JSON / JSONL / parquet file, or a
 * dataset directory). `harnessSpecs` (prebuilt images): a row without a forager image spec gets
 * the harness layout's spec instead of being rejected. I/O errors (missing file) and unreadable
 * parquet throw.
 */
export async function loadTaskFiles(files: readonly string[], opts: { harnessSpecs?: boolean } = {}): Promise<TasksLoadResult> {
  const out: TasksLoadResult = { tasks: [], errors: [], where: new Map() };
  for (const file of files) {
    let part: TasksLoadResult;
    const textual = !fs.statSync(file).isDirectory() && !/\.parquet$/i.test(file);
    const decoded = textual ? decodeUtf8(fs.readFileSync(file)) : undefined;
    if (decoded && looksLikeTaskJsonl(decoded.text)) part = parseTaskJsonl(decoded.text, file, decoded.invalidUtf8Lines);
    else {
      const parsed = await loadSweBench(file);
      part = {
        tasks: [],
        errors: parsed.errors.map((e) => ({ file: e.file ?? file, line: e.line, message: e.message, ...(e.instanceId ? { taskId: e.instanceId } : {}) })),
        where: new Map(),
      };
      for (const row of parsed.rows) {
        const at = parsed.where.get(row.instance_id);
        const w = { file: at?.file ?? file, line: at?.line ?? 0 };
        try {
          part.tasks.push(
            sweBenchRowToTask(row, (r) => {
              // With prebuilt images (harnessSpecs), a row forager has no build spec for runs in the harness's layout.
              if (!opts.harnessSpecs) return specForSweBenchLocal({ ...r, version: String(r.version ?? "") });
              try {
                return specForSweBenchLocal({ ...r, version: String(r.version ?? "") });
              } catch {
                return harnessImageSpec({ repo: r.repo, commit: r.base_commit }, r.log_parser ? { logParser: r.log_parser } : {});
              }
            }),
          );
          part.where!.set(row.instance_id, w);
        } catch (err) {
          part.errors.push({ ...w, message: (err as Error).message, taskId: row.instance_id });
        }
      }
    }
    out.errors.push(...part.errors);
    for (const t of part.tasks) {
      const here = part.where?.get(t.id) ?? { file, line: 0 };
      const first = out.where!.get(t.id);
      if (first !== undefined) {
        out.errors.push({ ...here, taskId: t.id, message: `duplicate task id ${t.id} (first at ${first.file}:${first.line}); ignored` });
        continue;
      }
      out.where!.set(t.id, here);
      out.tasks.push(t);
    }
  }
  return out;
}

/**
 * Keep the tasks whose ids are in `ids` (in the order of `ids`).
 * @throws RecordError naming the unknown ids (and, for those whose record was rejected, saying so).
 */
export function selectTasks(loaded: TasksLoadResult, ids: readonly string[]): Task[] {
  const byId = new Map(loaded.tasks.map((t) => [t.id, t]));
  const unknown = [...new Set(ids)].filter((id) => !byId.has(id));
  if (unknown.length) {
    const rejected = new Set(loaded.errors.map((e) => e.taskId).filter(Boolean));
    const described = unknown.map((id) => (rejected.has(id) ? `${id} (its record was rejected)` : id));
    throw new RecordError(`unknown instance id(s), not among the ${loaded.tasks.length} loaded task(s): ${described.join(", ")}`);
  }
  return [...new Set(ids)].map((id) => byId.get(id)!);
}

/**
 * Instance ids from `--instances`: comma-separated ids, or `@FILE` (ids one per line or
 * separated by commas or spaces; `#` starts a comment).
 * @throws Error when the file cannot be read.
 */
export function parseInstanceIds(arg: string): string[] {
  const text = arg.startsWith("@") ? fs.readFileSync(arg.slice(1), "utf8").replace(/#.*$/gm, "") : arg;
  return [...new Set(text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean))];
}

/**
 * One task by id from a file (Task JSONL or a SWE-bench dataset), for the one-episode commands.
 * @throws RecordError naming the file and line when the task's record does not validate, or when
 *   the id is not in the file.
 */
export async function loadTask(file: string, id: string, opts: { harnessSpecs?: boolean } = {}): Promise<Task> {
  const { tasks, errors } = await loadTaskFiles([file], opts);
  const task = tasks.find((t) => t.id === id);
  if (task) return task;
  const bad = errors.find((e) => e.taskId === id);
  if (bad) throw new RecordError(`task ${id} at ${file}:${bad.line}: ${bad.message}`, file, bad.line || undefined);
  throw new RecordError(`task ${id} not found in ${file}`, file);
}
