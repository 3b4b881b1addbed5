import { defineConfig } from "vitest/config";

/**
 * Unit tests: no Docker engine, no network beyond loopback, seconds (`npm run test:unit`).
 * Parsers, grading, similarity, the action parser, the prompt, the tokenizer, SWE-bench rows,
 * anti-forgery helpers, mutation operators, spec inference and its pip mode (their Docker cases skip themselves), the
 * compose file, the inference client against a scripted loopback server, the cluster's option parsing
 * and capacity.
 */
export default defineConfig({
  test: {
    include: [
      "test/forgery.test.ts",
      "test/agent.test.ts",
      "test/agent-env.test.ts",
      "test/eval-plan.test.ts",
      "test/commits-select.test.ts",
      "test/mutate-operators.test.ts",
      "test/image-infer.test.ts",
      "test/setup-agent.test.ts",
      "test/pip-index.test.ts",
      "test/orchestrator-compose.test.ts",
      "test/orchestrator-records.test.ts",
      "test/cluster-units.test.ts",
      "test/grading.test.ts",
      "test/inference-client.test.ts",
      "test/inference-routing.test.ts",
      "test/log-parsers.test.ts",
      "test/parse.test.ts",
      "test/similarity.test.ts",
      "test/swebench-tasks.test.ts",
      "test/tokenizer.test.ts",
      "test/tools-runtime.test.ts",
    ],
    testTimeout: 60_000,
    reporters: ["default"],
  },
});
