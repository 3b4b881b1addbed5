/**
 * images/: base image, env + instance builds of a created repository (real Docker, apt through
 * the host network), caching, repository hygiene inside the image, failing steps, listing,
 * pruning (dry run), and the SWE-bench spec table.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBaseImage } from "../images/base";
import {
  buildEnvImage,
  buildInstanceImage,
  envHash,
  ImageBuildError,
  INSTALL_COMMIT_MESSAGE,
  listImages,
  pruneImages,
  type InstanceBuildResult,
} from "../images/build";
import { docker, imageExists, inspectImage } from "../images/docker";
import { runInImage } from "../sandbox/oneshot";
import { prepareRepository } from "../images/repo";
import { ImageSpecSchema, type ImageSpecInput } from "../images/spec";
import { withFileLock } from "../images/state";
import { knownIssue, networkRequirement, specForSweBench, sweBenchVersions } from "../images/swebench-specs";
import { git, makeTinyPythonRepo, type TinyPythonRepo } from "./helpers/git-fixtures";

const PIP_E = "pip install --no-index --no-deps --no-build-isolation --break-system-packages -e .";

let tmp: string;
let stateDir: string;
let repo: TinyPythonRepo;
let spec: ImageSpecInput;
let first: InstanceBuildResult;
let firstSeconds: number;
const madeTags: string[] = [];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-images-test-"));
  stateDir = path.join(tmp, "state");
  repo = makeTinyPythonRepo(path.join(tmp, "src"));
  await ensureBaseImage({ stateDir });
  // A per-run nonce in an install line: the env layer is shared across runs (cached), the
  // instance layer is built fresh every run.
  const nonce = `${Date.now()}-${process.pid}`;
  spec = {
    repo: "example/tinypkg",
    commit: repo.baseSha,
    source: { type: "path", path: repo.dir },
    systemPackages: ["python3-pytest", "python3-pip", "python3-setuptools"],
    // The last line checks that install steps run without a network (only loopback).
    install: [PIP_E, `echo "BUILD = '${nonce}'" > tinypkg/_build_info.py`, 'test "$(ls /sys/class/net)" = lo'],
    testCommand: "pytest -rA",
    logParser: "pytest",
    keepAncestorTags: true,
  };
  const t0 = Date.now();
  first = await buildInstanceImage(spec, { stateDir });
  firstSeconds = (Date.now() - t0) / 1000;
  madeTags.push(first.tag);
}, 600_000);

afterAll(async () => {
  for (const tag of madeTags) await docker().getImage(tag).remove().catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe("base image", () => {
  it("exists after ensureBaseImage, which is idempotent", async () => {
    const r = await ensureBaseImage({ stateDir });
    expect(r.created).toBe(false);
    expect(r.source).toBe("existing");
    expect(await imageExists(r.tag)).toBe(true);
  });
});

describe("env + instance build", () => {
  it("builds both layers with tags and labels that say what they are", async () => {
    expect(first.cached).toBe(false);
    expect(first.tag).toMatch(/^forager\/instance:example__tinypkg-[0-9a-f]{12}-[0-9a-f]{8}$/);
    expect(first.tag).toContain(repo.baseSha.slice(0, 12));
    expect(first.env.tag).toMatch(/^forager\/env:[0-9a-f]{16}$/);
    expect(first.commit).toBe(repo.baseSha);
    const info = await inspectImage(first.tag);
    const labels = info!.Config.Labels!;
    expect(labels["forager.kind"]).toBe("instance");
    expect(labels["forager.repo"]).toBe("example/tinypkg");
    expect(labels["forager.commit"]).toBe(repo.baseSha);
    expect(labels["forager.spec-hash"]).toBe(first.hash);
    expect(Date.parse(labels["forager.created"]!)).toBeGreaterThan(0);
    expect(fs.readFileSync(first.logFile!, "utf8")).toContain("Step 1/");
    console.log(`instance build: ${firstSeconds.toFixed(1)} s (env ${first.env.cached ? "cached" : "built"} in ${first.env.seconds.toFixed(1)} s)`);
  });

  it("a second build of the same spec is a cache hit (no new image)", async () => {
    const t0 = Date.now();
    const again = await buildInstanceImage(spec, { stateDir });
    expect(again.cached).toBe(true);
    expect(again.env.cached).toBe(true);
    expect(again.id).toBe(first.id);
    expect(again.env.id).toBe(first.env.id);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it("the env hash covers exactly its inputs", () => {
    const s = ImageSpecSchema.parse(spec);
    const h = envHash(s, "sha256:base", false);
    expect(envHash({ ...s, systemPackages: [...s.systemPackages].reverse() }, "sha256:base", false)).toBe(h);
    expect(envHash({ ...s, install: ["true"], commit: "0".repeat(40) }, "sha256:base", false)).toBe(h);
    expect(envHash({ ...s, systemPackages: [...s.systemPackages, "git"] }, "sha256:base", false)).not.toBe(h);
    expect(envHash({ ...s, env: { A: "1" } }, "sha256:base", false)).not.toBe(h);
    expect(envHash(s, "sha256:other", false)).not.toBe(h);
  });

  it("inside the instance: only history up to base, no remotes, no later tags, clean tree, installed", async () => {
    const script = [
      "echo '== log'; git log --all --format='%H %P|%an|%s'",
      "echo '== remotes'; git remote -v",
      "echo '== tags'; git tag",
      "echo '== refs'; git for-each-ref --format='%(refname)'",
      `echo '== fix'; git cat-file -e ${repo.fixSha} 2>/dev/null && echo reachable || echo absent`,
      `echo '== feature'; git cat-file -e ${repo.featureSha} 2>/dev/null && echo reachable || echo absent`,
      "echo '== grep'; git log --all -p | grep -c SECRET-FIX-MARKER || true",
      "echo '== status'; git status --porcelain",
      "echo '== diff'; git diff HEAD --stat",
      "echo '== import'; python3 -c 'import tinypkg, os; print(os.path.dirname(tinypkg.__file__))'",
      "echo '== pytest'; pytest -rA -p no:cacheprovider 2>&1 | grep -E '^(PASSED|FAILED)'",
      "echo '== end'",
    ].join("\n");
    const r = await runInImage(first.tag, script, { workdir: "/testbed" });
    expect(r.exitCode).toBe(0);
    const sections = Object.fromEntries(
      r.stdout
        .split(/^== /m)
        .filter(Boolean)
        .map((s) => {
          const [head, ...rest] = s.split("\n");
          return [head!.trim(), rest.join("\n").trim()];
        }),
    ) as Record<string, string>;

    const commits = sections.log!.split("\n").map((l) => {
      const [shas, author, subject] = l.split("|");
      const [sha, ...parents] = shas!.trim().split(" ");
      return { sha: sha!, parents, author, subject };
    });
    // The install wrote a file, so there is one forager commit on top of base; nothing else new.
    expect(commits).toHaveLength(3);
    expect(commits[0]!.subject).toBe(INSTALL_COMMIT_MESSAGE);
    expect(commits[0]!.author).toBe("forager");
    expect(commits[0]!.parents).toEqual([repo.baseSha]);
    expect(commits.slice(1).map((c) => c.sha)).toEqual([repo.baseSha, repo.firstSha]);
    expect(sections.remotes).toBe("");
    expect(sections.tags).toBe(repo.ancestorTag); // keepAncestorTags: v0.1 stays, v0.2 (later) is gone
    expect(sections.refs!.split("\n").sort()).toEqual(["refs/heads/main", "refs/tags/v0.1"]);
    expect(sections.fix).toBe("absent");
    expect(sections.feature).toBe("absent");
    expect(sections.grep).toBe("0");
    expect(sections.status).toBe("");
    expect(sections.diff).toBe("");
    expect(sections.import).toBe("/testbed/tinypkg");
    expect(sections.pytest).toContain("PASSED tests/test_calc.py::test_mul");
    expect(sections.pytest).toContain("FAILED tests/test_calc.py::test_add");
  });

  it("a failing install step raises an error naming the step, with the log tail", async () => {
    const bad = { ...spec, install: ["echo preparing", "echo boom-marker-output >&2; exit 3"] };
    const err = await buildInstanceImage(bad, { stateDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    const e = err as ImageBuildError;
    expect(e.layer).toBe("instance");
    expect(e.step).toMatch(/^install\[1\]: echo boom-marker-output/);
    expect(e.message).toContain('"install[1]: echo boom-marker-output');
    expect(e.message).toContain("boom-marker-output");
    expect(e.message).toMatch(/returned a non-zero code: 3/);
    expect(e.logTail.length).toBeGreaterThan(0);
    expect(e.logTail.length).toBeLessThanOrEqual(20);
    expect(fs.readFileSync(e.logFile, "utf8")).toContain("boom-marker-output");
    expect(await imageExists(e.tag)).toBe(false);
    // forcerm: no intermediate container of this build is left.
    const left = await docker().listContainers({ all: true, filters: { ancestor: [first.env.id] } });
    expect(left.filter((c) => c.Command.includes("boom-marker-output"))).toEqual([]);
  });

  it("a failing preInstall line fails the env layer, naming the step", async () => {
    const bad = { ...spec, systemPackages: [], preInstall: ["echo env-step-ran", "test -e /nonexistent-forager-file"] };
    const err = await buildEnvImage(bad, { stateDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as ImageBuildError).layer).toBe("env");
    expect((err as ImageBuildError).step).toBe("preInstall[1]: test -e /nonexistent-forager-file");
  });

  it("listImages reports kind, repo, sizes, created and last used", async () => {
    const listing = await listImages({ stateDir });
    const inst = listing.images.find((i) => i.tags.includes(first.tag));
    const env = listing.images.find((i) => i.tags.includes(first.env.tag));
    expect(inst).toBeDefined();
    expect(env).toBeDefined();
    expect(inst!.kind).toBe("instance");
    expect(inst!.repo).toBe("example/tinypkg");
    expect(inst!.commit).toBe(repo.baseSha);
    expect(inst!.sizeBytes).toBeGreaterThan(env!.sizeBytes - 1);
    expect(inst!.ownBytes).toBeGreaterThan(0);
    expect(inst!.ownBytes).toBeLessThan(inst!.sizeBytes);
    expect(inst!.parentId).toBe(first.env.id);
    expect(env!.kind).toBe("env");
    expect(Date.parse(inst!.lastUsed!)).toBeGreaterThan(Date.now() - 3_600_000);
    expect(listing.totalBytes).toBeGreaterThanOrEqual(inst!.ownBytes + env!.ownBytes);
    expect(listing.byKind.instance.count).toBeGreaterThanOrEqual(1);
    console.log(
      `sizes: env ${(env!.sizeBytes / 1e6).toFixed(0)} MB (own ${(env!.ownBytes / 1e6).toFixed(1)} MB), ` +
        `instance own ${(inst!.ownBytes / 1e6).toFixed(2)} MB; all forager images ${(listing.totalBytes / 1e6).toFixed(0)} MB`,
    );
  });

  it("pruneImages dry run selects by disuse and removes nothing", async () => {
    const all = await pruneImages({ dryRun: true, unusedDays: 0, kind: "instance", stateDir });
    expect(all.dryRun).toBe(true);
    expect(all.removed.map((i) => i.id)).toContain(first.id);
    expect(all.freedBytes).toBeGreaterThan(0);
    expect(await imageExists(first.tag)).toBe(true);
    const recent = await pruneImages({ dryRun: true, unusedDays: 30, kind: "instance", stateDir });
    expect(recent.removed.map((i) => i.id)).not.toContain(first.id);
    // Env images with an instance on them are never selected for removal.
    const envs = await pruneImages({ dryRun: true, kind: "env", stateDir });
    expect(envs.removed.map((i) => i.id)).not.toContain(first.env.id);
    expect(envs.skipped.find((s) => s.image.id === first.env.id)?.reason).toMatch(/built on it/);
  });
});

describe("repository preparation (host side)", () => {
  it("without keepAncestorTags no tag is left; abbreviated shas resolve; later commits are gone", async () => {
    const p = await prepareRepository({ type: "path", path: repo.dir }, repo.baseSha.slice(0, 9), path.join(tmp, "prep1"));
    expect(p.commit).toBe(repo.baseSha);
    expect(p.keptTags).toEqual([]);
    expect(p.commitCount).toBe(2);
    expect(git(p.dir, ["tag"])).toBe("");
    expect(() => git(p.dir, ["cat-file", "-e", repo.fixSha])).toThrow();
    expect(fs.existsSync(path.join(p.dir, ".git", "objects", "info", "alternates"))).toBe(false);
  });

  it("works from a bare clone and from a bundle", async () => {
    const bare = path.join(tmp, "bare.git");
    execFileSync("git", ["clone", "-q", "--bare", repo.dir, bare]);
    const a = await prepareRepository({ type: "path", path: bare }, repo.baseSha, path.join(tmp, "prep-bare"), { keepAncestorTags: true });
    expect(a.keptTags).toEqual(["v0.1"]);
    const bundle = path.join(tmp, "repo.bundle");
    execFileSync("git", ["bundle", "create", "-q", bundle, "--all"], { cwd: repo.dir });
    const b = await prepareRepository({ type: "bundle", path: bundle }, repo.baseSha, path.join(tmp, "prep-bundle"));
    expect(b.commit).toBe(repo.baseSha);
    expect(() => git(b.dir, ["cat-file", "-e", repo.fixSha])).toThrow();
    expect(git(b.dir, ["remote"])).toBe("");
  });

  it("a source with promisor packs (partial-clone style) still leaves no later commit", async () => {
    const src = path.join(tmp, "promisor.git");
    execFileSync("git", ["clone", "-q", "--bare", repo.dir, src]);
    execFileSync("git", ["repack", "-a", "-d", "-q"], { cwd: src });
    const packDir = path.join(src, "objects", "pack");
    for (const f of fs.readdirSync(packDir).filter((f) => f.endsWith(".pack"))) {
      fs.writeFileSync(path.join(packDir, f.replace(/\.pack$/, ".promisor")), "");
    }
    const p = await prepareRepository({ type: "path", path: src }, repo.baseSha, path.join(tmp, "prep-promisor"));
    expect(p.commitCount).toBe(2);
    expect(() => git(p.dir, ["cat-file", "-e", repo.fixSha])).toThrow();
    expect(fs.readdirSync(path.join(p.dir, ".git", "objects", "pack")).filter((f) => f.endsWith(".promisor"))).toEqual([]);
  });

  it("an unknown commit is an error naming it", async () => {
    await expect(prepareRepository({ type: "path", path: repo.dir }, "deadbeefdeadbeef", path.join(tmp, "prep-bad"))).rejects.toThrow(
      /commit deadbeefdeadbeef not found/,
    );
  });
});

describe("file lock", () => {
  it("serializes two holders", async () => {
    const lock = path.join(tmp, "locks", "t.lock");
    const order: string[] = [];
    const hold = (name: string) =>
      withFileLock(lock, async () => {
        order.push(`${name}+`);
        await new Promise((r) => setTimeout(r, 100));
        order.push(`${name}-`);
      }, { pollMs: 10 });
    await Promise.all([hold("a"), hold("b")]);
    expect(order.join(" ")).toMatch(/^(a\+ a- b\+ b-|b\+ b- a\+ a-)$/);
    expect(fs.existsSync(lock)).toBe(false);
  });
});

describe("SWE-bench specs", () => {
  const rows = fs
    .readFileSync("/work/shared/datasets/swe-bench-verified.test.jsonl", "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { instance_id: string; repo: string; version: string; base_commit: string });

  it("has a spec for every Verified instance", () => {
    for (const row of rows) {
      const s = specForSweBench(row);
      expect(s.commit).toBe(row.base_commit);
      expect(s.install.join("\n")).toContain("--no-index");
    }
    expect(Object.keys(sweBenchVersions())).toHaveLength(12);
  });

  it("carries the per-repository adaptations", () => {
    const pick = (id: string) => specForSweBench(rows.find((r) => r.instance_id === id)!);
    const pytest5 = pick("pytest-dev__pytest-7205");
    expect(pytest5.keepAncestorTags).toBe(true);
    expect(pytest5.preInstall.join("\n")).toContain("/opt/forager/shims/forager_ast_compat.pth");
    expect(pytest5.systemPackages).not.toContain("python3-pytest");
    expect(pick("pytest-dev__pytest-10051").preInstall.join("\n")).not.toContain("ast_compat");
    const django = pick("django__django-11141");
    expect(django.testCommand).toBe("./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1");
    expect(django.logParser).toBe("django");
    expect(django.env.LANG).toBe("en_US.UTF-8");
    const sympy = pick("sympy__sympy-13031");
    expect(sympy.testCommand).toContain("bin/test -C --verbose");
    expect(sympy.logParser).toBe("sympy");
    const requests = pick("psf__requests-2317");
    expect(requests.evalPreamble.join("\n")).toContain("HTTPBIN_URL=http://127.0.0.1");
    expect(networkRequirement("psf__requests-2317")).toMatch(/httpbin/);
    expect(networkRequirement("psf__requests-5414")).toMatch(/10\.255\.255\.1/);
    expect(networkRequirement("psf__requests-1142")).toBeUndefined();
    expect(knownIssue("pytest-dev__pytest-7205")).toBeUndefined();
  });

  it("an unknown version is an error listing the known ones", () => {
    expect(() => specForSweBench({ repo: "pallets/flask", version: "0.1", base_commit: "a".repeat(40) })).toThrow(/known: .*2\.3/);
  });
});
