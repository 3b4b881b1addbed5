/**
 * The agent's starting state for a mutate-fix task, made at sandbox start from the shared
 * instance image (one image per repository + commit, shared by all its tasks — SWE-smith's
 * lesson that per-task images do not scale; CWM builds its mutate-fix tasks on the same
 * repository images as its other RL tasks).
 *
 * {@link prepareTaskSandbox} applies the task's startPatch (the bug) and rewrites history so
 * that nothing reachable leads back to the original code: one squashed orphan commit of the buggy
 * tree (no parent), every other ref deleted (branches, tags, notes, stash), reflogs expired and
 * removed, unreachable objects pruned (`git gc --prune=now`), and `__pycache__` directories
 * (bytecode of the original source) removed.
 *
 * The same starting state is made for the agent's episode (agent/episode.ts) and for evaluation
 * (rewards/evaluate.ts `evaluatePatch`, which calls {@link prepareTaskSandbox} when the task has
 * a startPatch), so a submitted patch is always graded against the tree the agent saw.
 *
 * Commit-mined issue-fix tasks (taskgen/commits) share one instance image per dependency set,
 * built at the newest commit of the set; their `startCommit` (the fix's parent, an ancestor of
 * the image's commit) is checked out first ({@link startTreeLines}), then the same squash and
 * prune leave only the parent's tree: the fix and every later commit are gone from the object
 * store. {@link needsStartState} says whether a task needs this at all.
 */
import { commitCommand, forgetReflogLines } from "../lib/git-script";
import { shellQuote } from "../lib/shell";
import type { Runtime } from "../sandbox/runtime";
import type { Task } from "./schema";

/** Author/committer of the squashed commit. */
export const SQUASH_IDENTITY = { name: "forager", email: "forager@localhost" };
export const SQUASH_MESSAGE = "Initial commit";

export interface PrepareResult {
  /** Sha of the single commit. */
  commit: string;
  /** Branch left checked out. */
  branch: string;
  seconds: number;
}

/**
 * git with its configuration and attribute sources pinned: no system or global config, no hooks,
 * no fsmonitor, no attributes file, no CRLF conversion; any owner of the tree is accepted (instance
 * images give it to the test user). The repository's own .git/config is the
 * image's (made by forager, not by the task or the agent).
 */
export const PINNED_GIT =
  "GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_ATTR_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 HOME=/nonexistent " +
  "git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c core.attributesFile=/dev/null -c core.autocrlf=false " +
  "-c core.safecrlf=false -c gc.auto=0 -c 'safe.directory=*'";

/**
 * The history-rewrite script (bash, run in the repository). The start patch, when any, comes on
 * stdin (never written to a file). Any failing step fails the script (`set -euo pipefail`, one
 * command per line): a start patch that does not apply fails the sandbox loudly.
 *
 * The bug's location must not show: the patch is applied to the index (`git apply --cached`) and
 * each changed file is rewritten in place from its blob (same inode), then every tracked file and
 * every directory of the tree gets the base commit's timestamp, so no fresh mtime points at the
 * mutated file.
 */
export function squashScript(withPatch: boolean, startTree?: { from: string; to: string }): string {
  const id = SQUASH_IDENTITY;
  const g = PINNED_GIT;
  const dated = startTree ? shellQuote(startTree.to) : "HEAD";
  return [
    "set -euo pipefail",
    `date="$(${g} log -1 --format=%cI ${dated} 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"`,
    `stamp="$(${g} log -1 --format=%ct ${dated} 2>/dev/null || date +%s)"`,
    ...(startTree ? startTreeLines(startTree.from, startTree.to) : []),
    ...(withPatch
      ? [
          `${g} apply --cached --whitespace=nowarn -`,
          `${g} diff --cached --name-only --no-renames -z --diff-filter=AM | while IFS= read -r -d '' f; do mkdir -p "$(dirname "$f")"; ${g} cat-file blob ":$f" > "$f"; done`,
          `${g} diff --cached --name-only --no-renames -z --diff-filter=D | while IFS= read -r -d '' f; do rm -f -- "$f"; done`,
        ]
      : []),
    `branch="$(${g} symbolic-ref --short -q HEAD || echo main)"`,
    `${g} checkout -q --orphan forager-squash-tmp`,
    `${g} add -A`,
    commitCommand(g, id, SQUASH_MESSAGE, '"$date"'),
    `${g} for-each-ref --format='%(refname)' | while read -r ref; do [ "$ref" = refs/heads/forager-squash-tmp ] || ${g} update-ref -d "$ref"; done`,
    `${g} branch -q -M forager-squash-tmp "$branch"`,
    "rm -f .git/ORIG_HEAD .git/FETCH_HEAD .git/MERGE_HEAD .git/CHERRY_PICK_HEAD .git/packed-refs.lock",
    ...forgetReflogLines(g),
    `${g} gc -q --prune=now`,
    "rm -rf .git/refs/original",
    "find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true",
    // One timestamp for the whole tree: files, then directories (deepest first).
    `${g} ls-files -z | xargs -0 -r touch -h -c -d "@$stamp" -- || true`,
    `find . -path ./.git -prune -o -type d -print0 | sort -rz | xargs -0 -r touch -h -c -d "@$stamp" -- || true`,
    `${g} update-index -q --refresh || true`,
    `echo "$(${g} rev-parse HEAD) $branch"`,
  ].join("\n");
}

/**
 * Bash lines that move the work tree and index from commit `from`'s tree to commit `to`'s (both
 * in the object store), as a binary diff piped into `git apply --index`: files the image's
 * install step added on top of `from` stay. Nothing is written to a file. Used for
 * `Task.startCommit` (from = `image.commit`) and by taskgen/commits validation.
 */
export function startTreeLines(from: string, to: string): string[] {
  const g = PINNED_GIT;
  const f = shellQuote(from);
  const t = shellQuote(to);
  return [
    `${g} cat-file -e ${t}^{commit}`,
    `if [ "$(${g} rev-parse ${f}^{tree})" != "$(${g} rev-parse ${t}^{tree})" ]; then ${g} diff --binary --full-index --no-renames --no-ext-diff --no-textconv ${f} ${t} | ${g} apply --index --whitespace=nowarn -; fi`,
  ];
}

/** True when the task's start state is made at sandbox start (a startPatch or a startCommit). */
export function needsStartState(task: Pick<Task, "startPatch"> & { startCommit?: string | undefined }): boolean {
  return task.startPatch.trim() !== "" || (task.startCommit ?? "") !== "";
}

/**
 * Put `sandbox` (started from the task's instance image) into the task's starting state: the
 * bug applied, history squashed to one orphan commit, originals unreachable, one timestamp for
 * every file, no copy of the diff anywhere.
 * @throws Error when the patch does not apply or git fails (message has the output).
 */
export async function prepareTaskSandbox(
  sandbox: Runtime,
  task: Pick<Task, "startPatch" | "image" | "id"> & { startCommit?: string | undefined },
): Promise<PrepareResult> {
  const started = performance.now();
  const workdir = task.image.workdir ?? "/testbed";
  const withPatch = task.startPatch.trim() !== "";
  const startTree = task.startCommit ? { from: task.image.commit, to: task.startCommit } : undefined;
  const r = await sandbox.exec(["bash", "-c", squashScript(withPatch, startTree)], {
    workdir,
    timeoutSeconds: 600,
    ...(withPatch ? { stdin: task.startPatch } : { stdin: "" }),
  });
  const out = r.stdout.toString("utf8").trim();
  if (r.exitCode !== 0) {
    throw new Error(`preparing ${task.id} failed (exit ${r.exitCode}): ${(out + "\n" + r.stderr.toString("utf8")).slice(-1500)}`);
  }
  const [commit, branch] = out.split("\n").pop()!.split(" ") as [string, string];
  return { commit, branch, seconds: (performance.now() - started) / 1000 };
}
