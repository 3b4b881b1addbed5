/**
 * The orchestrator's commands: `forage`, `worker`, `status`, `resume`, `collect`, `export`
 * (orchestrator/, docs/orchestrator.md).
 */
import { useRepos } from "./episode-options";
import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { agentConfigOption, collectWith, existingPath, int, intAtLeast, numberIn } from "./options";
import { EXIT, UsageError } from "./exit-codes";
import { onInterrupt } from "./interrupt";
import { preflightEndpoints } from "./preflight";
import { EXPORT_FORMATS, type AnyExportFormat } from "../orchestrator/export-formats";
import { runPaths } from "../orchestrator/spec";
import { scanShards } from "../orchestrator/storage";
import { Option } from "commander";
import { logger } from "../lib/log";
import { loadAgentConfigArg } from "../agent/config";
import { exportRun, exportRunToFile, exportRunToParquet } from "../orchestrator/export";
import { forage, formatProgress, formatSummary, resume, type ForageResult } from "../orchestrator/forage";
import { formatModelUsage } from "../orchestrator/metrics";
import type { CollectResult } from "../orchestrator/redis-storage";
import { openCollector } from "../orchestrator/sink";
import { readRunFiles, runStatus, writeManifest, type RunStatus } from "../orchestrator/run";
import { formatFailureCounts } from "../orchestrator/records";
import { formatAccounting, formatPassAtK } from "../orchestrator/accounting";
import type { RunSpec, StorageMode } from "../orchestrator/spec";
import { redisConnection, startWorker, type ForagerWorker } from "../orchestrator/worker";
import { formatWorkers, hostCapacity, listWorkers, readImageEvents } from "../orchestrator/cluster";
import { formatRegistry, parseRegistryOption } from "../images/registry";
import { destroyAllSandboxes } from "../sandbox/sandbox";
import { parseInstanceIds } from "../tasks/files";
import { parseImagesOption } from "../images/swebench-prebuilt";

const collect = (v: string, prev: string[] = []) => [...prev, v];
const TASKS_WHAT = "a tasks file (Task JSONL, or a SWE-bench dataset: JSON/JSONL/parquet file or dataset directory)";

interface ForageCliOptions {
  tasks: string[];
  instances?: string;
  samples: number;
  out: string;
  modelUrl?: string[];
  model?: string;
  apiKey?: string;
  maxRequests: number;
  policy?: "oracle" | "http";
  mode?: "completions" | "chat";
  redis?: string;
  detach?: boolean;
  stopAfter?: number;
  maxTurns?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  concurrency?: number;
  evalConcurrency?: number;
  runId?: string;
  attempts?: number;
  image?: string[];
  images?: string;
  storage: StorageMode;
  registry?: string;
  config?: string;
}

/** `--registry`'s help (the same on every command that takes it). */
export const REGISTRY_HELP =
  "cluster registry HOST:PORT[/NAMESPACE] (also FORAGER_REGISTRY): instance images are pulled by their content-hashed names, or built once in the cluster and pushed";

/**
 * Serve until SIGINT/SIGTERM, then shut the worker down: no new jobs, running ones get `graceMs`
 * to finish, then are aborted (their jobs go back to the queue); a second signal aborts them at
 * once, a third exits at once (status 130). Resolves once the worker is closed.
 */
function serveUntilSignal(w: ForagerWorker, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        console.error(`worker ${w.id}: ${sig}: taking no new jobs; ${w.running} running, given up to ${graceMs / 1000} s to finish (signal again to abort them now)`);
        w.close({ graceMs }).then(resolve, (err: unknown) => {
          console.error(`worker ${w.id}: closing: ${(err as Error).message}`);
          resolve();
        });
      } else if (signals === 2) {
        console.error(`worker ${w.id}: ${sig} again: aborting the running jobs (back to the queue)`);
        void w.close({ force: true });
      } else {
        process.exit(130);
      }
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

/** One line about a collection from the run's stream. */
function collectLine(r: CollectResult): string {
  const extra = [r.duplicates ? `${r.duplicates} already in the shards` : "", r.corrupt ? `${r.corrupt} unreadable (RUN/collect-errors/)` : ""].filter(Boolean).join(", ");
  return `collected ${r.collected} trajectories${extra ? ` (${extra})` : ""}; ${r.remaining} left in the stream${r.lockedBy ? `; another collector holds the run (${r.lockedBy})` : ""}`;
}

function progressPrinter(): (s: RunStatus, r: { turnsPerSecond: number; elapsedSeconds: number }) => void {
  const tty = process.stderr.isTTY;
  let last = 0;
  return (s, r) => {
    const line = formatProgress(s, r);
    if (tty) process.stderr.write(`\r\x1b[2K${line}`);
    else if (Date.now() - last > 10_000 || s.complete) {
      last = Date.now();
      process.stderr.write(line + "\n");
    }
  };
}

function report(res: ForageResult): void {
  if (process.stderr.isTTY) process.stderr.write("\n");
  if (res.summary) console.log(formatSummary(res.summary));
  else console.log(`run ${res.spec.runId} enqueued (${res.status.expected} samples) → ${res.spec.runDir}`);
  process.exitCode = res.summary && res.summary.failed > 0 ? EXIT.someFailed : EXIT.ok;
}

/**
 * What an interrupted run leaves, for people: the trajectories committed to the shards (the
 * shards' index), the failure records, and the command that continues it.
 */
export function interruptedLines(runDir: string): string[] {
  const dir = path.resolve(runDir);
  if (!fs.existsSync(runPaths(dir).spec)) return [`forager: interrupted before the run started: nothing saved in ${dir}`];
  let saved = 0;
  let expected: number | undefined;
  try {
    saved = scanShards(runPaths(dir).shards).entries.length;
    const { spec, tasks } = readRunFiles(dir);
    expected = spec.samples * tasks.length;
  } catch {
    // an unreadable run directory: say what we can
  }
  const failed = fs.existsSync(runPaths(dir).failures) ? fs.readdirSync(runPaths(dir).failures).filter((f) => f.endsWith(".json")).length : 0;
  return [
    `forager: interrupted: ${saved}${expected !== undefined ? ` of ${expected}` : ""} trajectories saved in ${runPaths(dir).shards}${failed ? ` (${failed} failed sample(s) recorded in ${runPaths(dir).failures})` : ""}`,
    `continue with: forager resume ${runDir}`,
  ];
}

/**
 * Run `work` (a forage or resume) so that Ctrl-C stops it cleanly: the run is aborted (workers
 * closed, their jobs back in the run's Redis), then cli/main.ts destroys the sandboxes and exits
 * 130 after printing {@link interruptedLines}.
 */
async function interruptible(runDir: string, work: (signal: AbortSignal) => Promise<ForageResult>): Promise<void> {
  const ac = new AbortController();
  const running = work(ac.signal);
  const off = onInterrupt(async () => {
    ac.abort();
    await running.catch(() => undefined);
    return interruptedLines(runDir);
  });
  try {
    report(await running);
  } catch (err) {
    if (ac.signal.aborted) await new Promise(() => undefined); // cli/main.ts exits 130
    throw err;
  } finally {
    off();
  }
}

/** Register the orchestrator's commands on the CLI. */
export function registerForageCommands(program: Command): void {
  program
    .command("forage")
    .description("turn tasks into trajectories: K samples per task, with rewards (embedded Redis and workers unless --redis)")
    .requiredOption("--tasks <files...>", "task files (Task JSONL, or a SWE-bench dataset: JSON/JSONL/parquet file or dataset directory): --tasks A B or --tasks A --tasks B", collectWith(existingPath("any", TASKS_WHAT)))
    .option("--instances <ids>", "only these task / instance ids: comma-separated, or @FILE (one id a line)")
    .option("--repos <dir>", "SWE-bench tasks: directory of local clones (owner+name/repo, owner__name, …; sets FORAGER_REPOS)")
    .requiredOption("--samples <k>", "samples per task (K), ≥ 1", intAtLeast(1))
    .requiredOption("--out <dir>", "run directory (shards, manifest, summary)")
    .option("--model-url <url>", "OpenAI-compatible endpoint; repeatable", collect)
    .option("--model <name>", "model name sent to the endpoints")
    .option("--api-key <key>", "API key of the endpoints", process.env.FORAGER_API_KEY)
    .option("--max-requests <n>", "concurrent model requests per endpoint, over all workers", intAtLeast(1), 64)
    .addOption(new Option("--policy <kind>", "policy (default: http with --model-url, else oracle)").choices(["oracle", "http"]))
    .addOption(new Option("--mode <mode>", "model API (default: the config's, completions)").choices(["completions", "chat"]))
    .option("--redis <url>", "enqueue into this Redis for remote workers (default: a private redis-server)")
    .option("--detach", "with --redis: return once enqueued")
    .option("--stop-after <m>", "stop a task after M resolved samples (default: never)", intAtLeast(1))
    .option("--config <json|file|preset>", "agent settings for every episode: inline JSON, a JSON file, or a preset of configs/ (cwm-eval, quick, swerl-similarity); flags below override it", agentConfigOption)
    .option("--max-turns <t>", "turns per episode (T; default 128)", intAtLeast(1))
    .option("--temperature <x>", "sampling temperature, ≥ 0 (default 1.0)", numberIn(0))
    .option("--top-p <x>", "nucleus sampling, 0–1 (default 0.95)", numberIn(0, 1))
    .option("--seed <n>", "base seed (sample i uses seed + i; default none)", int)
    .option("--concurrency <n>", `embedded: episodes at once (default: from cores, memory and the sandbox limits, here ${hostCapacity().slots})`, intAtLeast(1))
    .option("--eval-concurrency <n>", "embedded: evaluations at once (default: a quarter of the episode slots, at most one per core, at least 1)", intAtLeast(1))
    .option("--run-id <id>", "run id (default: date + random)")
    .option("--attempts <n>", "attempts per job (environment and inference errors; default 3)", intAtLeast(1))
    .option("--image <task=tag>", "pre-built image tag for a task; repeatable", collect)
    .option("--images <source>", "swebench or swebench=REGISTRY/NAMESPACE: SWE-bench tasks run in the harness's prebuilt images, pulled before the run (also FORAGER_IMAGES)")
    .option("--registry <host:port[/ns]>", `${REGISTRY_HELP}; local repositories of the tasks are published to it`)
    .addOption(
      new Option("--storage <mode>", "shared: workers write RUN/staging and RUN/shards (remote workers need RUN on shared storage); redis: trajectories travel through Redis and this process collects them into RUN/shards")
        .choices(["shared", "redis"])
        .default("shared"),
    )
    .action(async (o: ForageCliOptions & { repos?: string }) => {
      useRepos(o);
      if (o.detach && !o.redis) throw new UsageError("--detach needs --redis URL: an embedded run (no --redis) ends with this process, there is nothing to detach from");
      if (o.policy === "oracle" && o.modelUrl?.length) throw new UsageError("--policy oracle takes no --model-url: the oracle applies the reference patch and asks no model (drop one of them)");
      const kind = o.policy ?? (o.modelUrl?.length ? "http" : "oracle");
      if (kind === "http" && !o.modelUrl?.length) throw new UsageError("--policy http needs at least one --model-url");
      if (kind === "http") await preflightEndpoints(o.modelUrl!, { apiKey: o.apiKey, model: o.model });
      const policy: RunSpec["policy"] =
        kind === "oracle"
          ? { kind: "oracle" }
          : { kind: "http", mode: o.mode, endpoints: o.modelUrl!.map((url) => ({ url, model: o.model, apiKey: o.apiKey, maxConcurrentRequests: o.maxRequests })) };
      const images = Object.fromEntries((o.image ?? []).map((s) => [s.slice(0, s.lastIndexOf("=")), s.slice(s.lastIndexOf("=") + 1)]));
      const registry = parseRegistryOption(o.registry);
      await interruptible(o.out, (signal) => forage({
        signal,
        ...(registry ? { registry } : {}),
        onRegistryRetry: (m) => console.error(`[sources] ${m}`),
        onSourcePublished: (p) =>
          console.error(`[sources] ${p.repo}: ${p.commits} commit(s) of ${p.from} for ${p.tasks} task(s), bundle ${(p.bytes / 1e6).toFixed(1)} MB ${p.uploaded ? "uploaded to" : "already in"} ${registry ? formatRegistry(registry) : ""} (${p.digest.slice(0, 19)})`),
        taskFiles: o.tasks,
        ...(o.instances ? { instances: parseInstanceIds(o.instances) } : {}),
        samples: o.samples,
        out: o.out,
        runId: o.runId,
        stopAfterSuccesses: o.stopAfter,
        maxTurns: o.maxTurns,
        policy,
        ...(o.config ? { agent: loadAgentConfigArg(o.config) as Record<string, unknown> } : {}),
        sampling: { temperature: o.temperature, topP: o.topP, seed: o.seed },
        images,
        prebuilt: parseImagesOption(o.images),
        onPrebuilt: (p) => {
          if (p.phase !== "present") console.error(`[images] ${p.instanceId}: ${p.message}`);
        },
        attempts: o.attempts,
        storage: o.storage,
        redisUrl: o.redis,
        detach: o.detach,
        worker: { concurrency: o.concurrency, evalConcurrency: o.evalConcurrency, logger: logger() },
        logger: logger(),
        onProgress: progressPrinter(),
        onTaskErrors: (errors) => {
          console.error(`${errors.length} bad task line(s), skipped:`);
          for (const e of errors.slice(0, 20)) console.error(`  ${e.file}:${e.line}${e.taskId ? ` (${e.taskId})` : ""}: ${e.message}`);
          if (errors.length > 20) console.error(`  … ${errors.length - 20} more in <run>/task-errors.jsonl`);
        },
      }));
    });

  program
    .command("worker")
    .description("serve the run queues of a Redis: image builds, rollouts and evaluations (runs until stopped)")
    .requiredOption("--redis <url>", "Redis URL", process.env.REDIS_URL)
    .option("--concurrency <n>", `episodes at once (default: from cores, memory and the sandbox limits, here ${hostCapacity().slots})`, int)
    .option("--registry <host:port[/ns]>", `${REGISTRY_HELP} (default: the run's)`)
    .option("--eval-concurrency <n>", "evaluations at once", int)
    .option("--lock-ms <ms>", "job lock; a dead worker's jobs are taken over after it", int, 30_000)
    .option("--grace-seconds <s>", "on SIGTERM/SIGINT: time running episodes get to finish before they are aborted and re-queued", Number, 60)
    .action(async (o: { redis: string; concurrency?: number; evalConcurrency?: number; lockMs: number; graceSeconds: number; registry?: string }) => {
      if (!(o.graceSeconds >= 0)) throw new Error(`--grace-seconds: not a non-negative number: ${o.graceSeconds}`);
      const registry = parseRegistryOption(o.registry);
      const w = await startWorker({ redisUrl: o.redis, concurrency: o.concurrency, evalConcurrency: o.evalConcurrency, lockDurationMs: o.lockMs, stalledIntervalMs: Math.max(1000, o.lockMs / 2), logger: logger(), ...(registry ? { registry } : {}) });
      const c = w.capacity;
      const why = c ? ` (cores ${c.cores} → ${c.byCpu}, memory ${(c.memoryBytes / 1024 ** 3).toFixed(1)} GiB → ${c.byMemory}, for sandboxes of ${c.sandboxCpus} CPU / ${(c.sandboxMemoryBytes / 1024 ** 3).toFixed(0)} GiB)` : "";
      console.error(`worker ${w.id}: ${w.concurrency} episode slots${why}, ${w.evalConcurrency} evaluation slots on ${o.redis}${registry ? `; images through ${formatRegistry(registry)}` : ""}`);
      await serveUntilSignal(w, o.graceSeconds * 1000); // this command's own signal handling (cli/main.ts defers to it)
      await destroyAllSandboxes();
      console.error(`worker ${w.id}: stopped`);
      logger().flush();
      process.exit(0);
    });

  program
    .command("status")
    .description("figures of a run: from its directory, and live from Redis when reachable; the worker hosts (slots, in flight, images, last heartbeat)")
    .argument("[run]", "run directory (optional with --redis: only the workers)")
    .option("--redis <url>", "Redis URL (default: the run's, if remote)")
    .option("--json", "print JSON")
    .action(async (runDir: string | undefined, o: { redis?: string; json?: boolean }) => {
      if (!runDir) {
        if (!o.redis) throw new Error("give a run directory, or --redis URL for the workers alone");
        const r = redisConnection(o.redis);
        try {
          const ws = await Promise.race([listWorkers(r), new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`Redis ${o.redis} did not answer within 5 s`)), 5000))]);
          if (o.json) {
            const im = await readImageEvents(r);
            console.log(JSON.stringify({ workers: ws.workers, images: im.byTag, errors: [...ws.errors, ...im.errors] }, null, 2));
          }
          else {
            console.log(formatWorkers(ws.workers));
            for (const e of ws.errors) console.log(`  unreadable heartbeat: ${e}`);
          }
        } finally {
          r.disconnect();
        }
        return;
      }
      const { spec } = readRunFiles(runDir);
      let live: RunStatus | undefined;
      let collected: CollectResult | undefined;
      let workers: Awaited<ReturnType<typeof listWorkers>> | undefined;
      const url = o.redis ?? spec.redisUrl;
      if (url) {
        const r = redisConnection(url);
        try {
          live = await Promise.race([runStatus(r, spec.runId), new Promise<undefined>((res) => setTimeout(() => res(undefined), 3000))]);
        } catch {
          live = undefined;
        }
        // Storage "redis": bring what the stream holds into the shards first (unless another collector is at it).
        const c = live ? openCollector(r, { ...spec, runDir: path.resolve(runDir) }, { logger: logger() }) : undefined;
        if (c) {
          try {
            collected = await c.drain();
            live = await runStatus(r, spec.runId);
          } catch (err) {
            console.error(`collecting the run's trajectories failed: ${(err as Error).message}`);
          } finally {
            await c.close();
          }
        }
        if (live) workers = await listWorkers(r).catch(() => undefined);
        r.disconnect();
      }
      const manifest = await writeManifest(runDir, { write: false, dedup: false });
      if (o.json) {
        console.log(JSON.stringify({ runId: spec.runId, storage: spec.storage, tasksDone: `${manifest.accounting.tasksDone}/${manifest.accounting.tasks}`, manifest: { ...manifest, shards: manifest.shards.length }, live, collected, ...(workers ? { workers: workers.workers } : {}) }, null, 2));
        return;
      }
      console.log(`run ${spec.runId} (${spec.policy.kind}, K=${spec.samples}) in ${spec.runDir}`);
      console.log(`  trajectories ${manifest.trajectories}/${manifest.expected} (resolved ${manifest.resolved}); failed ${manifest.failures.length}; shards ${manifest.shards.length}; duplicates dropped ${manifest.duplicatesDropped}`);
      if (manifest.failures.length) console.log(`  ${formatFailureCounts(manifest.failureCounts)} (not in rewards or pass@k)`);
      console.log(`  ${formatPassAtK(manifest.accounting, spec.samples)}`);
      for (const l of formatAccounting(manifest.accounting)) console.log(l);
      if (manifest.model) console.log(`  model: ${formatModelUsage(manifest.model)}`);
      for (const f of manifest.failures.slice(0, 10)) console.log(`  failed ${f.taskId}#${f.sample} (${f.stage}, ${f.attempts} attempts): ${f.reason}`);
      if (live) console.log(`  live: ${formatProgress(live, { turnsPerSecond: 0, elapsedSeconds: 0 })}`);
      if (collected) console.log(`  ${collectLine(collected)}`);
      if (workers) console.log(formatWorkers(workers.workers));
    });

  program
    .command("collect")
    .description("storage redis: move the run's finished trajectories from Redis into RUN/shards (durable first, then removed from Redis)")
    .argument("<run>", "run directory")
    .option("--redis <url>", "Redis URL (default: the run's)")
    .option("--follow", "keep collecting until the run is complete and its stream empty")
    .option("--interval-ms <ms>", "with --follow: poll period", int, 1000)
    .action(async (runDir: string, o: { redis?: string; follow?: boolean; intervalMs: number }) => {
      const { spec } = readRunFiles(runDir);
      const url = o.redis ?? spec.redisUrl;
      if (spec.storage === "redis" && !url) throw new Error("no Redis URL: pass --redis (embedded runs: `forager resume` restarts their Redis and collects)");
      const r = url ? redisConnection(url) : undefined;
      const c = r && openCollector(r, { ...spec, runDir: path.resolve(runDir) }, { logger: logger() });
      if (!r || !c) {
        r?.disconnect();
        throw new Error(`run ${spec.runId} has storage "${spec.storage}": its workers write the shards themselves, nothing to collect`);
      }
      const total: CollectResult = { collected: 0, duplicates: 0, corrupt: 0, remaining: 0 };
      try {
        for (;;) {
          const res = await c.drain();
          total.collected += res.collected;
          total.duplicates += res.duplicates;
          total.corrupt += res.corrupt;
          total.remaining = res.remaining;
          total.lockedBy = res.lockedBy;
          if (!o.follow) break;
          const st = await runStatus(r, spec.runId);
          if (st.complete && st.uncollected === 0) break;
          if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${formatProgress(st, { turnsPerSecond: 0, elapsedSeconds: 0 })}`);
          await new Promise((res) => setTimeout(res, o.intervalMs));
        }
      } finally {
        await c.close();
        r.disconnect();
      }
      if (process.stderr.isTTY && o.follow) process.stderr.write("\n");
      const manifest = await writeManifest(runDir);
      console.log(collectLine(total));
      console.log(`run ${spec.runId}: trajectories ${manifest.trajectories}/${manifest.expected} in ${manifest.shards.length} shard(s); duplicates dropped ${manifest.duplicatesDropped}`);
      process.exitCode = total.lockedBy && total.collected === 0 ? 1 : 0;
    });

  program
    .command("resume")
    .description("continue a run: re-submit what is not done (idempotent), run it, write the manifest and summary")
    .argument("<run>", "run directory")
    .option("--redis <url>", "Redis URL (default: the run's; embedded runs restart their private Redis)")
    .option("--concurrency <n>", "embedded: episodes at once (default: container slots)", intAtLeast(1))
    .action(async (runDir: string, o: { redis?: string; concurrency?: number }) => {
      readRunFiles(runDir); // a directory that holds no run fails here, in one line
      await interruptible(runDir, (signal) => resume(runDir, { signal, redisUrl: o.redis, worker: { concurrency: o.concurrency, logger: logger() }, logger: logger(), onProgress: progressPrinter() }));
    });

  program
    .command("export")
    .description("export a run: openai (fine-tuning chat with tool_calls), chat (CWM's form), raw, parquet (Hugging Face dataset), verl / skyrl (RL prompt sets), predictions (SWE-bench)")
    .argument("<run>", "run directory")
    .addOption(
      new Option(
        "--format <format>",
        "openai: OpenAI fine-tuning JSONL (messages with tool_calls, tool_call_id, tools) · chat: CWM's chat form (tool calls as CWM text) · raw: trajectory records · parquet: the openai conversations + outcome as a Hugging Face dataset (DIR/data/train-*.parquet) · verl, skyrl: the run's tasks as an RL prompt set (parquet) · predictions: SWE-bench JSONL",
      )
        .choices(EXPORT_FORMATS)
        .makeOptionMandatory(),
    )
    .option("--output <file|dir>", "write here (default stdout; parquet, verl, skyrl need it: a .parquet file, or a directory for the Hugging Face layout)")
    .option("--dedup", "raw, chat, openai, parquet: drop near-duplicate trajectories (MinHash over actions)")
    .option("--resolved-only", "raw, chat, openai, parquet: only resolved trajectories")
    .addOption(new Option("--vote <how>", "predictions: first sample or majority over identical patches").choices(["first", "majority"]).default("first"))
    .option("--model-name <name>", "predictions: model_name_or_path (default: the run's model, else forager-<policy>)")
    .action(async (runDir: string, o: { format: AnyExportFormat; output?: string; dedup?: boolean; resolvedOnly?: boolean; vote: "first" | "majority"; modelName?: string }, cmd: Command) => {
      const given = (name: string) => cmd.getOptionValueSource(name) === "cli";
      const only = (flag: string, name: string, formats: readonly string[]) => {
        if (given(name) && !formats.includes(o.format)) throw new UsageError(`${flag} applies to --format ${formats.join(" / ")}, not ${o.format}`);
      };
      only("--vote", "vote", ["predictions"]);
      only("--model-name", "modelName", ["predictions"]);
      only("--dedup", "dedup", ["raw", "chat", "openai", "parquet"]);
      only("--resolved-only", "resolvedOnly", ["raw", "chat", "openai", "parquet"]);
      readRunFiles(runDir);
      if (o.format === "parquet" || o.format === "verl" || o.format === "skyrl") {
        if (!o.output) throw new UsageError(`--format ${o.format} writes parquet: give --output FILE.parquet or --output DIR (Hugging Face layout: DIR/data/train-00000-of-00001.parquet)`);
        const r = await exportRunToParquet(runDir, { format: o.format, dedup: o.dedup, resolvedOnly: o.resolvedOnly }, o.output);
        console.error(`${r.lines} row(s)${r.droppedAsDuplicates ? `, ${r.droppedAsDuplicates} near-duplicate(s) dropped` : ""} → ${r.file}`);
        return;
      }
      const opts = { format: o.format, dedup: o.dedup, resolvedOnly: o.resolvedOnly, vote: o.vote, modelName: o.modelName };
      const r = o.output ? await exportRunToFile(runDir, opts, o.output) : await exportRun(runDir, opts, process.stdout);
      console.error(`${r.lines} line(s)${r.droppedAsDuplicates ? `, ${r.droppedAsDuplicates} near-duplicate(s) dropped` : ""}${o.output ? ` → ${o.output}` : ""}`);
      if (r.lines === 0) {
        console.error(`forager: nothing exported from ${runDir}${o.resolvedOnly ? " (no resolved trajectory)" : ""}`);
        process.exitCode = EXIT.usage;
      }
      if (o.output && !fs.existsSync(o.output)) process.exitCode = EXIT.failure;
    });
}
