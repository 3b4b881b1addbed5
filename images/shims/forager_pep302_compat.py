"""forager shim: no ImportWarning for PEP 302 import hooks (find_module/load_module) on Python 3.10+.

Python 3.10 started warning (ImportWarning) when a `sys.meta_path` finder has no `find_spec` or
a loader has no `exec_module`, and falls back to the old methods. Python <= 3.9 fell back
silently. pytest 4.x's assertion-rewriting hook implements only the PEP 302 methods, and its
own test suite runs with `filterwarnings = error`, so each such import becomes an error there
(`AssertionRewritingHook.find_spec() not found; falling back to find_module()`). This filters
exactly those two fallback messages out of the import system's warnings and passes every other
warning through unchanged; the fallback itself (the import) is Python's own. Loaded at
interpreter start by `forager_pep302_compat.pth` in site-packages.
"""
import _frozen_importlib as _bootstrap

_FALLBACKS = ("find_spec() not found; falling back to find_module()",
              "exec_module() not found; falling back to load_module()")


class _ImportWarnings:
    def __init__(self, real):
        self._real = real

    def warn(self, message, category=None, stacklevel=1, source=None):
        if category is ImportWarning and isinstance(message, str) and message.endswith(_FALLBACKS):
            return None
        return self._real.warn(message, category, stacklevel + 1, source)

    def __getattr__(self, name):
        return getattr(self._real, name)


if not isinstance(_bootstrap._warnings, _ImportWarnings):
    _bootstrap._warnings = _ImportWarnings(_bootstrap._warnings)
