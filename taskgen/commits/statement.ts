/**
 * Problem statements for commit-mined tasks, from templates over the failing tests' output (no
 * model), and the leak check that rejects a statement quoting the gold patch.
 */
import type { InferenceClient } from "../../inference-client/client";
import { failuresFromLog, stripLeaks } from "../mutate/issue";

/** Added lines of the gold patch shorter than this (trimmed, in characters) are too generic to count as a leak. */
export const MIN_LEAK_CHARS = 12;

/**
 * The first added line of the gold patch (trimmed, at least `MIN_LEAK_CHARS` long) that the
 * statement contains, or undefined when none does. `goldAdded` holds the added lines' text
 * without the leading `+`. Whitespace runs are collapsed on both sides before comparing.
 */
export function goldLeak(statement: string, goldAdded: readonly string[], minChars = MIN_LEAK_CHARS): string | undefined {
  const norm = (s: string): string => s.replace(/\s+/g, " ").trim();
  const text = norm(statement);
  for (const line of goldAdded) {
    const l = norm(line);
    if (l.length >= minChars && text.includes(l)) return l;
  }
  return undefined;
}

/** A failing test of the task: its id and the tail of its output on the parent + test patch. */
export interface FailingTest {
  id: string;
  output: string;
}

/**
 * The template statement: which tests fail and how (each output cut to `maxOutputChars`
 * characters from its end). Throws when the result quotes an added line of the gold patch or
 * contains a diff header, so a caller never stores such a statement.
 */
export function templateStatement(failing: readonly FailingTest[], goldAdded: readonly string[], maxOutputChars = 1500): string {
  const parts = ["The following tests fail on the current code and should pass once the bug is fixed:", ""];
  for (const t of failing) {
    parts.push(`- \`${t.id}\``);
    const out = t.output.trim().slice(-maxOutputChars);
    if (out) parts.push("", "```", out, "```", "");
  }
  const statement = parts.join("\n").trimEnd() + "\n";
  const leak = goldLeak(statement, goldAdded);
  if (leak !== undefined) throw new Error(`problem statement quotes the gold patch: ${leak}`);
  if (/^(diff --git |@@ .* @@|\+\+\+ b\/)/m.test(statement)) throw new Error("problem statement contains a diff");
  return statement;
}

/** The added lines of a diff (without the `+`), `+++` headers left out: what {@link goldLeak} compares against. */
export function addedLines(diff: string): string[] {
  return diff
    .split("\n")
    .filter((l) => l.startsWith("+") && !l.startsWith("+++ "))
    .map((l) => l.slice(1));
}

/** What a mined task's statement is made from. */
export interface MinedStatementInput {
  repo: string;
  /** FAIL_TO_PASS test ids (kept out of the text). */
  failToPass: readonly string[];
  /** The test run's log on the parent with the test patch applied (pytest `--tb=short`). */
  log: string;
  /** The gold patch (its added lines must not appear; its code lines are stripped). */
  goldPatch: string;
  /** The test patch (its code lines are stripped too: the hidden tests stay hidden). */
  testPatch: string;
}

/** Error lines (pytest's `E   …`) of the failing tests' sections, else of the whole log; test names and diff code lines stripped. */
export function failureEvidence(input: MinedStatementInput, maxLines = 12): string[] {
  const failures = failuresFromLog(input.log, input.failToPass);
  let lines = failures.flatMap((f) => f.lines);
  if (lines.length === 0) lines = input.log.split("\n").filter((l) => /^E\s{1,}\S/.test(l)).map((l) => l.replace(/^E\s+/, ""));
  const uniq = [...new Set(lines.map((l) => l.trimEnd()).filter((l) => l.trim() !== ""))];
  const text = stripLeaks(uniq.join("\n"), { tests: input.failToPass, diff: input.goldPatch + "\n" + input.testPatch }).text;
  return text.split("\n").filter((l) => l.trim() !== "" && !/\btest_\w+|tests?\/\S+\.py/.test(l)).slice(0, maxLines);
}

/**
 * The template statement of a mined task: the error output of the failing tests, with no test
 * name, no test path and no diff line. Throws (like {@link templateStatement}) when the text
 * quotes an added line of the gold patch or looks like a diff.
 */
export function minedStatement(input: MinedStatementInput): string {
  const ev = failureEvidence(input);
  const body = ev.length
    ? ["Using the library currently goes wrong: the following errors come up where the behaviour should be correct:", "", "```", ...ev, "```"]
    : ["Some behaviour of the library is wrong on the current code; the expected behaviour is not produced."];
  const statement = [`# Incorrect behaviour in ${input.repo}`, "", ...body, "", "Fix the library code so that the behaviour is correct; existing behaviour elsewhere must not change.", ""].join("\n");
  return checkStatement(statement, input.goldPatch);
}

/** Throws when `statement` quotes an added gold line or contains a diff; returns it unchanged otherwise. */
export function checkStatement(statement: string, goldPatch: string): string {
  const leak = goldLeak(statement, addedLines(goldPatch));
  if (leak !== undefined) throw new Error(`problem statement quotes the gold patch: ${leak}`);
  if (/^(diff --git |@@ .* @@|\+\+\+ b\/)/m.test(statement)) throw new Error("problem statement contains a diff");
  return statement;
}

/**
 * Back-translation (R2E-Gym style): the model reads the fix's diff and the failing output and
 * writes the issue a user would have filed, without naming tests or quoting code. The text is
 * stripped of test names and diff code lines, then checked ({@link checkStatement}). Falls back
 * to {@link minedStatement} when the model fails or leaves too little text.
 * @throws Error (from the checks) when neither text passes.
 */
export async function modelStatement(
  client: InferenceClient,
  input: MinedStatementInput,
  opts: { maxTokens?: number; temperature?: number } = {},
): Promise<{ text: string; source: "model" | "template" }> {
  const evidence = failureEvidence(input, 20).join("\n");
  const prompt =
    `You maintain the Python project ${input.repo}. A developer fixed a bug with the change below. ` +
    "Write the GitHub issue a user would have filed BEFORE the fix: a title line starting with '# ', then " +
    "1-3 short paragraphs with what they did, what they expected and what happened instead. Do NOT mention " +
    "tests, test names or test files, do NOT describe or quote the fix or any code of the change, and do NOT " +
    `propose a solution.\n\nThe change:\n${input.goldPatch.slice(0, 6000)}\n\nWhat failed before the change:\n${evidence || "(no output)"}`;
  try {
    const r = await client.chat({ messages: [{ role: "user", content: prompt }], maxTokens: opts.maxTokens ?? 600, temperature: opts.temperature ?? 0.7 });
    const stripped = stripLeaks(r.message.content, { tests: input.failToPass, diff: input.goldPatch + "\n" + input.testPatch }).text;
    if (stripped.length >= 80) return { text: checkStatement(stripped + "\n", input.goldPatch), source: "model" };
  } catch {
    // model failed or leaked: the template instead
  }
  return { text: minedStatement(input), source: "template" };
}
