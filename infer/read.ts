/**
 * What a Python repository says about itself, read at one commit without running any of its
 * code: pyproject.toml (build-system, PEP 621 project, PEP 735 dependency-groups, poetry, hatch,
 * pdm, pytest ini options), setup.cfg, setup.py (statically), requirements*.txt and
 * requirements/*.txt (following -r), tox.ini and .github/workflows/*.yml.
 *
 * Parsers: smol-toml (TOML 1.0), ini (INI), yaml (YAML 1.2); requirements per PEP 508 (pep508.ts).
 */
import { execFileSync } from "node:child_process";
import { parse as parseIni } from "ini";
import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import { collectedFiles, pytestArgPaths, runsWholeSuite } from "./collect";
import { normalizeName, parseRequirement, type Requirement } from "./pep508";

/** Build backends forager knows how to provide. */
export type Backend = "setuptools" | "flit" | "hatch" | "poetry" | "pdm" | "unknown";

/** One requirement and the file (and section) that asked for it. */
export interface SourcedRequirement extends Requirement {
  /** e.g. `pyproject.toml [project.optional-dependencies.test]`. */
  from: string;
  /** The extra (optional-dependencies / extras_require key) or dependency group that lists it, when one does. */
  extra?: string;
}

/** Facts read from the repository. */
export interface RepoFacts {
  backend: Backend;
  /** build-system.requires. */
  buildRequires: SourcedRequirement[];
  /** Runtime dependencies. */
  dependencies: SourcedRequirement[];
  /** Test (and dev) dependencies from every place that lists them. */
  testDependencies: SourcedRequirement[];
  /**
   * Dependencies of the other extras (`[project.optional-dependencies]`, setup.cfg / setup.py
   * extras_require): not installed at first; a suite that imports one usually tests them all.
   */
  extraDependencies: SourcedRequirement[];
  requiresPython?: string;
  /** Version from git tags or a VCS plugin (setuptools-scm, hatch-vcs, pdm scm). */
  usesScm: boolean;
  /** File a VCS version plugin writes at build time (hatch-vcs version-file, setuptools-scm write_to / version_file). */
  versionFile?: string;
  /**
   * C, C++ or Cython extension modules built by setup.py (`Extension(`, `ext_modules`, `cythonize(`
   * with .c / .cpp / .pyx sources in the tree): the image gets a compiler and builds them in place.
   * "cython" when .pyx sources are among them.
   */
  cExtensions?: "c" | "cython";
  /** PEP 621 project name, when pyproject.toml gives one. */
  projectName?: string;
  /** PEP 621 static version, when given. */
  projectVersion?: string;
  /** Entry points by group (`[project.entry-points.*]`; `[project.scripts]` as console_scripts), for the source-install metadata. */
  entryPoints?: Record<string, Record<string, string>>;
  /** "src" when the package lives under src/. */
  layout: "src" | "flat";
  /** Test paths: pytest testpaths, else tests/, test/, testing/. */
  testPaths: string[];
  /** pytest when configured or imported by tests; unittest when only unittest is seen. */
  runner: "pytest" | "unittest";
  /** True when the suite is run with `python -m unittest` (no pytest configuration; CI, tox or nox run unittest). */
  unittestCommand?: boolean;
  /**
   * The arguments of the repository's own `python -m unittest` invocation (CI, tox or nox), when
   * one names what to run (`discover -s tests -p "*_test.py"`, `discover greenlet.tests`,
   * `tests.test_all`): the spec runs the suite that way.
   */
  unittestArgs?: string;
  /** pytest ini options read (addopts, testpaths, minversion …), as strings (list values joined by spaces). */
  pytestOptions: Record<string, string>;
  /** The same options as lists of lines (a linelist value such as filterwarnings or markers keeps one entry a line). */
  pytestLines: Record<string, string[]>;
  /** The file pytest takes its configuration from (pytest's precedence: pytest.ini, .pytest.ini, pyproject.toml, tox.ini, setup.cfg), when one configures it. */
  pytestConfigFile?: string;
  /** Why {@link testPaths} are what they are (the repository's testpaths, its CI's pytest arguments, a conventional directory, or the root). */
  testPathsReason?: string;
  /** Paths of git submodules (`.gitmodules`): not part of the commit's tree, so absent from the image. */
  submodules?: string[];
  /**
   * Other Python projects of the same repository ({@link siblingProjects}): a requirement naming
   * one is installed from the tree, never looked up in Debian (flit's `flit_core/`, say).
   */
  siblings?: SiblingProject[];
  /** How each requirements file was classified (runtime or test) and why. */
  requirementFiles: { file: string; role: "runtime" | "test"; reason: string }[];
  /** Extras and dependency groups the CI, tox or nox install for their test runs (normalized names). */
  testExtras: string[];
  /** python-version values of workflow matrices. */
  workflowPythons: string[];
  /** Test commands seen in workflows and tox (first words `pytest`, `python -m pytest`, `tox`, `nox`, …). */
  testCommands: string[];
  /** Files read, in order. */
  filesRead: string[];
  /** Problems met while reading (a file that did not parse), with the file. */
  warnings: string[];
}

/** Reads files of a git repository at a commit (bare or not). */
export class GitTree {
  readonly files: string[];
  constructor(
    readonly gitDir: string,
    readonly commit: string,
  ) {
    this.files = this.git(["ls-tree", "-r", "--name-only", commit]).split("\n").filter(Boolean);
  }
  private git(args: string[]): string {
    return execFileSync("git", ["-C", this.gitDir, ...args], { encoding: "utf8", maxBuffer: 256 * 1024 * 1024, stdio: ["ignore", "pipe", "pipe"] });
  }
  has(p: string): boolean {
    return this.files.includes(p);
  }
  read(p: string): string | undefined {
    if (!this.has(p)) return undefined;
    return this.git(["show", `${this.commit}:${p}`]);
  }
}

/** Dependency-list names that hold test requirements. */
const TEST_GROUPS = /^(test|tests|testing|dev|develop|development|ci|pytest|unit)$/i;

/**
 * Whether a distribution is test or development tooling (a runner, a plugin, a coverage tool,
 * a mocking or property-testing library, a linter): such a requirement is never a runtime
 * requirement, wherever it is listed.
 */
export function testTooling(dist: string): boolean {
  const n = normalizeName(dist);
  return (
    /^(pytest|py|coverage|codecov|coveralls|tox|nox|mock|hypothesis|nose|nose2|freezegun|responses|requests-mock|faker|factory-boy|time-machine|syrupy|testfixtures|parameterized|ddt|webtest|httpretty|vcrpy|testtools|testpath|flaky|pyfakefs|moto|respx|pretend|sure|expects|behave|unittest2|mypy|pyright|pylint|black|isort|ruff|pre-commit|twine|check-manifest|pyroma|trustme|pytest-runner|pytest-xdist|execnet|build|wheel)$/.test(n) ||
    /^(pytest-|flake8|sphinx|types-|tox-|hypothesis-|coverage-|mypy-|pylint-)/.test(n) ||
    /-(pytest|stubs)$/.test(n)
  );
}

/** pytest configuration options that belong to a plugin, and the plugin's distribution. */
export const INI_PLUGINS: Record<string, string> = {
  DJANGO_SETTINGS_MODULE: "pytest-django",
  django_find_project: "pytest-django",
  asyncio_mode: "pytest-asyncio",
  asyncio_default_fixture_loop_scope: "pytest-asyncio",
  env: "pytest-env",
  timeout: "pytest-timeout",
  timeout_method: "pytest-timeout",
  mock_use_standalone_module: "pytest-mock",
  trio_mode: "pytest-trio",
  qt_api: "pytest-qt",
  mpl_baseline_path: "pytest-mpl",
  doctest_plus: "pytest-doctestplus",
  doctest_rst: "pytest-doctestplus",
  httpserver_listen_address: "pytest-httpserver",
  rsyncdirs: "pytest-xdist",
};

/** Requirements files never read: documentation, lint, typing and release lists. */
const SKIPPED_REQUIREMENT_FILE = /(^|[/_.-])(docs?|lint|linting|typ(e|es|ing)|mypy|release|publish|bench(mark)?s?|style|format|pre-commit)([/_.-]|$)/i;
/** Requirements file names that say test or development. */
const TEST_REQUIREMENT_FILE = /(^|[/_.-])(tests?|testing|dev|develop|development|ci|check|coverage|tox|extras?|optional|all)([/_.-]|$)/i;

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : typeof v === "string" ? v.split("\n") : []);

function reqs(lines: string[], from: string, extra?: string): SourcedRequirement[] {
  const out: SourcedRequirement[] = [];
  for (const l of lines) {
    const r = parseRequirement(l);
    if (r) out.push({ ...r, from, ...(extra ? { extra } : {}) });
  }
  return out;
}

/** Poetry's `{name = "^1.0"}` tables → requirement names (version constraints are poetry syntax, not PEP 440: dropped). */
function poetryReqs(table: unknown, from: string): SourcedRequirement[] {
  return Object.keys(obj(table))
    .filter((n) => n.toLowerCase() !== "python")
    .map((n) => ({ name: n, normalized: normalizeName(n), extras: [], specifier: "", marker: "", from }));
}

function backendOf(buildBackend: string, requires: SourcedRequirement[]): Backend {
  const b = buildBackend + " " + requires.map((r) => r.normalized).join(" ");
  if (/flit/.test(b)) return "flit";
  if (/hatch/.test(b)) return "hatch";
  if (/poetry/.test(b)) return "poetry";
  if (/pdm/.test(b)) return "pdm";
  if (/setuptools/.test(b)) return "setuptools";
  return "unknown";
}

/** A requirements file and those it includes with `-r`/`-c` (bounded depth, cycles cut). */
function requirementsFile(tree: GitTree, file: string, facts: RepoFacts, seen = new Set<string>()): SourcedRequirement[] {
  if (seen.has(file) || seen.size > 20) return [];
  seen.add(file);
  const text = tree.read(file);
  if (text === undefined) return [];
  facts.filesRead.push(file);
  const out: SourcedRequirement[] = [];
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/") + 1) : "";
  for (const joined of joinContinued(text.split("\n"), true)) {
    // pip's per-requirement options (pip-compile's `--hash=sha256:…`) are not part of the requirement.
    const line = joined.replace(/\s--(?:hash|config-settings|global-option|install-option)[=\s]\S+/g, "").trim();
    const inc = /^(?:-r|--requirement)\s*=?\s*(\S+)/.exec(line);
    if (inc) {
      out.push(...requirementsFile(tree, normalizePath(dir + inc[1]!), facts, seen));
      continue;
    }
    const r = parseRequirement(line);
    if (r) out.push({ ...r, from: file });
  }
  return out;
}

function normalizePath(p: string): string {
  const parts: string[] = [];
  for (const s of p.split("/")) {
    if (s === "..") parts.pop();
    else if (s && s !== ".") parts.push(s);
  }
  return parts.join("/");
}

/**
 * Statically read `name=[...]` / `name={...}` list literals of a setup.py call (no code runs), and
 * `name=VARIABLE` where the module assigns that variable a literal at the start of a line
 * (`INSTALL_REQUIRES = [...]`, `EXTRAS = {...}`, `EXTRAS["dev"] = [...]`).
 */
export function setupPyLists(text: string): { installRequires: string[]; testsRequire: string[]; extras: Record<string, string[]> } {
  const strs = (body: string) => [...body.matchAll(/(['"])((?:(?!\1).)*)\1/g)].map((m) => m[2]!);
  const esc = (v: string) => v.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  // The variable a keyword argument names (`install_requires=REQS,`), when it is a plain identifier.
  const variable = (key: string) => new RegExp(`\\b${key}\\s*=\\s*([A-Za-z_]\\w*)\\s*[,)]`).exec(text)?.[1];
  const list = (key: string): string[] => {
    const m = new RegExp(`\\b${key}\\s*=\\s*\\[([^\\]]*)\\]`).exec(text);
    if (m) return strs(m[1]!);
    const v = variable(key);
    const a = v ? new RegExp(`^${esc(v)}\\s*=\\s*[\\[(]([^\\])]*)[\\])]`, "m").exec(text) : null;
    return a ? strs(a[1]!) : [];
  };
  const extras: Record<string, string[]> = {};
  const ev = variable("extras_require");
  const dictBody = (/\bextras_require\s*=\s*\{([\s\S]*?)\}\s*[,)]/.exec(text) ?? (ev ? new RegExp(`^${esc(ev)}\\s*=\\s*\\{([\\s\\S]*?)^\\}`, "m").exec(text) : null))?.[1];
  if (dictBody) for (const m of dictBody.matchAll(/(['"])([\w.-]+)\1\s*:\s*\[([^\]]*)\]/g)) extras[m[2]!] = strs(m[3]!);
  if (ev) for (const m of text.matchAll(new RegExp(`^${esc(ev)}\\[(['"])([\\w.-]+)\\1\\]\\s*=\\s*\\[([^\\]]*)\\]`, "gm"))) extras[m[2]!] = strs(m[3]!);
  return { installRequires: list("install_requires"), testsRequire: list("tests_require"), extras };
}

/** Words of a shell line that run tests, for the record (`pytest …`, `python -m pytest …`, `python -m unittest …`, `tox`, `nox`). */
function testCommandsIn(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    // Python takes `-m`'s module joined or apart (`python3 -munittest`): read it apart.
    const l = line.trim().replace(/^-\s*/, "").replace(/(\bpython3?(?:\.\d+)?\s+)-m(?=\w)/, "$1-m ");
    const runsTool = /(^|\s|&&\s*)((python3?|uv run|poetry run|pdm run|hatch run)\s+(-m\s+)?)?(pytest|py\.test|unittest|testtools\.run|tox|nox|coverage run)(?=\s|$)/.test(l) && !/\bpip3? (un)?install\b/.test(l);
    // A test script run directly: `python tests/run_tests.py`, `./test/test.py`.
    const runsScript = /(^|\s|&&\s*)(python3?(\.\d+)?\s+|\.\/)[\w./-]*test[\w./-]*\.py\b/i.test(l);
    if ((runsTool || runsScript) && l.length < 300) out.push(l);
  }
  return out;
}

/** String literals of a Python argument list (`"a", 'b', x` → ["a", "b"]); non-literal arguments are left out. */
function pyStrings(args: string): string[] {
  return [...args.matchAll(/(?<![\w.])(?:[rbuRBU]?)(["'])((?:\\.|(?!\1).)*)\1/g)].map((m) => m[2]!);
}

/**
 * A noxfile read statically (no code runs): the string arguments of every `session.install(…)`
 * (requirements; `-r FILE` followed; `-e`, `.`, `.[extra]` and other options skipped) and every
 * `session.run(…)` whose first argument runs tests (`pytest`, `python -m pytest|unittest`,
 * `coverage run`), joined into a command line. `nox.project.dependency_groups(pyproject, "g")`
 * inside an install names PEP 735 groups: they go to `extras` (groups and extras are both
 * "wanted for the test run"), not to the requirements.
 * @returns `{install, requirementFiles, commands}` in file order.
 */
export function noxfileFacts(text: string): { install: string[]; requirementFiles: string[]; commands: string[]; extras: string[] } {
  const install: string[] = [];
  const requirementFiles: string[] = [];
  const commands: string[] = [];
  const extras: string[] = [];
  // Calls whose argument list holds no nested parentheses (the common form); `*LIST` splats are not followed.
  for (const m of text.matchAll(/\bsession\.(install|run)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)/g)) {
    // nox's `nox.project.dependency_groups(pyproject, "test", …)`: the PEP 735 groups it names
    // (their requirements come from pyproject.toml), never requirements themselves.
    const inner = m[2]!.replace(/\b(?:nox\.project\.)?dependency_groups\s*\(([^()]*)\)/g, (_all, groupArgs: string) => {
      if (m[1] === "install") extras.push(...pyStrings(groupArgs));
      return "";
    });
    // Keyword arguments (env=…, external=…) come after the positional ones: cut them off.
    const args = pyStrings(inner.replace(/(?:^|,)\s*[A-Za-z_]\w*\s*=(?!=)[\s\S]*$/, ""));
    if (m[1] === "install") {
      for (let i = 0; i < args.length; i++) {
        const a = args[i]!;
        if (a === "-r" || a === "--requirement") requirementFiles.push(args[++i] ?? "");
        else if (/^-r\S/.test(a)) requirementFiles.push(a.slice(2));
        else if (a === "-c") i++;
        else if (/^\.(\/)?\[/.test(a)) extras.push(...localExtras(a));
        else if (a === "-e") extras.push(...localExtras(args[++i] ?? ""));
        else if (!a.startsWith("-") && !a.startsWith(".")) install.push(a);
      }
    } else if (args.length) {
      const line = args.join(" ");
      if (/^(pytest|py\.test|coverage run|python3? -m (pytest|unittest))\b/.test(line)) commands.push(line);
    }
  }
  return { install, requirementFiles: requirementFiles.filter(Boolean), commands, extras };
}

/** The extras of a local install argument: `.[test,yaml]`, `./[dev]`, `-e .[tests]` → ["test", "yaml"]; [] for anything else. */
export function localExtras(arg: string): string[] {
  const m = /^["']?\.\/?\[([^\]]*)\]["']?$/.exec(arg.trim());
  return m ? m[1]!.split(",").map((e) => e.trim()).filter(Boolean) : [];
}

/**
 * What a CI step's shell text installs for its test run: `pip install` (also `python -m pip`,
 * `uv pip`, `pip3`) arguments (requirement files after `-r`, extras of a local `.[a,b]`, plain
 * requirements), `uv sync` extras and groups (`--extra X`, `--group G`, `--all-extras`).
 * Arguments with shell variables, URLs or paths other than the project are skipped.
 */
export function ciInstalls(text: string): { requirements: string[]; requirementFiles: string[]; extras: string[]; groups: string[]; allExtras: boolean } {
  const out = { requirements: [] as string[], requirementFiles: [] as string[], extras: [] as string[], groups: [] as string[], allExtras: false };
  for (const raw of text.replace(/\\\n/g, " ").split("\n")) {
    // A shell comment (`pip install -e . --group dev # install the dev packages`) is not arguments;
    // a pipe ends a command as `&&` does (`uv pip install x | pip install x`).
    for (const cmd of raw.replace(/(^|\s)#.*$/, "").split(/&&|;|\|\|?/)) {
      const pip = /(?:^|\s)(?:python3?(?:\.\d+)?\s+-m\s+pip|uv\s+pip|pip3?)\s+install\s+(.*)$/.exec(cmd);
      const sync = /(?:^|\s)uv\s+sync\b(.*)$/.exec(cmd);
      const words = (pip?.[1] ?? sync?.[1] ?? "").trim().split(/\s+/).filter(Boolean).map((w) => w.replace(/^["']|["']$/g, ""));
      for (let i = 0; i < words.length; i++) {
        const w = words[i]!;
        if (w === "-r" || w === "--requirement") out.requirementFiles.push(words[++i] ?? "");
        else if (/^-r\S/.test(w)) out.requirementFiles.push(w.slice(2));
        else if (/^--requirement=/.test(w)) out.requirementFiles.push(w.slice(14));
        else if (w === "--extra") out.extras.push(words[++i] ?? "");
        else if (w === "--group" || w === "--only-group") out.groups.push(words[++i] ?? "");
        else if (w === "--all-extras") out.allExtras = true;
        else if (w === "-e" || w === "--editable") out.extras.push(...localExtras(words[++i] ?? ""));
        else if (w === "-c" || w === "--constraint" || w === "-i" || w === "--index-url" || w === "--extra-index-url" || w === "-f" || w === "--find-links") i++;
        else if (w.startsWith("-")) continue;
        else if (/^\.\/?\[/.test(w)) out.extras.push(...localExtras(w));
        else if (pip && !/[$/:`*]|^\./.test(w) && parseRequirement(w)) out.requirements.push(w);
      }
    }
  }
  out.requirementFiles = out.requirementFiles.filter((f) => f && !/[$`]/.test(f));
  out.extras = out.extras.filter(Boolean);
  out.groups = out.groups.filter(Boolean);
  return out;
}

/**
 * Read everything forager uses from the repository at `tree`'s commit.
 * Unparseable files are skipped with a warning in `facts.warnings` (never thrown).
 */
export function readRepository(tree: GitTree): RepoFacts {
  const facts: RepoFacts = {
    backend: "unknown",
    buildRequires: [],
    dependencies: [],
    testDependencies: [],
    extraDependencies: [],
    usesScm: false,
    layout: tree.files.some((f) => f.startsWith("src/") && f.endsWith("/__init__.py")) ? "src" : "flat",
    testPaths: [],
    runner: "pytest",
    pytestOptions: {},
    pytestLines: {},
    requirementFiles: [],
    testExtras: [],
    workflowPythons: [],
    testCommands: [],
    filesRead: [],
    warnings: [],
  };
  const siblings = siblingProjects(tree);
  if (siblings.length) facts.siblings = siblings;
  const gitmodules = tree.read(".gitmodules");
  if (gitmodules !== undefined) {
    const subs = [...gitmodules.matchAll(/^\s*path\s*=\s*(\S+)\s*$/gm)].map((m) => m[1]!.replace(/\/+$/, ""));
    if (subs.length) facts.submodules = subs;
  }
  let buildBackend = "";
  /** Whether the package metadata itself declares the runtime requirements (then a requirements file is not where they live). */
  let declaresRuntime = false;
  /** Requirements files the metadata takes its runtime requirements from (setuptools dynamic, hatch-requirements-txt, setup.py / setup.cfg naming them). */
  const runtimeFiles = new Set<string>();
  /** pytest configurations found, with pytest's precedence (lower first). */
  const pytestConfigs: { rank: number; file: string; lines: Record<string, string[]> }[] = [];
  const testGroupsWanted = new Set<string>();
  const groupLists: Record<string, SourcedRequirement[]> = {};
  let projectName: string | undefined;
  const pyText = tree.read("pyproject.toml");
  if (pyText !== undefined) {
    facts.filesRead.push("pyproject.toml");
    try {
      const py = parseToml(pyText) as Obj;
      const bs = obj(py["build-system"]);
      buildBackend = String(bs["build-backend"] ?? "");
      facts.buildRequires.push(...reqs(strings(bs.requires), "pyproject.toml [build-system.requires]"));
      const project = obj(py.project);
      if (typeof project.name === "string") facts.projectName = project.name;
      projectName = facts.projectName;
      if (typeof project.version === "string") facts.projectVersion = project.version;
      const eps: Record<string, Record<string, string>> = {};
      const group = (v: unknown) => Object.fromEntries(Object.entries(obj(v)).filter(([, x]) => typeof x === "string")) as Record<string, string>;
      for (const [g, v] of Object.entries(obj(project["entry-points"]))) eps[g] = group(v);
      if (Object.keys(obj(project.scripts)).length) eps.console_scripts = group(project.scripts);
      if (Object.keys(eps).length) facts.entryPoints = eps;
      if (typeof project["requires-python"] === "string") facts.requiresPython = project["requires-python"];
      if (Array.isArray(project.dependencies)) declaresRuntime = true;
      facts.dependencies.push(...reqs(strings(project.dependencies), "pyproject.toml [project.dependencies]"));
      for (const [k, v] of Object.entries(obj(project["optional-dependencies"]))) {
        (TEST_GROUPS.test(k) ? facts.testDependencies : facts.extraDependencies).push(...reqs(strings(v), `pyproject.toml [project.optional-dependencies.${k}]`, k));
      }
      // PEP 735 groups: strings or {include-group = "..."}.
      const groups = obj(py["dependency-groups"]);
      const groupReqs = (name: string, depth = 0): string[] =>
        depth > 5
          ? []
          : (Array.isArray(groups[name]) ? (groups[name] as unknown[]) : []).flatMap((e) =>
              typeof e === "string" ? [e] : typeof obj(e)["include-group"] === "string" ? groupReqs(String(obj(e)["include-group"]), depth + 1) : [],
            );
      for (const k of Object.keys(groups)) {
        const list = reqs(groupReqs(k), `pyproject.toml [dependency-groups.${k}]`, k);
        if (TEST_GROUPS.test(k)) facts.testDependencies.push(...list);
        else groupLists[normalizeName(k)] = list;
      }
      const tool = obj(py.tool);
      const poetry = obj(tool.poetry);
      if (Object.keys(poetry).length) {
        const pyDep = obj(poetry.dependencies).python;
        if (!facts.requiresPython && typeof pyDep === "string" && /^[<>=!~]/.test(pyDep)) facts.requiresPython = pyDep;
        if (Object.keys(obj(poetry.dependencies)).length) declaresRuntime = true;
        if (!projectName && typeof poetry.name === "string") projectName = poetry.name;
        facts.dependencies.push(...poetryReqs(poetry.dependencies, "pyproject.toml [tool.poetry.dependencies]"));
        facts.testDependencies.push(...poetryReqs(poetry["dev-dependencies"], "pyproject.toml [tool.poetry.dev-dependencies]"));
        for (const [g, v] of Object.entries(obj(poetry.group))) {
          if (TEST_GROUPS.test(g)) facts.testDependencies.push(...poetryReqs(obj(v).dependencies, `pyproject.toml [tool.poetry.group.${g}.dependencies]`));
        }
      }
      const hatchEnvs = obj(obj(tool.hatch).envs);
      for (const [e, v] of Object.entries(hatchEnvs)) {
        if (TEST_GROUPS.test(e) || e === "default" || e === "hatch-test") {
          facts.testDependencies.push(...reqs(strings(obj(v).dependencies), `pyproject.toml [tool.hatch.envs.${e}.dependencies]`));
          facts.testDependencies.push(...reqs(strings(obj(v)["extra-dependencies"]), `pyproject.toml [tool.hatch.envs.${e}.extra-dependencies]`));
          for (const x of strings(obj(v).features)) testGroupsWanted.add(normalizeName(x));
          // Its scripts (`test = "python -m unittest discover -s pkg -p '*tests.py'"`): the repository's own test commands.
          for (const cmd of Object.values(obj(obj(v).scripts)).flatMap((c) => strings(c))) facts.testCommands.push(...testCommandsIn(cmd));
        }
      }
      const pdm = obj(tool.pdm);
      for (const [name, c] of Object.entries(obj(pdm.scripts))) {
        if (TEST_GROUPS.test(name)) facts.testCommands.push(...testCommandsIn(typeof c === "string" ? c : String(obj(c).cmd ?? obj(c).shell ?? "")));
      }
      for (const [g, v] of Object.entries(obj(pdm["dev-dependencies"]))) {
        if (TEST_GROUPS.test(g)) facts.testDependencies.push(...reqs(strings(v), `pyproject.toml [tool.pdm.dev-dependencies.${g}]`));
      }
      // Runtime requirements read from a file by the backend.
      for (const f of strings(obj(obj(obj(tool.setuptools).dynamic).dependencies).file)) runtimeFiles.add(normalizePath(f));
      for (const f of strings(obj(obj(obj(obj(tool.hatch).metadata).hooks)["requirements_txt"]).files)) runtimeFiles.add(normalizePath(f));
      if (tool["setuptools_scm"] !== undefined || tool["setuptools-scm"] !== undefined || obj(obj(tool.hatch).version).source === "vcs" || obj(pdm.version).source === "scm") facts.usesScm = true;
      const vf = obj(obj(obj(obj(tool.hatch).build).hooks).vcs)["version-file"] ?? obj(tool.setuptools_scm).version_file ?? obj(tool.setuptools_scm).write_to;
      if (typeof vf === "string") facts.versionFile = vf;
      // pytest: [tool.pytest.ini_options] (pytest 6+), or pytest 9's native [tool.pytest] table.
      const pt = obj(tool.pytest);
      const ini = obj(pt["ini_options"]);
      const native = Object.fromEntries(Object.entries(pt).filter(([k]) => k !== "ini_options"));
      const table = Object.keys(ini).length || pt["ini_options"] !== undefined ? ini : native;
      if (tool.pytest !== undefined && (pt["ini_options"] !== undefined || Object.keys(native).length)) {
        pytestConfigs.push({ rank: 2, file: "pyproject.toml", lines: Object.fromEntries(Object.entries(table).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : String(v).split("\n")])) });
      }
    } catch (err) {
      facts.warnings.push(`pyproject.toml: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  if (facts.buildRequires.some((r) => /setuptools-scm|hatch-vcs|setuptools-git-versioning|pdm-backend|versioningit/.test(r.normalized))) {
    facts.usesScm ||= facts.buildRequires.some((r) => /scm|vcs|versioning/.test(r.normalized));
  }
  // setup.cfg: [options] install_requires, [options.extras_require], [tool:pytest]; tox.ini; pytest.ini, .pytest.ini.
  for (const file of ["setup.cfg", "tox.ini", "pytest.ini", ".pytest.ini"]) {
    const text = tree.read(file);
    if (text === undefined) continue;
    facts.filesRead.push(file);
    try {
      const cfg = parseIni(text) as Record<string, Obj>;
      if (file === "setup.cfg") {
        const opts = obj(cfg.options);
        const ir = multilineIni(text, "options", "install_requires");
        const fileRef = ir.length === 1 ? /^file:\s*(.+)$/.exec(ir[0]!) : null;
        if (fileRef) for (const f of fileRef[1]!.split(",")) runtimeFiles.add(normalizePath(f.trim()));
        else {
          if (iniKeys(text, "options").includes("install_requires")) declaresRuntime = true;
          facts.dependencies.push(...reqs(ir, "setup.cfg [options] install_requires"));
        }
        if (!facts.requiresPython && typeof opts.python_requires === "string") facts.requiresPython = opts.python_requires;
        const metaName = obj(cfg.metadata).name;
        if (!projectName && typeof metaName === "string") projectName = metaName;
        // `ini` nests dotted section names (options.extras_require → options.extras_require as a child): keys read from the text.
        for (const k of iniKeys(text, "options.extras_require")) {
          (TEST_GROUPS.test(k) ? facts.testDependencies : facts.extraDependencies).push(...reqs(multilineIni(text, "options.extras_require", k), `setup.cfg [options.extras_require] ${k}`, k));
        }
        if (obj(cfg.options).use_scm_version !== undefined) facts.usesScm = true;
      }
      if (file === "tox.ini") {
        for (const sec of Object.keys(cfg)) {
          if (!/^testenv($|:)/.test(sec)) continue;
          for (const d of multilineIni(text, sec, "deps")) {
            const m = /^-r\s*\{toxinidir\}\/(.+)$/.exec(d.trim()) ?? /^-r\s*(.+)$/.exec(d.trim());
            if (m) facts.testDependencies.push(...requirementsFile(tree, normalizePath(m[1]!), facts));
            else facts.testDependencies.push(...reqs([d], `tox.ini [${sec}] deps`));
          }
          for (const x of multilineIni(text, sec, "extras").flatMap((l) => l.split(/[\s,]+/))) if (x) testGroupsWanted.add(normalizeName(x));
          facts.testCommands.push(...testCommandsIn(multilineIni(text, sec, "commands").join("\n")));
        }
      }
      const pytestSection = file === "setup.cfg" ? "tool:pytest" : "pytest";
      const rank = { "pytest.ini": 0, ".pytest.ini": 1, "tox.ini": 3, "setup.cfg": 4 }[file]!;
      // pytest.ini is pytest's configuration even when it has no [pytest] section; the others only with theirs.
      if (iniKeys(text, pytestSection).length || new RegExp(`^\\s*\\[${pytestSection.replace(":", "\\:")}\\]`, "m").test(text) || file === "pytest.ini") {
        pytestConfigs.push({ rank, file, lines: Object.fromEntries(iniKeys(text, pytestSection).map((k) => [k, multilineIni(text, pytestSection, k)])) });
      }
    } catch (err) {
      facts.warnings.push(`${file}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  // pytest reads one configuration file: the first of its precedence that configures it.
  const chosen = pytestConfigs.sort((a, b) => a.rank - b.rank)[0];
  if (chosen) {
    facts.pytestConfigFile = chosen.file;
    facts.pytestLines = chosen.lines;
    for (const [k, v] of Object.entries(chosen.lines)) facts.pytestOptions[k] = v.join(" ");
    // Options of plugins in the configuration, and `required_plugins`, are requirements on those plugins.
    for (const key of Object.keys(chosen.lines)) {
      const plugin = INI_PLUGINS[key];
      if (plugin) facts.testDependencies.push({ name: plugin, normalized: normalizeName(plugin), extras: [], specifier: "", marker: "", from: `${chosen.file} pytest option ${key}` });
    }
    facts.testDependencies.push(...reqs((chosen.lines.required_plugins ?? []).flatMap((l) => l.split(/\s+(?![<>=!~])/)), `${chosen.file} pytest required_plugins`));
    // `minversion` is a requirement on pytest: an older pytest stops before collecting.
    const min = /^\s*(\d+(?:\.\d+)*)\s*$/.exec(chosen.lines.minversion?.join(" ") ?? "");
    if (min) facts.testDependencies.push({ name: "pytest", normalized: "pytest", extras: [], specifier: `>=${min[1]}`, marker: "", from: `${chosen.file} pytest minversion` });
  }
  // Makefile: the recipes of test targets (`test`, `tests`, `check`, `test-*`, `test_*`) are test commands too.
  // The file make reads: the first of GNUmakefile, makefile, Makefile (GNU make's lookup order).
  const makeName = ["GNUmakefile", "makefile", "Makefile"].find((n) => tree.read(n) !== undefined);
  const makefile = makeName ? tree.read(makeName) : undefined;
  if (makeName && makefile !== undefined) {
    facts.filesRead.push(makeName);
    let inTest = false;
    const recipe: string[] = [];
    for (const line of makefile.split("\n")) {
      if (/^\t/.test(line)) {
        if (inTest) recipe.push(line.trim().replace(/^[@-]+/, ""));
      } else if (/^[\w.-]+\s*:(?!=)/.test(line)) inTest = /^(test|tests|check|tests?[-_][\w-]+)\s*:/.test(line);
      else if (line.trim()) inTest = false;
    }
    facts.testCommands.push(...testCommandsIn(recipe.join("\n")));
  }
  const noxfile = tree.read("noxfile.py");
  if (noxfile !== undefined) {
    facts.filesRead.push("noxfile.py");
    const nf = noxfileFacts(noxfile);
    facts.testDependencies.push(...reqs(nf.install, "noxfile.py session.install"));
    for (const f of nf.requirementFiles) facts.testDependencies.push(...requirementsFile(tree, normalizePath(f), facts));
    for (const x of nf.extras) testGroupsWanted.add(normalizeName(x));
    facts.testCommands.push(...nf.commands);
  }
  const setupPy = tree.read("setup.py");
  if (setupPy !== undefined) {
    facts.filesRead.push("setup.py");
    const s = setupPyLists(setupPy);
    if (/\binstall_requires\s*=\s*\[/.test(setupPy) || s.installRequires.length) declaresRuntime = true;
    facts.dependencies.push(...reqs(s.installRequires, "setup.py install_requires"));
    facts.testDependencies.push(...reqs(s.testsRequire, "setup.py tests_require"));
    for (const [k, v] of Object.entries(s.extras)) (TEST_GROUPS.test(k) ? facts.testDependencies : facts.extraDependencies).push(...reqs(v, `setup.py extras_require ${k}`, k));
    if (/use_scm_version/.test(setupPy)) facts.usesScm = true;
    if (facts.backend === "unknown" && !buildBackend) buildBackend = "setuptools";
    const nameLit = /\bsetup\s*\([\s\S]*?\bname\s*=\s*(['"])([A-Za-z0-9][\w.-]*)\1/.exec(setupPy);
    if (!projectName && nameLit) projectName = nameLit[2];
    if (/\bExtension\s*\(|\bext_modules\s*=\s*(?!\[\s*\])|\bcythonize\s*\(/.test(setupPy) && tree.files.some((f) => /\.(c|cc|cpp|cxx|pyx)$/.test(f) && !/(^|\/)(tests?|docs?|benchmarks?)\//.test(f))) {
      facts.cExtensions = tree.files.some((f) => f.endsWith(".pyx")) ? "cython" : "c";
    }
    // A setup.py that reads a requirements file for install_requires names it.
    for (const f of tree.files) if (/requirements[^/]*\.(txt|in)$/i.test(f) && setupPy.includes(f.slice(f.lastIndexOf("/") + 1)) && !TEST_REQUIREMENT_FILE.test(f.slice(f.lastIndexOf("/") + 1))) runtimeFiles.add(f);
  }
  const ciFiles: string[] = [];
  for (const f of tree.files.filter((f) => /^\.github\/workflows\/[^/]+\.ya?ml$/.test(f))) {
    const text = tree.read(f)!;
    facts.filesRead.push(f);
    try {
      const wf = obj(parseYaml(text));
      for (const job of Object.values(obj(wf.jobs))) {
        const matrix = obj(obj(obj(job).strategy).matrix);
        for (const key of ["python-version", "python", "py"]) for (const v of Array.isArray(matrix[key]) ? (matrix[key] as unknown[]) : []) facts.workflowPythons.push(String(v));
        for (const inc of Array.isArray(matrix.include) ? (matrix.include as unknown[]) : []) {
          const v = obj(inc)["python-version"] ?? obj(inc).python;
          if (v !== undefined) facts.workflowPythons.push(String(v));
        }
        for (const step of Array.isArray(obj(job).steps) ? (obj(job).steps as unknown[]) : []) {
          const run = obj(step).run;
          if (typeof run !== "string") continue;
          facts.testCommands.push(...testCommandsIn(run));
          const ci = ciInstalls(run);
          facts.testDependencies.push(...reqs(ci.requirements, `${f} pip install`).filter((r) => !projectName || r.normalized !== normalizeName(projectName)));
          ciFiles.push(...ci.requirementFiles.map(normalizePath));
          for (const x of [...ci.extras, ...ci.groups]) testGroupsWanted.add(normalizeName(x));
          if (ci.allExtras) for (const r of facts.extraDependencies) if (r.extra) testGroupsWanted.add(normalizeName(r.extra));
        }
      }
    } catch (err) {
      facts.warnings.push(`${f}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  // Requirements files: each classified as runtime or test by how it is referenced, its name and its content.
  const reqFiles = tree.files.filter(
    (f) =>
      ciFiles.includes(f) ||
      runtimeFiles.has(f) ||
      ((/^(requirements|[\w-]*-requirements|requirements-[\w.-]+)\.(txt|in)$/i.test(f) || /^requirements\/[\w.-]+\.(txt|in)$/i.test(f) || /^(tests?|testing)\/requirements[\w.-]*\.txt$/i.test(f)) && !SKIPPED_REQUIREMENT_FILE.test(f)),
  );
  // A .in file compiled to a .txt of the same name: read one of them (the .in: fewer pins).
  const reqSet = reqFiles.filter((f) => !(f.endsWith(".txt") && reqFiles.includes(f.replace(/\.txt$/, ".in"))));
  for (const f of reqSet) {
    const list = requirementsFile(tree, f, facts);
    const name = f.slice(f.lastIndexOf("/") + 1);
    let role: "runtime" | "test";
    let reason: string;
    if (runtimeFiles.has(f)) [role, reason] = ["runtime", "the package metadata reads its requirements from it"];
    else if (ciFiles.includes(f)) [role, reason] = ["test", "the CI installs it for its test run"];
    else if (TEST_REQUIREMENT_FILE.test(f)) [role, reason] = ["test", `its name (${name}) says test or development`];
    else if (declaresRuntime) [role, reason] = ["test", "the package metadata declares the runtime requirements itself; a requirements file beside it is a development list"];
    else if (f.includes("/") && !/^(base|main|prod|production|runtime|install|common|core|requirements)\.(txt|in)$/i.test(name)) [role, reason] = ["test", `one of several lists in ${f.slice(0, f.lastIndexOf("/"))}/ that is not the base one (${name})`];
    else if (list.length && list.filter((r) => testTooling(r.name)).length * 2 >= list.length) [role, reason] = ["test", `most of its entries are test tooling (${list.filter((r) => testTooling(r.name)).map((r) => r.name).slice(0, 4).join(", ")})`];
    else [role, reason] = ["runtime", "no package metadata declares runtime requirements"];
    facts.requirementFiles.push({ file: f, role, reason });
    for (const r of list) {
      // A test runner or plugin is never a runtime requirement, wherever it is listed.
      (role === "runtime" && !testTooling(r.name) ? facts.dependencies : facts.testDependencies).push(r);
    }
  }
  // Extras and groups installed for test runs (CI, tox `extras`, nox `.[x]`, hatch `features`), and
  // the project's own extras a test list names (`pkg[socks]` in a test group of pkg), are test requirements.
  const self = projectName ? normalizeName(projectName) : undefined;
  for (const r of facts.testDependencies) if (self && r.normalized === self) for (const x of r.extras) testGroupsWanted.add(normalizeName(x));
  facts.testExtras = [...testGroupsWanted].sort();
  if (testGroupsWanted.size) {
    facts.extraDependencies = facts.extraDependencies.filter((r) => {
      if (!r.extra || !testGroupsWanted.has(normalizeName(r.extra))) return true;
      facts.testDependencies.push({ ...r, from: `${r.from} (installed for the test run)` });
      return false;
    });
    for (const [g, list] of Object.entries(groupLists)) if (testGroupsWanted.has(g)) facts.testDependencies.push(...list.map((r) => ({ ...r, from: `${r.from} (installed for the test run)` })));
  }
  if (!facts.projectName && projectName) facts.projectName = projectName;
  facts.workflowPythons = [...new Set(facts.workflowPythons)];
  facts.backend = backendOf(buildBackend || (pyText && obj(obj((safeToml(pyText) ?? {}).tool).poetry).name ? "poetry" : ""), facts.buildRequires);
  if (facts.backend === "unknown" && setupPy !== undefined) facts.backend = "setuptools";
  chooseTestPaths(tree, facts);
  // Sampled for the runner: pytest's default file names, and unittest's default pattern test*.py (tests.py at the root, say).
  // A pattern the repository's own `unittest discover -p PATTERN` names (`*tests.py`) samples its files too.
  const patterns = facts.testCommands.flatMap((c) => [.../\bunittest\b.*?\s(?:-p|--pattern)\s+["']?([\w*?.[\]-]+\.py)["']?/.exec(c)?.slice(1, 2) ?? []]);
  const globRe = (g: string) => new RegExp(`(^|/)${g.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")}$`);
  const own = patterns.map(globRe);
  const testFiles = tree.files.filter((f) => (/(^|\/)(test[^/]*|[^/]*_test)\.py$/.test(f) && (facts.testPaths.length === 0 || facts.testPaths.some((p) => f.startsWith(p)))) || own.some((r) => r.test(f)));
  const samples = testFiles.slice(0, 20).map((f) => tree.read(f) ?? "");
  const pytestSeen = Object.keys(facts.pytestOptions).length > 0 || tree.has("conftest.py") || tree.files.some((f) => f.endsWith("/conftest.py")) || samples.some((s) => /\bimport pytest\b|\bfrom pytest\b/.test(s)) || facts.testDependencies.some((r) => r.normalized === "pytest");
  facts.runner = !pytestSeen && samples.some((s) => /\bunittest\b/.test(s)) ? "unittest" : "pytest";
  // Run with `python -m unittest` when nothing configures pytest and the CI, tox or nox run unittest.
  facts.unittestCommand = facts.runner === "unittest" && !pytestSeen && facts.testCommands.some((c) => /\bunittest\b|-m\s+testtools\.run\b/.test(c)) && !facts.testCommands.some((c) => /\bpytest\b/.test(c));
  if (facts.unittestCommand) {
    const own = facts.testCommands.map((c) => unittestInvocation(c, tree.files, (f) => tree.read(f))).find((a) => a !== undefined);
    // `discover [-s] DIR` alone is the default command started in DIR (ids from the top level); anything more is kept as written.
    const dirOnly = own && /^discover (?:-s |--start-directory )?([\w./-]+)$/.exec(own);
    if (dirOnly && tree.files.some((f) => f.startsWith(`${dirOnly[1]!.replace(/\/+$/, "")}/`))) facts.testPaths = [dirOnly[1]!.replace(/\/+$/, "")];
    else if (own) facts.unittestArgs = own;
  }
  if (facts.unittestCommand && !facts.testPaths.length) {
    for (const d of ["tests", "test", "testing"]) if (tree.files.some((f) => f.startsWith(`${d}/`))) {
      facts.testPaths = [d];
      break;
    }
  }
  discoveredByName(tree, facts);
  return facts;
}

/**
 * The arguments of a `python -m unittest …` (or `python -m testtools.run …`, which takes the same)
 * command line when they name what to run and every start directory, module or file they name
 * exists in the tree (a dotted name may live under src/, or end in an attribute `read` finds in
 * its module: `pkg.tests.test_suite`): `discover` with its start directory (positional or `-s`),
 * pattern and top-level directory, or test modules. Verbosity and runner switches (-v, -b, -f, -c, -q, --locals) are
 * dropped (the spec adds -v); a line with shell variables or tox substitutions gives undefined.
 */
export function unittestInvocation(command: string, files: string[], read?: (file: string) => string | undefined): string | undefined {
  // Interpreter options before -m (`python -W once -m …`); testtools' runner takes unittest's arguments.
  const m = /(?:^|[\s;&|])python3?(?:\.\d+)?(?:\s+-[WX]\s*\S+|\s+-[bBdEiIOqsSuv]+)*\s+-m\s+(?:unittest|testtools\.run)\b(.*)$/.exec(command);
  if (!m || /[$`{]/.test(m[1]!)) return undefined;
  const words = m[1]!.split(/\s*(?:&&|\|\||;|\|)\s*/)[0]!.trim().split(/\s+/).filter(Boolean);
  const exists = (name: string) => {
    const p = name.replace(/\/+$/, "");
    const asPath = [p, p.replace(/\./g, "/"), `src/${p.replace(/\./g, "/")}`];
    if (asPath.some((x) => files.includes(x) || files.includes(`${x}.py`) || files.some((f) => f.startsWith(`${x}/`)))) return true;
    // `pkg.tests.test_suite`: an attribute (a function returning a suite, a TestCase) of a module of the tree.
    const dot = p.lastIndexOf(".");
    if (dot <= 0 || p.includes("/")) return false;
    const mod = p.slice(0, dot).replace(/\./g, "/");
    const attr = p.slice(dot + 1);
    const text = [`${mod}.py`, `${mod}/__init__.py`, `src/${mod}.py`, `src/${mod}/__init__.py`].map((f) => (files.includes(f) && read ? read(f) : undefined)).find((t) => t !== undefined);
    return text !== undefined && new RegExp(`^(def|class) ${attr}\\b|^${attr}\\s*=`, "m").test(text);
  };
  const out: string[] = [];
  let named = false;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!.replace(/^["']|["']$/g, "");
    if (/^(-v|--verbose|-b|--buffer|-f|--failfast|-c|--catch|-q|--quiet|--locals|--durations)$/.test(w)) {
      if (w === "--durations") i++;
      continue;
    }
    if (w === "discover") out.push(w);
    else if (w === "-s" || w === "--start-directory" || w === "-t" || w === "--top-level-directory") {
      const v = (words[++i] ?? "").replace(/^["']|["']$/g, "");
      if (!exists(v)) return undefined;
      out.push(w, v);
      named = true;
    } else if (w === "-p" || w === "--pattern" || w === "-k") out.push(w, shellWord((words[++i] ?? "").replace(/^["']|["']$/g, "")));
    else if (w.startsWith("-")) return undefined;
    else if (exists(w)) {
      out.push(w);
      named = true;
    } else return undefined;
  }
  return named ? out.join(" ") : undefined;
}

function shellWord(s: string): string {
  return /^[\w./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}

/**
 * Python test files a command line runs directly: `python [-m coverage run …] path.py`,
 * `coverage run [options] path.py`, `./path.py` — only files of the tree whose name says test
 * (setup.py, conftest.py and runners of other tools excluded).
 */
export function testScriptsIn(command: string, files: string[]): string[] {
  const out: string[] = [];
  for (const w of command.split(/\s+/)) {
    const p = w.replace(/^["']|["']$/g, "").replace(/^\.\//, "").replace(/^\{toxinidir\}\//, "");
    if (!p.endsWith(".py") || !files.includes(p)) continue;
    const base = p.slice(p.lastIndexOf("/") + 1);
    if (/^(setup|conftest|noxfile|manage)\.py$/.test(base) || !/test/i.test(p)) continue;
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

/** Whether a Python file's text defines tests: a test function, a TestCase, unittest's runner or import. */
function definesTests(text: string): boolean {
  return /^\s*(async\s+)?def test|^\s*class \w+\([^)]*TestCase\b|\bunittest\.main\(|^\s*(import unittest|from unittest import)/m.test(text);
}

/** The Python files (the first 500 not `excluded`) with a doctest line (`>>> `). */
function modulesWithDoctests(tree: GitTree, excluded: RegExp): string[] {
  return tree.files.filter((f) => f.endsWith(".py") && !excluded.test(f)).slice(0, 500).filter((f) => /^\s*>>> /m.test(tree.read(f) ?? ""));
}

/**
 * The paths the reference run gives pytest, following the repository before adding any: (1) its
 * `testpaths`, (2) the paths its CI, tox or nox pytest invocations name, (3) a conventional
 * directory (tests/, test/, testing/), (4) the root (no path: pytest walks the rootdir). The first
 * whose files pytest would collect under the repository's python_files and norecursedirs wins
 * ({@link collectedFiles}); `[]` (the root) when none collects anything either.
 */
function chooseTestPaths(tree: GitTree, facts: RepoFacts): void {
  const cfg = {
    ...(facts.pytestLines.python_files ? { pythonFiles: facts.pytestLines.python_files.flatMap((l) => l.split(/\s+/)).filter(Boolean) } : {}),
    ...(facts.pytestLines.norecursedirs ? { norecursedirs: facts.pytestLines.norecursedirs.flatMap((l) => l.split(/\s+/)).filter(Boolean) } : {}),
  };
  const exists = (p: string) => tree.files.some((f) => f === p || f.startsWith(p.replace(/\/$/, "") + "/"));
  const configured = (facts.pytestLines.testpaths ?? []).flatMap((l) => l.split(/\s+/)).filter(Boolean).map((p) => p.replace(/\/$/, ""));
  // A path under another path of the same list is dropped: the directory collects it already, and
  // pytest 8 given a directory and a file inside it collects only the file (seen with 8.3.5).
  const outermost = (paths: string[]) => paths.filter((p) => !paths.some((q) => q !== p && p.startsWith(q.replace(/\/+$/, "") + "/")));
  // A command of the repository that runs pytest's default collection (no path) says the suite is
  // all of it: files other commands name (a packaging check's one file) do not narrow it to them.
  // Directories named do (unit tests beside an integration directory, say).
  const named = outermost([...new Set(facts.testCommands.flatMap((c) => pytestArgPaths(c, tree.files)))]);
  const whole = facts.testCommands.some((c) => runsWholeSuite(c, tree.files));
  const ci = whole && named.every((p) => tree.files.includes(p)) ? [] : named;
  const conventional = ["tests", "test", "testing"].filter(exists).slice(0, 1);
  const candidates: { paths: string[]; reason: string }[] = [
    { paths: outermost(configured.filter(exists)), reason: `the repository's testpaths (${facts.pytestConfigFile})` },
    { paths: ci, reason: "the paths its CI, tox or nox pytest commands name" },
    { paths: conventional, reason: "a conventional test directory" },
  ];
  // Test scripts the repository's own commands run directly (`coverage run test/test.py`,
  // `python tests/run.py`): pytest collects a file given by name whatever python_files says.
  // Only a script that defines tests (a test function, a TestCase, unittest's runner): a helper the
  // commands run beside the suite (a script fetching fixtures) is not one.
  const scriptDefinesTests = (f: string) => definesTests(tree.read(f) ?? "");
  const scripts = [...new Set(facts.testCommands.flatMap((c) => testScriptsIn(c, tree.files)))].filter(scriptDefinesTests);
  const withScripts = (paths: string[], reason: string) => {
    const extra = scripts.filter((f) => !collectedFiles(tree.files, paths, cfg).includes(f));
    // pytest 8 given a directory and a file inside it collects only the file: a directory holding
    // a script is given as the files it collects, beside the script.
    paths = paths.flatMap((p) => (extra.some((f) => f.startsWith(p.replace(/\/+$/, "") + "/")) ? collectedFiles(tree.files, [p], cfg) : [p]));
    facts.testPaths = [...paths, ...extra];
    facts.testPathsReason = reason + (extra.length ? `; and ${extra.join(", ")}, which the repository's test commands run directly` : "");
  };
  // A configuration that collects the modules' doctests (addopts `--doctest-modules`) with no
  // testpaths makes them part of the suite pytest runs from the root: a conventional directory
  // chosen for the test files gets the top-level directories (or root modules) holding doctests
  // beside it (jaraco.context: 5 tests in tests/, 43 doctest lines in jaraco/context).
  const doctestModules = /--doctest-modules\b/.test(facts.pytestOptions.addopts ?? "");
  const doctestRoots = () =>
    [...new Set(modulesWithDoctests(tree, /(^|\/)(docs?|tests?|testing|examples?|build|dist|\.[^/]+)\/|(^|\/)(setup|conftest|noxfile)\.py$/).map((f) => (f.includes("/") ? f.split("/")[0]! : f)))].sort();
  for (const c of candidates) {
    if (!c.paths.length) continue;
    const n = collectedFiles(tree.files, c.paths, cfg).length;
    if (n > 0) {
      const extra = c.paths === conventional && doctestModules && !configured.length ? doctestRoots().filter((d) => !c.paths.includes(d)) : [];
      withScripts([...c.paths, ...extra], `${c.reason}: ${n} test file${n === 1 ? "" : "s"} under python_files ${(cfg.pythonFiles ?? ["test_*.py", "*_test.py"]).join(" ")}${extra.length ? `; and ${extra.join(", ")}, whose modules' doctests --doctest-modules collects` : ""}`);
      return;
    }
  }
  if (scripts.length) {
    withScripts([], "the test scripts the repository's test commands run directly");
    facts.testPathsReason = `${scripts.join(", ")}: the test scripts the repository's test commands run directly`;
    return;
  }
  const root = collectedFiles(tree.files, [], cfg).length;
  facts.testPaths = [];
  // No test file, but the configuration (or a test command) collects the modules' doctests
  // (`--doctest-modules`) and some module has one: the suite is those doctests, from the root.
  const doctests = /--doctest-modules\b/.test([facts.pytestOptions.addopts ?? "", ...facts.testCommands].join("\n"));
  if (!root && doctests) {
    const withDoctest = modulesWithDoctests(tree, /(^|\/)(docs?|tests?|build|dist)\//);
    if (withDoctest.length) {
      facts.testPathsReason = `the root: no test file, and the repository's pytest collects the doctests of its modules (--doctest-modules; ${withDoctest.length} module${withDoctest.length === 1 ? "" : "s"} with one, e.g. ${withDoctest[0]})`;
      return;
    }
  }
  facts.testPathsReason = root
    ? `the root, as pytest with no arguments walks it: ${root} test file${root === 1 ? "" : "s"} under python_files ${(cfg.pythonFiles ?? ["test_*.py", "*_test.py"]).join(" ")}${cfg.norecursedirs ? ` and norecursedirs ${cfg.norecursedirs.join(" ")}` : ""}`
    : "no test file found under the repository's pytest configuration";
}

/**
 * No file under pytest's python_files anywhere, and the suite is run by pytest: the files nose's or
 * unittest's discovery would take (`test.py`, `tests.py`, `testfoo.py`, `foo_tests.py`: nose's
 * testMatch, unittest's test*.py) that define tests are given to pytest by name (it collects a
 * file given by name whatever python_files says): a suite run by `nosetests` in a package's
 * test/test.py, say. Under docs/, examples/, build/ or a hidden directory they are not the suite.
 */
function discoveredByName(tree: GitTree, facts: RepoFacts): void {
  if (facts.unittestCommand || facts.testPaths.length || facts.pytestLines.python_files || !/^no test file found/.test(facts.testPathsReason ?? "")) return;
  const found = tree.files
    .filter((f) => /(^|\/)(test[^/]*|[^/]*_tests?)\.py$/i.test(f) && !/(^|\/)(docs?|examples?|build|dist|\.[^/]+)\//.test(f) && !/(^|\/)(setup|conftest)\.py$/.test(f))
    .filter((f) => definesTests(tree.read(f) ?? ""))
    .slice(0, 200);
  if (!found.length) return;
  facts.testPaths = found;
  facts.testPathsReason = `the files nose's or unittest's discovery takes as tests, by name (${found.length}: ${found.slice(0, 3).join(", ")}${found.length > 3 ? ", …" : ""}): no file matches pytest's python_files`;
}

/** A Python project in a subdirectory of the repository: its name (as declared and normalized), directory and import root. */
export interface SiblingProject {
  name: string;
  normalized: string;
  /** Its directory, relative to the repository root. */
  dir: string;
  /** The directory its packages import from: `dir/src` for a src layout, else `dir`. */
  importRoot: string;
}

/**
 * Python projects below the root, one or two directories deep (a `pyproject.toml` with
 * `[project] name`, or a `setup.py` with a literal `name=`), outside test, documentation and
 * example directories (whose projects are fixtures). A monorepo's packages, or a project that
 * ships its own build backend as a second distribution. Rust extensions (maturin, setuptools-rust,
 * a Cargo.toml) are not among them: their crates cannot be had offline.
 */
export function siblingProjects(tree: GitTree): SiblingProject[] {
  const out: SiblingProject[] = [];
  for (const f of tree.files) {
    const m = /^((?:[^/]+\/){1,2})(pyproject\.toml|setup\.py)$/.exec(f);
    if (!m) continue;
    const dir = m[1]!.replace(/\/$/, "");
    if (/(^|\/)(tests?|testing|docs?|examples?|fixtures?|samples?|data|vendor(ed)?|_vendor|third_party)(\/|$)/i.test(dir)) continue;
    const text = tree.read(f) ?? "";
    const name = m[2] === "pyproject.toml" ? obj(obj(safeToml(text) ?? {}).project).name : /\bname\s*=\s*["']([A-Za-z0-9][\w.-]*)["']/.exec(text)?.[1];
    if (typeof name !== "string" || !name || out.some((p) => p.dir === dir)) continue;
    // A Rust extension (maturin, setuptools-rust, a Cargo.toml) cannot be built from the tree
    // offline (its crates come from crates.io): the requirement is looked up like any other.
    if (tree.files.includes(`${dir}/Cargo.toml`) || /\b(maturin|setuptools[-_]rust)\b/.test(m[2] === "pyproject.toml" ? JSON.stringify(obj(safeToml(text) ?? {})["build-system"] ?? {}) : text)) continue;
    const src = tree.files.some((x) => x.startsWith(`${dir}/src/`) && x.endsWith("/__init__.py"));
    out.push({ name, normalized: normalizeName(name), dir, importRoot: src ? `${dir}/src` : dir });
  }
  return out;
}

function safeToml(text: string): Obj | undefined {
  try {
    return parseToml(text) as Obj;
  } catch {
    return undefined;
  }
}

/** Keys of one INI section, in order (continuation lines skipped). */
export function iniKeys(text: string, section: string): string[] {
  const keys: string[] = [];
  let inSection = false;
  for (const line of text.split("\n")) {
    const sec = /^\s*\[([^\]]+)\]\s*$/.exec(line);
    if (sec) inSection = sec[1]!.trim() === section;
    else if (inSection && /^[^\s#;]/.test(line)) {
      const kv = /^([^=:]+?)\s*[=:]/.exec(line);
      if (kv) keys.push(kv[1]!.trim());
    }
  }
  return keys;
}

/**
 * The lines of a multi-line INI value (setuptools/tox style: continuation lines indented),
 * comments and blanks dropped. The `ini` package keeps only the first line of such values,
 * so the value's extent is read here from the section the parser found.
 */
export function multilineIni(text: string, section: string, key: string): string[] {
  const lines = text.split("\n");
  let inSection = false;
  const out: string[] = [];
  let inKey = false;
  for (const line of lines) {
    const sec = /^\s*\[([^\]]+)\]\s*$/.exec(line);
    if (sec) {
      inSection = sec[1]!.trim() === section;
      inKey = false;
      continue;
    }
    if (!inSection) continue;
    const kv = /^([^\s=:#;][^=:]*?)\s*[=:]\s*(.*)$/.exec(line);
    if (kv && !/^\s/.test(line)) {
      inKey = kv[1]!.trim() === key;
      if (inKey && kv[2]!.trim()) out.push(kv[2]!.trim());
      continue;
    }
    if (inKey && /^\s+\S/.test(line)) out.push(line.trim());
    else if (inKey && line.trim() === "") continue;
  }
  return joinContinued(out.filter((l) => l && !l.startsWith("#") && !l.startsWith(";")));
}

/**
 * Lines ending in a backslash joined with the next line (each trimmed), as setuptools reads a
 * setup.cfg requirement list (pkg_resources `join_continuation` after comments are dropped):
 * `a >= 1; \`, `# why`, `python_implementation != "PyPy"` is one requirement with a marker, not
 * two names. With `commentEndsLine` (pip's requirements files), a comment line ends the joined
 * line and is dropped.
 */
export function joinContinued(lines: string[], commentEndsLine = false): string[] {
  const out: string[] = [];
  let pending = "";
  for (const l of lines) {
    if (commentEndsLine && pending && l.trim().startsWith("#")) {
      out.push(pending);
      pending = "";
      continue;
    }
    const t = pending ? `${pending} ${l.trim()}` : l.trim();
    if (t.endsWith("\\")) pending = t.slice(0, -1).trim();
    else {
      out.push(t);
      pending = "";
    }
  }
  if (pending) out.push(pending);
  return out;
}
