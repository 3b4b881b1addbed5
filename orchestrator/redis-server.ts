/**
 * A private Redis for the embedded mode and tests: Debian's `redis-server` on a free loopback
 * port, persistence (AOF, fsync every write, plus an RDB snapshot at shutdown) in a directory of
 * the run, so a restarted server (or `forager resume`) finds the queues where they were.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { Redis } from "ioredis";

export interface RedisServerOptions {
  /** Data directory (AOF and RDB live here); created. */
  dir: string;
  /** Port; default: a free one on 127.0.0.1 (or the one recorded in `<dir>/port` by an earlier start). */
  port?: number;
  /** Binary (default `redis-server` on PATH, else /usr/bin/redis-server). */
  binary?: string;
  /** `appendfsync` policy (default "always": nothing acknowledged is lost on a crash). */
  appendfsync?: "always" | "everysec" | "no";
}

export interface RedisServerHandle {
  url: string;
  port: number;
  dir: string;
  /** The server process (tests kill it). */
  process: ChildProcess;
  /** SHUTDOWN (saves), or SIGKILL with `{ kill: true }`; resolves when the process has exited. */
  stop(opts?: { kill?: boolean }): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bound and released; racy only against other port pickers). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function binary(explicit?: string): string {
  if (explicit) return explicit;
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, "redis-server"))) return path.join(dir, "redis-server");
  }
  return "/usr/bin/redis-server";
}

/** Start redis-server and wait until it answers PING (at most 10 s). */
export async function startRedisServer(opts: RedisServerOptions): Promise<RedisServerHandle> {
  fs.mkdirSync(opts.dir, { recursive: true });
  const portFile = path.join(opts.dir, "port");
  let port = opts.port;
  if (port === undefined && fs.existsSync(portFile)) {
    const recorded = Number(fs.readFileSync(portFile, "utf8").trim());
    if (recorded > 0 && (await portIsFree(recorded))) port = recorded;
  }
  port ??= await freePort();
  fs.writeFileSync(portFile, `${port}\n`);
  const args = [
    "--port", String(port),
    "--bind", "127.0.0.1",
    "--dir", opts.dir,
    "--appendonly", "yes",
    "--appendfsync", opts.appendfsync ?? "always",
    "--save", "",
    "--daemonize", "no",
    "--protected-mode", "yes",
    "--maxmemory-policy", "noeviction",
    "--logfile", path.join(opts.dir, "redis.log"),
  ];
  const child = spawn(binary(opts.binary), args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${stderr || tail(path.join(opts.dir, "redis.log"))}`);
    const ok = await ping(url);
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`redis-server on port ${port} did not answer within 10 s: ${tail(path.join(opts.dir, "redis.log"))}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    port,
    dir: opts.dir,
    process: child,
    async stop(o = {}) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(o.kill ? "SIGKILL" : "SIGTERM"); // SIGTERM: redis-server saves and exits
      await exited;
    },
  };
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-5).join("\n");
  } catch {
    return "";
  }
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

async function ping(url: string): Promise<boolean> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
  r.on("error", () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}
