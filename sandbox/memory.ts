/**
 * An in-memory {@link Runtime}: files in a Map, directories in a Set, and a scripted shell. No
 * Docker, no process — for unit tests of the tools and of anything else written against Runtime,
 * and for benchmarks that need many environments at the cost of none (stub sandboxes).
 *
 * Paths are POSIX; relative ones resolve against the cwd (default `/testbed`). `run` answers from
 * the `shell` function given at construction (default: exit 0, no output); `exec` does the same
 * with the argv joined by spaces.
 */
import path from "node:path/posix";
import { FileNotFoundError, type ExecOptions, type ExecResult, type FileStat, type RunOptions, type Runtime } from "./runtime";
import type { SessionResult } from "./session";

/** What a scripted command returns: output (merged), exit code (default 0), status (default ok). */
export interface ScriptedReply {
  output?: string;
  exitCode?: number | null;
  status?: SessionResult["status"];
}

export interface MemoryRuntimeOptions {
  cwd?: string;
  /** Initial files: path (absolute or relative to cwd) → content. Parent directories are implied. */
  files?: Record<string, string | Buffer>;
  /** The shell: command text → reply. */
  shell?: (command: string, rt: MemoryRuntime) => ScriptedReply | Promise<ScriptedReply>;
}

export class MemoryRuntime implements Runtime {
  readonly files = new Map<string, Buffer>();
  readonly dirs = new Set<string>(["/"]);
  /** Every command given to `run` and `exec`, in order. */
  readonly commands: string[] = [];
  restarts = 0;
  private dir: string;
  private readonly shell: NonNullable<MemoryRuntimeOptions["shell"]>;

  constructor(opts: MemoryRuntimeOptions = {}) {
    this.dir = opts.cwd ?? "/testbed";
    this.mkdirs(this.dir);
    this.shell = opts.shell ?? (() => ({}));
    for (const [p, data] of Object.entries(opts.files ?? {})) this.put(p, data);
  }

  private abs(p: string): string {
    return path.resolve(this.dir, p);
  }

  private mkdirs(dir: string): void {
    for (let d = dir; !this.dirs.has(d); d = path.dirname(d)) this.dirs.add(d);
  }

  /** Write a file synchronously, creating its parents. */
  put(p: string, data: string | Buffer): void {
    const a = this.abs(p);
    this.mkdirs(path.dirname(a));
    this.files.set(a, Buffer.isBuffer(data) ? data : Buffer.from(data));
  }

  /** A file's content as UTF-8, or undefined. */
  text(p: string): string | undefined {
    return this.files.get(this.abs(p))?.toString("utf8");
  }

  /** Change the cwd (as a `cd` in the session would). */
  chdir(p: string): void {
    this.dir = this.abs(p);
    this.mkdirs(this.dir);
  }

  async run(command: string, _opts: RunOptions = {}): Promise<SessionResult> {
    this.commands.push(command);
    const started = performance.now();
    const r = await this.shell(command, this);
    const output = r.output ?? "";
    return {
      output,
      exitCode: r.exitCode === undefined ? 0 : r.exitCode,
      status: r.status ?? "ok",
      durationMs: performance.now() - started,
      outputBytes: Buffer.byteLength(output),
    };
  }

  async restartAgent(): Promise<void> {
    this.restarts++;
  }

  async exec(argv: string[], _opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.run(argv.join(" "));
    return { exitCode: r.exitCode, stdout: Buffer.from(r.output), stderr: Buffer.alloc(0), timedOut: r.status === "timeout", durationMs: r.durationMs };
  }

  async cwd(): Promise<string> {
    return this.dir;
  }

  async resolvePath(p: string): Promise<string> {
    return this.abs(p);
  }

  async stat(p: string): Promise<FileStat> {
    const a = this.abs(p);
    const isFile = this.files.has(a);
    const isDir = this.dirs.has(a);
    return { exists: isFile || isDir, isFile, isDir, abs: a };
  }

  async fileSize(p: string): Promise<number | undefined> {
    return this.files.get(this.abs(p))?.length;
  }

  async readFile(p: string): Promise<Buffer> {
    const data = this.files.get(this.abs(p));
    if (!data) throw new FileNotFoundError(p);
    return data;
  }

  async writeFile(p: string, data: string | Buffer, _opts: { mode?: number } = {}): Promise<void> {
    this.put(p, data);
  }
}

/**
 * A {@link MemoryRuntime} with a sandbox's name and lifecycle: what an episode needs of its
 * sandbox (agent/env.ts EnvSandbox), with no engine. `destroyed` says whether it was destroyed.
 */
export class MemorySandbox extends MemoryRuntime {
  destroyed = false;
  constructor(
    readonly name = "memory-sandbox",
    opts: MemoryRuntimeOptions = {},
  ) {
    super(opts);
  }

  /** Mark it destroyed. Safe to call twice. */
  async destroy(): Promise<void> {
    this.destroyed = true;
  }
}
