/**
 * A loopback pip index of a real pure-Python project's releases, for trying `images infer
 * --pip-index` where no index answers (this machine): one wheel per release tag, made from the
 * tag's source files (no build backend runs), "uploaded" at the tag's committer date (PEP 700).
 * Serves PEP 691 JSON and PEP 503 HTML (test/helpers/pip-index.ts) until killed.
 *
 *   npx tsx test/helpers/local-index.ts --repo DIR --name DIST --packages src/attr,src/attrs \
 *     [--tags REGEX] [--port 8765]
 *
 * The wheels carry only Name and Version (no Requires-Dist, no Requires-Python): right for a
 * project with no runtime dependencies, such as attrs.
 */
import { execFileSync } from "node:child_process";
import { Command } from "commander";
import { startTestIndex, type TestRelease } from "./pip-index";

const git = (dir: string, args: string[]) => execFileSync("git", ["-C", dir, ...args], { encoding: "utf8", maxBuffer: 1 << 28 });

const o = new Command()
  .requiredOption("--repo <dir>", "a clone with the project's release tags")
  .requiredOption("--name <dist>", "distribution name")
  .requiredOption("--packages <dirs>", "comma-separated package directories in the tree (their parent is site-packages)")
  .option("--tags <regex>", "release tags to include", "^v?\\d+(\\.\\d+)+$")
  .option("--port <n>", "port on 127.0.0.1", Number, 8765)
  .parse()
  .opts<{ repo: string; name: string; packages: string; tags: string; port: number }>();

const releases: TestRelease[] = [];
for (const tag of git(o.repo, ["tag"]).split("\n").filter((t) => new RegExp(o.tags).test(t))) {
  const dirs = o.packages.split(",");
  const paths = git(o.repo, ["ls-tree", "-r", "--name-only", tag, "--", ...dirs]).split("\n").filter((p) => p.endsWith(".py") || p.endsWith(".pyi") || p.endsWith("py.typed"));
  if (!paths.length) continue;
  const files: Record<string, string> = {};
  for (const p of paths) {
    const root = dirs.find((d) => p.startsWith(`${d}/`))!;
    const rel = p.slice(root.length - root.split("/").pop()!.length);
    files[rel] = git(o.repo, ["show", `${tag}:${p}`]);
  }
  releases.push({ name: o.name, version: tag.replace(/^v/, ""), uploaded: new Date(git(o.repo, ["log", "-1", "--format=%cI", tag]).trim()).toISOString(), files });
}
releases.sort((a, b) => a.uploaded.localeCompare(b.uploaded));
const index = await startTestIndex(releases, { port: o.port });
for (const r of releases) console.log(`${r.name} ${r.version}\tuploaded ${r.uploaded}\t${Object.keys(r.files).length} files`);
console.log(`serving ${releases.length} releases of ${o.name} at ${index.url}`);
