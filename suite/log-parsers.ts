/**
 * Test-log parsers: turn the output of a repository's test command into a map
 * `test id → status`, with ids in the SWE-bench datasets' own form so that FAIL_TO_PASS and
 * PASS_TO_PASS entries can be looked up directly.
 *
 * Behaviour follows the public SWE-bench harness (SWE-bench/SWE-bench v4.1 and v5.0,
 * `swebench/harness/log_parsers/python.py`: parse_log_pytest, parse_log_pytest_options,
 * parse_log_pytest_v2, parse_log_matplotlib, parse_log_django, parse_log_sympy). This is an
 * independent implementation of that behaviour; where forager goes further the docstring of the
 * parser says so. Every addition only records tests the harness would have left out of the map
 * (which the harness grades as failing), so it never changes how a dataset id already present
 * in the harness's map is graded.
 *
 * Id forms (checked against the Lite and Verified rows in /work/shared/datasets):
 * - pytest: `path/to/test_file.py::Class::test_name[param]`, cut at the first whitespace like
 *   the harness's split (the datasets contain no id with a space; an id whose parameter held a
 *   space is stored truncated, e.g. `...::test_ogip_grammar_fail[log(photon`);
 * - django: `test_name (module.Class)` as unittest prints it at verbosity 2 (Python ≥ 3.11
 *   prints `test_name (module.Class.test_name)`), or the first line of the test's docstring
 *   when it has one;
 * - sympy: the bare function name, `test_name`.
 */
import type { LogParserName } from "../images/spec";

/** The statuses a parser records (the harness's TestStatus values). */
export const TEST_STATUSES = ["PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL"] as const;
export type TestStatus = (typeof TEST_STATUSES)[number];

/** `test id → status`; a later line about the same id overrides an earlier one. */
export type StatusMap = Map<string, TestStatus>;

export interface ParseOptions {
  /**
   * `owner/name` of the repository whose log this is. Selects the harness's per-repository
   * pytest variants: `psf/requests`, `pylint-dev/pylint`, `pydicom/pydicom` shorten absolute
   * path parameters (`[/tmp/x/file.py]` → `[/file.py]`, parse_log_pytest_options);
   * `matplotlib/matplotlib` writes `MouseButton.LEFT|RIGHT` as `1|3` (parse_log_matplotlib).
   */
  repo?: string;
}

/**
 * Parse a test log with the named parser.
 * @param parser which runner printed the log (ImageSpec.logParser)
 * @param log the test command's output (ideally the part between the harness markers)
 * @returns test id → status, ids in the SWE-bench dataset form
 */
export function parseTestLog(parser: LogParserName, log: string, options: ParseOptions = {}): StatusMap {
  switch (parser) {
    case "pytest":
      return parsePytestLog(log, options);
    case "django":
      return parseDjangoLog(log);
    case "sympy":
      return parseSympyLog(log);
    case "unittest":
      return parseUnittestLog(log);
  }
}

const UNITTEST_OUTCOMES: [RegExp, TestStatus][] = [
  [/^ok$/, "PASSED"],
  [/^FAIL$/, "FAILED"],
  [/^ERROR$/, "ERROR"],
  [/^skipped\b/, "SKIPPED"],
  [/^expected failure$/, "XFAIL"],
  [/^unexpected success$/, "FAILED"],
];

/**
 * The log of `python -m unittest -v` (CPython's TextTestRunner at verbosity 2), forager's own
 * parser (the SWE-bench harness has none for plain unittest). Lines `name (module.Class) ... ok`
 * (Python < 3.11) and `name (module.Class.name) ... ok` (≥ 3.11) give the id
 * `module.Class.name`, the dotted name `python -m unittest` accepts to select a test. When the
 * test has a docstring, the runner prints `name (module.Class.name)` on one line and
 * `First docstring line ... ok` on the next; output a test prints before its outcome
 * (`name (…) ... ` then lines, then `ok`) is skipped. A testtools scenario test's description line
 * is its id and scenario (`module.Class.name (scen) ... ok`): its id is `module.Class.name(scen)`,
 * testtools' own, so the scenarios of one test are distinct tests. Outcomes: ok → PASSED, FAIL → FAILED,
 * ERROR → ERROR, skipped 'why' → SKIPPED, expected failure → XFAIL, unexpected success → FAILED.
 * A module that fails to import appears as `unittest.loader._FailedTest.<module>` with ERROR.
 */
export function parseUnittestLog(log: string): StatusMap {
  const map: StatusMap = new Map();
  const head = /^(\w+) \(([\w.]+)\)(?: \.\.\. (.*))?$/;
  let pending: string | undefined;
  const idOf = (name: string, where: string) => (where.endsWith(`.${name}`) ? where : `${where}.${name}`);
  const outcome = (rest: string): TestStatus | undefined => UNITTEST_OUTCOMES.find(([re]) => re.test(rest.trim()))?.[1];
  for (const raw of log.replace(/\r\n?/g, "\n").split("\n")) {
    const line = raw.trimEnd();
    const m = head.exec(line);
    if (m) {
      pending = idOf(m[1]!, m[2]!);
      if (m[3] !== undefined) {
        const s = outcome(m[3]);
        if (s) {
          map.set(pending, s);
          pending = undefined;
        }
      }
      continue;
    }
    if (pending === undefined) continue;
    const tail = / \.\.\. (.*)$/.exec(line)?.[1] ?? line;
    const s = outcome(tail);
    if (s) {
      // testtools' scenario tests describe themselves as `ID (scenario)`: one test per scenario.
      const scenario = line.startsWith(`${pending} (`) ? /^\S+ \(([^)]*)\) \.\.\. /.exec(line)?.[1] : undefined;
      map.set(scenario !== undefined ? `${pending}(${scenario})` : pending, s);
      pending = undefined;
    }
  }
  return map;
}

const STATUS_SET: ReadonlySet<string> = new Set(TEST_STATUSES);

function isStatus(word: string): word is TestStatus {
  return STATUS_SET.has(word);
}

/** Logs may come from a tty: CRLF line ends and lone CRs become LF. */
function splitLines(log: string): string[] {
  return log.replace(/\r\n?/g, "\n").split("\n");
}

/** Python's `str.split()` with no argument: split on whitespace runs, drop empty ends. */
function pySplit(s: string): string[] {
  const t = s.trim();
  return t === "" ? [] : t.split(/\s+/);
}

// ---------------------------------------------------------------------------------------------
// pytest

/** Repositories whose harness parser is parse_log_pytest_options. */
const PATH_OPTION_REPOS = new Set(["psf/requests", "pylint-dev/pylint", "pydicom/pydicom"]);

/**
 * ANSI escape sequences. (The v2 parser also deletes a bare `[NNm` anywhere, which would eat a
 * parameter such as `test_len[10m]`; forager removes only real ESC sequences.)
 */
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
/** Control characters the v2 parser deletes (chr 1..31 but TAB, which becomes a space here). */
const CONTROL = /[\x01-\x08\x0a-\x1f]/g;
/** pytest-xdist's verbose prefix, `[gw3] [ 42%] `, before the status word. */
const XDIST_PREFIX = /^\[gw\d+\]\s+(?:\[\s*\d+%\]\s+)?/;
/** pytest's `SKIPPED [N] file:line: reason` summary line: `[N]` is a count, not a test. */
const SKIP_COUNT = /^\[\d+\]$/;
/**
 * The verbose form with the status after the node id (old pytest, `-v`, classic console
 * style): `path::test[param] STATUS`, optionally `(reason)` and a `[ NN%]` progress column.
 * Only lines whose first token is a node id (`::`) count; the id is that first token.
 */
const STATUS_AFTER =
  /^(\S+::\S*)(?:\s+\S+)*?\s+(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)(?:\s+\(.*\))?(?:\s+\[\s*\d+%\])?$/;

/** parse_log_pytest_options: `[/abs/path/file]` → `[/file]` (not `//…`, not globs). */
export function shortenPathOption(id: string): string {
  const m = /^(.*?)\[(.*)\]/.exec(id);
  if (!m) return id;
  const main = m[1] ?? "";
  let option = m[2] ?? "";
  if (option.startsWith("/") && !option.startsWith("//") && !option.includes("*")) {
    option = "/" + (option.split("/").pop() ?? "");
  }
  return `${main}[${option}]`;
}

/**
 * pytest `-rA` output.
 *
 * Harness behaviour (parse_log_pytest, v4.1/v5.0): every line that starts with a status word
 * (`PASSED`, `FAILED`, `SKIPPED`, `ERROR`, `XFAIL`) records its second whitespace-separated
 * token as the id; for `FAILED` the ` - message` part is dropped first; `SKIPPED [N] file:line:
 * reason` summaries are ignored (v5.0). `XPASS` is not a status: an unexpectedly passing test is
 * absent from the map, hence failing. Lines are taken anywhere in the log, so a captured
 * `PASSED something` printed by a test is recorded too (the pytest repository's own
 * PASS_TO_PASS lists contain such ids, e.g. `[100%]` for pytest-dev__pytest-5227).
 *
 * Also handled (from parse_log_pytest_v2 and beyond): ANSI colours and control characters are
 * removed; the verbose form with the status after the id (`path::test PASSED [ 50%]`, old
 * pytest and `-v`); pytest-xdist's `[gw0] [ 50%] PASSED path::test` prefix. The v2 parser keeps
 * the whole remainder of the line as the id; forager keeps the first token like parse_log_pytest
 * because that is the form the datasets store (grading still matches a truncated dataset id to
 * a longer one by prefix, as v5.0 does).
 */
export function parsePytestLog(log: string, options: ParseOptions = {}): StatusMap {
  const map: StatusMap = new Map();
  const pathOptions = options.repo !== undefined && PATH_OPTION_REPOS.has(options.repo);
  const mouseButtons = options.repo === "matplotlib/matplotlib";
  for (const raw of splitLines(log)) {
    let line = raw.replace(ANSI, "").replace(CONTROL, "").replaceAll("\t", " ");
    if (mouseButtons) line = line.replaceAll("MouseButton.LEFT", "1").replaceAll("MouseButton.RIGHT", "3");
    line = line.replace(XDIST_PREFIX, "");
    const startsWithStatus = TEST_STATUSES.some((s) => line.startsWith(s));
    if (startsWithStatus) {
      if (line.startsWith("FAILED")) line = line.replaceAll(" - ", " ");
      const tokens = pySplit(line);
      if (tokens.length < 2) continue;
      const status = tokens[0] as string;
      let id = tokens[1] as string;
      if (!isStatus(status)) continue;
      if (status === "SKIPPED" && SKIP_COUNT.test(id)) continue;
      if (pathOptions) id = shortenPathOption(id);
      map.set(id, status);
      continue;
    }
    const m = STATUS_AFTER.exec(line.trim());
    if (m) {
      const status = m[2] as string;
      if (!isStatus(status)) continue; // XPASS
      let id = m[1] as string;
      if (pathOptions) id = shortenPathOption(id);
      map.set(id, status);
    }
  }
  return map;
}

// ---------------------------------------------------------------------------------------------
// pytest JUnit XML

export interface JunitOptions {
  /**
   * Cut ids at the first whitespace, the form the SWE-bench datasets store (default true).
   * With false, ids keep their full parameter text (grading matches truncated dataset ids by
   * prefix anyway).
   */
  truncateAtWhitespace?: boolean;
  /**
   * Test files known to exist (e.g. the test patch's files, repository-relative). Used to split
   * a `classname` into module path and classes when the testcase has no `file` attribute.
   */
  knownFiles?: readonly string[];
  /** See ParseOptions.repo (path-parameter shortening for requests, pylint, pydicom). */
  repo?: string;
}

const XML_ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decodeXml(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|[a-zA-Z]+);/g, (whole, ent: string) => {
    if (ent.startsWith("#x")) return String.fromCodePoint(parseInt(ent.slice(2), 16));
    if (ent.startsWith("#")) return String.fromCodePoint(parseInt(ent.slice(1), 10));
    return XML_ENTITIES[ent] ?? whole;
  });
}

function xmlAttributes(tagText: string): Map<string, string> {
  const attrs = new Map<string, string>();
  for (const m of tagText.matchAll(/([A-Za-z_][\w:.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    attrs.set(m[1] as string, decodeXml(m[2] ?? m[3] ?? ""));
  }
  return attrs;
}

/** `a.b.test_x.TestY` → module `a/b/test_x.py` and classes `["TestY"]`. */
function splitClassname(classname: string, knownFiles: ReadonlySet<string>): { file: string; classes: string[] } {
  const parts = classname.split(".");
  for (let k = parts.length; k > 0; k--) {
    const file = parts.slice(0, k).join("/") + ".py";
    if (knownFiles.has(file)) return { file, classes: parts.slice(k) };
  }
  // pytest collects classes named Test* (python_classes); modules are lower-case by convention.
  let k = parts.findIndex((p, i) => i > 0 && /^[A-Z]/.test(p));
  if (k < 0) k = parts.length;
  return { file: parts.slice(0, k).join("/") + ".py", classes: parts.slice(k) };
}

/**
 * pytest `--junitxml` output → the same ids as the `-rA` parser.
 *
 * `<testcase classname="a.b.test_x.TestY" name="test_z[p]" file="a/b/test_x.py">` becomes
 * `a/b/test_x.py::TestY::test_z[p]`. The `file` attribute (junit_family xunit1) is used when
 * present; otherwise the classname is split at its first capitalised segment (pytest's `Test*`
 * classes), unless `knownFiles` names the module. A testcase with empty classname is a
 * collection error of the module in `name`.
 *
 * Status: `<failure>` → FAILED, `<error>` → ERROR, `<skipped type="pytest.xfail">` → XFAIL,
 * other `<skipped>` → SKIPPED, no child → PASSED. Unlike the `-rA` log, JUnit XML cannot tell a
 * non-strict XPASS from a pass (pytest writes both without a child), so an XPASS is PASSED here;
 * a strict XPASS is a `<failure>`.
 *
 * A small tolerant reader, not a validating XML parser: comments, CDATA and
 * `<system-out>/<system-err>` are ignored; entities are decoded.
 */
export function parsePytestJunitXml(xml: string, options: JunitOptions = {}): StatusMap {
  const map: StatusMap = new Map();
  const truncate = options.truncateAtWhitespace ?? true;
  const known = new Set(options.knownFiles ?? []);
  const pathOptions = options.repo !== undefined && PATH_OPTION_REPOS.has(options.repo);
  const text = xml.replace(/<!--[\s\S]*?-->/g, "");
  const testcase = /<testcase\b((?:[^>"']|"[^"]*"|'[^']*')*?)(\/>|>([\s\S]*?)<\/testcase\s*>)/g;
  for (const m of text.matchAll(testcase)) {
    const attrs = xmlAttributes(m[1] ?? "");
    const name = attrs.get("name") ?? "";
    const classname = attrs.get("classname") ?? "";
    const body = (m[3] ?? "")
      .replace(/<!\[CDATA\[[\s\S]*?\]\]>/g, "")
      .replace(/<(system-out|system-err)\b[\s\S]*?(?:<\/\1\s*>|\/>)/g, "");
    let id: string;
    if (classname === "") {
      if (name === "") continue;
      id = name.includes("/") || name.endsWith(".py") ? name : name.split(".").join("/") + ".py";
    } else {
      const fileAttr = attrs.get("file");
      let file: string;
      let classes: string[];
      const moduleDotted = fileAttr?.replace(/\.py$/, "").split("/").join(".");
      if (fileAttr && moduleDotted && (classname === moduleDotted || classname.startsWith(moduleDotted + "."))) {
        file = fileAttr;
        classes = classname === moduleDotted ? [] : classname.slice(moduleDotted.length + 1).split(".");
      } else {
        ({ file, classes } = splitClassname(classname, known));
      }
      id = [file, ...classes, name].join("::");
    }
    if (truncate) id = id.split(/\s/)[0] ?? id;
    if (pathOptions) id = shortenPathOption(id);
    let status: TestStatus = "PASSED";
    const skipped = /<skipped\b((?:[^>"']|"[^"]*"|'[^']*')*)>/.exec(body);
    if (/<failure\b/.test(body)) status = "FAILED";
    else if (/<error\b/.test(body)) status = "ERROR";
    else if (skipped) status = xmlAttributes(skipped[1] ?? "").get("type") === "pytest.xfail" ? "XFAIL" : "SKIPPED";
    map.set(id, status);
  }
  return map;
}

// ---------------------------------------------------------------------------------------------
// django

const DJANGO_PASS_SUFFIXES = [" ... ok", " ... OK", " ...  OK"];

/**
 * Django's `tests/runtests.py --verbosity 2` (unittest's verbose runner).
 *
 * Harness behaviour (parse_log_django, v4.1/v5.0), on each stripped line:
 * - `name ... ok` (also `... OK`, `...  OK`) → PASSED; `name ... skipped 'why'` → SKIPPED;
 *   `name ... FAIL` → FAILED; `name ... ERROR` → ERROR. With a docstring, unittest prints
 *   `test_x (mod.Class)` and then `First docstring line ... ok`: the id is the docstring line,
 *   which is how the datasets store such tests;
 * - the failure sections' `FAIL: test_x (mod.Class)` / `ERROR: …` record the bare first word
 *   (`test_x`) as FAILED / ERROR;
 * - output printed by a test splits its result from its name: `name ... <output>` and later a
 *   line starting with `ok` → the last `name ...` seen is PASSED;
 * - three known interleavings are matched across lines: `name ... Testing against Django
 *   installed in … silenced).\nok`, `name ... Internal Server Error: /…/\nok`,
 *   `name ... System check identified no issues (0 silenced).\nok` (forager accepts the final
 *   period the harness's third pattern lacks); a migration line glued in front of the test
 *   (`Applying app.0002_x...test_y (mod.C) ... ok`, django__django-7188) is cut off; the
 *   `--version is equivalent to version` line is PASSED.
 *
 * forager additions: `name ... expected failure` → XFAIL and `name ... unexpected success` →
 * FAILED (the harness records neither; both grade the same as missing only for the latter).
 */
export function parseDjangoLog(log: string): StatusMap {
  const map: StatusMap = new Map();
  const text = log.replace(/\r\n?/g, "\n");
  let prevTest: string | undefined;
  for (const raw of text.split("\n")) {
    let line = raw.trim();
    if (line.includes("--version is equivalent to version")) {
      map.set("--version is equivalent to version", "PASSED");
    }
    if (line.includes(" ... ")) prevTest = line.split(" ... ")[0];
    for (const suffix of DJANGO_PASS_SUFFIXES) {
      if (!line.endsWith(suffix)) continue;
      const glued = /^Applying [\w.]+\.\.\.(?=\S)/.exec(line);
      if (glued) line = line.slice(glued[0].length).trim();
      map.set(line.slice(0, line.lastIndexOf(suffix)), "PASSED");
      break;
    }
    if (line.includes(" ... skipped")) map.set(line.split(" ... skipped")[0] as string, "SKIPPED");
    if (line.endsWith(" ... FAIL")) map.set(line.split(" ... FAIL")[0] as string, "FAILED");
    if (line.startsWith("FAIL:")) {
      const word = pySplit(line)[1];
      if (word !== undefined) map.set(word, "FAILED");
    }
    if (line.endsWith(" ... ERROR")) map.set(line.split(" ... ERROR")[0] as string, "ERROR");
    if (line.startsWith("ERROR:")) {
      const word = pySplit(line)[1];
      if (word !== undefined) map.set(word, "ERROR");
    }
    if (line.endsWith(" ... expected failure")) map.set(line.slice(0, -" ... expected failure".length), "XFAIL");
    if (line.endsWith(" ... unexpected success")) {
      map.set(line.slice(0, -" ... unexpected success".length), "FAILED");
    }
    if (line.startsWith("ok") && prevTest !== undefined) map.set(prevTest, "PASSED");
  }
  const interleaved = [
    /^(.*?)\s\.\.\.\sTesting against Django installed in ([\s\S]*?) silenced\)\.\nok$/gm,
    /^(.*?)\s\.\.\.\sInternal Server Error: \/(.*)\/\nok$/gm,
    /^(.*?)\s\.\.\.\sSystem check identified no issues \(0 silenced\)\.?\nok$/gm,
  ];
  for (const pattern of interleaved) {
    for (const m of text.matchAll(pattern)) map.set(m[1] as string, "PASSED");
  }
  return map;
}

// ---------------------------------------------------------------------------------------------
// sympy

/** sympy's verbose result marks → status. */
const SYMPY_MARKS: ReadonlyMap<string, TestStatus> = new Map<string, TestStatus>([
  ["ok", "PASSED"],
  ["F", "FAILED"],
  ["E", "ERROR"],
  ["T", "ERROR"], // timed out (reported as an exception)
  ["f", "XFAIL"],
  ["X", "FAILED"], // XPASS: sympy counts it as a failure of the file
  ["s", "SKIPPED"],
  ["w", "SKIPPED"], // skipped as slow
  ["K", "SKIPPED"], // KeyboardInterrupt
]);

/** The right-aligned file verdict sympy appends to the file's last test line. */
const SYMPY_FILE_VERDICT = /\s+\[(?:OK|FAIL)\]$/;
/** `___ sympy/x/tests/test_y.py:test_z ___` (`::` in newer sympy) opening a failure section. */
const SYMPY_SECTION = /^_+ (\S+\.py):(:?)(\S+) _+$/;

/**
 * sympy's `bin/test -C --verbose`: after the file line `path.py[N]`, one line per test,
 * `test_name ok`, `test_name F`, `test_name E`, `test_name f` (expected failure), `test_name X`
 * (unexpected pass), `test_name <reason> s` (skip); then a section per failure or exception
 * headed `____ path.py:test_name ____`.
 *
 * Harness behaviour (parse_log_sympy, v4.1/v5.0): a stripped line starting with `test_` and
 * ending in ` ok` / ` F` / ` E` records its first word PASSED / FAILED / ERROR; each section
 * header records `path.py:test_name` as FAILED.
 *
 * forager additions: `f` → XFAIL, `s`/`w`/`K` → SKIPPED, `X` and `T` → FAILED / ERROR (the
 * harness leaves them out, which grades as failing); the `[OK]`/`[FAIL]` file verdict sympy
 * appends to the file's last test line is removed first (the harness misses that test); a test
 * that printed output before its result (`test_x some output` then `ok` on a later line) gets
 * the result; a section header also marks the bare `test_name` FAILED when its line was lost.
 */
export function parseSympyLog(log: string): StatusMap {
  const map: StatusMap = new Map();
  const sectioned: string[] = [];
  let pending: string | undefined;
  for (const raw of splitLines(log)) {
    const line = raw.trim().replace(SYMPY_FILE_VERDICT, "");
    const section = SYMPY_SECTION.exec(line);
    if (section) {
      const [, file, colon, name] = section as unknown as [string, string, string, string];
      map.set(`${file}:${colon}${name}`, "FAILED");
      sectioned.push(name);
      pending = undefined;
      continue;
    }
    const tokens = pySplit(line);
    if (tokens.length === 0) continue;
    const first = tokens[0] as string;
    const last = tokens[tokens.length - 1] as string;
    if (line.startsWith("test_")) {
      const status = tokens.length >= 2 ? SYMPY_MARKS.get(last) : undefined;
      if (status) {
        map.set(first, status);
        pending = undefined;
      } else {
        pending = first;
      }
      continue;
    }
    const mark = tokens.length === 1 ? SYMPY_MARKS.get(first) : undefined;
    if (pending !== undefined && mark) {
      map.set(pending, mark);
      pending = undefined;
    } else if (/^\S+\.py\[\d+\]/.test(line) || line.startsWith("=")) {
      pending = undefined;
    }
  }
  for (const name of sectioned) if (!map.has(name)) map.set(name, "FAILED");
  return map;
}
