/**
 * Problem statements for commit-mined tasks, from templates over the failing tests' output (no
 * model), and the leak check that rejects a statement quoting the gold patch.
 */

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
