/**
 * The episode as an environment (agent/env.ts) with no engine: a scripted policy drives whole
 * episodes on the in-memory runtime (sandbox/memory.ts MemorySandbox) through runEpisode, and the
 * environment is stepped directly (init / observe / step / close), as `forager serve`'s step API
 * does. Runs in `npm run test:unit`.
 */
import { describe, expect, it } from "vitest";
import { agentConfig } from "../agent/config";
import { EpisodeEnv } from "../agent/env";
import { runEpisode } from "../agent/episode";
import type { Policy, PolicyContext, PolicyStep } from "../agent/policy";
import { MemorySandbox } from "../sandbox/memory";
import { TaskSchema, type Task } from "../tasks/schema";

const CALC = "def add(a, b):\n    return a - b\n";
const FIX = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";

const task: Task = TaskSchema.parse({
  id: "example__memory-1",
  kind: "issue-fix",
  repo: "example/memory",
  commit: "0000000",
  problemStatement: "add() subtracts",
  image: { repo: "example/memory", commit: "0000000", testCommand: "pytest -rA", logParser: "pytest" },
  referencePatch: FIX,
  testPatch: "",
  failToPass: ["test_calc.py::test_add"],
  passToPass: [],
});

/** Replies with the given texts in order (think mode: reasoning, then the action). */
class ScriptedPolicy implements Policy {
  readonly kind = "scripted";
  readonly seen: PolicyContext[] = [];
  private i = 0;
  constructor(private readonly texts: string[]) {}
  async next(ctx: PolicyContext): Promise<PolicyStep> {
    this.seen.push(ctx);
    const text = this.texts[this.i++];
    if (text === undefined) throw new Error("script exhausted");
    return { text, latencyMs: 1 };
  }
}

const act = (tool: string, arg: string) => `Working on it.\n</think>\n<tool: ${tool}>\n${arg}\n</tool>`;

function sandbox(): MemorySandbox {
  return new MemorySandbox("memory-1", {
    files: { "/testbed/calc.py": CALC, "/tmp/.keep": "" },
    shell: (cmd, rt) => {
      if (cmd === "cat calc.py") return { output: rt.text("/testbed/calc.py") ?? "" };
      if (cmd.startsWith("python -m pytest")) return { output: rt.text("/testbed/calc.py")?.includes("a + b") ? "1 passed" : "1 failed", exitCode: rt.text("/testbed/calc.py")?.includes("a + b") ? 0 : 1 };
      return { output: "", exitCode: 0 };
    },
  });
}

describe("an episode on the in-memory runtime (no engine)", () => {
  it("a scripted policy reads, edits, submits and answers: the trajectory, the evaluation, the reward", async () => {
    const sb = sandbox();
    const policy = new ScriptedPolicy([
      act("bash", "cat calc.py"),
      act("edit", "calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"),
      act("bash", "python -m pytest -q"),
      act("create", `/tmp/fix.patch\n${FIX}`),
      act("submit", "/tmp/fix.patch"),
      "Done.\n</think>\nFixed add().",
    ]);
    const patches: string[] = [];
    const t = await runEpisode({
      task,
      policy,
      image: "memory:image",
      sandboxFactory: async () => sb,
      evaluator: async (_task, patch) => {
        patches.push(patch);
        return { outcome: "pass", resolved: true };
      },
    });
    expect(t.endReason, `${t.endDetail} ${JSON.stringify(t.turns.map((x) => [x.toolName, x.errorType, x.toolOutput?.slice(0, 200)]))}`).toBe("final_answer");
    expect(t.turns.map((x) => x.toolName ?? (x.finalAnswer ? "answer" : "?"))).toEqual(["bash", "edit", "bash", "create", "submit", "answer"]);
    expect(t.turns[0]!.observation).toContain("return a - b");
    expect(sb.text("/testbed/calc.py")).toBe("def add(a, b):\n    return a + b\n");
    expect(t.turns[2]!.observation).toContain("1 passed");
    expect(t.submittedPatch?.trim()).toBe(FIX.trim());
    expect(patches).toHaveLength(1);
    expect(t.evaluation).toMatchObject({ outcome: "pass", resolved: true });
    expect(t.reward).toBe(0); // execution reward, scale 1: −1 + 1
    expect(sb.destroyed).toBe(true);
    // The policy saw a growing prompt: each turn's starts with the previous one.
    for (let i = 1; i < policy.seen.length; i++) expect(policy.seen[i]!.prompt.startsWith(policy.seen[i - 1]!.prompt)).toBe(true);
  });

  it("stepped directly (as the step API does): format errors come back as user messages; max_turns ends it; close destroys the sandbox", async () => {
    const sb = sandbox();
    const config = agentConfig({ maxTurns: 3 });
    const env = await EpisodeEnv.open({ task, config, image: "memory:image", sandboxFactory: async () => sb });
    const first = env.observe()!;
    expect(first.turn).toBe(0);
    expect(first.prompt).toContain("add() subtracts");
    const bad = await env.step({ text: "no tool call at all", latencyMs: 0 });
    expect(bad.done).toBe(false);
    expect(bad.turn.formatError).toBeDefined();
    expect(bad.turn.observationRole).toBe("user");
    const ok = await env.step({ text: act("bash", "cat calc.py"), latencyMs: 0 });
    expect(ok.turn.observation).toContain("return a - b");
    expect(env.observe()!.turn).toBe(2);
    const last = await env.step({ text: act("bash", "cat calc.py"), latencyMs: 0 });
    expect(last.done).toBe(true);
    expect(env.outcome()).toMatchObject({ endReason: "max_turns" });
    expect(env.observe()).toBeUndefined();
    await expect(env.step({ text: "x", latencyMs: 0 })).rejects.toThrow(/over/);
    await env.close();
    expect(sb.destroyed).toBe(true);
  });

  it("a policy that fails ends the episode with policy_error; a sandbox that cannot start is an env_error, retried", async () => {
    const failing: Policy = { kind: "failing", next: async () => Promise.reject(new Error("model down")) };
    const t = await runEpisode({ task, policy: failing, image: "memory:image", sandboxFactory: async () => sandbox() });
    expect(t.endReason).toBe("policy_error");
    expect(t.endDetail).toMatch(/model down/);
    let starts = 0;
    const t2 = await runEpisode({
      task,
      policy: new ScriptedPolicy([]),
      image: "memory:image",
      config: { maxEnvRetries: 2 },
      sandboxFactory: async () => {
        starts++;
        throw new Error("engine gone");
      },
    });
    expect(t2.endReason).toBe("env_error");
    expect(starts).toBe(3);
    expect(t2.envErrors).toHaveLength(3);
  });
});
