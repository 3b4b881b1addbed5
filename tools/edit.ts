/**
 * `edit`: one SEARCH/REPLACE block on an existing file, done from forager's side (no Python in
 * the image). Semantics and messages reproduce the CWM release's edit plugin
 * (cwm/rl/swerl/plugins/edit.py): the block is matched with a newline prepended to both file and
 * search text, so a match must start at a line start; it must occur exactly once (overlapping
 * occurrences counted); the file is read with universal newlines and written back with "\n".
 */
import { z } from "zod";
import { FileNotFoundError } from "../sandbox/runtime";
import type { Tool, ToolResult } from "./types";

const BLOCK = /([^\n]*)\n<<<<<<< SEARCH\n([\s\S]*?)\n=======\n([\s\S]*?)\n>>>>>>> REPLACE/g;

export const EDIT_PARSE_ERROR = `Failed to parse the edit tool call. Make sure it has the following format:

<tool: edit>
[path]
<<<<<<< SEARCH
[search_lines]
=======
[replacement_lines]
>>>>>>> REPLACE
</tool>`;

/** Lines shown either side of an edit. */
const SNIPPET_LINES = 8;

function occurrences(text: string, sub: string): number[] {
  const out: number[] = [];
  for (let i = text.indexOf(sub); i !== -1; i = text.indexOf(sub, i + 1)) out.push(i);
  return out;
}

function countNewlines(text: string, from = 0, to = text.length): number {
  let n = 0;
  for (let i = text.indexOf("\n", from); i !== -1 && i < to; i = text.indexOf("\n", i + 1)) n++;
  return n;
}

/** Python's `f"{i:6}"` for an int: right-aligned in width 6. */
const num6 = (i: number): string => String(i).padStart(6, " ");

/**
 * The pure part of `edit`: apply the block in `argument` to `content` (the file's text).
 * @returns the new text and the message, or an error message.
 */
export function applyEdit(
  argument: string,
  readFile: (path: string) => string | undefined,
): { ok: true; path: string; content: string; message: string } | { ok: false; message: string } {
  const blocks = [...argument.matchAll(BLOCK)];
  if (blocks.length === 0) return { ok: false, message: EDIT_PARSE_ERROR };
  if (blocks.length > 1) return { ok: false, message: `Only one search/replace block is allowed. Got: ${blocks.length}.` };
  const [, path = "", searchRaw = "", replaceRaw = ""] = blocks[0]!;
  const original = readFile(path);
  if (original === undefined) return { ok: false, message: `The path ${path} does not exist. Please provide a valid path.` };
  const file = "\n" + original;
  const search = "\n" + searchRaw;
  const found = occurrences(file, search);
  if (found.length === 0) {
    let message = `No replacement was performed, the search lines did not appear verbatim in ${path}.`;
    const nl = search.indexOf("\n", 1);
    const firstLine = nl !== -1 ? search.slice(1, nl) : search.slice(1);
    if (file.includes(firstLine.replace(/^\s+/, ""))) {
      message += " The search lines must exactly match one or more consecutive lines from the file, with indentations preserved.";
    }
    return { ok: false, message };
  }
  if (found.length > 1) {
    const lines: number[] = [];
    let lineNo = 0;
    for (let i = file.indexOf("\n"); i !== -1; i = file.indexOf("\n", i + 1)) {
      lineNo++;
      if (file.startsWith(search, i)) lines.push(lineNo);
    }
    return {
      ok: false,
      message: `No replacement was performed. Multiple occurrences of the search text in lines [${lines.join(", ")}] of ${path}. Please ensure it is unique.`,
    };
  }
  const at = found[0]!;
  const replacement = "\n" + replaceRaw;
  const updated = (file.slice(0, at) + replacement + file.slice(at + search.length)).slice(1);
  const line = countNewlines(file, 0, at) + 1;
  const numLines = countNewlines(updated) + 1;
  const start = Math.max(1, line - SNIPPET_LINES);
  const end = line + SNIPPET_LINES + countNewlines(replacement) - 1;
  const snippet = updated
    .split("\n")
    .slice(start - 1, end)
    .map((text, i) => `${num6(start + i)}\t${text}`)
    .join("\n");
  const message =
    `File ${path} has been successfully updated at line ${line} and now contains ${numLines} lines. ` +
    `The surrounding lines after the edit are shown below:\n${snippet}\nReview the changes and make sure they are as expected.`;
  return { ok: true, path, content: updated, message };
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export const editTool: Tool<z.ZodObject<{ path: z.ZodString; search: z.ZodString; replace: z.ZodString }>> = {
  name: "edit",
  spec:
    "<tool: edit>\n[path]\n<<<<<<< SEARCH\n[search_lines]\n=======\n[replacement_lines]\n>>>>>>> REPLACE\n</tool>\n" +
    "Replaces [search_lines] from [path] with [replacement_lines], where [path] must exist and [search_lines] must uniquely and exactly match one or more consecutive lines from the original file, including indentations and whitespaces.",
  description: "Replace lines that occur exactly once in an existing file.",
  parameters: z.object({
    path: z.string().describe("path of an existing file"),
    search: z.string().describe("lines that occur exactly once in the file, indentation included"),
    replace: z.string().describe("replacement lines"),
  }),
  toText: (a) => `${a.path}\n<<<<<<< SEARCH\n${a.search}\n=======\n${a.replace}\n>>>>>>> REPLACE`,
  async run(runtime, argument): Promise<ToolResult> {
    // Read the named file first (one block parse to learn the path), then apply purely.
    const first = [...argument.matchAll(BLOCK)];
    let content: string | undefined;
    let binary = false;
    if (first.length === 1) {
      const path = first[0]![1] ?? "";
      const st = path ? await runtime.stat(path) : undefined;
      if (st?.isDir) return { output: `The path ${path} is a directory, not a file. Please provide a valid path.`, success: false };
      if (st?.exists) {
        try {
          const bytes = await runtime.readFile(path);
          content = strictUtf8.decode(bytes).replace(/\r\n?/g, "\n");
        } catch (err) {
          if (err instanceof FileNotFoundError) return { output: `The path ${path} could not be read.`, success: false };
          if (err instanceof TypeError) binary = true;
          else throw err;
        }
      }
      if (binary) return { output: `The file ${path} is not valid UTF-8 text and cannot be edited.`, success: false };
    }
    const r = applyEdit(argument, () => content);
    if (!r.ok) return { output: r.message, success: false };
    await runtime.writeFile(r.path, r.content);
    return { output: r.message, success: true, metadata: { path: r.path } };
  },
};
