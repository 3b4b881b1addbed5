/**
 * Parquet dataset files for the tests, written as Hugging Face stores a SWE-bench dataset: one
 * STRING column per field (FAIL_TO_PASS / PASS_TO_PASS JSON-encoded text), snappy pages.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { parquetWriteFile } from "hyparquet-writer";

/**
 * Write `rows` (objects of strings, numbers or null) to a parquet file at `file`; the columns are
 * the union of the rows' keys, strings written as STRING, numbers as DOUBLE.
 */
export function writeParquetRows(file: string, rows: readonly Record<string, unknown>[], opts: { codec?: "SNAPPY" | "UNCOMPRESSED" } = {}): void {
  mkdirSync(dirname(file), { recursive: true });
  const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const columnData = names.map((name) => {
    const data = rows.map((r) => {
      const v = r[name];
      return v === undefined ? null : Array.isArray(v) ? JSON.stringify(v) : v;
    });
    const numeric = data.every((v) => v === null || typeof v === "number");
    return { name, data, type: numeric ? ("DOUBLE" as const) : ("STRING" as const) };
  });
  parquetWriteFile({ filename: file, columnData, ...(opts.codec ? { codec: opts.codec } : {}) });
}
