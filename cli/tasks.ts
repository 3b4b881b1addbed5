/**
 * `forager tasks commits`: issue-fix tasks mined from a repository's history (taskgen/commits).
 * `forager tasks mutate`: mutate-fix task generation for one repository at one commit
 * (taskgen/mutate). Writes Task records as JSONL (one per line, as they pass every check) and a
 * summary; progress on stderr: candidates tried, validated, rejected by reason.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { commitOrHead, int } from "./options";
import { UsageError } from "./exit-codes";
import { ImageSpecSchema, type ImageSpecInput, type RepoSource } from "../images/spec";
import { defaultStateDir } from "../images/state";
import { inferredSpecFile, nameFromRepo } from "../infer/run";
import { modelSetupAgent } from "../infer/setup-agent";
import { InferenceClient } from "../inference-client/client";
import { generateMutateTasks, type MutateProgress } from "../taskgen/mutate/generate";
import { OPERATOR_NAMES, parseOperatorList } from "../taskgen/mutate/operators";
import { gitDirOf } from "../taskgen/commits/git";
import { mineCommitTasks } from "../taskgen/commits/mine";

interface MutateCliOptions {
  repo: string;
  commit: string;
  spec?: string;
  name?: string;
  max: number;
  operators?: string;
  seed: number;
  out: string;
  image?: string;
  minComplexity: number;
  maxCandidates?: number;
  combine?: number;
  sampleOthers: number;
  maxFailToPass: number;
  reruns: number;
  agreementSample: number;
  timeout: number;
  cpus: number;
  modelUrl?: string;
  model?: string;
  goldCheck: boolean;
  checkConcurrency: number;
  resume?: boolean;
  referenceCache: boolean;
  stats?: string;
}

/** The complete lines of a file written line by line; a torn last line (a killed writer) is cut off the file. */
export function completeLines(file: string): string[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, "utf8");
  const end = text.lastIndexOf("\n") + 1;
  if (end < text.length) fs.truncateSync(file, Buffer.byteLength(text.slice(0, end)));
  return text.slice(0, end).split("\n").filter((l) => l.trim() !== "");
}

/** Task ids already in a JSONL task file (for `--resume`), read with {@link completeLines}. */
export function existingTaskIds(file: string): string[] {
  const ids: string[] = [];
  for (const line of completeLines(file)) {
    try {
      const id = (JSON.parse(line) as { id?: unknown }).id;
      if (typeof id === "string") ids.push(id);
    } catch {
      // unreadable line: not counted; the run produces that task again if it comes up
    }
  }
  return ids;
}

/** `owner/name` from a URL or path: the one reader, infer/run.ts nameFromRepo. */
export const repoNameFrom = nameFromRepo;

/** The spec: `--spec FILE` (JSON ImageSpec input) or a plain pytest default. */
export function mutateSpec(o: Pick<MutateCliOptions, "repo" | "commit" | "spec" | "name">): ImageSpecInput {
  const source: RepoSource = /^(https?:|git@|ssh:)/.test(o.repo) ? { type: "git", url: o.repo } : { type: "path", path: path.resolve(o.repo) };
  const base: Partial<ImageSpecInput> = o.spec ? (JSON.parse(fs.readFileSync(o.spec, "utf8")) as Partial<ImageSpecInput>) : {};
  return ImageSpecSchema.parse({
    systemPackages: ["python3-pytest", "python3-pip", "python3-setuptools"],
    install: ["pip install --no-index --no-deps --no-build-isolation --break-system-packages -e ."],
    testCommand: "pytest -rA",
    logParser: "pytest",
    ...base,
    repo: o.name ?? base.repo ?? repoNameFrom(o.repo),
    commit: o.commit,
    source,
  });
}

export function registerTaskCommands(program: Command): void {
  const tasks = program.command("tasks").description("make task records");
  registerCommitsCommand(tasks);
  tasks
    .command("mutate")
    .description("mutate-fix tasks: inject bugs the repository's own tests catch (Python, pytest)")
    .requiredOption("--repo <path|url>", "repository: a local clone (bare or not) or a git URL")
    .option("--commit <sha>", "commit whose tests pass (default: HEAD of a local clone; needed with a URL)")
    .option("--spec <file>", "image spec JSON (systemPackages, install, testCommand, …); coverage packages are added (default: the inferred spec, `forager images infer`)")
    .option("--name <owner/name>", "repository name in task ids (default: from --repo)")
    .option("--max <n>", "tasks wanted", int, 50)
    .option("--operators <list>", `comma-separated operators (default all: ${OPERATOR_NAMES.join(",")})`)
    .option("--seed <n>", "seed (same seed, same candidates in the same order)", int, 0)
    .requiredOption("--out <file>", "JSONL output of Task records")
    .option("--image <tag>", "use this instance image (must include python3-coverage, python3-pytest-cov)")
    .option("--min-complexity <n>", "complexity gate for target functions/classes", int, 2)
    .option("--max-candidates <n>", "most single candidates validated (default 15 × max)", int)
    .option("--combine <n>", "combined 2–3-bug tasks wanted (default max / 10)", int)
    .option("--sample-others <n>", "tests run besides the covering ones", int, 5)
    .option("--max-fail-to-pass <n>", "most failing tests a kept bug may have", int, 50)
    .option("--reruns <n>", "re-runs that must reproduce FAIL_TO_PASS (flaky check)", int, 1)
    .option("--agreement-sample <n>", "kept bugs re-checked with the full suite", int, 5)
    .option("--timeout <s>", "seconds per candidate test run", int, 300)
    .option("--cpus <n>", "CPUs of the validation sandbox", int, 1)
    .option("--model-url <url>", "OpenAI-compatible server: issues written by the model (template fallback); also the set-up agent when a spec is inferred")
    .option("--model <name>", "model name for --model-url")
    .option("--no-gold-check", "skip the gold/empty check of each task")
    .option("--check-concurrency <n>", "gold/empty checks at once (each a fresh sandbox of 1 CPU), beside validation", int, 1)
    .option("--no-reference-cache", "run the coverage reference run even when a cached one exists for the image")
    .option("--resume", "append to --out; skip its tasks and the candidates in --out.tried (a stopped run continues); without it an existing non-empty --out is refused")
    .option("--stats <file>", "write the summary as JSON")
    .action(async (o: MutateCliOptions) => {
      if (!o.commit) {
        o.commit = commitOrHead(o.repo, o.commit);
        process.stderr.write(`commit: ${o.commit} (HEAD of ${o.repo})\n`);
      }
      // Never wipe tasks made before: an existing, non-empty --out needs --resume (or removing it).
      if (!o.resume && fs.existsSync(o.out) && fs.statSync(o.out).size > 0) {
        const n = fs.readFileSync(o.out, "utf8").split("\n").filter((l) => l.trim() !== "").length;
        throw new UsageError(`--out ${o.out} already holds ${n} line(s): pass --resume to continue that run, or remove the file to start anew`);
      }
      // Without --spec: the stored inferred spec, else one inferred now (infer/), else the plain default.
      const say = (m: string) => process.stderr.write(`[infer] ${m}\n`);
      // With --model-url the same model is the set-up agent when inference's heuristics give up.
      const setupAgent = o.modelUrl
        ? modelSetupAgent({ modelUrl: [o.modelUrl], ...(o.model ? { model: o.model } : {}), trajectoryDir: path.join(defaultStateDir(), "infer", "setup-agent"), onProgress: say })
        : undefined;
      const inferred = o.spec ? undefined : await inferredSpecFile({ ...o, ...(setupAgent ? { setupAgent } : {}), onProgress: say });
      if (!o.spec) process.stderr.write(inferred ? `spec: inferred ${inferred.file} (${inferred.reason})\n` : "spec: inference rejected the repository; plain pytest default\n");
      const spec = mutateSpec({ ...o, ...(inferred ? { spec: inferred.file } : {}) });
      const client = o.modelUrl ? new InferenceClient({ endpoints: [{ url: o.modelUrl, ...(o.model ? { model: o.model } : {}) }] }) : undefined;
      fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
      const done = o.resume ? existingTaskIds(o.out) : [];
      // The journal of tried candidates (any verdict), so a resumed run never validates one twice.
      const journalPath = `${o.out}.tried`;
      const triedBefore = o.resume ? completeLines(journalPath).map((l) => l.split(" ")[0]!) : [];
      if (o.resume) process.stderr.write(`resume: ${done.length} task(s) in ${o.out}, ${triedBefore.length} candidate(s) tried before\n`);
      const out = fs.openSync(o.out, o.resume ? "a" : "w");
      const journal = fs.openSync(journalPath, o.resume ? "a" : "w");
      const tty = process.stderr.isTTY;
      const bar = tty
        ? new cliProgress.SingleBar(
            { format: "{phase} [{bar}] {value}/{total} tried · {validated} kept · {rej} · {msg}", stream: process.stderr, hideCursor: true },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
      let started = false;
      const rej = (p: MutateProgress) =>
        Object.entries(p.rejected)
          .filter(([, n]) => n > 0)
          .map(([k, n]) => `${k} ${n}`)
          .join(", ") || "none rejected";
      const onProgress = (p: MutateProgress) => {
        const payload = { phase: p.phase, validated: p.validated, rej: rej(p), msg: p.message.slice(0, 60) };
        if (bar) {
          if (!started && p.total !== undefined) {
            bar.start(p.total, p.tried, payload);
            started = true;
          } else if (started) {
            if (p.total !== undefined) bar.setTotal(p.total);
            bar.update(p.tried, payload);
          } else {
            process.stderr.write(`${p.phase}: ${p.message}\n`);
          }
        } else if (p.phase !== "validate" || p.tried % 10 === 0) {
          process.stderr.write(`[${p.phase}] tried ${p.tried} · kept ${p.validated} · ${rej(p)} · ${p.message}\n`);
        }
      };
      try {
        const { stats } = await generateMutateTasks({
          spec,
          max: o.max,
          ...(o.operators ? { operators: parseOperatorList(o.operators) } : {}),
          seed: o.seed,
          minComplexity: o.minComplexity,
          ...(o.maxCandidates ? { maxCandidates: o.maxCandidates } : {}),
          ...(o.combine !== undefined ? { combine: o.combine } : {}),
          agreementSample: o.agreementSample,
          goldCheck: o.goldCheck,
          checkConcurrency: o.checkConcurrency,
          referenceCache: o.referenceCache,
          skipTaskIds: done,
          skipCandidateIds: triedBefore,
          onCandidate: (id, verdict) => fs.writeSync(journal, `${id} ${verdict}\n`),
          settings: {
            sampleOthers: o.sampleOthers,
            maxFailToPass: o.maxFailToPass,
            reruns: o.reruns,
            timeoutSeconds: o.timeout,
          },
          ...(o.image ? { image: o.image } : {}),
          cpus: o.cpus,
          ...(client ? { client } : {}),
          onProgress,
          // One line per task, on disk before the next one: a stopped run keeps what it made.
          onTask: (t) => {
            fs.writeSync(out, JSON.stringify(t) + "\n");
            fs.fsyncSync(out);
          },
        });
        bar?.stop();
        const s = stats;
        console.log(`${s.repo}@${s.commit.slice(0, 12)} (${s.image})`);
        console.log(
          `reference: ${s.referencePassed}/${s.referenceTests} tests pass (${s.referenceCached ? "cached" : `${s.seconds.reference.toFixed(1)} s with coverage`}` +
            `${s.referenceCpuSeconds !== undefined ? `, ${s.referenceCpuSeconds.toFixed(0)} s container CPU` : ""})`,
        );
        console.log(`candidates: ${s.candidates} in ${s.sourceFiles} files; tried ${s.tried}, validated ${s.validated}${s.resumed ? `, ${s.resumed} already written (resume)` : ""}; mean tests run ${s.meanSelected.toFixed(1)}`);
        console.log(`rejected: ${Object.entries(s.rejected).map(([k, n]) => `${k} ${n}`).join(", ")}`);
        console.log("per operator (validated/tried):");
        for (const [op, y] of Object.entries(s.perOperator)) if (y.tried) console.log(`  ${op.padEnd(20)} ${y.validated}/${y.tried}`);
        console.log(`combined: ${s.combined.validated}/${s.combined.tried}`);
        console.log(`full-suite agreement: ${s.agreement.agreed}/${s.agreement.checked}${s.agreement.disagreements.length ? ` (${s.agreement.disagreements.join("; ")})` : ""}`);
        console.log(`gold/empty: gold resolves ${s.goldEmpty.goldResolved}/${s.goldEmpty.checked}, empty fails ${s.goldEmpty.emptyUnresolved}/${s.goldEmpty.checked} (${s.goldEmpty.seconds.toFixed(0)} s of evaluations)`);
        console.log(`tasks: ${s.tasks}${done.length ? ` new (+${done.length} from before)` : ""} → ${o.out}; ${s.seconds.total.toFixed(0)} s (${Object.entries(s.seconds).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ")}), container CPU ${s.cpuSeconds.toFixed(0)} s`);
        if (o.stats) fs.writeFileSync(o.stats, JSON.stringify(stats, null, 2) + "\n");
      } finally {
        bar?.stop();
        fs.closeSync(out);
        fs.closeSync(journal);
      }
    });
}

interface CommitsCliOptions {
  repo: string;
  name?: string;
  since?: string;
  range?: string;
  max: number;
  maxCandidates?: number;
  maxSeconds?: number;
  spec?: string;
  modelUrl?: string;
  model?: string;
  resume?: boolean;
  stats?: string;
  out: string;
  reruns: number;
  timeout: number;
  cpus: number;
  goldCheck: boolean;
  stateDir?: string;
}

/** Clone a URL (host side, bare) into the state dir once; a path is used as it is. Returns the git directory. */
function commitsGitDir(repo: string, stateDir: string): string {
  if (!/^(https?:|git@|ssh:)/.test(repo)) return gitDirOf(path.resolve(repo));
  const dir = path.join(stateDir, "infer", "clones", nameFromRepo(repo).replace("/", "+"));
  if (!fs.existsSync(dir)) execFileSync("git", ["clone", "--bare", "-q", repo, dir], { stdio: "ignore" });
  return dir;
}

/** Registers `forager tasks commits` (taskgen/commits/mine.ts) on the `tasks` command. */
export function registerCommitsCommand(tasks: Command): void {
  tasks
    .command("commits")
    .description("issue-fix tasks mined from a repository's history: fix commits with tests that fail before and pass after (Python, pytest)")
    .requiredOption("--repo <path|url>", "repository: a local clone (bare or not) or a git URL")
    .option("--name <owner/name>", "repository name in task ids (default: from --repo)")
    .option("--since <date>", "only commits since this date (git log --since)")
    .option("--range <A..B>", "only commits of this range")
    .option("--max <n>", "tasks wanted", int, 20)
    .option("--max-candidates <n>", "candidates tried at most (default 10 × max)", int)
    .option("--max-seconds <s>", "start no new candidate after this many seconds (the run ends cleanly, --resume continues it)", int)
    .option("--spec <file>", "image spec JSON for every dependency set (default: inferred per dependency set, infer/)")
    .option("--model-url <url>", "OpenAI-compatible server: statements back-translated by the model (template fallback); also the set-up agent when a dependency set's spec is inferred")
    .option("--model <name>", "model name for --model-url")
    .option("--reruns <n>", "extra runs of both sides for flakiness", int, 2)
    .option("--timeout <s>", "seconds per test run", int, 300)
    .option("--cpus <n>", "CPUs of the validation sandbox", int, 1)
    .option("--no-gold-check", "skip the gold/empty check of each task")
    .option("--state-dir <dir>", "image state dir (index, locks, build logs, inferred specs)")
    .option("--resume", "append to --out; skip the commits decided in --out.decided")
    .option("--stats <file>", "write the figures as JSON")
    .requiredOption("--out <file>", "JSONL output of Task records")
    .action(async (o: CommitsCliOptions) => {
      if (!o.resume && fs.existsSync(o.out) && fs.statSync(o.out).size > 0) {
        throw new Error(`--out ${o.out} is not empty: pass --resume to continue that run, or remove the file to start anew`);
      }
      const stateDir = path.resolve(o.stateDir ?? defaultStateDir());
      const gitDir = commitsGitDir(o.repo, stateDir);
      const repo = o.name ?? nameFromRepo(o.repo);
      const spec = o.spec ? (JSON.parse(fs.readFileSync(o.spec, "utf8")) as ImageSpecInput) : undefined;
      const client = o.modelUrl ? new InferenceClient({ endpoints: [{ url: o.modelUrl, ...(o.model ? { model: o.model } : {}) }] }) : undefined;
      fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
      const statePath = `${o.out}.decided`;
      const decided = o.resume ? completeLines(statePath).map((l) => l.split(" ")[0]!) : [];
      const done = o.resume ? existingTaskIds(o.out) : [];
      if (o.resume) process.stderr.write(`resume: ${done.length} task(s) in ${o.out}, ${decided.length} commit(s) decided before\n`);
      const out = fs.openSync(o.out, o.resume ? "a" : "w");
      const journal = fs.openSync(statePath, o.resume ? "a" : "w");
      const rej = (r: Record<string, number>) => Object.entries(r).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ") || "none rejected";
      try {
        const { stats } = await mineCommitTasks({
          gitDir,
          repo,
          window: { ...(o.since ? { since: o.since } : {}), ...(o.range ? { range: o.range } : {}) },
          max: Math.max(0, o.max - done.length),
          ...(o.maxCandidates ? { maxCandidates: o.maxCandidates } : {}),
          ...(o.maxSeconds ? { maxSeconds: o.maxSeconds } : {}),
          ...(spec ? { spec } : {}),
          reruns: o.reruns,
          timeoutSeconds: o.timeout,
          cpus: o.cpus,
          goldCheck: o.goldCheck,
          stateDir,
          skip: decided,
          ...(client ? { client } : {}),
          // With --model-url the same model is the set-up agent when inference's heuristics give up.
          ...(o.modelUrl
            ? { setupAgent: modelSetupAgent({ modelUrl: [o.modelUrl], ...(o.model ? { model: o.model } : {}), trajectoryDir: path.join(stateDir, "infer", "setup-agent"), onProgress: (m) => process.stderr.write(`[commits] ${m}\n`) }) }
            : {}),
          onProgress: (p) => process.stderr.write(`[commits] tried ${p.tried}/${p.candidates} · kept ${p.kept} · ${rej(p.rejected)} · ${p.message}\n`),
          onTask: (t) => {
            fs.writeSync(out, JSON.stringify(t) + "\n");
            fs.fsyncSync(out);
          },
          onDecision: (sha, verdict) => fs.writeSync(journal, `${sha} ${verdict}\n`),
        });
        const s = stats;
        console.log(`${s.repo}: ${s.commitsScanned} commits scanned, ${s.candidates} candidates (not candidates: ${rej(s.notCandidates)})`);
        console.log(`tried ${s.tried}${s.resumed ? ` (+${s.resumed} decided before)` : ""}, kept ${s.kept}; rejected: ${rej(s.rejected)}`);
        for (const g of s.groups) console.log(`  dependency set ${g.dependencyKey}: image ${g.image ?? "none"} at ${g.commit.slice(0, 12)} (${g.specSource} spec), ${g.tasks}/${g.candidates} tasks${g.imageBytes ? `, ${(g.imageBytes / 1e6).toFixed(0)} MB shared` : ""}${g.error ? `; ${g.error}` : ""}`);
        for (const t of s.tasks) console.log(`  ${t.id}: FAIL_TO_PASS ${t.failToPass}, PASS_TO_PASS ${t.passToPass}, gold ${t.gold ? "resolves" : "does NOT resolve"}, empty ${t.empty ? "fails" : "does NOT fail"}`);
        if (s.stoppedByTime) console.log("stopped at --max-seconds with candidates left (--resume continues)");
        console.log(`disk per task: ${s.diskPerTaskBytes} bytes of record, 0 bytes of per-task image, ${(s.sharedInstanceBytesPerTask / 1e6).toFixed(1)} MB share of the dependency sets' instance layers; ${s.seconds.total.toFixed(0)} s (images ${s.seconds.images.toFixed(0)}, runs ${s.seconds.runs.toFixed(0)}, checks ${s.seconds.checks.toFixed(0)}) → ${o.out}`);
        if (o.stats) fs.writeFileSync(o.stats, JSON.stringify(stats, null, 2) + "\n");
      } finally {
        fs.closeSync(out);
        fs.closeSync(journal);
      }
    });
}
