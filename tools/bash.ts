/**
 * `bash`: run command(s) in the persistent session; the model sees the output only. On a
 * timeout, an over-long output or the shell exiting, the session is restarted and the model is
 * told why (messages of the CWM release, cwm/rl/swerl/tools.py).
 */
import { z } from "zod";
import type { SessionStatus } from "../sandbox/session";
import type { Tool } from "./types";

const FRESH = " A fresh session has started with the current working directory reset to default.";

/** The CWM feedback for a session that did not complete normally. */
export function sessionFailureMessage(status: Exclude<SessionStatus, "ok">): string {
  switch (status) {
    case "timeout":
      return "The current session has terminated due to timeout." + FRESH;
    case "output_limit":
      return "The current session has terminated because your previous command produced too much output." + FRESH;
    case "exited":
      return "The current session has terminated unexpectedly." + FRESH;
    case "disk_limit":
      return "The current session has terminated because the sandbox's disk limit was exceeded; remove large files you created." + FRESH;
  }
}

export const bashTool: Tool<z.ZodObject<{ command: z.ZodString }>> = {
  name: "bash",
  spec:
    "<tool: bash>\n[command(s)]\n</tool>\n" +
    "Executes bash command(s) [command(s)] in the current session. [command(s)] can be any non-interactive bash command(s), either single or multi-line.",
  description: "Run non-interactive bash command(s) in the persistent session and return their output.",
  parameters: z.object({ command: z.string().describe("bash command(s), single or multi-line") }),
  toText: (a) => a.command,
  async run(runtime, argument) {
    const r = await runtime.run(argument);
    if (r.status === "ok") {
      return { output: r.output, success: true, metadata: { exitCode: r.exitCode, status: r.status, durationMs: r.durationMs } };
    }
    return { output: sessionFailureMessage(r.status), success: false, metadata: { status: r.status, durationMs: r.durationMs, partialOutput: r.output.slice(0, 4096) } };
  },
};
