/**
 * `forager show PATH`: trajectories, readably: a trajectory JSONL file, a forage run directory
 * (`--task`, `--sample`), or a shard (cli/trajectory-source.ts).
 */
import type { Command } from "commander";
import { formatTrajectory } from "../agent/render";
import { intAtLeast } from "./options";
import { EXIT, UsageError } from "./exit-codes";
import { readTrajectorySource } from "./trajectory-source";

export function registerShowCommand(program: Command): void {
  program
    .command("show")
    .description("show recorded trajectories readably: a trajectory file, a run directory, or a shard")
    .argument("<path>", "trajectory JSONL file (forager run), run directory (forager forage), or shard RUN/shards/*.jsonl.gz")
    .option("--task <id>", "only this task's trajectories")
    .option("--sample <n>", "only sample n (0-based; run directories and shards)", intAtLeast(0))
    .option("--index <n>", "only the n-th trajectory of those selected (0-based)", intAtLeast(0))
    .option("--full", "every line of reasoning, actions and observations")
    .option("--json", "print the record(s) as pretty JSON")
    .action((p: string, o: { task?: string; sample?: number; index?: number; full?: boolean; json?: boolean }) => {
      const src = readTrajectorySource(p, { task: o.task, sample: o.sample });
      for (const e of src.errors) console.error(`${e.where}: ${e.message}`);
      const picked = o.index !== undefined ? [src.items[o.index]].filter((t) => t !== undefined) : src.items;
      if (!picked.length) {
        const what = [o.task && `task ${o.task}`, o.sample !== undefined && `sample ${o.sample}`, o.index !== undefined && `index ${o.index}`].filter(Boolean).join(", ");
        throw new UsageError(`no trajectory to show in ${p}${what ? ` for ${what}` : ""}${src.items.length ? ` (it holds ${src.items.length})` : ""}`);
      }
      for (const { trajectory } of picked) {
        console.log(o.json ? JSON.stringify(trajectory, null, 2) : formatTrajectory(trajectory, { full: o.full, width: process.stdout.columns || 120 }));
        console.log("");
      }
      if (src.errors.length) process.exitCode = EXIT.failure;
    });
}
