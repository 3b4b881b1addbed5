/**
 * Issue-fix tasks mined from a repository's history (forager issue 11), with no per-task image:
 *
 *   candidates (select.ts) on the first-parent history, newest first
 *   dependency change between parent and commit → rejected ("new-dependency")
 *   groups by the parent's dependency key (git.ts dependencyKey): one image spec (--spec, else
 *     inferred by infer/ at the group's newest commit; inferred too when the given spec does
 *     not build there, "inferred-fallback") and ONE instance image per group,
 *     built at the group's newest commit: every parent and fix of the group is its ancestor, so
 *     their objects are in the image
 *   per candidate, in one long-lived sandbox per group (suite/runner.ts SuiteRunner, JUnit exact ids):
 *     the parent's tree + the test patch, then the commit's tree, the touched test files run on
 *     each, `reruns` more times (alternating); tests whose status changes are dropped
 *     FAIL_TO_PASS: not passing before, passing after; PASS_TO_PASS: passing in both
 *   the problem statement (statement.ts: template, or back-translation with a model)
 *   the gold/empty check through the evaluator that grades agents (taskgen/mutate checkTask)
 *   → Task (kind issue-fix, `startCommit` = parent, `image.commit` = the group's image commit).
 *
 * The agent's start state is made when the sandbox starts (tasks/start.ts): the image's tree is
 * moved to the parent's tree, squashed to one orphan commit, refs deleted, objects pruned, so no
 * object of the fix or of a later commit stays. The disk a task adds is its record only.
 */
import fs from "node:fs";
import { diffBlocks } from "../../lib/diff";
import { buildInstanceImage, repoSlug, type BuildOptions } from "../../images/build";
import { inspectImage } from "../../images/docker";
import { inferredSpecFile } from "../../infer/run";
import type { SetupAgent } from "../../infer/setup";
import { ImageSpecSchema, type ImageSpec, type ImageSpecInput, type RepoSource } from "../../images/spec";
import type { InferenceClient } from "../../inference-client/client";
import { PINNED_GIT, startTreeLines } from "../../tasks/start";
import { TaskSchema, type Task } from "../../tasks/schema";
import { checkTask } from "../mutate/generate";
import { passing } from "../mutate/validate";
import { SuiteRunner, type TestRun } from "../../suite/runner";
import { diffTargetPaths } from "../../tasks/directives";
import { commitDate, commitDiff, commitMessage, dependencyKey, gitOut, listCommits, type HistoryWindow } from "./git";
import { DEFAULT_SELECT_SETTINGS, fileKind, selectCommit, splitPatch, type CommitRecord, type SelectSettings } from "./select";
import { minedStatement, modelStatement } from "./statement";

export const MINER_VERSION = "forager-commits-1";

/** Why a candidate commit gave no task (after selection). */
export const MINE_REJECT_REASONS = [
  "new-dependency",
  "no-environment",
  "no-test-files",
  "apply-failed",
  "timeout",
  "no-results",
  "no-fail-to-pass",
  "flaky",
  "statement-leak",
  "gold-check",
] as const;
export type MineRejectReason = (typeof MINE_REJECT_REASONS)[number];

export interface MineOptions {
  /** Local git directory (bare or `.git`). */
  gitDir: string;
  /** `owner/name`. */
  repo: string;
  /** Where images get the repository from (default: the git directory). */
  source?: RepoSource;
  window?: HistoryWindow;
  /** Tasks wanted (default 20). */
  max?: number;
  /** Candidates tried at most (default 10 × max). */
  maxCandidates?: number;
  /** Wall seconds after which no new candidate or dependency set is started (default none). */
  maxSeconds?: number;
  /** A fixed image spec for every group (its commit is replaced); default: inferred per dependency set. */
  spec?: ImageSpecInput;
  select?: SelectSettings;
  /** Extra runs of both sides after the first, for flakiness (default 2). */
  reruns?: number;
  /** Seconds one test run may take (default 300). */
  timeoutSeconds?: number;
  /** Back-translated statements (template fallback). */
  client?: InferenceClient;
  /** Asked by image inference when its heuristics give up at a dependency set (`--model-url`). */
  setupAgent?: SetupAgent;
  /** Gold/empty check of every task through the evaluator (default true). */
  goldCheck?: boolean;
  /** Commits decided before (a resumed run): skipped. */
  skip?: Iterable<string>;
  build?: BuildOptions;
  stateDir?: string;
  cpus?: number;
  onProgress?: (p: MineProgress) => void;
  /** Each task as soon as it passed every check. */
  onTask?: (t: Task) => void;
  /** A candidate's verdict: "kept" or a reject reason. */
  onDecision?: (sha: string, verdict: string) => void;
}

export interface MineProgress {
  message: string;
  tried: number;
  kept: number;
  rejected: Record<MineRejectReason, number>;
  candidates: number;
}

/** One task's gold/empty figures (the docs table lists them). */
export interface TaskFigure {
  id: string;
  sha: string;
  failToPass: number;
  passToPass: number;
  gold: boolean;
  empty: boolean;
  seconds: number;
  /** Bytes of the task's JSONL line. */
  recordBytes: number;
}

export interface ImageGroup {
  dependencyKey: string;
  /** The commit the group's instance image holds (the newest of the group). */
  commit: string;
  image?: string;
  /** Image size as the engine reports it, bytes (base and env layers included; shared by the group's tasks). */
  imageBytes?: number;
  /** Bytes of the instance layers alone (the image minus its env image): what the set adds on disk. */
  instanceLayerBytes?: number;
  /** "inferred-fallback": the given --spec did not build at this set, so the set's spec was inferred. */
  specSource: "given" | "inferred" | "inferred-fallback";
  /** Why the given spec was set aside (with "inferred-fallback"). */
  givenSpecError?: string;
  candidates: number;
  tasks: number;
  error?: string;
}

export interface MineStats {
  repo: string;
  generator: string;
  commitsScanned: number;
  candidates: number;
  /** Selection's reasons (select.ts) for the commits that are not candidates. */
  notCandidates: Record<string, number>;
  tried: number;
  resumed: number;
  kept: number;
  rejected: Record<MineRejectReason, number>;
  groups: ImageGroup[];
  tasks: TaskFigure[];
  /** Mean bytes a task adds on disk: its record; per-task image bytes are 0 (images are per dependency set). */
  diskPerTaskBytes: number;
  perTaskImageBytes: 0;
  /** The dependency sets' instance layers (sum of `instanceLayerBytes`) divided by the tasks kept: their share per task. */
  sharedInstanceBytesPerTask: number;
  seconds: { total: number; images: number; runs: number; checks: number };
  /** The run stopped at `maxSeconds` with candidates left. */
  stoppedByTime?: boolean;
}

/** Task id: `commits/<owner__name>/<sha12>`. */
export function commitTaskId(repo: string, sha: string): string {
  return `commits/${repoSlug(repo)}/${sha.slice(0, 12)}`;
}

/** Test files (pytest modules) a test patch leaves in the tree: `test_*.py` / `*_test.py`, not deleted. */
export function touchedTestFiles(testPatch: string): string[] {
  const out: string[] = [];
  for (const { path: p, text: block } of diffBlocks(testPatch)) {
    if (/^\+\+\+ \/dev\/null$/m.test(block) || /^deleted file mode/m.test(block)) continue;
    const base = p.split("/").pop()!;
    if (fileKind(p) === "test" && (/^test_.*\.py$/.test(base) || /_test\.py$/.test(base))) out.push(p);
  }
  return [...new Set(out)];
}

/**
 * The test modules (`test_*.py` / `*_test.py`) of the commit's tree under the top directories of
 * the test patch's files (e.g. `tests/`), at most `limit`: what to run when the test patch
 * changes only data files. The evaluator then runs without directives (tasks/directives.ts:
 * data files are no directives), so the whole suite, which holds these modules.
 */
export function testModulesNear(gitDir: string, sha: string, testPatch: string, limit = 30): string[] {
  const tops = new Set(diffTargetPaths(testPatch).map((p) => p.split("/")[0]!).filter((d) => d && !d.endsWith(".py")));
  if (tops.size === 0) return [];
  const files = gitOut(gitDir, ["ls-tree", "-r", "--name-only", "--full-tree", sha, "--", ...tops]).split("\n").filter(Boolean);
  return files.filter((p) => /(^|\/)(test_[^/]*|[^/]*_test)\.py$/.test(p)).slice(0, limit);
}

/** A collection failure caused by a missing module: the commit needs a dependency the parent's environment lacks. */
export function missingModule(log: string): string | undefined {
  if (!/ERROR collecting|errors? during collection|ImportError while importing/.test(log)) return undefined;
  const m = /(?:ModuleNotFoundError: No module named|ImportError: cannot import name \S+ from|ImportError: No module named) '?([\w.]+)'?/.exec(log);
  return m?.[1];
}

/** Per-test status across runs (undefined: the test did not report). */
type Series = Map<string, (string | undefined)[]>;

function record(series: Series, run: TestRun, index: number): void {
  for (const id of run.statuses.keys()) if (!series.has(id)) series.set(id, []);
  for (const [id, list] of series) list[index] = run.statuses.get(id);
}

/**
 * FAIL_TO_PASS / PASS_TO_PASS from the before (parent + test patch) and after (commit) series of
 * `runs` runs each. A test whose status differs between runs of one side is flaky and dropped.
 * Only tests that report after the fix count (a test absent before counts as failing before).
 */
export function classifyRuns(before: Series, after: Series, runs: number): { failToPass: string[]; passToPass: string[]; flaky: string[] } {
  const f2p: string[] = [];
  const p2p: string[] = [];
  const flaky: string[] = [];
  const stable = (xs: (string | undefined)[]) => {
    const norm = Array.from({ length: runs }, (_, i) => xs[i] ?? "ABSENT");
    return norm.every((x) => x === norm[0]);
  };
  for (const [id, a] of after) {
    const b = before.get(id) ?? [];
    if (a.every((x) => x === undefined)) continue;
    if (!stable(a) || !stable(b)) {
      flaky.push(id);
      continue;
    }
    const pa = passing(a[0]);
    const pb = passing(b[0]);
    if (pa && !pb) f2p.push(id);
    else if (pa && pb) p2p.push(id);
  }
  return { failToPass: f2p.sort(), passToPass: p2p.sort(), flaky: flaky.sort() };
}

interface Verdict {
  reason?: MineRejectReason;
  detail?: string;
  failToPass: string[];
  passToPass: string[];
  flaky: string[];
  beforeLog: string;
  runs: number;
  seconds: number;
}

/** Runs the before/after test runs of one candidate in a group's sandbox. */
class GroupRunner {
  private constructor(
    readonly runner: SuiteRunner,
    readonly imageCommit: string,
  ) {}

  static async start(image: string, spec: ImageSpec, imageCommit: string, timeoutSeconds: number, cpus: number): Promise<GroupRunner> {
    return new GroupRunner(await SuiteRunner.open(image, spec, { timeoutSeconds, cpus, namePrefix: "forager-commits", labels: { "forager.commits": spec.repo } }), imageCommit);
  }

  async destroy(): Promise<void> {
    await this.runner.destroy();
  }

  /** Reset to the image's installed state, move to `target`'s tree, apply `patch` (stdin) if any. */
  private async tree(target: string, patch?: string): Promise<string | undefined> {
    const script = [
      "set -euo pipefail",
      `${PINNED_GIT} reset -q --hard HEAD`,
      `${PINNED_GIT} clean -fdq`,
      ...startTreeLines(this.imageCommit, target),
      ...(patch ? [`${PINNED_GIT} apply --whitespace=nowarn -`] : []),
    ].join("\n");
    const r = await this.runner.sandbox.exec(["bash", "-c", script], { workdir: this.runner.spec.workdir, timeoutSeconds: 300, stdin: patch ?? "" });
    return r.exitCode === 0 ? undefined : (r.stdout.toString("utf8") + r.stderr.toString("utf8")).slice(-800);
  }

  async verdict(c: CommitRecord, testPatch: string, tests: string[], reruns: number): Promise<Verdict> {
    const t0 = performance.now();
    const before: Series = new Map();
    const after: Series = new Map();
    const v: Verdict = { failToPass: [], passToPass: [], flaky: [], beforeLog: "", runs: 0, seconds: 0 };
    const done = (reason?: MineRejectReason, detail?: string): Verdict => ({ ...v, ...(reason ? { reason } : {}), ...(detail ? { detail } : {}), seconds: (performance.now() - t0) / 1000 });
    for (let i = 0; i <= reruns; i++) {
      const e1 = await this.tree(c.parent, testPatch);
      if (e1) return done("apply-failed", `test patch on the parent: ${e1}`);
      const b = await this.runner.runTests(tests);
      if (i === 0) v.beforeLog = b.log;
      const e2 = await this.tree(c.sha);
      if (e2) return done("apply-failed", `commit tree: ${e2}`);
      const a = await this.runner.runTests(tests);
      v.runs = i + 1;
      if (b.timedOut || a.timedOut) return done("timeout");
      const missing = missingModule(a.log);
      if (missing) return done("new-dependency", `the commit's tests fail to import ${missing}`);
      if (a.statuses.size === 0) return done("no-results", a.log.slice(-400));
      record(before, b, i);
      record(after, a, i);
      const cls = classifyRuns(before, after, i + 1);
      Object.assign(v, cls);
      if (i === 0 && cls.failToPass.length === 0) return done("no-fail-to-pass");
    }
    await this.tree(this.imageCommit);
    if (v.failToPass.length === 0) return done("flaky", `unstable: ${v.flaky.slice(0, 5).join(", ")}`);
    return done();
  }
}

/**
 * Mine issue-fix tasks from a repository's history (see the file comment). Tasks are handed to
 * `onTask` as soon as each passed every check; verdicts to `onDecision`.
 * @throws Error when the history cannot be read; environment failures of a group are counted
 *   ("no-environment"), not thrown.
 */
export async function mineCommitTasks(opts: MineOptions): Promise<{ tasks: Task[]; stats: MineStats }> {
  const t0 = performance.now();
  const since = (t: number) => (performance.now() - t) / 1000;
  const max = opts.max ?? 20;
  const maxCandidates = opts.maxCandidates ?? 10 * max;
  const outOfTime = () => opts.maxSeconds !== undefined && since(t0) > opts.maxSeconds;
  const reruns = opts.reruns ?? 2;
  const source: RepoSource = opts.source ?? { type: "path", path: opts.gitDir };
  const skip = new Set(opts.skip ?? []);
  const rejected = Object.fromEntries(MINE_REJECT_REASONS.map((r) => [r, 0])) as Record<MineRejectReason, number>;
  const records = listCommits(opts.gitDir, opts.window ?? {});
  const notCandidates: Record<string, number> = {};
  const candidates: CommitRecord[] = [];
  for (const r of records) {
    const s = selectCommit(r, opts.select ?? DEFAULT_SELECT_SETTINGS);
    if (s.ok) candidates.push(r);
    else notCandidates[s.reason] = (notCandidates[s.reason] ?? 0) + 1;
  }
  const stats: MineStats = {
    repo: opts.repo,
    generator: MINER_VERSION,
    commitsScanned: records.length,
    candidates: candidates.length,
    notCandidates,
    tried: 0,
    resumed: 0,
    kept: 0,
    rejected,
    groups: [],
    tasks: [],
    diskPerTaskBytes: 0,
    perTaskImageBytes: 0,
    sharedInstanceBytesPerTask: 0,
    seconds: { total: 0, images: 0, runs: 0, checks: 0 },
  };
  const tasks: Task[] = [];
  const progress = (message: string) =>
    opts.onProgress?.({ message, tried: stats.tried, kept: stats.kept, rejected: { ...rejected }, candidates: candidates.length });
  const reject = (c: CommitRecord, reason: MineRejectReason, detail?: string) => {
    rejected[reason]++;
    opts.onDecision?.(c.sha, reason);
    progress(`${c.sha.slice(0, 12)} ${c.subject.slice(0, 50)} → ${reason}${detail ? ` (${detail.split("\n")[0]!.slice(0, 120)})` : ""}`);
  };
  progress(`${records.length} commits scanned, ${candidates.length} candidates`);

  // Groups by the parent's dependency key, in the order of their newest candidate.
  const groups = new Map<string, CommitRecord[]>();
  for (const c of candidates) {
    if (skip.has(c.sha)) {
      stats.resumed++;
      continue;
    }
    const key = dependencyKey(opts.gitDir, c.parent);
    if (key !== dependencyKey(opts.gitDir, c.sha)) {
      stats.tried++;
      reject(c, "new-dependency", "dependency files differ between parent and commit");
      continue;
    }
    const g = groups.get(key) ?? [];
    g.push(c);
    groups.set(key, g);
  }

  for (const [key, members] of groups) {
    if (stats.kept >= max || stats.tried >= maxCandidates || outOfTime()) break;
    const newest = members[0]!.sha;
    const group: ImageGroup = { dependencyKey: key, commit: newest, specSource: opts.spec ? "given" : "inferred", candidates: members.length, tasks: 0 };
    stats.groups.push(group);
    const ti = performance.now();
    let spec: ImageSpec;
    let image: string;
    try {
      const prepare = async (input: ImageSpecInput | undefined) => {
        if (!input) {
          progress(`inferring the image spec at ${newest.slice(0, 12)} (dependency set ${key})`);
          const f = await inferredSpecFile({ repo: opts.gitDir, commit: newest, name: opts.repo, ...(opts.stateDir ? { stateDir: opts.stateDir } : {}), ...(opts.setupAgent ? { setupAgent: opts.setupAgent } : {}), onProgress: (m) => progress(`[infer] ${m}`) });
          if (!f) throw new Error("image inference rejected the repository at this commit");
          input = JSON.parse(fs.readFileSync(f.file, "utf8")) as ImageSpecInput;
        }
        const s = ImageSpecSchema.parse({ ...input, repo: opts.repo, commit: newest, source });
        if (s.logParser !== "pytest") throw new Error(`needs a pytest suite, not ${s.logParser}`);
        progress(`instance image of ${opts.repo}@${newest.slice(0, 12)} for ${members.length} candidate(s)`);
        return { spec: s, built: await buildInstanceImage(s, { ...(opts.stateDir ? { stateDir: opts.stateDir } : {}), ...(opts.build ?? {}) }) };
      };
      let prepared: Awaited<ReturnType<typeof prepare>>;
      try {
        prepared = await prepare(opts.spec);
      } catch (err) {
        // A hand spec written for one era of the repository may not build at another (click: a
        // PEP 639 license string that bookworm's flit_core rejects): infer this set's own spec.
        if (!opts.spec) throw err;
        group.givenSpecError = (err as Error).message.slice(0, 300);
        group.specSource = "inferred-fallback";
        progress(`the given spec does not build at ${newest.slice(0, 12)} (${group.givenSpecError.split("\n")[0]}); inferring this set's spec`);
        prepared = await prepare(undefined);
      }
      const built = prepared.built;
      image = built.tag;
      spec = ImageSpecSchema.parse({ ...prepared.spec, commit: built.commit });
      group.image = image;
      const info = await inspectImage(image);
      if (info?.Size !== undefined) group.imageBytes = info.Size;
      const envInfo = await inspectImage(built.env.tag);
      if (info?.Size !== undefined && envInfo?.Size !== undefined) group.instanceLayerBytes = info.Size - envInfo.Size;
    } catch (err) {
      group.error = (err as Error).message.slice(0, 300);
      stats.seconds.images += since(ti);
      for (const c of members) {
        if (stats.tried >= maxCandidates) break;
        stats.tried++;
        reject(c, "no-environment", group.error);
      }
      continue;
    }
    stats.seconds.images += since(ti);
    const runner = await GroupRunner.start(image, spec, spec.commit, opts.timeoutSeconds ?? 300, opts.cpus ?? 1);
    try {
      for (const c of members) {
        if (stats.kept >= max || stats.tried >= maxCandidates || outOfTime()) break;
        stats.tried++;
        const { testPatch, goldPatch } = splitPatch(commitDiff(opts.gitDir, c.parent, c.sha));
        let tests = touchedTestFiles(testPatch);
        // A test patch of data files only (fixtures, expected outputs): the test modules beside them.
        if (tests.length === 0) tests = testModulesNear(opts.gitDir, c.sha, testPatch);
        if (tests.length === 0 || goldPatch.trim() === "") {
          reject(c, "no-test-files");
          continue;
        }
        const tr = performance.now();
        const v = await runner.verdict(c, testPatch, tests, reruns);
        stats.seconds.runs += since(tr);
        if (v.reason) {
          reject(c, v.reason, v.detail);
          continue;
        }
        const stIn = { repo: opts.repo, failToPass: v.failToPass, log: v.beforeLog, goldPatch, testPatch };
        let problemStatement: string;
        let statementSource: "model" | "template" = "template";
        try {
          if (opts.client) {
            const r = await modelStatement(opts.client, stIn);
            problemStatement = r.text;
            statementSource = r.source;
          } else problemStatement = minedStatement(stIn);
        } catch (err) {
          reject(c, "statement-leak", (err as Error).message);
          continue;
        }
        const task = TaskSchema.parse({
          id: commitTaskId(opts.repo, c.sha),
          kind: "issue-fix",
          testIds: "exact",
          repo: opts.repo,
          commit: c.parent,
          startCommit: c.parent,
          image: spec,
          problemStatement,
          testPatch,
          failToPass: v.failToPass,
          passToPass: v.passToPass,
          referencePatch: goldPatch,
          metadata: {
            generator: MINER_VERSION,
            source: "commit",
            sourceCommit: c.sha,
            parent: c.parent,
            commitSubject: c.subject,
            commitMessage: commitMessage(opts.gitDir, c.sha),
            commitDate: commitDate(opts.gitDir, c.sha),
            imageCommit: spec.commit,
            dependencyKey: key,
            statementSource,
            testFiles: tests,
            validation: { runs: v.runs, flakyDropped: v.flaky, seconds: Number(v.seconds.toFixed(2)) },
            createdAt: new Date().toISOString(),
          },
        });
        const figure: TaskFigure = { id: task.id, sha: c.sha, failToPass: task.failToPass.length, passToPass: task.passToPass.length, gold: true, empty: true, seconds: 0, recordBytes: 0 };
        if (opts.goldCheck ?? true) {
          const tk = performance.now();
          const r = await checkTask(task, image, { cpus: 1, labels: { "forager.run": "commits-check" } });
          stats.seconds.checks += since(tk);
          figure.gold = r.gold;
          figure.empty = r.empty;
          figure.seconds = r.seconds;
          task.metadata.goldEmptyCheck = r;
          if (!r.gold || !r.empty) {
            stats.tasks.push(figure);
            reject(c, "gold-check", `gold ${r.gold ? "resolves" : r.goldReason}; empty ${r.empty ? "fails" : r.emptyReason}`);
            continue;
          }
        }
        task.metadata.diskBytes = { record: 0, perTaskImage: 0 };
        const line = JSON.stringify(task);
        const bytes = Buffer.byteLength(line) + 1;
        task.metadata.diskBytes = { record: bytes, perTaskImage: 0 };
        figure.recordBytes = Buffer.byteLength(JSON.stringify(task)) + 1;
        stats.tasks.push(figure);
        stats.kept++;
        group.tasks++;
        tasks.push(task);
        opts.onTask?.(task);
        opts.onDecision?.(c.sha, "kept");
        progress(`${c.sha.slice(0, 12)} ${c.subject.slice(0, 50)} → kept (${task.failToPass.length} FAIL_TO_PASS, ${task.passToPass.length} PASS_TO_PASS)`);
      }
    } finally {
      await runner.destroy();
    }
  }
  const kept = stats.tasks.filter((t) => t.recordBytes > 0);
  stats.diskPerTaskBytes = kept.length ? Math.round(kept.reduce((n, t) => n + t.recordBytes, 0) / kept.length) : 0;
  const layers = stats.groups.reduce((n, g) => n + (g.instanceLayerBytes ?? 0), 0);
  stats.sharedInstanceBytesPerTask = stats.kept ? Math.round(layers / stats.kept) : 0;
  stats.seconds.total = since(t0);
  stats.stoppedByTime = outOfTime();
  progress(`done: ${stats.kept} task(s)`);
  return { tasks, stats };
}
