"""forager's evaluation guard: loaded into every Python process of a hidden-test run.

Shipped by rewards/evaluate.ts into the evaluation container under a name of forager's
(`_forager_guard_<tag>.py`, in a root-owned directory) and imported at interpreter start by a
`.pth` file in the interpreter's site-packages. Stdlib only; Python 3.5+ (audit hooks: 3.8+).

What it does, in each process that can open the run's channel (a FIFO whose only reader is a
root process that forwards every byte to forager, so nothing written there can be taken back):

- tamper evidence from CPython's audit hooks (PEP 578), which code cannot remove once added:
  a test or runner function's code replaced by code of the tree; bytecode with no source opened
  from the tree; a hidden test file opened or written by code of the tree; code compiled under a
  borrowed file name. Other reaches for the machinery (gc walks, frame and code-object access,
  tracing hooks, ctypes, exec of programs, marshal) are recorded as flags. CPython audits no
  write to a class attribute, so the runner's classes are checked against snapshots instead
  (`snapshot_classes`/`check_classes`: the unittest and sympy recorders here, the pytest plugin);
- result records of the unittest runner (TestResult methods: also Django's runner) and of
  sympy's runner (its reporter), as each test ends.

"Code of the tree" is a frame whose file is inside the work tree and is not test-like (test
files, conftest.py and the protected runner files are base-commit content at evaluation, so
they are trusted); the origin of an event is the innermost such frame on the stack, frames of
the standard library, site-packages and pseudo-files skipped.

Records are lines `\n<MAGIC>{json}\n`, each written with one os.write (atomic for a pipe below
PIPE_BUF), so nothing another writer interleaves can split one.
"""
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_NAME = os.path.splitext(os.path.basename(__file__))[0]
MAGIC = b"@@forager-rec@@"
_fd = -1
_cfg = {}
_busy = set()
_counts = {}
_LIMIT = 40

try:
    from _thread import get_ident as _ident
except ImportError:  # pragma: no cover
    def _ident():
        return 0


def emit(rec):
    """Write one record to the channel (no-op without one). Never raises."""
    if _fd < 0:
        return
    try:
        data = json.dumps(rec, separators=(",", ":"), default=str)
        if len(data) > 3800:
            rec = dict(rec)
            for k in list(rec):
                if isinstance(rec[k], str) and len(rec[k]) > 300:
                    rec[k] = rec[k][:300]
            data = json.dumps(rec, separators=(",", ":"), default=str)[:3800]
        os.write(_fd, b"\n" + MAGIC + data.encode("utf-8", "replace") + b"\n")
    except Exception:
        pass


def _open_channel(path):
    global _fd
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    except Exception:
        pass
    _fd = fd
    return True


# ---------------------------------------------------------------------------------------------
# Where code comes from

_wd = ""
_test_like = None
_classes = {}
_trusted_prefixes = ()
_hidden = frozenset()
_runner_in_tree = False


def _classify(fn):
    """The trust class of a code file name:
    'test' (inside the tree and test-like, or a protected runner file: base-commit content);
    'self' (this guard and forager's plugin);
    'other' (the interpreter's standard library, site-packages, scripts directories, frozen modules);
    'tree' (everything else: code of the tree, files made at run time anywhere, and pseudo-files
    such as <string>, which only code of the tree or the tests can have made)."""
    c = _classes.get(fn)
    if c is not None:
        return c
    c = "tree"
    try:
        if not fn:
            c = "other"
        elif fn.startswith("<"):
            c = "other" if fn.startswith("<frozen") else "tree"
        else:
            real = os.path.realpath(fn)
            if real.startswith(_HERE + os.sep):
                c = "self"
            elif real == _wd or real.startswith(_wd + os.sep):
                rel = os.path.relpath(real, _wd).replace(os.sep, "/")
                if rel.endswith((".pyc", ".pyo")):
                    rel = rel[:-1]
                if (_test_like is not None and _test_like.search(rel)) or rel in _cfg.get("runnerFiles", []):
                    c = "test"
            elif any(real.startswith(p) for p in _trusted_prefixes):
                c = "other"
    except Exception:
        c = "tree"
    if len(_classes) < 100000:
        _classes[fn] = c
    return c


def _frame_file(f):
    return f.f_code.co_filename


def _origin(depth, walk=True):
    """(class, 'file:line') of the innermost tree or test frame above the hook (walk), or of the
    immediate caller (no walk)."""
    try:
        f = sys._getframe(depth)
    except ValueError:
        return "other", ""
    while f is not None:
        fn = _frame_file(f)
        c = _classify(fn)
        if c in ("tree", "test"):
            return c, "%s:%d" % (os.path.relpath(fn, _wd) if fn.startswith(_wd) else fn, f.f_lineno)
        if c == "self" and not walk:
            return "self", ""
        if not walk:
            return c, "%s:%d" % (fn, f.f_lineno)
        f = f.f_back
    return "other", ""


def _record(kind, why, where, event):
    key = (kind, why, where)
    n = _counts.get(key, 0)
    _counts[key] = n + 1
    if n == 0 and len(_counts) <= 400:
        emit({"k": kind, "why": why, "where": where, "ev": event, "pid": os.getpid()})


# ---------------------------------------------------------------------------------------------
# Runner classes

_RUNNER_MODULES = ("_pytest", "pytest", "pluggy", "unittest", "xdist", "py")
_runner_cache = {}


def _module_file(modname):
    m = sys.modules.get(modname)
    f = getattr(m, "__file__", None) if m is not None else None
    return os.path.realpath(f) if f else ""


def _is_runner_module(modname):
    r = _runner_cache.get(modname)
    if r is not None:
        return r
    r = False
    if modname:
        top = modname.split(".")[0]
        f = _module_file(modname)
        if top.startswith("_forager_"):
            r = True
        elif top in _RUNNER_MODULES and modname != "unittest.mock":
            # The runner under test (pytest's own repository) is code of the tree, not the runner.
            r = not (f and (f == _wd or f.startswith(_wd + os.sep)))
        elif f and (f.startswith(_wd + os.sep)):
            rel = os.path.relpath(f, _wd).replace(os.sep, "/")
            if rel.endswith((".pyc", ".pyo")):
                rel = rel[:-1]
            r = rel in _cfg.get("runnerFiles", [])
    _runner_cache[modname] = r
    return r


def _describe(obj):
    try:
        return "%s.%s" % (getattr(obj, "__module__", "?"), getattr(obj, "__qualname__", getattr(obj, "__name__", "?")))
    except Exception:
        return "?"


# ---------------------------------------------------------------------------------------------
# Audit events

def _on_setattr(event, args):
    if len(args) < 2:
        return
    obj, name = args[0], args[1]
    if isinstance(obj, type):
        if not _is_runner_module(getattr(obj, "__module__", "")):
            return
        c, where = _origin(3)
        if c == "tree":
            _record("tamper", "%s %s.%s" % ("sets" if event == "object.__setattr__" else "deletes", _describe(obj), name), where, event)
        return
    if name == "__code__" and hasattr(obj, "__code__"):
        try:
            target = _classify(obj.__code__.co_filename)
            mod = getattr(obj, "__module__", "") or ""
        except Exception:
            return
        if target == "test" or _is_runner_module(mod):
            c, where = _origin(3)
            if c == "tree":
                _record("tamper", "replaces the code of %s" % _describe(obj), where, event)


def _on_getattr(event, args):
    # Audited reads (3.10+): a function's __code__, a frame's f_code, a traceback's tb_frame, a
    # generator's or coroutine's frame and code. Not recorded when the runner is the code under
    # test (pytest's own repository reads its tests' code and frames all the time).
    if _runner_in_tree or len(args) < 2:
        return
    name = args[1]
    c, where = _origin(3, walk=False)
    if c != "tree":
        return
    if name == "__code__":
        try:
            target = _classify(args[0].__code__.co_filename)
        except Exception:
            return
        if target == "test":
            _record("flag", "reads the code of a test function (%s)" % _describe(args[0]), where, event)
    else:
        _record("flag", "frame access (%s)" % name, where, event)


def _on_gc(event, args):
    c, where = _origin(3)
    if c == "tree":
        _record("flag", "gc walk (%s)" % event, where, event)


def _path_of(p):
    if isinstance(p, bytes):
        p = p.decode("utf-8", "surrogateescape")
    if not isinstance(p, str):
        try:
            p = os.fspath(p)
        except Exception:
            return None
        if isinstance(p, bytes):
            p = p.decode("utf-8", "surrogateescape")
    if not p:
        return None
    return os.path.abspath(p)


def _has_source(pyc):
    folder, name = os.path.split(pyc)
    stem = name.split(".")[0]
    if os.path.basename(folder) == "__pycache__":
        folder = os.path.dirname(folder)
    return os.path.exists(os.path.join(folder, stem + ".py"))


def _writes(event, args):
    mode = args[1] if len(args) > 1 else "r"
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    if isinstance(mode, int):
        return bool(mode & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC))
    return False


def _on_open(event, args):
    if not args:
        return
    p = _path_of(args[0])
    if p is None:
        return
    if p.endswith((".pyc", ".pyo")):
        # Bytecode with no source beside it (or above its __pycache__) is code that no file of the
        # tree shows: a compiled forger. Caches of sources are the interpreter's own.
        if p.startswith(_wd + os.sep) and os.path.exists(p) and not _has_source(p):
            c, where = _origin(3)
            _record("tamper", "loads bytecode with no source from the tree: %s" % os.path.relpath(p, _wd), where, event)
        return
    if p in _hidden:
        if _writes(event, args):
            c, where = _origin(3)
            if c == "tree":
                _record("tamper", "code of the tree writes the hidden test file %s" % os.path.relpath(p, _wd), where, event)
            return
        if _runner_in_tree:
            return
        c, where = _origin(3, walk=False)
        if c == "tree":
            _record("tamper", "code of the tree opens the hidden test file %s" % os.path.relpath(p, _wd), where, event)
            return
        c, where = _origin(3)
        if c == "tree":
            _record("flag", "reads the hidden test file %s (through the standard library)" % os.path.relpath(p, _wd), where, event)
        return
    if p.startswith("/proc/"):
        c, where = _origin(3)
        if c == "tree":
            _record("flag", "reads %s" % "/".join(p.split("/")[:4]), where, event)


def _borrowed(fn):
    """A file name that code of the tree has no business compiling under: a trusted file (test,
    runner, forager's, the standard library, site-packages), so that its frames would pass for
    trusted ones."""
    if not isinstance(fn, str) or not fn or (fn.startswith("<") and not fn.startswith("<frozen")):
        return False
    return _classify(fn) in ("test", "self", "other")


def _on_compile(event, args):
    # compile: (source, filename); code.__new__: (code, filename, name, ...)
    if _runner_in_tree or len(args) < 2:
        return
    fn = args[1]
    if isinstance(fn, bytes):
        fn = fn.decode("utf-8", "surrogateescape")
    if not _borrowed(fn):
        return
    c, where = _origin(3, walk=False)
    if c == "tree":
        _record("tamper", "code of the tree compiles code under the file name %s" % fn, where, event)


def _on_flag(why, walk=True):
    # walk=False: only a direct call from code of the tree counts (the import system unmarshals
    # the standard library's bytecode caches on behalf of any import statement).
    def handler(event, args):
        c, where = _origin(3, walk=walk)
        if c == "tree":
            _record("flag", why, where, event)
    return handler


def _on_getframe(event, args):
    c, where = _origin(3, walk=False)
    if c == "tree":
        _record("flag", "frame access (sys._getframe)", where, event)


def _on_addaudithook(event, args):
    c, where = _origin(3)
    if c == "tree":
        _record("flag", "adds an audit hook", where, event)


_HANDLERS = {
    "object.__getattr__": _on_getattr,
    "object.__setattr__": _on_setattr,
    "object.__delattr__": _on_setattr,
    "gc.get_objects": _on_gc,
    "gc.get_referrers": _on_gc,
    "gc.get_referents": _on_gc,
    "open": _on_open,
    "compile": _on_compile,
    "code.__new__": _on_compile,
    "sys._getframe": _on_getframe,
    "sys.addaudithook": _on_addaudithook,
    "sys.settrace": _on_flag("tracing hook (sys.settrace)"),
    "sys.setprofile": _on_flag("profiling hook (sys.setprofile)"),
    "marshal.loads": _on_flag("marshal.loads", walk=False),
    "marshal.load": _on_flag("marshal.load", walk=False),
    "subprocess.Popen": _on_flag("runs a program"),
    "os.system": _on_flag("runs a program"),
    "os.exec": _on_flag("runs a program"),
    "os.posix_spawn": _on_flag("runs a program"),
    "os.spawn": _on_flag("runs a program"),
    "ctypes.dlopen": _on_flag("ctypes"),
    "ctypes.dlsym": _on_flag("ctypes"),
    "ctypes.addressof": _on_flag("ctypes"),
    "ctypes.cdata": _on_flag("ctypes"),
}


def _hook(event, args):
    h = _HANDLERS.get(event)
    if h is None:
        return
    me = _ident()
    if me in _busy:
        return
    _busy.add(me)
    try:
        h(event, args)
    except Exception:
        pass
    finally:
        _busy.discard(me)


class _Quiet(object):
    """`with _Quiet():` — forager's own patching is not evidence."""

    def __enter__(self):
        self.me = _ident()
        self.was = self.me in _busy
        _busy.add(self.me)

    def __exit__(self, *exc):
        if not self.was:
            _busy.discard(self.me)


# ---------------------------------------------------------------------------------------------
# Runner class snapshots (CPython audits no class attribute write)

_MISSING = object()


def _origin_of_value(value):
    """The trust class and file of the code a value carries (functions, methods, classmethods,
    properties, partials, classes, instances), or ('', None) when it carries none."""
    v = value
    for attr in ("__func__", "func", "fget"):
        try:
            v = getattr(v, attr, v)
        except Exception:
            pass
    with _Quiet():
        try:
            code = getattr(v, "__code__", None)
        except Exception:
            code = None
    if code is not None:
        return _classify(code.co_filename), code.co_filename
    try:
        mod = getattr(v, "__module__", None)
    except Exception:
        mod = None
    m = sys.modules.get(mod) if isinstance(mod, str) else None
    f = getattr(m, "__file__", None)
    if f:
        return _classify(f), f
    return "", None


def runner_classes(modnames):
    """(qualified name, class) of every class defined in the named, loaded runner modules."""
    out = []
    for name in modnames:
        m = sys.modules.get(name)
        if m is None:
            continue
        for k, v in list(vars(m).items()):
            if isinstance(v, type) and getattr(v, "__module__", None) == name:
                out.append(("%s.%s" % (name, k), v))
    return out


def snapshot_classes(classes):
    """{(qualified name, attribute): value} of each class's own dict, and its key set."""
    snap = {}
    for qual, cls in classes:
        try:
            items = list(vars(cls).items())
        except Exception:
            continue
        snap[(qual, None)] = (cls, frozenset(k for k, _ in items))
        for k, v in items:
            snap[(qual, k)] = v
    return snap


def check_classes(snap, where):
    """Compare the classes with their snapshot: an attribute replaced, added or removed by code
    of the tree is tamper; by anything else, a flag. The snapshot follows the change."""
    for key in [k for k in snap if k[1] is None]:
        qual = key[0]
        cls, keys = snap[key]
        try:
            now = dict(vars(cls))
        except Exception:
            continue
        for k in set(now) | set(keys):
            old = snap.get((qual, k), _MISSING) if k in keys else _MISSING
            cur = now.get(k, _MISSING)
            if cur is old:
                continue
            c, fn = _origin_of_value(cur) if cur is not _MISSING else ("", None)
            what = "%s.%s %s" % (qual, k, "removed" if cur is _MISSING else "added" if old is _MISSING else "replaced")
            if c == "tree":
                _record("tamper", "%s by code of the tree (%s)" % (what, fn), where, "class-check")
            elif c == "" and cur is not _MISSING and k not in ("__dict__", "__weakref__", "_abc_impl"):
                # The runner's own code and the tests set attributes on its classes (pytest's
                # legacypath plugin, the debugging plugin, monkeypatch): only a value of no known
                # origin is worth a flag.
                _record("flag", "%s during the run" % what, where, "class-check")
            snap[(qual, k)] = cur
        snap[key] = (cls, frozenset(now))


# ---------------------------------------------------------------------------------------------
# Result recorders (unittest, sympy): wrap the runner's result methods when the module loads

def _wrap_unittest(mod):
    TR = getattr(mod, "TestResult", None)
    if TR is None or getattr(TR, "_forager_wrapped", False):
        return

    def rec(test, status):
        try:
            doc = test.shortDescription() if hasattr(test, "shortDescription") else None
        except Exception:
            doc = None
        try:
            tid = test.id()
        except Exception:
            tid = str(test)
        emit({"k": "ut", "id": tid, "str": str(test), "doc": doc, "st": status})

    def wrap(name, status):
        orig = getattr(TR, name, None)
        if orig is None:
            return

        def method(self, test, *a, **kw):
            rec(test, status)
            if _ut_snap:
                check_classes(_ut_snap, "unittest result of " + str(test)[:200])
            return orig(self, test, *a, **kw)
        method.__name__ = name
        with _Quiet():
            setattr(TR, name, method)

    for name, status in (("addSuccess", "PASSED"), ("addFailure", "FAILED"), ("addError", "ERROR"),
                         ("addSkip", "SKIPPED"), ("addExpectedFailure", "XFAIL"), ("addUnexpectedSuccess", "FAILED")):
        wrap(name, status)
    orig_stop = getattr(TR, "stopTestRun", None)
    if orig_stop is not None:
        def stopTestRun(self, *a, **kw):
            if _ut_snap:
                check_classes(_ut_snap, "end of the unittest run")
            emit({"k": "ut-end"})
            return orig_stop(self, *a, **kw)
        with _Quiet():
            TR.stopTestRun = stopTestRun
    with _Quiet():
        TR._forager_wrapped = True
    emit({"k": "ut-start"})


_ut_snap = {}
_sy_snap = {}
_UNITTEST_MODULES = ("unittest.case", "unittest.result", "unittest.runner", "unittest.suite", "unittest.loader", "unittest.main")


def _unittest_loaded(mod):
    """The unittest package finished loading (before any code that imports it runs): baseline."""
    _ut_snap.update(snapshot_classes(runner_classes(_UNITTEST_MODULES)))


def _wrap_sympy(mod):
    R = getattr(mod, "PyTestReporter", None)
    if R is None or getattr(R, "_forager_wrapped", False):
        return
    state = {"name": None}

    def wrap(name, status):
        orig = getattr(R, name, None)
        if orig is None:
            return

        def method(self, *a, **kw):
            if status == "enter":
                f = a[0] if a else kw.get("f")
                state["name"] = getattr(f, "__name__", None)
                check_classes(_sy_snap, "sympy test %s" % state["name"])
            elif state["name"]:
                emit({"k": "sy", "name": state["name"], "st": status})
            return orig(self, *a, **kw)
        method.__name__ = name
        with _Quiet():
            setattr(R, name, method)

    for name, status in (("entering_test", "enter"), ("test_pass", "PASSED"), ("test_fail", "FAILED"),
                         ("test_exception", "ERROR"), ("test_skip", "SKIPPED"), ("test_xfail", "XFAIL"),
                         ("test_xpass", "FAILED")):
        wrap(name, status)
    orig_finish = getattr(R, "finish", None)
    if orig_finish is not None:
        def finish(self, *a, **kw):
            emit({"k": "sy-end"})
            return orig_finish(self, *a, **kw)
        with _Quiet():
            R.finish = finish
    with _Quiet():
        R._forager_wrapped = True
    # The baseline: taken as the runner loads, before the code that imported it gets control back.
    _sy_snap.update(snapshot_classes(runner_classes(["sympy.testing.runtests", "sympy.utilities.runtests"])))
    emit({"k": "sy-start"})


_AFTER_IMPORT = {
    "unittest": _unittest_loaded,
    "unittest.result": _wrap_unittest,
    "sympy.testing.runtests": _wrap_sympy,
    "sympy.utilities.runtests": _wrap_sympy,
}


class _Finder(object):
    """A meta-path finder that only watches: after one of the modules above loads, its result
    methods are wrapped."""

    def find_spec(self, name, path=None, target=None):
        if name not in _AFTER_IMPORT or name in _loading:
            return None
        _loading.add(name)
        try:
            import importlib.util
            spec = importlib.util.find_spec(name)
        finally:
            _loading.discard(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        after = _AFTER_IMPORT[name]

        class Loader(object):
            def create_module(self, s):
                return loader.create_module(s) if hasattr(loader, "create_module") else None

            def exec_module(self, module):
                loader.exec_module(module)
                try:
                    after(module)
                except Exception:
                    pass
        spec.loader = Loader()
        return spec

    # Python < 3.4 protocol: not used.
    def find_module(self, name, path=None):
        return None


_loading = set()


def _install():
    global _cfg, _wd, _test_like, _trusted_prefixes, _hidden, _runner_in_tree
    try:
        with open(os.path.join(_HERE, _NAME + ".json")) as f:
            _cfg = json.load(f)
    except Exception:
        return
    # With an unprivileged test user, root's own processes (the spec's preamble) stay off the channel.
    if _cfg.get("testUid") is not None and hasattr(os, "getuid") and os.getuid() == 0:
        return
    if not _open_channel(_cfg.get("channel", "")):
        return
    import re
    _wd = os.path.realpath(_cfg["workdir"])
    _runner_in_tree = bool(_cfg.get("runnerInTree"))
    try:
        _test_like = re.compile(_cfg["testLike"])
    except Exception:
        _test_like = None
    _hidden = frozenset(os.path.join(_wd, p) for p in _cfg.get("hiddenFiles", []))
    prefixes = set()
    try:
        import sysconfig
        for k in ("stdlib", "platstdlib", "purelib", "platlib", "scripts"):
            p = sysconfig.get_paths().get(k)
            if p:
                prefixes.add(os.path.realpath(p) + os.sep)
    except Exception:
        pass
    for p in list(_cfg.get("sitePackages", [])) + ["/usr/bin", "/usr/local/bin", "/bin", os.path.dirname(sys.executable or "/usr/bin/python3")]:
        if p:
            prefixes.add(os.path.realpath(p) + os.sep)
    # Nothing that holds the work tree is trusted as a whole.
    _trusted_prefixes = tuple(x for x in prefixes if not (_wd + os.sep).startswith(x))
    emit({"k": "start", "pid": os.getpid(), "uid": os.getuid() if hasattr(os, "getuid") else None,
          "py": "%d.%d" % sys.version_info[:2], "audit": hasattr(sys, "addaudithook")})
    if hasattr(sys, "addaudithook"):
        sys.addaudithook(_hook)
    sys.meta_path.insert(0, _Finder())
    for name, after in _AFTER_IMPORT.items():
        if name in sys.modules:
            try:
                after(sys.modules[name])
            except Exception:
                pass


_install()
