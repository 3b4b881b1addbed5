/**
 * Option parsers shared by the commands. Each refuses a bad value with commander's
 * InvalidArgumentError, whose message names the rule; commander prefixes the flag and the value
 * (`error: option '--samples <k>' argument '0' is invalid. must be an integer ≥ 1`), and
 * cli/main.ts exits 2 (cli/exit-codes.ts).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { InvalidArgumentError } from "commander";
import { UsageError } from "./exit-codes";
import { loadAgentConfigArg } from "../agent/config";

/** An integer option value; anything else is refused with commander's usage error. */
export function int(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isInteger(n)) throw new InvalidArgumentError(`must be an integer (got ${JSON.stringify(v)})`);
  return n;
}

/** An integer ≥ `min` (a parser factory: `intAtLeast(1)`). */
export function intAtLeast(min: number): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`must be an integer ≥ ${min} (got ${JSON.stringify(v)})`);
    return n;
  };
}

/** A finite number in [min, max] (either bound optional). */
export function numberIn(min?: number, max?: number): (v: string) => number {
  const rule = min !== undefined && max !== undefined ? `a number from ${min} to ${max}` : min !== undefined ? `a number ≥ ${min}` : max !== undefined ? `a number ≤ ${max}` : "a number";
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || (min !== undefined && n < min) || (max !== undefined && n > max)) {
      throw new InvalidArgumentError(`must be ${rule} (got ${JSON.stringify(v)})`);
    }
    return n;
  };
}

/**
 * A path that must exist: a file, a directory, or either. `what` says what was expected, for the
 * message (`no such file or directory; expected a tasks file (Task JSONL or a SWE-bench dataset)`).
 */
export function existingPath(kind: "file" | "dir" | "any", what: string): (v: string) => string {
  return (v: string) => {
    let st: fs.Stats;
    try {
      st = fs.statSync(v);
    } catch {
      throw new InvalidArgumentError(`no such file or directory; expected ${what}`);
    }
    if (kind === "file" && st.isDirectory()) throw new InvalidArgumentError(`is a directory; expected ${what}`);
    if (kind === "dir" && !st.isDirectory()) throw new InvalidArgumentError(`is not a directory; expected ${what}`);
    return v;
  };
}

/** A repeatable option's accumulator, each value checked by `parse`. */
export function collectWith<T>(parse: (v: string) => T): (v: string, prev?: T[]) => T[] {
  return (v: string, prev: T[] = []) => [...prev, parse(v)];
}

/**
 * `--commit` of a repository option: the value given, else (a local clone, bare or not) its HEAD
 * resolved to a full sha. A URL needs `--commit`.
 * @throws UsageError for a URL without `--commit`, or a path git cannot read.
 */
export function commitOrHead(repo: string, commit: string | undefined): string {
  if (commit) return commit;
  if (/^(https?:|git@|ssh:)/.test(repo)) throw new UsageError(`--commit is needed with a repository URL (${repo}); a local clone defaults to its HEAD`);
  try {
    return execFileSync("git", ["-C", repo, "rev-parse", "--verify", "HEAD^{commit}"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch {
    throw new UsageError(`--repo ${repo}: not a git repository with a HEAD commit; give a clone, or --commit SHA`);
  }
}

/**
 * `--config JSON|FILE|PRESET` (agent/config.ts loadAgentConfigArg): checked when parsed, so a bad
 * one is a usage error naming the field (exit 2); the value stays the argument as given.
 */
export function agentConfigOption(v: string): string {
  try {
    loadAgentConfigArg(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return v;
}
