/**
 * Fixtures for the mutate-fix tests: per-operator Python snippets with the exact diff each
 * operator must make, and a tiny created Python package (`shapes`) whose pytest suite catches
 * some bugs, misses others, and has one test that fails on alternate runs (flaky).
 */
import { makeRepo, pyprojectFor, type FixtureRepo } from "./git-fixtures";

/** operator → a source and the changed lines (`-old` / `+new`) of the candidate expected first. */
export const OPERATOR_CASES: Record<string, { source: string; diff: string[] }> = {
  flip_comparison: {
    source: "def f(a, b):\n    if a == b:\n        return 1\n    return 2\n",
    diff: ["-    if a == b:", "+    if a != b:"],
  },
  flip_boolean: {
    source: "def f(a, b):\n    if a and b:\n        return 1\n    return 2\n",
    diff: ["-    if a and b:", "+    if a or b:"],
  },
  change_arithmetic: {
    source: "def f(a, b):\n    if a:\n        return a | b\n    return a - b\n",
    diff: ["-        return a | b", "+        return a & b"],
  },
  swap_operands: {
    source: "def f(a, b):\n    if a:\n        return 1\n    return a - b\n",
    diff: ["-    return a - b", "+    return b - a"],
  },
  off_by_one: {
    source: "def f(xs):\n    if xs:\n        return xs[3]\n    return None\n",
    diff: ["-        return xs[3]", "+        return xs[2]"],
  },
  invert_if: {
    source: "def f(a):\n    if a > 0:\n        x = 1\n    else:\n        x = 2\n    return x\n",
    diff: ["-        x = 1", "-    else:", "+    else:", "+        x = 1"], // as git diff prints it
  },
  remove_condition: {
    source: "def f(a):\n    if a is None:\n        a = 0\n    return a\n",
    diff: ["-    if a is None:", "-        a = 0"],
  },
  remove_loop: {
    source: "def f(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t if t else None\n",
    diff: ["-    for x in xs:", "-        t += x"],
  },
  remove_assignment: {
    source: "def f(a):\n    if a:\n        a = a.strip()\n    return a\n",
    diff: ["-        a = a.strip()", "+        pass"],
  },
  remove_wrapper: {
    source: "def f(a):\n    try:\n        v = int(a)\n        v += 1\n    except ValueError:\n        v = 0\n    return v if v else None\n",
    diff: ["-    try:", "-        v = int(a)", "-        v += 1", "-    except ValueError:", "-        v = 0", "+    v = int(a)", "+    v += 1"],
  },
  remove_return_value: {
    source: "def f(a):\n    if a:\n        return a * 2\n",
    diff: ["-        return a * 2", "+        return"],
  },
  shuffle_statements: {
    source: "def f(d):\n    if d:\n        d.pop('a')\n        d.clear()\n    return d\n",
    diff: ["-        d.pop('a')", "+        d.pop('a')"], // one line moves
  },
  remove_method: {
    source: "class A:\n    def f(self):\n        if self:\n            return 1\n\n    def g(self):\n        return 2\n",
    diff: ["-    def f(self):", "-        if self:", "-            return 1"],
  },
  remove_base_class: {
    source: "class A(Base, Mixin):\n    def f(self):\n        if self:\n            return 1\n",
    diff: ["-class A(Base, Mixin):", "+class A(Mixin):"],
  },
  break_chain: {
    source: "def f(a, b, c):\n    if a:\n        return a + b + c\n    return 0\n",
    diff: ["-        return a + b + c", "+        return a + b"],
  },
};

/** The package module used by the Docker tests. */
export const GEOMETRY = `"""Small geometry helpers."""


def clamp(x, lo, hi):
    """Clamp x into [lo, hi]."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def describe(x):
    """A label for x; the tests only check that it is a string."""
    if x > 10:
        return "big"
    return "small"


def never_called(x):
    if x:
        return x + 1
    return 0


def area(w, h):
    """Area of a w × h rectangle; negative sides are an error."""
    if w < 0 or h < 0:
        raise ValueError("negative side")
    return w * h
`;

export const FLAKY = `"""Called by a test that fails on alternate runs."""


def ping(n):
    if n > 0:
        return "pong"
    return "none"
`;

const TESTS = `import pytest

from shapes.geometry import area, clamp, describe


def test_area():
    assert area(2, 3) == 6


def test_area_negative():
    with pytest.raises(ValueError):
        area(-1, 3)


def test_clamp_low():
    assert clamp(-5, 0, 10) == 0


def test_clamp_high():
    assert clamp(50, 0, 10) == 10


def test_clamp_inside():
    assert clamp(5, 0, 10) == 5


def test_describe_is_str():
    assert isinstance(describe(3), str)
    assert isinstance(describe(30), str)
`;

/** Fails on every second run (the counter lives in /tmp of the container). */
const FLAKY_TESTS = `import os

from shapes.flaky import ping

COUNTER = "/tmp/forager-flaky-counter"


def test_ping_flaky():
    ping(1)
    n = int(open(COUNTER).read()) if os.path.exists(COUNTER) else 0
    n += 1
    with open(COUNTER, "w") as fh:
        fh.write(str(n))
    assert n % 2 == 1, f"alternate run {n} fails"
`;

/** A created repository: package `shapes` (geometry, flaky) with a pytest suite, all green. */
export function makeShapesRepo(dir: string): FixtureRepo {
  return makeRepo(dir, {
    "pyproject.toml": pyprojectFor("shapes"),
    ".gitignore": "__pycache__/\n*.egg-info/\nbuild/\n.pytest_cache/\n",
    "shapes/__init__.py": "",
    "shapes/geometry.py": GEOMETRY,
    "shapes/flaky.py": FLAKY,
    "tests/test_geometry.py": TESTS,
    "tests/test_flaky.py": FLAKY_TESTS,
  });
}
