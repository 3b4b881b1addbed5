/**
 * Mutate-fix task generation for one repository at one commit (CWM paper §2.3, "mutate-fix":
 * inject a bug into a repository whose tests pass, keep it when the repository's own tests catch
 * it, give the agent the broken repository and an issue describing the symptom).
 *
 *   build the instance image (spec + python3-coverage + python3-pytest-cov)   one per repo+commit
 *   reference run with coverage contexts                                        once per image
 *   candidates (operators × entities ≥ complexity gate), seeded order
 *   validate each in the same container (covering tests + a sample), reset between bugs
 *   combine 2–3 validated bugs of one file (or package) and validate the combination
 *   agreement: full suite on the first kept bugs (a seeded sample), same FAIL_TO_PASS?
 *   gold/empty check of every task through the evaluator (rewards/evaluate.ts), fresh sandboxes
 *   → Task records (tasks/schema.ts), kind "mutate-fix", testPatch "", handed out one by one.
 */
import { buildInstanceImage, repoSlug, type BuildOptions } from "../../images/build";
import { ImageSpecSchema, type ImageSpecInput } from "../../images/spec";
import type { InferenceClient } from "../../inference-client/client";
import { evaluatePatch } from "../../rewards/evaluate";
import { TaskSchema, type Task } from "../../tasks/schema";
import { candidatesForFiles, combinationGroups, combineCandidates, orderCandidates, type Candidate } from "./candidates";
import { modelIssue, templateIssue } from "./issue";
import { OPERATOR_NAMES, type OperatorName } from "./operators";
import { MutateRunner, passing, REJECT_REASONS, sameSet, withCoverage, type RejectReason, type Validation, type ValidationSettings } from "./validate";

export const GENERATOR_VERSION = "forager-mutate-1";

export interface MutateOptions {
  /** Image spec of the repository (source and commit set); coverage packages are added. */
  spec: ImageSpecInput;
  /** Tasks wanted (single and combined bugs together). */
  max: number;
  operators?: readonly OperatorName[];
  seed?: number;
  /** Complexity gate for target entities (default 2). */
  minComplexity?: number;
  /** Most single candidates validated (default 15 × max). */
  maxCandidates?: number;
  /** Combined (2–3 bug) tasks wanted (default ⌊max / 10⌋). */
  combine?: number;
  /** Kept bugs re-checked against the full suite (default 5). */
  agreementSample?: number;
  /** Check gold resolves / empty does not for every task (default true). */
  goldCheck?: boolean;
  settings?: Partial<ValidationSettings>;
  /** Which measured files may be mutated (default: not test/doc/example code). */
  fileFilter?: (path: string) => boolean;
  /** When given, issues are written by the model (template fallback). */
  client?: InferenceClient;
  build?: BuildOptions;
  /** Use this instance image instead of building. */
  image?: string;
  cpus?: number;
  onProgress?: (p: MutateProgress) => void;
  /** Called for each task as soon as it passed every check (write it durably here). */
  onTask?: (t: Task) => void;
  /** Gold/empty checks run at once, each in its own sandbox of 1 CPU (default 1). */
  checkConcurrency?: number;
  /** Task ids already produced (a resumed run): their candidates are skipped and count as kept. */
  skipTaskIds?: Iterable<string>;
  /** Load/store the reference run in the cache (validate.ts `referenceCacheDir`, default true). */
  referenceCache?: boolean;
  /** Candidate ids tried before (a resumed run, any verdict): not validated again. */
  skipCandidateIds?: Iterable<string>;
  /**
   * Called once a candidate's fate is known: its reject reason right after validation, or, for a
   * kept one, "written" (the task went to onTask) or "gold_check" after its checks. A stopped run
   * has not called it for bugs whose checks were still running, so a resumed run redoes those.
   */
  onCandidate?: (candidateId: string, verdict: string) => void;
}

export interface MutateProgress {
  phase: "build" | "reference" | "candidates" | "validate" | "combine" | "agreement" | "check" | "done";
  message: string;
  tried: number;
  validated: number;
  rejected: Record<RejectReason | "gold_check", number>;
  /** Candidates in the order (validate phase). */
  total?: number;
}

export interface OperatorYield {
  tried: number;
  validated: number;
}

export interface MutateStats {
  repo: string;
  commit: string;
  image: string;
  seed: number;
  referenceTests: number;
  referencePassed: number;
  /** The reference run came from the cache (its seconds are then the load time). */
  referenceCached: boolean;
  /** Container CPU seconds of the reference run (of the original run when cached). */
  referenceCpuSeconds?: number;
  sourceFiles: number;
  candidates: number;
  tried: number;
  validated: number;
  /** Candidates skipped because their task was already written (resume); they count towards max. */
  resumed: number;
  /** Candidates skipped because a previous run tried them (resume). */
  skippedTried: number;
  rejected: Record<RejectReason | "gold_check", number>;
  perOperator: Record<string, OperatorYield>;
  combined: { tried: number; validated: number };
  agreement: { checked: number; agreed: number; disagreements: string[] };
  /** Gold/empty checks through evaluatePatch; `seconds`: their summed wall time. */
  goldEmpty: { checked: number; goldResolved: number; emptyUnresolved: number; seconds: number };
  tasks: number;
  /** Mean tests run per candidate vs reference suite size. */
  meanSelected: number;
  seconds: { build: number; reference: number; validate: number; combine: number; agreement: number; check: number; total: number };
  /** Container CPU seconds (validation container). */
  cpuSeconds: number;
}

export interface MutateResult {
  tasks: Task[];
  stats: MutateStats;
}

/** Task id: `mutate/<owner__name>/<commit8>-<bug12>`. */
export function mutateTaskId(repo: string, commit: string, candidateId: string): string {
  return `mutate/${repoSlug(repo)}/${commit.slice(0, 8)}-${candidateId}`;
}

/** Result of {@link checkTask}: gold resolves and the empty patch does not, both graded by the evaluator. */
export interface GoldEmptyCheck {
  /** The reference patch resolves the task (evaluatePatch from the buggy starting state). */
  gold: boolean;
  /** With nothing applied the tests run and every FAIL_TO_PASS test fails (so not resolved). */
  empty: boolean;
  /** Why a side failed (the evaluator's reason), for people. */
  goldReason?: string;
  emptyReason?: string;
  /** Wall time of both evaluations, seconds. */
  seconds: number;
}

/**
 * The gold/empty check of one task, through the same evaluator that grades an agent
 * (rewards/evaluate.ts `evaluatePatch`): a fresh sandbox from the instance image, the buggy
 * starting state prepared (squashed commit), the patch applied with the harness's cascade, the
 * task's tests run and graded. The empty side runs the tests with nothing applied
 * (`runTestsOnEmptyPatch`) and requires every FAIL_TO_PASS test to fail, which is stronger than
 * the harness's "an empty patch is unresolved". Environment errors count as failures.
 */
export async function checkTask(task: Task, image: string, opts: { cpus?: number; labels?: Record<string, string> } = {}): Promise<GoldEmptyCheck> {
  const t0 = performance.now();
  const evalOpts = { image, ...(opts.cpus ? { cpus: opts.cpus } : {}), labels: { "forager.run": "mutate-check", ...(opts.labels ?? {}) } };
  const gold = await evaluatePatch(task, task.referencePatch, evalOpts);
  const empty = await evaluatePatch(task, "", { ...evalOpts, runTestsOnEmptyPatch: true });
  const stillPassing = task.failToPass.filter((t) => passing(empty.statuses[t]));
  const emptyOk = empty.outcome === "fail" && !empty.resolved && stillPassing.length === 0 && Object.keys(empty.statuses).length > 0;
  let emptyReason: string | undefined;
  if (!emptyOk) emptyReason = stillPassing.length ? `FAIL_TO_PASS passing without a fix: ${stillPassing.slice(0, 5).join(", ")}` : `${empty.outcome}: ${empty.reason ?? "no test statuses"}`;
  return {
    gold: gold.resolved,
    empty: emptyOk,
    ...(gold.resolved ? {} : { goldReason: `${gold.outcome}: ${gold.reason ?? ""}` }),
    ...(emptyReason ? { emptyReason } : {}),
    seconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
  };
}

/**
 * Generate mutate-fix tasks (see the file comment). Tasks are handed to `onTask` one by one as
 * soon as each passed every check (validation, the full-suite agreement when sampled, the
 * gold/empty check), so a stopped run keeps what it finished. The gold/empty checks run in their
 * own sandboxes (`checkConcurrency` at once, default 1) while validation goes on in its
 * container. Candidates whose task id is in `skipTaskIds` (a resumed run) are not validated
 * again and count towards `max`. The validation sandbox is always destroyed.
 */
export async function generateMutateTasks(opts: MutateOptions): Promise<MutateResult> {
  const t0 = performance.now();
  const since = (t: number) => (performance.now() - t) / 1000;
  const seed = opts.seed ?? 0;
  const spec = ImageSpecSchema.parse(withCoverage(opts.spec));
  const operators = opts.operators ?? OPERATOR_NAMES;
  const rejected = Object.fromEntries([...REJECT_REASONS, "gold_check"].map((r) => [r, 0])) as Record<RejectReason | "gold_check", number>;
  let tried = 0;
  let validated = 0;
  let total: number | undefined;
  const progress = (ph: MutateProgress["phase"], message: string, tot?: number) => {
    if (tot !== undefined) total = tot;
    opts.onProgress?.({ phase: ph, message, tried, validated, rejected: { ...rejected }, ...(total !== undefined ? { total } : {}) });
  };

  progress("build", `building the instance image of ${spec.repo}@${spec.commit.slice(0, 12)}`);
  let image = opts.image;
  let commit = spec.commit;
  const tb = performance.now();
  if (!image) {
    const built = await buildInstanceImage(spec, opts.build ?? {});
    image = built.tag;
    commit = built.commit;
  }
  const buildSeconds = since(tb);
  const taskSpec = { ...spec, commit };
  const skip = new Set(opts.skipTaskIds ?? []);
  const skipTried = new Set(opts.skipCandidateIds ?? []);

  const runner = await MutateRunner.start(image, taskSpec, { seed, ...(opts.settings ?? {}) }, opts.cpus ?? 1);
  const perOperator: Record<string, OperatorYield> = Object.fromEntries(operators.map((o) => [o, { tried: 0, validated: 0 }]));
  const stats: MutateStats = {
    repo: spec.repo,
    commit,
    image,
    seed,
    referenceTests: 0,
    referencePassed: 0,
    referenceCached: false,
    sourceFiles: 0,
    candidates: 0,
    tried: 0,
    validated: 0,
    resumed: 0,
    skippedTried: 0,
    rejected,
    perOperator,
    combined: { tried: 0, validated: 0 },
    agreement: { checked: 0, agreed: 0, disagreements: [] },
    goldEmpty: { checked: 0, goldResolved: 0, emptyUnresolved: 0, seconds: 0 },
    tasks: 0,
    meanSelected: 0,
    seconds: { build: buildSeconds, reference: 0, validate: 0, combine: 0, agreement: 0, check: 0, total: 0 },
    cpuSeconds: 0,
  };
  const tasks: Task[] = [];

  // The check pipeline: task record → gold/empty check → onTask, beside validation.
  const checkSlots = Math.max(1, opts.checkConcurrency ?? 1);
  const pending = new Set<Promise<void>>();
  let checkError: unknown;
  const finishTask = async (v: Validation, agreement: boolean | undefined) => {
    const task = await toTask(v, { spec: taskSpec, commit, seed, client: opts.client, agreement });
    if (opts.goldCheck ?? true) {
      const r = await checkTask(task, image, { cpus: 1 });
      stats.goldEmpty.checked++;
      stats.goldEmpty.seconds += r.seconds;
      if (r.gold) stats.goldEmpty.goldResolved++;
      if (r.empty) stats.goldEmpty.emptyUnresolved++;
      task.metadata.goldEmptyCheck = r;
      if (!r.gold || !r.empty) {
        rejected.gold_check++;
        opts.onCandidate?.(v.candidate.id, "gold_check");
        progress("check", `${task.id}: gold ${r.gold ? "resolves" : `does NOT resolve (${r.goldReason})`}, empty ${r.empty ? "fails" : `does NOT fail (${r.emptyReason})`}`);
        return;
      }
    }
    tasks.push(task);
    opts.onTask?.(task);
    opts.onCandidate?.(v.candidate.id, "written");
    progress("check", `${task.id} written`);
  };
  const emit = async (v: Validation, agreement?: boolean) => {
    while (pending.size >= checkSlots) await Promise.race(pending);
    if (checkError) throw checkError;
    const p: Promise<void> = finishTask(v, agreement)
      .catch((err: unknown) => {
        checkError ??= err;
      })
      .finally(() => pending.delete(p));
    pending.add(p);
  };

  try {
    progress("reference", "reference run of the whole suite with coverage contexts");
    const tr = performance.now();
    const ref = await runner.runReference({ cache: opts.referenceCache ?? true });
    stats.seconds.reference = since(tr);
    stats.referenceCached = ref.cached === true;
    if (ref.cpuSeconds !== undefined) stats.referenceCpuSeconds = ref.cpuSeconds;
    stats.referenceTests = ref.statuses.size;
    stats.referencePassed = ref.passed.size;
    if (ref.passed.size === 0) throw new Error(`no test passed in the reference run of ${spec.repo}; log tail:\n${ref.log.slice(-2000)}`);

    const files = await runner.sourceFiles(opts.fileFilter);
    stats.sourceFiles = files.length;
    const all = await candidatesForFiles(files, { operators, minComplexity: opts.minComplexity ?? 2 });
    stats.candidates = all.length;
    const order = orderCandidates(all, seed);
    progress("candidates", `${all.length} candidates in ${files.length} files; ${order.length} after the per-entity cap`, order.length);

    const combineWanted = opts.combine ?? Math.floor(opts.max / 10);
    const singlesWanted = Math.max(0, opts.max - combineWanted);
    const budget = opts.maxCandidates ?? 15 * Math.max(1, opts.max);
    const agreementWanted = opts.agreementSample ?? 5;
    const kept: Validation[] = [];
    /** Kept single bugs in the seeded order, resumed ones included (the combinations are made from them). */
    const keptSingles: Candidate[] = [];
    let selectedSum = 0;
    const tv = performance.now();
    /**
     * Enough single bugs: the kept ones the gold/empty check has not dropped reach the number
     * wanted. Checks still running are waited for first (they may drop some), so a task dropped by
     * the check is replaced by the next candidate instead of leaving the run short.
     */
    const enoughSingles = async (): Promise<boolean> => {
      const have = () => kept.length - rejected.gold_check + stats.resumed;
      if (have() < singlesWanted) return false;
      await Promise.all(pending);
      return have() >= singlesWanted;
    };
    for (const c of order) {
      // The budget counts what earlier runs of a resumed generation tried too.
      if (tried + stats.resumed + stats.skippedTried >= budget || (await enoughSingles())) break;
      if (skip.has(mutateTaskId(spec.repo, commit, c.id))) {
        stats.resumed++;
        keptSingles.push(c);
        continue;
      }
      if (skipTried.has(c.id)) {
        stats.skippedTried++;
        continue;
      }
      tried++;
      perOperator[c.operators[0]!]!.tried++;
      const v = await runner.validate(c);
      if (!v.kept) opts.onCandidate?.(c.id, v.reason!);
      selectedSum += v.selected.length;
      if (!v.kept) {
        rejected[v.reason!]++;
        progress("validate", `${c.operators[0]} in ${c.changes[0]!.path}:${c.changes[0]!.line} → ${v.reason}`, order.length);
        continue;
      }
      validated++;
      perOperator[c.operators[0]!]!.validated++;
      kept.push(v);
      keptSingles.push(c);
      progress("validate", `${c.operators[0]} in ${c.changes[0]!.path}:${c.changes[0]!.line} → kept`, order.length);
      // Agreement with the full suite: the first kept bugs of the seeded order are the sample.
      let agrees: boolean | undefined;
      if (stats.agreement.checked < agreementWanted) {
        const ta = performance.now();
        const full = await runner.fullSuiteFailToPass(v.candidate, v.failToPass);
        agrees = !full.timedOut && sameSet(full.f2p, v.failToPass);
        stats.agreement.checked++;
        if (agrees) stats.agreement.agreed++;
        else stats.agreement.disagreements.push(`${v.candidate.id}: selected ${v.failToPass.length}, full ${full.f2p.length}`);
        stats.seconds.agreement += since(ta);
        progress("agreement", `full suite for ${v.candidate.id}: ${agrees ? "same FAIL_TO_PASS" : "different"}`);
      }
      await emit(v, agrees);
    }
    stats.seconds.validate = since(tv) - stats.seconds.agreement;
    stats.meanSelected = tried ? selectedSum / tried : 0;

    // Combinations of validated bugs of one file, then of one package.
    const tc = performance.now();
    if (combineWanted > 0) {
      const singles = keptSingles;
      const groups = [
        ...combinationGroups(singles, { seed, maxGroups: combineWanted * 2, scope: "file" }),
        ...combinationGroups(singles, { seed: seed + 1, maxGroups: combineWanted * 2, scope: "module" }),
      ];
      const seen = new Set<string>();
      for (const g of groups) {
        if (stats.combined.validated >= combineWanted) break;
        const c = combineCandidates(g);
        if (!c || seen.has(c.id)) continue;
        seen.add(c.id);
        if (skip.has(mutateTaskId(spec.repo, commit, c.id))) {
          stats.combined.validated++;
          continue;
        }
        if (skipTried.has(c.id)) continue;
        stats.combined.tried++;
        const v = await runner.validate(c);
        if (!v.kept) opts.onCandidate?.(c.id, v.reason!);
        if (v.kept) {
          stats.combined.validated++;
          await emit(v);
        }
        progress("combine", `${c.operators.join("+")} → ${v.kept ? "kept" : v.reason}`);
      }
    }
    stats.seconds.combine = since(tc);

    const tk = performance.now();
    progress("check", `waiting for ${pending.size} gold/empty check(s)`);
    await Promise.all(pending);
    if (checkError) throw checkError;
    stats.seconds.check = since(tk);
    stats.cpuSeconds = await runner.cpuSeconds().catch(() => 0);
  } finally {
    await Promise.allSettled(pending);
    await runner.destroy();
  }
  stats.tried = tried;
  stats.validated = validated;
  stats.tasks = tasks.length;
  stats.seconds.total = since(t0);
  progress("done", `${tasks.length} tasks`);
  return { tasks, stats };
}

/** The Task record of a validated bug. */
export async function toTask(
  v: Validation,
  ctx: { spec: ImageSpecInput; commit: string; seed: number; client?: InferenceClient; agreement?: boolean },
): Promise<Task> {
  const c: Candidate = v.candidate;
  const issueInput = { repo: ctx.spec.repo, failToPass: v.failToPass, log: v.log, startPatch: c.patch, seed: ctx.seed ^ parseInt(c.id.slice(0, 8), 16) };
  let problemStatement: string;
  let issueSource: "template" | "model" = "template";
  let leaksRemoved = 0;
  if (ctx.client) {
    const r = await modelIssue(ctx.client, issueInput);
    problemStatement = r.text;
    issueSource = r.source;
    leaksRemoved = r.removed;
  } else {
    problemStatement = templateIssue(issueInput);
  }
  return TaskSchema.parse({
    id: mutateTaskId(ctx.spec.repo, ctx.commit, c.id),
    kind: "mutate-fix",
    testIds: "exact",
    repo: ctx.spec.repo,
    commit: ctx.commit,
    image: ctx.spec,
    problemStatement,
    testPatch: "",
    failToPass: v.failToPass,
    passToPass: v.passToPass,
    referencePatch: c.reversePatch,
    startPatch: c.patch,
    metadata: {
      generator: GENERATOR_VERSION,
      operators: c.operators,
      operator: c.operators.join("+"),
      changes: c.changes.map((ch) => ({
        path: ch.path,
        operator: ch.operator,
        entity: ch.entity,
        description: ch.description,
        line: ch.line,
        byteRanges: ch.edits.map((e) => [e.byteStart, e.byteEnd]),
      })),
      changedLines: c.changedLines,
      seed: ctx.seed,
      issueSource,
      leaksRemoved,
      validation: {
        selectedTests: v.selected.length,
        coveringTests: v.covering,
        runs: v.runs,
        seconds: Number(v.seconds.toFixed(2)),
        ...(ctx.agreement !== undefined ? { fullSuiteAgrees: ctx.agreement } : {}),
      },
      createdAt: new Date().toISOString(),
    },
  });
}
