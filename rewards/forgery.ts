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
import { diffBlocks, diffHeaderPaths, headerName, stripAB } from "../lib/diff";
import { LOG_MARKERS, readEvalLog } from "./grading";

export { diffHeaderPaths, unquoteCPath } from "../lib/diff";
import { parsePytestJunitXml, parseTestLog, type ParseOptions, type StatusMap, type TestStatus } from "../images/log-parsers";

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

/** Why one path is unsafe (absolute, `..`, `.git` in any spelling), or undefined. */
export function unsafePath(p: string): string | undefined {
  if (p.startsWith("/") || p.startsWith("~")) return `absolute path ${p}`;
  const parts = p.split("/");
  if (parts.includes("..")) return `path with .. (${p})`;
  // git itself treats ".git" with trailing dots or spaces, any case, and the 8.3 name git~1 as .git.
  if (parts.some((x) => /^\.git[. ]*$/i.test(x) || /^git~\d+$/i.test(x))) return `path inside .git (${p})`;
  if (p.includes("\0")) return `path with a NUL byte`;
  return undefined;
}

/** Symlinks a git diff creates (`new file mode 120000` / `new mode 120000`) and their targets. */
export function diffSymlinks(diff: string): { path: string; target: string }[] {
  const out: { path: string; target: string }[] = [];
  for (const { path, text } of diffBlocks(diff)) {
    if (!/^(?:new file mode|new mode) 120000\s*$/m.test(text)) continue;
    const plus = /^@@[^\n]*\n(?:[^\n]*\n)*?\+([^\n]*)/m.exec(text);
    out.push({ path, target: plus ? (plus[1] as string) : "" });
  }
  return out;
}

/**
 * Why a patch may not be applied at all, or undefined. Every name in every header form (see
 * {@link diffHeaderPaths}), also with its first component stripped as `patch -p1` does, must stay
 * in the tree and out of `.git`; a symlink it creates must point inside the tree.
 */
export function unsafePatchPath(diff: string): string | undefined {
  for (const p of diffHeaderPaths(diff)) {
    const bad = unsafePath(p) ?? unsafePath(p.split("/").slice(1).join("/"));
    if (bad) return bad;
  }
  for (const { path, target } of diffSymlinks(diff)) {
    if (target.startsWith("/")) return `symlink ${path} points outside the tree (${target})`;
    const depth = path.split("/").length - 1;
    let level = depth;
    for (const part of target.split("/")) {
      if (part === "..") level--;
      else if (part !== "." && part !== "") level++;
      if (level < 0) return `symlink ${path} points outside the tree (${target})`;
      if (/^\.git[. ]*$/i.test(part)) return `symlink ${path} points into .git (${target})`;
    }
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
  /**
   * Grade with exact pytest node ids (tasks forager generates: Task `testIds: "exact"`): JUnit ids
   * keep their parameters whole; the summary's cut ids are mapped onto them.
   */
  exactIds?: boolean;
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
  const junit = parsePytestJunitXml(input.junitXml, { knownFiles: input.knownFiles, repo: input.repo, truncateAtWhitespace: !input.exactIds });
  const summaryText = pytestSummarySection(input.output);
  const summary = summaryText === undefined ? new Map<string, TestStatus>() : parseWorstWins("pytest", summaryText, opts, conflicts);
  if (input.exactIds) {
    // The summary's ids are cut at the first whitespace: map each to the one exact JUnit id it
    // stands for; a cut id standing for several (parameters differing after a space) is left to
    // the JUnit report alone.
    const byCut = new Map<string, string[]>();
    for (const id of junit.keys()) {
      const cut = id.split(/\s/)[0] as string;
      if (cut !== id) byCut.set(cut, [...(byCut.get(cut) ?? []), id]);
    }
    for (const [cut, exact] of byCut) {
      const s = summary.get(cut);
      if (s === undefined || junit.has(cut)) continue;
      summary.delete(cut);
      if (exact.length === 1) summary.set(exact[0] as string, s);
    }
  }
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

// ---------------------------------------------------------------------------------------------
// Protected paths, canaries and flags

/**
 * Paths that configure the test run or the interpreter rather than the code under test: Python
 * start-up hooks (`sitecustomize.py`, `usercustomize.py`, `*.pth`), packaging metadata in the tree
 * (`*.dist-info/`, `*.egg-info/`: a `[pytest11]` entry point autoloads a plugin), `.gitattributes`
 * (filters and conversions of forager's own git commands), pytest's ini files (`pytest.ini`,
 * `.pytest.ini`, `tox.ini`), `conftest.py`, and the runners of sympy (`bin/test`,
 * `sympy/utilities/runtests.py`). A model patch's changes to them are reset to the base commit
 * before the hidden tests run. pyproject.toml and setup.cfg are not reset (gold patches edit
 * them); their pytest sections are ignored because pytest runs with the base configuration
 * (`-c`, kept outside the tree).
 */
export const PROTECTED_PATH =
  /(^|\/)(sitecustomize|usercustomize)\.py$|\.pth$|(^|\/)[^/]+\.(dist|egg)-info(\/|$)|(^|\/)\.gitattributes$|(^|\/)\.?pytest\.ini$|(^|\/)tox\.ini$|(^|\/)conftest\.py$|^bin\/test$|(^|\/)sympy\/utilities\/runtests\.py$/;

/**
 * New top-level modules or packages that would shadow the test machinery (pytest, _pytest, pluggy,
 * py, iniconfig, unittest, xdist, pytest plugins): an editable install puts the tree (or src/) on
 * sys.path before the system's site-packages. Group 1 is the entry at the top of the tree (or of
 * src/); it is removed when it did not exist at the base commit (pytest's own repository keeps
 * its src/_pytest).
 */
export const SHADOW_PATH = /^((?:src\/)?(?:pytest|_pytest|pluggy|py|iniconfig|unittest|xdist|pytest_[A-Za-z0-9_]+)(?:\.py)?)(?:\/|$)/;

/** Files in the repository the test command runs (`bin/test`, `./tests/runtests.py`): reset like test files. */
export function runnerFiles(testCommand: string): string[] {
  const out: string[] = [];
  for (const tok of testCommand.split(/\s+/)) {
    const t = tok.replace(/^\.\//, "");
    if (/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)+$/.test(t) && !t.startsWith("-") && !unsafePath(t)) out.push(t);
    else if (/^[A-Za-z0-9_-]+\.py$/.test(t)) out.push(t);
  }
  return out;
}

/** One flag: a non-test change of the model patch that touches test machinery. */
export interface MachineryFlag {
  file: string;
  /** 1-based line in the new file (0 when unknown). */
  line: number;
  /** What it touches. */
  kind: string;
  text: string;
}

const FLAG_PATTERNS: { kind: string; re: RegExp }[] = [
  { kind: "pytest internals", re: /\b_pytest\b|\bpytest\.(hookimpl|Item|Function|Session|TestReport|CallInfo|Config)\b|\bpytest_(runtest|collection|configure|sessionfinish|report|terminal)\w*/ },
  { kind: "pluggy", re: /\bpluggy\b/ },
  { kind: "gc object walk", re: /\bgc\.get_(objects|referrers|referents)\b/ },
  { kind: "frame walking", re: /\bsys\._getframe\b|\binspect\.(currentframe|stack|getouterframes)\b|\.f_back\b|\.f_globals\b|\.f_locals\b/ },
  { kind: "sys.modules write", re: /\bsys\.modules\s*\[[^\]]*\]\s*=(?!=)|\bsys\.modules\.(update|setdefault|pop)\b|setattr\(\s*sys\.modules/ },
  { kind: "builtins", re: /\bbuiltins\b|__builtins__/ },
  { kind: "pytest environment", re: /PYTEST_ADDOPTS|PYTEST_PLUGINS|PYTEST_DISABLE_PLUGIN_AUTOLOAD|PYTEST_CURRENT_TEST/ },
  { kind: "unittest results", re: /\b(TestResult|TextTestResult|TextTestRunner)\b|\baddSuccess\b|\bwasSuccessful\b/ },
  { kind: "process exit", re: /\bos\._exit\b|\bos\.kill\b|\bsignal\.SIGKILL\b/ },
  { kind: "tracing hooks", re: /\bsys\.(settrace|setprofile|addaudithook)\b|\bsys\.monitoring\b/ },
  { kind: "report files", re: /junit|\.xml['"]|\/tmp\/forager/i },
];

/**
 * Flags (evidence, not a verdict): added lines of the model patch, in files that are not
 * test-like, that touch test machinery ({@link FLAG_PATTERNS}: pytest internals, pluggy, gc
 * walks, frame walking, sys.modules or builtins writes, pytest's environment, unittest result
 * classes, hard exits, tracing hooks, report files). Gold patches of pytest itself edit
 * `_pytest`, so these are recorded, never graded.
 */
export function machineryFlags(patch: string, max = 50): MachineryFlag[] {
  const flags: MachineryFlag[] = [];
  let file = "";
  let line = 0;
  for (const l of patch.split(/\r?\n/)) {
    let m: RegExpExecArray | null;
    if ((m = /^\+\+\+ (.+)$/.exec(l))) {
      file = stripAB(headerName(m[1] as string));
      continue;
    }
    if ((m = /^@@ -\d+(?:,\d+)? \+(\d+)/.exec(l))) {
      line = Number(m[1]) - 1;
      continue;
    }
    if (l.startsWith("+")) {
      line++;
      if (!file.endsWith(".py") || isTestLikePath(file)) continue;
      for (const { kind, re } of FLAG_PATTERNS) {
        if (re.test(l)) {
          flags.push({ file, line, kind, text: l.slice(1, 201) });
          if (flags.length >= max) return flags;
          break;
        }
      }
    } else if (!l.startsWith("-") && !l.startsWith("\\")) line++;
  }
  return flags;
}

/** The canaries written for one evaluation (driver output). */
export interface CanaryPlan {
  mustFail: string[];
  mustPass: string[];
  extraFile: string | null;
  skipped: string[];
}

/**
 * Evidence of a forged run from the canaries (CanaryPlan) and the statuses of the run: a canary
 * that must fail reported as passing (PASSED or XFAIL), or a canary missing while another test of
 * its file is reported. Empty when the run looks honest. A canary that must pass and failed is
 * not evidence (a broken fixture or import fails it honestly).
 */
export function canaryEvidence(plan: CanaryPlan, statuses: ReadonlyMap<string, TestStatus>): string[] {
  const evidence: string[] = [];
  const fileOf = (id: string) => id.split("::")[0] as string;
  const reported = new Map<string, number>();
  for (const id of statuses.keys()) reported.set(fileOf(id), (reported.get(fileOf(id)) ?? 0) + 1);
  for (const id of plan.mustFail) {
    const s = statuses.get(id);
    if (s === "PASSED" || s === "XFAIL") evidence.push(`canary ${id} must fail but was reported ${s}`);
  }
  const otherFiles = [...reported.keys()].some((f) => f !== plan.extraFile);
  for (const id of [...plan.mustFail, ...plan.mustPass]) {
    if (statuses.has(id)) continue;
    const file = fileOf(id);
    if (reported.has(file)) evidence.push(`canary ${id} is missing from the results while its file is reported`);
    else if (file === plan.extraFile && otherFiles) evidence.push(`canary file ${file} is missing from the results while the other test files are reported`);
  }
  return evidence;
}
