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
    // The naming rule: a file named *.unit.test.ts needs no Docker engine (its Docker cases, if any,
    // skip themselves) and runs here as well as in `npm test`.
    include: ["test/**/*.unit.test.ts"],
    testTimeout: 60_000,
    reporters: ["default"],
  },
});
