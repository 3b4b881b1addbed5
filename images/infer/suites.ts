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
import { BASE_SUITE, BASE_SUITES, baseImageTag, type BaseSuite, ensureBaseImage } from "../base";
import { runInImage } from "../docker";
import { defaultStateDir } from "../state";
import { DebianMapper, parseVersionTable } from "./debian";
import { pythonSatisfies } from "./pep508";

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
  return {
    suite,
    python: fs.readFileSync(ver, "utf8").trim(),
    distFile: dist,
    packageNames: fs.readFileSync(names, "utf8").split("\n").filter(Boolean),
    // Caches written before versions were read have none: versions are then unknown.
    ...(fs.existsSync(versions) ? { versions: parseVersionTable(fs.readFileSync(versions, "utf8")) } : {}),
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
