/**
 * A repository's test suite in one long-lived sandbox of its instance image: runs of chosen
 * tests (pytest's JUnit report for exact node ids, else the log), the whole suite's paths, a
 * tree reset between runs, the container's CPU time. Used by mutate-fix validation
 * (taskgen/mutate/validate.ts MutateRunner, which adds the reference run under coverage and the
 * candidates), commit mining (taskgen/commits) and the validation benchmark.
 */
import { parsePytestJunitXml, parseTestLog, type StatusMap } from "./log-parsers";
import { ImageSpecSchema, type ImageSpec, type ImageSpecInput } from "../images/spec";
import { Sandbox } from "../sandbox/sandbox";
import { EXIT_CODE_LINE, testRunScript } from "./script";

/** One run of tests. */
export interface TestRun {
  statuses: StatusMap;
  log: string;
  timedOut: boolean;
  exitCode: number | null;
  seconds: number;
}

/** Where a run's JUnit report is written in the container. */
const JUNIT_PATH = "/tmp/forager-suite-junit.xml";
/** Where the ids of a run are listed in the container. */
export const SUITE_LIST_FILE = "/tmp/forager-suite-tests.txt";

export interface SuiteRunnerOptions {
  /** CPU cores of the sandbox (default 1). */
  cpus?: number;
  /** Default seconds one run may take (default 300). */
  timeoutSeconds?: number;
  /** Container name prefix and labels. */
  namePrefix?: string;
  labels?: Record<string, string>;
}

/** The suite of one image in one sandbox (see the module comment). */
export class SuiteRunner {
  /** The whole suite's paths (`tests`, `testing` or `test` when one exists); undefined: no argument. */
  suite: string[] | undefined;

  protected constructor(
    readonly sandbox: Sandbox,
    readonly spec: ImageSpec,
    readonly timeoutSeconds: number,
  ) {}

  /**
   * Start the sandbox (no network, a 6 h lifetime).
   * @throws EnvironmentError when the engine cannot start it.
   */
  static async open(image: string, specInput: ImageSpecInput, o: SuiteRunnerOptions = {}): Promise<SuiteRunner> {
    const spec = ImageSpecSchema.parse(specInput);
    return new SuiteRunner(await SuiteRunner.sandboxFor(image, spec, o), spec, o.timeoutSeconds ?? 300);
  }

  /** The sandbox a runner works in. */
  protected static sandboxFor(image: string, spec: ImageSpec, o: SuiteRunnerOptions): Promise<Sandbox> {
    return Sandbox.create({
      image,
      network: "none",
      workdir: spec.workdir,
      cpus: o.cpus ?? 1,
      lifetimeSeconds: 6 * 3600,
      commandTimeoutSeconds: 600,
      namePrefix: o.namePrefix ?? "forager-suite",
      labels: o.labels ?? { "forager.suite": spec.repo },
    });
  }

  async destroy(): Promise<void> {
    await this.sandbox.destroy();
  }

  /** CPU time the container has used, seconds (cgroup accounting through the engine). */
  async cpuSeconds(): Promise<number> {
    const stats = (await this.sandbox.container.stats({ stream: false })) as { cpu_stats?: { cpu_usage?: { total_usage?: number } } };
    return (stats.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1e9;
  }

  /** Run a bash script in the repository; output merged. */
  async sh(script: string, timeoutSeconds = 600): Promise<{ code: number | null; out: string; timedOut: boolean }> {
    const r = await this.sandbox.exec(["bash", "-c", script], { workdir: this.spec.workdir, timeoutSeconds });
    return { code: r.exitCode, out: r.stdout.toString("utf8") + r.stderr.toString("utf8"), timedOut: r.timedOut };
  }

  /**
   * Run the test command on `tests` (undefined: the whole command) with extra arguments; pytest
   * statuses from its JUnit report (exact node ids, parameters whole), else from the log.
   */
  async runTests(tests: readonly string[] | undefined, opts: { extraArgs?: string; timeoutSeconds?: number; env?: string } = {}): Promise<TestRun> {
    const started = performance.now();
    const timeoutSeconds = opts.timeoutSeconds ?? this.timeoutSeconds;
    if (tests) await this.sandbox.writeFile(SUITE_LIST_FILE, tests.join("\n") + "\n");
    const junit = this.spec.logParser === "pytest" ? ` --junitxml=${JUNIT_PATH} -o junit_family=xunit1` : "";
    const script = testRunScript(this.spec, {
      env: [...(opts.env ? [opts.env] : []), `rm -f ${JUNIT_PATH}`],
      ...(tests ? { listFile: SUITE_LIST_FILE } : {}),
      extraArgs: `-p no:cacheprovider --tb=short${junit} ${opts.extraArgs ?? ""}`,
      timeoutSeconds,
      noBytecode: true,
    });
    const r = await this.sh(script, timeoutSeconds + 120);
    const m = EXIT_CODE_LINE.exec(r.out);
    const exitCode = m ? Number(m[1]) : null;
    const timedOut = r.timedOut || exitCode === 124 || exitCode === 137;
    const statuses: StatusMap = new Map();
    let xml: string | undefined;
    if (junit) xml = await this.sandbox.readFile(JUNIT_PATH).then((b) => b.toString("utf8")).catch(() => undefined);
    if (xml && /<testsuite\b/.test(xml)) {
      for (const [id, s] of parsePytestJunitXml(xml, { truncateAtWhitespace: false, repo: this.spec.repo })) statuses.set(id.trim(), s);
    } else {
      for (const [id, s] of parseTestLog(this.spec.logParser, r.out, { repo: this.spec.repo })) statuses.set(id.trim(), s);
    }
    return { statuses, log: r.out, timedOut, exitCode, seconds: (performance.now() - started) / 1000 };
  }

  /** Decide (and remember in {@link suite}) what the whole suite is: `paths` when given. */
  async detectSuite(paths?: string[]): Promise<string[] | undefined> {
    if (paths) return (this.suite = paths.length ? paths : undefined);
    const r = await this.sh('for d in tests testing test; do [ -d "$d" ] && { echo "$d"; break; }; done; true');
    const d = r.out.trim();
    return (this.suite = d ? [d] : undefined);
  }

  /** Restore the original tree (tracked files checked out, untracked removed). */
  async reset(): Promise<void> {
    const r = await this.sh("git checkout -q -- . && git clean -fdq");
    if (r.code !== 0) throw new Error(`reset failed: ${r.out}`);
  }
}
