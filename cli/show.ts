/**
 * `forager show TRAJECTORY`: a readable rendering of the trajectories of a JSONL file.
 */
import type { Command } from "commander";
import { formatTrajectory } from "../agent/render";
import { readTrajectories } from "../agent/trajectory";

export function registerShowCommand(program: Command): void {
  program
    .command("show")
    .description("show recorded trajectories readably")
    .argument("<trajectory>", "trajectory JSONL file")
    .option("--index <n>", "only the n-th trajectory of the file (0-based)")
    .option("--full", "every line of reasoning, actions and observations")
    .option("--json", "print the record(s) as pretty JSON")
    .action((file: string, o: { index?: string; full?: boolean; json?: boolean }) => {
      const { trajectories, errors } = readTrajectories(file);
      for (const e of errors) console.error(`${file}:${e.line}: ${e.message}`);
      const picked = o.index !== undefined ? [trajectories[Number(o.index)]].filter((t) => t !== undefined) : trajectories;
      if (!picked.length) throw new Error(`no trajectory to show in ${file}`);
      for (const t of picked) {
        console.log(o.json ? JSON.stringify(t, null, 2) : formatTrajectory(t, { full: o.full, width: process.stdout.columns || 120 }));
        console.log("");
      }
      if (errors.length) process.exitCode = 1;
    });
}
