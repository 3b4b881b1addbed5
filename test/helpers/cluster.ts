/**
 * A forager cluster built inside this machine, for test/cluster-multihost.test.ts and
 * bench/cluster.ts: Linux network namespaces as hosts, traffic only between them.
 *
 *   hub   (netns fmh<id>-hub, 10.77.0.1 on a bridge): redis-server, Debian's docker-registry,
 *         the submitting `forager forage --redis` (and a scripted model server for the bench).
 *   h1…hN (netns fmh<id>-h<i>, 10.77.0.1<i>, a veth into the hub's bridge): each its own Docker
 *         engine (data root, exec root, pidfile, unix socket under the test's temp dir; no bridge,
 *         no iptables; the registry trusted as insecure) and `forager worker` processes.
 *
 * A worker host lives in its own PID, mount and UTS namespaces (`unshare`), with tini
 * (`docker-init`) as its init: its host name is `h<i>`, the hub's files (run directory, the
 * repositories) are hidden from it by an empty tmpfs, and {@link TestCluster.killHost} SIGKILLs its
 * init, which kills everything of the host at once (worker, dockerd, containerd, shims and the
 * sandboxes), with no goodbye: a host that dies. {@link TestCluster.startEngine} brings it back on
 * the same data root. The root network namespace gets no address; nothing leaves the namespaces.
 * The forager base image is loaded into each new engine (`docker save` from this machine's engine).
 *
 * Everything made here (namespaces, veths, bridge, engines, processes, cgroups, data roots) is
 * removed by {@link TestCluster.close}, also after a failure; every wait is bounded.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Docker from "dockerode";
import { docker as mainEngine, consumeJsonStream } from "../../images/docker";
import { DEFAULT_BASE_IMAGE } from "../../images/spec";
import { registryBinary, startRegistry, type RegistryHandle } from "./registry";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** tsx's loader by its path (processes of the cluster run in directories without node_modules). */
export const TSX = path.join(ROOT, "node_modules", "tsx", "dist", "loader.mjs");
const SUBNET = "10.77.0";
/** The hub's address (Redis, registry, the model server). */
export const HUB_IP = `${SUBNET}.1`;

/** Why a multi-host cluster cannot be built here (undefined: it can). */
export function clusterUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network namespaces, engines)";
  for (const bin of ["ip", "nsenter", "unshare", "docker-init", "dockerd", "redis-server", "redis-cli"]) {
    if (!(process.env.PATH ?? "").split(":").some((d) => d && fs.existsSync(path.join(d, bin)))) return `${bin} is not installed`;
  }
  if (!registryBinary()) return "docker-registry is not installed (bash scripts/setup.sh --registry)";
  return undefined;
}

/** One worker host. */
export interface ClusterHost {
  /** `h1`, `h2`, … (also its host name inside). */
  name: string;
  netns: string;
  ip: string;
  dir: string;
  socket: string;
  /** A dockerode client of its engine (over the unix socket: no network). */
  engine: Docker;
  /** PID of its init (tini) in this machine's PID namespace, while it is up. */
  initPid?: number;
  /** The `unshare` process holding it. */
  holder?: ChildProcess;
  workers: ClusterWorker[];
  /** Workers started on it so far (names their log files). */
  started?: number;
}

/** A `forager worker` process on a host. */
export interface ClusterWorker {
  host: ClusterHost;
  child: ChildProcess;
  log: string;
  /** Its id as the heartbeats name it (`h<i>-<pid in the host>`), once known. */
  exited: Promise<number | null>;
}

export interface ClusterOptions {
  hosts: number;
  /** Registry namespace (default "cluster"). */
  namespace?: string;
  /** FORAGER_IMAGE_LOCK_SECONDS of the workers (default 10: a dead host's lock frees quickly). */
  lockSeconds?: number;
  /** Extra environment of every forager process. */
  env?: Record<string, string>;
  /** Called with progress lines (setup steps). */
  onProgress?: (line: string) => void;
}

async function sh(argv: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await run(argv[0]!, argv.slice(1), { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The cluster (see the module comment). */
export class TestCluster {
  readonly id = randomBytes(2).toString("hex");
  readonly dir: string;
  /** Files of the hub only (repositories, run directories, Redis and registry data): hidden from the worker hosts. */
  readonly hubDir: string;
  readonly hub: string;
  readonly hosts: ClusterHost[] = [];
  readonly redisUrl = `redis://${HUB_IP}:6379`;
  readonly namespace: string;
  registryHandle?: RegistryHandle;
  private redisProc?: ChildProcess;
  private readonly children = new Set<ChildProcess>();
  private baseTar?: string;
  private closed = false;

  private constructor(readonly opts: ClusterOptions) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `fmh-${this.id}-`));
    this.hubDir = path.join(this.dir, "hub");
    fs.mkdirSync(this.hubDir);
    this.hub = `fmh${this.id}-hub`;
    this.namespace = opts.namespace ?? "cluster";
  }

  /** `HOST:PORT/NAMESPACE` of the registry, as `--registry` takes it. */
  get registry(): string {
    return `${HUB_IP}:5000/${this.namespace}`;
  }

  private say(line: string): void {
    this.opts.onProgress?.(line);
  }

  /** Build the namespaces and the hub (Redis, registry), start every host's engine. Cleans up on failure. */
  static async start(opts: ClusterOptions): Promise<TestCluster> {
    const c = new TestCluster(opts);
    try {
      await c.network();
      await c.startRedis();
      await c.startRegistry();
      c.say(`saving ${DEFAULT_BASE_IMAGE} from this machine's engine`);
      c.baseTar = path.join(c.dir, "base.tar");
      const stream = await mainEngine().getImage(DEFAULT_BASE_IMAGE).get();
      await new Promise<void>((resolve, reject) => {
        const out = fs.createWriteStream(c.baseTar!);
        stream.pipe(out);
        out.on("finish", () => resolve());
        stream.on("error", reject);
        out.on("error", reject);
      });
      for (const h of c.hosts) await c.startEngine(h);
      return c;
    } catch (err) {
      await c.close();
      throw err;
    }
  }

  private async network(): Promise<void> {
    this.say(`network namespaces ${this.hub} and ${this.opts.hosts} host(s)`);
    await sh(["ip", "netns", "add", this.hub]);
    const inHub = (args: string[]) => sh(["ip", "netns", "exec", this.hub, ...args]);
    await inHub(["ip", "link", "set", "lo", "up"]);
    await inHub(["ip", "link", "add", "br0", "type", "bridge"]);
    await inHub(["ip", "addr", "add", `${HUB_IP}/24`, "dev", "br0"]);
    await inHub(["ip", "link", "set", "br0", "up"]);
    for (let i = 1; i <= this.opts.hosts; i++) {
      const name = `h${i}`;
      const netns = `fmh${this.id}-${name}`;
      const ip = `${SUBNET}.${10 + i}`;
      await sh(["ip", "netns", "add", netns]);
      // Both ends made in the hub's namespace, one moved into the host's: nothing in the root namespace.
      await inHub(["ip", "link", "add", `fmh${this.id}${name}a`, "type", "veth", "peer", "name", `fmh${this.id}${name}b`, "netns", netns]);
      await inHub(["ip", "link", "set", `fmh${this.id}${name}a`, "master", "br0", "up"]);
      const inHost = (args: string[]) => sh(["ip", "netns", "exec", netns, ...args]);
      await inHost(["ip", "link", "set", "lo", "up"]);
      await inHost(["ip", "addr", "add", `${ip}/24`, "dev", `fmh${this.id}${name}b`]);
      await inHost(["ip", "link", "set", `fmh${this.id}${name}b`, "up"]);
      const dir = path.join(this.dir, name);
      fs.mkdirSync(path.join(dir, "work"), { recursive: true });
      const socket = path.join(dir, "docker.sock");
      this.hosts.push({ name, netns, ip, dir, socket, engine: new Docker({ socketPath: socket }), workers: [] });
    }
  }

  /** argv that runs in the hub's network namespace. */
  inHub(argv: string[]): string[] {
    return ["nsenter", `--net=/run/netns/${this.hub}`, ...argv];
  }

  private track(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.once("exit", () => this.children.delete(child));
    return child;
  }

  private async startRedis(): Promise<void> {
    const dir = path.join(this.hubDir, "redis");
    fs.mkdirSync(dir, { recursive: true });
    const argv = this.inHub(["redis-server", "--bind", HUB_IP, "--port", "6379", "--dir", dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no", "--maxmemory-policy", "noeviction", "--logfile", path.join(dir, "redis.log")]);
    this.redisProc = this.track(spawn(argv[0]!, argv.slice(1), { stdio: "ignore" }));
    await until("redis in the hub", async () => (await this.redis(["PING"])).trim() === "PONG", 15_000);
  }

  /** Start (or restart, on the same address and storage) the registry in the hub. */
  async startRegistry(): Promise<void> {
    this.registryHandle = await startRegistry(path.join(this.hubDir, "registry"), { addr: `${HUB_IP}:5000`, spawnPrefix: this.inHub([]), waitReady: false });
    const probe = `fetch("http://${HUB_IP}:5000/v2/", { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`;
    await until("the registry in the hub", async () => (await this.hubRun([process.execPath, "-e", probe])).code === 0, 20_000);
  }

  /** Stop the registry (SIGTERM; its storage stays). */
  async stopRegistry(): Promise<void> {
    await this.registryHandle?.stop();
    this.registryHandle = undefined;
  }

  /** A redis-cli command against the hub's Redis (run in the hub). */
  async redis(args: string[]): Promise<string> {
    return sh(this.inHub(["redis-cli", "-h", HUB_IP, "-p", "6379", "--no-raw", ...args]), 15_000).then((s) => s.replace(/^"|"$/gm, ""));
  }

  /** A JSON value of a Redis key (string) or hash field, read in the hub. */
  async redisRaw(args: string[]): Promise<string> {
    return sh(this.inHub(["redis-cli", "-h", HUB_IP, "-p", "6379", "--raw", ...args]), 15_000);
  }

  /** Run a command in the hub (bounded), with its exit code and output. */
  async hubRun(argv: string[], opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const a = this.inHub(argv);
    return new Promise((resolve) => {
      const child = this.track(spawn(a[0]!, a.slice(1), { cwd: opts.cwd ?? this.hubDir, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] }));
      let stdout = "";
      let stderr = "";
      child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
      child.once("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** A long-running process in the hub (e.g. a model server); stopped by {@link close}. */
  hubSpawn(argv: string[], env: Record<string, string> = {}): ChildProcess {
    const a = this.inHub(argv);
    return this.track(spawn(a[0]!, a.slice(1), { cwd: this.hubDir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] }));
  }

  /** A TypeScript file of this repository run with node + tsx on a host (inside its namespaces), bounded. */
  async tsOnHost(h: ClusterHost, file: string, args: string[], timeoutMs = 600_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    if (!h.initPid) throw new Error(`${h.name} is down`);
    const argv = ["nsenter", "-t", String(h.initPid), "-n", "-m", "-u", "-p", process.execPath, "--import", TSX, path.join(ROOT, file), ...args];
    return new Promise((resolve) => {
      const child = this.track(spawn(argv[0]!, argv.slice(1), { cwd: path.join(h.dir, "work"), env: { ...process.env, ...this.foragerEnv({ DOCKER_HOST: `unix://${h.socket}`, FORAGER_STATE_DIR: path.join(h.dir, "state"), FORAGER_REGISTRY: this.registry }) }, stdio: ["ignore", "pipe", "pipe"] }));
      let stdout = "";
      let stderr = "";
      child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.once("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** The environment of forager processes here (no engine for the hub: DOCKER_HOST points nowhere). */
  foragerEnv(extra: Record<string, string> = {}): Record<string, string> {
    return { FORAGER_LOG_LEVEL: "info", FORAGER_IMAGE_LOCK_SECONDS: String(this.opts.lockSeconds ?? 10), FORAGER_REGISTRY_WAIT_SECONDS: "600", ...this.opts.env, ...extra };
  }

  /** `bin/forager ARGS` in the hub (the submitter: no Docker engine there), bounded by `timeoutMs`. */
  forageInHub(args: string[], opts: { timeoutMs?: number; log?: string } = {}): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string }> } {
    const a = this.inHub([process.execPath, "--import", TSX, path.join(ROOT, "cli", "main.ts"), ...args]);
    const log = opts.log ?? path.join(this.hubDir, `forager-${Date.now()}.log`);
    const err = fs.openSync(log, "a");
    const child = this.track(
      spawn(a[0]!, a.slice(1), {
        cwd: this.hubDir,
        env: { ...process.env, ...this.foragerEnv({ DOCKER_HOST: "unix:///nonexistent/docker.sock", FORAGER_STATE_DIR: path.join(this.hubDir, "state") }) },
        stdio: ["ignore", "pipe", err],
      }),
    );
    fs.closeSync(err);
    let stdout = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 600_000);
    const done = new Promise<{ code: number | null; stdout: string }>((resolve) =>
      child.once("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout });
      }),
    );
    return { child, done };
  }

  /**
   * Start (or restart, on the same data root) a host's engine inside its namespaces; the base
   * image is loaded when the engine lacks it. Resolves once the engine answers.
   */
  async startEngine(h: ClusterHost): Promise<void> {
    this.say(`engine of ${h.name}`);
    const data = path.join(h.dir, "data");
    const exec = path.join(h.dir, "exec");
    // What a reboot clears (/var/run is a tmpfs): the exec root, the pidfile (its pid, from the dead
    // host's PID namespace, may be the new dockerd's own), the socket.
    fs.rmSync(exec, { recursive: true, force: true });
    fs.rmSync(path.join(h.dir, "docker.pid"), { force: true });
    fs.rmSync(h.socket, { force: true });
    fs.mkdirSync(data, { recursive: true });
    fs.mkdirSync(exec, { recursive: true });
    const inner = [
      `hostname ${h.name}`,
      // The hub's files are not this host's: an empty tmpfs over them.
      `mount -t tmpfs -o size=1m,mode=0755 tmpfs ${JSON.stringify(this.hubDir)}`,
      `exec dockerd --data-root ${JSON.stringify(data)} --exec-root ${JSON.stringify(exec)} --pidfile ${JSON.stringify(path.join(h.dir, "docker.pid"))} ` +
        `-H unix://${h.socket} --bridge=none --iptables=false --ip-masq=false --cgroup-parent=/fmh${this.id}-${h.name} ` +
        `--insecure-registry ${SUBNET}.0/24 --log-level warn`,
    ].join(" && ");
    const log = fs.openSync(path.join(h.dir, "dockerd.log"), "a");
    const holder = this.track(
      spawn("nsenter", [`--net=/run/netns/${h.netns}`, "unshare", "--uts", "--mount", "--propagation", "slave", "--pid", "--fork", "--mount-proc", "docker-init", "-s", "--", "sh", "-c", inner], {
        stdio: ["ignore", log, log],
      }),
    );
    fs.closeSync(log);
    h.holder = holder;
    h.initPid = await until(
      `the init of ${h.name}`,
      async () => {
        const kids = fs.readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
        return kids.length ? Number(kids[0]) : undefined;
      },
      10_000,
      50,
    );
    await until(`the engine of ${h.name}`, async () => (await h.engine.ping()) && true, 60_000, 500);
    if (!(await h.engine.getImage(DEFAULT_BASE_IMAGE).inspect().catch(() => undefined))) {
      this.say(`loading ${DEFAULT_BASE_IMAGE} into ${h.name}`);
      const s = (await h.engine.loadImage(fs.createReadStream(this.baseTar!))) as NodeJS.ReadableStream;
      const events = await consumeJsonStream(s);
      const bad = events.find((e) => e.error);
      if (bad) throw new Error(`loading the base image into ${h.name}: ${bad.error}`);
    }
  }

  /** Start `forager worker` on a host (inside its namespaces, against its engine); resolves once it is serving. */
  async startWorker(h: ClusterHost, args: string[] = []): Promise<ClusterWorker> {
    if (!h.initPid) throw new Error(`${h.name} is down`);
    h.started = (h.started ?? 0) + 1;
    const log = path.join(h.dir, `worker-${h.started}.log`);
    const fd = fs.openSync(log, "a");
    const argv = ["nsenter", "-t", String(h.initPid), "-n", "-m", "-u", "-p", process.execPath, "--import", TSX, path.join(ROOT, "cli", "main.ts"), "worker", "--redis", this.redisUrl, "--registry", this.registry, "--lock-ms", "5000", "--grace-seconds", "5", ...args];
    const child = this.track(
      spawn(argv[0]!, argv.slice(1), {
        cwd: path.join(h.dir, "work"),
        env: { ...process.env, ...this.foragerEnv({ DOCKER_HOST: `unix://${h.socket}`, FORAGER_STATE_DIR: path.join(h.dir, "state") }) },
        stdio: ["ignore", fd, fd],
      }),
    );
    fs.closeSync(fd);
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const w: ClusterWorker = { host: h, child, log, exited };
    h.workers.push(w);
    await until(`the worker on ${h.name}`, async () => {
      if (child.exitCode !== null) throw new Error(`worker on ${h.name} exited (${child.exitCode}): ${fs.readFileSync(log, "utf8").slice(-800)}`);
      return fs.readFileSync(log, "utf8").includes("episode slots");
    }, 60_000);
    return w;
  }

  /** Kill a host at once (SIGKILL to its init: worker, engine, sandboxes, everything of it). */
  async killHost(h: ClusterHost): Promise<void> {
    if (!h.initPid) return;
    process.kill(h.initPid, "SIGKILL");
    const holder = h.holder;
    if (holder && holder.exitCode === null && holder.signalCode === null) await until(`${h.name} to die`, async () => holder.exitCode !== null || holder.signalCode !== null, 30_000, 100);
    await Promise.all(h.workers.map((w) => Promise.race([w.exited, new Promise((r) => setTimeout(r, 10_000))])));
    h.initPid = undefined;
    h.holder = undefined;
    h.workers = [];
  }

  /** kill -9 a worker process alone (its host and engine stay up, its sandboxes keep running). */
  async killWorker(w: ClusterWorker): Promise<void> {
    const pid = w.child.pid!;
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    for (const k of kids) process.kill(k, "SIGKILL");
    await Promise.race([w.exited, new Promise((r) => setTimeout(r, 15_000))]);
    w.host.workers = w.host.workers.filter((x) => x !== w);
  }

  /** Run `bin/forager ARGS` on a host (inside its namespaces, against its engine), bounded. */
  onHost(h: ClusterHost, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return this.tsOnHost(h, "cli/main.ts", args, timeoutMs);
  }

  /** Stop a host's workers (SIGTERM, bounded), then its engine (SIGTERM to dockerd, bounded; SIGKILL of the host after). */
  async stopHost(h: ClusterHost): Promise<void> {
    for (const w of h.workers) if (w.child.exitCode === null) w.child.kill("SIGTERM");
    await Promise.all(h.workers.map((w) => Promise.race([w.exited, new Promise((r) => setTimeout(r, 20_000))])));
    h.workers = [];
    if (!h.initPid) return;
    const pid = Number(fs.readFileSync(path.join(h.dir, "docker.pid"), "utf8").trim() || 0);
    try {
      if (pid) await sh(["nsenter", "-t", String(h.initPid), "-p", "-m", "kill", "-TERM", String(pid)]);
    } catch {
      /* gone already */
    }
    const holder = h.holder;
    if (holder) await until(`${h.name}'s engine to stop`, async () => holder.exitCode !== null || holder.signalCode !== null, 30_000, 200).catch(() => this.killHost(h));
    h.initPid = undefined;
    h.holder = undefined;
  }

  /** Remove everything: workers, engines (hosts killed), Redis, registry, namespaces, cgroups, files. Never throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const quiet = async (fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch {
        /* best effort: the rest still goes */
      }
    };
    for (const h of this.hosts) await quiet(() => this.stopHost(h));
    for (const h of this.hosts) await quiet(() => this.killHost(h));
    await quiet(() => this.stopRegistry());
    if (this.redisProc && this.redisProc.exitCode === null) {
      this.redisProc.kill("SIGTERM");
      await quiet(() => until("redis to stop", async () => this.redisProc!.exitCode !== null || this.redisProc!.signalCode !== null, 10_000, 100));
    }
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    for (const h of this.hosts) await quiet(() => sh(["ip", "netns", "del", h.netns]));
    await quiet(() => sh(["ip", "netns", "del", this.hub]));
    for (const h of this.hosts) {
      for (const ctl of fs.existsSync("/sys/fs/cgroup") ? fs.readdirSync("/sys/fs/cgroup") : []) {
        const cg = path.join("/sys/fs/cgroup", ctl, `fmh${this.id}-${h.name}`);
        if (fs.existsSync(cg)) await quiet(() => sh(["find", cg, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"]));
      }
    }
    // Nothing of the engines may stay mounted before the data roots go (their mount namespaces died with them).
    const mounted = fs.readFileSync("/proc/mounts", "utf8").split("\n").map((l) => l.split(" ")[1] ?? "").filter((m) => m.startsWith(this.dir)).sort().reverse();
    for (const m of mounted) await quiet(() => sh(["umount", "-l", m]));
    await quiet(async () => fs.rmSync(this.dir, { recursive: true, force: true }));
  }

  /** The last lines of every log of the cluster (engines, workers, the submitter, the registry), for a failed test. */
  diagnostics(lines = 40): string {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }) : []) {
        const p = path.join(d, e.name);
        if (e.isDirectory() && !["data", "exec", "storage", "state", "redis", "runs", "repo", "work"].includes(e.name)) walk(p);
        else if (e.isFile() && e.name.endsWith(".log")) files.push(p);
      }
    };
    walk(this.dir);
    return files.map((f) => `==== ${path.relative(this.dir, f)}\n${fs.readFileSync(f, "utf8").split("\n").slice(-lines).join("\n")}`).join("\n");
  }

  /** What is left of this cluster on the machine (namespaces, interfaces, processes, mounts): [] once closed. */
  static async leftovers(id: string, dir: string): Promise<string[]> {
    const out: string[] = [];
    const ns = (await sh(["ip", "netns", "list"])).split("\n").filter((l) => l.startsWith(`fmh${id}-`));
    out.push(...ns.map((n) => `netns ${n}`));
    const links = (await sh(["ip", "-o", "link"])).split("\n").filter((l) => l.includes(`fmh${id}`));
    out.push(...links.map((l) => `link ${l.split(":")[1]?.trim()}`));
    for (const p of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      try {
        const cmd = fs.readFileSync(`/proc/${p}/cmdline`, "utf8");
        if (cmd.includes(dir) || cmd.includes(`fmh${id}-`)) out.push(`process ${p} ${cmd.replace(/\0/g, " ").slice(0, 120)}`);
      } catch {
        /* gone */
      }
    }
    out.push(...fs.readFileSync("/proc/mounts", "utf8").split("\n").filter((l) => l.includes(dir)).map((l) => `mount ${l.split(" ")[1]}`));
    if (fs.existsSync(dir)) out.push(`directory ${dir}`);
    return out;
  }
}

// ---- tasks for the cluster: a tiny repository with several commits (one instance image each) --------

const CALC = `"""A tiny calculator."""


def add(a, b):
    return a - b


def sub(a, b):
    return a + b


def mul(a, b):
    return a * b
`;

const VISIBLE = `import unittest

from calc import mul


class CalcTest(unittest.TestCase):
    def test_mul(self):
        self.assertEqual(mul(3, 4), 12)
`;

const HIDDEN = `import unittest

from calc import add, mul, sub


class HiddenTest(unittest.TestCase):
    def test_mul(self):
        self.assertEqual(mul(2, 5), 10)

    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_sub(self):
        self.assertEqual(sub(5, 3), 2)
`;

function gitIn(dir: string, args: string[]): string {
  return execFileSyncText("git", args, dir);
}

function execFileSyncText(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@localhost", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@localhost", GIT_CONFIG_NOSYSTEM: "1", HOME: os.tmpdir() },
  });
}

/**
 * A repository under `dir` with `versions` commits (the same two bugs, a different NOTES.md each,
 * so each commit has its own instance image) and the unified diff helper for its files.
 * @returns the repository path and the full commit shas, oldest first.
 */
export function makeClusterRepo(dir: string, versions: number, salt = randomBytes(4).toString("hex")): { repo: string; commits: string[] } {
  const repo = path.join(dir, "repo");
  fs.mkdirSync(repo, { recursive: true });
  gitIn(repo, ["init", "-q", "-b", "main"]);
  fs.writeFileSync(path.join(repo, "calc.py"), CALC);
  fs.writeFileSync(path.join(repo, "test_calc.py"), VISIBLE);
  const commits: string[] = [];
  for (let v = 0; v < versions; v++) {
    fs.writeFileSync(path.join(repo, "NOTES.md"), `version ${v} (${salt})\n`);
    gitIn(repo, ["add", "-A"]);
    gitIn(repo, ["commit", "-qm", `version ${v}`]);
    commits.push(gitIn(repo, ["rev-parse", "HEAD"]).trim());
  }
  return { repo, commits };
}

/** The diff from `before` to `after` (whole-file contents by path), made with git. */
function diffFiles(before: Record<string, string>, after: Record<string, string>): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "fmh-diff-"));
  try {
    gitIn(d, ["init", "-q"]);
    for (const [p, c] of Object.entries(before)) fs.writeFileSync(path.join(d, p), c);
    gitIn(d, ["add", "-A"]);
    gitIn(d, ["commit", "-qm", "b"]);
    for (const [p, c] of Object.entries(after)) fs.writeFileSync(path.join(d, p), c);
    gitIn(d, ["add", "-A", "-N"]);
    return gitIn(d, ["diff"]);
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
}

/**
 * Task records (Task JSONL lines) for the cluster repository: per commit, one task per bug
 * (`add`, `sub`), issue-fix, graded by `python3 -m unittest` (hidden tests in the test patch), the
 * image built from the local path `repo` (the submitter publishes it to the registry).
 */
export function clusterTasks(repo: string, commits: readonly string[], bugs: ReadonlyArray<"add" | "sub"> = ["add", "sub"]): Record<string, unknown>[] {
  const testPatch = diffFiles({ "calc.py": CALC }, { "test_hidden.py": HIDDEN });
  return commits.flatMap((commit, v) =>
    bugs.map((bug) => {
      const fixed = bug === "add" ? CALC.replace("return a - b", "return a + b") : CALC.replace("return a + b\n\n\ndef mul", "return a - b\n\n\ndef mul");
      return {
        id: `example__cluster-calc-v${v}-${bug}`,
        kind: "issue-fix",
        repo: "example/cluster-calc",
        commit,
        image: { repo: "example/cluster-calc", commit, source: { type: "path", path: repo }, testCommand: "python3 -m unittest -v", logParser: "unittest", workdir: "/testbed" },
        problemStatement: `\`${bug}\` computes the wrong thing: ${bug === "add" ? "add(2, 3) returns -1" : "sub(5, 3) returns 8"}.`,
        testPatch,
        testIds: "exact",
        failToPass: [`test_hidden.HiddenTest.test_${bug}`],
        passToPass: ["test_hidden.HiddenTest.test_mul"],
        referencePatch: diffFiles({ "calc.py": CALC }, { "calc.py": fixed }),
      };
    }),
  );
}
