/**
 * Mutate-fix validation cost: coverage-selected tests vs the full suite for every candidate, on
 * the same repository and the same candidate bugs (same seed, same order), side by side.
 *
 *   npm run bench -- mutate-validation [--repo PATH] [--commit SHA] [--spec FILE] [--name owner/name]
 *                                      [--candidates N] [--seed N]
 *
 * Default: pallets/flask at the SWE-bench Verified 2.3 commit from /work/.mirror, 20 candidates.
 * Both modes run in a container of the same instance image (one each, 1 CPU); CPU time is the
 * container's cgroup CPU usage (engine stats), reference runs included: the coverage reference
 * run for the selected mode, a plain full run for the full mode. Both modes
 * use the same keep rule (FAIL_TO_PASS ≥ 1, ≤ 50, one re-run reproducing it).
 * Figures: validated tasks per CPU-minute in each mode, the speed-up, and the agreement (share
 * of candidates with the same verdict and the same FAIL_TO_PASS set in both modes).
 */
import fs from "node:fs";
import { mutateSpec } from "../cli/tasks";
import { buildInstanceImage } from "../images/build";
import { ImageSpecSchema } from "../images/spec";
import { candidatesForFiles, orderCandidates, type Candidate } from "../tasks/mutate/candidates";
import { MutateRunner, sameSet, withCoverage } from "../tasks/mutate/validate";

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
  const specFile = flag(args, "spec", fs.existsSync("tasks/mutate/specs/flask.json") ? "tasks/mutate/specs/flask.json" : undefined);
  const name = flag(args, "name", repo.includes("flask") ? "pallets/flask" : undefined);
  const n = Number(flag(args, "candidates", "20"));
  const seed = Number(flag(args, "seed", "1"));
  const spec = ImageSpecSchema.parse(withCoverage(mutateSpec({ repo, commit, spec: specFile, name })));
  const built = await buildInstanceImage(spec);
  const settings = { seed, sampleOthers: 5, maxFailToPass: 50, reruns: 1, timeoutSeconds: 300 };
  console.log(`image ${built.tag}`);

  // Selected mode.
  const sel = await MutateRunner.start(built.tag, { ...spec, commit: built.commit }, settings);
  let candidates: Candidate[];
  const selected = new Map<string, Verdict>();
  let selCpu: number;
  let selTests = 0;
  try {
    const c0 = await sel.cpuSeconds();
    await sel.runReference();
    const files = await sel.sourceFiles();
    candidates = orderCandidates(await candidatesForFiles(files, { minComplexity: 2 }), seed).slice(0, n);
    for (const c of candidates) {
      const v = await sel.validate(c);
      selTests += v.selected.length;
      selected.set(c.id, { kept: v.kept, f2p: v.failToPass });
    }
    selCpu = (await sel.cpuSeconds()) - c0;
  } finally {
    await sel.destroy();
  }

  // Full mode: the same candidates, the whole suite each time.
  const full = await MutateRunner.start(built.tag, { ...spec, commit: built.commit }, settings);
  const fullVerdicts = new Map<string, Verdict>();
  let fullCpu: number;
  try {
    const c0 = await full.cpuSeconds();
    await full.detectSuite();
    const plain = await full.runTests(full.suite);
    const passed = new Set([...plain.statuses].filter(([, s]) => s === "PASSED" || s === "XFAIL").map(([t]) => t));
    full.reference = { ...plain, passed, coverage: new Map(), measuredFiles: [] };
    const plainCpu = (await full.cpuSeconds()) - c0;
    const c1 = await full.cpuSeconds();
    for (const c of candidates) {
      let verdict: Verdict = { kept: false, f2p: [] };
      try {
        await full.apply(c);
        const run = await full.runTests(full.suite);
        const f2p = full.classify(run, passed).f2p;
        if (!run.timedOut && f2p.length >= 1 && f2p.length <= settings.maxFailToPass) {
          const again = await full.runTests(full.suite);
          verdict = { kept: sameSet(full.classify(again, passed).f2p, f2p), f2p };
        } else verdict = { kept: false, f2p };
      } finally {
        await full.reset();
      }
      fullVerdicts.set(c.id, verdict);
    }
    fullCpu = (await full.cpuSeconds()) - c1 + plainCpu;
  } finally {
    await full.destroy();
  }

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
  const perMinSel = keptSel / (selCpu / 60);
  const perMinFull = keptFull / (fullCpu / 60);
  console.log(`candidates ${candidates.length}; kept selected ${keptSel}, full ${keptFull}; CPU s selected ${selCpu.toFixed(1)}, full ${fullCpu.toFixed(1)}`);
  console.log(`mean tests per candidate run (selected): ${(selTests / candidates.length).toFixed(1)}`);
  if (differ.length) console.log(`verdicts that differ:\n  ${differ.join("\n  ")}`);
  return {
    candidates: candidates.length,
    kept_selected: keptSel,
    kept_full: keptFull,
    cpu_s_selected: Number(selCpu.toFixed(1)),
    cpu_s_full: Number(fullCpu.toFixed(1)),
    tasks_per_cpu_minute_selected: Number(perMinSel.toFixed(2)),
    tasks_per_cpu_minute_full: Number(perMinFull.toFixed(2)),
    speedup_ratio: Number((perMinSel / perMinFull).toFixed(2)),
    agreement_ratio: Number((agree / candidates.length).toFixed(3)),
  };
}
