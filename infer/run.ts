/**
 * `inferImage`: read a repository, write an image spec, build it, run the whole suite, repair
 * from the errors (bounded), accept or reject with the reason; then two more reference runs to
 * mark flaky tests. Writes `<out>` (the ImageSpec), `<out>.provenance.json` and
 * `<out>.statuses.json` (per-test reference statuses, flaky tests marked).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { parseTestLog } from "../suite/log-parsers";
import { testRunScript } from "../suite/script";
import { buildInstanceImage, ImageBuildError } from "../images/build";
import { inspectImage } from "../images/docker";
import { runInImage } from "../sandbox/oneshot";
import { ImageSpecSchema, type ImageSpec, type RepoSource } from "../images/spec";
import { defaultStateDir } from "../images/state";
import type { BaseSuite } from "../images/base";
import type { DebianMapper } from "./debian";
import { normalizeName } from "./pep508";
import { pipPreflight } from "./pip";
import { GitTree, readRepository, type RepoFacts } from "./read";
import { applySetupProposal, workbenchSpec, type SetupAgent } from "./setup";
import { BASE_PACKAGES, BUILD_EXT_FAILED, buildExtTail, repairFromLog, repairPipBuild, replaceUnavailable, specFromFacts, type InferredSpec, type InferResult, type PipPlan, type Provenance, type RepairContext } from "./spec";
import { mapperForSuite, rankSuites, SUITE_ORDER, suiteFits, type SuiteFit } from "./debian-suites";
import { causeOf, decisiveLines, failedTestsMatching, incompleteClone, networkFailedTests, networkNeed, versionSkew } from "./verdict";

export interface InferOptions {
  /** A local clone (bare or not) or a git URL (cloned on the host). */
  repo: string;
  /** Commit to read and build (default HEAD). */
  commit?: string;
  /** `owner/name` (default from the path or URL). */
  name?: string;
  /** Spec output (default `<stateDir>/infer/<owner+name>-<commit12>.json`). */
  out?: string;
  /** Fraction of non-skipped collected tests that must pass (default 0.8). */
  minPass?: number;
  /** Builds + reference runs tried before giving up (default 6). */
  maxAttempts?: number;
  /** Extra reference runs for flakiness (default 2). */
  flakyRuns?: number;
  /** Seconds one reference run may take (default 900). */
  testTimeoutSeconds?: number;
  stateDir?: string;
  /** A mapper to use instead of the suite's own (used only when its `suite` is the chosen one). */
  mapper?: DebianMapper;
  /** Extra environment variables of the spec (a bench's nonce, to defeat the layer cache). */
  extraEnv?: Record<string, string>;
  /** Suites the repository may run on, in order of preference (default bookworm, then trixie). */
  suites?: BaseSuite[];
  /**
   * Asked once when the heuristics give up after a reference run (`--model-url`): its proposal is
   * applied and checked by up to 2 more builds + reference runs, like any repair. See infer/setup.ts.
   */
  setupAgent?: SetupAgent;
  /**
   * A pip index (PEP 503 simple URL; default `FORAGER_PIP_INDEX`): dependencies come from it as
   * pythonPackages instead of Debian packages ({@link PipPlan}). Without one, Debian mapping.
   */
  pipIndex?: string;
  /**
   * With a pip index, only files uploaded before this: `"commit"` (the commit's committer date)
   * or an ISO 8601 date/instant. Default `FORAGER_PIP_CUTOFF`; none when unset.
   */
  pipCutoff?: string;
  onProgress?: (message: string) => void;
}

/**
 * The instant of `--pip-cutoff`: `commit` → the commit's committer date; else the date given.
 * @returns ISO 8601 with offset (UTC `Z` for a date given), as ImageSpec.pipUploadedBefore wants.
 * @throws Error naming the option when the value is neither `commit` nor a date.
 */
export function pipCutoffInstant(cutoff: string, gitDir: string, commit: string): string {
  if (cutoff === "commit") return git(gitDir, ["show", "-s", "--format=%cI", commit]);
  const t = Date.parse(cutoff);
  if (Number.isNaN(t)) throw new Error(`--pip-cutoff: expected "commit" or an ISO 8601 date, got ${JSON.stringify(cutoff)}`);
  return new Date(t).toISOString();
}

export interface InferOutcome {
  repo: string;
  commit: string;
  result: InferResult;
  inferred?: InferredSpec;
  /** Files written (spec, provenance, statuses). */
  files: string[];
  /** Instance image tag when one was built. */
  image?: string;
  /** Wall seconds: reading the repository (facts, suite, mapper), builds, reference runs (flaky checks included). */
  seconds?: { read: number; build: number; reference: number };
}

/** `owner/name` from a path or URL (`…/owner+name/repo`, `…/name.git`). */
export function nameFromRepo(repo: string): string {
  const clean = repo.replace(/\/+$/, "").replace(/\.git$/, "").replace(/\/repo$/, "");
  const plus = /([\w.-]+)\+([\w.-]+)$/.exec(clean);
  if (plus) return `${plus[1]}/${plus[2]}`;
  const parts = clean.split(/[/:]/).filter(Boolean);
  return parts.length >= 2 ? `${parts[parts.length - 2]}/${parts[parts.length - 1]}` : `local/${parts[parts.length - 1] ?? "repo"}`;
}

/** Where the inferred spec of a repository at a commit is stored by default. */
export function storedSpecPath(repo: string, commit: string, stateDir = defaultStateDir()): string {
  return path.join(stateDir, "infer", `${repo.replace("/", "+")}-${commit.slice(0, 12)}.json`);
}

/** Run git in `dir` (a work tree or a git directory); trimmed stdout. @throws Error with git's stderr when git fails. */
export function git(dir: string, args: string[]): string {
  return execFileSync("git", ["-C", dir, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** A version for setuptools-scm / hatch-vcs: the newest tag reachable from the commit (leading `v` cut), else 0.0.0. */
export function scmVersion(gitDir: string, commit: string): string {
  try {
    const tag = git(gitDir, ["describe", "--tags", "--abbrev=0", commit]);
    const v = tag.replace(/^[^\d]*/, "");
    return /^\d+(\.\d+)*/.test(v) ? /^\d+(\.\d+)*/.exec(v)![0] : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/** Counts of a status map: collected, passed (PASSED, XFAIL), failed (FAILED, ERROR), skipped. */
export function countStatuses(statuses: Map<string, string>): { collected: number; passed: number; failed: number; skipped: number; passRate: number } {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const s of statuses.values()) {
    if (s === "PASSED" || s === "XFAIL") passed++;
    else if (s === "SKIPPED") skipped++;
    else failed++;
  }
  return { collected: statuses.size, passed, failed, skipped, passRate: passed + failed ? passed / (passed + failed) : 0 };
}

async function referenceRun(image: string, spec: ImageSpec, testPaths: string[], timeoutSeconds: number) {
  // The one test-run script builder (suite/script.ts). pytest cuts its short summary lines to the
  // terminal's width: COLUMNS wide enough to keep the exception's message. A unittest command
  // carries its start directory; pytest gets the test paths and no cache.
  const script = testRunScript(spec, {
    noBytecode: true,
    env: ["export COLUMNS=240"],
    timeoutSeconds,
    ...(spec.logParser === "unittest" ? {} : { extraArgs: "-p no:cacheprovider", directives: testPaths }),
  });
  const r = await runInImage(image, script, { network: "none", timeoutMs: (timeoutSeconds + 60) * 1000 });
  const log = r.stdout + r.stderr;
  return { log, statuses: parseTestLog(spec.logParser, log, { repo: spec.repo }), seconds: r.seconds };
}

/**
 * Infer, build, check and store the image spec of one repository.
 * Never throws for a repository that cannot be set up: the outcome says why (`result.reason`).
 * @throws Error when the repository or commit cannot be read at all.
 */
export async function inferImage(o: InferOptions): Promise<InferOutcome> {
  const say = o.onProgress ?? (() => undefined);
  const stateDir = o.stateDir ?? defaultStateDir();
  let gitDir = o.repo;
  let source: RepoSource;
  if (/^(https?:|git@|ssh:)/.test(o.repo)) {
    gitDir = path.join(stateDir, "infer", "clones", nameFromRepo(o.repo).replace("/", "+"));
    if (!fs.existsSync(gitDir)) execFileSync("git", ["clone", "--bare", "-q", o.repo, gitDir], { stdio: "ignore" });
    source = { type: "path", path: gitDir };
  } else source = { type: "path", path: path.resolve(o.repo) };
  const repo = o.name ?? nameFromRepo(o.repo);
  const tRead = performance.now();
  let commit: string;
  let tree: GitTree;
  let facts: RepoFacts;
  try {
    commit = git(gitDir, ["rev-parse", `${o.commit ?? "HEAD"}^{commit}`]);
    tree = new GitTree(gitDir, commit);
    facts = readRepository(tree);
  } catch (err) {
    throw new Error(gitFailure(err));
  }
  const out = o.out ?? storedSpecPath(repo, commit, stateDir);
  const pipIndex = o.pipIndex ?? (process.env.FORAGER_PIP_INDEX || undefined);
  const cutoff = o.pipCutoff ?? (process.env.FORAGER_PIP_CUTOFF || undefined);
  const pip: PipPlan | undefined = pipIndex ? { index: pipIndex, ...(cutoff ? { uploadedBefore: pipCutoffInstant(cutoff, gitDir, commit) } : {}) } : undefined;
  if (pip) say(`dependencies from the pip index ${pip.index}${pip.uploadedBefore ? `, files uploaded before ${pip.uploadedBefore}` : ""}`);
  // The suite: the one that satisfies most of what the repository asks for (its Python, its
  // requirements packaged, their versions within the specifiers); the others in order after it.
  const suites = o.suites ?? SUITE_ORDER;
  const selfName = facts.projectName ? normalizeName(facts.projectName) : (repo.split("/")[1] ?? "").toLowerCase();
  const { fits, mappers } = await suiteFits(facts, suites, { stateDir, self: selfName, ...(o.mapper ? { mapper: o.mapper } : {}), pip: Boolean(pip), onProgress: say });
  const ranked = rankSuites(fits);
  const order = ranked.order.length ? ranked.order : [fits[0]!];
  if (ranked.order.length) say(`suite ${ranked.reason.split(".")[0]}`);
  const seconds = { read: (performance.now() - tRead) / 1000, build: 0, reference: 0 };
  const tried: { suite: string; reason: string }[] = [];
  let best: SuiteRun | undefined;
  for (const [i, fit] of order.entries()) {
    const mapper = mappers.get(fit.suite) ?? (o.mapper && o.mapper.suite === fit.suite ? o.mapper : await mapperForSuite(fit.suite, stateDir, say));
    const run = await inferOnSuite(o, { repo, commit, gitDir, source, tree, facts, stateDir, fit, mapper, ...(pip ? { pip } : {}), say, seconds, problem: ranked.order.length ? undefined : ranked.reason });
    if (!best || run.result.accepted || run.result.passed > best.result.passed) best = run;
    if (run.result.accepted) break;
    tried.push({ suite: fit.suite, reason: run.result.reason });
    const next = order[i + 1];
    if (!next || !fallbackWorthy(run)) break;
    say(`${fit.suite} rejected (${run.result.reason}); trying ${next.suite} before rejecting`);
  }
  const b = best!;
  const prov = b.inferred.provenance;
  const others = tried.filter((t) => t.suite !== b.fit.suite);
  prov.suiteChoice = {
    suite: b.fit.suite,
    reason: b.fit.suite === order[0]!.suite ? ranked.reason : `${others.map((t) => `${t.suite} rejected (${t.reason})`).join("; ")}: fell back to ${b.fit.suite}. First choice was ${ranked.reason}`,
    fits,
    tried: others,
  };
  const result = b.result;
  result.cause = causeOf(result.accepted, result.reason, result.decisive ?? []);
  prov.result = result;
  const files: string[] = [];
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(b.inferred.spec, null, 2) + "\n");
  fs.writeFileSync(`${out}.provenance.json`, JSON.stringify(prov, null, 2) + "\n");
  files.push(out, `${out}.provenance.json`);
  if (b.statuses) {
    const statusesFile = `${out}.statuses.json`;
    fs.writeFileSync(statusesFile, JSON.stringify({ repo, commit, image: b.image, runs: b.statuses.runs, flaky: result.flaky, statuses: b.statuses.statuses }, null, 2) + "\n");
    files.push(statusesFile);
  }
  seconds.build = result.buildSeconds;
  return { repo, commit, result, inferred: b.inferred, files, seconds, ...(b.image ? { image: b.image } : {}) };
}

/** Whether `file` is one of the test paths or under one (every file when there are none). */
function underTestPaths(file: string, testPaths: string[]): boolean {
  return !testPaths.length || testPaths.some((p) => file === p || file.startsWith(`${p.replace(/\/+$/, "")}/`));
}

/** Files by pytest's default test names (`test_*.py`, `*_test.py`) under the test paths (the whole tree when there are none). */
function pytestTestFiles(files: string[], testPaths: string[]): string[] {
  return files.filter((f) => /(^|\/)(test_[^/]*|[^/]*_test)\.py$/.test(f) && underTestPaths(f, testPaths));
}

/**
 * Test files of a run by pytest's default names (`test_*.py`, `*_test.py`) under the test paths
 * (the whole tree when there are none); 0 when the suite names its files otherwise.
 */
export function testFileCount(files: string[], testPaths: string[]): number {
  return pytestTestFiles(files, testPaths).length;
}

/**
 * Whether a pytest run's tests come from none of the suite's test files: `expected` are the files
 * by pytest's default names under the test paths (deselected ones taken out); a file counts as
 * collected when a test id starts with it or the log reports it, or a conftest.py above it,
 * skipped whole (`SKIPPED [1] tests/test_x.py:3: …`). Undefined (nothing to say) below 3 expected
 * files or when any of them gave a test. Not "fewer than half": suites whose test_*.py files are
 * helpers one runner module imports (PyYAML's legacy tests: 2 of 22) are real suites.
 * @returns the counts and the files with no test.
 */
export function uncollectedFiles(expected: string[], testIds: Iterable<string>, log: string): { expected: number; covered: number; missing: string[] } | undefined {
  if (expected.length < 3) return undefined;
  const seen = new Set([...testIds].map((id) => id.split("::")[0]!));
  const skippedWhole = [...log.matchAll(/^SKIPPED \[\d+\] (\S+?\.py):\d+/gm)].map((m) => m[1]!);
  for (const s of skippedWhole) seen.add(s);
  const underConftest = (f: string) => skippedWhole.some((s) => s.endsWith("conftest.py") && f.startsWith(s.slice(0, -"conftest.py".length)));
  const hit = (f: string) => underConftest(f) || [...seen].some((s) => s === f || f.endsWith(`/${s}`) || s.endsWith(`/${f}`));
  const missing = expected.filter((f) => !hit(f));
  const covered = expected.length - missing.length;
  return covered === 0 ? { expected: expected.length, covered, missing } : undefined;
}

/**
 * "most tests skipped: N of M (reason)" when more than half of a run's tests were skipped, else
 * undefined. Skips come from the statuses and from pytest's short summary, which groups the skips
 * it reports by location with no test id (`SKIPPED [3] tests/t.py:9: could not import 'black'`):
 * the larger of the two counts.
 */
export function mostlySkipped(log: string, c: { collected: number; skipped: number }): string | undefined {
  const grouped = [...log.matchAll(/^SKIPPED \[(\d+)\] \S+?:\d+: /gm)].reduce((n, m) => n + Number(m[1]), 0);
  const skipped = Math.max(c.skipped, grouped);
  const total = c.collected - c.skipped + skipped;
  if (!total || skipped * 2 <= total) return undefined;
  const why = /^SKIPPED \[\d+\] \S+: (.*)$/m.exec(log)?.[1];
  return `most tests skipped: ${skipped} of ${total}${why ? ` (${why.slice(0, 160)})` : ""}`;
}

/** Seconds one test may take after a reference run hit its limit (pytest-timeout's `--timeout`). */
export const PER_TEST_TIMEOUT = 60;

/** A rejection worth the other suite: anything but a timeout, a repository with no tests, an incomplete clone or tests that need the network (none depends on the packages). */
function fallbackWorthy(run: SuiteRun): boolean {
  return !/timed out|^no tests found|^incomplete clone|^tests need the network/.test(run.result.reason);
}

/** The message of a git failure, an incomplete clone named as such (infer/verdict.ts). */
export function gitFailure(err: unknown): string {
  const e = err as Error & { stderr?: string | Buffer };
  const text = `${e.message ?? String(err)}\n${e.stderr ? String(e.stderr) : ""}`;
  return incompleteClone(text) ?? text.split("\n").find((l) => /^(fatal|error):/.test(l.trim()))?.trim() ?? (e.message ?? String(err)).split("\n")[0]!;
}

/** One suite's inference: the spec, its result, the image and per-test statuses when accepted. */
interface SuiteRun {
  fit: SuiteFit;
  result: InferResult;
  inferred: InferredSpec;
  image?: string;
  statuses?: { runs: number; statuses: Record<string, string> };
}

/**
 * Build, run and repair on one suite (at most `maxAttempts` builds + reference runs, the set-up
 * agent once when the heuristics give up). Writes nothing; adds its seconds to `ctx.seconds`.
 */
async function inferOnSuite(
  o: InferOptions,
  ctx: {
    repo: string;
    commit: string;
    gitDir: string;
    source: RepoSource;
    tree: GitTree;
    facts: RepoFacts;
    stateDir: string;
    fit: SuiteFit;
    mapper: DebianMapper;
    pip?: PipPlan;
    say: (m: string) => void;
    seconds: { read: number; build: number; reference: number };
    /** Set when no suite's Python fits: the rejection reason, nothing is built. */
    problem?: string | undefined;
  },
): Promise<SuiteRun> {
  const { repo, commit, gitDir, source, tree, facts, stateDir, fit, mapper, pip, say, seconds } = ctx;
  const suite = fit.suite;
  const python = fit.python;
  const minPass = o.minPass ?? 0.8;
  const result: InferResult = {
    accepted: false,
    reason: "",
    python,
    testsCollected: 0,
    passed: 0,
    failed: 0,
    skipped: 0,
    passRate: 0,
    flaky: [],
    buildSeconds: 0,
    imageMb: 0,
    attempts: 0,
    sourceInstall: false,
  };
  /** Distributions the pip index could not give (learned from failed builds). */
  const pipUnavailable: string[] = [];
  const inferred = specFromFacts(facts, mapper, { repo, commit, source, scmVersion: scmVersion(gitDir, commit), suite, python, ...(pip ? { pip } : {}) });
  const prov: Provenance = inferred.provenance;
  prov.attempts = [];
  // A suite of no test_*.py files (the modules' doctests, say) counts its Python files instead.
  const testFiles = testFileCount(tree.files, inferred.testPaths) || tree.files.filter((f) => f.endsWith(".py") && underTestPaths(f, inferred.testPaths)).length;
  const repairCtx = (): RepairContext => ({ ...(pip ? { pip: { unavailable: pipUnavailable } } : {}), extras: inferred.extras, ...(facts.pytestLines.filterwarnings ? { filterwarnings: facts.pytestLines.filterwarnings } : {}), testFiles });
  if (o.extraEnv) inferred.spec = { ...inferred.spec, env: { ...inferred.spec.env, ...o.extraEnv } };
  let image: string | undefined;
  const done = (reason: string, accepted = false, statuses?: SuiteRun["statuses"]): SuiteRun => {
    result.reason = reason;
    result.accepted = accepted;
    return { fit, result, inferred, ...(image ? { image } : {}), ...(statuses ? { statuses } : {}) };
  };
  if (ctx.problem) return done(ctx.problem);
  // Test files that import a test requirement no package provides: deselected before the first build.
  const pre = deselectUnobtainable(tree, inferred);
  if (pre.length) say(`deselected before building: ${pre.map((d) => d.path).join(", ")}`);
  /**
   * Before each build, ask the index about the pythonPackages not asked about yet (pip stops at
   * the first requirement it cannot find: without this, each would cost a failed build).
   */
  const preflighted = new Set<string>();
  const preflight = async (attempt: number) => {
    if (!pip) return;
    const ask = inferred.spec.pythonPackages.filter((x) => !preflighted.has(x));
    if (!ask.length) return;
    for (const x of ask) preflighted.add(x);
    const missing = await pipPreflight(ask, pip.index, { python, ...(pip.uploadedBefore ? { before: new Date(pip.uploadedBefore) } : {}) });
    const pr = replaceUnavailable(inferred.spec, missing.map((m) => ({ requirement: m.requirement, trigger: `pip index preflight: ${m.reason}` })), mapper);
    if (pr) {
      pipUnavailable.push(...pr.unavailable);
      applyRepair(inferred, pr, attempt);
      say(`pip index preflight: ${pr.changes.map((c) => c.change.split(":")[0]).join("; ")}`);
    }
  };
  const tPre = performance.now();
  await preflight(0);
  seconds.read += (performance.now() - tPre) / 1000;
  // A file the runner's own discovery finds: unittest's default pattern is test*.py, pytest's test_*.py.
  const discovered = facts.unittestCommand ? /(^|\/)test[^/]*\.py$/ : /(^|\/)test_[^/]*\.py$/;
  // The repository's own `unittest discover … -p PATTERN` finds what its pattern says.
  if (!facts.testPaths.length && !(facts.unittestCommand && facts.unittestArgs) && !tree.files.some((f) => discovered.test(f)) && /^no test file found/.test(facts.testPathsReason ?? "no test file found")) return done("no tests found (no tests/, test/, testing/ or test_*.py, and the repository's pytest configuration selects no file)");
  const maxAttempts = o.maxAttempts ?? 6;
  const timeout = o.testTimeoutSeconds ?? 900;
  let lastLog = "";
  let limit = maxAttempts;
  let agentAsked = false;
  const record = (attempt: number, step: string, outcome: string, log: string) => {
    const decisive = decisiveLines(log);
    prov.attempts!.push({ attempt, suite, step, outcome, decisive });
    result.decisive = decisive;
  };
  /** The set-up agent's turn (once): true when its proposal changed the spec, which then gets 2 more attempts. */
  const askAgent = async (attempt: number, failedBuild?: ImageBuildError): Promise<boolean> => {
    if (!o.setupAgent || agentAsked) return false;
    agentAsked = true;
    say(`set-up agent: the heuristics gave up after attempt ${attempt}${failedBuild ? ` (build failed at ${failedBuild.step ?? failedBuild.layer})` : ""}`);
    let workImage = image;
    if (failedBuild) {
      // A failed build leaves no image of this spec: the agent works in a workbench (the repository
      // without the failing packages and install steps) and proposes what the build lacks.
      try {
        const bench = await buildInstanceImage(workbenchSpec(inferred.spec, failedBuild.layer, BASE_PACKAGES), { stateDir, source, ...(pip ? { pipIndex: pip.index } : {}) });
        workImage = bench.tag;
      } catch (err) {
        prov.changes.push({ attempt, trigger: "set-up agent", change: `no proposal: the workbench image did not build either (${(err as Error).message.split("\n")[0]})` });
        return false;
      }
    }
    const a = await o.setupAgent({ repo, commit, spec: inferred.spec, ...(workImage ? { image: workImage } : {}), log: lastLog.slice(-6000), ...(failedBuild ? { buildFailedAt: failedBuild.step ?? failedBuild.layer } : {}) });
    const who = `set-up agent${a.trajectoryId ? ` (trajectory ${a.trajectoryId})` : ""}`;
    if (!a.proposal) {
      prov.changes.push({ attempt, trigger: who, change: `no proposal: ${a.reason}` });
      return false;
    }
    const applied = applySetupProposal(inferred.spec, a.proposal);
    if (!applied.changes.length) {
      prov.changes.push({ attempt, trigger: who, change: "proposal changes nothing" });
      return false;
    }
    inferred.spec = applied.spec;
    for (const change of applied.changes) prov.changes.push({ attempt, trigger: `${who}${a.proposal.note ? `: ${a.proposal.note}` : ""}`, change });
    say(`set-up agent: ${applied.changes.join("; ")}`);
    limit = attempt + 2;
    return true;
  };
  for (let attempt = 1; attempt <= limit; attempt++) {
    result.attempts = attempt;
    if (attempt > 1) await preflight(attempt - 1);
    const spec = inferred.spec;
    say(`attempt ${attempt} (${suite}): build (${spec.systemPackages.length} packages${spec.pythonPackages.length ? `, ${spec.pythonPackages.length} from pip` : ""})`);
    const t0 = performance.now();
    let log: string;
    try {
      const b = await buildInstanceImage(spec, { stateDir, source, ...(pip ? { pipIndex: pip.index, requirePythonPackages: true } : {}) });
      result.buildSeconds += (performance.now() - t0) / 1000;
      image = b.tag;
      const buildLog = b.logFile && fs.existsSync(b.logFile) ? fs.readFileSync(b.logFile, "utf8") : "";
      if (/forager-infer: source install/.test(buildLog)) result.sourceInstall = true;
      else if (b.cached && attempt === 1) result.sourceInstall = prov.changes.some((c) => c.change.includes("source install"));
      say(`attempt ${attempt}: reference run of ${b.tag}`);
      const run = await referenceRun(b.tag, spec, inferred.testPaths, timeout);
      seconds.reference += run.seconds;
      // A failed in-place extension build leaves the image buildable and the tests unable to
      // import: its tail (the missing header, the library's config tool) goes to the repair.
      const ext = buildExtTail(buildLog);
      log = ext === undefined ? run.log : `${ext}\n${BUILD_EXT_FAILED}\n${run.log}`;
      const raw = countStatuses(run.statuses);
      Object.assign(result, { testsCollected: raw.collected, passed: raw.passed, failed: raw.failed, skipped: raw.skipped, passRate: raw.passRate });
      // Tests that failed for the network a sandbox never has say nothing of the environment: below
      // the bar, they are left out of the rate (named in the verdict) when they are at most half
      // of the suite and what is left passes; they stay FAILED in the statuses (never PASS_TO_PASS).
      const below = raw.collected > 0 && raw.passRate < minPass && spec.logParser === "pytest";
      const netFailed = below ? networkFailedTests(log, run.statuses) : [];
      // Likewise tests that fail importing a test requirement forager dropped (no package): class 1
      // says a missing test-only package never rejects the repository (ini2toml's plugins import
      // configupdater inside 28 tests, not at a test file's top).
      const dropped = below ? droppedTestImports(inferred) : new Map<string, string>();
      const modFailed = dropped.size ? failedTestsMatching(log, run.statuses, (msg) => dropped.has((/ModuleNotFoundError: No module named '([\w]+)/.exec(msg)?.[1] ?? "").toLowerCase())).filter((id) => !netFailed.includes(id)) : [];
      const offline = [...netFailed, ...modFailed];
      const counted = { ...raw, failed: raw.failed - offline.length, passRate: raw.passed + raw.failed - offline.length ? raw.passed / (raw.passed + raw.failed - offline.length) : 0 };
      const excludedOk = offline.length > 0 && offline.length * 2 <= raw.collected && counted.passRate >= minPass;
      const c = excludedOk ? counted : raw;
      if (excludedOk && netFailed.length) result.networkTests = netFailed;
      else delete result.networkTests;
      if (excludedOk && modFailed.length) result.droppedRequirementTests = modFailed;
      else delete result.droppedRequirementTests;
      const timedOut = /forager-exit-code=(124|137)\s*$/.test(log.trim());
      record(attempt, "reference run", raw.collected ? `${raw.passed}/${raw.passed + raw.failed} pass` : timedOut ? "timed out" : "no tests collected", log);
      // A suite most of whose files were deselected (missing modules, collection errors) is not
      // the repository's suite any more: never accepted, whatever the rest passes.
      const gone = prov.deselected.length;
      if (c.collected > 0 && c.passRate >= minPass && testFiles && gone * 2 > testFiles) {
        return done(`most of the suite deselected: ${gone} of ${testFiles} test files (${prov.deselected.slice(0, 2).map((d) => `${d.path}: ${d.reason}`).join("; ")})`);
      }
      // A run whose tests come from none of the suite's test files (a path argument that made
      // pytest collect only a benchmark file, say) is not the repository's suite either.
      const thin = c.collected > 0 && c.passRate >= minPass && spec.logParser === "pytest" && !facts.pytestLines.python_files ? uncollectedFiles(pytestTestFiles(tree.files, inferred.testPaths).filter((f) => !prov.deselected.some((d) => d.path === f)), run.statuses.keys(), log) : undefined;
      if (thin) return done(`most test files collected nothing: tests from ${thin.covered} of ${thin.expected} test files (none from ${thin.missing.slice(0, 3).join(", ")}${thin.missing.length > 3 ? ", …" : ""})`);
      // A run most of whose tests are skipped (a dependency the tests skip without) says little
      // about the code: not the repository's suite.
      const skips = c.collected > 0 && c.passRate >= minPass ? mostlySkipped(log, c) : undefined;
      if (skips) return done(skips);
      if (c.collected > 0 && c.passRate >= minPass) {
        // Two more runs: tests whose status changes are flaky.
        const runs = [run.statuses];
        for (let i = 0; i < (o.flakyRuns ?? 2); i++) {
          say(`flaky check ${i + 1}`);
          const again = await referenceRun(b.tag, spec, inferred.testPaths, timeout);
          seconds.reference += again.seconds;
          runs.push(again.statuses);
        }
        const flaky = [...run.statuses.keys()].filter((id) => runs.some((r) => r.get(id) !== run.statuses.get(id))).sort();
        result.flaky = flaky;
        const info = await inspectImage(b.tag);
        result.imageMb = Math.round(((info?.Size ?? 0) / 1e6) * 10) / 10;
        delete result.decisive;
        const net = !excludedOk
          ? ""
          : [
              netFailed.length ? `${netFailed.length} test${netFailed.length === 1 ? " that needs" : "s that need"} the network (no network in a sandbox; e.g. ${netFailed[0]})` : "",
              modFailed.length ? `${modFailed.length} test${modFailed.length === 1 ? " that imports" : "s that import"} a dropped test requirement (${[...new Set([...dropped.values()])].join(", ")}; e.g. ${modFailed[0]})` : "",
            ].filter(Boolean).reduce((a, b, i) => (i ? `${a} and ${b}` : ` without ${b}`), "");
        return done(`${c.passed}/${c.passed + c.failed} pass (${(c.passRate * 100).toFixed(1)}% ≥ ${minPass * 100}%)${net}`, true, { runs: runs.length, statuses: Object.fromEntries([...run.statuses].sort()) });
      }
    } catch (err) {
      result.buildSeconds += (performance.now() - t0) / 1000;
      if (!(err instanceof ImageBuildError)) {
        const ic = incompleteClone(`${(err as Error).message}`);
        if (ic) return done(ic);
        throw err;
      }
      log = (fs.existsSync(err.logFile) ? fs.readFileSync(err.logFile, "utf8") : "") + "\n" + err.logTail.join("\n");
      record(attempt, `build: ${err.step ?? err.layer}`, "build failed", log);
      if (/Unable to locate package|has no installation candidate/.test(log)) {
        const bad = [...log.matchAll(/Unable to locate package (\S+)/g)].map((m) => m[1]!);
        if (bad.length) {
          inferred.spec = { ...spec, systemPackages: spec.systemPackages.filter((p) => !bad.includes(p)) };
          prov.changes.push({ attempt, trigger: `Unable to locate package ${bad.join(" ")}`, change: `drop ${bad.join(" ")}` });
          continue;
        }
      }
      lastLog = log;
      const ic = incompleteClone(log);
      if (ic) return done(ic);
      const pr = pip && /pythonPackages/.test(err.step ?? "") ? repairPipBuild(spec, log, mapper) : undefined;
      if (pr) {
        pipUnavailable.push(...pr.unavailable);
        applyRepair(inferred, pr, attempt);
        continue;
      }
      const r = repairFromLog(spec, log, mapper, prov.deselected.map((d) => d.path), repairCtx());
      if (!r && (await askAgent(attempt, err))) continue;
      if (!r) return done(`build failed at ${err.step ?? err.layer}: ${buildError(log) ?? result.decisive?.[0] ?? err.logTail.filter(Boolean).slice(-1)[0] ?? err.message}`);
      applyRepair(inferred, r, attempt);
      continue;
    }
    lastLog = log;
    // A run stopped by its time limit: once, a per-test limit (pytest-timeout), so that a test
    // that hangs (a server it waits for, no network) fails alone and the rest of the suite reports.
    if (/forager-exit-code=(124|137)\s*$/.test(log.trim()) && spec.logParser === "pytest" && !/--timeout[= ]/.test(spec.testCommand) && attempt < limit) {
      const m = mapper.map("pytest-timeout");
      if (m) {
        inferred.spec = ImageSpecSchema.parse({ ...spec, systemPackages: [...new Set([...spec.systemPackages, m.package])].sort(), testCommand: `${spec.testCommand} --timeout=${PER_TEST_TIMEOUT}` });
        prov.changes.push({ attempt, trigger: `reference run stopped after ${timeout} s`, change: `add ${m.package} and --timeout=${PER_TEST_TIMEOUT} (a test that hangs fails alone)` });
        continue;
      }
    }
    const r = repairFromLog(spec, log, mapper, prov.deselected.map((d) => d.path), repairCtx());
    if (r && attempt < limit) {
      applyRepair(inferred, r, attempt);
      continue;
    }
    if (await askAgent(attempt)) continue;
    if (!r) break;
    applyRepair(inferred, r, attempt);
  }
  const c = result;
  let decisive = c.decisive?.[0] ?? firstError(lastLog);
  // A git submodule the tests read is not in the clone (forager builds from the commit's tree, offline).
  const sub = facts.submodules?.find((p) => lastLog.includes(`/testbed/${p}/`) || lastLog.includes(` ${p}/`) || lastLog.includes(`'${p}/`));
  if (sub) decisive = `git submodule ${sub} is not in the clone (the tests need it): ${decisive}`;
  // Skew seen in the log, else a runtime requirement whose specifier the suite's package does not meet.
  const local = [...new Set(tree.files.filter((f) => f.includes("/")).map((f) => (f.startsWith("src/") ? f.split("/")[1]! : f.split("/")[0]!)))];
  const skew = versionSkew(lastLog, facts.projectName ?? repo.split("/")[1], local) ?? (fit.outdatedRuntime.length ? `runtime requirement outside the packaged version: ${fit.outdatedRuntime.join("; ")}` : undefined);
  if (skew) c.skew = skew;
  // The extension modules built in place failed: that, not the tests' ImportError, is the cause.
  const tail = buildExtTail(lastLog);
  if (tail !== undefined && !skew) {
    const why = decisiveLines(tail)[0] ?? tail.trim().split("\n").slice(-1)[0] ?? "";
    const tests = c.testsCollected ? `${c.passed}/${c.passed + c.failed} pass` : "no tests collected";
    return done(`build failed at the in-place extension build (python3 setup.py build_ext --inplace): ${why}; the tests then: ${tests}`);
  }
  if (c.testsCollected === 0) {
    if (/forager-exit-code=(124|137)\s*$/.test(lastLog.trim())) return done(`reference run timed out after ${timeout} s (no pytest summary)`);
    if (skew) return done(`version skew: no tests collected: ${skew}`);
    return done(`no tests collected: ${decisive}`);
  }
  const counts = `${c.passed}/${c.passed + c.failed} pass (${(c.passRate * 100).toFixed(1)}% < ${minPass * 100}%)`;
  if (skew) return done(`version skew: ${counts}: ${skew}`);
  const net = networkNeed(lastLog, c.failed);
  if (net) return done(`tests need the network (sandboxes have none): ${counts}: ${net}`);
  return done(`${counts}: ${decisive}`);
}

/**
 * Import names of the test requirements dropped for want of a package (no Debian package, not on
 * the pip index), each to its distribution: `foo-bar` → `foo_bar`, `foobar`, and without a
 * `python-` prefix. Empty when none was dropped.
 */
export function droppedTestImports(inferred: InferredSpec): Map<string, string> {
  const imports = new Map<string, string>();
  for (const p of inferred.provenance.packages.filter((x) => x.role === "test" && x.skipped && /no Debian package|pip index/.test(x.skipped))) {
    const n = normalizeName(p.dist);
    for (const i of [n.replace(/-/g, "_"), n.replace(/-/g, ""), n.replace(/^python-/, "").replace(/-/g, "_")]) if (i) imports.set(i, p.dist);
  }
  return imports;
}

/**
 * Test files that import, at module level, a test requirement no package of the suite provides:
 * deselected before the first build (`--ignore=FILE`, the reason in the provenance), so a missing
 * test helper costs no attempt and never rejects the repository. Import names tried for a
 * distribution `foo-bar`: `foo_bar`, `foobar`, and without a `python-` prefix.
 * @returns the files deselected.
 */
export function deselectUnobtainable(tree: GitTree, inferred: InferredSpec): { path: string; reason: string }[] {
  if (inferred.spec.logParser !== "pytest") return [];
  const imports = droppedTestImports(inferred);
  if (!imports.size) return [];
  const out: { path: string; reason: string }[] = [];
  for (const f of pytestTestFiles(tree.files, inferred.testPaths)) {
    const text = tree.read(f) ?? "";
    const m = /^(?:import|from)\s+([A-Za-z_]\w*)/gm;
    for (const x of text.matchAll(m)) {
      const dist = imports.get(x[1]!.toLowerCase());
      if (dist) {
        out.push({ path: f, reason: `imports ${x[1]} (test requirement ${dist}, which has no package in ${inferred.provenance.suite ?? "the suite"}): dropped, file deselected` });
        break;
      }
    }
  }
  if (!out.length) return [];
  inferred.spec = ImageSpecSchema.parse({ ...inferred.spec, testCommand: `${inferred.spec.testCommand} ${out.map((d) => `--ignore=${d.path}`).join(" ")}` });
  inferred.provenance.deselected.push(...out);
  for (const d of out) inferred.provenance.changes.push({ attempt: 0, trigger: d.reason.split(" (")[0]!, change: `deselect ${d.path}` });
  return out;
}

function applyRepair(inferred: InferredSpec, r: NonNullable<ReturnType<typeof repairFromLog>>, attempt: number) {
  inferred.spec = r.spec;
  for (const ch of r.changes) inferred.provenance.changes.push({ attempt, ...ch });
  inferred.provenance.deselected.push(...r.deselected);
}

/** The most telling line of a failed build's log (a compiler's or pip's error), when there is one. */
export function buildError(log: string): string | undefined {
  const lines = log.split("\n").map((l) => l.trim());
  const pick = lines.find((l) => /fatal error:|No matching distribution found|ResolutionImpossible|E: Unable to|E: Package/.test(l)) ?? lines.find((l) => /^error: (?!subprocess-exited-with-error|metadata-generation-failed)/.test(l));
  return pick?.slice(0, 200);
}

/** The first error line of a log, for a rejection reason. */
export function firstError(log: string): string {
  const lines = log.split("\n");
  const pick =
    lines.find((l) => /^E\s+\w*(Error|Exception)\b/.test(l)) ??
    lines.find((l) => /^(ERROR|INTERNALERROR|error:)/.test(l)) ??
    lines.find((l) => /FAILED /.test(l)) ??
    lines.filter((l) => l.trim()).slice(-2)[0] ??
    "";
  return pick.trim().slice(0, 200);
}

/**
 * The inferred spec file of a repository at a commit for `forager tasks mutate` without --spec:
 * the stored one when present (accepted or not: its provenance says), else inferred now.
 * Returns undefined when inference rejected the repository (the caller keeps its default).
 */
export async function inferredSpecFile(o: { repo: string; commit: string; name?: string; stateDir?: string; setupAgent?: SetupAgent; onProgress?: (m: string) => void }): Promise<{ file: string; accepted: boolean; reason: string } | undefined> {
  let gitDir = o.repo;
  if (/^(https?:|git@|ssh:)/.test(o.repo)) gitDir = path.join(o.stateDir ?? defaultStateDir(), "infer", "clones", nameFromRepo(o.repo).replace("/", "+"));
  const commit = fs.existsSync(gitDir) ? git(gitDir, ["rev-parse", `${o.commit}^{commit}`]) : o.commit;
  const name = o.name ?? nameFromRepo(o.repo);
  const file = storedSpecPath(name, commit, o.stateDir);
  if (fs.existsSync(file) && fs.existsSync(`${file}.provenance.json`)) {
    const prov = JSON.parse(fs.readFileSync(`${file}.provenance.json`, "utf8")) as Provenance;
    if (prov.result?.accepted) return { file: pytestVariant(file), accepted: true, reason: `stored: ${prov.result.reason}` };
  }
  const out = await inferImage({ repo: o.repo, commit, name, ...(o.stateDir ? { stateDir: o.stateDir } : {}), ...(o.setupAgent ? { setupAgent: o.setupAgent } : {}), ...(o.onProgress ? { onProgress: o.onProgress } : {}) });
  return out.result.accepted ? { file: pytestVariant(out.files[0]!), accepted: true, reason: out.result.reason } : undefined;
}

/** The test command of {@link pytestVariant}. */
export const PYTEST_VARIANT_COMMAND = "pytest -rA -o python_classes= -o python_functions=";

/**
 * mutate-fix validates with pytest (its coverage map and JUnit ids): for a spec that runs
 * `python -m unittest`, a sibling `<spec>.pytest.json` with `pytest -rA` and the pytest parser
 * (pytest collects `unittest.TestCase` suites), returned instead; any other spec file as is.
 * The variant collects what unittest discovery runs and nothing else: `unittest.TestCase`
 * subclasses (pytest finds them by type), no plain `Test…` classes or `test_…` functions (empty
 * `python_classes` / `python_functions`). Otherwise pytest warns about a `Test…` helper class with
 * an `__init__`, and a test module that sets `warnings.simplefilter("error")` turns that warning
 * into a collection error unittest never meets (Python-Markdown's tests/test_legacy.py).
 */
export function pytestVariant(file: string): string {
  const spec = ImageSpecSchema.parse(JSON.parse(fs.readFileSync(file, "utf8")));
  if (spec.logParser !== "unittest") return file;
  const variant = file.replace(/\.json$/, "") + ".pytest.json";
  fs.writeFileSync(variant, JSON.stringify({ ...spec, testCommand: PYTEST_VARIANT_COMMAND, logParser: "pytest" }, null, 2) + "\n");
  return variant;
}
