/**
 * Episode-affine routing with a load bound: which endpoint a request of an episode goes to.
 *
 * An agentic episode is a growing prefix (turn n resends turns 0..n-1); vLLM's automatic prefix
 * caching and SGLang's radix cache only prefill the new tokens when the request lands on the server
 * that holds the prefix. So every request of a *session* (an episode, a `forager serve` env) goes to
 * the session's endpoint (its "home") while that endpoint has room, and sessions of one *group* (the
 * K samples of a task, which share the task prompt) are placed together when the load allows.
 *
 * The rule (the argument in full: inference-client/README.md, "Routing"):
 *
 * - **Preference order.** A group's endpoints in weighted rendezvous (highest-random-weight) order of
 *   the group key (Thaler & Ravishankar 1998; weights: Schindelhauer & Schomaker 2005, score
 *   `w / −ln u` with `u` a hash of (key, endpoint URL) in (0, 1)). It depends only on the key and the
 *   endpoint URLs, so every client process configured with the same endpoints computes the same
 *   order without talking to the others, and adding or removing an endpoint moves only the keys that
 *   preferred it.
 * - **Load bound.** Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam, SODA
 *   2018): with M live sessions, endpoint i may hold at most `max(ceil(c · M · w_i / W), floor)` of
 *   them, where `c = loadFactor > 1`, W sums the weights of the available endpoints and `floor`
 *   (`sessionFloor`, default 8) keeps a group of K ≤ floor samples together while the total is low
 *   (the bound only matters under load). A session is placed on the first endpoint of its order that
 *   is available and below its bound. Since `c > 1`, the bounds sum to more than M, so some available
 *   endpoint always has room: placement never waits for a session to end, and no endpoint holds more
 *   than c times its share while another has room.
 * - **Moves.** A session stays on its home until the home is failing (a connection error or 5xx in
 *   the last `failingSeconds`) or saturated (it answered 429, or 503 with Retry-After, or the client's
 *   concurrency limit for it is full). Then it is placed again, excluding the old home, and the move
 *   is returned so the caller records it. A session is never moved for balance alone: the bound is
 *   enforced when sessions are placed, and an endpoint's load only grows by placements, so it never
 *   exceeds the bound of its last placement; when sessions end elsewhere the average falls and new
 *   sessions, placed below the bound, restore the balance. Moving for balance would cost the whole
 *   prefix (up to 131k tokens of prefill) to fix a spread that costs nothing until an endpoint saturates.
 *
 * Load is counted in live sessions, not in requests in flight: a session holds its prefix in the
 * server's cache for its whole life (including the tool calls between its turns), and counting
 * requests would move sessions back and forth with every fluctuation. A session lives from its first
 * request until {@link AffinityRouter.end} or until it has been idle for `sessionIdleMs`.
 *
 * Pure bookkeeping: no I/O, no timers (the clock is injected), so it is tested and simulated directly.
 */
import { createHash } from "node:crypto";

/** Why a session left its endpoint. */
export type MoveReason = "failing" | "saturated";

/** A routing hint of one request. */
export interface Affinity {
  /**
   * The session: requests with the same key (the turns of one episode, the steps of one env) go to
   * the same endpoint while it has room.
   */
  key: string;
  /**
   * Sessions sharing a prompt prefix (the K samples of one task): they are placed in the same
   * preference order, so they land together when the load allows. Default: `key`.
   */
  group?: string;
}

/** State of an endpoint as the router sees it at one moment. */
export interface EndpointCondition {
  /** Can take a request now (a free concurrency slot). */
  free: boolean;
  /** Failing (recent connection error or 5xx) or saturated (recent 429/503): sessions move away. */
  unhealthy?: "failing" | "saturated";
}

/** Where a request goes. */
export interface Placement {
  /** Index of the endpoint (configuration order). */
  endpoint: number;
  /** Set when the session had another home: the old endpoint and why it left. */
  moved?: { from: number; reason: MoveReason };
}

/** Options of {@link AffinityRouter}. */
export interface AffinityRouterOptions {
  /** c > 1 of the load bound `max(ceil(c · M · w_i / W), sessionFloor)` (default 1.25). */
  loadFactor?: number;
  /** Sessions an endpoint may always hold, whatever the average (default 8). */
  sessionFloor?: number;
  /** A session unused for this long is forgotten (ms; default 600 000). */
  sessionIdleMs?: number;
  /** Most sessions remembered; the least recently used beyond are forgotten (default 100 000). */
  maxSessions?: number;
  /** Clock in ms (default performance.now). */
  now?: () => number;
}

interface Session {
  endpoint: number;
  group: string;
  lastUsed: number;
}

/**
 * A number in (0, 1) from sha256 of `key` and `id` (48 bits; deterministic across processes).
 */
export function unitHash(key: string, id: string): number {
  const h = createHash("sha256").update(key).update("\u0000").update(id).digest();
  return (h.readUIntBE(0, 6) + 0.5) / 2 ** 48;
}

/**
 * Weighted rendezvous (highest random weight) order of `key` over endpoints: indices sorted by
 * `weights[i] / −ln(unitHash(key, ids[i]))`, best first; ties by index. The same on every process.
 * @param ids stable endpoint identities (normalized base URLs).
 * @param weights positive weights (default all 1), e.g. each endpoint's concurrency limit.
 */
export function rendezvousOrder(key: string, ids: readonly string[], weights?: readonly number[]): number[] {
  const score = ids.map((id, i) => (weights?.[i] ?? 1) / -Math.log(unitHash(key, id)));
  return ids.map((_, i) => i).sort((a, b) => score[b]! - score[a]! || a - b);
}

/**
 * The bounded-load capacity of one endpoint (sessions): `ceil(loadFactor · total · share)`, where
 * `total` counts every live session including the one being placed and `share = w_i / W` (Mirrokni,
 * Thorup & Zadimoghaddam 2018, with weights).
 */
export function boundedCapacity(total: number, share: number, loadFactor: number): number {
  return Math.ceil(loadFactor * total * share - 1e-9);
}

/**
 * Session placement with affinity and a load bound (see the module documentation). Not shared
 * between processes: each client process bounds its own sessions, and the bounds add up (README).
 */
export class AffinityRouter {
  readonly loadFactor: number;
  readonly sessionFloor: number;
  private readonly idleMs: number;
  private readonly maxSessions: number;
  private readonly now: () => number;
  /** Sessions in least-recently-used order (Map iteration order). */
  private readonly sessions = new Map<string, Session>();
  private readonly orders = new Map<string, number[]>();
  /** Live sessions per endpoint. */
  readonly load: number[];
  /** Moves so far, by reason. */
  readonly moves: Record<MoveReason, number> = { failing: 0, saturated: 0 };
  /**
   * The largest (load after placement / bound) over every placement so far: at most 1 unless a
   * placement had to fall back (every healthy free endpoint at its bound, or none healthy).
   */
  peakPlacementRatio = 0;

  /**
   * @param ids stable endpoint identities (normalized base URLs), configuration order.
   * @param weights positive weights (e.g. concurrency limits); default all 1.
   * @throws Error when `loadFactor <= 1` or the lists are empty or of different lengths.
   */
  constructor(
    private readonly ids: readonly string[],
    private readonly weights: readonly number[] = ids.map(() => 1),
    opts: AffinityRouterOptions = {},
  ) {
    if (ids.length === 0 || weights.length !== ids.length) throw new Error("AffinityRouter: one positive weight per endpoint");
    this.loadFactor = opts.loadFactor ?? 1.25;
    if (!(this.loadFactor > 1)) throw new Error(`AffinityRouter: loadFactor must be > 1, got ${this.loadFactor}`);
    this.sessionFloor = opts.sessionFloor ?? 8;
    this.idleMs = opts.sessionIdleMs ?? 600_000;
    this.maxSessions = opts.maxSessions ?? 100_000;
    this.now = opts.now ?? (() => performance.now());
    this.load = ids.map(() => 0);
  }

  /** Live sessions now (after forgetting idle ones). */
  get sessionCount(): number {
    this.expire();
    return this.sessions.size;
  }

  /** The endpoint a session lives on, if it is live. */
  home(key: string): number | undefined {
    return this.sessions.get(key)?.endpoint;
  }

  /** The group's preference order (cached for live groups). */
  order(group: string): number[] {
    let o = this.orders.get(group);
    if (!o) {
      o = rendezvousOrder(group, this.ids, this.weights);
      if (this.orders.size > this.maxSessions) this.orders.clear();
      this.orders.set(group, o);
    }
    return o;
  }

  /**
   * The bound of endpoint `i` (sessions) with `total` live sessions, over the endpoints counted as
   * available by `conditions` (all when none is): `max(boundedCapacity(total, w_i / W, c), sessionFloor)`.
   */
  capacity(i: number, total: number, conditions?: readonly EndpointCondition[]): number {
    const avail = (j: number) => !conditions || conditions[j]?.unhealthy === undefined;
    let w = 0;
    for (let j = 0; j < this.ids.length; j++) if (avail(j)) w += this.weights[j]!;
    if (w === 0 || !avail(i)) w = this.weights.reduce((a, b) => a + b, 0);
    return Math.max(boundedCapacity(total, this.weights[i]! / w, this.loadFactor), this.sessionFloor);
  }

  /**
   * Where the next request of `affinity` goes, given each endpoint's condition now; the session's
   * home is updated (placed, kept or moved). Undefined when no endpoint is free: the request waits
   * (nothing changes) and asks again when a slot frees.
   *
   * Preference: the home when it is free and healthy; else the first endpoint of
   * the group's order that is free, healthy and below its bound; else the free healthy endpoint with
   * the lowest load relative to its weight; else (every free endpoint unhealthy) the home if free,
   * else the first free endpoint of the order.
   */
  place(affinity: Affinity, conditions: readonly EndpointCondition[]): Placement | undefined {
    this.expire();
    const group = affinity.group ?? affinity.key;
    const s = this.sessions.get(affinity.key);
    const healthyFree = (i: number) => conditions[i]!.free && conditions[i]!.unhealthy === undefined;
    if (s && healthyFree(s.endpoint)) {
      this.touch(affinity.key, s);
      return { endpoint: s.endpoint };
    }
    // (Re)placement: the session counts once in the total, not on its old home.
    const total = s ? this.sessions.size : this.sessions.size + 1;
    const from = s?.endpoint;
    const loadOf = (i: number) => this.load[i]! - (i === from ? 1 : 0);
    const order = this.order(group);
    let choice: number | undefined;
    for (const i of order) {
      if (i !== from && healthyFree(i) && loadOf(i) + 1 <= this.capacity(i, total, conditions)) {
        choice = i;
        break;
      }
    }
    if (choice === undefined) {
      // Every healthy free endpoint is at its bound (possible only when some are busy or unhealthy):
      // the least loaded healthy free one, relative to its weight.
      let best = Infinity;
      for (const i of order) {
        const l = (loadOf(i) + 1) / this.weights[i]!;
        if (healthyFree(i) && l < best) {
          best = l;
          choice = i;
        }
      }
    }
    if (choice === undefined) {
      // Nothing healthy is free: stay if the home is free, else any free endpoint in order.
      if (from !== undefined && conditions[from]!.free) choice = from;
      else choice = order.find((i) => conditions[i]!.free);
    }
    if (choice === undefined) return undefined;
    if (s && choice === s.endpoint) {
      this.touch(affinity.key, s);
      return { endpoint: choice };
    }
    let moved: Placement["moved"];
    if (s) {
      const c = conditions[s.endpoint]!;
      const reason: MoveReason = c.unhealthy ?? "saturated";
      this.moves[reason]++;
      moved = { from: s.endpoint, reason };
      this.load[s.endpoint]!--;
      s.endpoint = choice;
      this.load[choice]!++;
      this.touch(affinity.key, s);
    } else {
      const created: Session = { endpoint: choice, group, lastUsed: this.now() };
      this.sessions.set(affinity.key, created);
      this.load[choice]!++;
      if (this.sessions.size > this.maxSessions) this.evictOldest();
    }
    this.peakPlacementRatio = Math.max(this.peakPlacementRatio, this.load[choice]! / this.capacity(choice, total, conditions));
    return moved ? { endpoint: choice, moved } : { endpoint: choice };
  }

  /** The session is over (its episode ended): it no longer counts as load. No-op for an unknown key. */
  end(key: string): void {
    const s = this.sessions.get(key);
    if (!s) return;
    this.sessions.delete(key);
    this.load[s.endpoint]!--;
  }

  private touch(key: string, s: Session): void {
    s.lastUsed = this.now();
    this.sessions.delete(key);
    this.sessions.set(key, s);
  }

  private evictOldest(): void {
    const first = this.sessions.keys().next();
    if (!first.done) this.end(first.value);
  }

  /** Forgets sessions idle for longer than `sessionIdleMs` (oldest first; amortized O(1)). */
  private expire(): void {
    const limit = this.now() - this.idleMs;
    for (const [key, s] of this.sessions) {
      if (s.lastUsed > limit) break;
      this.end(key);
    }
  }
}
