/**
 * forager's exit codes, defined once (documented in docs/cli.md, printed by `forager --help`).
 *
 * | code | meaning |
 * | --- | --- |
 * | 0 | done, nothing failed |
 * | 1 | a runtime failure: the engine, an environment error, a replay that differs |
 * | 2 | usage or bad input: a flag's value, a missing file, an unreachable `--model-url`, nothing to do |
 * | 3 | the run finished but some samples failed (counted apart from rewards and pass@k) |
 * | 130 | interrupted (SIGINT / SIGTERM): what was saved is kept; `forager resume` continues a run |
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  someFailed: 3,
  interrupted: 130,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The table above as help text (the end of `forager --help`). */
export const EXIT_CODES_HELP = [
  "Exit codes:",
  "  0    done, nothing failed",
  "  1    runtime failure (engine, environment error, replay differs)",
  "  2    usage or bad input (flag value, missing file, unreachable --model-url, nothing to do)",
  "  3    run finished, some samples failed (kept out of rewards and pass@k)",
  "  130  interrupted (Ctrl-C / SIGTERM): saved work is kept; `forager resume RUN` continues",
].join("\n");

/** The environment variables forager reads (the end of `forager --help`, docs/cli.md). */
export const ENV_HELP = [
  "Environment:",
  "  FORAGER_STATE_DIR   state (image index, locks, build logs, eval-secret); default $XDG_STATE_HOME/forager or ~/.local/state/forager",
  "  FORAGER_LOG_LEVEL   pino level (trace…fatal, silent); setting it turns on JSON logs on stderr (also --log-level)",
  "  FORAGER_LOG_JSON    1: JSON logs on stderr at the default level (also --log-json)",
  "  FORAGER_REPOS       directories of local clones for SWE-bench tasks, ':'-separated (also --repos)",
  "  FORAGER_IMAGES      swebench[=REGISTRY/NAMESPACE]: the harness's prebuilt images (also --images)",
  "  FORAGER_API_KEY     API key of the model endpoints (forage --api-key)",
  "  REDIS_URL           Redis of `worker` and `doctor` (also --redis)",
  "  DOCKER_HOST         the Docker engine (default the local socket)",
].join("\n");

/**
 * Bad input from the person at the terminal (a flag's value, two flags that do not go together,
 * a path that is not there, an endpoint that does not answer): printed as one line, exit 2.
 */
export class UsageError extends Error {
  readonly exitCode = EXIT.usage;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
