/**
 * PEP 508 requirement strings and environment markers, read carefully enough for image
 * inference: name, extras, version specifier (checked with @renovatebot/pep440), URL, marker.
 * Source of the grammar: PEP 508 ("Dependency specification for Python Software Packages");
 * names are normalized per PEP 503 (runs of `-_.` → `-`, lowercase).
 */
import { satisfies } from "@renovatebot/pep440";

/** One parsed requirement. */
export interface Requirement {
  /** Distribution name as written. */
  name: string;
  /** PEP 503 normalized name. */
  normalized: string;
  extras: string[];
  /** Version specifier, e.g. `>=1.0,<2` ("" when none). */
  specifier: string;
  /** Direct reference (`name @ url`). */
  url?: string;
  /** The marker text after `;` ("" when none). */
  marker: string;
}

/** PEP 503 normalization: `Foo.Bar_baz` → `foo-bar-baz`. */
export function normalizeName(name: string): string {
  return name.trim().toLowerCase().replace(/[-_.]+/g, "-");
}

/**
 * Parse one requirement line (PEP 508). Returns undefined for an empty line, a comment or a
 * pip option (`-r`, `-e`, `--index-url`, …), and for text that is not a requirement.
 */
export function parseRequirement(line: string): Requirement | undefined {
  let s = line.replace(/(^|\s)#.*$/, "").trim();
  if (!s || s.startsWith("-")) return undefined;
  let marker = "";
  const semi = s.indexOf(";");
  if (semi >= 0) {
    marker = s.slice(semi + 1).trim();
    s = s.slice(0, semi).trim();
  }
  const m = /^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([^\]]*)\])?\s*(.*)$/.exec(s);
  if (!m) return undefined;
  const name = m[1]!;
  const extras = (m[2] ?? "")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);
  let rest = m[3]!.trim();
  let url: string | undefined;
  if (rest.startsWith("@")) {
    url = rest.slice(1).trim();
    rest = "";
  }
  rest = rest.replace(/^\((.*)\)$/, "$1").replace(/\s+/g, "");
  if (rest && !/^(~=|==|!=|<=|>=|<|>|===)/.test(rest)) return undefined;
  return { name, normalized: normalizeName(name), extras, specifier: rest, ...(url ? { url } : {}), marker };
}

/** Values of the marker variables for the target interpreter (Debian's CPython on Linux). */
export interface MarkerEnvironment {
  python_version: string;
  python_full_version: string;
  sys_platform: string;
  platform_system: string;
  os_name: string;
  implementation_name: string;
  platform_python_implementation: string;
  platform_machine: string;
  /** The extra being evaluated ("" for none). */
  extra: string;
}

/** The marker environment of CPython `version` (e.g. "3.11.2") on Linux x86_64. */
export function linuxEnvironment(fullVersion: string, extra = ""): MarkerEnvironment {
  const [a, b] = fullVersion.split(".");
  return {
    python_version: `${a}.${b}`,
    python_full_version: fullVersion,
    sys_platform: "linux",
    platform_system: "Linux",
    os_name: "posix",
    implementation_name: "cpython",
    platform_python_implementation: "CPython",
    platform_machine: "x86_64",
    extra,
  };
}

type Tok = { t: "str" | "var" | "op" | "lp" | "rp" | "and" | "or"; v: string };

function tokenize(marker: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < marker.length) {
    const c = marker[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "(" || c === ")") {
      out.push({ t: c === "(" ? "lp" : "rp", v: c });
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      const end = marker.indexOf(c, i + 1);
      if (end < 0) throw new Error(`marker: unterminated string in ${JSON.stringify(marker)}`);
      out.push({ t: "str", v: marker.slice(i + 1, end) });
      i = end + 1;
      continue;
    }
    const op = /^(===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)/.exec(marker.slice(i));
    if (op) {
      out.push({ t: "op", v: op[1]!.replace(/\s+/, " ") });
      i += op[1]!.length;
      continue;
    }
    const w = /^[A-Za-z_.]+/.exec(marker.slice(i));
    if (!w) throw new Error(`marker: unexpected ${JSON.stringify(marker.slice(i, i + 10))} in ${JSON.stringify(marker)}`);
    const word = w[0];
    out.push(word === "and" ? { t: "and", v: word } : word === "or" ? { t: "or", v: word } : { t: "var", v: word });
    i += word.length;
  }
  return out;
}

const VERSION_VARS = new Set(["python_version", "python_full_version", "implementation_version"]);

function compare(lhs: string, op: string, rhs: string, versions: boolean): boolean {
  if (op === "in") return rhs.includes(lhs);
  if (op === "not in") return !rhs.includes(lhs);
  if (versions) {
    try {
      return satisfies(lhs, `${op}${rhs}`);
    } catch {
      // not a version: string comparison below
    }
  }
  switch (op) {
    case "==":
    case "===":
      return lhs === rhs;
    case "!=":
      return lhs !== rhs;
    case "<":
      return lhs < rhs;
    case "<=":
      return lhs <= rhs;
    case ">":
      return lhs > rhs;
    case ">=":
      return lhs >= rhs;
    default:
      return false;
  }
}

/**
 * Whether a requirement's marker holds for CPython `python` on Linux; a marker that cannot be
 * parsed counts as true (the requirement is kept rather than lost).
 */
export function markerActive(marker: string, python: string): boolean {
  try {
    return evaluateMarker(marker, linuxEnvironment(python));
  } catch {
    return true;
  }
}

/**
 * Evaluate a PEP 508 marker in `env`. Version variables compare as PEP 440 versions; `extra`
 * compares normalized names.
 * @throws Error naming the marker when it cannot be parsed.
 */
export function evaluateMarker(marker: string, env: MarkerEnvironment): boolean {
  if (!marker.trim()) return true;
  const toks = tokenize(marker);
  let p = 0;
  const value = (tok: Tok): { v: string; isVar: string | undefined } => {
    if (tok.t === "str") return { v: tok.v, isVar: undefined };
    if (tok.t === "var") {
      const name = tok.v === "platform.python_implementation" ? "platform_python_implementation" : tok.v;
      const v = (env as unknown as Record<string, string | undefined>)[name];
      if (v === undefined) throw new Error(`marker: unknown variable ${tok.v} in ${JSON.stringify(marker)}`);
      return { v, isVar: name };
    }
    throw new Error(`marker: expected a value, got ${tok.v} in ${JSON.stringify(marker)}`);
  };
  const atom = (): boolean => {
    const tok = toks[p++];
    if (!tok) throw new Error(`marker: unexpected end of ${JSON.stringify(marker)}`);
    if (tok.t === "lp") {
      const r = or();
      if (toks[p++]?.t !== "rp") throw new Error(`marker: missing ) in ${JSON.stringify(marker)}`);
      return r;
    }
    const l = value(tok);
    const op = toks[p++];
    if (!op || op.t !== "op") throw new Error(`marker: expected an operator in ${JSON.stringify(marker)}`);
    const r = value(toks[p++] ?? { t: "rp", v: "end" });
    const isVersion = VERSION_VARS.has(l.isVar ?? "") || VERSION_VARS.has(r.isVar ?? "");
    if (l.isVar === "extra" || r.isVar === "extra") return compare(normalizeName(l.v), op.v, normalizeName(r.v), false);
    return compare(l.v, op.v, r.v, isVersion);
  };
  const and = (): boolean => {
    let r = atom();
    while (toks[p]?.t === "and") {
      p++;
      const b = atom();
      r = r && b;
    }
    return r;
  };
  const or = (): boolean => {
    let r = and();
    while (toks[p]?.t === "or") {
      p++;
      const b = and();
      r = r || b;
    }
    return r;
  };
  const result = or();
  if (p !== toks.length) throw new Error(`marker: trailing text in ${JSON.stringify(marker)}`);
  return result;
}

/** Whether `version` satisfies a `requires-python` specifier ("" or invalid: true). */
export function pythonSatisfies(version: string, specifier: string | undefined): boolean {
  if (!specifier?.trim()) return true;
  try {
    return satisfies(version, specifier.replace(/\s+/g, ""));
  } catch {
    return true;
  }
}
