/**
 * `--latest-runnable`: walk back from HEAD (first parents, bounded tries) to the newest commit whose
 * requires-python and runtime dependencies this machine can satisfy and whose suite is accepted by
 * `inferImage`. A commit that fails the static check (no suite's Python satisfies requires-python,
 * or every suite that fits lacks a runtime dependency) fails the same way at every older commit with
 * the same dependency files, so the walk steps over all of them to the parent of the newest commit
 * that changed one. A commit rejected for version skew on every suite tried jumps by dependency
 * files: when a runtime requirement's specifier is beyond every suite's package, to the newest
 * earlier dependency state some suite satisfies (read statically, {@link satisfiableTarget});
 * when tests fail at import against a packaged dependency of another era, to the newest commit
 * dated before the release of the newest suite whose packages predate the commit's dependency
 * files (infer/debian-suites.ts SUITE_RELEASED), else to the previous dependency set.
 * A suite that ran out of time ends the walk (an older commit is no shorter); any other rejection
 * is followed by the parent. When the walk ends with nothing accepted and some commit was skipped
 * only for runtime dependencies with no package, the newest such commit is built once more without
 * them (one try beyond `maxTries`): a dependency only some modules import costs only their tests.
 */
import fs from "node:fs";
import type { BaseSuite } from "../images/base";
import { normalizeName } from "./pep508";
import { GitTree, readRepository } from "./read";
import { git, gitFailure, inferImage, type InferOptions, type InferOutcome } from "./run";
import { rankSuites, SUITE_ORDER, SUITE_RELEASED, suiteFits } from "./debian-suites";
import { causeOf } from "./verdict";

/** Files whose change can change what a commit needs (dependency and interpreter declarations). */
export const DEPENDENCY_FILES = ["pyproject.toml", "setup.cfg", "setup.py", "requirements*.txt", "requirements/*.txt", "tox.ini", "noxfile.py", "Pipfile"];

/** One commit the walk looked at. */
export interface RunnableTry {
  commit: string;
  /** "accepted", "skipped" (static check, no build) or "rejected" (built, suite not accepted). */
  verdict: "accepted" | "skipped" | "rejected";
  reason: string;
  /** The decisive lines of the rejection (infer/verdict.ts), when it was built. */
  decisive?: string[];
}

/** The walk's answer: the commit chosen (undefined when none within the bounds) and every try. */
export interface LatestRunnable {
  commit?: string;
  tries: RunnableTry[];
  outcome?: InferOutcome;
}

/**
 * Why this machine cannot run a commit, without building: no suite's Python satisfies its
 * requires-python, or (without a pip index, `pip`) every suite whose Python fits lacks a runtime
 * dependency (marker true for the suite's Python, not tooling). Test requirements never make a
 * problem. Undefined when it may run.
 * @throws Error naming an incomplete clone when a git object is missing.
 */
export async function staticProblem(gitDir: string, commit: string, opts: { stateDir?: string; suites?: BaseSuite[]; name?: string; pip?: boolean } = {}): Promise<string | undefined> {
  let facts;
  try {
    facts = readRepository(new GitTree(gitDir, commit));
  } catch (err) {
    throw new Error(gitFailure(err));
  }
  const suites = opts.suites ?? SUITE_ORDER;
  const self = facts.projectName ? normalizeName(facts.projectName) : (opts.name ?? "").split("/")[1]?.toLowerCase();
  const { fits } = await suiteFits(facts, suites, { ...(opts.stateDir ? { stateDir: opts.stateDir } : {}), ...(self ? { self } : {}), pip: Boolean(opts.pip) });
  const ranked = rankSuites(fits);
  if (!ranked.order.length) return `requires-python ${facts.requiresPython} excludes ${fits.map((f) => `${f.suite}'s Python ${f.python}`).join(" and ")}`;
  // With a pip index, whether the index has a dependency is learned by building.
  if (opts.pip) return undefined;
  const best = ranked.order[0]!;
  if (best.missingRuntime.length) {
    return `runtime dependenc${best.missingRuntime.length > 1 ? "ies" : "y"} with no Debian package in ${ranked.order.map((f) => f.suite).join(" or ")}: ${ranked.order.map((f) => `${f.suite}: ${f.missingRuntime.join(", ")}`).join("; ")}`;
  }
  return undefined;
}

/**
 * Where the walk goes after a version-skew rejection at `commit`: the newest first-parent
 * ancestor dated before the release of the newest suite whose packages are older than the
 * commit's dependency files (the era those packages match), else the parent of the newest commit
 * that changed a dependency file. Undefined when there is no such commit.
 */
export function skewTarget(gitDir: string, commit: string, suites: BaseSuite[] = SUITE_ORDER): { commit: string; why: string } | undefined {
  const changed = git(gitDir, ["log", "-1", "--first-parent", "--format=%H %cI", commit, "--", ...DEPENDENCY_FILES]);
  const [depCommit, depDate] = changed ? changed.split(" ") : [undefined, undefined];
  const eras = suites.map((s) => ({ suite: s, date: SUITE_RELEASED[s] })).sort((a, b) => (a.date < b.date ? 1 : -1));
  if (depDate) {
    for (const era of eras) {
      if (era.date >= depDate.slice(0, 10)) continue;
      const target = git(gitDir, ["log", "-1", "--first-parent", "--format=%H %cI", `--before=${era.date}T00:00:00Z`, commit]);
      if (target) {
        const [sha, date] = target.split(" ");
        return { commit: sha!, why: `its dependency files (${depDate.slice(0, 10)}) are newer than ${era.suite}'s packages (released ${era.date}): back to ${sha!.slice(0, 12)} (${date!.slice(0, 10)})` };
      }
    }
  }
  if (depCommit) {
    try {
      const p = git(gitDir, ["rev-parse", `${depCommit}^1`]);
      return { commit: p, why: `back past the dependency files of ${depCommit.slice(0, 12)}` };
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * The newest older commit whose dependency files some suite satisfies in full (every runtime
 * requirement packaged, within its specifier; Python within requires-python), found statically:
 * for each earlier dependency state (the commits that changed a dependency file, newest first, at
 * most `maxStates`), the newest commit that has it is read and its suites fitted. For a commit
 * rejected because a runtime requirement's lower bound is above every suite's package.
 * @returns the commit and why, or undefined when none of those states fits.
 */
export async function satisfiableTarget(gitDir: string, commit: string, opts: { suites?: BaseSuite[]; stateDir?: string; name?: string; maxStates?: number } = {}): Promise<{ commit: string; why: string } | undefined> {
  const changes = git(gitDir, ["log", "--first-parent", `--max-count=${(opts.maxStates ?? 60) + 1}`, "--format=%H %cI", commit, "--", ...DEPENDENCY_FILES]).split("\n").filter(Boolean).map((l) => l.split(" ") as [string, string]);
  for (let i = 1; i < changes.length; i++) {
    // The state introduced by changes[i] lasts until changes[i - 1]: its newest commit is that one's parent.
    let target: string;
    try {
      target = git(gitDir, ["rev-parse", `${changes[i - 1]![0]}^1`]);
    } catch {
      return undefined;
    }
    const facts = readRepository(new GitTree(gitDir, target));
    const self = facts.projectName ? normalizeName(facts.projectName) : (opts.name ?? "").split("/")[1]?.toLowerCase();
    const { fits } = await suiteFits(facts, opts.suites ?? SUITE_ORDER, { ...(opts.stateDir ? { stateDir: opts.stateDir } : {}), ...(self ? { self } : {}) });
    const ok = rankSuites(fits).order.find((f) => !f.missingRuntime.length && !f.outdatedRuntime.length);
    if (ok) return { commit: target, why: `back to ${target.slice(0, 12)} (dependency files of ${changes[i]![1].slice(0, 10)}), the newest whose runtime requirements ${ok.suite} satisfies` };
  }
  return undefined;
}

/** The missing distributions of the first suite a static problem names ("… in trixie or bookworm: trixie: a, b; bookworm: c"). */
export function missingOfFirstSuite(problem: string): string[] {
  const m = /with no Debian package in [^:]+: [\w-]+: ([^;]+)/.exec(problem);
  return m ? m[1]!.split(",").map((x) => x.trim()).filter(Boolean) : [];
}

/**
 * Where the walk goes for runtime dependencies no suite packages: the parent of the oldest commit
 * (first parents, at or before `commit`) that introduced one of `names` into the dependency files
 * (git's pickaxe: the newest change of the name's number of occurrences, `-` `_` `.` alike, case
 * ignored). `commit` undefined when a name was there from the first commit (no older commit lacks
 * it: the walk ends). Undefined when no name is found in the history.
 */
export function beforeIntroduced(gitDir: string, commit: string, names: string[]): { commit: string | undefined; why: string } | undefined {
  const intros: { name: string; sha: string; date: string }[] = [];
  for (const name of names) {
    const re = normalizeName(name).split("-").map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("[-_.]");
    let out = "";
    try {
      out = git(gitDir, ["log", "-1", "--first-parent", "--format=%H %cs", "--pickaxe-regex", "--regexp-ignore-case", `-S${re}`, commit, "--", ...DEPENDENCY_FILES]);
    } catch {
      continue;
    }
    const [sha, date] = out.split(" ");
    if (sha) intros.push({ name, sha, date: date ?? "" });
  }
  if (!intros.length) return undefined;
  const isAncestor = (a: string, b: string) => {
    try {
      git(gitDir, ["merge-base", "--is-ancestor", a, b]);
      return true;
    } catch {
      return false;
    }
  };
  const oldest = intros.reduce((a, b) => (isAncestor(a.sha, b.sha) ? a : b));
  let p: string | undefined;
  try {
    p = git(gitDir, ["rev-parse", `${oldest.sha}^1`]);
  } catch {
    p = undefined;
  }
  return { commit: p, why: `back to before ${oldest.sha.slice(0, 12)} (${oldest.date}), which named ${oldest.name} in the dependency files` };
}

/**
 * Walk back from `from` (default HEAD) for at most `maxTries` commits looked at. `infer` replaces
 * {@link inferImage} (tests).
 * @returns the commit chosen, each try with its reason, and the accepted outcome.
 * @throws Error when the repository cannot be read (an incomplete clone named as such).
 */
export async function latestRunnable(o: InferOptions & { from?: string; maxTries?: number; infer?: (o: InferOptions) => Promise<InferOutcome> }): Promise<LatestRunnable> {
  const say = o.onProgress ?? (() => undefined);
  const gitDir = o.repo;
  const tries: RunnableTry[] = [];
  let commit: string | undefined;
  try {
    commit = git(gitDir, ["rev-parse", `${o.from ?? o.commit ?? "HEAD"}^{commit}`]);
  } catch (err) {
    throw new Error(gitFailure(err));
  }
  const max = o.maxTries ?? 8;
  const parent = (c: string): string | undefined => {
    try {
      return git(gitDir, ["rev-parse", `${c}^1`]);
    } catch {
      return undefined;
    }
  };
  const { infer, maxTries: _m, from: _f, ...io } = o;
  let last: InferOutcome | undefined;
  /** The newest commit skipped only because a runtime dependency has no package: built without it when the walk finds nothing. */
  let partial: { commit: string; problem: string } | undefined;
  while (commit && tries.length < max) {
    const problem = await staticProblem(gitDir, commit, { ...(o.stateDir ? { stateDir: o.stateDir } : {}), ...(o.suites ? { suites: o.suites } : {}), ...(o.name ? { name: o.name } : {}), pip: Boolean(o.pipIndex ?? process.env.FORAGER_PIP_INDEX) });
    if (problem) {
      // Same dependency files back to the newest commit that changed one: same verdict; step over them.
      const changed = git(gitDir, ["log", "-1", "--first-parent", "--format=%H", commit, "--", ...DEPENDENCY_FILES]);
      if (!partial && /^runtime dependenc/.test(problem)) partial = { commit, problem };
      // Runtime dependencies with no package: straight to before the dependency files first named
      // them (the oldest of their introductions), not one dependency change at a time.
      const stepped = changed ? parent(changed) : undefined;
      const before: { commit: string | undefined; why: string } | undefined = /^runtime dependenc/.test(problem) ? beforeIntroduced(gitDir, commit, missingOfFirstSuite(problem)) : undefined;
      const jump = before && before.commit !== stepped;
      tries.push({ commit, verdict: "skipped", reason: problem + (jump ? ` (${before.why})` : changed && changed !== commit ? ` (same dependency files back to ${changed.slice(0, 12)})` : "") });
      say(`${commit.slice(0, 12)} skipped: ${problem}${jump ? `; ${before.why}` : ""}`);
      commit = before ? before.commit : stepped;
      continue;
    }
    say(`${commit.slice(0, 12)}: building and running its tests`);
    const out = await (infer ?? inferImage)({ ...io, commit });
    last = out;
    if (out.result.accepted) {
      tries.push({ commit, verdict: "accepted", reason: out.result.reason });
      return { commit, tries, outcome: out };
    }
    const decisive = out.result.decisive ?? [];
    if (out.result.skew) {
      // A requirement's bound no suite meets: the newest dependency state some suite meets, found
      // statically; skew seen only at import: the era of the suites' packages.
      const bound = /^runtime requirement outside/.test(out.result.skew)
        ? await satisfiableTarget(gitDir, commit, { ...(o.suites ? { suites: o.suites } : {}), ...(o.stateDir ? { stateDir: o.stateDir } : {}), ...(o.name ? { name: o.name } : {}) })
        : undefined;
      const t = bound ?? skewTarget(gitDir, commit, o.suites ?? SUITE_ORDER);
      tries.push({ commit, verdict: "rejected", reason: `${out.result.reason}${t ? `; version skew: ${t.why}` : ""}`, ...(decisive.length ? { decisive } : {}) });
      say(`${commit.slice(0, 12)} rejected: ${out.result.reason}${t ? `; ${t.why}` : ""}`);
      commit = t?.commit;
      continue;
    }
    tries.push({ commit, verdict: "rejected", reason: out.result.reason, ...(decisive.length ? { decisive } : {}) });
    say(`${commit.slice(0, 12)} rejected: ${out.result.reason}`);
    // A suite too long for the limit is as long one commit earlier: the walk stops there.
    if (/timed out/.test(out.result.reason)) break;
    // Tests that fetch from the network fetch one commit earlier too.
    if (/^tests need the network/.test(out.result.reason)) break;
    commit = parent(commit);
  }
  if (partial) {
    // No commit of the walk has every runtime dependency packaged: the newest one is built without
    // the missing ones. Test files that fail importing them are deselected by the repair loop; a
    // suite that needs them everywhere ends "most of the suite deselected" or failing, and the
    // reason names the missing dependencies either way.
    say(`${partial.commit.slice(0, 12)}: no commit in ${max} tries has every runtime dependency packaged; building it without them`);
    const out = await (infer ?? inferImage)({ ...io, commit: partial.commit });
    const missing = partial.problem.replace(/ \(same dependency files.*$/, "");
    if (!out.result.accepted) {
      // The missing dependencies are the cause unless nothing depended on them (no suite at all, a
      // clone that lacks objects, a time limit).
      const own = causeOf(false, out.result.reason, out.result.decisive ?? []);
      out.result.reason = `${missing}; built without them: ${out.result.reason}`;
      out.result.cause = ["no tests found", "incomplete clone", "timeout"].includes(own) ? own : causeOf(false, out.result.reason, out.result.decisive ?? []);
      const provFile = out.files.find((f) => f.endsWith(".provenance.json"));
      if (provFile && out.inferred) {
        out.inferred.provenance.result = out.result;
        fs.writeFileSync(provFile, JSON.stringify(out.inferred.provenance, null, 2) + "\n");
      }
    }
    const decisive = out.result.decisive ?? [];
    tries.push({ commit: partial.commit, verdict: out.result.accepted ? "accepted" : "rejected", reason: `built without the missing runtime dependencies: ${out.result.reason}`, ...(decisive.length ? { decisive } : {}) });
    if (out.result.accepted) return { commit: partial.commit, tries, outcome: out };
    last = out;
  }
  return { tries, ...(last ? { outcome: last } : {}) };
}
