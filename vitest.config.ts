import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Docker-backed suites share one engine: keep files in parallel but bounded.
    maxWorkers: 2,
    globalSetup: ["test/global-setup.ts"],
    reporters: ["default"],
  },
});
