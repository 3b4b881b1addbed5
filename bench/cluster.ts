/**
 * cluster: forager across hosts, measured on the multi-host setup of the tests
 * (test/helpers/cluster.ts: network namespaces as hosts, an engine each, Redis, Debian's
 * docker-registry and the submitter in a hub namespace; traffic only between them).
 *
 * 1. Images, build versus pull: `--images` commits of a real repository (`--repo`, default the
 *    pallets/flask mirror; the instance layer is the repository with its history, as a SWE-bench
 *    instance image's is; no Debian packages: the hosts have no network but each other) are had by
 *    h1 (built and pushed: base, env, instance) and then by h2 (pulled) through
 *    images/registry.ts obtainInstanceImage. Per image: build seconds, push seconds, pull seconds
 *    and bytes pulled; the first pull of a host also fetches what it lacks of base and env (cold),
 *    later ones only their instance layers (warm).
 * 2. Rollouts per minute with one worker host, then with two: a scripted OpenAI-compatible model in
 *    the hub (`--latency-ms` per answer, each a bash `ls`), `--tasks` tiny tasks (two images) ×
 *    `--samples`, `--turns` turns each (no submit: no evaluation), `--slots` rollout slots per host.
 *    Images are on the hosts before the timed runs (a warm-up run on h1; h2 obtains them first).
 *
 *   npm run bench -- cluster [--images 3] [--repo /work/.mirror/pallets+flask/repo] [--tasks 4]
 *                            [--samples 4] [--turns 6] [--latency-ms 500] [--slots 3]
 *
 * Needs root, iproute2, util-linux, tini, dockerd, redis-server and docker-registry (as the
 * multi-host test). Figures (units in the names) end the output as one JSON line.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { clusterTasks, clusterUnavailable, HUB_IP, makeClusterRepo, TestCluster, TSX, type ClusterHost } from "../test/helpers/cluster";
import { intFlag, round, SCRIPTED_MODEL_ENV, stringFlag, unknownFlags, type BenchMain } from "./lib";

const ACTION = "Let me look at the files.\n</think>\n<tool: bash>\nls\n</tool>";

interface Obtained {
  tag: string;
  how: "local" | "pulled" | "built";
  seconds: number;
  bytesPulled?: number;
  events: Array<{ kind: string; tag: string; bytes?: number; seconds?: number }>;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

export const main: BenchMain = async (args) => {
  const bad = unknownFlags(args, ["images", "repo", "tasks", "samples", "turns", "latency-ms", "slots"]);
  if (bad.length) throw new Error(`unknown flag(s): ${bad.join(" ")}`);
  const why = clusterUnavailable();
  if (why) throw new Error(`the cluster bench cannot run here: ${why}`);
  const nImages = intFlag(args, "images", 3);
  const repo = stringFlag(args, "repo") ?? "/work/.mirror/pallets+flask/repo";
  const nTasks = intFlag(args, "tasks", 4);
  const samples = intFlag(args, "samples", 4);
  const turns = intFlag(args, "turns", 6);
  const latencyMs = intFlag(args, "latency-ms", 500);
  const slots = intFlag(args, "slots", 3);
  if (!fs.existsSync(repo)) throw new Error(`--repo ${repo} does not exist`);
  console.log(`load average at start: ${fs.readFileSync("/proc/loadavg", "utf8").trim()}`);

  const started = Date.now();
  const c = await TestCluster.start({ hosts: 2, onProgress: (l) => console.log(`[cluster +${((Date.now() - started) / 1000).toFixed(0)} s] ${l}`) });
  try {
    const [h1, h2] = c.hosts as [ClusterHost, ClusterHost];

    // ---- 1. images: built on h1 (and pushed), pulled by h2 ----
    const commits = execFileSync("git", ["-C", repo, "tag", "--sort=-creatordate"], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .slice(0, nImages)
      .map((t) => execFileSync("git", ["-C", repo, "rev-parse", `${t}^{commit}`], { encoding: "utf8" }).trim());
    const name = (path.basename(repo) === "repo" ? path.basename(path.dirname(repo)) : path.basename(repo)).replace("+", "/").replace(/\.git$/, "");
    const specs = commits.map((commit) => ({ repo: name, commit, source: { type: "path", path: repo }, testCommand: "pytest -rA", logParser: "pytest" }));
    const obtain = async (h: ClusterHost): Promise<Obtained[]> => {
      const file = path.join(h.dir, "specs.json");
      fs.writeFileSync(file, JSON.stringify(specs));
      const r = await c.tsOnHost(h, "test/helpers/cluster-obtain.ts", [file], 1_800_000);
      if (r.code !== 0) throw new Error(`obtaining images on ${h.name} failed: ${r.stderr.slice(-2000)}`);
      return r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Obtained);
    };
    console.log(`images: ${commits.length} commits of ${name}, built on h1 …`);
    const built = await obtain(h1);
    const pulled = await obtain(h2);
    const ev = (o: Obtained, kind: string) => o.events.filter((e) => e.kind === kind && e.tag === o.tag);
    for (const [i, o] of built.entries()) {
      const b = ev(o, "built")[0];
      const p = ev(o, "pushed")[0];
      const q = pulled[i]!;
      console.log(`  ${o.tag}: ${o.how} in ${b?.seconds?.toFixed(1)} s, pushed in ${p?.seconds?.toFixed(1)} s (${((p?.bytes ?? 0) / 1e6).toFixed(1)} MB); h2 ${q.how} in ${q.seconds.toFixed(1)} s, ${((q.bytesPulled ?? 0) / 1e6).toFixed(1)} MB`);
    }
    if (built.some((o) => o.how !== "built") || pulled.some((o) => o.how !== "pulled")) throw new Error("expected every image built on h1 and pulled on h2 (a stale cache?)");
    const buildS = built.map((o) => ev(o, "built")[0]?.seconds ?? o.seconds);
    const pushS = built.map((o) => ev(o, "pushed")[0]?.seconds ?? 0);
    const pullS = pulled.map((o) => o.seconds);
    const pullBytes = pulled.map((o) => o.bytesPulled ?? 0);
    const warm = pulled.slice(1);
    const layerBytes = async (h: ClusterHost, tag: string) => {
      const img = await h.engine.getImage(tag).inspect();
      const env = await h.engine.getImage(img.Config.Labels?.["forager.env"] ?? "").inspect();
      return img.Size - env.Size;
    };
    const instanceLayer = mean(await Promise.all(built.map((o) => layerBytes(h1, o.tag))));

    // ---- 2. rollouts per minute: one host, then two ----
    const model = c.hubSpawn([process.execPath, "--import", TSX, path.resolve("bench/scripted-model.ts")], { [SCRIPTED_MODEL_ENV]: String(latencyMs), FORAGER_BENCH_MODEL_HOST: HUB_IP, FORAGER_BENCH_MODEL_TEXT: ACTION });
    const modelUrl = await new Promise<string>((resolve, reject) => {
      let buf = "";
      model.stdout!.on("data", (d: Buffer) => {
        buf += d.toString();
        const m = /(http:\/\/\S+)\n/.exec(buf);
        if (m) resolve(m[1]!);
      });
      model.once("exit", (code) => reject(new Error(`scripted model exited (${code})`)));
    });
    const { repo: tinyRepo, commits: tinyCommits } = makeClusterRepo(c.hubDir, Math.max(1, Math.ceil(nTasks / 2)));
    const tasks = clusterTasks(tinyRepo, tinyCommits).slice(0, nTasks);
    const tasksFile = path.join(c.hubDir, "tasks.jsonl");
    fs.writeFileSync(tasksFile, tasks.map((t) => JSON.stringify(t)).join("\n") + "\n");
    const forage = async (runId: string, k: number) => {
      const run = c.forageInHub(
        ["forage", "--redis", c.redisUrl, "--registry", c.registry, "--tasks", tasksFile, "--samples", String(k), "--out", path.join(c.hubDir, "runs", runId), "--storage", "redis", "--model-url", modelUrl, "--model", "scripted", "--max-turns", String(turns), "--run-id", runId],
        { timeoutMs: 1_800_000, log: path.join(c.hubDir, `forage-${runId}.log`) },
      );
      const r = await run.done;
      if (r.code !== 0) throw new Error(`forage ${runId} exited ${r.code}: ${fs.readFileSync(path.join(c.hubDir, `forage-${runId}.log`), "utf8").slice(-2000)}`);
      const s = JSON.parse(fs.readFileSync(path.join(c.hubDir, "runs", runId, "summary.json"), "utf8")) as { trajectories: number; wallSeconds: number; failed: number; turns: number };
      const perMin = (60 * s.trajectories) / s.wallSeconds;
      console.log(`  ${runId}: ${s.trajectories} rollouts (${s.failed} failed) in ${s.wallSeconds.toFixed(1)} s: ${perMin.toFixed(1)} rollouts/min`);
      return { ...s, perMin };
    };
    const workerArgs = ["--concurrency", String(slots), "--eval-concurrency", "1"];
    console.log(`rollouts: ${tasks.length} tasks × ${samples} samples, ${turns} turns, model ${latencyMs} ms per answer, ${slots} slots per host`);
    await c.startWorker(h1, workerArgs);
    await forage("warm-1", 1);
    const one = await forage("one-host", samples);
    // h2 gets the images before it joins (as a host that has been working a while would have them).
    const runTasks = fs.readFileSync(path.join(c.hubDir, "runs", "one-host", "tasks.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { image: unknown }).image);
    fs.writeFileSync(path.join(h2.dir, "specs.json"), JSON.stringify(runTasks));
    const pre = await c.tsOnHost(h2, "test/helpers/cluster-obtain.ts", [path.join(h2.dir, "specs.json")]);
    if (pre.code !== 0) throw new Error(`h2 could not obtain the run's images: ${pre.stderr.slice(-1000)}`);
    await c.startWorker(h2, workerArgs);
    const two = await forage("two-hosts", samples);
    model.kill("SIGTERM");

    return {
      images_count: built.length,
      build_s: round(mean(buildS), 2),
      push_s: round(mean(pushS), 2),
      pull_cold_s: round(pullS[0]!, 2),
      pull_warm_s: round(mean(warm.map((o) => o.seconds)), 2),
      build_vs_pull_ratio: round(mean(buildS) / Math.max(0.001, mean(warm.map((o) => o.seconds))), 2),
      pull_cold_bytes: pullBytes[0]!,
      pull_warm_bytes_per_image: Math.round(mean(warm.map((o) => o.bytesPulled ?? 0))),
      instance_layer_bytes: Math.round(instanceLayer),
      rollouts_per_min_1host: round(one.perMin, 2),
      rollouts_per_min_2hosts: round(two.perMin, 2),
      scaling_2hosts_ratio: round(two.perMin / one.perMin, 3),
      rollouts_per_phase_count: one.trajectories,
      failed_count: one.failed + two.failed,
    };
  } finally {
    await c.close();
    const left = await TestCluster.leftovers(c.id, c.dir);
    if (left.length) console.error(`left behind: ${left.join("; ")}`);
  }
};
