/**
 * The evaluation as a plan (rewards/eval-plan.ts), with no engine: what is graded without a
 * container, the directives and the prepare step's configuration, the seed, the test run from a
 * prepare step's answer, the grade of records and logs, and the eval.sh that reproduces a run.
 * Runs in `npm run test:unit`.
 */
import { describe, expect, it } from "vitest";
import { evalShellScript, gradeRun, planEvaluation, runOf, type PlanOptions, type PrepareOut } from "../rewards/eval-plan";
import { TaskSchema, type Task } from "../tasks/schema";

const TEST_PATCH = "diff --git a/tests/test_calc.py b/tests/test_calc.py\n--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n@@ -1,2 +1,4 @@\n def test_mul():\n     pass\n+def test_add():\n+    pass\n";
const GOLD = "diff --git a/pkg/calc.py b/pkg/calc.py\n--- a/pkg/calc.py\n+++ b/pkg/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";

const task: Task = TaskSchema.parse({
  id: "example__calc-1",
  kind: "issue-fix",
  repo: "example/calc",
  commit: "0123456789ab",
  problemStatement: "add() subtracts",
  image: { repo: "example/calc", commit: "0123456789ab", testCommand: "pytest -rA", logParser: "pytest" },
  referencePatch: GOLD,
  testPatch: TEST_PATCH,
  failToPass: ["tests/test_calc.py::test_add"],
  passToPass: ["tests/test_calc.py::test_mul"],
});
const opts: PlanOptions = { secret: "s", nonce: "0123456789abcdef0123456789abcdef", testUid: 54321, guardSource: "# guard", pluginSource: "# plugin" };

describe("planEvaluation", () => {
  it("grades without a container what needs none: empty, too large, too many files, unsafe", () => {
    expect(planEvaluation(task, "", opts).precheck).toMatchObject({ outcome: "fail", reason: "empty patch", patchExists: false });
    expect(planEvaluation(task, "", { ...opts, runTestsOnEmptyPatch: true }).precheck).toBeUndefined();
    expect(planEvaluation(task, GOLD, { ...opts, maxPatchBytes: 10 }).precheck?.reason).toMatch(/patch too large/);
    const many = Array.from({ length: 5 }, (_, i) => `diff --git a/f${i} b/f${i}\nnew file mode 100644\n--- /dev/null\n+++ b/f${i}\n@@ -0,0 +1 @@\n+x\n`).join("");
    expect(planEvaluation(task, many, { ...opts, maxPatchFiles: 4 }).precheck?.reason).toMatch(/too many files: 5 > 4/);
    expect(planEvaluation(task, "diff --git a/.git/config b/.git/config\n", opts).precheck).toMatchObject({ outcome: "patch_apply_failed" });
  });

  it("directives, hidden files, the prepare step's configuration; the seed is the task's, the patch's and the secret's", () => {
    const p = planEvaluation(task, GOLD, opts);
    expect(p.precheck).toBeUndefined();
    expect(p.directives).toEqual(["tests/test_calc.py"]);
    expect(p.hiddenFiles).toEqual(["tests/test_calc.py"]);
    expect(p.driverConfig).toMatchObject({ mode: "prepare", canaries: true, hideGit: true, user: { want: 54321 }, seed: p.seed, sourcesFirst: ["tests/test_calc.py::test_add"] });
    expect(String(p.driverConfig.protected)).toMatch(/__pycache__/);
    expect(planEvaluation(task, GOLD, { ...opts, nonce: "f".repeat(32) }).seed).toBe(p.seed);
    expect(planEvaluation(task, GOLD + "\n", opts).seed).not.toBe(p.seed);
    expect(planEvaluation(task, GOLD, { ...opts, secret: "t" }).seed).not.toBe(p.seed);
    expect(planEvaluation({ ...task, image: { ...task.image, evalUser: "root" } }, GOLD, opts).driverConfig.user).toBeUndefined();
    const sympy = planEvaluation({ ...task, image: { ...task.image, testCommand: "bin/test -C --verbose", logParser: "sympy" } }, GOLD, opts);
    expect(sympy.runners).toEqual(expect.arrayContaining(["bin/test", "sympy/testing/runtests.py"]));
    expect(sympy.driverConfig.canaries).toBe(false);
    // mutate-fix: no test patch, directives from the test ids, the start state first.
    const mf = planEvaluation({ ...task, kind: "mutate-fix", testPatch: "", startPatch: GOLD, failToPass: ["tests/a.py::t1", "tests/b.py::t2[x]"] }, GOLD, opts);
    expect(mf.directives).toEqual(["tests/a.py", "tests/b.py", "tests/test_calc.py"]);
    expect(mf.startState).toBe(true);
  });
});

describe("runOf and gradeRun", () => {
  const plan = planEvaluation(task, GOLD, opts);
  const prep: PrepareOut = {
    base: "abc",
    method: "git_apply",
    configFile: "pytest.ini",
    configDir: "/opt/forager-guard-x",
    plugins: [["cov", "pytest_cov.plugin"]],
    pytestVersion: "7.2.1",
    guardPth: "/usr/lib/python3/dist-packages/00.pth",
    user: { uid: 54321, gid: 54321, name: "forager-test", home: "/home/forager-test", chowned: 0, protected: 2 },
    canaries: {
      canaries: [
        { id: "tests/test_calc.py::test_add_mul", kind: "fail", form: "eq-object", source: "tests/test_calc.py::test_mul" },
        { id: "tests/test_calc.py::test_mul_add", kind: "match", form: "clone", source: "tests/test_calc.py::test_add" },
      ],
      extraFile: "tests/test_mul_x.py",
      skipped: [],
    },
  };

  it("the test run: the extra file at the seeded place, pytest pinned, forager's plugin, the test user, the channel", () => {
    const r = runOf(plan, task.image, prep, 8 * 1024 ** 3);
    expect(r.directives).toHaveLength(2);
    expect(r.directives).toContain("tests/test_mul_x.py");
    expect(r.guarded).toBe(true);
    expect(r.script).toMatch(/setpriv --reuid=54321/);
    expect(r.script).toMatch(/-p '?_forager_pytest_[0-9a-f]{12}'? -p '?cov'?/);
    expect(r.script).toMatch(/-c '?\/opt\/forager-guard-x\/pytest.ini'?/);
    expect(r.script).toMatch(/cat '?\/var\/tmp\/forager-ch-[0-9a-f]+\/c'? > '?\/var\/tmp\/forager-[0-9a-f]+\/records'? &/);
    expect(r.script).toMatch(/ulimit -f 8388608/);
    expect(runOf(plan, task.image, { ...prep, guardPth: null, user: undefined }, undefined).script).not.toMatch(/setpriv|forager_pytest|cat .*records/);
  });

  const rec = (id: string, o: string, raised: string | null = o === "passed" ? null : "AssertionError") => [
    { k: "rep", id, when: "setup", outcome: "passed" },
    { k: "body", id, raised },
    { k: "rep", id, when: "call", outcome: o },
    { k: "rep", id, when: "teardown", outcome: "passed" },
  ];
  const honest = [
    { k: "sess" },
    ...rec("tests/test_calc.py::test_mul", "passed"),
    ...rec("tests/test_calc.py::test_add", "passed"),
    ...rec("tests/test_calc.py::test_add_mul", "failed"),
    ...rec("tests/test_calc.py::test_mul_add", "passed"),
    { k: "end", exit: 1 },
  ];

  it("an honest run: resolved, the canaries out of the statuses", () => {
    const g = gradeRun(plan, task, { output: "", exitCode: 1, pytestPlugin: true }, prep.canaries, honest);
    expect(g).toMatchObject({ outcome: "pass", resolved: true, evidence: [] });
    expect([...g.statuses!.keys()].sort()).toEqual(["tests/test_calc.py::test_add", "tests/test_calc.py::test_mul"]);
  });

  it("forged runs: a tamper record; a report contradicting its body; a must-fail canary passing; a clone unlike its source", () => {
    const tamper = gradeRun(plan, task, { output: "", exitCode: 1, pytestPlugin: true }, prep.canaries, [...honest, { k: "tamper", why: "x replaced", where: "pkg/calc.py:3" }]);
    expect(tamper).toMatchObject({ outcome: "forged", resolved: false, resolution: "RESOLVED_NO" });
    expect(tamper.report[task.id]!.resolved).toBe(false);
    const contradiction = gradeRun(plan, task, { output: "", exitCode: 1, pytestPlugin: true }, prep.canaries, [
      { k: "sess" },
      ...rec("tests/test_calc.py::test_mul", "passed"),
      ...rec("tests/test_calc.py::test_add", "passed", "AssertionError"),
      ...rec("tests/test_calc.py::test_add_mul", "failed"),
      ...rec("tests/test_calc.py::test_mul_add", "failed"),
      { k: "end", exit: 1 },
    ]);
    expect(contradiction.outcome).toBe("forged");
    expect(contradiction.evidence[0]).toMatch(/^contradiction: tests\/test_calc.py::test_add: reported passed/);
    const canary = gradeRun(plan, task, { output: "", exitCode: 1, pytestPlugin: true }, prep.canaries, [
      { k: "sess" },
      ...rec("tests/test_calc.py::test_mul", "failed"),
      ...rec("tests/test_calc.py::test_add", "passed"),
      ...rec("tests/test_calc.py::test_add_mul", "passed"),
      ...rec("tests/test_calc.py::test_mul_add", "failed"),
      { k: "end", exit: 1 },
    ]);
    expect(canary.outcome).toBe("forged");
    expect(canary.evidence.join("\n")).toMatch(/must fail but was reported PASSED/);
    expect(canary.evidence.join("\n")).toMatch(/a copy of tests\/test_calc.py::test_add\) was reported FAILED while tests\/test_calc.py::test_add was PASSED/);
  });
});

describe("eval.sh", () => {
  it("the whole run in one script: start state, the prepare step with its configuration, the test run, the records", () => {
    const mf = { ...task, kind: "mutate-fix" as const, startPatch: GOLD };
    const plan = planEvaluation(mf, GOLD, opts);
    const run = runOf(plan, mf.image, { base: "abc", method: "git_apply", guardPth: "/x.pth" }, undefined);
    const driverSource = "import sys\nprint('FORAGER_DRIVER')\n";
    const sh = evalShellScript(plan, mf, { driverSource, driverConfig: plan.driverConfig, run, image: "forager/instance:x", model: "m" });
    expect(sh.startsWith("#!/bin/bash\n")).toBe(true);
    expect(sh).toContain("docker run --rm -i --network none forager/instance:x bash -s < eval.sh");
    expect(sh).toContain("# the task's start state");
    // the driver's source holds the plain delimiter: another one is chosen
    expect(sh).toContain("<<'FORAGER_DRIVER_0'");
    expect(sh).toContain(JSON.stringify(plan.driverConfig));
    expect(sh).toContain('echo ">>>>> forager: result records"');
    expect(sh).toMatch(/>>>>> Test Exit Code: \$rc/);
  });
});
