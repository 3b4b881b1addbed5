import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fileKind, parseGitLog, selectCommit, splitPatch, type CommitRecord, type FileChange } from "../taskgen/commits/select";

const fc = (path: string, added: string[], removed: string[] = [], hunkContexts: string[] = []): FileChange => ({
  path, added: added.length, removed: removed.length, addedLines: added, removedLines: removed, hunkContexts,
});
const rec = (files: FileChange[]): CommitRecord => ({ sha: "a".repeat(40), parent: "b".repeat(40), subject: "s", files });

describe("fileKind", () => {
  it("tells tests, source, docs, ci and packaging apart", () => {
    expect(fileKind("tests/test_core.py")).toBe("test");
    expect(fileKind("src/pkg/conftest.py")).toBe("test");
    expect(fileKind("pkg/util_test.py")).toBe("test");
    expect(fileKind("src/pkg/core.py")).toBe("source");
    expect(fileKind("docs/index.rst")).toBe("docs");
    expect(fileKind("CHANGES.rst")).toBe("docs");
    expect(fileKind(".github/workflows/ci.yml")).toBe("ci");
    expect(fileKind("pyproject.toml")).toBe("packaging");
    expect(fileKind("requirements/dev.txt")).toBe("packaging");
  });
});

describe("selectCommit", () => {
  const src = fc("src/pkg/core.py", ["    return a - b"], ["    return a + b"], ["def sub(a, b):"]);
  const test = fc("tests/test_core.py", ["def test_sub():", "    assert sub(2, 1) == 1"]);
  it("keeps a source + test fix with its entities", () => {
    const s = selectCommit(rec([src, test]));
    expect(s).toMatchObject({ ok: true, sourceFiles: ["src/pkg/core.py"], testFiles: ["tests/test_core.py"], changedLines: 2, entities: ["src/pkg/core.py:sub"] });
  });
  it("rejects docs/CI/packaging-only, no tests, formatting-only", () => {
    expect(selectCommit(rec([fc("docs/a.rst", ["x"]), fc(".github/workflows/c.yml", ["y"])]))).toMatchObject({ ok: false, reason: "docs-ci-packaging-only" });
    expect(selectCommit(rec([src]))).toMatchObject({ ok: false, reason: "no-test-change" });
    expect(selectCommit(rec([fc("src/pkg/core.py", ['x = "a"'], ["x = 'a'"]), test]))).toMatchObject({ ok: false, reason: "formatting-only" });
    expect(selectCommit(rec([test]))).toMatchObject({ ok: false, reason: "no-source-change" });
  });
  it("enforces the file, line and entity limits", () => {
    const many = Array.from({ length: 6 }, (_, i) => fc(`pkg/m${i}.py`, ["x = 1"]));
    expect(selectCommit(rec([...many, test]))).toMatchObject({ ok: false, reason: "too-many-files" });
    const big = fc("pkg/big.py", Array.from({ length: 201 }, (_, i) => `v${i} = ${i}`));
    expect(selectCommit(rec([big, test]))).toMatchObject({ ok: false, reason: "too-many-lines" });
    const ents = fc("pkg/e.py", ["def a(): pass", "def b(): pass", "class C: pass"], [], ["def d():", "class E:"]);
    expect(selectCommit(rec([ents, test]))).toMatchObject({ ok: false, reason: "too-many-entities" });
    expect(selectCommit(rec([ents, test]), { maxSourceFiles: 5, maxChangedLines: 200, maxEntities: 5 }).ok).toBe(true);
  });
});

describe("parseGitLog", () => {
  it("reads a real repository's log, PR merges as first-parent diffs", () => {
    const dir = mkdtempSync(join(tmpdir(), "commits-select-"));
    const git = (...a: string[]): string => execFileSync("git", ["-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", ...a], { encoding: "utf8" });
    git("init", "-q", "-b", "main");
    mkdirSync(join(dir, "pkg")); mkdirSync(join(dir, "tests"));
    writeFileSync(join(dir, "pkg/core.py"), "def sub(a, b):\n    return a + b\n");
    git("add", "."); git("commit", "-qm", "init");
    git("checkout", "-qb", "fix");
    writeFileSync(join(dir, "pkg/core.py"), "def sub(a, b):\n    return a - b\n");
    writeFileSync(join(dir, "tests/test_core.py"), "from pkg.core import sub\n\ndef test_sub():\n    assert sub(2, 1) == 1\n");
    git("add", "."); git("commit", "-qm", "fix sub");
    git("checkout", "-q", "main");
    writeFileSync(join(dir, "README.md"), "hi\n");
    git("add", "."); git("commit", "-qm", "docs");
    git("merge", "-q", "--no-ff", "-m", "Merge pull request #1", "fix");
    const log = git("log", "--first-parent", "-m", "--no-renames", "-U0", "--format=%x00%H %P%x00%s", "-p", "main");
    const recs = parseGitLog(log); // the root commit has no parent and is skipped
    expect(recs.map((r) => r.subject)).toEqual(["Merge pull request #1", "docs"]);
    const merge = recs[0]!;
    expect(selectCommit(merge)).toMatchObject({ ok: true, sourceFiles: ["pkg/core.py"], testFiles: ["tests/test_core.py"] });
    expect(selectCommit(recs[1]!)).toMatchObject({ ok: false, reason: "docs-ci-packaging-only" });
    const { testPatch, goldPatch } = splitPatch(git("diff", "--no-renames", "--binary", "main^1", "main"));
    expect(testPatch).toContain("+++ b/tests/test_core.py");
    expect(testPatch).not.toContain("pkg/core.py");
    expect(goldPatch).toContain("+    return a - b");
    expect(goldPatch).not.toContain("test_core");
  });
});

describe("problem statement", () => {
  it("names the failing tests and rejects a statement quoting the gold patch", async () => {
    const { goldLeak, templateStatement } = await import("../taskgen/commits/statement");
    const gold = ["    return a - b  # subtract", "x"];
    const s = templateStatement([{ id: "tests/test_core.py::test_sub", output: "assert 3 == 1" }], gold);
    expect(s).toContain("tests/test_core.py::test_sub");
    expect(goldLeak(s, gold)).toBeUndefined();
    expect(() => templateStatement([{ id: "t", output: "E   return a - b  # subtract" }], gold)).toThrow(/gold patch/);
    expect(() => templateStatement([{ id: "t", output: "diff --git a/x b/x" }], [])).toThrow(/diff/);
  });
});

describe("mining helpers (taskgen/commits/mine.ts, statement.ts)", () => {
  it("FAIL_TO_PASS / PASS_TO_PASS from before/after series, unstable tests dropped", async () => {
    const { classifyRuns } = await import("../taskgen/commits/mine");
    const before = new Map<string, (string | undefined)[]>([
      ["t::fixed", ["FAILED", "FAILED", "FAILED"]],
      ["t::kept", ["PASSED", "PASSED", "PASSED"]],
      ["t::coin", ["FAILED", "FAILED", "FAILED"]],
    ]);
    const after = new Map<string, (string | undefined)[]>([
      ["t::fixed", ["PASSED", "PASSED", "PASSED"]],
      ["t::kept", ["PASSED", "PASSED", "PASSED"]],
      ["t::coin", ["PASSED", "FAILED", "PASSED"]],
      // absent before (its module did not import): fails before
      ["t::new", ["PASSED", "PASSED", "PASSED"]],
      ["t::broken", ["FAILED", "FAILED", "FAILED"]],
    ]);
    expect(classifyRuns(before, after, 3)).toEqual({ failToPass: ["t::fixed", "t::new"], passToPass: ["t::kept"], flaky: ["t::coin"] });
  });

  it("recognises a commit whose tests need a module the environment lacks", async () => {
    const { missingModule } = await import("../taskgen/commits/mine");
    expect(missingModule("ERROR collecting tests/test_p.py\nE   ModuleNotFoundError: No module named 'attrs'\n")).toBe("attrs");
    expect(missingModule("FAILED tests/test_p.py::test_x - AssertionError\n")).toBeUndefined();
  });

  it("touched test modules leave deleted files and data files out", async () => {
    const { touchedTestFiles } = await import("../taskgen/commits/mine");
    const patch =
      "diff --git a/tests/test_a.py b/tests/test_a.py\n--- a/tests/test_a.py\n+++ b/tests/test_a.py\n@@ -1 +1 @@\n-x\n+y\n" +
      "diff --git a/tests/test_old.py b/tests/test_old.py\ndeleted file mode 100644\n--- a/tests/test_old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n" +
      "diff --git a/tests/data/v.toml b/tests/data/v.toml\n--- a/tests/data/v.toml\n+++ b/tests/data/v.toml\n@@ -1 +1 @@\n-a\n+b\n";
    expect(touchedTestFiles(patch)).toEqual(["tests/test_a.py"]);
  });

  it("the mined statement keeps test names, test code and gold lines out", async () => {
    const { minedStatement } = await import("../taskgen/commits/statement");
    const log = [
      "_________________________________ test_sub _________________________________",
      "tests/test_sub.py:5: in test_sub",
      "    assert sub(5, 3) == 2",
      "E   assert 8 == 2",
      "E    +  where 8 = sub(5, 3)",
      "=========================== short test summary info ============================",
      "FAILED tests/test_sub.py::test_sub - assert 8 == 2",
    ].join("\n");
    const gold = "diff --git a/calc/core.py b/calc/core.py\n--- a/calc/core.py\n+++ b/calc/core.py\n@@ -5 +5 @@\n-    return a + b\n+    return a - b\n";
    const test = "diff --git a/tests/test_sub.py b/tests/test_sub.py\n+++ b/tests/test_sub.py\n@@ -0,0 +1,2 @@\n+def test_sub():\n+    assert sub(5, 3) == 2\n";
    const s = minedStatement({ repo: "example/calc", failToPass: ["tests/test_sub.py::test_sub"], log, goldPatch: gold, testPatch: test });
    expect(s).toContain("assert 8 == 2");
    expect(s).not.toContain("test_sub");
    expect(s).not.toContain("return a - b");
  });

  it("back-translation through the inference client: a clean issue is kept; one quoting the fix falls back to the template", async () => {
    const { modelStatement } = await import("../taskgen/commits/statement");
    const { startScriptedServer } = await import("./helpers/scripted-server");
    const { InferenceClient } = await import("../inference-client/client");
    const log = ["_________________________________ test_sub _________________________________", "E   assert 8 == 2", "FAILED tests/test_sub.py::test_sub - assert 8 == 2"].join("\n");
    const gold = "diff --git a/calc/core.py b/calc/core.py\n--- a/calc/core.py\n+++ b/calc/core.py\n@@ -5 +5 @@\n-    return a + b\n+    return a - b\n";
    const test = "diff --git a/tests/test_sub.py b/tests/test_sub.py\n+++ b/tests/test_sub.py\n@@ -0,0 +1,2 @@\n+def test_sub():\n+    assert sub(5, 3) == 2\n";
    const input = { repo: "example/calc", failToPass: ["tests/test_sub.py::test_sub"], log, goldPatch: gold, testPatch: test };
    const answers = [
      "# sub() adds instead of subtracting\n\nCalling calc.sub(5, 3) gives 8 in my script, where I expected 2. Subtraction of any two numbers gives their sum instead.",
      "# sub is wrong\n\nThe function should read `return a - b` instead of adding its arguments; I noticed it in tests/test_sub.py when calling sub with two numbers.",
    ];
    const server = await startScriptedServer({ handler: (req) => ({ text: answers[req.seq] ?? "" }) });
    const client = new InferenceClient({ endpoints: [{ url: server.url, model: "m" }] });
    try {
      const good = await modelStatement(client, input);
      expect(good.source).toBe("model");
      expect(good.text).toContain("gives 8");
      const leaked = await modelStatement(client, input);
      expect(leaked.source).toBe("template");
      expect(leaked.text).not.toContain("return a - b");
      expect(leaked.text).not.toContain("test_sub");
      // The model saw the diff and the failing output, never the test patch.
      const prompt = JSON.stringify(server.requests[0]!.body);
      expect(prompt).toContain("return a - b");
      expect(prompt).not.toContain("assert sub(5, 3) == 2");
    } finally {
      await client.close();
      await server.close();
    }
  });
});
