/**
 * Parsing a model's action into one tool call, with the format errors of the CWM release
 * (cwm/rl/swerl/default_tools.py and cwm/rl/envs/envs/swerl_tool.py; facts in
 * ../shared/reference/cwm-environment.md). The error text is what the model is told, as a user
 * message `ERRORTYPE: MESSAGE`.
 */

/** Error types the model can be told about. */
export type ActionErrorType = "FormatError" | "NoSuchToolError";

/** A format error in a model's action. `feedback` is the exact user message. */
export class ActionFormatError extends Error {
  constructor(
    readonly errorType: ActionErrorType,
    message: string,
  ) {
    super(message);
    this.name = errorType;
  }
  /** `ERRORTYPE: MESSAGE`, as the CWM environment sends it back. */
  get feedback(): string {
    return `${this.errorType}: ${this.message}`;
  }
}

/** One parsed tool call. */
export interface ToolCall {
  name: string;
  /** The argument text between the opening tag's newline and the newline before `</tool>`. */
  argument: string;
}

export interface ParseOptions {
  /** Reasoning mode: the action must contain exactly one `</think>`; tools are read after it. */
  think?: boolean;
  /** The thinking end marker (default `</think>`). */
  thinkEnd?: string;
  /** Known tool names; an unknown name raises NoSuchToolError. */
  tools?: readonly string[];
  /** Reject empty / whitespace-only arguments (default true). */
  requireArgument?: boolean;
}

/** A tool call `<tool: NAME>\nARGUMENT\n</tool>` (one whitespace after the colon). */
const TOOL_CALL = /<tool:\s([a-zA-Z_]+)>\n([\s\S]*?)\n<\/tool>/g;

function countOf(text: string, needle: string): number {
  let n = 0;
  for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + needle.length)) n++;
  return n;
}

/**
 * The external response of an action: the text after the single `</think>` in reasoning mode,
 * else the whole action. `thinkEndCount` is how many `</think>` the action had.
 */
export function splitReasoning(action: string, opts: ParseOptions = {}): { reasoning: string; answer: string; thinkEndCount: number } {
  if (!opts.think) return { reasoning: "", answer: action, thinkEndCount: 0 };
  const end = opts.thinkEnd ?? "</think>";
  const count = countOf(action, end);
  const at = action.indexOf(end);
  if (at < 0) return { reasoning: action, answer: action, thinkEndCount: 0 };
  return { reasoning: action.slice(0, at), answer: action.slice(at + end.length), thinkEndCount: count };
}

/**
 * Parse exactly one tool call from a model's action.
 * @throws ActionFormatError with the CWM message: wrong number of `</think>`; more than one call;
 *   tag counts that do not match; no call; an empty argument; an unknown tool.
 */
export function parseAction(action: string, opts: ParseOptions = {}): ToolCall & { reasoning: string; answer: string } {
  const { reasoning, answer, thinkEndCount } = splitReasoning(action, opts);
  if (opts.think && thinkEndCount !== 1) {
    throw new ActionFormatError("FormatError", `Expected exactly one thinking end token, got ${thinkEndCount}`);
  }
  const calls = [...answer.matchAll(TOOL_CALL)].map((m) => ({ name: m[1]!, argument: m[2]! }));
  if (calls.length > 1) {
    throw new ActionFormatError(
      "FormatError",
      `Expected one tool call, but found ${calls.length}: ${calls.map((c) => c.name).join(", ")}. ` +
        "Ensure only one <tool:...></tool> block is present in the response.",
    );
  }
  const opening = countOf(answer, "<tool:");
  const closing = countOf(answer, "</tool>");
  if (calls.length !== opening || calls.length !== closing) {
    throw new ActionFormatError(
      "FormatError",
      `Mismatch in tool tag counts: found ${calls.length} tool calls via regex, ` +
        `but counted ${opening} opening tags and ${closing} closing tags.`,
    );
  }
  if (calls.length === 0) throw new ActionFormatError("FormatError", "No tool calls found");
  const call = calls[0]!;
  const name = call.name.trim();
  if ((opts.requireArgument ?? true) && call.argument.trim() === "") {
    throw new ActionFormatError(
      "FormatError",
      `Tool '${name}' requires non-empty arguments, but received empty or whitespace-only input.`,
    );
  }
  if (opts.tools && !opts.tools.includes(name)) {
    throw new ActionFormatError("NoSuchToolError", `Tool '${name}' not found.`);
  }
  return { name, argument: call.argument, reasoning, answer };
}
