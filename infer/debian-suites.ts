/**
 * Per-suite facts for spec inference: which Debian suite's base image a repository runs on (its
 * requires-python decides), and that suite's package index and dh-python table for the mapper.
 *
 * The host is bookworm, so bookworm's facts come from the host (`apt-cache pkgnames python3-`,
 * `/usr/share/dh-python/dist/cpython3_fallback`). Every other suite's facts are read once from its
 * base image (`forager/base:<suite>-mmdebstrap-minbase`, made when missing) in a container with
 * the host network (the same access an env build's apt-get has): `apt-get update`, `apt-cache
 * pkgnames python3-`, dh-python's `cpython3_fallback` from `apt-get download dh-python`, and the
 * interpreter's `platform.python_version()`. They are cached under `<stateDir>/infer/suites/<suite>/`
 * (`pkgnames.txt`, `cpython3_fallback`, `python-version.txt`).
 */
import fs from "node:fs";
import path from "node:path";
import { BASE_SUITE, BASE_SUITES, baseImageTag, type BaseSuite, ensureBaseImage } from "../images/base";
import { runInImage } from "../sandbox/oneshot";
import { defaultStateDir } from "../images/state";
import { DebianMapper, notNeeded, parseVersionTable } from "./debian";
import { compare as pep440Compare } from "@renovatebot/pep440";
import { markerActive, pythonSatisfies } from "./pep508";
import type { RepoFacts, SourcedRequirement } from "./read";

/** Suites in order of preference (bookworm first: the default image every earlier spec uses). */
export const SUITE_ORDER: BaseSuite[] = ["bookworm", "trixie"];

/**
 * The suite whose Python satisfies requires-python, preferring bookworm when both do.
 * @param pythons full interpreter version per suite (default {@link BASE_SUITES}).
 * @returns `{suite, python}`, or `{reason}` naming every suite's Python when none does.
 */
export function chooseSuite(
  requiresPython: string | undefined,
  pythons: Record<string, string> = BASE_SUITES,
  accepted: BaseSuite[] = SUITE_ORDER,
): { suite: BaseSuite; python: string } | { reason: string } {
  for (const suite of accepted) {
    const py = pythons[suite];
    if (py && pythonSatisfies(py, requiresPython)) return { suite, python: py };
  }
  return { reason: `requires-python ${requiresPython} excludes ${accepted.map((s) => `${s}'s Python ${pythons[s]}`).join(" and ")}` };
}

/** A suite's cached facts: package names, dh-python table file, interpreter version. */
export interface SuiteIndex {
  suite: BaseSuite;
  python: string;
  /** dh-python's PyPI-name → package table of the suite (a file path), when one was read. */
  distFile?: string;
  /** `python3-*` package names of the suite; undefined means "ask the host's apt-cache". */
  packageNames?: string[];
  /** Candidate Debian version of each `python3-*` package, when read. */
  versions?: Map<string, string>;
}

const SCRIPT = [
  "set -e",
  "export DEBIAN_FRONTEND=noninteractive",
  "apt-get update -q >/dev/null 2>&1",
  'echo "@@python $(python3 -c "import platform; print(platform.python_version())")"',
  "echo @@pkgnames",
  "apt-cache pkgnames python3- | sort",
  "echo @@dist",
  "cd /tmp && apt-get download -q dh-python >/dev/null 2>&1 && dpkg-deb --fsys-tarfile dh-python_*.deb | tar -xO ./usr/share/dh-python/dist/cpython3_fallback",
  "echo @@versions",
  "apt-cache show --no-all-versions $(apt-cache pkgnames python3-) 2>/dev/null | grep -E '^(Package|Version): ' || true",
  "echo @@end",
].join("\n");

/**
 * The facts of a suite, from the cache or read from its base image now (tens of seconds, once).
 * @throws Error when the base image cannot be made or the container's output lacks the markers.
 */
export async function suiteIndex(suite: BaseSuite, stateDir = defaultStateDir(), onProgress?: (m: string) => void): Promise<SuiteIndex> {
  if (suite === BASE_SUITE) return { suite, python: BASE_SUITES[suite] };
  const dir = path.join(stateDir, "infer", "suites", suite);
  const names = path.join(dir, "pkgnames.txt");
  const dist = path.join(dir, "cpython3_fallback");
  const ver = path.join(dir, "python-version.txt");
  const versions = path.join(dir, "versions.txt");
  if (!(fs.existsSync(names) && fs.existsSync(dist) && fs.existsSync(ver))) {
    const tag = baseImageTag(suite);
    onProgress?.(`reading ${suite}'s package index from ${tag}`);
    await ensureBaseImage({ suite, stateDir });
    const r = await runInImage(tag, SCRIPT, { network: "host", timeoutMs: 300_000 });
    const out = r.stdout;
    const py = /^@@python (\S+)$/m.exec(out)?.[1];
    const a = out.indexOf("@@pkgnames\n");
    const b = out.indexOf("@@dist\n");
    const v = out.indexOf("@@versions\n");
    const c = out.indexOf("@@end");
    if (!py || a < 0 || b < 0 || v < 0 || c < 0) throw new Error(`reading ${suite}'s package index from ${tag} failed (exit ${r.exitCode}): ${(r.stderr || out).slice(-400)}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(names, out.slice(a + 11, b));
    fs.writeFileSync(dist, out.slice(b + 7, v));
    fs.writeFileSync(versions, out.slice(v + 11, c));
    fs.writeFileSync(ver, py + "\n");
  }
  // Versions of the packages dh-python's table names outside python3-* (cython3, black, flake8):
  // read once, apart, so caches written before them stay valid.
  const others = path.join(dir, "versions-dh-python.txt");
  if (fs.existsSync(versions) && !fs.existsSync(others)) {
    const pkgs = [...new Set(fs.readFileSync(dist, "utf8").split("\n").map((l) => l.trim().split(/\s+/)[1]).filter((p): p is string => !!p && !p.startsWith("python3-") && /^[a-z0-9][a-z0-9.+-]*$/.test(p)))];
    onProgress?.(`reading ${suite}'s versions of ${pkgs.length} packages dh-python names outside python3-*`);
    const r = await runInImage(baseImageTag(suite), ["export DEBIAN_FRONTEND=noninteractive", "apt-get update -q >/dev/null 2>&1", `apt-cache show --no-all-versions ${pkgs.join(" ")} 2>/dev/null | grep -E '^(Package|Version): ' || true`].join("\n"), { network: "host", timeoutMs: 300_000 });
    if (r.exitCode === 0 && /^Package: /m.test(r.stdout)) fs.writeFileSync(others, r.stdout);
  }
  const table = [versions, others].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, "utf8")).join("\n");
  return {
    suite,
    python: fs.readFileSync(ver, "utf8").trim(),
    distFile: dist,
    packageNames: fs.readFileSync(names, "utf8").split("\n").filter(Boolean),
    // Caches written before versions were read have none: versions are then unknown.
    ...(fs.existsSync(versions) ? { versions: parseVersionTable(table) } : {}),
  };
}

const mappers = new Map<string, DebianMapper>();

/** A mapper for a suite (cached per state dir and suite). */
export async function mapperForSuite(suite: BaseSuite, stateDir = defaultStateDir(), onProgress?: (m: string) => void): Promise<DebianMapper> {
  const key = `${stateDir}\0${suite}`;
  const hit = mappers.get(key);
  if (hit) return hit;
  const idx = await suiteIndex(suite, stateDir, onProgress);
  const m =
    suite === BASE_SUITE
      ? new DebianMapper({ suite })
      : new DebianMapper({ suite, ...(idx.distFile ? { distFile: idx.distFile } : {}), ...(idx.packageNames ? { packageNames: idx.packageNames } : {}), ...(idx.versions ? { versions: idx.versions } : {}) });
  mappers.set(key, m);
  return m;
}

/**
 * When each suite's package versions were fixed (its release date, ISO 8601): the era of its
 * packages, for `--latest-runnable`'s walk back past version skew (infer/latest.ts).
 */
export const SUITE_RELEASED: Record<BaseSuite, string> = { bookworm: "2023-06-10", trixie: "2025-08-09" };

/** How well one suite satisfies a repository: its Python, and the requirements it lacks or has at a version outside the specifier. */
export interface SuiteFit {
  suite: BaseSuite;
  python: string;
  /** Whether the suite's Python satisfies requires-python. */
  pythonOk: boolean;
  /** Runtime requirements (marker true, not tooling) with no package in the suite. */
  missingRuntime: string[];
  /** Runtime requirements whose packaged version is outside their specifier (`name>=2 (has 1.4)`). */
  outdatedRuntime: string[];
  /** The same for test requirements (pytest's own specifier included). */
  missingTest: string[];
  outdatedTest: string[];
}

/**
 * What a suite satisfies of a repository's requirements.
 * @param facts the repository's facts (requires-python, dependencies, test dependencies).
 * @param self the project's own normalized name (never a requirement of itself).
 */
export function suiteFit(facts: Pick<RepoFacts, "requiresPython" | "dependencies" | "testDependencies"> & Partial<Pick<RepoFacts, "siblings">>, suite: BaseSuite, python: string, mapper: DebianMapper, self?: string): SuiteFit {
  const fit: SuiteFit = { suite, python, pythonOk: pythonSatisfies(python, facts.requiresPython), missingRuntime: [], outdatedRuntime: [], missingTest: [], outdatedTest: [] };
  const seen = new Set<string>();
  const check = (list: SourcedRequirement[], missing: string[], outdated: string[]) => {
    for (const r of list) {
      if (seen.has(r.normalized) || r.normalized === self || r.url || !markerActive(r.marker, python)) continue;
      // A project of the same repository is installed from the tree: never missing.
      if (facts.siblings?.some((p) => p.normalized === r.normalized)) continue;
      if (notNeeded(r.name) && r.normalized !== "pytest") continue;
      seen.add(r.normalized);
      const m = mapper.map(r.name);
      if (!m) {
        missing.push(r.name);
        continue;
      }
      if (!r.specifier) continue;
      const v = mapper.version(m.package);
      if (v && !pythonSatisfies(v, r.specifier)) outdated.push(`${r.name}${r.specifier} (${suite} has ${v})`);
    }
  };
  check(facts.dependencies, fit.missingRuntime, fit.outdatedRuntime);
  check(facts.testDependencies, fit.missingTest, fit.outdatedTest);
  return fit;
}

/**
 * Suites in the order to try them: those whose Python satisfies requires-python, by fewest
 * runtime requirements missing, then fewest outside their specifier, then fewest test
 * requirements missing or outside, then the preference order given (bookworm first).
 * @returns the order and the reason for the first choice, for the provenance; `order` is empty
 * when no suite's Python fits.
 */
export function rankSuites(fits: SuiteFit[]): { order: SuiteFit[]; reason: string } {
  const ok = fits.filter((f) => f.pythonOk);
  // Where no suite satisfies a lower bound, the newer packaged version is the closer one: on a
  // tie, the suite with more of the newest versions among its outdated requirements comes first.
  const versionOf = (entry: string) => /\(\w+ has ([^)]+)\)$/.exec(entry)?.[1];
  const distOf = (entry: string) => entry.split(/[<>=!~ ]/)[0]!;
  const newest = new Map<string, string>();
  const newer = (a: string, b: string) => {
    try {
      return pep440Compare(a, b) > 0;
    } catch {
      return false;
    }
  };
  for (const f of ok) {
    for (const e of [...f.outdatedRuntime, ...f.outdatedTest]) {
      const v = versionOf(e);
      const cur = newest.get(distOf(e));
      if (v && (!cur || newer(v, cur))) newest.set(distOf(e), v);
    }
  }
  const closer = (f: SuiteFit) => [...f.outdatedRuntime, ...f.outdatedTest].filter((e) => versionOf(e) !== newest.get(distOf(e))).length;
  const key = (f: SuiteFit) => [f.missingRuntime.length, f.outdatedRuntime.length, f.missingTest.length + f.outdatedTest.length, closer(f)];
  const order = ok
    .map((f, i) => ({ f, i }))
    .sort((a, b) => {
      const ka = key(a.f);
      const kb = key(b.f);
      for (let j = 0; j < ka.length; j++) if (ka[j] !== kb[j]) return ka[j]! - kb[j]!;
      return a.i - b.i;
    })
    .map((x) => x.f);
  const describe = (f: SuiteFit) =>
    `${f.suite} (Python ${f.python}): ${f.pythonOk ? "" : "Python excluded by requires-python; "}${f.missingRuntime.length} runtime requirement(s) missing${f.missingRuntime.length ? ` (${f.missingRuntime.slice(0, 4).join(", ")})` : ""}, ${f.outdatedRuntime.length} outside the specifier${f.outdatedRuntime.length ? ` (${f.outdatedRuntime.slice(0, 3).join("; ")})` : ""}, ${f.missingTest.length + f.outdatedTest.length} test requirement(s) missing or outside${f.missingTest.length + f.outdatedTest.length ? ` (${[...f.missingTest, ...f.outdatedTest].slice(0, 4).join(", ")})` : ""}`;
  if (!order.length) return { order, reason: `no suite's Python satisfies requires-python: ${fits.map(describe).join("; ")}` };
  const first = order[0]!;
  const others = fits.filter((f) => f !== first);
  const why =
    others.length === 0
      ? "the only suite allowed"
      : others.every((o) => !o.pythonOk)
        ? "the only suite whose Python satisfies requires-python"
        : fits.indexOf(first) === 0 && others.every((o) => !o.pythonOk || key(o).join() === key(first).join())
          ? "both satisfy the same requirements; the first in preference order"
          : others.every((o) => !o.pythonOk || key(o).slice(0, 3).join() === key(first).slice(0, 3).join())
            ? "neither satisfies every specifier; its packaged versions are the newer ones"
            : "it satisfies more of the requirements";
  return { order, reason: `${first.suite}: ${why}. ${fits.map(describe).join("; ")}` };
}

/**
 * The fit of each suite for a repository's facts. A suite whose Python (as {@link BASE_SUITES}
 * records it) is excluded by requires-python is not read further; the others' package indexes
 * are loaded (read once from their base image, then cached). With `pip`, only the interpreter
 * counts (dependencies come from the index).
 * @param mapper used for its own suite instead of loading that suite's mapper (tests).
 */
export async function suiteFits(
  facts: Pick<RepoFacts, "requiresPython" | "dependencies" | "testDependencies"> & Partial<Pick<RepoFacts, "siblings">>,
  suites: BaseSuite[],
  opts: { stateDir?: string; self?: string; mapper?: DebianMapper; pip?: boolean; onProgress?: (m: string) => void } = {},
): Promise<{ fits: SuiteFit[]; mappers: Map<BaseSuite, DebianMapper> }> {
  const fits: SuiteFit[] = [];
  const mappers = new Map<BaseSuite, DebianMapper>();
  const none = { missingRuntime: [], outdatedRuntime: [], missingTest: [], outdatedTest: [] };
  for (const s of suites) {
    if (!pythonSatisfies(BASE_SUITES[s], facts.requiresPython)) {
      fits.push({ suite: s, python: BASE_SUITES[s], pythonOk: false, ...none });
      continue;
    }
    const python = (await suiteIndex(s, opts.stateDir, opts.onProgress)).python;
    if (opts.pip) {
      fits.push({ suite: s, python, pythonOk: pythonSatisfies(python, facts.requiresPython), ...none });
      continue;
    }
    const mapper = opts.mapper && opts.mapper.suite === s ? opts.mapper : await mapperForSuite(s, opts.stateDir, opts.onProgress);
    mappers.set(s, mapper);
    fits.push(suiteFit(facts, s, python, mapper, opts.self));
  }
  return { fits, mappers };
}
