/**
 * `forager eval`: evaluate predictions on a SWE-bench dataset (see rewards/eval-run.ts), with a
 * progress bar on a terminal (one line per instance otherwise) and a summary table.
 */
import fs from "node:fs";
import path from "node:path";
import { Option, type Command } from "commander";
import { existingPath, intAtLeast } from "./options";
import { EXIT, UsageError } from "./exit-codes";
import cliProgress from "cli-progress";
import { childLogger } from "../lib/log";
import type { EvalResult } from "../rewards/evaluate";
import { runEvaluation, type EvalRunResult } from "../rewards/eval-run";
import { parseInstanceIds } from "../tasks/files";
import { parseImagesOption } from "../images/swebench-prebuilt";
import { parseRegistryOption } from "../images/registry";

interface EvalCliOptions {
  dataset?: string;
  predictions?: string;
  instances?: string;
  workers: number;
  redo?: boolean;
  reportDir?: string;
  // the harness's spellings (aliases)
  dataset_name?: string;
  predictions_path?: string;
  instance_ids?: string[];
  max_workers?: number;
  run_id?: string;
  report_dir?: string;
  repos?: string;
  runId?: string;
  out: string;
  specTable?: string;
  stateDir?: string;
  timeout?: string;
  cpus?: string;
  images?: string;
  registry?: string;
}

const ids = (rs: EvalResult[]) => rs.map((r) => r.instanceId).join(" ");

/** The summary table printed at the end of a run. */
export function formatEvalSummary(run: EvalRunResult): string {
  const by = (pred: (r: EvalResult) => boolean) => run.results.filter(pred);
  const rows: [string, EvalResult[]][] = [
    ["resolved", by((r) => r.outcome === "pass")],
    ["unresolved", by((r) => r.outcome === "fail" && r.patchExists)],
    ["apply failed", by((r) => r.outcome === "patch_apply_failed")],
    ["timeout", by((r) => r.outcome === "timeout")],
    ["forged", by((r) => r.outcome === "forged")],
    ["error", by((r) => r.outcome === "env_error")],
    ["empty patch", by((r) => !r.patchExists)],
  ];
  const fresh = run.results.length - run.reused.length;
  const lines = [
    `run ${run.runId} (model ${run.model}): ${fresh} evaluated${run.reused.length ? `, ${run.reused.length} finished before (kept; --redo evaluates them again)` : ""}, ${run.skipped.length} skipped, ${run.seconds.toFixed(1)} s`,
  ];
  for (const [label, rs] of rows) lines.push(`  ${label.padEnd(13)} ${String(rs.length).padStart(4)}  ${ids(rs)}`);
  lines.push(`  ${"skipped".padEnd(13)} ${String(run.skipped.length).padStart(4)}`);
  for (const s of run.skipped) lines.push(`      ${s.instanceId}: ${s.reason}`);
  const notes = run.results.filter((r) => r.outcome !== "pass" && r.patchExists && r.reason);
  if (notes.length) {
    lines.push("  reasons:");
    for (const r of notes) lines.push(`      ${r.instanceId} [${r.outcome}]: ${r.reason!.slice(0, 200)}`);
  }
  if (run.loadErrors.length) {
    lines.push(`  ${run.loadErrors.length} record(s) could not be read:`);
    for (const e of run.loadErrors.slice(0, 10)) lines.push(`      ${e.file ? `${e.file}:` : "line "}${e.line}: ${e.message}`);
    if (run.loadErrors.length > 10) lines.push(`      … ${run.loadErrors.length - 10} more`);
  }
  if (run.unknownPredictions.length) {
    const shown = run.unknownPredictions.slice(0, 10).join(" ");
    lines.push(`  ${run.unknownPredictions.length} prediction(s) for instance ids not in the dataset, not evaluated: ${shown}${run.unknownPredictions.length > 10 ? " …" : ""}`);
  }
  lines.push(`report: ${run.reportFile}`);
  lines.push(`logs:   ${run.logDir}`);
  return lines.join("\n");
}

/**
 * Predictions of a file that carry no `model_patch` (missing or null): graded as an empty patch
 * (unresolved), as the harness does — said, not silent. JSON (an array or an object of records)
 * or JSONL; unreadable text gives [] (the loader reports it).
 */
export function predictionsWithoutPatch(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return [];
  }
  let records: unknown[];
  try {
    const v = JSON.parse(text) as unknown;
    records = Array.isArray(v) ? v : v && typeof v === "object" ? ("instance_id" in v ? [v] : Object.values(v)) : [];
  } catch {
    records = text.split("\n").flatMap((l) => {
      try {
        return l.trim() ? [JSON.parse(l) as unknown] : [];
      } catch {
        return [];
      }
    });
  }
  return records
    .filter((r): r is { instance_id?: unknown; model_patch?: unknown } => !!r && typeof r === "object")
    .filter((r) => typeof r.instance_id === "string" && (r.model_patch === undefined || r.model_patch === null))
    .map((r) => r.instance_id as string);
}

/** A dataset that is not on disk: a hub name (`owner/name`) gets the command that downloads it. */
function checkDataset(dataset: string): void {
  if (fs.existsSync(dataset)) return;
  if (/^[\w.-]+\/[\w.-]+$/.test(dataset)) {
    const dir = dataset.split("/")[1];
    throw new UsageError(
      `--dataset ${dataset}: not a file or directory here; forager reads datasets from disk. If it is a Hugging Face dataset, download it once: \`huggingface-cli download ${dataset} --repo-type dataset --local-dir ${dir}\`, then --dataset ${dir}/`,
    );
  }
  throw new UsageError(`--dataset ${dataset}: no such file or directory; expected a SWE-bench dataset (JSON, JSONL or parquet file, or a downloaded dataset directory) or Task JSONL`);
}

export function registerEvalCommand(program: Command): void {
  program
    .command("eval")
    .description("evaluate predictions on a SWE-bench dataset in fresh sandboxes (harness reports; the harness's flag spellings are accepted)")
    .option("--dataset <path>", "SWE-bench dataset (JSON, JSONL or parquet file, or a downloaded dataset directory), or Task JSONL (e.g. from tasks mutate); harness: --dataset_name")
    .option("--predictions <gold|empty|file>", "predictions file, or gold / empty; harness: --predictions_path")
    .option("--instances <ids>", "comma-separated instance ids, or @FILE (one id a line); harness: --instance_ids ID ID …")
    .option("--workers <n>", "evaluations in parallel; harness: --max_workers", intAtLeast(1), 1)
    .option("--repos <dir>", "repositories: DIR/owner+name/repo, DIR/owner+name, DIR/owner__name or DIR/owner/name", existingPath("dir", "a directory of local clones"))
    .option("--run-id <id>", "run id (default: a timestamp); rerunning a run id skips the instances it finished; harness: --run_id")
    .option("--redo", "evaluate again the instances this run id already finished")
    .option("--out <dir>", "log root (the harness's logs/run_evaluation layout)", "logs/run_evaluation")
    .option("--report-dir <dir>", "also write the run report MODEL.RUN_ID.json here, as the harness does (default: under the log root only; the current directory when called with the harness's spellings); harness: --report_dir")
    .option("--spec-table <file>", "image spec table (default images/swebench-specs.json)")
    .option("--state-dir <dir>", "image state dir (index, locks, build logs; default FORAGER_STATE_DIR or ~/.local/state/forager)")
    .option("--timeout <seconds>", "test timeout per instance (default: the spec's)")
    .option("--cpus <n>", "CPU cores per sandbox (default: the sandbox default)")
    .option("--images <source>", "swebench or swebench=REGISTRY/NAMESPACE: pull the harness's prebuilt instance images (default: build; also FORAGER_IMAGES)")
    .option("--registry <host:port[/ns]>", "cluster registry HOST:PORT[/NAMESPACE] (also FORAGER_REGISTRY): instance images are pulled from it, or built and pushed")
    .addOption(new Option("--dataset_name <path>", "alias of --dataset (the harness's spelling)").hideHelp())
    .addOption(new Option("--predictions_path <file>", "alias of --predictions").hideHelp())
    .addOption(new Option("--instance_ids <ids...>", "alias of --instances").hideHelp())
    .addOption(new Option("--max_workers <n>", "alias of --workers").argParser(intAtLeast(1)).hideHelp())
    .addOption(new Option("--run_id <id>", "alias of --run-id").hideHelp())
    .addOption(new Option("--report_dir <dir>", "alias of --report-dir").hideHelp())
    .addOption(new Option("--split <name>", "the harness's --split: forager reads the split you downloaded (ignored)").hideHelp())
    .addOption(new Option("--cache_level <level>", "the harness's --cache_level (forager keeps images by its own policy; ignored)").hideHelp())
    .addOption(new Option("--clean <bool>", "the harness's --clean (ignored)").hideHelp())
    .addOption(new Option("--namespace <ns>", "the harness's --namespace: use --images swebench=REGISTRY/NAMESPACE").hideHelp())
    .action(async (o: EvalCliOptions & { runId?: string; out: string; repos?: string; specTable?: string; stateDir?: string; timeout?: string; cpus?: string; images?: string; split?: string; cache_level?: string; clean?: string; namespace?: string }) => {
      const dataset = o.dataset ?? o.dataset_name;
      const registry = parseRegistryOption(o.registry);
      const predictions = o.predictions ?? o.predictions_path;
      if (!dataset) throw new UsageError("give --dataset PATH (or the harness's --dataset_name)");
      if (!predictions) throw new UsageError("give --predictions gold|empty|FILE (or the harness's --predictions_path)");
      checkDataset(dataset);
      if (predictions !== "gold" && predictions !== "empty") existingPath("file", "a predictions file (JSON or JSONL with instance_id, model_name_or_path, model_patch), or gold / empty")(predictions);
      const instances = o.instances ? parseInstanceIds(o.instances) : o.instance_ids?.length ? o.instance_ids.flatMap((x) => x.split(",")).filter(Boolean) : undefined;
      const workers = o.max_workers ?? o.workers;
      const runId = o.runId ?? o.run_id ?? new Date().toISOString().replace(/[:.]/g, "-");
      // Called the harness's way (its flag spellings): its report goes where the harness puts it, the current directory.
      const harnessStyle = [o.dataset_name, o.predictions_path, o.run_id, o.max_workers, o.instance_ids].some((x) => x !== undefined);
      const reportDir = o.reportDir ?? o.report_dir ?? (harnessStyle ? "." : undefined);
      const images = o.images ?? (o.namespace ? `swebench=${o.namespace}` : undefined);
      if (predictions !== "gold" && predictions !== "empty") {
        const noPatch = predictionsWithoutPatch(predictions);
        if (noPatch.length) console.error(`warning: ${noPatch.length} prediction(s) in ${predictions} have no model_patch: graded as an empty patch (unresolved): ${noPatch.slice(0, 5).join(" ")}${noPatch.length > 5 ? " …" : ""}`);
      }
      const tty = process.stderr.isTTY;
      const bar = tty
        ? new cliProgress.SingleBar(
            { format: "eval [{bar}] {value}/{total} {instance}", hideCursor: true, stream: process.stderr },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
      let started = false;
      const run = await runEvaluation({
        dataset,
        predictions,
        instances,
        workers,
        repos: o.repos,
        runId,
        out: o.out,
        specTable: o.specTable,
        ...(o.redo ? { redo: true } : {}),
        ...(o.timeout ? { timeoutSeconds: Number(o.timeout) } : {}),
        ...(o.cpus ? { cpus: Number(o.cpus) } : {}),
        build: o.stateDir ? { stateDir: o.stateDir } : {},
        prebuilt: parseImagesOption(images),
        ...(registry ? { registry } : {}),
        onPrebuilt: (p) => {
          if (p.phase !== "ready" && p.phase !== "present") process.stderr.write(`${bar ? "\n" : ""}[images] ${p.instanceId}: ${p.message}\n`);
        },
        logger: childLogger("eval", { run: runId }),
        onProgress: (e) => {
          if (bar) {
            if (!started) {
              bar.start(e.total, 0, { instance: "" });
              started = true;
            }
            bar.update(e.done, { instance: `${e.phase} ${e.instanceId}` });
          } else if (e.phase === "done" && e.result) {
            const r = e.result;
            process.stderr.write(
              `[${e.done}/${e.total}] ${e.instanceId} ${r.outcome}${r.applyMethod && r.applyMethod !== "git_apply" ? ` (${r.applyMethod})` : ""} ${r.seconds.toFixed(1)} s\n`,
            );
          }
        },
      });
      bar?.stop();
      // The run report where the harness writes it: MODEL.RUN_ID.json in the report dir (cwd by default).
      console.log(formatEvalSummary(run));
      if (reportDir !== undefined) {
        fs.mkdirSync(reportDir, { recursive: true });
        const harnessReport = path.join(reportDir, path.basename(run.reportFile));
        if (path.resolve(harnessReport) !== path.resolve(run.reportFile)) fs.copyFileSync(run.reportFile, harnessReport);
        console.log(`report (where the harness writes it): ${harnessReport}`);
      }
      if (run.unknownPredictions.length) console.error(`warning: ${run.unknownPredictions.length} prediction(s) for instance ids not in ${dataset}: not evaluated`);
      let code: number = run.results.some((r) => r.outcome === "env_error") ? EXIT.failure : EXIT.ok;
      if (run.results.length === 0) {
        console.error(`forager: nothing evaluated (${run.skipped.length} skipped${run.unknownPredictions.length ? `, ${run.unknownPredictions.length} prediction(s) for unknown ids` : ""})`);
        code = EXIT.usage;
      }
      process.stdout.write("", () => process.exit(code));
    });
}
