"""forager shim: names that Sphinx 3.x/4.x import but Debian bookworm's libraries dropped.

- Jinja2 3.1 removed `environmentfilter`, `contextfilter`, `evalcontextfilter`,
  `environmentfunction`, `contextfunction`, `evalcontextfunction` (renamed `pass_*` in 3.0) and
  the re-exports `Markup` / `escape` (from markupsafe). The harness pins Jinja2 < 3.0 for these
  Sphinx versions; here the old names are added to `jinja2` right after it is first imported
  (a one-shot meta-path hook, so interpreter start-up does not import jinja2).
- Python 3.10 alphas had `types.Union`, which Sphinx 4.x imports on Python > 3.10; it is
  `types.UnionType` in the release.
Loaded by `forager_sphinx_compat.pth` in site-packages.
"""
import importlib.abc
import importlib.util
import sys
import types

if not hasattr(types, "Union") and hasattr(types, "UnionType"):
    types.Union = types.UnionType

_ALIASES = {
    "environmentfilter": "pass_environment",
    "contextfilter": "pass_context",
    "evalcontextfilter": "pass_eval_context",
    "environmentfunction": "pass_environment",
    "contextfunction": "pass_context",
    "evalcontextfunction": "pass_eval_context",
}


def _patch_jinja2(mod):
    for old, new in _ALIASES.items():
        if not hasattr(mod, old) and hasattr(mod, new):
            setattr(mod, old, getattr(mod, new))
    try:
        import markupsafe
    except ImportError:
        return
    if not hasattr(mod, "Markup"):
        mod.Markup = markupsafe.Markup
    if not hasattr(mod, "escape"):
        mod.escape = markupsafe.escape


class _Jinja2Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "jinja2":
            return None
        sys.meta_path.remove(self)  # one shot; also avoids finding ourselves again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            _patch_jinja2(module)

        spec.loader.exec_module = exec_module
        return spec


if "jinja2" in sys.modules:
    _patch_jinja2(sys.modules["jinja2"])
else:
    sys.meta_path.insert(0, _Jinja2Hook())
