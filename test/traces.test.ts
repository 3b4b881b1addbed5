/**
 * traces/ in real Docker, on a created package (`tracedemo`, test/helpers/trace-fixtures): the
 * tracer inside the image (settrace on bookworm's Python 3.11) on loops, a loop over the line cap,
 * deep recursion, generators, caught and propagated exceptions, values whose repr raises or is
 * huge, a trace over the size cap; only repository code traced; the outcome check (traced vs
 * untraced); the --functions filter; the record schema and the CWM renderer. One image.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInstanceImage } from "../images/build";
import { docker } from "../images/docker";
import { ImageSpecSchema, type ImageSpecInput } from "../images/spec";
import { CWM_TRACE_TOKENS, END_OF_TEXT, renderCwmTrace, START_MARK } from "../traces/render";
import { compareOutcomes, parseTracerOutput, traceRepository, type TraceRunResult } from "../traces/run";
import { TraceRecordSchema, type TraceRecord } from "../traces/schema";
import { git } from "./helpers/git-fixtures";
import { makeTraceDemoRepo } from "./helpers/trace-fixtures";

const PIP_E = "pip install --no-index --no-deps --no-build-isolation --break-system-packages -e .";

let tmp: string;
let image: string;
let spec: ImageSpecInput;
let commit: string;
let run: TraceRunResult;

const T = (name: string) => `tests/test_core.py::${name}`;
const of = (qualname: string, test?: string) => run.records.filter((r) => r.qualname === qualname && (!test || r.test === T(test)));

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-traces-test-"));
  const repo = makeTraceDemoRepo(path.join(tmp, "tracedemo"));
  commit = repo.shas[0]!;
  spec = {
    repo: "example/tracedemo",
    commit,
    source: { type: "path", path: repo.dir },
    systemPackages: ["python3-pytest", "python3-pip", "python3-setuptools"],
    install: [PIP_E],
    testCommand: "pytest -rA",
    logParser: "pytest",
    testTimeoutSeconds: 120,
  };
  image = (await buildInstanceImage(spec, { stateDir: path.join(tmp, "state") })).tag;
  run = await traceRepository({
    image,
    spec,
    repository: "example/tracedemo",
    commit,
    settings: { maxCallsPerFunction: 3 },
    timeoutSeconds: 300,
  });
}, 600_000);

afterAll(async () => {
  // The instance image is this file's own (its commit is unique to the run's fixture repo dates).
  if (image) await docker().getImage(image).remove({ force: true }).catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe("tracing a created repository", () => {
  it("runs the whole suite under the settrace backend with no tracer error", () => {
    expect(run.stats.backend).toBe("settrace");
    expect(run.stats.python).toMatch(/^3\.11\./);
    expect(run.stats.tests).toBe(11);
    expect(run.stats.tracerErrors).toBe(0);
    expect(run.invalid).toEqual([]);
    expect(run.records.length).toBe(run.stats.records);
    for (const r of run.records) expect(TraceRecordSchema.safeParse(r).success).toBe(true);
  });

  it("records a loop line by line, with unchanged locals as '..'", () => {
    const [rec] = of("total", "test_total");
    expect(rec).toBeDefined();
    const f = rec!.firstLine;
    expect(rec!.file).toBe("tracedemo/core.py");
    expect(rec!.source.startsWith("def total(xs):\n")).toBe(true);
    expect(rec!.events).toEqual([
      { kind: "call", line: f, locals: { xs: "[1, 2, 3]" } },
      { kind: "line", line: f + 1, locals: { xs: ".." } },
      { kind: "line", line: f + 2, locals: { xs: "..", t: "0" } },
      { kind: "line", line: f + 3, locals: { xs: "..", t: "..", x: "1" } },
      { kind: "line", line: f + 2, locals: { xs: "..", t: "1", x: ".." } },
      { kind: "line", line: f + 3, locals: { xs: "..", t: "..", x: "2" } },
      { kind: "line", line: f + 2, locals: { xs: "..", t: "3", x: ".." } },
      { kind: "line", line: f + 3, locals: { xs: "..", t: "..", x: "3" } },
      { kind: "line", line: f + 2, locals: { xs: "..", t: "6", x: ".." } },
      { kind: "line", line: f + 4, locals: { xs: "..", t: "..", x: ".." } },
      { kind: "return", line: f + 4, value: "6" },
    ]);
    expect(rec!.lineEvents).toBe(9);
    expect(rec!.truncated).toEqual({ repr: false, collection: false, reprError: false });
  });

  it("drops a trace over the line cap and one over the size cap, and the tests still pass", () => {
    expect(of("spin")).toEqual([]);
    expect(of("grow")).toEqual([]);
    expect(run.stats.droppedLines).toBe(1);
    expect(run.stats.droppedBytes).toBe(1);
    expect(run.statuses.get(T("test_spin"))).toBe("PASSED");
    expect(run.statuses.get(T("test_grow"))).toBe("PASSED");
  });

  it("survives deep recursion: the first calls per function are kept, each to its return", () => {
    const deep = of("deep");
    expect(deep.length).toBe(3);
    // Inner calls finish first, so they are written first.
    expect(deep.map((r) => r.events[0])).toEqual(["798", "799", "800"].map((n) => ({ kind: "call", line: deep[0]!.firstLine, locals: { n } })));
    expect(deep.map((r) => r.events.at(-1))).toEqual([
      { kind: "return", line: deep[0]!.firstLine + 3, value: "798" },
      { kind: "return", line: deep[0]!.firstLine + 3, value: "799" },
      { kind: "return", line: deep[0]!.firstLine + 3, value: "800" },
    ]);
    expect(run.statuses.get(T("test_deep"))).toBe("PASSED");
    expect(run.stats.skippedCap).toBeGreaterThan(700);
  });

  it("follows a generator across its yields and resumes in one record", () => {
    const [rec] = of("countdown");
    expect(rec).toBeDefined();
    const kinds = rec!.events.map((e) => e.kind);
    expect(kinds.filter((k) => k === "yield").length).toBe(3);
    expect(kinds.filter((k) => k === "call").length).toBe(4); // the start and three resumes
    expect(kinds.at(-1)).toBe("return");
    expect(rec!.events.filter((e) => e.kind === "yield").map((e) => (e as { value: string }).value)).toEqual(["3", "2", "1"]);
    // A resume shows every local again (diffing restarts after a yield).
    const resume = rec!.events[kinds.indexOf("yield") + 1]!;
    expect(resume).toMatchObject({ kind: "call", locals: { n: "3" } });
  });

  it("records exceptions: caught in the frame (execution goes on) and propagated (the trace ends)", () => {
    const parsed = of("parse");
    const caught = parsed.find((r) => r.events[0]!.kind === "call" && (r.events[0] as { locals: Record<string, string> }).locals.s === "'x'")!;
    const kinds = caught.events.map((e) => e.kind);
    expect(caught.events.find((e) => e.kind === "exception")).toMatchObject({ value: expect.stringMatching(/^ValueError\(/) });
    expect(kinds.indexOf("exception")).toBeLessThan(kinds.lastIndexOf("line"));
    expect(caught.events.at(-1)).toMatchObject({ kind: "return", value: "None" });
    expect(caught.propagated).toBeUndefined();

    const [fail] = of("fail");
    expect(fail!.propagated).toBe(true);
    expect(fail!.events.at(-1)).toMatchObject({ kind: "exception", value: "KeyError(4)" });
    expect(fail!.events.some((e) => e.kind === "return")).toBe(false);
    // The caller sees the exception arrive from the callee, catches it and returns.
    const [outer] = of("outer");
    expect(outer!.events.map((e) => e.kind)).toContain("exception");
    expect(outer!.events.at(-1)).toMatchObject({ kind: "return", value: "-1" });
  });

  it("renders values whose repr raises or is huge, caps collections and strings, hides addresses", () => {
    const [rec] = of("hold");
    const last = rec!.events.filter((e) => e.kind === "line").at(-1) as { locals: Record<string, string> };
    const all: Record<string, string> = {};
    for (const e of rec!.events) if (e.kind === "line") for (const [k, v] of Object.entries(e.locals)) if (v !== "..") all[k] = v;
    expect(all.b).toBe("<tracedemo.core.Bad object; repr raised RuntimeError>");
    expect(all.h).toHaveLength(200);
    expect(all.h!.endsWith("...")).toBe(true);
    expect(all.p).toBe("<tracedemo.core.Plain object at 0x..>");
    expect(all.big).toBe("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]");
    expect(all.s).toBe(`'${"x".repeat(100)}'...`);
    expect(Object.keys(last.locals)).toEqual(["b", "h", "p", "big", "s", "tags"]);
    expect(rec!.truncated).toEqual({ repr: true, collection: true, reprError: true });
    expect(rec!.events.at(-1)).toEqual({ kind: "return", line: rec!.firstLine + 7, value: "6003" });
  });

  it("traces repository code only: no test functions, no library code", () => {
    expect(run.records.every((r) => r.file === "tracedemo/core.py")).toBe(true);
    expect(of("helper_in_tests")).toEqual([]);
    expect(of("dump").length).toBe(1);
    expect(new Set(run.records.map((r) => r.repository))).toEqual(new Set(["example/tracedemo"]));
    expect(new Set(run.records.map((r) => r.commit))).toEqual(new Set([commit]));
  });

  it("does not change any test's outcome (traced vs untraced run of the same selection)", () => {
    const o = run.outcome!;
    expect(o.tests).toBe(11);
    expect(o.disagreements).toEqual([]);
    expect(o.passedUntraced).toBe(10);
    expect(o.passedTraced).toBe(10);
    expect(run.statuses.get(T("test_fails_on_purpose"))).toBe("FAILED");
  });

  it("renders every record in CWM's format, one frame per event", () => {
    for (const rec of run.records) {
      const text = renderCwmTrace(rec);
      expect(text.startsWith(CWM_TRACE_TOKENS.traceContextStart)).toBe(true);
      expect(text.endsWith(END_OF_TEXT)).toBe(true);
      expect(text.split(CWM_TRACE_TOKENS.frameSep).length - 1).toBe(rec.events.length + 1);
      expect(text).toContain(START_MARK);
    }
  });

  it("records only the --functions given, on a pytest selection, without the outcome run", async () => {
    const r = await traceRepository({
      image,
      spec,
      repository: "example/tracedemo",
      commit,
      tests: [T("test_fact"), T("test_total")],
      settings: { functions: ["fact"], maxCallsPerFunction: 2 },
      outcomeCheck: false,
      timeoutSeconds: 300,
    });
    expect(r.outcome).toBeUndefined();
    expect(r.stats.tests).toBe(2);
    expect(r.records.map((x) => [x.qualname, x.test])).toEqual([
      ["fact", T("test_fact")],
      ["fact", T("test_fact")],
    ]);
  }, 300_000);

  it("traces a task instance's start state: its startPatch (the bug) applied", async () => {
    const dir = path.join(tmp, "tracedemo");
    const file = path.join(dir, "tracedemo/core.py");
    const orig = fs.readFileSync(file, "utf8");
    fs.writeFileSync(file, orig.replace("    t = 0\n", "    t = 1\n"));
    const startPatch = git(dir, ["diff"]) + "\n";
    fs.writeFileSync(file, orig);
    const r = await traceRepository({
      image,
      spec,
      repository: "example/tracedemo",
      commit,
      task: { id: "mutate/example__tracedemo/t1", startPatch, image: ImageSpecSchema.parse(spec) },
      tests: [T("test_total")],
      settings: { functions: ["total"] },
      timeoutSeconds: 300,
    });
    expect(r.statuses.get(T("test_total"))).toBe("FAILED");
    expect(r.outcome!.disagreements).toEqual([]);
    expect(r.records).toHaveLength(1);
    expect(r.records[0]!.task).toBe("mutate/example__tracedemo/t1");
    expect(r.records[0]!.events[2]).toMatchObject({ kind: "line", locals: { t: "1" } });
    expect(r.records[0]!.events.at(-1)).toMatchObject({ kind: "return", value: "7" });
  }, 300_000);
});

describe("renderer and schema (no Docker)", () => {
  const rec: TraceRecord = TraceRecordSchema.parse({
    repository: "example/x",
    commit: "abcdef12",
    test: "tests/test_x.py::test_f",
    qualname: "f",
    file: "x.py",
    firstLine: 10,
    source: "@dec\ndef f(a):\n    b = a + 1\n    return b\n",
    events: [
      { kind: "call", line: 10, locals: { a: "1" } },
      { kind: "line", line: 12, locals: { a: ".." } },
      { kind: "line", line: 13, locals: { a: "..", b: "2" } },
      { kind: "return", line: 13, value: "2" },
    ],
    lineEvents: 2,
    truncated: { repr: false, collection: false, reprError: false },
  });

  it("renders the exact CWM text", () => {
    expect(renderCwmTrace(rec)).toBe(
      "<|trace_context_start|>@dec\ndef f(a):  # << START_OF_TRACE\n    b = a + 1\n    return b<|frame_sep|>" +
        '<|call_sep|>{"a":"1"}<|action_sep|>@dec<|frame_sep|>' +
        '<|line_sep|>{"a":".."}<|action_sep|>    b = a + 1<|frame_sep|>' +
        '<|line_sep|>{"a":"..","b":"2"}<|action_sep|>    return b<|frame_sep|>' +
        '<|return_sep|><|action_sep|>    return b<|arg_sep|>"2"<|frame_sep|>' +
        "<|end_of_text|>",
    );
    expect(renderCwmTrace({ ...rec, events: [rec.events[0]!, { kind: "exception", line: 12, value: "KeyError(4)" }], propagated: true }, { endOfText: false })).toBe(
      "<|trace_context_start|>@dec\ndef f(a):  # << START_OF_TRACE\n    b = a + 1\n    return b<|frame_sep|>" +
        '<|call_sep|>{"a":"1"}<|action_sep|>@dec<|frame_sep|>' +
        '<|exception_sep|><|action_sep|>    b = a + 1<|arg_sep|>"KeyError(4)"<|frame_sep|>',
    );
  });

  it("reports tracer lines that fail the schema with the line and the field", () => {
    const good = JSON.stringify({ ...rec, repository: undefined, commit: undefined, schemaVersion: undefined });
    const bad = JSON.stringify({ ...JSON.parse(good), events: [{ kind: "line", line: 1 }] });
    const { records, invalid } = parseTracerOutput(`${good}\nnot json\n${bad}\n`, { repository: "example/x", commit: "abcdef12" });
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ repository: "example/x", commit: "abcdef12", qualname: "f" });
    expect(invalid).toHaveLength(2);
    expect(invalid[0]).toMatch(/^line 2: invalid JSON/);
    expect(invalid[1]).toMatch(/^line 3: events\.0\.locals/);
  });

  it("compares outcomes by pass/fail, a test missing from one run disagreeing", () => {
    const o = compareOutcomes(
      new Map([["a", "PASSED"], ["b", "FAILED"], ["c", "XFAIL"], ["d", "PASSED"]]),
      new Map([["a", "PASSED"], ["b", "ERROR"], ["c", "FAILED"]]),
    );
    expect(o.tests).toBe(4);
    expect(o.agree).toBe(2);
    expect(o.disagreements).toEqual([
      { test: "c", untraced: "XFAIL", traced: "FAILED" },
      { test: "d", untraced: "PASSED", traced: "missing" },
    ]);
  });
});
