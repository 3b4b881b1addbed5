"""forager's pytest plugin for hidden-test runs (loaded with `-p _forager_pytest_<tag>`).

Shipped by rewards/evaluate.ts beside the guard (rewards/driver/guard.py), whose channel it
writes to. Stdlib and pytest only; pytest 4 to 8.

Records, as each happens (so nothing done later in the process can take them back):
- `sess`: a session started; `coll`: collection finished (item count); `end`: the session
  finished (exit status), written after every other plugin's sessionfinish;
- `rep`: every test report as pytest logs it (node id, phase, outcome, xfail), before any
  other plugin sees it;
- `body`: what the test body itself did, from a wrapper of each item's `runtest` set at
  collection: the exception it raised, if any (unittest-style items: the errors pytest
  collected from unittest). A call reported passed whose body raised, or with no body record,
  is not a pass (rewards/records.ts).
Tamper evidence (`tamper`): the runner's functions and the builtins the grading relies on
replaced by code of the tree (checked against a snapshot at session start: when collection
ends, before each test body, and at the end), an item's test function swapped, a plugin
registered by code of the tree after the session started.
"""
import builtins
import os
import sys

_TAG = __name__[len("_forager_pytest_"):]
try:
    G = sys.modules.get("_forager_guard_" + _TAG) or __import__("_forager_guard_" + _TAG)
except Exception:  # pragma: no cover - the guard is always shipped with the plugin
    G = None


def _emit(rec):
    if G is not None:
        G.emit(rec)


def _untrusted(value):
    """(is the value code of the tree, its file)."""
    if G is None:
        return False, None
    c, fn = G._origin_of_value(value)
    return c == "tree", fn


# Names the grading relies on: the exception hierarchy an assertion raises through, the type
# tests, attribute access. Other builtins replaced by code of the tree are flags.
_BUILTIN_CORE = ("AssertionError", "Exception", "BaseException", "isinstance", "issubclass", "type", "object",
                 "getattr", "setattr", "hasattr", "bool", "repr", "__build_class__", "__import__")
_CORE = {
    "_pytest.runner": ("call_and_report", "call_runtest_hook", "runtestprotocol", "CallInfo", "check_interactive_exception",
                       "pytest_runtest_makereport", "pytest_runtest_call", "pytest_runtest_protocol"),
    "_pytest.python": ("pytest_pyfunc_call", "Function"),
    "_pytest.reports": ("TestReport", "BaseReport"),
    "_pytest.main": ("pytest_runtestloop", "Session"),
    "_pytest.skipping": ("pytest_runtest_makereport",),
    "_pytest.unittest": ("TestCaseFunction", "pytest_runtest_makereport"),
    "pluggy._callers": ("_multicall",),
    "pluggy.callers": ("_multicall",),
    "pluggy._hooks": ("HookCaller", "_HookCaller"),
    "pluggy._manager": ("PluginManager",),
}


def _runner_modules():
    out = {}
    for name, m in list(sys.modules.items()):
        top = name.split(".")[0]
        if m is None or top not in ("_pytest", "pytest", "pluggy"):
            continue
        f = getattr(m, "__file__", None)
        if f and G is not None and G._classify(f) != "other":
            continue  # the runner under test (pytest's own repository): code of the tree
        out[name] = m
    return out


# Classes checked before every test body (all runner classes are checked after collection and at
# the end).
_CORE_CLASSES = ("_pytest.reports.TestReport", "_pytest.reports.BaseReport", "_pytest.runner.CallInfo",
                 "_pytest.python.Function", "_pytest.unittest.TestCaseFunction", "_pytest.nodes.Item", "_pytest.nodes.Node",
                 "_pytest.main.Session", "_pytest.skipping.Xfail", "pluggy._hooks.HookCaller", "pluggy._hooks._HookCaller",
                 "pluggy.hooks._HookCaller", "pluggy._manager.PluginManager", "pluggy.manager.PluginManager",
                 "_pytest.config.PytestPluginManager", "_pytest.outcomes.OutcomeException")


class _State(object):
    def __init__(self):
        self.started = False
        self.snap = {}
        self.core = []
        self.builtins = {}
        self.classes = {}
        self.core_classes = {}


_st = _State()


def _snapshot():
    snap = {}
    mods = _runner_modules()
    for name, m in mods.items():
        try:
            for k, v in list(vars(m).items()):
                snap[(name, k)] = v
        except Exception:
            pass
    _st.snap = snap
    _st.core = [(mod, k) for mod, names in _CORE.items() for k in names if (mod, k) in snap]
    _st.builtins = {k: getattr(builtins, k) for k in _BUILTIN_CORE if hasattr(builtins, k)}
    if G is not None:
        classes = G.runner_classes(sorted(mods))
        _st.classes = G.snapshot_classes(classes)
        _st.core_classes = G.snapshot_classes([c for c in classes if c[0] in _CORE_CLASSES])


def _check(where, full):
    if G is not None:
        G.check_classes(_st.classes if full else _st.core_classes, where)
    keys = list(_st.snap) if full else _st.core
    for key in keys:
        mod, k = key
        m = sys.modules.get(mod)
        cur = getattr(m, k, _MISSING) if m is not None else _MISSING
        old = _st.snap[key]
        if cur is old:
            continue
        if isinstance(cur, (int, float, str, bytes, bool, type(None), dict, list, tuple, set, frozenset)):
            _st.snap[key] = cur
            continue
        bad, fn = _untrusted(cur)
        if bad:
            _report("tamper", "%s.%s replaced by code of the tree (%s)" % (mod, k, fn), where)
        elif fn is None:
            _report("flag", "%s.%s changed during the run" % (mod, k), where)
        _st.snap[key] = cur
    for k, old in list(_st.builtins.items()):
        cur = getattr(builtins, k, _MISSING)
        if cur is old:
            continue
        bad, fn = _untrusted(cur)
        _report("tamper" if bad else "flag", "builtins.%s replaced%s" % (k, " by code of the tree (%s)" % fn if bad else ""), where)
        _st.builtins[k] = cur


_MISSING = object()
_said = set()


def _report(kind, why, where):
    if (kind, why) in _said or len(_said) > 200:
        return
    _said.add((kind, why))
    _emit({"k": kind, "why": why, "where": where})


def _code_of(item):
    try:
        obj = item.__dict__.get("_obj", None)
        if obj is None:
            obj = getattr(item, "obj", None)
    except Exception:
        return None
    obj = getattr(obj, "__func__", obj)
    return getattr(obj, "__code__", None)


def _wrap(item):
    try:
        orig = item.runtest
    except Exception:
        return
    code0 = _code_of(item)
    nodeid = item.nodeid

    def runtest():
        _check("before the body of " + nodeid, False)
        if code0 is not None and _code_of(item) is not code0:
            _report("tamper", "the test function of %s was swapped" % nodeid, nodeid)
        try:
            orig()
        except BaseException as e:
            _emit({"k": "body", "id": nodeid, "raised": type(e).__name__})
            raise
        excinfo = getattr(item, "_excinfo", None)
        if excinfo:
            try:
                name = type(excinfo[0].value).__name__
            except Exception:
                name = "unittest error"
            _emit({"k": "body", "id": nodeid, "raised": name})
        else:
            _emit({"k": "body", "id": nodeid, "raised": None})
    try:
        item.runtest = runtest
    except Exception:
        pass


try:
    import pytest

    _hookimpl = pytest.hookimpl
except Exception:  # pragma: no cover
    _hookimpl = None


# The baseline is taken as this plugin loads: forager's `-p` comes before every other plugin, and
# pytest's own modules are all loaded by then, before any code of the tree runs.
_snapshot()


def _atexit_count():
    try:
        import atexit
        return atexit._ncallbacks()
    except Exception:
        return None


# atexit registrations are not audited by CPython: their number is compared at the end (evidence,
# not a verdict — results no longer depend on anything an atexit handler could do).
_ATEXIT_AT_START = _atexit_count()


def pytest_sessionstart(session):
    _st.started = True
    _check("at the start of the session", True)
    _emit({"k": "sess", "pid": os.getpid(), "pytest": getattr(sys.modules.get("pytest"), "__version__", "?")})


if _hookimpl is not None:
    @_hookimpl(trylast=True)
    def pytest_collection_finish(session):
        _check("after collection", True)
        items = list(getattr(session, "items", []) or [])
        for item in items:
            _wrap(item)
        _emit({"k": "coll", "n": len(items)})

    @_hookimpl(tryfirst=True)
    def pytest_runtest_logreport(report):
        _emit({
            "k": "rep",
            "id": report.nodeid,
            "when": getattr(report, "when", None),
            "outcome": report.outcome,
            "xfail": hasattr(report, "wasxfail"),
        })

    @_hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(session, exitstatus):
        yield
        _check("at the end of the session", True)
        n = _atexit_count()
        if n is not None and _ATEXIT_AT_START is not None and n > _ATEXIT_AT_START:
            _report("flag", "%d atexit handler(s) registered during the run" % (n - _ATEXIT_AT_START), "the session")
        try:
            code = int(exitstatus)
        except Exception:
            code = None
        _emit({"k": "end", "exit": code, "n": len(getattr(session, "items", []) or [])})

    def pytest_collectreport(report):
        if report.failed:
            _emit({"k": "collect-fail", "id": report.nodeid})

    def pytest_plugin_registered(plugin, manager):
        if not _st.started or G is None or G._runner_in_tree:
            return
        c, where = G._origin(2)
        if c == "tree":
            _report("tamper", "a plugin (%s) was registered by code of the tree" % getattr(plugin, "__name__", type(plugin).__name__), where)
