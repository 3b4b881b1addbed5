/**
 * A created repository for the tracer tests: package `tracedemo` whose functions loop, loop for
 * long (over the line cap), recurse deeply, yield, raise (caught and propagated), hold values
 * whose repr raises or is huge, grow past the size cap, and call library code; its pytest suite
 * passes except one test that fails on purpose (traced or not).
 */
import { makeRepo, pyprojectFor, type FixtureRepo } from "./git-fixtures";

export const CORE = `"""Functions the tracer tests trace."""
import json


def total(xs):
    t = 0
    for x in xs:
        t += x
    return t


def spin(n):
    i = 0
    while i < n:
        i += 1
    return i


def fact(n):
    if n <= 1:
        return 1
    return n * fact(n - 1)


def deep(n):
    if n == 0:
        return 0
    return 1 + deep(n - 1)


def countdown(n):
    while n > 0:
        yield n
        n -= 1


def parse(s):
    try:
        return int(s)
    except ValueError:
        return None


def fail(x):
    y = x * 2
    raise KeyError(y)


def outer(x):
    try:
        fail(x)
    except KeyError:
        return -1


class Bad:
    def __repr__(self):
        raise RuntimeError("no repr")


class Huge:
    def __repr__(self):
        return "H" * 100000


class Plain:
    pass


def hold():
    b = Bad()
    h = Huge()
    p = Plain()
    big = list(range(1000))
    s = "x" * 5000
    tags = {"red", "green", "blue"}
    return len(big) + len(s) + len(tags)


def grow(n):
    row = ()
    for i in range(n):
        row = ("%030d" % i,) * 5
    return len(row) * n


def dump(d):
    text = json.dumps(d, sort_keys=True)
    return text
`;

export const TESTS = `import pytest

from tracedemo.core import countdown, deep, dump, fact, grow, hold, outer, parse, spin, total


def helper_in_tests(x):
    return x + 1


def test_total():
    assert total([1, 2, 3]) == 6


def test_spin():
    assert spin(50000) == 50000


def test_fact():
    assert fact(30) == 265252859812191058636308480000000


def test_deep():
    assert deep(800) == 800


def test_countdown():
    assert list(countdown(3)) == [3, 2, 1]


def test_parse():
    assert parse("12") == 12
    assert parse("x") is None


def test_outer():
    assert outer(2) == -1


def test_hold():
    assert hold() == 6003


def test_grow():
    assert grow(4500) == 22500


def test_dump():
    assert dump({"b": 1, "a": [1, 2]}) == '{"a": [1, 2], "b": 1}'
    assert helper_in_tests(1) == 2


def test_fails_on_purpose():
    assert total([1]) == 2
`;

/** The repository: `tracedemo/core.py` and `tests/test_core.py`, one commit. */
export function makeTraceDemoRepo(dir: string): FixtureRepo {
  return makeRepo(dir, {
    "pyproject.toml": pyprojectFor("tracedemo"),
    ".gitignore": "__pycache__/\n*.egg-info/\nbuild/\n.pytest_cache/\n",
    "tracedemo/__init__.py": "",
    "tracedemo/core.py": CORE,
    "tests/test_core.py": TESTS,
  });
}
