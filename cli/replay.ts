/**
 * `forager replay TRAJECTORY`: re-run the recorded actions in a fresh sandbox and report, per
 * turn, whether the observations match (durations, the token budget and addresses normalised).
 */
import type { Command } from "commander";
import { runEpisode } from "../agent/episode";
import { ReplayPolicy } from "../agent/policy";
import { compareReplay } from "../agent/replay-compare";
import { loadTask } from "../tasks/files";
import { readTrajectories, writeTrajectory } from "../agent/trajectory";
import { childLogger } from "../lib/log";

export function registerReplayCommand(program: Command): void {
  program
    .command("replay")
    .description("re-run a recorded trajectory's actions in a fresh sandbox and compare the observations")
    .argument("<trajectory>", "trajectory JSONL file")
    .requiredOption("--tasks <file>", "tasks file holding the trajectory's task")
    .option("--index <n>", "which trajectory of the file (0-based)", "0")
    .option("--image <tag>", "image to run (default: the recorded one)")
    .option("--out <file>", "also save the replayed trajectory")
    .action(async (file: string, o: { tasks: string; index: string; image?: string; out?: string }) => {
      const { trajectories, errors } = readTrajectories(file);
      for (const e of errors) console.error(`${file}:${e.line}: ${e.message}`);
      const rec = trajectories[Number(o.index)];
      if (!rec) throw new Error(`no trajectory ${o.index} in ${file}`);
      const task = await loadTask(o.tasks, rec.taskId);
      console.log(`replaying ${rec.id} (${rec.turns.length} turns) of task ${task.id} …`);
      const config = { ...(rec.config as Record<string, unknown>), maxEnvRetries: 0 };
      const t = await runEpisode({ task, policy: new ReplayPolicy(rec), config, image: o.image ?? rec.image, logger: childLogger("replay") });
      const cmp = compareReplay(rec, t);
      for (const c of cmp.turns) {
        const tool = rec.turns[c.index]?.toolName ?? (rec.turns[c.index]?.formatError ? "format error" : "answer");
        if (c.same) console.log(`turn ${c.index + 1} (${tool}): same`);
        else console.log(`turn ${c.index + 1} (${tool}): DIFFERS\n  recorded: ${c.recorded}\n  replayed: ${c.replayed}`);
      }
      console.log(`end: recorded ${rec.endReason}, replayed ${t.endReason}`);
      console.log(cmp.same ? "replay matches the recording" : "replay differs from the recording");
      if (o.out) writeTrajectory(o.out, t);
      process.exitCode = cmp.same ? 0 : 1;
    });
}
