/**
 * vitest global setup: the Docker engine must answer and forager's base image must exist (made
 * when missing). Teardown asserts that the suite left no forager container behind: every
 * container made during the run by a process of this machine that has since exited (the vitest
 * workers are gone by then) is a leak. Containers of other live processes are not ours to judge.
 */
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { dockerClient } from "../sandbox/docker";
import { LABELS } from "../sandbox/config";
import { ownerAlive } from "../lib/process";
import { ensureBaseImage } from "../images/base";

let startedAt = 0;

function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}
export const LEAK_FILE = ".forager/test-leaks.json";

async function leaked(): Promise<string[]> {
  const list = await dockerClient().listContainers({ all: true, filters: { label: [LABELS.forager] } });
  return list
    .filter((c) => {
      const l = c.Labels ?? {};
      const created = Date.parse(l[LABELS.createdAt] ?? "");
      if (!(created >= startedAt)) return false;
      const pid = Number(l[LABELS.ownerPid]);
      if (!ownerAlive({ host: l[LABELS.host], pid, start: l[LABELS.ownerStart] })) return true;
      // Still alive: ours when it is this process or one of its workers.
      return l[LABELS.host] === hostname() && (pid === process.pid || parentPid(pid) === process.pid);
    })
    .map((c) => c.Id);
}

export async function setup(): Promise<void> {
  startedAt = Date.now() - 1000;
  await dockerClient().ping();
  await ensureBaseImage({});
  mkdirSync(".forager", { recursive: true });
  writeFileSync(LEAK_FILE, "[]\n");
}

export async function teardown(): Promise<void> {
  // Give AutoRemove a moment to finish removals the suite started.
  let left: string[] = [];
  for (let i = 0; i < 20; i++) {
    left = await leaked();
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  writeFileSync(LEAK_FILE, JSON.stringify(left) + "\n");
  if (left.length) {
    await Promise.allSettled(left.map((id) => dockerClient().getContainer(id).remove({ force: true })));
    process.exitCode = 1;
    throw new Error(`the test suite leaked ${left.length} forager container(s): ${left.map((id) => id.slice(0, 12)).join(", ")}`);
  }
}
