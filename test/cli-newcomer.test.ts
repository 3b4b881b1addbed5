/**
 * A newcomer's first day (issue 26), without a Docker engine: the CLI run as a process on tiny
 * created inputs, its output and exit code asserted. One `describe` per item of the issue; the
 * items that need real sandboxes (Ctrl-C, eval reruns, replay from a run) are in
 * test/cli-engine.test.ts.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parquetReadObjects } from "hyparquet";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fakeTask, fakeTrajectory } from "../orchestrator/fake";
import { writeRunFiles } from "../orchestrator/run";
import { RunSpecSchema, runPaths, sampleKey } from "../orchestrator/spec";
import { ShardWriter } from "../orchestrator/storage";
import { OpenAIChatRowSchema } from "../orchestrator/export-formats";
import { writeTrajectory, type Trajectory } from "../agent/trajectory";
import { humanLogLine } from "../lib/log";
import { freePort } from "../orchestrator/redis-server";
import { buildProgram } from "../cli/program";
import { commandTable } from "../cli/completion";
import { EXAMPLES } from "../cli/help";

const BIN = path.resolve("bin/forager");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-newcomer-"));
const STATE = path.join(tmp, "state");
const ENV = { ...process.env, FORAGER_STATE_DIR: STATE, DOCKER_HOST: "unix:///nonexistent.sock" } as NodeJS.ProcessEnv;
delete ENV.FORAGER_LOG_LEVEL;

interface CliResult {
  stdout: string;
  stderr: string;
  code: number;
}
/** Run the CLI as a process (no engine: DOCKER_HOST points nowhere). */
function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  return promisify(execFile)(BIN, args, { encoding: "utf8", env: opts.env ?? ENV, cwd: opts.cwd ?? process.cwd(), timeout: 60_000 }).then(
    (r) => ({ stdout: r.stdout, stderr: r.stderr, code: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => ({ stdout: e.stdout, stderr: e.stderr, code: e.code }),
  );
}

const RUN = path.join(tmp, "run");
const taskA = fakeTask("ex__a-1");
const taskB = fakeTask("ex__b-1", { repo: "example/other" });
const taskC = fakeTask("ex__c-1", { repo: "example/other" });
const TASKS = path.join(tmp, "tasks.jsonl");
const SINGLE = path.join(tmp, "single.jsonl");

/** A chat-mode trajectory: the server's own tool call kept on the turn (`wire`). */
function chatTrajectory(id: string): Trajectory {
  const t = fakeTrajectory(taskB, { id, resolved: false, actions: [["bash", "ls -la"]] });
  t.turns[0]!.wire = { content: "looking", toolCalls: [{ id: "call_wire_1", name: "bash", arguments: '{"command":"ls -la"}' }] };
  t.turns[0]!.toolCallId = "call_wire_1";
  return t;
}

beforeAll(async () => {
  // A run directory as forage leaves it: K = 2; task a two trajectories (one resolved), task b
  // one trajectory and one sample failed at the model server, task c both samples failed.
  const spec = RunSpecSchema.parse({ runId: "newcomer", runDir: RUN, createdAt: new Date().toISOString(), samples: 2, policy: { kind: "oracle" } });
  await writeRunFiles(spec, [taskA, taskB, taskC]);
  const w = new ShardWriter(runPaths(RUN).shards, { writerId: "w" });
  await w.append(fakeTrajectory(taskA, { id: "newcomer/ex__a-1/0", resolved: true }), 0);
  await w.append(fakeTrajectory(taskA, { id: "newcomer/ex__a-1/1", resolved: false, actions: [["create", "notes.md\nhello"], ["edit", "calc.py\n<<<<<<< SEARCH\na - b\n=======\na + b\n>>>>>>> REPLACE"]] }), 1);
  await w.append(chatTrajectory("newcomer/ex__b-1/0"), 0);
  await w.close();
  fs.mkdirSync(runPaths(RUN).failures, { recursive: true });
  const fail = (task: string, sample: number) =>
    fs.writeFileSync(
      path.join(runPaths(RUN).failures, `${sampleKey("newcomer", task, sample)}.json`),
      JSON.stringify({ taskId: task, sample, stage: "rollout", reason: "inference failed: ECONNREFUSED", attempts: 3, at: new Date().toISOString(), kind: "policy_error", policy: "http:m" }),
    );
  fail("ex__b-1", 1);
  fail("ex__c-1", 0);
  fail("ex__c-1", 1);
  fs.writeFileSync(TASKS, [JSON.stringify(taskA), "{not json", JSON.stringify(taskB)].join("\n") + "\n");
  writeTrajectory(SINGLE, { ...fakeTrajectory(taskA, { id: "single-1", resolved: true }), rewardParts: { mode: "execution", scale: 1, passed: true, branch: "pass" } });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("1. show reads forage's output; replay takes the task from the run", () => {
  it("show RUN, show RUN --task --sample, show a gzip shard", async () => {
    const all = await cli(["show", RUN]);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout.match(/^trajectory newcomer\//gm)).toHaveLength(3);
    const one = await cli(["show", RUN, "--task", "ex__a-1", "--sample", "1"]);
    expect(one.code).toBe(0);
    expect(one.stdout.match(/^trajectory /gm)).toHaveLength(1);
    expect(one.stdout).toContain("trajectory newcomer/ex__a-1/1");
    const shard = fs.readdirSync(runPaths(RUN).shards).find((f) => f.endsWith(".jsonl.gz"))!;
    const gz = await cli(["show", path.join(runPaths(RUN).shards, shard), "--json"]);
    expect(gz.code, gz.stderr).toBe(0);
    expect(gz.stderr).not.toMatch(/invalid JSON/);
    expect(JSON.parse(gz.stdout.split("\n\n")[0]!).schemaVersion).toBe(1);
  });

  it("a directory that is no run, a path that is not there, a task with no trajectory: one line, exit 2", async () => {
    const dir = await cli(["show", tmp]);
    expect(dir.code).toBe(2);
    expect(dir.stderr.trim()).toMatch(/^forager: .* is a directory but not a forager run \(no run\.json\)/);
    expect(dir.stderr).not.toMatch(/EISDIR| {4}at /);
    const none = await cli(["show", path.join(tmp, "nope.jsonl")]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/nope\.jsonl: no such file or directory; expected a trajectory JSONL file, a run directory or a shard/);
    const empty = await cli(["show", RUN, "--task", "ex__c-1"]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/no trajectory to show in .* for task ex__c-1/);
  });

  it("replay of a plain file without --tasks names what to give (no sandbox started)", async () => {
    const r = await cli(["replay", SINGLE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/the task of single-1 \(ex__a-1\) is not known from .*single\.jsonl: give --tasks FILE/);
  });
});

describe("2. a wrong --model-url is found before any sandbox or job", () => {
  let notOpenAI: Server;
  let notOpenAIUrl: string;
  beforeAll(async () => {
    notOpenAI = createServer((_req, res) => res.writeHead(404, { "content-type": "text/html" }).end("<h1>not here</h1>"));
    await new Promise<void>((r) => notOpenAI.listen(0, "127.0.0.1", r));
    notOpenAIUrl = `http://127.0.0.1:${(notOpenAI.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => notOpenAI.close(() => r())));

  it("run: an unreachable server, a server that is not OpenAI-compatible: one line naming the URL, exit 2", async () => {
    const port = await freePort();
    const r = await cli(["run", "--tasks", TASKS, "--task", "ex__a-1", "--model-url", `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n").filter((l) => l.startsWith("forager:"))).toEqual([
      `forager: --model-url http://127.0.0.1:${port}: unreachable (GET http://127.0.0.1:${port}/v1/models: ECONNREFUSED); start the server or fix the URL`,
    ]);
    expect(r.stdout).not.toMatch(/sandbox/);
    const html = await cli(["run", "--tasks", TASKS, "--task", "ex__a-1", "--model-url", notOpenAIUrl]);
    expect(html.code).toBe(2);
    expect(html.stderr).toMatch(/answered HTTP 404; not an OpenAI-compatible server\?/);
  });

  it("forage: refused before the run directory exists", async () => {
    const port = await freePort();
    const out = path.join(tmp, "never");
    const r = await cli(["forage", "--tasks", TASKS, "--samples", "1", "--model-url", `http://127.0.0.1:${port}/v1`, "--out", out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--model-url http:\/\/127\.0\.0\.1:\d+\/v1: unreachable/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it("infrastructure failures stay out of pass@k: counted apart, the tasks they emptied not scored", async () => {
    const r = await cli(["status", RUN]);
    expect(r.code, r.stderr).toBe(0);
    // a: 1/2 resolved, b: 0/1 (its other sample a policy_error), c: every sample a policy_error
    expect(r.stdout).toMatch(/pass@1 25\.0% · pass@2 50\.0% over 3\/3 tasks done \(1 with no trajectory, not scored\)/);
    expect(r.stdout).toMatch(/3 failed: rollout\/policy_error 3 \(http:m 3\) \(not in rewards or pass@k\)/);
  });
});

describe("3. errors in one human line", () => {
  it("a flag's value: the flag, the value and the rule (not a validator's JSON)", async () => {
    const k = await cli(["forage", "--tasks", TASKS, "--samples", "0", "--out", path.join(tmp, "x")]);
    expect(k.code).toBe(2);
    expect(k.stderr.trim()).toBe(`error: option '--samples <k>' argument '0' is invalid. must be an integer ≥ 1 (got "0")`);
    const t = await cli(["run", "--tasks", TASKS, "--task", "ex__a-1", "--policy", "oracle", "--temperature", "-3"]);
    expect(t.code).toBe(2);
    expect(t.stderr.trim()).toBe(`error: option '--temperature <t>' argument '-3' is invalid. must be a number ≥ 0 (got "-3")`);
    for (const r of [k, t]) expect(r.stderr).not.toMatch(/^\s*\[|"code":/m);
  });

  it("a missing path: the path and what was expected", async () => {
    const r = await cli(["forage", "--tasks", path.join(tmp, "missing.jsonl"), "--samples", "1", "--out", path.join(tmp, "y")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--tasks <files\.\.\.>' argument '.*missing\.jsonl' is invalid\. no such file or directory; expected a tasks file/);
    expect(r.stderr).not.toMatch(/ENOENT/);
  });

  it("a config that does not validate names the field", async () => {
    const r = await cli(["forage", "--tasks", TASKS, "--samples", "1", "--config", '{"temperature": "hot"}', "--out", path.join(tmp, "cfg")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/temperature/);
    expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(3);
  });

  it("logs are one human line unless JSON is asked for", () => {
    const line = JSON.stringify({ level: 40, time: 1, pid: 1, component: "forage", run: "r1", msg: "collecting failed", err: { message: "boom\n    at x (y.ts:1)", stack: "Error: boom\n    at x" } });
    expect(humanLogLine(line)).toBe("warn [forage] collecting failed (run=r1): boom");
  });
});

describe("4. no silent acceptance", () => {
  it("forage: --detach without --redis, --policy oracle with --model-url, --workers/--concurrency below 1", async () => {
    const d = await cli(["forage", "--tasks", TASKS, "--samples", "1", "--detach", "--out", path.join(tmp, "d")]);
    expect(d.code).toBe(2);
    expect(d.stderr).toMatch(/--detach needs --redis URL/);
    const o = await cli(["forage", "--tasks", TASKS, "--samples", "1", "--policy", "oracle", "--model-url", "http://127.0.0.1:9", "--out", path.join(tmp, "o")]);
    expect(o.code).toBe(2);
    expect(o.stderr).toMatch(/--policy oracle takes no --model-url/);
    const c = await cli(["forage", "--tasks", TASKS, "--samples", "1", "--concurrency", "-1", "--out", path.join(tmp, "c")]);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/--concurrency <n>' argument '-1' is invalid\. must be an integer ≥ 1/);
  });

  it("export: --vote with --format chat is refused", async () => {
    const r = await cli(["export", RUN, "--format", "chat", "--vote", "majority"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--vote applies to --format predictions, not chat/);
  });

  it("run: a malformed task line is reported, as forage does", async () => {
    const r = await cli(["run", "--tasks", TASKS, "--task", "ex__zz-9", "--policy", "oracle"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/1 bad task line\(s\) in .*tasks\.jsonl, skipped:\n\s+.*tasks\.jsonl:2: invalid JSON/);
    expect(r.stderr).toMatch(/task ex__zz-9 not found in .* \(it holds 2 task\(s\): ex__a-1, ex__b-1\)/);
  });

  it("eval: --workers -1, a nonexistent --repos, a prediction without model_patch, predictions only for unknown ids", async () => {
    const row = (id: string) => JSON.stringify({ instance_id: id, repo: "sympy/sympy", base_commit: "e7fd69d051eaa67cb17f172a39b57253e9cb831a", patch: "", test_patch: "", problem_statement: "p", FAIL_TO_PASS: "[]", PASS_TO_PASS: "[]", version: "1.7" });
    const ds = path.join(tmp, "ds.jsonl");
    fs.writeFileSync(ds, row("sympy__sympy-1") + "\n");
    const w = await cli(["eval", "--dataset", ds, "--predictions", "gold", "--workers", "-1"]);
    expect(w.code).toBe(2);
    expect(w.stderr).toMatch(/--workers <n>' argument '-1' is invalid/);
    const repos = await cli(["eval", "--dataset", ds, "--predictions", "gold", "--repos", path.join(tmp, "no-clones")]);
    expect(repos.code).toBe(2);
    expect(repos.stderr).toMatch(/--repos <dir>' argument '.*no-clones' is invalid\. no such file or directory; expected a directory of local clones/);
    const preds = path.join(tmp, "preds.jsonl");
    fs.writeFileSync(preds, JSON.stringify({ instance_id: "sympy__sympy-1", model_name_or_path: "m" }) + "\n");
    const noPatch = await cli(["eval", "--dataset", ds, "--predictions", preds, "--out", path.join(tmp, "logs")]);
    expect(noPatch.stderr).toMatch(/warning: 1 prediction\(s\) in .*preds\.jsonl have no model_patch: graded as an empty patch \(unresolved\): sympy__sympy-1/);
    const unknown = path.join(tmp, "unknown.jsonl");
    fs.writeFileSync(unknown, JSON.stringify({ instance_id: "nope__nope-1", model_name_or_path: "m", model_patch: "x" }) + "\n");
    const u = await cli(["eval", "--dataset", ds, "--predictions", unknown, "--out", path.join(tmp, "logs")]);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/nothing evaluated \(.*1 prediction\(s\) for unknown ids\)/);
  });
});

describe("5. exports trainers read", () => {
  it("openai: structured tool_calls, tool_call_id, tools; chat-mode runs keep the wire tool calls", async () => {
    const r = await cli(["export", RUN, "--format", "openai"]);
    expect(r.code, r.stderr).toBe(0);
    const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(Object.keys(row).sort()).toEqual(["messages", "parallel_tool_calls", "tools"]); // the API rejects other keys
      OpenAIChatRowSchema.parse(row);
    }
    const [a0, a1, b0] = rows.map((x) => OpenAIChatRowSchema.parse(x));
    expect(a0!.tools.map((t) => t.function.name)).toEqual(["bash", "edit", "create", "submit"]);
    const call = a0!.messages.find((m) => m.role === "assistant" && m.tool_calls)!;
    expect(call.role === "assistant" && JSON.parse(call.tool_calls![0]!.function.arguments)).toEqual({ command: "ls" });
    const answers = a0!.messages.filter((m) => m.role === "tool");
    expect(answers[0]).toMatchObject({ role: "tool", tool_call_id: "call_0", content: "ok" });
    const edit = a1!.messages.flatMap((m) => (m.role === "assistant" ? (m.tool_calls ?? []) : [])).find((c) => c.function.name === "edit")!;
    expect(JSON.parse(edit.function.arguments)).toEqual({ path: "calc.py", search: "a - b", replace: "a + b" });
    const wire = b0!.messages.find((m) => m.role === "assistant" && m.tool_calls)!;
    expect(wire).toMatchObject({ content: "looking", tool_calls: [{ id: "call_wire_1", function: { name: "bash", arguments: '{"command":"ls -la"}' } }] });
    expect(b0!.messages.find((m) => m.role === "tool")).toMatchObject({ tool_call_id: "call_wire_1" });
  });

  it("chat is CWM's form, and says so", async () => {
    const r = await cli(["export", RUN, "--format", "chat", "--resolved-only"]);
    expect(r.code).toBe(0);
    const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { toolCallFormat: string; messages: Array<{ role: string; content: string }> });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.toolCallFormat).toBe("cwm");
    expect(rows[0]!.messages[2]!.content).toMatch(/<tool: bash>\nls\n<\/tool>/);
  });

  it("parquet: the Hugging Face layout, read back with hyparquet", async () => {
    const out = path.join(tmp, "hf");
    const r = await cli(["export", RUN, "--format", "parquet", "--output", out]);
    expect(r.code, r.stderr).toBe(0);
    const file = path.join(out, "data", "train-00000-of-00001.parquet");
    const rows = (await parquetReadObjects({ file: new Uint8Array(fs.readFileSync(file)).buffer })) as Array<Record<string, unknown>>;
    expect(rows.map((x) => x.id)).toEqual(["newcomer/ex__a-1/0", "newcomer/ex__a-1/1", "newcomer/ex__b-1/0"]);
    expect(rows[0]).toMatchObject({ run_id: "newcomer", task_id: "ex__a-1", sample: 0, resolved: true, reward: 0, end_reason: "final_answer" });
    const msgs = rows[2]!.messages as Array<{ role: string; tool_call_id: string | null; tool_calls: string | null }>;
    expect(msgs.map((m) => m.role)).toEqual(["system", "user", "assistant", "tool", "assistant"]);
    expect(JSON.parse(msgs[2]!.tool_calls!)[0].id).toBe("call_wire_1");
    expect(JSON.parse(rows[0]!.tools as string)[0].function.name).toBe("bash");
    expect(fs.readFileSync(path.join(out, "README.md"), "utf8")).toMatch(/configs:\n {2}- config_name: default\n {4}data_files:\n {6}- split: train\n {8}path: data\/train-\*/);
    const again = await cli(["export", RUN, "--format", "parquet", "--output", out]);
    expect(again.code).not.toBe(0); // nothing already written is overwritten
    expect(again.stderr).toMatch(/already exists and is not empty/);
  });

  it("verl and skyrl: the run's tasks as RL prompt sets, read back with hyparquet", async () => {
    const verl = path.join(tmp, "verl.parquet");
    const v = await cli(["export", RUN, "--format", "verl", "--output", verl]);
    expect(v.code, v.stderr).toBe(0);
    const vr = (await parquetReadObjects({ file: new Uint8Array(fs.readFileSync(verl)).buffer })) as Array<Record<string, any>>;
    expect(vr).toHaveLength(3);
    expect(Object.keys(vr[0]!).sort()).toEqual(["ability", "data_source", "extra_info", "prompt", "reward_model"]);
    expect(vr[0]!.data_source).toBe("forager/issue-fix");
    expect(vr[0]!.prompt.map((m: { role: string }) => m.role)).toEqual(["system", "user"]);
    expect(vr[0]!.prompt[1].content).toContain("fix ex__a-1");
    expect(vr[0]!.reward_model.style).toBe("rule");
    expect(JSON.parse(vr[0]!.reward_model.ground_truth)).toMatchObject({ instance_id: "ex__a-1", repo: "example/fake", FAIL_TO_PASS: [], PASS_TO_PASS: [] });
    expect(vr[2]!.extra_info).toMatchObject({ split: "train", index: 2n, task_id: "ex__c-1" });
    const sky = path.join(tmp, "skyrl");
    const s = await cli(["export", RUN, "--format", "skyrl", "--output", sky]);
    expect(s.code, s.stderr).toBe(0);
    const sr = (await parquetReadObjects({ file: new Uint8Array(fs.readFileSync(path.join(sky, "data", "train-00000-of-00001.parquet"))).buffer })) as Array<Record<string, any>>;
    expect(Object.keys(sr[0]!).sort()).toEqual(["data_source", "env_class", "extra_info", "prompt", "reward_spec"]);
    expect(sr[1]).toMatchObject({ env_class: "forager", reward_spec: { method: "rule" } });
    const noOut = await cli(["export", RUN, "--format", "verl"]);
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toMatch(/--format verl writes parquet: give --output/);
  });
});

describe("7. eval as harness users expect (no engine needed)", () => {
  it("the harness's flag spellings; a rerun skips finished instances, --redo evaluates them again; the report where the harness puts it", async () => {
    const dir = path.join(tmp, "harness");
    fs.mkdirSync(dir);
    const row = JSON.stringify({ instance_id: "sympy__sympy-7", repo: "sympy/sympy", base_commit: "e7fd69d051eaa67cb17f172a39b57253e9cb831a", patch: "", test_patch: "", problem_statement: "p", FAIL_TO_PASS: "[]", PASS_TO_PASS: "[]", version: "1.7" });
    fs.writeFileSync(path.join(dir, "ds.jsonl"), row + "\n");
    // empty predictions are graded without running anything (harness semantics): no engine needed
    const args = ["eval", "--dataset_name", "ds.jsonl", "--predictions_path", "empty", "--run_id", "h1", "--max_workers", "1", "--instance_ids", "sympy__sympy-7"];
    const first = await cli(args, { cwd: dir });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/run h1 \(model empty\): 1 evaluated, 0 skipped/);
    expect(first.stdout).toContain("report (where the harness writes it): empty.h1.json");
    expect(JSON.parse(fs.readFileSync(path.join(dir, "empty.h1.json"), "utf8")).empty_patch_ids).toEqual(["sympy__sympy-7"]);
    const again = await cli(args, { cwd: dir });
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/0 evaluated, 1 finished before \(kept; --redo evaluates them again\)/);
    expect(again.stderr).not.toMatch(/\[1\/1\]/);
    const redo = await cli(["eval", "--dataset", "ds.jsonl", "--predictions", "empty", "--run-id", "h1", "--redo"], { cwd: dir });
    expect(redo.stdout).toMatch(/run h1 \(model empty\): 1 evaluated, 0 skipped/);
    expect(redo.stdout).not.toMatch(/report \(where the harness/); // forager's own spellings: the report stays under the log root
  });

  it("a hub dataset name gets the command that downloads it", async () => {
    const r = await cli(["eval", "--dataset_name", "princeton-nlp/SWE-bench_Verified", "--predictions_path", "gold"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/huggingface-cli download princeton-nlp\/SWE-bench_Verified --repo-type dataset --local-dir SWE-bench_Verified/);
  });
});

describe("8. run accounting in status and the view", () => {
  it("status: tokens, end reasons, the per-repository table", async () => {
    const r = await cli(["status", RUN]);
    expect(r.stdout).toMatch(/tokens: prompt [\d,]+ · completion [\d,]+ · [\d,]+ per resolved trajectory/);
    expect(r.stdout).toMatch(/end reasons: final_answer 3/);
    expect(r.stdout).toMatch(/repository\s+tasks\s+done\s+trajectories\s+resolved\s+failed\s+pass@1/);
    expect(r.stdout).toMatch(/example\/fake\s+1\s+1\s+2\s+1\s+0\s+50\.0%/);
    expect(r.stdout).toMatch(/example\/other\s+2\s+2\s+1\s+0\s+3\s+0\.0%/);
    const j = await cli(["status", RUN, "--json"]);
    const parsed = JSON.parse(j.stdout) as { tasksDone: string; manifest: { accounting: { tasksScored: number; endReasons: Record<string, number> } } };
    expect(parsed.tasksDone).toBe("3/3");
    expect(parsed.manifest.accounting).toMatchObject({ tasksScored: 2, endReasons: { final_answer: 3 } });
  });

  it("the view serves the same accounting", async () => {
    const { spawn } = await import("node:child_process");
    const child = spawn(BIN, ["view", RUN, "--port", "0"], { env: ENV });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /http:\/\/127\.0\.0\.1:\d+/.exec(out);
          if (m) resolve(m[0]);
        });
        child.once("exit", (c) => reject(new Error(`view exited ${c}: ${out}`)));
      });
      const list = (await (await fetch(`${url}/api/sources`)).json()) as Array<{ id: string; tasksDone: number; metrics: Record<string, number> }>;
      expect(list[0]).toMatchObject({ tasksDone: 3, metrics: { "pass@1": 0.25, "pass@2": 0.5 } });
      const o = (await (await fetch(`${url}/api/sources/${list[0]!.id}`)).json()) as { accounting: { repos: Array<{ repo: string; failed: number }> } };
      expect(o.accounting.repos).toEqual([expect.objectContaining({ repo: "example/fake", failed: 0 }), expect.objectContaining({ repo: "example/other", failed: 3 })]);
    } finally {
      child.kill("SIGTERM");
    }
  });
});

describe("9. help, defaults, exit codes, environment, state, completion", () => {
  it("every command's --help has examples; the main help documents exit codes and FORAGER_* variables", { timeout: 180_000 }, async () => {
    const main = await cli(["--help"]);
    expect(main.code).toBe(0);
    expect(main.stdout).toMatch(/Exit codes:\n {2}0 .*\n {2}1 .*\n {2}2 .*\n {2}3 .*\n {2}130 /);
    for (const v of ["FORAGER_STATE_DIR", "FORAGER_LOG_LEVEL", "FORAGER_REPOS", "FORAGER_IMAGES", "FORAGER_API_KEY"]) expect(main.stdout).toContain(v);
    // every command of the tree has examples (in process: the tree itself), and a sample of them prints them (as a process)
    const program = buildProgram();
    const paths = [...commandTable(program).keys()];
    expect(paths).toEqual(expect.arrayContaining(["doctor", "forage", "export", "eval", "show", "tasks mutate", "images infer", "completion"]));
    expect(paths.filter((p) => !EXAMPLES[p]?.length)).toEqual([]);
    const sample = [["forage"], ["export"], ["eval"], ["show"], ["tasks", "mutate"], ["completion"]];
    const helps = await Promise.all(sample.map((c) => cli([...c, "--help"])));
    sample.forEach((c, i) => {
      expect(helps[i]!.code, c.join(" ")).toBe(0);
      expect(helps[i]!.stdout, c.join(" ")).toMatch(/\nExamples:\n {2}(forager|source) /);
    });
    const forage = await cli(["forage", "--help"]);
    expect(forage.stdout).toMatch(/--max-requests <n>.*\(default: 64\)/s);
    expect(forage.stdout).toMatch(/--config <json\|file\|preset>.*cwm-eval,\s+quick,\s+swerl-similarity/s);
  });

  it("forager's state lives in one fixed place, whatever the working directory", async () => {
    const home = path.join(tmp, "home");
    fs.mkdirSync(home);
    const env = { ...ENV, HOME: home } as NodeJS.ProcessEnv;
    delete env.FORAGER_STATE_DIR;
    delete env.XDG_STATE_HOME;
    const r = await cli(["doctor"], { env, cwd: tmp });
    expect(r.stdout).toMatch(new RegExp(`state dir\\s+${path.join(home, ".local", "state", "forager").replace(/[.+]/g, "\\$&")}: image index`));
    const x = await cli(["doctor"], { env: { ...env, XDG_STATE_HOME: path.join(tmp, "xdg") }, cwd: tmp });
    expect(x.stdout).toContain(`${path.join(tmp, "xdg", "forager")}: image index`);
  });

  it("--commit defaults to the clone's HEAD; a URL needs it", async () => {
    const repo = path.join(tmp, "clone");
    fs.mkdirSync(repo);
    const git = (...a: string[]) => promisify(execFile)("git", ["-C", repo, ...a], { env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@l", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@l" } });
    await git("init", "-q");
    fs.writeFileSync(path.join(repo, "a.py"), "x = 1\n");
    await git("add", "-A");
    await git("commit", "-qm", "one");
    const head = (await git("rev-parse", "HEAD")).stdout.trim();
    const out = path.join(tmp, "mutate-out.jsonl");
    fs.writeFileSync(out, '{"id":"t1"}\n');
    const r = await cli(["tasks", "mutate", "--repo", repo, "--out", out]);
    expect(r.stderr).toContain(`commit: ${head} (HEAD of ${repo})`);
    expect(r.code).toBe(2); // then refused: --out holds tasks already
    const url = await cli(["tasks", "mutate", "--repo", "https://example.invalid/x.git", "--out", path.join(tmp, "u.jsonl")]);
    expect(url.code).toBe(2);
    expect(url.stderr).toMatch(/--commit is needed with a repository URL/);
  });

  it("completion: bash completes commands and options", async () => {
    const script = (await cli(["completion", "bash"])).stdout;
    const file = path.join(tmp, "completion.bash");
    fs.writeFileSync(file, script);
    const complete = async (...words: string[]) =>
      (await promisify(execFile)("bash", ["-c", `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _forager; printf '%s\\n' "\${COMPREPLY[@]}"`], { cwd: tmp })).stdout.split("\n");
    expect(await complete("forager", "for")).toContain("forage");
    expect(await complete("forager", "export", "--fo")).toEqual(expect.arrayContaining(["--format"]));
    expect(await complete("forager", "tasks", "mu")).toContain("mutate");
  });
});

describe("10. the reward is explained where it is printed", () => {
  it("show prints the scale beside the reward", async () => {
    const r = await cli(["show", SINGLE]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/evaluation: pass \(resolved\) · reward 0 \(scale: 0 resolved, −1 not resolved, −1\.5 forged\)/);
  });
});
