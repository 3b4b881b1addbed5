/**
 * Patch-similarity reward (SWE-RL / CWM): difflib ratio, unidiff-style parsing, per-file mean,
 * and the reward formula. Reference vectors come from Python difflib + unidiff 0.7.3
 * (../shared/reference/patch-similarity-vectors.json relative to the repo root).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { getMatchingBlocks, sequenceMatcherRatio } from "../rewards/difflib";
import { computeReward, RewardConfigSchema } from "../rewards/reward";
import { normalizedFilePatches, parsePatchSet, patchSimilarity, pyStrip } from "../rewards/similarity";

interface Vectors {
  about: string;
  ratio: Array<{ a: string; b: string; ratio: number }>;
  patch_similarity: Array<{
    instance_id: string | null;
    variant: string;
    pred: string;
    oracle: string;
    per_file: Record<string, number>;
    mean: number;
    oracle_files?: Record<string, string>;
  }>;
}

const REL = "../shared/reference/patch-similarity-vectors.json";
const vectorsPath = [
  resolve(process.cwd(), REL),
  resolve(dirname(fileURLToPath(import.meta.url)), "..", REL),
].find((p) => existsSync(p));
const vectors: Vectors | undefined = vectorsPath ? (JSON.parse(readFileSync(vectorsPath, "utf8")) as Vectors) : undefined;
const TOL = 1e-12;

describe.skipIf(!vectors)(`reference vectors (${vectorsPath ?? `SKIPPED: ${REL} not found from the repo root`})`, () => {
  const v = vectors!;
  it("has vectors", () => {
    expect(v.ratio.length).toBeGreaterThan(0);
    expect(v.patch_similarity.length).toBeGreaterThan(0);
  });

  it.each(v?.ratio.map((r, i) => [i, r] as const) ?? [])("ratio #%i", (_i, r) => {
    expect(Math.abs(sequenceMatcherRatio(r.a, r.b) - r.ratio)).toBeLessThanOrEqual(TOL);
  });

  it.each(v?.patch_similarity.map((p) => [`${p.instance_id ?? "synthetic"} ${p.variant}`, p] as const) ?? [])(
    "patch similarity %s",
    (_name, p) => {
      const got = patchSimilarity(p.pred, p.oracle);
      expect(Object.keys(Object.fromEntries(got.files.map((f) => [f.path, f.similarity]))).sort()).toEqual(
        Object.keys(p.per_file).sort(),
      );
      for (const f of got.files) expect(Math.abs(f.similarity - p.per_file[f.path]!)).toBeLessThanOrEqual(TOL);
      expect(Math.abs(got.similarity - p.mean)).toBeLessThanOrEqual(TOL);
      if (p.oracle_files) expect(Object.fromEntries(normalizedFilePatches(p.oracle))).toEqual(p.oracle_files);
    },
  );
});

describe("sequenceMatcherRatio / getMatchingBlocks (CPython difflib)", () => {
  it("matches known difflib values", () => {
    expect(sequenceMatcherRatio("", "")).toBe(1);
    expect(sequenceMatcherRatio("abc", "")).toBe(0);
    expect(sequenceMatcherRatio("abcd", "bcde")).toBe(0.75);
    // difflib docs: SequenceMatcher(None, "abxcd", "abcd").get_matching_blocks()
    expect(getMatchingBlocks("abxcd", "abcd")).toEqual([
      [0, 0, 2],
      [3, 2, 2],
      [5, 4, 0],
    ]);
    // Python: SequenceMatcher(None, " abcd", "abcd abcd").get_matching_blocks()
    expect(getMatchingBlocks(" abcd", "abcd abcd")).toEqual([
      [0, 4, 5],
      [5, 9, 0],
    ]);
    // Among equally long blocks, the earliest in a, then the earliest in b.
    expect(getMatchingBlocks("ab", "abab")).toEqual([
      [0, 0, 2],
      [2, 4, 0],
    ]);
  });

  it("counts code points, not UTF-16 units (surrogate pairs)", () => {
    // Python: SequenceMatcher(None, "😀a", "😀b", autojunk=False).ratio() == 0.5 (2 elements each).
    expect(sequenceMatcherRatio("😀a", "😀b")).toBe(0.5);
    // Two different astral characters sharing a high surrogate have nothing in common.
    expect(sequenceMatcherRatio("😀", "😁")).toBe(0);
    expect(getMatchingBlocks("x😀y", "😀y")).toEqual([
      [1, 0, 2],
      [3, 2, 0],
    ]);
  });

  it("does not apply the autojunk 'popular' heuristic on long inputs", () => {
    const a = "a".repeat(300);
    const b = `${"a".repeat(299)}b`;
    // With autojunk=True, 'a' would be popular in b and the ratio would be 0.
    expect(sequenceMatcherRatio(a, b)).toBeCloseTo((2 * 299) / 600, 15);
  });
});

const PATCH = `diff --git a/pkg/mod.py b/pkg/mod.py
index 1111111..2222222 100644
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,3 +1,3 @@ def f():
 def f():
-    return 1
+    return 2
 
`;

describe("unidiff-style parsing and per-file texts", () => {
  it("builds hunk text with its normalized header, stripped", () => {
    const m = normalizedFilePatches(PATCH);
    expect([...m.entries()]).toEqual([["pkg/mod.py", "@@ -1,3 +1,3 @@ def f():\n def f():\n-    return 1\n+    return 2"]]);
    // An omitted hunk length prints as 1, like unidiff's str(hunk).
    const one = normalizedFilePatches("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n");
    expect(one.get("x")).toBe("@@ -1,1 +1,1 @@\n-a\n+b");
  });

  it("renames: 'rename from A to B' first, keyed by the source path", () => {
    const pure = "diff --git a/old.py b/new.py\nsimilarity index 100%\nrename from old.py\nrename to new.py\n";
    expect(Object.fromEntries(normalizedFilePatches(pure))).toEqual({ "old.py": "rename from old.py to new.py" });
    const withHunk = PATCH.replaceAll("a/pkg/mod.py", "a/pkg/old.py");
    const m = normalizedFilePatches(withHunk);
    expect([...m.keys()]).toEqual(["pkg/old.py"]);
    expect(m.get("pkg/old.py")!.split("\n")[0]).toBe("rename from pkg/old.py to pkg/mod.py");
    expect(patchSimilarity(withHunk, withHunk).similarity).toBe(1);
    // A rename in the prediction only does not match the oracle's unrenamed file.
    expect(patchSimilarity(withHunk, PATCH).files).toEqual([{ path: "pkg/mod.py", similarity: 0 }]);
  });

  it("new, deleted and binary files", () => {
    const added = "diff --git a/n.py b/n.py\nnew file mode 100644\n--- /dev/null\n+++ b/n.py\n@@ -0,0 +1 @@\n+x = 1\n";
    const deleted = "diff --git a/d.py b/d.py\ndeleted file mode 100644\n--- a/d.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n";
    const binary = "diff --git a/img.png b/img.png\nindex 1..2 100644\nBinary files a/img.png and b/img.png differ\n";
    const files = parsePatchSet(added + deleted + binary);
    expect(files.map((f) => [f.sourceFile, f.targetFile, f.isBinary])).toEqual([
      ["/dev/null", "b/n.py", false],
      ["a/d.py", "/dev/null", false],
      ["a/img.png", "b/img.png", true],
    ]);
    expect(Object.fromEntries(normalizedFilePatches(added + deleted + binary))).toEqual({
      "n.py": "@@ -0,0 +1,1 @@\n+x = 1",
      "d.py": "@@ -1,1 +0,0 @@\n-x = 1",
    });
  });

  it("files only in the prediction are dropped; files only in the oracle score 0", () => {
    const extra = PATCH + PATCH.replaceAll("pkg/mod.py", "pkg/other.py");
    const r = patchSimilarity(extra, PATCH);
    expect(r).toEqual({ similarity: 1, files: [{ path: "pkg/mod.py", similarity: 1 }] });
    const kept = patchSimilarity(extra, PATCH, { ignoreNonOracleFiles: false });
    expect(kept.files).toEqual([
      { path: "pkg/mod.py", similarity: 1 },
      { path: "pkg/other.py", similarity: 0 },
    ]);
    expect(kept.similarity).toBe(0.5);
    const missing = patchSimilarity(PATCH, extra);
    expect(missing.similarity).toBe(0.5);
  });

  it("unparseable or empty patches give no files", () => {
    // Hunk shorter than its header says.
    expect(normalizedFilePatches("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-a\n").size).toBe(0);
    // Hunk without a file.
    expect(normalizedFilePatches("@@ -1 +1 @@\n-a\n+b\n").size).toBe(0);
    // '+++' with no '---' ever seen (unidiff raises UnboundLocalError, which CWM catches).
    expect(normalizedFilePatches("+++ b/x\n@@ -1 +1 @@\n-a\n+b\n").size).toBe(0);
    // Garbage inside a hunk.
    expect(normalizedFilePatches("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\nzzz\n").size).toBe(0);
    expect(normalizedFilePatches("").size).toBe(0);
    expect(normalizedFilePatches("hello world\n").size).toBe(0);
    // Empty union: similarity 0, no files.
    expect(patchSimilarity("", "")).toEqual({ similarity: 0, files: [] });
    expect(patchSimilarity(PATCH, "")).toEqual({ similarity: 0, files: [] });
    expect(patchSimilarity("", PATCH)).toEqual({ similarity: 0, files: [{ path: "pkg/mod.py", similarity: 0 }] });
  });

  it("'\\ No newline at end of file' markers and Python's strip()", () => {
    const p = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file\n";
    expect(normalizedFilePatches(p).get("x")).toBe("@@ -1,1 +1,1 @@\n-a\n+b\n\\ No newline at end of file");
    // Python strips U+001C..U+001F and U+0085 but not U+FEFF.
    expect(pyStrip("\u001c\u0085 x \ufeff")).toBe("x \ufeff");
  });
});

describe("reward formula (SWE-RL / CWM)", () => {
  const thr = { mode: "similarity_threshold", scale: 1, threshold: 0.5 } as const;

  it("pass → −1 + scale; similarity ≥ t → −1 + t·scale; else −1", () => {
    expect(computeReward({ passed: true, similarity: 0 }, thr).reward).toBe(0);
    expect(computeReward({ passed: true }, { mode: "execution", scale: 2 }).reward).toBe(1);
    expect(computeReward({ passed: false, similarity: 0.5 }, thr)).toMatchObject({
      reward: -0.5,
      parts: { branch: "similarity", threshold: 0.5 },
    });
    expect(computeReward({ passed: false, similarity: 0.9 }, { ...thr, scale: 2 }).reward).toBe(0);
    expect(computeReward({ passed: false, similarity: 0.49 }, thr).reward).toBe(-1);
    expect(computeReward({ passed: false }, thr).reward).toBe(-1);
    expect(computeReward({ passed: false, similarity: 1 }, { mode: "execution" })).toMatchObject({
      reward: -1,
      parts: { branch: "fail", scale: 1, threshold: undefined },
    });
  });

  it("pass only: 2·pass − 1", () => {
    expect(computeReward({ passed: true }, { mode: "pass_only" }).reward).toBe(1);
    expect(computeReward({ passed: false, similarity: 1 }, { mode: "pass_only" }).reward).toBe(-1);
  });

  it("an empty union (similarity 0) never earns the threshold bonus", () => {
    const s = patchSimilarity("", "").similarity;
    expect(computeReward({ passed: false, similarity: s }, { ...thr, threshold: 0 }).reward).toBe(-1);
  });

  it("validates the config", () => {
    expect(RewardConfigSchema.parse({ mode: "execution" })).toEqual({ mode: "execution", scale: 1 });
    expect(RewardConfigSchema.safeParse({ mode: "similarity_threshold" }).success).toBe(false);
    expect(RewardConfigSchema.safeParse({ mode: "execution", threshold: 0.5 }).success).toBe(false);
    expect(RewardConfigSchema.safeParse({ mode: "execution", scale: 0 }).success).toBe(false);
    expect(RewardConfigSchema.safeParse({ ...thr, threshold: 1.5 }).success).toBe(false);
    expect(() => computeReward({ passed: true }, { mode: "nope" } as never)).toThrow();
  });
});
