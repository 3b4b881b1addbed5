/**
 * `create`: a new file from forager's side. Semantics and messages of the CWM release's create
 * plugin (cwm/rl/swerl/plugins/create.py): first line the path, the rest the content verbatim.
 */
import { z } from "zod";
import type { Tool } from "./types";

const dirname = (abs: string): string => {
  const trimmed = abs.replace(/\/+$/, "");
  const at = trimmed.lastIndexOf("/");
  return at <= 0 ? "/" : trimmed.slice(0, at);
};

/** POSIX-normalise an absolute path (collapse `.`, `..`, repeated slashes) like os.path.abspath. */
export function normalizeAbs(path: string): string {
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (!part || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

export const createTool: Tool<z.ZodObject<{ path: z.ZodString; content: z.ZodString }>> = {
  name: "create",
  spec:
    "<tool: create>\n[path]\n[content]\n</tool>\n" +
    "Creates a new file at [path] with [content], where [path] must not exist, but its parent directory must exist.",
  description: "Create a new file (the path must not exist; its parent directory must).",
  parameters: z.object({ path: z.string().describe("path of the new file"), content: z.string().describe("file content") }),
  toText: (a) => `${a.path}\n${a.content}`,
  async run(runtime, argument) {
    const nl = argument.indexOf("\n");
    const path = nl === -1 ? argument : argument.slice(0, nl);
    const content = nl === -1 ? "" : argument.slice(nl + 1);
    if (path !== "" && (await runtime.stat(path)).exists) {
      return { output: `${path} already exists. Cannot create a new file at an existing path.`, success: false };
    }
    if (path === "") return { output: "Path is empty. Please provide a valid path.", success: false };
    const parent = dirname(normalizeAbs(await runtime.resolvePath(path)));
    if (!(await runtime.stat(parent)).isDir) {
      return { output: `File creation failed. The parent directory ${parent} does not exist.`, success: false };
    }
    await runtime.writeFile(path, content);
    const lines = content.split("\n").length;
    return { output: `File created successfully at: ${path} (${lines} lines).`, success: true, metadata: { path } };
  },
};
