/**
 * docker-compose.yml: `docker compose config` validates it when the compose plugin is installed;
 * otherwise (this machine has no compose plugin) the YAML is parsed (python3 PyYAML) and its
 * structure checked: Redis with AOF, the cluster registry, workers with the host's Docker socket,
 * the forager worker command and the registry setting, a vLLM-style inference service.
 */
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const file = path.resolve("docker-compose.yml");
const hasCompose = spawnSync("docker", ["compose", "version"], { encoding: "utf8" }).status === 0;

function load(): any {
  const py = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
  return JSON.parse(execFileSync("python3", ["-c", py, file], { encoding: "utf8" }));
}

describe("docker-compose.yml", () => {
  it.runIf(hasCompose)("validates with docker compose config", () => {
    const r = spawnSync("docker", ["compose", "-f", file, "--profile", "inference", "config", "-q"], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("has redis, workers with the Docker socket, and an inference service (structure)", () => {
    const c = load();
    expect(Object.keys(c.services).sort()).toEqual(["redis", "registry", "vllm", "worker"]);
    const { redis, registry, worker, vllm } = c.services;
    expect(registry.image).toMatch(/^registry:2/);
    expect(registry.ports).toContain("5000:5000");
    expect(registry.volumes).toContain("registry-data:/var/lib/registry");
    expect(worker.environment.FORAGER_REGISTRY).toBe("${FORAGER_REGISTRY:-}");
    expect(redis.image).toMatch(/^redis:/);
    expect(redis.command).toEqual(expect.arrayContaining(["--appendonly", "yes", "--appendfsync", "always"]));
    expect(redis.healthcheck.test).toEqual(["CMD", "redis-cli", "ping"]);
    expect(worker.command).toEqual(["node", "--import", "tsx", "cli/main.ts", "worker", "--redis", "redis://redis:6379"]);
    expect(worker.volumes).toContain("/var/run/docker.sock:/var/run/docker.sock");
    expect(worker.depends_on.redis.condition).toBe("service_healthy");
    expect(worker.pid).toBe("host");
    expect(vllm.image).toMatch(/vllm/);
    expect(vllm.ports).toContain("8000:8000");
    expect(vllm.deploy.resources.reservations.devices[0].capabilities).toEqual(["gpu"]);
    // every named volume used is declared
    const named = Object.values(c.services)
      .flatMap((s: any) => s.volumes ?? [])
      .map((v: string) => v.split(":")[0]!)
      .filter((v: string) => /^[a-z][a-z0-9-]*$/.test(v));
    for (const v of named) expect(Object.keys(c.volumes)).toContain(v);
    // only keys the compose specification knows, at the service level
    const known = new Set(["image", "command", "ports", "volumes", "healthcheck", "restart", "working_dir", "environment", "pid", "hostname", "depends_on", "deploy", "stop_grace_period", "profiles", "ipc"]);
    for (const s of Object.values(c.services)) for (const k of Object.keys(s as object)) expect(known.has(k), k).toBe(true);
  });
});
