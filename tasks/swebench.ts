/**
 * SWE-bench task instances: the row schema, a tolerant loader (JSON array, JSON object, JSONL),
 * and the conversion of a row into forager's shared Task record (tasks/schema.ts).
 *
 * Row fields as published (SWE-bench / SWE-bench_Lite / SWE-bench_Verified; the rows in
 * /work/shared/datasets): `instance_id` (`owner__repo-PR`), `repo` (`owner/repo`),
 * `base_commit`, `patch` (gold fix), `test_patch` (hidden tests), `problem_statement`,
 * `hints_text`, `created_at`, `version`, `environment_setup_commit`, `FAIL_TO_PASS` and
 * `PASS_TO_PASS` (JSON-encoded lists of test ids), Verified's `difficulty`, and the newer
 * harness export's `image`, `eval_script`, `log_parser`, `eval_type`. Every field is a string.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import type { ImageSpec } from "../images/spec";
import { parseHarnessEvalScript } from "../images/swebench-prebuilt";
import { testDirectives } from "../tasks/directives";
import { RecordError } from "../lib/errors";
import { formatZodIssues, parseRecord } from "../lib/zod-util";
import { TaskSchema, type Task } from "./schema";

// ---------------------------------------------------------------------------------------------
// Row schema

/** A list of test ids: a JSON-encoded string (as published) or an already decoded list. */
export const TestIdListSchema = z.union([z.array(z.string()), z.string()]).transform((value, ctx): string[] => {
  if (Array.isArray(value)) return value;
  let decoded: unknown;
  try {
    decoded = JSON.parse(value);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: `not a JSON list of test ids: ${(e as Error).message}` });
    return z.NEVER;
  }
  if (!Array.isArray(decoded) || !decoded.every((t) => typeof t === "string")) {
    ctx.addIssue({ code: "custom", message: "expected a JSON-encoded list of strings" });
    return z.NEVER;
  }
  return decoded;
});

/** Optional text field; null (some exports) is read as absent. */
const optionalText = z
  .string()
  .nullish()
  .transform((v) => v ?? undefined);

export const SweBenchRowSchema = z.looseObject({
  /** `owner__repo-PR`, e.g. `django__django-11099`. */
  instance_id: z.string().min(1),
  /** `owner/repo`. */
  repo: z.string().regex(/^[^/\s]+\/[^/\s]+$/, "expected owner/name"),
  base_commit: z.string().regex(/^[0-9a-f]{7,40}$/i, "expected a commit sha"),
  /** The gold fix (a git diff). */
  patch: z.string(),
  /** The hidden tests (a git diff). */
  test_patch: z.string(),
  problem_statement: z.string(),
  FAIL_TO_PASS: TestIdListSchema,
  PASS_TO_PASS: TestIdListSchema,
  hints_text: optionalText,
  /** ISO date, e.g. `2019-02-26T01:43:46Z`. */
  created_at: optionalText,
  /** Repository version the environment is keyed on, e.g. `3.0`, `0.12`. A number is tolerated
   *  and written back with String() (which loses trailing zeros: 0.20 → "0.2"). */
  version: z
    .union([z.string(), z.number()])
    .nullish()
    .transform((v) => (v === null || v === undefined ? undefined : String(v))),
  environment_setup_commit: optionalText,
  /** Verified only: `<15 min fix`, `15 min - 1 hour`, `1-4 hours`, `>4 hours`. */
  difficulty: optionalText,
  /** Newer export: the harness's prebuilt image name. */
  image: optionalText,
  /** Newer export: the harness's evaluation script (conda images). */
  eval_script: optionalText,
  /** Newer export: the harness's parser name, e.g. `parse_log_django`. */
  log_parser: optionalText,
  /** Newer export: `pass_and_fail` or `fail_only`. */
  eval_type: optionalText,
});
/** A validated row; FAIL_TO_PASS / PASS_TO_PASS decoded to lists. */
export type SweBenchRow = z.infer<typeof SweBenchRowSchema>;
/** A row as stored (lists may still be JSON strings). */
export type SweBenchRowInput = z.input<typeof SweBenchRowSchema>;

// ---------------------------------------------------------------------------------------------
// Record files: JSON array, JSON object (one record, or records keyed by id), JSONL

/** A record that could not be read; `line` is 1-based (for a parquet file: the 1-based row). */
export interface LoadError {
  line: number;
  /** The file the record is in, when the source has several files (a dataset directory) or is named. */
  file?: string;
  message: string;
  /** The first offending field, dotted (`FAIL_TO_PASS`, `model_patch`), when known. */
  field?: string;
  instanceId?: string;
}

/** One record found in a file, before validation. */
export interface RawRecord {
  /** 1-based line where the record starts. */
  line: number;
  /** The property name, when the file is a JSON object keyed by id. */
  key?: string;
  value: unknown;
}

export type RecordFileFormat = "json-array" | "json-object" | "json-record" | "jsonl" | "empty";

/** offset → 1-based line number, by binary search over the line starts. */
function lineIndex(text: string): (offset: number) => number {
  const starts = [0];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((starts[mid] as number) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
}

interface Span {
  start: number;
  end: number;
  key?: string;
}

/**
 * Spans of the members of the top-level array or object starting at `open` (strings and
 * nesting tracked, content not validated). `closed` is false when the container never closes;
 * `trailing` tells whether non-blank text follows it.
 */
function scanMembers(text: string, open: number): { spans: Span[]; closed: boolean; trailing: boolean } {
  const isObject = text[open] === "{";
  const spans: Span[] = [];
  let depth = 0;
  let inString = false;
  let escaped = false;
  let segStart = -1;
  let closed = false;
  let i = open;
  const finish = (end: number) => {
    if (segStart < 0) return;
    let s = segStart;
    let e = end;
    while (s < e && /\s/.test(text[s] as string)) s++;
    while (e > s && /\s/.test(text[e - 1] as string)) e--;
    if (e > s) spans.push({ start: s, end: e });
    segStart = -1;
  };
  for (; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
    } else if (c === "[" || c === "{") {
      depth++;
      if (depth === 1) {
        segStart = i + 1;
        continue;
      }
    } else if (c === "]" || c === "}") {
      depth--;
      if (depth === 0) {
        finish(i);
        closed = true;
        break;
      }
    } else if (c === "," && depth === 1) {
      finish(i);
      segStart = i + 1;
    }
  }
  if (!closed) finish(text.length);
  if (isObject) {
    for (const span of spans) {
      const m = /^("(?:[^"\\]|\\.)*")\s*:\s*/.exec(text.slice(span.start, span.end));
      if (!m) continue;
      try {
        span.key = JSON.parse(m[1] as string) as string;
      } catch {
        continue;
      }
      span.start += m[0].length;
    }
  }
  const trailing = closed && text.slice(i + 1).trim() !== "";
  return { spans, closed, trailing };
}

function parsesAsJsonObject(text: string): boolean {
  if (!text.startsWith("{")) return false;
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === "object" && !Array.isArray(v);
  } catch {
    return false;
  }
}

/**
 * Split a record file into raw records with their line numbers. Formats:
 * - a JSON array of records;
 * - a JSON object: one record when `isSingleRecord(object)`, otherwise records keyed by id;
 * - JSONL (one JSON value per line; blank lines skipped).
 * A malformed member of an array, or a malformed JSONL line, is reported and the rest is read.
 */
export function readRecordFile(
  text: string,
  isSingleRecord: (value: Record<string, unknown>) => boolean,
): { format: RecordFileFormat; records: RawRecord[]; errors: LoadError[] } {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const records: RawRecord[] = [];
  const errors: LoadError[] = [];
  const open = body.search(/\S/);
  if (open < 0) return { format: "empty", records, errors };
  const lineOf = lineIndex(body);
  let whole: unknown;
  let wholeOk = false;
  let wholeError = "";
  try {
    whole = JSON.parse(body);
    wholeOk = true;
  } catch (e) {
    wholeError = (e as Error).message;
  }
  const first = body[open];
  if (!wholeOk && first === "{" && !body.split("\n").some((l) => parsesAsJsonObject(l.trim()))) {
    // A (pretty-printed) JSON object with a syntax error, not JSON lines.
    const pos = /position (\d+)/.exec(wholeError);
    errors.push({ line: pos ? lineOf(Number(pos[1])) : lineOf(open), message: `invalid JSON: ${wholeError}` });
    return { format: "json-object", records, errors };
  }
  if (wholeOk && whole !== null && typeof whole === "object" && !Array.isArray(whole)) {
    const obj = whole as Record<string, unknown>;
    // Records keyed by id only when every member is an object: one record with a missing or bad
    // field stays one record, so the message names that field.
    const keyed = Object.values(obj).length > 0 && Object.values(obj).every((v) => v !== null && typeof v === "object" && !Array.isArray(v));
    if (isSingleRecord(obj) || !keyed) return { format: "json-record", records: [{ line: lineOf(open), value: obj }], errors };
    const spans = scanMembers(body, open).spans;
    const lineOfKey = new Map(spans.map((s) => [s.key, lineOf(s.start)]));
    for (const [key, value] of Object.entries(obj)) {
      records.push({ line: lineOfKey.get(key) ?? lineOf(open), key, value });
    }
    return { format: "json-object", records, errors };
  }
  if (first === "[" && (wholeOk || !scanMembers(body, open).trailing)) {
    const { spans, closed } = scanMembers(body, open);
    for (const span of spans) {
      const line = lineOf(span.start);
      try {
        records.push({ line, value: JSON.parse(body.slice(span.start, span.end)) });
      } catch (e) {
        errors.push({ line, message: `invalid JSON: ${(e as Error).message}` });
      }
    }
    if (!closed) errors.push({ line: lineOf(body.length), message: "invalid JSON: the array is not closed" });
    return { format: "json-array", records, errors };
  }
  if (wholeOk) {
    errors.push({ line: lineOf(open), message: "expected a JSON array, a JSON object or JSON lines" });
    return { format: "empty", records, errors };
  }
  const lines = body.split("\n");
  lines.forEach((raw, i) => {
    const lineText = raw.trim();
    if (lineText === "") return;
    try {
      records.push({ line: i + 1, value: JSON.parse(lineText) });
    } catch (e) {
      errors.push({ line: i + 1, message: `invalid JSON: ${(e as Error).message}` });
    }
  });
  return { format: "jsonl", records, errors };
}

/** Text of a record file and the 1-based lines holding bytes that are not UTF-8. */
export interface DecodedText {
  text: string;
  invalidUtf8Lines: number[];
}

/**
 * Decode a file's bytes as UTF-8. Lines with invalid bytes are listed (their bytes become U+FFFD
 * in `text`); {@link dropInvalidUtf8} then rejects the records on them.
 */
export function decodeUtf8(bytes: Uint8Array): DecodedText {
  const strict = new TextDecoder("utf-8", { fatal: true });
  try {
    return { text: strict.decode(bytes), invalidUtf8Lines: [] };
  } catch {
    const invalidUtf8Lines: number[] = [];
    let start = 0;
    let line = 1;
    while (start <= bytes.length) {
      let end = bytes.indexOf(0x0a, start);
      if (end < 0) end = bytes.length;
      try {
        strict.decode(bytes.subarray(start, end));
      } catch {
        invalidUtf8Lines.push(line);
      }
      start = end + 1;
      line++;
    }
    return { text: new TextDecoder("utf-8").decode(bytes), invalidUtf8Lines };
  }
}

/**
 * Reject the records that span a line with invalid UTF-8 (a record runs from its line to the
 * line before the next record), each with an error naming the line.
 */
export function dropInvalidUtf8(
  records: RawRecord[],
  invalidLines: readonly number[],
): { records: RawRecord[]; errors: LoadError[] } {
  if (invalidLines.length === 0) return { records, errors: [] };
  const sorted = [...records].sort((a, b) => a.line - b.line);
  const kept: RawRecord[] = [];
  const errors: LoadError[] = [];
  const reported = new Set<number>();
  sorted.forEach((rec, i) => {
    const next = sorted[i + 1];
    const end = next && next.line > rec.line ? next.line - 1 : Number.POSITIVE_INFINITY;
    const bad = invalidLines.find((l) => l >= rec.line && l <= end);
    if (bad === undefined) {
      kept.push(rec);
      return;
    }
    reported.add(bad);
    const v = rec.value as Record<string, unknown> | null;
    const id = v && typeof v === "object" && typeof v.instance_id === "string" ? v.instance_id : rec.key;
    errors.push({ line: bad, message: `invalid UTF-8 on line ${bad}; this record is ignored`, ...(id ? { instanceId: id } : {}) });
  });
  for (const l of invalidLines) if (!reported.has(l)) errors.push({ line: l, message: `invalid UTF-8 on line ${l}` });
  return { records: kept, errors };
}

/** Validate raw records with `schema`; each failure becomes a LoadError naming line and field. */
export function validateRecords<S extends z.ZodTypeAny>(
  records: readonly RawRecord[],
  schema: S,
  what: string,
): { values: { line: number; value: z.infer<S> }[]; errors: LoadError[] } {
  const values: { line: number; value: z.infer<S> }[] = [];
  const errors: LoadError[] = [];
  for (const rec of records) {
    let input = rec.value;
    if (rec.key !== undefined && input !== null && typeof input === "object" && !Array.isArray(input)) {
      const obj = input as Record<string, unknown>;
      if (obj.instance_id === undefined) input = { ...obj, instance_id: rec.key };
      else if (obj.instance_id !== rec.key) {
        errors.push({
          line: rec.line,
          field: "instance_id",
          instanceId: rec.key,
          message: `${what} keyed "${rec.key}" has instance_id ${JSON.stringify(obj.instance_id)}`,
        });
        continue;
      }
    }
    const r = schema.safeParse(input);
    if (r.success) {
      values.push({ line: rec.line, value: r.data });
      continue;
    }
    const id =
      input !== null && typeof input === "object" && typeof (input as Record<string, unknown>).instance_id === "string"
        ? ((input as Record<string, unknown>).instance_id as string)
        : undefined;
    const field = r.error.issues[0]?.path.join(".");
    errors.push({
      line: rec.line,
      message: `${what}${id ? ` ${id}` : ""}: ${formatZodIssues(r.error)}`,
      ...(field ? { field } : {}),
      ...(id ? { instanceId: id } : {}),
    });
  }
  return { values, errors };
}

// ---------------------------------------------------------------------------------------------
// Loading a dataset

export interface SweBenchLoadResult {
  rows: SweBenchRow[];
  /** Bad rows (with line and field) and duplicate ids; the other rows still load. */
  errors: LoadError[];
  /** Where each kept row is: instance id → file (when known) and 1-based line (parquet: row). */
  where: Map<string, { file?: string; line: number }>;
}

const looksLikeRow = (v: Record<string, unknown>) => typeof v.instance_id === "string" && "repo" in v;

/** Raw records of one source, with the file they came from and the errors found reading it. */
interface SourceRecords {
  file?: string;
  records: RawRecord[];
  errors: LoadError[];
}

/** Validate the records of several sources as SWE-bench rows; a repeated instance_id keeps the first. */
function rowsOf(sources: readonly SourceRecords[]): SweBenchLoadResult {
  const rows: SweBenchRow[] = [];
  const where = new Map<string, { file?: string; line: number }>();
  const errors: LoadError[] = [];
  const at = (w: { file?: string; line: number }, file?: string) =>
    w.file !== undefined && w.file !== file ? `${w.file}:${w.line}` : `line ${w.line}`;
  for (const src of sources) {
    const withFile = (e: LoadError): LoadError => (src.file !== undefined ? { ...e, file: src.file } : e);
    const { values, errors: invalid } = validateRecords(src.records, SweBenchRowSchema, "row");
    const found: LoadError[] = [...src.errors, ...invalid];
    for (const { line, value } of values) {
      const seen = where.get(value.instance_id);
      if (seen !== undefined) {
        found.push({
          line,
          field: "instance_id",
          instanceId: value.instance_id,
          message: `duplicate instance_id ${value.instance_id} (first at ${at(seen, src.file)}); this row is ignored`,
        });
        continue;
      }
      where.set(value.instance_id, { ...(src.file !== undefined ? { file: src.file } : {}), line });
      rows.push(value);
    }
    errors.push(...found.sort((x, y) => x.line - y.line).map(withFile));
  }
  return { rows, errors, where };
}

/**
 * Parse a SWE-bench dataset from text (JSON array, JSON object keyed by id or a single row,
 * or JSONL). A duplicate instance_id is reported and the first row kept. `invalidUtf8Lines`
 * (from {@link decodeUtf8}) rejects the records on those lines.
 */
export function parseSweBench(text: string, opts: { file?: string; invalidUtf8Lines?: readonly number[] } = {}): SweBenchLoadResult {
  const read = readRecordFile(text, looksLikeRow);
  const utf8 = dropInvalidUtf8(read.records, opts.invalidUtf8Lines ?? []);
  return rowsOf([{ ...(opts.file !== undefined ? { file: opts.file } : {}), records: utf8.records, errors: [...read.errors, ...utf8.errors] }]);
}

// ---------------------------------------------------------------------------------------------
// Parquet files and dataset directories (as Hugging Face stores a dataset repository)

/** A parquet cell as the row schema expects it: timestamps as ISO text, 64-bit integers as numbers. */
function plainCell(v: unknown): unknown {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? String(v) : v.toISOString().replace(/\.000Z$/, "Z");
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return new TextDecoder("utf-8").decode(v);
  if (Array.isArray(v)) return v.map(plainCell);
  return v;
}

/**
 * The rows of a parquet file as raw records, `line` = 1-based row. Read with hyparquet (every
 * codec through hyparquet-compressors: snappy, gzip, zstd, brotli, lz4), the format of the
 * parquet files of a Hugging Face dataset repository (`data/test-00000-of-00001.parquet`).
 * @throws Error when the file is not a readable parquet file (message names the file).
 */
export async function readParquetRecords(file: string): Promise<RawRecord[]> {
  // Loaded on first use: only parquet datasets need the reader and its codecs, and every command
  // that loads a task file would otherwise pay for them at start-up.
  const { asyncBufferFromFile, parquetReadObjects } = await import("hyparquet");
  const { compressors } = await import("hyparquet-compressors");
  let objects: Record<string, unknown>[];
  try {
    objects = (await parquetReadObjects({ file: await asyncBufferFromFile(file), compressors })) as Record<string, unknown>[];
  } catch (e) {
    throw new Error(`${file}: not a readable parquet file: ${(e as Error).message}`, { cause: e });
  }
  return objects.map((o, i) => ({ line: i + 1, value: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, plainCell(v)])) }));
}

const DATASET_FILE = /\.(parquet|jsonl|json)$/i;

/**
 * The split a dataset file holds, from its name as Hugging Face and the harness name them:
 * `test-00000-of-00001.parquet` → test, `test.jsonl` → test, `swe-bench-lite.dev.jsonl` → dev.
 */
export function splitOfFile(name: string): string | undefined {
  const base = name.replace(/^.*\//, "");
  const shard = /^(.+?)-\d{5}-of-\d{5}\.parquet$/i.exec(base);
  if (shard) return shard[1];
  const named = /(?:^|[._-])(train|dev|test|validation|valid)\.(?:parquet|jsonl|json)$/i.exec(base);
  return named?.[1]?.toLowerCase();
}

/**
 * The files of a dataset given as a file or a directory. A directory is read as a downloaded
 * dataset repository: its `data/` folder when present, else the directory itself, for `*.parquet`,
 * `*.jsonl` and `*.json` files (hidden files skipped, sorted by name). When the names show several
 * splits, `split` (default `test`) is taken.
 * @throws Error when the path does not exist, the directory holds no dataset file, or the
 *   requested split is not among several.
 */
export function datasetFiles(pathOrDir: string, split = "test"): string[] {
  const st = statSync(pathOrDir);
  if (!st.isDirectory()) return [pathOrDir];
  const dataDir = join(pathOrDir, "data");
  const dir = existsSync(dataDir) && statSync(dataDir).isDirectory() ? dataDir : pathOrDir;
  const files = readdirSync(dir)
    .filter((f) => !f.startsWith(".") && DATASET_FILE.test(f) && statSync(join(dir, f)).isFile())
    .sort()
    .map((f) => join(dir, f));
  const parquet = files.filter((f) => /\.parquet$/i.test(f));
  const chosen = parquet.length > 0 ? parquet : files; // a repository's parquet files are its data
  if (chosen.length === 0) throw new Error(`${pathOrDir}: no dataset file (*.parquet, *.jsonl, *.json) in ${dir}`);
  const splits = new Set(chosen.map((f) => splitOfFile(f)));
  if (splits.size <= 1) return chosen;
  const wanted = chosen.filter((f) => splitOfFile(f) === split);
  if (wanted.length === 0) {
    throw new Error(`${pathOrDir}: several splits (${[...splits].map((s) => s ?? "?").join(", ")}) and none named ${split}: pass the split's file`);
  }
  return wanted;
}

/** The raw records of one dataset file (parquet, or JSON / JSONL text with its UTF-8 checked). */
async function sourceRecords(file: string): Promise<SourceRecords> {
  if (/\.parquet$/i.test(file)) return { file, records: await readParquetRecords(file), errors: [] };
  const { text, invalidUtf8Lines } = decodeUtf8(await readFile(file));
  const read = readRecordFile(text, looksLikeRow);
  const utf8 = dropInvalidUtf8(read.records, invalidUtf8Lines);
  return { file, records: utf8.records, errors: [...read.errors, ...utf8.errors] };
}

/**
 * Read a SWE-bench dataset: a JSON / JSONL file, a parquet file, or a directory laid out as a
 * downloaded dataset repository (see {@link datasetFiles}); every error carries its file.
 * Duplicates across files keep the first row. I/O errors and unreadable parquet throw.
 */
export async function loadSweBench(pathOrDir: string, opts: { split?: string } = {}): Promise<SweBenchLoadResult> {
  const sources: SourceRecords[] = [];
  for (const file of datasetFiles(pathOrDir, opts.split)) sources.push(await sourceRecords(file));
  return rowsOf(sources);
}

// ---------------------------------------------------------------------------------------------
// Row → Task

/**
 * The shared Task for a row (kind "issue-fix"). The image spec comes from `specFor` (per
 * repository and version); its `commit` is set to the row's `base_commit`, the commit the task
 * starts from. `referencePatch` is the gold `patch`; metadata keeps `source: "swe-bench"`,
 * `version`, `created_at`, `environment_setup_commit`, `difficulty`, `hints_text` (those
 * present) and, when the row has them, the harness's `image`, `log_parser`, `eval_type` under
 * `harness`, with `test_command` and `preamble` (a JSON list) read from its `eval_script`
 * (images/swebench-prebuilt.ts parseHarnessEvalScript).
 * @throws RecordError when `specFor` has no spec for the row or the task does not validate.
 */
export function sweBenchRowToTask(row: SweBenchRow, specFor: (row: SweBenchRow) => ImageSpec | undefined): Task {
  const spec = specFor(row);
  if (!spec) {
    throw new RecordError(
      `no image spec for ${row.instance_id} (${row.repo}${row.version ? ` ${row.version}` : ""})`,
      undefined,
      undefined,
      "image",
    );
  }
  const metadata: Record<string, unknown> = { source: "swe-bench" };
  for (const key of ["version", "created_at", "environment_setup_commit", "difficulty", "hints_text"] as const) {
    if (row[key] !== undefined) metadata[key] = row[key];
  }
  const harness: Record<string, string> = {};
  for (const key of ["image", "log_parser", "eval_type"] as const) {
    const v = row[key];
    if (v !== undefined) harness[key] = v;
  }
  if (row.eval_script) {
    // The harness's test command and activation lines, for runs in its prebuilt images.
    const parsed = parseHarnessEvalScript(row.eval_script, testDirectives(row.test_patch, row.repo));
    if (parsed) Object.assign(harness, { test_command: parsed.testCommand, preamble: JSON.stringify(parsed.preamble) });
  }
  if (Object.keys(harness).length > 0) metadata.harness = harness;
  return parseRecord(
    TaskSchema,
    {
      id: row.instance_id,
      kind: "issue-fix",
      repo: row.repo,
      commit: row.base_commit,
      image: { ...spec, commit: row.base_commit },
      problemStatement: row.problem_statement,
      testPatch: row.test_patch,
      failToPass: row.FAIL_TO_PASS,
      passToPass: row.PASS_TO_PASS,
      referencePatch: row.patch,
      startPatch: "",
      metadata,
    },
    { what: `task ${row.instance_id}` },
  );
}

/** Convert many rows; rows without a spec (or invalid) are listed in `skipped`, not thrown. */
export function sweBenchRowsToTasks(
  rows: readonly SweBenchRow[],
  specFor: (row: SweBenchRow) => ImageSpec | undefined,
): { tasks: Task[]; skipped: { instanceId: string; reason: string }[] } {
  const tasks: Task[] = [];
  const skipped: { instanceId: string; reason: string }[] = [];
  for (const row of rows) {
    try {
      tasks.push(sweBenchRowToTask(row, specFor));
    } catch (e) {
      if (!(e instanceof RecordError)) throw e;
      skipped.push({ instanceId: row.instance_id, reason: e.message });
    }
  }
  return { tasks, skipped };
}
