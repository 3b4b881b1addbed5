/**
 * Host-side git reads for commit mining (forager issue 11): the candidate records of a history,
 * a commit's full diff, and the dependency key of a commit (what decides whether two tasks can
 * share one image). Every function runs the git CLI on a local git directory (bare or not).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { GitTree, readRepository } from "../../infer/read";
import { parseGitLog, type CommitRecord } from "./select";

/** Run git on `gitDir`; returns stdout. @throws Error with git's stderr when git fails. */
export function gitOut(gitDir: string, args: string[]): string {
  return execFileSync("git", ["--git-dir", gitDir, ...args], { encoding: "utf8", maxBuffer: 1 << 30, stdio: ["ignore", "pipe", "pipe"] });
}

/** The git directory of a repository path: `<path>/.git` for a work tree, the path itself when bare. */
export function gitDirOf(repoPath: string): string {
  try {
    return execFileSync("git", ["-C", repoPath, "rev-parse", "--absolute-git-dir"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch (err) {
    throw new Error(`${repoPath} is not a git repository: ${(err as Error).message}`);
  }
}

/** Which part of the history to scan: `--since DATE` (from HEAD) or a range `A..B`; default all of HEAD. */
export interface HistoryWindow {
  since?: string;
  range?: string;
}

/**
 * The first-parent history as records (newest first): non-merge commits and merges by their
 * first-parent diff (`git log --first-parent -m`). Root commits have no parent and are absent.
 */
export function listCommits(gitDir: string, w: HistoryWindow = {}): CommitRecord[] {
  if (w.since && w.range) throw new Error("--since and --range exclude each other");
  const rev = w.range ?? "HEAD";
  const args = ["log", "--first-parent", "-m", "--no-renames", "-U0", "--format=%x00%H %P%x00%s", "-p"];
  if (w.since) args.push(`--since=${w.since}`);
  args.push(rev, "--");
  return parseGitLog(gitOut(gitDir, args));
}

/** The full diff of a commit against its first parent (binary, no renames: what splitPatch reads). */
export function commitDiff(gitDir: string, parent: string, sha: string): string {
  return gitOut(gitDir, ["diff", "--no-renames", "--binary", "--full-index", "--no-ext-diff", "--no-textconv", parent, sha, "--"]);
}

/** The commit message (subject and body) of a commit. */
export function commitMessage(gitDir: string, sha: string): string {
  return gitOut(gitDir, ["log", "-1", "--format=%B", sha]).trim();
}

/** Committer date of a commit, ISO 8601. */
export function commitDate(gitDir: string, sha: string): string {
  return gitOut(gitDir, ["log", "-1", "--format=%cI", sha]).trim();
}

/**
 * Files whose content decides the environment: pyproject.toml, setup.cfg, setup.py and tox.ini at
 * the root, requirements*.txt anywhere, and any .txt under a requirements/ directory.
 */
export const DEPENDENCY_FILE = /^(pyproject\.toml|setup\.cfg|setup\.py|tox\.ini)$|(^|\/)requirements[^/]*\.txt$|(^|\/)requirements\/[^/]*\.txt$/;

/**
 * The files key of a commit: sha-256 (first 16 hex digits) over the `path blob-id` lines of its
 * dependency files ({@link DEPENDENCY_FILE}), sorted. Equal keys: the files are equal byte for byte.
 */
export function dependencyFilesKey(gitDir: string, sha: string): string {
  const lines = gitOut(gitDir, ["ls-tree", "-r", "--full-tree", sha])
    .split("\n")
    .map((l) => /^\d+ blob ([0-9a-f]+)\t(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null && DEPENDENCY_FILE.test(m[2]!))
    .map((m) => `${m[2]} ${m[1]}`)
    .sort();
  return createHash("sha256").update(lines.join("\n")).digest("hex").slice(0, 16);
}

/**
 * The dependency key of a commit: sha-256 (first 16 hex digits) of what its dependency files
 * declare, as infer/read.ts reads them: build backend, build requirements, dependencies,
 * test dependencies (name, extras, specifier, url, marker), Requires-Python, SCM versioning,
 * version file, layout, test runner and pytest options. An edit of those files that declares the
 * same (a version bump, a linter setting) keeps the key, so the set keeps its spec and image;
 * any declared change makes a new key. When the files cannot be read, the files key
 * ({@link dependencyFilesKey}) stands in.
 */
export function dependencyKey(gitDir: string, sha: string): string {
  // Equal files declare the same: read each version of the files once.
  const filesKey = dependencyFilesKey(gitDir, sha);
  const memo = `${gitDir}\0${filesKey}`;
  const known = declaredKeys.get(memo);
  if (known) return known;
  const key = declaredKey(gitDir, sha, filesKey);
  declaredKeys.set(memo, key);
  return key;
}

/** Declared keys by git directory and files key (a process-wide memo: equal files, equal key). */
const declaredKeys = new Map<string, string>();

function declaredKey(gitDir: string, sha: string, filesKey: string): string {
  let facts: ReturnType<typeof readRepository>;
  try {
    facts = readRepository(new GitTree(gitDir, sha));
  } catch {
    return `files-${filesKey}`;
  }
  const reqs = (rs: typeof facts.dependencies) =>
    rs.map((r) => [r.normalized, [...r.extras].sort().join(","), r.specifier, r.url ?? "", r.marker ?? ""].join("|")).sort();
  const declared = {
    backend: facts.backend,
    build: reqs(facts.buildRequires),
    deps: reqs(facts.dependencies),
    test: reqs(facts.testDependencies),
    python: facts.requiresPython ?? "",
    scm: facts.usesScm,
    versionFile: facts.versionFile ?? "",
    layout: facts.layout,
    runner: facts.runner,
    pytest: Object.entries(facts.pytestOptions).sort(),
  };
  return createHash("sha256").update(JSON.stringify(declared)).digest("hex").slice(0, 16);
}
