"""forager's execution tracer: a pytest plugin, standard library only.

Loaded with ``-p forager_tracer`` (its directory on PYTHONPATH) and configured by the JSON file
named in ``FORAGER_TRACE_CONFIG``. While each test's call phase runs, every call of a function
whose file is inside the repository (``root``; test code only with ``includeTests``; never
installed libraries) is recorded: the function's source, a ``call`` event with the arguments,
one ``line`` event per executed line with the locals *before* the line runs, ``return`` /
``yield`` events with the value and ``exception`` events. Locals are diffed as in CWM's traces:
a variable whose bounded repr did not change since the previous event of the same activation is
``".."``; ``call`` events (a generator's resume included) carry every local.

Backends: ``sys.settrace`` (Python <= 3.11) and ``sys.monitoring`` (PEP 669, Python >= 3.12).

One JSON object per finished activation is appended to ``out``; an activation over
``maxLineEvents`` line events or ``maxBytes`` bytes is dropped (counted in the stats), as CWM
dropped traces over 10k line events or 1 MB. At session end a stats object is written to
``stats``. Nothing here may change a test's outcome: the tracer catches its own errors, never
raises into the traced code, and computes reprs with tracing suspended.
"""

import json
import os
import re
import sys
import time
import warnings

_object_repr = object.__repr__

_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x100
_CO_ASYNC_GENERATOR = 0x200
_GEN_FLAGS = _CO_GENERATOR | _CO_COROUTINE | _CO_ASYNC_GENERATOR

DEFAULTS = {
    "root": "/testbed",
    "out": "/tmp/forager-traces/traces.jsonl",
    "stats": "/tmp/forager-traces/stats.json",
    "includeTests": False,
    "functions": [],
    "maxLineEvents": 10000,
    "maxBytes": 1000000,
    "maxReprChars": 200,
    "maxStringChars": 100,
    "maxCollectionItems": 10,
    "maxReprDepth": 3,
    "maxCallsPerFunction": 10,
    "maxFunctions": 0,
    "maxRecords": 0,
    "normalizeAddresses": True,
    "backend": "auto",
}

_TEST_PATH = re.compile(r"(^|/)(tests?|testing)/|(^|/)test_[^/]*\.py$|_test\.py$|(^|/)conftest\.py$")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MOCK_ID = re.compile(r" id='\d+'")  # unittest.mock reprs carry id()
try:
    import dis as _dis

    _YIELD_VALUE = _dis.opmap.get("YIELD_VALUE", -1)
    _RESUME = _dis.opmap.get("RESUME", -1)
except Exception:  # pragma: no cover
    _YIELD_VALUE = _RESUME = -1


class Repr:
    """Bounded, deterministic reprs. ``flags`` collects what was cut: "repr" (a string cut to
    ``maxReprChars`` / ``maxStringChars``), "collection" (items beyond ``maxCollectionItems``
    or nesting beyond ``maxReprDepth`` elided), "error" (a repr raised)."""

    def __init__(self, cfg):
        self.max_chars = int(cfg["maxReprChars"])
        self.max_str = int(cfg["maxStringChars"])
        self.max_items = int(cfg["maxCollectionItems"])
        self.max_depth = int(cfg["maxReprDepth"])
        self.normalize = bool(cfg["normalizeAddresses"])
        self.flags = set()

    def __call__(self, value):
        try:
            s = self._repr(value, 0)
        except BaseException as e:  # noqa: BLE001 - a repr must never escape
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self.flags.add("error")
            s = "<%s object; repr raised %s>" % (_type_name(value), type(e).__name__)
        if self.normalize:
            if " at 0x" in s:
                s = _ADDRESS.sub(" at 0x..", s)
            if " id='" in s:
                s = _MOCK_ID.sub(" id='..'", s)
        if len(s) > self.max_chars:
            self.flags.add("repr")
            s = s[: self.max_chars - 3] + "..."
        return s

    def _repr(self, v, depth):
        t = type(v)
        if v is None or t is bool or t is float or t is complex:
            return repr(v)
        if t is int:
            try:
                s = repr(v)
            except ValueError:  # over sys.int_info.str_digits_check_threshold
                self.flags.add("repr")
                return "<int of %d bits>" % v.bit_length()
            return s
        if t is str or t is bytes or t is bytearray:
            if len(v) > self.max_str:
                self.flags.add("repr")
                return repr(v[: self.max_str]) + "..."
            return repr(v)
        if t is list or t is tuple or t is set or t is frozenset or t is dict:
            if depth >= self.max_depth and len(v) > 0:
                self.flags.add("collection")
                return {list: "[...]", tuple: "(...)", set: "{...}", frozenset: "frozenset({...})", dict: "{...}"}[t]
            items = []
            n = 0
            if t is dict:
                for k, x in v.items():
                    if n >= self.max_items:
                        break
                    items.append(self._repr(k, depth + 1) + ": " + self._repr(x, depth + 1))
                    n += 1
            else:
                for x in v:
                    if n >= self.max_items:
                        break
                    items.append(self._repr(x, depth + 1))
                    n += 1
            if len(v) > n:
                self.flags.add("collection")
                items.append("...")
            body = ", ".join(items)
            if t is list:
                return "[" + body + "]"
            if t is tuple:
                return "(" + body + ("," if len(v) == 1 else "") + ")"
            if t is dict:
                return "{" + body + "}"
            if not v:
                return "set()" if t is set else "frozenset()"
            return ("{" + body + "}") if t is set else ("frozenset({" + body + "})")
        try:
            if t.__repr__ is _object_repr:
                s = repr(v)
            else:
                # A __repr__ is the repository's code: warnings it causes (a coroutine made and
                # never awaited, a deprecation) must not reach the test, which may turn warnings
                # into errors.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    s = repr(v)
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self.flags.add("error")
            return "<%s object; repr raised %s>" % (_type_name(v), type(e).__name__)
        if type(s) is not str:
            self.flags.add("error")
            return "<%s object; repr returned %s>" % (_type_name(v), type(s).__name__)
        return s


def _type_name(v):
    try:
        t = type(v)
        return "%s.%s" % (t.__module__, t.__qualname__)
    except BaseException:  # noqa: BLE001
        return "object"


class Activation:
    """One call of a traced function (a generator's whole life, across its resumes)."""

    __slots__ = ("code", "record", "prev", "lines", "bytes", "dropped", "repr", "last_kind")

    def __init__(self, tracer, code, info):
        self.code = code
        self.record = {
            "test": tracer.test_id,
            "qualname": info["qualname"],
            "file": info["file"],
            "firstLine": info["firstLine"],
            "source": info["source"],
            "events": [],
        }
        self.prev = None
        self.lines = 0
        self.bytes = len(info["source"]) + 200
        self.dropped = None
        self.repr = Repr(tracer.cfg)
        self.last_kind = None


class Tracer:
    def __init__(self, cfg):
        self.cfg = dict(DEFAULTS)
        self.cfg.update(cfg)
        self.root = os.path.realpath(self.cfg["root"]).rstrip("/") + "/"
        self.self_file = os.path.realpath(__file__)
        self.functions = set(self.cfg["functions"] or [])
        self.max_lines = int(self.cfg["maxLineEvents"])
        self.max_bytes = int(self.cfg["maxBytes"])
        self.max_calls = int(self.cfg["maxCallsPerFunction"])
        self.max_functions = int(self.cfg["maxFunctions"])
        self.max_records = int(self.cfg["maxRecords"])
        self.code_info = {}  # code -> info dict, or None when not traced
        self.calls = {}  # (file, qualname) -> activations started
        self.active = {}  # frame -> Activation
        self.test_id = None
        self.enabled = False
        self.busy = False
        self.stats = {
            "backend": None,
            "python": "%d.%d.%d" % sys.version_info[:3],
            "tests": 0,
            "records": 0,
            "events": 0,
            "lineEvents": 0,
            "bytes": 0,
            "droppedLines": 0,
            "droppedBytes": 0,
            "skippedCap": 0,
            "functions": 0,
            "tracerErrors": 0,
            "firstError": None,
            "seconds": 0.0,
        }
        d = os.path.dirname(self.cfg["out"])
        if d:
            os.makedirs(d, exist_ok=True)
        self.out = open(self.cfg["out"], "a", encoding="utf-8")

    # -- which code is traced ------------------------------------------------------------------

    def info(self, code):
        """The info of a code object to trace (qualname, file, source), or None."""
        try:
            return self.code_info[code]
        except KeyError:
            pass
        info = None
        try:
            info = self._info(code)
        except Exception as e:  # noqa: BLE001
            self._error(e)
        self.code_info[code] = info
        return info

    def _info(self, code):
        name = code.co_name
        if name.startswith("<"):  # module and class bodies, comprehensions, lambdas
            return None
        fn = code.co_filename
        if not fn or fn.startswith("<"):
            return None
        path = os.path.realpath(fn)
        if not path.startswith(self.root) or path == self.self_file:
            return None
        rel = path[len(self.root) :]
        if "site-packages/" in rel or "dist-packages/" in rel or rel.startswith("."):
            return None
        if not self.cfg["includeTests"] and _TEST_PATH.search(rel):
            return None
        qualname = getattr(code, "co_qualname", name)
        if self.functions and qualname not in self.functions and ("%s::%s" % (rel, qualname)) not in self.functions:
            return None
        import inspect

        try:
            lines, first = inspect.getsourcelines(code)
        except (OSError, TypeError, IndexError):
            return None
        return {"qualname": qualname, "file": rel, "firstLine": first, "source": "".join(lines)}

    def may_start(self, info):
        """Whether a new activation of this function may be recorded (caps), counting it."""
        key = (info["file"], info["qualname"])
        n = self.calls.get(key, 0)
        if n == 0 and self.max_functions and len(self.calls) >= self.max_functions:
            self.stats["skippedCap"] += 1
            return False
        if n >= self.max_calls or (self.max_records and self.stats["records"] >= self.max_records):
            self.stats["skippedCap"] += 1
            return False
        self.calls[key] = n + 1
        if n == 0:
            self.stats["functions"] += 1
        return True

    def capped(self, info):
        """Whether no further activation of this function will be recorded."""
        n = self.calls.get((info["file"], info["qualname"]), 0)
        if n == 0 and self.max_functions and len(self.calls) >= self.max_functions:
            return True
        return n >= self.max_calls or bool(self.max_records and self.stats["records"] >= self.max_records)

    # -- events ----------------------------------------------------------------------------------

    def locals_event(self, act, kind, frame, line):
        cur = {}
        r = act.repr
        for k, v in frame.f_locals.items():
            cur[k] = r(v)
        prev = act.prev
        if prev is None or kind == "call":
            shown = dict(cur)
        else:
            shown = {k: (".." if prev.get(k) == s else s) for k, s in cur.items()}
        act.prev = cur
        ev = {"kind": kind, "line": line, "locals": shown}
        self.add(act, ev, sum(len(k) + len(s) + 6 for k, s in shown.items()) + 24)
        if kind == "line":
            act.lines += 1
            if act.lines > self.max_lines:
                self.drop(act, "lines")

    def value_event(self, act, kind, line, value):
        s = act.repr(value)
        self.add(act, {"kind": kind, "line": line, "value": s}, len(s) + 32)
        act.prev = None

    def exception_event(self, act, line, exc):
        s = act.repr(exc)
        self.add(act, {"kind": "exception", "line": line, "value": s}, len(s) + 32)

    def add(self, act, ev, size):
        if act.dropped:
            return
        act.record["events"].append(ev)
        act.last_kind = ev["kind"]
        act.bytes += size
        if act.bytes > self.max_bytes:
            self.drop(act, "bytes")

    def drop(self, act, why):
        if act.dropped:
            return
        act.dropped = why
        act.record["events"] = []
        act.prev = None

    def finish(self, frame, act):
        self.active.pop(frame, None)
        if act.dropped:
            self.stats["droppedLines" if act.dropped == "lines" else "droppedBytes"] += 1
            return
        rec = act.record
        flags = act.repr.flags
        rec["truncated"] = {"repr": "repr" in flags, "collection": "collection" in flags, "reprError": "error" in flags}
        rec["lineEvents"] = act.lines
        try:
            line = json.dumps(rec, ensure_ascii=False)
        except Exception as e:  # noqa: BLE001
            self._error(e)
            return
        self.out.write(line + "\n")
        self.stats["records"] += 1
        self.stats["events"] += len(rec["events"])
        self.stats["lineEvents"] += act.lines
        self.stats["bytes"] += len(line.encode("utf-8")) + 1

    def _error(self, e):
        self.stats["tracerErrors"] += 1
        if self.stats["firstError"] is None:
            self.stats["firstError"] = "%s: %s" % (type(e).__name__, e)

    # -- test boundaries -------------------------------------------------------------------------

    def begin_test(self, test_id):
        self.test_id = test_id
        self.stats["tests"] += 1
        self.t0 = time.perf_counter()
        self.enabled = True
        self.backend.start()

    def end_test(self):
        self.backend.stop()
        self.enabled = False
        # Activations still open (a generator never exhausted, a frame left by the test) end here.
        for frame, act in list(self.active.items()):
            self.finish(frame, act)
        self.active.clear()
        self.out.flush()
        self.stats["seconds"] += time.perf_counter() - self.t0
        self.test_id = None

    def close(self):
        self.out.close()
        try:
            with open(self.cfg["stats"], "w", encoding="utf-8") as fh:
                json.dump(self.stats, fh)
        except Exception:  # noqa: BLE001
            pass


def _is_yield(frame):
    try:
        code = frame.f_code
        if not (code.co_flags & _GEN_FLAGS):
            return False
        i = frame.f_lasti
        return i >= 0 and code.co_code[i] == _YIELD_VALUE
    except Exception:  # noqa: BLE001
        return False


def _is_fresh(frame):
    """Whether a call event starts the frame (not a generator or coroutine resumed): on 3.11 the
    instruction is RESUME with oparg 0 at the start, 1-3 after a yield or await."""
    code = frame.f_code
    if not (code.co_flags & _GEN_FLAGS):
        return True
    i = frame.f_lasti
    if i < 0:
        return True
    try:
        co = code.co_code
        if co[i] == _RESUME:
            return co[i + 1] == 0
    except Exception:  # noqa: BLE001
        pass
    return False


class SettraceBackend:
    """sys.settrace: a global trace function on call events; a local one per traced frame."""

    name = "settrace"

    def __init__(self, tracer):
        self.t = tracer
        self.open = {}  # code -> open activations

    def start(self):
        sys.settrace(self.global_trace)

    def stop(self):
        sys.settrace(None)
        self.open.clear()

    def global_trace(self, frame, event, arg):
        t = self.t
        if event != "call" or not t.enabled:
            return None
        code = frame.f_code
        info = t.code_info.get(code, False)
        if info is False:
            info = t.info(code)
        if info is None:
            return None
        try:
            act = t.active.get(frame)
            if act is None:
                if not _is_fresh(frame):
                    return None  # a generator resumed whose start was not traced
                if not t.may_start(info):
                    if not self.open.get(code) and t.capped(info):
                        t.code_info[code] = None  # never again: later calls return at once
                    return None
                act = Activation(t, code, info)
                t.active[frame] = act
                self.open[code] = self.open.get(code, 0) + 1
            if act.dropped:
                frame.f_trace_lines = False
                return self.local_trace
            t.locals_event(act, "call", frame, frame.f_lineno)
        except Exception as e:  # noqa: BLE001
            t._error(e)
            return None
        return self.local_trace

    def local_trace(self, frame, event, arg):
        t = self.t
        act = t.active.get(frame)
        if act is None:
            return None
        try:
            if event == "line":
                if not act.dropped:
                    t.locals_event(act, "line", frame, frame.f_lineno)
                    if act.dropped:
                        frame.f_trace_lines = False
            elif event == "return":
                if _is_yield(frame):
                    t.value_event(act, "yield", frame.f_lineno, arg)
                    return self.local_trace
                if act.last_kind == "exception":
                    act.record["propagated"] = True
                else:
                    t.value_event(act, "return", frame.f_lineno, arg)
                t.finish(frame, act)
                self.open[act.code] = self.open.get(act.code, 1) - 1
                return None
            elif event == "exception":
                t.exception_event(act, frame.f_lineno, arg[1])
        except Exception as e:  # noqa: BLE001
            t._error(e)
        return self.local_trace


class MonitoringBackend:
    """sys.monitoring (PEP 669): PY_START globally (DISABLEd for code not traced); LINE,
    PY_RETURN, PY_YIELD, PY_RESUME switched on per traced code object; RAISE, PY_UNWIND and
    EXCEPTION_HANDLED globally, ignored outside traced frames."""

    name = "monitoring"

    def __init__(self, tracer):
        self.t = tracer
        m = sys.monitoring
        self.m = m
        self.tool = None
        for tool in (5, 4, 3, 2):
            if m.get_tool(tool) is None:
                self.tool = tool
                break
        if self.tool is None:
            raise RuntimeError("no free sys.monitoring tool id")
        m.use_tool_id(self.tool, "forager-traces")
        E = m.events
        self.E = E
        self.local = E.LINE | E.PY_RETURN | E.PY_YIELD | E.PY_RESUME
        cb = m.register_callback
        cb(self.tool, E.PY_START, self.on_start)
        cb(self.tool, E.PY_RESUME, self.on_resume)
        cb(self.tool, E.LINE, self.on_line)
        cb(self.tool, E.PY_RETURN, self.on_return)
        cb(self.tool, E.PY_YIELD, self.on_yield)
        cb(self.tool, E.RAISE, self.on_raise)
        cb(self.tool, E.PY_UNWIND, self.on_unwind)
        cb(self.tool, E.EXCEPTION_HANDLED, self.on_handled)
        self.enabled_codes = set()
        self.open = {}  # code -> open activations

    def start(self):
        E = self.E
        self.m.set_events(self.tool, E.PY_START | E.RAISE | E.PY_UNWIND | E.EXCEPTION_HANDLED)

    def stop(self):
        self.m.set_events(self.tool, 0)
        for code in self.enabled_codes:
            try:
                self.m.set_local_events(self.tool, code, 0)
            except Exception:  # noqa: BLE001
                pass
        self.enabled_codes.clear()
        self.open.clear()
        self.m.restart_events()

    def on_start(self, code, offset):
        t = self.t
        if not t.enabled:
            return None
        info = t.code_info.get(code, False)
        if info is False:
            info = t.info(code)
        if info is None:
            return self.m.DISABLE
        try:
            frame = sys._getframe(1)
            if not t.may_start(info):
                if not self.open.get(code):
                    # No open activation needs this code's events: stop paying for them
                    # (until restart_events at the end of the test).
                    self._disable(code)
                    return self.m.DISABLE
                return None
            act = Activation(t, code, info)
            t.active[frame] = act
            self.open[code] = self.open.get(code, 0) + 1
            if code not in self.enabled_codes:
                self.m.set_local_events(self.tool, code, self.local)
                self.enabled_codes.add(code)
            t.locals_event(act, "call", frame, frame.f_lineno)
        except Exception as e:  # noqa: BLE001
            t._error(e)
        return None

    def _disable(self, code):
        if code in self.enabled_codes:
            self.m.set_local_events(self.tool, code, 0)
            self.enabled_codes.discard(code)

    def _closed(self, frame, act):
        """An activation ended: finish it, and switch its code's events off when capped."""
        self.t.finish(frame, act)
        code = act.code
        n = self.open.get(code, 1) - 1
        self.open[code] = n
        if n <= 0:
            info = self.t.code_info.get(code)
            if info and self.t.capped(info):
                self._disable(code)

    def _act(self):
        frame = sys._getframe(2)
        return frame, self.t.active.get(frame)

    def on_resume(self, code, offset):
        frame, act = self._act()
        if act is None or act.dropped:
            return None
        try:
            self.t.locals_event(act, "call", frame, frame.f_lineno)
        except Exception as e:  # noqa: BLE001
            self.t._error(e)
        return None

    def on_line(self, code, line):
        frame, act = self._act()
        if act is None or act.dropped:
            return None
        try:
            self.t.locals_event(act, "line", frame, line)
        except Exception as e:  # noqa: BLE001
            self.t._error(e)
        return None

    def on_return(self, code, offset, value):
        frame, act = self._act()
        if act is None:
            return None
        try:
            self.t.value_event(act, "return", frame.f_lineno, value)
            self._closed(frame, act)
        except Exception as e:  # noqa: BLE001
            self.t._error(e)
        return None

    def on_yield(self, code, offset, value):
        frame, act = self._act()
        if act is None:
            return None
        try:
            self.t.value_event(act, "yield", frame.f_lineno, value)
        except Exception as e:  # noqa: BLE001
            self.t._error(e)
        return None

    def on_raise(self, code, offset, exc):
        if code not in self.enabled_codes:
            return None
        frame, act = self._act()
        if act is None:
            return None
        try:
            self.t.exception_event(act, frame.f_lineno, exc)
        except Exception as e:  # noqa: BLE001
            self.t._error(e)
        return None

    def on_unwind(self, code, offset, exc):
        if code not in self.enabled_codes:
            return None
        frame, act = self._act()
        if act is None:
            return None
        try:
            if act.last_kind != "exception":
                self.t.exception_event(act, frame.f_lineno, exc)
            act.record["propagated"] = True
            self._closed(frame, act)
        except Exception as e:  # noqa: BLE001
            self.t._error(e)
        return None

    def on_handled(self, code, offset, exc):
        if code not in self.enabled_codes:
            return None
        frame, act = self._act()
        if act is None:
            return None
        try:
            if act.last_kind != "exception":
                self.t.exception_event(act, frame.f_lineno, exc)
        except Exception as e:  # noqa: BLE001
            self.t._error(e)
        return None


def make_backend(tracer):
    want = tracer.cfg["backend"]
    if want == "monitoring" or (want == "auto" and hasattr(sys, "monitoring")):
        return MonitoringBackend(tracer)
    return SettraceBackend(tracer)


# -- pytest plugin ------------------------------------------------------------------------------

_tracer = None


def pytest_configure(config):
    global _tracer
    path = os.environ.get("FORAGER_TRACE_CONFIG")
    cfg = {}
    if path:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    _tracer = Tracer(cfg)
    _tracer.backend = make_backend(_tracer)
    _tracer.stats["backend"] = _tracer.backend.name


def _hookwrapper(fn):
    try:
        import pytest

        return pytest.hookimpl(hookwrapper=True)(fn)
    except Exception:  # pragma: no cover
        fn.hookwrapper = True
        return fn


@_hookwrapper
def pytest_runtest_call(item):
    t = _tracer
    if t is None:
        yield
        return
    try:
        t.begin_test(item.nodeid)
    except Exception as e:  # noqa: BLE001
        t._error(e)
    try:
        yield
    finally:
        try:
            t.end_test()
        except Exception as e:  # noqa: BLE001
            t._error(e)


def pytest_unconfigure(config):
    if _tracer is not None:
        _tracer.close()
