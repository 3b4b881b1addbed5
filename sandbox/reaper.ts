/**
 * The reaper: removes forager containers whose owner process is gone (same host, pid dead or
 * reused) or whose lifetime is over. Runs at start-up of long-lived commands and on demand
 * (`forager sandbox reap`). Containers of live owners on other hosts are left alone until they
 * expire.
 */
import type Docker from "dockerode";
import { ownerAlive } from "../lib/process";
import { LABELS } from "./config";
import { dockerClient, isGoneError } from "./docker";

export interface ReapedContainer {
  id: string;
  name: string;
  reason: "owner_gone" | "expired";
}

export interface ReapOptions {
  docker?: Docker;
  /** Only report, remove nothing. */
  dryRun?: boolean;
  /** Current time, ms since epoch (tests). */
  now?: number;
}

/**
 * Find and remove orphaned or expired forager containers.
 * @returns the containers removed (or that would be, with dryRun).
 */
export async function reapSandboxes(opts: ReapOptions = {}): Promise<ReapedContainer[]> {
  const docker = opts.docker ?? dockerClient();
  const now = opts.now ?? Date.now();
  const list = await docker.listContainers({ all: true, filters: { label: [LABELS.forager] } });
  const reaped: ReapedContainer[] = [];
  for (const c of list) {
    const l = c.Labels ?? {};
    const expires = Date.parse(l[LABELS.expiresAt] ?? "");
    let reason: ReapedContainer["reason"] | undefined;
    if (Number.isFinite(expires) && expires <= now) reason = "expired";
    else if (!ownerAlive({ host: l[LABELS.host], pid: Number(l[LABELS.ownerPid]), start: l[LABELS.ownerStart] })) {
      reason = "owner_gone";
    }
    if (!reason) continue;
    reaped.push({ id: c.Id, name: (c.Names?.[0] ?? c.Id).replace(/^\//, ""), reason });
    if (!opts.dryRun) {
      await docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch((err: unknown) => {
          if (!isGoneError(err)) throw err;
        });
    }
  }
  return reaped;
}

/** Ids of every forager container on the engine (tests assert none is left). */
export async function listForagerContainers(docker: Docker = dockerClient()): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [LABELS.forager] } });
  return list.map((c) => c.Id);
}
