/**
 * rewards/forgery.ts pure functions (no Docker): patch paths as git and GNU patch read them (the
 * adversarial set of issue 12), machinery flags, canary evidence.
 */
import { describe, expect, it } from "vitest";
import { evidenceOf, parseChannel, pytestStatusesFromRecords, sympyStatusesFromRecords, unittestStatusesFromRecords } from "../rewards/records";
import { canaryEvidence, diffHeaderPaths, machineryFlags, unquoteCPath, unsafePatchPath } from "../rewards/forgery";
import { computeReward } from "../rewards/reward";

const GOLD = "diff --git a/evalpkg/calc.py b/evalpkg/calc.py\nindex 1111111..2222222 100644\n--- a/evalpkg/calc.py\n+++ b/evalpkg/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";

describe("patch paths as git and patch read them (adversarial set)", () => {
  const body = "@@ -0,0 +1 @@\n+x\n";
  const cases: [string, string, RegExp][] = [
    ["C-quoted .git with an octal escape", `diff --git "a/\\056git/hooks/pre-commit" "b/\\056git/hooks/pre-commit"\nnew file mode 100755\n--- /dev/null\n+++ "b/\\056git/hooks/pre-commit"\n${body}`, /\.git/],
    ["C-quoted .. with escapes", `diff --git "a/x/\\056\\056/y" "b/x/\\056\\056/y"\n--- /dev/null\n+++ "b/x/\\056\\056/y"\n${body}`, /\.\./],
    ["upper-case .GIT", `diff --git a/.GIT/config b/.GIT/config\n--- a/.GIT/config\n+++ b/.GIT/config\n${body}`, /\.git/],
    [".git with a trailing dot", `--- a/.git./config\n+++ b/.git./config\n${body}`, /\.git/],
    ["context diff into .git", `*** a/.git/config\t2020-01-01\n--- b/.git/config\t2020-01-01\n***************\n*** 1 ****\n--- 1 ----\n`, /\.git/],
    ["context diff leaving the tree", `*** ../outside.py\n--- ../outside.py\n***************\n`, /\.\./],
    ["Index: header with ..", `Index: ../../etc/cron.d/x\n===================================================================\n--- x\n+++ x\n${body}`, /\.\./],
    ["absolute +++ path", `--- /dev/null\n+++ /etc/passwd\n${body}`, /absolute/],
    ["patch -p1 strips a prefix to .git", `--- foo/.git/config\n+++ foo/.git/config\n${body}`, /\.git/],
    ["symlink to an absolute path", `diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n`, /symlink/],
    ["symlink climbing out of the tree", `diff --git a/a/link b/a/link\nnew file mode 120000\n--- /dev/null\n+++ b/a/link\n@@ -0,0 +1 @@\n+../../x\n`, /symlink/],
    ["symlink into .git", `diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+.git/hooks\n`, /\.git/],
    ["rename into .git", `diff --git a/x b/.git/x\nsimilarity index 100%\nrename from x\nrename to .git/x\n`, /\.git/],
  ];
  for (const [what, patch, why] of cases) {
    it(`refuses: ${what}`, () => {
      expect(unsafePatchPath(patch)).toMatch(why);
    });
  }
  it("reads names as git does, and leaves ordinary patches alone", () => {
    expect(unquoteCPath('"a/caf\\303\\251.py"')).toBe("a/café.py");
    expect(diffHeaderPaths('diff --git "a/x y.py" "b/x y.py"\n')).toEqual(["x y.py"]);
    expect(diffHeaderPaths("diff --git a/x y.py b/x y.py\n")).toEqual(["x y.py"]);
    expect(unsafePatchPath('diff --git "a/caf\\303\\251.py" "b/caf\\303\\251.py"\n--- "a/caf\\303\\251.py"\n+++ "b/caf\\303\\251.py"\n')).toBeUndefined();
    expect(unsafePatchPath("diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+pkg/mod.py\n")).toBeUndefined();
    expect(unsafePatchPath(GOLD)).toBeUndefined();
  });
  it("flags non-test changes that touch test machinery, never test files", () => {
    const p = "diff --git a/pkg/m.py b/pkg/m.py\n--- a/pkg/m.py\n+++ b/pkg/m.py\n@@ -1,1 +1,3 @@\n x = 1\n+import _pytest.runner\n+import gc; gc.get_objects()\n" +
      "diff --git a/tests/test_m.py b/tests/test_m.py\n--- a/tests/test_m.py\n+++ b/tests/test_m.py\n@@ -1,1 +1,2 @@\n x = 1\n+import _pytest\n";
    const flags = machineryFlags(p);
    expect(flags.map((f) => [f.file, f.line, f.kind])).toEqual([
      ["pkg/m.py", 2, "pytest internals"],
      ["pkg/m.py", 3, "gc object walk"],
    ]);
  });
  it("canary evidence: a must-fail clone passing, a clone whose outcome differs from its source's, a canary missing beside its file", () => {
    const plan = {
      canaries: [
        { id: "t/test_a.py::test_x_y", kind: "fail" as const, form: "eq-object", source: "t/test_a.py::test_real" },
        { id: "t/test_a.py::test_y_z", kind: "match" as const, form: "clone", source: "t/test_a.py::test_real" },
        { id: "t/test_b.py::test_q", kind: "match" as const, form: "clone", source: "t/test_a.py::test_other" },
      ],
      extraFile: "t/test_b.py",
      skipped: [],
    };
    type S = "PASSED" | "FAILED";
    const honest = new Map<string, S>([
      ["t/test_a.py::test_real", "PASSED"],
      ["t/test_a.py::test_other", "FAILED"],
      ["t/test_a.py::test_x_y", "FAILED"],
      ["t/test_a.py::test_y_z", "PASSED"],
      ["t/test_b.py::test_q", "FAILED"],
    ]);
    expect(canaryEvidence(plan, honest)).toEqual([]);
    const allPassed = new Map(honest);
    allPassed.set("t/test_a.py::test_x_y", "PASSED");
    expect(canaryEvidence(plan, allPassed)[0]).toMatch(/must fail but was reported PASSED/);
    // A forger that forges only the tests it knows (test_other) and spares the clone (test_q).
    const spared = new Map(honest);
    spared.set("t/test_a.py::test_other", "PASSED");
    expect(canaryEvidence(plan, spared)[0]).toMatch(/canary t\/test_b.py::test_q \(a copy of t\/test_a.py::test_other\) was reported FAILED while t\/test_a.py::test_other was PASSED/);
    const dropped = new Map(honest);
    dropped.delete("t/test_b.py::test_q");
    expect(canaryEvidence(plan, dropped)[0]).toMatch(/canary file t\/test_b.py is missing/);
    expect(canaryEvidence(plan, dropped, new Set(["t/test_b.py"]))).toEqual([]);
    const oneGone = new Map(honest);
    oneGone.delete("t/test_a.py::test_x_y");
    expect(canaryEvidence(plan, oneGone)[0]).toMatch(/missing from the results while its file is reported/);
    // Parametrized clones compare parameter by parameter.
    const param = { canaries: [{ id: "t/test_a.py::test_c", kind: "match" as const, form: "clone", source: "t/test_a.py::test_p" }], extraFile: null, skipped: [] };
    const ps = new Map<string, S>([["t/test_a.py::test_p[1]", "PASSED"], ["t/test_a.py::test_p[2]", "FAILED"], ["t/test_a.py::test_c[1]", "PASSED"], ["t/test_a.py::test_c[2]", "FAILED"]]);
    expect(canaryEvidence(param, ps)).toEqual([]);
    ps.set("t/test_a.py::test_p[2]", "PASSED");
    expect(canaryEvidence(param, ps)).toHaveLength(1);
  });
});


describe("the reward of a forged run", () => {
  it("is below the failure reward by default, a setting otherwise (never above the failure reward), and never similarity credit", () => {
    expect(computeReward({ passed: false, forged: true }, { mode: "execution" })).toMatchObject({ reward: -1.5, parts: { branch: "forged", passed: false } });
    expect(computeReward({ passed: false }, { mode: "execution" }).reward).toBe(-1);
    expect(computeReward({ passed: false, forged: true, similarity: 0.9 }, { mode: "similarity_threshold", threshold: 0.5 }).reward).toBe(-1.5);
    expect(computeReward({ passed: false, forged: true }, { mode: "execution", forgedReward: -1 }).reward).toBe(-1);
    expect(() => computeReward({ passed: false, forged: true }, { mode: "execution", forgedReward: 0 })).toThrow(/would reward forging/);
    expect(computeReward({ passed: false, forged: true }, { mode: "pass_only", forgedReward: -2 }).reward).toBe(-2);
    expect(computeReward({ passed: true }, { mode: "execution", forgedReward: -2 }).reward).toBe(0);
  });
});

describe("result records (rewards/records.ts)", () => {
  it("reads records past garbage on their line; counts what it cannot read", () => {
    const text = `junk@@forager-rec@@{"k":"sess"}\nplain output\n@@forager-rec@@{not json\n\n@@forager-rec@@{"k":"end","exit":0}\n`;
    const { records, malformed } = parseChannel(text);
    expect(records.map((r) => r.k)).toEqual(["sess", "end"]);
    expect(malformed).toBe(1);
  });

  it("pytest statuses as the terminal summary derives them, worst report wins, a passed call needs a clean body", () => {
    const rep = (id: string, when: string, outcome: string, xfail = false) => ({ k: "rep", id, when, outcome, xfail });
    const body = (id: string, raised: string | null) => ({ k: "body", id, raised });
    const r = pytestStatusesFromRecords([
      { k: "sess" },
      rep("a.py::ok", "setup", "passed"), body("a.py::ok", null), rep("a.py::ok", "call", "passed"), rep("a.py::ok", "teardown", "passed"),
      rep("a.py::skip", "setup", "skipped"),
      rep("a.py::xf", "setup", "passed"), body("a.py::xf", "AssertionError"), rep("a.py::xf", "call", "skipped", true),
      rep("a.py::xp", "setup", "passed"), body("a.py::xp", null), rep("a.py::xp", "call", "passed", true),
      rep("a.py::td", "setup", "passed"), body("a.py::td", null), rep("a.py::td", "call", "passed"), rep("a.py::td", "teardown", "failed"),
      rep("a.py::se", "setup", "failed"),
      // reruns: the rerun outcome is ignored; an injected later "passed" cannot beat the failure
      rep("a.py::rr", "setup", "passed"), body("a.py::rr", "ValueError"), rep("a.py::rr", "call", "rerun"), rep("a.py::rr", "call", "failed"), rep("a.py::rr", "call", "passed"),
      // reported passed, body raised: a contradiction
      rep("a.py::forged", "setup", "passed"), body("a.py::forged", "AssertionError"), rep("a.py::forged", "call", "passed"),
      // reported passed, no body record at all
      rep("a.py::nobody", "setup", "passed"), rep("a.py::nobody", "call", "passed"),
      rep("a.py::p[x y]", "setup", "passed"), body("a.py::p[x y]", null), rep("a.py::p[x y]", "call", "passed"),
      { k: "end", exit: 1 },
    ]);
    expect(Object.fromEntries(r.statuses)).toEqual({
      "a.py::ok": "PASSED",
      "a.py::skip": "SKIPPED",
      "a.py::xf": "XFAIL",
      "a.py::td": "ERROR",
      "a.py::se": "ERROR",
      "a.py::rr": "FAILED",
      "a.py::forged": "FAILED",
      "a.py::nobody": "FAILED",
      "a.py::p[x": "PASSED",
    });
    expect([...r.xpass]).toEqual(["a.py::xp"]);
    expect(r.contradictions).toHaveLength(2);
    expect(r).toMatchObject({ sessions: 1, ended: 1, exitStatuses: [1] });
    expect(pytestStatusesFromRecords([{ k: "sess" }, rep("a.py::p[x y]", "call", "failed")], { exactIds: true }).statuses.has("a.py::p[x y]")).toBe(true);
  });

  it("unittest (unittest and Django id forms) and sympy records, worst wins", () => {
    const ut = [
      { k: "ut-start" },
      { k: "ut", id: "pkg.tests.T.test_a", str: "test_a (pkg.tests.T.test_a)", doc: null, st: "PASSED" },
      { k: "ut", id: "pkg.tests.T.test_b", str: "test_b (pkg.tests.T)", doc: "Does b.", st: "FAILED" },
      { k: "ut", id: "pkg.tests.T.test_a", str: "test_a (pkg.tests.T.test_a)", doc: null, st: "ERROR" },
    ];
    expect(Object.fromEntries(unittestStatusesFromRecords(ut, "unittest").statuses)).toEqual({ "pkg.tests.T.test_a": "ERROR", "pkg.tests.T.test_b": "FAILED" });
    expect(Object.fromEntries(unittestStatusesFromRecords(ut, "django").statuses)).toEqual({ "test_a (pkg.tests.T)": "ERROR", "Does b.": "FAILED" });
    const sy = sympyStatusesFromRecords([{ k: "sy-start" }, { k: "sy", name: "test_x", st: "PASSED" }, { k: "sy", name: "test_x", st: "FAILED" }]);
    expect(sy.started).toBe(true);
    expect(sy.statuses.get("test_x")).toBe("FAILED");
  });

  it("evidence records: tamper and flags, each once", () => {
    const e = evidenceOf([
      { k: "tamper", why: "x replaced", where: "a.py:1" },
      { k: "tamper", why: "x replaced", where: "a.py:1" },
      { k: "flag", why: "gc walk", where: "b.py:2" },
    ]);
    expect(e).toEqual({ tamper: ["x replaced (at a.py:1)"], flags: [{ why: "gc walk", where: "b.py:2" }] });
  });
});
