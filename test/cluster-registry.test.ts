/**
 * The cluster registry on one host (images/registry.ts, orchestrator/cluster.ts), against Debian's
 * docker-registry on loopback, this machine's engine and a private redis-server:
 * - heartbeats read back (a silent worker, a record with a bad field named), the build lock;
 * - a source published as a git bundle and fetched back (digest checked, no later commit in it);
 * - an instance image built once and pushed, then pulled by its content-hashed name once the
 *   local tag is gone (the `forager.spec-hash` label checked), bytes counted;
 * - two callers asking for the same missing image at once under the Redis lock: one build;
 * - a lock whose holder died expires and the next caller builds;
 * - a stale tag in the registry (another image under the expected name) is rebuilt and pushed over;
 * - the registry down: the call says so, retries, and completes once it is back.
 * The multi-host version (network namespaces, engines per host, kill -9) is test/cluster-multihost.test.ts;
 * option parsing and capacity (no engine) test/cluster-units.unit.test.ts.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, inspectImage } from "../images/docker";
import {
  fetchSource,
  obtainInstanceImage,
  publishSource,
  pushToRegistry,
  registryRef,
  RegistrySettingsSchema,
  type ObtainEvent,
  type RegistrySettings,
} from "../images/registry";
import { ImageSpecSchema, type ImageSpecInput } from "../images/spec";
import { CLUSTER_KEYS, formatWorkers, listWorkers, RedisBuildLock, WorkerMonitor } from "../orchestrator/cluster";
import { startRedisServer, type RedisServerHandle } from "../orchestrator/redis-server";
import { redisConnection } from "../orchestrator/worker";
import { registryBinary, startRegistry, type RegistryHandle } from "./helpers/registry";

describe("heartbeats and the build lock (redis-server)", () => {
  let tmp: string;
  let server: RedisServerHandle;
  let redis: Redis;
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-cluster-hb-"));
    server = await startRedisServer({ dir: path.join(tmp, "redis") });
    redis = redisConnection(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("a worker's heartbeat is read back; a silent one and a bad record are told apart", async () => {
    const m = new WorkerMonitor(redis, { id: "hostA-1", slots: { rollouts: 4, evaluations: 1, images: 1 }, engine: "unix:///x.sock", registry: "r:5000", intervalMs: 1000 });
    await m.track("rollouts", async () => {
      m.onImageEvent({ kind: "pulled", tag: "forager/instance:a", message: "", bytes: 1000, seconds: 1 });
      m.onImageEvent({ kind: "pulled", tag: "forager/instance:a", message: "", bytes: 10, seconds: 0 });
      m.onImageEvent({ kind: "built", tag: "forager/instance:b", message: "", seconds: 3 });
      m.onImageEvent({ kind: "retry", tag: "forager/instance:c", message: "registry r:5000 unreachable" });
      await m.beat();
    });
    await redis.hset(CLUSTER_KEYS.workers, "ghost-2", JSON.stringify({ ...m.heartbeat(), id: "ghost-2", heartbeatAt: Date.now() - 60_000 }));
    await redis.hset(CLUSTER_KEYS.workers, "bad-3", JSON.stringify({ ...m.heartbeat(), id: "bad-3", slots: { rollouts: "many" } }));
    const { workers, errors } = await listWorkers(redis);
    const a = workers.find((w) => w.id === "hostA-1")!;
    expect(a).toMatchObject({ status: "running", inFlight: { rollouts: 1 }, images: { pulled: 1, built: 1, bytesPulled: 1010 }, registry: "r:5000" });
    expect(a.lastProblem?.message).toMatch(/unreachable/);
    expect(workers.find((w) => w.id === "ghost-2")?.status).toBe("silent");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/bad-3.*slots.*rollouts|bad-3/);
    expect(formatWorkers(workers)).toMatch(/hostA-1\s+running/);
    await m.setState("stopped");
    expect((await listWorkers(redis)).workers.find((w) => w.id === "hostA-1")?.status).toBe("stopped");
    await redis.del(CLUSTER_KEYS.workers, CLUSTER_KEYS.imageEvents);
  });

  it("the build lock: one holder at a time, renewed while held, expired when its holder is gone", async () => {
    const a = new RedisBuildLock(redis, "hostA-1", { ttlMs: 600 });
    const b = new RedisBuildLock(redis, "hostB-2", { ttlMs: 600 });
    const ga = await a.tryAcquire("image:t1");
    expect("release" in ga).toBe(true);
    await new Promise((r) => setTimeout(r, 1200)); // two TTLs: renewed meanwhile
    expect(await b.tryAcquire("image:t1")).toEqual({ heldBy: "hostA-1" });
    if ("release" in ga) await ga.release();
    const gb = await b.tryAcquire("image:t1");
    expect("release" in gb).toBe(true);
    // a holder that dies: its key stays until the TTL, then anyone may take it (no renewal here)
    await redis.set(`${CLUSTER_KEYS.lock}image:t2`, "deadhost-9 abc", "PX", 500);
    expect(await a.tryAcquire("image:t2")).toEqual({ heldBy: "deadhost-9" });
    await new Promise((r) => setTimeout(r, 700));
    const ga2 = await a.tryAcquire("image:t2");
    expect("release" in ga2).toBe(true);
    if ("release" in gb) await gb.release();
    if ("release" in ga2) await ga2.release();
    // release never deletes someone else's lock
    await redis.set(`${CLUSTER_KEYS.lock}image:t3`, "other-1 x", "PX", 5000);
    const again = await b.tryAcquire("image:t3");
    expect(again).toEqual({ heldBy: "other-1" });
    expect(await redis.get(`${CLUSTER_KEYS.lock}image:t3`)).toBe("other-1 x");
  });
});

function git(dir: string, args: string[]): string {
  return execFileSync("git", args, {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@l", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@l", GIT_CONFIG_NOSYSTEM: "1", HOME: os.tmpdir() },
  });
}

describe.skipIf(!registryBinary())("images through a registry on loopback (this engine)", () => {
  let tmp: string;
  let registry: RegistryHandle;
  let server: RedisServerHandle;
  let redis: Redis;
  let repo: string;
  const commits: string[] = [];
  const ownTags = new Set<string>();
  let reg: RegistrySettings;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-cluster-reg-"));
    registry = await startRegistry(path.join(tmp, "registry"));
    server = await startRedisServer({ dir: path.join(tmp, "redis") });
    redis = redisConnection(server.url);
    reg = RegistrySettingsSchema.parse({ host: registry.host, namespace: "t", waitSeconds: 60, pollSeconds: 0.3 });
    // A repository with 4 commits; unique content, so its images are this test's own.
    repo = path.join(tmp, "repo");
    fs.mkdirSync(repo);
    git(repo, ["init", "-q", "-b", "main"]);
    const salt = `${process.pid}-${Date.now()}`;
    for (let i = 0; i < 4; i++) {
      fs.writeFileSync(path.join(repo, "calc.py"), `# ${salt}\ndef f():\n    return ${i}\n`);
      git(repo, ["add", "-A"]);
      git(repo, ["commit", "-qm", `c${i}`]);
      commits.push(git(repo, ["rev-parse", "HEAD"]).trim());
    }
    git(repo, ["tag", "v0", commits[0]!]);
    git(repo, ["tag", "v3", commits[3]!]);
  });

  afterAll(async () => {
    for (const t of ownTags) {
      await docker().getImage(registryRef(reg, t)).remove().catch(() => undefined);
      await docker().getImage(t).remove().catch(() => undefined);
    }
    // Names of this test's registry (unique host:port) left on images of this engine: only the names go.
    if (registry) {
      for (const img of await docker().listImages()) {
        for (const n of [...(img.RepoTags ?? []), ...(img.RepoDigests ?? [])]) if (n.startsWith(`${registry.host}/`)) await docker().getImage(n).remove({ noprune: true }).catch(() => undefined);
      }
    }
    redis?.disconnect();
    await server?.stop();
    await registry?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const spec = (commit: string, extra: Partial<ImageSpecInput> = {}): ImageSpecInput => ({
    repo: "example/cluster-reg",
    commit,
    source: { type: "path", path: repo },
    testCommand: "python3 -m unittest -v",
    logParser: "unittest",
    ...extra,
  });
  const build = () => ({ stateDir: path.join(tmp, "state") });
  /** Remove the local instance tag (and its registry name): the image is this test's own. */
  const forget = async (tag: string) => {
    await docker().getImage(registryRef(reg, tag)).remove().catch(() => undefined);
    await docker().getImage(tag).remove().catch(() => undefined);
  };

  it("a source is published as a bundle of the commits asked for (and their ancestor tags), fetched back with its digest checked", async () => {
    const p = await publishSource(reg, "example/cluster-reg", repo, [commits[1]!.slice(0, 10)]);
    expect(p.commits[commits[1]!.slice(0, 10)]).toBe(commits[1]);
    expect(p.source).toMatchObject({ type: "registry", name: "forager/source", digest: expect.stringMatching(/^sha256:/) });
    expect(p.uploaded).toBe(true);
    const again = await publishSource(reg, "example/cluster-reg", repo, [commits[1]!]);
    expect(again.uploaded).toBe(false); // same bundle bytes: nothing uploaded
    const file = await fetchSource(reg, p.source, { stateDir: path.join(tmp, "state-b") });
    const heads = execFileSync("git", ["bundle", "list-heads", file], { encoding: "utf8" });
    expect(heads).toContain(`${commits[1]} refs/heads/forager-${commits[1]}`);
    expect(heads).toContain("refs/tags/v0");
    expect(heads).not.toContain(commits[3]!); // no later commit, no tag of one
    expect(heads).not.toContain("v3");
    // a digest the registry does not hold
    await expect(fetchSource(reg, { ...p.source, digest: `sha256:${"0".repeat(64)}` }, { stateDir: path.join(tmp, "state-b") })).rejects.toThrow(/HTTP 404|not in this registry/);
  });

  it("built once and pushed; with the local tag gone, pulled by its content-hashed name (label checked), bytes counted", async () => {
    const src = await publishSource(reg, "example/cluster-reg", repo, [commits[0]!]);
    const events: ObtainEvent[] = [];
    const first = await obtainInstanceImage({ ...spec(commits[0]!), source: src.source }, reg, { build: build(), onEvent: (e) => events.push(e) });
    ownTags.add(first.tag);
    expect(first.how).toBe("built");
    expect(events.filter((e) => e.kind === "pushed").map((e) => e.tag)).toEqual([expect.stringMatching(/^forager\/base:/), expect.stringMatching(/^forager\/env:/), first.tag]);
    const again = await obtainInstanceImage(spec(commits[0]!), reg, { build: build() });
    expect(again).toMatchObject({ how: "local", tag: first.tag, id: first.id });
    await forget(first.tag);
    expect(await inspectImage(first.tag)).toBeUndefined();
    const pulled = await obtainInstanceImage(spec(commits[0]!), reg, { build: build() });
    expect(pulled).toMatchObject({ how: "pulled", tag: first.tag, id: first.id });
    expect(pulled.bytesPulled).toBeGreaterThan(0);
    const info = await inspectImage(first.tag);
    expect(info?.Config?.Labels?.["forager.commit"]).toBe(commits[0]);
    expect(info?.Config?.Labels?.["forager.kind"]).toBe("instance");
  }, 300_000);

  it("two callers at once under the Redis lock: one build, the other waits and pulls", async () => {
    const events: Array<ObtainEvent & { who: string }> = [];
    const s = spec(commits[1]!);
    const run = (who: string) =>
      obtainInstanceImage(s, reg, { build: build(), alone: true, lock: new RedisBuildLock(redis, who, { ttlMs: 5000 }), onEvent: (e) => events.push({ ...e, who }) });
    const [a, b] = await Promise.all([run("hostA-1"), run("hostB-2")]);
    ownTags.add(a.tag);
    expect(a.tag).toBe(b.tag);
    expect([a.how, b.how].sort()).toEqual(["built", "pulled"]);
    expect(events.filter((e) => e.kind === "built")).toHaveLength(1);
    const waiter = a.how === "built" ? "hostB-2" : "hostA-1";
    expect(events.some((e) => e.kind === "wait" && e.who === waiter && /is building/.test(e.message))).toBe(true);
  }, 300_000);

  it("in one process, a second caller for the same image waits for the first and finds it here (one pull, bytes counted once)", async () => {
    const s = spec(commits[1]!);
    const plan = await import("../images/build").then((m) => m.planInstanceImage(ImageSpecSchema.parse(s)));
    await forget(plan!.instance!.tag);
    const events: ObtainEvent[] = [];
    const [a, b] = await Promise.all([0, 1].map(() => obtainInstanceImage(s, reg, { build: build(), onEvent: (e) => events.push(e) })));
    expect([a!.how, b!.how].sort()).toEqual(["local", "pulled"]);
    expect(events.filter((e) => e.kind === "pulled")).toHaveLength(1);
  }, 300_000);

  it("a lock left by a dead holder expires; the next caller builds", async () => {
    const s = spec(commits[2]!);
    const plan = await import("../images/build").then((m) => m.planInstanceImage(ImageSpecSchema.parse(s)));
    const tag = plan!.instance!.tag;
    await redis.set(`${CLUSTER_KEYS.lock}image:${tag}`, "deadhost-7 zz", "PX", 1500);
    const events: ObtainEvent[] = [];
    const r = await obtainInstanceImage(s, reg, { build: build(), lock: new RedisBuildLock(redis, "hostC-3", { ttlMs: 5000 }), onEvent: (e) => events.push(e) });
    ownTags.add(r.tag);
    expect(r.how).toBe("built");
    expect(events.some((e) => e.kind === "wait" && /deadhost-7 is building/.test(e.message))).toBe(true);
  }, 300_000);

  it("a stale tag in the registry (another image under the expected name) is rebuilt and pushed over", async () => {
    const s = spec(commits[3]!);
    const plan = await import("../images/build").then((m) => m.planInstanceImage(ImageSpecSchema.parse(s)));
    const tag = plan!.instance!.tag;
    ownTags.add(tag);
    // a foreign image under the expected registry name: the base image, retagged (only the tag is ours)
    const [repoName, t] = [tag.slice(0, tag.lastIndexOf(":")), tag.slice(tag.lastIndexOf(":") + 1)];
    await docker().getImage(ImageSpecSchema.parse(s).baseImage).tag({ repo: repoName, tag: t });
    await pushToRegistry(reg, tag);
    expect(await inspectImage(registryRef(reg, tag))).toBeUndefined(); // the registry name was only for the push
    await docker().getImage(tag).remove();
    const events: ObtainEvent[] = [];
    const r = await obtainInstanceImage(s, reg, { build: build(), onEvent: (e) => events.push(e) });
    expect(r.how).toBe("built");
    expect(events.some((e) => /stale or foreign tag/.test(e.message))).toBe(true);
    await forget(tag);
    const pulled = await obtainInstanceImage(s, reg, { build: build() });
    expect(pulled).toMatchObject({ how: "pulled", id: r.id });
  }, 300_000);

  it("the registry down: the call says so and retries; it completes once the registry is back", async () => {
    const s = spec(commits[0]!);
    const plan = await import("../images/build").then((m) => m.planInstanceImage(ImageSpecSchema.parse(s)));
    await forget(plan!.instance!.tag);
    await registry.stop();
    const events: ObtainEvent[] = [];
    const pending = obtainInstanceImage(s, reg, { build: build(), onEvent: (e) => events.push(e) });
    const t0 = Date.now();
    while (!events.some((e) => e.kind === "retry") && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 100));
    expect(events.find((e) => e.kind === "retry")?.message).toMatch(new RegExp(`registry ${registry.host} unreachable.*retrying in`));
    registry = await startRegistry(path.join(tmp, "registry"), { addr: registry.host });
    const r = await pending;
    expect(r.how).toBe("pulled");
  }, 300_000);
});
