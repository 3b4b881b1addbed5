/**
 * Reading git diffs: path names in every header form (C-quoted or not) and the split of a diff
 * into its per-file `diff --git` blocks. The one home of diff header parsing (rewards' forgery
 * checks, the oracle policy, commit mining's test/gold split).
 */

/**
 * Undo git's C-style quoting of a path (`"a/\303\251.py"`): backslash escapes `\\ \" \a \b \t \n
 * \v \f \r` and octal byte escapes `\ooo` (bytes decoded as UTF-8). An unquoted name is returned as is.
 * Source: git's quote.c (unquote_c_style).
 */
export function unquoteCPath(name: string): string {
  if (!(name.length >= 2 && name.startsWith('"') && name.endsWith('"'))) return name;
  const body = name.slice(1, -1);
  const bytes: number[] = [];
  const simple: Record<string, number> = { a: 7, b: 8, t: 9, n: 10, v: 11, f: 12, r: 13, '"': 34, "\\": 92 };
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c !== "\\") {
      for (const b of Buffer.from(c, "utf8")) bytes.push(b);
      continue;
    }
    const n = body[i + 1] ?? "";
    if (/[0-7]/.test(n)) {
      const oct = /^[0-7]{1,3}/.exec(body.slice(i + 1))![0];
      bytes.push(parseInt(oct, 8) & 0xff);
      i += oct.length;
    } else if (n in simple) {
      bytes.push(simple[n] as number);
      i++;
    } else {
      bytes.push(92);
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/** The first path of a header remainder: a C-quoted name, or the text up to a tab (timestamps). */
export function headerName(rest: string): string {
  const r = rest.trimStart();
  if (r.startsWith('"')) {
    const m = /^"(?:[^"\\]|\\.)*"/.exec(r);
    if (m) return unquoteCPath(m[0]);
  }
  return r.replace(/\t.*$/, "").replace(/\s+$/, "");
}

/** The two names of `diff --git A B` (C-quoted or not; unquoted names with spaces split as git does). */
export function gitHeaderNames(rest: string): string[] {
  const out: string[] = [];
  let r = rest;
  const take = (): string | undefined => {
    r = r.trimStart();
    if (r.startsWith('"')) {
      const m = /^"(?:[^"\\]|\\.)*"/.exec(r);
      if (!m) return undefined;
      r = r.slice(m[0].length);
      return unquoteCPath(m[0]);
    }
    return undefined;
  };
  const a = take();
  if (a !== undefined) {
    out.push(a);
    const b = take();
    out.push(b ?? r.trim());
    return out;
  }
  // Unquoted: "a/X b/X" (git requires both halves equal when names have spaces), else split at " b/".
  const half = (rest.length - 1) / 2;
  if (Number.isInteger(half) && rest[half] === " " && rest.slice(2, half) === rest.slice(half + 3)) {
    return [rest.slice(0, half), rest.slice(half + 1)];
  }
  const at = rest.lastIndexOf(" b/");
  if (at > 0) return [rest.slice(0, at), rest.slice(at + 1)];
  return rest.split(/\s+/).filter(Boolean);
}

/** A diff-relative name without its `a/` / `b/` prefix. */
export const stripAB = (p: string): string => p.replace(/^[ab]\//, "");

/**
 * Every path a diff names, in every header form git apply or GNU patch reads: `diff --git a/X b/Y`
 * (C-quoted or not), unified `---` / `+++`, context-diff `***` / `---`, `Index:`, `rename`/`copy
 * from/to`. Names are returned without their `a/` / `b/` prefix; `/dev/null` is left out.
 */
export function diffHeaderPaths(diff: string): string[] {
  const out = new Set<string>();
  const add = (p: string) => {
    if (p && p !== "/dev/null") out.add(p);
  };
  for (const line of diff.split(/\r?\n/)) {
    let m: RegExpExecArray | null;
    if ((m = /^diff --git (.*)$/.exec(line))) for (const n of gitHeaderNames(m[1] as string)) add(stripAB(n));
    else if ((m = /^(?:---|\+\+\+) (.+)$/.exec(line)) && !/^-+ \d+(,\d+)? -+\s*$/.test(line)) add(stripAB(headerName(m[1] as string)));
    else if ((m = /^\*\*\* (.+)$/.exec(line)) && !/^\*\*\* \d+(,\d+)? \*\*\*\*\s*$/.test(line)) add(stripAB(headerName(m[1] as string)));
    else if ((m = /^Index: (.+)$/.exec(line))) add(headerName(m[1] as string));
    else if ((m = /^(?:rename|copy) (?:from|to) (.+)$/.exec(line))) add(headerName(m[1] as string));
  }
  return [...out];
}

/** One file's block of a git diff. */
export interface DiffBlock {
  /** The new-side path (`b/…` of the `diff --git` header, unquoted, prefix stripped). */
  path: string;
  /** The old-side path (`a/…`), the same as `path` unless renamed or copied. */
  oldPath: string;
  /** The block's text from its `diff --git` line up to the next one (keeps its trailing newline). */
  text: string;
}

/**
 * The `diff --git` blocks of a diff, in order (text before the first block is dropped). Header
 * names are read as git writes them (see {@link gitHeaderNames}). Never throws.
 */
export function diffBlocks(diff: string): DiffBlock[] {
  const out: DiffBlock[] = [];
  for (const text of diff.split(/^(?=diff --git )/m)) {
    if (!text.startsWith("diff --git ")) continue;
    const rest = /^diff --git (.*)$/m.exec(text)?.[1] ?? "";
    const names = gitHeaderNames(rest).map(stripAB);
    const oldPath = names[0] ?? "";
    out.push({ path: names[1] ?? oldPath, oldPath, text });
  }
  return out;
}
