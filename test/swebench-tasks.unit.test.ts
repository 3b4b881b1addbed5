/**
 * SWE-bench rows, predictions and test directives (tasks/swebench.ts, tasks/predictions.ts,
 * tasks/directives.ts). Inline fixtures make every case independent of the dataset files;
 * when /work/shared/datasets is present, all Lite and Verified rows must load with no error,
 * convert to Tasks, and their directives must equal the tail of the test command in the row's own
 * `eval_script`.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ImageSpecSchema, type ImageSpec } from "../images/spec";
import { RecordError } from "../lib/errors";
import { testDirectives } from "../tasks/directives";
import {
  emptyPredictions,
  goldPredictions,
  loadPredictions,
  parsePredictions,
  predictionsById,
} from "../tasks/predictions";
import { TaskSchema } from "../tasks/schema";
import { loadTaskFiles, parseInstanceIds, parseTaskJsonl, selectTasks } from "../tasks/files";
import { writeParquetRows } from "./helpers/parquet";
import {
  datasetFiles,
  decodeUtf8,
  loadSweBench,
  parseSweBench,
  splitOfFile,
  SweBenchRowSchema,
  sweBenchRowsToTasks,
  sweBenchRowToTask,
  type SweBenchRow,
} from "../tasks/swebench";

const SHA = "e7fd69d051eaa67cb17f172a39b57253e9cb831a";

function row(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    repo: "sympy/sympy",
    instance_id: "sympy__sympy-20590",
    base_commit: SHA,
    patch: "diff --git a/sympy/core/_print_helpers.py b/sympy/core/_print_helpers.py\n",
    test_patch: "diff --git a/sympy/core/tests/test_basic.py b/sympy/core/tests/test_basic.py\n",
    problem_statement: "Symbol instances have __dict__ since 1.7?",
    hints_text: "",
    created_at: "2020-12-12T18:18:38Z",
    version: "1.7",
    FAIL_TO_PASS: '["test_immutable"]',
    PASS_TO_PASS: '["test__aresame", "test_structure"]',
    environment_setup_commit: "cffd4e0f86fefd4802349a9f9b19ed70934ea354",
    ...over,
  };
}

const specFor = (r: SweBenchRow): ImageSpec | undefined =>
  r.repo === "sympy/sympy"
    ? ImageSpecSchema.parse({
        repo: r.repo,
        commit: "0000000",
        systemPackages: ["python3-mpmath"],
        testCommand: "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test -C --verbose",
        logParser: "sympy",
      })
    : undefined;

const jsonl = (...values: unknown[]) => values.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join("\n") + "\n";

describe("SweBenchRowSchema", () => {
  it("decodes FAIL_TO_PASS / PASS_TO_PASS given as JSON strings or as lists", () => {
    const fromString = SweBenchRowSchema.parse(row());
    const fromList = SweBenchRowSchema.parse(row({ FAIL_TO_PASS: ["test_immutable"], PASS_TO_PASS: [] }));
    expect(fromString.FAIL_TO_PASS).toEqual(["test_immutable"]);
    expect(fromString.PASS_TO_PASS).toEqual(["test__aresame", "test_structure"]);
    expect(fromList.FAIL_TO_PASS).toEqual(["test_immutable"]);
    expect(fromList.PASS_TO_PASS).toEqual([]);
  });

  it("keeps optional and extra fields; tolerates null text and a numeric version", () => {
    const r = SweBenchRowSchema.parse(row({ difficulty: "<15 min fix", hints_text: null, version: 0.12, image: "x:latest", extra_field: 7 }));
    expect(r.difficulty).toBe("<15 min fix");
    expect(r.hints_text).toBeUndefined();
    expect(r.version).toBe("0.12");
    expect(r.image).toBe("x:latest");
    expect((r as Record<string, unknown>).extra_field).toBe(7);
  });

  it("rejects a malformed test list, a bad repo and a missing field", () => {
    expect(SweBenchRowSchema.safeParse(row({ FAIL_TO_PASS: "[not json" })).success).toBe(false);
    expect(SweBenchRowSchema.safeParse(row({ FAIL_TO_PASS: "[1, 2]" })).success).toBe(false);
    expect(SweBenchRowSchema.safeParse(row({ repo: "sympy" })).success).toBe(false);
    const { problem_statement: _ps, ...noStatement } = row();
    expect(SweBenchRowSchema.safeParse(noStatement).success).toBe(false);
  });
});

describe("parseSweBench", () => {
  it("JSONL: a bad row is reported with its line and field, the rest load", () => {
    const text = jsonl(
      row({ instance_id: "a__a-1" }),
      row({ instance_id: "a__a-2", FAIL_TO_PASS: "not a list" }),
      "",
      row({ instance_id: "a__a-3", FAIL_TO_PASS: ["t1"] }),
      "{broken json",
      row({ instance_id: "a__a-1" }),
    );
    const { rows, errors } = parseSweBench(text);
    expect(rows.map((r) => r.instance_id)).toEqual(["a__a-1", "a__a-3"]);
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatchObject({ line: 2, field: "FAIL_TO_PASS", instanceId: "a__a-2" });
    expect(errors[0]?.message).toMatch(/a__a-2.*FAIL_TO_PASS/);
    expect(errors[1]).toMatchObject({ line: 5 });
    expect(errors[1]?.message).toMatch(/invalid JSON/);
    expect(errors[2]).toMatchObject({ line: 6, field: "instance_id", instanceId: "a__a-1" });
    expect(errors[2]?.message).toMatch(/duplicate/);
  });

  it("a bad first line does not hide the JSONL rows after it", () => {
    const { rows, errors } = parseSweBench(jsonl('{"instance_id": "x", "repo": ', row({ instance_id: "b__b-1" })));
    expect(rows.map((r) => r.instance_id)).toEqual(["b__b-1"]);
    expect(errors).toMatchObject([{ line: 1 }]);
  });

  it("JSON array (pretty-printed): errors carry the line where the bad element starts", () => {
    const text = JSON.stringify([row({ instance_id: "c__c-1" }), row({ instance_id: "c__c-2", base_commit: "nope" })], null, 2);
    const { rows, errors } = parseSweBench(text);
    expect(rows.map((r) => r.instance_id)).toEqual(["c__c-1"]);
    const secondStart = text.split("\n").findIndex((l, i) => i > 1 && l === "  {") + 1;
    expect(errors).toMatchObject([{ line: secondStart, field: "base_commit", instanceId: "c__c-2" }]);
  });

  it("JSON array with a syntax error in one element still loads the others", () => {
    const good = JSON.stringify(row({ instance_id: "d__d-1" }));
    const text = `[\n${good},\n{"instance_id": "d__d-2", oops},\n${JSON.stringify(row({ instance_id: "d__d-3" }))}\n]\n`;
    const { rows, errors } = parseSweBench(text);
    expect(rows.map((r) => r.instance_id)).toEqual(["d__d-1", "d__d-3"]);
    expect(errors).toMatchObject([{ line: 3 }]);
  });

  it("JSON object keyed by id, and a single row object", () => {
    const keyed = JSON.stringify(
      { "e__e-1": row({ instance_id: "e__e-1" }), "e__e-2": (({ instance_id: _i, ...r }) => r)(row()) },
      null,
      2,
    );
    const { rows, errors } = parseSweBench(keyed);
    expect(errors).toEqual([]);
    expect(rows.map((r) => r.instance_id)).toEqual(["e__e-1", "e__e-2"]);
    const mismatch = parseSweBench(JSON.stringify({ "e__e-9": row({ instance_id: "e__e-1" }) }));
    expect(mismatch.errors).toMatchObject([{ field: "instance_id" }]);
    expect(parseSweBench(JSON.stringify(row())).rows).toHaveLength(1);
  });

  it("empty text and a broken pretty-printed object", () => {
    expect(parseSweBench("  \n")).toMatchObject({ rows: [], errors: [] });
    const broken = parseSweBench('{\n  "a__a-1": {\n    "repo": "x/y",\n    oops\n  }\n}\n');
    expect(broken.rows).toEqual([]);
    expect(broken.errors).toHaveLength(1);
    expect(broken.errors[0]?.line).toBeGreaterThanOrEqual(3);
  });
});

describe("loadSweBench / sweBenchRowToTask", () => {
  const dir = mkdtempSync(join(tmpdir(), "forager-swebench-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads a file", async () => {
    const file = join(dir, "rows.jsonl");
    writeFileSync(file, jsonl(row(), row({ instance_id: "sympy__sympy-2", base_commit: "" })));
    const { rows, errors } = await loadSweBench(file);
    expect(rows).toHaveLength(1);
    expect(errors).toMatchObject([{ line: 2, field: "base_commit" }]);
  });

  it("makes an issue-fix Task with the row's commit, tests, gold patch and metadata", () => {
    const r = SweBenchRowSchema.parse(row({ difficulty: "15 min - 1 hour", image: "swebench/x:latest", log_parser: "parse_log_sympy" }));
    const task = sweBenchRowToTask(r, specFor);
    expect(TaskSchema.parse(task)).toEqual(task);
    expect(task).toMatchObject({
      id: "sympy__sympy-20590",
      kind: "issue-fix",
      repo: "sympy/sympy",
      commit: SHA,
      failToPass: ["test_immutable"],
      passToPass: ["test__aresame", "test_structure"],
      referencePatch: r.patch,
      testPatch: r.test_patch,
      startPatch: "",
      problemStatement: r.problem_statement,
      metadata: {
        source: "swe-bench",
        version: "1.7",
        created_at: "2020-12-12T18:18:38Z",
        environment_setup_commit: "cffd4e0f86fefd4802349a9f9b19ed70934ea354",
        difficulty: "15 min - 1 hour",
        hints_text: "",
        harness: { image: "swebench/x:latest", log_parser: "parse_log_sympy" },
      },
    });
    expect(task.image).toMatchObject({ repo: "sympy/sympy", commit: SHA, logParser: "sympy", systemPackages: ["python3-mpmath"] });
  });

  it("throws a RecordError without a spec; the batch form lists such rows", () => {
    const r = SweBenchRowSchema.parse(row({ repo: "django/django", instance_id: "django__django-1" }));
    expect(() => sweBenchRowToTask(r, specFor)).toThrow(RecordError);
    const { tasks, skipped } = sweBenchRowsToTasks([r, SweBenchRowSchema.parse(row())], specFor);
    expect(tasks.map((t) => t.id)).toEqual(["sympy__sympy-20590"]);
    expect(skipped).toMatchObject([{ instanceId: "django__django-1" }]);
    expect(skipped[0]?.reason).toMatch(/no image spec/);
  });
});

describe("predictions", () => {
  const p = (id: string, patch: string | null = "diff --git a/x b/x\n") => ({
    instance_id: id,
    model_name_or_path: "agent/v1",
    model_patch: patch,
  });

  it("reads a JSON list, a JSON object keyed by id, and JSONL", () => {
    expect(parsePredictions(JSON.stringify([p("a"), p("b")])).predictions.map((x) => x.instance_id)).toEqual(["a", "b"]);
    const keyed = parsePredictions(JSON.stringify({ a: p("a"), b: { model_name_or_path: "m", model_patch: "" } }, null, 2));
    expect(keyed.errors).toEqual([]);
    expect(keyed.predictions).toEqual([p("a"), { instance_id: "b", model_name_or_path: "m", model_patch: "" }]);
    expect(parsePredictions(jsonl(p("a"), p("b"))).predictions).toHaveLength(2);
    expect(parsePredictions(JSON.stringify(p("solo"))).predictions).toEqual([p("solo")]);
  });

  it("reports bad lines with their line numbers; null or missing patch is 'no patch'", () => {
    const { predictions, errors } = parsePredictions(
      jsonl(p("a"), { instance_id: "b", model_patch: "x" }, "not json", p("c", null), { instance_id: "d", model_name_or_path: "m" }, p("a", "second")),
    );
    expect(predictions.map((x) => [x.instance_id, x.model_patch])).toEqual([
      ["c", null],
      ["d", null],
      ["a", "second"],
    ]);
    expect(errors).toMatchObject([
      { line: 2, field: "model_name_or_path", instanceId: "b" },
      { line: 3 },
      { line: 6, field: "instance_id", instanceId: "a" },
    ]);
  });

  it("loads a file and builds gold / empty predictions from rows", async () => {
    const dir = mkdtempSync(join(tmpdir(), "forager-preds-"));
    try {
      const file = join(dir, "preds.json");
      writeFileSync(file, JSON.stringify([p("a")]));
      expect((await loadPredictions(file)).predictions).toEqual([p("a")]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const rows = [SweBenchRowSchema.parse(row())];
    expect(goldPredictions(rows)).toEqual([{ instance_id: "sympy__sympy-20590", model_name_or_path: "gold", model_patch: rows[0]!.patch }]);
    expect(emptyPredictions(rows)).toEqual([{ instance_id: "sympy__sympy-20590", model_name_or_path: "empty", model_patch: "" }]);
    expect(predictionsById(goldPredictions(rows)).get("sympy__sympy-20590")?.model_name_or_path).toBe("gold");
  });
});

describe("testDirectives", () => {
  const patch = (...files: string[]) => files.map((f) => `diff --git a/${f} b/${f}\n--- a/${f}\n+++ b/${f}\n@@ -1 +1 @@\n-a\n+b\n`).join("");

  it("django: module labels without tests/ and .py; non-test files dropped", () => {
    expect(
      testDirectives(patch("tests/auth_tests/test_validators.py", "tests/validators/valid_urls.txt", "tests/i18n/sampleproject/locale/fr/x.json"), "django/django"),
    ).toEqual(["auth_tests.test_validators"]);
    expect(testDirectives(patch("tests/validators/invalid_urls.txt"), "django/django")).toEqual([]);
  });

  it("sympy and pytest repositories: bare paths", () => {
    expect(testDirectives(patch("sympy/core/tests/test_basic.py", "doc/src/x.md"), "sympy/sympy")).toEqual(["sympy/core/tests/test_basic.py"]);
    expect(testDirectives(patch("testing/test_a.py", "testing/data.csv", "testing/conftest.py"), "pytest-dev/pytest")).toEqual([
      "testing/test_a.py",
      "testing/conftest.py",
    ]);
  });

  it("renamed files take the b/ side", () => {
    expect(testDirectives("diff --git a/tests/old_test.py b/tests/new_test.py\nsimilarity index 90%\n", "pallets/flask")).toEqual([
      "tests/new_test.py",
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// The real datasets

describe("bad input: named fields, real lines, invalid UTF-8, unknown ids", () => {
  const dir = mkdtempSync(join(tmpdir(), "forager-badinput-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a row or prediction without instance_id names that field, once", () => {
    const { instance_id: _i, ...noId } = row();
    const one = parseSweBench(JSON.stringify(noId));
    expect(one.errors).toHaveLength(1);
    expect(one.errors[0]).toMatchObject({ line: 1, field: "instance_id" });
    expect(one.errors[0]?.message).toMatch(/instance_id: missing/);
    const pred = parsePredictions(JSON.stringify({ model_name_or_path: "m", model_patch: "" }));
    expect(pred.errors).toHaveLength(1);
    expect(pred.errors[0]).toMatchObject({ field: "instance_id" });
    expect(pred.errors[0]?.message).toMatch(/instance_id: missing/);
    expect(pred.errors[0]?.message).not.toMatch(/expected object/);
  });

  it("a duplicate task id names both files and lines (SWE-bench rows and Task JSONL)", async () => {
    const a = join(dir, "a.jsonl");
    const b = join(dir, "b.jsonl");
    writeFileSync(a, jsonl(row({ instance_id: "sympy__sympy-1" }), row({ instance_id: "sympy__sympy-2" })));
    writeFileSync(b, jsonl(row({ instance_id: "sympy__sympy-3" }), row({ instance_id: "sympy__sympy-2" })));
    const { tasks, errors } = await loadTaskFiles([a, b]);
    expect(tasks.map((t) => t.id)).toEqual(["sympy__sympy-1", "sympy__sympy-2", "sympy__sympy-3"]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ file: b, line: 2, taskId: "sympy__sympy-2" });
    expect(errors[0]?.message).toContain(`first at ${a}:2`);
    // Task JSONL: same rule, real lines.
    const t = join(dir, "tasks.jsonl");
    writeFileSync(t, jsonl(...tasks.map((x) => x), "", tasks[0]));
    const again = await loadTaskFiles([t]);
    expect(again.tasks).toHaveLength(3);
    expect(again.errors).toMatchObject([{ file: t, line: 5, taskId: "sympy__sympy-1" }]);
    expect(again.errors[0]?.message).toContain(`first at ${t}:1`);
  });

  it("invalid UTF-8: the record on that line is rejected with its line, the others load", async () => {
    const good1 = Buffer.from(JSON.stringify(row({ instance_id: "sympy__sympy-10" })) + "\n");
    const bad = Buffer.concat([Buffer.from(JSON.stringify(row({ instance_id: "sympy__sympy-11" })).slice(0, -2)), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n')]);
    const good2 = Buffer.from(JSON.stringify(row({ instance_id: "sympy__sympy-12" })) + "\n");
    const bytes = Buffer.concat([good1, bad, good2]);
    expect(decodeUtf8(bytes).invalidUtf8Lines).toEqual([2]);
    const file = join(dir, "bad-utf8.jsonl");
    writeFileSync(file, bytes);
    const { rows, errors } = await loadSweBench(file);
    expect(rows.map((r) => r.instance_id)).toEqual(["sympy__sympy-10", "sympy__sympy-12"]);
    expect(errors).toMatchObject([{ file, line: 2, instanceId: "sympy__sympy-11" }]);
    expect(errors[0]?.message).toMatch(/invalid UTF-8 on line 2/);
    // a pretty-printed JSON array: the element spanning the bad line is the one rejected
    const arr = Buffer.from(JSON.stringify([row({ instance_id: "sympy__sympy-20" }), row({ instance_id: "sympy__sympy-21" })], null, 2));
    const at = arr.indexOf("sympy__sympy-21") + 4;
    arr[at] = 0xc3; // a lead byte followed by ASCII: not UTF-8
    const arrFile = join(dir, "bad-utf8.json");
    writeFileSync(arrFile, arr);
    const fromArray = await loadSweBench(arrFile);
    expect(fromArray.rows.map((r) => r.instance_id)).toEqual(["sympy__sympy-20"]);
    expect(fromArray.errors[0]?.message).toMatch(/invalid UTF-8/);
    // Task JSONL and predictions too
    const tasks = parseTaskJsonl("x\n", "t.jsonl", [1]);
    expect(tasks.errors).toMatchObject([{ line: 1 }]);
    expect(tasks.errors[0]?.message).toMatch(/invalid UTF-8/);
    const predFile = join(dir, "preds.jsonl");
    writeFileSync(predFile, Buffer.concat([Buffer.from('{"instance_id": "a", "model_name_or_path": "m", "model_patch": "'), Buffer.from([0x80]), Buffer.from('"}\n')]));
    const preds = await loadPredictions(predFile);
    expect(preds.predictions).toEqual([]);
    expect(preds.errors).toMatchObject([{ line: 1, instanceId: "a" }]);
  });

  it("--instances: ids, @FILE, and unknown ids named (a rejected record said so)", async () => {
    const ids = join(dir, "ids.txt");
    writeFileSync(ids, "# chosen\nsympy__sympy-1\nsympy__sympy-3, sympy__sympy-1\n");
    expect(parseInstanceIds(`@${ids}`)).toEqual(["sympy__sympy-1", "sympy__sympy-3"]);
    expect(parseInstanceIds(" a, b ,,c ")).toEqual(["a", "b", "c"]);
    const file = join(dir, "sel.jsonl");
    writeFileSync(file, jsonl(row({ instance_id: "sympy__sympy-1" }), row({ instance_id: "sympy__sympy-2", base_commit: "x" }), row({ instance_id: "sympy__sympy-3" })));
    const loaded = await loadTaskFiles([file]);
    expect(selectTasks(loaded, ["sympy__sympy-3", "sympy__sympy-1"]).map((t) => t.id)).toEqual(["sympy__sympy-3", "sympy__sympy-1"]);
    expect(() => selectTasks(loaded, ["sympy__sympy-1", "nope__nope-9", "sympy__sympy-2"])).toThrow(
      /unknown instance id\(s\).*nope__nope-9, sympy__sympy-2 \(its record was rejected\)/,
    );
  });
});

describe("datasets as Hugging Face stores them: parquet files and dataset directories", () => {
  const dir = mkdtempSync(join(tmpdir(), "forager-parquet-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const shared = resolve(process.cwd(), "../shared/datasets/swe-bench-lite.dev.jsonl");
  /** Rows as stored: Lite's dev split when present (23 real rows), else a small inline set. */
  const stored: Record<string, unknown>[] = existsSync(shared)
    ? readFileSync(shared, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    : [row({ instance_id: "sympy__sympy-1" }), row({ instance_id: "sympy__sympy-2", hints_text: null }), row({ instance_id: "sympy__sympy-3", FAIL_TO_PASS: '["a", "b"]' })];

  it("a parquet file reads as the same rows as its JSONL", async () => {
    const pq = join(dir, "single.parquet");
    writeParquetRows(pq, stored);
    const js = join(dir, "single.jsonl");
    writeFileSync(js, jsonl(...stored));
    const fromParquet = await loadSweBench(pq);
    const fromJsonl = await loadSweBench(js);
    expect(fromParquet.errors).toEqual([]);
    expect(fromParquet.rows).toHaveLength(stored.length);
    expect(fromParquet.rows).toEqual(fromJsonl.rows);
    expect(fromParquet.where.get(stored[1]!.instance_id as string)).toEqual({ file: pq, line: 2 });
  });

  it("a bad parquet row is reported with file and row; an unreadable file throws naming it", async () => {
    const pq = join(dir, "bad.parquet");
    writeParquetRows(pq, [row({ instance_id: "sympy__sympy-1" }), row({ instance_id: "sympy__sympy-2", base_commit: "zz" })]);
    const { rows, errors } = await loadSweBench(pq);
    expect(rows).toHaveLength(1);
    expect(errors).toMatchObject([{ file: pq, line: 2, field: "base_commit", instanceId: "sympy__sympy-2" }]);
    const junk = join(dir, "junk.parquet");
    writeFileSync(junk, "not parquet at all");
    await expect(loadSweBench(junk)).rejects.toThrow(/junk\.parquet: not a readable parquet file/);
  });

  it("a directory laid out as a dataset repository: data/<split>-NNNNN-of-NNNNN.parquet, test split by default", async () => {
    const repo = join(dir, "SWE-bench_Lite");
    const half = Math.ceil(stored.length / 2);
    writeParquetRows(join(repo, "data", "test-00000-of-00002.parquet"), stored.slice(0, half));
    writeParquetRows(join(repo, "data", "test-00001-of-00002.parquet"), stored.slice(half));
    writeParquetRows(join(repo, "data", "dev-00000-of-00001.parquet"), [row({ instance_id: "sympy__sympy-999" })]);
    writeFileSync(join(repo, "README.md"), "---\ndataset_info: {}\n---\n");
    expect(datasetFiles(repo).map((f) => f.replace(/^.*\//, ""))).toEqual(["test-00000-of-00002.parquet", "test-00001-of-00002.parquet"]);
    expect(datasetFiles(repo, "dev")).toHaveLength(1);
    expect(() => datasetFiles(repo, "train")).toThrow(/several splits \(dev, test\)/);
    const { rows, errors } = await loadSweBench(repo);
    expect(errors).toEqual([]);
    expect(rows.map((r) => r.instance_id)).toEqual(stored.map((r) => r.instance_id));
    // the same directory through the task-file reader every command uses (specs may be missing for some repositories)
    const tasks = await loadTaskFiles([repo]);
    expect(tasks.tasks.length + tasks.errors.length).toBe(stored.length);
    for (const e of tasks.errors) expect(e.line).toBeGreaterThan(0);
    // a directory of JSONL files
    const jdir = join(dir, "jsonl-repo");
    writeFileSync(join(mkdirp(jdir), "swe-bench-lite.test.jsonl"), jsonl(...stored));
    expect((await loadSweBench(jdir)).rows).toHaveLength(stored.length);
    expect(() => datasetFiles(join(dir, "jsonl-repo", "..", "empty-dir-x"))).toThrow();
  });

  it("splits from file names", () => {
    expect(splitOfFile("data/test-00000-of-00001.parquet")).toBe("test");
    expect(splitOfFile("swe-bench-lite.dev.jsonl")).toBe("dev");
    expect(splitOfFile("rows.jsonl")).toBeUndefined();
  });
});

function mkdirp(d: string): string {
  mkdirSync(d, { recursive: true });
  return d;
}

const DATASETS_REL = "../shared/datasets";
const datasetsDir = [
  resolve(process.cwd(), DATASETS_REL),
  resolve(dirname(fileURLToPath(import.meta.url)), "..", DATASETS_REL),
].find((d) => existsSync(resolve(d, "swe-bench-verified.test.jsonl")));

describe.skipIf(!datasetsDir)(`datasets (${datasetsDir ?? "not found"})`, () => {
  const files = {
    verified: "swe-bench-verified.test.jsonl",
    lite: "swe-bench-lite.test.jsonl",
    liteDev: "swe-bench-lite.dev.jsonl",
  };
  const expected = { verified: 500, lite: 300, liteDev: 23 };

  it.each(Object.entries(files))("%s loads every row with no error", async (name, file) => {
    const path = resolve(datasetsDir!, file);
    if (!existsSync(path)) return;
    const { rows, errors } = await loadSweBench(path);
    expect(errors).toEqual([]);
    expect(rows).toHaveLength(expected[name as keyof typeof expected]);
    for (const r of rows) {
      expect(Array.isArray(r.FAIL_TO_PASS)).toBe(true);
      expect(r.FAIL_TO_PASS.length).toBeGreaterThan(0);
    }
  });

  it("Verified rows carry difficulty and become Tasks", async () => {
    const { rows } = await loadSweBench(resolve(datasetsDir!, files.verified));
    expect(rows.every((r) => r.difficulty !== undefined)).toBe(true);
    const anySpec = (r: SweBenchRow) =>
      ImageSpecSchema.parse({
        repo: r.repo,
        commit: r.base_commit,
        testCommand: "pytest -rA",
        logParser: r.repo === "django/django" ? "django" : r.repo === "sympy/sympy" ? "sympy" : "pytest",
      });
    const { tasks, skipped } = sweBenchRowsToTasks(rows, anySpec);
    expect(skipped).toEqual([]);
    expect(tasks).toHaveLength(500);
    const django = tasks.find((t) => t.id === "django__django-11099");
    expect(django?.failToPass.length).toBeGreaterThan(0);
    expect(django?.metadata.difficulty).toBeDefined();
  });

  it("directives equal the tail of each row's eval_script test command (all rows)", async () => {
    let checked = 0;
    for (const file of Object.values(files)) {
      const path = resolve(datasetsDir!, file);
      if (!existsSync(path)) continue;
      const { rows } = await loadSweBench(path);
      for (const r of rows) {
        if (!r.eval_script) continue;
        const command = r.eval_script.split(": '>>>>> Start Test Output'\n")[1]?.split("\n")[0] ?? "";
        const directives = testDirectives(r.test_patch, r.repo);
        const tail = directives.join(" ");
        expect(command.endsWith(directives.length ? ` ${tail}` : tail), `${r.instance_id}: ${command}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(800);
  });

  it("gold predictions for Verified round-trip through the predictions parser", async () => {
    const { rows } = await loadSweBench(resolve(datasetsDir!, files.verified));
    const text = goldPredictions(rows)
      .map((x) => JSON.stringify(x))
      .join("\n");
    const { predictions, errors } = parsePredictions(text);
    expect(errors).toEqual([]);
    expect(predictions).toHaveLength(500);
    expect(predictions[0]?.model_patch).toBe(rows[0]?.patch);
    expect(readFileSync(resolve(datasetsDir!, files.verified), "utf8").length).toBeGreaterThan(1_000_000);
  });
});
