/**
 * Test-log parsers (suite/log-parsers.ts). Inline logs are real runner output (pytest 9.0 `-rA`
 * and `-rA -v`, pytest JUnit XML, Python 3.11 unittest verbosity 2, sympy's verbose reporter),
 * trimmed; the expectations for the harness-covered lines were checked against the SWE-bench
 * harness v5.0.0 parsers. When /work/shared/datasets is present, every FAIL_TO_PASS and
 * PASS_TO_PASS id of every row is printed the way its runner prints it and must come back
 * unchanged.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  parseDjangoLog,
  parsePytestJunitXml,
  parsePytestLog,
  parseSympyLog,
  parseTestLog,
  type StatusMap,
} from "../suite/log-parsers";

const obj = (m: StatusMap) => Object.fromEntries(m);

// ---------------------------------------------------------------------------------------------
// pytest

const PYTEST_RA = `============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-9.0.3, pluggy-1.6.0
rootdir: /tmp/fl/pt
collected 12 items

tests/sub/test_mod.py .FEsxX..F..s                                       [100%]

==================================== ERRORS ====================================
_________________________ ERROR at setup of test_error _________________________
E       RuntimeError: fixture boom
=================================== FAILURES ===================================
__________________________________ test_fail ___________________________________
E       AssertionError: one is not two
tests/sub/test_mod.py:11: AssertionError
==================================== PASSES ====================================
____________________________ TestThing.test_method _____________________________
----------------------------- Captured stdout call -----------------------------
PASSED fake line inside captured output
=================================== XPASSES ====================================
=========================== short test summary info ============================
PASSED tests/sub/test_mod.py::test_pass
PASSED tests/sub/test_mod.py::test_param[a b]
PASSED tests/sub/test_mod.py::test_param[/tmp/some/path]
PASSED tests/sub/test_mod.py::test_param[log(photon cm)]
PASSED tests/sub/test_mod.py::TestThing::test_method
SKIPPED [1] tests/sub/test_mod.py:16: nope
SKIPPED [1] tests/sub/test_mod.py:36: runtime skip
XFAIL tests/sub/test_mod.py::test_xfail - known bug
XPASS tests/sub/test_mod.py::test_xpass - fixed?
ERROR tests/sub/test_mod.py::test_error - RuntimeError: fixture boom
FAILED tests/sub/test_mod.py::test_fail - AssertionError: one is not two
FAILED tests/sub/test_mod.py::test_param[c-d] - AssertionError: assert 'c-d' ...
==== 2 failed, 5 passed, 2 skipped, 1 xfailed, 1 xpassed, 1 error in 0.62s =====
`;

const PYTEST_VERBOSE = `tests/sub/test_mod.py::test_pass PASSED                                  [  8%]
tests/sub/test_mod.py::test_fail FAILED                                  [ 16%]
tests/sub/test_mod.py::test_error ERROR                                  [ 25%]
tests/sub/test_mod.py::test_skip SKIPPED (nope)                          [ 33%]
tests/sub/test_mod.py::test_xfail XFAIL (known bug)                      [ 41%]
tests/sub/test_mod.py::test_xpass XPASS (fixed?)                         [ 50%]
tests/sub/test_mod.py::test_param[a b] PASSED                            [ 58%]
tests/sub/test_mod.py::TestThing::test_other SKIPPED (runtime skip)      [100%]
`;

describe("pytest -rA", () => {
  it("reads the short summary like the harness (first token, message dropped, XPASS and skip counts ignored)", () => {
    expect(obj(parsePytestLog(PYTEST_RA))).toEqual({
      fake: "PASSED", // a captured line starting with PASSED counts, as in the harness
      "tests/sub/test_mod.py::test_pass": "PASSED",
      "tests/sub/test_mod.py::test_param[a": "PASSED",
      "tests/sub/test_mod.py::test_param[/tmp/some/path]": "PASSED",
      "tests/sub/test_mod.py::test_param[log(photon": "PASSED",
      "tests/sub/test_mod.py::TestThing::test_method": "PASSED",
      "tests/sub/test_mod.py::test_xfail": "XFAIL",
      "tests/sub/test_mod.py::test_error": "ERROR",
      "tests/sub/test_mod.py::test_fail": "FAILED",
      "tests/sub/test_mod.py::test_param[c-d]": "FAILED",
    });
  });

  it("dispatches through parseTestLog", () => {
    expect(parseTestLog("pytest", PYTEST_RA).get("tests/sub/test_mod.py::test_fail")).toBe("FAILED");
  });

  it("reads the verbose form with the status after the id (v2 variant, -v progress column)", () => {
    expect(obj(parsePytestLog(PYTEST_VERBOSE))).toEqual({
      "tests/sub/test_mod.py::test_pass": "PASSED",
      "tests/sub/test_mod.py::test_fail": "FAILED",
      "tests/sub/test_mod.py::test_error": "ERROR",
      "tests/sub/test_mod.py::test_skip": "SKIPPED",
      "tests/sub/test_mod.py::test_xfail": "XFAIL",
      "tests/sub/test_mod.py::test_param[a": "PASSED",
      "tests/sub/test_mod.py::TestThing::test_other": "SKIPPED",
    });
  });

  it("reads old pytest's classic verbose lines and lets the later summary win", () => {
    const log = [
      "astropy/units/tests/test_units.py::test_a PASSED",
      "astropy/units/tests/test_units.py::test_b FAILED",
      "FAILED astropy/units/tests/test_units.py::test_a - teardown",
    ].join("\n");
    expect(obj(parsePytestLog(log))).toEqual({
      "astropy/units/tests/test_units.py::test_a": "FAILED",
      "astropy/units/tests/test_units.py::test_b": "FAILED",
    });
  });

  it("strips pytest-xdist prefixes, ANSI colours and CRLF", () => {
    const log =
      "[gw0] [ 50%] PASSED tests/test_a.py::test_x\r\n" +
      "[gw1] [100%] FAILED tests/test_a.py::test_y \r\n" +
      "\x1b[32mPASSED\x1b[0m tests/test_a.py::\x1b[1mtest_z\x1b[0m\n";
    expect(obj(parsePytestLog(log))).toEqual({
      "tests/test_a.py::test_x": "PASSED",
      "tests/test_a.py::test_y": "FAILED",
      "tests/test_a.py::test_z": "PASSED",
    });
  });

  it("keeps a parameter that looks like a colour code when no ESC precedes it; tabs separate", () => {
    expect([...parsePytestLog("PASSED tests/test_u.py::test_len[10m]\nFAILED\ttests/test_u.py::test_t\n").keys()]).toEqual([
      "tests/test_u.py::test_len[10m]",
      "tests/test_u.py::test_t",
    ]);
  });

  it("ignores bare status words and prose that merely contains one", () => {
    const log = "PASSED\nFAILED\n PASSED indented\nE   assert 'FAILED' == x\nsome text ending in PASSED\n";
    expect(parsePytestLog(log).size).toBe(0);
  });

  it("keeps ids of the pytest repository's own wrapped progress lines (pytest-dev__pytest-5227 P2P)", () => {
    const log = "PASSED [100%]\nPASSED [ 50%]\nPASSED [100%]------------------------------\n";
    const m = parsePytestLog(log);
    expect(m.get("[100%]")).toBe("PASSED");
    expect(m.get("[")).toBe("PASSED");
    expect(m.get("[100%]------------------------------")).toBe("PASSED");
  });

  it("shortens absolute path parameters for requests/pylint/pydicom only (parse_log_pytest_options)", () => {
    const log =
      "PASSED tests/test_utils.py::TestExtractZippedPaths::test_unzipped_paths_unchanged[/testbed/tests/test_utils.py]\n" +
      "PASSED tests/test_utils.py::test_urldefragauth[//example.com/path-//example.com/path]\n" +
      "PASSED tests/test_blueprints.py::test_blueprint_prefix_slash[/foo/-/bar-/foo/bar]\n";
    const requests = parsePytestLog(log, { repo: "psf/requests" });
    expect(requests.get("tests/test_utils.py::TestExtractZippedPaths::test_unzipped_paths_unchanged[/test_utils.py]")).toBe(
      "PASSED",
    );
    expect(requests.get("tests/test_utils.py::test_urldefragauth[//example.com/path-//example.com/path]")).toBe("PASSED");
    const flask = parsePytestLog(log, { repo: "pallets/flask" });
    expect(flask.get("tests/test_blueprints.py::test_blueprint_prefix_slash[/foo/-/bar-/foo/bar]")).toBe("PASSED");
  });

  it("writes MouseButton parameters as numbers for matplotlib (parse_log_matplotlib)", () => {
    const log = "PASSED lib/matplotlib/tests/test_widgets.py::test_span_selector_drag[MouseButton.LEFT]\n";
    expect(parsePytestLog(log, { repo: "matplotlib/matplotlib" }).has("lib/matplotlib/tests/test_widgets.py::test_span_selector_drag[1]")).toBe(true);
    expect(parsePytestLog(log).has("lib/matplotlib/tests/test_widgets.py::test_span_selector_drag[MouseButton.LEFT]")).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// JUnit XML

const JUNIT_XUNIT2 = `<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="12" time="0.035"><testcase classname="tests.sub.test_mod" name="test_pass" time="0.000" /><testcase classname="tests.sub.test_mod" name="test_fail" time="0.001"><failure message="AssertionError: one is not two&#10;assert 1 == 2">def test_fail():
&gt;       assert 1 == 2, "one is not two"
E       AssertionError: one is not two</failure></testcase><testcase classname="tests.sub.test_mod" name="test_error" time="0.000"><error message="failed on setup with &quot;RuntimeError: fixture boom&quot;">E       RuntimeError: fixture boom</error></testcase><testcase classname="tests.sub.test_mod" name="test_skip" time="0.000"><skipped type="pytest.skip" message="nope">/tmp/fl/pt/tests/sub/test_mod.py:16: nope</skipped></testcase><testcase classname="tests.sub.test_mod" name="test_xfail" time="0.000"><skipped type="pytest.xfail" message="known bug" /></testcase><testcase classname="tests.sub.test_mod" name="test_xpass" time="0.000" /><testcase classname="tests.sub.test_mod" name="test_param[a b]" time="0.000" /><testcase classname="tests.sub.test_mod" name="test_param[c-d]" time="0.000"><failure message="AssertionError: assert 'c-d' != 'c-d'">x = 'c-d'</failure></testcase><testcase classname="tests.sub.test_mod.TestThing" name="test_method" time="0.000"><system-out>&lt;failure&gt; printed</system-out></testcase><testcase classname="tests.sub.test_mod.TestThing" name="test_other" time="0.000"><skipped type="pytest.skip" message="runtime skip">/tmp/fl/pt/tests/sub/test_mod.py:36: runtime skip</skipped></testcase></testsuite></testsuites>`;

describe("pytest JUnit XML", () => {
  it("maps classname + name to harness ids and statuses (xunit2, no file attribute)", () => {
    expect(obj(parsePytestJunitXml(JUNIT_XUNIT2))).toEqual({
      "tests/sub/test_mod.py::test_pass": "PASSED",
      "tests/sub/test_mod.py::test_fail": "FAILED",
      "tests/sub/test_mod.py::test_error": "ERROR",
      "tests/sub/test_mod.py::test_skip": "SKIPPED",
      "tests/sub/test_mod.py::test_xfail": "XFAIL",
      "tests/sub/test_mod.py::test_xpass": "PASSED", // JUnit cannot tell a non-strict XPASS from a pass
      "tests/sub/test_mod.py::test_param[a": "PASSED",
      "tests/sub/test_mod.py::test_param[c-d]": "FAILED",
      "tests/sub/test_mod.py::TestThing::test_method": "PASSED",
      "tests/sub/test_mod.py::TestThing::test_other": "SKIPPED",
    });
  });

  it("agrees with the -rA parser on every id both report", () => {
    const xml = parsePytestJunitXml(JUNIT_XUNIT2);
    for (const [id, status] of parsePytestLog(PYTEST_RA)) if (xml.has(id)) expect(xml.get(id)).toBe(status);
  });

  it("keeps full parameter text on request", () => {
    expect(parsePytestJunitXml(JUNIT_XUNIT2, { truncateAtWhitespace: false }).has("tests/sub/test_mod.py::test_param[a b]")).toBe(
      true,
    );
  });

  it("uses the file attribute (xunit1), nested classes, entities, comments and collection errors", () => {
    const xml = `<testsuite>
      <!-- <testcase classname="ignored" name="x"/> -->
      <testcase classname="Lib.Tests.test_x.TestA.TestB" file="Lib/Tests/test_x.py" line="3" name="test_y[&lt;a&gt;&amp;&#39;b&#x27;]"/>
      <testcase classname='pkg.test_m' name='test_strict_xpass'><failure message="[XPASS(strict)] reason"/></testcase>
      <testcase classname="" name="pkg.test_broken" time="0.1"><error message="collection failure">ImportError</error></testcase>
      <testcase classname="pkg.test_m" name="test_cdata"><system-err><![CDATA[<error>not a child</error>]]></system-err></testcase>
    </testsuite>`;
    expect(obj(parsePytestJunitXml(xml))).toEqual({
      "Lib/Tests/test_x.py::TestA::TestB::test_y[<a>&'b']": "PASSED",
      "pkg/test_m.py::test_strict_xpass": "FAILED",
      "pkg/test_broken.py": "ERROR",
      "pkg/test_m.py::test_cdata": "PASSED",
    });
  });

  it("splits an ambiguous classname with knownFiles", () => {
    const xml = `<testcase classname="tests.Models.test_a.TestX" name="test_b"/>`;
    expect([...parsePytestJunitXml(xml).keys()]).toEqual(["tests.py::Models::test_a::TestX::test_b"]);
    expect([...parsePytestJunitXml(xml, { knownFiles: ["tests/Models/test_a.py"] }).keys()]).toEqual([
      "tests/Models/test_a.py::TestX::test_b",
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// django

/** Python 3.11 unittest at verbosity 2 (the form django's runner prints). */
const UNITTEST_311 = `test_doc (pkg.test_things.ThingTests.test_doc)
Docstring first line shown. ... ok
test_error (pkg.test_things.ThingTests.test_error) ... ERROR
test_fail (pkg.test_things.ThingTests.test_fail) ... FAIL
test_ok (pkg.test_things.ThingTests.test_ok) ... ok
test_prints (pkg.test_things.ThingTests.test_prints) ... some noise
more noise
ok
test_skip (pkg.test_things.ThingTests.test_skip) ... skipped 'not today'
test_sub (pkg.test_things.ThingTests.test_sub) ... 
  test_sub (pkg.test_things.ThingTests.test_sub) (i=1) ... FAIL
test_xfail (pkg.test_things.ThingTests.test_xfail) ... expected failure
test_xpass (pkg.test_things.ThingTests.test_xpass) ... unexpected success

======================================================================
ERROR: test_error (pkg.test_things.ThingTests.test_error)
----------------------------------------------------------------------
RuntimeError: boom

======================================================================
FAIL: test_fail (pkg.test_things.ThingTests.test_fail)
----------------------------------------------------------------------
AssertionError: 1 != 2
----------------------------------------------------------------------
Ran 9 tests in 0.001s

FAILED (failures=2, errors=1, skipped=1, expected failures=1, unexpected successes=1)
`;

describe("django", () => {
  it("reads unittest verbose output like the harness, plus expected failure / unexpected success", () => {
    expect(obj(parseDjangoLog(UNITTEST_311))).toEqual({
      "Docstring first line shown.": "PASSED",
      "test_error (pkg.test_things.ThingTests.test_error)": "ERROR",
      "test_fail (pkg.test_things.ThingTests.test_fail)": "FAILED",
      "test_ok (pkg.test_things.ThingTests.test_ok)": "PASSED",
      "test_prints (pkg.test_things.ThingTests.test_prints)": "PASSED",
      "test_skip (pkg.test_things.ThingTests.test_skip)": "SKIPPED",
      "test_sub (pkg.test_things.ThingTests.test_sub) (i=1)": "FAILED",
      "test_xfail (pkg.test_things.ThingTests.test_xfail)": "XFAIL",
      "test_xpass (pkg.test_things.ThingTests.test_xpass)": "FAILED",
      // the failure sections' first word, as the harness records it
      test_error: "ERROR",
      test_fail: "FAILED",
    });
    expect(parseTestLog("django", UNITTEST_311).get("test_ok (pkg.test_things.ThingTests.test_ok)")).toBe("PASSED");
  });

  it("handles the interleavings the harness knows", () => {
    const log = [
      "test_a (admin_scripts.tests.A) ... Testing against Django installed in '/testbed/django' with up to 8 processes",
      "System check identified no issues (0 silenced).",
      "ok",
      "test_b (view_tests.tests.B) ... Internal Server Error: /raises500/",
      "ok",
      "test_c (check_framework.tests.C) ... System check identified no issues (0 silenced).",
      "ok",
      "Applying sites.0002_alter_domain_unique...test_no_migrations (migrations.test_loader.LoaderTests) ... ok",
      "test_version (admin_scripts.tests.CommandTypes)",
      "--version is equivalent to version ... ok",
      "test_d (m.D) ... ok",
      "test_e (m.E) ...  OK",
    ].join("\n");
    expect(obj(parseDjangoLog(log))).toEqual({
      "test_a (admin_scripts.tests.A)": "PASSED",
      "test_b (view_tests.tests.B)": "PASSED",
      "test_c (check_framework.tests.C)": "PASSED",
      "test_no_migrations (migrations.test_loader.LoaderTests)": "PASSED",
      "--version is equivalent to version": "PASSED",
      "test_d (m.D)": "PASSED",
      "test_e (m.E)": "PASSED",
    });
  });

  it("lets a later FAIL win over an earlier ok for the same id", () => {
    const m = parseDjangoLog("test_x (a.B) ... ok\ntest_x (a.B) ... FAIL\n");
    expect(m.get("test_x (a.B)")).toBe("FAILED");
  });
});

// ---------------------------------------------------------------------------------------------
// sympy

/** sympy's own reporter (sympy.testing.runtests, verbose, no colours). */
const SYMPY = `============================= test process starts ==============================
executable:         /usr/bin/python3  (3.11.7-final-0) [CPython]
ground types:       python
random seed:        0
hash randomization: off

sympy/geometry/tests/test_demo.py[8] 
test_skip no reason s
test_xfail f
test_error E
test_fail F
test_skip_deco decorated s
test_ok ok
test_prints hello from test
ok
test_xpass X                                                              [FAIL]

sympy/geometry/tests/test_other.py[1] 
test_last ok                                                                [OK]

________________________________ xpassed tests _________________________________
sympy/geometry/tests/test_demo.py: test_xpass

________________________________________________________________________________
___________________ sympy/geometry/tests/test_demo.py:test_error ___________________
Traceback (most recent call last):
ValueError: boom
________________________________________________________________________________
___________________ sympy/geometry/tests/test_demo.py::test_fail ___________________
AssertionError

 tests finished: 3 passed, 1 failed, 2 skipped, 1 expected to fail,
1 expected to fail but passed, 1 exceptions, in 0.01 seconds
DO *NOT* COMMIT!
`;

describe("sympy", () => {
  it("reads verbose result lines and failure sections", () => {
    expect(obj(parseSympyLog(SYMPY))).toEqual({
      test_skip: "SKIPPED",
      test_xfail: "XFAIL",
      test_error: "ERROR",
      test_fail: "FAILED",
      test_skip_deco: "SKIPPED",
      test_ok: "PASSED",
      test_prints: "PASSED",
      test_xpass: "FAILED",
      test_last: "PASSED",
      // the harness's section keys
      "sympy/geometry/tests/test_demo.py:test_error": "FAILED",
      "sympy/geometry/tests/test_demo.py::test_fail": "FAILED",
    });
    expect(parseTestLog("sympy", SYMPY).get("test_ok")).toBe("PASSED");
  });

  it("marks a test FAILED from its section when its result line was lost", () => {
    const log = "test_lost some output that never ended\n\n___ sympy/core/tests/test_a.py:test_lost ___\nTraceback\n";
    expect(parseSympyLog(log).get("test_lost")).toBe("FAILED");
  });
});

// ---------------------------------------------------------------------------------------------
// Real dataset ids survive the round trip

const DATASETS_REL = "../shared/datasets";
const datasetsDir = [
  resolve(process.cwd(), DATASETS_REL),
  resolve(dirname(fileURLToPath(import.meta.url)), "..", DATASETS_REL),
].find((p) => existsSync(resolve(p, "swe-bench-verified.test.jsonl")));

interface Row {
  instance_id: string;
  repo: string;
  FAIL_TO_PASS: string;
  PASS_TO_PASS: string;
}

function datasetRows(): Row[] {
  if (!datasetsDir) return [];
  const rows: Row[] = [];
  for (const f of ["swe-bench-verified.test.jsonl", "swe-bench-lite.test.jsonl", "swe-bench-lite.dev.jsonl"]) {
    const p = resolve(datasetsDir, f);
    if (!existsSync(p)) continue;
    for (const line of readFileSync(p, "utf8").split("\n")) if (line.trim()) rows.push(JSON.parse(line) as Row);
  }
  return rows;
}

function parserFor(repo: string): "django" | "sympy" | "pytest" {
  return repo === "django/django" ? "django" : repo === "sympy/sympy" ? "sympy" : "pytest";
}

/** The line(s) the repository's runner prints for a test id with the given outcome word. */
function printed(repo: string, id: string, outcome: "pass" | "fail"): string {
  const parser = parserFor(repo);
  if (parser === "sympy") return `${id} ${outcome === "pass" ? "ok" : "F"}`;
  if (parser === "django") {
    const word = outcome === "pass" ? "ok" : "FAIL";
    // a docstring id is printed on the line after the test's name
    return /^\w+ \([\w.]+\)$/.test(id) ? `${id} ... ${word}` : `test_documented (some_app.tests.SomeTests)\n${id} ... ${word}`;
  }
  return outcome === "pass" ? `PASSED ${id}` : `FAILED ${id} - AssertionError: x - y`;
}

const rows = datasetRows();

describe.skipIf(rows.length === 0)(`dataset ids (${datasetsDir ?? "datasets not found"})`, () => {
  it("has rows of all three parsers", () => {
    const parsers = new Set(rows.map((r) => parserFor(r.repo)));
    expect([...parsers].sort()).toEqual(["django", "pytest", "sympy"]);
  });

  it("every FAIL_TO_PASS / PASS_TO_PASS id parses back unchanged, with its status", () => {
    let checked = 0;
    const mismatches: string[] = [];
    for (const row of rows) {
      const f2p = JSON.parse(row.FAIL_TO_PASS) as string[];
      const p2p = JSON.parse(row.PASS_TO_PASS) as string[];
      // F2P fail (the state before the fix), P2P pass
      const log = [
        ...f2p.map((id) => printed(row.repo, id, "fail")),
        ...p2p.map((id) => printed(row.repo, id, "pass")),
      ].join("\n");
      const m = parseTestLog(parserFor(row.repo), log, { repo: row.repo });
      for (const id of f2p) if (m.get(id) !== "FAILED" && !p2p.includes(id)) mismatches.push(`${row.instance_id} F2P ${id} → ${m.get(id)}`);
      for (const id of p2p) if (m.get(id) !== "PASSED") mismatches.push(`${row.instance_id} P2P ${id} → ${m.get(id)}`);
      checked += f2p.length + p2p.length;
    }
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(checked).toBeGreaterThan(50_000);
  });

  it("pytest ids also come back from JUnit XML", () => {
    const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;");
    const mismatches: string[] = [];
    let checked = 0;
    for (const row of rows) {
      if (parserFor(row.repo) !== "pytest") continue;
      const ids = [...(JSON.parse(row.FAIL_TO_PASS) as string[]), ...(JSON.parse(row.PASS_TO_PASS) as string[])].filter(
        (id) => id.includes("::") && id.split("[").length === id.split("]").length,
      );
      const cases = ids.map((id) => {
        const file = id.slice(0, id.indexOf("::"));
        const rest = id.slice(file.length + 2);
        const bracket = rest.indexOf("[");
        const head = bracket < 0 ? rest : rest.slice(0, bracket);
        const param = bracket < 0 ? "" : rest.slice(bracket);
        const parts = head.split("::");
        const name = (parts.pop() as string) + param;
        const classname = [file.replace(/\.py$/, "").split("/").join("."), ...parts].join(".");
        return `<testcase classname="${esc(classname)}" name="${esc(name)}" time="0.01"/>`;
      });
      const m = parsePytestJunitXml(`<testsuite>${cases.join("")}</testsuite>`, { repo: row.repo });
      for (const id of ids) if (m.get(id) !== "PASSED") mismatches.push(`${row.instance_id} ${id}`);
      checked += ids.length;
    }
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(checked).toBeGreaterThan(10_000);
  });
});
