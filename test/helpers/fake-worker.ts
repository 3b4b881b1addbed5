/**
 * The chaos fake worker (test/chaos/fake-worker.ts) as a child process, and a wait for a line of
 * its output: shared by the queue and remote-storage tests.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = path.resolve(__dirname, "..", "..");

/**
 * Start the fake worker against `redisUrl` with extra environment `env`, in `cwd` (default: this
 * process's). tsx is loaded by its path, so `cwd` needs no node_modules.
 */
export function spawnFakeWorker(redisUrl: string, env: Record<string, string>, cwd?: string): ChildProcess {
  const tsx = pathToFileURL(path.join(root, "node_modules", "tsx", "dist", "loader.mjs")).href;
  const child = spawn(process.execPath, ["--import", tsx, path.join(root, "test", "chaos", "fake-worker.ts")], {
    ...(cwd ? { cwd } : {}),
    env: { ...process.env, REDIS_URL: redisUrl, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stderr?.on("data", () => undefined);
  return child;
}

/** Resolves when `child` prints `text` on stdout; rejects after 30 s or when the child exits first. */
export function waitForLine(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const t = setTimeout(() => reject(new Error(`no "${text}" from the child within 30 s: ${buf}`)), 30_000);
    child.stdout?.on("data", (d: Buffer) => {
      buf += d.toString();
      if (buf.includes(text)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`child exited (${code}) before "${text}"`)));
  });
}
