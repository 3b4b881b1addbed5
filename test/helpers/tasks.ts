/**
 * A tiny task for agent tests: a Python repository with two bugs (`add`, `sub`) baked into an
 * image FROM the base image (`/testbed`, clean git state), a reference patch that fixes both and
 * adds a NOTES.md, hidden tests, and an evaluator that runs them in a fresh sandbox.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { engineBuild } from "../../images/engine-build";
import { imageExists } from "../../images/docker";
import { Sandbox } from "../../sandbox/sandbox";
import { TaskSchema, type Task } from "../../tasks/schema";
import type { Evaluator } from "../../agent/episode";
import { BASE_IMAGE } from "./sandbox";

const CALC = `"""A tiny calculator."""


def add(a, b):
    """Return a + b."""
    return a - b


def mul(a, b):
    return a * b


def square(x):
    return mul(x, x)


def cube(x):
    return mul(x, square(x))


def neg(x):
    return -x


def sub(a, b):
    """Return a - b."""
    return a + b
`;

const TESTS = `from calc import mul, square


def test_mul():
    assert mul(3, 4) == 12


def test_square():
    assert square(5) == 25


if __name__ == "__main__":
    test_mul()
    test_square()
    print("ok")
`;

const HIDDEN = `from calc import add, sub


def test_add():
    assert add(2, 3) == 5


def test_sub():
    assert sub(5, 3) == 2


if __name__ == "__main__":
    test_add()
    test_sub()
    print("hidden ok")
`;

const FILES: Record<string, string> = { "calc.py": CALC, "test_calc.py": TESTS, "README.md": "# tiny calc\n" };

function git(dir: string, args: string[]): string {
  return execFileSync("git", args, {
    cwd: dir,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@localhost",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@localhost",
      GIT_AUTHOR_DATE: "2020-01-01T00:00:00Z",
      GIT_COMMITTER_DATE: "2020-01-01T00:00:00Z",
      GIT_CONFIG_NOSYSTEM: "1",
      HOME: os.tmpdir(),
    },
  });
}

function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [p, c] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
    fs.writeFileSync(path.join(dir, p), c);
  }
}

/** The diff that turns `files` into `changed` (new files included), made with git on the host. */
export function diffOf(files: Record<string, string>, changed: Record<string, string | null>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-diff-"));
  try {
    git(dir, ["init", "-q"]);
    writeFiles(dir, files);
    git(dir, ["add", "-A"]);
    git(dir, ["commit", "-qm", "base"]);
    for (const [p, c] of Object.entries(changed)) {
      if (c === null) fs.rmSync(path.join(dir, p));
      else writeFiles(dir, { [p]: c });
    }
    git(dir, ["add", "-A", "-N"]);
    return git(dir, ["diff"]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface TinyTask {
  task: Task;
  image: string;
}

let cached: Promise<TinyTask> | undefined;

/** Build (once per process; docker caches across runs) the tiny image and its task. */
export function tinyTask(): Promise<TinyTask> {
  cached ??= buildTiny();
  return cached;
}

async function buildTiny(): Promise<TinyTask> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-tiny-"));
  const repo = path.join(dir, "repo");
  fs.mkdirSync(repo);
  git(repo, ["init", "-q", "-b", "main"]);
  writeFiles(repo, FILES);
  git(repo, ["add", "-A"]);
  git(repo, ["commit", "-qm", "tiny calc"]);
  const commit = git(repo, ["rev-parse", "HEAD"]).trim();
  const hash = createHash("sha256").update(BASE_IMAGE + JSON.stringify(FILES)).digest("hex").slice(0, 12);
  const image = `forager-test/agent-tiny:${hash}`;
  if (!(await imageExists(image))) {
    await engineBuild({
      layer: "instance",
      network: "none",
      tag: image,
      steps: [
        { name: "base", instruction: `FROM ${BASE_IMAGE}` },
        { name: "repo", instruction: "COPY repo /testbed" },
        { name: "workdir", instruction: "WORKDIR /testbed" },
      ],
      contextCopies: { repo },
      logFile: path.join(dir, "build.log"),
    });
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const fixed = CALC.replace("return a - b\n\n\ndef mul", "return a + b\n\n\ndef mul").replace(/return a \+ b\n$/, "return a - b\n");
  const referencePatch = diffOf(FILES, { "calc.py": fixed, "NOTES.md": "add and sub fixed\n" });
  const testPatch = diffOf(FILES, { "test_hidden.py": HIDDEN });
  const task = TaskSchema.parse({
    id: "example__tiny-calc-1",
    kind: "issue-fix",
    repo: "example/tiny-calc",
    commit,
    image: { repo: "example/tiny-calc", commit, testCommand: "python3 test_calc.py", logParser: "pytest", workdir: "/testbed" },
    problemStatement: "`add(2, 3)` returns -1 and `sub(5, 3)` returns 8. Both should do what their names say.",
    testPatch,
    failToPass: ["test_hidden.py::test_add", "test_hidden.py::test_sub"],
    passToPass: ["test_calc.py::test_mul", "test_calc.py::test_square"],
    referencePatch,
  });
  return { task, image };
}

/**
 * A mutate-fix variant: the image is correct for `neg`, the start patch breaks it, the reference
 * patch repairs it.
 */
export function mutateTask(base: Task): Task {
  const broken = CALC.replace("    return -x\n", "    return x\n");
  return TaskSchema.parse({
    ...base,
    id: "mutate/example__tiny-calc/neg",
    kind: "mutate-fix",
    problemStatement: "`neg(3)` returns 3 instead of -3.",
    startPatch: diffOf(FILES, { "calc.py": broken }),
    referencePatch: diffOf({ ...FILES, "calc.py": broken }, { "calc.py": CALC }),
    testPatch: "",
    failToPass: [],
  });
}

/**
 * A test evaluator: a fresh sandbox from `image`, the start patch, the submitted patch, then the
 * hidden tests; also checks that the reference patch reverses cleanly on top (same effect).
 */
export function tinyEvaluator(image: string): Evaluator & { sameAsReference: boolean[] } {
  const seen: boolean[] = [];
  const fn: Evaluator = async (task: Task, patch: string) => {
    const sb = await Sandbox.create({ image, lifetimeSeconds: 300, labels: { "forager.run": "test" } });
    try {
      const put = async (name: string, text: string) => sb.writeFile(`/tmp/${name}`, text.endsWith("\n") ? text : text + "\n");
      const sh = async (cmd: string) => sb.exec(["bash", "-c", cmd], { workdir: "/testbed", timeoutSeconds: 60 });
      if (task.startPatch) {
        await put("start.patch", task.startPatch);
        await sh("git apply /tmp/start.patch");
      }
      await put("pred.patch", patch);
      const ap = await sh("git apply /tmp/pred.patch");
      if (ap.exitCode !== 0) return { outcome: "patch_apply_failed" as const, resolved: false, reason: ap.stderr.toString() };
      await put("ref.patch", task.referencePatch);
      seen.push((await sh("git apply -R --check /tmp/ref.patch")).exitCode === 0);
      let ok = true;
      if (task.testPatch) {
        await put("test.patch", task.testPatch);
        await sh("git apply /tmp/test.patch");
        ok = (await sh("python3 test_hidden.py")).exitCode === 0;
      } else {
        ok = (await sh(`python3 -c 'from calc import neg; assert neg(3) == -3'`)).exitCode === 0;
      }
      ok = ok && (await sh("python3 test_calc.py")).exitCode === 0;
      return { outcome: ok ? ("pass" as const) : ("fail" as const), resolved: ok };
    } finally {
      await sb.destroy();
    }
  };
  return Object.assign(fn, { sameAsReference: seen });
}
