/**
 * Patch similarity of SWE-RL (Wei et al., 2025, "SWE-RL: Advancing LLM Reasoning via
 * Reinforcement Learning on Open Software Evolution") as released in CWM
 * (facebookresearch/cwm, `cwm/rl/swerl/similarities.py`, used with `ignore_non_oracle_files=True`).
 *
 * Both patches are parsed the way the Python `unidiff` 0.7.3 library's `PatchSet` parses them
 * (re-implemented here: {@link parsePatchSet}); each non-binary file becomes a text made of its
 * hunks (`str(hunk)`: the `@@ -s,l +s,l @@ section` header and the prefixed lines, each hunk
 * Python-`strip()`ped) joined by "\n", preceded by `rename from A to B` for renames; files of the
 * prediction that the oracle does not touch are dropped; every file of the union scores
 * `difflib.SequenceMatcher(None, pred, oracle, autojunk=False).ratio()`, or 0 when either side
 * is empty/missing; the similarity is the mean. A patch that unidiff cannot parse yields no files.
 */
import { sequenceMatcherRatio } from "./difflib";

/** unidiff's `/dev/null` marker for the missing side of an added or deleted file. */
export const DEV_NULL = "/dev/null";

/** The patch could not be parsed (Python: `UnidiffParseError`, or an `UnboundLocalError` inside unidiff). */
export class UnidiffParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnidiffParseError";
  }
}

/** One hunk as unidiff keeps it. Numbers are canonical decimal strings (Python ints are unbounded). */
export interface ParsedHunk {
  sourceStart: string;
  sourceLength: string;
  targetStart: string;
  targetLength: string;
  /** Text after `@@ … @@` and one optional space, up to (not including) the newline. */
  sectionHeader: string;
  /** `str(line)` of each line: its type (`+`, `-`, ` `, `\`, or "" for a trailing empty line) and value, newline included. */
  lines: string[];
}

/** One file of a patch as unidiff's `PatchedFile` keeps it (`null` only for a binary file's missing target). */
export interface ParsedFile {
  sourceFile: string | null;
  targetFile: string | null;
  isBinary: boolean;
  hunks: ParsedHunk[];
}

// Python `str.isspace()` / `re` `\s` on str: differs from JS `\s` / trim() (no U+FEFF; adds U+001C–U+001F, U+0085).
const PY_WS = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_STRIP = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, "gu");

/** Python `s.strip()` (no argument): removes leading and trailing Unicode whitespace as Python defines it. */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, "");
}

// unidiff 0.7.3 `constants.py`, translated to JS regex semantics: Python `\d` on str is any
// Unicode decimal digit (`\p{Nd}`), Python `.` excludes only "\n", `.` under DOTALL is `[\s\S]`.
const RE_DIFF_GIT_HEADER = /^diff --git ((?:a\/)?[^\t\n]+) ((?:b\/)?[^\t\n]+)/u;
const RE_DIFF_GIT_NEW_FILE = /^new file mode \p{Nd}+\n$/u;
const RE_DIFF_GIT_DELETED_FILE = /^deleted file mode \p{Nd}+\n$/u;
const RE_SOURCE_FILENAME = /^--- ([^\t\n]+)(?:\t([^\n]+))?/u;
const RE_TARGET_FILENAME = /^\+\+\+ ([^\t\n]+)(?:\t([^\n]+))?/u;
const RE_HUNK_HEADER = /^@@ -(\p{Nd}+)(?:,(\p{Nd}+))? \+(\p{Nd}+)(?:,(\p{Nd}+))? @@[ ]?([^\n]*)/u;
const RE_HUNK_BODY_LINE = /^([- +\\])([\s\S]*)/u;
const RE_HUNK_EMPTY_BODY_LINE = /^([- +\\]?)([\r\n]{1,2})/u;
const RE_NO_NEWLINE_MARKER = /^\\ No newline at end of file/u;
const RE_BINARY_DIFF = new RegExp(
  `^Binary files? ([^\\t]+?)(?:\\t([${PY_WS}0-9:+-]+))?(?: and ([^\\t]+?)(?:\\t([${PY_WS}0-9:+-]+))?)? (differ|has changed)`,
  "u",
);
const NO_NEWLINE_VALUE = " No newline at end of file";
const IS_ND = /^\p{Nd}$/u;

/** Python `int(s)` for a run of Unicode decimal digits, as a canonical decimal string. */
function pyIntString(digits: string): string {
  let ascii = "";
  for (const ch of digits) {
    const cp = ch.codePointAt(0)!;
    if (cp >= 0x30 && cp <= 0x39) {
      ascii += ch;
      continue;
    }
    // Unicode guarantees Nd characters come in contiguous runs of ten, 0 through 9.
    let start = cp;
    while (IS_ND.test(String.fromCodePoint(start - 1))) start--;
    ascii += String((cp - start) % 10);
  }
  return BigInt(ascii).toString();
}

/** Lines as Python's `StringIO` iterates them: split after each "\n" only, terminators kept. */
function pyLines(text: string): string[] {
  const out: string[] = [];
  let from = 0;
  while (from < text.length) {
    const nl = text.indexOf("\n", from);
    const to = nl === -1 ? text.length : nl + 1;
    out.push(text.slice(from, to));
    from = to;
  }
  return out;
}

/** Python `s[2:]` (code points, not UTF-16 units). */
function dropTwoCodePoints(s: string): string {
  let k = 0;
  for (let n = 0; n < 2 && k < s.length; n++) {
    const c = s.charCodeAt(k);
    const d = s.charCodeAt(k + 1);
    k += c >= 0xd800 && c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff ? 2 : 1;
  }
  return s.slice(k);
}

const UNBOUND = Symbol("unbound");

/**
 * Parse a unified diff exactly as unidiff 0.7.3's `PatchSet(text)` does (default options, str
 * input): `diff --git` headers (the path split is unidiff's greedy regex, not git's), `new file
 * mode` / `deleted file mode` (→ {@link DEV_NULL}), `---` / `+++` headers, hunks whose line counts
 * must match their header, `\ No newline at end of file` markers, trailing empty lines, and
 * `Binary files … differ` lines. Everything else is "patch info" and ignored.
 *
 * @returns the files, in patch order; `[]` for an empty text or one with no diff headers.
 * @throws UnidiffParseError where unidiff raises `UnidiffParseError`, and where its parser hits
 *   an `UnboundLocalError` (a `+++` header with no `---` header anywhere before it).
 */
export function parsePatchSet(text: string): ParsedFile[] {
  const files: ParsedFile[] = [];
  const lines = pyLines(text);
  let current: ParsedFile | null = null;
  let hasPatchInfo = false;
  // Locals of unidiff's `_parse`, shared between its branches (stale values are reused there).
  let sourceFile: string | null | typeof UNBOUND = UNBOUND;
  let sourceTimestampBound = false;

  let idx = 0;
  while (idx < lines.length) {
    const line = lines[idx++]!;

    const git = RE_DIFF_GIT_HEADER.exec(line);
    if (git) {
      hasPatchInfo = true;
      sourceFile = git[1]!;
      current = { sourceFile: git[1]!, targetFile: git[2]!, isBinary: false, hunks: [] };
      files.push(current);
      continue;
    }

    if (RE_DIFF_GIT_NEW_FILE.test(line)) {
      if (current === null || !hasPatchInfo) throw new UnidiffParseError(`Unexpected new file found: ${line}`);
      current.sourceFile = DEV_NULL;
      continue;
    }

    if (RE_DIFF_GIT_DELETED_FILE.test(line)) {
      if (current === null || !hasPatchInfo) throw new UnidiffParseError(`Unexpected deleted file found: ${line}`);
      current.targetFile = DEV_NULL;
      continue;
    }

    const src = RE_SOURCE_FILENAME.exec(line);
    if (src) {
      sourceFile = src[1]!;
      sourceTimestampBound = true;
      // A new `---` resets the current file unless it names the same source (git header, rename).
      if (current !== null && current.sourceFile !== sourceFile) current = null;
      continue;
    }

    const tgt = RE_TARGET_FILENAME.exec(line);
    if (tgt) {
      const targetFile = tgt[1]!;
      if (current !== null && current.targetFile !== targetFile) {
        throw new UnidiffParseError(`Target without source: ${line}`);
      }
      if (current === null) {
        if (sourceFile === UNBOUND || !sourceTimestampBound) {
          throw new UnidiffParseError(`Target without any source header before it (Python UnboundLocalError): ${line}`);
        }
        current = { sourceFile, targetFile, isBinary: false, hunks: [] };
        files.push(current);
        hasPatchInfo = false;
      }
      continue;
    }

    const hh = RE_HUNK_HEADER.exec(line);
    if (hh) {
      hasPatchInfo = false;
      if (current === null) throw new UnidiffParseError(`Unexpected hunk found: ${line}`);
      const hunk: ParsedHunk = {
        sourceStart: pyIntString(hh[1]!),
        sourceLength: hh[2] === undefined ? "1" : pyIntString(hh[2]),
        targetStart: pyIntString(hh[3]!),
        targetLength: hh[4] === undefined ? "1" : pyIntString(hh[4]),
        sectionHeader: hh[5]!,
        lines: [],
      };
      // Counting lines relative to the start is the same as unidiff's absolute line numbers.
      const srcLen = Number(hunk.sourceLength);
      const tgtLen = Number(hunk.targetLength);
      let srcSeen = 0;
      let tgtSeen = 0;
      while (idx < lines.length) {
        const body = lines[idx++]!;
        const m = RE_HUNK_BODY_LINE.exec(body) ?? RE_HUNK_EMPTY_BODY_LINE.exec(body);
        if (!m) throw new UnidiffParseError(`Hunk diff line expected: ${body}`);
        const type = m[1] === "" ? " " : m[1]!;
        if (type === "+") tgtSeen++;
        else if (type === "-") srcSeen++;
        else if (type === " ") {
          srcSeen++;
          tgtSeen++;
        }
        if (srcSeen > srcLen || tgtSeen > tgtLen) throw new UnidiffParseError("Hunk is longer than expected");
        hunk.lines.push(type + m[2]!);
        if (srcSeen === srcLen && tgtSeen === tgtLen) break;
      }
      if (srcSeen < srcLen || tgtSeen < tgtLen) throw new UnidiffParseError("Hunk is shorter than expected");
      current.hunks.push(hunk);
      continue;
    }

    if (RE_NO_NEWLINE_MARKER.test(line)) {
      if (current === null) throw new UnidiffParseError(`Unexpected marker: ${line}`);
      const last = current.hunks[current.hunks.length - 1];
      if (last === undefined) throw new UnidiffParseError(`Unexpected marker:${NO_NEWLINE_VALUE}`);
      last.lines.push(`\\${NO_NEWLINE_VALUE}\n`);
      continue;
    }

    if (line === "\n" && current !== null) {
      const last = current.hunks[current.hunks.length - 1];
      if (last === undefined) throw new UnidiffParseError("Unexpected trailing newline character");
      last.lines.push("\n");
      continue;
    }

    // Anything else is patch info (index lines, rename from/to, similarity index, prose, …).
    if (!hasPatchInfo) {
      current = null;
      hasPatchInfo = true;
    }
    const bin = RE_BINARY_DIFF.exec(line);
    if (bin) {
      sourceFile = bin[1]!;
      if (current !== null) current.isBinary = true;
      else files.push({ sourceFile: bin[1]!, targetFile: bin[3] ?? null, isBinary: true, hunks: [] });
      hasPatchInfo = false;
      current = null;
    }
  }
  return files;
}

/** unidiff `str(hunk)`: `@@ -a,b +c,d @@[ section]\n` followed by every line with its prefix. */
export function hunkToString(h: ParsedHunk): string {
  const head = `@@ -${h.sourceStart},${h.sourceLength} +${h.targetStart},${h.targetLength} @@${h.sectionHeader ? ` ${h.sectionHeader}` : ""}\n`;
  return head + h.lines.join("");
}

/** unidiff `PatchedFile.is_rename`: neither side is /dev/null and the paths differ after their first two characters. */
export function isRename(f: ParsedFile): boolean {
  return (
    f.sourceFile !== DEV_NULL &&
    f.targetFile !== DEV_NULL &&
    dropTwoCodePoints(f.sourceFile ?? "") !== dropTwoCodePoints(f.targetFile ?? "")
  );
}

/** unidiff `PatchedFile.path`: the source path (the target for added files and renames) without an `a/` or `b/` prefix. */
export function filePath(f: ParsedFile): string {
  let p = f.sourceFile;
  if (p === null || p === DEV_NULL || (isRename(f) && f.targetFile !== null && f.targetFile !== DEV_NULL)) {
    p = f.targetFile;
  }
  p ??= "";
  return p.startsWith("a/") || p.startsWith("b/") ? p.slice(2) : p;
}

/**
 * CWM `get_normalized_file_patch`: path → normalized change text for every non-binary file of
 * `patchText`, in first-seen order (a later file with the same path replaces the text).
 * Renames are keyed by their source path (without `a/`) and start with `rename from A to B`.
 * @returns an empty map for an empty or unparseable patch; never throws.
 */
export function normalizedFilePatches(patchText: string): Map<string, string> {
  const result = new Map<string, string>();
  let files: ParsedFile[];
  try {
    files = parsePatchSet(patchText);
  } catch (e) {
    if (e instanceof UnidiffParseError) return result;
    throw e;
  }
  for (const f of files) {
    if (f.isBinary) continue;
    let header = "";
    let path: string;
    if (isRename(f)) {
      let s = f.sourceFile ?? "";
      let t = f.targetFile ?? "";
      if (s.startsWith("a/")) s = s.slice(2);
      if (t.startsWith("b/")) t = t.slice(2);
      header = `rename from ${s} to ${t}`;
      path = s;
    } else {
      path = filePath(f);
    }
    const body = f.hunks.map((h) => pyStrip(hunkToString(h))).join("\n");
    result.set(path, pyStrip(`${header}\n${body}`));
  }
  return result;
}

/** Per-file score and the mean; see {@link patchSimilarity}. */
export interface PatchSimilarity {
  /** Mean of `files[].similarity`, in [0, 1]; 0 when `files` is empty. */
  similarity: number;
  /** Every file of the union: the oracle's files in patch order, then (if kept) prediction-only files. */
  files: Array<{ path: string; similarity: number }>;
}

/**
 * SWE-RL / CWM patch similarity of a predicted patch against the oracle (reference) patch.
 *
 * Each file of the union scores `SequenceMatcher(None, pred_text, oracle_text, autojunk=False)
 * .ratio()`, or 0 when either text is empty (file missing on one side, unparseable or empty
 * patch, hunk-less file); `similarity` is the mean over the files.
 *
 * Empty union (neither patch has a non-binary file): `similarity` 0 and `files` `[]`. CWM has no
 * mean there and its reward is −1; {@link computeReward} with `similarity: 0` and a threshold in
 * [0, 1] gives the same −1, or pass `undefined` when `files` is empty.
 *
 * @param options.ignoreNonOracleFiles drop prediction files the oracle does not touch (CWM: true).
 */
export function patchSimilarity(
  pred: string,
  oracle: string,
  options: { ignoreNonOracleFiles?: boolean } = {},
): PatchSimilarity {
  const ignore = options.ignoreNonOracleFiles ?? true;
  const o = normalizedFilePatches(oracle);
  const p = normalizedFilePatches(pred);
  const paths = [...o.keys()];
  if (!ignore) for (const k of p.keys()) if (!o.has(k)) paths.push(k);
  const files = paths.map((path) => {
    const pt = p.get(path) ?? "";
    const ot = o.get(path) ?? "";
    return { path, similarity: pt === "" || ot === "" ? 0 : sequenceMatcherRatio(pt, ot) };
  });
  let sum = 0;
  for (const f of files) sum += f.similarity;
  return { similarity: files.length ? sum / files.length : 0, files };
}
