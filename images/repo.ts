/**
 * Repository preparation on the host, before the instance image is built (SWE-bench's
 * "clone, reset, remove remote, delete newer refs, expire reflog, prune"):
 *
 *  1. clone the source (local path, bare or not: `--shared`; URL; bundle) with `--no-checkout`
 *     into a fresh directory;
 *  2. check out the commit as branch `main` (configurable);
 *  3. remove every remote; delete every other ref (branches, tags, notes, stash, replace…),
 *     except, with `keepAncestorTags`, tags that point at the commit or its ancestors;
 *  4. expire the reflog and delete `.git/logs`, FETCH_HEAD, ORIG_HEAD…;
 *  5. `git repack -a -d` (pulls borrowed objects in, drops unreachable ones), drop the
 *     alternates link, `git gc --prune=now`; a source missing objects of older history keeps
 *     the commit alone (a shallow boundary at it) when its own tree is complete;
 *  6. verify: every commit object left is the commit or one of its ancestors, only the allowed
 *     refs exist, no remote is configured. So no later commit (a fix) is reachable by any git
 *     command, including `git cat-file -e <sha>`.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { simpleGit, type SimpleGit } from "simple-git";
import { EnvironmentError } from "../lib/errors";
import type { RepoSource } from "./spec";

/** Result of {@link prepareRepository}. */
export interface PreparedRepo {
  /** The prepared working tree (with `.git`). */
  dir: string;
  /** Full sha of the checked-out commit. */
  commit: string;
  /** The one branch left, pointing at `commit`. */
  branch: string;
  /** Tags kept (ancestor tags, only with keepAncestorTags), names without `refs/tags/`. */
  keptTags: string[];
  /** How many refs were deleted. */
  deletedRefs: number;
  /** Number of commits left in the object store (= commits reachable from `commit`). */
  commitCount: number;
  /** Wall time, seconds. */
  seconds: number;
  /**
   * True when the source lacked objects of older history (an interrupted fetch) and the commit's
   * own tree was complete: the commit is kept alone, as a shallow boundary (`.git/shallow`).
   */
  shallow?: boolean;
}

export interface PrepareOptions {
  /** Keep tags that point at `commit` or its ancestors (setuptools-scm versions). Default false. */
  keepAncestorTags?: boolean;
  /** Name of the branch left at the commit (default "main"). */
  branch?: string;
}

const FULL_SHA = /^[0-9a-f]{40}$/;

function sourceLocation(source: RepoSource): string {
  if (source.type === "registry") throw new EnvironmentError(`a registry source (${source.digest}) is fetched into a bundle first (images/registry.ts fetchSource)`);
  return source.type === "git" ? source.url : path.resolve(source.path);
}

/**
 * Resolve `commit` to a full sha without cloning, when that is cheap: a full sha is returned as
 * is (lowercased); an abbreviated one is resolved in a local path source. `undefined` otherwise
 * (bundle or URL with an abbreviated sha, or not found).
 */
export async function resolveCommitCheaply(source: RepoSource | undefined, commit: string): Promise<string | undefined> {
  const c = commit.toLowerCase();
  if (FULL_SHA.test(c)) return c;
  if (source?.type !== "path") return undefined;
  try {
    const out = await simpleGit(path.resolve(source.path)).raw(["rev-parse", "--verify", "--quiet", `${commit}^{commit}`]);
    const sha = out.trim();
    return FULL_SHA.test(sha) ? sha : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Clone `source` into `destDir` (which must not exist or be empty) and leave it at `commit`
 * with no way to reach later history. See the module comment for the steps.
 *
 * @throws EnvironmentError when the clone fails, the commit is not found, or the final check
 *   finds a commit that is not an ancestor of `commit`.
 */
export async function prepareRepository(
  source: RepoSource,
  commit: string,
  destDir: string,
  opts: PrepareOptions = {},
): Promise<PreparedRepo> {
  const started = Date.now();
  const branch = opts.branch ?? "main";
  const loc = sourceLocation(source);
  fs.mkdirSync(path.dirname(destDir), { recursive: true });
  const cloneArgs = ["--no-checkout", "--quiet"];
  if (source.type === "path") cloneArgs.push("--shared");
  try {
    await simpleGit().clone(loc, destDir, cloneArgs);
  } catch (err) {
    throw new EnvironmentError(`git clone of ${loc} failed: ${(err as Error).message}`, { cause: err });
  }
  const git = simpleGit(destDir);
  const raw = (args: string[]) => git.raw(args);

  let sha = await revParse(git, commit);
  if (!sha && source.type === "git") {
    // A commit not on any advertised branch/tag (e.g. a PR head): ask for it by sha.
    try {
      await raw(["fetch", "--quiet", "origin", commit]);
      sha = await revParse(git, commit);
    } catch {
      /* reported below */
    }
  }
  if (!sha) throw new EnvironmentError(`commit ${commit} not found in ${loc}`);

  try {
    await raw(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "-B", branch, sha]);
  } catch (err) {
    throw new EnvironmentError(
      `checkout of ${sha} from ${loc} failed (is the source a partial clone missing objects?): ${(err as Error).message.trim()}`,
      { cause: err },
    );
  }

  for (const remote of (await raw(["remote"])).split("\n").map((s) => s.trim()).filter(Boolean)) {
    await raw(["remote", "remove", remote]);
  }

  const keep = new Set<string>([`refs/heads/${branch}`]);
  const keptTags: string[] = [];
  if (opts.keepAncestorTags) {
    const merged = (await raw(["for-each-ref", "--merged", sha, "--format=%(refname)", "refs/tags"]))
      .split("\n")
      .map((s) => s.trim())
      .filter(Boolean);
    for (const r of merged) {
      keep.add(r);
      keptTags.push(r.slice("refs/tags/".length));
    }
  }
  const allRefs = (await raw(["for-each-ref", "--format=%(refname)"])).split("\n").map((s) => s.trim()).filter(Boolean);
  const toDelete = allRefs.filter((r) => !keep.has(r));
  if (toDelete.length) {
    await updateRefStdin(destDir, toDelete.map((r) => `delete ${r}\n`).join(""));
  }

  // Pseudo-refs and reflogs.
  for (const f of ["FETCH_HEAD", "ORIG_HEAD", "MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG"]) {
    fs.rmSync(path.join(destDir, ".git", f), { force: true });
  }
  await raw(["reflog", "expire", "--expire=now", "--expire-unreachable=now", "--all"]);
  fs.rmSync(path.join(destDir, ".git", "logs"), { recursive: true, force: true });

  // Objects: copy what is reachable (also from alternates), drop the rest and the alternates link.
  let shallow = false;
  try {
    await raw(["repack", "-a", "-d", "-q"]);
  } catch (err) {
    // A source missing objects of older history (its checkout above succeeded, so the commit's
    // own tree is complete): keep the commit alone, cut from its parents, and no tag.
    if (!/missing (blob|tree|commit)|unable to read|could not read|bad object/i.test((err as Error).message)) throw err;
    const tags = (await raw(["for-each-ref", "--format=%(refname)", "refs/tags"])).split("\n").map((x) => x.trim()).filter(Boolean);
    if (tags.length) await updateRefStdin(destDir, tags.map((r) => `delete ${r}\n`).join(""));
    for (const t of tags) keep.delete(t);
    keptTags.length = 0;
    fs.writeFileSync(path.join(destDir, ".git", "shallow"), `${sha}\n`);
    await raw(["repack", "-a", "-d", "-q"]);
    shallow = true;
  }
  fs.rmSync(path.join(destDir, ".git", "objects", "info", "alternates"), { force: true });
  // A source that is a partial clone lends "promisor" packs; repack keeps every object of a
  // promisor pack, reachable or not. Every object we need is now local: drop the promisor
  // marks and repack once more so that unreachable objects really go.
  const packDir = path.join(destDir, ".git", "objects", "pack");
  const promisors = fs.readdirSync(packDir).filter((f) => f.endsWith(".promisor"));
  if (promisors.length) {
    for (const f of promisors) fs.rmSync(path.join(packDir, f), { force: true });
    await raw(["config", "--unset-all", "extensions.partialClone"]).catch(() => undefined);
    await raw(["repack", "-a", "-d", "-q"]);
  }
  await raw(["-c", "gc.auto=0", "gc", "--prune=now", "--quiet"]);

  const commitCount = await verifyNoLaterHistory(git, destDir, sha, keep);

  return {
    dir: destDir,
    commit: sha,
    branch,
    keptTags: keptTags.sort(),
    deletedRefs: toDelete.length,
    commitCount,
    seconds: (Date.now() - started) / 1000,
    ...(shallow ? { shallow } : {}),
  };
}

async function revParse(git: SimpleGit, commit: string): Promise<string | undefined> {
  try {
    const out = (await git.raw(["rev-parse", "--verify", "--quiet", `${commit}^{commit}`])).trim();
    return FULL_SHA.test(out) ? out : undefined;
  } catch {
    return undefined;
  }
}

/** `git update-ref --stdin` (simple-git has no stdin support for raw). */
async function updateRefStdin(dir: string, input: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn("git", ["update-ref", "--no-deref", "--stdin"], { cwd: dir, stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new EnvironmentError(`git update-ref --stdin failed (${code}): ${err.trim()}`)),
    );
    child.stdin.end(input);
  });
}

/**
 * Check the hygiene invariants; returns the number of commits in the object store.
 * @throws EnvironmentError naming the first offending commit/ref/remote.
 */
async function verifyNoLaterHistory(git: SimpleGit, dir: string, sha: string, allowedRefs: Set<string>): Promise<number> {
  const remotes = (await git.raw(["remote"])).trim();
  if (remotes) throw new EnvironmentError(`repository hygiene: remotes left in ${dir}: ${remotes}`);
  const refs = (await git.raw(["for-each-ref", "--format=%(refname)"])).split("\n").filter(Boolean);
  const extra = refs.filter((r) => !allowedRefs.has(r));
  if (extra.length) throw new EnvironmentError(`repository hygiene: unexpected refs left: ${extra.slice(0, 5).join(", ")}`);
  const ancestors = new Set((await git.raw(["rev-list", sha])).split("\n").filter(Boolean));
  const objects = (await git.raw(["cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)"]))
    .split("\n")
    .filter((l) => l.endsWith(" commit"))
    .map((l) => l.slice(0, l.indexOf(" ")));
  const stray = objects.filter((o) => !ancestors.has(o));
  if (stray.length) {
    throw new EnvironmentError(
      `repository hygiene: ${stray.length} commit(s) not reachable from ${sha} remain (e.g. ${stray[0]})`,
    );
  }
  const status = (await git.raw(["status", "--porcelain"])).trim();
  if (status) throw new EnvironmentError(`repository hygiene: working tree not clean after checkout: ${status.slice(0, 200)}`);
  return objects.length;
}

/**
 * Where repository `owner/name` is under `dir`: `owner+name/repo`, `owner+name`, `owner__name`
 * or `owner/name`, bare or not (the first that is a git repository).
 */
export function findRepository(dir: string, repo: string): string | undefined {
  const [owner, name] = repo.split("/") as [string, string];
  const candidates = [
    path.join(dir, `${owner}+${name}`, "repo"),
    path.join(dir, `${owner}+${name}`),
    path.join(dir, `${owner}__${name}`),
    path.join(dir, owner, name),
  ];
  const isRepo = (p: string) =>
    fs.existsSync(path.join(p, ".git")) || (fs.existsSync(path.join(p, "HEAD")) && fs.existsSync(path.join(p, "objects")));
  return candidates.find(isRepo);
}
