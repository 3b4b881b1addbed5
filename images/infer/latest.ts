/**
 * `--latest-runnable`: walk back from HEAD (first parents, bounded tries) to the newest commit whose
 * requires-python and runtime dependencies this machine can satisfy and whose suite is accepted by
 * `inferImage`. A commit that fails the static check (no suite's Python satisfies requires-python,
 * or a runtime dependency has no Debian package) fails the same way at every older commit with the
 * same dependency files, so the walk steps over all of them to the parent of the newest commit that
 * changed one. A commit whose image is built but whose suite is rejected is followed by its parent.
 */
import type { BaseSuite } from "../base";
import { notNeeded } from "./debian";
import { markerActive } from "./pep508";
import { GitTree, readRepository } from "./read";
import { git, inferImage, type InferOptions, type InferOutcome } from "./run";
import { SUITE_PYTHON } from "./spec";
import { chooseSuite, mapperForSuite, SUITE_ORDER } from "./suites";

/** Files whose change can change what a commit needs (dependency and interpreter declarations). */
export const DEPENDENCY_FILES = ["pyproject.toml", "setup.cfg", "setup.py", "requirements*.txt", "requirements/*.txt", "tox.ini", "noxfile.py", "Pipfile"];

/** One commit the walk looked at. */
export interface RunnableTry {
  commit: string;
  /** "accepted", "skipped" (static check, no build) or "rejected" (built, suite not accepted). */
  verdict: "accepted" | "skipped" | "rejected";
  reason: string;
}

/** The walk's answer: the commit chosen (undefined when none within the bounds) and every try. */
export interface LatestRunnable {
  commit?: string;
  tries: RunnableTry[];
  outcome?: InferOutcome;
}

/**
 * Why this machine cannot run a commit, without building: no suite's Python satisfies its
 * requires-python, or (without a pip index, `pip`) a runtime dependency (marker true for the suite's
 * Python, not tooling) has no Debian package in the suite. Undefined when it may run.
 */
export async function staticProblem(gitDir: string, commit: string, opts: { stateDir?: string; suites?: BaseSuite[]; name?: string; pip?: boolean } = {}): Promise<string | undefined> {
  const facts = readRepository(new GitTree(gitDir, commit));
  const choice = chooseSuite(facts.requiresPython, SUITE_PYTHON, opts.suites ?? SUITE_ORDER);
  if ("reason" in choice) return choice.reason;
  // With a pip index, whether the index has a dependency is learned by building.
  if (opts.pip) return undefined;
  const mapper = await mapperForSuite(choice.suite, opts.stateDir);
  const self = (opts.name ?? "").split("/")[1]?.toLowerCase();
  const missing: string[] = [];
  for (const r of facts.dependencies) {
    if (r.normalized === self || notNeeded(r.name)) continue;
    if (markerActive(r.marker, choice.python) && !mapper.map(r.name)) missing.push(r.name);
  }
  if (missing.length) return `runtime dependenc${missing.length > 1 ? "ies" : "y"} with no Debian package in ${choice.suite}: ${missing.join(", ")}`;
  return undefined;
}

/**
 * Walk back from `from` (default HEAD) for at most `maxTries` commits looked at. `infer` replaces
 * {@link inferImage} (tests).
 * @returns the commit chosen, each try with its reason, and the accepted outcome.
 * @throws Error when the repository cannot be read.
 */
export async function latestRunnable(o: InferOptions & { from?: string; maxTries?: number; infer?: (o: InferOptions) => Promise<InferOutcome> }): Promise<LatestRunnable> {
  const say = o.onProgress ?? (() => undefined);
  const gitDir = o.repo;
  const tries: RunnableTry[] = [];
  let commit: string | undefined = git(gitDir, ["rev-parse", `${o.from ?? o.commit ?? "HEAD"}^{commit}`]);
  const max = o.maxTries ?? 8;
  const parent = (c: string): string | undefined => {
    try {
      return git(gitDir, ["rev-parse", `${c}^1`]);
    } catch {
      return undefined;
    }
  };
  while (commit && tries.length < max) {
    const problem = await staticProblem(gitDir, commit, { ...(o.stateDir ? { stateDir: o.stateDir } : {}), ...(o.suites ? { suites: o.suites } : {}), ...(o.name ? { name: o.name } : {}), pip: Boolean(o.pipIndex ?? process.env.FORAGER_PIP_INDEX) });
    if (problem) {
      // Same dependency files back to the newest commit that changed one: same verdict; step over them.
      const changed = git(gitDir, ["log", "-1", "--first-parent", "--format=%H", commit, "--", ...DEPENDENCY_FILES]);
      tries.push({ commit, verdict: "skipped", reason: problem + (changed && changed !== commit ? ` (same dependency files back to ${changed.slice(0, 12)})` : "") });
      say(`${commit.slice(0, 12)} skipped: ${problem}`);
      commit = changed ? parent(changed) : undefined;
      continue;
    }
    say(`${commit.slice(0, 12)}: building and running its tests`);
    const { infer, maxTries: _m, from: _f, ...io } = o;
    const out = await (infer ?? inferImage)({ ...io, commit });
    if (out.result.accepted) {
      tries.push({ commit, verdict: "accepted", reason: out.result.reason });
      return { commit, tries, outcome: out };
    }
    tries.push({ commit, verdict: "rejected", reason: out.result.reason });
    say(`${commit.slice(0, 12)} rejected: ${out.result.reason}`);
    commit = parent(commit);
  }
  return { tries };
}
