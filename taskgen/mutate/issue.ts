/**
 * Issue text for a mutate-fix task: the symptom, never the fix.
 *
 * - Templates (default): from the bug run's pytest output (`--tb=short`): which test fails, what
 *   was expected and what happened (the `E` lines of its failure section: assertion comparisons
 *   are read as "expected … got …", exceptions as "raises …"). No code of the library is quoted.
 * - Model (when an inference client is given, CWM §2.3 / SWE-smith issue generation): the model
 *   gets the failure output and writes a user-style report; the prompt asks it to leave out test
 *   names and code, and {@link stripLeaks} then removes any line that names a failing test or
 *   quotes a changed line of the diff. If too little is left, the template is used.
 */
import type { InferenceClient } from "../../inference-client/client";
import { rng } from "./candidates";

/** One failing test's symptom, from the log. */
export interface Failure {
  test: string;
  /** `E` lines of its failure section, prefix removed (≤ 12). */
  lines: string[];
}

const SECTION = /^_{3,} (.+?) _{3,}$/;

/** The failure sections of a pytest log, keyed by their header (`test_x`, `TestC.test_y[p]`). */
export function failureSections(log: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of log.split("\n")) {
    const m = SECTION.exec(line.trim());
    if (m) {
      current = [];
      out.set(m[1]!, current);
      continue;
    }
    if (/^={5,}/.test(line)) {
      current = undefined;
      continue;
    }
    current?.push(line);
  }
  return out;
}

/** The header pytest prints for a node id: `tests/t.py::C::test_y[p]` → `C.test_y[p]`. */
export function sectionName(id: string): string {
  return id.split("::").slice(1).join(".");
}

/** Symptoms of the failing tests (in the order given; missing sections give no lines). */
export function failuresFromLog(log: string, failing: readonly string[]): Failure[] {
  const sections = failureSections(log);
  return failing.map((test) => {
    const body = sections.get(sectionName(test)) ?? [];
    const lines = body
      .filter((l) => /^E\s/.test(l))
      .map((l) => l.replace(/^E\s{1,3}/, "").trimEnd())
      .filter((l) => l.trim() !== "")
      .slice(0, 12);
    return { test, lines };
  });
}

/** "expected … got …" for `assert <got> == <expected>`; exceptions as they are. */
export function describeSymptom(lines: readonly string[]): { expected?: string; actual?: string; error?: string } {
  for (const l of lines) {
    const m = /^assert (.+?) == (.+)$/.exec(l.trim());
    if (m) return { actual: m[1]!, expected: m[2]! };
    const e = /^([A-Z]\w*(?:Error|Exception|Warning|Exit|Interrupt)|AssertionError)\b:?\s*(.*)$/.exec(l.trim());
    if (e) return { error: e[2] ? `${e[1]}: ${e[2]}` : e[1]! };
  }
  return lines.length ? { error: lines[0]! } : {};
}

export interface IssueInput {
  repo: string;
  failToPass: readonly string[];
  log: string;
  /** The bug (original → buggy) and fix diffs, for the leak check. */
  startPatch: string;
  seed: number;
}

const TEMPLATES: Array<(v: { title: string; tests: string; details: string; count: number }) => string> = [
  (v) => `${v.title}\n\nAfter updating to the current code, ${v.tests} ${v.count === 1 ? "fails" : "fail"}.\n\n${v.details}\n\nThis used to work; the behaviour looks like a regression.`,
  (v) => `${v.title}\n\nI ran the test suite and ${v.tests} ${v.count === 1 ? "is" : "are"} failing:\n\n${v.details}\n\nCould someone take a look?`,
  (v) => `${v.title}\n\nSteps to reproduce: run ${v.tests}.\n\n${v.details}\n\nExpected the ${v.count === 1 ? "test" : "tests"} to pass.`,
];

function detailFor(f: Failure): string {
  const s = describeSymptom(f.lines);
  const what =
    s.expected !== undefined
      ? `Expected \`${s.expected}\`, but got \`${s.actual}\`.`
      : s.error
        ? `It fails with \`${s.error.slice(0, 300)}\`.`
        : "It fails (no assertion message).";
  const excerpt = f.lines.length ? `\n\n\`\`\`\n${f.lines.slice(0, 8).join("\n")}\n\`\`\`` : "";
  return `\`${f.test}\`: ${what}${excerpt}`;
}

/** A templated issue from the failing tests' output (at most 3 tests detailed). */
export function templateIssue(input: IssueInput): string {
  const failures = failuresFromLog(input.log, input.failToPass);
  const random = rng(input.seed);
  const shown = failures.slice(0, 3);
  const first = shown[0];
  const s = first ? describeSymptom(first.lines) : {};
  const title = s.error && !s.error.startsWith("assert")
    ? `# Unexpected ${s.error.split(":")[0]} in ${input.repo}`
    : s.expected !== undefined || s.error
      ? `# Wrong result in ${input.repo}`
      : `# Regression in ${input.repo}`;
  const tests =
    input.failToPass.length === 1
      ? `\`${input.failToPass[0]}\``
      : `${input.failToPass.length} tests (e.g. ${shown.map((f) => `\`${f.test}\``).join(", ")})`;
  const details = shown.map(detailFor).join("\n\n");
  const t = TEMPLATES[Math.floor(random() * TEMPLATES.length)]!;
  return stripLeaks(t({ title, tests, details, count: input.failToPass.length }), { tests: [], diff: input.startPatch }).text;
}

/** Code lines of a diff (both sides, trimmed, ≥ 8 characters): quoting one leaks the bug or fix. */
export function diffCodeLines(diff: string): string[] {
  return diff
    .split("\n")
    .filter((l) => /^[-+](?![-+]{2} )/.test(l))
    .map((l) => l.slice(1).trim())
    .filter((l) => l.length >= 8);
}

/**
 * Remove every line that names one of `tests` (full id or test function name) or contains a
 * changed code line of `diff`. @returns the text and how many lines were removed.
 */
export function stripLeaks(text: string, leaks: { tests: readonly string[]; diff: string }): { text: string; removed: number } {
  const names = new Set<string>();
  for (const t of leaks.tests) {
    names.add(t);
    const fn = t.split("::").pop()!.replace(/\[.*$/, "");
    if (fn.length >= 4) names.add(fn);
  }
  const code = diffCodeLines(leaks.diff);
  let removed = 0;
  const kept = text.split("\n").filter((line) => {
    const bad =
      [...names].some((n) => new RegExp(`(^|[^\\w])${n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}($|[^\\w])`).test(line)) ||
      code.some((c) => line.includes(c));
    if (bad) removed++;
    return !bad;
  });
  return { text: kept.join("\n").replace(/\n{3,}/g, "\n\n").trim(), removed };
}

/**
 * A model-written issue: the failure output (E lines only) goes in, a report of the symptom comes
 * out, leaks stripped. Falls back to the template when the model fails or little text is left.
 */
export async function modelIssue(
  client: InferenceClient,
  input: IssueInput,
  opts: { maxTokens?: number; temperature?: number } = {},
): Promise<{ text: string; source: "model" | "template"; removed: number }> {
  const failures = failuresFromLog(input.log, input.failToPass).slice(0, 3);
  const evidence = failures.map((f, i) => `Failure ${i + 1}:\n${f.lines.join("\n") || "(no message)"}`).join("\n\n");
  const prompt =
    `You are a user of the Python project ${input.repo}. After a recent change some behaviour broke. ` +
    `Here is what the failing checks printed:\n\n${evidence}\n\n` +
    "Write a GitHub issue (title line starting with '# ', then 1–3 short paragraphs) describing the symptom: " +
    "what you did, what you expected and what happened instead. Do NOT mention test names, test files or " +
    "the test suite, do NOT guess at the cause or propose a fix, and do NOT quote library source code.";
  try {
    const r = await client.chat({
      messages: [{ role: "user", content: prompt }],
      maxTokens: opts.maxTokens ?? 600,
      temperature: opts.temperature ?? 0.7,
    });
    const stripped = stripLeaks(r.message.content, { tests: input.failToPass, diff: input.startPatch });
    if (stripped.text.length >= 80) return { text: stripped.text, source: "model", removed: stripped.removed };
  } catch {
    // fall through to the template
  }
  return { text: templateIssue(input), source: "template", removed: 0 };
}
