/**
 * Which test files pytest would collect, decided statically from the repository's own pytest
 * configuration (python_files, norecursedirs, testpaths) and the paths its CI, tox or nox
 * invocations name, so that inference runs the suite the way the repository does before adding
 * paths of its own (issue 30, class 4: `python_files = "test.py"` with `norecursedirs = "*"`
 * collects nothing under `tests/`, everything at the root).
 *
 * The rules follow pytest's collection (pytest 7/8, `_pytest/main.py` `_recurse` and
 * `_pytest/python.py` `pytest_collect_file`): a directory given as an argument is walked; a
 * subdirectory is entered unless its path matches a `norecursedirs` pattern (fnmatch on the
 * basename, or on the path when the pattern holds a `/`); a `.py` file is collected when its
 * basename (or path, likewise) matches a `python_files` pattern, or when it was named as an
 * argument itself.
 */

/** pytest's default `norecursedirs`. */
export const DEFAULT_NORECURSE = ["*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}"];
/** pytest's default `python_files`. */
export const DEFAULT_PYTHON_FILES = ["test_*.py", "*_test.py"];

/** Python's fnmatch as a RegExp (`*` matches any run of characters, `/` included; `?`; `[seq]`, `[!seq]`). */
export function fnmatchRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        let body = pattern.slice(i + 1, end);
        const neg = body.startsWith("!");
        if (neg) body = body.slice(1);
        re += `[${neg ? "^" : ""}${body.replace(/[\\\]^]/g, "\\$&")}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\/]/g, "\\$&");
  }
  return new RegExp(`^${re}$`, "s");
}

/** pytest's `fnmatch_ex`: the basename when the pattern has no slash, else the whole path (as if absolute: any leading directories match). */
export function fnmatchEx(pattern: string, relPath: string): boolean {
  if (!pattern.includes("/")) return fnmatchRegExp(pattern).test(relPath.slice(relPath.lastIndexOf("/") + 1));
  return fnmatchRegExp(pattern.startsWith("/") ? pattern : `*/${pattern}`).test(`/${relPath}`);
}

/** What pytest's configuration says about collection (each a list; defaults when absent). */
export interface CollectConfig {
  pythonFiles?: string[];
  norecursedirs?: string[];
}

/**
 * The `.py` test files pytest would collect for `args` (paths relative to the root; `[]` = the
 * root itself) among `files` (every file of the tree, relative paths).
 * @returns relative paths, sorted; `__init__.py` and conftest files are not counted.
 */
export function collectedFiles(files: string[], args: string[], cfg: CollectConfig = {}): string[] {
  const pyFiles = cfg.pythonFiles?.length ? cfg.pythonFiles : DEFAULT_PYTHON_FILES;
  const norecurse = cfg.norecursedirs ?? DEFAULT_NORECURSE;
  const out = new Set<string>();
  const roots = args.length ? args.map((a) => a.replace(/::.*$/, "").replace(/\/+$/, "").replace(/^\.\//, "")) : [""];
  for (const root of roots) {
    if (root && files.includes(root)) {
      if (root.endsWith(".py")) out.add(root);
      continue;
    }
    const prefix = root && root !== "." ? `${root}/` : "";
    for (const f of files) {
      if (!f.startsWith(prefix) || !f.endsWith(".py")) continue;
      const base = f.slice(f.lastIndexOf("/") + 1);
      if (base === "__init__.py" || base === "conftest.py") continue;
      // Every directory strictly below the argument must be entered.
      const rest = f.slice(prefix.length).split("/").slice(0, -1);
      let dir = prefix.replace(/\/$/, "");
      let entered = true;
      for (const d of rest) {
        dir = dir ? `${dir}/${d}` : d;
        if (d === "__pycache__" || norecurse.some((p) => fnmatchEx(p, dir))) {
          entered = false;
          break;
        }
      }
      if (entered && pyFiles.some((p) => fnmatchEx(p, f))) out.add(f);
    }
  }
  return [...out].sort();
}

/** Options of pytest (and common plugins) that take a separate value: the word after them is not a path. */
const VALUE_OPTIONS = new Set([
  "-k", "-m", "-n", "-p", "-c", "-o", "-W", "-r", "--rootdir", "--basetemp", "--ignore", "--ignore-glob", "--deselect", "--junitxml", "--junit-xml",
  "--durations", "--maxfail", "--tb", "--confcutdir", "--numprocesses", "--dist", "--timeout", "--cov-report", "--cov-config", "--import-mode",
  "--log-level", "--color", "--capture", "--override-ini", "--doctest-glob", "--reruns", "--randomly-seed", "--splits", "--group", "--hypothesis-profile",
  "--benchmark-storage", "--html", "--report-log", "--pythonwarnings", "--store-durations", "--durations-path",
]);

/** A command line's pytest invocation and the words after it (tox's `{posargs:…}` defaults read in), or undefined. */
function pytestCall(command: string): RegExpExecArray | undefined {
  const line = command.replace(/\{posargs:?([^}]*)\}/g, "$1").replace(/\{toxinidir\}\/?/g, "").replace(/\{[^}]*\}/g, "");
  const m = /(?:^|[\s;&|(])(?:(?:python3?(?:\.\d+)?|uv run|poetry run|pdm run|hatch run|coverage run)\s+(?:-[\w-]+\s+)*-m\s+)?(?:py\.test|pytest)(?=\s|$)(.*)$/.exec(line);
  return m && !/\bunittest\b/.test(line.slice(0, m.index + 20)) ? m : undefined;
}

/**
 * Whether a command line runs pytest over its default collection: a pytest invocation that names
 * no path of the tree (`pytest`, `uv run pytest --cov -n auto`, tox's `pytest {posargs}`), so the
 * repository's testpaths, or its root, are what it runs.
 */
export function runsWholeSuite(command: string, files: string[]): boolean {
  const m = pytestCall(command);
  return !!m && !/--version|--help|--co\b|--collect-only|--fixtures|--markers/.test(m[1]!) && pytestArgPaths(command, files).length === 0;
}

/**
 * The test paths a pytest command line names (`pytest -x tests/unit`, `python -m pytest {posargs:tests}`,
 * `coverage run -m pytest src tests`), kept only when they exist in `files` (a file, or a
 * directory holding files; `path::test` ids cut to their path). tox substitutions
 * (`{toxinidir}/`, `{posargs:…}`) are resolved; shell variables and globs are skipped.
 * @returns the paths in command order, without duplicates; `[]` when the line is not a pytest run.
 */
export function pytestArgPaths(command: string, files: string[]): string[] {
  const m = pytestCall(command);
  if (!m) return [];
  const words = m[1]!.split(/\s*(?:&&|\|\||;|\|)\s*/)[0]!.trim().split(/\s+/).filter(Boolean);
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!.replace(/^["']|["']$/g, "");
    if (w.startsWith("-")) {
      if (VALUE_OPTIONS.has(w)) i++;
      continue;
    }
    if (/[$*?`]/.test(w)) continue;
    const p = w.replace(/::.*$/, "").replace(/^\.\//, "").replace(/\/+$/, "");
    if (!p || p === ".") continue;
    if ((files.includes(p) || files.some((f) => f.startsWith(`${p}/`))) && !out.includes(p)) out.push(p);
  }
  return out;
}
