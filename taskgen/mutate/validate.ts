/**
 * Validation of candidate bugs in one long-lived sandbox per image (many bugs per container):
 *
 * 1. Reference run: the whole suite once, under coverage with per-test contexts
 *    (pytest-cov `--cov-context=test`, Debian's python3-coverage + python3-pytest-cov), giving the
 *    reference statuses and, per source line, the tests that executed it.
 * 2. Per candidate: write the buggy files, run only the tests that cover the changed entity
 *    (plus `sampleOthers` others), parse; FAIL_TO_PASS = passed in the reference and not now,
 *    PASS_TO_PASS = the selected tests still passing; reset the tree
 *    (`git checkout -- . && git clean -fdq`).
 * 3. Keep when FAIL_TO_PASS ≥ 1 (≤ maxFailToPass), no timeout, and `reruns` re-runs give the
 *    same FAIL_TO_PASS set (flaky tests rejected).
 * 4. Agreement: for a sample of kept bugs, the whole suite again with the bug; the selection is
 *    sound when the full suite's FAIL_TO_PASS equals the selected one.
 *
 * Test ids are pytest node ids as the `-rA` log parser records them (cut at whitespace).
 * Python is run with PYTHONDONTWRITEBYTECODE=1 so that bytecode of a bug can never outlive
 * the reset (same-size edits within one second would otherwise hit a stale .pyc).
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { writeFileAtomic } from "../../lib/fs";
import { ImageSpecSchema, type ImageSpec, type ImageSpecInput } from "../../images/spec";
import type { StatusMap } from "../../suite/log-parsers";
import type { Sandbox } from "../../sandbox/sandbox";
import { rng, shuffle, type Candidate, type SourceFile } from "./candidates";
import { selectionArgs, testRunScript } from "../../suite/script";
import { SUITE_LIST_FILE, SuiteRunner, type TestRun } from "../../suite/runner";

export type { TestRun } from "../../suite/runner";

/** Debian packages the coverage map needs (bookworm: coverage 6.5, pytest-cov 4.0). */
export const COVERAGE_PACKAGES = ["python3-coverage", "python3-pytest-cov"];

/** `spec` with the coverage packages in its environment layer. */
export function withCoverage(spec: ImageSpecInput): ImageSpecInput {
  const pkgs = new Set([...(spec.systemPackages ?? []), ...COVERAGE_PACKAGES]);
  return { ...spec, systemPackages: [...pkgs].sort() };
}

/** Paths never mutated: tests, test support, docs, examples, build scripts. */
export const NON_SOURCE_PATH =
  /(^|\/)(tests?|testing|docs?|examples?|benchmarks?|scripts)\/|(^|\/)test_[^/]*\.py$|_tests?\.py$|(^|\/)conftest\.py$|(^|\/)(setup|noxfile|fabfile)\.py$/;

export type RejectReason =
  | "uncovered"
  | "not_caught"
  | "timeout"
  | "too_many_failures"
  | "flaky"
  | "no_results"
  | "apply_failed";

export const REJECT_REASONS: readonly RejectReason[] = [
  "uncovered",
  "not_caught",
  "timeout",
  "too_many_failures",
  "flaky",
  "no_results",
  "apply_failed",
];

export interface ValidationSettings {
  /** Other reference-passing tests run with the covering ones (default 5). */
  sampleOthers: number;
  /** Most FAIL_TO_PASS tests a kept bug may have (default 50). */
  maxFailToPass: number;
  /** Re-runs with the bug that must reproduce the same FAIL_TO_PASS set (default 1). */
  reruns: number;
  /**
   * Seconds one candidate's test run may take at most (default 300). When the reference run has
   * per-test durations, a run's timeout is `timeoutFor` its tests: 5 × their reference duration
   * + 15 s, at least `minTimeoutSeconds`, at most this.
   */
  timeoutSeconds: number;
  /** Floor of the adaptive per-run timeout (default 30 s). */
  minTimeoutSeconds?: number;
  seed: number;
  /** Seconds the reference run (whole suite under coverage) may take (default 3600). */
  referenceTimeoutSeconds?: number;
  /**
   * What "the whole suite" is: paths given to the test command for the reference and full-suite
   * runs. Default: the first of `tests`, `testing`, `test` that exists, else no argument.
   */
  suitePaths?: string[];
}

export const DEFAULT_SETTINGS: ValidationSettings = { sampleOthers: 5, maxFailToPass: 50, reruns: 1, timeoutSeconds: 300, seed: 0 };

export interface ReferenceRun extends TestRun {
  /** Tests that passed (PASSED or XFAIL). */
  passed: Set<string>;
  /** path → line → tests whose context executed it (only reference-passing tests). */
  coverage: Map<string, Map<number, Set<string>>>;
  /** Source files measured (candidates for mutation), relative to the workdir. */
  measuredFiles: string[];
  /** Container CPU seconds the run cost (when it was measured; a cached run keeps the original's). */
  cpuSeconds?: number;
  /** Loaded from the reference cache instead of run. */
  cached?: boolean;
  /** Seconds per test in the reference run (setup + call + teardown, under coverage), from `--durations=0`. */
  durations?: Map<string, number>;
}

/**
 * Per-test seconds from pytest's `--durations=0 --durations-min=0` report: lines
 * `0.52s call     tests/test_x.py::test_y`; setup, call and teardown are summed per test id.
 */
export function parseDurations(log: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of log.matchAll(/^\s*([\d.]+)s\s+(?:setup|call|teardown)\s+(\S.*?)\s*$/gm)) {
    const id = normalizeId(m[2]!);
    out.set(id, (out.get(id) ?? 0) + Number(m[1]));
  }
  return out;
}

/**
 * The adaptive timeout of a run of `tests`: 5 × their summed reference seconds + 15 s, within
 * [`floor`, `cap`]; `cap` when a test has no reference duration.
 */
export function adaptiveTimeout(tests: Iterable<string>, durations: Map<string, number> | undefined, floor: number, cap: number): number {
  if (!durations || durations.size === 0) return cap;
  let sum = 0;
  for (const t of tests) {
    const d = durations.get(t);
    if (d === undefined) return cap;
    sum += d;
  }
  return Math.min(cap, Math.max(floor, Math.ceil(5 * sum + 15)));
}

/** forager's coverage config for the reference run (see runReference). */
const REFERENCE_COVERAGERC =
  "[run]\nbranch = False\nparallel = False\ndata_file = /tmp/forager.coverage\nrelative_files = True\n" +
  // Test code is never mutated: not tracing it makes the reference run cheaper.
  "omit =\n    */tests/*\n    */testing/*\n    */test/*\n    */test_*.py\n    */*_test.py\n    */conftest.py\n";
const REFERENCE_ENV =
  "export COVERAGE_FILE=/tmp/forager.coverage COVERAGE_RCFILE=/tmp/forager-coveragerc; rm -f /tmp/forager.coverage* /tmp/forager-cov.json";
const REFERENCE_ARGS = "--cov=. --cov-config=/tmp/forager-coveragerc --cov-context=test --cov-report= --durations=0 --durations-min=0";

/** Version of the cached reference record; a change makes old records misses. */
/** v4: test ids are exact pytest node ids (from JUnit), no longer cut at the first whitespace. */
const REFERENCE_CACHE_VERSION = 4;

/** Directory of cached reference runs: `$FORAGER_CACHE_DIR` or `~/.cache/forager`, then `mutate-reference/`. */
export function referenceCacheDir(): string {
  return path.join(process.env.FORAGER_CACHE_DIR ?? path.join(os.homedir(), ".cache", "forager"), "mutate-reference");
}

interface ReferenceRecord {
  version: number;
  key: string;
  tests: string[];
  statuses: [string, string][];
  passed: number[];
  /** path → [line, test indexes][] */
  coverage: [string, [number, number[]][]][];
  measuredFiles: string[];
  seconds: number;
  cpuSeconds?: number;
  exitCode: number | null;
  logTail: string;
  /** [test index, seconds][] */
  durations?: [number, number][];
}

function encodeReference(ref: ReferenceRun, key: string): ReferenceRecord {
  const tests = [...ref.statuses.keys()];
  const index = new Map(tests.map((t, i) => [t, i]));
  return {
    version: REFERENCE_CACHE_VERSION,
    key,
    tests,
    statuses: [...ref.statuses],
    passed: [...ref.passed].map((t) => index.get(t)).filter((i) => i !== undefined),
    coverage: [...ref.coverage].map(([file, lines]) => [file, [...lines].map(([l, ts]) => [l, [...ts].map((t) => index.get(t)).filter((i) => i !== undefined)])]),
    measuredFiles: ref.measuredFiles,
    seconds: ref.seconds,
    ...(ref.cpuSeconds !== undefined ? { cpuSeconds: ref.cpuSeconds } : {}),
    exitCode: ref.exitCode,
    logTail: ref.log.slice(-20_000),
    ...(ref.durations ? { durations: [...ref.durations].map(([t, d]) => [index.get(t), d] as [number | undefined, number]).filter((x): x is [number, number] => x[0] !== undefined) } : {}),
  };
}

function decodeReference(r: ReferenceRecord): ReferenceRun {
  const statuses: StatusMap = new Map(r.statuses as [string, never][]);
  return {
    statuses,
    log: r.logTail,
    timedOut: false,
    exitCode: r.exitCode,
    seconds: r.seconds,
    passed: new Set(r.passed.map((i) => r.tests[i]!)),
    coverage: new Map(r.coverage.map(([file, lines]) => [file, new Map(lines.map(([l, ts]) => [l, new Set(ts.map((i) => r.tests[i]!))]))])),
    measuredFiles: r.measuredFiles,
    ...(r.cpuSeconds !== undefined ? { cpuSeconds: r.cpuSeconds } : {}),
    ...(r.durations ? { durations: new Map(r.durations.map(([i, d]) => [r.tests[i]!, d])) } : {}),
    cached: true,
  };
}

export interface Validation {
  candidate: Candidate;
  kept: boolean;
  reason?: RejectReason;
  failToPass: string[];
  passToPass: string[];
  /** Tests run (ids as given to pytest, parameters cut). */
  selected: string[];
  /** Tests covering the changed entities. */
  covering: number;
  /** The bug run's log (for the issue text). */
  log: string;
  seconds: number;
  runs: number;
}

/** A reference-style "passed" status (PASSED or XFAIL). */
export const passing = (s: string | undefined): boolean => s === "PASSED" || s === "XFAIL";
/** Test ids are kept whole (pytest's node ids, parameters included: tasks use exact ids). */
const normalizeId = (id: string) => id.trim();

/** Where a run's JUnit report goes inside the sandbox (the exact node ids come from it). */

/** Coverage contexts from pytest-cov: `tests/test_x.py::test_y|run` → the node id. */
export function contextTest(ctx: string): string | undefined {
  if (!ctx) return undefined;
  const bar = ctx.lastIndexOf("|");
  return normalizeId(bar >= 0 ? ctx.slice(0, bar) : ctx);
}

/** Sets equal? */
export function sameSet(a: Iterable<string>, b: Iterable<string>): boolean {
  const x = new Set(a);
  const y = new Set(b);
  return x.size === y.size && [...x].every((v) => y.has(v));
}

/**
 * One sandbox for validating many candidates of one image: the suite runner (suite/runner.ts)
 * with the reference run under coverage, the candidates' selection and their validation.
 */
export class MutateRunner extends SuiteRunner {
  reference: ReferenceRun | undefined;
  /**
   * Tests seen changing status between two runs with the same code: excluded from every later
   * FAIL_TO_PASS / PASS_TO_PASS list (they would make the gold check a coin toss).
   */
  readonly flakyTests = new Set<string>();
  private constructor(
    sandbox: Sandbox,
    spec: ImageSpec,
    readonly settings: ValidationSettings,
  ) {
    super(sandbox, spec, settings.timeoutSeconds);
  }

  static async start(image: string, specInput: ImageSpecInput, settings: Partial<ValidationSettings> = {}, cpus = 1): Promise<MutateRunner> {
    const spec = ImageSpecSchema.parse(specInput);
    if (spec.logParser !== "pytest") throw new Error(`mutate-fix validation needs a pytest suite (logParser pytest), not ${spec.logParser}`);
    const sandbox = await SuiteRunner.sandboxFor(image, spec, { cpus, namePrefix: "forager-mutate", labels: { "forager.mutate": spec.repo } });
    return new MutateRunner(sandbox, spec, { ...DEFAULT_SETTINGS, ...settings });
  }

  /** Decide (and remember in `suite`) what the whole suite is (ValidationSettings.suitePaths when set). */
  override async detectSuite(paths = this.settings.suitePaths): Promise<string[] | undefined> {
    return super.detectSuite(paths);
  }

  /**
   * The reference run: whole suite under coverage with per-test contexts. With `cache` (default
   * true), the result is stored gzipped in {@link referenceCacheDir} under a key of the image id,
   * the test command and the suite paths, and a later runner of the same image loads it instead
   * of running the suite again (a resumed generation, a benchmark). Only a healthy run is cached
   * (no timeout, pytest exit 0 or 1, at least one test passed).
   */
  async runReference(opts: { cache?: boolean } = {}): Promise<ReferenceRun> {
    await this.reset();
    await this.detectSuite();
    const useCache = opts.cache ?? true;
    const imageId = ((await this.sandbox.container.inspect()) as { Image?: string }).Image ?? "";
    // The key covers everything the run depends on: the image, the script that runs the suite
    // (test command, workdir, preamble, suite paths, arguments) and the coverage config.
    const script = testRunScript(this.spec, { ...(this.suite ? { listFile: SUITE_LIST_FILE } : {}), extraArgs: REFERENCE_ARGS, timeoutSeconds: 0, noBytecode: true });
    const key = createHash("sha256")
      .update(JSON.stringify({ v: REFERENCE_CACHE_VERSION, imageId, script, suite: this.suite ?? null, rc: REFERENCE_COVERAGERC, env: REFERENCE_ENV }))
      .digest("hex")
      .slice(0, 24);
    const cacheFile = path.join(referenceCacheDir(), `${key}.json.gz`);
    if (useCache && imageId && fs.existsSync(cacheFile)) {
      try {
        const rec = JSON.parse(gunzipSync(fs.readFileSync(cacheFile)).toString("utf8")) as ReferenceRecord;
        if (rec.version === REFERENCE_CACHE_VERSION && rec.key === key) return (this.reference = decodeReference(rec));
      } catch {
        // unreadable record: run again and overwrite it
      }
    }
    const cpu0 = await this.cpuSeconds().catch(() => undefined);
    // Our own coverage config: the repository's (branch = True, parallel, plugins) must not mix
    // line and arc data or change what is measured.
    await this.sandbox.writeFile("/tmp/forager-coveragerc", REFERENCE_COVERAGERC);
    const run = await this.runTests(this.suite, {
      extraArgs: REFERENCE_ARGS,
      timeoutSeconds: Math.max(this.spec.testTimeoutSeconds, this.settings.referenceTimeoutSeconds ?? 3600),
      env: REFERENCE_ENV,
    });
    const j = await this.sh(`${REFERENCE_ENV.split(";")[0]}; python3 -m coverage json --rcfile=/tmp/forager-coveragerc --show-contexts -i -q -o /tmp/forager-cov.json 2>&1; echo rc=$?`);
    if (!/rc=0\s*$/.test(j.out)) throw new Error(`coverage json failed: ${j.out.slice(-1500)}\n--- test log tail:\n${run.log.slice(-1500)}`);
    const data = JSON.parse((await this.sandbox.readFile("/tmp/forager-cov.json")).toString("utf8")) as {
      files: Record<string, { contexts?: Record<string, string[]> }>;
    };
    const passed = new Set([...run.statuses].filter(([, s]) => passing(s)).map(([id]) => id));
    const coverage = new Map<string, Map<number, Set<string>>>();
    for (const [file, info] of Object.entries(data.files)) {
      const rel = file.replace(/^\.\//, "");
      const lines = new Map<number, Set<string>>();
      for (const [line, ctxs] of Object.entries(info.contexts ?? {})) {
        const tests = new Set<string>();
        for (const c of ctxs) {
          const t = contextTest(c);
          if (t && passed.has(t)) tests.add(t);
        }
        if (tests.size) lines.set(Number(line), tests);
      }
      coverage.set(rel, lines);
    }
    await this.reset();
    const cpu1 = cpu0 === undefined ? undefined : await this.cpuSeconds().catch(() => undefined);
    this.reference = {
      ...run,
      passed,
      coverage,
      measuredFiles: [...coverage.keys()].filter((p) => p.endsWith(".py") && !p.startsWith("/") && !p.startsWith("..")).sort(),
      ...(cpu0 !== undefined && cpu1 !== undefined ? { cpuSeconds: cpu1 - cpu0 } : {}),
      durations: parseDurations(run.log),
    };
    // Only a healthy run is cached (pytest exit 0 or 1, some test passed): a broken environment
    // must not be served again. A cache that cannot be written costs the next run, not this one.
    const healthy = !run.timedOut && passed.size > 0 && (run.exitCode === 0 || run.exitCode === 1);
    if (useCache && imageId && healthy) {
      await writeFileAtomic(cacheFile, gzipSync(JSON.stringify(encodeReference(this.reference, key)))).catch(() => undefined);
    }
    return this.reference;
  }

  /** Source files to mutate: measured by coverage, executed by some test, not test code. */
  async sourceFiles(filter: (path: string) => boolean = (p) => !NON_SOURCE_PATH.test(p)): Promise<SourceFile[]> {
    const ref = this.mustReference();
    const out: SourceFile[] = [];
    for (const path of ref.measuredFiles) {
      if (!filter(path) || (ref.coverage.get(path)?.size ?? 0) === 0) continue;
      const buf = await this.sandbox.readFile(`${this.spec.workdir}/${path}`);
      const text = buf.toString("utf8");
      if (Buffer.from(text, "utf8").equals(buf)) out.push({ path, text });
    }
    return out;
  }

  private mustReference(): ReferenceRun {
    if (!this.reference) throw new Error("runReference() first");
    return this.reference;
  }

  /**
   * Tests (reference-passing) that executed any line of the candidate's changed entities. A
   * removed base class changes behaviour that lives in the base (inherited methods), which tests
   * reach without executing a line of the class itself (its body runs at import, outside any
   * test's context): for `remove_base_class` the tests of the whole file are taken.
   */
  coveringTests(c: Candidate): Set<string> {
    const ref = this.mustReference();
    const tests = new Set<string>();
    for (const ch of c.changes) {
      const lines = ref.coverage.get(ch.path);
      if (!lines) continue;
      if (ch.operator === "remove_base_class") {
        for (const ts of lines.values()) for (const t of ts) tests.add(t);
        continue;
      }
      for (let l = ch.entity.startLine; l <= ch.entity.endLine; l++) for (const t of lines.get(l) ?? []) tests.add(t);
    }
    return tests;
  }

  /** Covering tests plus `sampleOthers` others chosen with the seed and the candidate id. */
  selection(c: Candidate): { covering: Set<string>; selected: string[] } {
    const ref = this.mustReference();
    const covering = this.coveringTests(c);
    const others = [...ref.passed].filter((t) => !covering.has(t)).sort();
    const seed = (this.settings.seed ^ parseInt(c.id.slice(0, 8), 16)) >>> 0;
    const sample = shuffle(others, rng(seed)).slice(0, this.settings.sampleOthers);
    return { covering, selected: selectionArgs([...covering, ...sample]) };
  }

  /** The adaptive timeout of a run of these (reference-passing) tests, seconds (see ValidationSettings.timeoutSeconds). */
  timeoutFor(tests: Iterable<string>): number {
    return adaptiveTimeout(tests, this.reference?.durations, this.settings.minTimeoutSeconds ?? 30, this.settings.timeoutSeconds);
  }

  /** Write the candidate's buggy files. */
  async apply(c: Candidate): Promise<void> {
    for (const [path, text] of Object.entries(c.mutated)) await this.sandbox.writeFile(`${this.spec.workdir}/${path}`, text);
  }

  /** FAIL_TO_PASS / PASS_TO_PASS of a run over `selected` (reference-passing tests only). */
  classify(run: TestRun, selectedTests: Iterable<string>): { f2p: string[]; p2p: string[] } {
    const ref = this.mustReference();
    const f2p: string[] = [];
    const p2p: string[] = [];
    for (const t of selectedTests) {
      if (!ref.passed.has(t) || this.flakyTests.has(t)) continue;
      (passing(run.statuses.get(t)) ? p2p : f2p).push(t);
    }
    return { f2p: f2p.sort(), p2p: p2p.sort() };
  }

  /** Reference-passing tests that a selection (ids with parameters cut) runs. */
  private expand(selected: readonly string[]): string[] {
    const ref = this.mustReference();
    const sel = new Set(selected);
    return [...ref.passed].filter((t) => sel.has(t.replace(/\[.*$/, "")));
  }

  /** Validate one candidate (the tree is reset afterwards). */
  async validate(c: Candidate): Promise<Validation> {
    const started = performance.now();
    const { covering, selected } = this.selection(c);
    const base = { candidate: c, selected, covering: covering.size, failToPass: [] as string[], passToPass: [] as string[], log: "", runs: 0 };
    const done = (v: Omit<Validation, "seconds">): Validation => ({ ...v, seconds: (performance.now() - started) / 1000 });
    if (covering.size === 0) return done({ ...base, kept: false, reason: "uncovered" });
    const expected = this.expand(selected);
    const timeoutSeconds = this.timeoutFor(expected);
    try {
      await this.apply(c);
      const run = await this.runTests(selected, { timeoutSeconds });
      base.runs++;
      base.log = run.log;
      if (run.timedOut) return done({ ...base, kept: false, reason: "timeout" });
      if (expected.every((t) => !run.statuses.has(t))) return done({ ...base, kept: false, reason: "no_results" });
      const { f2p, p2p } = this.classify(run, expected);
      Object.assign(base, { failToPass: f2p, passToPass: p2p });
      if (f2p.length === 0) return done({ ...base, kept: false, reason: "not_caught" });
      if (f2p.length > this.settings.maxFailToPass) return done({ ...base, kept: false, reason: "too_many_failures" });
      for (let i = 0; i < this.settings.reruns; i++) {
        const again = await this.runTests(selected, { timeoutSeconds });
        base.runs++;
        if (again.timedOut) return done({ ...base, kept: false, reason: "timeout" });
        const f2pAgain = this.classify(again, expected).f2p;
        if (!sameSet(f2pAgain, f2p)) {
          for (const t of [...f2p, ...f2pAgain]) if (!(f2p.includes(t) && f2pAgain.includes(t))) this.flakyTests.add(t);
          return done({ ...base, kept: false, reason: "flaky" });
        }
      }
      return done({ ...base, kept: true });
    } finally {
      await this.reset();
    }
  }

  /**
   * The whole suite with the bug: FAIL_TO_PASS over every reference-passing test. Tests failing
   * here but not in `known` (the selection's FAIL_TO_PASS) are run once more with the bug; those
   * that pass then are flaky and dropped (and remembered in {@link flakyTests}).
   */
  async fullSuiteFailToPass(c: Candidate, known: readonly string[] = []): Promise<{ f2p: string[]; seconds: number; timedOut: boolean }> {
    const started = performance.now();
    try {
      await this.apply(c);
      const run = await this.runTests(this.suite, { timeoutSeconds: Math.max(this.spec.testTimeoutSeconds, this.settings.timeoutSeconds) });
      let f2p = this.classify(run, this.mustReference().passed).f2p;
      const extra = f2p.filter((t) => !known.includes(t));
      if (extra.length && !run.timedOut) {
        const again = await this.runTests(selectionArgs(extra));
        const still = new Set(this.classify(again, extra).f2p);
        for (const t of extra) if (!still.has(t)) this.flakyTests.add(t);
        f2p = f2p.filter((t) => !this.flakyTests.has(t));
      }
      return { f2p, seconds: (performance.now() - started) / 1000, timedOut: run.timedOut };
    } finally {
      await this.reset();
    }
  }
}
