/**
 * Environment and instance image builds (the layers above base), content-addressed and cached.
 *
 *   base      forager/base:…                      (base.ts)
 *   env       forager/env:<hash16>               base + systemPackages (one apt-get RUN)
 *                                                 + shims + pythonPackages (pip, only with an index)
 *                                                 + preInstall + env
 *   instance  forager/instance:<slug>-<commit12>-<hash8>
 *                                                 env + the prepared repository at `commit` in
 *                                                 `workdir` + install lines + a commit of the
 *                                                 installed state
 *
 * Hashes are sha256 over exactly the inputs that make the layer (see {@link envHashInputs},
 * {@link instanceHashInputs}); the full hash is in the `forager.spec-hash` label and a tag is a
 * cache hit only when that label matches, so building the same spec twice rebuilds nothing.
 * Logs: `<logDir>/<tag>.log` (default `<stateDir>/logs/build`). Builds of the same tag are
 * serialized across processes by a lock file. The index `<stateDir>/images.json` records build
 * time and last use (for pruning; see inventory.ts).
 */
import { commitCommand, forgetReflogLines } from "../lib/git-script";
import { shellQuote } from "../lib/shell";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { EnvironmentError } from "../lib/errors";
import { childLogger } from "../lib/log";
import { ensureBaseImage } from "./base";
import { inspectImage } from "./docker";
import { dockerfileQuote, engineBuild, runStep, type DockerStep, type EngineBuildProgress } from "./engine-build";
import { startCutoffIndex } from "./pip-cutoff";
import { prepareRepository, resolveCommitCheaply } from "./repo";
import { DEFAULT_BASE_IMAGE, ImageSpecSchema, type ImageSpec, type ImageSpecInput, type RepoSource } from "./spec";
import { defaultStateDir, tagFileName, updateImageIndex, withFileLock } from "./state";

export { ImageBuildError } from "./engine-build";
export { listImages, pruneImages } from "./inventory";
export { markImageUsed } from "./state";
export type { ForagerImage, ImageListing, PruneOptions, PruneResult } from "./inventory";

/** Bumped when the generated Dockerfiles change in a way that changes the images. */
export const ENV_RECIPE_VERSION = "forager-env-1";
export const INSTANCE_RECIPE_VERSION = "forager-instance-2";

/**
 * Owner (uid and gid) of the repository files in instance images: the unprivileged user the
 * hidden tests run as at evaluation (rewards/evaluate.ts). Set when the tree is copied in, so an
 * evaluation need not change the owner of every file (on overlayfs that copies each file up:
 * seconds for a large tree). Files the install steps add stay root's (an evaluation gives them
 * to the test user). Numeric: the image needs no passwd entry for it.
 */
export const TREE_OWNER_UID = 54321;

/** Directory of the shim files (`images/shims`), copied to `/opt/forager/shims` when referenced. */
export const SHIMS_DIR = fileURLToPath(new URL("./shims/", import.meta.url));
/** Where shims are in the env image. preInstall lines reference files as `/opt/forager/shims/<name>`. */
export const SHIMS_IN_IMAGE = "/opt/forager/shims";

/** Author of the "installed state" commit in instance images. */
export const INSTALL_COMMIT_AUTHOR = { name: "forager", email: "forager@localhost" };
export const INSTALL_COMMIT_MESSAGE = "forager: installed state";

/** Progress of a build (any layer). */
export interface BuildProgress {
  layer: "base" | "env" | "instance";
  phase: "check" | "cached" | "prepare" | "build" | "done";
  message: string;
  /** During `build`: 1-based step and step count. */
  step?: number;
  steps?: number;
}

export interface BuildOptions {
  /** State dir (index, locks; default {@link defaultStateDir}). */
  stateDir?: string;
  /** Build log dir (default `<stateDir>/logs/build`). */
  logDir?: string;
  onProgress?: (p: BuildProgress) => void;
  /**
   * pip index URL for `pythonPackages`. Default `FORAGER_PIP_INDEX`. Without one, pythonPackages
   * are skipped with a warning (or the build fails with `requirePythonPackages`).
   */
  pipIndex?: string;
  requirePythonPackages?: boolean;
  /** Repository source, overriding `spec.source`. */
  source?: RepoSource;
  /** Branch name left at the commit in the instance (default "main"). */
  branch?: string;
  /** Per docker build timeout, ms (default 60 min). */
  timeoutMs?: number;
  /** Make the base image with ensureBaseImage when it is missing (default true). */
  ensureBase?: boolean;
  /**
   * Network of the instance layer's install steps. Default "none": installs run offline
   * (`pip --no-index`), so a setup script that tries to download something fails at once
   * instead of sending traffic. "host" only for specs whose install needs an index.
   */
  instanceNetwork?: "none" | "host";
}

/** One layer's build outcome. */
export interface LayerResult {
  tag: string;
  /** Image id, sha256:… */
  id: string;
  /** Full sha256 hex of the layer's inputs. */
  hash: string;
  /** True when the image already existed (nothing was built). */
  cached: boolean;
  /** Wall time of this call for this layer, seconds. */
  seconds: number;
  /** Build log (only when built). */
  logFile?: string;
}

export interface InstanceBuildResult extends LayerResult {
  env: LayerResult;
  /** Full sha of the commit in the image. */
  commit: string;
  repo: string;
  workdir: string;
}

const sha256 = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");

/** Canonical JSON: object keys sorted, so equal inputs hash equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/** Shim files referenced by preInstall lines as `/opt/forager/shims/<name>`. */
export function referencedShims(preInstall: string[]): string[] {
  const names = new Set<string>();
  const re = /\/opt\/forager\/shims\/([A-Za-z0-9_.-]+)/g;
  for (const line of preInstall) for (const m of line.matchAll(re)) names.add(m[1]!);
  return [...names].sort();
}

function resolvePip(spec: ImageSpec, opts: BuildOptions): { pip: boolean; index?: string } {
  if (spec.pythonPackages.length === 0) return { pip: false };
  const index = opts.pipIndex ?? process.env.FORAGER_PIP_INDEX ?? undefined;
  if (index) return { pip: true, index };
  if (opts.requirePythonPackages) {
    throw new EnvironmentError(
      `spec for ${spec.repo} needs pythonPackages (${spec.pythonPackages.join(" ")}) but no pip index is configured (FORAGER_PIP_INDEX)`,
    );
  }
  return { pip: false };
}

/**
 * The exact inputs hashed for the env layer: recipe version, base image id, sorted unique
 * system packages, python packages (only when pip runs), preInstall, env, and the content hash
 * of each referenced shim.
 */
export function envHashInputs(spec: ImageSpec, baseImageId: string, pip: boolean): Record<string, unknown> {
  const shims: Record<string, string> = {};
  for (const name of referencedShims(spec.preInstall)) {
    const p = path.join(SHIMS_DIR, name);
    if (!fs.existsSync(p)) throw new EnvironmentError(`preInstall references shim ${name}, but ${p} does not exist`);
    shims[name] = sha256(fs.readFileSync(p));
  }
  return {
    recipe: ENV_RECIPE_VERSION,
    baseImageId,
    systemPackages: [...new Set(spec.systemPackages)].sort(),
    pythonPackages: pip ? spec.pythonPackages : [],
    // Only when it changes what pip installs (absent keys keep every earlier hash).
    pipUploadedBefore: pip && spec.pipUploadedBefore ? spec.pipUploadedBefore : undefined,
    // pip runs with --upgrade (named requirements to the newest release the index allows, even when a
    // Debian package already satisfies them); images built before that flag hash differently.
    pipUpgrade: pip ? true : undefined,
    preInstall: spec.preInstall,
    env: spec.env,
    shims,
  };
}

/** sha256 hex of {@link envHashInputs}. */
export function envHash(spec: ImageSpec, baseImageId: string, pip: boolean): string {
  return sha256(canonicalJson(envHashInputs(spec, baseImageId, pip)));
}

/** `forager/env:<first 16 hex of the hash>`. */
export function envTag(hash: string): string {
  return `forager/env:${hash.slice(0, 16)}`;
}

/** The exact inputs hashed for the instance layer. */
export function instanceHashInputs(spec: ImageSpec, envHashHex: string, commit: string, branch: string): Record<string, unknown> {
  return {
    recipe: INSTANCE_RECIPE_VERSION,
    env: envHashHex,
    repo: spec.repo,
    commit,
    install: spec.install,
    workdir: spec.workdir,
    keepAncestorTags: spec.keepAncestorTags,
    branch,
  };
}

/** `owner/name` → `owner__name` (lowercase, only tag-safe characters, ≤ 80 chars). */
export function repoSlug(repo: string): string {
  return repo
    .toLowerCase()
    .replace(/\//g, "__")
    .replace(/[^a-z0-9_.-]+/g, "-")
    .replace(/^[-.]+/, "")
    .slice(0, 80);
}

/** `forager/instance:<repo-slug>-<commit12>-<hash8>`. */
export function instanceTag(repo: string, commit: string, hash: string): string {
  return `forager/instance:${repoSlug(repo)}-${commit.slice(0, 12)}-${hash.slice(0, 8)}`;
}

/** What a build of an instance image would produce, computed without building ({@link planInstanceImage}). */
export interface InstancePlan {
  /** Id of the base image whose id the env hash holds (sha256:…). */
  baseImageId: string;
  env: { tag: string; hash: string };
  /** Known when the commit resolves without cloning (a full sha, or an abbreviated one in a local path source). */
  instance?: { tag: string; hash: string; commit: string };
}

/**
 * The env and instance tags (and full hashes) {@link buildInstanceImage} would build for `spec`,
 * without building or cloning anything: what a cluster registry is asked for before a build
 * (images/registry.ts). The base image must exist locally (its id is hashed).
 * @returns undefined when the base image is missing.
 */
export async function planInstanceImage(specInput: ImageSpecInput, opts: BuildOptions = {}): Promise<InstancePlan | undefined> {
  const spec = ImageSpecSchema.parse(specInput);
  const base = await inspectImage(spec.baseImage);
  if (!base) return undefined;
  const eh = envHash(spec, base.Id, resolvePip(spec, opts).pip);
  const plan: InstancePlan = { baseImageId: base.Id, env: { tag: envTag(eh), hash: eh } };
  const commit = await resolveCommitCheaply(opts.source ?? spec.source, spec.commit);
  if (commit) {
    const hash = sha256(canonicalJson(instanceHashInputs(spec, eh, commit, opts.branch ?? "main")));
    plan.instance = { tag: instanceTag(spec.repo, commit, hash), hash, commit };
  }
  return plan;
}

function envSteps(spec: ImageSpec, baseImageId: string, hash: string, pip: { pip: boolean; index?: string }, baseTag: string): DockerStep[] {
  const steps: DockerStep[] = [{ name: `base ${baseTag}`, instruction: `FROM ${baseImageId}` }];
  const envEntries = Object.entries(spec.env);
  if (envEntries.length) {
    steps.push({ name: "env", instruction: `ENV ${envEntries.map(([k, v]) => `${k}=${dockerfileQuote(v)}`).join(" ")}` });
  }
  const pkgs = [...new Set(spec.systemPackages)].sort();
  if (pip.pip && !pkgs.includes("python3-pip")) pkgs.push("python3-pip");
  if (pkgs.length) {
    steps.push(
      runStep(
        `systemPackages (${pkgs.length})`,
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && " +
          `apt-get install -y -q --no-install-recommends ${pkgs.join(" ")} && ` +
          "apt-get clean && rm -rf /var/lib/apt/lists/*",
      ),
    );
  }
  if (referencedShims(spec.preInstall).length) {
    steps.push({ name: "shims", instruction: `COPY shims/ ${SHIMS_IN_IMAGE}/` });
  }
  if (pip.pip) {
    steps.push(
      runStep(
        `pythonPackages (${spec.pythonPackages.length})`,
        // --upgrade: what a fresh environment would get (the newest release the index, and the
        // cutoff, allow), not whatever older Debian copy the system packages pulled in; Debian's
        // pip leaves /usr/lib/python3/dist-packages alone and installs into /usr/local.
        `python3 -m pip install --no-cache-dir --break-system-packages --upgrade --index-url ${shellQuote(pip.index!)} ` +
          spec.pythonPackages.map(shellQuote).join(" "),
      ),
    );
  }
  spec.preInstall.forEach((line, i) => steps.push(runStep(`preInstall[${i}]: ${short(line)}`, line)));
  steps.push(
    labelStep({
      "forager.kind": "env",
      "forager.spec-hash": hash,
      "forager.parent": baseImageId,
      "forager.base": baseTag,
      "forager.created": new Date().toISOString(),
    }),
  );
  return steps;
}

function instanceSteps(spec: ImageSpec, env: LayerResult, hash: string, commit: string, branch: string): DockerStep[] {
  const wd = spec.workdir;
  const author = INSTALL_COMMIT_AUTHOR;
  const commitScript = [
    `cd ${shellQuote(wd)}`,
    "git add -A",
    "if ! git diff --cached --quiet; then",
    '  d="$(git log -1 --format=%cI HEAD)"',
    `  ${commitCommand("git", author, INSTALL_COMMIT_MESSAGE, '"$d"')}`,
    "fi",
    ...forgetReflogLines("git"),
    "git update-index -q --refresh || true",
    'test -z "$(git status --porcelain)" || { echo "working tree not clean after commit:"; git status --porcelain | head -20; exit 1; }',
  ].join("\n");
  return [
    { name: `env ${env.tag}`, instruction: `FROM ${env.id}` },
    { name: "repository", instruction: `COPY --chown=${TREE_OWNER_UID}:${TREE_OWNER_UID} repo/ ${wd}/` },
    { name: "workdir", instruction: `WORKDIR ${wd}` },
    runStep("git config", "git config --system --add safe.directory '*'"),
    ...spec.install.map((line, i) => runStep(`install[${i}]: ${short(line)}`, `cd ${shellQuote(wd)}\n${line}`)),
    runStep("commit installed state", commitScript),
    labelStep({
      "forager.kind": "instance",
      "forager.repo": spec.repo,
      "forager.commit": commit,
      "forager.spec-hash": hash,
      "forager.env": env.tag,
      "forager.parent": env.id,
      "forager.workdir": wd,
      "forager.branch": branch,
      "forager.created": new Date().toISOString(),
    }),
  ];
}

function labelStep(labels: Record<string, string>): DockerStep {
  return {
    name: "labels",
    instruction: `LABEL ${Object.entries(labels)
      .map(([k, v]) => `${k}=${dockerfileQuote(v)}`)
      .join(" ")}`,
  };
}

function short(line: string): string {
  const one = line.replace(/\s+/g, " ").trim();
  return one.length > 80 ? `${one.slice(0, 77)}...` : one;
}

function makeProgress(opts: BuildOptions, layer: BuildProgress["layer"]) {
  return (phase: BuildProgress["phase"], message: string, extra: Partial<BuildProgress> = {}) =>
    opts.onProgress?.({ layer, phase, message, ...extra });
}

function engineProgress(p: ReturnType<typeof makeProgress>) {
  return (e: EngineBuildProgress) => p("build", e.line, { step: e.step, steps: e.steps });
}

async function cachedImage(tag: string, hash: string): Promise<string | undefined> {
  const info = await inspectImage(tag);
  return info && info.Config?.Labels?.["forager.spec-hash"] === hash ? info.Id : undefined;
}

async function touch(stateDir: string, tag: string, id: string): Promise<void> {
  await updateImageIndex(stateDir, (idx) => {
    idx.images[tag] = { ...idx.images[tag], tag, id, lastUsed: new Date().toISOString() };
  });
}

/** Resolve the base image id, making the base image when missing (default tag, or `ensureBase`). */
async function baseImageId(spec: ImageSpec, opts: BuildOptions, stateDir: string): Promise<string> {
  const info = await inspectImage(spec.baseImage);
  if (info) return info.Id;
  if (opts.ensureBase === false) throw new EnvironmentError(`base image ${spec.baseImage} does not exist`);
  if (spec.baseImage !== DEFAULT_BASE_IMAGE && !spec.baseImage.startsWith("forager/base:")) {
    throw new EnvironmentError(`base image ${spec.baseImage} does not exist and is not a forager base image`);
  }
  const r = await ensureBaseImage({
    tag: spec.baseImage,
    stateDir,
    logDir: opts.logDir,
    onProgress: (p) => opts.onProgress?.({ layer: "base", phase: p.phase === "done" ? "done" : "build", message: p.message }),
  });
  return r.id;
}

/**
 * Build (or reuse) the environment image for `spec`.
 *
 * @returns the layer result; `cached: true` when an image with the same input hash exists.
 * @throws EnvironmentError when the base image is missing and cannot be made, or pythonPackages
 *   are required without an index; ImageBuildError when a step fails (names the step, log tail).
 */
export async function buildEnvImage(specInput: ImageSpecInput, opts: BuildOptions = {}): Promise<LayerResult> {
  const started = Date.now();
  const spec = ImageSpecSchema.parse(specInput);
  const stateDir = opts.stateDir ?? defaultStateDir();
  const logDir = opts.logDir ?? path.join(stateDir, "logs", "build");
  const progress = makeProgress(opts, "env");
  const log = childLogger("images.build", { layer: "env", repo: spec.repo });

  const baseId = await baseImageId(spec, opts, stateDir);
  const pip = resolvePip(spec, opts);
  if (spec.pythonPackages.length && !pip.pip) {
    log.warn({ pythonPackages: spec.pythonPackages }, "no pip index configured (FORAGER_PIP_INDEX): skipping pythonPackages");
  }
  const hash = envHash(spec, baseId, pip.pip);
  const tag = envTag(hash);
  const seconds = () => (Date.now() - started) / 1000;

  progress("check", `env ${tag}`);
  const hit = await cachedImage(tag, hash);
  if (hit) {
    await touch(stateDir, tag, hit);
    progress("cached", `env ${tag} exists`);
    return { tag, id: hit, hash, cached: true, seconds: seconds() };
  }
  return withFileLock(path.join(stateDir, "locks", `${tagFileName(tag)}.lock`), async () => {
    const again = await cachedImage(tag, hash);
    if (again) {
      await touch(stateDir, tag, again);
      return { tag, id: again, hash, cached: true, seconds: seconds() };
    }
    const logFile = path.join(logDir, `${tagFileName(tag)}.log`);
    const shims = referencedShims(spec.preInstall);
    const contextCopies: Record<string, string> = {};
    if (shims.length) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-shims-"));
      for (const s of shims) fs.copyFileSync(path.join(SHIMS_DIR, s), path.join(dir, s));
      contextCopies["shims"] = dir;
    }
    progress("build", `building ${tag}`);
    // "Only releases before <date>": pip reads the index through a date-filtering view on loopback
    // (the env layer builds with the host's network, so the build reaches it).
    const cutoff = pip.pip && spec.pipUploadedBefore ? await startCutoffIndex(pip.index!, new Date(spec.pipUploadedBefore)) : undefined;
    try {
      const id = await engineBuild({
        layer: "env",
        tag,
        network: "host",
        steps: envSteps(spec, baseId, hash, cutoff ? { pip: true, index: cutoff.url } : pip, spec.baseImage),
        contextCopies,
        logFile,
        timeoutMs: opts.timeoutMs,
        onProgress: engineProgress(progress),
      });
      const now = new Date().toISOString();
      await updateImageIndex(stateDir, (idx) => {
        idx.images[tag] = { tag, id, kind: "env", repo: spec.repo, builtAt: now, lastUsed: now, buildSeconds: seconds() };
      });
      progress("done", `built ${tag} in ${seconds().toFixed(1)} s`);
      log.info({ tag, seconds: seconds() }, "env image built");
      return { tag, id, hash, cached: false, seconds: seconds(), logFile };
    } finally {
      if (cutoff) {
        await cutoff.close();
        log.info({ ...cutoff.stats, before: spec.pipUploadedBefore }, "pip cutoff index closed");
        if (cutoff.stats.unfiltered) log.warn({ pages: cutoff.stats.unfiltered }, "the index gave no upload times (no PEP 691/700): those projects were not limited by date");
      }
      if (contextCopies["shims"]) fs.rmSync(contextCopies["shims"], { recursive: true, force: true });
    }
  });
}

/**
 * Build (or reuse) the instance image for `spec` (building the env image first if needed).
 * The repository is prepared on the host (see repo.ts) and copied into `spec.workdir`; then the
 * install lines run there and the installed state is committed (fixed author, the base
 * commit's date), so `git status` is clean and `git diff` shows only later changes.
 *
 * @returns the instance result with the env result inside; `cached: true` when nothing was built.
 * @throws EnvironmentError when there is no source or the commit is missing; ImageBuildError
 *   when a build step fails.
 */
export async function buildInstanceImage(specInput: ImageSpecInput, opts: BuildOptions = {}): Promise<InstanceBuildResult> {
  const started = Date.now();
  const spec = ImageSpecSchema.parse(specInput);
  const stateDir = opts.stateDir ?? defaultStateDir();
  const logDir = opts.logDir ?? path.join(stateDir, "logs", "build");
  const branch = opts.branch ?? "main";
  const source = opts.source ?? spec.source;
  const progress = makeProgress(opts, "instance");
  const log = childLogger("images.build", { layer: "instance", repo: spec.repo });
  const seconds = () => (Date.now() - started) / 1000;
  if (!source) throw new EnvironmentError(`spec for ${spec.repo}@${spec.commit} has no source (set spec.source or opts.source)`);

  const env = await buildEnvImage(spec, opts);
  const result = (commit: string, hash: string, id: string, cached: boolean, logFile?: string): InstanceBuildResult => ({
    tag: instanceTag(spec.repo, commit, hash),
    id,
    hash,
    cached,
    seconds: seconds(),
    logFile,
    env,
    commit,
    repo: spec.repo,
    workdir: spec.workdir,
  });

  // A cached image's build log, when the build that made it kept one (what its build steps printed).
  const keptLog = (tag: string) => {
    const f = path.join(logDir, `${tagFileName(tag)}.log`);
    return fs.existsSync(f) ? f : undefined;
  };
  // Cache check before touching the repository, when the commit resolves cheaply.
  const early = await resolveCommitCheaply(source, spec.commit);
  if (early) {
    const hash = sha256(canonicalJson(instanceHashInputs(spec, env.hash, early, branch)));
    const tag = instanceTag(spec.repo, early, hash);
    progress("check", `instance ${tag}`);
    const hit = await cachedImage(tag, hash);
    if (hit) {
      await touch(stateDir, tag, hit);
      progress("cached", `instance ${tag} exists`);
      return result(early, hash, hit, true, keptLog(tag));
    }
  }

  const work = fs.mkdtempSync(path.join(os.tmpdir(), "forager-repo-"));
  try {
    progress("prepare", `cloning ${spec.repo} at ${spec.commit}`);
    const prepared = await prepareRepository(source, spec.commit, path.join(work, "repo"), {
      keepAncestorTags: spec.keepAncestorTags,
      branch,
    });
    progress(
      "prepare",
      `prepared ${prepared.commit.slice(0, 12)}: ${prepared.commitCount} commits, ${prepared.deletedRefs} refs removed, ` +
        `tags kept: ${prepared.keptTags.length}${prepared.shallow ? ", older history incomplete in the source: the commit alone" : ""} (${prepared.seconds.toFixed(1)} s)`,
    );
    const hash = sha256(canonicalJson(instanceHashInputs(spec, env.hash, prepared.commit, branch)));
    const tag = instanceTag(spec.repo, prepared.commit, hash);
    return await withFileLock(path.join(stateDir, "locks", `${tagFileName(tag)}.lock`), async () => {
      const hit = await cachedImage(tag, hash);
      if (hit) {
        await touch(stateDir, tag, hit);
        progress("cached", `instance ${tag} exists`);
        return result(prepared.commit, hash, hit, true, keptLog(tag));
      }
      const logFile = path.join(logDir, `${tagFileName(tag)}.log`);
      progress("build", `building ${tag}`);
      const id = await engineBuild({
        layer: "instance",
        tag,
        network: opts.instanceNetwork ?? "none",
        steps: instanceSteps(spec, env, hash, prepared.commit, branch),
        contextMoves: { repo: prepared.dir },
        logFile,
        timeoutMs: opts.timeoutMs,
        onProgress: engineProgress(progress),
      });
      const now = new Date().toISOString();
      await updateImageIndex(stateDir, (idx) => {
        idx.images[tag] = {
          tag,
          id,
          kind: "instance",
          repo: spec.repo,
          commit: prepared.commit,
          builtAt: now,
          lastUsed: now,
          buildSeconds: seconds(),
        };
      });
      progress("done", `built ${tag} in ${seconds().toFixed(1)} s`);
      log.info({ tag, seconds: seconds() }, "instance image built");
      return result(prepared.commit, hash, id, false, logFile);
    });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
