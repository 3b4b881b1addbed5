/**
 * The CLI end to end: a human `forager debug` session driven through a pseudo-terminal
 * (util-linux `script`), then `forager show` and `forager replay` of the recorded trajectory.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { readTrajectories } from "../agent/trajectory";
import { tinyTask, type TinyTask } from "./helpers/tasks";

const ROOT = path.resolve(import.meta.dirname, "..");
const BIN = path.join(ROOT, "bin", "forager");
let tiny: TinyTask;
let dir: string;
let tasksFile: string;

beforeAll(async () => {
  tiny = await tinyTask();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-cli-"));
  tasksFile = path.join(dir, "tasks.jsonl");
  fs.writeFileSync(tasksFile, JSON.stringify(tiny.task) + "\n");
});

/** Drive `cmd` in a pty: send each line after the prompt `> ` shows up; resolve with all output. */
function drive(cmd: string, lines: string[], timeoutMs = 60_000): Promise<{ out: string; code: number | null }> {
  const hasScript = spawnSync("script", ["--version"]).status === 0;
  const child = hasScript
    ? spawn("script", ["-qfec", cmd, "/dev/null"], { cwd: ROOT, env: { ...process.env, FORAGER_LOG_LEVEL: "error", COLUMNS: "200" } })
    : spawn("bash", ["-c", cmd], { cwd: ROOT, env: { ...process.env, FORAGER_LOG_LEVEL: "error" } });
  let out = "";
  let sent = 0;
  let prompts = 0;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`timed out; output so far:\n${out}`));
    }, timeoutMs);
    const onData = (b: Buffer) => {
      out += b.toString("utf8");
      const n = (out.match(/\] > /g) ?? []).length + (out.match(/\.\.\. /g) ?? []).length;
      while (prompts < n && sent < lines.length) {
        prompts++;
        child.stdin.write(lines[sent++] + "\n");
      }
      if (prompts < n) prompts = n;
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ out, code });
    });
  });
}

describe("forager CLI (debug, show, replay)", () => {
  it("a human session through a pty: observations with budget, submit, final answer; then show and replay", async () => {
    const out = path.join(dir, "human.jsonl");
    const lines = [
      "echo hello-human",
      ":raw",
      "no tool call here",
      ":end",
      ":edit calc.py",
      '    """Return a + b."""',
      "    return a - b",
      "=======",
      '    """Return a + b."""',
      "    return a + b",
      ":end",
      "git diff > fix.patch",
      ":submit fix.patch",
      ":answer ## Summary\\nadd fixed",
    ];
    const r = await drive(`${BIN} debug --task ${tiny.task.id} --tasks ${tasksFile} --image ${tiny.image} --out ${out}`, lines);
    const text = r.out.replace(/\r/g, "");
    expect(text).toContain("── tool: bash ──\n<output>\nhello-human\n</output>\n\n<budget>\n* Remaining turns: 127\n* Remaining tokens:");
    expect(text).toContain("── user ──\nFormatError: Expected exactly one thinking end token, got 0");
    expect(text).toMatch(/evaluation: (pass|fail|env_error|patch_apply_failed)/);
    expect(text).toContain("File calc.py has been successfully updated at line 5");
    expect(text).toContain("<submission>\ndiff --git a/calc.py b/calc.py");
    expect(text).toContain("end: final_answer");
    expect(r.code).toBe(0);
    const { trajectories } = readTrajectories(out);
    expect(trajectories).toHaveLength(1);
    const t = trajectories[0]!;
    expect(t.policy.kind).toBe("human");
    expect(t.turns.map((x) => x.toolName ?? (x.finalAnswer ? "answer" : "error"))).toEqual(["bash", "error", "edit", "bash", "submit", "answer"]);
    expect(t.submittedPatch).toContain("+    return a + b");

    const show = spawnSync(BIN, ["show", out], { cwd: ROOT, encoding: "utf8" });
    expect(show.status).toBe(0);
    expect(show.stdout).toContain("▶ bash: echo hello-human");
    expect(show.stdout).toContain("end: final_answer");

    const replay = spawnSync(BIN, ["replay", out, "--tasks", tasksFile], { cwd: ROOT, encoding: "utf8", env: { ...process.env, FORAGER_LOG_LEVEL: "error" } });
    expect(replay.stdout).toContain("replay matches the recording");
    expect(replay.stdout).toMatch(/turn 1 \(bash\): same/);
    expect(replay.status).toBe(0);
  });

  it("steps through the oracle's episode: accept, take over one turn, then continue", async () => {
    const out = path.join(dir, "stepped.jsonl");
    // 1st proposal accepted; 2nd replaced by our own bash command; then run the rest unattended.
    const lines = ["", ":take", "echo taken-over", ":continue"];
    const r = await drive(`${BIN} debug --step oracle --task ${tiny.task.id} --tasks ${tasksFile} --image ${tiny.image} --out ${out}`, lines);
    const text = r.out.replace(/\r/g, "");
    expect(text).toContain("── proposed action, turn 1 (oracle");
    expect(text).toContain("── proposed action, turn 2 (oracle");
    expect(text).toContain("<output>\ntaken-over\n</output>");
    expect(text).not.toContain("── proposed action, turn 4");
    expect(text).toContain("end: final_answer");
    expect(r.code).toBe(0);
    const t = readTrajectories(out).trajectories[0]!;
    expect(t.policy.kind).toBe("oracle+stepped");
    expect(t.turns[1]!.action?.argument ?? JSON.stringify(t.turns[1])).toContain("echo taken-over");
    expect(t.submittedPatch).toBeTruthy();
  });
});
