/**
 * Test directives: which test files (or modules) the evaluation's test command runs, taken
 * from the hidden test patch.
 *
 * Reproduces the public SWE-bench harness's get_test_directives (v4.1
 * `swebench/harness/test_spec/python.py`; v5.0 ships the resulting command inside each row's
 * `eval_script`): the `b/` paths of the patch's `diff --git a/… b/…` lines, minus files whose
 * name ends with a non-test extension; for django, `tests/` and `.py` are dropped and slashes
 * become dots (`tests/foo/test_x.py` → `foo.test_x`) because its runner takes module labels.
 * Other repositories (sympy's `bin/test`, pytest) take the paths as they are. Checked against all
 * 823 Lite and Verified rows: the directives are exactly the tail of the test command in each
 * row's `eval_script`.
 */

/**
 * Endings the harness treats as non-test files (NON_TEST_EXTS). "csv" has no dot there, so any
 * name ending in `csv` is dropped; kept as is.
 */
export const NON_TEST_EXTENSIONS: readonly string[] = [
  ".json",
  ".png",
  "csv",
  ".txt",
  ".md",
  ".jpg",
  ".jpeg",
  ".pkl",
  ".yml",
  ".yaml",
  ".toml",
];

/**
 * Files a git diff touches, in order: the path after the last ` b/` of every `diff --git a/… b/…`
 * header (like the harness's pattern, which is not anchored to the line start).
 */
export function diffTargetPaths(patch: string): string[] {
  const out: string[] = [];
  for (const m of patch.matchAll(/diff --git a\/[^\n]* b\/([^\n]*)/g)) out.push(m[1] as string);
  return out;
}

/**
 * The harness's test directives for a test patch.
 * @param testPatch the row's `test_patch` (a git diff)
 * @param repo `owner/name`
 * @returns paths (or django module labels), in patch order; empty when the patch only touches
 *   non-test files — the command then runs without directives (the whole suite), as the
 *   harness does.
 */
export function testDirectives(testPatch: string, repo: string): string[] {
  if (repo === "swe-bench/humaneval") return ["test.py"];
  const files = diffTargetPaths(testPatch).filter((f) => !NON_TEST_EXTENSIONS.some((ext) => f.endsWith(ext)));
  if (repo !== "django/django") return files;
  return files.map((f) => {
    let d = f.endsWith(".py") ? f.slice(0, -".py".length) : f;
    if (d.startsWith("tests/")) d = d.slice("tests/".length);
    return d.replaceAll("/", ".");
  });
}
