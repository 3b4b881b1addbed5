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
 *   agreement: full suite on a sample of kept bugs, same FAIL_TO_PASS?
 *   gold/empty check of every task (startPatch, then referencePatch / nothing)
 *   → Task records (tasks/schema.ts), kind "mutate-fix", testPatch "".
 */
import { buildInstanceImage, repoSlug, type BuildOptions } from "../../images/build";
import { ImageSpecSchema, type ImageSpecInput } from "../../images/spec";
import type { InferenceClient } from "../../inference-client/client";
import { TaskSchema, type Task } from "../schema";
import { candidatesForFiles, combinationGroups, combineCandidates, orderCandidates, rng, shuffle, type Candidate } from "./candidates";
import { modelIssue, templateIssue } from "./issue";
import { OPERATOR_NAMES, type OperatorName } from "./operators";
import { MutateRunner, REJECT_REASONS, sameSet, withCoverage, type RejectReason, type Validation, type ValidationSettings } from "./validate";

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
  /** Called for each task as soon as it passed every check. */
  onTask?: (t: Task) => void;
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
  sourceFiles: number;
  candidates: number;
  tried: number;
  validated: number;
  rejected: Record<RejectReason | "gold_check", number>;
  perOperator: Record<string, OperatorYield>;
  combined: { tried: number; validated: number };
  agreement: { checked: number; agreed: number; disagreements: string[] };
  goldEmpty: { checked: number; goldResolved: number; emptyUnresolved: number };
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

/** Generate mutate-fix tasks (see the file comment). The sandbox is always destroyed. */
export async function generateMutateTasks(opts: MutateOptions): Promise<MutateResult> {
  const t0 = performance.now();
  const since = (t: number) => (performance.now() - t) / 1000;
  const seed = opts.seed ?? 0;
  const spec = ImageSpecSchema.parse(withCoverage(opts.spec));
  const operators = opts.operators ?? OPERATOR_NAMES;
  const rejected = Object.fromEntries([...REJECT_REASONS, "gold_check"].map((r) => [r, 0])) as Record<RejectReason | "gold_check", number>;
  let tried = 0;
  let validated = 0;
  const progress = (phase: MutateProgress["phase"], message: string, total?: number) =>
    opts.onProgress?.({ phase, message, tried, validated, rejected: { ...rejected }, ...(total !== undefined ? { total } : {}) });

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

  const runner = await MutateRunner.start(image, taskSpec, { seed, ...(opts.settings ?? {}) }, opts.cpus ?? 1);
  const perOperator: Record<string, OperatorYield> = Object.fromEntries(operators.map((o) => [o, { tried: 0, validated: 0 }]));
  const stats: MutateStats = {
    repo: spec.repo,
    commit,
    image,
    seed,
    referenceTests: 0,
    referencePassed: 0,
    sourceFiles: 0,
    candidates: 0,
    tried: 0,
    validated: 0,
    rejected,
    perOperator,
    combined: { tried: 0, validated: 0 },
    agreement: { checked: 0, agreed: 0, disagreements: [] },
    goldEmpty: { checked: 0, goldResolved: 0, emptyUnresolved: 0 },
    tasks: 0,
    meanSelected: 0,
    seconds: { build: buildSeconds, reference: 0, validate: 0, combine: 0, agreement: 0, check: 0, total: 0 },
    cpuSeconds: 0,
  };
  const tasks: Task[] = [];
  try {
    progress("reference", "reference run of the whole suite with coverage contexts");
    const tr = performance.now();
    const ref = await runner.runReference();
    stats.seconds.reference = since(tr);
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
    const kept: Validation[] = [];
    let selectedSum = 0;
    const tv = performance.now();
    for (const c of order) {
      if (kept.length >= singlesWanted || tried >= budget) break;
      tried++;
      perOperator[c.operators[0]!]!.tried++;
      const v = await runner.validate(c);
      selectedSum += v.selected.length;
      if (v.kept) {
        validated++;
        perOperator[c.operators[0]!]!.validated++;
        kept.push(v);
      } else {
        rejected[v.reason!]++;
      }
      progress("validate", `${c.operators[0]} in ${c.changes[0]!.path}:${c.changes[0]!.line} → ${v.kept ? "kept" : v.reason}`, order.length);
    }
    stats.seconds.validate = since(tv);
    stats.meanSelected = tried ? selectedSum / tried : 0;

    // Combinations of validated bugs of one file, then of one package.
    const tc = performance.now();
    const combos: Validation[] = [];
    if (combineWanted > 0) {
      const singles = kept.map((v) => v.candidate);
      const groups = [
        ...combinationGroups(singles, { seed, maxGroups: combineWanted * 2, scope: "file" }),
        ...combinationGroups(singles, { seed: seed + 1, maxGroups: combineWanted * 2, scope: "module" }),
      ];
      const seen = new Set<string>();
      for (const g of groups) {
        if (combos.length >= combineWanted) break;
        const c = combineCandidates(g);
        if (!c || seen.has(c.id)) continue;
        seen.add(c.id);
        stats.combined.tried++;
        const v = await runner.validate(c);
        if (v.kept) {
          stats.combined.validated++;
          combos.push(v);
        }
        progress("combine", `${c.operators.join("+")} → ${v.kept ? "kept" : v.reason}`);
      }
    }
    stats.seconds.combine = since(tc);

    // Agreement of the selection with the full suite, on a seeded sample.
    const ta = performance.now();
    const sample = shuffle([...kept], rng(seed ^ 0xa9)).slice(0, opts.agreementSample ?? 5);
    const agreement = new Map<string, boolean>();
    for (const v of sample) {
      const full = await runner.fullSuiteFailToPass(v.candidate, v.failToPass);
      const ok = !full.timedOut && sameSet(full.f2p, v.failToPass);
      agreement.set(v.candidate.id, ok);
      stats.agreement.checked++;
      if (ok) stats.agreement.agreed++;
      else stats.agreement.disagreements.push(`${v.candidate.id}: selected ${v.failToPass.length}, full ${full.f2p.length}`);
      progress("agreement", `full suite for ${v.candidate.id}: ${ok ? "same FAIL_TO_PASS" : "different"}`);
    }
    stats.seconds.agreement = since(ta);

    // Tasks, each checked gold/empty.
    const tk = performance.now();
    for (const v of [...kept, ...combos]) {
      const task = await toTask(v, { spec: taskSpec, commit, seed, client: opts.client, agreement: agreement.get(v.candidate.id) });
      if (opts.goldCheck ?? true) {
        const r = await runner.goldEmptyCheck(task);
        stats.goldEmpty.checked++;
        if (r.gold) stats.goldEmpty.goldResolved++;
        if (r.empty) stats.goldEmpty.emptyUnresolved++;
        task.metadata.goldEmptyCheck = r;
        if (!r.gold || !r.empty) {
          rejected.gold_check++;
          progress("check", `${task.id}: gold ${r.gold ? "resolves" : "does NOT resolve"}, empty ${r.empty ? "fails" : "does NOT fail"}`);
          continue;
        }
      }
      tasks.push(task);
      opts.onTask?.(task);
      progress("check", `${task.id} ok`);
    }
    stats.seconds.check = since(tk);
    stats.cpuSeconds = await runner.cpuSeconds().catch(() => 0);
  } finally {
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
