/**
 * Overhead of forager's evaluation (rewards/evaluate.ts: fresh sandbox, patch apply cascade,
 * test-file resets, nonce markers, JUnit report, cross-check, logs) against the bare test
 * command in a container from the same image (`docker run --network none`: apply the gold and
 * test patches with git apply, run the test command with the directives, nothing else).
 * Interleaved, alternating which goes first, several runs.
 *
 *   npm run bench -- eval-overhead [--runs N] [--dataset FILE --instance ID --repos DIR]
 *
 * Without --dataset the task is a created pytest repository (test/helpers/eval-fixtures).
 * Figures: eval_p50_s, bare_test_p50_s, overhead_s, overhead_ratio, eval_min_s, bare_min_s, runs.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { buildInstanceImage } from "../images/build";
import { runInImage } from "../sandbox/oneshot";
import { loadSweBenchSpecs, specForSweBench } from "../images/swebench-specs";
import { testDirectives } from "../tasks/directives";
import { evaluatePatch, isPytestCommand } from "../rewards/evaluate";
import { findRepository } from "../rewards/eval-run";
import { loadSweBench, SweBenchRowSchema, sweBenchRowToTask } from "../tasks/swebench";
import type { Task } from "../tasks/schema";
import { evalDatasetRow, evalSpecTable, makeEvalFixture } from "../test/helpers/eval-fixtures";
import { percentile } from "./lib";

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function loadTask(args: string[], tmp: string): Promise<Task> {
  const dataset = flag(args, "--dataset");
  if (!dataset) {
    const dir = path.join(tmp, "repo");
    const f = makeEvalFixture(dir);
    const table = evalSpecTable();
    const row = SweBenchRowSchema.parse(evalDatasetRow(f));
    return sweBenchRowToTask(row, (r) => specForSweBench({ ...r, version: r.version ?? "" }, { table, source: { type: "path", path: dir } }));
  }
  const id = flag(args, "--instance");
  const repos = flag(args, "--repos");
  if (!id || !repos) throw new Error("--dataset needs --instance ID and --repos DIR");
  const { rows } = await loadSweBench(dataset);
  const row = rows.find((r) => r.instance_id === id);
  if (!row) throw new Error(`${id} not in ${dataset}`);
  const repo = findRepository(repos, row.repo);
  if (!repo) throw new Error(`${row.repo} not under ${repos}`);
  const table = loadSweBenchSpecs();
  return sweBenchRowToTask(row, (r) => specForSweBench({ ...r, version: r.version ?? "" }, { table, source: { type: "path", path: repo } }));
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

export async function main(args: string[]): Promise<Record<string, number>> {
  const runs = Number(flag(args, "--runs") ?? 5);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-bench-eval-"));
  try {
    const task = await loadTask(args, tmp);
    const image = (await buildInstanceImage(task.image)).tag;
    console.log(`instance ${task.id}, image ${image}, ${runs} runs`);
    const directives = testDirectives(task.testPatch, task.repo);
    const bareScript = [
      `cd ${task.image.workdir}`,
      `echo ${b64(task.referencePatch)} | base64 -d > /tmp/gold.diff && git apply /tmp/gold.diff`,
      `echo ${b64(task.testPatch)} | base64 -d > /tmp/test.diff && git apply /tmp/test.diff`,
      ...task.image.evalPreamble,
      `${task.image.testCommand} ${directives.join(" ")}`,
    ].join("\n");
    const evalRun = async () => {
      const t0 = performance.now();
      const r = await evaluatePatch(task, task.referencePatch, { image });
      if (r.outcome !== "pass") throw new Error(`gold evaluation of ${task.id}: ${r.outcome} ${r.reason ?? ""}`);
      return { s: (performance.now() - t0) / 1000, test: r.testSeconds, prep: r.prepareSeconds ?? {} };
    };
    const bareRun = async () => {
      const r = await runInImage(image, bareScript, { timeoutMs: task.image.testTimeoutSeconds * 1000 });
      return r.seconds;
    };
    // Warm-up (page cache, first container of the image).
    await evalRun();
    await bareRun();
    const evals: number[] = [];
    const bares: number[] = [];
    const tests: number[] = [];
    const preps: Record<string, number[]> = {};
    for (let i = 0; i < runs; i++) {
      const order = i % 2 === 0 ? ["eval", "bare"] : ["bare", "eval"];
      for (const which of order) {
        if (which === "eval") {
          const e = await evalRun();
          evals.push(e.s);
          tests.push(e.test);
          for (const [k, v] of Object.entries(e.prep)) (preps[k] ??= []).push(v);
        } else bares.push(await bareRun());
      }
      console.log(`run ${i + 1}: eval ${evals.at(-1)!.toFixed(2)} s (test command ${tests.at(-1)!.toFixed(2)} s), bare ${bares.at(-1)!.toFixed(2)} s`);
    }
    const sort = (xs: number[]) => [...xs].sort((a, b) => a - b);
    console.log(`prepare step, p50 seconds: ${Object.entries(preps).map(([k, v]) => `${k} ${percentile(sort(v), 50).toFixed(3)}`).join(", ")}`);
    const evalP50 = percentile(sort(evals), 50);
    const bareP50 = percentile(sort(bares), 50);
    const overhead = evalP50 - bareP50;
    const budget = Math.max(0.2 * bareP50, 1.5);
    console.log(
      `eval p50 ${evalP50.toFixed(2)} s, bare p50 ${bareP50.toFixed(2)} s, overhead ${overhead.toFixed(2)} s ` +
        `(${((overhead / bareP50) * 100).toFixed(0)} %), budget max(20 %, 1.5 s) = ${budget.toFixed(2)} s: ${overhead <= budget ? "within" : "OVER"}` +
        (isPytestCommand(task.image) ? " (pytest: forager's plugin, canaries and guard on)" : " (guard on)"),
    );
    return {
      runs,
      eval_p50_s: evalP50,
      bare_test_p50_s: bareP50,
      eval_min_s: Math.min(...evals),
      bare_min_s: Math.min(...bares),
      test_command_p50_s: percentile(sort(tests), 50),
      overhead_s: overhead,
      overhead_ratio: overhead / bareP50,
      within_budget: overhead <= budget ? 1 : 0,
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
