/**
 * Unified diffs (git format, 3 lines of context) between two versions of a file, written
 * without spawning git: common prefix and suffix lines are trimmed, the middle is aligned by a
 * longest-common-subsequence table (bug edits are small, so the middle is small), and hunks
 * closer than 2×context lines are merged, as `git diff` does. `git apply` accepts the output
 * (checked in test/mutate-operators.unit.test.ts).
 */

/** Split into lines keeping track of a missing final newline. */
function splitLines(text: string): { lines: string[]; noEol: boolean } {
  if (text === "") return { lines: [], noEol: false };
  const noEol = !text.endsWith("\n");
  const lines = (noEol ? text : text.slice(0, -1)).split("\n");
  return { lines, noEol };
}

type Op = { kind: " " | "-" | "+"; line: string; a: number; b: number };

/** Line edit script old → new (a/b: 0-based indices of the line in old/new). */
function editScript(a: string[], b: string[]): Op[] {
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  const ops: Op[] = [];
  for (let i = 0; i < pre; i++) ops.push({ kind: " ", line: a[i]!, a: i, b: i });
  const n = am.length;
  const m = bm.length;
  if (n * m > 25_000_000) {
    // Too large to align: replace the whole middle.
    am.forEach((l, i) => ops.push({ kind: "-", line: l, a: pre + i, b: pre }));
    bm.forEach((l, j) => ops.push({ kind: "+", line: l, a: pre + n, b: pre + j }));
  } else {
    const w = m + 1;
    const t = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        t[i * w + j] = am[i] === bm[j] ? t[(i + 1) * w + j + 1]! + 1 : Math.max(t[(i + 1) * w + j]!, t[i * w + j + 1]!);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && am[i] === bm[j]) {
        ops.push({ kind: " ", line: am[i]!, a: pre + i, b: pre + j });
        i++;
        j++;
      } else if (i < n && (j === m || t[(i + 1) * w + j]! >= t[i * w + j + 1]!)) {
        // Deletions before insertions within a change block, as git prints them.
        ops.push({ kind: "-", line: am[i]!, a: pre + i, b: pre + j });
        i++;
      } else {
        ops.push({ kind: "+", line: bm[j]!, a: pre + i, b: pre + j });
        j++;
      }
    }
  }
  for (let k = 0; k < suf; k++) {
    const ai = a.length - suf + k;
    const bi = b.length - suf + k;
    ops.push({ kind: " ", line: a[ai]!, a: ai, b: bi });
  }
  return ops;
}

/**
 * The unified diff of one file, `diff --git a/<path> b/<path>` form; "" when equal.
 * @param path repository-relative path, `/`-separated
 */
export function unifiedDiff(path: string, oldText: string, newText: string, context = 3): string {
  if (oldText === newText) return "";
  const A = splitLines(oldText);
  const B = splitLines(newText);
  // A changed final-newline state makes the last line differ.
  const a = A.lines.map((l, i) => (i === A.lines.length - 1 && A.noEol ? l + "\u0000noeol" : l));
  const b = B.lines.map((l, i) => (i === B.lines.length - 1 && B.noEol ? l + "\u0000noeol" : l));
  const ops = editScript(a, b);
  const changed = ops.map((o, i) => (o.kind === " " ? -1 : i)).filter((i) => i >= 0);
  const hunks: Array<[number, number]> = [];
  for (const i of changed) {
    const lo = Math.max(0, i - context);
    const hi = Math.min(ops.length - 1, i + context);
    const last = hunks[hunks.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else hunks.push([lo, hi]);
  }
  const out: string[] = [`diff --git a/${path} b/${path}`, `--- a/${path}`, `+++ b/${path}`];
  for (const [lo, hi] of hunks) {
    const slice = ops.slice(lo, hi + 1);
    const aLines = slice.filter((o) => o.kind !== "+").length;
    const bLines = slice.filter((o) => o.kind !== "-").length;
    const aStart = slice[0]!.a + (aLines ? 1 : 0);
    const bStart = slice[0]!.b + (bLines ? 1 : 0);
    const range = (start: number, len: number) => (len === 1 ? `${start}` : `${start},${len}`);
    out.push(`@@ -${range(aStart, aLines)} +${range(bStart, bLines)} @@`);
    for (const o of slice) {
      const noeol = o.line.endsWith("\u0000noeol");
      out.push(o.kind + (noeol ? o.line.slice(0, -"\u0000noeol".length) : o.line));
      if (noeol) out.push("\\ No newline at end of file");
    }
  }
  return out.join("\n") + "\n";
}

/** Changed-line count of a unified diff (added + removed lines, headers excluded). */
export function changedLines(diff: string): number {
  return diff.split("\n").filter((l) => /^[-+](?![-+]{2} )/.test(l)).length;
}
