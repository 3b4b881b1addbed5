/**
 * Episodes against real Docker sandboxes and a scripted OpenAI-compatible server: format errors,
 * the turn limit, the context limit, command timeouts, server failures and deadlines, chat mode.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InferenceClient } from "../inference-client/client";
import { decode } from "../inference-client/tokenizer";
import { runEpisode } from "../agent/episode";
import { HttpPolicy } from "../agent/policy";
import { estimateToolResultTokens, wrapOutput } from "../agent/prompt";
import { sessionFailureMessage } from "../tools/bash";
import type { AgentConfigInput } from "../agent/config";
import { startScriptedServer, type ScriptStep, type ScriptedServer, type ScriptedServerOptions } from "./helpers/scripted-server";
import { sandboxFactory } from "./helpers/sandbox";
import { tinyTask, type TinyTask } from "./helpers/tasks";

const newSandbox = sandboxFactory();
let tiny: TinyTask;
const servers: ScriptedServer[] = [];
const clients: InferenceClient[] = [];

beforeAll(async () => {
  tiny = await tinyTask();
});
afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.allSettled(servers.map((s) => s.close()));
});

async function setup(server: ScriptedServerOptions, clientOpts: { retries?: number; deadline?: number } = {}) {
  const s = await startScriptedServer(server);
  servers.push(s);
  const client = new InferenceClient({
    endpoints: [{ url: s.url, model: "scripted" }],
    retries: clientOpts.retries ?? 2,
    backoffBaseSeconds: 0.01,
    backoffMaxSeconds: 0.05,
    requestDeadlineSeconds: clientOpts.deadline ?? 30,
  });
  clients.push(client);
  return { server: s, policy: new HttpPolicy(client) };
}

const bash = (cmd: string) => `I will run a command.\n</think>\n<tool: bash>\n${cmd}\n</tool>`;

function episode(policy: HttpPolicy, config: AgentConfigInput) {
  return runEpisode({ task: tiny.task, image: tiny.image, policy, config, sandboxFactory: (c) => newSandbox(c) });
}

describe("agent episode (scripted server)", () => {
  it("sends every kind of format error back as a user message", async () => {
    const cases: Array<[string, string]> = [
      ["no reasoning end <tool: bash>\nls\n</tool>", "FormatError: Expected exactly one thinking end token, got 0"],
      ["a</think>b</think>\n<tool: bash>\nls\n</tool>", "FormatError: Expected exactly one thinking end token, got 2"],
      ["r</think>\nJust text.", "FormatError: No tool calls found"],
      [
        "r</think>\n<tool: bash>\nls\n</tool>\n<tool: bash>\npwd\n</tool>",
        "FormatError: Expected one tool call, but found 2: bash, bash. Ensure only one <tool:...></tool> block is present in the response.",
      ],
      ["r</think>\n<tool: bash>\nls\n</tool></tool>", "FormatError: Mismatch in tool tag counts: found 1 tool calls via regex, but counted 1 opening tags and 2 closing tags."],
      ["r</think>\n<tool: bash>\n  \n</tool>", "FormatError: Tool 'bash' requires non-empty arguments, but received empty or whitespace-only input."],
      ["r</think>\n<tool: python>\nprint(1)\n</tool>", "NoSuchToolError: Tool 'python' not found."],
    ];
    const { server, policy } = await setup({ script: [...cases.map((c) => c[0]), bash("echo done")] });
    const t = await episode(policy, { maxTurns: cases.length + 2 });
    expect(t.endReason).toBe("max_turns");
    cases.forEach(([, feedback], i) => {
      const turn = t.turns[i]!;
      expect(turn.observationRole).toBe("user");
      expect(turn.observation).toBe(feedback);
      expect(turn.action).toBeUndefined();
      // The next prompt carries it as a user message, with no output/budget wrapper.
      // Token-exact prompts go as ids (agent/token-ledger.ts); the observation part decodes exactly.
      const sent = server.requests.filter((r) => r.path === "/v1/completions")[i + 1]!.body.prompt as string | number[];
      const next = typeof sent === "string" ? sent : decode(sent);
      expect(next).toContain(`<|start_header_id|>user<|end_header_id|>\n\n${feedback}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<think>\n`);
    });
    const ok = t.turns[cases.length]!;
    expect(ok.observationRole).toBe("tool");
    expect(ok.observation).toMatch(/^<output>\ndone\n<\/output>\n\n<budget>\n\* Remaining turns: 1\n\* Remaining tokens: \d+\n<\/budget>$/);
  });

  it("stops at the turn limit before the action runs (maxTurns 5)", async () => {
    const { server, policy } = await setup({ handler: () => bash("echo turn") });
    const t = await episode(policy, { maxTurns: 5 });
    expect(t.endReason).toBe("max_turns");
    expect(t.turns).toHaveLength(5);
    expect(t.turns.slice(0, 4).map((x) => x.remainingTurns)).toEqual([4, 3, 2, 1]);
    expect(t.turns[4]!.observation).toBeUndefined();
    expect(t.turns[4]!.toolName).toBeUndefined();
    expect(server.counts.completions).toBe(5);
    // Budget: context − used − estimate of this result, as the release computes it.
    const first = t.turns[0]!;
    expect(first.remainingTokens).toBe(131072 - first.usedTokens - estimateToolResultTokens(wrapOutput("turn"), "bash", 32768));
    expect(t.reward).toBe(-1);
  });

  it("runs the default 128 turns against a fast server", async () => {
    const { server, policy } = await setup({ handler: () => bash("true") });
    const t = await episode(policy, {});
    expect(t.endReason).toBe("max_turns");
    expect(t.turns).toHaveLength(128);
    expect(t.turns.filter((x) => x.toolName === "bash")).toHaveLength(127);
    expect(t.turns[126]!.remainingTurns).toBe(1);
    expect(server.counts.completions).toBe(128);
  });

  it("ends when the context is exceeded", async () => {
    const { policy } = await setup({ handler: () => bash("seq 1 400") });
    const t = await episode(policy, { contextTokens: 4000, maxTurns: 50 });
    expect(t.endReason).toBe("context_exceeded");
    expect(t.turns.length).toBeLessThan(10);
    expect(t.endDetail).toMatch(/Context size exceeded/);
  });

  it("tells the model about a command timeout and starts a fresh session", async () => {
    const { policy } = await setup({ script: [bash("cd /tmp && sleep 5"), bash("pwd")] });
    const t = await episode(policy, { commandTimeoutSeconds: 1, maxTurns: 3 });
    expect(t.turns[0]!.errorType).toBe("timeout");
    expect(t.turns[0]!.observation).toContain(`<output>\n${sessionFailureMessage("timeout")}\n</output>`);
    expect(t.turns[1]!.toolOutput).toBe("/testbed");
  });

  it("retries server 500s and goes on", async () => {
    const { server, policy } = await setup({ script: [{ status: 500, body: "boom" }, { status: 503 }, bash("echo after-retries")] });
    const t = await episode(policy, { maxTurns: 2 });
    expect(t.turns[0]!.toolOutput).toBe("after-retries");
    expect(server.counts.completions).toBeGreaterThanOrEqual(4);
  });

  it("ends with policy_error when the server stays down (no hang)", async () => {
    const { policy } = await setup({ handler: () => ({ status: 500, body: "down" }) });
    const t0 = Date.now();
    const t = await episode(policy, { maxTurns: 5 });
    expect(t.endReason).toBe("policy_error");
    expect(t.endDetail).toMatch(/500/);
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it("ends with policy_error when a response misses its deadline", async () => {
    const { policy } = await setup({ script: [{ text: bash("true"), delayMs: 5000 } as ScriptStep] });
    const t0 = Date.now();
    const t = await episode(policy, { maxTurns: 5, modelDeadlineSeconds: 0.5 });
    expect(t.endReason).toBe("policy_error");
    expect(t.endDetail).toMatch(/deadline/i);
    expect(Date.now() - t0).toBeLessThan(4500);
  });

  it("maps chat-mode tool calls to the same tools", async () => {
    const { server, policy } = await setup({
      script: [
        { reasoningContent: "look", toolCalls: [{ name: "bash", arguments: { command: "echo from-chat" } }] },
        { text: "", toolCalls: [{ name: "bash", arguments: "{not json" }] },
        { text: "", toolCalls: [{ name: "bash", arguments: { command: "true" } }] },
      ],
    });
    const t = await episode(policy, { mode: "chat", maxTurns: 3 });
    expect(t.turns[0]!.toolOutput).toBe("from-chat");
    expect(t.turns[0]!.text).toBe("look</think>\n<tool: bash>\necho from-chat\n</tool>");
    expect(t.turns[1]!.formatError?.message).toMatch(/Invalid JSON arguments/);
    const chats = server.requests.filter((r) => r.path === "/v1/chat/completions");
    expect(chats[0]!.body.tools.map((x: any) => x.function.name)).toEqual(["bash", "edit", "create", "submit"]);
    const msgs = chats[1]!.body.messages as any[];
    expect(msgs[2].tool_calls[0].function.name).toBe("bash");
    expect(msgs[3]).toMatchObject({ role: "tool", tool_call_id: msgs[2].tool_calls[0].id });
    expect(msgs[3].content).toContain("from-chat");
  });
});
