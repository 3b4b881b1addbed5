/**
 * Tool profiles: named sets of tools, offered either in the CWM text format (system prompt
 * specs) or as OpenAI function definitions (chat completions with tool calling).
 */
import { z } from "zod";
import { bashTool } from "./bash";
import { createTool } from "./create";
import { editTool } from "./edit";
import { submitTool } from "./submit";
import type { Tool } from "./types";

/** Every built-in tool by name. */
export const TOOLS: Record<string, Tool> = {
  bash: bashTool,
  edit: editTool,
  create: createTool,
  submit: submitTool,
};

/** Built-in profiles: CWM's default (with plugins) and its no-plugins variant. */
export const PROFILES = {
  cwm: ["bash", "edit", "create", "submit"],
  "cwm-noplugins": ["bash", "submit"],
} as const satisfies Record<string, readonly string[]>;
export type ProfileName = keyof typeof PROFILES;

/** The tools of a profile, in prompt order. @throws Error for an unknown profile or tool. */
export function toolProfile(profile: ProfileName | readonly string[] = "cwm"): Tool[] {
  const names = typeof profile === "string" ? PROFILES[profile] : profile;
  if (!names) throw new Error(`unknown tool profile ${String(profile)}`);
  return names.map((n) => {
    const t = TOOLS[n];
    if (!t) throw new Error(`unknown tool ${n}`);
    return t;
  });
}

/** OpenAI `tools` entries ({type: "function", function: {name, description, parameters}}). */
export function openAIFunctions(tools: Tool[]): Array<{ type: "function"; function: { name: string; description: string; parameters: unknown } }> {
  return tools.map((t) => {
    const schema = z.toJSONSchema(t.parameters) as Record<string, unknown>;
    delete schema.$schema;
    return { type: "function", function: { name: t.name, description: t.description, parameters: schema } };
  });
}
