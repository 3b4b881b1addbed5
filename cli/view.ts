/**
 * `forager view [RUN_DIR | TRAJECTORY_FILE ...]`: runs, trajectories, tasks and queues in the
 * browser (view/). Loopback by default; any other address requires the printed token.
 */
import type { Command } from "commander";
import { openSources } from "../view/data";
import { startViewServer } from "../view/server";

export function registerViewCommand(program: Command): void {
  program
    .command("view")
    .description("runs, trajectories, tasks and queues in the browser (a local web app)")
    .argument("[paths...]", "run directories, directories of runs, or trajectory JSONL files (default: runs/)")
    .option("--port <n>", "TCP port (0: any free one)", "8080")
    .option("--host <addr>", "address to bind; not loopback → a token is required", "127.0.0.1")
    .option("--redis <url>", "the runs' Redis: live figures and Bull Board under /queues")
    .action(async (paths: string[], o: { port: string; host: string; redis?: string }) => {
      const sources = openSources(paths.length ? paths : ["runs"]);
      const server = await startViewServer({ sources, host: o.host, port: Number(o.port), redisUrl: o.redis });
      console.log(`forager view: ${sources.length} source(s): ${sources.map((s) => s.id).join(", ")}`);
      if (server.token) console.log(`token: ${server.token} (bound to ${o.host}: every request needs it)`);
      console.log(`open ${server.openUrl}${o.redis ? `  (queues: ${server.url}/queues)` : ""}`);
      const stop = () => void server.close().finally(() => process.exit(0));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
