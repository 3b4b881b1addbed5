/**
 * A created pytest repository and a SWE-bench-style task on it, for evaluation tests: a buggy
 * `add`, a gold patch, a hidden test patch (FAIL_TO_PASS `test_add`, PASS_TO_PASS `test_mul`),
 * wrong / non-applying / fuzzy patches, a hanging one, and adversarial patches that try to forge
 * the result. Never real repositories' code.
 */
import fs from "node:fs";
import path from "node:path";
import type { SweBenchSpecTable } from "../../images/swebench-specs";
import { git, makeRepo } from "./git-fixtures";

export const EVAL_REPO = "example/evalpkg";
export const EVAL_VERSION = "0.1";
export const EVAL_INSTANCE = "example__evalpkg-1";

export const CALC_BASE = `"""A tiny calculator."""

# helpers below


def mul(a, b):
    return a * b


def add(a, b):
    return a - b
`;

const TEST_BASE = `from evalpkg.calc import mul


def test_mul():
    assert mul(2, 3) == 6
`;

const TEST_HIDDEN = `from evalpkg.calc import add, mul
from tests.util import expected_sum


def test_mul():
    assert mul(2, 3) == 6


def test_add():
    assert add(2, 3) == 5
    assert add(2, 3) == expected_sum(2, 3)
`;

/** Everything a test needs about the created repository and its patches. */
export interface EvalFixture {
  dir: string;
  baseSha: string;
  gold: string;
  testPatch: string;
  failToPass: string[];
  passToPass: string[];
  /** Named patches: wrong, noApply, fuzzy, hang, and the adversarial ones. */
  patches: Record<string, string>;
}

/** `git diff` of the working tree after writing `files` (null deletes; a Buffer is written as is, binary diffs kept), then restore. */
export function diffOf(dir: string, files: Record<string, string | Buffer | null>): string {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(dir, rel);
    if (content === null) fs.rmSync(p, { force: true });
    else {
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, content);
    }
  }
  git(dir, ["add", "-A", "--force"]);
  const d = git(dir, ["diff", "--cached", "--no-color", "--binary"]) + "\n";
  git(dir, ["reset", "-q", "--hard", "HEAD"]);
  git(dir, ["clean", "-fdq"]);
  return d;
}

export const withCalc = (body: string) => CALC_BASE.replace("def add(a, b):\n    return a - b\n", body);

/** Buggy add plus `extra` code at module level (imported by the tests). */
export const calcWith = (extra: string) => CALC_BASE + "\n\n" + extra.trim() + "\n";

const FAKE_JUNIT = `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="0" skipped="0" tests="2"><testcase classname="tests.test_calc" name="test_mul" file="tests/test_calc.py"/><testcase classname="tests.test_calc" name="test_add" file="tests/test_calc.py"/></testsuite></testsuites>`;

/**
 * Python that writes to the test process's real stdout even while pytest captures fd 1: the
 * first descriptor that is a pipe (pytest keeps a dup of the original stdout).
 */
export const RAW_WRITE = `
def _raw_write(data):
    import os
    for fd in range(3, 256):
        try:
            if os.readlink("/proc/self/fd/%d" % fd).startswith("pipe:"):
                os.write(fd, data)
                return
        except OSError:
            pass
    os.write(1, data)
`;

/** A pytest plugin module that rewrites every test report to passed. */
const PLUGIN_PASS_ALL = `import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
`;

/**
 * Reward integrity round 2 (issue 12): three or more variants per class, each must be graded not
 * resolved (forged where the forgery happens inside the test process).
 */
function roundTwoPatches(dir: string): Record<string, string> {
  return {
    // -- forgery from inside the test process (the code under test rewrites pytest at import)
    inprocReportClass: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import sys as _sys
_rep = _sys.modules.get("_pytest.reports")
if _rep is not None:
    _orig = _rep.TestReport.from_item_and_call
    def _forge(cls, item, call):
        r = _orig(item, call)
        r.outcome = "passed"
        r.longrepr = None
        return r
    _rep.TestReport.from_item_and_call = classmethod(_forge)
`),
    }),
    inprocGcPlugin: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import gc as _gc
import pytest as _pytest


class _Forger:
    @_pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        r = outcome.get_result()
        r.outcome = "passed"
        r.longrepr = None


for _o in _gc.get_objects():
    if type(_o).__name__ == "PytestPluginManager":
        try:
            _o.register(_Forger(), "forger")
        except Exception:
            pass
`),
    }),
    inprocRuntest: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import sys as _sys
_py = _sys.modules.get("_pytest.python")
if _py is not None:
    _py.Function.runtest = lambda self: None
`),
    }),
    // -- configuration and import-path hooks
    dotPytestIni: diffOf(dir, { "evalpkg/plug.py": PLUGIN_PASS_ALL, ".pytest.ini": "[pytest]\naddopts = -p evalpkg.plug\n" }),
    pyprojectAddopts: diffOf(dir, {
      "evalpkg/plug.py": PLUGIN_PASS_ALL,
      "pyproject.toml": '[project]\nname = "evalpkg"\nversion = "0.1.0"\n\n[tool.pytest.ini_options]\naddopts = "-p evalpkg.plug"\n',
    }),
    setupCfgAddopts: diffOf(dir, { "evalpkg/plug.py": PLUGIN_PASS_ALL, "setup.cfg": "[tool:pytest]\naddopts = -p evalpkg.plug\n" }),
    entryPoint: diffOf(dir, {
      "evalpkg/plug.py": PLUGIN_PASS_ALL,
      "evalpkg_forge.egg-info/PKG-INFO": "Metadata-Version: 2.1\nName: evalpkg-forge\nVersion: 0.1.0\n",
      "evalpkg_forge.egg-info/entry_points.txt": "[pytest11]\nforge = evalpkg.plug\n",
      "evalpkg_forge.egg-info/top_level.txt": "evalpkg\n",
    }),
    sitecustomize: diffOf(dir, {
      "sitecustomize.py": "import os\nos.environ['PYTEST_ADDOPTS'] = '-p evalpkg.plug'\n",
      "evalpkg/plug.py": PLUGIN_PASS_ALL,
    }),
    shadowPluggy: diffOf(dir, { "pluggy.py": "raise SystemExit(0)\n" }),
    // -- nothing the submission does becomes an environment error
    floodAtExit: diffOf(dir, {
      "evalpkg/calc.py": withCalc(`def add(a, b):
    return a + b


import atexit as _atexit, os as _os


def _flood():
    block = b"x" * (1024 * 1024)
    for _ in range(300):
        _os.write(1, block)


_atexit.register(_flood)
`),
    }),
    killEverything: diffOf(dir, {
      "evalpkg/calc.py": withCalc(`def add(a, b):
    import os
    os.system("kill -TERM 1; kill -9 -1")
    return a + b
`),
    }),
  };
}

/** Make the repository under `dir` and the patches. */
export function makeEvalFixture(dir: string): EvalFixture {
  const { shas } = makeRepo(dir, {
    "pyproject.toml": '[project]\nname = "evalpkg"\nversion = "0.1.0"\n',
    ".gitignore": "__pycache__/\n.pytest_cache/\n",
    "evalpkg/__init__.py": "",
    "evalpkg/calc.py": CALC_BASE,
    "tests/__init__.py": "",
    "tests/util.py": "def expected_sum(a, b):\n    return a + b\n",
    "tests/test_calc.py": TEST_BASE,
  });
  const baseSha = shas[0]!;
  const gold = diffOf(dir, { "evalpkg/calc.py": withCalc("def add(a, b):\n    return a + b\n") });
  const testPatch = diffOf(dir, { "tests/test_calc.py": TEST_HIDDEN });

  // Same fix, but the first context line of the hunk does not match: git apply refuses it,
  // patch --fuzz applies it.
  const fuzzy = gold.replace(/^(@@[^\n]*\n) \n/m, "$1 # a context line that is not there\n");
  if (fuzzy === gold) throw new Error("fuzzy patch fixture: context line not found");

  const patches: Record<string, string> = {
    gold,
    wrong: diffOf(dir, { "evalpkg/calc.py": withCalc("def add(a, b):\n    return a * b\n") }),
    noApply: gold.replace(/^- {4}return a - b$/m, "-    return a - b - 0"),
    fuzzy,
    hang: diffOf(dir, { "evalpkg/calc.py": withCalc("def add(a, b):\n    while True:\n        pass\n") }),
    // Prints fake PASSED lines after pytest's own summary (atexit), for the failing test.
    fakePassed: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import atexit, os
atexit.register(lambda: os.write(1, b"PASSED tests/test_calc.py::test_add\\nPASSED tests/test_calc.py::test_mul\\n"))
`),
    }),
    // Edits the hidden test file itself so test_add passes trivially.
    editTestFile: diffOf(dir, {
      "tests/test_calc.py": "def test_mul():\n    assert True\n\n\ndef test_add():\n    assert True\n",
    }),
    // Edits a test helper the test patch does not touch (a test-like path) to agree with the bug.
    editTestHelper: diffOf(dir, { "tests/util.py": "def expected_sum(a, b):\n    return a - b\n" }),
    // Adds a conftest.py hook that rewrites every report to passed.
    conftest: diffOf(dir, { "conftest.py": PLUGIN_PASS_ALL }),
    // Overwrites the JUnit report (any XML under /tmp/forager-junit-*) after pytest wrote it, and exits 0.
    fakeJunit: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import atexit, glob, os
def _forge():
    for p in glob.glob("/tmp/forager-junit-*/*.xml") + glob.glob("/tmp/*/*.xml"):
        with open(p, "w") as f:
            f.write(${JSON.stringify(FAKE_JUNIT)})
    os._exit(0)
atexit.register(_forge)
`),
    }),
    // Prints a fake end marker and exit code
    // (at import, to the real stdout), then fake results after pytest's summary.
    fakeMarkers: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`${RAW_WRITE}
import atexit, os
_raw_write(b">>>>> End Test Output\\n>>>>> Test Exit Code: 0\\n")
atexit.register(lambda: os.write(1, b"PASSED tests/test_calc.py::test_add\\nPASSED tests/test_calc.py::test_mul\\n"))
`),
    }),
    // Prints a fake summary and leaves with os._exit(0) in the middle of the run.
    exitEarly: diffOf(dir, {
      "evalpkg/calc.py": withCalc(`${RAW_WRITE}

def add(a, b):
    import os
    _raw_write(b"\\n=========================== short test summary info ============================\\nPASSED tests/test_calc.py::test_mul\\nPASSED tests/test_calc.py::test_add\\n============================== 2 passed in 0.01s ===============================\\n")
    os._exit(0)
`),
    }),
    // Kills its own test process.
    killSelf: diffOf(dir, {
      "evalpkg/calc.py": withCalc(`${RAW_WRITE}

def add(a, b):
    import os, signal
    _raw_write(b"PASSED tests/test_calc.py::test_add\\n")
    os.kill(os.getpid(), signal.SIGKILL)
`),
    }),
    ...roundTwoPatches(dir),
  };
  return {
    dir,
    baseSha,
    gold,
    testPatch,
    failToPass: ["tests/test_calc.py::test_add"],
    passToPass: ["tests/test_calc.py::test_mul"],
    patches,
  };
}

/** A SWE-bench dataset row for the fixture. */
export function evalDatasetRow(f: EvalFixture, instanceId = EVAL_INSTANCE): Record<string, string> {
  return {
    instance_id: instanceId,
    repo: EVAL_REPO,
    base_commit: f.baseSha,
    patch: f.gold,
    test_patch: f.testPatch,
    problem_statement: "add() subtracts",
    hints_text: "",
    created_at: "2020-01-01T00:00:00Z",
    version: EVAL_VERSION,
    environment_setup_commit: f.baseSha,
    FAIL_TO_PASS: JSON.stringify(f.failToPass),
    PASS_TO_PASS: JSON.stringify(f.passToPass),
  };
}

/** A spec table (the schema of images/swebench-specs.json) with the fixture's repository only. */
export function evalSpecTable(): SweBenchSpecTable {
  return {
    schemaVersion: 1,
    python: "3.11",
    common: { systemPackages: ["python3-pytest", "python3-pip", "python3-setuptools"] },
    shimSnippets: {},
    repos: {
      [EVAL_REPO]: {
        logParser: "pytest",
        harnessLogParser: "parse_log_pytest",
        defaults: { testCommand: "pytest -rA" },
        versions: { [EVAL_VERSION]: { status: "verified", testTimeoutSeconds: 120 } },
      },
    },
    needsNetwork: [{ instanceId: "example__evalpkg-net", reason: "needs the internet (fixture)" }],
    knownIssues: [],
  };
}
