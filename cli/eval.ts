/**
 * `forager eval`: evaluate predictions on a SWE-bench dataset (see rewards/eval-run.ts), with a
 * progress bar on a terminal (one line per instance otherwise) and a summary table.
 */
import type { Command } from "commander";
import cliProgress from "cli-progress";
import { childLogger } from "../lib/log";
import type { EvalResult } from "../rewards/evaluate";
import { runEvaluation, type EvalRunResult } from "../rewards/eval-run";
import { parseInstanceIds } from "../tasks/files";
import { parseImagesOption } from "../images/swebench-prebuilt";
import { parseRegistryOption } from "../images/registry";

interface EvalCliOptions {
  dataset: string;
  predictions: string;
  instances?: string;
  workers: string;
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
  const lines = [
    `run ${run.runId} (model ${run.model}): ${run.results.length} evaluated, ${run.skipped.length} skipped, ${run.seconds.toFixed(1)} s`,
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

export function registerEvalCommand(program: Command): void {
  program
    .command("eval")
    .description("evaluate predictions on a SWE-bench dataset in fresh sandboxes (harness reports)")
    .requiredOption("--dataset <path>", "SWE-bench dataset (JSON, JSONL or parquet file, or a downloaded dataset directory), or Task JSONL (e.g. from tasks mutate)")
    .requiredOption("--predictions <gold|empty|file>", "predictions file, or gold / empty")
    .option("--instances <ids>", "comma-separated instance ids, or @FILE (one id a line)")
    .option("--workers <n>", "evaluations in parallel", "1")
    .option("--repos <dir>", "repositories: DIR/owner+name/repo, DIR/owner+name, DIR/owner__name or DIR/owner/name")
    .option("--run-id <id>", "run id (default: a timestamp)")
    .option("--out <dir>", "log root", "logs/run_evaluation")
    .option("--spec-table <file>", "image spec table (default images/swebench-specs.json)")
    .option("--state-dir <dir>", "image state dir (index, locks, build logs)")
    .option("--timeout <seconds>", "test timeout per instance (default: the spec's)")
    .option("--cpus <n>", "CPU cores per sandbox")
    .option("--images <source>", "swebench or swebench=REGISTRY/NAMESPACE: pull the harness's prebuilt instance images (default: build; also FORAGER_IMAGES)")
    .option("--registry <host:port[/ns]>", "cluster registry HOST:PORT[/NAMESPACE] (also FORAGER_REGISTRY): instance images are pulled from it, or built and pushed")
    .action(async (o: EvalCliOptions) => {
      const registry = parseRegistryOption(o.registry);
      const runId = o.runId ?? new Date().toISOString().replace(/[:.]/g, "-");
      const tty = process.stderr.isTTY;
      const bar = tty
        ? new cliProgress.SingleBar(
            { format: "eval [{bar}] {value}/{total} {instance}", hideCursor: true, stream: process.stderr },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
      let started = false;
      const run = await runEvaluation({
        dataset: o.dataset,
        predictions: o.predictions,
        instances: o.instances ? parseInstanceIds(o.instances) : undefined,
        workers: Math.max(1, Number(o.workers) || 1),
        repos: o.repos,
        runId,
        out: o.out,
        specTable: o.specTable,
        ...(o.timeout ? { timeoutSeconds: Number(o.timeout) } : {}),
        ...(o.cpus ? { cpus: Number(o.cpus) } : {}),
        build: o.stateDir ? { stateDir: o.stateDir } : {},
        prebuilt: parseImagesOption(o.images),
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
      console.log(formatEvalSummary(run));
      const code = run.results.some((r) => r.outcome === "env_error") ? 1 : 0;
      process.stdout.write("", () => process.exit(code));
    });
}
