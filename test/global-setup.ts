/**
 * vitest global setup: the Docker engine must answer and forager's base image must exist (made
 * when missing). Teardown asserts that the whole suite left no forager container behind.
 */
import { dockerClient } from "../sandbox/docker";
import { listForagerContainers } from "../sandbox/reaper";
import { ensureBaseImage } from "../images/base";

export async function setup(): Promise<void> {
  await dockerClient().ping();
  await ensureBaseImage({});
}

export async function teardown(): Promise<void> {
  // Give AutoRemove a moment to finish removals the suite started.
  for (let i = 0; i < 20; i++) {
    if ((await listForagerContainers()).length === 0) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  const left = await listForagerContainers();
  if (left.length) {
    await Promise.allSettled(left.map((id) => dockerClient().getContainer(id).remove({ force: true })));
    throw new Error(`the test suite leaked ${left.length} forager container(s): ${left.map((id) => id.slice(0, 12)).join(", ")}`);
  }
}
