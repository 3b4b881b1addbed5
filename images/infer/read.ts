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
import { normalizeName, parseRequirement, type Requirement } from "./pep508";

/** Build backends forager knows how to provide. */
export type Backend = "setuptools" | "flit" | "hatch" | "poetry" | "pdm" | "unknown";

/** One requirement and the file (and section) that asked for it. */
export interface SourcedRequirement extends Requirement {
  /** e.g. `pyproject.toml [project.optional-dependencies.test]`. */
  from: string;
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
  /** pytest ini options read (addopts, testpaths, minversion …), as strings. */
  pytestOptions: Record<string, string>;
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

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : typeof v === "string" ? v.split("\n") : []);

function reqs(lines: string[], from: string): SourcedRequirement[] {
  const out: SourcedRequirement[] = [];
  for (const l of lines) {
    const r = parseRequirement(l);
    if (r) out.push({ ...r, from });
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
  for (const raw of text.split("\n")) {
    const line = raw.trim();
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

/** Statically read `name=[...]` / `name={...}` list literals of a setup.py call (no code runs). */
export function setupPyLists(text: string): { installRequires: string[]; testsRequire: string[]; extras: Record<string, string[]> } {
  const strs = (body: string) => [...body.matchAll(/(['"])((?:(?!\1).)*)\1/g)].map((m) => m[2]!);
  const list = (key: string): string[] => {
    const m = new RegExp(`\\b${key}\\s*=\\s*\\[([^\\]]*)\\]`).exec(text);
    return m ? strs(m[1]!) : [];
  };
  const extras: Record<string, string[]> = {};
  const em = /\bextras_require\s*=\s*\{([\s\S]*?)\}\s*[,)]/.exec(text);
  if (em) for (const m of em[1]!.matchAll(/(['"])([\w.-]+)\1\s*:\s*\[([^\]]*)\]/g)) extras[m[2]!] = strs(m[3]!);
  return { installRequires: list("install_requires"), testsRequire: list("tests_require"), extras };
}

/** Words of a shell line that run tests, for the record (`pytest …`, `python -m pytest …`, `python -m unittest …`, `tox`, `nox`). */
function testCommandsIn(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const l = line.trim().replace(/^-\s*/, "");
    if (/(^|\s|&&\s*)((python3?|uv run|poetry run|pdm run|hatch run)\s+(-m\s+)?)?(pytest|unittest|tox|nox|coverage run)\b/.test(l) && l.length < 300) out.push(l);
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
 * `coverage run`), joined into a command line.
 * @returns `{install, requirementFiles, commands}` in file order.
 */
export function noxfileFacts(text: string): { install: string[]; requirementFiles: string[]; commands: string[] } {
  const install: string[] = [];
  const requirementFiles: string[] = [];
  const commands: string[] = [];
  // Calls whose argument list holds no nested parentheses (the common form); `*LIST` splats are not followed.
  for (const m of text.matchAll(/\bsession\.(install|run)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)/g)) {
    // Keyword arguments (env=…, external=…) come after the positional ones: cut them off.
    const args = pyStrings(m[2]!.replace(/(?:^|,)\s*[A-Za-z_]\w*\s*=(?!=)[\s\S]*$/, ""));
    if (m[1] === "install") {
      for (let i = 0; i < args.length; i++) {
        const a = args[i]!;
        if (a === "-r" || a === "--requirement") requirementFiles.push(args[++i] ?? "");
        else if (/^-r\S/.test(a)) requirementFiles.push(a.slice(2));
        else if (a === "-e" || a === "-c") i++;
        else if (!a.startsWith("-") && !a.startsWith(".")) install.push(a);
      }
    } else if (args.length) {
      const line = args.join(" ");
      if (/^(pytest|py\.test|coverage run|python3? -m (pytest|unittest))\b/.test(line)) commands.push(line);
    }
  }
  return { install, requirementFiles: requirementFiles.filter(Boolean), commands };
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
    workflowPythons: [],
    testCommands: [],
    filesRead: [],
    warnings: [],
  };
  let buildBackend = "";
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
      if (typeof project.version === "string") facts.projectVersion = project.version;
      const eps: Record<string, Record<string, string>> = {};
      const group = (v: unknown) => Object.fromEntries(Object.entries(obj(v)).filter(([, x]) => typeof x === "string")) as Record<string, string>;
      for (const [g, v] of Object.entries(obj(project["entry-points"]))) eps[g] = group(v);
      if (Object.keys(obj(project.scripts)).length) eps.console_scripts = group(project.scripts);
      if (Object.keys(eps).length) facts.entryPoints = eps;
      if (typeof project["requires-python"] === "string") facts.requiresPython = project["requires-python"];
      facts.dependencies.push(...reqs(strings(project.dependencies), "pyproject.toml [project.dependencies]"));
      for (const [k, v] of Object.entries(obj(project["optional-dependencies"]))) {
        (TEST_GROUPS.test(k) ? facts.testDependencies : facts.extraDependencies).push(...reqs(strings(v), `pyproject.toml [project.optional-dependencies.${k}]`));
      }
      // PEP 735 groups: strings or {include-group = "..."}.
      const groups = obj(py["dependency-groups"]);
      const groupReqs = (name: string, depth = 0): string[] =>
        depth > 5
          ? []
          : (Array.isArray(groups[name]) ? (groups[name] as unknown[]) : []).flatMap((e) =>
              typeof e === "string" ? [e] : typeof obj(e)["include-group"] === "string" ? groupReqs(String(obj(e)["include-group"]), depth + 1) : [],
            );
      for (const k of Object.keys(groups)) if (TEST_GROUPS.test(k)) facts.testDependencies.push(...reqs(groupReqs(k), `pyproject.toml [dependency-groups.${k}]`));
      const tool = obj(py.tool);
      const poetry = obj(tool.poetry);
      if (Object.keys(poetry).length) {
        const pyDep = obj(poetry.dependencies).python;
        if (!facts.requiresPython && typeof pyDep === "string" && /^[<>=!~]/.test(pyDep)) facts.requiresPython = pyDep;
        facts.dependencies.push(...poetryReqs(poetry.dependencies, "pyproject.toml [tool.poetry.dependencies]"));
        facts.testDependencies.push(...poetryReqs(poetry["dev-dependencies"], "pyproject.toml [tool.poetry.dev-dependencies]"));
        for (const [g, v] of Object.entries(obj(poetry.group))) {
          if (TEST_GROUPS.test(g)) facts.testDependencies.push(...poetryReqs(obj(v).dependencies, `pyproject.toml [tool.poetry.group.${g}.dependencies]`));
        }
      }
      const hatchEnvs = obj(obj(tool.hatch).envs);
      for (const [e, v] of Object.entries(hatchEnvs)) {
        if (TEST_GROUPS.test(e) || e === "default") {
          facts.testDependencies.push(...reqs(strings(obj(v).dependencies), `pyproject.toml [tool.hatch.envs.${e}.dependencies]`));
          facts.testDependencies.push(...reqs(strings(obj(v)["extra-dependencies"]), `pyproject.toml [tool.hatch.envs.${e}.extra-dependencies]`));
        }
      }
      const pdm = obj(tool.pdm);
      for (const [g, v] of Object.entries(obj(pdm["dev-dependencies"]))) {
        if (TEST_GROUPS.test(g)) facts.testDependencies.push(...reqs(strings(v), `pyproject.toml [tool.pdm.dev-dependencies.${g}]`));
      }
      if (tool["setuptools_scm"] !== undefined || tool["setuptools-scm"] !== undefined || obj(obj(tool.hatch).version).source === "vcs" || obj(pdm.version).source === "scm") facts.usesScm = true;
      const vf = obj(obj(obj(obj(tool.hatch).build).hooks).vcs)["version-file"] ?? obj(tool.setuptools_scm).version_file ?? obj(tool.setuptools_scm).write_to;
      if (typeof vf === "string") facts.versionFile = vf;
      const ini = obj(obj(tool.pytest)["ini_options"]);
      for (const [k, v] of Object.entries(ini)) facts.pytestOptions[k] = Array.isArray(v) ? v.join(" ") : String(v);
    } catch (err) {
      facts.warnings.push(`pyproject.toml: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  if (facts.buildRequires.some((r) => /setuptools-scm|hatch-vcs|setuptools-git-versioning|pdm-backend|versioningit/.test(r.normalized))) {
    facts.usesScm ||= facts.buildRequires.some((r) => /scm|vcs|versioning/.test(r.normalized));
  }
  // setup.cfg: [options] install_requires, [options.extras_require], [tool:pytest].
  for (const file of ["setup.cfg", "tox.ini", "pytest.ini"]) {
    const text = tree.read(file);
    if (text === undefined) continue;
    facts.filesRead.push(file);
    try {
      const cfg = parseIni(text) as Record<string, Obj>;
      const multi = (v: unknown) => (typeof v === "string" ? v.split(/\n|;(?=\s)/) : []);
      if (file === "setup.cfg") {
        const opts = obj(cfg.options);
        facts.dependencies.push(...reqs(multilineIni(text, "options", "install_requires"), "setup.cfg [options] install_requires"));
        if (!facts.requiresPython && typeof opts.python_requires === "string") facts.requiresPython = opts.python_requires;
        // `ini` nests dotted section names (options.extras_require → options.extras_require as a child): keys read from the text.
        for (const k of iniKeys(text, "options.extras_require")) {
          (TEST_GROUPS.test(k) ? facts.testDependencies : facts.extraDependencies).push(...reqs(multilineIni(text, "options.extras_require", k), `setup.cfg [options.extras_require] ${k}`));
        }
        if (obj(cfg.options).use_scm_version !== undefined) facts.usesScm = true;
        void multi;
      }
      if (file === "tox.ini") {
        for (const sec of Object.keys(cfg)) {
          if (!/^testenv($|:)/.test(sec)) continue;
          for (const d of multilineIni(text, sec, "deps")) {
            const m = /^-r\s*\{toxinidir\}\/(.+)$/.exec(d.trim()) ?? /^-r\s*(.+)$/.exec(d.trim());
            if (m) facts.testDependencies.push(...requirementsFile(tree, normalizePath(m[1]!), facts));
            else facts.testDependencies.push(...reqs([d], `tox.ini [${sec}] deps`));
          }
          facts.testCommands.push(...testCommandsIn(multilineIni(text, sec, "commands").join("\n")));
        }
      }
      const pytestSection = file === "setup.cfg" ? "tool:pytest" : "pytest";
      for (const k of iniKeys(text, pytestSection)) facts.pytestOptions[k] ??= multilineIni(text, pytestSection, k).join(" ");
    } catch (err) {
      facts.warnings.push(`${file}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  const noxfile = tree.read("noxfile.py");
  if (noxfile !== undefined) {
    facts.filesRead.push("noxfile.py");
    const nf = noxfileFacts(noxfile);
    facts.testDependencies.push(...reqs(nf.install, "noxfile.py session.install"));
    for (const f of nf.requirementFiles) facts.testDependencies.push(...requirementsFile(tree, normalizePath(f), facts));
    facts.testCommands.push(...nf.commands);
  }
  const setupPy = tree.read("setup.py");
  if (setupPy !== undefined) {
    facts.filesRead.push("setup.py");
    const s = setupPyLists(setupPy);
    facts.dependencies.push(...reqs(s.installRequires, "setup.py install_requires"));
    facts.testDependencies.push(...reqs(s.testsRequire, "setup.py tests_require"));
    for (const [k, v] of Object.entries(s.extras)) (TEST_GROUPS.test(k) ? facts.testDependencies : facts.extraDependencies).push(...reqs(v, `setup.py extras_require ${k}`));
    if (/use_scm_version/.test(setupPy)) facts.usesScm = true;
    if (facts.backend === "unknown" && !buildBackend) buildBackend = "setuptools";
  }
  for (const f of tree.files) {
    if (/^(requirements|test-requirements|requirements-(test|tests|dev|testing))[\w.-]*\.txt$/i.test(f) || /^requirements\/(test|tests|testing|dev|ci)[\w.-]*\.(txt|in)$/i.test(f)) {
      const list = requirementsFile(tree, f, facts);
      (/test|dev|ci/i.test(f) ? facts.testDependencies : facts.dependencies).push(...list);
    }
  }
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
          if (typeof run === "string") facts.testCommands.push(...testCommandsIn(run));
        }
      }
    } catch (err) {
      facts.warnings.push(`${f}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  facts.workflowPythons = [...new Set(facts.workflowPythons)];
  facts.backend = backendOf(buildBackend || (pyText && obj(obj((safeToml(pyText) ?? {}).tool).poetry).name ? "poetry" : ""), facts.buildRequires);
  if (facts.backend === "unknown" && setupPy !== undefined) facts.backend = "setuptools";
  // Tests: pytest testpaths, else conventional directories.
  const tp = facts.pytestOptions.testpaths?.split(/\s+/).filter(Boolean) ?? [];
  facts.testPaths = tp.filter((p) => tree.files.some((f) => f === p || f.startsWith(p.replace(/\/$/, "") + "/")));
  if (!facts.testPaths.length) {
    for (const d of ["tests", "test", "testing"]) if (tree.files.some((f) => f.startsWith(`${d}/`))) {
      facts.testPaths = [d];
      break;
    }
  }
  const testFiles = tree.files.filter((f) => /(^|\/)(test_[^/]*|[^/]*_test)\.py$/.test(f) && facts.testPaths.some((p) => f.startsWith(p)));
  const samples = testFiles.slice(0, 20).map((f) => tree.read(f) ?? "");
  const pytestSeen = Object.keys(facts.pytestOptions).length > 0 || tree.has("conftest.py") || tree.files.some((f) => f.endsWith("/conftest.py")) || samples.some((s) => /\bimport pytest\b|\bfrom pytest\b/.test(s)) || facts.testDependencies.some((r) => r.normalized === "pytest");
  facts.runner = !pytestSeen && samples.some((s) => /\bunittest\b/.test(s)) ? "unittest" : "pytest";
  // Run with `python -m unittest` when nothing configures pytest and the CI, tox or nox run unittest.
  facts.unittestCommand = facts.runner === "unittest" && !pytestSeen && facts.testCommands.some((c) => /\bunittest\b/.test(c)) && !facts.testCommands.some((c) => /\bpytest\b/.test(c));
  return facts;
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
  return out.filter((l) => l && !l.startsWith("#") && !l.startsWith(";"));
}
