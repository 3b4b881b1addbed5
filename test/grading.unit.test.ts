/**
 * Harness grading (rewards/grading.ts): per-instance reports, resolution, evaluation-log reading,
 * run reports. Semantics are the SWE-bench harness v5.0.0's (grading.py, reporting.py); real
 * dataset rows are used when /work/shared/datasets is present.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  buildRunReport,
  gradeInstance,
  InstanceReportSchema,
  readEvalLog,
  resolutionStatus,
  resolveTestId,
  RunReportSchema,
  testsStatusFor,
  type GradeInput,
} from "../rewards/grading";
import { parseTestLog, type TestStatus } from "../suite/log-parsers";

const sm = (o: Record<string, TestStatus>) => new Map(Object.entries(o));

const base = (over: Partial<GradeInput>): GradeInput => ({
  instanceId: "owner__repo-1",
  failToPass: ["t::f1", "t::f2"],
  passToPass: ["t::p1"],
  statuses: sm({}),
  patchApplied: true,
  patchExists: true,
  ...over,
});

describe("test outcomes", () => {
  it("PASSED and XFAIL pass; FAILED, ERROR and missing fail", () => {
    const ts = testsStatusFor(
      { failToPass: ["a", "b", "c", "d", "e"], passToPass: ["a", "b", "c", "d", "e"] },
      sm({ a: "PASSED", b: "XFAIL", c: "FAILED", d: "ERROR" }),
    );
    expect(ts.FAIL_TO_PASS).toEqual({ success: ["a", "b"], failure: ["c", "d", "e"] });
    expect(ts.PASS_TO_PASS).toEqual({ success: ["a", "b"], failure: ["c", "d", "e"] });
    expect(ts.FAIL_TO_FAIL).toEqual({ success: [], failure: [] });
    expect(ts.PASS_TO_FAIL).toEqual({ success: [], failure: [] });
  });

  it("SKIPPED fails a FAIL_TO_PASS test and keeps a PASS_TO_PASS test (v5.0); 'fail' makes it fail both", () => {
    const statuses = sm({ s: "SKIPPED" });
    const v5 = testsStatusFor({ failToPass: ["s"], passToPass: ["s"] }, statuses);
    expect(v5.FAIL_TO_PASS).toEqual({ success: [], failure: ["s"] });
    expect(v5.PASS_TO_PASS).toEqual({ success: ["s"], failure: [] });
    const strict = testsStatusFor({ failToPass: ["s"], passToPass: ["s"], skipped: "fail" }, statuses);
    expect(strict.PASS_TO_PASS).toEqual({ success: [], failure: ["s"] });
  });

  it("a patch that makes every FAIL_TO_PASS test skip is not resolved", () => {
    const g = gradeInstance(base({ statuses: sm({ "t::f1": "SKIPPED", "t::f2": "SKIPPED", "t::p1": "PASSED" }) }));
    expect(g.resolution).toBe("RESOLVED_NO");
  });

  it("grades FAIL_TO_FAIL / PASS_TO_FAIL only when given", () => {
    const ts = testsStatusFor({ failToPass: [], passToPass: [], failToFail: ["x"], passToFail: ["y"] }, sm({ x: "PASSED" }));
    expect(ts.FAIL_TO_FAIL).toEqual({ success: ["x"], failure: [] });
    expect(ts.PASS_TO_FAIL).toEqual({ success: [], failure: ["y"] });
  });

  it("fail_only: only a recorded FAILED fails", () => {
    const ts = testsStatusFor(
      { failToPass: ["a", "b", "c"], passToPass: [], evalType: "fail_only" },
      sm({ a: "FAILED", b: "ERROR" }),
    );
    expect(ts.FAIL_TO_PASS).toEqual({ success: ["b", "c"], failure: ["a"] });
  });
});

describe("test id lookup", () => {
  it("matches a truncated parametrized id by prefix when the candidates agree (v5.0 _resolve_case)", () => {
    const truncated = "astropy/units/tests/test_format.py::test_ogip_grammar_fail[log(photon";
    expect(resolveTestId(truncated, sm({ [`${truncated} / m**2 s)]`]: "PASSED" }))).toBe(`${truncated} / m**2 s)]`);
    const mixed = sm({ "t.py::x[args1-None]": "PASSED", "t.py::x[args1-No-value]": "FAILED" });
    expect(resolveTestId("t.py::x[args1-No", mixed)).toBeUndefined();
    const agreeing = sm({ "t.py::x[args1-None]": "PASSED", "t.py::x[args1-No-value]": "XFAIL" });
    expect(resolveTestId("t.py::x[args1-No", agreeing)).toBe("t.py::x[args1-None]");
  });

  it("never prefix-matches a well-formed id", () => {
    expect(resolveTestId("t.py::x[case-1]", sm({ "t.py::x[case-1-extended]": "PASSED" }))).toBeUndefined();
  });

  it("matches django ids across Python versions (name (mod.Class) ↔ name (mod.Class.name))", () => {
    const py311 = sm({ "test_x (app.tests.T.test_x)": "PASSED" });
    expect(resolveTestId("test_x (app.tests.T)", py311)).toBe("test_x (app.tests.T.test_x)");
    const py38 = sm({ "test_x (app.tests.T)": "FAILED" });
    expect(resolveTestId("test_x (app.tests.T.test_x)", py38)).toBe("test_x (app.tests.T)");
    expect(resolveTestId("test_y (app.tests.T)", py311)).toBeUndefined();
  });
});

describe("resolution", () => {
  it("FULL / PARTIAL / NO", () => {
    const lists = (s: number, f: number) => ({
      success: Array.from({ length: s }, (_, i) => `s${i}`),
      failure: Array.from({ length: f }, (_, i) => `f${i}`),
    });
    expect(resolutionStatus({ FAIL_TO_PASS: lists(2, 0), PASS_TO_PASS: lists(3, 0) })).toBe("RESOLVED_FULL");
    expect(resolutionStatus({ FAIL_TO_PASS: lists(1, 1), PASS_TO_PASS: lists(3, 0) })).toBe("RESOLVED_PARTIAL");
    expect(resolutionStatus({ FAIL_TO_PASS: lists(1, 1), PASS_TO_PASS: lists(2, 1) })).toBe("RESOLVED_NO");
    expect(resolutionStatus({ FAIL_TO_PASS: lists(0, 2), PASS_TO_PASS: lists(3, 0) })).toBe("RESOLVED_NO");
    expect(resolutionStatus({ FAIL_TO_PASS: lists(2, 0), PASS_TO_PASS: lists(2, 1) })).toBe("RESOLVED_NO");
  });

  it("empty lists count as all passing", () => {
    expect(resolutionStatus({ FAIL_TO_PASS: lists0(), PASS_TO_PASS: lists0() })).toBe("RESOLVED_FULL");
    const g = gradeInstance(base({ failToPass: ["t::f1"], passToPass: [], statuses: sm({ "t::f1": "PASSED" }) }));
    expect(g.resolved).toBe(true);
  });
});

function lists0() {
  return { success: [], failure: [] };
}

describe("per-instance report", () => {
  it("has the harness's shape when graded", () => {
    const g = gradeInstance(base({ statuses: sm({ "t::f1": "PASSED", "t::f2": "FAILED", "t::p1": "PASSED" }) }));
    expect(g.resolution).toBe("RESOLVED_PARTIAL");
    expect(g.resolved).toBe(false);
    expect(g.report).toEqual({
      "owner__repo-1": {
        patch_is_None: false,
        patch_exists: true,
        patch_successfully_applied: true,
        resolved: false,
        tests_status: {
          FAIL_TO_PASS: { success: ["t::f1"], failure: ["t::f2"] },
          PASS_TO_PASS: { success: ["t::p1"], failure: [] },
          FAIL_TO_FAIL: { success: [], failure: [] },
          PASS_TO_FAIL: { success: [], failure: [] },
        },
      },
    });
    expect(InstanceReportSchema.parse(JSON.parse(JSON.stringify(g.report)))).toEqual(g.report);
  });

  it("no patch → patch_is_None; not applied or no gradable log → patch_successfully_applied false", () => {
    const none = gradeInstance(base({ patchExists: false }));
    expect(none.report["owner__repo-1"]).toEqual({
      patch_is_None: true,
      patch_exists: false,
      patch_successfully_applied: false,
      resolved: false,
    });
    const notApplied = gradeInstance(base({ patchApplied: false, statuses: sm({ "t::f1": "PASSED" }) }));
    expect(notApplied.report["owner__repo-1"]).toEqual({
      patch_is_None: false,
      patch_exists: true,
      patch_successfully_applied: false,
      resolved: false,
    });
    expect(notApplied.testsStatus).toBeNull();
    const noLog = gradeInstance(base({ statuses: null, infraFailureReason: "docker daemon gone" }));
    expect(noLog.report["owner__repo-1"]).toMatchObject({
      patch_successfully_applied: false,
      infra_failure: true,
      infra_failure_reason: "docker daemon gone",
    });
    expect(noLog.resolution).toBe("RESOLVED_NO");
  });

  it("the schema rejects a report missing a field and keeps unknown keys", () => {
    expect(InstanceReportSchema.safeParse({ x: { patch_is_None: false } }).success).toBe(false);
    const extra = { x: { patch_is_None: false, patch_exists: true, patch_successfully_applied: true, resolved: true, new_key: 1 } };
    expect(InstanceReportSchema.parse(extra)).toEqual(extra);
  });
});

describe("evaluation log (get_logs_eval)", () => {
  const wrap = (body: string, tail = "") =>
    `+ git apply -v /tmp/patch.diff\n>>>>> Applied Patch\n+ : '>>>>> Start Test Output'\n${body}\n+ : '>>>>> End Test Output'\n${tail}`;

  it("parses between the markers", () => {
    const v = readEvalLog("pytest", wrap("PASSED a.py::t\nFAILED a.py::u - boom"), {});
    expect(v.ok && Object.fromEntries(v.statuses)).toEqual({ "a.py::t": "PASSED", "a.py::u": "FAILED" });
  });

  it("rejects logs with a failure marker or without markers", () => {
    expect(readEvalLog("pytest", `>>>>> Patch Apply Failed\n${wrap("PASSED a.py::t")}`)).toMatchObject({ ok: false, reason: "bad_marker" });
    expect(readEvalLog("pytest", wrap("PASSED a.py::t", ">>>>> Tests Timed Out"))).toMatchObject({ ok: false, reason: "bad_marker" });
    expect(readEvalLog("pytest", "PASSED a.py::t")).toMatchObject({ ok: false, reason: "no_markers" });
  });

  it("falls back to the whole log when nothing is between the markers, and rejects an empty result", () => {
    const outside = `PASSED a.py::t\n${wrap("")}`;
    const v = readEvalLog("pytest", outside);
    expect(v.ok && [...v.statuses.keys()]).toEqual(["a.py::t"]);
    expect(readEvalLog("pytest", wrap("collected 0 items"))).toMatchObject({ ok: false, reason: "no_results" });
  });

  it("rejects PASSED lines contradicted by a non-zero exit code (spoofed output)", () => {
    const spoof = wrap("PASSED a.py::t", ">>>>> Test Exit Code: 1\n");
    expect(readEvalLog("pytest", spoof)).toMatchObject({ ok: false, reason: "exit_code_mismatch", exitCode: 1 });
    const honest = wrap("PASSED a.py::t\nFAILED a.py::u", ">>>>> Test Exit Code: 1\n");
    expect(readEvalLog("pytest", honest)).toMatchObject({ ok: true, exitCode: 1 });
    expect(readEvalLog("pytest", wrap("PASSED a.py::t", ">>>>> Test Exit Code: 0\n"))).toMatchObject({ ok: true, exitCode: 0 });
  });
});

describe("run report (make_run_report)", () => {
  const report = (id: string, resolved: boolean) =>
    gradeInstance({
      instanceId: id,
      failToPass: ["x"],
      passToPass: [],
      statuses: sm({ x: resolved ? "PASSED" : "FAILED" }),
      patchApplied: true,
      patchExists: true,
    }).report;

  it("classifies instances and sorts the id lists", () => {
    const r = buildRunReport(
      [
        { instanceId: "b__b-2", modelPatch: "diff", report: report("b__b-2", true) },
        { instanceId: "a__a-1", modelPatch: "diff", report: report("a__a-1", false) },
        { instanceId: "c__c-3", modelPatch: "" },
        { instanceId: "d__d-4", modelPatch: null },
        { instanceId: "e__e-5", modelPatch: "diff", report: null },
        { instanceId: "f__f-6", modelPatch: "diff", report: report("other", true) },
      ],
      { datasetIds: ["a__a-1", "b__b-2", "c__c-3", "d__d-4", "e__e-5", "f__f-6", "g__g-7"] },
    );
    expect(r).toEqual({
      total_instances: 7,
      submitted_instances: 6,
      completed_instances: 3,
      resolved_instances: 1,
      unresolved_instances: 1,
      empty_patch_instances: 2,
      error_instances: 2,
      completed_ids: ["a__a-1", "b__b-2", "f__f-6"],
      incomplete_ids: ["g__g-7"],
      empty_patch_ids: ["c__c-3", "d__d-4"],
      submitted_ids: ["a__a-1", "b__b-2", "c__c-3", "d__d-4", "e__e-5", "f__f-6"],
      resolved_ids: ["b__b-2"],
      unresolved_ids: ["a__a-1"],
      error_ids: ["e__e-5", "f__f-6"],
      schema_version: 2,
    });
    expect(Object.keys(r)).toEqual([
      "total_instances",
      "submitted_instances",
      "completed_instances",
      "resolved_instances",
      "unresolved_instances",
      "empty_patch_instances",
      "error_instances",
      "completed_ids",
      "incomplete_ids",
      "empty_patch_ids",
      "submitted_ids",
      "resolved_ids",
      "unresolved_ids",
      "error_ids",
      "schema_version",
    ]);
    expect(RunReportSchema.parse(JSON.parse(JSON.stringify(r)))).toEqual(r);
  });

  it("defaults the dataset to the submitted ids", () => {
    const r = buildRunReport([{ instanceId: "x", modelPatch: "d", report: report("x", true) }]);
    expect(r).toMatchObject({ total_instances: 1, submitted_instances: 1, resolved_ids: ["x"], incomplete_ids: [] });
  });

  it("the schema requires schema_version 2 and tolerates v5.0's extra keys", () => {
    const r = buildRunReport([]);
    expect(RunReportSchema.safeParse({ ...r, schema_version: 1 }).success).toBe(false);
    expect(RunReportSchema.safeParse({ ...r, infra_failure_ids: [], failure_reasons: {} }).success).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Real rows

const DATASETS_REL = "../shared/datasets";
const verifiedPath = [
  resolve(process.cwd(), DATASETS_REL, "swe-bench-verified.test.jsonl"),
  resolve(dirname(fileURLToPath(import.meta.url)), "..", DATASETS_REL, "swe-bench-verified.test.jsonl"),
].find((p) => existsSync(p));

interface Row {
  instance_id: string;
  repo: string;
  FAIL_TO_PASS: string;
  PASS_TO_PASS: string;
}

describe.skipIf(!verifiedPath)("Verified rows", () => {
  const rows = verifiedPath
    ? readFileSync(verifiedPath, "utf8")
        .split("\n")
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as Row)
    : [];
  const byId = new Map(rows.map((r) => [r.instance_id, r]));

  it("django__django-11099: gold-like log resolves, before-fix log does not", () => {
    const row = byId.get("django__django-11099")!;
    const f2p = JSON.parse(row.FAIL_TO_PASS) as string[];
    const p2p = JSON.parse(row.PASS_TO_PASS) as string[];
    const line = (id: string, word: string) =>
      /^\w+ \([\w.]+\)$/.test(id) ? `${id} ... ${word}` : `test_doc (auth_tests.test_validators.X)\n${id} ... ${word}`;
    const after = [...f2p, ...p2p].map((id) => line(id, "ok")).join("\n");
    const before = [...f2p.map((id) => line(id, "FAIL")), ...p2p.map((id) => line(id, "ok"))].join("\n");
    const grade = (log: string) =>
      gradeInstance({
        instanceId: row.instance_id,
        failToPass: f2p,
        passToPass: p2p,
        statuses: parseTestLog("django", log),
        patchApplied: true,
        patchExists: true,
      });
    expect(grade(after).resolution).toBe("RESOLVED_FULL");
    expect(grade(before).resolution).toBe("RESOLVED_NO");
  });

  it("django 5.0 rows (Python 3.11 ids) grade against logs printed by an older Python, and back", () => {
    const row = rows.find((r) => (JSON.parse(r.FAIL_TO_PASS) as string[]).some((id) => /^(\w+) \([\w.]+\.\1\)$/.test(id)))!;
    expect(row).toBeDefined();
    const f2p = JSON.parse(row.FAIL_TO_PASS) as string[];
    const p2p = JSON.parse(row.PASS_TO_PASS) as string[];
    const older = [...f2p, ...p2p]
      .map((id) => id.replace(/^(\w+) \(([\w.]+)\.\1\)$/, "$1 ($2)"))
      .map((id) => (/^\w+ \([\w.]+\)$/.test(id) ? `${id} ... ok` : `test_doc (a.B)\n${id} ... ok`))
      .join("\n");
    const g = gradeInstance({
      instanceId: row.instance_id,
      failToPass: f2p,
      passToPass: p2p,
      statuses: parseTestLog("django", older),
      patchApplied: true,
      patchExists: true,
    });
    expect(g.testsStatus?.FAIL_TO_PASS.failure).toEqual([]);
    expect(g.resolution).toBe("RESOLVED_FULL");
  });

  it("sympy__sympy-11618 and pytest-dev__pytest-7521 (P2P id `[100%]`) resolve on a passing log", () => {
    for (const [id, parser] of [
      ["sympy__sympy-11618", "sympy"],
      ["pytest-dev__pytest-7521", "pytest"],
    ] as const) {
      const row = byId.get(id)!;
      const tests = [...(JSON.parse(row.FAIL_TO_PASS) as string[]), ...(JSON.parse(row.PASS_TO_PASS) as string[])];
      const log = tests.map((t) => (parser === "sympy" ? `${t} ok` : `PASSED ${t}`)).join("\n");
      const g = gradeInstance({
        instanceId: id,
        failToPass: JSON.parse(row.FAIL_TO_PASS) as string[],
        passToPass: JSON.parse(row.PASS_TO_PASS) as string[],
        statuses: parseTestLog(parser, log),
        patchApplied: true,
        patchExists: true,
      });
      expect(g.resolution, id).toBe("RESOLVED_FULL");
    }
  });

  it("truncated Verified ids grade through the prefix fallback against full ids", () => {
    const row = byId.get("astropy__astropy-14369")!;
    const p2p = JSON.parse(row.PASS_TO_PASS) as string[];
    const truncated = p2p.filter((t) => t.split("[").length > t.split("]").length);
    expect(truncated.length).toBeGreaterThan(5);
    const statuses = new Map<string, TestStatus>(p2p.map((t) => [truncated.includes(t) ? `${t} extra text)]` : t, "PASSED"]));
    const g = gradeInstance({
      instanceId: row.instance_id,
      failToPass: [],
      passToPass: p2p,
      statuses,
      patchApplied: true,
      patchExists: true,
    });
    expect(g.testsStatus?.PASS_TO_PASS.failure).toEqual([]);
  });
});
