/**
 * Anti-forgery for hidden-test evaluation: what a submitted patch must not be able to fake.
 *
 * The public harness (and SWE-smith) graded logs that the code under test writes into: a patch
 * could print `PASSED x` lines, print the end marker and a fake exit code, add a conftest.py that
 * rewrites reports, or leave the run early. forager's counter-measures, all pure functions here
 * (evaluate.ts wires them in):
 *
 * - markers carry a per-evaluation random nonce and are written by forager around the captured
 *   output (never echoed inside the container), the exit code line is written by forager from the
 *   process's real exit status, and lines of the test output that look like markers are escaped;
 * - model-patch files that are test files (the test patch's files, and any test-like path:
 *   {@link TEST_LIKE_PATH}) are reset to the base commit before the hidden tests are applied;
 * - statuses: when an id is seen with conflicting statuses, the worst wins; pytest's statuses
 *   come from its own short summary section (the last one) and its JUnit XML report (written to
 *   a nonce path created after the patch applied), a test passes only when the sources that
 *   mention it agree, and both are cross-checked with the exit code;
 * - a run that did not finish (no JUnit report, no summary) grades the absent tests as failing.
 */
import { randomBytes } from "node:crypto";
import type { LogParserName } from "../images/spec";
import { LOG_MARKERS, readEvalLog } from "./grading";
import { parsePytestJunitXml, parseTestLog, type ParseOptions, type StatusMap, type TestStatus } from "./log-parsers";

/**
 * Test-like repository paths: a directory named `test`, `tests` or `testing`; `test_*.py`,
 * `*_test.py`, `*_tests.py`; `conftest.py`; the pytest configuration files `pytest.ini` and
 * `tox.ini`. No SWE-bench Lite/Verified gold patch touches such a path (checked on all 823 rows).
 */
export const TEST_LIKE_PATH = /(^|\/)(tests?|testing)\/|(^|\/)test_[^/]*\.py$|_tests?\.py$|(^|\/)conftest\.py$|(^|\/)(pytest|tox)\.ini$/;

export function isTestLikePath(p: string): boolean {
  return TEST_LIKE_PATH.test(p);
}

/** A fresh random nonce (hex). */
export function makeNonce(bytes = 12): string {
  return randomBytes(bytes).toString("hex");
}

/** The harness's marker words followed by the nonce. */
export function nonceMarkers(nonce: string): { start: string; end: string } {
  return { start: `${LOG_MARKERS.startTestOutput} ${nonce}`, end: `${LOG_MARKERS.endTestOutput} ${nonce}` };
}

/** Prefix put before output lines that look like harness markers (`>>>>>`). */
export const ESCAPE_PREFIX = "[forager: output line] ";

/** Escape lines of untrusted output that start like a harness marker, so no reader takes them for one. */
export function escapeMarkers(text: string): string {
  return text.replace(/^(\s*>>>>>)/gm, `${ESCAPE_PREFIX}$1`);
}

/**
 * The text between forager's nonce markers, or undefined when either is missing or repeated
 * (which cannot happen unless the nonce leaked).
 */
export function sliceBetweenNonceMarkers(log: string, nonce: string): string | undefined {
  const { start, end } = nonceMarkers(nonce);
  const s = log.indexOf(start);
  const e = log.lastIndexOf(end);
  if (s < 0 || e < 0 || e < s || log.indexOf(start, s + 1) >= 0 || log.indexOf(end) !== e) return undefined;
  return log.slice(s + start.length, e);
}

// ---------------------------------------------------------------------------------------------
// Patch paths

/** Every path a diff names in its headers (`diff --git a/X b/Y`, `--- a/X`, `+++ b/Y`, renames). */
export function diffHeaderPaths(diff: string): string[] {
  const out = new Set<string>();
  const strip = (p: string) => p.replace(/^"(.*)"$/, "$1").replace(/\t.*$/, "");
  for (const m of diff.matchAll(/^diff --git a\/(\S+) b\/(\S+)\s*$/gm)) {
    out.add(m[1] as string);
    out.add(m[2] as string);
  }
  for (const m of diff.matchAll(/^(?:---|\+\+\+) (?:[ab]\/)?(.+)$/gm)) {
    const p = strip(m[1] as string);
    if (p !== "/dev/null") out.add(p);
  }
  for (const m of diff.matchAll(/^(?:rename|copy) (?:from|to) (.+)$/gm)) out.add(strip(m[1] as string));
  return [...out];
}

/** Why a patch may not be applied at all (a path into `.git`, an absolute path, `..`), or undefined. */
export function unsafePatchPath(diff: string): string | undefined {
  for (const p of diffHeaderPaths(diff)) {
    const parts = p.split("/");
    if (p.startsWith("/")) return `absolute path ${p}`;
    if (parts.includes("..")) return `path with .. (${p})`;
    if (parts.some((x) => x === ".git")) return `path inside .git (${p})`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Statuses

const SEVERITY: Record<TestStatus, number> = { PASSED: 0, XFAIL: 1, SKIPPED: 2, FAILED: 3, ERROR: 4 };

/** The worse of two statuses (ERROR > FAILED > SKIPPED > XFAIL > PASSED). */
export function worse(a: TestStatus, b: TestStatus): TestStatus {
  return SEVERITY[a] >= SEVERITY[b] ? a : b;
}

const isFailure = (s: TestStatus | undefined) => s === "FAILED" || s === "ERROR";

/**
 * Parse with the named parser, then let the worst status win for every id: each line is also
 * parsed alone and any worse status seen for an id the whole-text parse found replaces it.
 * (The parsers let a later line override an earlier one, so a `PASSED x` printed after the real
 * `FAILED x` would otherwise win.)
 */
export function parseWorstWins(
  parser: LogParserName,
  text: string,
  options: ParseOptions = {},
  conflicts?: string[],
): StatusMap {
  const map = parseTestLog(parser, text, options);
  if (map.size === 0) return map;
  for (const line of text.split(/\r\n?|\n/)) {
    if (line.trim() === "") continue;
    for (const [id, s] of parseTestLog(parser, line, options)) {
      const cur = map.get(id);
      if (cur === undefined || cur === s) continue;
      if (conflicts && !conflicts.includes(id)) conflicts.push(id);
      map.set(id, worse(cur, s));
    }
  }
  return map;
}

/** pytest's short summary header, `=== short test summary info ===`. */
const SUMMARY_HEADER = /^=+ short test summary info =+\s*$/;
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

/**
 * The part of a pytest log from its LAST `short test summary info` header to the end: the
 * runner's own per-test summary (`-rA`), printed after every test ran. Undefined without one.
 */
export function pytestSummarySection(output: string): string | undefined {
  const lines = output.replace(ANSI, "").split(/\r\n?|\n/);
  for (let i = lines.length - 1; i >= 0; i--) {
    if (SUMMARY_HEADER.test(lines[i] as string)) return lines.slice(i + 1).join("\n");
  }
  return undefined;
}

export interface CrossCheckInput {
  parser: LogParserName;
  /** The test command's output (the text between forager's markers; escaped). */
  output: string;
  /** The test process's exit status as the engine reported it (null: unknown). */
  exitCode: number | null;
  /**
   * pytest's JUnit XML report: undefined when none was requested (non-pytest commands), null
   * when requested but not written.
   */
  junitXml?: string | null;
  /** Repository-relative test files (the test patch's), for JUnit classname splitting. */
  knownFiles?: readonly string[];
  repo?: string;
}

export interface CrossCheckResult {
  /** Statuses to grade with; null when the log cannot be trusted (→ not resolved). */
  statuses: StatusMap | null;
  /** Why the log was not trusted (prefix "inconsistent test log" when the sources disagree). */
  reason?: string;
  /** Which sources were used. */
  sources: { summary: boolean; junit: boolean; fullLog: boolean };
  /** Ids seen with conflicting statuses (the worst won), for the record. */
  conflicts: string[];
}

/**
 * The statuses of a test run, cross-checked (see the module comment).
 *
 * pytest with a JUnit report requested:
 * - no report → the process did not finish normally → not gradable;
 * - statuses = the summary section (worst wins within it) merged with the JUnit report: an id
 *   both mention counts as its status only when they agree, otherwise the worst; ids the summary
 *   reports as XPASS are dropped (absent = failing, as the harness);
 * - ids neither mentions are taken from the whole log (the harness's reading; needed for the
 *   pytest repository's own ids printed by inner runs) only when their file did not run at all;
 * - exit 0 with a failure in the summary or the report, or a non-zero exit with no failure in
 *   any source → "inconsistent test log", not gradable.
 * Other parsers: the harness's reading (readEvalLog, including its exit-code rule) with the
 * worst status winning.
 */
export function crossCheckTestLog(input: CrossCheckInput): CrossCheckResult {
  const opts: ParseOptions = input.repo ? { repo: input.repo } : {};
  const sources = { summary: false, junit: false, fullLog: false };
  const conflicts: string[] = [];
  // The harness's reading of the section (markers rebuilt without the nonce; the output is escaped).
  const synthetic =
    `${LOG_MARKERS.startTestOutput}\n${input.output}\n${LOG_MARKERS.endTestOutput}\n` +
    (input.exitCode === null ? "" : `${LOG_MARKERS.testExitCode}: ${input.exitCode}\n`);
  const harness = readEvalLog(input.parser, synthetic, opts);

  if (input.parser !== "pytest" || input.junitXml === undefined) {
    if (!harness.ok) return { statuses: null, reason: `${harness.reason}: ${harness.detail}`, sources, conflicts };
    sources.fullLog = true;
    const worst = parseWorstWins(input.parser, input.output, opts, conflicts);
    const statuses: StatusMap = new Map(harness.statuses);
    for (const [id, s] of statuses) {
      const w = worst.get(id);
      if (w !== undefined) statuses.set(id, worse(s, w));
    }
    return { statuses, sources, conflicts };
  }

  if (input.junitXml === null || !/<testsuite\b/.test(input.junitXml)) {
    return {
      statuses: null,
      reason: "inconsistent test log: no JUnit report (the test process did not finish normally)",
      sources,
      conflicts,
    };
  }
  sources.junit = true;
  const junit = parsePytestJunitXml(input.junitXml, { knownFiles: input.knownFiles, repo: input.repo });
  const summaryText = pytestSummarySection(input.output);
  const summary = summaryText === undefined ? new Map<string, TestStatus>() : parseWorstWins("pytest", summaryText, opts, conflicts);
  sources.summary = summaryText !== undefined;
  const xpass = new Set<string>();
  for (const m of (summaryText ?? "").matchAll(/^XPASS (\S+)/gm)) xpass.add(m[1] as string);

  const merged: StatusMap = new Map();
  for (const id of new Set([...summary.keys(), ...junit.keys()])) {
    if (xpass.has(id)) continue;
    const a = summary.get(id);
    const b = junit.get(id);
    if (a !== undefined && b !== undefined && a !== b && !conflicts.includes(id)) conflicts.push(id);
    merged.set(id, a === undefined ? b! : b === undefined ? a : worse(a, b));
  }
  const runnerFailure = [...merged.values()].some(isFailure);
  const fileOf = (id: string) => id.split("::")[0] as string;
  const ranFiles = new Set([...merged.keys(), ...xpass].map(fileOf));
  if (harness.ok || harness.reason === "exit_code_mismatch") {
    const full = parseTestLog("pytest", input.output, opts);
    for (const [id, s] of full) {
      if (!merged.has(id) && !xpass.has(id) && !ranFiles.has(fileOf(id))) {
        merged.set(id, s);
        sources.fullLog = true;
      }
    }
  }
  if (input.exitCode === 0 && runnerFailure) {
    return {
      statuses: null,
      reason: "inconsistent test log: exit code 0 but the runner's summary or JUnit report has failures",
      sources,
      conflicts,
    };
  }
  if (input.exitCode !== 0 && ![...merged.values()].some(isFailure)) {
    return {
      statuses: null,
      reason: `inconsistent test log: exit code ${input.exitCode ?? "unknown"} but no source reports a failure`,
      sources,
      conflicts,
    };
  }
  if (merged.size === 0) return { statuses: null, reason: "no test results", sources, conflicts };
  return { statuses: merged, sources, conflicts };
}
