/**
 * Warm pools: N started sandboxes per sandbox configuration (image, workdir, limits, environment),
 * kept ready so that a step env or a rollout takes one instead of waiting for a container start.
 * A sandbox is taken once (never reused); the pool refills in the background. Pooled sandboxes live
 * `lifetimeSeconds + maxIdleSeconds` and are replaced after `maxIdleSeconds` unused, so a taken
 * one always has at least the lifetime its episode asked for.
 */
import { silentLogger, type Logger } from "../lib/log";
import type { SandboxConfigInput } from "../sandbox/config";
import { Sandbox } from "../sandbox/sandbox";
import type { EnvSandbox } from "../agent/env";

/** Makes a sandbox for an episode (default Sandbox.create). */
export type SandboxMaker = (cfg: SandboxConfigInput) => Promise<EnvSandbox>;

export interface WarmPoolOptions {
  /** Sandboxes kept ready per configuration (0: no pool). */
  size: number;
  /** Unused this long, a pooled sandbox is replaced, seconds (default 600). */
  maxIdleSeconds?: number;
  /** Makes a sandbox (default Sandbox.create). */
  create?: SandboxMaker;
  logger?: Logger;
}

interface Entry {
  sandbox: EnvSandbox;
  at: number;
}

export interface PoolStats {
  ready: number;
  hits: number;
  misses: number;
  starting: number;
}

/** The pool key of a sandbox configuration: everything but labels. */
function keyOf(cfg: SandboxConfigInput): string {
  const { labels: _labels, ...rest } = cfg as SandboxConfigInput & { labels?: unknown };
  return JSON.stringify(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b)));
}

export class WarmPool {
  private readonly ready = new Map<string, Entry[]>();
  private readonly configs = new Map<string, SandboxConfigInput>();
  private readonly starting = new Map<string, number>();
  private hits = 0;
  private misses = 0;
  private closed = false;
  private readonly create: SandboxMaker;
  private readonly log: Logger;
  private readonly maxIdleMs: number;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly opts: WarmPoolOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: "warm-pool" });
    this.create = opts.create ?? ((c) => Sandbox.create(c, { logger: this.log }));
    this.maxIdleMs = (opts.maxIdleSeconds ?? 600) * 1000;
    this.timer = setInterval(() => void this.expire(), Math.min(this.maxIdleMs, 30_000));
    this.timer.unref();
  }

  /** A sandbox factory for runEpisode: a ready one when there is one, else a new one; the pool refills. */
  readonly factory = async (cfg: SandboxConfigInput): Promise<EnvSandbox> => {
    if (this.opts.size <= 0 || this.closed) return this.create(cfg);
    const key = keyOf(cfg);
    if (!this.configs.has(key)) this.configs.set(key, cfg);
    const list = this.ready.get(key) ?? [];
    const e = list.shift();
    this.fill(key);
    if (e) {
      this.hits++;
      return e.sandbox;
    }
    this.misses++;
    return this.create(cfg);
  };

  /** Start sandboxes for `cfg` until `size` are ready (warming an image ahead of its first episode). */
  warm(cfg: SandboxConfigInput): void {
    const key = keyOf(cfg);
    if (!this.configs.has(key)) this.configs.set(key, cfg);
    this.fill(key);
  }

  /** Wait until every configuration has `size` ready (or `timeoutMs`). */
  async settled(timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end && [...this.starting.values()].some((n) => n > 0)) await new Promise((r) => setTimeout(r, 50));
  }

  stats(): PoolStats {
    let ready = 0;
    for (const l of this.ready.values()) ready += l.length;
    let starting = 0;
    for (const n of this.starting.values()) starting += n;
    return { ready, hits: this.hits, misses: this.misses, starting };
  }

  private fill(key: string): void {
    const cfg = this.configs.get(key);
    if (!cfg || this.closed) return;
    const have = (this.ready.get(key)?.length ?? 0) + (this.starting.get(key) ?? 0);
    for (let i = have; i < this.opts.size; i++) {
      this.starting.set(key, (this.starting.get(key) ?? 0) + 1);
      const lifetime = (cfg.lifetimeSeconds ?? 2400) + this.maxIdleMs / 1000;
      this.create({ ...cfg, lifetimeSeconds: lifetime, labels: { ...(cfg.labels ?? {}), "forager.episode": "", "forager.pool": "warm" } })
        .then(async (sandbox) => {
          if (this.closed) return sandbox.destroy();
          const l = this.ready.get(key) ?? [];
          l.push({ sandbox, at: Date.now() });
          this.ready.set(key, l);
        })
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, "warm sandbox start failed"))
        .finally(() => this.starting.set(key, (this.starting.get(key) ?? 1) - 1));
    }
  }

  private async expire(): Promise<void> {
    const now = Date.now();
    for (const [key, list] of this.ready) {
      const old = list.filter((e) => now - e.at > this.maxIdleMs);
      if (!old.length) continue;
      this.ready.set(key, list.filter((e) => !old.includes(e)));
      await Promise.allSettled(old.map((e) => e.sandbox.destroy()));
      this.fill(key);
    }
  }

  /** Destroy every ready sandbox; later takes create directly. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.settled(30_000);
    const all = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.allSettled(all.map((e) => e.sandbox.destroy()));
  }
}
