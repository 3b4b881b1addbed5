/**
 * Issue 30 in Docker: for each class of rejection seen on repositories nobody chose, a small
 * created repository that `forager images infer` rejected before the fix and accepts (or, for
 * class 6, rejects with a readable reason) after it. Each case is one to three builds of a tiny
 * repository on forager's base images (bookworm, and trixie for the suite fallback).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { latestRunnable } from "../infer/latest";
import { inferImage } from "../infer/run";
import { registeredMarkers } from "../infer/spec";
import { dockerUp } from "./helpers/docker-probe";
import { makeRepo } from "./helpers/git-fixtures";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-infer-classes-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const stateDir = path.join(tmp, "state");
let n = 0;
const repo = (files: Record<string, string>) => makeRepo(path.join(tmp, `r${n++}`), files);
const docker = dockerUp(["apt-cache", "show", "python3-pytest-cov"]);

describe.skipIf(!docker)("issue 30 classes, end to end", () => {
  it(
    "class 1: a requirements.txt of test tooling is not the runtime set; its missing helper is dropped and the file importing it deselected",
    async () => {
      const r = repo({
        "setup.py": "from setuptools import setup\nsetup(name='reqpkg', version='0.1', packages=['reqpkg'])\n",
        "requirements.txt": "pytest\ncoverage\nforager-missing-test-helper\n",
        "reqpkg/__init__.py": "def inc(x):\n    return x + 1\n",
        "tests/test_core.py": "from reqpkg import inc\n\ndef test_inc():\n    assert inc(1) == 2\n",
        "tests/test_helper.py": "import forager_missing_test_helper\n\ndef test_never():\n    pass\n",
      });
      const w = await latestRunnable({ repo: r.dir, name: "example/reqpkg", stateDir, maxTries: 2, flakyRuns: 0, suites: ["bookworm"], out: path.join(tmp, "c1.json") });
      expect(w.tries.map((t) => t.verdict)).toEqual(["accepted"]);
      const prov = w.outcome!.inferred!.provenance;
      expect(prov.requirementFiles).toEqual([{ file: "requirements.txt", role: "test", reason: expect.stringMatching(/test tooling/) }]);
      expect(prov.packages.find((p) => p.dist === "forager-missing-test-helper")).toMatchObject({ role: "test", skipped: expect.stringMatching(/dropped/) });
      expect(prov.deselected).toEqual([{ path: "tests/test_helper.py", reason: expect.stringMatching(/imports forager_missing_test_helper \(test requirement forager-missing-test-helper/) }]);
      expect(w.outcome!.result).toMatchObject({ accepted: true, passed: 1, attempts: 1 });
    },
    900_000,
  );

  it(
    "class 2 and 5: a packaged dependency too old for an import falls back to the other suite before rejecting, the reason in the provenance",
    async () => {
      // attrs.Converter came with attrs 24.1: bookworm has 22.2.0, trixie 25.x. No specifier says so.
      const r = repo({
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "convpkg"\nversion = "0.1"\nrequires-python = ">=3.9"\ndependencies = ["attrs"]\n',
        "convpkg/__init__.py": "from attrs import Converter, define, field\n\n@define\nclass P:\n    x: int = field(converter=Converter(int))\n",
        "tests/test_p.py": "from convpkg import P\n\ndef test_p():\n    assert P('3').x == 3\n",
      });
      const o = await inferImage({ repo: r.dir, name: "example/convpkg", stateDir, flakyRuns: 0, out: path.join(tmp, "c2.json") });
      expect(o.result.reason).toMatch(/1\/1 pass/);
      expect(o.inferred!.spec.baseImage).toBe("forager/base:trixie-mmdebstrap-minbase");
      const choice = o.inferred!.provenance.suiteChoice!;
      expect(choice.suite).toBe("trixie");
      expect(choice.tried).toEqual([{ suite: "bookworm", reason: expect.stringMatching(/^version skew: .*ImportError: cannot import name 'Converter' from 'attrs'/) }]);
      expect(choice.reason).toMatch(/^bookworm rejected \(version skew: .*\): fell back to trixie/);
    },
    900_000,
  );

  it(
    "class 3: filterwarnings = error with a plugin's marker and a filter naming an absent module: the plugin installed, the filter overridden, the other marker registered",
    async () => {
      const r = repo({
        "pyproject.toml": '[project]\nname = "warnpkg"\nversion = "0.1"\n\n[tool.pytest.ini_options]\nfilterwarnings = ["error", "ignore::forager_absent_mod.SomeWarning", "ignore:old:DeprecationWarning"]\n',
        "warnpkg/__init__.py": "",
        "tests/test_cov.py": "import pytest\n\n@pytest.mark.no_cover\ndef test_a():\n    assert True\n",
        "tests/test_lonely.py": "import pytest\n\n@pytest.mark.forager_lonely\ndef test_b():\n    assert True\n",
      });
      const o = await inferImage({ repo: r.dir, name: "example/warnpkg", stateDir, flakyRuns: 0, suites: ["bookworm"], out: path.join(tmp, "c3.json") });
      expect(o.result.reason).toMatch(/2\/2 pass/);
      const spec = o.inferred!.spec;
      expect(spec.systemPackages).toContain("python3-pytest-cov");
      expect(registeredMarkers(spec.install)).toEqual(["forager_lonely"]);
      expect(spec.testCommand).toBe("pytest -rA -o 'filterwarnings=error\nignore:old:DeprecationWarning' -p forager_markers");
      const attempts = o.inferred!.provenance.attempts!;
      expect(attempts[0]!.decisive[0]).toBe("pytest could not parse the warning filter ignore::forager_absent_mod.SomeWarning: ModuleNotFoundError: No module named 'forager_absent_mod'");
    },
    900_000,
  );

  it(
    "class 4: python_files = test.py and norecursedirs = * (tests at the root, data under tests/): collected from the root",
    async () => {
      const r = repo({
        "pyproject.toml": '[project]\nname = "rootpkg"\nversion = "0.1"\n\n[tool.pytest.ini_options]\npython_files = "test.py"\nnorecursedirs = "*"\n',
        "rootpkg/__init__.py": "def two():\n    return 2\n",
        "test.py": "from rootpkg import two\n\ndef test_two():\n    assert two() == 2\n\ndef test_data():\n    import pathlib\n    assert (pathlib.Path(__file__).parent / 'tests/data/case/input.txt').read_text() == 'x\\n'\n",
        "tests/data/case/input.txt": "x\n",
        "tests/data/case/test.py": "this is a data file, not Python\n",
      });
      const o = await inferImage({ repo: r.dir, name: "example/rootpkg", stateDir, flakyRuns: 0, suites: ["bookworm"], out: path.join(tmp, "c4.json") });
      expect(o.result.reason).toMatch(/2\/2 pass/);
      expect(o.inferred!.testPaths).toEqual([]);
      expect(o.inferred!.provenance.testPathsReason).toMatch(/^the root/);
    },
    900_000,
  );

  it(
    "class 6: a rejection keeps the exception and its message, per attempt, not the first line of a traceback",
    async () => {
      const r = repo({
        "setup.py": "from setuptools import setup\nsetup(name='cfgpkg', version='0.1', packages=['cfgpkg'])\n",
        "cfgpkg/__init__.py": "",
        "conftest.py": 'def pytest_configure(config):\n    raise RuntimeError("the suite needs FORAGER_FAKE_SERVICE")\n',
        "tests/test_a.py": "def test_a():\n    assert True\n",
      });
      const o = await inferImage({ repo: r.dir, name: "example/cfgpkg", stateDir, flakyRuns: 0, suites: ["bookworm"], out: path.join(tmp, "c6.json") });
      expect(o.result.accepted).toBe(false);
      expect(o.result.reason).toBe("no tests collected: pytest INTERNALERROR: RuntimeError: the suite needs FORAGER_FAKE_SERVICE");
      expect(o.result.cause).toBe("pytest configuration");
      expect(o.inferred!.provenance.attempts).toEqual([{ attempt: 1, suite: "bookworm", step: "reference run", outcome: "no tests collected", decisive: ["pytest INTERNALERROR: RuntimeError: the suite needs FORAGER_FAKE_SERVICE"] }]);
    },
    900_000,
  );

  it(
    "class 6: a clone missing a blob of older history still builds at a commit whose own tree is complete",
    async () => {
      const r = makeRepo(
        path.join(tmp, `r${n++}`),
        { "setup.py": "from setuptools import setup\nsetup(name='histpkg', version='0.1', packages=['histpkg'])\n", "histpkg/__init__.py": "", "tests/test_a.py": "def test_a():\n    assert True\n", "old.txt": "gone from the clone\n" },
        { message: "drop old.txt", files: { "old.txt": null } },
      );
      const blob = execFileSync("git", ["-C", r.dir, "rev-parse", `${r.shas[0]}:old.txt`], { encoding: "utf8" }).trim();
      fs.rmSync(path.join(r.dir, ".git", "objects", blob.slice(0, 2), blob.slice(2)));
      const o = await inferImage({ repo: r.dir, name: "example/histpkg", stateDir, flakyRuns: 0, suites: ["bookworm"], out: path.join(tmp, "c6b.json") });
      expect(o.result.reason).toMatch(/1\/1 pass/);
    },
    900_000,
  );
  it(
    "round 5: a second project of the repository is installed from the tree, and a file that stops pytest at collection is deselected with its error",
    async () => {
      const use = "from monopkg import double\n\ndef test_double():\n    assert double(2) == 4\n";
      const r = repo({
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "monopkg"\nversion = "0.1"\ndependencies = ["monocore"]\n\n[tool.setuptools]\npackages = ["monopkg"]\n',
        "monopkg/__init__.py": "from monocore import FACTOR\n\ndef double(x):\n    return x * FACTOR\n",
        "monocore/pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "monocore"\nversion = "0.1"\n',
        "monocore/monocore/__init__.py": "FACTOR = 2\n",
        "tests/test_a.py": use,
        "tests/test_b.py": use,
        "tests/test_c.py": use,
        "tests/test_data.py": "import json, pathlib\nCASES = json.loads((pathlib.Path(__file__).parent / 'suite' / 'cases.json').read_text())\n\ndef test_cases():\n    assert CASES\n",
      });
      const w = await latestRunnable({ repo: r.dir, name: "example/monopkg", stateDir, maxTries: 2, flakyRuns: 0, suites: ["bookworm"], out: path.join(tmp, "c7.json") });
      expect(w.tries.map((t) => t.verdict)).toEqual(["accepted"]);
      const prov = w.outcome!.inferred!.provenance;
      expect(prov.packages.find((p) => p.dist === "monocore")).toMatchObject({ package: "monocore", via: expect.stringMatching(/^repository/) });
      expect(prov.deselected).toEqual([{ path: "tests/test_data.py", reason: expect.stringMatching(/^fails to collect: FileNotFoundError: .*cases\.json/) }]);
      expect(w.outcome!.result).toMatchObject({ accepted: true, passed: 3, failed: 0, attempts: 2 });
    },
    900_000,
  );
  it(
    "round 6: a test script the commands run directly inside the test directory, a fixture script beside it, and tests that tag: the whole directory runs, with a git identity",
    async () => {
      const t = "import subprocess\n\ndef test_tag(tmp_path):\n    subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)\n    subprocess.run(['git', '-C', str(tmp_path), 'commit', '-q', '--allow-empty', '-m', 'x'], check=True)\n";
      const r = repo({
        "setup.py": "from setuptools import setup\nsetup(name='scrpkg', version='0.1', packages=['scrpkg'])\n",
        "scrpkg/__init__.py": "",
        "tox.ini": "[testenv]\ncommands =\n    pytest {posargs}\n    python tests/runner.py\n    python tests/fixtures/get_data.py\n",
        "tests/test_a.py": "def test_a():\n    assert 1\n",
        "tests/test_b.py": "def test_b():\n    assert 1\n",
        "tests/test_git.py": t,
        "tests/runner.py": "import unittest\n\nclass R(unittest.TestCase):\n    def test_r(self):\n        self.assertTrue(True)\n\nif __name__ == '__main__':\n    unittest.main()\n",
        "tests/fixtures/get_data.py": "import argparse\n\nif __name__ == '__main__':\n    argparse.ArgumentParser().parse_args()\n",
      });
      const w = await latestRunnable({ repo: r.dir, name: "example/scrpkg", stateDir, maxTries: 1, flakyRuns: 0, suites: ["bookworm"], out: path.join(tmp, "c8.json") });
      expect(w.tries.map((x) => x.verdict)).toEqual(["accepted"]);
      const o = w.outcome!;
      // Before: pytest was given `tests tests/runner.py tests/fixtures/get_data.py` and collected nothing but the script.
      expect(o.inferred!.provenance.testPaths).toEqual(["tests/test_a.py", "tests/test_b.py", "tests/test_git.py", "tests/runner.py"]);
      expect(o.result).toMatchObject({ accepted: true, passed: 4, failed: 0 });
      expect(o.inferred!.provenance.changes.map((c) => c.change)).toEqual([expect.stringMatching(/^set a git identity/)]);
    },
    900_000,
  );
  it(
    "round 7: a nose-style suite in a package's test/test.py (no file under pytest's python_files), two of whose tests fail for the network and one for a test requirement Debian lacks: accepted without them, named",
    async () => {
      const ok = Array.from({ length: 6 }, (_, i) => `    def test_ok${i}(self):\n        self.assertEqual(${i} + 1, ${i + 1})\n`).join("\n");
      // The failure a lookup gives in a sandbox (raised here: the test sends nothing anywhere).
      const net = [1, 2].map((i) => `    def test_net${i}(self):\n        raise socket.gaierror(-3, 'Temporary failure in name resolution')\n`).join("\n");
      const r = repo({
        "setup.py": "from setuptools import setup\nsetup(name='nosepkg', version='0.1', packages=['nosepkg'], extras_require={'test': ['nosuchdist-xyz']})\n",
        "test.sh": "#!/bin/sh\nnosetests --nocapture\n",
        "nosepkg/__init__.py": "",
        "nosepkg/test/__init__.py": "",
        // and one that imports, inside the test, a test requirement Debian has no package for.
        "nosepkg/test/test.py": `import socket\nfrom unittest import TestCase\n\n\nclass T(TestCase):\n${ok}\n${net}\n    def test_opt(self):\n        import nosuchdist_xyz\n`,
      });
      const w = await latestRunnable({ repo: r.dir, name: "example/nosepkg", stateDir, maxTries: 1, flakyRuns: 0, suites: ["bookworm"], out: path.join(tmp, "c9.json") });
      expect(w.tries.map((x) => x.verdict)).toEqual(["accepted"]);
      const o = w.outcome!;
      expect(o.inferred!.provenance.testPaths).toEqual(["nosepkg/test/test.py"]);
      // The statuses keep them FAILED (never PASS_TO_PASS); the rate leaves them out and says so.
      expect(o.result).toMatchObject({
        accepted: true,
        passed: 6,
        failed: 3,
        networkTests: ["nosepkg/test/test.py::T::test_net1", "nosepkg/test/test.py::T::test_net2"],
        droppedRequirementTests: ["nosepkg/test/test.py::T::test_opt"],
      });
      expect(o.result.reason).toMatch(/^6\/6 pass \(100\.0% ≥ 80%\) without 2 tests that need the network .* and 1 test that imports a dropped test requirement \(nosuchdist-xyz; /);
    },
    900_000,
  );
});
