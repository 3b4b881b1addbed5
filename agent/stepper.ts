/**
 * SteppedPolicy: a person attached to another policy's episode, stepping through it turn by turn.
 * Before each action runs, the proposed text (reasoning folded, then the action) is shown and the
 * person answers:
 *
 *   (empty line)   run the proposed action
 *   :continue      run this and every later action without stopping
 *   :take          take over: type this turn's action yourself (HumanPolicy commands)
 *   :quit          stop the episode (policy_error "quit")
 *
 * The trajectory records what actually ran; a taken-over turn keeps the person's text, so replay
 * reproduces the session.
 */
import { HumanPolicy, type HumanIO } from "./human";
import { PolicyStopped, type Policy, type PolicyContext, type PolicyIdentity, type PolicyStep } from "./policy";
import type { AgentConfig } from "./config";
import type { Task } from "../tasks/schema";

const fold = (text: string, max: number): string => {
  const one = text.replace(/\s+/g, " ").trim();
  return one.length > max ? one.slice(0, max - 1) + "…" : one;
};

/** Show a proposed step: the reasoning on one line, the rest (the action) as it is. */
export function describeStep(text: string, thinkEnd = "</think>"): string {
  const at = text.indexOf(thinkEnd);
  if (at < 0) return text;
  const reasoning = text.slice(0, at);
  return `(reasoning, ${reasoning.length} chars) ${fold(reasoning, 160)}\n${text.slice(at + thinkEnd.length).trim()}`;
}

export class SteppedPolicy implements Policy {
  readonly kind: string;
  private running = false;
  private readonly human: HumanPolicy;

  constructor(
    private readonly inner: Policy,
    private readonly io: HumanIO,
  ) {
    this.kind = `${inner.kind}+stepped`;
    this.human = new HumanPolicy(io);
  }

  identity(): Promise<PolicyIdentity> {
    return this.inner.identity?.() ?? Promise.resolve({ model: this.inner.kind });
  }

  async start(task: Task, config: AgentConfig): Promise<void> {
    await this.inner.start?.(task, config);
    this.human.start(task, config);
  }

  async next(ctx: PolicyContext): Promise<PolicyStep> {
    const step = await this.inner.next(ctx);
    if (this.running) return step;
    this.io.write(`── proposed action, turn ${ctx.turn + 1} (${this.inner.kind}, ${step.latencyMs.toFixed(0)} ms) ──\n${describeStep(step.text)}\n`);
    for (;;) {
      const answer = await this.io.readLine("[enter: run · :continue · :take · :quit] > ");
      if (answer === null) {
        this.running = true;
        return step;
      }
      const a = answer.trim();
      if (a === "") return step;
      if (a === ":continue" || a === ":c") {
        this.running = true;
        return step;
      }
      if (a === ":quit" || a === ":q") throw new PolicyStopped("quit");
      if (a === ":take" || a === ":t") return this.human.next(ctx);
      this.io.write("answer with an empty line, :continue, :take or :quit\n");
    }
  }
}
