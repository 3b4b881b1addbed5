/**
 * infer/: reading created repositories of each backend (setuptools, flit, hatch, poetry,
 * pdm) and runner (pytest, unittest), PEP 508 requirements and markers, Debian mapping, the
 * repair rules on real-looking logs (fast, no Docker); then one small repository end to end in
 * Docker: a missing pytest plugin repaired, a file needing an unobtainable dependency deselected,
 * accepted with per-test statuses stored; a repository needing Python >= 3.12 accepted on trixie.
 * Also the base suites, noxfile.py, the unittest parser and --latest-runnable (no Docker: the
 * walk is given a scripted inference).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DebianMapper, parseVersionTable, upstreamVersion } from "../infer/debian";
import { evaluateMarker, linuxEnvironment, parseRequirement } from "../infer/pep508";
import { GitTree, multilineIni, noxfileFacts, readRepository, setupPyLists } from "../infer/read";
import { runsWholeSuite } from "../infer/collect";
import { parseUnittestLog } from "../suite/log-parsers";
import { inferImage, mostlySkipped, pytestVariant, scmVersion, testFileCount, uncollectedFiles } from "../infer/run";
import { pythonProblem, repairFromLog, specFromFacts } from "../infer/spec";
import { chooseSuite, suiteFit } from "../infer/debian-suites";
import { beforeIntroduced, latestRunnable, missingOfFirstSuite } from "../infer/latest";
import type { InferOutcome, InferOptions } from "../infer/run";
import { baseImageTag, suiteOfTag } from "../images/base";
import { DEFAULT_BASE_IMAGE } from "../images/spec";
import { dockerUp } from "./helpers/docker-probe";
import { makeRepo } from "./helpers/git-fixtures";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-infer-test-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function repo(files: Record<string, string>, tag?: string) {
  const r = makeRepo(path.join(tmp, `r${n++}`), files, ...(tag ? [{ message: "tagged", files: { "CHANGES.txt": "x\n" }, tag }] : []));
  return { dir: r.dir, commit: r.shas[r.shas.length - 1]!, tree: new GitTree(r.dir, r.shas[r.shas.length - 1]!) };
}

// A small mapping table in dh-python's format and a package index, so the test does not depend on the host.
const distFile = path.join(tmp, "cpython3_fallback");
fs.writeFileSync(distFile, "PyYAML python3-yaml\nattrs python3-attr\nfreezegun python3-freezegun\nPygments python3-pygments\nCython cython3\nGone python3-gone\n");
const mapper = new DebianMapper({
  distFile,
  packageNames: ["python3-yaml", "python3-attr", "python3-freezegun", "python3-pygments", "python3-pytest-mock", "python3-pytest-cov", "python3-pytest-asyncio", "python3-hypothesis", "python3-dateutil", "python3-six"],
});

const TEST_PY = "import pytest\n\ndef test_one():\n    assert 1\n";

describe("PEP 508", () => {
  it("parses names, extras, specifiers, URLs and markers; skips options and comments", () => {
    expect(parseRequirement("Foo_Bar[x, y] >=1.0,<2 ; python_version < '3.8'")).toMatchObject({
      name: "Foo_Bar",
      normalized: "foo-bar",
      extras: ["x", "y"],
      specifier: ">=1.0,<2",
      marker: "python_version < '3.8'",
    });
    expect(parseRequirement("pkg @ https://example.invalid/p.whl")?.url).toBe("https://example.invalid/p.whl");
    expect(parseRequirement("-r other.txt")).toBeUndefined();
    expect(parseRequirement("# comment")).toBeUndefined();
    expect(parseRequirement("pytest>=7 # trailing")?.specifier).toBe(">=7");
  });
  it("evaluates markers for CPython 3.11 on Linux, versions compared as PEP 440", () => {
    const env = linuxEnvironment("3.11.2");
    expect(evaluateMarker("python_version < '3.8'", env)).toBe(false);
    expect(evaluateMarker("python_version >= '3.10' and sys_platform == 'linux'", env)).toBe(true);
    expect(evaluateMarker("python_version >= '3.9.1'", env)).toBe(true);
    expect(evaluateMarker("(os_name == 'nt' or platform_system == 'Windows') and python_version > '3'", env)).toBe(false);
    expect(evaluateMarker("implementation_name == 'pypy' or extra == 'Test_X'", linuxEnvironment("3.11.2", "test-x"))).toBe(true);
    expect(() => evaluateMarker("python_version <", env)).toThrow(/marker/);
  });
});

describe("reading repositories", () => {
  it("setuptools: setup.cfg install_requires and extras, [tool:pytest] testpaths, setup.py tests_require", () => {
    const r = repo({
      "setup.py": "from setuptools import setup\nsetup(tests_require=['hypothesis'], extras_require={'test': ['freezegun']})\n",
      "setup.cfg": "[metadata]\nname = pkg\n\n[options]\npython_requires = >=3.7\ninstall_requires =\n    six>=1.0\n    attrs\n\n[options.extras_require]\ntests =\n    PyYAML\n    pytest-mock\n\n[tool:pytest]\ntestpaths = testing\n",
      "pkg/__init__.py": "",
      "testing/test_a.py": TEST_PY,
    });
    const f = readRepository(r.tree);
    expect(f.backend).toBe("setuptools");
    expect(f.layout).toBe("flat");
    expect(f.requiresPython).toBe(">=3.7");
    expect(f.dependencies.map((d) => d.normalized)).toEqual(["six", "attrs"]);
    expect(f.testDependencies.map((d) => d.normalized).sort()).toEqual(["freezegun", "hypothesis", "pytest-mock", "pyyaml"]);
    expect(f.testPaths).toEqual(["testing"]);
    const s = specFromFacts(f, mapper, { repo: "x/pkg", commit: r.commit });
    expect(s.spec.systemPackages).toEqual(expect.arrayContaining(["python3-six", "python3-attr", "python3-yaml", "python3-pytest-mock", "python3-hypothesis", "python3-freezegun", "python3-setuptools"]));
    expect(s.provenance.packages.find((p) => p.dist === "PyYAML")).toMatchObject({ package: "python3-yaml", via: "dh-python" });
    expect(s.provenance.packages.find((p) => p.dist === "six")).toMatchObject({ package: "python3-six", via: "package-index" });
  });

  it("flit, src layout, optional-dependencies and PEP 735 groups with include-group; an unobtainable dependency recorded", () => {
    const r = repo({
      "pyproject.toml": [
        '[build-system]\nrequires = ["flit_core >=3.2,<4"]\nbuild-backend = "flit_core.buildapi"',
        '[project]\nname = "pkg"\nrequires-python = ">=3.9"\ndependencies = ["attrs", "oldthing; python_version < \'3.8\'"]',
        '[project.optional-dependencies]\ntests = ["freezegun", "no-such-dist-anywhere"]\ndocs = ["sphinx"]',
        '[dependency-groups]\ntest = ["pytest", {include-group = "extra"}]\nextra = ["PyYAML"]',
      ].join("\n\n"),
      "src/pkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const f = readRepository(r.tree);
    expect(f.backend).toBe("flit");
    expect(f.layout).toBe("src");
    expect(f.testDependencies.map((d) => d.normalized)).toEqual(["freezegun", "no-such-dist-anywhere", "pytest", "pyyaml"]);
    const s = specFromFacts(f, mapper, { repo: "x/pkg", commit: r.commit });
    expect(s.spec.systemPackages).toContain("flit");
    expect(s.spec.systemPackages).toContain("python3-yaml");
    expect(s.spec.install[0]).toContain("/testbed/src");
    expect(s.provenance.packages.find((p) => p.dist === "no-such-dist-anywhere")?.skipped).toMatch(/no Debian package/);
    expect(s.provenance.packages.find((p) => p.dist === "oldthing")?.skipped).toMatch(/marker false/);
    expect(s.provenance.packages.some((p) => p.dist === "sphinx")).toBe(false);
    expect(s.spec.install[0]).not.toContain("entry_points.txt");
    // Entry points reach the .pth route's minimal dist-info (plugin lookups by entry point).
    const e = repo({
      "pyproject.toml": '[project]\nname = "epkg"\nversion = "2.1"\n\n[project.entry-points."epkg.plugins"]\nfoo = "epkg.foo:Foo"\n\n[project.scripts]\nepkg = "epkg.cli:main"\n',
      "epkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const line = specFromFacts(readRepository(e.tree), mapper, { repo: "x/epkg", commit: e.commit }).spec.install[0]!;
    expect(line).toContain("epkg-2.1.dist-info");
    const b64 = [...line.matchAll(/echo (\S+) \| base64 -d > "\$d\/entry_points.txt"/g)].map((m) => Buffer.from(m[1]!, "base64").toString());
    expect(b64).toEqual(["[epkg.plugins]\nfoo = epkg.foo:Foo\n\n[console_scripts]\nepkg = epkg.cli:main\n"]);
  });

  it("hatch with hatch-vcs: hatch env dependencies, a pretend version from the newest tag", () => {
    const r = repo(
      {
        "pyproject.toml": '[build-system]\nrequires = ["hatchling", "hatch-vcs"]\nbuild-backend = "hatchling.build"\n\n[project]\nname = "pkg"\ndynamic = ["version"]\n\n[tool.hatch.version]\nsource = "vcs"\n\n[tool.hatch.build.hooks.vcs]\nversion-file = "pkg/version.py"\n\n[tool.hatch.envs.test]\ndependencies = ["pytest-mock"]\n',
        "pkg/__init__.py": "",
        "tests/test_a.py": TEST_PY,
      },
      "v1.4.2",
    );
    const f = readRepository(r.tree);
    expect(f.backend).toBe("hatch");
    expect(f.usesScm).toBe(true);
    expect(scmVersion(r.dir, r.commit)).toBe("1.4.2");
    const s = specFromFacts(f, mapper, { repo: "x/pkg", commit: r.commit, scmVersion: "1.4.2" });
    expect(s.spec.env.SETUPTOOLS_SCM_PRETEND_VERSION).toBe("1.4.2");
    expect(f.versionFile).toBe("pkg/version.py");
    expect(s.spec.install[0]).toContain(`test -e pkg/version.py || printf '__version__ = version = "%s"\\n__version_tuple__ = version_tuple = (%s)\\n' 1.4.2 1,4,2 > pkg/version.py`);
    expect(s.spec.systemPackages).toEqual(expect.arrayContaining(["python3-hatchling", "python3-setuptools-scm", "python3-pytest-mock"]));
  });

  it("poetry groups (caret constraints dropped) and pdm dev-dependencies", () => {
    const p = repo({
      "pyproject.toml": '[build-system]\nrequires = ["poetry-core"]\nbuild-backend = "poetry.core.masonry.api"\n\n[tool.poetry]\nname = "pkg"\n\n[tool.poetry.dependencies]\npython = "^3.8"\nsix = "^1.16"\n\n[tool.poetry.group.dev.dependencies]\nPyYAML = "^6.0"\n',
      "pkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const f = readRepository(p.tree);
    expect(f.backend).toBe("poetry");
    expect(f.requiresPython).toBeUndefined();
    expect(f.dependencies.map((d) => d.normalized)).toEqual(["six"]);
    expect(f.testDependencies.map((d) => d.normalized)).toEqual(["pyyaml"]);
    const d = repo({
      "pyproject.toml": '[build-system]\nrequires = ["pdm-backend"]\nbuild-backend = "pdm.backend"\n\n[project]\nname = "pkg"\nrequires-python = ">=3.12"\n\n[tool.pdm.dev-dependencies]\ntest = ["freezegun"]\n',
      "pkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const g = readRepository(d.tree);
    expect(g.backend).toBe("pdm");
    expect(g.testDependencies.map((x) => x.normalized)).toEqual(["freezegun"]);
    expect(pythonProblem(g)).toMatch(/requires-python >=3\.12 excludes bookworm's Python 3\.11/);
  });

  it("unittest-only suites, requirements files followed through -r, tox deps and commands, workflow matrices", () => {
    const r = repo({
      "setup.py": "from setuptools import setup\nsetup(name='pkg', install_requires=['six'])\n",
      "requirements/tests.txt": "-r base.txt\nfreezegun==1.2  # pinned\n",
      "requirements/base.txt": "attrs\n",
      "tox.ini": "[tox]\nenvlist = py\n\n[testenv]\ndeps =\n    PyYAML\n    -r{toxinidir}/requirements/base.txt\ncommands =\n    python -m unittest discover -v\n",
      ".github/workflows/ci.yml": "on: push\njobs:\n  t:\n    strategy:\n      matrix:\n        python-version: ['3.9', '3.12']\n    steps:\n      - run: python -m unittest discover\n",
      "pkg/__init__.py": "",
      "test/test_a.py": "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        self.assertTrue(True)\n",
    });
    const f = readRepository(r.tree);
    expect(f.runner).toBe("unittest");
    expect(f.testPaths).toEqual(["test"]);
    expect(f.workflowPythons).toEqual(["3.9", "3.12"]);
    expect(f.testCommands).toContain("python -m unittest discover");
    expect([...new Set(f.testDependencies.map((d) => d.normalized))].sort()).toEqual(["attrs", "freezegun", "pyyaml"]);
    expect(f.dependencies.map((d) => d.normalized)).toEqual(["six"]);
    expect(f.filesRead).toEqual(expect.arrayContaining(["requirements/tests.txt", "requirements/base.txt", "tox.ini", ".github/workflows/ci.yml"]));
  });

  it("reads multi-line INI values and setup.py literals without running code", () => {
    expect(multilineIni("[a]\nx =\n    one\n    # c\n    two\ny = 3\n", "a", "x")).toEqual(["one", "two"]);
    // A requirement continued by a backslash over a comment onto its marker is one requirement
    // (setuptools), not a name "python_implementation" (pytest-runner's setup.cfg read wrongly).
    expect(multilineIni('[o]\nt =\n    pytest\n    pytest-black >= 0.3.7; \\\n        # why\n        python_implementation != "PyPy"\n    pytest-cov\n', "o", "t")).toEqual([
      "pytest",
      'pytest-black >= 0.3.7; python_implementation != "PyPy"',
      "pytest-cov",
    ]);
    const cont = readRepository(
      repo({
        "setup.cfg": '[metadata]\nname = pkg\n\n[options.extras_require]\ntesting =\n    pytest-black >= 0.3.7; \\\n        # why\n        python_implementation != "PyPy"\n',
        "requirements-test.txt": "freezegun \\\n    >=1.0 \\\n    --hash=sha256:00ff\nattrs; \\\n# comment ends the line\nsix\n",
        "pkg/__init__.py": "",
        "tests/test_a.py": TEST_PY,
      }).tree,
    );
    expect([...new Set(cont.testDependencies.map((d) => d.normalized))].sort()).toEqual(["attrs", "freezegun", "pytest-black", "six"]);
    expect(cont.testDependencies.find((d) => d.normalized === "pytest-black")?.marker).toMatch(/python_implementation/);
    expect(cont.testDependencies.find((d) => d.normalized === "freezegun")?.specifier).toBe(">=1.0");
    expect(setupPyLists("setup(install_requires=[\"a>=1\", 'b'], extras_require={'test': ['c'], 'docs': ['d']},)")).toEqual({
      installRequires: ["a>=1", "b"],
      testsRequire: [],
      extras: { test: ["c"], docs: ["d"] },
    });
    // Lists held in module-level variables (a setup.py keeping them apart from the call).
    const viaVariables = [
      "#: runtime requirements",
      "INSTALL_REQUIRES = [",
      '    "humanize",',
      '    "snaptime",',
      "]",
      "EXTRAS = {",
      '    "docs": ["sphinx"],',
      '    "tests": ["freezegun", "pytest"],',
      "}",
      'EXTRAS["dev"] = ["pre-commit"]',
      "TESTS = ('mock',)",
      "setup(name='m', install_requires=INSTALL_REQUIRES, extras_require=EXTRAS, tests_require=TESTS)",
    ].join("\n");
    expect(setupPyLists(viaVariables)).toEqual({
      installRequires: ["humanize", "snaptime"],
      testsRequire: ["mock"],
      extras: { docs: ["sphinx"], tests: ["freezegun", "pytest"], dev: ["pre-commit"] },
    });
    // A call's result is not read as a list.
    expect(setupPyLists("REQS = ['x']\nsetup(install_requires=reqs(), name='m')").installRequires).toEqual([]);
  });
});

describe("base suites", () => {
  it("chooses bookworm when its Python satisfies requires-python, trixie when only 3.13 does, none with the reason", () => {
    expect(chooseSuite(">=3.8")).toEqual({ suite: "bookworm", python: "3.11.2" });
    expect(chooseSuite(undefined)).toMatchObject({ suite: "bookworm" });
    expect(chooseSuite(">=3.12")).toMatchObject({ suite: "trixie", python: expect.stringMatching(/^3\.13\./) });
    expect(chooseSuite(">=3.9,<3.11")).toEqual({ reason: expect.stringMatching(/excludes bookworm's Python 3\.11\.2 and trixie's Python 3\.13/) });
    expect(chooseSuite(">=3.12", undefined, ["bookworm"])).toEqual({ reason: expect.stringMatching(/excludes bookworm's/) });
  });
  it("keys base tags by suite; bookworm's tag is the one every earlier spec names", () => {
    expect(baseImageTag("bookworm")).toBe(DEFAULT_BASE_IMAGE);
    expect(baseImageTag("trixie")).toBe("forager/base:trixie-mmdebstrap-minbase");
    expect(suiteOfTag("forager/base:trixie-mmdebstrap-minbase")).toBe("trixie");
    expect(suiteOfTag("forager/base:measure-x")).toBe("bookworm");
  });
  it("a trixie spec: its base image, its backend packages, markers evaluated for Python 3.13", () => {
    const r = repo({
      "pyproject.toml": '[build-system]\nrequires = ["pdm-backend"]\nbuild-backend = "pdm.backend"\n\n[project]\nname = "pkg"\nrequires-python = ">=3.12"\ndependencies = ["six; python_version >= \'3.12\'", "attrs; python_version < \'3.12\'"]\n',
      "pkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const f = readRepository(r.tree);
    const trixie = new DebianMapper({ suite: "trixie", distFile, packageNames: ["python3-six", "python3-attr", "python3-pdm-backend"] });
    const s = specFromFacts(f, trixie, { repo: "x/pkg", commit: r.commit, suite: "trixie", python: "3.13.5" });
    expect(s.spec.baseImage).toBe("forager/base:trixie-mmdebstrap-minbase");
    expect(s.spec.systemPackages).toEqual(expect.arrayContaining(["python3-pdm-backend", "python3-six"]));
    expect(s.spec.systemPackages).not.toContain("python3-attr");
    expect(s.spec.systemPackages).not.toContain("python3-pdm-pep517");
    expect(s.provenance.suite).toBe("trixie");
    expect(s.provenance.packages.find((p) => p.dist === "attrs")?.skipped).toMatch(/marker false on Python 3\.13\.5/);
  });
});

describe("Debian mapping", () => {
  it("takes dh-python's word for a package outside the python3-* index (Cython → cython3), not for a python3-* name the index lacks", () => {
    expect(mapper.map("cython")).toEqual({ package: "cython3", via: "dh-python" });
    expect(mapper.map("Gone")).toBeUndefined();
    expect(mapper.map("PyYAML")).toEqual({ package: "python3-yaml", via: "dh-python" });
  });
  it("tooling a project needs at runtime (a pytest plugin for black) is installed; as a test requirement it is not", () => {
    const df = path.join(tmp, "fallback-black");
    fs.writeFileSync(df, "black black\nflake8 flake8\n");
    const m = new DebianMapper({ distFile: df, packageNames: ["python3-pytest"] });
    const r = repo({ "pyproject.toml": '[project]\nname = "pytest-blk"\nversion = "1"\ndependencies = ["black", "pytest"]\n\n[project.optional-dependencies]\ntest = ["flake8"]\n', "pytest_blk.py": "", "tests/test_a.py": TEST_PY });
    const s = specFromFacts(readRepository(r.tree), m, { repo: "x/pytest-blk", commit: r.commit });
    expect(s.spec.systemPackages).toContain("black");
    expect(s.spec.systemPackages).not.toContain("flake8");
    expect(s.provenance.packages.find((p) => p.dist === "flake8")?.skipped).toMatch(/^tooling/);
  });
});

describe("noxfile.py and unittest", () => {
  const NOX = [
    "import nox",
    "",
    '@nox.session(python=["3.11", "3.12"])',
    "def tests(session):",
    '    session.install("-e", ".[test]")',
    "    session.install('freezegun', \"PyYAML>=6\", \"-r\", \"requirements/test.txt\")",
    '    session.run("pytest", "-x", *session.posargs, env={"A": "1"})',
    "",
    "@nox.session",
    "def lint(session):",
    '    session.install("ruff")',
    '    session.run("ruff", "check", ".")',
    "",
    "@nox.session",
    "def ut(session):",
    '    session.run("python", "-m", "unittest", "discover", "-v")',
  ].join("\n");
  it("a hatch env script running unittest discover with its own pattern (*tests.py): unittest, with the repository's arguments", () => {
    const r = repo({
      "pyproject.toml": '[project]\nname = "hdocs"\n\n[tool.hatch.envs.test.scripts]\ntest = \'python -m unittest discover -s hdocs -p "*tests.py"\'\n',
      "hdocs/__init__.py": "",
      "hdocs/tests/__init__.py": "",
      "hdocs/tests/build_tests.py": "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        self.assertTrue(True)\n",
    });
    const f = readRepository(r.tree);
    expect(f.testCommands).toEqual(['python -m unittest discover -s hdocs -p "*tests.py"']);
    expect(f).toMatchObject({ runner: "unittest", unittestCommand: true, unittestArgs: "discover -s hdocs -p '*tests.py'" });
  });
  it("reads session.install requirements (following -r) and session.run test commands statically", () => {
    expect(noxfileFacts(NOX)).toEqual({
      install: ["freezegun", "PyYAML>=6", "ruff"],
      requirementFiles: ["requirements/test.txt"],
      commands: ["pytest -x", "python -m unittest discover -v"],
      extras: ["test"],
    });
    const r = repo({ "setup.py": "from setuptools import setup\nsetup(name='pkg')\n", "noxfile.py": NOX, "requirements/test.txt": "six\n", "pkg/__init__.py": "", "tests/test_a.py": TEST_PY });
    const f = readRepository(r.tree);
    expect(f.filesRead).toContain("noxfile.py");
    expect(f.testDependencies.map((d) => d.normalized)).toEqual(expect.arrayContaining(["freezegun", "pyyaml", "six"]));
    expect(f.testCommands).toEqual(expect.arrayContaining(["pytest -x"]));
    expect(f.unittestCommand).toBe(false);
  });
  it("reads nox's dependency_groups(pyproject, NAME) as the groups it names, not as requirements", () => {
    const nox = ["import nox", "pyproject = nox.project.load_toml()", "@nox.session", "def tests(session):", '    session.install("-e.", *nox.project.dependency_groups(pyproject, "test"))', '    session.run("pytest")', ""].join("\n");
    expect(noxfileFacts(nox)).toEqual({ install: [], requirementFiles: [], commands: ["pytest"], extras: ["test"] });
    const py = ['[project]', 'name = "pkg"', 'dependencies = []', "[dependency-groups]", 'unit = ["freezegun"]', 'other = ["six"]', ""].join("\n");
    const r = repo({ "pyproject.toml": py, "noxfile.py": nox.replace('"test"', '"unit"'), "pkg/__init__.py": "", "tests/test_a.py": TEST_PY });
    const f = readRepository(r.tree);
    expect(f.testDependencies.map((d) => d.normalized)).toContain("freezegun");
    expect(f.testDependencies.map((d) => d.normalized)).not.toContain("unit");
    expect(f.testDependencies.map((d) => d.normalized)).not.toContain("six");
  });
  it("parses python -m unittest -v logs of Python 3.10 and 3.11+ into module.Class.name ids", () => {
    const log = [
      "test_a (tests.test_x.T) ... ok",
      "test_b (tests.test_x.T.test_b) ... FAIL",
      "test_c (tests.test_x.T.test_c)",
      "The docstring of c ... ok",
      "test_d (tests.test_x.T.test_d) ... skipped 'not on linux'",
      "test_e (tests.test_x.T.test_e) ... printed output",
      "more output",
      "ERROR",
      "test_f (tests.test_x.T.test_f) ... expected failure",
      "test_g (tests.test_x.T.test_g) ... unexpected success",
      // testtools scenarios: the description line is the id and the scenario, one test each.
      "test_s (tests.test_x.T.test_s)",
      "tests.test_x.T.test_s (one) ... ok",
      "test_s (tests.test_x.T.test_s)",
      "tests.test_x.T.test_s (two) ... skipped 'module not installed'",
      "tests.test_gone (unittest.loader._FailedTest.tests.test_gone) ... ERROR",
      "",
      "======================================================================",
      "FAIL: test_b (tests.test_x.T.test_b)",
      "----------------------------------------------------------------------",
      "Ran 8 tests in 0.002s",
      "FAILED (failures=2, errors=1, skipped=1)",
    ].join("\n");
    expect(Object.fromEntries(parseUnittestLog(log))).toEqual({
      "tests.test_x.T.test_a": "PASSED",
      "tests.test_x.T.test_b": "FAILED",
      "tests.test_x.T.test_c": "PASSED",
      "tests.test_x.T.test_d": "SKIPPED",
      "tests.test_x.T.test_e": "ERROR",
      "tests.test_x.T.test_f": "XFAIL",
      "tests.test_x.T.test_g": "FAILED",
      "tests.test_x.T.test_s(one)": "PASSED",
      "tests.test_x.T.test_s(two)": "SKIPPED",
    });
  });
  it("a suite with no pytest configuration whose CI runs unittest gets python -m unittest and the unittest parser", () => {
    const r = repo({
      "setup.py": "from setuptools import setup\nsetup(name='pkg')\n",
      ".github/workflows/ci.yml": "on: push\njobs:\n  t:\n    steps:\n      - run: python -m unittest discover -s test\n",
      "pkg/__init__.py": "",
      "test/test_a.py": "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        self.assertTrue(True)\n",
    });
    const f = readRepository(r.tree);
    expect(f.unittestCommand).toBe(true);
    const s = specFromFacts(f, mapper, { repo: "x/pkg", commit: r.commit });
    expect(s.spec.testCommand).toBe("python -m unittest discover -v -t . -s test");
    expect(s.spec.logParser).toBe("unittest");
    // mutate-fix gets a pytest variant of such a spec (pytest collects unittest.TestCase).
    const file = path.join(tmp, "ut-spec.json");
    fs.writeFileSync(file, JSON.stringify(s.spec));
    const v = pytestVariant(file);
    expect(v).toBe(path.join(tmp, "ut-spec.pytest.json"));
    expect(JSON.parse(fs.readFileSync(v, "utf8"))).toMatchObject({ testCommand: "pytest -rA -o python_classes= -o python_functions=", logParser: "pytest", systemPackages: s.spec.systemPackages });
  });
});

describe("a suite of doctests only", () => {
  it("no test file, but pytest's addopts collect the modules' doctests: the suite is the root's doctests, not 'no test file found'", () => {
    const ini = "[pytest]\naddopts=\n\t--doctest-modules\n\t--import-mode importlib\n";
    const mod = 'def inc(x):\n    """\n    >>> inc(1)\n    2\n    """\n    return x + 1\n';
    const f = readRepository(repo({ "pytest.ini": ini, "setup.py": "from setuptools import setup\nsetup(name='dt')\n", "dt/__init__.py": "", "dt/core.py": mod }).tree);
    expect(f.testPaths).toEqual([]);
    expect(f.testPathsReason).toMatch(/^the root: no test file, and the repository's pytest collects the doctests of its modules \(--doctest-modules; 1 module with one, e\.g\. dt\/core\.py\)/);
    const none = readRepository(repo({ "pytest.ini": ini, "setup.py": "from setuptools import setup\nsetup(name='dt')\n", "dt/__init__.py": "", "dt/core.py": "x = 1\n" }).tree);
    expect(none.testPathsReason).toMatch(/^no test file found/);
  });
});

describe("projects of the same repository", () => {
  it("a requirement naming a project in a subdirectory is installed from the tree, never missing; fixtures' projects are not projects", () => {
    const r = repo({
      "pyproject.toml": '[build-system]\nrequires = ["flit_core"]\nbuild-backend = "flit_core.buildapi"\n\n[project]\nname = "flit"\nversion = "1"\ndependencies = ["flit_core >=3.9", "six"]\n',
      "flit/__init__.py": "",
      "flit_core/pyproject.toml": '[project]\nname = "flit_core"\nversion = "3.9"\n',
      "flit_core/flit_core/__init__.py": "",
      "tests/samples/pyproject.toml": '[project]\nname = "six"\n',
      "tests/test_a.py": TEST_PY,
    });
    const f = readRepository(r.tree);
    expect(f.siblings).toEqual([{ name: "flit_core", normalized: "flit-core", dir: "flit_core", importRoot: "flit_core" }]);
    const s = specFromFacts(f, mapper, { repo: "pypa/flit", commit: r.commit });
    expect(s.provenance.packages.find((p) => p.dist === "flit_core")).toMatchObject({ package: "flit_core", via: expect.stringMatching(/^repository/) });
    expect(s.spec.install[0]).toMatch(/^pip install --no-index --no-deps --no-build-isolation --break-system-packages -e \.\/flit_core .*\/testbed\/flit_core/);
    expect(s.spec.systemPackages).toContain("python3-six");
    expect(suiteFit(f, "bookworm", "3.11.2", mapper, "flit").missingRuntime).toEqual([]);
    expect(suiteFit({ ...f, siblings: [] }, "bookworm", "3.11.2", mapper, "flit").missingRuntime).toEqual(["flit_core"]);
  });
  it("a Rust extension in a subdirectory (maturin, a Cargo.toml) is not built from the tree: its requirement is looked up in Debian", () => {
    const r = repo({
      "pyproject.toml": '[project]\nname = "pyd"\nversion = "1"\ndependencies = ["pyd-core==2.4"]\n',
      "pyd/__init__.py": "",
      "pyd-core/pyproject.toml": "[build-system]\nrequires = ['maturin>=1,<2']\nbuild-backend = 'maturin'\n\n[project]\nname = 'pyd_core'\n",
      "pyd-core/Cargo.toml": "[package]\nname = 'pyd-core'\n",
      "pyd-core/python/pyd_core/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    expect(readRepository(r.tree).siblings ?? []).toEqual([]);
  });
});

describe("--latest-runnable", () => {
  it("a runtime dependency no suite packages: the walk goes straight to before the dependency files named it", () => {
    const py = (deps: string) => `[project]\nname = "wpkg"\nversion = "1"\ndependencies = [${deps}]\n`;
    const r = makeRepo(path.join(tmp, `walk${n++}`), { "pyproject.toml": py('"six"'), "wpkg/__init__.py": "" },
      { message: "add typing_inspection", files: { "pyproject.toml": py('"six", "typing_inspection>=0.4"') } },
      { message: "bump six", files: { "pyproject.toml": py('"six>=1.16", "typing_inspection>=0.4"') } },
      { message: "bump it", files: { "pyproject.toml": py('"six>=1.16", "Typing-Inspection>=0.5"') } });
    const head = r.shas[3]!;
    const b = beforeIntroduced(r.dir, head, ["typing-inspection"])!;
    expect(b.commit).toBe(r.shas[0]);
    expect(b.why).toMatch(new RegExp(`^back to before ${r.shas[1]!.slice(0, 12)} .*named typing-inspection`));
    // Named since the first commit: nothing older lacks it.
    expect(beforeIntroduced(r.dir, head, ["six"])!.commit).toBeUndefined();
    expect(beforeIntroduced(r.dir, head, ["absent-dist"])).toBeUndefined();
    expect(missingOfFirstSuite("runtime dependencies with no Debian package in trixie or bookworm: trixie: typing-inspection; bookworm: annotated-types, typing-inspection")).toEqual(["typing-inspection"]);
  });
  it("steps over commits with the same unsatisfiable dependency files, then over a rejected suite, to the newest runnable commit", async () => {
    const pp = (req: string) => `[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "pkg"\nversion = "1"\nrequires-python = "${req}"\n`;
    const r = makeRepo(
      path.join(tmp, `walk${n++}`),
      { "pyproject.toml": pp(">=3.8"), "pkg/__init__.py": "", "tests/test_a.py": TEST_PY },
      { message: "good", files: { "pkg/a.py": "x = 1\n" } },
      { message: "tests broken", files: { "pkg/a.py": "x = 2\n" } },
      { message: "needs 3.14", files: { "pyproject.toml": pp(">=3.14") } },
      { message: "code only", files: { "pkg/b.py": "y = 1\n" } },
    );
    const [, good, broken, needs, head] = r.shas;
    const built: string[] = [];
    const infer = async (o: InferOptions): Promise<InferOutcome> => {
      built.push(o.commit!);
      const accepted = o.commit === good;
      return { repo: "x/pkg", commit: o.commit!, files: [], result: { accepted, reason: accepted ? "1/1 pass" : "0/1 pass", python: "3.11.2", testsCollected: 1, passed: accepted ? 1 : 0, failed: accepted ? 0 : 1, skipped: 0, passRate: accepted ? 1 : 0, flaky: [], buildSeconds: 0, imageMb: 0, attempts: 1, sourceInstall: false } };
    };
    const w = await latestRunnable({ repo: r.dir, infer, stateDir: path.join(tmp, "walkstate"), suites: ["bookworm"] });
    expect(w.commit).toBe(good);
    expect(w.tries.map((t) => [t.commit, t.verdict])).toEqual([
      [head, "skipped"],
      [broken, "rejected"],
      [good, "accepted"],
    ]);
    expect(w.tries[0]!.reason).toMatch(new RegExp(`requires-python >=3\\.14 excludes .*same dependency files back to ${needs!.slice(0, 12)}`));
    expect(built).toEqual([broken, good]);
    const bounded = await latestRunnable({ repo: r.dir, infer, maxTries: 2, stateDir: path.join(tmp, "walkstate"), suites: ["bookworm"] });
    expect(bounded.commit).toBeUndefined();
    expect(bounded.tries).toHaveLength(2);
  });
});

describe("Debian mapping", () => {
  it("PyPI's tzdata (the time zone database as a fallback) is the system's tzdata package, not a python3- package", () => {
    expect(mapper.map("tzdata")).toEqual({ package: "tzdata", via: "system-data" });
    expect(mapper.map("python-dateutil")).toEqual({ package: "python3-dateutil", via: "package-index" });
    expect(mapper.map("forager-nowhere")).toBeUndefined();
  });
});

describe("Debian versions", () => {
  it("upstream versions of Debian versions; a mapped package outside the requirement's specifier is a warning in the provenance", () => {
    expect(["22.2.0-1", "1:2.3+dfsg-1", "2.0~rc1-2", "8.10.0-2", "1.26.12+dfsg-1"].map(upstreamVersion)).toEqual(["22.2.0", "2.3", "2.0rc1", "8.10.0", "1.26.12"]);
    const table = parseVersionTable("Package: python3-attr\nVersion: 22.2.0-1\nPackage: python3-yaml\nVersion: 6.0-3+b2\n");
    expect(Object.fromEntries(table)).toEqual({ "python3-attr": "22.2.0-1", "python3-yaml": "6.0-3+b2" });
    const m = new DebianMapper({ distFile, packageNames: ["python3-attr", "python3-yaml"], versions: table });
    const r = repo({ "pyproject.toml": '[project]\nname = "v"\nversion = "1"\ndependencies = ["attrs>=23.1.0", "PyYAML>=5"]\n', "tests/test_a.py": TEST_PY });
    const inf = specFromFacts(readRepository(r.tree), m, { repo: "x/v", commit: r.commit });
    expect(inf.provenance.packages.find((p) => p.dist === "attrs")).toMatchObject({ package: "python3-attr", version: "22.2.0" });
    expect(inf.provenance.warnings).toEqual([expect.stringMatching(/^python3-attr 22\.2\.0 does not satisfy attrs>=23\.1\.0 .*--pip-index/)]);
  });
});

describe("repair rules", () => {
  const r = repo({ "setup.py": "from setuptools import setup\nsetup()\n", "tests/test_a.py": TEST_PY });
  const base = specFromFacts(readRepository(r.tree), mapper, { repo: "x/pkg", commit: r.commit }).spec;

  it("a missing module with a Debian package is added; one without is deselected with the reason", () => {
    const log = [
      "==================================== ERRORS ====================================",
      "____________________ ERROR collecting tests/test_yaml.py ____________________",
      "E   ModuleNotFoundError: No module named 'yaml'",
      "____________________ ERROR collecting tests/test_exotic.py ____________________",
      "E   ModuleNotFoundError: No module named 'exotic_lib.sub'",
      "=========================== short test summary info ============================",
    ].join("\n");
    const rep = repairFromLog(base, log, mapper)!;
    expect(rep.spec.systemPackages).toContain("python3-yaml");
    expect(rep.deselected).toEqual([{ path: "tests/test_exotic.py", reason: expect.stringMatching(/exotic_lib.*no Debian package/) }]);
    expect(rep.spec.testCommand).toBe("pytest -rA --ignore=tests/test_exotic.py");
    expect(rep.changes.map((c) => c.change)).toEqual([expect.stringMatching(/^add python3-yaml/), "deselect tests/test_exotic.py"]);
    // The same log after the repair: nothing left to do.
    expect(repairFromLog(rep.spec, log, mapper, ["tests/test_exotic.py"])).toBeUndefined();
  });

  it("an in-place extension build that failed for a library's headers or config tool adds the library's -dev package", () => {
    const build = [
      "src/ext/etree.c:96:10: fatal error: libxml/xmlversion.h: No such file or directory",
      "/bin/sh: 1: xslt-config: not found",
      "error: command '/usr/bin/x86_64-linux-gnu-gcc' failed with exit code 1",
      "forager-infer: build_ext --inplace failed",
      "E   ImportError: cannot import name 'etree' from 'ext' (/testbed/src/ext/__init__.py)",
    ].join("\n");
    const rep = repairFromLog(base, build, mapper)!;
    expect(rep.spec.systemPackages).toEqual(expect.arrayContaining(["libxml2-dev", "libxslt1-dev"]));
    expect(rep.changes[0]).toMatchObject({ trigger: expect.stringMatching(/libxml\/xmlversion\.h/), change: expect.stringMatching(/^add libxml2-dev/) });
    const words = repairFromLog(base, "Building with Cython 3.0.11.\nError: Please make sure the libxml2 and libxslt development packages are installed.\nforager-infer: build_ext --inplace failed\n", mapper)!;
    expect(words.spec.systemPackages).toEqual(expect.arrayContaining(["libxml2-dev", "libxslt1-dev"]));
    // The same header in a test's own output, with no failed build: not this rule's business.
    expect(repairFromLog(base, build.replace("forager-infer: build_ext --inplace failed", ""), mapper)?.spec.systemPackages ?? []).not.toContain("libxml2-dev");
  });

  it("tests that commit or tag where git has no identity get one, once", () => {
    const log = "E             cmdline: git tag -m Test fixture tag -f v0.8.1 master~10\nE             stderr: 'Committer identity unknown\nE           *** Please tell me who you are.\nERROR test/test_actor.py::T::test_x - git.exc.GitCommandError: Cmd('git') failed due to: exit code(128)\n";
    const rep = repairFromLog(base, log, mapper)!;
    expect(rep.spec.env).toMatchObject({ GIT_COMMITTER_NAME: "forager", GIT_AUTHOR_EMAIL: "forager@localhost", PIP_DISABLE_PIP_VERSION_CHECK: "1" });
    expect(rep.changes[0]!.change).toMatch(/^set a git identity/);
    expect(repairFromLog(rep.spec, log, mapper)).toBeUndefined();
  });

  it("files that stop pytest at collection are deselected with their error, while they are a minority of the test files", () => {
    const log = [
      "==================================== ERRORS ====================================",
      "____________________ ERROR collecting tests/test_suite.py ____________________",
      "tests/test_suite.py:12: in <module>",
      "    SUITE = json.loads((ROOT / 'suite' / 'tests.json').read_text())",
      "E   FileNotFoundError: [Errno 2] No such file or directory: '/testbed/suite/tests.json'",
      "____________________ ERROR collecting tests/test_zones.py ____________________",
      "E   pytz.exceptions.UnknownTimeZoneError: 'America/Ciudad_Juarez'",
      "=========================== short test summary info ============================",
      "ERROR tests/test_suite.py - FileNotFoundError: [Errno 2] No such file or directory",
      "ERROR tests/test_zones.py - pytz.exceptions.UnknownTimeZoneError",
      "!!!!!!!!!!!!!!!!!!! Interrupted: 2 errors during collection !!!!!!!!!!!!!!!!!!!!",
    ].join("\n");
    // Without the count of test files the rule does not apply (nothing to compare a minority with).
    expect(repairFromLog(base, log, mapper)).toBeUndefined();
    const rep = repairFromLog(base, log, mapper, [], { testFiles: 10 })!;
    expect(rep.deselected).toEqual([
      { path: "tests/test_suite.py", reason: "fails to collect: FileNotFoundError: [Errno 2] No such file or directory: '/testbed/suite/tests.json'" },
      { path: "tests/test_zones.py", reason: "fails to collect: pytz.exceptions.UnknownTimeZoneError: 'America/Ciudad_Juarez'" },
    ]);
    expect(rep.spec.testCommand).toBe("pytest -rA --ignore=tests/test_suite.py --ignore=tests/test_zones.py");
    // A majority of the files failing is not repaired, nor is a conftest (every file below it needs it).
    expect(repairFromLog(base, log, mapper, [], { testFiles: 5 })).toBeUndefined();
    expect(repairFromLog(base, log.replace(/tests\/test_zones\.py/g, "tests/conftest.py"), mapper, [], { testFiles: 10 })).toBeUndefined();
    // A missing module with a package comes first: the collection-error rule waits for its rerun.
    const yaml = log.replace("E   FileNotFoundError: [Errno 2] No such file or directory: '/testbed/suite/tests.json'", "E   ModuleNotFoundError: No module named 'yaml'");
    const first = repairFromLog(base, yaml, mapper, [], { testFiles: 10 })!;
    expect(first.deselected).toEqual([]);
    expect(first.spec.systemPackages).toContain("python3-yaml");
  });

  it("fixtures, async tests and plugin options map to plugins; an unknown option drops addopts", () => {
    const fix = repairFromLog(base, "E       fixture 'mocker' not found\nasync def functions are not natively supported.", mapper)!;
    expect(fix.spec.systemPackages).toEqual(expect.arrayContaining(["python3-pytest-mock", "python3-pytest-asyncio"]));
    const cov = repairFromLog(base, "ERROR: usage: pytest [options]\npytest: error: unrecognized arguments: --cov=pkg --cov-report=term", mapper)!;
    expect(cov.spec.systemPackages).toContain("python3-pytest-cov");
    const other = repairFromLog(base, "pytest: error: unrecognized arguments: --weird-plugin-flag", mapper)!;
    expect(other.spec.testCommand).toBe('pytest -rA -o addopts=""');
    expect(repairFromLog(base, "1 failed, 9 passed", mapper)).toBeUndefined();
    const internal = "INTERNALERROR>   File \"/usr/lib/python3/dist-packages/_pytest/config/__init__.py\"\nINTERNALERROR> pytest.PytestConfigWarning: Unknown config option: asyncio_default_fixture_loop_scope";
    expect(repairFromLog(base, internal, mapper)!.spec.testCommand).toBe("pytest -rA -W ignore::pytest.PytestConfigWarning");
    expect(repairFromLog(base, "E       distutils.errors.CompileError: error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory", mapper)!.spec.systemPackages).toEqual(expect.arrayContaining(["build-essential", "python3-dev"]));
    expect(repairFromLog(base, "INTERNALERROR> SystemError: AST constructor recursion depth mismatch (before=114, after=165)", mapper)!.spec.testCommand).toBe("pytest -rA --assert=plain");
    // The project's own module is never "repaired" with Debian's copy of the project.
    expect(repairFromLog({ ...base, repo: "x/six" }, "E   ModuleNotFoundError: No module named 'six._version'", mapper)).toBeUndefined();
  });
});

// ---- Docker: one created repository end to end (two builds: the first run shows the repairs). ----
const docker = dockerUp(["apt-cache", "show", "python3-pytest-mock"]);

describe.skipIf(!docker)("inferImage in Docker", () => {
  it(
    "repairs a missing plugin, deselects a file needing an unobtainable module, accepts, stores statuses",
    async () => {
      const r = repo({
        "pyproject.toml": '[build-system]\nrequires = ["flit_core >=3.2,<4"]\nbuild-backend = "flit_core.buildapi"\n\n[project]\nname = "tinypkg"\nversion = "0.1"\ndescription = "x"\n',
        "tinypkg/__init__.py": "def double(x):\n    return 2 * x\n",
        "tests/test_double.py": "from tinypkg import double\n\ndef test_double(mocker):\n    assert double(2) == 4\n\ndef test_zero():\n    assert double(0) == 0\n",
        "tests/test_optional.py": "import forager_unobtainable_mod\n\ndef test_never():\n    pass\n",
      });
      const out = path.join(tmp, "tiny.json");
      const o = await inferImage({ repo: r.dir, name: "example/tinypkg", out, stateDir: path.join(tmp, "state"), flakyRuns: 1 });
      expect(o.result.reason).toMatch(/2\/2 pass/);
      expect(o.result.accepted).toBe(true);
      const changes = o.inferred!.provenance.changes.map((c) => c.change);
      expect(changes).toEqual(expect.arrayContaining([expect.stringMatching(/^add python3-pytest-mock/), "deselect tests/test_optional.py"]));
      const statuses = JSON.parse(fs.readFileSync(`${out}.statuses.json`, "utf8")) as { statuses: Record<string, string> };
      expect(statuses.statuses).toEqual({ "tests/test_double.py::test_double": "PASSED", "tests/test_double.py::test_zero": "PASSED" });
      expect(JSON.parse(fs.readFileSync(out, "utf8")).testCommand).toBe("pytest -rA --ignore=tests/test_optional.py");
    },
    900_000,
  );

  it(
    "accepts a repository that needs Python >= 3.12 on trixie, mapping against trixie's own package index",
    async () => {
      const r = repo({
        "pyproject.toml": '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n[project]\nname = "newpkg"\nversion = "0.1"\nlicense = "MIT"\nrequires-python = ">=3.12"\ndependencies = ["attrs"]\n',
        "newpkg/__init__.py": "import attrs\n\ntype Pair = tuple[int, int]\n\ndef swap(p: Pair) -> Pair:\n    return (p[1], p[0])\n",
        "tests/test_swap.py": "import sys\nfrom newpkg import swap\n\ndef test_swap():\n    assert swap((1, 2)) == (2, 1)\n\ndef test_version():\n    assert sys.version_info >= (3, 12)\n",
      });
      const out = path.join(tmp, "trixie.json");
      const stateDir = path.join(tmp, "state");
      const o = await inferImage({ repo: r.dir, name: "example/newpkg", out, stateDir, flakyRuns: 0 });
      expect(o.result.reason).toMatch(/2\/2 pass/);
      expect(o.result.accepted).toBe(true);
      expect(o.result.python).toMatch(/^3\.13\./);
      expect(o.inferred!.spec.baseImage).toBe("forager/base:trixie-mmdebstrap-minbase");
      expect(o.inferred!.spec.systemPackages).toEqual(expect.arrayContaining(["python3-attr", "python3-hatchling"]));
      expect(o.inferred!.provenance.mappingSources.join(" ")).toMatch(/trixie/);
      expect(fs.existsSync(path.join(stateDir, "infer", "suites", "trixie", "pkgnames.txt"))).toBe(true);
    },
    900_000,
  );
});

// ---- Issue 30: the classes of rejection seen on repositories nobody chose (fast parts; the
// Docker end-to-end cases are in test/image-infer-classes.test.ts). ----

describe("class 1: requirement roles", () => {
  it("a shell comment after a CI install line is not a requirement list", () => {
    const f = readRepository(
      repo({
        "pyproject.toml": '[project]\nname = "pkg"\n\n[dependency-groups]\ndev = ["pytest", "attrs"]\n',
        ".github/workflows/t.yml": "on: push\njobs:\n  t:\n    steps:\n      - run: |\n          pip install -e . --group dev # install the pkg dev packages\n          pip install freezegun  # and the clock\n          uv pip install attrs | pip install attrs\n      - run: pytest\n",
        "pkg/__init__.py": "",
        "tests/test_a.py": TEST_PY,
      }).tree,
    );
    const names = [...new Set(f.testDependencies.map((d) => d.normalized))].sort();
    expect(names).toEqual(["attrs", "freezegun", "pytest"]);
  });
  it("a requirements.txt of test tooling, or one beside package metadata, is a test list; a file the metadata reads is runtime", () => {
    const tooling = repo({
      "setup.py": "from setuptools import setup\nsetup(name='rpkg', packages=['rpkg'])\n",
      "requirements.txt": "pytest>=7\ncoverage\nforager-missing-test-helper\n",
      "rpkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const f = readRepository(tooling.tree);
    expect(f.dependencies).toEqual([]);
    expect(f.testDependencies.map((d) => d.normalized)).toEqual(expect.arrayContaining(["pytest", "coverage", "forager-missing-test-helper"]));
    expect(f.requirementFiles).toEqual([{ file: "requirements.txt", role: "test", reason: expect.stringMatching(/most of its entries are test tooling/) }]);
    const dir = repo({ "requirements/base.txt": "six\n", "requirements/fuzzing.txt": "forager-fuzzer\n", "tests/test_a.py": TEST_PY });
    expect(readRepository(dir.tree).requirementFiles.map((x) => [x.file, x.role])).toEqual([["requirements/base.txt", "runtime"], ["requirements/fuzzing.txt", "test"]]);
    const beside = repo({
      "pyproject.toml": '[project]\nname = "bpkg"\nversion = "1"\ndependencies = ["six"]\n',
      "requirements.txt": "six==1.16\nforager-missing-dev-thing\n",
      "bpkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const g = readRepository(beside.tree);
    expect(g.dependencies.map((d) => d.normalized)).toEqual(["six"]);
    expect(g.requirementFiles[0]).toMatchObject({ role: "test", reason: expect.stringMatching(/metadata declares the runtime requirements/) });
    const dynamic = repo({
      "pyproject.toml": '[project]\nname = "dpkg"\nversion = "1"\ndynamic = ["dependencies"]\n\n[tool.setuptools.dynamic]\ndependencies = {file = ["requirements.txt"]}\n',
      "requirements.txt": "six\npytest-forager-plugin\n",
      "dpkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const h = readRepository(dynamic.tree);
    expect(h.dependencies.map((d) => d.normalized)).toEqual(["six"]);
    // A test plugin is never a runtime requirement, wherever it is listed.
    expect(h.testDependencies.map((d) => d.normalized)).toEqual(["pytest-forager-plugin"]);
  });

  it("CI install lines, tox extras and the project's own extras in a test group are test requirements", () => {
    const r = repo({
      "pyproject.toml": '[project]\nname = "cpkg"\nversion = "1"\ndependencies = []\n\n[project.optional-dependencies]\nsocks = ["PySocks"]\nyaml = ["PyYAML"]\nfast = ["attrs"]\n\n[dependency-groups]\ntest = ["cpkg[socks]"]\n',
      "tox.ini": "[testenv]\nextras = yaml\ncommands = pytest\n",
      "ci/reqs.txt": "freezegun\n",
      ".github/workflows/t.yml": "on: push\njobs:\n  t:\n    steps:\n      - run: |\n          python -m pip install -r ci/reqs.txt hypothesis 'pytest-mock>=3' -e .\n          pytest tests\n",
      "cpkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const f = readRepository(r.tree);
    expect(f.testExtras).toEqual(["socks", "yaml"]);
    expect(f.testDependencies.map((d) => d.normalized)).toEqual(expect.arrayContaining(["freezegun", "hypothesis", "pytest-mock", "pysocks", "pyyaml"]));
    expect(f.extraDependencies.map((d) => d.normalized)).toEqual(["attrs"]);
    expect(f.requirementFiles).toEqual([{ file: "ci/reqs.txt", role: "test", reason: "the CI installs it for its test run" }]);
  });

  it("--latest-runnable does not skip a commit whose only missing package is a test helper", async () => {
    const r = repo({
      "setup.py": "from setuptools import setup\nsetup(name='rpkg', packages=['rpkg'])\n",
      "requirements.txt": "pytest\ncoverage\nforager-missing-test-helper\n",
      "rpkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
    });
    const { staticProblem } = await import("../infer/latest");
    expect(await staticProblem(r.dir, r.commit, { stateDir: path.join(tmp, "walkstate"), suites: ["bookworm"] })).toBeUndefined();
    const runtime = repo({ "pyproject.toml": '[project]\nname = "q"\nversion = "1"\ndependencies = ["forager-missing-runtime-lib"]\n', "tests/test_a.py": TEST_PY });
    expect(await staticProblem(runtime.dir, runtime.commit, { stateDir: path.join(tmp, "walkstate"), suites: ["bookworm"] })).toMatch(/runtime dependency with no Debian package in bookworm: bookworm: forager-missing-runtime-lib/);
  });
});

describe("class 2: the suite chosen by what it satisfies", () => {
  const fake = (suite: string, versions: Record<string, string>, names = Object.keys(versions)) => new DebianMapper({ suite, distFile, packageNames: names, versions: new Map(Object.entries(versions)) });
  const facts = (deps: string[], test: string[] = [], requiresPython = ">=3.9") => ({
    requiresPython,
    dependencies: deps.map((d) => ({ ...parseRequirement(d)!, from: "pyproject.toml" })),
    testDependencies: test.map((d) => ({ ...parseRequirement(d)!, from: "tests" })),
  });
  const bookworm = fake("bookworm", { "python3-attr": "22.2.0-1", "python3-six": "1.16.0-4" });
  const trixie = fake("trixie", { "python3-attr": "25.3.0-1", "python3-six": "1.17.0-1", "python3-newonly": "2.0-1" });
  it("prefers the suite whose packages are within the specifiers, and the one that has a runtime package the other lacks; bookworm on a tie", async () => {
    const { rankSuites, suiteFit } = await import("../infer/debian-suites");
    const rank = (f: ReturnType<typeof facts>) => rankSuites([suiteFit(f, "bookworm", "3.11.2", bookworm), suiteFit(f, "trixie", "3.13.5", trixie)]);
    const outdated = rank(facts(["attrs>=24.1", "six"]));
    expect(outdated.order.map((f) => f.suite)).toEqual(["trixie", "bookworm"]);
    expect(outdated.reason).toMatch(/^trixie: it satisfies more of the requirements\. bookworm \(Python 3\.11\.2\): 0 runtime requirement\(s\) missing, 1 outside the specifier \(attrs>=24\.1 \(bookworm has 22\.2\.0\)\)/);
    expect(rank(facts(["newonly"])).order[0]!.suite).toBe("trixie");
    expect(rank(facts(["six"])).order.map((f) => f.suite)).toEqual(["bookworm", "trixie"]);
    expect(rank(facts(["six"], ["pytest>=8"])).order[0]!.suite).toBe("bookworm"); // pytest not in these fake tables: missing on both
    expect(rank(facts(["six"], [], ">=3.12")).order.map((f) => f.suite)).toEqual(["trixie"]);
    // Neither meets the lower bound: the newer packaged version is the closer one.
    const both = rank(facts(["attrs>=26"]));
    expect(both.order.map((f) => f.suite)).toEqual(["trixie", "bookworm"]);
    expect(both.reason).toMatch(/^trixie: neither satisfies every specifier; its packaged versions are the newer ones/);
  });
});

describe("class 3: pytest configuration errors before collection", () => {
  const r = repo({ "setup.py": "from setuptools import setup\nsetup()\n", "tests/test_a.py": TEST_PY });
  const base = specFromFacts(readRepository(r.tree), new DebianMapper({ distFile, packageNames: ["python3-pytest-cov"] }), { repo: "x/pkg", commit: r.commit }).spec;
  const m = new DebianMapper({ distFile, packageNames: ["python3-pytest-cov"] });
  it("an unknown marker: the plugin that registers it, else forager's marker plugin", async () => {
    const { registeredMarkers } = await import("../infer/spec");
    const log = [
      "__________________________ ERROR collecting test_a.py __________________________",
      "E   pytest.PytestUnknownMarkWarning: Unknown pytest.mark.no_cover - is this a typo?  You can register custom marks to avoid this warning",
      "__________________________ ERROR collecting test_b.py __________________________",
      "'lonely_mark' not found in `markers` configuration option",
      "=========================== short test summary info ============================",
    ].join("\n");
    const rep = repairFromLog(base, log, m)!;
    expect(rep.spec.systemPackages).toContain("python3-pytest-cov");
    expect(rep.spec.testCommand).toBe("pytest -rA -p forager_markers");
    expect(registeredMarkers(rep.spec.install)).toEqual(["lonely_mark"]);
    expect(rep.changes.map((c) => c.change)).toEqual([expect.stringMatching(/^add python3-pytest-cov \(the marker no_cover is registered by pytest-cov/), expect.stringMatching(/^register the marker lonely_mark \(no known plugin registers it\)/)]);
    // Once the plugin is installed and the marker still unknown, it is registered by forager.
    const again = repairFromLog(rep.spec, log.replace("lonely_mark", "other_mark"), m)!;
    expect(registeredMarkers(again.spec.install)).toEqual(["lonely_mark", "no_cover", "other_mark"]);
    expect(again.spec.install.filter((l) => l.includes("forager_markers.py"))).toHaveLength(1);
  });
  it("a warning filter whose category's module is not installed: overridden, the other filters kept", async () => {
    const { filterOverride } = await import("../infer/spec");
    const log = [
      "ERROR: while parsing the following warning configuration:",
      "",
      "  ignore::nosuchmod_xyz.SomeWarning",
      "",
      "This error occurred:",
      "",
      "Traceback (most recent call last):",
      '  File "/usr/lib/python3/dist-packages/_pytest/config/__init__.py", line 1728, in _resolve_warning_category',
      "ModuleNotFoundError: No module named 'nosuchmod_xyz'",
    ].join("\n");
    const filters = ["error", "ignore::nosuchmod_xyz.SomeWarning", "ignore:it's old:DeprecationWarning"];
    const rep = repairFromLog(base, log, m, [], { filterwarnings: filters })!;
    expect(rep.spec.testCommand).toBe(`pytest -rA -o 'filterwarnings=error\nignore:it'\\''s old:DeprecationWarning'`);
    expect(filterOverride(rep.spec.testCommand)).toEqual(["error", "ignore:it's old:DeprecationWarning"]);
    expect(rep.changes[rep.changes.length - 1]!.change).toMatch(/^override filterwarnings without ignore::nosuchmod_xyz\.SomeWarning \(its category's module nosuchmod_xyz cannot be installed; the other 2 filters kept\)/);
    // A second bad filter later: removed from the override, not from the original list.
    const log2 = log.replace(/nosuchmod_xyz/g, "other_absent");
    const rep2 = repairFromLog(rep.spec, log2, m, [], { filterwarnings: [...filters, "ignore::other_absent.W"] });
    expect(rep2).toBeUndefined(); // the override no longer holds that filter: nothing to do
  });
});

describe("class 4: the repository's own pytest configuration decides what is collected", () => {
  it("--doctest-modules with no testpaths: the package directories holding doctests run beside the conventional test directory", () => {
    const files = {
      "pyproject.toml": '[project]\nname = "dpkg"\n',
      "pytest.ini": "[pytest]\naddopts = --doctest-modules\n",
      "dpkg/__init__.py": 'def one():\n    """\n    >>> one()\n    1\n    """\n    return 1\n',
      "docs/conf.py": '""">>> 1\n1"""\n',
      "tests/test_a.py": TEST_PY,
    };
    const f = readRepository(repo(files).tree);
    expect(f.testPaths).toEqual(["tests", "dpkg"]);
    expect(f.testPathsReason).toMatch(/and dpkg, whose modules' doctests --doctest-modules collects/);
    // Without the option, or with testpaths, the configuration decides alone.
    expect(readRepository(repo({ ...files, "pytest.ini": "[pytest]\naddopts = -ra\n" }).tree).testPaths).toEqual(["tests"]);
    expect(readRepository(repo({ ...files, "pytest.ini": "[pytest]\naddopts = --doctest-modules\ntestpaths = tests\n" }).tree).testPaths).toEqual(["tests"]);
  });

  it("no file under pytest's python_files: the files nose's or unittest's discovery takes (pkg/test/test.py, tests.py) are given by name", () => {
    const f = readRepository(
      repo({
        "setup.py": "from setuptools import setup\nsetup(name='pkg')\n",
        "test.sh": "#!/bin/sh\nnosetests --nocapture\n",
        "pkg/__init__.py": "",
        "pkg/test/__init__.py": "",
        "pkg/test/test.py": "from unittest import TestCase\n\nclass T(TestCase):\n    def test_x(self):\n        self.assertTrue(True)\n",
        "pkg/test/test_files/tests.py": "X = 1\n", // data, defines no test
        "docs/tests.py": "def test_doc():\n    pass\n", // under docs/: not the suite
      }).tree,
    );
    expect(f.testPaths).toEqual(["pkg/test/test.py"]);
    expect(f.testPathsReason).toMatch(/nose's or unittest's discovery/);
    // A repository whose files pytest finds is untouched.
    const g = readRepository(repo({ "setup.py": "from setuptools import setup\nsetup(name='pkg')\n", "pkg/__init__.py": "", "pkg/tests.py": TEST_PY, "tests/test_a.py": TEST_PY }).tree);
    expect(g.testPaths).toEqual(["tests"]);
  });

  it("python_files = test.py and norecursedirs = * at the root; CI paths; pytest 9's [tool.pytest]", async () => {
    const { collectedFiles, pytestArgPaths, fnmatchEx } = await import("../infer/collect");
    const r = repo({
      "pyproject.toml": '[project]\nname = "rootpkg"\nversion = "1"\n\n[tool.pytest.ini_options]\npython_files = "test.py"\nnorecursedirs = "*"\n',
      "rootpkg/__init__.py": "",
      "test.py": TEST_PY,
      "tests/data/case1/test.py": "this is data, not Python\n",
      "tests/data/case1/input.txt": "x\n",
    });
    const f = readRepository(r.tree);
    expect(f.pytestConfigFile).toBe("pyproject.toml");
    expect(f.testPaths).toEqual([]);
    expect(f.testPathsReason).toMatch(/^the root, as pytest with no arguments walks it: 1 test file under python_files test\.py and norecursedirs \*/);
    expect(collectedFiles(r.tree.files, ["tests"], { pythonFiles: ["test.py"], norecursedirs: ["*"] })).toEqual([]);
    expect(collectedFiles(["a/b/test_x.py", "a/build/test_y.py", "a/.hidden/test_z.py", "a/c_test.py", "a/__init__.py"], ["a"])).toEqual(["a/b/test_x.py", "a/c_test.py"]);
    expect(fnmatchEx("testing/python/*.py", "testing/python/raises.py")).toBe(true);
    expect(pytestArgPaths("python -m pytest -n 4 -k 'not slow' tests/unit {posargs}", ["tests/unit/test_a.py"])).toEqual(["tests/unit"]);
    expect(pytestArgPaths("coverage run -m pytest src/pkg/tests::test_x", ["src/pkg/tests/test_x.py"])).toEqual(["src/pkg/tests"]);
    expect(pytestArgPaths("python -m unittest discover tests", ["tests/test_a.py"])).toEqual([]);
    // The CI names the suite's directory: followed before a conventional one.
    const ci = repo({
      "setup.py": "from setuptools import setup\nsetup(name='cipkg')\n",
      ".github/workflows/t.yml": "on: push\njobs:\n  t:\n    steps:\n      - run: pytest -q src/cipkg/checks\n",
      "src/cipkg/__init__.py": "",
      "src/cipkg/checks/test_core.py": TEST_PY,
      "tests/test_legacy.py": TEST_PY,
    });
    expect(readRepository(ci.tree).testPaths).toEqual(["src/cipkg/checks"]);
    // pytest 9's native table is read like ini_options; pytest.ini wins over pyproject.toml.
    const native = repo({ "pyproject.toml": '[tool.pytest]\ntestpaths = ["checks"]\npython_files = ["check_*.py"]\n', "checks/check_a.py": TEST_PY });
    expect(readRepository(native.tree).testPaths).toEqual(["checks"]);
    // Plugins' configuration options and required_plugins are requirements on the plugins.
    const plug = repo({ "pytest.ini": "[pytest]\nDJANGO_SETTINGS_MODULE = site.settings\nrequired_plugins = pytest-timeout>=2 pytest-env\n", "tests/test_a.py": TEST_PY });
    expect(readRepository(plug.tree).testDependencies.map((r) => r.name + r.specifier)).toEqual(["pytest-django", "pytest-timeout>=2", "pytest-env"]);
    // pytest's minversion is a requirement on pytest.
    const min = repo({ "tox.ini": "[pytest]\nminversion = 8.0\n", "tests/test_a.py": TEST_PY });
    expect(readRepository(min.tree).testDependencies).toEqual([expect.objectContaining({ name: "pytest", specifier: ">=8.0", from: "tox.ini pytest minversion" })]);
    const both = repo({ "pytest.ini": "[pytest]\ntestpaths = t2\n", "pyproject.toml": '[tool.pytest.ini_options]\ntestpaths = ["t1"]\n', "t1/test_a.py": TEST_PY, "t2/test_b.py": TEST_PY });
    expect(readRepository(both.tree)).toMatchObject({ pytestConfigFile: "pytest.ini", testPaths: ["t2"] });
  });
  it("a test script the repository's Makefile runs directly (test/test.py, outside python_files) is given to pytest by name", () => {
    const r = repo({
      "setup.py": "from setuptools import setup\nsetup(name='spkg')\n",
      Makefile: "lint:\n\tflake8\n\ntest:\n\tcoverage run --source=spkg ./test/test.py -v\n",
      "spkg/__init__.py": "",
      "test/__init__.py": "",
      "test/test.py": "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        self.assertTrue(True)\n",
      "test/test_shells.py": TEST_PY,
    });
    const f = readRepository(r.tree);
    // Its directory is given as the files it collects: pytest 8 given `test` and `test/test.py` collects only the script.
    expect(f.testPaths).toEqual(["test/test_shells.py", "test/test.py"]);
    expect(f.testPathsReason).toMatch(/; and test\/test\.py, which the repository's test commands run directly$/);
  });
  it("a CI pytest run over the default collection beside one naming a file: the suite is the whole, not the one file", () => {
    const r = repo({
      "pyproject.toml": '[project]\nname = "cpkg"\n',
      ".github/workflows/ci.yml": "jobs:\n  t:\n    steps:\n      - run: uv run --with=pytest-xdist pytest --cov -nlogical\n      - run: uv run --with=pyinstaller pytest tests/test_frozen.py -v\n",
      "cpkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
      "tests/test_frozen.py": TEST_PY,
    });
    expect(readRepository(r.tree).testPaths).toEqual(["tests"]);
    expect(runsWholeSuite("pytest --version", ["tests/test_a.py"])).toBe(false);
    expect(runsWholeSuite("tox -e py", ["tests/test_a.py"])).toBe(false);
    expect(runsWholeSuite("pytest {posargs}", ["tests/test_a.py"])).toBe(true);
    expect(runsWholeSuite("pytest {posargs:tests}", ["tests/test_a.py"])).toBe(false);
  });
  it("a script the test commands run beside the suite that defines no test (a fixture fetcher) is not a test path", () => {
    const r = repo({
      "pyproject.toml": '[project]\nname = "mpkg"\n',
      "tox.ini": "[testenv]\ncommands =\n    pytest {posargs:tests/}\n\n[testenv:spec]\ncommands = python tests/test_spec/get_spec.py\n",
      "mpkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
      "tests/test_spec/get_spec.py": "import argparse\n\ndef main():\n    argparse.ArgumentParser().parse_args()\n",
    });
    expect(readRepository(r.tree).testPaths).toEqual(["tests"]);
  });
  it("test paths named by two commands, a directory and a file inside it: the directory alone (pytest 8 would collect only the file)", () => {
    const r = repo({
      "setup.py": "from setuptools import setup\nsetup(name='dpkg')\n",
      "tox.ini": "[testenv]\ncommands =\n    pytest --cov=dpkg {posargs: tests}\n\n[testenv:data]\ncommands =\n    pytest {posargs:tests/test_data.py}\n",
      "dpkg/__init__.py": "",
      "tests/test_a.py": TEST_PY,
      "tests/test_data.py": TEST_PY,
    });
    expect(readRepository(r.tree).testPaths).toEqual(["tests"]);
  });
  it("the makefile make would read (GNUmakefile, makefile, Makefile) and `python3 -munittest` in its test recipe: a unittest suite", () => {
    const r = repo({
      "setup.py": "from setuptools import setup\nsetup(name='jpkg', py_modules=['jpkg'])\n",
      makefile: "help:\n\t@echo targets\n\ntest:\n\tpython3 -munittest\n\ncoverage:\n\tcoverage run --source=jpkg tests.py\n",
      "jpkg.py": "def one():\n    return 1\n",
      "tests.py": "import unittest\nimport jpkg\n\nclass T(unittest.TestCase):\n    def test_one(self):\n        self.assertEqual(jpkg.one(), 1)\n",
    });
    const f = readRepository(r.tree);
    expect(f.filesRead).toContain("makefile");
    expect(f.testCommands).toContain("python3 -m unittest");
    expect(f).toMatchObject({ runner: "unittest", unittestCommand: true });
    // A test target spelled with an underscore (`test_py3:`) runs its script too.
    const u = readRepository(
      repo({
        Makefile: "test: test_py3\n\ntest_py3:\n\tpython3 setup.3.py build_ext --inplace\n\tpython3 test/unittests.py\n",
        "test/unittests.py": "import unittest\n\nclass T(unittest.TestCase):\n    def test_one(self):\n        pass\n\nif __name__ == '__main__':\n    unittest.main()\n",
      }).tree,
    );
    expect(u.testCommands).toContain("python3 test/unittests.py");
    expect(u.testPaths).toEqual(["test/unittests.py"]);
  });
  it("a unittest suite runs the way the repository's CI invokes it (a dotted start module under src/, a pattern)", async () => {
    const { unittestInvocation } = await import("../infer/read");
    const files = ["src/gpkg/__init__.py", "src/gpkg/tests/__init__.py", "src/gpkg/tests/test_a.py", "tests/x_check.py"];
    expect(unittestInvocation("python -m unittest discover -v gpkg.tests", files)).toBe("discover gpkg.tests");
    expect(unittestInvocation('python3 -m unittest discover -s tests -p "*_check.py" -b', files)).toBe("discover -s tests -p '*_check.py'");
    expect(unittestInvocation("python -m unittest discover", files)).toBeUndefined();
    expect(unittestInvocation("python -m unittest {posargs}", files)).toBeUndefined();
    // testtools' runner, interpreter options before -m, a suite function of a package's module.
    const read = (f: string) => (f === "gpkg/tests/__init__.py" ? "import unittest\n\ndef test_suite():\n    return unittest.TestSuite()\n" : undefined);
    const withInit = [...files, "gpkg/tests/__init__.py"];
    expect(unittestInvocation("python -W once -m testtools.run gpkg.tests.test_suite", withInit, read)).toBe("gpkg.tests.test_suite");
    expect(unittestInvocation("python -m testtools.run gpkg.tests.no_such_suite", withInit, read)).toBeUndefined();
    const r = repo({
      "setup.py": "from setuptools import setup\nsetup(name='gpkg', package_dir={'': 'src'})\n",
      ".github/workflows/t.yml": "on: push\njobs:\n  t:\n    steps:\n      - run: python -m unittest discover -v gpkg.tests\n",
      "src/gpkg/__init__.py": "",
      "src/gpkg/tests/__init__.py": "",
      "src/gpkg/tests/test_a.py": "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        self.assertTrue(True)\n",
    });
    const f = readRepository(r.tree);
    expect(f.unittestArgs).toBe("discover gpkg.tests");
    expect(specFromFacts(f, mapper, { repo: "x/gpkg", commit: r.commit }).spec.testCommand).toBe("python -m unittest discover -v gpkg.tests");
  });
});

describe("class 5: version skew walks back by dependency-file dates", () => {
  /** A repository with commits at given dates (committer and author). */
  function datedRepo(commits: { date: string; files: Record<string, string>; message: string }[]) {
    const dir = path.join(tmp, `dated${n++}`);
    fs.mkdirSync(dir, { recursive: true });
    const g = (args: string[], date?: string) =>
      execFileSync("git", args, { cwd: dir, encoding: "utf8", env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.invalid", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.invalid", ...(date ? { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date } : {}) } }).trim();
    g(["init", "-q", "-b", "main"]);
    const shas: string[] = [];
    for (const c of commits) {
      for (const [f, t] of Object.entries(c.files)) {
        fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
        fs.writeFileSync(path.join(dir, f), t);
      }
      g(["add", "-A"]);
      g(["commit", "-q", "-m", c.message], c.date);
      shas.push(g(["rev-parse", "HEAD"]));
    }
    return { dir, shas };
  }
  const pp = (dep: string) => `[project]\nname = "skewpkg"\nversion = "1"\ndependencies = ["${dep}"]\n`;
  it("skips to the newest commit before the newest suite's release that predates the dependency files, not one commit at a time", async () => {
    const { dir, shas } = datedRepo([
      { date: "2023-01-10T00:00:00Z", message: "old era", files: { "pyproject.toml": pp("six"), "skewpkg/__init__.py": "", "tests/test_a.py": TEST_PY } },
      { date: "2024-03-01T00:00:00Z", message: "deps of 2024", files: { "pyproject.toml": pp("six>=1.16") } },
      { date: "2024-05-01T00:00:00Z", message: "code", files: { "skewpkg/a.py": "x = 1\n" } },
      { date: "2025-10-01T00:00:00Z", message: "deps of late 2025", files: { "pyproject.toml": pp("six>=1.17") } },
      { date: "2025-11-01T00:00:00Z", message: "code", files: { "skewpkg/a.py": "x = 2\n" } },
    ]);
    const [old, , may2024, , head] = shas;
    const built: string[] = [];
    const infer = async (o: InferOptions): Promise<InferOutcome> => {
      built.push(o.commit!);
      const ok = o.commit === old;
      return { repo: "x/skewpkg", commit: o.commit!, files: [], result: { accepted: ok, reason: ok ? "1/1 pass" : "version skew: 0/1 pass", ...(ok ? {} : { skew: "ImportError: cannot import name 'X' from 'six'" }), python: "3.11.2", testsCollected: 1, passed: ok ? 1 : 0, failed: ok ? 0 : 1, skipped: 0, passRate: ok ? 1 : 0, flaky: [], buildSeconds: 0, imageMb: 0, attempts: 1, sourceInstall: false } };
    };
    const w = await latestRunnable({ repo: dir, infer, maxTries: 4, stateDir: path.join(tmp, "walkstate"), suites: ["bookworm"] });
    expect(w.commit).toBe(old);
    expect(built).toEqual([head, old]);
    expect(w.tries[0]!.reason).toMatch(/version skew: its dependency files \(2025-10-01\) are newer than bookworm's packages \(released 2023-06-10\): back to [0-9a-f]{12} \(2023-01-10\)/);
    // With both suites' eras: trixie's first (2025-08-09), then bookworm's.
    const { skewTarget } = await import("../infer/latest");
    expect(skewTarget(dir, head!, ["bookworm", "trixie"])!.commit).toBe(may2024);
    expect(skewTarget(dir, may2024!, ["bookworm", "trixie"])!.commit).toBe(old);
  });
  it("a runtime requirement beyond every suite's package: back to the newest dependency state a suite satisfies, found statically", async () => {
    const { dir, shas } = datedRepo([
      { date: "2024-01-10T00:00:00Z", message: "six any", files: { "pyproject.toml": pp("six>=1.0"), "skewpkg/__init__.py": "", "tests/test_a.py": TEST_PY } },
      { date: "2024-02-01T00:00:00Z", message: "code", files: { "skewpkg/a.py": "x = 1\n" } },
      { date: "2025-12-01T00:00:00Z", message: "six from the future", files: { "pyproject.toml": pp("six>=99") } },
      { date: "2025-12-02T00:00:00Z", message: "code", files: { "skewpkg/a.py": "x = 2\n" } },
    ]);
    const [, feb2024, , head] = shas;
    const built: string[] = [];
    const infer = async (o: InferOptions): Promise<InferOutcome> => {
      built.push(o.commit!);
      const ok = o.commit === feb2024;
      return { repo: "x/skewpkg", commit: o.commit!, files: [], result: { accepted: ok, reason: ok ? "1/1 pass" : "version skew: 0/1 pass", ...(ok ? {} : { skew: "runtime requirement outside the packaged version: six>=99 (bookworm has 1.16.0)" }), python: "3.11.2", testsCollected: 1, passed: ok ? 1 : 0, failed: ok ? 0 : 1, skipped: 0, passRate: ok ? 1 : 0, flaky: [], buildSeconds: 0, imageMb: 0, attempts: 1, sourceInstall: false } };
    };
    const w = await latestRunnable({ repo: dir, infer, maxTries: 3, stateDir: path.join(tmp, "walkstate"), suites: ["bookworm"] });
    expect(built).toEqual([head, feb2024]);
    expect(w.tries[0]!.reason).toMatch(/version skew: back to [0-9a-f]{12} \(dependency files of 2024-01-10\), the newest whose runtime requirements bookworm satisfies/);
  });
  it("no commit with every runtime dependency packaged: the newest is built once without them, and a rejection names them", async () => {
    const { dir, shas } = datedRepo([
      { date: "2024-01-10T00:00:00Z", message: "first", files: { "pyproject.toml": pp("forager-nowhere"), "skewpkg/__init__.py": "", "tests/test_a.py": TEST_PY } },
      { date: "2024-02-01T00:00:00Z", message: "code", files: { "skewpkg/a.py": "x = 1\n" } },
    ]);
    const [, head] = shas;
    for (const accept of [true, false]) {
      const built: string[] = [];
      const infer = async (o: InferOptions): Promise<InferOutcome> => {
        built.push(o.commit!);
        return { repo: "x/skewpkg", commit: o.commit!, files: [], result: { accepted: accept, reason: accept ? "9/9 pass" : "most of the suite deselected: 2 of 3 test files", python: "3.11.2", testsCollected: 9, passed: 9, failed: 0, skipped: 0, passRate: 1, flaky: [], buildSeconds: 0, imageMb: 0, attempts: 1, sourceInstall: false } };
      };
      const w = await latestRunnable({ repo: dir, infer, maxTries: 3, stateDir: path.join(tmp, "walkstate"), suites: ["bookworm"] });
      expect(built).toEqual([head]);
      expect(w.tries.map((t) => t.verdict)).toEqual(["skipped", accept ? "accepted" : "rejected"]);
      expect(w.tries[1]!.reason).toMatch(/^built without the missing runtime dependencies: /);
      if (accept) expect(w.commit).toBe(head);
      else {
        expect(w.commit).toBeUndefined();
        expect(w.outcome!.result.reason).toMatch(/^runtime dependency with no Debian package in bookworm: bookworm: forager-nowhere; built without them: most of the suite deselected/);
        expect(w.outcome!.result.cause).toBe("missing runtime dependency");
      }
    }
  });
  it("reads version skew from a test log (a name the packaged version lacks, an abstract method added later), not from the project's own modules", async () => {
    const { versionSkew } = await import("../infer/verdict");
    expect(versionSkew("E   ImportError: cannot import name 'Converter' from 'attrs' (/usr/lib/python3/dist-packages/attrs/__init__.py)", "mypkg")).toMatch(/^ImportError: cannot import name 'Converter' from 'attrs'/);
    expect(versionSkew("E   TypeError: Can't instantiate abstract class Impl with abstract method new_hook", "mypkg")).toMatch(/abstract method new_hook/);
    expect(versionSkew("E   AttributeError: module 'importlib_metadata' has no attribute 'packages_distributions'", "mypkg")).toMatch(/importlib_metadata/);
    expect(versionSkew("E   ImportError: cannot import name 'helper' from 'mypkg.util'", "mypkg")).toBeUndefined();
    expect(versionSkew("E       TypeError: TestServer.__init__() got an unexpected keyword argument 'engine'", "pysocks")).toMatch(/unexpected keyword argument 'engine'/);
    expect(versionSkew("1 failed, 9 passed")).toBeUndefined();
    // The repository's own tree (a native part not built: a directory with no __init__.py) is not skew.
    expect(versionSkew("E   ImportError: cannot import name 'hook_str_module' from 'src.native' (unknown location)", "atheris", ["src", "contrib"])).toBeUndefined();
    expect(versionSkew("E   ImportError: cannot import name 'x' from 'contrib.tools' (/testbed/contrib/tools/__init__.py)", "atheris", ["src", "contrib"])).toBeUndefined();
  });
});

describe("class 6: readable rejections", () => {
  it("a rejection's decisive line is never pytest's closing banner: a fixture error names the test and its E line; nothing collected says so", async () => {
    const { decisiveLines } = await import("../infer/verdict");
    const fixture = [
      "collected 1 item", "", "run_tests.py E", "", "==================================== ERRORS ====================================",
      "_________________________ ERROR at setup of test_file __________________________", "file /testbed/run_tests.py, line 99",
      "  def test_file(filename, lines, code, options):", "E       fixture 'filename' not found", ">       available fixtures: capfd, capsys",
      "=========================== short test summary info ============================", "ERROR run_tests.py::test_file",
      "=============================== 1 error in 0.03s ===============================", "forager-exit-code=1",
    ].join("\n");
    expect(decisiveLines(fixture)).toEqual(["ERROR run_tests.py::test_file: fixture 'filename' not found"]);
    const none = ["============================= test session starts ==============================", "collected 0 items", "", "============================ no tests ran in 0.00s =============================", "forager-exit-code=5"].join("\n");
    expect(decisiveLines(none)[0]).toMatch(/^pytest collected 0 items \(no tests ran\)/);
  });
  it("decisive lines: the final exception of an INTERNALERROR, the warning filter pytest could not parse, collection errors, failures", async () => {
    const { decisiveLines, causeOf } = await import("../infer/verdict");
    const internal = ["INTERNALERROR> Traceback (most recent call last):", 'INTERNALERROR>   File "/w/conftest.py", line 2, in pytest_configure', 'INTERNALERROR>     raise RuntimeError("needs X")', "INTERNALERROR> RuntimeError: needs X", "forager-exit-code=3"].join("\n");
    expect(decisiveLines(internal)[0]).toBe("pytest INTERNALERROR: RuntimeError: needs X");
    expect(causeOf(false, "no tests collected: pytest INTERNALERROR: RuntimeError: needs X")).toBe("pytest configuration");
    expect(causeOf(false, "no tests collected: git submodule libx is not in the clone (the tests need it): FileNotFoundError: x")).toBe("missing submodule");
    expect(causeOf(false, "most of the suite deselected: 3 of 4 test files (tests/a.py: fails to collect: X)")).toBe("suite mostly deselected");
    // A run whose tests all come from outside the suite's test files (a benchmark file given by path).
    const suite = ["tests/test_a.py", "tests/test_b.py", "tests/sub/test_c.py"];
    expect(uncollectedFiles(suite, ["benchmarking/bench_core.py::test_spec"], "")).toEqual({ expected: 3, covered: 0, missing: suite });
    expect(uncollectedFiles(suite, ["tests/test_b.py::test_x"], "")).toBeUndefined();
    // Skipped whole, by itself or by a conftest above it (a server the tests need): collected.
    expect(uncollectedFiles(suite, [], "SKIPPED [1] tests/sub/conftest.py:4: needs a server\nSKIPPED [1] tests/test_a.py:2: no x")).toBeUndefined();
    expect(uncollectedFiles(suite.slice(0, 2), [], "")).toBeUndefined();
    expect(causeOf(false, "most test files collected nothing: tests from 0 of 13 test files (none from tests/test_a.py)")).toBe("suite mostly uncollected");
    // pytest-black without black: 1 test ran, 8 skipped with no id in the statuses.
    const black = "PASSED tests/test_no_black.py::test_skipped\nSKIPPED [1] tests/test_black.py:9: could not import 'black': No module named 'black'\nSKIPPED [7] tests/test_black.py:14: could not import 'black'\n";
    expect(mostlySkipped(black, { collected: 1, skipped: 0 })).toBe("most tests skipped: 8 of 9 (could not import 'black': No module named 'black')");
    expect(mostlySkipped("SKIPPED [70] tests/test_x.py:3: needs pygments\n", { collected: 1079, skipped: 70 })).toBeUndefined();
    expect(causeOf(false, "most tests skipped: 8 of 9 (x)")).toBe("suite mostly skipped");
    const { networkNeed } = await import("../infer/verdict");
    const pip = Array.from({ length: 6 }, (_, i) => `FAILED tests/test_install.py::test_${i} - ERROR: Could not find a version that satisfies the requirement Weblate==4.3.1 (from versions: none)`).join("\n");
    expect(networkNeed(pip, 6)).toMatch(/^FAILED tests\/test_install\.py::test_0 - ERROR: Could not find a version/);
    expect(networkNeed(pip.split("\n").slice(0, 2).join("\n").replace(/FAILED \S+ - /g, ""), 948)).toMatch(/^ERROR: Could not find a version/);
    expect(networkNeed("FAILED t.py::a - AssertionError: 1 != 2\nFAILED t.py::b - AssertionError\nwarning: Name or service not known", 20)).toBeUndefined();
    expect(networkNeed(pip.replace(/Could not find a version that satisfies the requirement/g, "ConnectionRefusedError: [Errno 111] Connection refused"), 6)).toBeUndefined();
    expect(causeOf(false, "tests need the network (sandboxes have none): 1/949 pass (0.1% < 80%): ERROR: Could not find a version")).toBe("tests need the network");
    // Per test: the failed tests whose summary message is a network failure (elastic-transport: 121 of 596).
    const { networkFailedTests } = await import("../infer/verdict");
    const netLog = [
      "FAILED tests/t.py::test_get[a] - urllib3.exceptions.NameResolutionError: Failed to resolve 'example.com'",
      "FAILED tests/t.py::test_math - AssertionError: 1 != 2",
      "FAILED tests/t.py::test_local - ConnectionRefusedError: [Errno 111] Connection refused",
      "ERROR tests/t.py::test_fixture - socket.gaierror: [Errno -3] Temporary failure in name resolution",
      "FAILED tests/t.py::test_gone - socket.gaierror: [Errno -2] Name or service not known",
    ].join("\n");
    const st = new Map([["tests/t.py::test_get[a]", "FAILED"], ["tests/t.py::test_math", "FAILED"], ["tests/t.py::test_local", "FAILED"], ["tests/t.py::test_fixture", "ERROR"], ["tests/t.py::test_ok", "PASSED"]]);
    expect(networkFailedTests(netLog, st)).toEqual(["tests/t.py::test_get[a]", "tests/t.py::test_fixture"]);
    expect(testFileCount(["tests/test_a.py", "tests/b_test.py", "tests/helpers.py", "src/pkg/test_inline.py", "tests2/test_x.py"], ["tests"])).toBe(2);
    expect(testFileCount(["tests/test_a.py", "src/pkg/test_inline.py"], [])).toBe(2);
    expect(readRepository(repo({ ".gitmodules": '[submodule "libx"]\n\tpath = libx\n\turl = https://example.invalid/libx\n', "tests/test_a.py": TEST_PY }).tree).submodules).toEqual(["libx"]);
    const wf = "ERROR: while parsing the following warning configuration:\n\n  ignore::absent.W\n\nThis error occurred:\n\nTraceback (most recent call last):\n  File \"x\", line 1\nModuleNotFoundError: No module named 'absent'\n";
    expect(decisiveLines(wf)[0]).toBe("pytest could not parse the warning filter ignore::absent.W: ModuleNotFoundError: No module named 'absent'");
    const coll = "____ ERROR collecting tests/test_a.py ____\ntests/test_a.py:1: in <module>\n    import zzz\nE   ModuleNotFoundError: No module named 'zzz'\n____ ERROR collecting tests/test_b.py ____\n'm' not found in `markers` configuration option\n=== short test summary info ===\n";
    expect(decisiveLines(coll)).toEqual(["collecting tests/test_a.py: ModuleNotFoundError: No module named 'zzz'", "collecting tests/test_b.py: 'm' not found in `markers` configuration option"]);
    expect(decisiveLines("FAILED tests/test_a.py::test_x - AssertionError: 1 != 2\n1 failed")).toEqual(["FAILED tests/test_a.py::test_x - AssertionError: 1 != 2"]);
    const bare = ['Traceback (most recent call last):', '  File "/usr/lib/python3/dist-packages/_pytest/config/argparsing.py", line 215, in addini', '    assert type in (None, "string")', "           ^^^^^^^^^^^^^^^^^^^^^", "AssertionError", "forager-exit-code=1"].join("\n");
    expect(decisiveLines(bare)).toEqual(['AssertionError at /usr/lib/python3/dist-packages/_pytest/config/argparsing.py:215 (assert type in (None, "string"))']);
    expect(decisiveLines("ERROR: test_x (t.T.test_x)\n----\nTraceback (most recent call last):\n  File \"t.py\", line 3\nValueError: bad\n\n----")).toEqual(["ERROR: test_x (t.T.test_x): ValueError: bad"]);
  });
  it("an incomplete clone (a missing git object) is named as such", async () => {
    const { gitFailure } = await import("../infer/run");
    const r = repo({ "setup.py": "from setuptools import setup\nsetup()\n", "pkg/__init__.py": "x = 1\n", "tests/test_a.py": TEST_PY });
    const blob: string = execFileSync("git", ["-C", r.dir, "rev-parse", `${r.commit}:tests/test_a.py`], { encoding: "utf8" }).trim();
    fs.rmSync(path.join(r.dir, ".git", "objects", blob.slice(0, 2), blob.slice(2)));
    let msg = "";
    try {
      readRepository(new GitTree(r.dir, r.commit));
      for (const f of ["tests/test_a.py"]) new GitTree(r.dir, r.commit).read(f);
    } catch (err) {
      msg = gitFailure(err);
    }
    expect(msg).toMatch(new RegExp(`^incomplete clone: git object of tests/test_a\\.py at ${r.commit.slice(0, 12)} is missing \\(bad object\\); the clone or fetch stopped early, fetch the repository again$`));
    const { incompleteClone } = await import("../infer/verdict");
    expect(incompleteClone(`Command failed: git checkout -B main ${r.commit}\nerror: unable to read sha1 file of static/app.js.map (aadc532980d3a44eb226cca99d1cbe3d97bb5d7a)`)).toMatch(/^incomplete clone: git object aadc532980d3 \(static\/app\.js\.map\) is missing/);
    await expect(inferImage({ repo: r.dir, name: "x/pkg", stateDir: path.join(tmp, "walkstate"), suites: ["bookworm"], out: path.join(tmp, "ic.json") })).rejects.toThrow(/^incomplete clone: git object/);
  });
  it("the verdict table groups repositories by cause, with counts and minutes", async () => {
    const { verdictTable } = await import("../infer/verdict");
    const row = (repo: string, accepted: boolean, reason: string) => ({ repo, commit: "0123456789abcdef", accepted, reason, tests_collected: 3, passed: accepted ? 3 : 0, failed: accepted ? 0 : 3, skipped: 0, deselected: [], total_seconds: 90, suite: "bookworm" });
    const t = verdictTable([row("a/one", true, "3/3 pass"), row("b/two", false, "no tests collected: pytest INTERNALERROR: RuntimeError: x"), row("c/three", false, "0/3 pass (0.0% < 80%): FAILED t::x - E"), row("d/four", true, "3/3 pass")]);
    expect(t[0]).toBe("accepted (2)");
    expect(t.indexOf("pytest configuration (1)")).toBeLessThan(t.indexOf("tests failing (1)"));
    expect(t.find((l) => l.includes("b/two"))).toMatch(/0123456789ab\s+bookworm\s+1\.5 min\s+3 collected, 0 passed, 3 failed, 0 skipped, 0 deselected\s+no tests collected: pytest INTERNALERROR/);
    expect(t[t.length - 1]).toBe("accepted 2/4 (50%)");
  });
});
