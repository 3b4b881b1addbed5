/**
 * Mutate-fix validation cost: coverage-selected tests vs the full suite for every candidate, on
 * the same repository and the same candidate bugs (same seed, same order), side by side.
 *
 *   npm run bench -- mutate-validation [--repo PATH] [--commit SHA] [--spec FILE] [--name owner/name]
 *                                      [--candidates N] [--seed N] [--timeout S]
 *                                      [--suite PATH,PATH] [--files REGEX]
 *
 * Default: pallets/flask at the SWE-bench Verified 2.3 commit from /work/.mirror, 20 candidates.
 * Both modes run in a container of the same instance image (one each, 1 CPU); CPU time is the
 * container's cgroup CPU usage (engine stats). Both modes use the same keep rule
 * (FAIL_TO_PASS ≥ 1, ≤ 50, one re-run reproducing it).
 *
 * Each mode has a one-off cost per image: the coverage reference run (selected mode; loaded from
 * the reference cache when an earlier run stored it, charged at the CPU it cost then) and a plain
 * whole-suite run (full mode, for the reference statuses). Figures: validated tasks per CPU-minute
 * in each mode with the one-off costs charged to these N candidates (`speedup_ratio`), the
 * per-candidate ratio without them (`per_candidate_speedup_ratio`: the limit for a long
 * generation run, where the one-off cost spreads over hundreds of candidates), the number of
 * candidates from which the selection is cheaper, and the agreement (share of candidates with the
 * same verdict and the same FAIL_TO_PASS set in both modes).
 */
import fs from "node:fs";
import { mutateSpec } from "../cli/tasks";
import { buildInstanceImage } from "../images/build";
import { ImageSpecSchema } from "../images/spec";
import { candidatesForFiles, orderCandidates, type Candidate } from "../taskgen/mutate/candidates";
import { MutateRunner, NON_SOURCE_PATH, parseDurations, passing, sameSet, withCoverage } from "../taskgen/mutate/validate";

function flag(args: string[], name: string, dflt?: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
}

interface Verdict {
  kept: boolean;
  f2p: string[];
}

export async function main(args: string[]): Promise<Record<string, number>> {
  const repo = flag(args, "repo", "/work/.mirror/pallets+flask/repo")!;
  const commit = flag(args, "commit", "7ee9ceb71e868944a46e1ff00b506772a53a4f1d")!;
  const specFile = flag(args, "spec", fs.existsSync("taskgen/mutate/specs/flask.json") ? "taskgen/mutate/specs/flask.json" : undefined);
  const name = flag(args, "name", repo.includes("flask") ? "pallets/flask" : undefined);
  const n = Number(flag(args, "candidates", "20"));
  const seed = Number(flag(args, "seed", "1"));
  // Seconds one candidate's test run may take, in both modes (a bug that hangs costs the same).
  const timeoutSeconds = Number(flag(args, "timeout", "120"));
  // What "the whole suite" is (comma-separated paths; default tests/, testing/ or test/), and
  // which source files may be mutated (a regular expression; default: all non-test sources).
  const suite = flag(args, "suite");
  const filesRe = flag(args, "files");
  const spec = ImageSpecSchema.parse(withCoverage(mutateSpec({ repo, commit, spec: specFile, name })));
  const built = await buildInstanceImage(spec);
  const settings = { seed, sampleOthers: 5, maxFailToPass: 50, reruns: 1, timeoutSeconds, ...(suite ? { suitePaths: suite.split(",") } : {}) };
  const fileFilter = filesRe ? (p: string) => new RegExp(filesRe).test(p) && !NON_SOURCE_PATH.test(p) : undefined;
  console.log(`image ${built.tag}`);

  // The two modes run at the same time, each in its own container of 1 CPU (CPU is counted per
  // container); the full mode waits for the candidate list the selected mode's reference gives.
  let resolveCandidates!: (c: Candidate[]) => void;
  let rejectCandidates!: (e: unknown) => void;
  const candidatesReady = new Promise<Candidate[]>((res, rej) => {
    resolveCandidates = res;
    rejectCandidates = rej;
  });
  const selected = new Map<string, Verdict>();
  let selCpu = 0;
  let selRefCpu = 0;
  let selTests = 0;
  const selectedMode = async () => {
    const sel = await MutateRunner.start(built.tag, { ...spec, commit: built.commit }, settings);
    try {
      const c0 = await sel.cpuSeconds();
      const ref = await sel.runReference();
      const c1 = await sel.cpuSeconds();
      selRefCpu = ref.cpuSeconds ?? c1 - c0;
      console.log(`reference (coverage): ${ref.passed.size}/${ref.statuses.size} pass, ${selRefCpu.toFixed(1)} s CPU${ref.cached ? " (cached run)" : ""}`);
      const files = await sel.sourceFiles(fileFilter);
      const cands = orderCandidates(await candidatesForFiles(files, { minComplexity: 2 }), seed).slice(0, n);
      resolveCandidates(cands);
      for (const c of cands) {
        const v = await sel.validate(c);
        selTests += v.selected.length;
        selected.set(c.id, { kept: v.kept, f2p: v.failToPass });
        console.log(`  selected ${c.operators[0]} ${c.changes[0]!.path}:${c.changes[0]!.line}: ${v.kept ? `kept, ${v.failToPass.length} failing` : v.reason} (${v.selected.length} tests, ${v.seconds.toFixed(1)} s)`);
      }
      selCpu = (await sel.cpuSeconds()) - c1;
    } catch (err) {
      rejectCandidates(err);
      throw err;
    } finally {
      await sel.destroy();
    }
  };

  // Full mode: the same candidates, the whole suite each time.
  const fullVerdicts = new Map<string, Verdict>();
  let fullCpu = 0;
  let fullRefCpu = 0;
  const fullMode = async () => {
    const full = await MutateRunner.start(built.tag, { ...spec, commit: built.commit }, settings);
    try {
      const c0 = await full.cpuSeconds();
      await full.detectSuite();
      const plain = await full.runTests(full.suite, { timeoutSeconds: 7200, extraArgs: "--durations=0 --durations-min=0" });
      const passed = new Set([...plain.statuses].filter(([, s]) => passing(s)).map(([t]) => t));
      full.reference = { ...plain, passed, coverage: new Map(), measuredFiles: [], durations: parseDurations(plain.log) };
      // The same adaptive timeout rule as the selection (5 × reference seconds + 15 s, capped).
      const fullTimeout = full.timeoutFor(passed);
      console.log(`full-suite run timeout: ${fullTimeout} s`);
      fullRefCpu = (await full.cpuSeconds()) - c0;
      console.log(`full-suite reference: ${passed.size}/${plain.statuses.size} pass, ${fullRefCpu.toFixed(1)} s CPU`);
      const cands = await candidatesReady;
      const c1 = await full.cpuSeconds();
      for (const c of cands) {
        const tc = performance.now();
        let verdict: Verdict = { kept: false, f2p: [] };
        try {
          await full.apply(c);
          const run = await full.runTests(full.suite, { timeoutSeconds: fullTimeout });
          const f2p = full.classify(run, passed).f2p;
          if (run.timedOut) verdict = { kept: false, f2p: [] };
          else if (f2p.length >= 1 && f2p.length <= settings.maxFailToPass) {
            const again = await full.runTests(full.suite, { timeoutSeconds: fullTimeout });
            verdict = { kept: !again.timedOut && sameSet(full.classify(again, passed).f2p, f2p), f2p };
          } else verdict = { kept: false, f2p };
        } finally {
          await full.reset();
        }
        fullVerdicts.set(c.id, verdict);
        console.log(`  full ${c.operators[0]} ${c.changes[0]!.path}:${c.changes[0]!.line}: ${verdict.kept ? `kept, ${verdict.f2p.length} failing` : "rejected"} (${((performance.now() - tc) / 1000).toFixed(1)} s)`);
      }
      fullCpu = (await full.cpuSeconds()) - c1;
    } finally {
      await full.destroy();
    }
  };
  candidatesReady.catch(() => undefined); // awaited below; a failure is reported from its mode
  // Both modes run to their end (each destroys its container) before a failure is reported.
  const settled = await Promise.allSettled([selectedMode(), fullMode()]);
  for (const r of settled) if (r.status === "rejected") throw r.reason;
  const candidates = await candidatesReady;

  const keptSel = [...selected.values()].filter((v) => v.kept).length;
  const keptFull = [...fullVerdicts.values()].filter((v) => v.kept).length;
  let agree = 0;
  const differ: string[] = [];
  for (const c of candidates) {
    const a = selected.get(c.id)!;
    const b = fullVerdicts.get(c.id)!;
    const same = a.kept === b.kept && (!a.kept || sameSet(a.f2p, b.f2p));
    if (same) agree++;
    else differ.push(`${c.id} ${c.operators[0]}: selected ${a.kept ? a.f2p.length : "rejected"} vs full ${b.kept ? b.f2p.length : "rejected"}`);
  }
  // Charged: one-off cost + candidates; per candidate: candidates only.
  const perMinSel = keptSel / ((selRefCpu + selCpu) / 60);
  const perMinFull = keptFull / ((fullRefCpu + fullCpu) / 60);
  const perCandSel = selCpu / candidates.length;
  const perCandFull = fullCpu / candidates.length;
  const breakEven = perCandFull > perCandSel ? Math.max(0, Math.ceil((selRefCpu - fullRefCpu) / (perCandFull - perCandSel))) : -1;
  console.log(
    `candidates ${candidates.length}; kept selected ${keptSel}, full ${keptFull}; CPU s: selected ${selRefCpu.toFixed(1)} reference + ${selCpu.toFixed(1)}, ` +
      `full ${fullRefCpu.toFixed(1)} reference + ${fullCpu.toFixed(1)}; per candidate ${perCandSel.toFixed(2)} vs ${perCandFull.toFixed(2)} s`,
  );
  console.log(`mean tests per candidate run (selected): ${(selTests / candidates.length).toFixed(1)}`);
  if (differ.length) console.log(`verdicts that differ:\n  ${differ.join("\n  ")}`);
  return {
    candidates: candidates.length,
    kept_selected: keptSel,
    kept_full: keptFull,
    reference_cpu_s_selected: Number(selRefCpu.toFixed(1)),
    reference_cpu_s_full: Number(fullRefCpu.toFixed(1)),
    cpu_s_selected: Number(selCpu.toFixed(1)),
    cpu_s_full: Number(fullCpu.toFixed(1)),
    cpu_s_per_candidate_selected: Number(perCandSel.toFixed(2)),
    cpu_s_per_candidate_full: Number(perCandFull.toFixed(2)),
    tasks_per_cpu_minute_selected: Number(perMinSel.toFixed(2)),
    tasks_per_cpu_minute_full: Number(perMinFull.toFixed(2)),
    speedup_ratio: Number((perMinSel / perMinFull).toFixed(2)),
    per_candidate_speedup_ratio: Number(((perCandFull / Math.max(1, keptFull)) / (perCandSel / Math.max(1, keptSel))).toFixed(2)),
    break_even_candidates: breakEven,
    agreement_ratio: Number((agree / candidates.length).toFixed(3)),
  };
}
