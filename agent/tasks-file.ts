/**
 * Reading tasks for the CLI: JSONL of the shared Task record (tasks/schema.ts), or SWE-bench rows
 * (tasks/swebench.ts, image specs from images/swebench-specs.ts) in JSON / JSONL.
 */
import fs from "node:fs";
import { RecordError } from "../lib/errors";
import { formatZodIssues } from "../lib/zod-util";
import { TaskSchema, type Task } from "../tasks/schema";

/**
 * The task `id` from `file`. Lines that are Task records are used as they are; otherwise the file
 * is read as a SWE-bench dataset and the row converted.
 * @throws RecordError when the task is not there or does not validate.
 */
export async function loadTask(file: string, id: string): Promise<Task> {
  const text = fs.readFileSync(file, "utf8");
  const lines = text.split("\n");
  let sawTaskRecord = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line.startsWith("{")) continue;
    let v: any;
    try {
      v = JSON.parse(line);
    } catch {
      continue;
    }
    if (v && typeof v === "object" && "problemStatement" in v) {
      sawTaskRecord = true;
      if (v.id !== id) continue;
      const r = TaskSchema.safeParse(v);
      if (!r.success) throw new RecordError(`task ${id} at ${file}:${i + 1}: ${formatZodIssues(r.error)}`, file, i + 1);
      return r.data;
    }
  }
  if (!sawTaskRecord) {
    const { parseSweBench, sweBenchRowToTask } = await import("../tasks/swebench");
    const { specForSweBenchLocal } = await import("../images/swebench-specs");
    const { rows } = parseSweBench(text);
    const row = rows.find((r) => r.instance_id === id);
    if (row) return sweBenchRowToTask(row, (r) => specForSweBenchLocal({ ...r, version: String(r.version ?? "") }));
  }
  throw new RecordError(`task ${id} not found in ${file}`, file);
}
