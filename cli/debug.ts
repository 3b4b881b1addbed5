/**
 * `forager debug`: you are the policy. The sandbox starts from the task's image; you see the issue
 * prompt, then after each action the observation exactly as the model would (the `<output>` and
 * `<budget>` wrapper, or the format error), and the hidden-test result at the end.
 */
import readline from "node:readline";
import type { Command } from "commander";
import { runEpisode } from "../agent/episode";
import { HUMAN_HELP, HumanPolicy, type HumanIO } from "../agent/human";
import { OraclePolicy } from "../agent/oracle";
import { HttpPolicy, type Policy } from "../agent/policy";
import { SteppedPolicy } from "../agent/stepper";
import { InferenceClient } from "../inference-client/client";
import { formatSummary } from "../agent/render";
import { writeTrajectory } from "../agent/trajectory";
import { rememberTask } from "./trajectory-source";
import { childLogger } from "../lib/log";
import { addCommonOptions, configFrom, defaultOut, loadEvaluator, loadTaskAndImage, printEvent, useRepos, type CommonOptions } from "./episode-options";

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
  const cmd = program
    .command("debug")
    .description("be the policy yourself (type tool calls, see what the model would see), or step through a policy's episode")
    .option("--step <policy>", "attach to a policy's episode and step through it turn by turn: oracle, or http with --model-url")
    .option("--model-url <url>", "OpenAI-compatible endpoint for --step http")
    .option("--model <name>", "model name for --step http");
  addCommonOptions(cmd).action(async (o: CommonOptions & { step?: string; modelUrl?: string; model?: string }) => {
    useRepos(o);
    const { task, image } = await loadTaskAndImage(o);
    const config = configFrom(o);
    const evaluator = loadEvaluator();
    const io = stdinIO();
    let client: InferenceClient | undefined;
    let policy: Policy = new HumanPolicy(io);
    if (o.step === "oracle") policy = new SteppedPolicy(new OraclePolicy(), io);
    else if (o.step === "http") {
      if (!o.modelUrl) throw new Error("--step http needs --model-url URL");
      client = new InferenceClient({ endpoints: [{ url: o.modelUrl, model: o.model }] });
      policy = new SteppedPolicy(new HttpPolicy(client), io);
    } else if (o.step) throw new Error(`--step takes oracle or http, not ${o.step}`);
    let shownPrompt = false;
    try {
      const t = await runEpisode({
        task,
        policy,
        config,
        evaluator,
        image,
        logger: childLogger("debug"),
        onEvent: (e) => {
          printEvent(e);
          if (e.type === "sandbox_started" && !shownPrompt) {
            shownPrompt = true;
            console.log("── the issue prompt (user message) ──");
            console.log(task.problemStatement);
            if (!o.step) console.log(`\n${HUMAN_HELP}\n`);
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
      rememberTask(out, task);
      console.log(`trajectory: ${out}`);
    } finally {
      io.close();
      await client?.close();
    }
  });
}
