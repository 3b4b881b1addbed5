/**
 * The weights switch of `forager serve` (asynchronous RL, as CWM's RL stage ran it: new weights
 * reach the rollout workers without stalling them; a trajectory that spans two versions is kept and
 * marked).
 *
 * {@link WeightsGate.switchTo} pauses NEW model requests, lets the ones in flight finish, sets the
 * version and resumes. Every model request holds a lease ({@link WeightsGate.acquire}) and its turn
 * records the version of that lease, so each turn knows the weights that produced it; episodes are
 * never restarted by a switch. Staleness: {@link WeightsGate.age} is how many versions behind the
 * current one a trajectory's oldest turn is.
 */
import type { Policy, PolicyContext, PolicyIdentity, PolicyStep } from "../agent/policy";
import type { AgentConfig } from "../agent/config";
import type { Task } from "../tasks/schema";

export interface WeightsState {
  version?: string;
  history: string[];
  paused: boolean;
  inFlight: number;
}

export class WeightsGate {
  private current: string | undefined;
  private readonly history: string[] = [];
  private inFlight = 0;
  private pause: Promise<void> | undefined;
  private drained: (() => void) | undefined;
  private switching: Promise<unknown> = Promise.resolve();

  constructor(initial?: string) {
    if (initial) {
      this.current = initial;
      this.history.push(initial);
    }
  }

  get version(): string | undefined {
    return this.current;
  }

  state(): WeightsState {
    return { version: this.current, history: [...this.history], paused: this.pause !== undefined, inFlight: this.inFlight };
  }

  /**
   * Wait while a switch is under way, then hold a lease for one model request.
   * @throws the signal's reason when aborted while paused.
   */
  async acquire(signal?: AbortSignal): Promise<{ version: string | undefined; release: () => void }> {
    while (this.pause) {
      signal?.throwIfAborted();
      await (signal ? Promise.race([this.pause, abortPromise(signal)]) : this.pause);
    }
    this.inFlight++;
    let released = false;
    return {
      version: this.current,
      release: () => {
        if (released) return;
        released = true;
        this.inFlight--;
        if (this.inFlight === 0) this.drained?.();
      },
    };
  }

  /**
   * Switch to `version`: pause new requests, wait for those in flight, set it, resume. Switches are
   * serialised; switching to the current version is a no-op.
   * @returns how long the in-flight requests took to finish, ms.
   */
  switchTo(version: string): Promise<{ drainedMs: number }> {
    const run = async (): Promise<{ drainedMs: number }> => {
      if (version === this.current) return { drainedMs: 0 };
      const t0 = performance.now();
      let resume!: () => void;
      this.pause = new Promise<void>((r) => (resume = r));
      if (this.inFlight > 0) await new Promise<void>((r) => (this.drained = r));
      this.drained = undefined;
      this.current = version;
      if (!this.history.includes(version)) this.history.push(version);
      this.pause = undefined;
      resume();
      return { drainedMs: performance.now() - t0 };
    };
    const p = this.switching.then(run, run);
    this.switching = p.catch(() => undefined);
    return p;
  }

  /** Versions between the oldest of `versions` and the current one (0: current; unknown versions count as current). */
  age(versions: readonly string[]): number {
    const last = this.history.length - 1;
    let oldest = last;
    for (const v of versions) {
      const i = this.history.indexOf(v);
      if (i >= 0) oldest = Math.min(oldest, i);
    }
    return last - oldest;
  }
}

function abortPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));
}

/** A model policy whose every request holds a lease of the gate and whose turns record its version. */
export class GatedPolicy implements Policy {
  readonly kind: string;
  constructor(
    private readonly inner: Policy,
    private readonly gate: WeightsGate,
  ) {
    this.kind = inner.kind;
  }

  async identity(): Promise<PolicyIdentity> {
    const id = (await this.inner.identity?.()) ?? {};
    return { ...id, ...(this.gate.version !== undefined ? { weightsVersion: this.gate.version } : {}) };
  }

  start(task: Task, config: AgentConfig): void | Promise<void> {
    return this.inner.start?.(task, config);
  }

  async next(ctx: PolicyContext): Promise<PolicyStep> {
    const lease = await this.gate.acquire(ctx.signal);
    try {
      const step = await this.inner.next(ctx);
      return lease.version !== undefined ? { ...step, weightsVersion: lease.version } : step;
    } finally {
      lease.release();
    }
  }
}
