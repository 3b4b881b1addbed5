/**
 * A SWE-bench evaluation run: a dataset, predictions (a file, or `gold` / `empty`), N
 * evaluations in parallel, images built when missing, per-instance reports and the run report in
 * the harness's layout and format.
 *
 *   <out>/<run_id>/<model>/<instance_id>/{patch.diff, test_output.txt, report.json, eval.json}
 *   <out>/<run_id>/<model>.<run_id>.json            (run report, schema_version 2)
 *
 * Instances that need the network (images/swebench-specs `needsNetwork`), have a known issue,
 * have no image spec, or whose repository is not found are skipped with the reason; the run
 * report then counts them as the harness would (a prediction without a report is an error).
 */
import { findRepository } from "../images/repo";
import fs from "node:fs";
import path from "node:path";
import type { BuildOptions } from "../images/build";
import type { RepoSource } from "../images/spec";
import { obtainInstanceImage, type RegistrySettings } from "../images/registry";
import { knownIssue, loadSweBenchSpecs, networkRequirement, specForSweBench, type SweBenchSpecTable } from "../images/swebench-specs";
import { harnessImageSpec, parseHarnessEvalScript, prebuiltInstanceImage, PrebuiltUnavailableError, type PrebuiltProgress, type PrebuiltSettings } from "../images/swebench-prebuilt";
import { RecordError } from "../lib/errors";
import { testDirectives } from "../tasks/directives";
import { silentLogger, type Logger } from "../lib/log";
import {
  emptyPredictions,
  goldPredictions,
  loadPredictions,
  type Prediction,
} from "../tasks/predictions";
import { isTaskJsonlFile, loadTaskFiles } from "../tasks/files";
import type { Task } from "../tasks/schema";
import { loadSweBench, sweBenchRowToTask, type LoadError, type SweBenchRow } from "../tasks/swebench";
import { evaluatePatch, modelFolderName, type EvalResult } from "./evaluate";
import { buildRunReport, type RunReport } from "./grading";

export interface EvalRunOptions {
  /** SWE-bench dataset file (JSON, JSON object, JSONL), or JSONL of forager Task records (mutate-fix tasks). */
  dataset: string;
  /** `gold`, `empty`, or a predictions file. */
  predictions: string;
  /** Only these instance ids (default: every instance that has a prediction). */
  instances?: string[];
  /** Evaluations in parallel (default 1). */
  workers?: number;
  /** Directory holding repositories (see {@link findRepository}). */
  repos?: string;
  runId: string;
  /** Root of the logs (default `logs/run_evaluation`). */
  out?: string;
  /** Spec table file (default images/swebench-specs.json). */
  specTable?: string;
  /** Test timeout override, seconds. */
  timeoutSeconds?: number;
  /** Sandbox CPU cores. */
  cpus?: number;
  build?: BuildOptions;
  /** Pull the harness's prebuilt instance images (`--images swebench`) instead of building; SWE-bench rows only. */
  prebuilt?: PrebuiltSettings;
  /** Pull progress, retries, and the fallback to building. */
  onPrebuilt?: (p: PrebuiltProgress) => void;
  /**
   * A cluster registry (`--registry`): an instance image to build is pulled when the registry has
   * it, else built and pushed (images/registry.ts obtainInstanceImage).
   */
  registry?: RegistrySettings;
  logger?: Logger;
  /**
   * Evaluate again the instances this run id already finished (the harness's `--redo`); by
   * default an instance whose `report.json` and `eval.json` are in the run's log directory is
   * not evaluated again: its recorded result is reused (listed in {@link EvalRunResult.reused}).
   */
  redo?: boolean;
  /** Called when an instance starts building/evaluating and when it is done. */
  onProgress?: (e: { instanceId: string; phase: "evaluate" | "done"; result?: EvalResult; done: number; total: number }) => void;
}

export interface SkippedInstance {
  instanceId: string;
  reason: string;
}

export interface EvalRunResult {
  runId: string;
  model: string;
  /** Rows (or tasks) of the dataset that validated. */
  datasetRows: number;
  /** Valid predictions read (gold / empty: one per row). */
  predictionCount: number;
  /** Instance ids of predictions that are not in the dataset (not evaluated). */
  unknownPredictions: string[];
  results: EvalResult[];
  /** Instance ids whose result was taken from an earlier invocation of the same run id (not evaluated again). */
  reused: string[];
  skipped: SkippedInstance[];
  /** Dataset / prediction records that could not be read. */
  loadErrors: LoadError[];
  report: RunReport;
  reportFile: string;
  logDir: string;
  seconds: number;
}

export { findRepository };

/** "; first errors: FILE:LINE: message; …" (at most `max`), or "" for none. */
export function describeLoadErrors(errors: readonly LoadError[], max = 3): string {
  if (errors.length === 0) return "";
  const shown = errors.slice(0, max).map((e) => `${e.file ? `${e.file}:` : "line "}${e.line}: ${e.message}`);
  return `; ${errors.length} error(s): ${shown.join("; ")}${errors.length > max ? "; …" : ""}`;
}

/**
 * The result an earlier invocation of the run recorded for an instance (`report.json` and
 * `eval.json` in its log directory, as the harness checks `report.json`), or undefined.
 */
function finishedResult(instanceLogDir: string): EvalResult | undefined {
  if (!fs.existsSync(path.join(instanceLogDir, "report.json"))) return undefined;
  try {
    const r = JSON.parse(fs.readFileSync(path.join(instanceLogDir, "eval.json"), "utf8")) as EvalResult;
    return typeof r.instanceId === "string" && typeof r.outcome === "string" && r.outcome !== "env_error" ? r : undefined;
  } catch {
    return undefined;
  }
}

/** Run `fn` over `items` with at most `n` in flight. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
}

/** Evaluate predictions on a dataset; see the module comment. */
export async function runEvaluation(opts: EvalRunOptions): Promise<EvalRunResult> {
  const started = performance.now();
  const log = opts.logger ?? silentLogger;
  const table: SweBenchSpecTable = loadSweBenchSpecs(opts.specTable);
  // A dataset of forager Task records (mutate-fix tasks, or SWE-bench rows already converted):
  // each task carries its own image spec; its gold patch is `referencePatch`.
  const taskRecords = new Map<string, Task>();
  let rows: SweBenchRow[];
  let datasetErrors: LoadError[];
  if (isTaskJsonlFile(opts.dataset)) {
    const parsed = await loadTaskFiles([opts.dataset]); // duplicates reported, the first kept
    for (const t of parsed.tasks) taskRecords.set(t.id, t);
    rows = parsed.tasks.map((t) => ({
      instance_id: t.id,
      repo: t.repo,
      base_commit: t.commit,
      patch: t.referencePatch,
      test_patch: t.testPatch,
      problem_statement: t.problemStatement,
      FAIL_TO_PASS: t.failToPass,
      PASS_TO_PASS: t.passToPass,
    }) as SweBenchRow);
    datasetErrors = parsed.errors.map((e) => ({ file: e.file, line: e.line, message: e.message, ...(e.taskId ? { instanceId: e.taskId } : {}) }));
  } else {
    ({ rows, errors: datasetErrors } = await loadSweBench(opts.dataset));
  }
  let predictions: Prediction[];
  const loadErrors: LoadError[] = [...datasetErrors];
  if (opts.predictions === "gold") predictions = goldPredictions(rows);
  else if (opts.predictions === "empty") predictions = emptyPredictions(rows);
  else {
    const p = await loadPredictions(opts.predictions);
    predictions = p.predictions;
    loadErrors.push(...p.errors.map((e) => ({ ...e, file: opts.predictions })));
  }
  const byId = new Map(predictions.map((p) => [p.instance_id, p]));
  const rowById = new Map(rows.map((r) => [r.instance_id, r]));
  const unknownPredictions = predictions.filter((p) => !rowById.has(p.instance_id)).map((p) => p.instance_id);
  if (rows.length === 0) {
    throw new RecordError(
      `dataset ${opts.dataset}: ${datasetErrors.length ? `no valid row, every record was rejected${describeLoadErrors(datasetErrors)}` : "empty (no record)"}`,
      opts.dataset,
    );
  }
  if (predictions.length === 0) {
    const predErrors = loadErrors.slice(datasetErrors.length);
    throw new RecordError(`predictions ${opts.predictions}: no valid prediction${describeLoadErrors(predErrors)}`, opts.predictions);
  }
  const unknownInstances = (opts.instances ?? []).filter((id) => !rowById.has(id));
  if (unknownInstances.length) {
    const rejected = new Set(datasetErrors.map((e) => e.instanceId).filter(Boolean));
    throw new RecordError(
      `--instances: not in the dataset ${opts.dataset}: ${unknownInstances.map((id) => (rejected.has(id) ? `${id} (its row was rejected)` : id)).join(", ")}`,
      opts.dataset,
    );
  }
  const wanted = opts.instances?.length ? opts.instances : rows.map((r) => r.instance_id).filter((id) => byId.has(id));
  const model = predictions.find((p) => wanted.includes(p.instance_id))?.model_name_or_path ?? opts.predictions;
  const logDir = path.join(opts.out ?? path.join("logs", "run_evaluation"), opts.runId);

  const skipped: SkippedInstance[] = [];
  const results: EvalResult[] = [];
  const reused: string[] = [];
  const todo: { row: SweBenchRow; prediction: Prediction; source?: RepoSource }[] = [];
  for (const id of wanted) {
    const row = rowById.get(id);
    const prediction = byId.get(id);
    if (!row) {
      skipped.push({ instanceId: id, reason: "not in the dataset" });
      continue;
    }
    if (!prediction) {
      skipped.push({ instanceId: id, reason: "no prediction" });
      continue;
    }
    const previous = opts.redo ? undefined : finishedResult(path.join(logDir, modelFolderName(prediction.model_name_or_path), id));
    if (previous) {
      results.push(previous);
      reused.push(id);
      continue;
    }
    const net = networkRequirement(id, table);
    if (net) {
      skipped.push({ instanceId: id, reason: `needs the network: ${net}` });
      continue;
    }
    const issue = opts.prebuilt && !taskRecords.has(id) ? undefined : knownIssue(id, table); // known issues are of forager's own builds
    if (issue) {
      skipped.push({ instanceId: id, reason: `known issue: ${issue}` });
      continue;
    }
    let source: RepoSource | undefined;
    if (opts.repos) {
      const p = findRepository(opts.repos, row.repo);
      if (p) source = { type: "path", path: p };
    }
    if (!source && taskRecords.has(id)) source = taskRecords.get(id)!.image.source;
    if (!source && prediction.model_patch && !(opts.prebuilt && !taskRecords.has(id))) {
      skipped.push({ instanceId: id, reason: `repository ${row.repo} not found${opts.repos ? ` under ${opts.repos}` : " (no --repos)"}` });
      continue;
    }
    todo.push({ row, prediction, ...(source ? { source } : {}) });
  }

  let done = 0;
  await pool(todo, opts.workers ?? 1, async ({ row, prediction, source }) => {
    const id = row.instance_id;
    let task;
    let image: string | undefined;
    const record = taskRecords.get(id);
    if (opts.prebuilt && !record && prediction.model_patch) {
      // The harness's prebuilt instance image; when the registry does not answer, build as usual.
      try {
        image = (await prebuiltInstanceImage(id, opts.prebuilt, { logger: log, ...(opts.build?.stateDir ? { stateDir: opts.build.stateDir } : {}), ...(opts.onPrebuilt ? { onProgress: opts.onPrebuilt } : {}) })).tag;
        const harness = row.eval_script ? parseHarnessEvalScript(row.eval_script, testDirectives(row.test_patch, row.repo)) : undefined;
        task = sweBenchRowToTask(row, (r) => harnessImageSpec({ repo: r.repo, commit: r.base_commit }, { ...harness, ...(r.log_parser ? { logParser: r.log_parser } : {}) }));
      } catch (err) {
        if (!(err instanceof PrebuiltUnavailableError)) throw err;
        const message = `${err.message}; building the instance image instead`;
        log.warn({ instanceId: id, ref: err.ref }, message);
        opts.onPrebuilt?.({ instanceId: id, phase: "fallback", message });
        if (!source) {
          skipped.push({ instanceId: id, reason: `${err.message}, and repository ${row.repo} not found${opts.repos ? ` under ${opts.repos}` : " (no --repos)"} to build from` });
          done++;
          return;
        }
      }
    }
    if (opts.prebuilt && !record && !task && !prediction.model_patch) {
      // An empty prediction is never run (harness semantics): no image needed, the harness layout's spec.
      task = sweBenchRowToTask(row, (r) => harnessImageSpec({ repo: r.repo, commit: r.base_commit }, r.log_parser ? { logParser: r.log_parser } : {}));
    }
    try {
      task ??= record
        ? { ...record, image: { ...record.image, ...(source ? { source } : {}) } }
        : sweBenchRowToTask(row, (r) => specForSweBench({ ...r, version: r.version ?? "" }, { table, ...(source ? { source } : {}) }));
    } catch (err) {
      skipped.push({ instanceId: id, reason: `no image spec: ${(err as Error).message}` });
      done++;
      return;
    }
    const patch = prediction.model_patch ?? "";
    if (opts.registry && !image && patch) {
      try {
        image = (await obtainInstanceImage(task.image, opts.registry, { build: opts.build ?? {}, logger: log })).tag;
      } catch (err) {
        log.warn({ instanceId: id, err: (err as Error).message }, "no image from the registry; evaluatePatch builds it");
      }
    }
    opts.onProgress?.({ instanceId: id, phase: "evaluate", done, total: todo.length });
    // The instance image is built (or found in the cache) by evaluatePatch; a build failure is
    // an env_error with the builder's message.
    const final = await evaluatePatch(task, patch, {
      ...(image ? { image } : {}),
      model: prediction.model_name_or_path,
      logDir,
      logger: log,
      labels: { "forager.run": opts.runId },
      build: opts.build ?? {},
      ...(opts.timeoutSeconds ? { timeoutSeconds: opts.timeoutSeconds } : {}),
      ...(opts.cpus ? { cpus: opts.cpus } : {}),
    });
    results.push(final);
    done++;
    opts.onProgress?.({ instanceId: id, phase: "done", result: final, done, total: todo.length });
  });

  const report = buildRunReport(
    wanted.map((id) => {
      const r = results.find((x) => x.instanceId === id);
      const p = byId.get(id);
      const hasReport = r && r.outcome !== "timeout" && r.outcome !== "env_error";
      return { instanceId: id, modelPatch: p?.model_patch ?? null, report: hasReport ? r.report : null };
    }).filter((o) => byId.has(o.instanceId)),
    { datasetIds: wanted },
  );
  fs.mkdirSync(logDir, { recursive: true });
  const reportFile = path.join(logDir, `${modelFolderName(model)}.${opts.runId}.json`);
  fs.writeFileSync(reportFile, JSON.stringify(report, null, 4));
  results.sort((a, b) => a.instanceId.localeCompare(b.instanceId));
  return {
    runId: opts.runId,
    model,
    datasetRows: rows.length,
    predictionCount: predictions.length,
    unknownPredictions,
    results,
    reused,
    skipped,
    loadErrors,
    report,
    reportFile,
    logDir,
    seconds: (performance.now() - started) / 1000,
  };
}
