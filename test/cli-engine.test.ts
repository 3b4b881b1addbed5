/**
 * A newcomer's first day (issue 26), the items that need real sandboxes: `forager forage` with
 * the oracle on the tiny created task as a child process, interrupted with SIGINT at several
 * instants (no container of the run outlives it; the message names what was saved and the
 * `forager resume` command), a finished run's summary.json accounting, `resume`'s first figures,
 * and `replay` taking the task from the run.
 */
import { spawn, execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerClient } from "../sandbox/docker";
import { RunAccountingSchema } from "../orchestrator/accounting";
import { tinyTask, type TinyTask } from "./helpers/tasks";

const BIN = path.resolve("bin/forager");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-cli-engine-"));
const ENV = { ...process.env, FORAGER_STATE_DIR: path.join(tmp, "state") } as NodeJS.ProcessEnv;
delete ENV.FORAGER_LOG_LEVEL;
let tiny: TinyTask;
let tasksFile: string;

beforeAll(async () => {
  tiny = await tinyTask();
  tasksFile = path.join(tmp, "tiny.jsonl");
  fs.writeFileSync(tasksFile, JSON.stringify(tiny.task) + "\n");
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const forageArgs = (out: string, runId: string, samples = 2) => ["forage", "--tasks", tasksFile, "--samples", String(samples), "--policy", "oracle", "--image", `${tiny.task.id}=${tiny.image}`, "--out", out, "--run-id", runId, "--concurrency", "2"];

async function containersOf(runId: string): Promise<number> {
  // every sandbox of a run carries forager.run=<runId>: episodes and evaluations
  return (await dockerClient().listContainers({ all: true, filters: { label: [`forager.run=${runId}`] } })).length;
}

/** Run the CLI; resolve with its output and exit code (never rejects). */
function cli(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return promisify(execFile)(BIN, args, { encoding: "utf8", env: ENV, timeout: 240_000 }).then(
    (r) => ({ stdout: r.stdout, stderr: r.stderr, code: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => ({ stdout: e.stdout, stderr: e.stderr, code: e.code }),
  );
}

describe("6. Ctrl-C: what was saved is said, and no container outlives the process", () => {
  // instants: at start-up, while sandboxes start, mid-episode or evaluation, near the end
  for (const delayMs of [700, 2500, 5000, 9000]) {
    it(`SIGINT after ${delayMs} ms`, async () => {
      const runId = `sigint-${delayMs}`;
      const out = path.join(tmp, runId);
      const child = spawn(BIN, forageArgs(out, runId), { env: ENV, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((r) => child.once("exit", (code, signal) => r(code ?? (signal === "SIGINT" ? -2 : null))));
      await new Promise((r) => setTimeout(r, delayMs));
      child.kill("SIGINT");
      const code = await exited;
      if (code === -2) {
        // killed by the signal before node had loaded even the entry point: nothing can have started
        expect(fs.existsSync(out)).toBe(false);
      } else if (code === 0) {
        // the run finished before the signal: nothing to interrupt
        expect(stdout).toMatch(/trajectories 2/);
      } else {
        expect(code, stderr).toBe(130);
        if (/before the command started|interrupted \(nothing was being saved\)/.test(stderr)) {
          expect(fs.existsSync(out)).toBe(false);
        } else if (fs.existsSync(path.join(out, "run.json"))) {
          expect(stderr).toMatch(new RegExp(`forager: interrupted: \\d+ of 2 trajectories saved in ${out.replace(/[.+]/g, "\\$&")}/shards`));
          expect(stderr).toContain(`continue with: forager resume ${out}`);
        } else {
          expect(stderr).toMatch(/interrupted before the run started: nothing saved/);
        }
      }
      expect(await containersOf(runId)).toBe(0);
    });
  }
});

describe("6. Ctrl-C while a sandbox of the run is up", () => {
  it("the message names the saved trajectories and the resume command; no container of the run remains", async () => {
    const runId = "sigint-sandbox";
    const out = path.join(tmp, runId);
    const child = spawn(BIN, forageArgs(out, runId), { env: ENV, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    let finished = false;
    void exited.then(() => (finished = true));
    // poll the engine until a sandbox of this run exists (an episode or an evaluation is under way)
    while (!finished && (await containersOf(runId)) === 0) await new Promise((r) => setTimeout(r, 200));
    expect(finished, "the run ended before any sandbox was seen").toBe(false);
    child.kill("SIGINT");
    const code = await exited;
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(new RegExp(`forager: interrupted: [0-2] of 2 trajectories saved in ${out.replace(/[.+]/g, "\\$&")}/shards`));
    expect(stderr).toContain(`continue with: forager resume ${out}`);
    expect(await containersOf(runId)).toBe(0);
  });
});

describe("8. a finished run: summary.json accounting, resume's figures; 1. replay from the run", () => {
  const runId = "acct";
  const out = path.join(tmp, runId);

  it("forage writes summary.json with the accounting; resume of a finished run reports no absurd rate", async () => {
    // 9: a named configuration for forage, as for run (configs/quick.json)
    const f = await cli([...forageArgs(out, runId), "--config", "quick"]);
    expect(f.code, f.stderr).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, "run.json"), "utf8")).agent).toMatchObject({ maxTurns: 24, contextTokens: 32768 });
    // (the harness evaluator grades the tiny task's hidden tests as it finds them; what matters here is the accounting)
    expect(f.stdout).toMatch(/pass@1 [\d.]+% · pass@2 [\d.]+% over 1\/1 tasks done/);
    expect(f.stdout).toMatch(/tokens: prompt [\d,]+ · completion [\d,]+/);
    expect(f.stdout).toMatch(/end reasons: final_answer 2/);
    expect(f.stdout).toMatch(/example\/tiny-calc\s+1\s+1\s+2\s+\d\s+0\s+[\d.]+%/);
    const summary = JSON.parse(fs.readFileSync(path.join(out, "summary.json"), "utf8")) as { accounting: unknown; turnsThisInvocation: number };
    const acct = RunAccountingSchema.parse(summary.accounting);
    expect(acct).toMatchObject({ tasks: 1, tasksDone: 1, tasksScored: 1, endReasons: { final_answer: 2 } });
    expect(acct.tokens.completion).toBeGreaterThan(0);
    const r = await cli(["resume", out]);
    expect(r.code, r.stderr).toBe(0);
    // the earlier invocation's turns are not this one's: 0 turns now, a rate of 0
    expect(r.stdout).toMatch(/ 0 turns in [\d.]+ s \(0\.0 turns\/s\), \d+ over the run/);
    for (const m of r.stderr.matchAll(/([\d.]+) turns\/s/g)) expect(Number(m[1])).toBe(0);
    expect(await containersOf(runId)).toBe(0);
  });

  it("replay RUN --task --sample takes the task from the run", async () => {
    const r = await cli(["replay", out, "--task", tiny.task.id, "--sample", "1"]);
    expect(r.stdout).toMatch(new RegExp(`replaying ${runId}/${tiny.task.id}/1 \\(\\d+ turns\\) of task ${tiny.task.id}`));
    expect(r.stdout).toContain("replay matches the recording");
    expect(r.code).toBe(0);
  });
});
