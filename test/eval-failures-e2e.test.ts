/**
 * End to end through the orchestrator (embedded Redis, real Docker, the real evaluation):
 * - a submission that used to turn its evaluation into an environment error (an atexit handler
 *   that deletes python3, the shell, git and the tree; before round 3 the driver's last step
 *   broke, the sample was retried and then dropped) is a committed trajectory with reward −1;
 * - an evaluation that fails for forager's own reasons, after its retries, is never silently
 *   dropped: a failure record with its reason, its kind (`env_error`) and the policy, counted
 *   apart from rewards and pass@k in the summary, `forager status` and the manifest.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInstanceImage } from "../images/build";
import { specForSweBench } from "../images/swebench-specs";
import { EnvironmentError } from "../lib/errors";
import { forage, formatSummary } from "../orchestrator/forage";
import { readFailures } from "../orchestrator/run";
import { runPaths } from "../orchestrator/spec";
import { evaluateWith, harnessEvaluator } from "../orchestrator/stages";
import { readShards } from "../orchestrator/storage";
import { SweBenchRowSchema, sweBenchRowToTask } from "../tasks/swebench";
import type { Task } from "../tasks/schema";
import { evalDatasetRow, evalSpecTable, makeEvalFixture } from "./helpers/eval-fixtures";
import { roundThreePatches } from "./helpers/eval-round3";

const run = promisify(execFile);
const FAST = { lockDurationMs: 5000, stalledIntervalMs: 2000, reap: false };
let tmp: string;
let image: string;
let task: Task;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-eval-fail-"));
  const repoDir = path.join(tmp, "repos", "example__evalpkg");
  const fixture = makeEvalFixture(repoDir);
  const patch = roundThreePatches(repoDir).r3AtexitDeletesPython!;
  // The oracle submits the task's "gold" patch: here the submission under test.
  const row = SweBenchRowSchema.parse({ ...evalDatasetRow(fixture), patch });
  task = sweBenchRowToTask(row, (r) => specForSweBench({ ...r, version: r.version ?? "" }, { table: evalSpecTable(), source: { type: "path", path: repoDir } }));
  image = (await buildInstanceImage(task.image, { stateDir: path.join(tmp, "state") })).tag;
}, 600_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("evaluation failures through the orchestrator", () => {
  it("a submission that breaks the container at exit: a trajectory with reward -1, not an environment error", async () => {
    const tasksFile = path.join(tmp, "atexit.jsonl");
    fs.writeFileSync(tasksFile, JSON.stringify(task) + "\n");
    const out = path.join(tmp, "atexit-run");
    const res = await forage({
      taskFiles: [tasksFile],
      samples: 1,
      out,
      runId: "e2e-atexit",
      policy: { kind: "oracle" },
      images: { [task.id]: image },
      attempts: 2,
      backoffMs: 100,
      worker: { concurrency: 1, evaluate: evaluateWith(() => harnessEvaluator(image)), ...FAST },
      progressMs: 500,
    });
    expect(res.summary).toMatchObject({ trajectories: 1, resolved: 0, failed: 0 });
    const [t] = [...readShards(runPaths(out).shards)].map((x) => x.trajectory);
    expect(t!.evaluation).toMatchObject({ outcome: "fail", resolved: false });
    expect(t!.reward).toBe(-1);
  }, 600_000);

  it("an evaluation that keeps failing for forager's reasons: recorded with its kind and policy, counted apart", async () => {
    const tasksFile = path.join(tmp, "infra.jsonl");
    fs.writeFileSync(tasksFile, JSON.stringify({ ...task, id: `${task.id}-infra` }) + "\n");
    const out = path.join(tmp, "infra-run");
    let calls = 0;
    const res = await forage({
      taskFiles: [tasksFile],
      samples: 1,
      out,
      runId: "e2e-infra",
      policy: { kind: "oracle" },
      images: { [`${task.id}-infra`]: image },
      attempts: 2,
      backoffMs: 100,
      worker: {
        concurrency: 1,
        evaluate: evaluateWith(() => async () => {
          calls++;
          throw new EnvironmentError("the engine lost the evaluation container");
        }),
        ...FAST,
      },
      progressMs: 500,
    });
    expect(calls).toBe(2);
    expect(res.summary).toMatchObject({ trajectories: 0, failed: 1 });
    expect(res.summary!.failures).toMatchObject({ total: 1, byKind: { "evaluation/env_error": 1 }, byPolicy: { oracle: 1 } });
    // the only task's sample failed for good: the task is done but not scored (no pass@k over nothing)
    expect(res.summary!.metrics["pass@1"]).toBeUndefined();
    expect(res.summary!.accounting).toMatchObject({ tasksDone: 1, tasksScored: 0 });
    expect(formatSummary(res.summary!)).toMatch(/1 failed: evaluation\/env_error 1 \(oracle 1\)/);
    const [f] = readFailures(out);
    expect(f).toMatchObject({ stage: "evaluation", kind: "env_error", policy: "oracle", attempts: 2 });
    expect(f!.reason).toMatch(/the engine lost the evaluation container/);
    const st = await run(path.resolve("bin/forager"), ["status", out]);
    expect(st.stdout).toMatch(/1 failed: evaluation\/env_error 1 \(oracle 1\)/);
  }, 600_000);
});
