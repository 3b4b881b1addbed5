/**
 * A private container registry on loopback for the tests: Debian's docker-registry (the
 * distribution registry, installed by scripts/setup.sh --registry), on a free 127.0.0.1 port,
 * filesystem storage in a temp dir. The Docker engine treats 127.0.0.0/8 registries as insecure
 * (plain HTTP) by default, so no daemon configuration is needed. No traffic leaves the machine.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { freePort } from "../../orchestrator/redis-server";

export interface RegistryHandle {
  /** `127.0.0.1:PORT` (or the address given). */
  host: string;
  /** The process id (of the spawn prefix, when there is one). */
  pid: number;
  stop(): Promise<void>;
}

/** The docker-registry binary, or undefined when it is not installed. */
export function registryBinary(): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(path.delimiter), "/usr/bin"]) {
    const p = path.join(dir, "docker-registry");
    if (dir && fs.existsSync(p)) return p;
  }
  return undefined;
}

/** Where and how to start a registry (defaults: a free 127.0.0.1 port, spawned directly). */
export interface RegistryStartOptions {
  /** `ADDRESS:PORT` to listen on (a restarted registry keeps its address). */
  addr?: string;
  /** argv before the registry's (e.g. `["nsenter", "--net=/run/netns/X"]`: listen in a network namespace). */
  spawnPrefix?: string[];
  /** Wait for `/v2/` to answer (default true; false when this process cannot reach the address). */
  waitReady?: boolean;
}

/** Start a registry with its storage under `dir`; resolves once GET /v2/ answers (at most 20 s). */
export async function startRegistry(dir: string, opts: RegistryStartOptions = {}): Promise<RegistryHandle> {
  const bin = registryBinary();
  if (!bin) throw new Error("docker-registry is not installed (bash scripts/setup.sh --registry)");
  const port = opts.addr ? Number(opts.addr.slice(opts.addr.lastIndexOf(":") + 1)) : await freePort();
  const listen = opts.addr ?? `127.0.0.1:${port}`;
  fs.mkdirSync(path.join(dir, "storage"), { recursive: true });
  const config = path.join(dir, "config.yml");
  fs.writeFileSync(
    config,
    ["version: 0.1", "log:", "  level: error", "storage:", "  filesystem:", `    rootdirectory: ${path.join(dir, "storage")}`, "http:", `  addr: ${listen}`, ""].join("\n"),
  );
  const argv = [...(opts.spawnPrefix ?? []), bin, "serve", config];
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", fs.openSync(path.join(dir, "registry.log"), "a")] });
  const host = listen;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (opts.waitReady === false) {
      await new Promise((r) => setTimeout(r, 300));
      if (child.exitCode !== null) throw new Error(`docker-registry exited at once: ${fs.readFileSync(path.join(dir, "registry.log"), "utf8").slice(-500)}`);
      break;
    }
    try {
      const r = await fetch(`http://${host}/v2/`);
      if (r.ok) break;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`docker-registry did not come up on ${host}: ${fs.readFileSync(path.join(dir, "registry.log"), "utf8").slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    host,
    pid: child.pid!,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
