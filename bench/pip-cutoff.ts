/**
 * What `--pip-cutoff` and the pip preflight add to a build's index traffic: a loopback index of
 * `--projects` projects × `--releases` releases (hand-made wheels, test/helpers/pip-index.ts);
 * project pages fetched directly and through the date-filtering view (images/pip-cutoff.ts),
 * interleaved in one run, so the ratio holds on a noisy machine; then one preflight
 * (infer/pip.ts) of every project, as inference runs it before a build.
 * `npm run bench -- pip-cutoff [--projects 40] [--releases 30] [--rounds 5]`.
 */
import { request } from "undici";
import { pipPreflight } from "../infer/pip";
import { SIMPLE_JSON, startCutoffIndex } from "../images/pip-cutoff";
import { startTestIndex, type TestRelease } from "../test/helpers/pip-index";
import { type BenchMain, timed } from "./lib";

const flag = (args: string[], name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};

export const main: BenchMain = async (args) => {
  const projects = flag(args, "projects", 40);
  const releases = flag(args, "releases", 30);
  const rounds = flag(args, "rounds", 5);
  const rel: TestRelease[] = [];
  for (let p = 0; p < projects; p++) {
    for (let r = 0; r < releases; r++) {
      rel.push({ name: `bench-dist-${p}`, version: `1.${r}`, uploaded: new Date(Date.UTC(2015, 0, 1) + r * 90 * 86400_000).toISOString(), files: { [`bench_dist_${p}/__init__.py`]: `V = ${r}\n` } });
    }
  }
  const index = await startTestIndex(rel);
  // The cutoff falls in the middle of each project's history: half the files are dropped.
  const cutoff = new Date(Date.UTC(2015, 0, 1) + (releases / 2) * 90 * 86400_000);
  const view = await startCutoffIndex(index.url, cutoff);
  const page = (base: string, p: number) => request(`${base}bench-dist-${p}/`, { headers: { accept: SIMPLE_JSON } }).then((r) => r.body.text());
  try {
    for (let p = 0; p < projects; p++) await Promise.all([page(index.url, p), page(view.url, p)]);
    let direct = 0;
    let filtered = 0;
    for (let round = 0; round < rounds; round++) {
      for (let p = 0; p < projects; p++) {
        direct += (await timed(() => page(index.url, p))).ms;
        filtered += (await timed(() => page(view.url, p))).ms;
      }
    }
    const n = rounds * projects;
    const reqs = Array.from({ length: projects }, (_, p) => `bench-dist-${p}>=1.0`);
    const pre = await timed(() => pipPreflight(reqs, view.url, { before: cutoff, python: "3.11.2" }));
    console.log(`${n} page fetches of ${releases} files: direct ${(direct / n).toFixed(2)} ms, through the cutoff view ${(filtered / n).toFixed(2)} ms`);
    console.log(`preflight of ${projects} requirements through the view: ${pre.ms.toFixed(0)} ms, ${pre.value.length} missing`);
    return {
      projects,
      releases_per_project: releases,
      page_direct_mean_ms: Math.round((direct / n) * 100) / 100,
      page_cutoff_mean_ms: Math.round((filtered / n) * 100) / 100,
      cutoff_over_direct_ratio: Math.round((filtered / direct) * 100) / 100,
      preflight_ms: Math.round(pre.ms),
      files_dropped: view.stats.dropped,
    };
  } finally {
    await view.close();
    await index.close();
  }
};
