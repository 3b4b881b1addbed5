/**
 * forager on several hosts, real parts, one machine (test/helpers/cluster.ts): a hub network
 * namespace with Redis, Debian's docker-registry and the submitting `forager forage --redis
 * --registry --storage redis`; two worker hosts, each a network + PID + mount + UTS namespace with
 * its own Docker engine (own data root and socket, an image store holding only the base image) and
 * a `forager worker`. The hub's files (repository, run directory) are hidden from the hosts.
 *
 * 1. A run of 2 images × 2 tasks × K=2 completes; episodes ran on both hosts.
 * 2. Each instance image was built exactly once in the cluster and pulled by the other host.
 * 3. kill -9 of a host (its init: worker, engine, sandboxes at once) while its episodes run, then
 *    of the other host's worker alone (its engine and sandboxes stay): `forager sandbox reap
 *    --dry-run` names the orphaned sandboxes, the restarted workers' reaper removes them, the host
 *    that died comes back on its data root, and the run completes with every sample exactly once
 *    (0 lost, 0 duplicated); no sandbox, running mark or build lock is left.
 * 4. The registry down while a new image is built and pulled: workers say so and retry; the run
 *    completes once it is back, the image still built once.
 *
 * Needs root, iproute2, util-linux (nsenter, unshare), tini, dockerd, redis-server and
 * docker-registry; runs when FORAGER_MULTIHOST=1 (`.ci/run` sets it), in ~5–8 min here.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from "vitest";
import { LABELS } from "../sandbox/config";
import { scanShards } from "../orchestrator/storage";
import { clusterTasks, clusterUnavailable, makeClusterRepo, TestCluster, TSX, type ClusterHost } from "./helpers/cluster";

const enabled = process.env.FORAGER_MULTIHOST === "1";
const unavailable = enabled ? clusterUnavailable() : "FORAGER_MULTIHOST is not 1";
if (enabled && unavailable) throw new Error(`FORAGER_MULTIHOST=1 but the multi-host test cannot run here: ${unavailable}`);

interface StatusJson {
  workers: Array<{ id: string; host: string; status: string; slots: { rollouts: number }; finished: { rollouts: number; evaluations: number }; images: { built: number; pulled: number; bytesPulled: number }; ageSeconds: number; lastProblem?: { message: string } }>;
  images: Record<string, { built: string[]; pulled: string[]; pushed: string[] }>;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

describe.skipIf(unavailable !== undefined)("forager on two worker hosts (network namespaces, an engine each, a registry)", () => {
  let c: TestCluster;
  let h1: ClusterHost;
  let h2: ClusterHost;
  let commits: string[];
  let repo: string;
  const started = Date.now();

  beforeAll(async () => {
    c = await TestCluster.start({ hosts: 2, lockSeconds: 10, onProgress: (l) => console.log(`[cluster +${((Date.now() - started) / 1000).toFixed(0)} s] ${l}`) });
    [h1, h2] = c.hosts as [ClusterHost, ClusterHost];
    ({ repo, commits } = makeClusterRepo(c.hubDir, 3));
    await Promise.all([c.startWorker(h1, ["--concurrency", "2", "--eval-concurrency", "1"]), c.startWorker(h2, ["--concurrency", "2", "--eval-concurrency", "1"])]);
  }, 600_000);

  beforeEach(() => {
    onTestFailed(() => console.log(`[cluster] logs at the failure:\n${c?.diagnostics()}`));
  });

  afterAll(async () => {
    if (!c) return;
    const { id, dir } = c;
    await c.close();
    expect(await TestCluster.leftovers(id, dir)).toEqual([]);
    console.log(`[cluster] wall ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }, 300_000);

  const tasksFile = (name: string, versions: number[]) => {
    const f = path.join(c.hubDir, `${name}.jsonl`);
    fs.writeFileSync(f, clusterTasks(repo, versions.map((v) => commits[v]!)).map((t) => JSON.stringify(t)).join("\n") + "\n");
    return f;
  };
  const forage = (runId: string, tasks: string, samples: number) =>
    c.forageInHub(["forage", "--redis", c.redisUrl, "--registry", c.registry, "--tasks", tasks, "--samples", String(samples), "--out", path.join(c.hubDir, "runs", runId), "--storage", "redis", "--policy", "oracle", "--run-id", runId, "--attempts", "6"], {
      timeoutMs: 540_000,
      log: path.join(c.hubDir, `forage-${runId}.log`),
    });
  const summaryOf = (runId: string) => JSON.parse(fs.readFileSync(path.join(c.hubDir, "runs", runId, "summary.json"), "utf8")) as Record<string, unknown>;
  const status = async (): Promise<StatusJson> => {
    const r = await c.hubRun([process.execPath, "--import", TSX, path.resolve("cli/main.ts"), "status", "--redis", c.redisUrl, "--json"], { env: { DOCKER_HOST: "unix:///nonexistent/docker.sock" } });
    if (r.code !== 0) throw new Error(`forager status: ${r.stderr}`);
    return JSON.parse(r.stdout) as StatusJson;
  };
  /** Every (task, sample) of the run exactly once in its shards. */
  const expectEachSampleOnce = (runId: string, taskIds: string[], samples: number) => {
    const scan = scanShards(path.join(c.hubDir, "runs", runId, "shards"));
    const want = taskIds.flatMap((t) => Array.from({ length: samples }, (_, i) => `${t}#${i}`)).sort();
    expect(scan.entries.map((e) => `${e.taskId}#${e.sample}`).sort()).toEqual(want);
    expect(scan.duplicates).toBe(0);
  };
  const logOf = (h: ClusterHost) => h.workers.map((w) => fs.readFileSync(w.log, "utf8")).join("\n");
  const idsOf = (versions: number[]) => clusterTasks(repo, versions.map((v) => commits[v]!)).map((t) => t.id as string);

  it("1–2. a run of 2 images × 2 tasks × K=2 completes with episodes on both hosts; each image built once in the cluster and pulled by the other host", async () => {
    const run = forage("mh-a", tasksFile("tasks-a", [0, 1]), 2);
    const r = await run.done;
    const log = fs.readFileSync(path.join(c.hubDir, "forage-mh-a.log"), "utf8");
    expect(r.code, `forage: ${r.stdout}\n${log.slice(-2000)}`).toBe(0);
    expect(log).toMatch(/\[sources\] example\/cluster-calc: 2 commit\(s\) of .*repo for 4 task\(s\)/);
    expect(summaryOf("mh-a")).toMatchObject({ expected: 8, trajectories: 8, resolved: 8, failed: 0, duplicatesDropped: 0 });
    expectEachSampleOnce("mh-a", idsOf([0, 1]), 2);

    const st = await status();
    const running = st.workers.filter((w) => w.status === "running");
    expect(running.map((w) => w.host).sort()).toEqual(["h1", "h2"]);
    for (const w of running) {
      expect(w.finished.rollouts, `${w.id} ran no episode`).toBeGreaterThan(0);
      expect(w.slots.rollouts).toBe(2);
      expect(w.ageSeconds).toBeLessThan(30);
    }
    const instances = Object.entries(st.images).filter(([tag]) => tag.startsWith("forager/instance:example__cluster-calc-"));
    expect(instances).toHaveLength(2);
    for (const [tag, who] of instances) {
      expect(who.built, `${tag} built by ${who.built.join(", ")}`).toHaveLength(1);
      const builder = who.built[0]!.split("-")[0];
      expect(who.pulled.map((w) => w.split("-")[0]), `${tag} pulled by`).toContain(builder === "h1" ? "h2" : "h1");
      // and the same image on both engines
      const [a, b] = await Promise.all([h1.engine.getImage(tag).inspect(), h2.engine.getImage(tag).inspect()]);
      expect(a.Id).toBe(b.Id);
      expect(a.Config.Labels?.["forager.kind"]).toBe("instance");
    }
    // no host saw the hub's files, and no task names a path of the hub
    const runTasks = fs.readFileSync(path.join(c.hubDir, "runs", "mh-a", "tasks.jsonl"), "utf8");
    expect(runTasks).not.toContain(c.hubDir);
    expect(runTasks).toContain('"type":"registry"');
  }, 600_000);

  it("3. kill -9 of a host, then of the other host's worker, mid-run: every sample exactly once; leftovers named by `sandbox reap`, removed by the workers at start", async () => {
    const run = forage("mh-b", tasksFile("tasks-b", [0, 1]), 3);
    const sandboxesOf = async (h: ClusterHost, all = false) => (await h.engine.listContainers({ all, filters: { label: [`${LABELS.run}=mh-b`] } })).map((x) => x.Id);
    // h1 dies whole (worker, engine, sandboxes) while one of its episodes runs.
    await until("an episode running on h1", async () => (await sandboxesOf(h1)).length > 0, 300_000);
    await c.killHost(h1);
    // Then h2's worker alone, while an episode runs there: its engine and sandboxes stay.
    await until("an episode running on h2", async () => (await sandboxesOf(h2)).length > 0, 300_000);
    await c.killWorker(h2.workers[0]!);
    // Requests the worker sent before it died (a create, a start, a remove) still finish inside
    // the engine: take the orphans once h2's containers of the run are the same 3 s apart.
    let last = "";
    const orphans = await until("h2's containers to settle after its worker died", async () => {
      const list = await h2.engine.listContainers({ all: true, filters: { label: [`${LABELS.run}=mh-b`] } });
      const now = list.map((x) => `${x.Id}:${x.State}`).sort().join(",");
      const settled = now === last;
      last = now;
      return settled && list;
    }, 60_000, 3000);
    expect(orphans.length).toBeGreaterThan(0);
    const dry = await c.onHost(h2, ["sandbox", "reap", "--dry-run"]);
    expect(dry.code).toBe(0);
    for (const o of orphans) expect(dry.stdout).toContain(`would reap  ${o.Names[0]!.replace(/^\//, "")}  (owner process gone)`);
    // Both come back: h1 reboots (a new engine on the same data root), both workers start (and reap).
    await c.startEngine(h1);
    await Promise.all([c.startWorker(h1, ["--concurrency", "2", "--eval-concurrency", "1"]), c.startWorker(h2, ["--concurrency", "2", "--eval-concurrency", "1"])]);
    expect(logOf(h2)).toMatch(/removed orphaned (forager )?containers/);
    for (const o of orphans) expect(await sandboxesOf(h2, true)).not.toContain(o.Id);
    const r = await run.done;
    expect(r.code, fs.readFileSync(path.join(c.hubDir, "forage-mh-b.log"), "utf8").slice(-2000)).toBe(0);
    expect(summaryOf("mh-b")).toMatchObject({ expected: 12, trajectories: 12, resolved: 12, failed: 0, duplicatesDropped: 0 });
    expectEachSampleOnce("mh-b", idsOf([0, 1]), 3);
    // nothing of the run is left on either engine, nor in Redis (running marks, build locks)
    for (const h of [h1, h2]) expect(await sandboxesOf(h, true)).toEqual([]);
    expect((await c.redis(["HLEN", "forager:run:mh-b:running"])).trim()).toBe("(integer) 0");
    expect((await c.redis(["KEYS", "forager:lock:*"])).trim()).toBe("(empty array)");
    // the dead workers' last heartbeats stay, as silent; the new ones run
    const st = await until("the dead workers to show as silent", async () => {
      const x = await status();
      return x.workers.filter((w) => w.status === "silent").length === 2 ? x : undefined;
    }, 60_000, 1000);
    expect(st.workers.filter((w) => w.status === "silent").map((w) => w.host).sort()).toEqual(["h1", "h2"]);
    expect(st.workers.filter((w) => w.status === "running").map((w) => w.host).sort()).toEqual(["h1", "h2"]);
    const text = await c.hubRun([process.execPath, "--import", TSX, path.resolve("cli/main.ts"), "status", "--redis", c.redisUrl], { env: { DOCKER_HOST: "unix:///nonexistent/docker.sock" } });
    expect(text.stdout).toMatch(/^workers: 2 running on 2 host\(s\), 4 known/);
    console.log(text.stdout);
  }, 600_000);

  it("4. the registry down while a new image is built and pulled: workers say so and retry; the run completes when it is back", async () => {
    const run = forage("mh-c", tasksFile("tasks-c", [2]), 2);
    // Once a host starts building the new image, the registry goes away (push and pulls must wait).
    const builder = await until(
      "a build of the new image",
      async () => [h1, h2].find((h) => /"event":"image-build".*building forager\/instance:example__cluster-calc-/.test(logOf(h).split("\n").filter((l) => l.includes(commits[2]!.slice(0, 12))).join("\n"))),
      300_000,
    );
    await c.stopRegistry();
    const retried = await until("a worker saying the registry is unreachable", async () => [h1, h2].find((h) => /unreachable.*retrying in/.test(logOf(h))), 120_000);
    await new Promise((res) => setTimeout(res, 5000));
    await c.startRegistry();
    const r = await run.done;
    expect(r.code, fs.readFileSync(path.join(c.hubDir, "forage-mh-c.log"), "utf8").slice(-2000)).toBe(0);
    expect(summaryOf("mh-c")).toMatchObject({ expected: 4, trajectories: 4, failed: 0, duplicatesDropped: 0 });
    expectEachSampleOnce("mh-c", idsOf([2]), 2);
    const st = await status();
    const tag = Object.keys(st.images).find((t) => t.includes(commits[2]!.slice(0, 12)));
    expect(tag).toBeDefined();
    expect(st.images[tag!]!.built).toHaveLength(1);
    expect(st.images[tag!]!.built[0]!.startsWith(builder.name)).toBe(true);
    expect(st.workers.find((w) => w.host === retried.name && w.status === "running")?.lastProblem?.message).toMatch(/unreachable/);
  }, 600_000);
});
