/**
 * An evaluation as a plan: everything it will do, decided from the task, the patch and the
 * options, before any container exists — and, once the prepare step has answered, the test run's
 * script, then the grade of what came back. Pure functions (no I/O, no Docker); rewards/evaluate.ts
 * `evaluatePatch` executes the plan. As the SWE-bench harness writes `eval.sh` beside its logs,
 * {@link evalShellScript} writes the whole run as one script that reproduces it in a fresh
 * container of the image.
 *
 * 1. {@link planEvaluation}: what is graded without a container (an empty, oversized or unsafe
 *    patch), the directives, the start state, the hidden and runner files, the seed of the random
 *    choices, the prepare step's configuration (rewards/driver/eval_driver.py);
 * 2. {@link runOf}: the test run (suite/script.ts testRunScript) from the plan and the prepare
 *    step's answer (pytest's configuration and plugins, the canaries, the test user, the guard);
 * 3. {@link gradeRun}: records × log × exit code (rewards/forgery.ts crossCheckTestLog), the
 *    evidence of a forged run, the harness's grade.
 */
import { createHmac } from "node:crypto";
import { z } from "zod";
import type { ImageSpec } from "../images/spec";
import { shellQuote } from "../lib/shell";
import { testRunScript, type TestRunPins } from "../suite/script";
import { testDirectives, diffTargetPaths } from "../tasks/directives";
import type { Task } from "../tasks/schema";
import { needsStartState, squashScript } from "../tasks/start";
import {
  canaryEvidence,
  crossCheckTestLog,
  diffHeaderPaths,
  isCanaryId,
  machineryFlags,
  PROTECTED_PATH,
  runnerFiles,
  SHADOW_PATH,
  TEST_LIKE_PATH,
  unsafePatchPath,
  type CanaryPlan,
  type MachineryFlag,
} from "./forgery";
import { gradeInstance, LOG_MARKERS, type InstanceReport, type ResolutionStatus, type TestsStatus } from "./grading";
import type { EvalOutcome } from "./outcome";
import { evidenceOf, parseChannel, type ChannelRecord } from "./records";
import type { StatusMap } from "../suite/log-parsers";

/** How a patch was applied (the harness's commands, in order). */
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

/** Default cap of a submitted patch, bytes (16 MiB): larger is the submission's fault (`fail`). */
export const DEFAULT_MAX_PATCH_BYTES = 16 * 1024 * 1024;
/**
 * Default cap of the files a patch names (2000): more is the submission's fault (`fail`) before
 * anything runs. SWE-bench Lite/Verified gold patches name at most 21 files.
 */
export const DEFAULT_MAX_PATCH_FILES = 2000;
/** Where the test user's home is made. */
export const TEST_HOME = "/home/forager-test";

/** Is the test command a pytest run (so forager's plugin and canaries apply)? */
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

/** The seed of one evaluation: HMAC-SHA256(secret, task id ‖ test patch ‖ patch), hex. */
export function evaluationSeed(secret: string, task: Pick<Task, "id" | "testPatch">, patch: string): string {
  return createHmac("sha256", secret).update(task.id).update("\0").update(task.testPatch).update("\0").update(patch).digest("hex");
}

/** What the driver's probe learns of an image's Python and pytest (rewards/driver/eval_driver.py PLUGIN_PROBE). */
export interface PytestProbe {
  version: string | null;
  plugins: [string, string][] | null;
  configNames: string[] | null;
  site?: string[];
  pytestFile?: string | null;
}

/** The prepare step's answer (rewards/driver/eval_driver.py). */
export interface PrepareOut {
  error?: string;
  base?: string;
  attempts?: { method: ApplyMethod; exitCode: number; output: string }[];
  /** "none": nothing applied (an empty patch run on purpose). */
  method?: ApplyMethod | "none" | null;
  touched?: string[];
  reset?: string[];
  /** Paths the patch touched that could not be reset: the patch's failure. */
  resetProblems?: string[];
  testApply?: { exitCode: number; output: string };
  /** Why the patch was refused after applying (it wrote outside the tree or into .git). */
  refused?: string;
  pytestVersion?: string | null;
  /** Entry-point plugins (`[name, module]`) installed at the base state; null when unknown. */
  plugins?: [string, string][] | null;
  configFile?: string | null;
  configText?: string;
  /** The readable copy of the base configuration (for `-c`). */
  configDir?: string;
  canaries?: CanaryPlan;
  /** The probe's answer, cached per image. */
  probe?: PytestProbe;
  /** Where the guard's .pth went (null: no site-packages directory found: no guard). */
  guardPth?: string | null;
  runnerInTree?: boolean;
  gitHidden?: boolean;
  user?: { uid: number; gid: number; name: string; home: string; chowned: number; protected: number };
  bytecodeRemoved?: number;
  /** Seconds per step of the driver (probe, apply, reset, test patch, canaries, bytecode, guard, user). */
  timings?: Record<string, number>;
}

/** What the plan needs besides the task and the patch. */
export interface PlanOptions {
  /** The secret that seeds the random choices with the task and the patch (rewards/evaluate.ts evalSecret). */
  secret: string;
  /** Random hex for the names of forager's private paths in the container (not graded: any value). */
  nonce: string;
  /** Run the tests on an empty patch (task validation). */
  runTestsOnEmptyPatch?: boolean;
  maxPatchBytes?: number;
  maxPatchFiles?: number;
  /** Write canaries (default true; pytest only). */
  canaries?: boolean;
  /** Run as the unprivileged test user (default: unless the spec's evalUser is "root"). */
  unprivileged?: boolean;
  /** The uid the test user wants (the tree's owner in forager's images). */
  testUid: number;
  /** The sources the prepare step installs: the guard and the pytest plugin. */
  guardSource: string;
  pluginSource: string;
}

/** Everything an evaluation will do (see the module comment). */
export interface EvalPlan {
  taskId: string;
  patch: string;
  /** Graded without a container: the outcome, its reason and the log line (empty, too large, too many files, unsafe). */
  precheck?: { outcome: EvalOutcome; reason: string; log: string; patchExists: boolean };
  /** Tests run on the starting state with no patch (validation). */
  emptyRun: boolean;
  /** The task needs its start state made first (mutate-fix, commit-mined). */
  startState: boolean;
  /** Flags of the patch text (machinery it touches). */
  flags: MachineryFlag[];
  seed: string;
  /** 12 hex of the seed: the guard's and plugin's module names. */
  tag: string;
  pytest: boolean;
  /** The test patch's files (or the directives of a task without one). */
  testFiles: string[];
  directives: string[];
  hiddenFiles: string[];
  runners: string[];
  channel: { fifo: string; out: string };
  /** The prepare step's configuration, without the probe (added when the image's is cached). */
  driverConfig: Record<string, unknown>;
}

/** The plan of an evaluation (pure; see {@link EvalPlan}). */
export function planEvaluation(task: Task, patch: string, o: PlanOptions): EvalPlan {
  const spec = task.image;
  const emptyRun = patch.trim() === "" && o.runTestsOnEmptyPatch === true;
  const patchPaths = diffHeaderPaths(patch);
  const seed = evaluationSeed(o.secret, task, patch);
  const tag = seed.slice(0, 12);
  const pytest = isPytestCommand(spec);
  const testFiles = [...new Set([...diffTargetPaths(task.testPatch), ...diffHeaderPaths(task.testPatch)])];
  const directives = task.testPatch.trim() !== "" ? testDirectives(task.testPatch, task.repo) : directivesFromTestIds(task, spec);
  const runners = runnerFiles(spec.testCommand);
  if (spec.logParser === "sympy") runners.push("sympy/utilities/runtests.py", "sympy/testing/runtests.py", "bin/test");
  const protectedPattern = runners.length
    ? new RegExp(`${PROTECTED_PATH.source}|^(${runners.map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})$`)
    : PROTECTED_PATH;
  const hiddenFiles = [...new Set([...testFiles, ...directives])].filter((f) => f.endsWith(".py"));
  const unprivileged = o.unprivileged ?? spec.evalUser !== "root";
  const secretDir = `/var/tmp/forager-${o.nonce.slice(0, 16)}`;
  const channel = { fifo: `/var/tmp/forager-ch-${o.nonce.slice(16, 32) || o.nonce}/c`, out: `${secretDir}/records` };
  const plan: EvalPlan = {
    taskId: task.id,
    patch,
    emptyRun,
    startState: needsStartState(task),
    flags: [],
    seed,
    tag,
    pytest,
    testFiles,
    directives,
    hiddenFiles,
    runners,
    channel,
    driverConfig: {},
  };
  const maxPatch = o.maxPatchBytes ?? DEFAULT_MAX_PATCH_BYTES;
  const maxFiles = o.maxPatchFiles ?? DEFAULT_MAX_PATCH_FILES;
  const unsafe = unsafePatchPath(patch);
  if (patch.trim() === "" && !emptyRun) plan.precheck = { outcome: "fail", reason: "empty patch", log: `>>>>> Empty patch: ${task.id} not evaluated`, patchExists: false };
  else if (Buffer.byteLength(patch) > maxPatch) {
    plan.precheck = { outcome: "fail", reason: `patch too large: ${Buffer.byteLength(patch)} bytes > ${maxPatch}`, log: `>>>>> forager: the patch is ${Buffer.byteLength(patch)} bytes, over the limit of ${maxPatch}: not evaluated`, patchExists: true };
  } else if (patchPaths.length > maxFiles) {
    plan.precheck = { outcome: "fail", reason: `patch names too many files: ${patchPaths.length} > ${maxFiles}`, log: `>>>>> forager: the patch names ${patchPaths.length} files, over the limit of ${maxFiles}: not evaluated`, patchExists: true };
  } else if (unsafe) {
    plan.flags = machineryFlags(patch);
    plan.precheck = { outcome: "patch_apply_failed", reason: `patch refused: ${unsafe}`, log: `${LOG_MARKERS.applyPatchFail}: ${unsafe}`, patchExists: true };
  }
  if (plan.precheck) return plan;
  plan.flags = machineryFlags(patch);
  plan.driverConfig = {
    mode: "prepare",
    workdir: spec.workdir,
    dir: secretDir,
    model: patch,
    emptyRun,
    test: task.testPatch,
    applyCommands: (Object.keys(APPLY_COMMANDS) as ApplyMethod[]).map((m) => [m, APPLY_COMMANDS[m].split(" ")]),
    modelPaths: patchPaths,
    testFiles: task.testPatch.trim() ? testFiles : directives,
    testLike: TEST_LIKE_PATH.source,
    protected: `${protectedPattern.source}|\\.py[co]$|(^|/)__pycache__/`,
    shadow: SHADOW_PATH.source,
    pytest,
    preamble: spec.evalPreamble,
    canaries: pytest && o.canaries !== false,
    canaryFiles: directives.filter((f) => f.endsWith(".py")),
    mustFail: !/(?:^|\s)(?:-x\b|--exitfirst\b|--maxfail\b)/.test(spec.testCommand),
    seed,
    sourcesFirst: task.failToPass.filter((id) => id.includes("::")).map((id) => id.replace(/\[.*$/, "")),
    hiddenFiles,
    runnerFiles: runners,
    hideGit: true,
    ...(unprivileged ? { user: { want: o.testUid, home: TEST_HOME } } : {}),
    guard: {
      dir: `/opt/forager-guard-${tag}`,
      tag,
      guardSource: o.guardSource,
      pluginSource: o.pluginSource,
      config: { channel: channel.fifo, workdir: spec.workdir, testLike: TEST_LIKE_PATH.source, hiddenFiles, runnerFiles: runners },
    },
  };
  return plan;
}

/** The test run of a plan once prepared: its directives (the extra canary file at a seeded place), its pins, its script. */
export interface RunPlan {
  directives: string[];
  pins: TestRunPins;
  /** forager's guard is in the run (records come back through the channel). */
  guarded: boolean;
  script: string;
}

/** The test run (pure): suite/script.ts testRunScript with the pins the prepare step made possible. */
export function runOf(plan: EvalPlan, spec: ImageSpec, prep: PrepareOut, diskLimitBytes: number | undefined): RunPlan {
  const canaries = prep.canaries;
  // The extra canary file goes at a seeded place among the directives, not last.
  const at = Number.parseInt(plan.seed.slice(12, 20), 16) % (plan.directives.length + 1);
  const directives = canaries?.extraFile && plan.directives.length ? [...plan.directives.slice(0, at), canaries.extraFile, ...plan.directives.slice(at)] : plan.directives;
  const guarded = prep.guardPth !== undefined && prep.guardPth !== null;
  const pins: TestRunPins = {
    ...(plan.pytest && prep.configDir ? { configFile: `${prep.configDir}/${prep.configFile ?? "pytest.ini"}` } : {}),
    ...(plan.pytest && prep.plugins ? { plugins: pluginArgs(prep.plugins, prep.pytestVersion) } : {}),
    ...(plan.pytest && guarded ? { foragerPlugin: `_forager_pytest_${plan.tag}` } : {}),
    ...(diskLimitBytes ? { fileSizeLimitBytes: diskLimitBytes } : {}),
    ...(guarded ? { channel: plan.channel } : {}),
    ...(prep.user ? { user: { uid: prep.user.uid, name: prep.user.name, home: prep.user.home } } : {}),
  };
  return { directives, pins, guarded, script: testRunScript(spec, { directives, pins }) };
}

/** What a graded run gives the result record. */
export interface GradedRun {
  outcome: EvalOutcome;
  reason?: string;
  resolved: boolean;
  resolution: ResolutionStatus;
  statuses: StatusMap | null;
  sources: { summary: boolean; records: boolean; fullLog: boolean };
  conflicts: string[];
  testsStatus: TestsStatus | null;
  report: InstanceReport;
  /** Evidence of a forged run (tamper records, contradictions, canaries); empty when honest. */
  evidence: string[];
  tamper: string[];
  /** Runtime flags of the guard and plugin (as machinery flags). */
  flags: MachineryFlag[];
  /** Lines for the log (forged, conflicts, the cross-check's reason). */
  logLines: string[];
}

/**
 * Grade a finished run (pure): the records (undefined when the run had no guard) × the log (the
 * test output between forager's markers, escaped) × the exit status; canary evidence; the
 * harness's grade. A forged run is not resolved, whatever the statuses say.
 */
export function gradeRun(plan: EvalPlan, task: Task, run: { output: string; exitCode: number | null; pytestPlugin: boolean }, canaries: CanaryPlan | undefined, records: readonly ChannelRecord[] | undefined): GradedRun {
  const ev = records ? evidenceOf(records) : { tamper: [], flags: [] };
  const knownFiles = [...plan.testFiles, ...plan.directives, ...(canaries?.extraFile ? [canaries.extraFile] : [])];
  const check = crossCheckTestLog({
    parser: task.image.logParser,
    output: run.output,
    exitCode: run.exitCode,
    ...(records ? { records } : {}),
    pytestPlugin: run.pytestPlugin,
    knownFiles,
    repo: task.repo,
    exactIds: task.testIds === "exact",
  });
  let evidence = [...ev.tamper.map((t) => `tamper: ${t}`), ...check.contradictions.map((c) => `contradiction: ${c}`)];
  if (canaries && check.statuses) {
    const collectFailed = new Set((records ?? []).filter((r) => r.k === "collect-fail" && typeof r.id === "string").map((r) => String(r.id).split("::")[0] as string));
    evidence = [...evidence, ...canaryEvidence(canaries, check.statuses, collectFailed)];
    for (const id of [...check.statuses.keys()]) if (canaries.canaries.some((c) => isCanaryId(c, id))) check.statuses.delete(id);
  }
  const g = gradeInstance({
    instanceId: task.id,
    failToPass: task.failToPass,
    passToPass: task.passToPass,
    statuses: check.statuses,
    patchApplied: true,
    patchExists: true,
  });
  const forged = evidence.length > 0;
  const logLines: string[] = [];
  let reason = forged ? `forged: ${evidence.slice(0, 3).join("; ")}` : check.reason;
  if (forged) logLines.push(`>>>>> forager: FORGED: ${evidence.join("; ")}`);
  if (!reason && !g.resolved && g.testsStatus) {
    const failing = [...g.testsStatus.FAIL_TO_PASS.failure, ...g.testsStatus.PASS_TO_PASS.failure];
    reason = `${g.resolution}: failing ${failing.slice(0, 10).join(", ")}${failing.length > 10 ? ` (+${failing.length - 10})` : ""}`;
  }
  if (check.conflicts.length) logLines.push(`>>>>> forager: conflicting statuses (worst kept): ${check.conflicts.join(" ")}`);
  if (check.reason) logLines.push(`>>>>> forager: ${check.reason}`);
  const entry = g.report[task.id];
  return {
    outcome: forged ? "forged" : g.resolved ? "pass" : "fail",
    ...(reason ? { reason } : {}),
    resolved: g.resolved && !forged,
    resolution: forged ? "RESOLVED_NO" : g.resolution,
    statuses: check.statuses,
    sources: check.sources,
    conflicts: check.conflicts,
    testsStatus: g.testsStatus,
    report: forged && entry ? { ...g.report, [task.id]: { ...entry, resolved: false } } : g.report,
    evidence,
    tamper: ev.tamper,
    flags: runtimeFlags(ev.flags),
    logLines,
  };
}

/** Runtime flags of the guard and plugin as machinery flags (`file:line` split when it is one). */
export function runtimeFlags(flags: { why: string; where: string }[]): MachineryFlag[] {
  return flags.slice(0, 50).map(({ why, where }) => {
    const m = /^(.*):(\d+)$/.exec(where);
    return { file: m ? (m[1] as string) : where, line: m ? Number(m[2]) : 0, kind: `run: ${why}`.slice(0, 200), text: "" };
  });
}

/** Records of a channel's text (rewards/records.ts), re-exported for the executor. */
export { parseChannel };

/** A heredoc delimiter that does not occur in `text`. */
function delimiter(base: string, text: string): string {
  let d = base;
  for (let i = 0; text.includes(d); i++) d = `${base}_${i}`;
  return d;
}

/**
 * The whole evaluation as one bash script, as the harness writes `eval.sh`: run as root in a
 * fresh container of the image (`docker run --rm -i --network none IMAGE bash -s < eval.sh`), it
 * makes the start state, runs the prepare step with the same configuration (so the same canaries,
 * resets and test user), runs the tests as they were graded, and prints the result records after
 * them (`>>>>> forager: result records`). Reading its output with forager's grading gives the grade.
 */
export function evalShellScript(plan: EvalPlan, task: Task, o: { driverSource: string; driverConfig: Record<string, unknown>; run: RunPlan; image?: string; model?: string }): string {
  const spec = task.image;
  const lines = [
    "#!/bin/bash",
    `# forager's evaluation of ${task.id}${o.model ? ` (model ${o.model})` : ""}${o.image ? ` in ${o.image}` : ""}, as graded.`,
    "# Run it as root in a fresh container of the instance image:",
    `#   docker run --rm -i --network none ${o.image ?? "IMAGE"} bash -s < eval.sh`,
    `cd ${shellQuote(spec.workdir)}`,
  ];
  if (plan.startState) {
    const start = task.startPatch;
    const d = delimiter("FORAGER_START_PATCH", start);
    const startTree = task.startCommit ? { from: task.image.commit, to: task.startCommit } : undefined;
    lines.push("# the task's start state", `bash -c ${shellQuote(squashScript(start.trim() !== "", startTree))} <<'${d}' >/dev/null`, start.replace(/\n?$/, "\n") + d);
  }
  const config = JSON.stringify(o.driverConfig);
  const dd = delimiter("FORAGER_DRIVER", o.driverSource);
  const dc = delimiter("FORAGER_CONFIG", config);
  lines.push(
    "# the prepare step (rewards/driver/eval_driver.py) with the configuration the graded run had",
    `cat > /tmp/forager-driver.py <<'${dd}'`,
    o.driverSource.replace(/\n?$/, "\n") + dd,
    `python3 -I -S /tmp/forager-driver.py <<'${dc}' > /tmp/forager-prepare.json`,
    config + "\n" + dc,
    "rm -f /tmp/forager-driver.py",
    "# the test run",
    `( ${o.run.script.split("\n").join("\n")}\n)`,
    'rc=$?',
    ...(o.run.guarded ? ['echo ">>>>> forager: result records"', `cat ${shellQuote(plan.channel.out)}`] : []),
    'echo ">>>>> Test Exit Code: $rc"',
  );
  return lines.join("\n") + "\n";
}
