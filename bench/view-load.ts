/**
 * view-load: what `forager view` costs on a large run directory. A run of N tasks × K = 2
 * (`--n`, default 1000 tasks: 2000 trajectories of 4 turns, test/helpers/view-fixtures.ts) is
 * written with the orchestrator's ShardWriter in a temporary directory; then, through the server
 * (fastify inject, no socket):
 * - the first `/api/sources/RUN` (scans the shard indexes and reads every trajectory once);
 * - the same request again (files unchanged: the cached overview);
 * - after one more trajectory is committed (rows of the others are cached: one member read);
 * - one `/api/sources/RUN/trajectory?id=` (index scan + one gzip member).
 * Figures: wall times in ms, response bytes.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeRunFiles } from "../orchestrator/run";
import { RunSpecSchema, runPaths } from "../orchestrator/spec";
import { ShardWriter } from "../orchestrator/storage";
import { viewTask, viewTrajectory } from "../test/helpers/view-fixtures";
import { openSources } from "../view/data";
import { startViewServer } from "../view/server";
import { intFlag, round, timed, unknownFlags } from "./lib";

export async function main(args: string[]): Promise<Record<string, number>> {
  const bad = unknownFlags(args, ["n"]);
  if (bad.length) throw new Error(`unknown arguments: ${bad.join(" ")} (known: --n TASKS)`);
  const n = intFlag(args, "n", 1000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-bench-view-"));
  try {
    const runId = "bench-view";
    const tasks = Array.from({ length: n }, (_, i) => viewTask(`example__tiny-calc-${i}`));
    const spec = RunSpecSchema.parse({ runId, runDir: dir, createdAt: new Date().toISOString(), samples: 2, policy: { kind: "oracle" } });
    await writeRunFiles(spec, tasks);
    const w = new ShardWriter(runPaths(dir).shards, { writerId: "bench" });
    const write = await timed(() => Promise.all(tasks.flatMap((t) => [w.append(viewTrajectory(runId, t, 0, true), 0), w.append(viewTrajectory(runId, t, 1, false), 1)])));
    await w.close();
    const shardBytes = fs.readdirSync(runPaths(dir).shards).reduce((s, f) => s + fs.statSync(path.join(runPaths(dir).shards, f)).size, 0);
    console.log(`wrote ${2 * n} trajectories (${(shardBytes / 1e6).toFixed(1)} MB of shards) in ${write.ms.toFixed(0)} ms`);

    const server = await startViewServer({ sources: openSources([dir]), port: 0 });
    try {
      const get = (url: string) => timed(async () => server.app.inject({ method: "GET", url, headers: { host: "127.0.0.1" } }));
      const id = path.basename(dir);
      const first = await get(`/api/sources/${id}`);
      const cached = await get(`/api/sources/${id}`);
      const extra = new ShardWriter(runPaths(dir).shards, { writerId: "bench-extra" });
      await extra.append(viewTrajectory(runId, viewTask("example__tiny-calc-extra"), 0, true), 0);
      await extra.close();
      const grown = await get(`/api/sources/${id}`);
      const one = await get(`/api/sources/${id}/trajectory?id=${encodeURIComponent(`${runId}/example__tiny-calc-7/1`)}`);
      for (const r of [first, cached, grown, one]) if (r.value.statusCode !== 200) throw new Error(`HTTP ${r.value.statusCode}: ${r.value.body.slice(0, 200)}`);
      const figures = {
        trajectories_count: 2 * n,
        shard_bytes: shardBytes,
        overview_first_ms: round(first.ms, 1),
        overview_cached_ms: round(cached.ms, 1),
        overview_after_one_commit_ms: round(grown.ms, 1),
        overview_response_bytes: Buffer.byteLength(first.value.body),
        trajectory_ms: round(one.ms, 1),
        trajectory_response_bytes: Buffer.byteLength(one.value.body),
      };
      console.log(
        `overview: first ${figures.overview_first_ms} ms, cached ${figures.overview_cached_ms} ms, after one commit ${figures.overview_after_one_commit_ms} ms (${(figures.overview_response_bytes / 1e6).toFixed(2)} MB); one trajectory ${figures.trajectory_ms} ms`,
      );
      return figures;
    } finally {
      await server.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
