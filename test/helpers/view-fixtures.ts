/**
 * A small run directory for the `forager view` tests, written the way the orchestrator writes
 * one (writeRunFiles, ShardWriter, failure files, writeManifest) from records built with the
 * real schemas (RunSpecSchema, TaskSchema, TrajectorySchema): no Docker, no Redis.
 */
import fs from "node:fs";
import path from "node:path";
import { TrajectorySchema, type Trajectory } from "../../agent/trajectory";
import { writeRunFiles } from "../../orchestrator/run";
import { RunSpecSchema, runPaths, trajectoryId } from "../../orchestrator/spec";
import { ShardWriter } from "../../orchestrator/storage";
import { TaskSchema, type Task } from "../../tasks/schema";

const PATCH = `diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -3,7 +3,7 @@
 
 def add(a, b):
     """Return a + b."""
-    return a - b
+    return a + b
 
 
 def mul(a, b):
`;

const TEST_PATCH = `diff --git a/test_hidden.py b/test_hidden.py
new file mode 100644
--- /dev/null
+++ b/test_hidden.py
@@ -0,0 +1,5 @@
+from calc import add
+
+
+def test_add():
+    assert add(2, 3) == 5
`;

/** A task instance of the created calculator repository (`add` subtracts). */
export function viewTask(id: string): Task {
  return TaskSchema.parse({
    id,
    kind: id.startsWith("mutate/") ? "mutate-fix" : "issue-fix",
    repo: "example/tiny-calc",
    commit: "0123456789abcdef0123456789abcdef01234567",
    image: { repo: "example/tiny-calc", commit: "0123456789abcdef0123456789abcdef01234567", testCommand: "python3 -m pytest", logParser: "pytest", workdir: "/testbed" },
    problemStatement: `${id}: \`add(2, 3)\` returns -1; it should return 5.`,
    testPatch: TEST_PATCH,
    failToPass: ["test_hidden.py::test_add"],
    passToPass: ["test_calc.py::test_mul"],
    referencePatch: PATCH,
    metadata: id.startsWith("mutate/") ? { operator: "swap_binop" } : {},
  });
}

/** A finished episode of `task`: look, edit, submit, final answer; resolved or not. */
export function viewTrajectory(runId: string, task: Task, sample: number, resolved: boolean): Trajectory {
  const turn = (index: number, tool: string, argument: string, observation: string) => ({
    index,
    promptTokens: 900 + 150 * index,
    text: `<think>step ${index}</think>\n<tool: ${tool}>\n${argument}\n</tool>`,
    reasoning: `Turn ${index}: I should use ${tool} next.`,
    action: { tool, argument },
    completionTokens: 40 + index,
    usedTokens: 1000 + 200 * index,
    modelLatencyMs: 800 + 10 * index,
    toolName: tool,
    toolSuccess: true,
    toolOutput: observation,
    observation: `${observation}\n[remaining turns: ${20 - index - 1}]`,
    observationRole: "tool" as const,
    toolDurationMs: 120 + index,
    remainingTurns: 20 - index - 1,
    remainingTokens: 30000 - 1000 - 200 * index,
  });
  const turns = [
    turn(0, "bash", "cat calc.py", "def add(a, b):\n    return a - b"),
    turn(1, "edit", "calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE", "edited calc.py"),
    turn(2, "bash", "python3 -c 'import calc; print(calc.add(2, 3))'", resolved ? "5" : "-1"),
    turn(3, "submit", "", "submitted"),
  ];
  const status = resolved
    ? { FAIL_TO_PASS: { success: task.failToPass, failure: [] }, PASS_TO_PASS: { success: task.passToPass, failure: [] } }
    : { FAIL_TO_PASS: { success: [], failure: task.failToPass }, PASS_TO_PASS: { success: task.passToPass, failure: [] } };
  return TrajectorySchema.parse({
    schemaVersion: 1,
    id: trajectoryId(runId, task.id, sample),
    taskId: task.id,
    taskKind: task.kind,
    image: "forager/test-view:latest",
    policy: { kind: "http", model: "test-model" },
    sampling: { temperature: 1, topP: 0.95, maxTokens: 4096, seed: sample },
    config: { maxTurns: 20 },
    prompt: { system: "You are a helpful software engineer.", user: task.problemStatement, assistantPrefix: "<think>\n" },
    turns,
    submittedPatch: resolved ? PATCH : PATCH.replace("+    return a + b", "+    return b - a"),
    evaluation: {
      outcome: resolved ? "pass" : "fail",
      resolved,
      report: { resolution: resolved ? "FULL" : "NO", testsStatus: { ...status, FAIL_TO_FAIL: { success: [], failure: [] }, PASS_TO_FAIL: { success: [], failure: [] } }, applyMethod: "git apply" },
      seconds: 3.5 + sample,
    },
    // rewards/reward.ts, mode "execution", scale 1: passed → −1 + scale = 0, else −1
    reward: resolved ? 0 : -1,
    rewardParts: { mode: "execution", passed: resolved, similarity: resolved ? 1 : 0.8, scale: 1, branch: resolved ? "pass" : "fail" },
    endReason: "final_answer",
    usedTokens: 1600 + 100 * sample,
    times: { startedAt: "2026-12-02T04:00:00.000Z", totalSeconds: 20 + sample, sandboxStartSeconds: 1.2, modelSeconds: 3.3, toolSeconds: 0.5, evalSeconds: 3.5 + sample },
    envRetries: 0,
  });
}

export interface ViewRun {
  dir: string;
  runId: string;
  tasks: Task[];
  /** Appends the trajectory of (task, sample) to a new shard (a second writer), as a worker would. */
  append(taskIndex: number, sample: number, resolved: boolean): Promise<Trajectory>;
}

/**
 * A run of 3 tasks × K = 2 with 3 trajectories committed (2 resolved) and one failed sample; the
 * other two samples are still open (a run in progress).
 */
export async function makeViewRun(dir: string, runId = "view-run"): Promise<ViewRun> {
  const tasks = [viewTask("example__tiny-calc-1"), viewTask("example__tiny-calc-2"), viewTask("mutate/example__tiny-calc/add")];
  const spec = RunSpecSchema.parse({
    runId,
    runDir: path.resolve(dir),
    createdAt: "2026-12-02T04:00:00.000Z",
    taskFiles: ["tiny.jsonl"],
    samples: 2,
    policy: { kind: "http", endpoints: [{ url: "http://127.0.0.1:9/", model: "test-model" }] },
  });
  await writeRunFiles(spec, tasks);
  const w = new ShardWriter(runPaths(dir).shards, { writerId: "test-a" });
  await w.append(viewTrajectory(runId, tasks[0]!, 0, true), 0);
  await w.append(viewTrajectory(runId, tasks[0]!, 1, false), 1);
  await w.append(viewTrajectory(runId, tasks[1]!, 0, true), 0);
  await w.close();
  const failures = runPaths(dir).failures;
  fs.mkdirSync(failures, { recursive: true });
  fs.writeFileSync(
    path.join(failures, `${runId}.x.1.json`),
    JSON.stringify({ taskId: tasks[1]!.id, sample: 1, stage: "rollout", reason: "HTTP 500 from the model server after 5 retries", attempts: 4, at: "2026-12-02T04:01:00.000Z" }),
  );
  let writers = 0;
  return {
    dir,
    runId,
    tasks,
    async append(taskIndex, sample, resolved) {
      const t = viewTrajectory(runId, tasks[taskIndex]!, sample, resolved);
      const wr = new ShardWriter(runPaths(dir).shards, { writerId: `test-live-${writers++}` });
      await wr.append(t, sample);
      await wr.close();
      return t;
    },
  };
}
