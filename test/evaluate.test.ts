/**
 * rewards/evaluate: hidden-test evaluation in a fresh sandbox (real Docker) on a created pytest
 * repository: gold / empty / wrong / non-applying / fuzzy / hanging patches, adversarial patches
 * that try to forge the result, harness-format reports, and `forager eval` end to end.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInstanceImage } from "../images/build";
import { specForSweBench } from "../images/swebench-specs";
import { evaluatePatch, type EvalResult } from "../rewards/evaluate";
import { parseChannel, pytestStatusesFromRecords } from "../rewards/records";
import {
  crossCheckTestLog,
  isCanaryId,
  escapeMarkers,
  ESCAPE_PREFIX,
  isTestLikePath,
  pytestSummarySection,
  unsafePatchPath,
} from "../rewards/forgery";
import { gradeInstance, InstanceReportSchema, readEvalLog, RunReportSchema } from "../rewards/grading";
import { SweBenchRowSchema, sweBenchRowToTask } from "../tasks/swebench";
import type { Task } from "../tasks/schema";
import { evalDatasetRow, evalSpecTable, makeEvalFixture, type EvalFixture } from "./helpers/eval-fixtures";

const run = promisify(execFile);

let tmp: string;
let fixture: EvalFixture;
let task: Task;
let image: string;
let logDir: string;
const results = new Map<string, EvalResult>();

async function evaluate(name: string, opts: { timeoutSeconds?: number } = {}): Promise<EvalResult> {
  const r = await evaluatePatch(task, fixture.patches[name] ?? "", { image, logDir, model: `m/${name}`, ...opts });
  results.set(name, r);
  return r;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-eval-test-"));
  logDir = path.join(tmp, "logs");
  const repoDir = path.join(tmp, "repos", "example__evalpkg");
  fixture = makeEvalFixture(repoDir);
  const row = SweBenchRowSchema.parse(evalDatasetRow(fixture));
  const table = evalSpecTable();
  task = sweBenchRowToTask(row, (r) => specForSweBench({ ...r, version: r.version ?? "" }, { table, source: { type: "path", path: repoDir } }));
  const built = await buildInstanceImage(task.image, { stateDir: path.join(tmp, "state") });
  image = built.tag;
}, 600_000);

afterAll(() => {
  // The image is left for `forager images prune` (the CLI test below builds the same one).
  console.log(
    [...results]
      .map(([k, r]) => `${k.padEnd(15)} ${r.outcome.padEnd(19)} ${r.seconds.toFixed(2)} s  ${r.reason ?? ""}`)
      .join("\n"),
  );
  if (tmp && !process.env.FORAGER_KEEP_TEST_TMP) fs.rmSync(tmp, { recursive: true, force: true });
});

describe("evaluatePatch: harness semantics", () => {
  it("gold patch → resolved, applied with git apply, harness report written", async () => {
    const r = await evaluate("gold");
    expect(r.outcome).toBe("pass");
    expect(r.resolved).toBe(true);
    expect(r.applyMethod).toBe("git_apply");
    // The canary that must fail makes the run's exit status 1.
    expect(r.testExitCode).toBe(1);
    expect(r.forgery?.evidence).toEqual([]);
    expect(r.forgery?.canaries?.canaries.filter((c) => c.kind === "fail").length).toBeGreaterThanOrEqual(2);
    expect(r.forgery?.canaries?.extraFile).toMatch(/^tests\/test_\w+\.py$/);
    expect(r.sources).toMatchObject({ summary: true, records: true });
    expect(r.runUser).toBe(54321);
    expect(r.statuses).toMatchObject({ "tests/test_calc.py::test_add": "PASSED", "tests/test_calc.py::test_mul": "PASSED" });
    const dir = path.join(logDir, "m__gold", task.id);
    expect(r.logDir).toBe(dir);
    const report = InstanceReportSchema.parse(JSON.parse(fs.readFileSync(path.join(dir, "report.json"), "utf8")));
    expect(Object.keys(report)).toEqual([task.id]);
    expect(report[task.id]).toMatchObject({
      patch_is_None: false,
      patch_exists: true,
      patch_successfully_applied: true,
      resolved: true,
      tests_status: {
        FAIL_TO_PASS: { success: ["tests/test_calc.py::test_add"], failure: [] },
        PASS_TO_PASS: { success: ["tests/test_calc.py::test_mul"], failure: [] },
      },
    });
    expect(fs.readFileSync(path.join(dir, "patch.diff"), "utf8")).toBe(fixture.gold);
    const out = fs.readFileSync(path.join(dir, "test_output.txt"), "utf8");
    expect(out).toMatch(/^>>>>> Start Test Output [0-9a-f]{24}$/m);
    expect(out).toMatch(/^>>>>> Test Exit Code: 1$/m);
    // The harness's own reader grades forager's log the same way.
    const h = readEvalLog("pytest", out);
    expect(h.ok && h.statuses.get("tests/test_calc.py::test_add")).toBe("PASSED");
  });

  it("eval.sh beside the logs reproduces the graded run in a fresh container of the image", async () => {
    const r = results.get("gold") ?? (await evaluate("gold"));
    const sh = path.join(r.logDir!, "eval.sh");
    expect(fs.existsSync(sh)).toBe(true);
    const { stdout } = await run("bash", ["-c", `docker run --rm -i --network none ${image} bash -s < ${sh}`], { maxBuffer: 64 * 1024 * 1024 });
    const at = stdout.indexOf(">>>>> forager: result records");
    expect(at).toBeGreaterThan(0);
    const records = parseChannel(stdout.slice(at)).records;
    const again = pytestStatusesFromRecords(records, {}).statuses;
    const canaries = r.forgery!.canaries!.canaries;
    for (const id of [...again.keys()]) if (canaries.some((c) => isCanaryId(c, id))) again.delete(id);
    expect(Object.fromEntries(again)).toEqual(r.statuses);
    // the same canaries were written (the plan's seed), and the run was the test user's
    expect(records.find((x) => x.k === "start")).toMatchObject({ uid: 54321 });
    expect(stdout).toMatch(/^>>>>> Test Exit Code: 1$/m);
  });

  it("empty patch → not resolved, nothing run", async () => {
    const r = await evaluatePatch(task, "", { image, logDir, model: "empty" });
    expect(r.outcome).toBe("fail");
    expect(r.reason).toBe("empty patch");
    expect(r.patchExists).toBe(false);
    expect(r.report[task.id]).toMatchObject({ patch_exists: false, resolved: false });
    expect(r.seconds).toBeLessThan(1);
  });

  it("a wrong patch → not resolved, test_add failing", async () => {
    const r = await evaluate("wrong");
    expect(r.outcome).toBe("fail");
    expect(r.testsStatus?.FAIL_TO_PASS.failure).toEqual(["tests/test_calc.py::test_add"]);
    expect(r.testsStatus?.PASS_TO_PASS.success).toEqual(["tests/test_calc.py::test_mul"]);
    expect(r.report[task.id]!.patch_successfully_applied).toBe(true);
  });

  it("a patch that does not apply → patch_apply_failed after all three commands", async () => {
    const r = await evaluate("noApply");
    expect(r.outcome).toBe("patch_apply_failed");
    expect(r.applyMethod).toBeNull();
    expect(r.report[task.id]).toMatchObject({ patch_exists: true, patch_successfully_applied: false, resolved: false });
    const out = fs.readFileSync(path.join(r.logDir!, "test_output.txt"), "utf8");
    expect(out).toContain(">>>>> git apply --verbose (exit 1)");
    expect(out).toContain(">>>>> patch --batch --forward --fuzz=5 -p1 -i (exit 1)");
    expect(out).toContain(">>>>> Patch Apply Failed");
  });

  it("a patch needing fuzz applies with patch --fuzz=5 (recorded) and resolves", async () => {
    const r = await evaluate("fuzzy");
    expect(r.applyMethod).toBe("patch_fuzz");
    expect(r.outcome).toBe("pass");
  });

  it("a hanging test → timeout, no report.json", async () => {
    const r = await evaluate("hang", { timeoutSeconds: 4 });
    expect(r.outcome).toBe("timeout");
    expect(r.resolved).toBe(false);
    expect(fs.existsSync(path.join(r.logDir!, "report.json"))).toBe(false);
    expect(fs.readFileSync(path.join(r.logDir!, "test_output.txt"), "utf8")).toContain(">>>>> Tests Timed Out");
  });

  it("a missing image → env_error with the reason", async () => {
    const r = await evaluatePatch(task, fixture.gold, { image: "forager/instance:does-not-exist" });
    expect(r.outcome).toBe("env_error");
    expect(r.reason).toMatch(/does-not-exist/);
  });
});

describe("evaluatePatch: adversarial patches are not resolved", () => {
  const cases: [string, string][] = [
    ["fakePassed", "prints fake PASSED lines after pytest's summary"],
    ["editTestFile", "edits the hidden test file"],
    ["editTestHelper", "edits a test helper the test patch does not touch"],
    ["conftest", "adds a conftest.py rewriting reports to passed"],
    ["fakeJunit", "overwrites the JUnit report and exits 0"],
    ["fakeMarkers", "prints a fake end marker and exit code"],
    ["exitEarly", "prints a fake summary and calls os._exit(0) mid-run"],
    ["killSelf", "kills its own test process"],
    ["dotPytestIni", "adds a .pytest.ini loading a plugin that rewrites reports"],
    ["pyprojectAddopts", "adds [tool.pytest.ini_options] addopts -p PLUGIN to pyproject.toml"],
    ["setupCfgAddopts", "adds [tool:pytest] addopts -p PLUGIN to setup.cfg"],
    ["entryPoint", "adds an egg-info with a [pytest11] entry point (plugin autoload)"],
    ["sitecustomize", "adds a sitecustomize.py setting PYTEST_ADDOPTS"],
    ["shadowPluggy", "adds a top-level pluggy.py shadowing pytest's machinery"],
  ];
  for (const [name, what] of cases) {
    it(`${name}: ${what}`, async () => {
      const r = await evaluate(name);
      expect(r.resolved, `${name}: ${r.reason}`).toBe(false);
      expect(r.outcome, r.reason).toBe("fail");
      expect(r.report[task.id]!.resolved).toBe(false);
    });
  }
  const forged: [string, string][] = [
    ["inprocReportClass", "rewrites TestReport.from_item_and_call through sys.modules at import"],
    ["inprocGcPlugin", "finds the plugin manager through gc and registers a report-rewriting plugin"],
    ["inprocRuntest", "replaces Function.runtest so no test body runs"],
  ];
  for (const [name, what] of forged) {
    it(`${name}: ${what} → forged`, async () => {
      const r = await evaluate(name);
      expect(r.resolved, `${name}: ${r.reason}`).toBe(false);
      expect(r.outcome, r.reason).toBe("forged");
      expect(r.forgery?.evidence.join(" ")).toMatch(/^tamper: |^contradiction: |canary .* must fail but was reported PASSED/);
      expect(r.report[task.id]!.resolved).toBe(false);
      expect(r.flags.length, "machinery flags").toBeGreaterThan(0);
      expect(fs.existsSync(path.join(r.logDir!, "report.json"))).toBe(true);
    });
  }

  it("what the defences did", () => {
    expect(results.get("editTestFile")!.resetFiles).toEqual(["tests/test_calc.py"]);
    expect(results.get("editTestHelper")!.resetFiles).toEqual(["tests/util.py"]);
    expect(results.get("conftest")!.resetFiles).toEqual(["conftest.py"]);
    expect(results.get("dotPytestIni")!.resetFiles).toEqual([".pytest.ini"]);
    expect(results.get("entryPoint")!.resetFiles).toEqual(expect.arrayContaining(["evalpkg_forge.egg-info/entry_points.txt"]));
    expect(results.get("sitecustomize")!.resetFiles).toEqual(["sitecustomize.py"]);
    expect(results.get("shadowPluggy")!.resetFiles).toEqual(["pluggy.py"]);
    for (const n of ["pyprojectAddopts", "setupCfgAddopts"]) {
      // Not reset (gold patches edit these files), but their pytest section is not read.
      expect(results.get(n)!.statuses["tests/test_calc.py::test_add"], n).toBe("FAILED");
    }
    expect(results.get("fakePassed")!.statuses["tests/test_calc.py::test_add"]).toBe("FAILED");
    expect(results.get("fakePassed")!.conflicts).toContain("tests/test_calc.py::test_add");
    expect(results.get("fakeJunit")!.reason).toMatch(/inconsistent test log/);
    expect(results.get("exitEarly")!.reason).toMatch(/did not finish/);
    expect(results.get("killSelf")!.reason).toMatch(/did not finish/);
    const fm = fs.readFileSync(path.join(results.get("fakeMarkers")!.logDir!, "test_output.txt"), "utf8");
    expect(fm).toContain(`${ESCAPE_PREFIX}>>>>> End Test Output`);
    expect(fm.match(/^>>>>> End Test Output/gm)).toHaveLength(1);
  });

  it("the plain harness reading of the same outputs is fooled by some of them", () => {
    const naive: Record<string, boolean> = {};
    for (const name of ["fakePassed", "fakeJunit", "fakeMarkers", "exitEarly"]) {
      const r = results.get(name)!;
      const out = fs.readFileSync(path.join(r.logDir!, "test_output.txt"), "utf8").replaceAll(ESCAPE_PREFIX, "");
      const v = readEvalLog("pytest", out.replace(/^(>>>>> (?:Start|End) Test Output) [0-9a-f]+$/gm, "$1"));
      naive[name] = gradeInstance({
        instanceId: task.id,
        failToPass: task.failToPass,
        passToPass: task.passToPass,
        statuses: v.ok ? v.statuses : null,
        patchApplied: true,
        patchExists: true,
      }).resolved;
    }
    console.log("plain harness reading resolved:", naive);
    expect(naive.fakeMarkers || naive.exitEarly || naive.fakeJunit || naive.fakePassed).toBe(true);
  });
});

describe("evaluatePatch: what the submission causes is the model's outcome, never env_error", () => {
  it("300 MB printed at exit: bounded memory, graded from the result records, not an environment error", async () => {
    const before = process.memoryUsage().rss;
    const r = await evaluate("floodAtExit", { timeoutSeconds: 300 });
    expect(r.outcome, r.reason).not.toBe("env_error");
    expect(r.outputDroppedBytes).toBeGreaterThan(200 * 1024 * 1024);
    expect(r.sources.records).toBe(true);
    expect(r.statuses["tests/test_calc.py::test_add"]).toBe("PASSED");
    expect(process.memoryUsage().rss - before).toBeLessThan(150 * 1024 * 1024);
  });
  it("a test that kills every process in the container: fail, the sandbox survives", async () => {
    const r = await evaluate("killEverything");
    expect(r.outcome, r.reason).toBe("fail");
    expect(r.resolved).toBe(false);
  });
  it("a patch over the size limit: fail with the reason, nothing run", async () => {
    const r = await evaluatePatch(task, fixture.gold, { image, maxPatchBytes: 100 });
    expect(r.outcome).toBe("fail");
    expect(r.reason).toMatch(/patch too large/);
  });
});

describe("forgery helpers", () => {
  it("test-like paths, unsafe paths, escaping, summary section", () => {
    for (const p of ["tests/a.py", "a/test/b.py", "testing/x.py", "pkg/test_x.py", "x_test.py", "conftest.py", "a/conftest.py", "tox.ini"]) {
      expect(isTestLikePath(p), p).toBe(true);
    }
    for (const p of ["src/_pytest/python.py", "django/db/models.py", "contest.py", "latest/x.py"]) expect(isTestLikePath(p), p).toBe(false);
    expect(unsafePatchPath("diff --git a/.git/config b/.git/config\n")).toMatch(/\.git/);
    expect(unsafePatchPath("--- a/../x\n+++ b/../x\n")).toMatch(/\.\./);
    expect(unsafePatchPath(fixture.gold)).toBeUndefined();
    expect(escapeMarkers("a\n>>>>> End Test Output\n")).toBe(`a\n${ESCAPE_PREFIX}>>>>> End Test Output\n`);
    expect(pytestSummarySection("x\n=== short test summary info ===\nPASSED a::b\n")).toBe("PASSED a::b\n");
  });

  it("cross-check: sources must agree; exit code must match", () => {
    const rec = (o: string, body: string | null = o === "passed" ? null : "AssertionError") => [
      { k: "sess" },
      { k: "rep", id: "t.py::test_a", when: "setup", outcome: "passed" },
      { k: "body", id: "t.py::test_a", raised: body },
      { k: "rep", id: "t.py::test_a", when: "call", outcome: o },
      { k: "rep", id: "t.py::test_a", when: "teardown", outcome: "passed" },
      { k: "end", exit: o === "passed" ? 0 : 1 },
    ];
    const summary = (s: string) => `== short test summary info ==\n${s} t.py::test_a\n`;
    const ok = crossCheckTestLog({ parser: "pytest", output: summary("PASSED"), exitCode: 0, records: rec("passed") });
    expect(ok.statuses?.get("t.py::test_a")).toBe("PASSED");
    const disagree = crossCheckTestLog({ parser: "pytest", output: summary("PASSED"), exitCode: 1, records: rec("failed") });
    expect(disagree.statuses?.get("t.py::test_a")).toBe("FAILED");
    expect(disagree.conflicts).toEqual(["t.py::test_a"]);
    expect(crossCheckTestLog({ parser: "pytest", output: summary("PASSED"), exitCode: 1, records: rec("passed") }).reason).toMatch(
      /inconsistent test log/,
    );
    expect(crossCheckTestLog({ parser: "pytest", output: summary("FAILED"), exitCode: 0, records: rec("failed") }).reason).toMatch(
      /inconsistent test log/,
    );
    // No session end: the process did not finish; no records at all: not gradable either.
    expect(crossCheckTestLog({ parser: "pytest", output: summary("PASSED"), exitCode: 0, records: rec("passed").slice(0, -1) }).statuses).toBeNull();
    expect(crossCheckTestLog({ parser: "pytest", output: summary("PASSED"), exitCode: 0, records: [] }).statuses).toBeNull();
    // A call reported passed whose body raised: failed, and a contradiction (evidence).
    const forged = crossCheckTestLog({ parser: "pytest", output: summary("PASSED"), exitCode: 0, records: rec("passed", "AssertionError") });
    expect(forged.statuses).toBeNull(); // exit 0 with a failure: not gradable either way
    expect(forged.contradictions[0]).toMatch(/reported passed, but its body raised AssertionError/);
    const forged1 = crossCheckTestLog({ parser: "pytest", output: summary("PASSED"), exitCode: 1, records: rec("passed", "AssertionError") });
    expect(forged1.statuses?.get("t.py::test_a")).toBe("FAILED");
    // sympy: worst wins over a later fake "ok".
    const s = crossCheckTestLog({ parser: "sympy", output: "test_a F\ntest_b F\ntest_a ok\n", exitCode: 1 });
    expect(s.statuses?.get("test_a")).toBe("FAILED");
  });
});

describe("forager eval (CLI)", () => {
  it("--predictions gold and empty on a created dataset: reports in the harness format", async () => {
    const dataDir = path.join(tmp, "cli");
    fs.mkdirSync(dataDir, { recursive: true });
    const dataset = path.join(dataDir, "dataset.jsonl");
    const rows = [evalDatasetRow(fixture), { ...evalDatasetRow(fixture, "example__evalpkg-net") }];
    fs.writeFileSync(dataset, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const table = path.join(dataDir, "specs.json");
    fs.writeFileSync(table, JSON.stringify(evalSpecTable()));
    const out = path.join(dataDir, "out");
    const cli = async (predictions: string, runId: string) =>
      run(
        "npx",
        [
          "tsx",
          "cli/main.ts",
          "eval",
          "--dataset",
          dataset,
          "--predictions",
          predictions,
          "--repos",
          path.join(tmp, "repos"),
          "--spec-table",
          table,
          "--run-id",
          runId,
          "--out",
          out,
          "--workers",
          "2",
          "--state-dir",
          path.join(tmp, "state"),
        ],
        { cwd: path.resolve(__dirname, ".."), env: { ...process.env, FORAGER_LOG_LEVEL: "warn" }, timeout: 240_000 },
      );
    const gold = await cli("gold", "g1");
    expect(gold.stdout).toMatch(/resolved\s+1/);
    expect(gold.stdout).toContain("example__evalpkg-net");
    expect(gold.stdout).toMatch(/needs the internet/);
    const goldReport = RunReportSchema.parse(JSON.parse(fs.readFileSync(path.join(out, "g1", "gold.g1.json"), "utf8")));
    expect(goldReport.resolved_ids).toEqual(["example__evalpkg-1"]);
    expect(goldReport.completed_ids).toEqual(["example__evalpkg-1"]);
    InstanceReportSchema.parse(JSON.parse(fs.readFileSync(path.join(out, "g1", "gold", "example__evalpkg-1", "report.json"), "utf8")));

    const empty = await cli("empty", "e1");
    expect(empty.stdout).toMatch(/resolved\s+0/);
    const emptyReport = RunReportSchema.parse(JSON.parse(fs.readFileSync(path.join(out, "e1", "empty.e1.json"), "utf8")));
    expect(emptyReport.resolved_instances).toBe(0);
    expect(emptyReport.empty_patch_ids).toContain("example__evalpkg-1");
    expect(emptyReport.completed_ids).toEqual([]);
  }, 300_000);
});
