/**
 * Small git repositories for tests, made with the git CLI and fixed author/committer dates so
 * that shas are deterministic for the same content.
 *
 *   const repo = makeRepo(dir, { "a.txt": "1\n" }, { message: "second", files: { "a.txt": "2\n" }, tag: "v2" });
 *   makeTinyPythonRepo(dir) → base commit with a bug + tests, a later "fix" commit tagged, a side branch…
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/** One commit to make after the initial one. `files` maps path → content, or `null` to delete. */
export interface FixtureCommit {
  message: string;
  files?: Record<string, string | null>;
  /** Lightweight tag (or annotated, with `annotated: true`) on this commit. */
  tag?: string;
  annotated?: boolean;
  /** Make the commit on this branch (created from the current HEAD if missing), then stay there. */
  branch?: string;
}

/** What {@link makeRepo} made. */
export interface FixtureRepo {
  dir: string;
  /** Shas of the commits in order: [initial, ...commits]. */
  shas: string[];
}

let clock = 0;

/** Run git in `dir` with fixed identity and a date that advances one minute per call. */
export function git(dir: string, args: string[], opts: { input?: string } = {}): string {
  clock += 1;
  const date = new Date(Date.UTC(2020, 0, 1) + clock * 60_000).toISOString();
  return execFileSync("git", args, {
    cwd: dir,
    input: opts.input,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "Fixture Author",
      GIT_AUTHOR_EMAIL: "author@example.invalid",
      GIT_COMMITTER_NAME: "Fixture Author",
      GIT_COMMITTER_EMAIL: "author@example.invalid",
      GIT_AUTHOR_DATE: date,
      GIT_COMMITTER_DATE: date,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
    },
    stdio: ["pipe", "pipe", "pipe"],
  }).trim();
}

function writeFiles(dir: string, files: Record<string, string | null>): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(dir, rel);
    if (content === null) {
      fs.rmSync(p, { force: true });
    } else {
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, content);
    }
  }
}

/**
 * Create a git repository in `dir` (created if missing) with an initial commit of `files` on
 * branch `main`, then one commit per entry of `commits`.
 */
export function makeRepo(dir: string, files: Record<string, string>, ...commits: FixtureCommit[]): FixtureRepo {
  fs.mkdirSync(dir, { recursive: true });
  git(dir, ["init", "-q", "-b", "main"]);
  writeFiles(dir, files);
  git(dir, ["add", "-A"]);
  git(dir, ["commit", "-q", "-m", "initial"]);
  const shas = [git(dir, ["rev-parse", "HEAD"])];
  for (const c of commits) {
    if (c.branch) {
      const exists = git(dir, ["branch", "--list", c.branch]) !== "";
      git(dir, exists ? ["checkout", "-q", c.branch] : ["checkout", "-q", "-b", c.branch]);
    }
    writeFiles(dir, c.files ?? {});
    git(dir, ["add", "-A"]);
    git(dir, ["commit", "-q", "--allow-empty", "-m", c.message]);
    const sha = git(dir, ["rev-parse", "HEAD"]);
    shas.push(sha);
    if (c.tag) git(dir, c.annotated ? ["tag", "-a", c.tag, "-m", c.tag] : ["tag", c.tag]);
  }
  return { dir, shas };
}

/** What {@link makeTinyPythonRepo} made. */
export interface TinyPythonRepo {
  dir: string;
  /** The commit images are built at: `add` is buggy, `test_add` fails, `test_mul` passes. */
  baseSha: string;
  /** An ancestor of base, tagged `v0.1` (annotated). */
  firstSha: string;
  /** A later commit fixing `add` (on main, after base), tagged `v0.2`. */
  fixSha: string;
  /** A commit on branch `feature` made from base (not an ancestor of base). */
  featureSha: string;
  /** Tag names: on the ancestor, and on the later fix. */
  ancestorTag: string;
  laterTag: string;
}

/** A minimal setuptools pyproject.toml for a one-package test repository. */
export function pyprojectFor(pkg: string): string {
  return `[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "${pkg}"
version = "0.1.0"

[tool.setuptools]
packages = ["${pkg}"]
`;
}

/**
 * A tiny Python package (`tinypkg`, setuptools pyproject) with pytest tests:
 *   first (tag v0.1) → base (bug in add, failing test) → fix (tag v0.2), and branch `feature`
 *   from base with one more commit; HEAD is left on `main` at the fix, like a real upstream.
 */
export function makeTinyPythonRepo(dir: string): TinyPythonRepo {
  const { shas } = makeRepo(
    dir,
    {
      "pyproject.toml": pyprojectFor("tinypkg"),
      ".gitignore": "__pycache__/\n*.egg-info/\nbuild/\n.pytest_cache/\n",
      "tinypkg/__init__.py": "",
      "tinypkg/calc.py": "def mul(a, b):\n    return a * b\n",
      "tests/test_calc.py": "from tinypkg.calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n",
      "README.md": "tinypkg\n",
    },
    {
      message: "add add() (buggy) and its test",
      files: {
        "tinypkg/calc.py": "def mul(a, b):\n    return a * b\n\n\ndef add(a, b):\n    return a - b\n",
        "tests/test_calc.py":
          "from tinypkg.calc import add, mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
      },
    },
    {
      message: "fix add: SECRET-FIX-MARKER",
      files: { "tinypkg/calc.py": "def mul(a, b):\n    return a * b\n\n\ndef add(a, b):\n    return a + b\n" },
      tag: "v0.2",
    },
  );
  const [firstSha, baseSha, fixSha] = shas as [string, string, string];
  // Annotated ancestor tag on the first commit.
  git(dir, ["tag", "-a", "v0.1", "-m", "v0.1", firstSha]);
  // A side branch from base.
  git(dir, ["checkout", "-q", "-b", "feature", baseSha]);
  fs.writeFileSync(path.join(dir, "FEATURE.md"), "feature work\n");
  git(dir, ["add", "-A"]);
  git(dir, ["commit", "-q", "-m", "feature work"]);
  const featureSha = git(dir, ["rev-parse", "HEAD"]);
  git(dir, ["checkout", "-q", "main"]);
  // A note (refs/notes/commits) on the fix, so hygiene has one more kind of ref to remove.
  git(dir, ["notes", "add", "-m", "note on fix", fixSha]);
  return { dir, baseSha, firstSha, fixSha, featureSha, ancestorTag: "v0.1", laterTag: "v0.2" };
}
