/**
 * The base image layer: Debian (minbase) with python3, git, patch and ca-certificates, one image per
 * suite: bookworm (Python 3.11, the default) and trixie (Python 3.13).
 *
 * `ensureBaseImage` is idempotent: an existing tag is reused as is. Otherwise, if a registry
 * image is configured (`pullFrom`, or `FORAGER_BASE_PULL_FROM`) and a pull succeeds within a
 * short timeout, it is tagged; else the image is bootstrapped locally with
 * `mmdebstrap --variant=minbase --include=python3,git,patch,ca-certificates <suite> -`
 * streamed into the engine's import endpoint (no registry needed, ~20-60 s). A lock file in the
 * state dir keeps two processes from making it at once.
 *
 * The tag names what the image was made from: `forager/base:<suite>-mmdebstrap-minbase` (the default
 * `forager/base:bookworm-mmdebstrap-minbase`, and `forager/base:trixie-mmdebstrap-minbase`) for the mmdebstrap recipe, `forager/base:registry-<ref>` for a pulled image (unless a tag is
 * given). Labels record the same: `forager.kind=base`, `forager.base.source=mmdebstrap:bookworm:minbase`
 * (or `registry:<ref>`), `forager.base.include`, `forager.created`.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { EnvironmentError } from "../lib/errors";
import { childLogger } from "../lib/log";
import { consumeJsonStream, docker, inspectImage } from "./docker";
import { DEFAULT_BASE_IMAGE } from "./spec";
import { defaultStateDir, tagFileName, updateImageIndex, withFileLock } from "./state";

/** The packages mmdebstrap includes on top of minbase. */
export const BASE_INCLUDE = ["python3", "git", "patch", "ca-certificates"] as const;
/** Debian suite of the default base image. */
export const BASE_SUITE = "bookworm";
/** Debian suites forager bootstraps base images of, with the CPython each ships (for requires-python and markers). */
export const BASE_SUITES = { bookworm: "3.11.2", trixie: "3.13.5" } as const;
/** A suite forager can make a base image of. */
export type BaseSuite = keyof typeof BASE_SUITES;
/** Value of the `forager.base.source` label for the mmdebstrap recipe of the default suite. */
export const MMDEBSTRAP_SOURCE = `mmdebstrap:${BASE_SUITE}:minbase`;

/**
 * The tag of the mmdebstrap base image of a suite: `forager/base:<suite>-mmdebstrap-minbase`
 * (bookworm's is {@link DEFAULT_BASE_IMAGE}, the tag every earlier spec names).
 */
export function baseImageTag(suite: BaseSuite = BASE_SUITE): string {
  return `forager/base:${suite}-mmdebstrap-minbase`;
}

/** The suite a base tag was made from (`forager/base:trixie-mmdebstrap-minbase` → trixie); the default suite for any other tag. */
export function suiteOfTag(tag: string): BaseSuite {
  const m = /^forager\/base:([a-z]+)-mmdebstrap-minbase$/.exec(tag);
  return m && m[1]! in BASE_SUITES ? (m[1] as BaseSuite) : BASE_SUITE;
}

/** A progress note from {@link ensureBaseImage}. */
export interface BaseProgress {
  phase: "check" | "lock" | "pull" | "mmdebstrap" | "import" | "done";
  message: string;
}

export interface EnsureBaseOptions {
  /** Tag to ensure. Default: {@link baseImageTag} of `suite`, or `forager/base:registry-<ref>` when pulling. */
  tag?: string;
  /** Debian suite to bootstrap (default: the suite the tag names, else bookworm). */
  suite?: BaseSuite;
  /** A registry image to try before bootstrapping (e.g. "debian:bookworm-slim"). Default: `FORAGER_BASE_PULL_FROM`. */
  pullFrom?: string;
  /** Give up on the pull after this many ms (default 20 000). */
  pullTimeoutMs?: number;
  /** Give up on mmdebstrap + import after this many ms (default 15 min). */
  bootstrapTimeoutMs?: number;
  /** Progress callback (phase + one-line message). */
  onProgress?: (p: BaseProgress) => void;
  /** State dir for the lock, the index and the log (default {@link defaultStateDir}). */
  stateDir?: string;
  /** Directory for the bootstrap log (default `<stateDir>/logs/build`). */
  logDir?: string;
}

export interface BaseImageResult {
  /** The tag that now exists. */
  tag: string;
  /** Image id (sha256:…). */
  id: string;
  /** True when this call made (pulled or bootstrapped) it. */
  created: boolean;
  /** How it was obtained: already there, pulled from a registry, or bootstrapped. */
  source: "existing" | "registry" | "mmdebstrap";
  /** Wall time of this call, seconds. */
  seconds: number;
}

/** `forager/base:registry-<ref>` for a registry reference, sanitized to a valid tag. */
export function registryBaseTag(ref: string): string {
  const t = `registry-${ref}`.replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^[-.]+/, "").slice(0, 120);
  return `forager/base:${t}`;
}

/**
 * Make sure the base image exists; build or pull it if not.
 *
 * @returns `{tag, id, created, source, seconds}`.
 * @throws EnvironmentError when neither a pull nor mmdebstrap + import can produce it
 *   (the message carries the last lines of the bootstrap log).
 */
export async function ensureBaseImage(opts: EnsureBaseOptions = {}): Promise<BaseImageResult> {
  const started = Date.now();
  const log = childLogger("images.base");
  const progress = (phase: BaseProgress["phase"], message: string) => {
    log.debug({ phase }, message);
    opts.onProgress?.({ phase, message });
  };
  const pullFrom = opts.pullFrom ?? process.env.FORAGER_BASE_PULL_FROM ?? undefined;
  const defaultTag = opts.suite ? baseImageTag(opts.suite) : DEFAULT_BASE_IMAGE;
  const candidates = opts.tag ? [opts.tag] : pullFrom ? [registryBaseTag(pullFrom), defaultTag] : [defaultTag];
  const seconds = () => (Date.now() - started) / 1000;

  const existing = async (): Promise<BaseImageResult | undefined> => {
    for (const t of candidates) {
      const info = await inspectImage(t);
      if (info) return { tag: t, id: info.Id, created: false, source: "existing", seconds: seconds() };
    }
    return undefined;
  };

  progress("check", `looking for ${candidates.join(" or ")}`);
  const found = await existing();
  if (found) return found;

  const stateDir = opts.stateDir ?? defaultStateDir();
  const lockPath = path.join(stateDir, "locks", `base-${tagFileName(candidates[0]!)}.lock`);
  return withFileLock(
    lockPath,
    async () => {
      const again = await existing();
      if (again) return again;

      if (pullFrom) {
        const tag = opts.tag ?? registryBaseTag(pullFrom);
        progress("pull", `pulling ${pullFrom}`);
        try {
          const id = await pullAndTag(pullFrom, tag, opts.pullTimeoutMs ?? 20_000);
          await record(stateDir, tag, id, seconds());
          progress("done", `pulled ${pullFrom} as ${tag}`);
          return { tag, id, created: true, source: "registry" as const, seconds: seconds() };
        } catch (err) {
          log.warn({ pullFrom, err: (err as Error).message }, "base image pull failed; bootstrapping with mmdebstrap");
          progress("pull", `pull of ${pullFrom} failed (${(err as Error).message}); bootstrapping`);
        }
      }

      const tag = opts.tag ?? defaultTag;
      const suite = opts.suite ?? suiteOfTag(tag);
      const logDir = opts.logDir ?? path.join(stateDir, "logs", "build");
      const id = await bootstrap(tag, suite, logDir, opts.bootstrapTimeoutMs ?? 15 * 60_000, progress);
      await record(stateDir, tag, id, seconds());
      progress("done", `bootstrapped ${tag} in ${seconds().toFixed(1)} s`);
      return { tag, id, created: true, source: "mmdebstrap" as const, seconds: seconds() };
    },
    { onWait: (owner) => progress("lock", `waiting for another process (${owner}) making the base image`) },
  );
}

async function record(stateDir: string, tag: string, id: string, buildSeconds: number): Promise<void> {
  const now = new Date().toISOString();
  await updateImageIndex(stateDir, (idx) => {
    idx.images[tag] = { ...idx.images[tag], tag, id, kind: "base", builtAt: now, lastUsed: now, buildSeconds };
  });
}

/** Pull `ref` with a timeout and tag it as `tag`. Returns the image id. */
async function pullAndTag(ref: string, tag: string, timeoutMs: number): Promise<string> {
  const d = docker();
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const stream = (await d.pull(ref, { abortSignal: ac.signal })) as NodeJS.ReadableStream;
    const events = await consumeJsonStream(stream);
    const bad = events.find((e) => e.error);
    if (bad) throw new Error(bad.error);
  } catch (err) {
    if (ac.signal.aborted) throw new Error(`timed out after ${timeoutMs} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  const [repo, t] = splitTag(tag);
  await d.getImage(ref).tag({ repo, tag: t });
  const info = await inspectImage(tag);
  if (!info) throw new Error(`tagging ${ref} as ${tag} left no image`);
  return info.Id;
}

/** "a/b:c" → ["a/b", "c"]; no tag → "latest". */
export function splitTag(tag: string): [string, string] {
  const slash = tag.lastIndexOf("/");
  const colon = tag.lastIndexOf(":");
  if (colon > slash) return [tag.slice(0, colon), tag.slice(colon + 1)];
  return [tag, "latest"];
}

/**
 * mmdebstrap → engine import (POST /images/create?fromSrc=-) with `changes` setting labels,
 * env and cmd. stderr of mmdebstrap goes to the log file.
 */
async function bootstrap(
  tag: string,
  suite: BaseSuite,
  logDir: string,
  timeoutMs: number,
  progress: (phase: BaseProgress["phase"], message: string) => void,
): Promise<string> {
  fs.mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, `${tagFileName(tag)}.log`);
  const logStream = fs.createWriteStream(logFile, { flags: "w" });
  const mode = process.getuid?.() === 0 ? "root" : "unshare";
  const args = [
    "--variant=minbase",
    `--include=${BASE_INCLUDE.join(",")}`,
    `--mode=${mode}`,
    suite,
    "-",
  ];
  logStream.write(`$ mmdebstrap ${args.join(" ")} | import ${tag}\n`);
  progress("mmdebstrap", `mmdebstrap ${args.join(" ")}`);
  const child = spawn("mmdebstrap", args, { stdio: ["ignore", "pipe", "pipe"] });
  const tail: string[] = [];
  let errBuf = "";
  child.stderr.on("data", (c: Buffer) => {
    logStream.write(c);
    errBuf += c.toString();
    let i: number;
    while ((i = errBuf.indexOf("\n")) >= 0) {
      const line = errBuf.slice(0, i);
      errBuf = errBuf.slice(i + 1);
      tail.push(line);
      if (tail.length > 20) tail.shift();
      if (/^I: /.test(line)) progress("mmdebstrap", line);
    }
  });
  const exited = new Promise<number>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve(code ?? -1));
  });

  const [repo, t] = splitTag(tag);
  const created = new Date().toISOString();
  const changes = [
    `LABEL forager.kind=base`,
    `LABEL forager.base.source=mmdebstrap:${suite}:minbase`,
    `LABEL forager.base.include=${BASE_INCLUDE.join(",")}`,
    `LABEL forager.created=${created}`,
    `ENV LANG=C.UTF-8`,
    `ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    `CMD ["/bin/bash"]`,
  ];
  const ac = new AbortController();
  const timer = setTimeout(() => {
    ac.abort();
    child.kill("SIGTERM");
  }, timeoutMs);
  let importId: string | undefined;
  try {
    progress("import", `importing into ${tag}`);
    const stream = (await docker().importImage(child.stdout, {
      repo,
      tag: t,
      changes,
      abortSignal: ac.signal,
    } as object)) as NodeJS.ReadableStream;
    const [events, code] = await Promise.all([consumeJsonStream(stream), exited]);
    const bad = events.find((e) => e.error);
    if (code !== 0) throw new Error(`mmdebstrap exited with code ${code}`);
    if (bad) throw new Error(`import failed: ${bad.error}`);
    importId = events.map((e) => e.status).find((s) => s?.startsWith("sha256:"));
  } catch (err) {
    child.kill("SIGTERM");
    await new Promise((r) => logStream.end(r));
    throw new EnvironmentError(
      `base image bootstrap for ${tag} failed: ${(err as Error).message}\n` +
        `--- last ${tail.length} lines of ${logFile} ---\n${tail.join("\n")}`,
      { cause: err },
    );
  } finally {
    clearTimeout(timer);
  }
  await new Promise((r) => logStream.end(r));
  const info = await inspectImage(tag);
  if (!info) throw new EnvironmentError(`import reported ${importId ?? "no id"} but ${tag} does not exist`);
  return info.Id;
}
