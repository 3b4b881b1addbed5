/**
 * Candidate selection for commit-mined issue-fix tasks (forager issue 11): which commits of a
 * repository's history are worth turning into a task instance. Pure: it reads the text of
 * `git log --first-parent -m --numstat -p -U0` style records that the caller parsed into
 * `CommitRecord`s, and decides from paths, line counts and hunk headers alone.
 *
 * A candidate changes both non-test Python source and tests, and stays within R2E-Gym-like limits
 * (defaults in `DEFAULT_SELECT_SETTINGS`): at most 5 non-test files, at most 200 changed lines
 * (added + removed, non-test files), at most 4 functions/classes edited. Commits that only touch
 * docs, CI, packaging or formatting are rejected with a reason.
 */
import { z } from "zod";
import { diffBlocks, type DiffBlock } from "../../lib/diff";
import { isTestLikePath } from "../../rewards/forgery";

/** Limits of a candidate; every count is inclusive. */
export const SelectSettingsSchema = z.object({
  /** Most non-test files a commit may change. */
  maxSourceFiles: z.number().int().positive().default(5),
  /** Most added + removed lines over the non-test files. */
  maxChangedLines: z.number().int().positive().default(200),
  /** Most distinct functions/classes edited (from hunk headers and added def/class lines). */
  maxEntities: z.number().int().positive().default(4),
});
export type SelectSettings = z.infer<typeof SelectSettingsSchema>;
export const DEFAULT_SELECT_SETTINGS: SelectSettings = SelectSettingsSchema.parse({});

/** One file of a commit's diff against its (first) parent. */
export const FileChangeSchema = z.object({
  path: z.string().min(1),
  /** Lines added (0 for binary). */
  added: z.number().int().nonnegative(),
  /** Lines removed (0 for binary). */
  removed: z.number().int().nonnegative(),
  /** Hunk headers' function context (text after the second `@@`), one per hunk, may be "". */
  hunkContexts: z.array(z.string()).default([]),
  /** Added and removed lines' text (without the +/- sign), for formatting-only detection. */
  addedLines: z.array(z.string()).default([]),
  removedLines: z.array(z.string()).default([]),
});
export type FileChange = z.infer<typeof FileChangeSchema>;

/** A non-merge commit, or a PR merge's first-parent diff. */
export const CommitRecordSchema = z.object({
  sha: z.string().regex(/^[0-9a-f]{7,40}$/),
  parent: z.string().regex(/^[0-9a-f]{7,40}$/),
  subject: z.string(),
  files: z.array(FileChangeSchema),
});
export type CommitRecord = z.infer<typeof CommitRecordSchema>;

export type FileKind = "test" | "source" | "docs" | "ci" | "packaging" | "other";

/** Why a commit is not a candidate. */
export type RejectReason =
  | "no-source-change"
  | "no-test-change"
  | "docs-ci-packaging-only"
  | "formatting-only"
  | "too-many-files"
  | "too-many-lines"
  | "too-many-entities";

export type Selection =
  | { ok: true; sha: string; sourceFiles: string[]; testFiles: string[]; changedLines: number; entities: string[] }
  | { ok: false; sha: string; reason: RejectReason };

const PACKAGING = /(^|\/)(setup\.py|setup\.cfg|pyproject\.toml|requirements[^/]*\.(txt|in)|requirements\/.*\.(txt|in)|Pipfile(\.lock)?|poetry\.lock|tox\.ini|MANIFEST\.in|noxfile\.py|uv\.lock)$/;

/** Classifies a path: tests (Python files rewards/forgery.ts isTestLikePath calls test-like; other files under a test dir), Python source, docs, CI, packaging, other. */
export function fileKind(path: string): FileKind {
  const base = path.split("/").pop() ?? path;
  if (/(^|\/)\.github\/|(^|\/)\.gitlab-ci|(^|\/)\.circleci\/|\.travis\.yml$|azure-pipelines|\.pre-commit-config/.test(path)) return "ci";
  if (PACKAGING.test(path)) return "packaging";
  if (/(^|\/)(docs?|examples?)\//.test(path) || /\.(rst|md|txt)$/i.test(base) || /^(CHANGES|CHANGELOG|AUTHORS|LICENSE)/i.test(base)) return "docs";
  if (base.endsWith(".py")) {
    return isTestLikePath(path) ? "test" : "source";
  }
  if (/(^|\/)tests?\//.test(path)) return "test";
  return "other";
}

const squash = (s: string): string => s.replace(/\s+/g, "").replace(/["']/g, "'").replace(/,(?=[)\]}])/g, "");

/** True when the added and removed lines of the file are the same once whitespace, quote style and trailing commas are ignored. */
export function formattingOnly(f: FileChange): boolean {
  const a = squash(f.addedLines.join(""));
  const r = squash(f.removedLines.join(""));
  return a === r;
}

/** Distinct function/class names a source file's change edits: hunk contexts plus defs/classes added or removed. */
export function editedEntities(f: FileChange): string[] {
  const names = new Set<string>();
  const grab = (line: string): void => {
    const m = /^\s*(?:async\s+)?(def|class)\s+([A-Za-z_]\w*)/.exec(line);
    if (m) names.add(`${f.path}:${m[2]}`);
  };
  f.hunkContexts.forEach(grab);
  f.addedLines.forEach(grab);
  f.removedLines.forEach(grab);
  return [...names].sort();
}

/** Decides whether one commit is a candidate; pure, no git. */
export function selectCommit(c: CommitRecord, settings: SelectSettings = DEFAULT_SELECT_SETTINGS): Selection {
  const kinds = c.files.map((f) => ({ f, kind: fileKind(f.path) }));
  const sources = kinds.filter((k) => k.kind === "source").map((k) => k.f);
  const tests = kinds.filter((k) => k.kind === "test").map((k) => k.f);
  const reject = (reason: RejectReason): Selection => ({ ok: false, sha: c.sha, reason });
  if (sources.length === 0) {
    return reject(kinds.every((k) => k.kind === "docs" || k.kind === "ci" || k.kind === "packaging") ? "docs-ci-packaging-only" : "no-source-change");
  }
  const real = sources.filter((f) => !formattingOnly(f));
  if (real.length === 0) return reject("formatting-only");
  if (tests.length === 0) return reject("no-test-change");
  const nonTest = kinds.filter((k) => k.kind !== "test").map((k) => k.f);
  if (nonTest.length > settings.maxSourceFiles) return reject("too-many-files");
  const changedLines = nonTest.reduce((n, f) => n + f.added + f.removed, 0);
  if (changedLines > settings.maxChangedLines) return reject("too-many-lines");
  const entities = [...new Set(real.flatMap(editedEntities))].sort();
  if (entities.length > settings.maxEntities) return reject("too-many-entities");
  return { ok: true, sha: c.sha, sourceFiles: sources.map((f) => f.path), testFiles: tests.map((f) => f.path), changedLines, entities };
}

/**
 * Parses `git log --no-renames -U0 --format=%x00%H %P%x00%s -p <rev>` output (add `--first-parent -m`
 * to get PR merges' first-parent diffs) into records. A commit with several parents keeps the first.
 * Binary files count 0 lines. Throws nothing: malformed blocks are skipped.
 */
export function parseGitLog(text: string): CommitRecord[] {
  const out: CommitRecord[] = [];
  const blocks = text.split("\x00").slice(1);
  for (let i = 0; i + 1 < blocks.length; i += 2) {
    const [sha, parent] = (blocks[i] ?? "").trim().split(/\s+/);
    const rest = blocks[i + 1] ?? "";
    const nl = rest.indexOf("\n");
    const subject = nl < 0 ? rest : rest.slice(0, nl);
    if (!sha || !parent) continue;
    const files: FileChange[] = [];
    let cur: FileChange | undefined;
    for (const line of (nl < 0 ? "" : rest.slice(nl + 1)).split("\n")) {
      const d = /^diff --git a\/(.*) b\/(.*)$/.exec(line);
      if (d) {
        cur = { path: d[2] ?? "", added: 0, removed: 0, hunkContexts: [], addedLines: [], removedLines: [] };
        files.push(cur);
        continue;
      }
      if (!cur) continue;
      if (line.startsWith("@@")) {
        const m = /^@@ [^@]* @@ ?(.*)$/.exec(line);
        cur.hunkContexts.push(m?.[1] ?? "");
      } else if (line.startsWith("+++") || line.startsWith("---")) {
        continue;
      } else if (line.startsWith("+")) {
        cur.added++;
        cur.addedLines.push(line.slice(1));
      } else if (line.startsWith("-")) {
        cur.removed++;
        cur.removedLines.push(line.slice(1));
      }
    }
    out.push({ sha, parent, subject, files });
  }
  return out;
}

/**
 * Splits a commit's full unified diff (`git diff --no-renames --binary PARENT SHA`) by file into
 * the test patch (files `fileKind` calls "test") and the gold patch (every other file). Each part
 * keeps whole `diff --git` blocks in their order; either may be "".
 */
export function splitPatch(diff: string): { testPatch: string; goldPatch: string } {
  const blocks = diffBlocks(diff);
  const isTest = (b: DiffBlock): boolean => fileKind(b.path) === "test";
  return {
    testPatch: blocks.filter(isTest).map((b) => b.text).join(""),
    goldPatch: blocks.filter((b) => !isTest(b)).map((b) => b.text).join(""),
  };
}
