/**
 * Near-duplicate trajectories by MinHash over action sequences (Broder 1997, "On the resemblance
 * and containment of documents"; LSH banding as in Leskovec, Rajaraman & Ullman, "Mining of
 * Massive Datasets", ch. 3.4).
 *
 * A trajectory's actions (tool name + argument of every turn, whitespace collapsed; the final
 * answer as `answer`) are split into tokens; its set is every run of `shingle` consecutive
 * tokens. `numHashes` 32-bit hash functions h_i(x) = mix(fnv1a(x) ⊕ seed_i) give the signature
 * (the minimum of each over the set); the fraction of equal positions estimates the Jaccard
 * similarity. Candidates come from `bands` bands of `numHashes / bands` rows; a candidate pair
 * whose estimate reaches `threshold` is a near-duplicate. Pairs are looked for within a task.
 * Clusters are the connected components; the first member (lowest sample) is kept on export.
 */
import type { Trajectory } from "../agent/trajectory";

export interface MinHashOptions {
  /** Hash functions (signature length). Default 128. */
  numHashes?: number;
  /** LSH bands; must divide numHashes. Default 32 (4 rows each: pairs with J ≥ 0.9 are found with p > 0.9999). */
  bands?: number;
  /** Tokens per shingle. Default 5. */
  shingle?: number;
  /** Estimated Jaccard at or above which two trajectories are near-duplicates. Default 0.9. */
  threshold?: number;
}

/** The action tokens of a trajectory. */
export function actionTokens(t: Pick<Trajectory, "turns">): string[] {
  const toks: string[] = [];
  for (const turn of t.turns) {
    if (turn.action) toks.push(`<${turn.action.tool}>`, ...turn.action.argument.split(/\s+/).filter(Boolean));
    else if (turn.finalAnswer) toks.push("<answer>");
  }
  return toks;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3 fmix32 finaliser. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const seedsCache = new Map<number, Uint32Array>();
function seeds(n: number): Uint32Array {
  let s = seedsCache.get(n);
  if (!s) {
    s = new Uint32Array(n);
    for (let i = 0; i < n; i++) s[i] = mix(0x9e3779b9 ^ Math.imul(i + 1, 0x27d4eb2d));
    seedsCache.set(n, s);
  }
  return s;
}

/** MinHash signature of a token sequence (numHashes 32-bit values). */
export function minhash(tokens: readonly string[], opts: MinHashOptions = {}): Uint32Array {
  const n = opts.numHashes ?? 128;
  const k = opts.shingle ?? 5;
  const sig = new Uint32Array(n).fill(0xffffffff);
  const sd = seeds(n);
  const shingles = new Set<number>();
  if (tokens.length === 0) return sig;
  for (let i = 0; i + Math.min(k, tokens.length) <= tokens.length; i++) shingles.add(fnv1a(tokens.slice(i, i + k).join("\u0001")));
  for (const x of shingles) {
    for (let j = 0; j < n; j++) {
      const v = mix(x ^ sd[j]!);
      if (v < sig[j]!) sig[j] = v;
    }
  }
  return sig;
}

/** Estimated Jaccard similarity of two signatures. */
export function estimateJaccard(a: Uint32Array, b: Uint32Array): number {
  let eq = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) eq++;
  return a.length ? eq / a.length : 0;
}

export interface DedupItem {
  id: string;
  taskId: string;
  sample: number;
  tokens: string[];
}

export interface DedupReport {
  /** Trajectories looked at. */
  total: number;
  /** Near-duplicate pairs found (estimated Jaccard ≥ threshold). */
  pairs: Array<{ a: string; b: string; jaccard: number }>;
  /** Clusters of 2 or more near-duplicates (ids, the kept one first). */
  clusters: string[][];
  /** Ids that an export with filtering drops (every cluster member but the first). */
  dropped: Set<string>;
}

/** Find near-duplicate trajectories within each task. */
export function findNearDuplicates(items: readonly DedupItem[], opts: MinHashOptions = {}): DedupReport {
  const numHashes = opts.numHashes ?? 128;
  const bands = opts.bands ?? 32;
  const threshold = opts.threshold ?? 0.9;
  if (numHashes % bands !== 0) throw new RangeError(`bands (${bands}) must divide numHashes (${numHashes})`);
  const rows = numHashes / bands;
  const sorted = [...items].sort((a, b) => (a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : a.sample - b.sample));
  const sigs = sorted.map((it) => minhash(it.tokens, opts));
  const parent = sorted.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i]!)));
  const pairs: DedupReport["pairs"] = [];
  const seenPair = new Set<string>();
  const buckets = new Map<string, number[]>();
  sorted.forEach((it, i) => {
    for (let b = 0; b < bands; b++) {
      const key = `${it.taskId}\u0000${b}\u0000${Array.from(sigs[i]!.subarray(b * rows, (b + 1) * rows)).join(",")}`;
      const list = buckets.get(key);
      if (list) list.push(i);
      else buckets.set(key, [i]);
    }
  });
  for (const list of buckets.values()) {
    for (let x = 0; x < list.length; x++) {
      for (let y = x + 1; y < list.length; y++) {
        const i = list[x]!;
        const j = list[y]!;
        const pk = `${i},${j}`;
        if (seenPair.has(pk)) continue;
        seenPair.add(pk);
        const jac = estimateJaccard(sigs[i]!, sigs[j]!);
        if (jac >= threshold) {
          pairs.push({ a: sorted[i]!.id, b: sorted[j]!.id, jaccard: jac });
          const ri = find(i);
          const rj = find(j);
          if (ri !== rj) parent[Math.max(ri, rj)] = Math.min(ri, rj);
        }
      }
    }
  }
  const groups = new Map<number, number[]>();
  sorted.forEach((_, i) => {
    const r = find(i);
    groups.set(r, [...(groups.get(r) ?? []), i]);
  });
  const clusters = [...groups.values()].filter((g) => g.length > 1).map((g) => g.sort((a, b) => a - b).map((i) => sorted[i]!.id));
  const dropped = new Set(clusters.flatMap((c) => c.slice(1)));
  return { total: items.length, pairs, clusters, dropped };
}
