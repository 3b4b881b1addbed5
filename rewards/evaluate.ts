/**
 * Hidden-test evaluation of one patch for one task, with SWE-bench harness semantics and
 * forager's anti-forgery measures (rewards/forgery.ts, rewards/records.ts, docs/swe-bench.md
 * "Round 3").
 *
 * Always a fresh sandbox from the task's instance image (never an agent's container), network
 * "none". Steps, as the harness: empty patch → not resolved, nothing run; apply the patch
 * (`git apply --verbose`, then `git apply --verbose --reject`, then `patch --batch --forward
 * --fuzz=5 -p1 -i`; the tree is reset between attempts; the method that applied is recorded);
 * reset the files the test patch touches — and every protected path the model patch touched —
 * to the base commit; apply the hidden test patch; run the spec's evalPreamble and test command
 * with the test directives under a timeout; parse and cross-check; grade (gradeInstance).
 *
 * Two engine calls after the sandbox starts: the prepare step (a `python3 -I -S` driver as root,
 * rewards/driver/eval_driver.py: apply, resets, canaries, bytecode, .git moved out, the test
 * user, the guard) and the test run. The test command runs as an unprivileged user (the tree is
 * its; forager's files, .git and the trusted test files are not), with forager's guard in every
 * Python process and, for pytest, forager's plugin; results come back through a FIFO only root
 * reads, and are read afterwards through the engine: nothing of the container runs once the
 * submission's code has run. The run's writable layer is bounded (`diskLimitBytes`).
 *
 * The plan (what runs, in which order, with which configuration) is rewards/eval-plan.ts: pure,
 * unit-tested without Docker, and written beside the logs as `eval.sh`, a script that reproduces
 * the graded run in a fresh container of the image. This module executes it.
 *
 * Logs (harness layout): `<logDir>/<model>/<instance_id>/{patch.diff, eval.sh, test_output.txt,
 * report.json, eval.json, records.txt}` (records.txt: the result channel as read); report.json is written for graded outcomes (pass, fail, forged,
 * patch_apply_failed) and not for timeout or env_error (the harness counts those as errors).
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { buildInstanceImage, TREE_OWNER_UID, type BuildOptions } from "../images/build";
import { defaultStateDir } from "../images/state";
import { EnvironmentError } from "../lib/errors";
import { silentLogger, type Logger } from "../lib/log";
import { Sandbox } from "../sandbox/sandbox";
import type { Task } from "../tasks/schema";
import { openTaskSandbox } from "../tasks/sandbox";
import { escapeMarkers, makeNonce, nonceMarkers, type MachineryFlag } from "./forgery";
import { gradeInstance, InstanceReportSchema, LOG_MARKERS, ResolutionStatusSchema, TestsStatusSchema } from "./grading";
import { TEST_STATUSES } from "../suite/log-parsers";
import { EvalOutcomeSchema, type EvalOutcome } from "./outcome";
import {
  APPLY_COMMANDS,
  ApplyMethodSchema,
  evalShellScript,
  gradeRun,
  parseChannel,
  planEvaluation,
  runOf,
  type ApplyMethod,
  type PrepareOut,
  type PytestProbe,
} from "./eval-plan";

export {
  APPLY_COMMANDS,
  ApplyMethodSchema,
  DEFAULT_MAX_PATCH_BYTES,
  DEFAULT_MAX_PATCH_FILES,
  directivesFromTestIds,
  evaluationSeed,
  isPytestCommand,
  pluginArgs,
  type ApplyMethod,
} from "./eval-plan";

// ---------------------------------------------------------------------------------------------
// Result record

export { EvalOutcomeSchema, type EvalOutcome } from "./outcome";



const CanarySchema = z.object({ id: z.string(), kind: z.enum(["match", "fail"]), form: z.string(), source: z.string() });

export const EvalResultSchema = z.object({
  instanceId: z.string(),
  model: z.string(),
  outcome: EvalOutcomeSchema,
  /** Why the outcome is not `pass` (or notes on a pass), for people. */
  reason: z.string().optional(),
  resolved: z.boolean(),
  resolution: ResolutionStatusSchema,
  /** The instance image evaluated in. */
  image: z.string().optional(),
  patchExists: z.boolean(),
  /** Which command applied the model patch; null when none did (or nothing to apply). */
  applyMethod: ApplyMethodSchema.nullable(),
  /** Files of the model patch reset to the base commit before the hidden tests (protected paths). */
  resetFiles: z.array(z.string()),
  /** The test process's exit status (null: not run, killed by the timeout, unknown). */
  testExitCode: z.number().int().nullable(),
  /** Parsed, cross-checked statuses (empty when the log was not gradable). */
  statuses: z.record(z.string(), z.enum(TEST_STATUSES)),
  /** Status sources used: pytest's summary, the result records of forager's plugin or recorders, the whole log. */
  sources: z.object({ summary: z.boolean(), records: z.boolean(), fullLog: z.boolean() }),
  /** Test ids seen with conflicting statuses (the worst won). */
  conflicts: z.array(z.string()),
  testsStatus: TestsStatusSchema.nullable(),
  /** The harness's per-instance report (also written as report.json). */
  report: InstanceReportSchema,
  /** Wall time of the whole evaluation and of the test command, seconds. */
  seconds: z.number().nonnegative(),
  testSeconds: z.number().nonnegative(),
  /** Where the logs are (when a logDir was given). */
  logDir: z.string().optional(),
  /** Who ran the tests: the unprivileged test user's uid, or "root" (the spec asked for it, or no way to drop privileges). */
  runUser: z.union([z.number().int(), z.literal("root")]).optional(),
  /** Outcome `forged`: the evidence; and what this run wrote and recorded to find it. */
  forgery: z
    .object({
      evidence: z.array(z.string()),
      canaries: z
        .object({ canaries: z.array(CanarySchema), extraFile: z.string().nullable(), skipped: z.array(z.string()) })
        .optional(),
      /** Tamper records of the guard and the plugin (each one is evidence). */
      tamper: z.array(z.string()).default([]),
    })
    .optional(),
  /** Changes of the patch, and reaches of the run, that touch test machinery (evidence, not a verdict). */
  flags: z.array(z.object({ file: z.string(), line: z.number().int(), kind: z.string(), text: z.string() })).default([]),
  /** Bytes of test output dropped between the kept head and tail (0: nothing cut). */
  outputDroppedBytes: z.number().int().nonnegative().default(0),
  /** Seconds of the prepare step's parts (apply, resets, canaries, bytecode, guard, user), for the overhead bench. */
  prepareSeconds: z.record(z.string(), z.number()).optional(),
});
export type EvalResult = z.output<typeof EvalResultSchema>;

/** Test output kept: the first and the last bytes (the summary is at the end), bounded memory. */
export const TEST_OUTPUT_HEAD_BYTES = 1024 * 1024;
export const TEST_OUTPUT_TAIL_BYTES = 8 * 1024 * 1024;
/** Largest result-record stream read back, bytes (64 MiB); a run that writes more is not gradable. */
export const RECORDS_MAX_BYTES = 64 * 1024 * 1024;
/** The uid the test user gets when free in the image (the next free one otherwise): the owner of the tree in forager's instance images. */
export const TEST_UID = TREE_OWNER_UID;

export interface EvaluateOptions {
  /** Instance image tag; default: built (or found in the cache) from `task.image`. */
  image?: string;
  /** Seconds the test command may run (default `task.image.testTimeoutSeconds`). */
  timeoutSeconds?: number;
  /** Root of the harness-layout logs; nothing is written without it. */
  logDir?: string;
  logger?: Logger;
  /** Model name for the log folder and the report (default "model"). */
  model?: string;
  /** Options for building the instance image when `image` is not given. */
  build?: BuildOptions;
  /** CPU cores and memory of the sandbox (default: the sandbox defaults). */
  cpus?: number;
  memoryBytes?: number;
  /** Bound of the evaluation container's writable layer, bytes (default: the sandbox default, 8 GiB); past it → `fail`, "disk limit". */
  diskLimitBytes?: number;
  /** Extra container labels (run id). */
  labels?: Record<string, string>;
  /**
   * Run the tests even for an empty patch (the harness grades an empty patch unresolved without
   * running anything). Task validation uses it: with the starting state alone, FAIL_TO_PASS must
   * fail. The result then carries the statuses; `patchExists` stays false, `applyMethod` null.
   */
  runTestsOnEmptyPatch?: boolean;
  /** Largest patch evaluated, bytes (default {@link DEFAULT_MAX_PATCH_BYTES}); larger → `fail`. */
  maxPatchBytes?: number;
  /** Most files a patch may name (default {@link DEFAULT_MAX_PATCH_FILES}); more → `fail`. */
  maxPatchFiles?: number;
  /** Write canary tests (default true; rewards/forgery.ts canaryEvidence). */
  canaries?: boolean;
  /**
   * Run the test command as an unprivileged user (default true, unless the spec's `evalUser` is
   * "root"): the tree is its, .git, forager's files and the trusted test files are not.
   */
  unprivileged?: boolean;
  /**
   * The secret that seeds an evaluation's random choices (canaries) together with the task and
   * the patch: the same task and patch give the same canaries and grade; a policy that does not
   * know the secret cannot compute them. Default: `FORAGER_EVAL_SECRET`, else a random secret
   * kept in the state directory (`eval-secret`, made on first use).
   */
  secret?: string;
}

/** The harness's folder name for a model (`/` → `__`). */
export function modelFolderName(model: string): string {
  return model.replaceAll("/", "__");
}

let cachedSecret: string | undefined;
/** The evaluation secret (see {@link EvaluateOptions.secret}). */
export function evalSecret(): string {
  if (process.env.FORAGER_EVAL_SECRET) return process.env.FORAGER_EVAL_SECRET;
  if (cachedSecret) return cachedSecret;
  const file = path.join(defaultStateDir(), "eval-secret");
  try {
    cachedSecret = fs.readFileSync(file, "utf8").trim();
  } catch {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const s = randomBytes(32).toString("hex");
    try {
      fs.writeFileSync(file, s + "\n", { mode: 0o600, flag: "wx" });
      cachedSecret = s;
    } catch {
      cachedSecret = fs.readFileSync(file, "utf8").trim(); // another process made it first
    }
  }
  return cachedSecret!;
}




// ---------------------------------------------------------------------------------------------
// The in-container driver (stdlib Python, run with -I -S; rewards/driver/eval_driver.py)

const driverFile = (name: string) => fs.readFileSync(fileURLToPath(new URL(`./driver/${name}`, import.meta.url)), "utf8");
/** The driver's source, sent to the container on each call; the guard and plugin it installs. */
const DRIVER = driverFile("eval_driver.py");
const GUARD = driverFile("guard.py");
const PLUGIN = driverFile("pytest_plugin.py");

/**
 * Probe answers per image id (content-addressed, so an image's pytest and plugins never change):
 * the probe is a Python process importing pytest, about a second, paid once per image per process.
 */
const probeCache = new Map<string, PytestProbe>();

async function driver<T>(sandbox: Sandbox, cfg: Record<string, unknown>, workdir: string): Promise<T> {
  const r = await sandbox.exec(["python3", "-I", "-S", "-c", DRIVER], {
    stdin: JSON.stringify(cfg),
    timeoutSeconds: 300,
    workdir,
  });
  const text = r.stdout.toString("utf8").trim();
  const last = text.slice(text.lastIndexOf("\n") + 1);
  if (r.exitCode !== 0 || !last.startsWith("{")) {
    throw new EnvironmentError(
      `evaluation driver (${String(cfg.mode)}) failed: exit ${r.exitCode}: ${(text + r.stderr.toString("utf8")).slice(-2000)}`,
    );
  }
  return JSON.parse(last) as T;
}

// ---------------------------------------------------------------------------------------------
// evaluatePatch

/**
 * Evaluate `patch` against `task`'s hidden tests in a fresh sandbox: the plan
 * (rewards/eval-plan.ts), executed. Never throws for the patch's or the environment's faults:
 * those are outcomes (`env_error` keeps the reason, and is only forager's or the engine's
 * failure: whatever happens once the patch applied is graded).
 */
export async function evaluatePatch(task: Task, patch: string, opts: EvaluateOptions = {}): Promise<EvalResult> {
  const started = performance.now();
  const log = (opts.logger ?? silentLogger).child({ instance: task.id });
  const model = opts.model ?? "model";
  const spec = task.image;
  const instanceLogDir = opts.logDir ? path.join(opts.logDir, modelFolderName(model), task.id) : undefined;
  const logLines: string[] = [];
  const addLog = (s: string) => logLines.push(s);
  let evalScript: string | undefined;
  let recordsText: string | undefined;
  let prepTimings: Record<string, number> | undefined;
  const plan = planEvaluation(task, patch, {
    secret: opts.secret ?? evalSecret(),
    nonce: makeNonce(16),
    ...(opts.runTestsOnEmptyPatch !== undefined ? { runTestsOnEmptyPatch: opts.runTestsOnEmptyPatch } : {}),
    ...(opts.maxPatchBytes !== undefined ? { maxPatchBytes: opts.maxPatchBytes } : {}),
    ...(opts.maxPatchFiles !== undefined ? { maxPatchFiles: opts.maxPatchFiles } : {}),
    ...(opts.canaries !== undefined ? { canaries: opts.canaries } : {}),
    ...(opts.unprivileged !== undefined ? { unprivileged: opts.unprivileged } : {}),
    testUid: TEST_UID,
    guardSource: GUARD,
    pluginSource: PLUGIN,
  });

  const base = {
    instanceId: task.id,
    model,
    resetFiles: [] as string[],
    testExitCode: null as number | null,
    statuses: {} as Record<string, (typeof TEST_STATUSES)[number]>,
    sources: { summary: false, records: false, fullLog: false },
    conflicts: [] as string[],
    testSeconds: 0,
    image: opts.image,
    flags: plan.flags as MachineryFlag[],
    outputDroppedBytes: 0,
    runUser: undefined as number | "root" | undefined,
  };

  const finish = (r: Omit<z.input<typeof EvalResultSchema>, "seconds" | "logDir">, writeReport: boolean): EvalResult => {
    const result = EvalResultSchema.parse({
      ...r,
      ...(prepTimings ? { prepareSeconds: prepTimings } : {}),
      seconds: (performance.now() - started) / 1000,
      ...(instanceLogDir ? { logDir: instanceLogDir } : {}),
    });
    if (instanceLogDir) {
      fs.mkdirSync(instanceLogDir, { recursive: true });
      fs.writeFileSync(path.join(instanceLogDir, "patch.diff"), patch);
      fs.writeFileSync(path.join(instanceLogDir, "test_output.txt"), logLines.join("\n") + "\n");
      if (recordsText !== undefined) fs.writeFileSync(path.join(instanceLogDir, "records.txt"), recordsText);
      if (evalScript) fs.writeFileSync(path.join(instanceLogDir, "eval.sh"), evalScript, { mode: 0o755 });
      if (writeReport) fs.writeFileSync(path.join(instanceLogDir, "report.json"), JSON.stringify(result.report, null, 4));
      fs.writeFileSync(path.join(instanceLogDir, "eval.json"), JSON.stringify(result, null, 2));
    }
    log.info({ outcome: result.outcome, reason: result.reason, seconds: result.seconds }, "evaluated");
    return result;
  };

  const notGraded = (
    outcome: EvalOutcome,
    reason: string,
    extra: Partial<EvalResult> & { patchExists?: boolean; applied?: boolean; infra?: string } = {},
  ) => {
    const patchExists = extra.patchExists ?? true;
    const g = gradeInstance({
      instanceId: task.id,
      failToPass: task.failToPass,
      passToPass: task.passToPass,
      statuses: null,
      patchApplied: extra.applied ?? false,
      patchExists,
      ...(extra.infra ? { infraFailureReason: extra.infra } : {}),
    });
    const { applied: _a, infra: _i, ...rest } = extra;
    return finish(
      {
        ...base,
        applyMethod: null,
        ...rest,
        outcome,
        reason,
        resolved: false,
        resolution: "RESOLVED_NO",
        patchExists,
        testsStatus: null,
        report: g.report,
      },
      outcome !== "timeout" && outcome !== "env_error",
    );
  };

  if (plan.precheck) {
    addLog(plan.precheck.log);
    return notGraded(plan.precheck.outcome, plan.precheck.reason, { patchExists: plan.precheck.patchExists });
  }

  let image = opts.image;
  let sandbox: Sandbox | undefined;
  try {
    if (!image) {
      const built = await buildInstanceImage(spec, opts.build ?? {});
      image = built.tag;
      base.image = image;
    }
    const timeoutSeconds = opts.timeoutSeconds ?? spec.testTimeoutSeconds;
    // The same door as the agent's: the task's start state (the mutate-fix bug, the commit-mined
    // start commit) is made first, so the patch is graded against the tree the agent saw.
    sandbox = await openTaskSandbox<Sandbox>(task, {
      image,
      config: {
        network: "none",
        lifetimeSeconds: timeoutSeconds + 900,
        commandTimeoutSeconds: 300,
        namePrefix: "forager-eval",
        labels: { ...(opts.labels ?? {}), "forager.eval": task.id },
        ...(opts.cpus ? { cpus: opts.cpus } : {}),
        ...(opts.memoryBytes ? { memoryBytes: opts.memoryBytes } : {}),
        ...(opts.diskLimitBytes !== undefined ? { diskLimitBytes: opts.diskLimitBytes } : {}),
      },
      lazySessions: true,
      logger: log,
    });
    const imageId = ((await sandbox.container.inspect().catch(() => undefined)) as { Image?: string } | undefined)?.Image ?? "";
    addLog(`>>>>> forager evaluation of ${task.id} (model ${model}) in ${image}`);
    const driverConfig = { ...plan.driverConfig, ...(probeCache.has(imageId) ? { probe: probeCache.get(imageId) } : {}) };
    const prep = await driver<PrepareOut>(sandbox, driverConfig, spec.workdir);
    if (prep.error || !prep.base) throw new EnvironmentError(prep.error ?? "no base commit");
    if (prep.timings) log.debug({ timings: prep.timings }, "evaluation prepared");
    prepTimings = prep.timings;
    if (imageId && prep.probe && !("error" in prep.probe)) probeCache.set(imageId, prep.probe);
    if (prep.refused) {
      addLog(`${LOG_MARKERS.applyPatchFail}: ${prep.refused}`);
      return notGraded("patch_apply_failed", `patch refused: ${prep.refused}`);
    }
    for (const a of prep.attempts ?? []) {
      addLog(`>>>>> ${APPLY_COMMANDS[a.method]} (exit ${a.exitCode})`);
      addLog(escapeMarkers(a.output.trimEnd()));
    }
    if (!prep.method) {
      addLog(`${LOG_MARKERS.applyPatchFail}`);
      return notGraded("patch_apply_failed", "no apply command applied the patch (git apply, git apply --reject, patch --fuzz=5)");
    }
    const applyMethod: ApplyMethod | null = prep.method === "none" ? null : prep.method;
    if (applyMethod) addLog(`${LOG_MARKERS.applyPatchPass} (${APPLY_COMMANDS[applyMethod]})`);
    else addLog(`>>>>> Empty patch: tests run on the starting state (validation)`);
    base.resetFiles = prep.reset ?? [];
    if (base.resetFiles.length) addLog(`>>>>> Reset protected files the patch touched: ${base.resetFiles.join(" ")}`);
    if (prep.resetProblems?.length) {
      // Only the patch can make a path it touched impossible to reset (the same reset works on
      // the base tree): its failure, never forager's.
      addLog(`${LOG_MARKERS.applyPatchFail}: forager could not reset what the patch changed: ${prep.resetProblems.slice(0, 5).join("; ")}`);
      return notGraded("patch_apply_failed", `the patch's paths cannot be reset: ${prep.resetProblems.slice(0, 3).join("; ")}`, { applyMethod });
    }
    if (prep.testApply && prep.testApply.exitCode !== 0) {
      addLog(escapeMarkers(prep.testApply.output));
      addLog(`${LOG_MARKERS.testsError}: the test patch did not apply`);
      // The test patch's own files were reset to the base commit first, so only a path the
      // model patch put in its way (a file where it needs a directory) can stop it.
      const testDirs = new Set(plan.testFiles.flatMap((f) => f.split("/").slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join("/"))));
      const inTheWay = (prep.touched ?? []).filter((p) => testDirs.has(p) || plan.testFiles.includes(p));
      if (inTheWay.length) {
        return notGraded("fail", `the hidden test patch did not apply over the patch (it changed ${inTheWay.slice(0, 3).join(", ")})`, { applyMethod, applied: true });
      }
      return notGraded("env_error", `the test patch did not apply: ${prep.testApply.output.slice(-500)}`, {
        applyMethod,
        applied: true,
        infra: "test patch did not apply",
      });
    }

    // Run the tests: as the test user, the guard in every Python process, results by the FIFO.
    const canaries = prep.canaries;
    if (canaries?.canaries.length) addLog(`>>>>> forager: ${canaries.canaries.length} canary tests written`);
    base.runUser = prep.user ? prep.user.uid : "root";
    const runPlan = runOf(plan, spec, prep, sandbox.config.diskLimitBytes);
    evalScript = evalShellScript(plan, task, { driverSource: DRIVER, driverConfig: { ...driverConfig, probe: prep.probe }, run: runPlan, image, model });
    const run = await sandbox.exec(["bash", "-c", runPlan.script], {
      timeoutSeconds,
      workdir: spec.workdir,
      capture: { headBytes: TEST_OUTPUT_HEAD_BYTES, tailBytes: TEST_OUTPUT_TAIL_BYTES },
      ...(sandbox.config.diskLimitBytes ? { diskLimitBytes: sandbox.config.diskLimitBytes } : {}),
    });
    base.testSeconds = run.durationMs / 1000;
    base.outputDroppedBytes = run.droppedBytes ?? 0;
    const output = run.stdout.toString("utf8") + run.stderr.toString("utf8");
    if (base.outputDroppedBytes) addLog(`>>>>> forager: test output cut: ${base.outputDroppedBytes} bytes dropped between the first and the last bytes`);
    const markers = nonceMarkers(makeNonce());
    addLog(`+ ${spec.testCommand}${runPlan.directives.length ? " " + runPlan.directives.join(" ") : ""}`);
    addLog(markers.start);
    const escaped = escapeMarkers(output.replace(/\n$/, ""));
    addLog(escaped);
    addLog(markers.end);
    if (run.diskLimitExceeded) {
      addLog(`>>>>> forager: the tests wrote past the disk limit of ${sandbox.config.diskLimitBytes} bytes: stopped`);
      return notGraded("fail", `disk limit: the test run wrote more than ${sandbox.config.diskLimitBytes} bytes`, { applyMethod, applied: true, testSeconds: base.testSeconds });
    }
    const timedOut = run.timedOut || run.exitCode === null;
    if (timedOut) {
      addLog(`${LOG_MARKERS.testsTimeout} after ${timeoutSeconds} s`);
      return notGraded("timeout", `the tests ran longer than ${timeoutSeconds} s`, {
        applyMethod,
        applied: true,
        testSeconds: base.testSeconds,
      });
    }
    base.testExitCode = run.exitCode;
    addLog(`${LOG_MARKERS.testExitCode}: ${run.exitCode}`);

    // The records, read through the engine (nothing runs in the container any more).
    let records: ReturnType<typeof parseChannel>["records"] | undefined;
    if (runPlan.guarded) {
      const file = await sandbox.readFileFromEngine(plan.channel.out, RECORDS_MAX_BYTES + 1);
      if (file && file.size > RECORDS_MAX_BYTES) {
        addLog(`>>>>> forager: the result records are ${file.size} bytes, over ${RECORDS_MAX_BYTES}: not gradable`);
        return notGraded("fail", `result records too large (${file.size} bytes): the run flooded forager's channel`, { applyMethod, applied: true, testSeconds: base.testSeconds });
      }
      recordsText = file ? file.bytes.toString("utf8") : "";
      records = parseChannel(recordsText).records;
    }
    const g = gradeRun(plan, task, { output: escaped, exitCode: run.exitCode, pytestPlugin: runPlan.pins.foragerPlugin !== undefined }, canaries, records);
    for (const l of g.logLines) addLog(l);
    return finish(
      {
        ...base,
        flags: [...base.flags, ...g.flags],
        sources: g.sources,
        conflicts: g.conflicts,
        statuses: g.statuses ? Object.fromEntries(g.statuses) : {},
        outcome: g.outcome,
        ...(g.reason ? { reason: g.reason } : {}),
        resolved: g.resolved,
        resolution: g.resolution,
        patchExists: !plan.emptyRun,
        applyMethod,
        testsStatus: g.testsStatus,
        report: g.report,
        ...(canaries || g.tamper.length ? { forgery: { evidence: g.evidence, ...(canaries ? { canaries } : {}), tamper: g.tamper } } : {}),
      },
      true,
    );
  } catch (err) {
    const msg = (err as Error).message;
    log.warn({ err: msg }, "evaluation failed (environment)");
    addLog(`>>>>> forager: environment error: ${msg}`);
    return notGraded("env_error", msg, { infra: msg, ...(image ? { image } : {}) });
  } finally {
    await sandbox?.destroy();
  }
}
