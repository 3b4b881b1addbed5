/**
 * `forager traces`: Python execution traces of a repository's tests (traces/), from a repository
 * at a commit (`--repo`, `--commit`, `--spec`) or from the start states of task instances
 * (`--tasks`). Writes `DIR/traces.jsonl` (TraceRecord), `DIR/cwm.jsonl` (each record rendered in
 * CWM's trace format, unless `--no-render`) and `DIR/summary.json`; prints a summary.
 */
import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { commitOrHead, int } from "./options";
import { mutateSpec } from "./tasks";
import { buildInstanceImage } from "../images/build";
import { loadTaskFiles } from "../tasks/files";
import { selectionArgs } from "../suite/script";
import { renderCwmTrace } from "../traces/render";
import { traceRepository, type TraceRunResult } from "../traces/run";
import type { TracerSettingsInput } from "../traces/schema";
import type { ImageSpecInput } from "../images/spec";

interface TracesCliOptions {
  tasks?: string;
  task?: string;
  repo?: string;
  commit?: string;
  spec?: string;
  name?: string;
  image?: string;
  tests?: string;
  functions?: string;
  maxFunctions?: number;
  maxCalls: number;
  maxLineEvents: number;
  maxBytes: number;
  maxRepr: number;
  includeTests?: boolean;
  backend: "auto" | "settrace" | "monitoring";
  outcomeCheck: boolean;
  render: boolean;
  timeout?: number;
  cpus: number;
  out: string;
}

const list = (s: string | undefined) => (s ? s.split(/[\s,]+/).filter(Boolean) : undefined);

/** One line of the summary per traced unit (a repository commit or a task). */
function summaryLine(label: string, r: TraceRunResult): string {
  const s = r.stats;
  const o = r.outcome;
  return (
    `${label}: ${s.tests} tests traced (${s.backend}, Python ${s.python}), ${s.functions} functions, ${s.records} traces, ` +
    `${s.events} events (${s.lineEvents} lines), ${(s.bytes / 1e6).toFixed(2)} MB; dropped ${s.droppedLines} over the line cap, ` +
    `${s.droppedBytes} over the size cap; ${s.skippedCap} calls over the per-function cap; ${r.tracedSeconds.toFixed(0)} s` +
    (r.cpuSeconds !== undefined ? ` (${r.cpuSeconds.toFixed(0)} s CPU)` : "") +
    (o ? `; outcomes agree ${o.agree}/${o.tests} (passed untraced ${o.passedUntraced}, traced ${o.passedTraced})` : "") +
    (s.tracerErrors ? `; tracer errors ${s.tracerErrors} (${s.firstError})` : "")
  );
}

export function registerTracesCommand(program: Command): void {
  program
    .command("traces")
    .description("Python execution traces of a repository's tests (CWM's trace format), in its image")
    .option("--tasks <file>", "task file (Task JSONL or SWE-bench): trace each task's start state")
    .option("--task <ids>", "with --tasks: only these task ids (comma-separated)")
    .option("--repo <path|url>", "repository: a local clone (bare or not) or a git URL")
    .option("--commit <sha>", "with --repo: the commit to trace (default: HEAD of a local clone)")
    .option("--spec <file>", "with --repo: image spec JSON (taskgen/mutate/specs/*.json)")
    .option("--name <owner/name>", "repository name in records (default: from --repo)")
    .option("--image <tag>", "with --repo: use this instance image instead of building one")
    .option("--tests <selection>", "pytest selection: node ids, files or directories (comma/space-separated); default the suite (tasks: FAIL_TO_PASS + PASS_TO_PASS)")
    .option("--functions <qualnames>", "only these functions: qualnames or path::qualname (comma-separated)")
    .option("--max-functions <n>", "distinct functions recorded (default no limit)", int)
    .option("--max-calls <n>", "calls recorded per function", int, 10)
    .option("--max-line-events <n>", "drop a trace over this many line events (CWM: 10k)", int, 10_000)
    .option("--max-bytes <n>", "drop a trace over this many bytes (CWM: 1 MB)", int, 1_000_000)
    .option("--max-repr <n>", "characters per repr", int, 200)
    .option("--include-tests", "trace test code too")
    .option("--backend <name>", "auto | settrace | monitoring (auto: sys.monitoring on Python >= 3.12)", "auto")
    .option("--no-outcome-check", "skip the untraced run that checks tracing changes no outcome")
    .option("--no-render", "do not write cwm.jsonl")
    .option("--timeout <s>", "seconds per pytest run", int)
    .option("--cpus <n>", "CPUs of the sandbox", int, 1)
    .requiredOption("--out <dir>", "output directory")
    .action(async (o: TracesCliOptions) => {
      if (!o.tasks === !o.repo) throw new Error("give --tasks FILE or --repo PATH --commit SHA");
      if (o.repo) o.commit = commitOrHead(o.repo, o.commit);
      const settings: TracerSettingsInput = {
        maxCallsPerFunction: o.maxCalls,
        maxLineEvents: o.maxLineEvents,
        maxBytes: o.maxBytes,
        maxReprChars: o.maxRepr,
        ...(o.maxFunctions !== undefined ? { maxFunctions: o.maxFunctions } : {}),
        ...(o.functions ? { functions: list(o.functions) } : {}),
        includeTests: Boolean(o.includeTests),
        backend: o.backend,
      };
      type Unit = { label: string; spec: ImageSpecInput; image?: string; repository: string; commit: string; tests?: string[]; task?: Parameters<typeof traceRepository>[0]["task"] };
      const units: Unit[] = [];
      if (o.repo) {
        const spec = mutateSpec({ repo: o.repo, commit: o.commit!, spec: o.spec, name: o.name });
        units.push({ label: `${spec.repo}@${o.commit!.slice(0, 12)}`, spec, image: o.image, repository: spec.repo, commit: o.commit!, tests: list(o.tests) });
      } else {
        const { tasks, errors } = await loadTaskFiles([o.tasks!]);
        for (const e of errors) process.stderr.write(`${e.file}:${e.line}: ${e.message}\n`);
        const only = list(o.task);
        for (const t of tasks) {
          if (only && !only.includes(t.id)) continue;
          const tests = list(o.tests) ?? selectionArgs([...t.failToPass, ...t.passToPass]);
          units.push({ label: t.id, spec: t.image, repository: t.repo, commit: t.commit, tests, task: t });
        }
        if (!units.length) throw new Error(`no tasks to trace in ${o.tasks}`);
      }
      fs.mkdirSync(o.out, { recursive: true });
      const tracesFile = path.join(o.out, "traces.jsonl");
      const out = fs.openSync(tracesFile, "w");
      const cwm = o.render ? fs.openSync(path.join(o.out, "cwm.jsonl"), "w") : undefined;
      const summary: Record<string, unknown>[] = [];
      try {
        for (const u of units) {
          const say = (m: string) => process.stderr.write(`[${u.label}] ${m}\n`);
          let image = u.image;
          let commit = u.commit;
          if (!image) {
            say("image");
            const built = await buildInstanceImage(u.spec, {
              onProgress: (p) => {
                if (p.phase !== "build" || !p.step) say(p.message);
              },
            });
            image = built.tag;
            commit = built.commit;
          }
          const r = await traceRepository({
            image,
            spec: u.spec,
            repository: u.repository,
            commit,
            ...(u.task ? { task: u.task } : {}),
            ...(u.tests ? { tests: u.tests } : {}),
            settings,
            outcomeCheck: o.outcomeCheck,
            ...(o.timeout ? { timeoutSeconds: o.timeout } : {}),
            cpus: o.cpus,
            onProgress: say,
          });
          for (const rec of r.records) {
            fs.writeSync(out, JSON.stringify(rec) + "\n");
            if (cwm !== undefined) {
              fs.writeSync(cwm, JSON.stringify({ repository: rec.repository, commit: rec.commit, test: rec.test, qualname: rec.qualname, text: renderCwmTrace(rec) }) + "\n");
            }
          }
          console.log(summaryLine(u.label, r));
          if (r.outcome?.disagreements.length) {
            for (const d of r.outcome.disagreements.slice(0, 20)) console.log(`  outcome differs: ${d.test}: untraced ${d.untraced}, traced ${d.traced}`);
          }
          if (r.invalid.length) console.log(`  ${r.invalid.length} invalid tracer line(s): ${r.invalid[0]}`);
          summary.push({
            unit: u.label,
            repository: u.repository,
            commit,
            image,
            stats: r.stats,
            outcome: r.outcome,
            tracedSeconds: r.tracedSeconds,
            cpuSeconds: r.cpuSeconds,
            exitCode: r.exitCode,
            timedOut: r.timedOut,
            invalid: r.invalid,
          });
        }
      } finally {
        fs.closeSync(out);
        if (cwm !== undefined) fs.closeSync(cwm);
        fs.writeFileSync(path.join(o.out, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
      }
      console.log(`→ ${tracesFile}${o.render ? `, ${path.join(o.out, "cwm.jsonl")}` : ""}, ${path.join(o.out, "summary.json")}`);
    });
}
