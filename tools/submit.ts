/**
 * `submit`: the path of a patch file the model wrote. It must exist, be non-empty and be a git
 * diff (start with "diff"). The patch is echoed back inside <submission>…</submission> with the
 * note that it may still be refined; submit does not end the episode. Messages of the CWM
 * release (cwm/rl/swerl/tools.py submit_diff_file, and the SUBMISSION feedback of
 * cwm/rl/envs/envs/swerl_tool.py).
 */
import { z } from "zod";
import { FileNotFoundError } from "../sandbox/runtime";
import type { Tool } from "./types";

/** The feedback wrapping a successful submission. */
export function submissionFeedback(patchShown: string): string {
  return (
    "The following patch content is marked as your final submission:\n\n" +
    `<submission>\n${patchShown}\n</submission>\n\n` +
    "Review the patch content and ensure it correctly resolves the issue. If necessary, you can continue refining the patch and submit an updated version."
  );
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

/**
 * Largest patch file `submit` accepts, bytes (4 MiB; SWE-bench Verified's largest gold patch is a
 * few tens of KiB). A larger one is refused with a tool error, as any bad argument, so it never
 * reaches host memory or the evaluator (which refuses over 16 MiB anyway).
 */
export const MAX_SUBMISSION_BYTES = 4 * 1024 * 1024;

export const submitTool: Tool<z.ZodObject<{ path: z.ZodString }>> = {
  name: "submit",
  spec:
    "<tool: submit>\n[result]\n</tool>\n" +
    "Marks [result] as your final submission. The meaning and format of [result] depends on the specific user request.",
  description: "Submit the path of a patch file (git diff format) as the final result; may be repeated.",
  parameters: z.object({ path: z.string().describe("path of a patch file in git diff format") }),
  toText: (a) => a.path,
  async run(runtime, argument) {
    const path = argument.trim();
    const size = await runtime.fileSize(path);
    if (size !== undefined && size > MAX_SUBMISSION_BYTES) {
      return {
        output: `Failed to submit ${path}. It is ${size} bytes; a submission may be at most ${MAX_SUBMISSION_BYTES} bytes.`,
        success: false,
      };
    }
    let text: string;
    try {
      text = utf8.decode(await runtime.readFile(path));
    } catch (err) {
      if (!(err instanceof FileNotFoundError)) throw err;
      return { output: `Failed to submit ${path}. Make sure it exists and is readable.`, success: false };
    }
    if (text.trim() === "") return { output: `Failed to submit ${path}. It is an empty file.`, success: false };
    if (!text.startsWith("diff")) return { output: `Failed to submit ${path}. It is not a valid diff file.`, success: false };
    // The release reads the file through the session, whose output loses one trailing newline.
    const shown = text.endsWith("\n") ? text.slice(0, -1) : text;
    return { output: submissionFeedback(shown), success: true, metadata: { patch: text, path } };
  },
};
