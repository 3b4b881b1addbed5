/**
 * `forager debug`: you are the policy. The sandbox starts from the task's image; you see the issue
 * prompt, then after each action the observation exactly as the model would (the `<output>` and
 * `<budget>` wrapper, or the format error), and the hidden-test result at the end.
 */
import readline from "node:readline";
import type { Command } from "commander";
import { runEpisode } from "../agent/episode";
import { HUMAN_HELP, HumanPolicy, type HumanIO } from "../agent/human";
import { formatSummary } from "../agent/render";
import { loadTask } from "../agent/tasks-file";
import { writeTrajectory } from "../agent/trajectory";
import { childLogger } from "../lib/log";
import { addCommonOptions, configFrom, defaultOut, loadEvaluator, printEvent, type CommonOptions } from "./run";

/** Line input over readline that also works with piped stdin (null at end of input). */
export function stdinIO(): HumanIO & { close(): void } {
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY === true });
  const lines: string[] = [];
  let closed = false;
  let waiting: ((l: string | null) => void) | undefined;
  rl.on("line", (l) => {
    if (waiting) {
      const w = waiting;
      waiting = undefined;
      w(l);
    } else lines.push(l);
  });
  rl.on("close", () => {
    closed = true;
    waiting?.(null);
    waiting = undefined;
  });
  return {
    readLine(prompt: string) {
      process.stdout.write(prompt);
      if (lines.length) return Promise.resolve(lines.shift()!);
      if (closed) return Promise.resolve(null);
      return new Promise((resolve) => (waiting = resolve));
    },
    write: (text: string) => void process.stdout.write(text),
    close: () => rl.close(),
  };
}

export function registerDebugCommand(program: Command): void {
  const cmd = program.command("debug").description("be the policy yourself: type tool calls, see what the model would see");
  addCommonOptions(cmd).action(async (o: CommonOptions) => {
    const task = await loadTask(o.tasks, o.task);
    const config = configFrom(o);
    const evaluator = loadEvaluator();
    const io = stdinIO();
    const policy = new HumanPolicy(io);
    let shownPrompt = false;
    try {
      const t = await runEpisode({
        task,
        policy,
        config,
        evaluator,
        image: o.image,
        logger: childLogger("debug"),
        onEvent: (e) => {
          printEvent(e);
          if (e.type === "sandbox_started" && !shownPrompt) {
            shownPrompt = true;
            console.log("── the issue prompt (user message) ──");
            console.log(task.problemStatement);
            console.log(`\n${HUMAN_HELP}\n`);
          }
        },
        onTurn: (turn) => {
          const role = turn.observationRole === "tool" ? `tool: ${turn.toolName}` : turn.observationRole;
          if (turn.observation !== undefined) console.log(`── ${role} ──\n${turn.observation}\n`);
          else if (turn.finalAnswer) console.log("── final answer accepted ──");
        },
      });
      console.log("\n" + formatSummary(t));
      const out = o.out ?? defaultOut(`debug-${task.id}`);
      writeTrajectory(out, t);
      console.log(`trajectory: ${out}`);
    } finally {
      io.close();
    }
  });
}
