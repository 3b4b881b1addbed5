/**
 * Image build: cold and cached times for one SWE-bench instance's images, and disk per layer.
 *
 *   npm run bench -- image-build [--instance pallets__flask-5014] [--repos /work/.mirror]
 *                                [--dataset FILE] [--base] [--keep]
 *
 * Cold means nothing of env or instance is reused: a per-run nonce in the spec's `env` changes
 * the env hash and the parent of every later Dockerfile step (no layer cache). `--base` also
 * bootstraps a throw-away base image to time mmdebstrap + import. Images made here are removed
 * at the end unless `--keep`. Figures: seconds per phase, MB per layer.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensureBaseImage } from "../images/base";
import { buildInstanceImage } from "../images/build";
import { docker, inspectImage } from "../images/docker";
import { specForSweBench } from "../images/swebench-specs";
import { DEFAULT_BASE_IMAGE } from "../images/spec";
import { findRepository } from "../rewards/eval-run";
import type { BenchMain } from "./lib";

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

export const main: BenchMain = async (args) => {
  const instance = arg(args, "instance") ?? "pallets__flask-5014";
  const repos = arg(args, "repos") ?? process.env.FORAGER_REPOS ?? "/work/.mirror";
  const dataset = arg(args, "dataset") ?? path.resolve("../shared/datasets/swe-bench-verified.test.jsonl");
  const row = fs
    .readFileSync(dataset, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { instance_id: string; repo: string; version: string; base_commit: string })
    .find((r) => r.instance_id === instance);
  if (!row) throw new Error(`${instance} not in ${dataset}`);
  const source = findRepository(repos, row.repo);
  if (!source) throw new Error(`no clone of ${row.repo} under ${repos}`);
  const nonce = `${Date.now()}`;
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-measure-"));
  const made: string[] = [];
  const figures: Record<string, number> = {};
  const mb = (bytes: number): number => Math.round(bytes / 1e5) / 10;
  try {
    let baseTag = DEFAULT_BASE_IMAGE;
    if (args.includes("--base")) {
      const b = await ensureBaseImage({ tag: `forager/base:measure-${nonce}`, stateDir });
      made.push(b.tag);
      baseTag = b.tag;
      figures.base_bootstrap_s = b.seconds;
    } else {
      await ensureBaseImage({ stateDir });
    }
    const spec = specForSweBench(row, { source: { type: "path", path: source } });
    spec.baseImage = baseTag;
    spec.env = { ...spec.env, FORAGER_MEASURE_NONCE: nonce };
    console.log(`${instance} (${row.repo} ${row.version}) from ${source}: cold build …`);
    let last = Date.now();
    const phases: Record<string, number> = {};
    const cold = await buildInstanceImage(spec, {
      stateDir,
      onProgress: (p) => {
        if (p.phase === "done" || (p.phase === "prepare" && p.message.startsWith("prepared"))) {
          phases[`${p.layer}_${p.phase}`] = (Date.now() - last) / 1000;
          last = Date.now();
        }
      },
    });
    made.unshift(cold.tag, cold.env.tag);
    console.log("cached build …");
    const cached = await buildInstanceImage(spec, { stateDir });
    const base = await inspectImage(baseTag);
    const env = await inspectImage(cold.env.tag);
    const inst = await inspectImage(cold.tag);
    Object.assign(figures, {
      env_cold_s: cold.env.seconds,
      instance_cold_s: cold.seconds - cold.env.seconds,
      cold_total_s: cold.seconds,
      cached_total_s: cached.seconds,
      cached_rebuilt_nothing: cached.cached && cached.env.cached ? 1 : 0,
      base_mb: mb(base!.Size),
      env_layer_mb: mb(env!.Size - base!.Size),
      instance_layer_mb: mb(inst!.Size - env!.Size),
    });
    for (const [k, v] of Object.entries(phases)) console.log(`  ${k}: ${v.toFixed(1)} s`);
    console.log(`cold ${cold.seconds.toFixed(1)} s, cached ${cached.seconds.toFixed(3)} s; env layer ${figures.env_layer_mb} MB, instance layer ${figures.instance_layer_mb} MB`);
    return figures;
  } finally {
    if (!args.includes("--keep")) for (const t of made) await docker().getImage(t).remove().catch(() => undefined);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
};
