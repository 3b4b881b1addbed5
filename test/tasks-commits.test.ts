/**
 * taskgen/commits end to end in real Docker, on a repository the test creates (`calc`, a tiny
 * pure-Python package with pytest tests; bookworm's python3-pytest satisfies it). Its history,
 * oldest first, after the initial commit:
 *
 *   good      fixes `sub` (source + a test that fails before)           → kept
 *   docs      README only                                             → not a candidate
 *   nofail    refactors `mul`, adds a test that passes before too     → no-fail-to-pass
 *   flaky     fixes `neg` + a test whose outcome depends on a counter file in /tmp: it fails on
 *             the 1st run (before), passes on the 2nd (after), fails on the 4th (after, rerun)
 *             → its only FAIL_TO_PASS test is unstable                 → flaky
 *   newdep    adds a dependency to pyproject.toml and imports it      → new-dependency
 *   good2     fixes `div` (after the dependency change: a second dependency set, a second image)
 *
 * Asserts kept/rejected by reason, the evaluator's gold/empty check, and the agent's start state:
 * the fix's commit is not in the object store and `git log --all` shows one commit.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../images/docker";
import { evaluatePatch } from "../rewards/evaluate";
import { Sandbox } from "../sandbox/sandbox";
import { prepareTaskSandbox } from "../tasks/start";
import { TaskSchema, type Task } from "../tasks/schema";
import { mineCommitTasks, type MineStats } from "../taskgen/commits/mine";
import { makeRepo } from "./helpers/git-fixtures";

const PYPROJECT = (deps: string) =>
  `[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "calc"\nversion = "0.1"\ndependencies = [${deps}]\n\n[tool.setuptools]\npackages = ["calc"]\n`;

const CORE_V0 = `def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef neg(a):\n    return a\n\n\ndef div(a, b):\n    return a * b\n`;

const FLAKY_TEST = `import pathlib\n\nfrom calc.core import neg\n\n\ndef test_neg_counter():\n    # Counts its own runs in /tmp: run 1 fails, run 2 passes, run 4 fails (stable in no order).\n    p = pathlib.Path("/tmp/calc-flaky-counter")\n    n = int(p.read_text()) if p.exists() else 0\n    p.write_text(str(n + 1))\n    assert n % 3 == 1\n    assert neg(2) == -2\n`;

let tmp: string;
let stats: MineStats;
const tasks: Task[] = [];
let shas: string[] = [];
let repoDir = "";
const extraImages: string[] = [];
const sandboxes: Sandbox[] = [];
const verdicts = new Map<string, string>();

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-commits-test-"));
  const repo = makeRepo(
    path.join(tmp, "calc"),
    {
      "pyproject.toml": PYPROJECT(""),
      "calc/__init__.py": "",
      "calc/core.py": CORE_V0,
      "tests/test_add.py": "from calc.core import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    },
    {
      message: "Fix sub returning the sum",
      files: {
        "calc/core.py": CORE_V0.replace("def sub(a, b):\n    return a + b", "def sub(a, b):\n    return a - b"),
        "tests/test_sub.py": "from calc.core import add, sub\n\n\ndef test_sub():\n    assert sub(5, 3) == 2\n\n\ndef test_add_still():\n    assert add(1, 1) == 2\n",
      },
    },
    { message: "Document the package", files: { "README.md": "# calc\n\nSmall arithmetic.\n" } },
    {
      message: "Refactor mul",
      files: {
        "calc/core.py": CORE_V0.replace("def sub(a, b):\n    return a + b", "def sub(a, b):\n    return a - b").replace("def mul(a, b):\n    return a * b", "def mul(a, b):\n    result = a * b\n    return result"),
        "tests/test_mul.py": "from calc.core import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n",
      },
    },
    {
      message: "Fix neg",
      files: {
        "calc/core.py": CORE_V0.replace("def sub(a, b):\n    return a + b", "def sub(a, b):\n    return a - b").replace("def mul(a, b):\n    return a * b", "def mul(a, b):\n    result = a * b\n    return result").replace("def neg(a):\n    return a", "def neg(a):\n    return -a"),
        "tests/test_neg.py": FLAKY_TEST,
      },
    },
    {
      message: "Use attrs for a Point type",
      files: {
        "pyproject.toml": PYPROJECT('"attrs"'),
        "calc/point.py": "import attrs\n\n\n@attrs.define\nclass Point:\n    x: int\n    y: int\n",
        "tests/test_point.py": "from calc.point import Point\n\n\ndef test_point():\n    assert Point(1, 2).x == 1\n",
      },
    },
    {
      message: "Fix div multiplying",
      files: {
        "calc/core.py": CORE_V0.replace("def sub(a, b):\n    return a + b", "def sub(a, b):\n    return a - b").replace("def mul(a, b):\n    return a * b", "def mul(a, b):\n    result = a * b\n    return result").replace("def neg(a):\n    return a", "def neg(a):\n    return -a").replace("def div(a, b):\n    return a * b", "def div(a, b):\n    return a / b"),
        "tests/test_div.py": "from calc.core import div\n\n\ndef test_div():\n    assert div(6, 3) == 2\n",
      },
    },
  );
  shas = repo.shas;
  repoDir = repo.dir;
  const r = await mineCommitTasks({
    gitDir: path.join(repo.dir, ".git"),
    repo: "example/calc",
    source: { type: "path", path: repo.dir },
    max: 10,
    reruns: 2,
    timeoutSeconds: 60,
    stateDir: path.join(tmp, "state"),
    spec: {
      repo: "example/calc",
      commit: "HEAD",
      // No attrs: the newdep commit's import would fail in this environment.
      systemPackages: ["python3-pytest", "python3-pip", "python3-setuptools"],
      install: ["pip install --no-index --no-deps --no-build-isolation --break-system-packages -e ."],
      testCommand: "pytest -rA",
      logParser: "pytest",
      testTimeoutSeconds: 120,
    },
    onTask: (t) => tasks.push(TaskSchema.parse(JSON.parse(JSON.stringify(t)))),
    onDecision: (sha, v) => verdicts.set(sha, v),
  });
  stats = r.stats;
}, 900_000);

afterAll(async () => {
  await Promise.allSettled(sandboxes.map((s) => s.destroy()));
  for (const tag of extraImages) await docker().getImage(tag).remove({ force: true }).catch(() => undefined);
  for (const g of stats?.groups ?? []) if (g.image) await docker().getImage(g.image).remove({ force: true }).catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe("tasks commits on a created repository", () => {
  it("keeps the two fixes and rejects the others by reason", () => {
    const [, good, docs, nofail, flaky, newdep, good2] = shas;
    expect(stats.commitsScanned).toBe(6);
    expect(stats.candidates).toBe(5);
    expect(stats.notCandidates["docs-ci-packaging-only"]).toBe(1);
    expect(verdicts.get(docs!)).toBeUndefined();
    expect(verdicts.get(good!)).toBe("kept");
    expect(verdicts.get(good2!)).toBe("kept");
    expect(verdicts.get(nofail!)).toBe("no-fail-to-pass");
    expect(verdicts.get(flaky!)).toBe("flaky");
    expect(verdicts.get(newdep!)).toBe("new-dependency");
    expect(stats.kept).toBe(2);
    expect(stats.rejected).toMatchObject({ "no-fail-to-pass": 1, flaky: 1, "new-dependency": 1, "gold-check": 0 });
    // Two dependency sets (before and after the attrs change): two images, none per task.
    expect(stats.groups.filter((g) => g.image).length).toBe(2);
    expect(stats.perTaskImageBytes).toBe(0);
    expect(stats.diskPerTaskBytes).toBeGreaterThan(0);
  });

  it(
    "a given spec that does not build at a dependency set: that set's spec is inferred and its fix kept",
    async () => {
      const good2 = shas[6]!;
      const r = await mineCommitTasks({
        gitDir: path.join(repoDir, ".git"),
        repo: "example/calc",
        source: { type: "path", path: repoDir },
        max: 1,
        reruns: 1,
        timeoutSeconds: 60,
        stateDir: path.join(tmp, "state"),
        spec: { repo: "example/calc", commit: "HEAD", systemPackages: ["python3-pytest"], install: ["echo 'this hand spec is for another era'; exit 3"], testCommand: "pytest -rA", logParser: "pytest" },
      });
      for (const g of r.stats.groups) if (g.image) extraImages.push(g.image);
      expect(r.stats.groups[0]).toMatchObject({ specSource: "inferred-fallback" });
      expect(r.stats.groups[0]!.givenSpecError).toBeTruthy();
      expect(r.tasks.map((t) => t.metadata.sourceCommit)).toEqual([good2]);
      expect(r.tasks[0]!.image.systemPackages).toContain("python3-attr");
    },
    900_000,
  );

  it(
    "with no spec, a dependency set the heuristics cannot run goes to the set-up agent (tasks commits --model-url); its spec mines the fix",
    async () => {
      const env = makeRepo(
        path.join(tmp, "envcalc"),
        {
          "pyproject.toml": PYPROJECT("").replace(/calc/g, "envcalc"),
          "envcalc/__init__.py": "def half(x):\n    return x * 2\n",
          "tests/conftest.py": 'import os\n\nif os.environ.get("ENVCALC_MODE") != "test":\n    raise RuntimeError("set ENVCALC_MODE=test to run the suite")\n',
          "tests/test_base.py": "def test_base():\n    assert True\n",
        },
        { message: "Fix half doubling", files: { "envcalc/__init__.py": "def half(x):\n    return x / 2\n", "tests/test_half.py": "from envcalc import half\n\n\ndef test_half():\n    assert half(4) == 2\n" } },
      );
      const asked: string[] = [];
      const r = await mineCommitTasks({
        gitDir: path.join(env.dir, ".git"),
        repo: "example/envcalc",
        source: { type: "path", path: env.dir },
        max: 1,
        reruns: 1,
        timeoutSeconds: 60,
        stateDir: path.join(tmp, "state-agent"),
        // A stand-in for modelSetupAgent: the callback inference calls when its heuristics give up.
        setupAgent: async (ctx) => {
          asked.push(ctx.log);
          return { proposal: { env: { ENVCALC_MODE: "test" }, systemPackages: [], install: [], note: "conftest needs ENVCALC_MODE=test" }, reason: "proposal" };
        },
      });
      for (const g of r.stats.groups) if (g.image) extraImages.push(g.image);
      expect(asked).toHaveLength(1);
      expect(asked[0]).toContain("set ENVCALC_MODE=test");
      expect(r.stats.groups[0]).toMatchObject({ specSource: "inferred" });
      expect(r.tasks.map((t) => t.metadata.sourceCommit)).toEqual([env.shas[1]]);
      expect(r.tasks[0]!.image.env.ENVCALC_MODE).toBe("test");
    },
    900_000,
  );

  it("writes issue-fix tasks with the parent as start and the right FAIL_TO_PASS / PASS_TO_PASS", () => {
    const t = tasks.find((x) => x.metadata.sourceCommit === shas[1])!;
    expect(t.kind).toBe("issue-fix");
    expect(t.startCommit).toBe(shas[0]);
    expect(t.commit).toBe(shas[0]);
    expect(t.failToPass).toEqual(["tests/test_sub.py::test_sub"]);
    expect(t.passToPass).toEqual(["tests/test_sub.py::test_add_still"]);
    expect(t.metadata.commitMessage).toBe("Fix sub returning the sum");
    expect(t.problemStatement).not.toContain("test_sub");
    expect(t.problemStatement).not.toContain("return a - b");
    expect(t.problemStatement).not.toContain("Fix sub");
    // The image is shared: built at the newest commit of the dependency set, not at the parent.
    expect(t.image.commit).not.toBe(shas[0]);
  });

  it("every kept task passed the evaluator's gold/empty check", () => {
    expect(stats.tasks.filter((f) => f.recordBytes > 0).map((f) => [f.gold, f.empty])).toEqual([
      [true, true],
      [true, true],
    ]);
    for (const t of tasks) expect(t.metadata.goldEmptyCheck).toMatchObject({ gold: true, empty: true });
  });

  it("the agent's start state holds no object of the fix, and one commit", async () => {
    const t = tasks.find((x) => x.metadata.sourceCommit === shas[1])!;
    const image = stats.groups.find((g) => g.commit === t.image.commit)!.image!;
    const sb = await Sandbox.create({ image, network: "none", workdir: t.image.workdir, lifetimeSeconds: 600 });
    sandboxes.push(sb);
    // Before: the image holds the fix (it is an ancestor of the image's commit).
    expect((await sb.exec(["git", "cat-file", "-e", `${shas[1]}^{commit}`])).exitCode).toBe(0);
    await prepareTaskSandbox(sb, t);
    const sh = async (cmd: string) => {
      const r = await sb.exec(["bash", "-c", cmd], { workdir: t.image.workdir });
      return { code: r.exitCode, out: r.stdout.toString("utf8").trim() };
    };
    expect((await sh(`git cat-file -e ${shas[1]}`)).code).not.toBe(0);
    expect((await sh(`git cat-file -e ${shas[shas.length - 1]}`)).code).not.toBe(0);
    expect((await sh("git log --all --oneline | wc -l")).out).toBe("1");
    expect((await sh("cat calc/core.py")).out).toContain("def sub(a, b):\n    return a + b");
    expect((await sh("ls tests")).out.split("\n").sort()).toEqual(["test_add.py"]);
    expect((await sh("git status --porcelain")).out).toBe("");
  });

  it("grades an agent's patch from the start state: the gold patch resolves, a wrong one does not", async () => {
    const t = tasks.find((x) => x.metadata.sourceCommit === shas[1])!;
    const image = stats.groups.find((g) => g.commit === t.image.commit)!.image!;
    const gold = await evaluatePatch(t, t.referencePatch, { image });
    expect(gold.resolved).toBe(true);
    const wrong = t.referencePatch.replace("return a - b", "return b - a");
    const bad = await evaluatePatch(t, wrong, { image });
    expect(bad.resolved).toBe(false);
  });
});
