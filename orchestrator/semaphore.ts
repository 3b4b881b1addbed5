/**
 * A counting semaphore in Redis shared by every worker: the global limit of concurrent model
 * requests per endpoint. Holders are members of a sorted set scored by their lease expiry (ms
 * since epoch); expired leases (a worker died holding one) are dropped on every acquire, so a
 * kill -9 never leaks a slot for longer than the lease. Waiters poll with a growing delay
 * (2 → 50 ms), which keeps the endpoint full without busy-looping.
 */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";

const ACQUIRE = `
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
  return 1
end
return 0`;

export interface SemaphoreOptions {
  /** Most holders at once. */
  limit: number;
  /** Lease, ms: a holder that neither releases nor renews within it loses the slot. Default 15 min. */
  leaseMs?: number;
}

/** A named Redis semaphore. */
export class RedisSemaphore {
  readonly key: string;
  constructor(
    private readonly redis: Redis,
    name: string,
    private readonly opts: SemaphoreOptions,
  ) {
    this.key = `forager:sem:${name}`;
  }

  /** Try once; the token on success. */
  async tryAcquire(): Promise<string | undefined> {
    const token = randomBytes(8).toString("hex");
    const ok = await this.redis.eval(ACQUIRE, 1, this.key, Date.now(), this.opts.limit, this.opts.leaseMs ?? 900_000, token);
    return ok === 1 ? token : undefined;
  }

  /** Wait for a slot (or the signal). @throws the signal's reason when aborted. */
  async acquire(signal?: AbortSignal): Promise<string> {
    let delay = 2;
    for (;;) {
      signal?.throwIfAborted();
      const t = await this.tryAcquire();
      if (t) return t;
      await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
      delay = Math.min(50, delay * 2);
    }
  }

  async release(token: string): Promise<void> {
    await this.redis.zrem(this.key, token);
  }

  /** Holders now (expired leases excluded). */
  async holders(): Promise<number> {
    return this.redis.zcount(this.key, Date.now(), "+inf");
  }

  /** Run `fn` holding a slot. */
  async use<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const token = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      await this.release(token).catch(() => undefined);
    }
  }
}
