/**
 * `forager serve`: the rollout engine of an RL trainer over HTTP (serve/server.ts; API in
 * docs/serve.md, OpenAPI at /openapi.json). Runs until SIGINT / SIGTERM, then removes every env,
 * stops the workers (running episodes aborted) and the private Redis.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { defaultStateDir } from "../images/state";
import { Option, type Command } from "commander";
import { logger } from "../lib/log";
import { int } from "./options";
import { isLoopback, startService } from "../serve/server";
import { parseRegistryOption } from "../images/registry";

const collect = (v: string, prev: string[] = []) => [...prev, v];

interface ServeCliOptions {
  port: number;
  host: string;
  token?: string;
  redis?: string;
  worker?: boolean;
  tasks?: string[];
  allowTaskRecords?: boolean;
  image?: string[];
  dir: string;
  concurrency?: number;
  evalConcurrency?: number;
  warmPool: number;
  idleSeconds: number;
  maxEnvs: number;
  staleness?: number;
  stale: "drop" | "tag";
  weightsVersion?: string;
  registry?: string;
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("HTTP service for RL trainers: GRPO rollout groups, a step API, weights versions, token-exact records")
    .option("--port <n>", "port (0: a free one)", int, 8090)
    .option("--host <addr>", "interface to bind; off loopback a bearer token is required", "127.0.0.1")
    .option("--token <t>", "bearer token (also FORAGER_SERVE_TOKEN; generated and printed when binding off loopback without one)", process.env.FORAGER_SERVE_TOKEN)
    .option("--redis <url>", "remote workers: enqueue into this Redis (`forager worker --redis URL` elsewhere)")
    .option("--worker", "with --redis: run workers in this process too")
    .option("--tasks <file>", "task files whose ids requests may name; repeatable", collect)
    .option("--allow-task-records", "also accept whole Task records in requests (never with an image source: a host path or URL); their build steps run on this host")
    .option("--image <task=tag>", "pre-built image tag for a task; repeatable", collect)
    .option("--dir <dir>", "service directory (group runs, private Redis data)", path.join(defaultStateDir(), "serve"))
    .option("--concurrency <n>", "embedded workers: episodes at once (default: container slots)", int)
    .option("--eval-concurrency <n>", "embedded workers: evaluations at once", int)
    .option("--warm-pool <n>", "started sandboxes kept ready per image (0: none)", int, 0)
    .option("--idle-seconds <s>", "step API: an env waiting this long for an action is removed", int, 600)
    .option("--max-envs <n>", "step API: most envs at once", int, 1024)
    .option("--staleness <n>", "trajectories whose oldest turn is more than N weights versions old are dropped or tagged (--stale)", int)
    .addOption(new Option("--stale <action>", "what --staleness does").choices(["drop", "tag"]).default("tag"))
    .option("--weights-version <v>", "initial weights version")
    .option("--registry <host:port[/ns]>", "cluster registry HOST:PORT[/NAMESPACE] (also FORAGER_REGISTRY): workers and envs pull instance images from it, or build them once and push; recorded in the group runs for remote workers")
    .action(async (o: ServeCliOptions) => {
      const registry = parseRegistryOption(o.registry);
      let token = o.token;
      if (!isLoopback(o.host) && !token) {
        token = randomBytes(24).toString("base64url");
        console.log(`bearer token (binding ${o.host}): ${token}`);
      }
      const images = Object.fromEntries((o.image ?? []).map((s) => [s.slice(0, s.lastIndexOf("=")), s.slice(s.lastIndexOf("=") + 1)]));
      const svc = await startService({
        host: o.host,
        port: o.port,
        token,
        dir: path.resolve(o.dir),
        redisUrl: o.redis,
        embeddedWorker: o.redis ? o.worker === true : undefined,
        taskFiles: o.tasks,
        allowTaskRecords: o.allowTaskRecords === true,
        images,
        worker: { concurrency: o.concurrency, evalConcurrency: o.evalConcurrency, logger: logger(), ...(registry ? { registry } : {}) },
        warmPool: o.warmPool,
        idleSeconds: o.idleSeconds,
        maxEnvs: o.maxEnvs,
        staleness: o.staleness !== undefined ? { maxVersions: o.staleness, action: o.stale } : undefined,
        weightsVersion: o.weightsVersion,
        logger: logger(),
      });
      console.log(`forager serve on ${svc.url} (OpenAPI: ${svc.url}/openapi.json)${o.redis ? `; queues on ${o.redis}` : ""}`);
      let stopping = false;
      const stop = () => {
        if (stopping) process.exit(130);
        stopping = true;
        console.error("stopping: removing envs, stopping workers");
        void svc.close().finally(() => process.exit(0));
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
}
