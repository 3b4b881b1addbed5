/**
 * `forager images infer`: one repository (`--repo`) or a batch (`--repos DIR|FILE`), with
 * progress on stderr, the verdicts grouped by cause at the end (infer/verdict.ts) and
 * `--summary FILE` as JSON lines (one object per repository: repo, commit, accepted, cause,
 * reason, decisive lines, suite, python, tests collected / passed / failed / skipped,
 * deselected files, pass_rate, flaky, build and total seconds, image_mb, the walk's tries).
 */
import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { defaultStateDir } from "../images/state";
import { latestRunnable, type RunnableTry } from "../infer/latest";
import { inferImage, nameFromRepo, type InferOutcome } from "../infer/run";
import type { SetupAgent } from "../infer/setup";
import { causeOf, incompleteClone, verdictTable, type Cause } from "../infer/verdict";

/** Repositories of a batch: a file of paths/URLs (one a line, `#` comments), or a directory of clones (`DIR/x`, `DIR/x/repo`). */
export function batchRepos(arg: string): string[] {
  if (fs.statSync(arg).isFile()) {
    return fs
      .readFileSync(arg, "utf8")
      .split("\n")
      .map((l) => l.replace(/#.*$/, "").trim())
      .filter(Boolean);
  }
  return fs
    .readdirSync(arg)
    .sort()
    .map((d) => path.join(arg, d))
    .map((d) => (fs.existsSync(path.join(d, "repo")) ? path.join(d, "repo") : d))
    .filter((d) => fs.existsSync(path.join(d, "HEAD")) || fs.existsSync(path.join(d, ".git")));
}

/** The summary object of one outcome (the `--summary` JSON line). */
export function summaryLine(o: InferOutcome, seconds: number, tries?: RunnableTry[]) {
  const r = o.result;
  const lastTry = tries && !r.accepted ? tries[tries.length - 1] : undefined;
  const reason = tries && !r.accepted ? `no runnable commit in ${tries.length} tr${tries.length === 1 ? "y" : "ies"}; last: ${lastTry?.reason ?? r.reason}` : r.reason;
  return {
    ...(tries ? { latest_runnable: { commit: o.result.accepted ? o.commit : null, tries: tries.map((t) => ({ commit: t.commit, verdict: t.verdict, reason: t.reason, ...(t.decisive ? { decisive: t.decisive } : {}) })) } } : {}),
    repo: o.repo,
    commit: o.commit,
    accepted: r.accepted,
    // The outcome's own cause when it has one (the walk's last build: latest.ts may have refined it).
    cause: (!r.accepted && lastTry?.commit === o.commit && (r.cause as Cause | undefined)) || causeOf(r.accepted, lastTry?.reason ?? r.reason, lastTry?.decisive ?? r.decisive ?? []),
    reason,
    decisive: r.decisive ?? [],
    suite: o.inferred?.provenance.suite,
    python: r.python,
    backend: o.inferred?.provenance.backend,
    layout: o.inferred?.provenance.layout,
    tests_collected: r.testsCollected,
    passed: r.passed,
    failed: r.failed,
    skipped: r.skipped,
    pass_rate: Math.round(r.passRate * 1000) / 1000,
    flaky: r.flaky.length,
    build_seconds: Math.round(r.buildSeconds * 10) / 10,
    total_seconds: Math.round(seconds * 10) / 10,
    image_mb: r.imageMb,
    attempts: r.attempts,
    source_install: r.sourceInstall,
    changes: o.inferred?.provenance.changes.map((c) => c.change) ?? [],
    deselected: o.inferred?.provenance.deselected.map((d) => d.path) ?? [],
    spec: o.files[0],
  };
}

/** The summary line of a repository with no outcome (an error, or no runnable commit). */
function failedLine(repo: string, reason: string, seconds: number, decisive: string[] = []): ReturnType<typeof summaryLine> {
  return { repo, commit: "", accepted: false, cause: causeOf(false, reason, decisive), reason, decisive, suite: undefined, python: "", backend: undefined, layout: undefined, tests_collected: 0, passed: 0, failed: 0, skipped: 0, pass_rate: 0, flaky: 0, build_seconds: 0, total_seconds: seconds, image_mb: 0, attempts: 0, source_install: false, changes: [], deselected: [], spec: "" };
}

/** Makes the set-up agent of `--model-url` (given by the CLI layer, which may reach the agent). */
export type SetupAgentFactory = (o: { modelUrl: string[]; model?: string; apiKey?: string; trajectoryDir: string; onProgress: (m: string) => void }) => SetupAgent;

/** Register `images infer` under the `images` command; without `makeSetupAgent`, `--model-url` is refused. */
export function registerInferCommand(images: Command, makeSetupAgent?: SetupAgentFactory): void {
  images
    .command("infer")
    .description("infer an image spec from what a Python repository says about itself, build it, run its tests, repair, accept or reject")
    .option("--repo <path|url>", "one repository: a local clone (bare or not) or a git URL")
    .option("--repos <dir|file>", "batch: a directory of clones or a file of paths/URLs")
    .option("--commit <sha>", "commit (default HEAD; only with --repo)")
    .option("--latest-runnable", "walk back from HEAD (or --commit) to the newest commit this machine can satisfy and whose suite is accepted")
    .option("--max-tries <n>", "commits --latest-runnable looks at", Number, 8)
    .option("--name <owner/name>", "repository name (default from the path)")
    .option("--out <file>", "spec output (default .forager/infer/<owner+name>-<commit12>.json; only with --repo)")
    .option("--summary <file>", "JSON lines, one object per repository")
    .option("--min-pass <x>", "fraction of collected tests that must pass", Number, 0.8)
    .option("--max-attempts <n>", "builds + reference runs before giving up", Number, 6)
    .option("--test-timeout <s>", "seconds one reference run may take", Number, 900)
    .option("--state-dir <dir>", "image state dir")
    .option("--pip-index <url>", "dependencies from this pip index (PEP 503 simple URL) instead of Debian packages (default FORAGER_PIP_INDEX)")
    .option("--pip-cutoff <commit|date>", "with a pip index: only files uploaded before the commit's date (commit) or an ISO 8601 date (default FORAGER_PIP_CUTOFF)")
    .option("--model-url <url>", "when the heuristics give up: a set-up agent on this OpenAI-compatible endpoint (repeatable)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--model <name>", "model name for --model-url")
    .option("--api-key <key>", "API key for --model-url")
    .action(async (o: { repo?: string; repos?: string; commit?: string; latestRunnable?: boolean; maxTries: number; name?: string; out?: string; summary?: string; minPass: number; maxAttempts: number; testTimeout: number; stateDir?: string; pipIndex?: string; pipCutoff?: string; modelUrl: string[]; model?: string; apiKey?: string }) => {
      if (!o.repo === !o.repos) throw new Error("give --repo or --repos");
      if (o.modelUrl.length && !makeSetupAgent) throw new Error("--model-url: no set-up agent in this build");
      const setupAgent = o.modelUrl.length
        ? makeSetupAgent!({
            modelUrl: o.modelUrl,
            ...(o.model ? { model: o.model } : {}),
            ...(o.apiKey ? { apiKey: o.apiKey } : {}),
            trajectoryDir: path.join(o.stateDir ?? defaultStateDir(), "infer", "setup-agent"),
            onProgress: (m) => process.stderr.write(`  ${m}\n`),
          })
        : undefined;
      const list = o.repo ? [o.repo] : batchRepos(o.repos!);
      const summary = o.summary ? fs.openSync(o.summary, "w") : undefined;
      const rows: ReturnType<typeof summaryLine>[] = [];
      for (const [i, repo] of list.entries()) {
        const t0 = performance.now();
        process.stderr.write(`[${i + 1}/${list.length}] ${repo}\n`);
        let line: ReturnType<typeof summaryLine>;
        try {
          const opts = {
            repo,
            minPass: o.minPass,
            maxAttempts: o.maxAttempts,
            testTimeoutSeconds: o.testTimeout,
            ...(o.repo && o.commit ? { commit: o.commit } : {}),
            ...(o.repo && o.name ? { name: o.name } : {}),
            ...(o.repo && o.out ? { out: o.out } : {}),
            ...(o.stateDir ? { stateDir: o.stateDir } : {}),
            ...(setupAgent ? { setupAgent } : {}),
            ...(o.pipIndex ? { pipIndex: o.pipIndex } : {}),
            ...(o.pipCutoff ? { pipCutoff: o.pipCutoff } : {}),
            onProgress: (m: string) => process.stderr.write(`  ${m}\n`),
          };
          if (o.latestRunnable) {
            const w = await latestRunnable({ ...opts, maxTries: o.maxTries });
            for (const t of w.tries) console.log(`${t.commit.slice(0, 12)}\t${t.verdict}\t${t.reason}`);
            console.log(w.commit ? `latest runnable: ${w.commit}` : `no runnable commit in ${w.tries.length} tries`);
            const last = w.outcome;
            if (last) line = summaryLine(last, (performance.now() - t0) / 1000, w.tries);
            else {
              const t = w.tries[w.tries.length - 1];
              line = { ...failedLine(o.repo && o.name ? o.name : nameFromRepo(repo), `no runnable commit in ${w.tries.length} tries${t ? `; last: ${t.reason}` : ""}`, (performance.now() - t0) / 1000, t?.decisive), latest_runnable: { commit: null, tries: w.tries } };
            }
          } else {
            const out = await inferImage(opts);
            line = summaryLine(out, (performance.now() - t0) / 1000);
          }
        } catch (err) {
          const msg = (err as Error).message;
          line = failedLine(o.repo && o.name ? o.name : nameFromRepo(repo), incompleteClone(msg) ?? `error: ${msg.split("\n")[0]}`, (performance.now() - t0) / 1000);
        }
        rows.push(line);
        if (summary) fs.writeSync(summary, JSON.stringify(line) + "\n");
        process.stderr.write(`  → ${line.accepted ? "ACCEPTED" : "rejected"}: ${line.reason}\n`);
      }
      if (summary) fs.closeSync(summary);
      // The verdicts, grouped by cause: readable at a glance.
      console.log("");
      for (const l of verdictTable(rows)) console.log(l);
      const acc = rows.filter((r) => r.accepted).length;
      process.exitCode = acc === rows.length ? 0 : 1;
    });
}
