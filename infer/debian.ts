/**
 * PyPI distribution → Debian package, without a pip index.
 *
 * Order: (1) Debian's own mapping shipped by dh-python (`/usr/share/dh-python/dist/cpython3_fallback`,
 * lines `Dist-Name debian-package`), (2) the suite's package index: `python3-<normalized name>`
 * (and without a `python-` prefix), checked against the names `apt-cache pkgnames python3-` lists
 * on the host (a bookworm host, the suite of forager's base image). Both sources are recorded
 * with each mapping so a person can see why a package was chosen.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { normalizeName } from "./pep508";

/** Where a mapping came from. */
export type MappingSource = "dh-python" | "package-index" | "stdlib" | "tool" | "system-data";

export interface DebianMapping {
  package: string;
  via: MappingSource;
}

/** Default path of dh-python's fallback table (Debian package dh-python). */
export const DH_PYTHON_DIST = "/usr/share/dh-python/dist/cpython3_fallback";

/** Distributions forager never installs for a test run: linters, docs, release tooling, backports in the standard library. */
const NOT_NEEDED = new Set(
  [
    "pytest", "pip", "setuptools", "wheel", "tox", "nox", "pre-commit", "mypy", "pyright", "black", "ruff", "flake8", "pylint", "isort",
    "twine", "build", "sphinx", "furo", "codecov", "coveralls", "pip-tools", "bump2version", "bumpversion", "check-manifest", "tox-uv", "pre-commit-uv",
    "uv", "docutils", "readme-renderer", "pyroma", "mkdocs", "towncrier", "pytest-cov", "coverage", "importlib-metadata", "typing-extensions",
    "dataclasses", "importlib-resources", "backports-zoneinfo", "tomli", "exceptiongroup", "zipp", "types-setuptools", "gha-update", "setuptools-scm",
    "ipython", "ipdb", "pdbpp", "pytest-sugar", "pytest-randomly", "pytest-github-actions-annotate-failures", "cogapp", "sphinx-autobuild", "pytest-codspeed",
  ].map(normalizeName),
);

/** Whether a distribution is skipped on purpose (tooling, not needed to run tests). */
export function notNeeded(dist: string): boolean {
  const n = normalizeName(dist);
  return NOT_NEEDED.has(n) || /^(sphinx|types-|mkdocs|flake8-|pytest-pretty|pallets-sphinx)/.test(n);
}

/**
 * Distributions that ship, for platforms without it, data the system provides: PyPI's `tzdata` is
 * the IANA time zone database, a fallback for systems that lack one; on Debian `zoneinfo` reads it
 * from /usr/share/zoneinfo (package tzdata). Mapped to the system package.
 */
export const SYSTEM_DATA: Record<string, string> = { tzdata: "tzdata" };

/** Import names whose distribution differs, for ModuleNotFoundError repairs. */
export const IMPORT_TO_DIST: Record<string, string> = {
  yaml: "PyYAML",
  attr: "attrs",
  dateutil: "python-dateutil",
  PIL: "Pillow",
  bs4: "beautifulsoup4",
  jwt: "PyJWT",
  Crypto: "pycryptodome",
  OpenSSL: "pyOpenSSL",
  google: "protobuf",
  dns: "dnspython",
  magic: "python-magic",
  serial: "pyserial",
  sklearn: "scikit-learn",
  cv2: "opencv-python",
  pkg_resources: "setuptools",
  typing_extensions: "typing-extensions",
  _pytest: "pytest",
  xdist: "pytest-xdist",
  pytest_timeout: "pytest-timeout",
  pytest_asyncio: "pytest-asyncio",
  setuptools_scm: "setuptools-scm",
  git: "GitPython",
  Levenshtein: "python-Levenshtein",
  nacl: "PyNaCl",
  jose: "python-jose",
  docx: "python-docx",
  socks: "PySocks",
  zmq: "pyzmq",
  usb: "pyusb",
  gi: "PyGObject",
  wx: "wxPython",
  skimage: "scikit-image",
  Bio: "biopython",
  multipart: "python-multipart",
  slugify: "python-slugify",
  editor: "python-editor",
  memcache: "python-memcached",
  ldap: "python-ldap",
  brotli: "Brotli",
};

/** The mapper: loads the dh-python table and the package names once. */
export class DebianMapper {
  readonly dist = new Map<string, string>();
  readonly packages: Set<string>;
  readonly sources: string[] = [];
  /** The Debian suite the tables describe (default bookworm, the host's). */
  readonly suite: string;
  /** Candidate versions by package (Debian version strings): given, or filled from the host's apt-cache as asked. */
  private readonly versions: Map<string, string | undefined>;
  private readonly askApt: boolean;
  constructor(opts: { distFile?: string; packageNames?: Iterable<string>; suite?: string; versions?: Map<string, string> } = {}) {
    this.suite = opts.suite ?? "bookworm";
    this.versions = new Map(opts.versions);
    this.askApt = !opts.packageNames && !opts.versions;
    const distFile = opts.distFile ?? process.env.FORAGER_DH_PYTHON_DIST ?? DH_PYTHON_DIST;
    if (fs.existsSync(distFile)) {
      for (const line of fs.readFileSync(distFile, "utf8").split("\n")) {
        const [name, pkg] = line.trim().split(/\s+/);
        if (name && pkg && !name.startsWith("#")) this.dist.set(normalizeName(name), pkg);
      }
      this.sources.push(`dh-python ${distFile} (${this.dist.size} names, ${this.suite})`);
    }
    if (opts.packageNames) {
      this.packages = new Set(opts.packageNames);
      this.sources.push(`${this.suite} package index (${this.packages.size} python3-* names)`);
    }
    else {
      let names: string[] = [];
      try {
        names = execFileSync("apt-cache", ["pkgnames", "python3-"], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }).split("\n").filter(Boolean);
      } catch {
        // no apt-cache on this host: only the dh-python table is used
      }
      this.packages = new Set(names);
      if (names.length) this.sources.push(`apt-cache pkgnames python3- (${names.length} names)`);
    }
  }

  /** The Debian package of a distribution, or undefined when the suite has none. */
  map(dist: string): DebianMapping | undefined {
    const n = normalizeName(dist);
    if (n === "pytest") return { package: "python3-pytest", via: "tool" };
    if (SYSTEM_DATA[n]) return { package: SYSTEM_DATA[n], via: "system-data" };
    const fromDh = this.dist.get(n);
    // The package index lists python3-* names only: a table entry naming another package (Cython →
    // cython3, flit → flit) is the suite's own table's word (it is built from that suite's archive).
    if (fromDh && (this.packages.size === 0 || this.packages.has(fromDh) || !fromDh.startsWith("python3-"))) return { package: fromDh, via: "dh-python" };
    for (const cand of [`python3-${n}`, `python3-${n.replace(/^python-/, "")}`, `python3-${n.replace(/-/g, "")}`, `python3-${n.replace(/^py/, "")}`]) {
      if (this.packages.has(cand)) return { package: cand, via: "package-index" };
    }
    return undefined;
  }

  /**
   * The upstream version of a package in the suite ({@link upstreamVersion} of its candidate
   * version), or undefined when unknown (no version table, or apt-cache does not answer).
   */
  version(pkg: string): string | undefined {
    if (this.askApt && !this.versions.has(pkg)) {
      let v: string | undefined;
      try {
        v = /^Version: (\S+)$/m.exec(execFileSync("apt-cache", ["show", "--no-all-versions", pkg], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }))?.[1];
      } catch {
        v = undefined;
      }
      this.versions.set(pkg, v);
    }
    const v = this.versions.get(pkg);
    return v ? upstreamVersion(v) : undefined;
  }

  /** The package providing an import name (ModuleNotFoundError), or undefined. */
  mapImport(module: string): { dist: string; mapping?: DebianMapping } {
    const top = module.split(".")[0]!;
    const dist = IMPORT_TO_DIST[top] ?? top.replace(/_/g, "-");
    return { dist, mapping: this.map(dist) ?? (IMPORT_TO_DIST[top] ? undefined : this.map(top)) };
  }
}

/**
 * Debian packages of the build backends in bookworm (`flit` pulls flit_core 3.8; hatchling 1.12;
 * no pdm-backend, so pdm-pep517).
 */
export const BACKEND_PACKAGES: Record<string, string[]> = {
  setuptools: ["python3-setuptools"],
  flit: ["flit"],
  hatch: ["python3-hatchling"],
  poetry: ["python3-poetry-core"],
  pdm: ["python3-pdm-pep517"],
  unknown: [],
};

/**
 * The backend packages of a suite. trixie ships flit 3.12, hatchling 1.27, poetry-core 2.1 and
 * pdm-backend 2.4 (PEP 639 license strings accepted, so editable installs can work there).
 */
export function backendPackages(backend: string, suite = "bookworm"): string[] {
  if (suite !== "bookworm" && backend === "pdm") return ["python3-pdm-backend"];
  return BACKEND_PACKAGES[backend] ?? [];
}

/**
 * The upstream part of a Debian version (Debian Policy 5.6.12: `[epoch:]upstream[-revision]`),
 * with repack suffixes (`+dfsg`, `+ds`, `+repack`, `+really…`) cut and `~` removed, so that it
 * compares as PEP 440: `1:2.3+dfsg-1` → `2.3`, `2.0~rc1-2` → `2.0rc1`.
 */
export function upstreamVersion(debian: string): string {
  return debian
    .replace(/^\d+:/, "")
    .replace(/-[^-]*$/, "")
    .replace(/[+](dfsg|ds|repack|really|git|debian).*$/i, "")
    .replace(/~/g, "");
}

/** `Package:` / `Version:` lines of `apt-cache show` → candidate version by package (the first one seen). */
export function parseVersionTable(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let pkg: string | undefined;
  for (const line of text.split("\n")) {
    const p = /^Package: (\S+)/.exec(line);
    if (p) pkg = p[1];
    const v = /^Version: (\S+)/.exec(line);
    if (v && pkg && !out.has(pkg)) out.set(pkg, v[1]!);
  }
  return out;
}
