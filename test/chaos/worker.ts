/**
 * A real worker process for the chaos script: real episodes (the run's policy, real Docker),
 * the tiny task's evaluator (test/helpers/tasks.ts) in the evaluation stage, the reaper at
 * start-up. Environment: REDIS_URL, IMAGE (the tiny image), CONCURRENCY, LOCK_MS.
 * Prints `ready` once its workers are listening.
 */
import { evaluateWith } from "../../orchestrator/stages";
import { startWorker } from "../../orchestrator/worker";
import { tinyEvaluator } from "../helpers/tasks";

const lock = Number(process.env.LOCK_MS ?? 5000);
const w = await startWorker({
  redisUrl: process.env.REDIS_URL!,
  concurrency: Number(process.env.CONCURRENCY ?? 3),
  evalConcurrency: Number(process.env.CONCURRENCY ?? 3),
  evaluate: evaluateWith(() => tinyEvaluator(process.env.IMAGE!)),
  lockDurationMs: lock,
  stalledIntervalMs: Math.max(500, lock / 2),
  reap: true,
});
console.log("ready");
process.on("SIGTERM", () => void w.close().then(() => process.exit(0)));
