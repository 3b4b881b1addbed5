/**
 * `forager sandbox …`: reap orphaned containers; open a sandbox and drive its tools by hand.
 */
import type { Command } from "commander";
import { reapSandboxes } from "../sandbox/reaper";

export function registerSandboxCommands(program: Command): void {
  const sb = program.command("sandbox").description("forager containers");
  sb.command("reap")
    .description("remove forager containers whose owner process is gone or whose lifetime is over")
    .option("--dry-run", "only list them")
    .action(async (o: { dryRun?: boolean }) => {
      const reaped = await reapSandboxes({ dryRun: o.dryRun });
      if (!reaped.length) {
        console.log("nothing to reap: every forager container has a live owner and time left");
        return;
      }
      for (const r of reaped) console.log(`${o.dryRun ? "would reap" : "reaped"}  ${r.name}  (${r.reason === "expired" ? "lifetime over" : "owner process gone"})`);
      console.log(`${reaped.length} container(s) ${o.dryRun ? "to reap" : "reaped"}`);
    });
}
