/**
 * `forager images …`: the base image, instance builds for a SWE-bench dataset, listing with
 * disk use, and pruning by age or disuse.
 */
import type { Command } from "commander";
import { BASE_SUITES, type BaseSuite, ensureBaseImage } from "../images/base";
import { buildInstanceImage, listImages, pruneImages } from "../images/build";
import { formatRegistry, obtainInstanceImage, parseRegistryOption } from "../images/registry";
import { knownIssue, loadSweBenchSpecs, networkRequirement, specForSweBench } from "../images/swebench-specs";
import { findRepository } from "../rewards/eval-run";
import { loadSweBench } from "../tasks/swebench";
import { registerInferCommand } from "./infer";
import { modelSetupAgent } from "../infer/setup-agent";

/** Bytes → "1.23 GB" (decimal units, as docker prints). */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}

const day = (iso?: string) => (iso ? iso.slice(0, 16).replace("T", " ") : "-");

export function registerImageCommands(program: Command): void {
  const images = program.command("images").description("executable repository images");
  registerInferCommand(images, modelSetupAgent);
  images
    .command("base")
    .description("make forager's base image when it is missing (pull a configured image, else bootstrap Debian with mmdebstrap)")
    .option("--tag <tag>", "tag to ensure")
    .option("--pull-from <ref>", "registry image to try first (default $FORAGER_BASE_PULL_FROM)")
    .option("--suite <suite>", `Debian suite (${Object.keys(BASE_SUITES).join(", ")}; default bookworm)`)
    .action(async (o: { tag?: string; pullFrom?: string; suite?: string }) => {
      if (o.suite && !(o.suite in BASE_SUITES)) throw new Error(`--suite ${o.suite}: one of ${Object.keys(BASE_SUITES).join(", ")}`);
      const r = await ensureBaseImage({
        tag: o.tag,
        ...(o.suite ? { suite: o.suite as BaseSuite } : {}),
        pullFrom: o.pullFrom,
        onProgress: (p) => process.stderr.write(`[${p.phase}] ${p.message}\n`),
      });
      console.log(`${r.created ? "made" : "present"}: ${r.tag}${r.created ? ` in ${r.seconds.toFixed(1)} s` : ""}`);
    });

  images
    .command("build")
    .description("build (or find in the cache) the env and instance images of SWE-bench instances")
    .requiredOption("--dataset <file>", "SWE-bench dataset (JSON or JSONL)")
    .option("--instances <ids>", "comma-separated instance ids (default: all)")
    .requiredOption("--repos <dir>", "repositories: DIR/owner+name/repo, DIR/owner+name, DIR/owner__name or DIR/owner/name")
    .option("--spec-table <file>", "image spec table (default images/swebench-specs.json)")
    .option("--state-dir <dir>", "image state dir")
    .option("--registry <host:port[/ns]>", "cluster registry HOST:PORT[/NAMESPACE] (also FORAGER_REGISTRY): pull an image the registry has, else build it and push it (base, env and instance)")
    .action(async (o: { dataset: string; instances?: string; repos: string; specTable?: string; stateDir?: string; registry?: string }) => {
      const registry = parseRegistryOption(o.registry);
      const table = loadSweBenchSpecs(o.specTable);
      const { rows } = await loadSweBench(o.dataset);
      const wanted = o.instances ? new Set(o.instances.split(",").map((s) => s.trim())) : undefined;
      let failed = 0;
      for (const row of rows.filter((r) => !wanted || wanted.has(r.instance_id))) {
        const id = row.instance_id;
        const skip = networkRequirement(id, table) ?? knownIssue(id, table);
        if (skip) {
          console.log(`skip   ${id}: ${skip}`);
          continue;
        }
        const repo = findRepository(o.repos, row.repo);
        if (!repo) {
          console.log(`skip   ${id}: repository ${row.repo} not found under ${o.repos}`);
          continue;
        }
        try {
          const spec = specForSweBench({ ...row, version: row.version ?? "" }, { table, source: { type: "path", path: repo } });
          const build = {
            ...(o.stateDir ? { stateDir: o.stateDir } : {}),
            onProgress: (p: { layer: string; phase: string; step?: number; message: string }) => {
              if (p.phase !== "build" || p.step === undefined) process.stderr.write(`  [${p.layer} ${p.phase}] ${p.message}\n`);
            },
          };
          if (registry) {
            const r = await obtainInstanceImage(spec, registry, {
              build,
              onEvent: (e) => {
                if (e.kind !== "build" && e.kind !== "local") process.stderr.write(`  [${e.kind}] ${e.message}\n`);
              },
            });
            const how = { local: "here  ", pulled: "pulled", built: "built " }[r.how];
            console.log(`${how} ${id}: ${r.tag} (${r.seconds.toFixed(1)} s${r.bytesPulled !== undefined ? `, ${(r.bytesPulled / 1e6).toFixed(1)} MB` : ""}; in ${formatRegistry(registry)})`);
            continue;
          }
          const r = await buildInstanceImage(spec, build);
          console.log(`${r.cached ? "cached" : "built "} ${id}: ${r.tag} (${r.seconds.toFixed(1)} s)`);
        } catch (err) {
          failed++;
          console.log(`FAIL   ${id}: ${(err as Error).message.split("\n")[0]}`);
        }
      }
      process.exitCode = failed ? 1 : 0;
    });

  images
    .command("ls")
    .description("forager images with the disk each adds (shared layers counted once) and the total")
    .option("--state-dir <dir>", "image state dir")
    .action(async (o: { stateDir?: string }) => {
      const l = await listImages(o.stateDir ? { stateDir: o.stateDir } : {});
      console.log(`${"KIND".padEnd(9)}${"OWN".padStart(10)}${"SIZE".padStart(10)}  ${"CREATED".padEnd(17)} ${"LAST USED".padEnd(17)} TAG`);
      for (const i of l.images) {
        console.log(
          `${i.kind.padEnd(9)}${formatBytes(i.ownBytes).padStart(10)}${formatBytes(i.sizeBytes).padStart(10)}  ${day(i.created).padEnd(17)} ${day(i.lastUsed).padEnd(17)} ${i.tags[0] ?? i.id.slice(7, 19)}${i.containers ? ` (${i.containers} container(s))` : ""}`,
        );
      }
      const k = l.byKind;
      console.log(
        `total ${formatBytes(l.totalBytes)} in ${l.images.length} image(s): base ${k.base.count} (${formatBytes(k.base.bytes)}), ` +
          `env ${k.env.count} (${formatBytes(k.env.bytes)}), instance ${k.instance.count} (${formatBytes(k.instance.bytes)})`,
      );
    });

  images
    .command("prune")
    .description("remove env and instance images by age and/or disuse (never images in use or with dependents)")
    .option("--older-than-days <n>", "created more than N days ago")
    .option("--unused-days <n>", "not used for N days")
    .option("--kind <kind>", "only base, env or instance")
    .option("--dry-run", "list what would be removed", false)
    .option("--state-dir <dir>", "image state dir")
    .action(async (o: { olderThanDays?: string; unusedDays?: string; kind?: string; dryRun: boolean; stateDir?: string }) => {
      const kind = o.kind as "base" | "env" | "instance" | undefined;
      if (kind && !["base", "env", "instance"].includes(kind)) throw new Error(`--kind: expected base, env or instance, got ${kind}`);
      const r = await pruneImages({
        dryRun: o.dryRun,
        ...(o.olderThanDays !== undefined ? { olderThanDays: Number(o.olderThanDays) } : {}),
        ...(o.unusedDays !== undefined ? { unusedDays: Number(o.unusedDays) } : {}),
        ...(kind ? { kind } : {}),
        ...(o.stateDir ? { stateDir: o.stateDir } : {}),
      });
      for (const i of r.removed) console.log(`${r.dryRun ? "would remove" : "removed"} ${i.tags[0] ?? i.id} (${formatBytes(i.ownBytes)})`);
      for (const s of r.skipped) console.log(`kept ${s.image.tags[0] ?? s.image.id}: ${s.reason}`);
      console.log(`${r.dryRun ? "would free" : "freed"} ${formatBytes(r.freedBytes)} (${r.removed.length} image(s))`);
    });
}
