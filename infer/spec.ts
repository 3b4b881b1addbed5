/**
 * Repository facts → an ImageSpec plus its provenance, and the repair rules that change a spec
 * after a failed build or reference run. Pure functions (no Docker), so they are tested fast.
 */
import { z } from "zod";
import { shellQuote } from "../lib/shell";
import { BASE_SUITES, baseImageTag, type BaseSuite } from "../images/base";
import { ImageSpecSchema, type ImageSpec } from "../images/spec";
import { backendPackages, type DebianMapper, notNeeded } from "./debian";
import { markerActive, normalizeName, parseRequirement, pythonSatisfies, type Requirement } from "./pep508";
import type { RepoFacts } from "./read";

/** The interpreter of each base suite (full version, for markers and requires-python). */
export const SUITE_PYTHON: Record<string, string> = { ...BASE_SUITES };

/** One package decision: a distribution the repository asked for and what forager did with it. */
export const PackageDecisionSchema = z.object({
  dist: z.string(),
  from: z.string(),
  /** Debian package installed, when one was found. */
  package: z.string().optional(),
  via: z.string().optional(),
  /** The Debian package's upstream version, when known and the requirement has a specifier. */
  version: z.string().optional(),
  /** Why nothing was installed: "marker false", "tooling", "no Debian package". */
  skipped: z.string().optional(),
  /**
   * What the repository needs it for: "build" (build-system requires), "runtime" (PEP 621
   * dependencies, install_requires, poetry main, a runtime requirements file) or "test" (test
   * extras and groups, tox/nox deps, test requirements files, CI install lines). A missing test
   * requirement is dropped (the files importing it deselected); only a runtime one can reject.
   */
  role: z.enum(["build", "runtime", "test"]).optional(),
});

/** One change made by the repair loop. */
export const RepairChangeSchema = z.object({
  /** 1-based attempt that saw the error; 0 before the first build (the pip index preflight). */
  attempt: z.number().int(),
  /** The error line that triggered the change. */
  trigger: z.string(),
  /** What changed, for a person. */
  change: z.string(),
});
export type RepairChange = z.infer<typeof RepairChangeSchema>;

/** The outcome of inference: accepted or rejected with the reason, and the figures of the reference runs. */
export const InferResultSchema = z.object({
  accepted: z.boolean(),
  reason: z.string(),
  python: z.string(),
  testsCollected: z.number().int(),
  passed: z.number().int(),
  failed: z.number().int(),
  skipped: z.number().int(),
  /** passed / (passed + failed); skipped tests not counted. */
  passRate: z.number(),
  flaky: z.array(z.string()),
  buildSeconds: z.number(),
  imageMb: z.number(),
  attempts: z.number().int(),
  sourceInstall: z.boolean(),
  /** The cause class of the verdict (infer/verdict.ts CAUSES). */
  cause: z.string().optional(),
  /** The decisive lines of the last attempt's log (the exception and its message, the failing step). */
  decisive: z.array(z.string()).optional(),
  /** The version-skew line, when the last attempt failed at import against a packaged dependency of another era. */
  skew: z.string().optional(),
  /** Node ids of the failed tests that failed for the network a sandbox does not have (not counted in the pass rate of an accepted run). */
  networkTests: z.array(z.string()).optional(),
  /** Node ids of the failed tests that failed importing a test requirement forager dropped for want of a package (not counted either). */
  droppedRequirementTests: z.array(z.string()).optional(),
});
export type InferResult = z.infer<typeof InferResultSchema>;

/** One build + reference run of the repair loop, as the provenance keeps it. */
export const AttemptRecordSchema = z.object({
  attempt: z.number().int(),
  suite: z.string(),
  /** The step that decided it: `build: <layer or step>` or `reference run`. */
  step: z.string(),
  /** `build failed`, `no tests collected`, `timed out`, or `P/N pass`. */
  outcome: z.string(),
  /** The decisive lines of its log (infer/verdict.ts decisiveLines). */
  decisive: z.array(z.string()),
});
export type AttemptRecord = z.infer<typeof AttemptRecordSchema>;

/** How one suite fits the repository (infer/debian-suites.ts SuiteFit). */
export const SuiteFitSchema = z.object({
  suite: z.string(),
  python: z.string(),
  pythonOk: z.boolean(),
  missingRuntime: z.array(z.string()),
  outdatedRuntime: z.array(z.string()),
  missingTest: z.array(z.string()),
  outdatedTest: z.array(z.string()),
});

/** Why the base suite is the one it is, and the suites tried before it. */
export const SuiteChoiceSchema = z.object({
  suite: z.string(),
  reason: z.string(),
  fits: z.array(SuiteFitSchema),
  /** Suites tried before this one, each with its verdict (a rejection falls back to the next suite). */
  tried: z.array(z.object({ suite: z.string(), reason: z.string() })),
});

/** Why the spec is what it is: every fact read, package chosen or skipped, and repair made. */
export const ProvenanceSchema = z.object({
  version: z.literal(1),
  tool: z.literal("forager images infer"),
  inferredAt: z.string(),
  mappingSources: z.array(z.string()),
  backend: z.string(),
  layout: z.enum(["src", "flat"]),
  runner: z.enum(["pytest", "unittest"]),
  requiresPython: z.string().optional(),
  /** Debian suite of the base image (absent in provenance written before suites: bookworm). */
  suite: z.string().optional(),
  filesRead: z.array(z.string()),
  warnings: z.array(z.string()),
  workflowPythons: z.array(z.string()),
  testCommands: z.array(z.string()),
  testPaths: z.array(z.string()),
  packages: z.array(PackageDecisionSchema),
  /** The pip index dependencies came from (absent: Debian packages). */
  pipIndex: z.string().optional(),
  deselected: z.array(z.object({ path: z.string(), reason: z.string() })),
  changes: z.array(RepairChangeSchema),
  /** How each requirements file was classified (runtime or test) and why. */
  requirementFiles: z.array(z.object({ file: z.string(), role: z.enum(["runtime", "test"]), reason: z.string() })).optional(),
  /** Extras and groups installed for the test run because the CI, tox or nox install them. */
  testExtras: z.array(z.string()).optional(),
  /** Why the test paths are what they are. */
  testPathsReason: z.string().optional(),
  suiteChoice: SuiteChoiceSchema.optional(),
  /** Every build + reference run, with its decisive lines. */
  attempts: z.array(AttemptRecordSchema).optional(),
  result: InferResultSchema.optional(),
});
export type Provenance = z.infer<typeof ProvenanceSchema>;

/** An inferred spec: the ImageSpec itself and its provenance (written to `<spec>.provenance.json`). */
export interface InferredSpec {
  spec: ImageSpec;
  provenance: Provenance;
  /** Test paths given to the runner (the reference run's arguments). */
  testPaths: string[];
  /** The other extras' requirements (markers true for the suite's Python), for {@link repairFromLog}. */
  extras: string[];
}

/** Debian packages every inferred spec starts from (interpreter, pip, setuptools, wheel, pytest). */
export const BASE_PACKAGES = ["python3-pip", "python3-setuptools", "python3-wheel", "python-is-python3", "python3-pytest"];

/** The shell expression of the interpreter's site-packages directory (where `.pth` files and forager's plugin go). */
const SITE_PACKAGES = "$(python3 -c 'import site; print(site.getsitepackages()[0])')";

/** The install line: an editable install offline, else a `.pth` to the source root (the backend in the suite is too old, or a C build fails). */
export function installLine(layout: "src" | "flat", workdir: string, versionFile?: { path: string; version: string }, dist?: { name: string; version: string; entryPoints?: Record<string, Record<string, string>> }, buildExt = false): string {
  const root = layout === "src" ? `${workdir}/src` : workdir;
  // The .pth route registers no metadata: a minimal dist-info (name, version, entry points) lets
  // importlib.metadata and entry-point plugin lookups (e.g. Markdown's own extensions) find the project.
  let meta = "";
  if (dist && /^[A-Za-z0-9][\w.-]*$/.test(dist.name)) {
    const dir = `${dist.name.replace(/[-.]+/g, "_")}-${dist.version}.dist-info`;
    const eps = Object.entries(dist.entryPoints ?? {})
      .map(([g, m]) => `[${g}]\n${Object.entries(m).map(([k, v]) => `${k} = ${v}`).join("\n")}\n`)
      .join("\n");
    const b64 = (t: string) => Buffer.from(t).toString("base64");
    meta =
      `d="${SITE_PACKAGES}/${dir}"; mkdir -p "$d"; ` +
      `echo ${b64(`Metadata-Version: 2.1\nName: ${dist.name}\nVersion: ${dist.version}\n`)} | base64 -d > "$d/METADATA"; ` +
      (eps ? `echo ${b64(eps)} | base64 -d > "$d/entry_points.txt"; ` : "");
  }
  // The file a VCS version plugin would have written at build time (the .pth route skips the build).
  const vf = versionFile && /^[\w./-]+\.py$/.test(versionFile.path) ? `test -e ${versionFile.path} || printf '__version__ = version = "%s"\\n__version_tuple__ = version_tuple = (%s)\\n' ${versionFile.version} ${versionFile.version.split(".").join(",")} > ${versionFile.path}; ` : "";
  // C extensions: built in place, so that the working tree (and the .pth route) imports them.
  const ext = buildExt ? `; python3 setup.py build_ext --inplace >/tmp/forager-build-ext.log 2>&1 || { tail -n 15 /tmp/forager-build-ext.log; echo "${BUILD_EXT_FAILED}"; }` : "";
  return (
    "pip install --no-index --no-deps --no-build-isolation --break-system-packages -e . >/tmp/forager-install.log 2>&1 || " +
    `{ tail -n 15 /tmp/forager-install.log; echo "forager-infer: source install (.pth to ${root})"; ` +
    `${vf}${meta}echo ${root} > "${SITE_PACKAGES}/forager-source.pth"; }${ext}`
  );
}

/**
 * The install line of a sibling project (infer/read.ts `siblingProjects`): an offline editable
 * install of `dir`, else a `.pth` to its import root (its build backend may be itself, or absent
 * from the suite).
 */
export function siblingInstallLine(dir: string, importRoot: string, workdir: string): string {
  const log = `/tmp/forager-install-${dir.replace(/[^\w.-]+/g, "_")}.log`;
  return (
    `pip install --no-index --no-deps --no-build-isolation --break-system-packages -e ${shellQuote(`./${dir}`)} >${log} 2>&1 || ` +
    `{ tail -n 5 ${log}; echo "forager-infer: source install of ${dir} (.pth to ${workdir}/${importRoot})"; echo ${shellQuote(`${workdir}/${importRoot}`)} >> "${SITE_PACKAGES}/forager-siblings.pth"; }`
  );
}

/**
 * Where dependencies come from when a pip index is configured (FORAGER_PIP_INDEX or
 * `--pip-index`): requirements go to `pythonPackages` as written (markers evaluated here), the
 * build backend too; Debian gives only the interpreter, pip and pytest.
 */
export interface PipPlan {
  /** Simple index URL (PEP 503), e.g. `https://pypi.org/simple/`. */
  index: string;
  /** ISO 8601 instant: only files uploaded before it (images/pip-cutoff.ts). */
  uploadedBefore?: string;
}

/** A requirement as pip is given it: name, extras, specifier (the marker was evaluated already). */
export function pipRequirement(r: Pick<Requirement, "name" | "extras" | "specifier">): string {
  return `${r.name}${r.extras.length ? `[${r.extras.join(",")}]` : ""}${r.specifier}`;
}

/**
 * The first spec of a repository from its facts: base packages, the backend's package, every
 * runtime and test dependency with a Debian package (markers evaluated for the suite's Python),
 * an offline editable install with a source fallback, pytest over the test paths. With
 * `opts.pip`, dependencies and the backend come from the pip index instead ({@link PipPlan});
 * direct URL references are skipped (a build reaches only the index).
 */
export function specFromFacts(
  facts: RepoFacts,
  mapper: DebianMapper,
  opts: { repo: string; commit: string; source?: ImageSpec["source"]; scmVersion?: string; suite?: BaseSuite; python?: string; pip?: PipPlan },
): InferredSpec {
  const suite = opts.suite ?? "bookworm";
  const py = opts.python ?? SUITE_PYTHON[suite]!;
  const packages: z.infer<typeof PackageDecisionSchema>[] = [];
  const system = new Set(BASE_PACKAGES);
  const pip: string[] = [];
  if (!opts.pip) {
    for (const p of backendPackages(facts.backend, suite)) system.add(p);
    if (facts.usesScm) system.add("python3-setuptools-scm");
    // C extension modules: a compiler and Python's headers (Cython's compiler for .pyx sources).
    if (facts.cExtensions) for (const p of ["build-essential", "python3-dev", ...(facts.cExtensions === "cython" ? ["cython3"] : [])]) system.add(p);
  } else if (facts.usesScm && !facts.buildRequires.some((r) => /setuptools-scm|hatch-vcs/.test(r.normalized))) pip.push("setuptools-scm");
  const seen = new Set<string>();
  const siblingInstalls: string[] = [];
  const versionWarnings: string[] = [];
  const self = opts.repo.split("/")[1]?.toLowerCase();
  const selfName = facts.projectName ? normalizeName(facts.projectName) : undefined;
  const roled = [
    ...facts.buildRequires.map((r) => ({ r, role: "build" as const })),
    ...facts.dependencies.map((r) => ({ r, role: "runtime" as const })),
    ...facts.testDependencies.map((r) => ({ r, role: "test" as const })),
  ];
  for (const { r, role } of roled) {
    if (seen.has(r.normalized) || r.normalized === self || (selfName && r.normalized === selfName)) continue;
    if (!markerActive(r.marker, py)) {
      packages.push({ dist: r.name, from: r.from, role, skipped: `marker false on Python ${py}: ${r.marker}` });
      continue;
    }
    seen.add(r.normalized);
    const sibling = facts.siblings?.find((p) => p.normalized === r.normalized);
    if (sibling) {
      // A second project of the same repository: installed from the tree, like the project itself.
      siblingInstalls.push(siblingInstallLine(sibling.dir, sibling.importRoot, "/testbed"));
      packages.push({ dist: r.name, from: r.from, role, package: sibling.dir, via: "repository (a project in this repository's tree)" });
      continue;
    }
    // Tooling is not needed to run tests, unless the project itself needs it at runtime (a pytest
    // plugin for black, flake8 or mypy imports it): a runtime requirement is installed when it can be.
    if (notNeeded(r.name) && !(role === "runtime" && (opts.pip || mapper.map(r.name)))) {
      packages.push({ dist: r.name, from: r.from, role, skipped: "tooling or standard-library backport, not needed to run tests" });
      continue;
    }
    if (opts.pip) {
      if (r.url) packages.push({ dist: r.name, from: r.from, role, skipped: `direct reference ${r.url}: a build reaches only the pip index` });
      else {
        pip.push(pipRequirement(r));
        packages.push({ dist: r.name, from: r.from, role, package: pipRequirement(r), via: "pip index" });
      }
      continue;
    }
    const m = mapper.map(r.name);
    if (m) {
      system.add(m.package);
      // Debian gives one version per suite: say when it is outside what the repository asks for.
      const version = r.specifier ? mapper.version(m.package) : undefined;
      packages.push({ dist: r.name, from: r.from, role, package: m.package, via: m.via, ...(version ? { version } : {}) });
      if (version && !pythonSatisfies(version, r.specifier)) {
        versionWarnings.push(`${m.package} ${version} does not satisfy ${r.name}${r.specifier} (${r.from}); tests that need it may fail (a pip index, --pip-index, would give a fitting release)`);
      }
    } else packages.push({ dist: r.name, from: r.from, role, skipped: role === "runtime" ? `no Debian package in ${suite}` : `no Debian package in ${suite}; a ${role} requirement: dropped (test files that import it are deselected)` });
  }
  const env: Record<string, string> = { PIP_DISABLE_PIP_VERSION_CHECK: "1" };
  if (facts.usesScm) env.SETUPTOOLS_SCM_PRETEND_VERSION = opts.scmVersion ?? "0.0.0";
  const spec = ImageSpecSchema.parse({
    repo: opts.repo,
    commit: opts.commit,
    ...(opts.source ? { source: opts.source } : {}),
    baseImage: baseImageTag(suite),
    systemPackages: [...system].sort(),
    pythonPackages: pip,
    ...(opts.pip?.uploadedBefore ? { pipUploadedBefore: opts.pip.uploadedBefore } : {}),
    install: [
      ...siblingInstalls,
      installLine(
        facts.layout,
        "/testbed",
        facts.versionFile ? { path: facts.versionFile, version: opts.scmVersion ?? "0.0.0" } : undefined,
        facts.projectName ? { name: facts.projectName, version: facts.projectVersion ?? opts.scmVersion ?? "0.0.0", ...(facts.entryPoints ? { entryPoints: facts.entryPoints } : {}) } : undefined,
        Boolean(facts.cExtensions) && !opts.pip,
      ),
    ],
    env,
    testCommand: facts.unittestCommand ? unittestCommand(facts.testPaths, facts.unittestArgs) : "pytest -rA",
    logParser: facts.unittestCommand ? "unittest" : "pytest",
  });
  const provenance: Provenance = {
    version: 1,
    tool: "forager images infer",
    inferredAt: new Date().toISOString(),
    mappingSources: mapper.sources,
    backend: facts.backend,
    layout: facts.layout,
    runner: facts.runner,
    ...(facts.requiresPython ? { requiresPython: facts.requiresPython } : {}),
    suite,
    filesRead: facts.filesRead,
    warnings: [...facts.warnings, ...versionWarnings],
    workflowPythons: facts.workflowPythons,
    testCommands: facts.testCommands.slice(0, 10),
    testPaths: facts.testPaths,
    packages,
    ...(opts.pip ? { pipIndex: opts.pip.index } : {}),
    deselected: [],
    changes: [],
    ...(facts.requirementFiles.length ? { requirementFiles: facts.requirementFiles } : {}),
    ...(facts.testExtras.length ? { testExtras: facts.testExtras } : {}),
    ...(facts.testPathsReason ? { testPathsReason: facts.testPathsReason } : {}),
  };
  const extras = facts.extraDependencies
    .filter((r) => !r.url && r.normalized !== self && r.normalized !== selfName && !seen.has(r.normalized) && !notNeeded(r.name) && markerActive(r.marker, py))
    .map(pipRequirement);
  return { spec, provenance, testPaths: facts.testPaths, extras: [...new Set(extras)] };
}

/**
 * The unittest command: the repository's own invocation with `-v` when it names what to run
 * (`args`, {@link RepoFacts.unittestArgs}), else `python -m unittest discover -v` from the top
 * level, starting in the first test path (when there is one).
 */
export function unittestCommand(testPaths: string[], args?: string): string {
  if (args) return args.startsWith("discover") ? `python -m unittest discover -v${args.slice("discover".length)}` : `python -m unittest -v ${args}`;
  const start = testPaths[0];
  return `python -m unittest discover -v -t .${start ? ` -s ${start}` : ""}`;
}

/** Whether the suite's interpreter satisfies requires-python; the reason when it does not. */
export function pythonProblem(facts: RepoFacts, suite = "bookworm"): string | undefined {
  const py = SUITE_PYTHON[suite]!;
  if (!pythonSatisfies(py, facts.requiresPython)) return `requires-python ${facts.requiresPython} excludes ${suite}'s Python ${py}`;
  return undefined;
}

/** pytest fixtures and the plugin distributions that provide them. */
export const FIXTURE_PLUGINS: Record<string, string> = {
  mocker: "pytest-mock",
  benchmark: "pytest-benchmark",
  httpserver: "pytest-httpserver",
  freezer: "pytest-freezer",
  aiohttp_client: "pytest-aiohttp",
  event_loop: "pytest-asyncio",
  datadir: "pytest-datadir",
  subtests: "pytest-subtests",
  snapshot: "syrupy",
  httpx_mock: "pytest-httpx",
  requests_mock: "requests-mock",
  time_machine: "time-machine",
};

/** Command-line options of pytest plugins (an `addopts` or CI line that uses them). */
export const OPTION_PLUGINS: Record<string, string> = {
  "--cov": "pytest-cov",
  "-n": "pytest-xdist",
  "--numprocesses": "pytest-xdist",
  "--timeout": "pytest-timeout",
  "--benchmark-skip": "pytest-benchmark",
  "--benchmark-disable": "pytest-benchmark",
  "--reruns": "pytest-rerunfailures",
  "--doctest-plus": "pytest-doctestplus",
  "--mypy": "pytest-mypy",
};

/** pytest markers registered by plugins, and the plugin distribution that registers each. */
export const MARKER_PLUGINS: Record<string, string> = {
  no_cover: "pytest-cov",
  asyncio: "pytest-asyncio",
  timeout: "pytest-timeout",
  benchmark: "pytest-benchmark",
  django_db: "pytest-django",
  flaky: "flaky",
  order: "pytest-order",
  dependency: "pytest-dependency",
  xdist_group: "pytest-xdist",
  trio: "pytest-trio",
  vcr: "pytest-recording",
  freeze_time: "pytest-freezer",
  httpx_mock: "pytest-httpx",
  forked: "pytest-forked",
  repeat: "pytest-repeat",
  remote_data: "pytest-remotedata",
  mpl_image_compare: "pytest-mpl",
  qt_no_exception_capture: "pytest-qt",
  hypothesis: "hypothesis",
  flaky_reruns: "pytest-rerunfailures",
  subprocess: "pytest-subprocess",
  doctest_plus: "pytest-doctestplus",
  parallel_threads: "pytest-run-parallel",
  thread_unsafe: "pytest-run-parallel",
  datafiles: "pytest-datafiles",
  memray: "pytest-memray",
  enable_socket: "pytest-socket",
  disable_socket: "pytest-socket",
  allow_hosts: "pytest-socket",
};

/** The module forager writes into site-packages to register markers whose plugin cannot be installed (loaded with `-p`). */
export const MARKERS_PLUGIN = "forager_markers";

/** The install line writing {@link MARKERS_PLUGIN} with these markers registered. */
export function markersPluginLine(markers: string[]): string {
  const py = [
    '"""Registered by forager images infer: markers whose plugin is not installed."""',
    `MARKERS = ${JSON.stringify([...markers].sort())}`,
    "",
    "def pytest_configure(config):",
    "    for m in MARKERS:",
    '        config.addinivalue_line("markers", m + ": registered by forager (the plugin that registers it is not installed)")',
    "",
  ].join("\n");
  return `echo ${Buffer.from(py).toString("base64")} | base64 -d > "${SITE_PACKAGES}/${MARKERS_PLUGIN}.py"`;
}

/** The markers a {@link markersPluginLine} registers (from the spec's install lines), or [] when it has none. */
export function registeredMarkers(install: string[]): string[] {
  for (const l of install) {
    const m = new RegExp(`^echo (\\S+) \\| base64 -d > .*/${MARKERS_PLUGIN}\\.py"$`).exec(l);
    if (m) {
      const js = /MARKERS = (\[.*\])/.exec(Buffer.from(m[1]!, "base64").toString())?.[1];
      if (js) return JSON.parse(js) as string[];
    }
  }
  return [];
}

/** The `-o filterwarnings=…` override of a test command, as a list, when it has one. */
export function filterOverride(testCommand: string): string[] | undefined {
  const m = /-o '(filterwarnings=(?:[^']|'\\'')*)'/.exec(testCommand) ?? /-o (filterwarnings=\S*)/.exec(testCommand);
  if (!m) return undefined;
  return m[1]!.replace(/'\\''/g, "'").slice("filterwarnings=".length).split("\n").filter(Boolean);
}

/** One repair: the spec after the change, the change, and files newly deselected. */
export interface Repair {
  spec: ImageSpec;
  changes: { trigger: string; change: string }[];
  deselected: { path: string; reason: string }[];
}

/** What the repair rules know besides the spec and the log. */
export interface RepairContext {
  /** Pip mode: dependencies come from the index; `unavailable` are the (normalized) names it lacks. */
  pip?: { unavailable: string[] };
  /**
   * The other extras' requirements ({@link InferredSpec.extras}): when a missing module is one of
   * them, all are added at once (a suite that imports one extra usually imports each in turn).
   */
  extras?: string[];
  /** The repository's pytest `filterwarnings` lines (its configuration file), for overriding one that pytest cannot parse. */
  filterwarnings?: string[];
  /**
   * How many test files the run covers (pytest's default file names under the test paths): the
   * collection-error rule deselects failing files only while they are at most a third of them.
   */
  testFiles?: number;
}

/**
 * Read a build or test log and change the spec. Rules, in order: missing modules (add the mapped
 * package; when none exists, deselect the test files whose collection needed it), missing pytest
 * fixtures and async support (add the plugin), unrecognized command-line options (add the plugin,
 * else drop the repository's addopts), …, and last, when nothing else applies, files that stop
 * pytest at collection (deselected with their error, a minority of the test files only). Returns undefined when no rule applies (nothing to repair).
 */
export function repairFromLog(spec: ImageSpec, log: string, mapper: DebianMapper, alreadyDeselected: string[] = [], ctx: RepairContext = {}): Repair | undefined {
  const pip = ctx.pip;
  const changes: Repair["changes"] = [];
  const deselected: Repair["deselected"] = [];
  const system = new Set(spec.systemPackages);
  const python = [...spec.pythonPackages];
  let testCommand = spec.testCommand;
  const add = (pkg: string, trigger: string, why: string) => {
    if (system.has(pkg)) return false;
    system.add(pkg);
    changes.push({ trigger, change: `add ${pkg} (${why})` });
    return true;
  };
  const unavailable = new Set((pip?.unavailable ?? []).map(normalizeName));
  /** A distribution from the pip index (pip mode) or its Debian package; false when neither can be had. */
  const addDist = (dist: string, trigger: string, why: string, requirement = dist): boolean => {
    if (pip && !unavailable.has(normalizeName(dist))) {
      if (python.some((x) => normalizeName(parseRequirement(x)?.name ?? x) === normalizeName(dist))) return false;
      python.push(requirement);
      changes.push({ trigger, change: `add ${requirement} from the pip index (${why})` });
      return true;
    }
    const mapping = mapper.map(dist);
    return mapping ? add(mapping.package, trigger, `${why}, via ${mapping.via}`) : false;
  };
  const extras = (ctx.extras ?? []).map((x) => ({ x, r: parseRequirement(x) })).filter((e) => e.r);
  let extrasAdded = false;
  // Collection errors per file: "____ ERROR collecting tests/test_x.py ____" … up to the next header.
  const blocks = [...log.matchAll(/_{3,} ERROR collecting (\S+) _{3,}\n([\s\S]*?)(?=\n_{3,} |\n={3,} )/g)].map((m) => ({ file: m[1]!, text: m[2]! }));
  const moduleRe = /(?:ModuleNotFoundError|ImportError): No module named '([\w.]+)'/g;
  const unobtainable = new Map<string, string>();
  for (const m of log.matchAll(moduleRe)) {
    const mod = m[1]!;
    // The project's own package (a generated _version module missing): never install Debian's copy of it.
    if (mod.split(".")[0]!.toLowerCase() === (spec.repo.split("/")[1] ?? "").toLowerCase().replace(/-/g, "_")) continue;
    const { dist, mapping } = mapper.mapImport(mod);
    if (!extrasAdded && extras.some((e) => e.r!.normalized === normalizeName(dist))) {
      // One extra missing: add every extra (each would otherwise cost an attempt of its own).
      extrasAdded = true;
      let any = false;
      for (const e of extras) if (addDist(e.r!.name, m[0], `an extra of the project; the suite needs the extra ${dist} for import ${mod.split(".")[0]}`, e.x)) any = true;
      if (any) continue;
    }
    if (pip && !unavailable.has(normalizeName(dist))) addDist(dist, m[0], `provides import ${mod.split(".")[0]}`);
    else if (mapping) add(mapping.package, m[0], `provides import ${mod.split(".")[0]} for ${dist}, via ${mapping.via}`);
    else unobtainable.set(mod.split(".")[0]!, dist);
  }
  if (unobtainable.size) {
    for (const b of blocks) {
      const mods = [...b.text.matchAll(moduleRe)].map((x) => x[1]!.split(".")[0]!);
      const missing = mods.find((x) => unobtainable.has(x));
      if (missing && !alreadyDeselected.includes(b.file) && !b.file.endsWith("conftest.py")) {
        deselected.push({ path: b.file, reason: `imports ${missing} (distribution ${unobtainable.get(missing)}), which has no Debian package${pip ? " and is not on the pip index" : ""}` });
        testCommand += ` --ignore=${b.file}`;
        changes.push({ trigger: `No module named '${missing}' while collecting ${b.file}`, change: `deselect ${b.file}` });
      }
    }
  }
  for (const m of log.matchAll(/fixture '(\w+)' not found/g)) {
    const dist = FIXTURE_PLUGINS[m[1]!];
    if (dist) addDist(dist, m[0], `fixture ${m[1]} comes from ${dist}`);
  }
  if (/async def functions are not natively supported|PytestUnhandledCoroutineWarning/.test(log)) {
    addDist("pytest-asyncio", "async def functions are not natively supported", "async tests need pytest-asyncio");
  }
  const unrec = /error: unrecognized arguments: ([^\n]+)/.exec(log);
  if (unrec) {
    let any = false;
    for (const arg of unrec[1]!.split(/\s+/)) {
      const opt = arg.split("=")[0]!;
      const dist = OPTION_PLUGINS[opt] ?? Object.entries(OPTION_PLUGINS).find(([k]) => opt.startsWith(k + "-"))?.[1];
      if (dist && addDist(dist, unrec[0], `option ${opt} comes from ${dist}`)) any = true;
    }
    if (!any && !/-o addopts=/.test(testCommand)) {
      testCommand += ` -o addopts=""`;
      changes.push({ trigger: unrec[0], change: "drop the repository's pytest addopts (an option of a plugin with no Debian package)" });
    }
  }
  // `filterwarnings = error` turns the suite's pytest's warning about an ini option it does not know
  // (a newer plugin's option, e.g. asyncio_default_fixture_loop_scope) into an INTERNALERROR.
  const cfg = /PytestConfigWarning: Unknown config option: (\w+)/.exec(log);
  if (cfg && /INTERNALERROR/.test(log) && !/PytestConfigWarning/.test(testCommand)) {
    testCommand += " -W ignore::pytest.PytestConfigWarning";
    changes.push({ trigger: cfg[0], change: "ignore pytest config warnings (an ini option this pytest or plugin version does not know, made an error by filterwarnings)" });
  }
  // An extension module built in place that failed for a library's headers or its config tool
  // (`fatal error: libxml/xmlversion.h`, `xml2-config: not found`): the library's -dev package.
  if (log.includes(BUILD_EXT_FAILED)) {
    for (const h of headerPackages(log)) add(h.pkg, h.trigger, `the in-place extension build includes ${h.header}`);
    for (const m of log.matchAll(/\b(xml2-config|xslt-config|pkg-config)\b[^\n]*(?:not found|No such file)/g)) {
      for (const pkg of CONFIG_TOOL_PACKAGES[m[1]!] ?? []) add(pkg, m[0], `the in-place extension build runs ${m[1]}`);
    }
    // lxml's own words when xml2-config is missing.
    const xml = /make sure the libxml2 and libxslt development packages are installed/.exec(log);
    if (xml) for (const pkg of CONFIG_TOOL_PACKAGES["xml2-config"]!) add(pkg, xml[0], "the in-place extension build needs libxml2's and libxslt's headers");
  }
  // Tests that compile C code (a test building an extension module) need the compiler.
  const cc = /error: command '[^']*gcc' failed|(?:x86_64-linux-gnu-)?gcc: (?:not found|No such file or directory)|unable to execute '[^']*gcc'|fatal error: Python\.h: No such file or directory/.exec(log);
  if (cc && !system.has("build-essential") && !pip) {
    system.add("build-essential");
    system.add("python3-dev");
    changes.push({ trigger: cc[0], change: "add build-essential python3-dev (the tests compile C code)" });
  }
  // CPython 3.11.2 (bookworm) can fail inside pytest's assertion rewriter on some test modules
  // ("SystemError: AST constructor recursion depth mismatch"): plain asserts avoid the rewriter.
  const ast = /SystemError: AST constructor recursion depth mismatch[^\n]*/.exec(log);
  if (ast && spec.logParser === "pytest" && !/--assert=plain/.test(testCommand)) {
    testCommand += " --assert=plain";
    changes.push({ trigger: ast[0], change: "run with --assert=plain (the interpreter fails while pytest rewrites a test module's asserts)" });
  }
  // Markers registered by a plugin the suite lacks: an error under --strict-markers, or a
  // PytestUnknownMarkWarning made an error by `filterwarnings = error`. Install the plugin; when it
  // cannot be had, register the marker with forager's own small plugin.
  let install = [...spec.install];
  const registered = new Set(registeredMarkers(install));
  const toRegister: string[] = [];
  const seenMarkers = new Set<string>();
  for (const m of log.matchAll(/Unknown pytest\.mark\.(\w+)|'(\w+)' not found in `markers` configuration option/g)) {
    const marker = (m[1] ?? m[2])!;
    // A log names an unknown marker once per line that meets it (collection, the short summary):
    // decide once per marker.
    if (registered.has(marker) || toRegister.includes(marker) || seenMarkers.has(marker)) continue;
    seenMarkers.add(marker);
    const dist = MARKER_PLUGINS[marker];
    const before = changes.length;
    if (dist && addDist(dist, m[0], `the marker ${marker} is registered by ${dist}`)) continue;
    if (changes.length > before) continue;
    // The plugin is installed already (or unobtainable) and the marker still unknown: register it.
    toRegister.push(marker);
    changes.push({ trigger: m[0], change: `register the marker ${marker} (${dist ? `its plugin ${dist} ${system.has(mapper.map(dist)?.package ?? "-") ? "does not register it in this version" : "cannot be installed"}` : "no known plugin registers it"}) with forager's ${MARKERS_PLUGIN} plugin (-p ${MARKERS_PLUGIN})` });
  }
  if (toRegister.length) {
    const all = [...registered, ...toRegister];
    install = [...install.filter((l) => !l.includes(`/${MARKERS_PLUGIN}.py"`)), markersPluginLine(all)];
    if (!testCommand.includes(`-p ${MARKERS_PLUGIN}`)) testCommand += ` -p ${MARKERS_PLUGIN}`;
  }
  // A warning filter pytest cannot parse (its category's module is not installed): install the
  // module when it can be had (the missing-module rule above); otherwise override the
  // configuration's filterwarnings without that one filter.
  for (const m of log.matchAll(/while parsing the following warning configuration:\s*\n(?:\s*(?:INTERNALERROR>)?\s*\n)*\s*(?:INTERNALERROR>)?\s*(\S[^\n]*)/g)) {
    const filter = m[1]!.trim();
    const category = filter.split(":")[2]?.trim() ?? "";
    const module = category.includes(".") ? category.slice(0, category.lastIndexOf(".")) : "";
    const top = module.split(".")[0] ?? "";
    const obtainable = top && !unobtainable.has(top) && changes.some((c) => c.trigger.includes(`'${module}`) || c.trigger.includes(`'${top}`));
    if (obtainable) continue;
    const current = filterOverride(testCommand) ?? ctx.filterwarnings;
    if (!current || !current.some((f) => f.trim() === filter)) continue;
    const kept = current.filter((f) => f.trim() !== filter);
    testCommand = testCommand.replace(/ -o '(filterwarnings=(?:[^']|'\\'')*)'| -o filterwarnings=\S*/, "") + ` -o ${shellQuote(`filterwarnings=${kept.join("\n")}`)}`;
    changes.push({ trigger: `pytest could not parse the warning filter ${filter}`, change: `override filterwarnings without ${filter} (${module ? `its category's module ${module} cannot be installed` : "its category cannot be imported"}; the other ${kept.length} filters kept)` });
  }
  // pytest runs nothing when a file fails to collect ("Interrupted: N errors during collection"):
  // when no rule above repairs it, the files that failed are deselected, each with its error, so
  // the rest of the suite runs. Only a minority (at most a third of the test files, and never a
  // conftest, which every file below it needs): a suite most of whose files fail is not repaired.
  if (!changes.length && spec.logParser === "pytest" && /Interrupted: \d+ errors? during collection/.test(log) && ctx.testFiles) {
    const failing = [...new Set(blocks.map((b) => b.file))].filter((f) => !alreadyDeselected.includes(f));
    if (failing.length && !failing.some((f) => /(^|\/)conftest\.py$/.test(f)) && (alreadyDeselected.length + failing.length) * 3 <= ctx.testFiles) {
      for (const f of failing) {
        const text = blocks.find((b) => b.file === f)!.text;
        const error = collectionError(text);
        deselected.push({ path: f, reason: `fails to collect: ${error}` });
        testCommand += ` --ignore=${shellQuote(f)}`;
        changes.push({ trigger: `ERROR collecting ${f}: ${error}`, change: `deselect ${f} (pytest stops before running anything when a file fails to collect)` });
      }
    }
  }
  // Tests that commit or tag in a git repository (their own, or one they make) need an identity:
  // git refuses with "Please tell me who you are" where no user is configured.
  let env = spec.env;
  const ident = /Please tell me who you are|(?:Committer|Author) identity unknown|empty ident name/.exec(log);
  if (ident && !env.GIT_COMMITTER_NAME) {
    env = { ...env, ...GIT_IDENTITY };
    changes.push({ trigger: ident[0], change: "set a git identity (GIT_AUTHOR_* and GIT_COMMITTER_* = forager <forager@localhost>): the tests commit or tag" });
  }
  if (!changes.length) return undefined;
  return { spec: ImageSpecSchema.parse({ ...spec, systemPackages: [...system].sort(), pythonPackages: python, testCommand, install, env }), changes, deselected };
}

/** The git identity a repair gives an image whose tests commit or tag (the one forager's own commits in images use). */
export const GIT_IDENTITY: Record<string, string> = {
  GIT_AUTHOR_NAME: "forager",
  GIT_AUTHOR_EMAIL: "forager@localhost",
  GIT_COMMITTER_NAME: "forager",
  GIT_COMMITTER_EMAIL: "forager@localhost",
};

/** The error of one "ERROR collecting FILE" block of a pytest log: its last `E   Name: message` line (else its last `E` line), at most 200 characters. */
export function collectionError(block: string): string {
  const es = block.split("\n").filter((l) => /^E\s+\S/.test(l)).map((l) => l.replace(/^E\s+/, "").trim());
  const named = es.filter((l) => /^[\w.]*(Error|Exception|Exit|Interrupt)\b/.test(l));
  return (named.slice(-1)[0] ?? es.slice(-1)[0] ?? block.split("\n").find((l) => l.trim())?.trim() ?? "collection error").slice(0, 200);
}

/** The line the image build prints when `python3 setup.py build_ext --inplace` fails (the tail of its log printed before it). */
export const BUILD_EXT_FAILED = "forager-infer: build_ext --inplace failed";

/**
 * The tail (at most 3000 characters) of a failed in-place extension build: what a build log
 * printed before its own last {@link BUILD_EXT_FAILED} line (not the Dockerfile's echo of it), or
 * undefined when the build did not fail.
 */
export function buildExtTail(log: string): string | undefined {
  const end = log.lastIndexOf(`\n${BUILD_EXT_FAILED}`);
  return end >= 0 ? log.slice(Math.max(0, end - 3000), end) : undefined;
}

/** The C headers a compiler could not find (`fatal error: X.h: No such file or directory`) that {@link HEADER_PACKAGES} knows. */
export function headerPackages(log: string): { header: string; pkg: string; trigger: string }[] {
  return [...log.matchAll(/fatal error: ([\w/.+-]+\.h): No such file or directory/g)].flatMap((m) => (HEADER_PACKAGES[m[1]!] ? [{ header: m[1]!, pkg: HEADER_PACKAGES[m[1]!]!, trigger: m[0] }] : []));
}

/** Library configuration tools a setup.py runs to find headers, and the Debian packages that ship them (bookworm, trixie). */
export const CONFIG_TOOL_PACKAGES: Record<string, string[]> = {
  "xml2-config": ["libxml2-dev", "libxslt1-dev"],
  "xslt-config": ["libxml2-dev", "libxslt1-dev"],
  "pkg-config": ["pkg-config"],
};

/** C headers sdists commonly need, and the Debian package that ships each (bookworm and trixie). */
export const HEADER_PACKAGES: Record<string, string> = {
  "zlib.h": "zlib1g-dev",
  "ffi.h": "libffi-dev",
  "yaml.h": "libyaml-dev",
  "openssl/ssl.h": "libssl-dev",
  "libxml/xmlversion.h": "libxml2-dev",
  "libxslt/xslt.h": "libxslt1-dev",
  "libpq-fe.h": "libpq-dev",
  "sqlite3.h": "libsqlite3-dev",
  "bzlib.h": "libbz2-dev",
  "lzma.h": "liblzma-dev",
  "jpeglib.h": "libjpeg-dev",
  "png.h": "libpng-dev",
};

/**
 * Repair a failed `pythonPackages` step (pip mode). A requirement the index cannot satisfy
 * ("No matching distribution found for X", before the cutoff too) is removed and replaced by its
 * Debian package when there is one; its name is returned in `unavailable`, so later repairs
 * deselect what imports it instead of asking pip again. An sdist that compiles a C extension gets
 * the compiler and Python's headers, and the package of a header it names ({@link HEADER_PACKAGES}).
 * A dependency conflict (ResolutionImpossible) drops every version specifier once, letting pip choose.
 * Returns undefined when the log shows neither.
 */
export function repairPipBuild(spec: ImageSpec, log: string, mapper: DebianMapper): (Repair & { unavailable: string[] }) | undefined {
  const found = [...log.matchAll(/No matching distribution found for ([^\s;]+)/g)].map((m) => ({ requirement: m[1]!, trigger: m[0] }));
  const replaced = replaceUnavailable(spec, found, mapper);
  if (replaced) return replaced;
  const changes: Repair["changes"] = [];
  let python = [...spec.pythonPackages];
  // An sdist with a C extension: the compiler, Python's headers, the library headers it names.
  const system = new Set(spec.systemPackages);
  const need = (pkgs: string[], trigger: string, why: string) => {
    const add = pkgs.filter((p) => !system.has(p));
    if (!add.length) return;
    for (const p of add) system.add(p);
    changes.push({ trigger, change: `add ${add.join(" ")} (${why})` });
  };
  const cc = /error: command '[^']*gcc' failed|(?:x86_64-linux-gnu-)?gcc: (?:not found|No such file or directory)|unable to execute '[^']*gcc'|error: Microsoft Visual C\+\+/.exec(log);
  if (cc) need(["build-essential", "python3-dev"], cc[0], "an sdist compiles a C extension");
  const pyh = /fatal error: Python\.h: No such file or directory/.exec(log);
  if (pyh) need(["python3-dev"], pyh[0], "an sdist compiles against Python's headers");
  for (const h of headerPackages(log)) need([h.pkg, "build-essential", "python3-dev"], h.trigger, `${h.header} comes from ${h.pkg}`);
  if (changes.length) return { spec: ImageSpecSchema.parse({ ...spec, systemPackages: [...system].sort() }), changes, deselected: [], unavailable: [] };
  if (/ResolutionImpossible|conflicting dependencies/.test(log) && python.some((x) => parseRequirement(x)?.specifier)) {
    python = python.map((x) => {
      const r = parseRequirement(x);
      return r ? pipRequirement({ ...r, specifier: "" }) : x;
    });
    changes.push({ trigger: "ResolutionImpossible", change: "drop the version specifiers of pythonPackages (the pins conflict; pip chooses)" });
  }
  if (!changes.length) return undefined;
  return { spec: ImageSpecSchema.parse({ ...spec, pythonPackages: python }), changes, deselected: [], unavailable: [] };
}

/**
 * Take requirements the pip index cannot give out of pythonPackages, each replaced by its Debian
 * package when the suite has one. `trigger` is what showed it (a pip error, or the preflight's
 * reason). Returns undefined when none of them is in pythonPackages.
 */
export function replaceUnavailable(spec: ImageSpec, missing: { requirement: string; trigger: string }[], mapper: DebianMapper): (Repair & { unavailable: string[] }) | undefined {
  const changes: Repair["changes"] = [];
  const unavailable: string[] = [];
  const system = new Set(spec.systemPackages);
  let python = [...spec.pythonPackages];
  for (const m of missing) {
    const req = parseRequirement(m.requirement);
    if (!req || unavailable.includes(req.normalized)) continue;
    const before = python.length;
    python = python.filter((x) => (parseRequirement(x)?.normalized ?? x) !== req.normalized);
    if (python.length === before) continue;
    unavailable.push(req.normalized);
    const mapping = mapper.map(req.name);
    if (mapping) system.add(mapping.package);
    changes.push({ trigger: m.trigger, change: mapping ? `replace ${m.requirement} by ${mapping.package} (via ${mapping.via}): the pip index cannot give it` : `drop ${m.requirement}: the pip index cannot give it and Debian has no package` });
  }
  if (!changes.length) return undefined;
  return { spec: ImageSpecSchema.parse({ ...spec, systemPackages: [...system].sort(), pythonPackages: python }), changes, deselected: [], unavailable };
}
