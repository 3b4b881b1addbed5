import { describe, expect, it } from "vitest";
import { ActionFormatError, parseAction } from "../tools/parse";
import { openAIFunctions, toolProfile } from "../tools/registry";

const tools = ["bash", "edit", "create", "submit"];
const err = (action: string, think = false): string => {
  try {
    parseAction(action, { think, tools });
  } catch (e) {
    expect(e).toBeInstanceOf(ActionFormatError);
    return (e as ActionFormatError).feedback;
  }
  throw new Error("no error");
};

describe("parseAction", () => {
  it("reads exactly one call after </think>", () => {
    const r = parseAction("I will look.\n</think>\nLet me list.\n<tool: bash>\nls -la\npwd\n</tool>", { think: true, tools });
    expect(r).toMatchObject({ name: "bash", argument: "ls -la\npwd", reasoning: "I will look.\n" });
  });

  it("keeps the argument verbatim (indentation, trailing spaces, inner newlines)", () => {
    const r = parseAction("<tool: create>\na.py\n  x = 1  \n\n</tool>", { tools });
    expect(r.argument).toBe("a.py\n  x = 1  \n");
  });

  it("gives each published format error", () => {
    expect(err("no think end <tool: bash>\nls\n</tool>", true)).toBe("FormatError: Expected exactly one thinking end token, got 0");
    expect(err("a</think>b</think>\n<tool: bash>\nls\n</tool>", true)).toBe("FormatError: Expected exactly one thinking end token, got 2");
    expect(err("<tool: bash>\nls\n</tool>\n<tool: submit>\nx\n</tool>")).toBe(
      "FormatError: Expected one tool call, but found 2: bash, submit. Ensure only one <tool:...></tool> block is present in the response.",
    );
    expect(err("<tool: bash>\nls\n</tool></tool>")).toBe(
      "FormatError: Mismatch in tool tag counts: found 1 tool calls via regex, but counted 1 opening tags and 2 closing tags.",
    );
    expect(err("<tool: bash>ls</tool>")).toBe(
      "FormatError: Mismatch in tool tag counts: found 0 tool calls via regex, but counted 1 opening tags and 1 closing tags.",
    );
    expect(err("Just prose, no call.")).toBe("FormatError: No tool calls found");
    expect(err("<tool: bash>\n   \n</tool>")).toBe(
      "FormatError: Tool 'bash' requires non-empty arguments, but received empty or whitespace-only input.",
    );
    expect(err("<tool: python>\nprint(1)\n</tool>")).toBe("NoSuchToolError: Tool 'python' not found.");
  });

  it("ignores tool tags inside the reasoning", () => {
    const r = parseAction("maybe <tool: bash>\nrm -rf /\n</tool>? no.\n</think>\n<tool: bash>\nls\n</tool>", { think: true, tools });
    expect(r.argument).toBe("ls");
  });
});

describe("tool registry", () => {
  it("offers a profile as OpenAI function definitions", () => {
    const fns = openAIFunctions(toolProfile("cwm"));
    expect(fns.map((f) => f.function.name)).toEqual(["bash", "edit", "create", "submit"]);
    const edit = fns[1]!.function.parameters as { properties: Record<string, unknown>; required: string[] };
    expect(Object.keys(edit.properties)).toEqual(["path", "search", "replace"]);
    expect(edit.required).toEqual(["path", "search", "replace"]);
    expect(toolProfile("cwm-noplugins").map((t) => t.name)).toEqual(["bash", "submit"]);
  });

  it("turns structured arguments into the text form", () => {
    const [, edit, create] = toolProfile("cwm");
    expect(edit!.toText({ path: "a.py", search: "x", replace: "y" })).toBe("a.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE");
    expect(create!.toText({ path: "b.py", content: "z\n" })).toBe("b.py\nz\n");
  });
});
