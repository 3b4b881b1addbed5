/**
 * HumanPolicy: a person types the tool calls. Commands (one per line):
 *
 *   COMMAND            bash (any line not starting with ':')
 *   :edit PATH         then the SEARCH/REPLACE block lines, then `:end`
 *                      (a block with only a `=======` line gets its markers added)
 *   :create PATH       then the file's lines, then `:end`
 *   :submit PATH       submit a patch file
 *   :answer TEXT       the final answer (after a successful submit it ends the episode)
 *   :raw               then any model text, then `:end` (to try the format errors)
 *   :help              this list
 *   :quit              stop (the episode ends with policy_error "quit")
 *
 * The text given to the environment is the CWM form (`</think>\n<tool: NAME>\nARG\n</tool>` in
 * reasoning mode), so a human episode is recorded and replayed like a model's.
 */
import { PolicyStopped, type Policy, type PolicyContext, type PolicyIdentity, type PolicyStep } from "./policy";
import { THINK_END } from "./prompt";

export const HUMAN_HELP = `commands:
  COMMAND          run COMMAND with bash
  :edit PATH       then the block (<<<<<<< SEARCH / ======= / >>>>>>> REPLACE), then :end
  :create PATH     then the file's lines, then :end
  :submit PATH     submit a patch file (e.g. after: git diff > fix.patch)
  :answer TEXT     final answer (after a successful submit it ends the episode)
  :raw             then raw model text, then :end
  :help            this list
  :quit            stop`;

/** Where the human's lines come from (null at end of input) and where prompts go. */
export interface HumanIO {
  readLine(prompt: string): Promise<string | null>;
  write(text: string): void;
}

export class HumanPolicy implements Policy {
  readonly kind = "human";
  private think = true;
  constructor(private readonly io: HumanIO) {}

  async identity(): Promise<PolicyIdentity> {
    return { model: "human" };
  }

  start(_task: unknown, config: { think: boolean }): void {
    this.think = config.think;
  }

  private async block(): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const l = await this.io.readLine("... ");
      if (l === null) throw new PolicyStopped("quit (end of input inside a block)");
      if (l.trim() === ":end") return lines;
      lines.push(l);
    }
  }

  async next(ctx: PolicyContext): Promise<PolicyStep> {
    const t0 = performance.now();
    const head = this.think ? `${THINK_END}\n` : "";
    const call = (tool: string, arg: string): PolicyStep => ({ text: `${head}<tool: ${tool}>\n${arg}\n</tool>`, latencyMs: performance.now() - t0 });
    for (;;) {
      const line = await this.io.readLine(`[turn ${ctx.turn + 1}/${ctx.config.maxTurns}] > `);
      if (line === null) throw new PolicyStopped("quit (end of input)");
      const trimmed = line.trim();
      if (trimmed === "") continue;
      if (!trimmed.startsWith(":")) return call("bash", line);
      const [cmd, ...rest] = trimmed.split(/\s+/);
      const arg = trimmed.slice(cmd!.length).trim();
      switch (cmd) {
        case ":quit":
        case ":q":
          throw new PolicyStopped("quit");
        case ":help":
          this.io.write(HUMAN_HELP + "\n");
          continue;
        case ":submit":
          if (!arg) {
            this.io.write("usage: :submit PATH\n");
            continue;
          }
          return call("submit", arg);
        case ":answer":
          return { text: head + (arg || rest.join(" ")), latencyMs: performance.now() - t0 };
        case ":raw":
          return { text: (await this.block()).join("\n"), latencyMs: performance.now() - t0 };
        case ":create":
          if (!arg) {
            this.io.write("usage: :create PATH\n");
            continue;
          }
          return call("create", `${arg}\n${(await this.block()).join("\n")}`);
        case ":edit": {
          if (!arg) {
            this.io.write("usage: :edit PATH\n");
            continue;
          }
          let body = await this.block();
          if (!body.some((l) => l.startsWith("<<<<<<< SEARCH")) && body.includes("=======")) {
            body = ["<<<<<<< SEARCH", ...body, ">>>>>>> REPLACE"];
          }
          return call("edit", `${arg}\n${body.join("\n")}`);
        }
        default:
          this.io.write(`unknown command ${cmd}; :help lists them\n`);
      }
    }
  }
}
