/**
 * Candidate bugs: every operator site of every entity that passes the complexity gate, as a
 * file edit with its diff, then a seeded, operator-interleaved order to try them in, and
 * combinations of 2–3 validated bugs of the same file or package into one harder bug (SWE-smith's
 * "combine" strategy).
 *
 * Reproducibility: the order is a pure function of (sources, options, seed) — a mulberry32
 * generator drives every random choice — so the same seed tries the same candidates in the same
 * order.
 */
import { createHash } from "node:crypto";
import { changedLines, unifiedDiff } from "./diff";
import { applyEdits, CLASS_OPERATORS, OPERATOR_NAMES, sitesFor, type Edit, type OperatorName } from "./operators";
import { byteOffset, entities, parsePython } from "./python";

/** A Python file of the repository: path relative to the repository root, `/`-separated. */
export interface SourceFile {
  path: string;
  text: string;
}

/** An edit with its exact UTF-8 byte range in the original file. */
export interface ByteEdit extends Edit {
  byteStart: number;
  byteEnd: number;
}

/** The entity a bug is in. */
export interface EntityRef {
  name: string;
  kind: "function" | "class";
  /** 1-based, inclusive, decorators included. */
  startLine: number;
  endLine: number;
  complexity: number;
}

/** One change to one file (a bug is one or more). */
export interface FileChange {
  path: string;
  operator: OperatorName;
  entity: EntityRef;
  description: string;
  /** 1-based line of the first edit. */
  line: number;
  edits: ByteEdit[];
}

/** A candidate bug: one or more file changes, with the texts before and after. */
export interface Candidate {
  /** 12 hex: sha256 of the patch. */
  id: string;
  /** Operator names, one per change (a combined bug has 2–3). */
  operators: OperatorName[];
  changes: FileChange[];
  /** path → original text / mutated text, for every touched file. */
  original: Record<string, string>;
  mutated: Record<string, string>;
  /** The bug as a git diff (original → buggy): the task's startPatch. */
  patch: string;
  /** The inverse (buggy → original): the task's referencePatch. */
  reversePatch: string;
  /** Added + removed lines of the patch. */
  changedLines: number;
}

export interface CandidateOptions {
  /** Operators to use (default all). */
  operators?: readonly OperatorName[];
  /** Smallest cyclomatic complexity of a target function / class (default 2). */
  minComplexity?: number;
  /** Largest entity, in lines (default 400): very long functions make diffuse issues. */
  maxEntityLines?: number;
}

/** mulberry32: a small, fast, seedable PRNG; returns floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates with the given generator (in place; returns the array). */
export function shuffle<T>(xs: T[], random: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

const sha12 = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 12);

function makeCandidate(changes: FileChange[], original: Record<string, string>, mutated: Record<string, string>): Candidate {
  const paths = Object.keys(original).sort();
  const patch = paths.map((p) => unifiedDiff(p, original[p]!, mutated[p]!)).join("");
  const reversePatch = paths.map((p) => unifiedDiff(p, mutated[p]!, original[p]!)).join("");
  return {
    id: sha12(patch),
    operators: changes.map((c) => c.operator),
    changes,
    original,
    mutated,
    patch,
    reversePatch,
    changedLines: changedLines(patch),
  };
}

/**
 * All candidate bugs of one file, in source order. Sites whose result does not parse, or does
 * not change the text, are dropped; equal patches are kept once.
 */
export async function candidatesForFile(file: SourceFile, options: CandidateOptions = {}): Promise<Candidate[]> {
  const operators = options.operators ?? OPERATOR_NAMES;
  const minComplexity = options.minComplexity ?? 2;
  const maxLines = options.maxEntityLines ?? 400;
  const tree = await parsePython(file.text);
  try {
    if (tree.rootNode.hasError) return [];
    const out: Candidate[] = [];
    const seen = new Set<string>();
    for (const entity of entities(tree)) {
      if (entity.complexity < minComplexity) continue;
      if (entity.endLine - entity.startLine + 1 > maxLines) continue;
      const ops = operators.filter((o) => CLASS_OPERATORS.has(o) === (entity.kind === "class"));
      if (ops.length === 0) continue;
      for (const site of sitesFor(file.text, entity, ops)) {
        const mutated = applyEdits(file.text, site.edits);
        if (mutated === file.text) continue;
        const check = await parsePython(mutated);
        const bad = check.rootNode.hasError;
        check.delete();
        if (bad) continue;
        const change: FileChange = {
          path: file.path,
          operator: site.operator,
          entity: {
            name: entity.name,
            kind: entity.kind,
            startLine: entity.startLine,
            endLine: entity.endLine,
            complexity: entity.complexity,
          },
          description: site.description,
          line: site.row + 1,
          edits: site.edits.map((e) => ({ ...e, byteStart: byteOffset(file.text, e.start), byteEnd: byteOffset(file.text, e.end) })),
        };
        const c = makeCandidate([change], { [file.path]: file.text }, { [file.path]: mutated });
        if (seen.has(c.id)) continue;
        seen.add(c.id);
        out.push(c);
      }
    }
    return out;
  } finally {
    tree.delete();
  }
}

/** Candidates of many files (in the order given). */
export async function candidatesForFiles(files: readonly SourceFile[], options: CandidateOptions = {}): Promise<Candidate[]> {
  const out: Candidate[] = [];
  for (const f of files) out.push(...(await candidatesForFile(f, options)));
  return out;
}

/**
 * The order to try candidates in: shuffled with `seed`, then interleaved round-robin over
 * operators (so a budget spreads over all operators instead of the most frequent one), with at
 * most `perEntity` candidates of one entity (default 3).
 */
export function orderCandidates(all: readonly Candidate[], seed: number, opts: { perEntity?: number } = {}): Candidate[] {
  const random = rng(seed);
  const perEntity = opts.perEntity ?? 3;
  const shuffled = shuffle([...all], random);
  const byEntity = new Map<string, number>();
  const queues = new Map<string, Candidate[]>();
  for (const c of shuffled) {
    const ch = c.changes[0]!;
    const key = `${ch.path}::${ch.entity.name}`;
    const n = byEntity.get(key) ?? 0;
    if (n >= perEntity) continue;
    byEntity.set(key, n + 1);
    const op = c.operators[0]!;
    if (!queues.has(op)) queues.set(op, []);
    queues.get(op)!.push(c);
  }
  const ops = [...queues.keys()].sort();
  shuffle(ops, random);
  const out: Candidate[] = [];
  const total = [...queues.values()].reduce((s, q) => s + q.length, 0);
  for (let round = 0; out.length < total; round++) {
    for (const op of ops) {
      const q = queues.get(op)!;
      if (round < q.length) out.push(q[round]!);
    }
  }
  return out;
}

/**
 * Combine 2–3 bugs into one: all of them applied together. Changes must be in different
 * entities and not overlap. Edits of a file are re-applied to its original text.
 */
export function combineCandidates(parts: readonly Candidate[]): Candidate | undefined {
  if (parts.length < 2) return undefined;
  const changes = parts.flatMap((p) => p.changes);
  const entityKeys = new Set(changes.map((c) => `${c.path}::${c.entity.name}`));
  if (entityKeys.size !== changes.length) return undefined;
  const original: Record<string, string> = {};
  for (const p of parts) Object.assign(original, p.original);
  const mutated: Record<string, string> = {};
  for (const [path, text] of Object.entries(original)) {
    const edits = changes.filter((c) => c.path === path).flatMap((c) => c.edits);
    try {
      mutated[path] = applyEdits(text, edits);
    } catch {
      return undefined;
    }
  }
  return makeCandidate(changes, original, mutated);
}

/** Directory of a path (`a/b/c.py` → `a/b`). */
export function moduleOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

/**
 * Groups of validated bugs to combine: for each file (then each package directory) with at least
 * two validated single bugs in different entities, up to `maxGroups` groups of `size` (2–3)
 * chosen with `seed`. Each bug is used in at most one group.
 */
export function combinationGroups(
  validated: readonly Candidate[],
  opts: { seed: number; maxGroups: number; sizes?: readonly number[]; scope?: "file" | "module" },
): Candidate[][] {
  const random = rng(opts.seed ^ 0x5eed);
  const sizes = opts.sizes ?? [2, 3];
  const scope = opts.scope ?? "file";
  const singles = validated.filter((c) => c.changes.length === 1);
  const byKey = new Map<string, Candidate[]>();
  for (const c of singles) {
    const p = c.changes[0]!.path;
    const key = scope === "file" ? p : moduleOf(p);
    if (!byKey.has(key)) byKey.set(key, []);
    byKey.get(key)!.push(c);
  }
  const groups: Candidate[][] = [];
  for (const key of [...byKey.keys()].sort()) {
    const pool = shuffle([...byKey.get(key)!], random);
    while (groups.length < opts.maxGroups) {
      const size = sizes[Math.floor(random() * sizes.length)]!;
      const group: Candidate[] = [];
      const entitiesUsed = new Set<string>();
      for (let i = 0; i < pool.length && group.length < size; ) {
        const ch = pool[i]!.changes[0]!;
        const ek = `${ch.path}::${ch.entity.name}`;
        if (entitiesUsed.has(ek)) {
          i++;
          continue;
        }
        entitiesUsed.add(ek);
        group.push(pool.splice(i, 1)[0]!);
      }
      if (group.length < 2) break;
      groups.push(group);
    }
  }
  return groups;
}
