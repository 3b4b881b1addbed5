/**
 * The CWM text format (rendered against the published strings of facebookresearch/cwm
 * swerl_tool.py / prompts.py / tokenizers.py), truncation, the trajectory record and its JSONL.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { agentConfig } from "../agent/config";
import {
  environmentPrompt,
  firstUserMessage,
  formatErrorMessage,
  issuePrompt,
  renderDialog,
  systemPrompt,
  toolResultMessage,
  truncateMessage,
} from "../agent/prompt";
import { readTrajectories, renderTrajectoryText, toChatRecord, writeTrajectory, type Trajectory } from "../agent/trajectory";
import { normalizeObservation } from "../agent/replay-compare";
import { countTokens } from "../inference-client/tokenizer";
import { toolProfile } from "../tools/registry";

// ---- The published texts, verbatim from the release (swerl_tool.py SYSTEM_UBUNTU filled as start() does).
const PUBLISHED_ENV = `You are working in a linux container. The container session is persistent but will restart when encountering errors or after a 120-second session timeout in each turn. You are also constrained by a 131072 total context window limit. You can interact with the container through the following tool interface for at most 128 turns. Here are the specifications:

<tool: bash>
[command(s)]
</tool>
Executes bash command(s) [command(s)] in the current session. [command(s)] can be any non-interactive bash command(s), either single or multi-line.

<tool: edit>
[path]
<<<<<<< SEARCH
[search_lines]
=======
[replacement_lines]
>>>>>>> REPLACE
</tool>
Replaces [search_lines] from [path] with [replacement_lines], where [path] must exist and [search_lines] must uniquely and exactly match one or more consecutive lines from the original file, including indentations and whitespaces.

<tool: create>
[path]
[content]
</tool>
Creates a new file at [path] with [content], where [path] must not exist, but its parent directory must exist.

<tool: submit>
[result]
</tool>
Marks [result] as your final submission. The meaning and format of [result] depends on the specific user request.

REQUIREMENTS:
* You cannot invoke more than one tool in each step.
* You must invoke exactly one tool in each step before any <tool: submit> call.
* After successful submission, provide a final response if the request is resolved, otherwise continue iterating. You cannot provide a final response before invoking <tool: submit>.`;

const PUBLISHED_SYSTEM = `You are a helpful AI assistant. You always reason before responding, using the following format:

<think>
your internal reasoning
</think>
your external response

# Environment

${PUBLISHED_ENV}`;

const PUBLISHED_USER_HEAD = `Solve the following issue by implementing the necessary code changes and submitting a patch file:

<issue_description>
Fix the bug.
</issue_description>

The [result] argument of <tool: submit> should be the path to a patch file that resolves the issue.`;
const PUBLISHED_USER_TAIL = `I've uploaded the corresponding code repository at /testbed and installed all the necessary dependencies. Now, the bash session has started, with the current working directory set to the repo root.`;

describe("CWM prompt format", () => {
  const cfg = agentConfig();
  const tools = toolProfile("cwm");

  it("fills the system prompt exactly as the release", () => {
    expect(environmentPrompt(tools, cfg)).toBe(PUBLISHED_ENV);
    expect(systemPrompt(environmentPrompt(tools, cfg), { think: true })).toBe(PUBLISHED_SYSTEM);
    expect(systemPrompt("X", { think: false })).toBe("You are a helpful AI assistant.\n\n# Environment\n\nX");
    const noPlugins = environmentPrompt(toolProfile("cwm-noplugins"), { ...cfg, commandTimeoutSeconds: 120.9 });
    expect(noPlugins).toContain("after a 120-second session timeout");
    expect(noPlugins).not.toContain("<tool: edit>");
  });

  it("fills the issue prompt", () => {
    const u = issuePrompt("Fix the bug.", "/testbed");
    expect(u.startsWith(PUBLISHED_USER_HEAD)).toBe(true);
    expect(u.endsWith(PUBLISHED_USER_TAIL)).toBe(true);
    expect(u).toContain("```markdown\n## Issue Summary\n\nBrief description");
  });

  it("renders a sample dialog string for string, token markers included", () => {
    const sys = systemPrompt(environmentPrompt(tools, cfg), { think: true });
    const user = issuePrompt("Fix the bug.", "/testbed");
    const action = "Look first.\n</think>\n<tool: bash>\nls\n</tool>";
    const obs = toolResultMessage("bash", "a.py\nb.py", { contextTokens: 131072, usedTokens: 1500, remainingTurns: 127, maxToolResultTokens: 32768 });
    const err = formatErrorMessage("FormatError", "No tool calls found", 32768);
    const text = renderDialog(
      [
        { role: "system", content: sys },
        { role: "user", content: user },
        { role: "assistant", content: "<think>\n" + action },
        obs.message,
        { role: "assistant", content: "<think>\nhmm</think>\nno call" },
        err,
      ],
      "<think>\n",
    );
    const expected =
      "<|begin_of_text|>" +
      `<|start_header_id|>system<|end_header_id|>\n\n${PUBLISHED_SYSTEM}<|eot_id|>` +
      `<|start_header_id|>user<|end_header_id|>\n\n${user}<|eot_id|>` +
      `<|start_header_id|>assistant<|end_header_id|>\n\n<think>\nLook first.\n</think>\n<tool: bash>\nls\n</tool><|eot_id|>` +
      `<|start_header_id|>tool: bash<|end_header_id|>\n\n<output>\na.py\nb.py\n</output>\n\n<budget>\n* Remaining turns: 127\n* Remaining tokens: ${obs.remainingTokens}\n</budget><|eot_id|>` +
      `<|start_header_id|>assistant<|end_header_id|>\n\n<think>\nhmm</think>\nno call<|eot_id|>` +
      `<|start_header_id|>user<|end_header_id|>\n\nFormatError: No tool calls found<|eot_id|>` +
      `<|start_header_id|>assistant<|end_header_id|>\n\n<think>\n`;
    expect(text).toBe(expected);
    // N = context − used − estimate of the result with the unformatted template (as the release).
    const estimate = countTokens(
      "<|start_header_id|>tool: bash<|end_header_id|>\n\n<output>\na.py\nb.py\n</output>\n\n<budget>\n* Remaining turns: {remaining_turns}\n* Remaining tokens: {remaining_tokens}\n</budget><|eot_id|>",
    );
    expect(obs.remainingTokens).toBe(131072 - 1500 - estimate);
  });

  it("cuts tool results from the right and the issue from the left, marked [...]", () => {
    const long = Array.from({ length: 5000 }, (_, i) => `line ${i}`).join("\n");
    const obs = toolResultMessage("bash", long, { contextTokens: 131072, usedTokens: 0, remainingTurns: 3, maxToolResultTokens: 500 });
    expect(obs.message.truncated).toBe(true);
    expect(obs.message.content.startsWith("<output>\nline 0\nline 1\n")).toBe(true);
    expect(obs.message.content.endsWith("[...]")).toBe(true);
    expect(countTokens(`<|start_header_id|>tool: bash<|end_header_id|>\n\n${obs.message.content}<|eot_id|>`)).toBeLessThanOrEqual(501);
    const first = firstUserMessage(long, "/testbed", 8192);
    expect(first.truncated).toBe(true);
    expect(first.content.startsWith("[...]")).toBe(true);
    expect(first.content.endsWith("set to the repo root.")).toBe(true);
    const short = truncateMessage({ role: "user", content: "short" }, 8192, "left");
    expect(short.content).toBe("short");
  });

  it("has the CWM defaults", () => {
    expect(cfg).toMatchObject({
      contextTokens: 131072,
      maxTurns: 128,
      maxActionTokens: 65536,
      maxToolResultTokens: 32768,
      maxPromptTokens: 8192,
      commandTimeoutSeconds: 120,
      sandboxLifetimeSeconds: 2400,
      evalSandboxLifetimeSeconds: 7200,
      evalTimeoutSeconds: 600,
      temperature: 1,
      topP: 0.95,
      think: true,
      toolProfile: "cwm",
      maxEnvRetries: 3,
      strictFormat: false,
      mode: "completions",
    });
    expect(() => agentConfig({ maxTurns: 0 })).toThrow();
  });
});

function sampleTrajectory(): Trajectory {
  return {
    schemaVersion: 1,
    id: "t1",
    taskId: "x__y-1",
    taskKind: "issue-fix",
    image: "img",
    policy: { kind: "http", model: "m", weightsVersion: "w1" },
    sampling: { temperature: 1, topP: 0.95, maxTokens: 65536 },
    config: {},
    prompt: { system: "SYS", user: "USER", assistantPrefix: "<think>\n" },
    turns: [
      {
        index: 0,
        promptTokens: 10,
        text: "r</think>\n<tool: bash>\nls\n</tool>",
        reasoning: "r",
        action: { tool: "bash", argument: "ls" },
        completionTokens: 5,
        usedTokens: 15,
        modelLatencyMs: 3,
        toolName: "bash",
        toolSuccess: true,
        toolOutput: "a",
        observation: "<output>\na\n</output>",
        observationRole: "tool",
        toolDurationMs: 1,
      },
      { index: 1, promptTokens: 20, text: "oops", completionTokens: 2, usedTokens: 22, modelLatencyMs: 1, observation: "FormatError: x", observationRole: "user", formatError: { type: "FormatError", message: "x" } },
    ],
    reward: -1,
    endReason: "max_turns",
    usedTokens: 22,
    times: { startedAt: new Date(0).toISOString(), totalSeconds: 1, sandboxStartSeconds: 0.1, modelSeconds: 0, toolSeconds: 0, evalSeconds: 0 },
    envRetries: 0,
    envErrors: [],
  };
}

describe("trajectory record", () => {
  it("appends JSONL and reads it back, reporting bad lines by number", () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "forager-traj-")), "a", "t.jsonl");
    writeTrajectory(file, sampleTrajectory());
    fs.appendFileSync(file, "{not json\n" + JSON.stringify({ schemaVersion: 2 }) + "\n");
    writeTrajectory(file, { ...sampleTrajectory(), id: "t2" });
    const r = readTrajectories(file);
    expect(r.trajectories.map((t) => t.id)).toEqual(["t1", "t2"]);
    expect(r.errors.map((e) => e.line)).toEqual([2, 3]);
    expect(r.errors[0]!.message).toMatch(/invalid JSON/);
    expect(() => writeTrajectory(file, { ...sampleTrajectory(), endReason: "nope" as never })).toThrow();
  });

  it("converts to a chat training record and to the token stream", () => {
    const t = sampleTrajectory();
    const c = toChatRecord(t);
    expect(c.messages).toEqual([
      { role: "system", content: "SYS" },
      { role: "user", content: "USER" },
      { role: "assistant", content: "<think>\nr</think>\n<tool: bash>\nls\n</tool>" },
      { role: "tool", name: "bash", content: "<output>\na\n</output>" },
      { role: "assistant", content: "<think>\noops" },
      { role: "user", content: "FormatError: x" },
    ]);
    expect(renderTrajectoryText(t)).toContain("<|start_header_id|>tool: bash<|end_header_id|>\n\n<output>\na\n</output><|eot_id|>");
  });

  it("normalises durations and budgets for replay comparison", () => {
    expect(normalizeObservation("ran in 0.12s\n* Remaining tokens: 1234")).toBe(normalizeObservation("ran in 3.5s\n* Remaining tokens: 99"));
  });
});

describe("named configurations (--config JSON | FILE | PRESET)", () => {
  it("reads inline JSON, a file and a preset of configs/, validated by the schema; a bad one names the argument, the file and the field", async () => {
    const { loadAgentConfigArg, presetNames, agentConfig } = await import("../agent/config");
    const fs = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    expect(presetNames()).toEqual(expect.arrayContaining(["cwm-eval", "quick", "swerl-similarity"]));
    for (const name of presetNames()) expect(() => agentConfig(loadAgentConfigArg(name)), name).not.toThrow();
    expect(loadAgentConfigArg('{"temperature":0.2}')).toEqual({ temperature: 0.2 });
    expect(agentConfig(loadAgentConfigArg("quick")).maxTurns).toBe(24);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-config-"));
    const file = path.join(dir, "mine.json");
    fs.writeFileSync(file, JSON.stringify({ maxTurns: -3 }));
    expect(() => loadAgentConfigArg(file)).toThrow(new RegExp(`--config ${file}: .*maxTurns`));
    fs.writeFileSync(file, "{not json");
    expect(() => loadAgentConfigArg(file)).toThrow(/not valid JSON/);
    expect(() => loadAgentConfigArg("no-such-preset")).toThrow(/not JSON, not a file, not a preset \(presets: cwm-eval, quick, swerl-similarity\)/);
    expect(() => loadAgentConfigArg('{"temprature":1}')).toThrow(/inline JSON.*temprature/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
