/**
 * `forager doctor`: checks what forager needs and says what to do about each failure.
 */
import { defaultStateDir } from "../images/state";
import { statfsSync } from "node:fs";
import { Socket } from "node:net";
import { engineInfo, imageExists } from "../images/docker";
import { DEFAULT_BASE_IMAGE } from "../images/spec";

/** One check's outcome. */
export interface Check {
  name: string;
  ok: boolean;
  /** What was found. */
  detail: string;
  /** What to do when not ok (or a warning). */
  fix?: string;
  /** A failure that does not stop forager (e.g. Redis for single-machine commands). */
  optional?: boolean;
}

const MIN_API = "1.41";
const MIN_FREE_BYTES = 20 * 1024 ** 3;

function apiAtLeast(v: string, min: string): boolean {
  const [a, b] = v.split(".").map(Number);
  const [c, d] = min.split(".").map(Number);
  return a! > c! || (a === c && b! >= d!);
}

/** Is a Redis server answering PING at `url` (redis://host:port)? */
async function redisPing(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = new Socket();
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("no answer within 2 s"));
    }, 2000);
    sock.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.connect(Number(u.port || 6379), u.hostname || "127.0.0.1", () => sock.write("PING\r\n"));
    sock.once("data", (d) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(d.toString().trim());
    });
  });
}

/** Run every check. Never throws. */
export async function runDoctor(opts: { baseImage?: string; redisUrl?: string; dir?: string } = {}): Promise<Check[]> {
  const checks: Check[] = [];
  const base = opts.baseImage ?? DEFAULT_BASE_IMAGE;
  let engineOk = false;
  try {
    const info = await engineInfo();
    engineOk = true;
    checks.push({ name: "docker engine", ok: true, detail: `Docker ${info.version} (${info.os}/${info.arch})` });
    const apiOk = apiAtLeast(info.apiVersion, MIN_API);
    checks.push({
      name: "docker API",
      ok: apiOk,
      detail: `API ${info.apiVersion} (forager needs ≥ ${MIN_API})`,
      fix: apiOk ? undefined : "upgrade the engine: apt-get install docker.io (Debian bookworm ships API 1.41)",
    });
  } catch (err) {
    checks.push({
      name: "docker engine",
      ok: false,
      detail: (err as Error).message,
      fix: "start one: apt-get install -y docker.io && (dockerd --iptables=false --ip-masq=false --bridge=none > /var/log/dockerd.log 2>&1 &) — or run `bash scripts/setup.sh`, which does it",
    });
  }
  for (const [label, path] of [["free disk (work dir)", opts.dir ?? process.cwd()], ["free disk (docker)", "/var/lib/docker"]] as const) {
    try {
      const s = statfsSync(path);
      const free = s.bavail * s.bsize;
      const ok = free >= MIN_FREE_BYTES;
      checks.push({
        name: label,
        ok,
        detail: `${(free / 1024 ** 3).toFixed(1)} GiB free at ${path}`,
        fix: ok ? undefined : "images and evaluations need ≥ 20 GiB: `forager images prune --unused-days 7` or free space",
      });
    } catch {
      if (path !== "/var/lib/docker") checks.push({ name: label, ok: false, detail: `cannot stat ${path}` });
    }
  }
  if (engineOk) {
    const has = await imageExists(base).catch(() => false);
    checks.push({
      name: "base image",
      ok: has,
      detail: has ? base : `${base} is missing`,
      fix: has ? undefined : "make it: `forager images base` (bootstraps Debian with mmdebstrap when no registry answers)",
    });
  }
  const stateDir = defaultStateDir();
  checks.push({ name: "state dir", ok: true, detail: `${stateDir}${process.env.FORAGER_STATE_DIR ? " (FORAGER_STATE_DIR)" : ""}: image index, locks, build logs, eval-secret` });
  const redisUrl = opts.redisUrl ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  try {
    const pong = await redisPing(redisUrl);
    checks.push({ name: "redis", ok: pong.includes("PONG"), detail: `${redisUrl}: ${pong}`, optional: true });
  } catch (err) {
    checks.push({
      name: "redis",
      ok: false,
      optional: true,
      detail: `${redisUrl}: ${(err as Error).message}`,
      fix: "needed for multi-machine foraging (--redis): apt-get install -y redis-server && redis-server --daemonize yes; `forager forage` without --redis starts a private one",
    });
  }
  return checks;
}
