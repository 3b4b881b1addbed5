/**
 * SWE-bench grading: from a parsed test log to the harness's per-instance report and
 * resolution, and from per-instance outcomes to the harness's run report.
 *
 * Reproduces the behaviour of the public SWE-bench harness, v5.0.0
 * (`swebench/harness/grading.py`: get_logs_eval, test_passed / test_maintained / test_failed,
 * get_eval_tests_report, get_resolution_status, get_eval_report; `swebench/harness/reporting.py`:
 * make_run_report), written independently. Report shapes are the harness's, key for key, so a
 * forager report reads like one the harness wrote; the zod schemas below are the one definition
 * of both records.
 *
 * Test outcome semantics (v5.0.0; v4.1 differed only for SKIPPED):
 * - PASSED and XFAIL pass;
 * - FAILED, ERROR and a test absent from the log fail;
 * - SKIPPED fails for FAIL_TO_PASS (a skipped target test is no resolution) but is kept, i.e.
 *   counted a success, for PASS_TO_PASS (a skip is not a regression; `test_maintained`).
 *   v4.1 put a skipped test in neither list, so a patch skipping every FAIL_TO_PASS test was
 *   RESOLVED_FULL. `skipped: "fail"` makes a skip fail in both lists (stricter than the harness).
 * - An empty FAIL_TO_PASS or PASS_TO_PASS list counts as all passing (ratio 1).
 * Resolution: FULL when both ratios are 1; PARTIAL when 0 < FAIL_TO_PASS ratio < 1 and the
 * PASS_TO_PASS ratio is 1; NO otherwise. `resolved` is FULL.
 */
import { z } from "zod";
import type { LogParserName } from "../images/spec";
import { parseTestLog, type ParseOptions, type StatusMap, type TestStatus } from "../suite/log-parsers";

// ---------------------------------------------------------------------------------------------
// Schemas (the one definition of the report records)

/** `{success: [...], failure: [...]}` — test ids in dataset order. */
export const TestOutcomeListsSchema = z.object({
  success: z.array(z.string()),
  failure: z.array(z.string()),
});
export type TestOutcomeLists = z.infer<typeof TestOutcomeListsSchema>;

/** `tests_status`: the four categories; FAIL_TO_FAIL / PASS_TO_FAIL stay empty unless graded. */
export const TestsStatusSchema = z.object({
  FAIL_TO_PASS: TestOutcomeListsSchema,
  PASS_TO_PASS: TestOutcomeListsSchema,
  FAIL_TO_FAIL: TestOutcomeListsSchema,
  PASS_TO_FAIL: TestOutcomeListsSchema,
});
export type TestsStatus = z.infer<typeof TestsStatusSchema>;

/**
 * One instance's entry in the per-instance report (harness `report.json`):
 * `{patch_is_None, patch_exists, patch_successfully_applied, resolved, tests_status?}`.
 * `tests_status` is present when the log could be graded. `infra_failure` /
 * `infra_failure_reason` are v5.0's advisory fields, written only when known. Unknown keys are
 * kept (reports from other harness versions load).
 */
export const InstanceReportEntrySchema = z.looseObject({
  patch_is_None: z.boolean(),
  patch_exists: z.boolean(),
  patch_successfully_applied: z.boolean(),
  resolved: z.boolean(),
  tests_status: TestsStatusSchema.optional(),
  infra_failure: z.boolean().optional(),
  infra_failure_reason: z.string().optional(),
});
export type InstanceReportEntry = z.infer<typeof InstanceReportEntrySchema>;

/** The per-instance report: `{[instance_id]: InstanceReportEntry}` (one key). */
export const InstanceReportSchema = z.record(z.string(), InstanceReportEntrySchema);
export type InstanceReport = z.infer<typeof InstanceReportSchema>;

const sortedIds = z.array(z.string());

/**
 * The run report (harness make_run_report, `schema_version: 2`): counts and sorted id lists.
 * Keys as v4.1/v5.0 write them; v5.0's extra `infra_failure_*` / `ambiguous_failure_*` /
 * `failure_reasons` and the docker keys (`unstopped_*`, `unremoved_images`) are tolerated.
 */
export const RunReportSchema = z.looseObject({
  total_instances: z.number().int().nonnegative(),
  submitted_instances: z.number().int().nonnegative(),
  completed_instances: z.number().int().nonnegative(),
  resolved_instances: z.number().int().nonnegative(),
  unresolved_instances: z.number().int().nonnegative(),
  empty_patch_instances: z.number().int().nonnegative(),
  error_instances: z.number().int().nonnegative(),
  completed_ids: sortedIds,
  incomplete_ids: sortedIds,
  empty_patch_ids: sortedIds,
  submitted_ids: sortedIds,
  resolved_ids: sortedIds,
  unresolved_ids: sortedIds,
  error_ids: sortedIds,
  schema_version: z.literal(2),
});
export type RunReport = z.infer<typeof RunReportSchema>;

export const ResolutionStatusSchema = z.enum(["RESOLVED_FULL", "RESOLVED_PARTIAL", "RESOLVED_NO"]);
export type ResolutionStatus = z.infer<typeof ResolutionStatusSchema>;

/** The harness's eval types: PASS_AND_FAIL (all python datasets) and FAIL_ONLY. */
export type EvalType = "pass_and_fail" | "fail_only";

// ---------------------------------------------------------------------------------------------
// Log → status map (harness get_logs_eval)

/** Harness log markers (constants in swebench/harness/constants). */
export const LOG_MARKERS = {
  applyPatchFail: ">>>>> Patch Apply Failed",
  applyPatchPass: ">>>>> Applied Patch",
  resetFailed: ">>>>> Reset Failed",
  testsError: ">>>>> Tests Errored",
  testsTimeout: ">>>>> Tests Timed Out",
  startTestOutput: ">>>>> Start Test Output",
  endTestOutput: ">>>>> End Test Output",
  testExitCode: ">>>>> Test Exit Code",
} as const;

/**
 * Evidence that a runner executed at all, for an empty status map (v5.0 SUITE_RAN): non-zero
 * counts in the summaries of karma, mocha, jest, tap, jasmine, and openlayers' `': ok` lines.
 */
const SUITE_RAN =
  /Executed [1-9]\d* of \d+|TOTAL: [1-9]\d* (?:SUCCESS|FAILED)|[1-9]\d* passing|Tests:\s+[1-9]\d*|Test Suites:\s+(?:\d+ \w+, )*[1-9]\d* total|^# tests [1-9]\d*|[1-9]\d* specs?, \d+ failures?|': ok$/m;

export type EvalLogVerdict =
  | { ok: true; statuses: StatusMap; exitCode?: number }
  | {
      ok: false;
      reason: "bad_marker" | "no_markers" | "no_results" | "exit_code_mismatch";
      detail: string;
      exitCode?: number;
    };

/** `>>>>> Test Exit Code: N` recorded after the end marker, if present. */
export function parseTestExitCode(content: string): number | undefined {
  const m = /^>>>>> Test Exit Code:\s*(-?\d+)/m.exec(content);
  return m ? Number(m[1]) : undefined;
}

/**
 * Read a whole evaluation log the way the harness's get_logs_eval (v5.0) does:
 * 1. any of the failure markers (patch apply failed, reset failed, tests errored, timed out)
 *    → not gradable;
 * 2. both the start and end markers must be present; the text between them is parsed, and when
 *    that yields nothing the whole log is parsed (output may land outside the markers);
 * 3. an empty result with no evidence that a suite ran → not gradable;
 * 4. a recorded non-zero test exit code while the log reports no FAILED/ERROR at all → not
 *    gradable (output spoofed by the patch, e.g. a conftest printing PASSED lines).
 * A non-gradable log makes the harness report `patch_successfully_applied: false`.
 */
export function readEvalLog(parser: LogParserName, content: string, options: ParseOptions = {}): EvalLogVerdict {
  const exitCode = parseTestExitCode(content);
  const withCode = exitCode === undefined ? {} : { exitCode };
  const bad = [
    LOG_MARKERS.applyPatchFail,
    LOG_MARKERS.resetFailed,
    LOG_MARKERS.testsError,
    LOG_MARKERS.testsTimeout,
  ].filter((m) => content.includes(m));
  if (bad.length > 0) return { ok: false, reason: "bad_marker", detail: bad.join(", "), ...withCode };
  const start = content.indexOf(LOG_MARKERS.startTestOutput);
  const end = content.indexOf(LOG_MARKERS.endTestOutput);
  if (start < 0 || end < 0) {
    return { ok: false, reason: "no_markers", detail: "test output markers missing", ...withCode };
  }
  // As the harness: between the first start marker and the next start or end marker.
  const sliced = (content.split(LOG_MARKERS.startTestOutput)[1] ?? "").split(LOG_MARKERS.endTestOutput)[0] ?? "";
  let statuses = parseTestLog(parser, sliced, options);
  if (statuses.size === 0) statuses = parseTestLog(parser, content, options);
  if (statuses.size === 0 && !SUITE_RAN.test(content)) {
    return { ok: false, reason: "no_results", detail: "no test results and no sign the suite ran", ...withCode };
  }
  if (exitCode !== undefined && exitCode !== 0 && statuses.size > 0) {
    const anyFailure = [...statuses.values()].some((s) => s === "FAILED" || s === "ERROR");
    if (!anyFailure) {
      return {
        ok: false,
        reason: "exit_code_mismatch",
        detail: `test command exited ${exitCode} but the log reports no failure`,
        exitCode,
      };
    }
  }
  return { ok: true, statuses, ...withCode };
}

// ---------------------------------------------------------------------------------------------
// Test id lookup and outcome

/**
 * Find the status-map key for a dataset test id.
 * 1. exact match;
 * 2. (forager) django ids across Python versions: `test_x (mod.Class)` (Python < 3.11, the form
 *    of most django rows) ↔ `test_x (mod.Class.test_x)` (Python ≥ 3.11, the django 5.0 rows),
 *    since forager's images may run an older django on a newer Python;
 * 3. (v5.0 `_resolve_case`) an id cut inside its parameter (more `[` than `]`, 676 such ids in
 *    Verified) matches the keys it prefixes, when they all agree on pass vs fail.
 */
export function resolveTestId(id: string, statuses: ReadonlyMap<string, TestStatus>): string | undefined {
  if (statuses.has(id)) return id;
  const dj = /^(\w+) \(([\w.]+)\)$/.exec(id);
  if (dj) {
    const [, name, where] = dj as unknown as [string, string, string];
    const alt = where.endsWith(`.${name}`) ? `${name} (${where.slice(0, -name.length - 1)})` : `${name} (${where}.${name})`;
    if (statuses.has(alt)) return alt;
  }
  const opens = id.split("[").length - 1;
  const closes = id.split("]").length - 1;
  if (opens > closes) {
    const matches = [...statuses.keys()].filter((k) => k.startsWith(id));
    if (matches.length > 0) {
      const outcomes = new Set(matches.map((k) => isPassing(statuses.get(k))));
      if (outcomes.size === 1) return matches[0];
    }
  }
  return undefined;
}

function isPassing(status: TestStatus | undefined): boolean {
  return status === "PASSED" || status === "XFAIL";
}

/** How skipped tests grade: the harness v5.0 rule, or failing everywhere. */
export type SkippedRule = "harness" | "fail";

// ---------------------------------------------------------------------------------------------
// Per-instance grading

export interface GradeInput {
  instanceId: string;
  failToPass: readonly string[];
  passToPass: readonly string[];
  /** Graded only when given (harness `calculate_to_fail`); reported empty otherwise. */
  failToFail?: readonly string[];
  passToFail?: readonly string[];
  /** Parsed test log; null when the log was not gradable (see readEvalLog). */
  statuses: ReadonlyMap<string, TestStatus> | null;
  /** The model patch applied (git apply / patch fallbacks). */
  patchApplied: boolean;
  /** False when the prediction has no patch at all (harness `model_patch is None`). */
  patchExists: boolean;
  /** Default "pass_and_fail" (every python row in the datasets). */
  evalType?: EvalType;
  /** Default "harness" (v5.0). */
  skipped?: SkippedRule;
  /** v5.0 advisory: why the log was not gradable when the environment is to blame. */
  infraFailureReason?: string;
}

export interface GradeResult {
  instanceId: string;
  /** `{[instanceId]: entry}`, the harness's report.json content. */
  report: InstanceReport;
  resolution: ResolutionStatus;
  resolved: boolean;
  /** null when not graded (no patch, patch not applied, log not gradable). */
  testsStatus: TestsStatus | null;
}

const emptyLists = (): TestOutcomeLists => ({ success: [], failure: [] });

/**
 * Sort tests into success/failure lists (harness get_eval_tests_report).
 * pass_and_fail: FAIL_TO_PASS (and the *_TO_FAIL lists) succeed when passing, fail when
 * FAILED/ERROR/SKIPPED/missing; PASS_TO_PASS also succeeds when SKIPPED (unless
 * skipped = "fail"). fail_only: a test fails only when recorded FAILED.
 */
export function testsStatusFor(
  input: Pick<GradeInput, "failToPass" | "passToPass" | "failToFail" | "passToFail" | "evalType" | "skipped">,
  statuses: ReadonlyMap<string, TestStatus>,
): TestsStatus {
  const evalType = input.evalType ?? "pass_and_fail";
  const strictSkips = (input.skipped ?? "harness") === "fail";
  const classify = (ids: readonly string[] | undefined, keepSkipped: boolean): TestOutcomeLists => {
    const out = emptyLists();
    for (const id of ids ?? []) {
      let ok: boolean;
      if (evalType === "fail_only") {
        ok = statuses.get(id) !== "FAILED";
      } else {
        const key = resolveTestId(id, statuses);
        const status = key === undefined ? undefined : statuses.get(key);
        ok = isPassing(status) || (keepSkipped && status === "SKIPPED");
      }
      (ok ? out.success : out.failure).push(id);
    }
    return out;
  };
  return {
    FAIL_TO_PASS: classify(input.failToPass, false),
    PASS_TO_PASS: classify(input.passToPass, !strictSkips),
    FAIL_TO_FAIL: classify(input.failToFail, false),
    PASS_TO_FAIL: classify(input.passToFail, false),
  };
}

function ratio(lists: TestOutcomeLists): number {
  const total = lists.success.length + lists.failure.length;
  return total === 0 ? 1 : lists.success.length / total;
}

/** FULL / PARTIAL / NO from the FAIL_TO_PASS and PASS_TO_PASS ratios (harness get_resolution_status). */
export function resolutionStatus(tests: Pick<TestsStatus, "FAIL_TO_PASS" | "PASS_TO_PASS">): ResolutionStatus {
  const f2p = ratio(tests.FAIL_TO_PASS);
  const p2p = ratio(tests.PASS_TO_PASS);
  if (f2p === 1 && p2p === 1) return "RESOLVED_FULL";
  if (f2p > 0 && f2p < 1 && p2p === 1) return "RESOLVED_PARTIAL";
  return "RESOLVED_NO";
}

/**
 * Grade one instance (harness get_eval_report with include_tests_status).
 * - no patch → `patch_is_None: true`, nothing else;
 * - patch not applied, or `statuses` null (log not gradable) → `patch_exists: true`,
 *   `patch_successfully_applied: false` (the harness does not tell the two apart), not resolved;
 * - otherwise the tests are graded and `tests_status` written.
 */
export function gradeInstance(input: GradeInput): GradeResult {
  const entry: InstanceReportEntry = {
    patch_is_None: false,
    patch_exists: false,
    patch_successfully_applied: false,
    resolved: false,
  };
  const done = (testsStatus: TestsStatus | null, resolution: ResolutionStatus): GradeResult => ({
    instanceId: input.instanceId,
    report: { [input.instanceId]: entry },
    resolution,
    resolved: resolution === "RESOLVED_FULL",
    testsStatus,
  });
  if (!input.patchExists) {
    entry.patch_is_None = true;
    return done(null, "RESOLVED_NO");
  }
  entry.patch_exists = true;
  if (!input.patchApplied || input.statuses === null) {
    if (input.infraFailureReason !== undefined) {
      entry.infra_failure = true;
      entry.infra_failure_reason = input.infraFailureReason;
    }
    return done(null, "RESOLVED_NO");
  }
  entry.patch_successfully_applied = true;
  const testsStatus = testsStatusFor(input, input.statuses);
  const resolution = resolutionStatus(testsStatus);
  entry.resolved = resolution === "RESOLVED_FULL";
  entry.tests_status = testsStatus;
  return done(testsStatus, resolution);
}

// ---------------------------------------------------------------------------------------------
// Run report

/** One submitted prediction's outcome in a run. */
export interface RunInstanceOutcome {
  instanceId: string;
  /** The prediction's patch; "" or null counts as an empty patch (never evaluated). */
  modelPatch: string | null | undefined;
  /** The per-instance report when evaluation finished; absent/null when it errored. */
  report?: InstanceReport | null;
}

export interface RunReportOptions {
  /** Ids of the dataset (or the selected instances); default: the submitted ids. */
  datasetIds?: readonly string[];
}

const sorted = (ids: Iterable<string>): string[] => [...new Set(ids)].sort(compareCodeUnits);

/** Python's sort order for str (code points; equal to UTF-16 order for these ids). */
function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The run report (harness make_run_report, schema_version 2). For each dataset instance:
 * no prediction → incomplete; empty patch → empty_patch; a report → completed, then resolved
 * or unresolved by its `resolved` flag (a report without the instance's entry → error, still
 * completed, as the harness's KeyError branch); no report → error.
 * `submitted_*` count every prediction given, as the harness counts `predictions`.
 */
export function buildRunReport(results: readonly RunInstanceOutcome[], options: RunReportOptions = {}): RunReport {
  const byId = new Map<string, RunInstanceOutcome>();
  for (const r of results) byId.set(r.instanceId, r);
  const datasetIds = [...new Set(options.datasetIds ?? byId.keys())];
  const completed: string[] = [];
  const resolved: string[] = [];
  const unresolved: string[] = [];
  const incomplete: string[] = [];
  const emptyPatch: string[] = [];
  const errors: string[] = [];
  for (const id of datasetIds) {
    const r = byId.get(id);
    if (!r) {
      incomplete.push(id);
      continue;
    }
    if (r.modelPatch === "" || r.modelPatch === null || r.modelPatch === undefined) {
      emptyPatch.push(id);
      continue;
    }
    if (!r.report) {
      errors.push(id);
      continue;
    }
    completed.push(id);
    const entry = r.report[id];
    if (!entry) errors.push(id);
    else (entry.resolved ? resolved : unresolved).push(id);
  }
  const report: RunReport = {
    total_instances: datasetIds.length,
    submitted_instances: byId.size,
    completed_instances: completed.length,
    resolved_instances: resolved.length,
    unresolved_instances: unresolved.length,
    empty_patch_instances: emptyPatch.length,
    error_instances: errors.length,
    completed_ids: sorted(completed),
    incomplete_ids: sorted(incomplete),
    empty_patch_ids: sorted(emptyPatch),
    submitted_ids: sorted(byId.keys()),
    resolved_ids: sorted(resolved),
    unresolved_ids: sorted(unresolved),
    error_ids: sorted(errors),
    schema_version: 2,
  };
  return report;
}
