/**
 * forager on many hosts: what a worker adds to the queues when it shares a Redis (and a cluster
 * registry) with workers on other machines.
 *
 * - Images through the registry: {@link clusterImage} is the worker's image stage with a registry
 *   (images/registry.ts obtainInstanceImage: local → pull → build once and push), with a
 *   {@link RedisBuildLock} per image so two hosts asking for the same missing image cause one
 *   build; {@link evaluateHere} pulls the image a trajectory ran in before it is evaluated on
 *   another host. Every build, pull and push is an entry of the stream `forager:images:events`.
 * - Sources: {@link publishTaskSources} turns the local repository paths of a run's tasks into
 *   git bundles in the registry, so no task names a path that exists only on the submitter.
 * - Capacity: {@link hostCapacity} derives a worker's slots from its cores, memory and the
 *   sandbox limits.
 * - Heartbeats: {@link WorkerMonitor} writes each worker's slots, jobs in flight, images pulled
 *   or built and problems to `forager:workers` every few seconds; {@link listWorkers} reads them
 *   back for `forager status` (a host that died keeps its last heartbeat and shows as silent).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { EnvironmentError } from "../lib/errors";
import { silentLogger, type Logger } from "../lib/log";
import {
  ensureLocalImage,
  formatRegistry,
  obtainInstanceImage,
  publishSource,
  recordObtained,
  RegistrySettingsSchema,
  type BuildLock,
  type ObtainEvent,
  type ObtainResult,
  type RegistryLocation,
  type RegistrySettings,
  whileUnreachable,
} from "../images/registry";
import { defaultStateDir } from "../images/state";
import { SandboxConfigSchema } from "../sandbox/config";
import type { Task } from "../tasks/schema";
import { ImageEventSchema, WorkerHeartbeatSchema, type ImageEvent, type WorkerHeartbeat, type WorkerImageCounts } from "./records";
import type { RunSpec } from "./spec";
import { defaultImage, type EvaluateFn, type ImageFn } from "./stages";

/** Redis keys shared by every run of a Redis. */
export const CLUSTER_KEYS = {
  /** hash worker id → WorkerHeartbeat JSON */
  workers: "forager:workers",
  /** stream of image events (fields kind, tag, worker, host, bytes, seconds), capped */
  imageEvents: "forager:images:events",
  /** prefix of cluster locks (SET NX PX, renewed by the holder) */
  lock: "forager:lock:",
} as const;

/** Most entries kept in the image event stream (approximately). */
export const IMAGE_EVENTS_MAX = 100_000;

// ---- the build lock ------------------------------------------------------------------------------

const RENEW = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;

/**
 * A cluster lock in Redis (images/registry.ts BuildLock): `SET forager:lock:<key> "<holder> <rand>" NX
 * PX ttl`, renewed every ttl/3 by the holder while it works, deleted on release only by its holder.
 * A holder that dies (kill -9, a host gone) stops renewing: the lock expires after `ttlMs` and the
 * next waiter takes it.
 */
export class RedisBuildLock implements BuildLock {
  constructor(
    private readonly redis: Redis,
    /** Who holds it (a worker id), shown to waiters. */
    private readonly holder: string,
    private readonly opts: { ttlMs?: number; logger?: Logger } = {},
  ) {}

  /** Milliseconds a lock lives without renewal (default FORAGER_IMAGE_LOCK_SECONDS, else 60 s). */
  get ttlMs(): number {
    const env = Number(process.env.FORAGER_IMAGE_LOCK_SECONDS);
    return this.opts.ttlMs ?? (env > 0 ? env * 1000 : 60_000);
  }

  async tryAcquire(key: string): Promise<{ release: () => Promise<void> } | { heldBy: string }> {
    const k = CLUSTER_KEYS.lock + key;
    const token = `${this.holder} ${randomBytes(6).toString("hex")}`;
    const ttl = this.ttlMs;
    if ((await this.redis.set(k, token, "PX", ttl, "NX")) !== "OK") {
      const by = await this.redis.get(k);
      return { heldBy: by ? by.slice(0, by.lastIndexOf(" ")) : "another worker" };
    }
    const log = this.opts.logger ?? silentLogger;
    const timer = setInterval(() => {
      this.redis.eval(RENEW, 1, k, token, String(ttl)).then(
        (n) => {
          if (Number(n) !== 1) log.warn({ lock: k }, "lost a cluster lock (expired while Redis was away?): another host may build the same image");
        },
        () => undefined,
      );
    }, Math.max(100, Math.floor(ttl / 3)));
    timer.unref();
    return {
      release: async () => {
        clearInterval(timer);
        await this.redis.eval(RELEASE, 1, k, token);
      },
    };
  }
}

// ---- capacity ------------------------------------------------------------------------------------

/** Inputs of {@link hostCapacity} (all optional: this machine and the sandbox defaults). */
export interface CapacityInput {
  /** CPU cores (default os.availableParallelism()). */
  cores?: number;
  /** Memory, bytes (default min(os.totalmem(), the cgroup's limit)). */
  memoryBytes?: number;
  /** A sandbox's CPU limit, cores (default sandbox/config.ts: 1). */
  sandboxCpus?: number;
  /** A sandbox's memory limit, bytes (default sandbox/config.ts: 4 GiB). */
  sandboxMemoryBytes?: number;
  /** Fraction of its CPU limit an episode uses on average (it mostly waits on the model; default 0.125). */
  cpuShare?: number;
  /** Fraction of its memory limit an episode holds on average (default 0.25). */
  memoryShare?: number;
  /** Memory kept for the worker, the engine and the system, bytes (default 2 GiB). */
  reserveBytes?: number;
}

/** A host's slots and how they were derived. */
export interface HostCapacity {
  /** Rollout slots: min(byCpu, byMemory), at least 1. */
  slots: number;
  /** Evaluation slots: a quarter of the rollout slots, at most one per core, at least 1. */
  evalSlots: number;
  byCpu: number;
  byMemory: number;
  cores: number;
  memoryBytes: number;
  sandboxCpus: number;
  sandboxMemoryBytes: number;
}

/** The memory limit of this process's cgroup (v2 or v1), bytes; undefined when unlimited or unknown. */
export function cgroupMemoryLimit(): number | undefined {
  for (const f of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    try {
      const v = fs.readFileSync(f, "utf8").trim();
      const n = Number(v);
      if (v !== "max" && Number.isFinite(n) && n > 0 && n < 2 ** 60) return n;
    } catch {
      /* not this cgroup version */
    }
  }
  return undefined;
}

/**
 * Rollout slots of a host: ⌊cores / (sandbox CPUs × cpuShare)⌋ and ⌊(memory − reserve) /
 * (sandbox memory × memoryShare)⌋, the smaller, at least 1. With the sandbox defaults (1 CPU,
 * 4 GiB) that is 8 per core and one per GiB above 2 GiB: a 64-core, 256 GiB host gets 254.
 */
export function hostCapacity(o: CapacityInput = {}): HostCapacity {
  const sb = SandboxConfigSchema.parse({ image: "x" });
  const cores = o.cores ?? os.availableParallelism();
  const memoryBytes = o.memoryBytes ?? Math.min(os.totalmem(), cgroupMemoryLimit() ?? Infinity);
  const sandboxCpus = o.sandboxCpus ?? sb.cpus;
  const sandboxMemoryBytes = o.sandboxMemoryBytes ?? sb.memoryBytes;
  const byCpu = Math.floor(cores / (sandboxCpus * (o.cpuShare ?? 0.125)));
  const byMemory = Math.floor(Math.max(0, memoryBytes - (o.reserveBytes ?? 2 * 1024 ** 3)) / (sandboxMemoryBytes * (o.memoryShare ?? 0.25)));
  const slots = Math.max(1, Math.min(byCpu, byMemory));
  return { slots, evalSlots: Math.max(1, Math.min(Math.floor(slots / 4), Math.floor(cores))), byCpu, byMemory, cores, memoryBytes, sandboxCpus, sandboxMemoryBytes };
}

// ---- heartbeats and counters ----------------------------------------------------------------------

type Stage = "rollouts" | "evaluations" | "images";

/**
 * A worker's counters (jobs in flight and finished per stage, images local / pulled / built /
 * pushed with bytes and seconds, the last problem) and its heartbeat in Redis.
 */
export class WorkerMonitor {
  readonly inFlight = { rollouts: 0, evaluations: 0, images: 0 };
  readonly finished = { rollouts: 0, evaluations: 0, images: 0 };
  readonly images: WorkerImageCounts = { local: 0, pulled: 0, built: 0, pushed: 0, bytesPulled: 0, bytesPushed: 0, pullSeconds: 0, buildSeconds: 0 };
  private readonly seen = { local: new Set<string>(), pulled: new Set<string>(), built: new Set<string>(), pushed: new Set<string>() };
  private lastProblem?: { at: number; message: string };
  private timer?: NodeJS.Timeout;
  private state: WorkerHeartbeat["state"] = "running";
  private readonly startedAt = Date.now();

  constructor(
    private readonly redis: Redis,
    private readonly info: Pick<WorkerHeartbeat, "id" | "slots" | "capacity" | "registry" | "engine"> & { intervalMs?: number; logger?: Logger },
  ) {}

  get intervalMs(): number {
    return this.info.intervalMs ?? 5000;
  }

  /** Count a job of `stage` while `fn` runs. */
  async track<T>(stage: Stage, fn: () => Promise<T>): Promise<T> {
    this.inFlight[stage]++;
    try {
      return await fn();
    } finally {
      this.inFlight[stage]--;
      this.finished[stage]++;
    }
  }

  /** Count what obtaining an image did (and add it to the event stream). */
  onImageEvent = (e: ObtainEvent): void => {
    if (e.kind === "retry" || (e.kind === "wait" && /stale|foreign/.test(e.message))) this.problem(e.message);
    if (e.kind === "pulled") {
      this.images.bytesPulled += e.bytes ?? 0;
      this.images.pullSeconds += e.seconds ?? 0;
      this.count("pulled", e.tag);
    } else if (e.kind === "built") {
      this.images.buildSeconds += e.seconds ?? 0;
      this.count("built", e.tag);
    } else if (e.kind === "pushed") {
      this.images.bytesPushed += e.bytes ?? 0;
      this.count("pushed", e.tag);
    } else if (e.kind === "local") this.count("local", e.tag);
    else return;
    void this.redis
      .xadd(CLUSTER_KEYS.imageEvents, "MAXLEN", "~", String(IMAGE_EVENTS_MAX), "*", "kind", e.kind, "tag", e.tag, "worker", this.info.id, "host", os.hostname(), "bytes", String(e.bytes ?? 0), "seconds", String(e.seconds ?? 0), "at", String(Date.now()))
      .catch(() => undefined);
  };

  private count(kind: keyof WorkerMonitor["seen"], tag: string): void {
    if (this.seen[kind].has(tag)) return;
    this.seen[kind].add(tag);
    this.images[kind]++;
  }

  /** Remember a problem (shown by `forager status` until a newer one). */
  problem(message: string): void {
    this.lastProblem = { at: Date.now(), message: message.slice(0, 500) };
  }

  /** The heartbeat record now. */
  heartbeat(): WorkerHeartbeat {
    return WorkerHeartbeatSchema.parse({
      id: this.info.id,
      host: os.hostname(),
      pid: process.pid,
      startedAt: this.startedAt,
      heartbeatAt: Date.now(),
      intervalMs: this.intervalMs,
      state: this.state,
      slots: this.info.slots,
      ...(this.info.capacity ? { capacity: this.info.capacity } : {}),
      inFlight: this.inFlight,
      finished: this.finished,
      images: this.images,
      ...(this.info.registry ? { registry: this.info.registry } : {}),
      engine: this.info.engine,
      ...(this.lastProblem ? { lastProblem: this.lastProblem } : {}),
    });
  }

  /** Write the heartbeat now (errors ignored, and not waited for past 2 s: Redis may be away; the next one retries). */
  async beat(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const write = this.redis.hset(CLUSTER_KEYS.workers, this.info.id, JSON.stringify(this.heartbeat())).catch(() => undefined);
    await Promise.race([write, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }

  /** Start beating every `intervalMs`; drops heartbeats older than a day (workers long gone). */
  start(): void {
    void this.beat();
    void pruneWorkers(this.redis, 24 * 3600_000).catch(() => undefined);
    this.timer = setInterval(() => void this.beat(), this.intervalMs);
    this.timer.unref();
  }

  /** Say "stopping" (shutdown began) or "stopped" (last heartbeat; the timer ends). */
  async setState(state: WorkerHeartbeat["state"]): Promise<void> {
    this.state = state;
    if (state === "stopped" && this.timer) clearInterval(this.timer);
    await this.beat();
  }
}

/** A heartbeat read back, with how long ago it was written. */
export interface WorkerView extends WorkerHeartbeat {
  /** Seconds since the last heartbeat. */
  ageSeconds: number;
  /** "running", "stopping", "stopped", or "silent" (not heard for 3 intervals: dead, or cut off from Redis). */
  status: WorkerHeartbeat["state"] | "silent";
}

/** Every worker heartbeat in this Redis, by host then id; unreadable records are skipped (named in `errors`). */
export async function listWorkers(redis: Redis, now = Date.now()): Promise<{ workers: WorkerView[]; errors: string[] }> {
  const all = await redis.hgetall(CLUSTER_KEYS.workers);
  const workers: WorkerView[] = [];
  const errors: string[] = [];
  for (const [id, raw] of Object.entries(all)) {
    let hb: WorkerHeartbeat;
    try {
      hb = WorkerHeartbeatSchema.parse(JSON.parse(raw));
    } catch (err) {
      errors.push(`${CLUSTER_KEYS.workers} ${id}: ${(err as Error).message.split("\n")[0]}`);
      continue;
    }
    const ageSeconds = Math.max(0, (now - hb.heartbeatAt) / 1000);
    const silent = hb.state !== "stopped" && ageSeconds * 1000 > 3 * hb.intervalMs;
    workers.push({ ...hb, ageSeconds, status: silent ? "silent" : hb.state });
  }
  workers.sort((a, b) => a.host.localeCompare(b.host) || a.id.localeCompare(b.id));
  return { workers, errors };
}

/** Remove heartbeats older than `maxAgeMs`. @returns how many were removed. */
export async function pruneWorkers(redis: Redis, maxAgeMs: number, now = Date.now()): Promise<number> {
  const all = await redis.hgetall(CLUSTER_KEYS.workers);
  const old = Object.entries(all)
    .filter(([, raw]) => {
      try {
        return now - (JSON.parse(raw) as { heartbeatAt: number }).heartbeatAt > maxAgeMs;
      } catch {
        return true;
      }
    })
    .map(([id]) => id);
  if (old.length) await redis.hdel(CLUSTER_KEYS.workers, ...old);
  return old.length;
}

/**
 * The latest `count` image events (oldest first), and per tag who built, pulled and pushed it:
 * "built once in the cluster" is `builds[tag].length === 1`. Unreadable entries are skipped (named in `errors`).
 */
export async function readImageEvents(redis: Redis, count = 10_000): Promise<{ events: ImageEvent[]; byTag: Record<string, { built: string[]; pulled: string[]; pushed: string[] }>; errors: string[] }> {
  const raw = (await redis.xrevrange(CLUSTER_KEYS.imageEvents, "+", "-", "COUNT", count)).reverse();
  const events: ImageEvent[] = [];
  const errors: string[] = [];
  for (const [id, fields] of raw) {
    const o: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) o[fields[i]!] = fields[i + 1]!;
    const r = ImageEventSchema.safeParse(o);
    if (r.success) events.push(r.data);
    else errors.push(`${CLUSTER_KEYS.imageEvents} ${id}: ${r.error.issues.map((x) => `${x.path.join(".")}: ${x.message}`).join("; ")}`);
  }
  const byTag: Record<string, { built: string[]; pulled: string[]; pushed: string[] }> = {};
  for (const e of events) {
    if (e.kind === "local") continue;
    const t = (byTag[e.tag] ??= { built: [], pulled: [], pushed: [] });
    t[e.kind].push(e.worker);
  }
  return { events, byTag, errors };
}

const mb = (n: number) => `${(n / 1e6).toFixed(n >= 1e8 ? 0 : 1)} MB`;
const ago = (s: number) => (s < 90 ? `${s.toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`);

/** The workers as a table for people: per host, per worker, slots, in flight, images, last heartbeat. */
export function formatWorkers(ws: readonly WorkerView[]): string {
  if (!ws.length) return "workers: none has reported to this Redis";
  const hosts = new Map<string, WorkerView[]>();
  for (const w of ws) hosts.set(w.host, [...(hosts.get(w.host) ?? []), w]);
  const lines = [`workers: ${ws.filter((w) => w.status === "running").length} running on ${new Set(ws.filter((w) => w.status === "running").map((w) => w.host)).size} host(s), ${ws.length} known`];
  lines.push(`  ${"HOST / WORKER".padEnd(30)} ${"STATE".padEnd(8)} ${"SLOTS".padStart(9)} ${"IN FLIGHT".padStart(10)} ${"DONE".padStart(9)}  ${"IMAGES built/pulled/here (MB pulled)".padEnd(38)} LAST HEARTBEAT`);
  for (const [host, list] of hosts) {
    const slots = list.filter((w) => w.status === "running").reduce((a, w) => a + w.slots.rollouts, 0);
    lines.push(`  ${host} (${slots} rollout slots running)`);
    for (const w of list) {
      const img = `${w.images.built}/${w.images.pulled}/${w.images.local} (${mb(w.images.bytesPulled)})`;
      lines.push(
        `    ${w.id.padEnd(28)} ${w.status.padEnd(8)} ${`${w.slots.rollouts}+${w.slots.evaluations}e`.padStart(9)} ${`${w.inFlight.rollouts}+${w.inFlight.evaluations}e`.padStart(10)} ${`${w.finished.rollouts}+${w.finished.evaluations}e`.padStart(9)}  ${img.padEnd(38)} ${ago(w.ageSeconds)}`,
      );
      if (w.lastProblem && Date.now() - w.lastProblem.at < 3600_000) lines.push(`      last problem (${ago((Date.now() - w.lastProblem.at) / 1000)}): ${w.lastProblem.message.slice(0, 200)}`);
    }
  }
  return lines.join("\n");
}

// ---- the image stage and evaluations with a registry ------------------------------------------------

/** The registry a worker uses for a run: its own settings, else the run's location (with default tuning), else none. */
export function registryFor(own: RegistrySettings | undefined, spec: Pick<RunSpec, "registry">): RegistrySettings | undefined {
  if (own) return own;
  if (!spec.registry) return undefined;
  const wait = Number(process.env.FORAGER_REGISTRY_WAIT_SECONDS);
  return RegistrySettingsSchema.parse({ ...spec.registry, ...(wait >= 0 && process.env.FORAGER_REGISTRY_WAIT_SECONDS ? { waitSeconds: wait } : {}) });
}

/** What {@link clusterImage} and {@link evaluateHere} need. */
export interface ClusterDeps {
  /** The worker's own registry (wins over the run's). */
  registry?: RegistrySettings;
  lock: BuildLock;
  monitor?: WorkerMonitor;
  logger?: Logger;
  /** Image state dir (index, source bundles, build logs; default images/state.ts defaultStateDir). */
  stateDir?: string;
}

/**
 * The image stage with a cluster registry (else {@link defaultImage}): a run's pre-built tag is
 * used when on this host, else pulled; a task's instance image is had by
 * images/registry.ts obtainInstanceImage (local → pulled → built once in the cluster and pushed).
 * @throws EnvironmentError (the queue retries the job).
 */
export function clusterImage(d: ClusterDeps): ImageFn {
  return async (task, ctx) => {
    const r = registryFor(d.registry, ctx.spec);
    if (!r) return defaultImage(task, ctx);
    const log = (d.logger ?? ctx.logger).child({ task: task.id });
    const onEvent = (e: ObtainEvent) => d.monitor?.onImageEvent(e);
    let res: ObtainResult;
    try {
      const pre = ctx.spec.images[task.id];
      res = pre ? await ensureLocalImage(r, pre, { onEvent }) : await obtainInstanceImage(task.image, r, { lock: d.lock, onEvent, logger: log, build: d.stateDir ? { stateDir: d.stateDir } : {} });
    } catch (err) {
      d.monitor?.problem(`image for ${task.id}: ${(err as Error).message}`);
      if (err instanceof EnvironmentError) throw err;
      throw new EnvironmentError(`image for ${task.id}: ${(err as Error).message}`, { cause: err });
    }
    await recordObtained(d.stateDir ?? defaultStateDir(), res).catch(() => undefined);
    return res.tag;
  };
}

/**
 * An evaluation stage that first makes sure the image the trajectory ran in is on this host
 * (pulled from the run's registry when the rollout ran elsewhere), then runs `inner`.
 */
export function evaluateHere(inner: EvaluateFn, d: Omit<ClusterDeps, "lock">): EvaluateFn {
  return async (task, t, ctx) => {
    const r = registryFor(d.registry, ctx.spec);
    if (r && t.image && t.evaluation?.pending === true) {
      try {
        await ensureLocalImage(r, t.image, { onEvent: (e) => d.monitor?.onImageEvent(e) });
      } catch (err) {
        d.monitor?.problem(`image for the evaluation of ${t.id}: ${(err as Error).message}`);
        throw err instanceof EnvironmentError ? err : new EnvironmentError((err as Error).message, { cause: err });
      }
    }
    return inner(task, t, ctx);
  };
}

// ---- sources ------------------------------------------------------------------------------------

/** One repository's bundle published for a run. */
export interface PublishedRepo {
  repo: string;
  /** The local path the tasks named. */
  from: string;
  commits: number;
  tasks: number;
  bytes: number;
  uploaded: boolean;
  digest: string;
}

/**
 * With a registry, no task may name a path of the submitting host: the repositories of tasks
 * whose image source is a local path or bundle are published (images/registry.ts publishSource,
 * one bundle per repository with every commit the run needs) and those tasks rewritten to the
 * registry source, with the full commit sha. Tasks with a URL source, or none (run images), are
 * left as they are.
 * @throws EnvironmentError when a path is missing or a commit is not in it; RegistryUnreachableError.
 */
export async function publishTaskSources(
  tasks: readonly Task[],
  r: RegistrySettings,
  opts: { onPublished?: (p: PublishedRepo) => void; onRetry?: (message: string) => void } = {},
): Promise<{ tasks: Task[]; published: PublishedRepo[] }> {
  const groups = new Map<string, { repo: string; tasks: number[] }>();
  tasks.forEach((t, i) => {
    const s = t.image.source;
    if (s?.type !== "path" && s?.type !== "bundle") return;
    const from = path.resolve(s.path);
    const g = groups.get(from) ?? { repo: t.image.repo, tasks: [] };
    g.tasks.push(i);
    groups.set(from, g);
  });
  const out = [...tasks];
  const published: PublishedRepo[] = [];
  for (const [from, g] of groups) {
    if (!fs.existsSync(from)) throw new EnvironmentError(`repository ${g.repo}: ${from} does not exist on this host`);
    const commits = [...new Set(g.tasks.map((i) => tasks[i]!.image.commit))];
    const p = await whileUnreachable(
      r,
      () => publishSource(r, g.repo, from, commits),
      (err, delay, waited) => opts.onRetry?.(`${err.message}; retrying in ${delay.toFixed(0)} s (waited ${waited.toFixed(0)} of ${r.waitSeconds} s)`),
    );
    for (const i of g.tasks) {
      const t = tasks[i]!;
      out[i] = { ...t, image: { ...t.image, source: p.source, commit: p.commits[t.image.commit] ?? t.image.commit } };
    }
    const rec: PublishedRepo = { repo: g.repo, from, commits: commits.length, tasks: g.tasks.length, bytes: p.bytes, uploaded: p.uploaded, digest: p.source.digest };
    published.push(rec);
    opts.onPublished?.(rec);
  }
  return { tasks: out, published };
}

/** The location part of registry settings (what a run spec records). */
export function registryLocation(r: RegistrySettings): RegistryLocation {
  return { host: r.host, ...(r.namespace ? { namespace: r.namespace } : {}), ...(r.scheme ? { scheme: r.scheme } : {}) };
}

export { formatRegistry };
