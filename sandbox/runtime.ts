/**
 * The two halves of a sandbox, as SWE-ReX separates a runtime from its deployment:
 *
 * - {@link Runtime}: what runs inside an environment — the agent's persistent bash session, one-off
 *   processes, and file work. The tools (tools/), a task's start state (tasks/start.ts) and the
 *   agent loop need only this, so any backend that can run bash and move bytes (a Docker container,
 *   podman, a remote engine, a Kubernetes pod, or an in-memory fake in tests) can serve them.
 * - {@link Container}: the lifecycle of the environment itself — started from an image with limits
 *   (`Sandbox.create`), its disk use, copies in and out, and its destruction.
 *
 * `Sandbox` (sandbox.ts) is the Docker implementation of both.
 */
import type { SandboxConfig } from "./config";
import type { SessionResult } from "./session";

/** Thrown by file operations when the path does not exist. */
export class FileNotFoundError extends Error {
  constructor(readonly path: string) {
    super(`no such file: ${path}`);
    this.name = "FileNotFoundError";
  }
}

/** Result of a one-off {@link Runtime.exec} outside the session. */
export interface ExecResult {
  exitCode: number | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
  durationMs: number;
  /** With `capture`: bytes dropped between the kept head and tail (stdout and stderr together). */
  droppedBytes?: number;
  /**
   * With `diskLimitBytes`: the container's writable layer grew past the bound while the command
   * ran, and the container was destroyed to stop it (the result holds what was read until then).
   */
  diskLimitExceeded?: boolean;
}

/** Options of {@link Runtime.exec}. */
export interface ExecOptions {
  /** Wall-clock limit in seconds (default: the sandbox's commandTimeoutSeconds). */
  timeoutSeconds?: number;
  workdir?: string;
  env?: Record<string, string>;
  user?: string;
  stdin?: string | Buffer;
  /** Keep only the first `headBytes` and the last `tailBytes` of each stream (bounded memory). */
  capture?: { headBytes: number; tailBytes: number };
  /**
   * Bound of the container's writable layer while this command runs, bytes: read every
   * `diskCheckSeconds` of the sandbox; past it the whole container is destroyed (a one-off
   * command has no session to restart) and the result says `diskLimitExceeded`.
   */
  diskLimitBytes?: number;
}

/** Options of {@link Runtime.run}. */
export interface RunOptions {
  /** Wall-clock limit in seconds (default: the sandbox's commandTimeoutSeconds). */
  timeoutSeconds?: number;
  /** Observation cap in bytes (default: the sandbox's outputLimitBytes). */
  outputLimitBytes?: number;
}

/** What {@link Runtime.stat} says of a path; `abs` is the path resolved against the agent's cwd. */
export interface FileStat {
  exists: boolean;
  isFile: boolean;
  isDir: boolean;
  abs: string;
}

/** What runs inside an environment: the agent's session, one-off processes, file work. */
export interface Runtime {
  /**
   * Run `command` in the agent's persistent bash session (cwd, environment and shell state carry
   * over between calls). Never throws for the command's own failure: the status says it.
   * @throws EnvironmentError when the environment itself fails.
   */
  run(command: string, opts?: RunOptions): Promise<SessionResult>;
  /** Replace the agent session with a fresh one (after a timeout, an overflow or an exit). */
  restartAgent(): Promise<void>;
  /** Run `argv` once, outside the session, with its own timeout and stdout/stderr apart. */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** The agent session's current working directory (absolute). */
  cwd(): Promise<string>;
  /** Resolve `path` against the agent's cwd (absolute paths unchanged). */
  resolvePath(path: string): Promise<string>;
  stat(path: string): Promise<FileStat>;
  /** Size in bytes of a regular file; undefined when it is not one. */
  fileSize(path: string): Promise<number | undefined>;
  /** @throws FileNotFoundError when `path` is not a readable file. */
  readFile(path: string): Promise<Buffer>;
  /** Write (create or replace) a file, creating parent directories. */
  writeFile(path: string, data: string | Buffer, opts?: { mode?: number }): Promise<void>;
}

/** The lifecycle of an environment: identity, limits, disk, copies, destruction. */
export interface Container {
  readonly id: string;
  readonly name: string;
  /** The limits it was started with (CPU, memory, pids, disk, timeouts, network off). */
  readonly config: SandboxConfig;
  /** Default working directory of the agent's session. */
  readonly workdir: string;
  /** Bytes the container has written to its writable layer; undefined when the engine does not say. */
  writableBytes(): Promise<number | undefined>;
  /** Copy a host directory's contents into `containerDir`. */
  copyIn(hostDir: string, containerDir: string): Promise<void>;
  /** Copy `containerPath` (file or directory) into the host directory `hostDir`. */
  copyOut(containerPath: string, hostDir: string): Promise<void>;
  /**
   * A regular file's bytes read through the engine (no process runs in the container), at most
   * `maxBytes`: `{bytes, size}` with the file's full size, or undefined when it is not there.
   */
  readFileFromEngine(containerPath: string, maxBytes: number): Promise<{ bytes: Buffer; size: number } | undefined>;
  /** Stop and remove it. Never throws; safe to call twice. */
  destroy(): Promise<void>;
}
