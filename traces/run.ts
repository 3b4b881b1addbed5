/**
 * Tracing a repository's tests inside its image: one sandbox (network none) from the instance
 * image, the stdlib-only tracer (./forager_tracer.py) copied in at run time, pytest run twice on
 * the same selection with the same fixed hash seed — untraced, then traced — and the outcomes
 * compared (tracing must not change a test's outcome). Records come back as JSONL, validated
 * with {@link RawTraceSchema} and completed with repository and commit.
 */
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { ImageSpecSchema, type ImageSpec, type ImageSpecInput } from "../images/spec";
import { parseTestLog, type StatusMap } from "../suite/log-parsers";
import { Sandbox } from "../sandbox/sandbox";
import { formatZodIssues } from "../lib/zod-util";
import { shellQuote } from "../lib/shell";
import type { Task } from "../tasks/schema";
import { needsStartState } from "../tasks/start";
import { openTaskSandbox } from "../tasks/sandbox";
import { testRunScript } from "../suite/script";
import { passing } from "../taskgen/mutate/validate";
import {
  RawTraceSchema,
  TraceRecordSchema,
  TracerSettingsSchema,
  TracerStatsSchema,
  type TraceRecord,
  type TracerSettingsInput,
  type TracerStats,
} from "./schema";

/** The tracer shipped with forager (copied into the sandbox at run time). */
export const TRACER_FILE = fileURLToPath(new URL("./forager_tracer.py", import.meta.url));
/** Where the tracer's files live in the sandbox. */
export const SANDBOX_DIR = "/tmp/forager-traces";
/** The fixed hash seed of both runs (PYTHONHASHSEED): set and dict-of-str orders are stable. */
export const HASH_SEED = "0";

export interface TraceRunOptions {
  /** Instance image tag (built from `spec`). */
  image: string;
  spec: ImageSpecInput;
  /** `owner/name` and full commit, written into every record. */
  repository: string;
  commit: string;
  /** Trace from this task's start state (its startPatch applied, history squashed). */
  task?: Pick<Task, "id" | "startPatch" | "image" | "startCommit">;
  /** pytest arguments selecting tests (node ids, files, directories); default: the suite directory (tests/, testing/ or test/), else pytest's own discovery. */
  tests?: string[];
  settings?: TracerSettingsInput;
  /** Run the selection untraced too and compare outcomes (default true). */
  outcomeCheck?: boolean;
  /** Seconds per pytest run (default the spec's testTimeoutSeconds, at least 600). */
  timeoutSeconds?: number;
  /** CPUs of the sandbox (default 1). */
  cpus?: number;
  onProgress?: (message: string) => void;
}

/** Traced vs untraced outcome of the same selection. */
export interface OutcomeCheck {
  /** Tests seen in either run. */
  tests: number;
  /** Tests passing (PASSED/XFAIL) in both runs or in neither. */
  agree: number;
  passedUntraced: number;
  passedTraced: number;
  /** Tests whose pass/fail differs (or that ran in one run only): id, untraced, traced status. */
  disagreements: { test: string; untraced: string; traced: string }[];
  untracedSeconds: number;
  /** Container CPU seconds of the untraced run, when the engine reports it. */
  untracedCpuSeconds?: number;
}

export interface TraceRunResult {
  records: TraceRecord[];
  stats: TracerStats;
  /** JSONL lines the tracer wrote that failed the schema (message per line, first 10). */
  invalid: string[];
  statuses: StatusMap;
  outcome?: OutcomeCheck;
  /** Wall seconds of the traced pytest run. */
  tracedSeconds: number;
  /** Container CPU seconds of the traced run (cgroup accounting), when the engine reports it. */
  cpuSeconds?: number;
  /** pytest exit code of the traced run. */
  exitCode: number | null;
  timedOut: boolean;
  /** Tail of the traced run's log. */
  logTail: string;
}

async function cpuSeconds(sandbox: Sandbox): Promise<number | undefined> {
  try {
    const s = (await sandbox.container.stats({ stream: false })) as { cpu_stats?: { cpu_usage?: { total_usage?: number } } };
    const ns = s.cpu_stats?.cpu_usage?.total_usage;
    return ns === undefined ? undefined : ns / 1e9;
  } catch {
    return undefined;
  }
}

/** Compare the pass/fail outcome of every test of two runs (see {@link OutcomeCheck}). */
export function compareOutcomes(untraced: StatusMap, traced: StatusMap, untracedSeconds = 0): OutcomeCheck {
  const ids = [...new Set([...untraced.keys(), ...traced.keys()])].sort();
  const disagreements: OutcomeCheck["disagreements"] = [];
  for (const id of ids) {
    const u = untraced.get(id);
    const t = traced.get(id);
    if (u === undefined || t === undefined || passing(u) !== passing(t)) disagreements.push({ test: id, untraced: u ?? "missing", traced: t ?? "missing" });
  }
  return {
    tests: ids.length,
    agree: ids.length - disagreements.length,
    passedUntraced: [...untraced.values()].filter(passing).length,
    passedTraced: [...traced.values()].filter(passing).length,
    disagreements,
    untracedSeconds,
  };
}

/** Parse the tracer's JSONL into records (bad lines reported with their 1-based line). */
export function parseTracerOutput(text: string, where: { repository: string; commit: string; task?: string }): { records: TraceRecord[]; invalid: string[] } {
  const records: TraceRecord[] = [];
  const invalid: string[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (err) {
      invalid.push(`line ${i + 1}: invalid JSON: ${(err as Error).message}`);
      return;
    }
    const raw = RawTraceSchema.safeParse(v);
    if (!raw.success) {
      invalid.push(`line ${i + 1}: ${formatZodIssues(raw.error)}`);
      return;
    }
    records.push(TraceRecordSchema.parse({ ...raw.data, repository: where.repository, commit: where.commit, ...(where.task ? { task: where.task } : {}) }));
  });
  return { records, invalid };
}

/**
 * Trace the selected tests of a repository in its image.
 * @throws EnvironmentError when the sandbox cannot start; Error when the spec is not a pytest
 *   suite, the task's start state cannot be made, or the traced run leaves no stats (pytest did
 *   not load the plugin: the log tail is in the message).
 */
export async function traceRepository(opts: TraceRunOptions): Promise<TraceRunResult> {
  const spec: ImageSpec = ImageSpecSchema.parse(opts.spec);
  if (spec.logParser !== "pytest") throw new Error(`tracing needs a pytest suite (logParser pytest), not ${spec.logParser}`);
  const settings = TracerSettingsSchema.parse(opts.settings ?? {});
  const progress = opts.onProgress ?? (() => undefined);
  const timeoutSeconds = opts.timeoutSeconds ?? Math.max(600, spec.testTimeoutSeconds);
  if (opts.task && needsStartState(opts.task)) progress(`preparing the start state of ${opts.task.id}`);
  // The same door as episodes and evaluation (the task's start state when a task is given).
  const sandbox = await openTaskSandbox<Sandbox>(opts.task ?? { id: opts.repository, image: spec, startPatch: "" }, {
    image: opts.image,
    config: {
      network: "none",
      cpus: opts.cpus ?? 1,
      lifetimeSeconds: 3 * timeoutSeconds + 1800,
      commandTimeoutSeconds: 600,
      namePrefix: "forager-traces",
      labels: { "forager.traces": opts.repository },
    },
  });
  try {
    const sh = async (script: string, t = 600) => {
      const r = await sandbox.exec(["bash", "-c", script], { workdir: spec.workdir, timeoutSeconds: t });
      return { code: r.exitCode, out: r.stdout.toString("utf8") + r.stderr.toString("utf8"), timedOut: r.timedOut };
    };
    await sh(`mkdir -p ${SANDBOX_DIR}/lib ${SANDBOX_DIR}/out`);
    await sandbox.writeFile(`${SANDBOX_DIR}/lib/forager_tracer.py`, fs.readFileSync(TRACER_FILE));
    const out = `${SANDBOX_DIR}/out/traces.jsonl`;
    const statsFile = `${SANDBOX_DIR}/out/stats.json`;
    await sandbox.writeFile(`${SANDBOX_DIR}/config.json`, JSON.stringify({ ...settings, root: spec.workdir, out, stats: statsFile }));

    let tests = opts.tests;
    if (!tests) {
      const d = (await sh('for d in tests testing test; do [ -d "$d" ] && { echo "$d"; break; }; done; true')).out.trim();
      tests = d ? [d] : [];
    }
    const listFile = tests.length ? `${SANDBOX_DIR}/tests.txt` : undefined;
    if (listFile) await sandbox.writeFile(listFile, tests.join("\n") + "\n");
    const reset = async () => {
      const r = await sh("git checkout -q -- . && git clean -fdq");
      if (r.code !== 0) throw new Error(`resetting the tree failed: ${r.out.slice(-500)}`);
    };
    const run = async (traced: boolean) => {
      const env = traced
        ? `export PYTHONHASHSEED=${HASH_SEED} FORAGER_TRACE_CONFIG=${SANDBOX_DIR}/config.json PYTHONPATH=${SANDBOX_DIR}/lib\${PYTHONPATH:+:$PYTHONPATH}; rm -f ${shellQuote(out)} ${shellQuote(statsFile)}`
        : `export PYTHONHASHSEED=${HASH_SEED}`;
      const extraArgs = `-p no:cacheprovider${traced ? " -p forager_tracer" : ""}`;
      const started = performance.now();
      const r = await sh(testRunScript(spec, { env: [env], listFile, extraArgs, timeoutSeconds, noBytecode: true }), timeoutSeconds + 120);
      const m = /forager-exit-code=(\d+)\s*$/.exec(r.out);
      const exitCode = m ? Number(m[1]) : null;
      const statuses: StatusMap = new Map();
      for (const [id, s] of parseTestLog("pytest", r.out, { repo: spec.repo })) statuses.set(id.split(/\s/)[0] ?? id, s);
      return { statuses, log: r.out, exitCode, timedOut: r.timedOut || exitCode === 124 || exitCode === 137, seconds: (performance.now() - started) / 1000 };
    };

    let untraced: Awaited<ReturnType<typeof run>> | undefined;
    let untracedCpu: number | undefined;
    if (opts.outcomeCheck ?? true) {
      progress(`untraced run of ${tests.length ? tests.join(" ") : "the suite"}`);
      const c0 = await cpuSeconds(sandbox);
      untraced = await run(false);
      const c1 = c0 === undefined ? undefined : await cpuSeconds(sandbox);
      if (c0 !== undefined && c1 !== undefined) untracedCpu = c1 - c0;
      await reset();
    }
    progress("traced run");
    const cpu0 = await cpuSeconds(sandbox);
    const traced = await run(true);
    const cpu1 = cpu0 === undefined ? undefined : await cpuSeconds(sandbox);
    let statsText: string;
    try {
      statsText = (await sandbox.readFile(statsFile)).toString("utf8");
    } catch {
      throw new Error(`the traced run left no tracer stats (exit ${traced.exitCode}); log tail:\n${traced.log.slice(-2000)}`);
    }
    const stats = TracerStatsSchema.parse(JSON.parse(statsText));
    const text = (await sandbox.readFile(out).catch(() => Buffer.alloc(0))).toString("utf8");
    const { records, invalid } = parseTracerOutput(text, { repository: opts.repository, commit: opts.commit, task: opts.task?.id });
    return {
      records,
      stats,
      invalid: invalid.slice(0, 10),
      statuses: traced.statuses,
      ...(untraced ? { outcome: { ...compareOutcomes(untraced.statuses, traced.statuses, untraced.seconds), ...(untracedCpu !== undefined ? { untracedCpuSeconds: untracedCpu } : {}) } } : {}),
      tracedSeconds: traced.seconds,
      ...(cpu0 !== undefined && cpu1 !== undefined ? { cpuSeconds: cpu1 - cpu0 } : {}),
      exitCode: traced.exitCode,
      timedOut: traced.timedOut,
      logTail: traced.log.slice(-4000),
    };
  } finally {
    await sandbox.destroy();
  }
}
