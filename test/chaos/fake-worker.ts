/**
 * A worker process with a fake rollout (no Docker, no model), for the stalled-job tests: the
 * test SIGKILLs it mid-episode. Settings from the environment:
 * REDIS_URL, FAKE_DELAY_MS (episode wall time), LOCK_MS, STALLED_MS, CONCURRENCY.
 * Prints `ready` once its workers are listening.
 */
import { fakeRollout, keepEvaluation } from "../../orchestrator/fake";
import { startWorker } from "../../orchestrator/worker";

const w = await startWorker({
  redisUrl: process.env.REDIS_URL!,
  concurrency: Number(process.env.CONCURRENCY ?? 4),
  rollout: fakeRollout({ delayMs: Number(process.env.FAKE_DELAY_MS ?? 2000) }),
  evaluate: keepEvaluation,
  image: async () => "fake:latest",
  lockDurationMs: Number(process.env.LOCK_MS ?? 2000),
  stalledIntervalMs: Number(process.env.STALLED_MS ?? 1000),
  reap: false,
  writerId: `fake-${process.pid}`,
});
console.log("ready");
process.on("SIGTERM", () => void w.close().then(() => process.exit(0)));
