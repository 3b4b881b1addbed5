/**
 * Mutate-fix tasks (CWM §2.3): procedural bug injection in Python repositories, validation by
 * the repository's own tests with coverage-selected test runs, and the agent's starting state
 * made at sandbox start from the shared instance image. See docs/mutate-fix.md.
 */
export * from "./operators";
export * from "./candidates";
export * from "./diff";
export * from "./validate";
export * from "./issue";
export * from "./generate";
export { parsePython, entities, complexity, byteOffset, type Entity } from "./python";
