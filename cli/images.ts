/**
 * `forager images …`: the base image (build, ls and prune arrive with the images module).
 */
import type { Command } from "commander";
import { ensureBaseImage } from "../images/base";

export function registerImageCommands(program: Command): void {
  const images = program.command("images").description("executable repository images");
  images
    .command("base")
    .description("make forager's base image when it is missing (pull a configured image, else bootstrap Debian with mmdebstrap)")
    .option("--tag <tag>", "tag to ensure")
    .option("--pull-from <ref>", "registry image to try first (default $FORAGER_BASE_PULL_FROM)")
    .action(async (o: { tag?: string; pullFrom?: string }) => {
      const r = await ensureBaseImage({
        tag: o.tag,
        pullFrom: o.pullFrom,
        onProgress: (p) => process.stderr.write(`[${p.phase}] ${p.message}\n`),
      });
      console.log(`${r.created ? "made" : "present"}: ${r.tag}${r.created ? ` in ${r.seconds.toFixed(1)} s` : ""}`);
    });
}
