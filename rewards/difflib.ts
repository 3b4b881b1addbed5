/**
 * A faithful port of the parts of CPython's `difflib.SequenceMatcher` that the SWE-RL / CWM
 * patch-similarity reward uses: `SequenceMatcher(None, a, b, autojunk=False)` with
 * `find_longest_match`, `get_matching_blocks` and `ratio`
 * (CPython `Lib/difflib.py`, unchanged in substance from 2.x to 3.13).
 *
 * Sequences are what Python iterates for a `str`: Unicode code points, not UTF-16 code units
 * (a character outside the BMP such as "😀" is ONE element, as in Python). A lone surrogate
 * in a JS string is one element too.
 *
 * With `isjunk=None` and `autojunk=False` there is no junk and no "popular" element pruning, so
 * `b2j` maps every element of `b` to all of its indices: this module implements exactly that
 * configuration and no other.
 */

/** One matching block `(i, j, size)`: `a[i:i+size] == b[j:j+size]`, indices in code points. */
export type MatchingBlock = readonly [i: number, j: number, size: number];

/** The code points of `s`, as Python's `list(s)` would give them (one entry per code point). */
export function codePoints(s: string): Int32Array {
  const out = new Int32Array(s.length);
  let n = 0;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0xd800 && c <= 0xdbff && k + 1 < s.length) {
      const d = s.charCodeAt(k + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out[n++] = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
        k++;
        continue;
      }
    }
    out[n++] = c;
  }
  return out.subarray(0, n);
}

/**
 * The matcher state for one pair of sequences: `b2j` (element → ascending indices in `b`, as
 * CPython's `__chain_b` builds it) and the scratch rows of the `j2len` dynamic programme.
 *
 * CPython keeps `j2len` / `newj2len` as dicts rebuilt for each `i`; here they are two typed-array
 * rows indexed by `j + 1` plus a "generation" stamp per slot, so that "key present in the
 * previous row's dict" is `stamp === generation - 1`. Same values, O(len(b)) memory, no
 * per-row allocation.
 */
class Matcher {
  private readonly b2j = new Map<number, Int32Array>();
  private prevLen: Int32Array;
  private curLen: Int32Array;
  private prevStamp: Float64Array;
  private curStamp: Float64Array;
  private gen = 0;

  constructor(
    private readonly a: Int32Array,
    private readonly b: Int32Array,
  ) {
    // __chain_b: every element of b, indices in ascending order (no junk, no autojunk).
    const counts = new Map<number, number>();
    for (const e of b) counts.set(e, (counts.get(e) ?? 0) + 1);
    const fill = new Map<number, number>();
    for (const [e, c] of counts) {
      this.b2j.set(e, new Int32Array(c));
      fill.set(e, 0);
    }
    for (let j = 0; j < b.length; j++) {
      const e = b[j]!;
      const at = fill.get(e)!;
      this.b2j.get(e)![at] = j;
      fill.set(e, at + 1);
    }
    const n = b.length + 1;
    this.prevLen = new Int32Array(n);
    this.curLen = new Int32Array(n);
    this.prevStamp = new Float64Array(n).fill(-1);
    this.curStamp = new Float64Array(n).fill(-1);
  }

  /**
   * CPython `find_longest_match(alo, ahi, blo, bhi)` with no junk: the longest matching block in
   * `a[alo:ahi]` × `b[blo:bhi]`; among equally long ones the one starting earliest in `a`, and of
   * those the one starting earliest in `b`. Returns `(alo, blo, 0)` when nothing matches.
   */
  findLongestMatch(alo: number, ahi: number, blo: number, bhi: number): MatchingBlock {
    const { a, b, b2j } = this;
    let besti = alo;
    let bestj = blo;
    let bestsize = 0;
    // A fresh, empty j2len: no slot carries the stamp of the "previous row".
    this.gen += 2;
    for (let i = alo; i < ahi; i++) {
      const g = ++this.gen;
      const js = b2j.get(a[i]!);
      if (js !== undefined) {
        const prevLen = this.prevLen;
        const prevStamp = this.prevStamp;
        const curLen = this.curLen;
        const curStamp = this.curStamp;
        // `if j < blo: continue` — skip by binary search (indices are ascending).
        let lo = 0;
        let hi = js.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (js[mid]! < blo) lo = mid + 1;
          else hi = mid;
        }
        for (let t = lo; t < js.length; t++) {
          const j = js[t]!;
          if (j >= bhi) break;
          // k = newj2len[j] = j2len.get(j - 1, 0) + 1   (slot index = j + 1)
          const k = (prevStamp[j] === g - 1 ? prevLen[j]! : 0) + 1;
          curLen[j + 1] = k;
          curStamp[j + 1] = g;
          if (k > bestsize) {
            besti = i - k + 1;
            bestj = j - k + 1;
            bestsize = k;
          }
        }
      }
      // j2len = newj2len
      const tl = this.prevLen;
      this.prevLen = this.curLen;
      this.curLen = tl;
      const ts = this.prevStamp;
      this.prevStamp = this.curStamp;
      this.curStamp = ts;
    }
    // The junk-extension loops of CPython; without junk only the first pair could apply, and the
    // DP above already found a maximal block, so these never move it. Kept for fidelity.
    while (besti > alo && bestj > blo && a[besti - 1] === b[bestj - 1]) {
      besti--;
      bestj--;
      bestsize++;
    }
    while (besti + bestsize < ahi && bestj + bestsize < bhi && a[besti + bestsize] === b[bestj + bestsize]) {
      bestsize++;
    }
    return [besti, bestj, bestsize];
  }

  /** CPython `get_matching_blocks()`: see {@link getMatchingBlocks}. */
  matchingBlocks(): MatchingBlock[] {
    const la = this.a.length;
    const lb = this.b.length;
    const queue: Array<[number, number, number, number]> = [[0, la, 0, lb]];
    const blocks: MatchingBlock[] = [];
    while (queue.length > 0) {
      const [alo, ahi, blo, bhi] = queue.pop()!;
      const x = this.findLongestMatch(alo, ahi, blo, bhi);
      const [i, j, k] = x;
      if (k) {
        blocks.push(x);
        if (alo < i && blo < j) queue.push([alo, i, blo, j]);
        if (i + k < ahi && j + k < bhi) queue.push([i + k, ahi, j + k, bhi]);
      }
    }
    blocks.sort((p, q) => p[0] - q[0] || p[1] - q[1] || p[2] - q[2]);
    // Collapse adjacent blocks.
    const out: MatchingBlock[] = [];
    let i1 = 0;
    let j1 = 0;
    let k1 = 0;
    for (const [i2, j2, k2] of blocks) {
      if (i1 + k1 === i2 && j1 + k1 === j2) {
        k1 += k2;
      } else {
        if (k1) out.push([i1, j1, k1]);
        i1 = i2;
        j1 = j2;
        k1 = k2;
      }
    }
    if (k1) out.push([i1, j1, k1]);
    out.push([la, lb, 0]);
    return out;
  }
}

/**
 * `difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()` (CPython
 * `Lib/difflib.py`): the list of `(i, j, n)` with `a[i:i+n] == b[j:j+n]`, increasing in `i`
 * and `j`, adjacent blocks merged, ending with the sentinel `(len(a), len(b), 0)`.
 * Indices and lengths count code points (Python `str` elements), not UTF-16 units.
 */
export function getMatchingBlocks(a: string, b: string): MatchingBlock[] {
  return new Matcher(codePoints(a), codePoints(b)).matchingBlocks();
}

/**
 * `difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()` (CPython `Lib/difflib.py`):
 * `2.0 * M / T` where `M` is the total size of the matching blocks and `T = len(a) + len(b)` in
 * code points; `1.0` when both strings are empty. A number in [0, 1]; never throws.
 *
 * Time is that of CPython's algorithm (worst case O(len(a)·len(b)) per `find_longest_match` on
 * very repetitive input); memory is O(len(a) + len(b)).
 */
export function sequenceMatcherRatio(a: string, b: string): number {
  const ca = codePoints(a);
  const cb = codePoints(b);
  const length = ca.length + cb.length;
  if (length === 0) return 1.0;
  let matches = 0;
  for (const [, , k] of new Matcher(ca, cb).matchingBlocks()) matches += k;
  return (2.0 * matches) / length;
}
