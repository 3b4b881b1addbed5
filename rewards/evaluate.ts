/**
 * Hidden-test evaluation of one patch for one task, with SWE-bench harness semantics and
 * forager's anti-forgery measures (rewards/forgery.ts).
 *
 * Always a fresh sandbox from the task's instance image (never an agent's container), network
 * "none". Steps, as the harness: empty patch → not resolved, nothing run; write the patch into
 * the container and apply it (`git apply --verbose`, then `git apply --verbose --reject`, then
 * `patch --batch --forward --fuzz=5 -p1 -i` (the harness without --forward); the tree is reset between attempts; the method that applied is
 * recorded); reset the files the test patch touches — and every test-like file the model patch
 * touched — to the base commit (files absent there are removed); apply the hidden test patch;
 * run the spec's evalPreamble and test command with the test directives under a timeout,
 * between nonce markers forager writes itself; parse and cross-check; grade (gradeInstance);
 * reset the test files again.
 *
 * Three engine calls after the sandbox starts: a prepare step and a collect step run by a small
 * `python3 -I -S` driver (stdlib only; it cannot be shadowed by files of the repository), and
 * the test run itself.
 *
 * Logs (harness layout): `<logDir>/<model>/<instance_id>/{patch.diff, test_output.txt,
 * report.json, eval.json}`; report.json is written for graded outcomes (pass, fail,
 * patch_apply_failed) and not for timeout or env_error (the harness counts those as errors).
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { buildInstanceImage, type BuildOptions } from "../images/build";
import type { ImageSpec } from "../images/spec";
import { EnvironmentError } from "../lib/errors";
import { silentLogger, type Logger } from "../lib/log";
import { Sandbox } from "../sandbox/sandbox";
import type { Task } from "../tasks/schema";
import { testDirectives, diffTargetPaths } from "../tasks/directives";
import { needsStartState, prepareTaskSandbox } from "../tasks/start";
import { shellQuote } from "../lib/shell";
import {
  canaryEvidence,
  crossCheckTestLog,
  diffHeaderPaths,
  machineryFlags,
  PROTECTED_PATH,
  runnerFiles,
  SHADOW_PATH,
  type CanaryPlan,
  type MachineryFlag,
  escapeMarkers,
  makeNonce,
  nonceMarkers,
  TEST_LIKE_PATH,
  unsafePatchPath,
} from "./forgery";
import {
  gradeInstance,
  InstanceReportSchema,
  LOG_MARKERS,
  ResolutionStatusSchema,
  TestsStatusSchema,
} from "./grading";
import { TEST_STATUSES } from "../images/log-parsers";
import { EvalOutcomeSchema, type EvalOutcome } from "./outcome";

// ---------------------------------------------------------------------------------------------
// Result record

export { EvalOutcomeSchema, type EvalOutcome } from "./outcome";

export const ApplyMethodSchema = z.enum(["git_apply", "git_apply_reject", "patch_fuzz"]);
export type ApplyMethod = z.infer<typeof ApplyMethodSchema>;

/**
 * The command each apply method runs: the harness's GIT_APPLY_CMDS, except that `patch` gets
 * `--forward`. With `--batch` alone, GNU patch assumes a patch that "looks reversed" is reversed
 * and applies it backwards: a fix whose context matches the fixed code (a model's patch against
 * a mutate-fix bug evaluated on the wrong tree, or an already-applied change) would silently undo
 * itself. `--forward` refuses such hunks instead, so the fallback can only apply what it says.
 */
export const APPLY_COMMANDS: Record<ApplyMethod, string> = {
  git_apply: "git apply --verbose",
  git_apply_reject: "git apply --verbose --reject",
  patch_fuzz: "patch --batch --forward --fuzz=5 -p1 -i",
};

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
  /** Files of the model patch reset to the base commit before the hidden tests (test-like). */
  resetFiles: z.array(z.string()),
  /** The test process's exit status (null: not run, killed by the timeout, unknown). */
  testExitCode: z.number().int().nullable(),
  /** Parsed, cross-checked statuses (empty when the log was not gradable). */
  statuses: z.record(z.string(), z.enum(TEST_STATUSES)),
  /** Status sources used (pytest: the summary section and the JUnit report). */
  sources: z.object({ summary: z.boolean(), junit: z.boolean(), fullLog: z.boolean() }),
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
  /** Outcome `forged`: the evidence (canaries), and the canaries written for this run. */
  forgery: z
    .object({
      evidence: z.array(z.string()),
      canaries: z.object({ mustFail: z.array(z.string()), mustPass: z.array(z.string()), extraFile: z.string().nullable() }).optional(),
    })
    .optional(),
  /** Non-test changes of the patch that touch test machinery (evidence, not a verdict; rewards/forgery.ts machineryFlags). */
  flags: z.array(z.object({ file: z.string(), line: z.number().int(), kind: z.string(), text: z.string() })).default([]),
  /** Bytes of test output dropped between the kept head and tail (0: nothing cut). */
  outputDroppedBytes: z.number().int().nonnegative().default(0),
});
export type EvalResult = z.output<typeof EvalResultSchema>;

/** Default cap of a submitted patch, bytes (16 MiB): larger is the submission's fault (`fail`). */
export const DEFAULT_MAX_PATCH_BYTES = 16 * 1024 * 1024;
/** Test output kept: the first and the last bytes (the summary is at the end), bounded memory. */
export const TEST_OUTPUT_HEAD_BYTES = 1024 * 1024;
export const TEST_OUTPUT_TAIL_BYTES = 8 * 1024 * 1024;

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
  /** Write canary tests (default true; rewards/forgery.ts canaryEvidence). */
  canaries?: boolean;
}

/** The harness's folder name for a model (`/` → `__`). */
export function modelFolderName(model: string): string {
  return model.replaceAll("/", "__");
}

// ---------------------------------------------------------------------------------------------
// The in-container driver (stdlib Python, run with -I -S; rewards/driver/eval_driver.py)

/** The driver's source (rewards/driver/eval_driver.py), sent to the container on each call. */
const DRIVER = fs.readFileSync(fileURLToPath(new URL("./driver/eval_driver.py", import.meta.url)), "utf8");

interface PrepareOut {
  error?: string;
  base?: string;
  attempts?: { method: ApplyMethod; exitCode: number; output: string }[];
  /** "none": nothing applied (an empty patch run on purpose). */
  method?: ApplyMethod | "none" | null;
  touched?: string[];
  reset?: string[];
  resetProblems?: string[];
  testApply?: { exitCode: number; output: string };
  /** Why the patch was refused after applying (it wrote outside the tree or into .git). */
  refused?: string;
  pytestVersion?: string | null;
  /** Entry-point plugins (`[name, module]`) installed at the base state; null when unknown. */
  plugins?: [string, string][] | null;
  configFile?: string | null;
  configText?: string;
  canaries?: CanaryPlan;
  /** The probe's answer (pytest version, entry-point plugins, configuration file names), cached per image. */
  probe?: PytestProbe;
}

/** What the driver's probe learns of an image's pytest (rewards/driver/eval_driver.py PLUGIN_PROBE). */
interface PytestProbe {
  version: string | null;
  plugins: [string, string][] | null;
  configNames: string[] | null;
}

/**
 * Probe answers per image id (content-addressed, so an image's pytest and plugins never change):
 * the probe is a Python process importing pytest, about a second, paid once per image per process.
 */
const probeCache = new Map<string, PytestProbe>();

interface CollectOut {
  junit: string | null;
  resetProblems: string[];
}

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

/** Is the test command a pytest run (so a JUnit report can be requested)? */
export function isPytestCommand(spec: Pick<ImageSpec, "testCommand" | "logParser">): boolean {
  return spec.logParser === "pytest" && /(^|[\s/])(py\.test|pytest)(\s|$)|-m\s+pytest\b/.test(spec.testCommand);
}


/**
 * Directives for a task without a test patch (mutate-fix): the test files named by pytest ids
 * (`path::name`) of FAIL_TO_PASS and PASS_TO_PASS; none (the whole command) for other runners.
 */
export function directivesFromTestIds(task: Pick<Task, "failToPass" | "passToPass">, spec: ImageSpec): string[] {
  if (spec.logParser !== "pytest") return [];
  const files = new Set<string>();
  for (const id of [...task.failToPass, ...task.passToPass]) {
    const at = id.indexOf("::");
    if (at <= 0) return [];
    files.add(id.slice(0, at));
  }
  return [...files].sort();
}

/** How the test run is pinned (all optional; see {@link testScript}). */
export interface TestRunPins {
  /** pytest: the base commit's configuration file, kept outside the tree (`-c`). */
  configFile?: string;
  /** pytest: plugins installed at the base state; autoload is disabled and these are loaded with `-p`. */
  plugins?: string[];
  /** pytest: the JUnit report path. */
  junitPath?: string;
  /** RLIMIT_FSIZE of the test processes, bytes (the sandbox's disk bound). */
  fileSizeLimitBytes?: number;
}

/**
 * The test run script: forager's environment (never the tree's: PYTEST_ADDOPTS and PYTEST_PLUGINS
 * unset, PYTHONNOUSERSITE), the preamble, then the test command with its pins and the directives.
 * For pytest: `-c <base config> --rootdir <workdir> --confcutdir <workdir>` (a patch's pytest
 * sections in pyproject.toml / setup.cfg / tox.ini are not read), PYTEST_DISABLE_PLUGIN_AUTOLOAD
 * with the base state's plugins loaded by `-p` (a `[pytest11]` entry point the patch adds does not
 * load), and the JUnit report.
 */
export function testScript(spec: ImageSpec, directives: readonly string[], pins: TestRunPins = {}): string {
  const args: string[] = [];
  const env = ["unset PYTEST_ADDOPTS PYTEST_PLUGINS PYTHONSTARTUP", "export PYTHONNOUSERSITE=1"];
  if (pins.fileSizeLimitBytes) env.push(`ulimit -f ${Math.max(1, Math.floor(pins.fileSizeLimitBytes / 1024))} 2>/dev/null`);
  if (pins.configFile) {
    args.push("-c", shellQuote(pins.configFile), `--rootdir=${shellQuote(spec.workdir)}`, `--confcutdir=${shellQuote(spec.workdir)}`);
  }
  if (pins.plugins) {
    env.push("export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1");
    for (const p of pins.plugins) args.push("-p", shellQuote(p));
  }
  if (pins.junitPath) args.push(`--junitxml=${shellQuote(pins.junitPath)}`, "-o", "junit_family=xunit1");
  return [
    "exec 2>&1",
    `cd ${shellQuote(spec.workdir)}`,
    ...env,
    ...spec.evalPreamble,
    [spec.testCommand, ...args, ...directives.map(shellQuote)].join(" "),
  ].join("\n");
}

/**
 * `-p` arguments for the base state's entry-point plugins: the entry-point name for pytest >= 4.5
 * (which loads it by entry point, registered under the same name as autoload would), the module
 * for older pytest.
 */
export function pluginArgs(plugins: readonly [string, string][], pytestVersion: string | null | undefined): string[] {
  const [major, minor] = (pytestVersion ?? "0.0").split(".").map((x) => Number.parseInt(x, 10) || 0) as [number, number];
  const byName = major > 4 || (major === 4 && minor >= 5);
  return [...new Set(plugins.map(([name, mod]) => (byName ? name : mod)))];
}

/** Files holding canaries (for resetting them afterwards). */
function canaryFilesOf(plan: CanaryPlan): string[] {
  return [...new Set([...plan.mustFail, ...plan.mustPass].map((id) => id.split("::")[0] as string))];
}

/** The harness report of a forged run: not resolved, whatever the forged statuses said. */
function forgedReport(report: EvalResult["report"], id: string): EvalResult["report"] {
  const entry = report[id];
  return entry ? { ...report, [id]: { ...entry, resolved: false } } : report;
}

// ---------------------------------------------------------------------------------------------
// evaluatePatch

/**
 * Evaluate `patch` against `task`'s hidden tests in a fresh sandbox. Never throws for the
 * patch's or the environment's faults: those are outcomes (`env_error` keeps the reason).
 */
export async function evaluatePatch(task: Task, patch: string, opts: EvaluateOptions = {}): Promise<EvalResult> {
  const started = performance.now();
  const log = (opts.logger ?? silentLogger).child({ instance: task.id });
  const model = opts.model ?? "model";
  const spec = task.image;
  const instanceLogDir = opts.logDir ? path.join(opts.logDir, modelFolderName(model), task.id) : undefined;
  const logLines: string[] = [];
  const addLog = (s: string) => logLines.push(s);

  const base = {
    instanceId: task.id,
    model,
    resetFiles: [] as string[],
    testExitCode: null as number | null,
    statuses: {} as Record<string, (typeof TEST_STATUSES)[number]>,
    sources: { summary: false, junit: false, fullLog: false },
    conflicts: [] as string[],
    testSeconds: 0,
    image: opts.image,
    flags: [] as MachineryFlag[],
    outputDroppedBytes: 0,
  };

  const finish = (r: Omit<z.input<typeof EvalResultSchema>, "seconds" | "logDir">, writeReport: boolean): EvalResult => {
    const result = EvalResultSchema.parse({
      ...r,
      seconds: (performance.now() - started) / 1000,
      ...(instanceLogDir ? { logDir: instanceLogDir } : {}),
    });
    if (instanceLogDir) {
      fs.mkdirSync(instanceLogDir, { recursive: true });
      fs.writeFileSync(path.join(instanceLogDir, "patch.diff"), patch);
      fs.writeFileSync(path.join(instanceLogDir, "test_output.txt"), logLines.join("\n") + "\n");
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

  const emptyRun = patch.trim() === "" && opts.runTestsOnEmptyPatch === true;
  if (patch.trim() === "" && !emptyRun) {
    addLog(`>>>>> Empty patch: ${task.id} not evaluated`);
    return notGraded("fail", "empty patch", { patchExists: false });
  }
  const maxPatch = opts.maxPatchBytes ?? DEFAULT_MAX_PATCH_BYTES;
  if (Buffer.byteLength(patch) > maxPatch) {
    addLog(`>>>>> forager: the patch is ${Buffer.byteLength(patch)} bytes, over the limit of ${maxPatch}: not evaluated`);
    return notGraded("fail", `patch too large: ${Buffer.byteLength(patch)} bytes > ${maxPatch}`);
  }
  base.flags = machineryFlags(patch);
  const unsafe = unsafePatchPath(patch);
  if (unsafe) {
    addLog(`${LOG_MARKERS.applyPatchFail}: ${unsafe}`);
    return notGraded("patch_apply_failed", `patch refused: ${unsafe}`);
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
    sandbox = await Sandbox.create(
      {
        image,
        network: "none",
        lifetimeSeconds: timeoutSeconds + 900,
        commandTimeoutSeconds: 300,
        workdir: spec.workdir,
        namePrefix: "forager-eval",
        labels: { ...(opts.labels ?? {}), "forager.eval": task.id },
        ...(opts.cpus ? { cpus: opts.cpus } : {}),
        ...(opts.memoryBytes ? { memoryBytes: opts.memoryBytes } : {}),
      },
      { logger: log },
    );
    // Mutate-fix: the buggy starting state (the same squashed commit the agent started from).
    if (needsStartState(task)) await prepareTaskSandbox(sandbox, task);
    const nonce = makeNonce();
    const dir = `/tmp/forager-eval-${makeNonce(6)}`;
    const pytest = isPytestCommand(spec);
    const junitDir = pytest ? `/tmp/forager-junit-${nonce}` : undefined;
    const junitPath = junitDir ? `${junitDir}/report-${makeNonce(8)}.xml` : undefined;
    const testFiles = [...new Set([...diffTargetPaths(task.testPatch), ...diffHeaderPaths(task.testPatch)])];
    const imageId = pytest ? (((await sandbox.container.inspect().catch(() => undefined)) as { Image?: string } | undefined)?.Image ?? "") : "";
    const directives = task.testPatch.trim() !== "" ? testDirectives(task.testPatch, task.repo) : directivesFromTestIds(task, spec);
    const runners = runnerFiles(spec.testCommand);
    const protectedPattern = runners.length
      ? new RegExp(`${PROTECTED_PATH.source}|^(${runners.map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})$`)
      : PROTECTED_PATH;
    addLog(`>>>>> forager evaluation of ${task.id} (model ${model}) in ${image}`);

    const prep = await driver<PrepareOut>(
      sandbox,
      {
        mode: "prepare",
        workdir: spec.workdir,
        dir,
        model: patch,
        emptyRun,
        test: task.testPatch,
        applyCommands: (Object.keys(APPLY_COMMANDS) as ApplyMethod[]).map((m) => [m, APPLY_COMMANDS[m].split(" ")]),
        modelPaths: diffHeaderPaths(patch),
        testFiles: task.testPatch.trim() ? testFiles : directives,
        testLike: TEST_LIKE_PATH.source,
        protected: protectedPattern.source,
        shadow: SHADOW_PATH.source,
        junitDir,
        pytest,
        preamble: spec.evalPreamble,
        ...(probeCache.has(imageId) ? { probe: probeCache.get(imageId) } : {}),
        canaries: pytest && opts.canaries !== false,
        canaryFiles: directives.filter((f) => f.endsWith(".py")),
        mustFail: !/(?:^|\s)(?:-x\b|--exitfirst\b|--maxfail\b)/.test(spec.testCommand),
      },
      spec.workdir,
    );
    if (prep.error || !prep.base) throw new EnvironmentError(prep.error ?? "no base commit");
    if (imageId && prep.probe && prep.probe.version !== null && prep.probe.plugins !== null) probeCache.set(imageId, prep.probe);
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
    if (base.resetFiles.length) addLog(`>>>>> Reset test files the patch touched: ${base.resetFiles.join(" ")}`);
    if (prep.resetProblems?.length) {
      addLog(`${LOG_MARKERS.resetFailed}: ${prep.resetProblems.join("; ")}`);
      return notGraded("env_error", `reset failed: ${prep.resetProblems.join("; ")}`, {
        applyMethod,
        applied: true,
        infra: "reset failed",
      });
    }
    if (prep.testApply && prep.testApply.exitCode !== 0) {
      addLog(escapeMarkers(prep.testApply.output));
      addLog(`${LOG_MARKERS.testsError}: the test patch did not apply`);
      return notGraded("env_error", `the test patch did not apply: ${prep.testApply.output.slice(-500)}`, {
        applyMethod,
        applied: true,
        infra: "test patch did not apply",
      });
    }

    // Run the tests (output bounded: head and tail kept, the rest counted).
    const canaries = prep.canaries;
    if (canaries && (canaries.mustFail.length || canaries.mustPass.length)) {
      addLog(`>>>>> forager: ${canaries.mustFail.length + canaries.mustPass.length} canary tests written`);
    }
    const runDirectives = canaries?.extraFile && directives.length ? [...directives, canaries.extraFile] : directives;
    const pins: TestRunPins = {
      ...(pytest ? { configFile: `${dir}/cfg/${prep.configFile ?? "pytest.ini"}` } : {}),
      ...(pytest && prep.plugins ? { plugins: pluginArgs(prep.plugins, prep.pytestVersion) } : {}),
      ...(junitPath ? { junitPath } : {}),
      fileSizeLimitBytes: sandbox.config.diskLimitBytes,
    };
    const script = testScript(spec, runDirectives, pins);
    const run = await sandbox.exec(["bash", "-c", script], {
      timeoutSeconds,
      workdir: spec.workdir,
      capture: { headBytes: TEST_OUTPUT_HEAD_BYTES, tailBytes: TEST_OUTPUT_TAIL_BYTES },
    });
    base.testSeconds = run.durationMs / 1000;
    base.outputDroppedBytes = run.droppedBytes ?? 0;
    const output = run.stdout.toString("utf8") + run.stderr.toString("utf8");
    if (base.outputDroppedBytes) addLog(`>>>>> forager: test output cut: ${base.outputDroppedBytes} bytes dropped between the first and the last bytes`);
    const markers = nonceMarkers(nonce);
    addLog(`+ ${spec.testCommand}${runDirectives.length ? " " + runDirectives.join(" ") : ""}`);
    addLog(markers.start);
    const escaped = escapeMarkers(output.replace(/\n$/, ""));
    addLog(escaped);
    addLog(markers.end);
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

    const collected = await driver<CollectOut>(
      sandbox,
      {
        mode: "collect",
        workdir: spec.workdir,
        dir,
        junitPath,
        testFiles: [...testFiles, ...(canaries?.extraFile ? [canaries.extraFile] : []), ...(task.testPatch.trim() ? [] : (canaries ? canaryFilesOf(canaries) : []))],
        base: prep.base,
      },
      spec.workdir,
    );
    const check = crossCheckTestLog({
      parser: spec.logParser,
      output: escaped,
      exitCode: run.exitCode,
      ...(pytest ? { junitXml: collected.junit } : {}),
      knownFiles: [...testFiles, ...directives, ...(canaries?.extraFile ? [canaries.extraFile] : [])],
      repo: task.repo,
      exactIds: task.testIds === "exact",
    });
    // Canaries: evidence of a forged run, then out of the statuses.
    let evidence: string[] = [];
    if (canaries && check.statuses) {
      evidence = canaryEvidence(canaries, check.statuses);
      for (const id of [...canaries.mustFail, ...canaries.mustPass]) check.statuses.delete(id);
    }
    base.sources = check.sources;
    base.conflicts = check.conflicts;
    if (check.statuses) base.statuses = Object.fromEntries(check.statuses);
    const g = gradeInstance({
      instanceId: task.id,
      failToPass: task.failToPass,
      passToPass: task.passToPass,
      statuses: check.statuses,
      patchApplied: true,
      patchExists: true,
    });
    const forged = evidence.length > 0;
    const outcome: EvalOutcome = forged ? "forged" : g.resolved ? "pass" : "fail";
    let reason = forged ? `forged: ${evidence.slice(0, 3).join("; ")}` : check.reason;
    if (forged) addLog(`>>>>> forager: FORGED: ${evidence.join("; ")}`);
    if (!reason && !g.resolved && g.testsStatus) {
      const failing = [...g.testsStatus.FAIL_TO_PASS.failure, ...g.testsStatus.PASS_TO_PASS.failure];
      reason = `${g.resolution}: failing ${failing.slice(0, 10).join(", ")}${failing.length > 10 ? ` (+${failing.length - 10})` : ""}`;
    }
    if (check.conflicts.length) addLog(`>>>>> forager: conflicting statuses (worst kept): ${check.conflicts.join(" ")}`);
    if (check.reason) addLog(`>>>>> forager: ${check.reason}`);
    return finish(
      {
        ...base,
        outcome,
        ...(reason ? { reason } : {}),
        resolved: g.resolved && !forged,
        resolution: forged ? "RESOLVED_NO" : g.resolution,
        patchExists: !emptyRun,
        applyMethod,
        testsStatus: g.testsStatus,
        report: forged ? forgedReport(g.report, task.id) : g.report,
        ...(canaries
          ? { forgery: { evidence, canaries: { mustFail: canaries.mustFail, mustPass: canaries.mustPass, extraFile: canaries.extraFile } } }
          : {}),
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
