/**
 * Spec inference, seconds per repository: reading (facts, suite, mapper), build, reference runs
 * (the acceptance run and one flaky check), cold and cached; the median minutes per repository
 * (cold) beside the acceptance rate.
 *
 *   npm run bench -- image-infer [--repos FILE] [--keep]
 *   npm run bench -- image-infer --summary FILE     # figures of a recorded `images infer --summary` batch
 *
 * Without `--repos`, three created repositories (setuptools flat with a pytest plugin, flit src,
 * a unittest suite run with `python -m unittest`) in a temporary directory; `--repos FILE` takes
 * paths of clones (one a line), e.g. fetched repositories. Cold: a per-run nonce in the spec's
 * env changes the env hash, so no env or instance layer is reused (the base image is); cached:
 * the same inference again, every layer reused. Every inference writes into a temporary state
 * dir. Images made are removed at the end unless `--keep`. Figures: mean seconds per repository
 * and phase, the median cold minutes per repository, the accepted count and rate.
 *
 * `--summary FILE` runs nothing: it reads the JSON lines `forager images infer --summary FILE`
 * wrote for a real batch (each line's `total_seconds`, `accepted`, `cause`) and reports that
 * set's acceptance rate, median and mean minutes per repository, and the count of each cause.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { docker } from "../images/docker";
import { inferImage } from "../infer/run";
import { percentile, round, stringFlag, type BenchMain } from "./lib";

const CREATED: Record<string, Record<string, string>> = {
  "bench/setuptools-flat": {
    "setup.py": "from setuptools import setup\nsetup(name='flatpkg', version='0.1', packages=['flatpkg'], extras_require={'test': ['pytest-mock']})\n",
    "flatpkg/__init__.py": "def add(a, b):\n    return a + b\n",
    "tests/test_add.py": "from flatpkg import add\n\ndef test_add(mocker):\n    assert add(1, 2) == 3\n\ndef test_neg():\n    assert add(-1, 1) == 0\n",
  },
  "bench/flit-src": {
    "pyproject.toml": '[build-system]\nrequires = ["flit_core >=3.2,<4"]\nbuild-backend = "flit_core.buildapi"\n\n[project]\nname = "srcpkg"\nversion = "0.1"\ndescription = "x"\ndependencies = ["attrs"]\n',
    "src/srcpkg/__init__.py": "import attr\n\n@attr.s\nclass P:\n    x = attr.ib()\n",
    "tests/test_p.py": "from srcpkg import P\n\ndef test_p():\n    assert P(1).x == 1\n",
  },
  "bench/unittest-suite": {
    "setup.py": "from setuptools import setup\nsetup(name='utpkg', version='0.1', packages=['utpkg'])\n",
    "tox.ini": "[testenv]\ncommands = python -m unittest discover -v\n",
    "utpkg/__init__.py": "def inc(x):\n    return x + 1\n",
    "test/__init__.py": "",
    "test/test_inc.py": "import unittest\nfrom utpkg import inc\n\nclass T(unittest.TestCase):\n    def test_inc(self):\n        self.assertEqual(inc(1), 2)\n",
  },
};

function createRepo(dir: string, files: Record<string, string>): void {
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  const git = (args: string[]) => execFileSync("git", ["-C", dir, "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", ...args], { stdio: "ignore" });
  git(["init", "-q", "-b", "main"]);
  git(["add", "-A"]);
  git(["commit", "-q", "-m", "initial"]);
}

/** The figures of a recorded batch (`images infer --summary` JSON lines). @throws Error naming the file and line of a line that is not JSON. */
export function summaryFigures(file: string): Record<string, number> {
  const rows = fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as { repo: string; accepted: boolean; total_seconds: number; cause?: string };
      } catch {
        throw new Error(`${file}:${i + 1}: not a JSON line`);
      }
    });
  const minutes = rows.map((r) => r.total_seconds / 60).sort((a, b) => a - b);
  const acc = rows.filter((r) => r.accepted);
  const figures: Record<string, number> = {
    repositories: rows.length,
    accepted: acc.length,
    acceptance_pct: rows.length ? round((acc.length / rows.length) * 100, 1) : 0,
    median_min_per_repo: rows.length ? round(percentile(minutes, 50), 2) : 0,
    mean_min_per_repo: rows.length ? round(minutes.reduce((a, b) => a + b, 0) / rows.length, 2) : 0,
    median_min_per_accepted_repo: acc.length ? round(percentile(acc.map((r) => r.total_seconds / 60).sort((a, b) => a - b), 50), 2) : 0,
  };
  for (const r of rows) if (!r.accepted) figures[`rejected_${(r.cause ?? "unknown").replace(/\W+/g, "_")}`] = (figures[`rejected_${(r.cause ?? "unknown").replace(/\W+/g, "_")}`] ?? 0) + 1;
  for (const r of rows) console.log(`${r.repo}: ${r.accepted ? "accepted" : `rejected (${r.cause ?? "?"})`}, ${(r.total_seconds / 60).toFixed(1)} min`);
  return figures;
}

export const main: BenchMain = async (args) => {
  const recorded = stringFlag(args, "summary");
  if (recorded) return summaryFigures(recorded);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-bench-infer-"));
  const reposFile = stringFlag(args, "repos");
  const repos: { dir: string; name: string }[] = [];
  if (reposFile) {
    for (const l of fs.readFileSync(reposFile, "utf8").split("\n").map((x) => x.replace(/#.*/, "").trim()).filter(Boolean)) repos.push({ dir: l, name: "" });
  } else {
    for (const [name, files] of Object.entries(CREATED)) {
      const dir = path.join(tmp, "repos", name.replace("/", "+"));
      createRepo(dir, files);
      repos.push({ dir, name });
    }
  }
  const nonce = `${Date.now()}`;
  const made = new Set<string>();
  const sum = { cold_read: 0, cold_build: 0, cold_reference: 0, cold_total: 0, cached_read: 0, cached_build: 0, cached_reference: 0, cached_total: 0 };
  let accepted = 0;
  const coldTotals: number[] = [];
  try {
    for (const r of repos) {
      for (const phase of ["cold", "cached"] as const) {
        const t0 = performance.now();
        const o = await inferImage({
          repo: r.dir,
          ...(r.name ? { name: r.name } : {}),
          stateDir: path.join(tmp, "state"),
          out: path.join(tmp, "specs", `${path.basename(r.dir)}-${phase}.json`),
          flakyRuns: 1,
          extraEnv: { FORAGER_MEASURE_NONCE: nonce },
        });
        const total = (performance.now() - t0) / 1000;
        const s = o.seconds ?? { read: 0, build: 0, reference: 0 };
        sum[`${phase}_read`] += s.read;
        sum[`${phase}_build`] += s.build;
        sum[`${phase}_reference`] += s.reference;
        sum[`${phase}_total`] += total;
        if (phase === "cold" && o.result.accepted) accepted++;
        if (phase === "cold") coldTotals.push(total);
        if (o.image) made.add(o.image);
        console.log(`${o.repo} ${phase}: ${o.result.accepted ? "accepted" : "rejected"} (${o.result.reason}); read ${s.read.toFixed(1)} s, build ${s.build.toFixed(1)} s, reference ${s.reference.toFixed(1)} s, total ${total.toFixed(1)} s`);
      }
    }
  } finally {
    if (!args.includes("--keep")) {
      for (const tag of made) await docker().getImage(tag).remove({ force: true }).catch(() => undefined);
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const n = repos.length || 1;
  const sorted = [...coldTotals].sort((a, b) => a - b);
  const figures: Record<string, number> = {
    repositories: repos.length,
    accepted,
    acceptance_pct: repos.length ? round((accepted / repos.length) * 100, 1) : 0,
    median_cold_min_per_repo: sorted.length ? round(percentile(sorted, 50) / 60, 2) : 0,
  };
  for (const [k, v] of Object.entries(sum)) figures[`${k}_s_per_repo`] = round(v / n, 1);
  return figures;
};
