/**
 * The oracle policy solves a created task end to end through the real tools, and the hidden
 * tests (run by a test evaluator in a fresh sandbox) pass; the replay policy reproduces it.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { runEpisode } from "../agent/episode";
import { OraclePolicy, parseReferencePatch } from "../agent/oracle";
import { ReplayPolicy } from "../agent/policy";
import { toChatRecord } from "../agent/trajectory";
import { sandboxFactory } from "./helpers/sandbox";
import { mutateTask, tinyEvaluator, tinyTask, type TinyTask } from "./helpers/tasks";

const newSandbox = sandboxFactory();
let tiny: TinyTask;
beforeAll(async () => {
  tiny = await tinyTask();
});

describe("oracle policy", () => {
  it("parses a reference patch into edits and new files", () => {
    const files = parseReferencePatch(tiny.task.referencePatch);
    expect(files.map((f) => [f.path, f.kind])).toEqual([
      ["NOTES.md", "create"],
      ["calc.py", "modify"],
    ]);
    expect(files[1]!.hunks).toHaveLength(2);
    expect(files[0]!.content).toBe("add and sub fixed\n");
  });

  it("solves the task through the real tools; the hidden tests pass; replay reproduces it", async () => {
    const evaluator = tinyEvaluator(tiny.image);
    const t = await runEpisode({ task: tiny.task, image: tiny.image, policy: new OraclePolicy(), evaluator, sandboxFactory: (c) => newSandbox(c) });
    expect(t.endReason).toBe("final_answer");
    expect(t.turns.map((x) => x.toolName ?? "answer")).toEqual(["bash", "bash", "create", "edit", "edit", "bash", "submit", "answer"]);
    expect(t.turns.every((x) => x.formatError === undefined)).toBe(true);
    expect(t.turns[6]!.observation).toContain("The following patch content is marked as your final submission:\n\n<submission>\ndiff --git");
    expect(t.turns[7]!.text).toContain("## Issue Summary");
    expect(t.evaluation).toMatchObject({ outcome: "pass", resolved: true });
    expect(evaluator.sameAsReference).toEqual([true]);
    expect(t.reward).toBe(0);
    expect(t.submittedPatch).toContain("+    return a + b");
    const chat = toChatRecord(t);
    expect(chat.messages[2]!.content.startsWith("<think>\n")).toBe(true);
    expect(chat.messages.filter((m) => m.role === "tool")).toHaveLength(7);

    // Replay in a fresh sandbox: same observations (tool durations aside).
    const r = await runEpisode({ task: tiny.task, image: tiny.image, policy: new ReplayPolicy(t), sandboxFactory: (c) => newSandbox(c) });
    expect(r.endReason).toBe("final_answer");
    expect(r.turns.map((x) => x.toolOutput)).toEqual(t.turns.map((x) => x.toolOutput));
    expect(r.submittedPatch).toBe(t.submittedPatch);
  });

  it("solves a mutate-fix task (start patch applied, git diff shows only the fix)", async () => {
    const task = mutateTask(tiny.task);
    const evaluator = tinyEvaluator(tiny.image);
    const t = await runEpisode({ task, image: tiny.image, policy: new OraclePolicy(), evaluator, sandboxFactory: (c) => newSandbox(c) });
    expect(t.endDetail ?? t.endReason).toBe("final_answer");
    expect(t.turns[0]!.toolOutput).not.toContain(" M calc.py");
    expect(t.evaluation?.resolved).toBe(true);
    expect(evaluator.sameAsReference).toEqual([true]);
  });

  it("falls back to git apply when an edit cannot be expressed uniquely", async () => {
    // The first edit fails (its search text is not in the file): the oracle resets and applies the patch.
    const t = await runEpisode({
      task: tiny.task,
      image: tiny.image,
      policy: new FailingFirstEditOracle(),
      evaluator: tinyEvaluator(tiny.image),
      sandboxFactory: (c) => newSandbox(c),
    });
    expect(t.endReason).toBe("final_answer");
    expect(t.turns.some((x) => x.toolName === "bash" && x.toolOutput?.includes("applied"))).toBe(true);
    expect(t.evaluation?.resolved).toBe(true);
  });
});

/** An oracle whose first edit targets text that is not in the file (forces the fallback). */
class FailingFirstEditOracle extends OraclePolicy {
  private first = true;
  override async next(ctx: Parameters<OraclePolicy["next"]>[0]) {
    const step = await super.next(ctx);
    if (this.first && step.text.includes("<tool: edit>")) {
      this.first = false;
      return { ...step, text: step.text.replace("<<<<<<< SEARCH\n", "<<<<<<< SEARCH\nno such line\n") };
    }
    return step;
  }
}
