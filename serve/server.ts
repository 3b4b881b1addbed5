/**
 * `forager serve`: forager as the rollout engine of an RL trainer, over HTTP (fastify).
 *
 *   POST   /v1/rollouts               a GRPO-style group (tasks × samples) → { id }
 *   GET    /v1/rollouts/{id}          status, and when done every trajectory grouped per task
 *   GET    /v1/rollouts/{id}/events   server-sent events: progress, each trajectory, done
 *   GET    /v1/rollouts/{id}/tokens   token records (ids, logprobs, loss mask): JSONL, or ?format=parquet
 *   POST   /v1/envs                   step API: an env and its first observation
 *   POST   /v1/envs/{id}/step         one action → observation / done, reward
 *   DELETE /v1/envs/{id}              destroy the env
 *   GET    /v1/weights, POST /v1/weights   the weights version (switch: pause, drain, resume)
 *   GET    /openapi.json  /metrics  /healthz
 *
 * Loopback by default; bound elsewhere it requires a bearer token (`Authorization: Bearer T`) on
 * every route but /healthz. Errors are JSON `{ error, issues? }` with 400 (invalid body, zod
 * issues), 401, 404, 409 (an env busy), 429 (too many envs), 502 (an env that could not start).
 */
import fs from "node:fs";
import Fastify, { type FastifyInstance, type FastifyReply } from "fastify";
import type { z } from "zod";
import { defaultResolveImage, type SandboxFactory } from "../agent/episode";
import { obtainInstanceImage } from "../images/registry";
import { preloadTokenizer } from "../inference-client/tokenizer";
import { silentLogger, type Logger } from "../lib/log";
import { harnessEvaluator, type Evaluator } from "../rewards/evaluator";
import { liveSandboxes } from "../sandbox/sandbox";
import { loadTaskFiles } from "../tasks/files";
import type { Task } from "../tasks/schema";
import type { WorkerOptions } from "../orchestrator/worker";
import type { RolloutFn } from "../orchestrator/stages";
import { EnvError, EnvManager } from "./envs";
import { renderMetrics, ServeCounters, type MetricFamily } from "./metrics";
import { openApiDocument } from "./openapi";
import { WarmPool } from "./pool";
import { RolloutService, type StalenessSetting } from "./rollouts";
import { EnvCreateSchema, RolloutRequestSchema, StepRequestSchema, WeightsRequestSchema, badRequest } from "./schema";
import { tokenRecordsJsonl, tokenRecordsParquet } from "./tokens";
import { WeightsGate } from "./weights";

export interface ServeOptions {
  /** Interface to bind (default 127.0.0.1). Anything but loopback needs `token`. */
  host?: string;
  /** Port (default 8090; 0: a free one). */
  port?: number;
  /** Bearer token required on every route but /healthz (required off loopback). */
  token?: string;
  /** Service directory (group runs, private Redis data). */
  dir: string;
  /** Remote workers: this Redis (else a private redis-server and workers in this process). */
  redisUrl?: string;
  /** Also run workers in this process with `redisUrl` (default: only without it). */
  embeddedWorker?: boolean;
  /** Task files whose ids requests may name. */
  taskFiles?: string[];
  /**
   * Accept whole Task records in requests (default false: task ids only). Even then a record
   * may not name an image source (a host path, a bundle, a git URL) nor a base image other than
   * forager's: the service never builds from what a request points at on the host. A record's
   * build steps run on the host's engine: only for callers you trust.
   */
  allowTaskRecords?: boolean;
  /** Tasks whose ids requests may name (besides taskFiles). */
  tasks?: Task[];
  /** Image tag per task id. */
  images?: Record<string, string>;
  /** Embedded workers' settings (concurrency, stages for tests). */
  worker?: Omit<WorkerOptions, "redisUrl" | "rollout">;
  /** Replace the rollout stage (benchmarks: a stub sandbox). */
  rollout?: RolloutFn;
  /** Step API: the evaluator for an image (default the SWE-bench harness, rewards/evaluate.ts). */
  evaluator?: (image: string) => Evaluator;
  /** Step API and embedded rollouts: how sandboxes are made (default the warm pool over Sandbox.create). */
  sandboxFactory?: SandboxFactory;
  /** Warm pool: started sandboxes kept ready per image configuration (default 0: none). */
  warmPool?: number;
  /** Step API: an env waiting for an action this long is removed, seconds (default 600). */
  idleSeconds?: number;
  maxEnvs?: number;
  staleness?: StalenessSetting;
  /** Initial weights version. */
  weightsVersion?: string;
  /** Group progress poll, ms. */
  pollMs?: number;
  logger?: Logger;
}

export interface Service {
  app: FastifyInstance;
  /** Base URL, e.g. http://127.0.0.1:8090. */
  url: string;
  gate: WeightsGate;
  envs: EnvManager;
  rollouts: RolloutService;
  pool: WarmPool;
  counters: ServeCounters;
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** Is `host` a loopback interface (no token needed)? */
export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith("127.");
}

/** Is a Host header's name a loopback one (127.0.0.0/8 as an address, ::1, localhost)? */
export function isLoopbackName(name: string): boolean {
  const h = name.toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Most characters of a request an error message repeats. */
export const ERROR_ECHO_CHARS = 300;

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}… (${s.length - n} more characters)` : s;
}

/**
 * Why a Task record from a request is refused, or undefined: an image source (a host path, a
 * bundle file, a git URL: the service would build from what the request points at on the host)
 * or a base image that is not forager's.
 */
export function taskRecordProblem(t: Task): string | undefined {
  if (t.image.source) return `task ${clip(JSON.stringify(t.id), 200)}: an image source from a request (${t.image.source.type}) is refused; give the image with --image or load the task with --tasks`;
  if (!t.image.baseImage.startsWith("forager/base:")) return `task ${clip(JSON.stringify(t.id), 200)}: base image ${clip(t.image.baseImage, 100)} is not forager's`;
  return undefined;
}

/**
 * Start the service: load tasks, Redis and workers, the HTTP server.
 * @throws Error when bound off loopback without a token, or when a task file has no task.
 */
export async function startService(opts: ServeOptions): Promise<Service> {
  const host = opts.host ?? "127.0.0.1";
  if (!isLoopback(host) && !opts.token) throw new Error(`binding ${host} (not loopback) needs a bearer token (--token or FORAGER_SERVE_TOKEN)`);
  const log = (opts.logger ?? silentLogger).child({ component: "serve" });
  const tasks = new Map<string, Task>();
  for (const t of opts.tasks ?? []) tasks.set(t.id, t);
  if (opts.taskFiles?.length) {
    const loaded = await loadTaskFiles(opts.taskFiles);
    for (const e of loaded.errors.slice(0, 5)) log.warn({ error: e }, "bad task line");
    for (const t of loaded.tasks) tasks.set(t.id, t);
  }
  preloadTokenizer();
  fs.mkdirSync(opts.dir, { recursive: true });
  const images = opts.images ?? {};
  const gate = new WeightsGate(opts.weightsVersion);
  const counters = new ServeCounters();
  const pool = new WarmPool({ size: opts.warmPool ?? 0, logger: opts.logger });
  const sandboxFactory: SandboxFactory = opts.sandboxFactory ?? pool.factory;
  const registry = opts.worker?.registry;
  const resolveImage = async (t: Task) => images[t.id] ?? (registry ? (await obtainInstanceImage(t.image, registry, { logger: log })).tag : defaultResolveImage(t));
  const envs = new EnvManager({
    idleSeconds: opts.idleSeconds,
    maxEnvs: opts.maxEnvs,
    resolveImage,
    evaluator: opts.evaluator ?? ((image) => harnessEvaluator(image)),
    sandboxFactory,
    gate,
    logger: opts.logger,
    onFinished: (t) => counters.trajectory(t, "envs"),
  });
  const rollouts = new RolloutService({
    dir: opts.dir,
    redisUrl: opts.redisUrl,
    embeddedWorker: opts.embeddedWorker,
    worker: opts.worker,
    rollout: opts.rollout,
    gate,
    sandboxFactory: opts.warmPool ? sandboxFactory : opts.sandboxFactory,
    staleness: opts.staleness,
    images,
    pollMs: opts.pollMs,
    logger: opts.logger,
    onTrajectory: (t) => counters.trajectory(t, "rollouts"),
  });
  await rollouts.start();

  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 * 1024 });
  const fail = (reply: FastifyReply, status: number, error: string, issues?: string[]) => {
    counters.failure(`http_${status}`);
    // Bounded: an error never echoes more than a few hundred bytes of what the request sent.
    const e = clip(error, ERROR_ECHO_CHARS);
    const is = issues?.slice(0, 20).map((i) => clip(i, ERROR_ECHO_CHARS));
    return reply.code(status).send(is ? { error: e, issues: is } : { error: e });
  };
  const parse = <S extends z.ZodType>(schema: S, body: unknown, reply: FastifyReply): z.infer<S> | undefined => {
    const r = schema.safeParse(body ?? {});
    if (r.success) return r.data;
    const b = badRequest(r.error);
    void fail(reply, 400, b.error, b.issues);
    return undefined;
  };
  const taskOf = (ref: string | Task): Task | string => {
    if (typeof ref === "string") return tasks.get(ref) ?? `unknown task ${clip(JSON.stringify(ref), 200)} (load it with --tasks)`;
    if (!opts.allowTaskRecords) return "whole Task records are not accepted: name a task loaded with --tasks (or start the service with --allow-task-records)";
    return taskRecordProblem(ref) ?? ref;
  };

  if (!opts.token) {
    // Loopback without a token: a page of another site must not reach the service by DNS
    // rebinding, so the Host header must name a loopback host (as forager view does).
    app.addHook("onRequest", async (req, reply) => {
      const name = (req.headers.host ?? "").replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
      if (!isLoopbackName(name)) return fail(reply, 403, "Host must be a loopback name (127.0.0.1, localhost, ::1)");
    });
  }
  if (opts.token) {
    const expected = `Bearer ${opts.token}`;
    app.addHook("onRequest", async (req, reply) => {
      if (req.url === "/healthz") return;
      if (req.headers.authorization !== expected) return fail(reply, 401, "missing or wrong bearer token");
    });
  }

  app.get("/healthz", async () => ({ ok: true }));
  app.get("/openapi.json", async () => openApiDocument());

  app.post("/v1/rollouts", async (req, reply) => {
    const body = parse(RolloutRequestSchema, req.body, reply);
    if (!body) return reply;
    const ts: Task[] = [];
    for (const ref of body.tasks) {
      const t = taskOf(ref);
      if (typeof t === "string") return fail(reply, 400, t);
      ts.push(t);
    }
    if (new Set(ts.map((t) => t.id)).size !== ts.length) return fail(reply, 400, "a task appears twice in the group");
    if (body.weightsVersion && body.weightsVersion !== gate.version) {
      await gate.switchTo(body.weightsVersion);
      counters.weightSwitches++;
    }
    const r = await rollouts.submit(body, ts);
    return reply.code(201).send({ id: r.id, expected: r.expected, tasks: ts.length });
  });

  app.get<{ Params: { id: string }; Querystring: { partial?: string } }>("/v1/rollouts/:id", async (req, reply) => {
    const v = rollouts.view(req.params.id, req.query.partial === "1" || req.query.partial === "true");
    return v ?? fail(reply, 404, `no rollout group ${req.params.id}`);
  });

  app.get<{ Params: { id: string } }>("/v1/rollouts/:id/events", async (req, reply) => {
    if (!rollouts.has(req.params.id)) return fail(reply, 404, `no rollout group ${req.params.id}`);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      unsubscribe?.();
      res.end();
    };
    const unsubscribe = rollouts.subscribe(req.params.id, (e) => {
      if (ended) return;
      res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      if (e.type === "done") queueMicrotask(end);
    });
    req.raw.on("close", end);
  });

  app.get<{ Params: { id: string }; Querystring: { format?: string } }>("/v1/rollouts/:id/tokens", async (req, reply) => {
    if (!rollouts.has(req.params.id)) return fail(reply, 404, `no rollout group ${req.params.id}`);
    const ts = rollouts.trajectories(req.params.id);
    if (req.query.format === "parquet") {
      const buf = await tokenRecordsParquet(ts);
      return reply.type("application/vnd.apache.parquet").send(Buffer.from(buf));
    }
    return reply.type("application/x-ndjson").send(tokenRecordsJsonl(ts));
  });

  app.post("/v1/envs", async (req, reply) => {
    const body = parse(EnvCreateSchema, req.body, reply);
    if (!body) return reply;
    const t = taskOf(body.task);
    if (typeof t === "string") return fail(reply, 400, t);
    try {
      const r = await envs.create(t, body.agent ?? {}, body.image);
      return reply.code(201).send({ envId: r.envId, observation: r.observation, done: false });
    } catch (err) {
      if (err instanceof EnvError) return fail(reply, err.status, err.message);
      throw err;
    }
  });

  app.post<{ Params: { id: string } }>("/v1/envs/:id/step", async (req, reply) => {
    const body = parse(StepRequestSchema, req.body, reply);
    if (!body) return reply;
    try {
      const r = await envs.step(req.params.id, body);
      counters.steps++;
      return r;
    } catch (err) {
      if (err instanceof EnvError) return fail(reply, err.status, err.message);
      throw err;
    }
  });

  app.delete<{ Params: { id: string } }>("/v1/envs/:id", async (req, reply) => {
    const ok = await envs.remove(req.params.id);
    return ok ? { deleted: true } : fail(reply, 404, `no env ${req.params.id}`);
  });

  app.get("/v1/envs", async () => ({ envs: envs.ids() }));

  app.get("/v1/weights", async () => gate.state());
  app.post("/v1/weights", async (req, reply) => {
    const body = parse(WeightsRequestSchema, req.body, reply);
    if (!body) return reply;
    const { drainedMs } = await gate.switchTo(body.version);
    counters.weightSwitches++;
    log.info({ version: body.version, drainedMs }, "weights switched");
    return { ...gate.state(), drainedMs };
  });

  app.get("/metrics", async (_req, reply) => {
    const depths = await rollouts.queueDepths().catch(() => ({}) as Record<string, number>);
    const ps = pool.stats();
    const gauges: MetricFamily[] = [
      { name: "forager_rollouts_in_flight", help: "Rollout episodes running now (all groups).", type: "gauge", samples: [{ labels: {}, value: rollouts.inFlight() }] },
      { name: "forager_queue_depth", help: "Jobs waiting per stage queue.", type: "gauge", samples: Object.entries(depths).map(([queue, value]) => ({ labels: { queue }, value })) },
      { name: "forager_envs", help: "Step API envs alive.", type: "gauge", samples: [{ labels: {}, value: envs.size }] },
      { name: "forager_containers_alive", help: "Sandboxes (containers) alive in this process.", type: "gauge", samples: [{ labels: {}, value: liveSandboxes().size }] },
      { name: "forager_warm_pool_ready", help: "Warm sandboxes ready.", type: "gauge", samples: [{ labels: {}, value: ps.ready }] },
      { name: "forager_warm_pool_takes_total", help: "Sandboxes taken, from the pool (hit) or started on the spot (miss).", type: "counter", samples: [{ labels: { result: "hit" }, value: ps.hits }, { labels: { result: "miss" }, value: ps.misses }] },
      { name: "forager_model_requests_in_flight", help: "Model requests holding a weights lease.", type: "gauge", samples: [{ labels: {}, value: gate.state().inFlight }] },
    ];
    return reply.type("text/plain; version=0.0.4").send(renderMetrics([...gauges, ...counters.families()]));
  });

  app.setErrorHandler((err, _req, reply) => {
    log.error({ err }, "request failed");
    void fail(reply, 500, (err as Error).message);
  });

  await app.listen({ host, port: opts.port ?? 8090 });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : (opts.port ?? 8090);
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  log.info({ url }, "forager serve listening");

  let closing: Promise<void> | undefined;
  return {
    app,
    url,
    gate,
    envs,
    rollouts,
    pool,
    counters,
    close: () =>
      (closing ??= (async () => {
        await envs.close();
        await app.close();
        await rollouts.close();
        await pool.close();
      })()),
  };
}
