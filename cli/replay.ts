/**
 * `forager replay PATH`: re-run the recorded actions in a fresh sandbox and report, per turn,
 * whether the observations match (durations, the token budget and addresses normalised). The
 * task comes from the run (a run directory or shard) or from the tasks file `forager run` keeps
 * beside its trajectory file; `--tasks` overrides.
 */
import type { Command } from "commander";
import { runEpisode } from "../agent/episode";
import { ReplayPolicy } from "../agent/policy";
import { compareReplay } from "../agent/replay-compare";
import { writeTrajectory } from "../agent/trajectory";
import { childLogger } from "../lib/log";
import { existingPath, intAtLeast } from "./options";
import { EXIT, UsageError } from "./exit-codes";
import { loadTaskReporting } from "./episode-options";
import { readTrajectorySource, sidecarTasksFile, taskFromSource } from "./trajectory-source";

export function registerReplayCommand(program: Command): void {
  program
    .command("replay")
    .description("re-run a recorded trajectory's actions in a fresh sandbox and compare the observations")
    .argument("<path>", "trajectory JSONL file, run directory, or shard RUN/shards/*.jsonl.gz")
    .option("--tasks <file>", "tasks file holding the trajectory's task (default: the run's tasks, or the file forager run wrote beside the trajectory)", existingPath("any", "a tasks file"))
    .option("--task <id>", "run directories and shards: the trajectory of this task")
    .option("--sample <n>", "run directories and shards: this sample (0-based)", intAtLeast(0))
    .option("--index <n>", "which trajectory of those selected (0-based)", intAtLeast(0), 0)
    .option("--image <tag>", "image to run (default: the recorded one)")
    .option("--out <file>", "also save the replayed trajectory")
    .action(async (p: string, o: { tasks?: string; task?: string; sample?: number; index: number; image?: string; out?: string }) => {
      const src = readTrajectorySource(p, { task: o.task, sample: o.sample });
      for (const e of src.errors) console.error(`${e.where}: ${e.message}`);
      const rec = src.items[o.index]?.trajectory;
      if (!rec) throw new UsageError(`no trajectory ${o.index} in ${p}${o.task ? ` for task ${o.task}` : ""} (it holds ${src.items.length})`);
      const task = o.tasks ? await loadTaskReporting(o.tasks, rec.taskId) : taskFromSource(p, rec.taskId);
      if (!task) throw new UsageError(`the task of ${rec.id} (${rec.taskId}) is not known from ${p}: give --tasks FILE (neither a run directory nor ${sidecarTasksFile(p)} holds it)`);
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
      process.exitCode = cmp.same ? EXIT.ok : EXIT.failure;
    });
}
