/**
 * Image inference with a pip index (FORAGER_PIP_INDEX / --pip-index): requirements become
 * pythonPackages, the build backend too; the repair rules in pip mode; the date-filtering index
 * of `--pip-cutoff` (images/pip-cutoff.ts) in front of a loopback index of hand-made wheels.
 * Then, in Docker, a created repository whose dependency's newer release (uploaded after the
 * commit) breaks its tests: accepted with the older release, and a dependency the index does not
 * have dropped by the repair loop.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { DebianMapper } from "../infer/debian";
import { GitTree, readRepository } from "../infer/read";
import { inferImage, pipCutoffInstant } from "../infer/run";
import { repairFromLog, repairPipBuild, specFromFacts } from "../infer/spec";
import { fileVersion, pipPreflight } from "../infer/pip";
import { filterProject, SIMPLE_JSON, SimpleProjectSchema, startCutoffIndex } from "../images/pip-cutoff";
import { envHash, envHashInputs } from "../images/build";
import { ImageSpecSchema } from "../images/spec";
import { dockerUp } from "./helpers/docker-probe";
import { makeRepo } from "./helpers/git-fixtures";
import { startTestIndex, type TestRelease } from "./helpers/pip-index";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-pip-test-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const distFile = path.join(tmp, "cpython3_fallback");
fs.writeFileSync(distFile, "PyYAML python3-yaml\nattrs python3-attr\n");
const mapper = new DebianMapper({ distFile, packageNames: ["python3-yaml", "python3-attr", "python3-pytest-mock", "python3-hatchling"] });

const FANCY: TestRelease[] = [
  { name: "forager-fancylib", version: "1.0", uploaded: "2020-01-01T00:00:00Z", files: { "fancylib/__init__.py": 'def greet(n):\n    return "hello " + n\n' } },
  // Uploaded after any test commit: its API change would break the created repository.
  { name: "forager-fancylib", version: "2.0", uploaded: "2099-01-01T00:00:00Z", files: { "fancylib/__init__.py": 'def salute(n):\n    return "hi " + n\n' } },
];

let n = 0;
function repo(files: Record<string, string>) {
  const r = makeRepo(path.join(tmp, `r${n++}`), files);
  return { dir: r.dir, commit: r.shas[0]!, tree: new GitTree(r.dir, r.shas[0]!) };
}

describe("pip mode: the spec and its repairs", () => {
  const r = repo({
    "pyproject.toml":
      '[build-system]\nrequires = ["hatchling>=1.18"]\nbuild-backend = "hatchling.build"\n\n[project]\nname = "pkg"\nversion = "1"\n' +
      'dependencies = ["attrs>=22", "requests[socks]>=2,<3", "tomli; python_version < \'3.11\'", "vendored @ https://example.invalid/v.tar.gz"]\n\n' +
      '[project.optional-dependencies]\ntest = ["pytest-mock"]\n',
    "pkg/__init__.py": "",
    "tests/test_a.py": "def test_a():\n    pass\n",
  });
  const facts = readRepository(r.tree);
  const inferred = specFromFacts(facts, mapper, { repo: "x/pkg", commit: r.commit, pip: { index: "http://127.0.0.1:1/simple/", uploadedBefore: "2024-01-01T00:00:00Z" } });

  it("requirements and the backend go to pythonPackages as pip reads them; Debian gives only the base", () => {
    expect(inferred.spec.pythonPackages).toEqual(["hatchling>=1.18", "attrs>=22", "requests[socks]>=2,<3", "pytest-mock"]);
    expect(inferred.spec.systemPackages).not.toContain("python3-hatchling");
    expect(inferred.spec.systemPackages).not.toContain("python3-attr");
    expect(inferred.spec.pipUploadedBefore).toBe("2024-01-01T00:00:00Z");
    const skipped = Object.fromEntries(inferred.provenance.packages.filter((p) => p.skipped).map((p) => [p.dist, p.skipped]));
    expect(skipped.tomli).toMatch(/marker false/);
    expect(skipped.vendored).toMatch(/direct reference.*only the pip index/);
    expect(inferred.provenance.pipIndex).toBe("http://127.0.0.1:1/simple/");
    // Without an index, the same facts map to Debian packages.
    const debian = specFromFacts(facts, mapper, { repo: "x/pkg", commit: r.commit }).spec;
    expect(debian.pythonPackages).toEqual([]);
    expect(debian.systemPackages).toEqual(expect.arrayContaining(["python3-hatchling", "python3-attr", "python3-pytest-mock"]));
  });

  it("the cutoff is part of the env hash only when pip runs", () => {
    const spec = inferred.spec;
    const later = ImageSpecSchema.parse({ ...spec, pipUploadedBefore: "2025-01-01T00:00:00Z" });
    expect(envHash(spec, "sha256:b", true)).not.toBe(envHash(later, "sha256:b", true));
    expect(envHash(spec, "sha256:b", false)).toBe(envHash(later, "sha256:b", false));
    // pip runs with --upgrade (a Debian copy that satisfies a requirement does not hold it back): in the hash when pip runs.
    expect(envHashInputs(spec, "sha256:b", true)).toMatchObject({ pipUpgrade: true, pipUploadedBefore: "2024-01-01T00:00:00Z" });
    expect(envHashInputs(spec, "sha256:b", false)).toMatchObject({ pipUpgrade: undefined, pythonPackages: [] });
  });

  it("a requirement the index lacks is replaced by its Debian package or dropped; a conflict drops the pins", () => {
    const a = repairPipBuild(inferred.spec, "ERROR: Could not find a version that satisfies the requirement attrs>=22 (from versions: none)\nERROR: No matching distribution found for attrs>=22\n", mapper)!;
    expect(a.spec.pythonPackages).not.toContain("attrs>=22");
    expect(a.spec.systemPackages).toContain("python3-attr");
    expect(a.unavailable).toEqual(["attrs"]);
    const b = repairPipBuild(inferred.spec, "ERROR: No matching distribution found for hatchling>=1.18", new DebianMapper({ distFile, packageNames: [] }))!;
    expect(b.changes[0]!.change).toMatch(/^drop hatchling>=1.18: the pip index cannot give it and Debian has no package/);
    const c = repairPipBuild(inferred.spec, "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/…", mapper)!;
    expect(c.spec.pythonPackages).toEqual(["hatchling", "attrs", "requests[socks]", "pytest-mock"]);
    expect(repairPipBuild(inferred.spec, "Successfully installed attrs-23.1.0", mapper)).toBeUndefined();
  });

  it("a missing module asks the index first; once the index lacks it, Debian, else the file is deselected", () => {
    const log = [
      "____________________ ERROR collecting tests/test_yaml.py ____________________",
      "E   ModuleNotFoundError: No module named 'yaml'",
      "____________________ ERROR collecting tests/test_exotic.py ____________________",
      "E   ModuleNotFoundError: No module named 'exotic_lib'",
      "=========================== short test summary info ============================",
    ].join("\n");
    const first = repairFromLog(inferred.spec, log, mapper, [], { pip: { unavailable: [] } })!;
    expect(first.spec.pythonPackages).toEqual(expect.arrayContaining(["PyYAML", "exotic-lib"]));
    expect(first.deselected).toEqual([]);
    const later = repairFromLog(inferred.spec, log, mapper, [], { pip: { unavailable: ["pyyaml", "exotic-lib"] } })!;
    expect(later.spec.systemPackages).toContain("python3-yaml");
    expect(later.deselected).toEqual([{ path: "tests/test_exotic.py", reason: expect.stringMatching(/no Debian package and is not on the pip index/) }]);
    const fixture = repairFromLog(inferred.spec, "E       fixture 'benchmark' not found", mapper, [], { pip: { unavailable: [] } })!;
    expect(fixture.changes[0]!.change).toMatch(/^add pytest-benchmark from the pip index/);
  });

  it("a missing module that is one of the project's extras adds every extra at once, from the index or Debian", () => {
    const ex = repo({
      "pyproject.toml": '[project]\nname = "ser"\nversion = "1"\n\n[project.optional-dependencies]\nyaml = ["PyYAML>=6"]\nattrs = ["attrs>=22"]\nfast = ["orjson; implementation_name == \'pypy\'"]\ntest = ["pytest-mock"]\n',
      "tests/test_a.py": "def test_a():\n    pass\n",
    });
    const f = readRepository(ex.tree);
    expect(f.extraDependencies.map((r) => r.name)).toEqual(["PyYAML", "attrs", "orjson"]);
    expect(f.testDependencies.map((r) => r.name)).toEqual(["pytest-mock"]);
    const log = "E   ModuleNotFoundError: No module named 'yaml'";
    const deb = specFromFacts(f, mapper, { repo: "x/ser", commit: ex.commit });
    expect(deb.extras).toEqual(["PyYAML>=6", "attrs>=22"]);
    const d = repairFromLog(deb.spec, log, mapper, [], { extras: deb.extras })!;
    expect(d.spec.systemPackages).toEqual(expect.arrayContaining(["python3-yaml", "python3-attr"]));
    const pipSpec = specFromFacts(f, mapper, { repo: "x/ser", commit: ex.commit, pip: { index: "http://127.0.0.1:1/simple/" } });
    const p = repairFromLog(pipSpec.spec, log, mapper, [], { pip: { unavailable: [] }, extras: pipSpec.extras })!;
    expect(p.spec.pythonPackages).toEqual(["pytest-mock", "PyYAML>=6", "attrs>=22"]);
    expect(p.changes[0]!.change).toMatch(/^add PyYAML>=6 from the pip index \(an extra of the project/);
  });

  it("--pip-cutoff: the commit's committer date, or a date given; anything else names the option", () => {
    expect(pipCutoffInstant("commit", r.dir, r.commit)).toBe(execFileSync("git", ["-C", r.dir, "show", "-s", "--format=%cI", r.commit], { encoding: "utf8" }).trim());
    expect(pipCutoffInstant("2024-05-01", r.dir, r.commit)).toBe("2024-05-01T00:00:00.000Z");
    expect(() => pipCutoffInstant("last tuesday", r.dir, r.commit)).toThrow(/--pip-cutoff/);
  });
});

describe("the date-filtering index", () => {
  it("keeps files uploaded before the cutoff and undated ones; URLs made absolute against the page", () => {
    const page = SimpleProjectSchema.parse({
      meta: { "api-version": "1.1" },
      name: "p",
      versions: ["1", "2"],
      files: [
        { filename: "p-1-py3-none-any.whl", url: "../../files/p-1.whl", hashes: {}, "upload-time": "2020-01-01T00:00:00.000000Z" },
        { filename: "p-2-py3-none-any.whl", url: "https://files.example/p-2.whl", hashes: {}, "upload-time": "2024-06-01T00:00:00Z" },
        { filename: "p-0.tar.gz", url: "p-0.tar.gz", hashes: {} },
      ],
    });
    const f = filterProject(page, new Date("2024-01-01T00:00:00Z"), "http://idx.example/simple/p/");
    expect(f.page.files.map((x) => x.url)).toEqual(["http://idx.example/files/p-1.whl", "http://idx.example/simple/p/p-0.tar.gz"]);
    expect([f.dropped, f.undated]).toEqual([1, 1]);
    expect(f.page.meta["api-version"]).toBe("1.0");
    expect("versions" in f.page).toBe(false);
  });

  it("in front of a loopback index: JSON and HTML answers without the newer release; 404 passed on; HTML-only upstream unfiltered", async () => {
    const up = await startTestIndex(FANCY);
    const cut = await startCutoffIndex(up.url, new Date("2024-01-01T00:00:00Z"));
    try {
      const json = await request(`${cut.url}forager-fancylib/`, { headers: { accept: SIMPLE_JSON } });
      expect(String(json.headers["content-type"])).toContain(SIMPLE_JSON);
      const page = SimpleProjectSchema.parse(await json.body.json());
      expect(page.files.map((f) => f.filename)).toEqual(["forager_fancylib-1.0-py3-none-any.whl"]);
      expect(page.files[0]!.url).toBe(new URL("/files/forager_fancylib-1.0-py3-none-any.whl", up.url).toString());
      const html = await (await request(`${cut.url}forager-fancylib/`, { headers: { accept: "text/html" } })).body.text();
      expect(html).toContain("forager_fancylib-1.0-py3-none-any.whl");
      expect(html).not.toContain("2.0");
      expect(html).toMatch(/href="http:\/\/127\.0\.0\.1:\d+\/files\/forager_fancylib-1\.0-py3-none-any\.whl#sha256=[0-9a-f]{64}"/);
      expect((await request(`${cut.url}no-such-dist/`)).statusCode).toBe(404);
      expect(cut.stats).toMatchObject({ pages: 2, dropped: 2, unfiltered: 0 });
    } finally {
      await cut.close();
      await up.close();
    }
    const htmlUp = await startTestIndex(FANCY, { htmlOnly: true });
    const cut2 = await startCutoffIndex(htmlUp.url, new Date("2024-01-01T00:00:00Z"));
    try {
      const body = await (await request(`${cut2.url}forager-fancylib/`, { headers: { accept: SIMPLE_JSON } })).body.text();
      expect(body).toContain("forager_fancylib-2.0");
      expect(cut2.stats.unfiltered).toBe(1);
    } finally {
      await cut2.close();
      await htmlUp.close();
    }
  });
});

describe("the pip index preflight", () => {
  it("names what the index cannot give before any build: absent, too new for the cutoff, no fitting version", async () => {
    expect([fileVersion("forager_fancylib-1.0-py3-none-any.whl"), fileVersion("attrs-23.1.0.tar.gz"), fileVersion("x.exe")]).toEqual(["1.0", "23.1.0", undefined]);
    for (const htmlOnly of [false, true]) {
      const up = await startTestIndex(FANCY, { htmlOnly });
      try {
        const reqs = ["forager-fancylib>=1.0", "forager-fancylib>=2", "nope-dist", "local @ https://example.invalid/x.whl"];
        const m = await pipPreflight(reqs, up.url, { before: new Date("2024-01-01T00:00:00Z"), python: "3.11.2" });
        if (htmlOnly) {
          // No upload times in PEP 503 HTML: 2.0 counts, so only the absent dist is missing.
          expect(m.map((x) => x.requirement)).toEqual(["nope-dist"]);
          continue;
        }
        expect(m).toEqual([
          { requirement: "forager-fancylib>=2", dist: "forager-fancylib", reason: "no release on the pip index satisfies >=2 (has 1.0)" },
          { requirement: "nope-dist", dist: "nope-dist", reason: "not on the pip index" },
        ]);
        const early = await pipPreflight(["forager-fancylib"], up.url, { before: new Date("2019-01-01T00:00:00Z"), python: "3.11.2" });
        expect(early[0]!.reason).toMatch(/no release on the pip index uploaded before 2019-01-01/);
      } finally {
        await up.close();
      }
    }
  });
});

const docker = dockerUp();

describe.skipIf(!docker)("inferImage with a pip index, in Docker", () => {
  it(
    "--pip-cutoff commit installs the release before the commit; a dependency the index lacks is dropped before the build",
    async () => {
      const r = repo({
        "setup.py": 'from setuptools import setup\nsetup(name="greeter", version="0.1", packages=["greeter"], install_requires=["forager-fancylib>=1.0", "forager-missing-dist"])\n',
        "greeter/__init__.py": "from fancylib import greet\n\n\ndef hello():\n    return greet(\"x\")\n",
        "tests/test_hello.py": 'from greeter import hello\n\n\ndef test_hello():\n    assert hello() == "hello x"\n',
      });
      const index = await startTestIndex(FANCY);
      try {
        const out = path.join(tmp, "greeter.json");
        // A nonce in the env: a fresh env layer each run, so pip really downloads (no cached image).
        const o = await inferImage({ repo: r.dir, name: "example/greeter", out, stateDir: path.join(tmp, "state"), mapper, flakyRuns: 0, pipIndex: index.url, pipCutoff: "commit", extraEnv: { FORAGER_TEST_NONCE: String(Date.now()) } });
        expect(o.result.reason).toMatch(/1\/1 pass/);
        expect(o.result.accepted).toBe(true);
        const spec = ImageSpecSchema.parse(JSON.parse(fs.readFileSync(out, "utf8")));
        expect(spec.pythonPackages).toEqual(["forager-fancylib>=1.0"]);
        expect(spec.pipUploadedBefore).toBe(pipCutoffInstant("commit", r.dir, r.commit));
        // The preflight found the missing dependency before any build: one build, no failed pip step.
        expect(o.inferred!.provenance.changes).toContainEqual({ attempt: 0, trigger: "pip index preflight: not on the pip index", change: "drop forager-missing-dist: the pip index cannot give it and Debian has no package" });
        expect(o.result.attempts).toBe(1);
        // pip downloaded the release uploaded before the commit, never the later one.
        expect(index.requests).toContain("/files/forager_fancylib-1.0-py3-none-any.whl");
        expect(index.requests.some((p) => p.includes("2.0"))).toBe(false);
      } finally {
        await index.close();
      }
    },
    900_000,
  );
});
