/**
 * The `forager view` web server (fastify): a JSON API over the sources (view/data.ts), server-sent
 * events for live runs, the static front end (view/public) and its libraries served from
 * node_modules (chart.js, diff2html), and Bull Board under /queues when a Redis URL is given.
 *
 * Access: bound to a loopback address, no token is asked for, but the Host header must name a
 * loopback host (a page of another site cannot reach the server by DNS rebinding). Bound to any
 * other address, every request needs the token: `?token=` (then kept in an HttpOnly cookie),
 * `Authorization: Bearer <token>`, or that cookie.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import fastifyStatic from "@fastify/static";
import { Redis } from "ioredis";
import { runStatus, openQueues, closeQueues, type RunStatus, type StageQueues } from "../orchestrator/run";
import { connectionOptions } from "../orchestrator/worker";
import { childLogger } from "../lib/log";
import type { Source } from "./data";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const COOKIE = "forager_view_token";

/** The package directory of an installed npm package (`…/node_modules/<name>`). */
function packageDir(name: string): string {
  const main = require.resolve(name);
  const marker = `${path.sep}node_modules${path.sep}${name}${path.sep}`;
  const i = main.lastIndexOf(marker);
  if (i < 0) throw new Error(`cannot locate the package directory of ${name} (resolved ${main})`);
  return main.slice(0, i + marker.length - 1);
}

/** Is `host` (an address or a name) a loopback one: 127.0.0.0/8, ::1, localhost? */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === "::ffff:127.0.0.1";
}

export interface ViewServerOptions {
  sources: Source[];
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** TCP port (default 8080; 0 picks a free one). */
  port?: number;
  /** Redis URL: live figures of runs from their Redis bookkeeping, and Bull Board under /queues. */
  redisUrl?: string;
  /** Token to require; default: a random one when the host is not loopback, none otherwise. */
  token?: string;
  /** Poll period of live sources, ms (default 1000). */
  pollMs?: number;
}

export interface ViewServer {
  app: FastifyInstance;
  /** Base URL (`http://host:port`), without the token. */
  url: string;
  /** The URL to open (with `?token=` when one is required). */
  openUrl: string;
  /** The token required, if any. */
  token?: string;
  close(): Promise<void>;
}

function tokenOf(req: FastifyRequest): string | undefined {
  const q = (req.query as Record<string, unknown> | undefined)?.token;
  if (typeof q === "string") return q;
  const auth = req.headers.authorization;
  if (auth?.startsWith("Bearer ")) return auth.slice(7).trim();
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === COOKIE) return decodeURIComponent(v.join("="));
  }
  return undefined;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Start the server and listen.
 * @throws Error when the port cannot be bound (fastify's message, e.g. EADDRINUSE).
 */
export async function startViewServer(opts: ViewServerOptions): Promise<ViewServer> {
  const host = opts.host ?? "127.0.0.1";
  const loopback = isLoopback(host);
  const token = opts.token ?? (loopback ? undefined : randomBytes(16).toString("hex"));
  const pollMs = opts.pollMs ?? 1000;
  const log = childLogger("view");
  const sources = new Map(opts.sources.map((s) => [s.id, s]));
  const app = Fastify({ logger: false, forceCloseConnections: true });
  let redis: Redis | undefined;
  let queues: StageQueues | undefined;

  app.addHook("onRequest", async (req, reply) => {
    if (token) {
      const given = tokenOf(req);
      if (given === undefined || !sameToken(given, token)) {
        return reply.code(401).type("text/plain").send("forager view: a token is required (?token=… or Authorization: Bearer …)\n");
      }
      const q = (req.query as Record<string, unknown> | undefined)?.token;
      if (typeof q === "string") reply.header("set-cookie", `${COOKIE}=${encodeURIComponent(q)}; Path=/; HttpOnly; SameSite=Strict`);
    } else {
      const hostName = (req.headers.host ?? "").replace(/:\d+$/, "");
      if (!isLoopback(hostName)) return reply.code(403).type("text/plain").send("forager view: Host must be a loopback name\n");
    }
  });

  const source = (id: string): Source => {
    const s = sources.get(id);
    if (!s) throw Object.assign(new Error(`no source ${id}`), { statusCode: 404 });
    return s;
  };

  /** The run's Redis figures; undefined without Redis, or when it does not answer within 2 s (the error is kept). */
  let redisError: string | undefined;
  const live = async (s: Source): Promise<RunStatus | undefined> => {
    const o = s.overview();
    if (!redis || !o.runId) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("Redis did not answer within 2 s")), 2000);
    });
    try {
      const st = await Promise.race([runStatus(redis, o.runId), deadline]);
      redisError = undefined;
      return st;
    } catch (err) {
      redisError = (err as Error).message;
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  };

  app.get("/favicon.ico", async (_req, reply) => reply.code(204).send());
  app.get("/api/sources", async () =>
    opts.sources.map((s) => {
      const o = s.overview();
      return {
        id: o.id,
        kind: o.kind,
        path: o.path,
        runId: o.runId,
        tasks: o.tasks,
        samples: o.samples,
        expected: o.expected,
        trajectories: o.trajectories,
        resolved: o.resolved,
        failed: o.failures.length,
        metrics: o.metrics,
        ...(o.accounting ? { tasksDone: o.accounting.tasksDone } : {}),
        complete: o.complete,
      };
    }),
  );
  app.get<{ Params: { id: string } }>("/api/sources/:id", async (req) => {
    const s = source(req.params.id);
    const st = await live(s);
    return { ...s.overview(), live: st, redis: Boolean(redis), redisError: redis ? redisError : undefined };
  });
  app.get<{ Params: { id: string }; Querystring: { id?: string } }>("/api/sources/:id/trajectory", async (req, reply) => {
    const t = req.query.id ? source(req.params.id).trajectory(req.query.id) : undefined;
    if (!t) return reply.code(404).send({ error: `no trajectory ${req.query.id ?? ""}` });
    return t;
  });
  app.get<{ Params: { id: string }; Querystring: { id?: string } }>("/api/sources/:id/task", async (req, reply) => {
    const t = req.query.id ? source(req.params.id).task(req.query.id) : undefined;
    if (!t) return reply.code(404).send({ error: `no task ${req.query.id ?? ""} in this source` });
    return t;
  });

  // Server-sent events: an "update" event whenever the source's files (or its Redis figures) change.
  app.get<{ Params: { id: string } }>("/api/sources/:id/events", (req, reply) => {
    const s = source(req.params.id);
    reply.hijack();
    reply.raw.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    let last = "";
    let busy = false;
    const tick = async () => {
      if (busy) return;
      busy = true;
      try {
        const o = s.overview();
        const st = await live(s);
        const sig = o.signature + JSON.stringify(st ?? null);
        if (sig !== last) {
          last = sig;
          reply.raw.write(`event: update\ndata: ${JSON.stringify({ trajectories: o.trajectories, resolved: o.resolved, failed: o.failures.length, complete: o.complete, live: st })}\n\n`);
        } else {
          reply.raw.write(": keep-alive\n\n");
        }
      } catch (err) {
        log.warn({ err, source: s.id }, "live update failed");
      } finally {
        busy = false;
      }
    };
    void tick();
    const timer = setInterval(() => void tick(), pollMs);
    req.raw.on("close", () => clearInterval(timer));
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    const code = err.statusCode ?? 500;
    if (code >= 500) log.error({ err }, "request failed");
    void reply.code(code).send({ error: err.message });
  });

  // The front end and its libraries (served from node_modules; no CDN, no build step).
  await app.register(async (inst) => {
    await inst.register(fastifyStatic, { root: path.join(HERE, "public"), prefix: "/", index: ["index.html"] });
    await inst.register(fastifyStatic, { root: path.join(packageDir("chart.js"), "dist"), prefix: "/vendor/chart.js/", decorateReply: false });
    await inst.register(fastifyStatic, { root: path.join(packageDir("diff2html"), "bundles"), prefix: "/vendor/diff2html/", decorateReply: false });
  });

  if (opts.redisUrl) {
    // The view's own connection fails fast when Redis is away (the pages must not hang on it).
    redis = new Redis({ ...connectionOptions(opts.redisUrl), maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true });
    redis.on("error", () => undefined);
    await redis.connect().catch((err: unknown) => log.warn({ err }, "Redis does not answer (yet)"));
    queues = openQueues(opts.redisUrl);
    // Loaded only when a Redis URL is given: bull-board and its UI bundle are the heaviest part of
    // the view and a view over a run directory alone never uses them.
    const { createBullBoard } = await import("@bull-board/api");
    const { BullMQAdapter } = await import("@bull-board/api/bullMQAdapter");
    const { FastifyAdapter } = await import("@bull-board/fastify");
    const board = new FastifyAdapter();
    createBullBoard({ queues: [queues.images, queues.rollouts, queues.evals].map((q) => new BullMQAdapter(q, { readOnlyMode: false })), serverAdapter: board });
    board.setBasePath("/queues");
    await app.register(board.registerPlugin(), { prefix: "/queues" });
  }

  await app.listen({ host, port: opts.port ?? 8080 });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : (opts.port ?? 8080);
  const shown = host.includes(":") ? `[${host}]` : host;
  const url = `http://${shown === "0.0.0.0" || shown === "[::]" ? "127.0.0.1" : shown}:${port}`;
  return {
    app,
    url,
    openUrl: token ? `${url}/?token=${token}` : `${url}/`,
    token,
    async close() {
      await app.close();
      if (queues) await closeQueues(queues).catch(() => undefined);
      redis?.disconnect();
    },
  };
}
