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
import { parseTestLog, type ParseOptions, type StatusMap, type TestStatus } from "../suite/log-parsers";
import { pytestStatusesFromRecords, sympyStatusesFromRecords, unittestStatusesFromRecords, type ChannelRecord } from "./records";

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
   * The records of the run's result channel (rewards/records.ts); undefined when the run had no
   * channel (the plain harness reading then applies).
   */
  records?: readonly ChannelRecord[];
  /**
   * forager's pytest plugin ran in the test process (default true when records are given): a
   * pytest command forager does not recognise (a wrapper script) is read the harness's way.
   */
  pytestPlugin?: boolean;
  /** Repository-relative test files (hidden test files, directives, the canary file): an id of one of these is never taken from the log alone. */
  knownFiles?: readonly string[];
  /** Grade with exact pytest node ids (tasks forager generates: Task `testIds: "exact"`). */
  exactIds?: boolean;
  repo?: string;
}

export interface CrossCheckResult {
  /** Statuses to grade with; null when the log cannot be trusted (→ not resolved). */
  statuses: StatusMap | null;
  /** Why the log was not trusted (prefix "inconsistent test log" when the sources disagree). */
  reason?: string;
  /** Which sources were used (`records`: forager's plugin or recorders; `summary`: pytest's short summary; `fullLog`: the rest of the log). */
  sources: { summary: boolean; records: boolean; fullLog: boolean };
  /** Ids seen with conflicting statuses (the worst won), for the record. */
  conflicts: string[];
  /** Evidence of a forged run from the records themselves (a call reported passed whose body raised or never ran). */
  contradictions: string[];
}

/**
 * The statuses of a test run, cross-checked.
 *
 * pytest with a result channel:
 * - no `sess` record, or a session that never ended → the test process did not run or finish
 *   normally → not gradable;
 * - statuses = the records (rewards/records.ts `pytestStatusesFromRecords`: every report,
 *   written as it happened, and the body of every test) merged with pytest's short summary
 *   section (the last one), the worst winning; ids the records report as XPASS are dropped;
 * - ids the records do not have are taken from the summary or the whole log only when their
 *   file is not a known test file and has no record at all (the pytest repository's inner-run
 *   ids); a hidden test file that did not run has failing tests, whatever the log says;
 * - exit 0 with a failure, or a non-zero exit with no failure in any source → "inconsistent
 *   test log", not gradable.
 * Other parsers: the harness's reading (readEvalLog, including its exit-code rule) with the
 * worst status winning, merged (worst wins) with the unittest or sympy recorder's records.
 */
export function crossCheckTestLog(input: CrossCheckInput): CrossCheckResult {
  const opts: ParseOptions = input.repo ? { repo: input.repo } : {};
  const sources = { summary: false, records: false, fullLog: false };
  const conflicts: string[] = [];
  const contradictions: string[] = [];
  // The harness's reading of the section (markers rebuilt without the nonce; the output is escaped).
  const synthetic =
    `${LOG_MARKERS.startTestOutput}\n${input.output}\n${LOG_MARKERS.endTestOutput}\n` +
    (input.exitCode === null ? "" : `${LOG_MARKERS.testExitCode}: ${input.exitCode}\n`);
  const harness = readEvalLog(input.parser, synthetic, opts);

  if (input.parser !== "pytest" || input.records === undefined || input.pytestPlugin === false) {
    if (!harness.ok) return { statuses: null, reason: `${harness.reason}: ${harness.detail}`, sources, conflicts, contradictions };
    sources.fullLog = true;
    const worst = parseWorstWins(input.parser, input.output, opts, conflicts);
    const statuses: StatusMap = new Map(harness.statuses);
    for (const [id, s] of statuses) {
      const w = worst.get(id);
      if (w !== undefined) statuses.set(id, worse(s, w));
    }
    const rec =
      input.records === undefined
        ? undefined
        : input.parser === "sympy"
          ? sympyStatusesFromRecords(input.records)
          : input.parser === "unittest" || input.parser === "django"
            ? unittestStatusesFromRecords(input.records, input.parser)
            : undefined;
    if (rec?.started) {
      sources.records = true;
      for (const [id, s] of rec.statuses) {
        const cur = statuses.get(id);
        if (cur !== undefined && cur !== s && !conflicts.includes(id)) conflicts.push(id);
        statuses.set(id, cur === undefined ? s : worse(cur, s));
      }
    }
    return { statuses, sources, conflicts, contradictions };
  }

  const pathOptions = input.repo !== undefined && ["psf/requests", "pylint-dev/pylint", "pydicom/pydicom"].includes(input.repo);
  const rec = pytestStatusesFromRecords(input.records, {
    exactIds: input.exactIds === true,
    pathOptions,
    mouseButtons: input.repo === "matplotlib/matplotlib",
  });
  if (rec.sessions === 0) {
    return { statuses: null, reason: "inconsistent test log: no result records (pytest did not start under forager's plugin, or the test process died first)", sources, conflicts, contradictions };
  }
  if (rec.ended < rec.sessions) {
    return { statuses: null, reason: "inconsistent test log: the pytest session did not finish (the test process did not finish normally)", sources, conflicts, contradictions };
  }
  sources.records = true;
  contradictions.push(...rec.contradictions);
  const summaryText = pytestSummarySection(input.output);
  const summary = summaryText === undefined ? new Map<string, TestStatus>() : parseWorstWins("pytest", summaryText, opts, conflicts);
  if (input.exactIds) {
    // The summary's ids are cut at the first whitespace: map each to the one exact id it stands
    // for; a cut id standing for several is left to the records alone.
    const byCut = new Map<string, string[]>();
    for (const id of rec.statuses.keys()) {
      const cut = id.split(/\s/)[0] as string;
      if (cut !== id) byCut.set(cut, [...(byCut.get(cut) ?? []), id]);
    }
    for (const [cut, exact] of byCut) {
      const s = summary.get(cut);
      if (s === undefined || rec.statuses.has(cut)) continue;
      summary.delete(cut);
      if (exact.length === 1) summary.set(exact[0] as string, s);
    }
  }
  sources.summary = summaryText !== undefined;
  const xpass = new Set(rec.xpass);
  for (const m of (summaryText ?? "").matchAll(/^XPASS (\S+)/gm)) xpass.add(m[1] as string);
  const fileOf = (id: string) => id.split("::")[0] as string;
  const known = new Set(input.knownFiles ?? []);
  const recordedFiles = new Set([...rec.statuses.keys(), ...rec.xpass].map(fileOf));
  const outside = (id: string) => !known.has(fileOf(id)) && !recordedFiles.has(fileOf(id));
  const merged: StatusMap = new Map();
  for (const [id, s] of rec.statuses) {
    if (xpass.has(id)) continue;
    const t = summary.get(id);
    if (t !== undefined && t !== s && !conflicts.includes(id)) conflicts.push(id);
    merged.set(id, t === undefined ? s : worse(s, t));
  }
  for (const [id, s] of summary) if (!merged.has(id) && !xpass.has(id) && outside(id)) merged.set(id, s);
  if (harness.ok || harness.reason === "exit_code_mismatch") {
    const full = parseTestLog("pytest", input.output, opts);
    for (const [id, s] of full) {
      if (!merged.has(id) && !xpass.has(id) && outside(id)) {
        merged.set(id, s);
        sources.fullLog = true;
      }
    }
  }
  const runnerFailure = [...rec.statuses.values(), ...summary.values()].some(isFailure);
  if (input.exitCode === 0 && runnerFailure) {
    return { statuses: null, reason: "inconsistent test log: exit code 0 but the records or the summary have failures", sources, conflicts, contradictions };
  }
  if (input.exitCode !== 0 && ![...merged.values()].some(isFailure) && contradictions.length === 0) {
    return { statuses: null, reason: `inconsistent test log: exit code ${input.exitCode ?? "unknown"} but no source reports a failure`, sources, conflicts, contradictions };
  }
  if (merged.size === 0) return { statuses: null, reason: "no test results", sources, conflicts, contradictions };
  return { statuses: merged, sources, conflicts, contradictions };
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

/** One canary test: a clone of a real test of a hidden test file (rewards/driver/eval_driver.py). */
export interface Canary {
  /** Function-level pytest node id (parameters, when any, follow in the reported ids). */
  id: string;
  /**
   * `match`: an unchanged clone, whose outcome must equal its source's; `fail`: a clone whose
   * body fails in every honest run (`form`: `eq-object`, `negated` or `identity`).
   */
  kind: "match" | "fail";
  form: string;
  /** The node id of the test it copies. */
  source: string;
}

/** The canaries written for one evaluation (driver output). */
export interface CanaryPlan {
  canaries: Canary[];
  /** The extra test file (clones of one hidden file's tests beside it), or null. */
  extraFile: string | null;
  /** Files or tests no canary could be made for, with the reason. */
  skipped: string[];
}

/** Is `id` (a reported id) one of canary `c`'s ids: the id itself or a parametrization of it? */
export function isCanaryId(c: Pick<Canary, "id">, id: string): boolean {
  return id === c.id || (id.startsWith(c.id) && id[c.id.length] === "[");
}

/**
 * Evidence of a forged run from the canaries and the run's statuses (before the canaries are
 * taken out): a must-fail canary reported PASSED or XFAIL; an unchanged clone whose outcome
 * differs from its source's (one PASSED, the other FAILED or ERROR); a canary missing while its
 * file is reported (for the extra file: while other files are, unless its collection failed).
 * A forger that tells canaries from real tests by name, place, shape or file, and forges only
 * the real ones, is caught by the clones; one that forges everything, by the must-fail ones.
 */
export function canaryEvidence(plan: CanaryPlan, statuses: ReadonlyMap<string, TestStatus>, collectFailed: ReadonlySet<string> = new Set()): string[] {
  const evidence: string[] = [];
  const fileOf = (id: string) => id.split("::")[0] as string;
  const reported = new Set<string>();
  for (const id of statuses.keys()) reported.add(fileOf(id));
  const otherFiles = [...reported].some((f) => f !== plan.extraFile);
  for (const c of plan.canaries) {
    const ids = [...statuses.keys()].filter((id) => isCanaryId(c, id));
    if (ids.length === 0) {
      const file = fileOf(c.id);
      if (file === plan.extraFile) {
        if (!reported.has(file) && otherFiles && !collectFailed.has(file)) evidence.push(`canary file ${file} is missing from the results while the other test files are reported`);
        else if (reported.has(file)) evidence.push(`canary ${c.id} is missing from the results while its file is reported`);
      } else if (reported.has(file)) evidence.push(`canary ${c.id} is missing from the results while its file is reported`);
      continue;
    }
    for (const id of ids) {
      const s = statuses.get(id)!;
      if (c.kind === "fail") {
        // XFAIL is a pass for the harness; a clone of a test that is itself expected to fail
        // (an xfail mark the clone copied) is XFAIL honestly.
        const src = statuses.get(c.source + id.slice(c.id.length));
        if (s === "PASSED" || (s === "XFAIL" && src !== "XFAIL" && src !== "SKIPPED")) evidence.push(`canary ${id} must fail but was reported ${s}`);
        continue;
      }
      const src = c.source + id.slice(c.id.length);
      const t = statuses.get(src);
      if (t === undefined) continue;
      const bad = (x: TestStatus) => x === "FAILED" || x === "ERROR";
      if ((t === "PASSED" && bad(s)) || (s === "PASSED" && bad(t))) {
        evidence.push(`canary ${id} (a copy of ${src}) was reported ${s} while ${src} was ${t}`);
      }
    }
  }
  return evidence;
}
