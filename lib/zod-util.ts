/**
 * Helpers to turn zod issues into messages that name the field, the file and the line.
 */
import type { z } from "zod";
import { RecordError } from "./errors";

/**
 * "field.path: message; other.field: message" for a zod error. An absent required field reads
 * "field: missing (expected string)".
 */
export function formatZodIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const where = i.path.length ? i.path.join(".") : "(record)";
      const absent = i.code === "invalid_type" && /received undefined$/.test(i.message);
      return `${where}: ${absent ? `missing (expected ${i.expected})` : i.message}`;
    })
    .join("; ");
}

/**
 * Parse `value` with `schema`; on failure throw a RecordError naming file, line and fields.
 * @throws RecordError
 */
export function parseRecord<S extends z.ZodTypeAny>(
  schema: S,
  value: unknown,
  where: { file?: string; line?: number; what?: string } = {},
): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const loc = [where.file, where.line !== undefined ? `line ${where.line}` : undefined].filter(Boolean).join(":");
  const first = r.error.issues[0];
  throw new RecordError(
    `${where.what ?? "record"}${loc ? ` at ${loc}` : ""}: ${formatZodIssues(r.error)}`,
    where.file,
    where.line,
    first?.path.join("."),
  );
}
