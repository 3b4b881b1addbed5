/**
 * Test helpers: sandboxes from the base image, always destroyed after each test file.
 */
import { afterAll } from "vitest";
import { DEFAULT_BASE_IMAGE } from "../../images/spec";
import { Sandbox } from "../../sandbox/sandbox";
import type { SandboxConfigInput } from "../../sandbox/config";

export const BASE_IMAGE = process.env.FORAGER_TEST_IMAGE ?? DEFAULT_BASE_IMAGE;

/** Sandboxes created through `newSandbox` are destroyed in the file's afterAll. */
export function sandboxFactory(): (cfg?: Partial<SandboxConfigInput>) => Promise<Sandbox> {
  const made: Sandbox[] = [];
  afterAll(async () => {
    await Promise.allSettled(made.map((s) => s.destroy()));
  });
  return async (cfg = {}) => {
    const s = await Sandbox.create({ image: BASE_IMAGE, lifetimeSeconds: 600, labels: { "forager.run": "test" }, ...cfg });
    made.push(s);
    return s;
  };
}
