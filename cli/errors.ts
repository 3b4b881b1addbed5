/**
 * The CLI's last word on an error: one line (or the error's own lines) for people, never a stack,
 * and the exit code (cli/exit-codes.ts): bad input → 2, anything else → 1.
 */
import { EXIT, UsageError, type ExitCode } from "./exit-codes";
import { RecordError } from "../lib/errors";
import { formatZodIssues } from "../lib/zod-util";
import type { z } from "zod";

const FS_WHAT: Record<string, string> = {
  ENOENT: "no such file or directory",
  EISDIR: "is a directory, expected a file",
  ENOTDIR: "is not a directory (or a part of the path is a file)",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
};

/**
 * The message and exit code of an error reaching the top of the CLI: a UsageError, a RecordError
 * (a record that failed its schema: names file, line and field), a zod error (its issues, field by
 * field), a file-system error (the path and what was wrong with it) exit 2; others exit 1.
 */
export function describeCliError(err: unknown): { message: string; exitCode: ExitCode } {
  if (err instanceof UsageError) return { message: err.message, exitCode: EXIT.usage };
  if (err instanceof RecordError) return { message: err.message, exitCode: EXIT.usage };
  const e = err as (Error & { code?: string; path?: string; syscall?: string; issues?: unknown[] }) | undefined;
  if (e && e.name === "ZodError" && Array.isArray(e.issues)) return { message: `invalid value: ${formatZodIssues(e as unknown as z.ZodError)}`, exitCode: EXIT.usage };
  if (e && typeof e.code === "string" && FS_WHAT[e.code] && typeof e.path === "string") {
    return { message: `${e.path}: ${FS_WHAT[e.code]}`, exitCode: EXIT.usage };
  }
  const msg = e instanceof Error ? e.message : String(err);
  return { message: msg, exitCode: EXIT.failure };
}
