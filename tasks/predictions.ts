/**
 * Predictions to evaluate: `{instance_id, model_name_or_path, model_patch}`, read as the
 * SWE-bench harness accepts them (v4.1/v5.0 `get_predictions_from_file`): a JSON list, a JSON
 * object keyed by instance id, or JSONL. `gold` and `empty` predictions are made from the
 * dataset rows (the harness's `--predictions_path gold` uses the row's `patch` and the model
 * name "gold").
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { decodeUtf8, dropInvalidUtf8, readRecordFile, validateRecords, type LoadError, type SweBenchRow } from "./swebench";

export const PredictionSchema = z.looseObject({
  instance_id: z.string().min(1),
  /** Model (or agent) name; the harness names run folders after it (`/` → `__`). */
  model_name_or_path: z.string().min(1),
  /**
   * The model's diff. null (or absent) is "no patch" (report `patch_is_None`); "" is an empty
   * patch (run report `empty_patch_ids`, never evaluated).
   */
  model_patch: z
    .string()
    .nullish()
    .transform((v) => v ?? null),
});
export type Prediction = z.infer<typeof PredictionSchema>;
export type PredictionInput = z.input<typeof PredictionSchema>;

export const GOLD_MODEL_NAME = "gold";
export const EMPTY_MODEL_NAME = "empty";

export interface PredictionsLoadResult {
  /** One per instance id; when an id repeats, the later prediction wins (as the harness's dict). */
  predictions: Prediction[];
  /** Bad records with line and field, and repeated ids. */
  errors: LoadError[];
}

const looksLikePrediction = (v: Record<string, unknown>) => typeof v.instance_id === "string" && "model_patch" in v;

/** Parse predictions from text (JSON list, JSON object keyed by id or one prediction, JSONL). */
export function parsePredictions(text: string, opts: { invalidUtf8Lines?: readonly number[] } = {}): PredictionsLoadResult {
  const read = readRecordFile(text, looksLikePrediction);
  const utf8 = dropInvalidUtf8(read.records, opts.invalidUtf8Lines ?? []);
  const errors = [...read.errors, ...utf8.errors];
  const { values, errors: invalid } = validateRecords(utf8.records, PredictionSchema, "prediction");
  const byId = new Map<string, { line: number; value: Prediction }>();
  const repeats: LoadError[] = [];
  for (const v of values) {
    const earlier = byId.get(v.value.instance_id);
    if (earlier) {
      repeats.push({
        line: v.line,
        field: "instance_id",
        instanceId: v.value.instance_id,
        message: `repeated instance_id ${v.value.instance_id} (also at line ${earlier.line}); the later one is used`,
      });
      byId.delete(v.value.instance_id);
    }
    byId.set(v.value.instance_id, v);
  }
  const predictions = [...byId.values()].sort((a, b) => a.line - b.line).map((v) => v.value);
  return { predictions, errors: [...errors, ...invalid, ...repeats].sort((a, b) => a.line - b.line) };
}

/** Read a predictions file (its UTF-8 checked: records on bad lines are reported); see parsePredictions. I/O errors throw. */
export async function loadPredictions(file: string): Promise<PredictionsLoadResult> {
  const { text, invalidUtf8Lines } = decodeUtf8(await readFile(file));
  return parsePredictions(text, { invalidUtf8Lines });
}

/** The gold predictions: each row's own `patch`, model name "gold". */
export function goldPredictions(rows: readonly Pick<SweBenchRow, "instance_id" | "patch">[]): Prediction[] {
  return rows.map((r) => ({ instance_id: r.instance_id, model_name_or_path: GOLD_MODEL_NAME, model_patch: r.patch }));
}

/**
 * Empty predictions (`model_patch: ""`): the no-change baseline, which must resolve nothing.
 * The harness itself never evaluates an empty patch (its run report lists it under
 * `empty_patch_ids`); an evaluator that wants the baseline must run it without a patch.
 */
export function emptyPredictions(
  rows: readonly Pick<SweBenchRow, "instance_id">[],
  modelName: string = EMPTY_MODEL_NAME,
): Prediction[] {
  return rows.map((r) => ({ instance_id: r.instance_id, model_name_or_path: modelName, model_patch: "" }));
}

/** Index predictions by instance id (a later duplicate wins). */
export function predictionsById(predictions: readonly Prediction[]): Map<string, Prediction> {
  return new Map(predictions.map((p) => [p.instance_id, p]));
}
