/**
 * taskgen/mutate: operators, diffs, candidates, seeds, combination, issue text (pure, no Docker).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  candidatesForFile,
  combinationGroups,
  combineCandidates,
  orderCandidates,
  rng,
  type Candidate,
} from "../taskgen/mutate/candidates";
import { changedLines, unifiedDiff } from "../taskgen/mutate/diff";
import { describeSymptom, failuresFromLog, stripLeaks, templateIssue } from "../taskgen/mutate/issue";
import { OPERATOR_NAMES, parseOperatorList, type OperatorName } from "../taskgen/mutate/operators";
import { byteOffset, complexity, entities, parsePython } from "../taskgen/mutate/python";
import { contextTest, NON_SOURCE_PATH, withCoverage } from "../taskgen/mutate/validate";
import { GEOMETRY, OPERATOR_CASES } from "./helpers/mutate-fixtures";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-mutate-ops-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const changed = (patch: string) => patch.split("\n").filter((l) => /^[-+](?![-+]{2} )/.test(l));

/** `git apply` the patch to a file holding `original`; returns the result. */
function gitApply(original: string, patch: string, file: string, reverse = false): string {
  const dir = fs.mkdtempSync(path.join(tmp, "apply-"));
  execFileSync("git", ["init", "-q"], { cwd: dir });
  fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
  fs.writeFileSync(path.join(dir, file), original);
  fs.writeFileSync(path.join(dir, "p.diff"), patch);
  execFileSync("git", ["apply", ...(reverse ? ["-R"] : []), "p.diff"], { cwd: dir });
  return fs.readFileSync(path.join(dir, file), "utf8");
}

describe("operators", () => {
  it("covers every named operator with a case", () => {
    expect(Object.keys(OPERATOR_CASES).sort()).toEqual([...OPERATOR_NAMES].sort());
  });

  for (const op of OPERATOR_NAMES) {
    it(`${op}: the expected minimal diff, applicable with git apply both ways`, async () => {
      const { source, diff } = OPERATOR_CASES[op]!;
      const cs = await candidatesForFile({ path: "pkg/mod.py", text: source }, { operators: [op], minComplexity: 1 });
      expect(cs.length).toBeGreaterThan(0);
      const c = cs[0]!;
      expect(c.operators).toEqual([op]);
      expect(changed(c.patch)).toEqual(diff);
      expect(c.changedLines).toBe(diff.length);
      expect(c.patch.startsWith("diff --git a/pkg/mod.py b/pkg/mod.py\n--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ ")).toBe(true);
      const buggy = c.mutated["pkg/mod.py"]!;
      expect(gitApply(source, c.patch, "pkg/mod.py")).toBe(buggy);
      expect(gitApply(buggy, c.reversePatch, "pkg/mod.py")).toBe(source);
      // Every other operator's candidate is a valid parse too.
      expect((await parsePython(buggy)).rootNode.hasError).toBe(false);
    });
  }

  it("edits carry exact UTF-8 byte ranges", async () => {
    const src = "def f(a):\n    s = 'é€😀'\n    if a == s:\n        return 1\n";
    const [c] = await candidatesForFile({ path: "m.py", text: src }, { operators: ["flip_comparison"], minComplexity: 1 });
    const e = c!.changes[0]!.edits[0]!;
    const bytes = Buffer.from(src, "utf8");
    expect(bytes.subarray(e.byteStart, e.byteEnd).toString("utf8")).toBe("==");
    expect(e.byteStart).toBe(byteOffset(src, e.start));
    expect(e.byteStart - e.start).toBe(5); // é 2 bytes/1 unit, € 3/1, 😀 4/2
  });

  it("never descends into nested functions; names and complexity of entities", async () => {
    const src = "def outer(a):\n    def inner(b):\n        return b + 1\n    if a or a > 2:\n        return inner(a)\n    return 0\n\n\nclass K(object):\n    def m(self):\n        for i in range(3):\n            pass\n";
    const tree = await parsePython(src);
    const es = entities(tree);
    expect(es.map((e) => `${e.kind}:${e.name}:${e.complexity}`)).toEqual([
      "function:outer:3",
      "function:outer.<locals>.inner:1",
      "class:K:2",
      "function:K.m:2",
    ]);
    expect(complexity(es[0]!.node)).toBe(3);
    const outer = await candidatesForFile({ path: "m.py", text: src }, { operators: ["change_arithmetic"], minComplexity: 2 });
    expect(outer).toEqual([]); // `b + 1` belongs to inner (complexity 1, gated out)
    const all = await candidatesForFile({ path: "m.py", text: src }, { operators: ["change_arithmetic"], minComplexity: 1 });
    expect(all.map((c) => c.changes[0]!.entity.name)).toEqual(["outer.<locals>.inner"]);
    // remove_base_class never removes `object` (no behaviour change in Python 3).
    expect(await candidatesForFile({ path: "m.py", text: src }, { operators: ["remove_base_class"], minComplexity: 1 })).toEqual([]);
  });

  it("the complexity gate filters simple functions", async () => {
    const few = await candidatesForFile({ path: "g.py", text: GEOMETRY }, { minComplexity: 3 });
    expect(new Set(few.map((c) => c.changes[0]!.entity.name))).toEqual(new Set(["clamp", "area"]));
    const more = await candidatesForFile({ path: "g.py", text: GEOMETRY }, { minComplexity: 2 });
    expect(new Set(more.map((c) => c.changes[0]!.entity.name))).toEqual(new Set(["clamp", "describe", "never_called", "area"]));
  });

  it("parses operator lists and refuses unknown names", () => {
    expect(parseOperatorList("flip_comparison, off_by_one")).toEqual(["flip_comparison", "off_by_one"]);
    expect(() => parseOperatorList("flip_comparison,nope")).toThrow(/unknown operator.*nope/);
  });
});

describe("diff", () => {
  it("matches git diff on edits, deletions, insertions and a missing final newline", () => {
    const cases: Array<[string, string]> = [
      ["a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n", "a\nb\nX\nd\ne\nf\ng\nh\ni\nY\n"],
      ["a\nb\nc\n", "a\nc\n"],
      ["a\nb\n", "a\nb\nc\n"],
      ["a\nb", "a\nc"],
      ["x\n", ""],
    ];
    for (const [a, b] of cases) {
      const dir = fs.mkdtempSync(path.join(tmp, "diff-"));
      fs.writeFileSync(path.join(dir, "a"), a);
      fs.writeFileSync(path.join(dir, "b"), b);
      let git = "";
      try {
        execFileSync("git", ["diff", "--no-index", "--no-color", "a", "b"], { cwd: dir, encoding: "utf8" });
      } catch (e) {
        git = (e as { stdout: string }).stdout;
      }
      const hunks = (d: string) => d.slice(d.indexOf("@@"));
      expect(hunks(unifiedDiff("f", a, b))).toBe(hunks(git));
    }
    expect(unifiedDiff("f", "same\n", "same\n")).toBe("");
    expect(changedLines(unifiedDiff("f", "a\nb\n", "a\nc\n"))).toBe(2);
  });
});

describe("seeds and ordering", () => {
  const sources = [{ path: "shapes/geometry.py", text: GEOMETRY }];

  it("the same seed gives the same order; another seed another; operators interleave", async () => {
    const all: Candidate[] = [];
    for (const f of sources) all.push(...(await candidatesForFile(f, { minComplexity: 1 })));
    const ids = (seed: number) => orderCandidates(all, seed, { perEntity: 100 }).map((c) => c.id);
    expect(ids(7)).toEqual(ids(7));
    expect(ids(7)).not.toEqual(ids(8));
    expect(new Set(ids(7))).toEqual(new Set(all.map((c) => c.id)));
    const first = orderCandidates(all, 7, { perEntity: 100 }).slice(0, 5).map((c) => c.operators[0]);
    expect(new Set(first).size).toBe(5);
    // The per-entity cap.
    const capped = orderCandidates(all, 7, { perEntity: 2 });
    const per = new Map<string, number>();
    for (const c of capped) per.set(c.changes[0]!.entity.name, (per.get(c.changes[0]!.entity.name) ?? 0) + 1);
    expect(Math.max(...per.values())).toBe(2);
    expect(rng(1)()).toBe(rng(1)());
  });

  it("combines bugs of different entities of one file into one patch", async () => {
    const all = await candidatesForFile(sources[0]!, { operators: ["flip_comparison"], minComplexity: 1 });
    const clamp = all.find((c) => c.changes[0]!.entity.name === "clamp")!;
    const describeBug = all.find((c) => c.changes[0]!.entity.name === "describe")!;
    const combo = combineCandidates([clamp, describeBug])!;
    expect(combo.operators).toEqual(["flip_comparison", "flip_comparison"]);
    expect(changed(combo.patch)).toEqual([...changed(clamp.patch), ...changed(describeBug.patch)]);
    expect(gitApply(GEOMETRY, combo.patch, "shapes/geometry.py")).toBe(combo.mutated["shapes/geometry.py"]);
    // Two bugs of one entity are not combined.
    const clamp2 = all.filter((c) => c.changes[0]!.entity.name === "clamp");
    expect(combineCandidates(clamp2.slice(0, 2))).toBeUndefined();
    const groups = combinationGroups([clamp, describeBug, ...clamp2.slice(1)], { seed: 1, maxGroups: 5, sizes: [2] });
    expect(groups.length).toBe(1);
    expect(new Set(groups[0]!.map((c) => c.changes[0]!.entity.name)).size).toBe(2);
  });
});

describe("issue text", () => {
  const log = [
    "=================================== FAILURES ===================================",
    "________________________________ test_clamp_low ________________________________",
    "tests/test_geometry.py:5: in test_clamp_low",
    "    assert clamp(-5, 0, 10) == 0",
    "E   assert -5 == 0",
    "E    +  where -5 = clamp(-5, 0, 10)",
    "_____________________________ TestK.test_err[a b] ______________________________",
    "E   ValueError: bad value",
    "=========================== short test summary info ============================",
    "FAILED tests/test_geometry.py::test_clamp_low - assert -5 == 0",
  ].join("\n");

  it("reads symptoms from the failure sections", () => {
    const f = failuresFromLog(log, ["tests/test_geometry.py::test_clamp_low", "tests/test_geometry.py::TestK::test_err[a b]"]);
    expect(f[0]!.lines).toEqual(["assert -5 == 0", " +  where -5 = clamp(-5, 0, 10)"]);
    expect(describeSymptom(f[0]!.lines)).toEqual({ actual: "-5", expected: "0" });
    expect(describeSymptom(f[1]!.lines)).toEqual({ error: "ValueError: bad value" });
  });

  it("templates say which test, what was expected and what happened, never the diff", () => {
    const startPatch = "diff --git a/g.py b/g.py\n--- a/g.py\n+++ b/g.py\n@@ -1 +1 @@\n-    if x < lo:\n+    if x >= lo:\n";
    const text = templateIssue({ repo: "example/shapes", failToPass: ["tests/test_geometry.py::test_clamp_low"], log, startPatch, seed: 3 });
    expect(text).toContain("tests/test_geometry.py::test_clamp_low");
    expect(text).toContain("Expected `0`, but got `-5`");
    expect(text).not.toContain("if x >= lo");
    expect(text).not.toContain("if x < lo");
    expect(templateIssue({ repo: "example/shapes", failToPass: ["tests/test_geometry.py::test_clamp_low"], log, startPatch, seed: 3 })).toBe(text);
  });

  it("strips lines naming failing tests or quoting changed code", () => {
    const r = stripLeaks("# Bug\nclamp returns wrong values\nsee test_clamp_low\nthe line `if x >= lo:` is wrong\nok", {
      tests: ["tests/test_geometry.py::test_clamp_low"],
      diff: "--- a/g.py\n+++ b/g.py\n-    if x < lo:\n+    if x >= lo:\n",
    });
    expect(r.text).toBe("# Bug\nclamp returns wrong values\nok");
    expect(r.removed).toBe(2);
  });
});

describe("validation helpers", () => {
  it("coverage contexts, source paths, coverage packages", () => {
    // Exact node ids: the parameters are kept whole.
    expect(contextTest("tests/test_x.py::test_a[1 2]|run")).toBe("tests/test_x.py::test_a[1 2]");
    expect(contextTest("")).toBeUndefined();
    for (const p of ["tests/test_a.py", "testing/x.py", "src/pkg/conftest.py", "docs/conf.py", "setup.py", "pkg/a_test.py"]) {
      expect(NON_SOURCE_PATH.test(p)).toBe(true);
    }
    for (const p of ["src/flask/app.py", "requests/models.py", "src/_pytest/python.py"]) expect(NON_SOURCE_PATH.test(p)).toBe(false);
    const spec = withCoverage({ repo: "a/b", commit: "abcd", testCommand: "pytest -rA", logParser: "pytest", systemPackages: ["python3-pytest"] });
    expect(spec.systemPackages).toEqual(["python3-coverage", "python3-pytest", "python3-pytest-cov"]);
  });

  it("each operator yields candidates on a realistic module", async () => {
    const counts = new Map<OperatorName, number>();
    const cs = await candidatesForFile({ path: "g.py", text: GEOMETRY }, { minComplexity: 1 });
    for (const c of cs) counts.set(c.operators[0]!, (counts.get(c.operators[0]!) ?? 0) + 1);
    expect(counts.get("flip_comparison")).toBe(5);
    expect(counts.get("remove_condition")).toBe(5);
  });
});

describe("tasks mutate --resume", () => {
  it("reads the task ids of a file cut mid-line and truncates the torn line", async () => {
    const { existingTaskIds } = await import("../cli/tasks");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-resume-"));
    const file = path.join(dir, "tasks.jsonl");
    const whole = `${JSON.stringify({ id: "mutate/a__b/1" })}\n${JSON.stringify({ id: "mutate/a__b/2" })}\n`;
    fs.writeFileSync(file, whole + '{"id": "mutate/a__b/3", "proble');
    expect(existingTaskIds(file)).toEqual(["mutate/a__b/1", "mutate/a__b/2"]);
    expect(fs.readFileSync(file, "utf8")).toBe(whole);
    expect(existingTaskIds(path.join(dir, "absent.jsonl"))).toEqual([]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe("covering tests of a candidate", () => {
  it("a removed base class selects the tests of the whole file; other operators the entity's lines", async () => {
    const { MutateRunner } = await import("../taskgen/mutate/validate");
    const runner: import("../taskgen/mutate/validate").MutateRunner = Object.create(MutateRunner.prototype);
    const lines = new Map<number, Set<string>>([
      [3, new Set(["t::inherits_only"])], // a line of the base class
      [10, new Set(["t::uses_child"])], // a line of the child class
    ]);
    runner.reference = {
      statuses: new Map(),
      log: "",
      timedOut: false,
      exitCode: 0,
      seconds: 0,
      passed: new Set(["t::inherits_only", "t::uses_child"]),
      coverage: new Map([["pkg/m.py", lines]]),
      measuredFiles: ["pkg/m.py"],
    };
    const entity = { name: "Child", kind: "class", startLine: 8, endLine: 12 };
    const cand = (operator: string) => ({ changes: [{ path: "pkg/m.py", operator, entity }] }) as unknown as Parameters<typeof runner.coveringTests>[0];
    expect([...runner.coveringTests(cand("remove_base_class"))].sort()).toEqual(["t::inherits_only", "t::uses_child"]);
    expect([...runner.coveringTests(cand("remove_method"))]).toEqual(["t::uses_child"]);
  });
});

describe("adaptive per-run timeout", () => {
  it("reads pytest's --durations report and scales the timeout to the selected tests", async () => {
    const { adaptiveTimeout, parseDurations } = await import("../taskgen/mutate/validate");
    const log = [
      "============================= slowest durations =============================",
      "2.50s call     tests/test_a.py::test_slow",
      "0.50s setup    tests/test_a.py::test_slow",
      "0.01s call     tests/test_a.py::test_fast[x y]",
      "0.00s teardown tests/test_a.py::test_fast[x y]",
      "=========================== short test summary info ===========================",
    ].join("\n");
    const d = parseDurations(log);
    expect(d.get("tests/test_a.py::test_slow")).toBeCloseTo(3.0);
    expect(d.get("tests/test_a.py::test_fast[x y]")).toBeCloseTo(0.01); // exact ids: parameters whole
    expect(adaptiveTimeout(["tests/test_a.py::test_slow"], d, 30, 300)).toBe(30); // 5 × 3 + 15 = 30
    expect(adaptiveTimeout(["tests/test_a.py::test_slow", "tests/test_a.py::test_fast[x y]"], d, 10, 300)).toBe(31);
    expect(adaptiveTimeout(["tests/test_a.py::unknown"], d, 30, 300)).toBe(300);
    expect(adaptiveTimeout(["tests/test_a.py::test_slow"], undefined, 30, 300)).toBe(300);
    d.set("tests/test_b.py::test_huge", 1000);
    expect(adaptiveTimeout(["tests/test_b.py::test_huge"], d, 30, 300)).toBe(300);
  });
});
