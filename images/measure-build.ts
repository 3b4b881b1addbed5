/**
 * Measure cold and cached image builds for one SWE-bench instance, and disk per layer.
 * A measuring script (not a test, not part of the library):
 *
 *   npx tsx images/measure-build.ts --instance pallets__flask-5014 \
 *     --source /path/to/flask/clone [--dataset file.jsonl] [--base] [--keep]
 *
 * Cold means nothing of env or instance is reused: a per-run nonce is put in the spec's `env`,
 * which changes the env hash and the parent of every later Dockerfile step (no layer cache).
 * `--base` also bootstraps a throw-away base image (`forager/base:measure-<nonce>`) to time
 * mmdebstrap + import. Images made here are removed at the end unless `--keep`.
 * Prints one JSON object: seconds per phase and bytes per layer.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensureBaseImage } from "./base";
import { buildInstanceImage } from "./build";
import { docker, inspectImage } from "./docker";
import { specForSweBench } from "./swebench-specs";
import { DEFAULT_BASE_IMAGE } from "./spec";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

async function main(): Promise<void> {
  const instance = arg("instance");
  const source = arg("source");
  const dataset = arg("dataset") ?? "/work/shared/datasets/swe-bench-verified.test.jsonl";
  if (!instance || !source) throw new Error("usage: --instance ID --source PATH [--dataset FILE] [--base] [--keep]");
  const row = fs
    .readFileSync(dataset, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { instance_id: string; repo: string; version: string; base_commit: string })
    .find((r) => r.instance_id === instance);
  if (!row) throw new Error(`${instance} not in ${dataset}`);
  const nonce = `${Date.now()}`;
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-measure-"));
  const made: string[] = [];
  const out: Record<string, unknown> = { instance, repo: row.repo, version: row.version, cpus: os.cpus().length };

  let baseTag = DEFAULT_BASE_IMAGE;
  if (flag("base")) {
    const b = await ensureBaseImage({ tag: `forager/base:measure-${nonce}`, stateDir });
    made.push(b.tag);
    baseTag = b.tag;
    out.baseBootstrapSeconds = b.seconds;
  } else {
    await ensureBaseImage({ stateDir });
  }

  const spec = specForSweBench(row, { source: { type: "path", path: source } });
  spec.baseImage = baseTag;
  spec.env = { ...spec.env, FORAGER_MEASURE_NONCE: nonce };
  const phases: Record<string, number> = {};
  let last = Date.now();
  const cold = await buildInstanceImage(spec, {
    stateDir,
    onProgress: (p) => {
      if (p.phase === "done" || (p.phase === "prepare" && p.message.startsWith("prepared"))) {
        phases[`${p.layer}.${p.phase}`] = (Date.now() - last) / 1000;
        last = Date.now();
      }
    },
  });
  made.unshift(cold.tag, cold.env.tag);
  const cached = await buildInstanceImage(spec, { stateDir });

  const base = await inspectImage(baseTag);
  const env = await inspectImage(cold.env.tag);
  const inst = await inspectImage(cold.tag);
  Object.assign(out, {
    cold: { totalSeconds: cold.seconds, envSeconds: cold.env.seconds, phases },
    cached: { totalSeconds: cached.seconds, cached: cached.cached && cached.env.cached },
    bytes: {
      base: base!.Size,
      envOwn: env!.Size - base!.Size,
      instanceOwn: inst!.Size - env!.Size,
      instanceTotal: inst!.Size,
    },
    tags: { env: cold.env.tag, instance: cold.tag },
  });
  console.log(JSON.stringify(out, null, 2));

  if (!flag("keep")) {
    for (const t of made) await docker().getImage(t).remove().catch(() => undefined);
  }
  fs.rmSync(stateDir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
