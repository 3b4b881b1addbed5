"""forager shim: let pytest < 6.2.5's assertion rewriting compile on Python 3.10+/3.11.

pytest before 6.2.5 builds `ast.alias` nodes without `lineno`/`col_offset` (required from
Python 3.10 on) and, on some asserts, copies locations so that a node ends before it starts
(rejected by Python 3.11's compile). This shim
  1. gives `ast.alias` class-level default positions (line 1, column 0), and
  2. wraps `builtins.compile`: when it is given an AST (not source text), nodes whose end
     position precedes their start get the end clamped to the start.
Source-text compiles are untouched. Loaded by `forager_ast_compat.pth` in site-packages; only
installed in environments of repositories that run such a pytest (pytest-dev/pytest < 6.2.5).
"""
import ast
import builtins

for _attr, _default in (("lineno", 1), ("col_offset", 0)):
    if getattr(ast.alias, _attr, None) is None:
        try:
            setattr(ast.alias, _attr, _default)
        except (AttributeError, TypeError):
            pass

_original_compile = builtins.compile


def _clamp_positions(tree):
    for node in ast.walk(tree):
        lineno = getattr(node, "lineno", None)
        if lineno is None:
            continue
        end_lineno = getattr(node, "end_lineno", None)
        if end_lineno is None:
            continue
        col = getattr(node, "col_offset", 0) or 0
        end_col = getattr(node, "end_col_offset", None)
        if end_lineno < lineno:
            node.end_lineno = lineno
            node.end_col_offset = col
        elif end_lineno == lineno and end_col is not None and end_col < col:
            node.end_col_offset = col


def compile(source, filename, mode, flags=0, dont_inherit=False, optimize=-1, **kwargs):  # noqa: A001
    if isinstance(source, ast.AST):
        try:
            _clamp_positions(source)
        except Exception:  # never make a compile fail because of the shim
            pass
    return _original_compile(source, filename, mode, flags, dont_inherit, optimize, **kwargs)


compile.__doc__ = _original_compile.__doc__
builtins.compile = compile
