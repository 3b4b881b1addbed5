/**
 * The CWM text format, rendered exactly as the release does.
 *
 * Sources (facebookresearch/cwm):
 * - `cwm/rl/envs/envs/swerl_tool.py`: SYSTEM_UBUNTU / SYSTEM_UBUNTU_NO_PLUGINS (environment text),
 *   USER_ISSUE_SOLVING (issue prompt), BUDGET_NOTICE_TEMPLATE, FEEDBACK_OUTPUT_PROMPT,
 *   SUBMISSION_FEEDBACK_PROMPT (tools/submit.ts), the budget estimate and the truncations.
 * - `cwm/rl/envs/prompts.py`: CWM_THINKTAG_SYS_PROMPT, ENV_PROMPT, get_cwm_sys_prompt, THINK_TAG_START.
 * - `cwm/text/tokenizers.py` (CWMInstructTokenizer.encode_message / encode_prompt_dialog) and
 *   `cwm/text/datatypes.py` (CWMChatMessage.source_str `tool: NAME`): the message framing
 *   `<|start_header_id|>ROLE<|end_header_id|>\n\nBODY<|eot_id|>` after `<|begin_of_text|>`; bodies
 *   are stripped except tool results and the assistant generation prefix.
 * - `cwm/rl/envs/utils/dialogs.py` maybe_truncate_message: cutting a message to a token limit with `[...]`.
 *
 * Token counts here are Llama-3 tokenizer estimates (inference-client/tokenizer.ts), tokens.
 */
import { countTokens, decode, encode } from "../inference-client/tokenizer";
import { pyStrip } from "../rewards/similarity";
import type { Tool } from "../tools/types";

export const BEGIN_OF_TEXT = "<|begin_of_text|>";
export const START_HEADER = "<|start_header_id|>";
export const END_HEADER = "<|end_header_id|>";
export const EOT = "<|eot_id|>";
/** The truncation marker of the release (DialogEnv abbrev_str). */
export const ABBREV = "[...]";
/** The assistant prefill in reasoning mode (prompts.THINK_TAG_START). */
export const THINK_START = "<think>\n";
/** The end of reasoning (prompts.THINK_TAG_END). */
export const THINK_END = "</think>";

/** A message of the dialog. `tool` names the tool of a `tool` message (role `tool: NAME`). */
export interface Message {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  tool?: string;
}

/** The role text of the header: `system`, `user`, `assistant` or `tool: NAME`. */
export function roleText(m: Pick<Message, "role" | "tool">): string {
  return m.role === "tool" ? `tool: ${m.tool ?? ""}` : m.role;
}

/** `<|start_header_id|>ROLE<|end_header_id|>\n\n`. */
export function header(m: Pick<Message, "role" | "tool">): string {
  return `${START_HEADER}${roleText(m)}${END_HEADER}\n\n`;
}

/**
 * One message: header, body, `<|eot_id|>`. System and user bodies are stripped (Python
 * `str.strip()`); tool results and assistant text are kept verbatim (encode_message).
 * `end: false` renders a generation prefix (no end token).
 */
export function renderMessage(m: Message, opts: { end?: boolean } = {}): string {
  const end = opts.end ?? true;
  const body = m.role === "system" || m.role === "user" ? pyStrip(m.content) : m.content;
  return header(m) + body + (end ? EOT : "");
}

/** An assistant turn as it appears in the token stream: prefix + raw action, then `<|eot_id|>` unless it ended with one. */
export function renderAssistantTurn(prefix: string, action: string): string {
  return header({ role: "assistant" }) + prefix + action + (action.endsWith(EOT) ? "" : EOT);
}

/**
 * The whole prompt of the next generation: `<|begin_of_text|>`, every message (assistant
 * messages rendered as raw turns), then the assistant header and `prefix` (the generation prefix).
 */
export function renderDialog(messages: readonly Message[], prefix: string): string {
  let out = BEGIN_OF_TEXT;
  for (const m of messages) out += m.role === "assistant" ? renderAssistantTurn("", m.content) : renderMessage(m);
  return out + header({ role: "assistant" }) + prefix;
}

export { pyStrip };

// ---------------------------------------------------------------------------------------------
// System and issue prompts
// ---------------------------------------------------------------------------------------------

/** prompts.py default description. */
export const DEFAULT_DESCRIPTION = "You are a helpful AI assistant.";

const ENV_INTRO =
  "You are working in a linux container. The container session is persistent but will restart when encountering errors or after a {session_timeout} session timeout in each turn. You are also constrained by a {context_size} total context window limit. You can interact with the container through the following tool interface for at most {max_turns} turns. Here are the specifications:";

const REQUIREMENTS =
  "REQUIREMENTS:\n" +
  "* You cannot invoke more than one tool in each step.\n" +
  "* You must invoke exactly one tool in each step before any <tool: submit> call.\n" +
  "* After successful submission, provide a final response if the request is resolved, otherwise continue iterating. You cannot provide a final response before invoking <tool: submit>.";

/**
 * The `# Environment` text (SYSTEM_UBUNTU with the profile's tool specs; the "cwm" profile gives
 * SYSTEM_UBUNTU, "cwm-noplugins" SYSTEM_UBUNTU_NO_PLUGINS). `{session_timeout}` is
 * `${int(seconds)}-second`.
 */
export function environmentPrompt(tools: readonly Tool[], limits: { commandTimeoutSeconds: number; contextTokens: number; maxTurns: number }): string {
  const intro = ENV_INTRO.replace("{session_timeout}", `${Math.trunc(limits.commandTimeoutSeconds)}-second`)
    .replace("{context_size}", String(limits.contextTokens))
    .replace("{max_turns}", String(limits.maxTurns));
  return [intro, ...tools.map((t) => t.spec), REQUIREMENTS].join("\n\n");
}

/**
 * The system prompt (prompts.get_cwm_sys_prompt with use_think_tag): in reasoning mode the
 * description asks to reason inside `<think>` … `</think>` first; then `# Environment`.
 */
export function systemPrompt(environment: string, opts: { think: boolean; description?: string }): string {
  const description = opts.description ?? DEFAULT_DESCRIPTION;
  const head = opts.think
    ? `${description} You always reason before responding, using the following format:\n\n<think>\nyour internal reasoning\n</think>\nyour external response`
    : description;
  return `${pyStrip(head)}\n\n# Environment\n\n${pyStrip(environment)}`;
}

/** USER_ISSUE_SOLVING, filled with the issue and the repository root. */
export function issuePrompt(issue: string, repoRoot: string): string {
  return `Solve the following issue by implementing the necessary code changes and submitting a patch file:

<issue_description>
${issue}
</issue_description>

The [result] argument of <tool: submit> should be the path to a patch file that resolves the issue. This file must be accessible from the current working directory and should contain the end-to-end code changes in git diff format. You can refine and submit your patch multiple times as needed to ensure correctness.

Once you've submitted at least once and are confident in your solution, provide a final response summarizing your work using the following markdown template as a guide. Feel free to adjust the sections as necessary to fit the specific issue and solution:

\`\`\`markdown
## Issue Summary

Brief description of the issue (bug/feature/enhancement), affected component, and expected outcome.

## Investigation and Reproduction

Steps taken to understand and reproduce the issue: commands executed, test cases run, error messages, debugging approach, and root cause analysis. For features, describe requirement analysis and codebase exploration.

## Solution and Code Changes

High-level approach and rationale for the chosen solution. Specific modifications by file/component, including new functions, classes, or architectural decisions. Explain how changes work together if multiple files are involved.

## Testing and Verification

Description of how you ensure the patch fully resolves the issue, including new tests added (or test changes made) to verify correctness, how you ran existing tests to prevent regressions, and how comprehensive your testing process is (e.g., what edge cases you covered, how you validated correctness across different scenarios).
\`\`\`

Your primary objective is to ensure patch correctness above all else - thoroughly explore the codebase, think hard, and leverage significant execution to verify correctness by writing comprehensive tests to validate your solution and running existing tests to prevent regressions. Only submit when you are genuinely confident in your patch's correctness.

I've uploaded the corresponding code repository at ${repoRoot} and installed all the necessary dependencies. Now, the bash session has started, with the current working directory set to the repo root.`;
}

// ---------------------------------------------------------------------------------------------
// Tool results, budget, format errors
// ---------------------------------------------------------------------------------------------

/** BUDGET_NOTICE_TEMPLATE unformatted: the release estimates the result size with the placeholders in. */
export const BUDGET_NOTICE_TEMPLATE = "<budget>\n* Remaining turns: {remaining_turns}\n* Remaining tokens: {remaining_tokens}\n</budget>";

/** FEEDBACK_OUTPUT_PROMPT: `<output>\nFEEDBACK\n</output>`. */
export function wrapOutput(feedback: string): string {
  return `<output>\n${feedback}\n</output>`;
}

/** The budget notice (budget_notice). */
export function budgetNotice(remainingTurns: number, remainingTokens: number): string {
  return `<budget>\n* Remaining turns: ${remainingTurns}\n* Remaining tokens: ${remainingTokens}\n</budget>`;
}

/**
 * Estimated tokens of a tool-result message before the budget numbers are known: the message
 * `tool: NAME` with `WRAPPED\n\n` + the unformatted template, capped at `maxToolResultTokens`.
 */
export function estimateToolResultTokens(wrapped: string, tool: string, maxToolResultTokens: number): number {
  const n = countTokens(renderMessage({ role: "tool", tool, content: `${wrapped}\n\n${BUDGET_NOTICE_TEMPLATE}` }));
  return Math.min(n, maxToolResultTokens);
}

/**
 * Cut a message to `maxTokens` (whole message: header, body, end token), as
 * maybe_truncate_message: "left" keeps the end (`[...]` + tail), "right" the start (head + `[...]`).
 * @returns the message unchanged when it fits, else a copy with the cut body and `truncated: true`.
 */
export function truncateMessage(m: Message, maxTokens: number, where: "left" | "right"): Message & { truncated?: boolean } {
  const total = countTokens(renderMessage(m));
  if (total <= maxTokens) return m;
  const body = encode(m.content);
  const nonBody = total - body.length;
  const abbrevLen = countTokens(ABBREV);
  const keep = maxTokens - nonBody - abbrevLen;
  let content: string;
  if (keep <= 0) content = ABBREV;
  else if (where === "left") content = ABBREV + decode(body.slice(body.length - keep));
  else content = decode(body.slice(0, keep)) + ABBREV;
  return { ...m, content, truncated: true };
}

/** The release's remaining-token figure: context − tokens used (prompt + every turn so far) − the result's estimate. */
export function remainingTokens(contextTokens: number, usedTokens: number, estimate: number): number {
  return contextTokens - usedTokens - estimate;
}

/**
 * The tool-result message the model sees: `<output>\nRESULT\n</output>\n\n<budget>…</budget>` as
 * role `tool: NAME`, cut from the right to `maxToolResultTokens`.
 */
export function toolResultMessage(
  tool: string,
  feedback: string,
  budget: { contextTokens: number; usedTokens: number; remainingTurns: number; maxToolResultTokens: number },
): { message: Message & { truncated?: boolean }; remainingTokens: number; estimateTokens: number } {
  const wrapped = wrapOutput(feedback);
  const estimateTokens = estimateToolResultTokens(wrapped, tool, budget.maxToolResultTokens);
  const left = remainingTokens(budget.contextTokens, budget.usedTokens, estimateTokens);
  const content = `${wrapped}\n\n${budgetNotice(budget.remainingTurns, left)}`;
  return { message: truncateMessage({ role: "tool", tool, content }, budget.maxToolResultTokens, "right"), remainingTokens: left, estimateTokens };
}

/** A format error as the model is told: a user message `ERRORTYPE: MESSAGE`, cut from the right. */
export function formatErrorMessage(errorType: string, message: string, maxToolResultTokens: number): Message {
  return truncateMessage({ role: "user", content: `${errorType}: ${message}` }, maxToolResultTokens, "right");
}

/** The first user message: the issue prompt cut from the left to `maxPromptTokens`. */
export function firstUserMessage(issue: string, repoRoot: string, maxPromptTokens: number): Message & { truncated?: boolean } {
  return truncateMessage({ role: "user", content: issuePrompt(issue, repoRoot) }, maxPromptTokens, "left");
}

/**
 * The text appended to the token stream after an action: `<|eot_id|>` when the action did not end
 * with it is part of the assistant turn; this is the observation message plus the next assistant
 * header and prefix (what DialogEnv.transition adds), for token accounting.
 */
export function observationSegment(message: Message, prefix: string): string {
  return renderMessage(message) + header({ role: "assistant" }) + prefix;
}
