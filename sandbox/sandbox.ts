/**
 * A Sandbox: one container started from an image, with limits, and a persistent bash session
 * inside it — the Docker implementation of both halves of sandbox/runtime.ts (Runtime: session,
 * processes, files; Container: start, limits, destroy). forager's own file work goes through a second, hidden "control" session, so the
 * agent's tools need nothing in the image but bash and coreutils (no Python).
 *
 * Lifetime: the container's PID 1 is a bash loop ({@link pid1Script}) that ends when the
 * lifetime is over, with AutoRemove, so the engine removes the container even if forager was
 * SIGKILLed; labels name the owner process so the reaper can remove it earlier
 * (sandbox/reaper.ts). PID 1 is bash itself, not docker-init with a child: the kernel delivers
 * no signal to a namespace's init from inside unless it handles it, so nothing the agent runs
 * (`kill -9 -1`, `kill 1`) can end the container; bash also reaps orphaned processes.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { PassThrough, type Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import type Docker from "dockerode";
import tar from "tar-fs";
import tarStream from "tar-stream";
import { EnvironmentError } from "../lib/errors";
import { silentLogger, type Logger } from "../lib/log";
import { networkSettings, ownerLabels, SandboxConfigSchema, type SandboxConfig, type SandboxConfigInput } from "./config";
import { FrameDemuxer } from "./demux";
import { dockerClient, isGoneError } from "./docker";
import { shellQuote } from "../lib/shell";
import { FileNotFoundError, type Container, type ExecOptions, type ExecResult, type FileStat, type RunOptions, type Runtime } from "./runtime";
import { BashSession, type RawResult, type SessionResult } from "./session";

export { FileNotFoundError, type ExecResult } from "./runtime";

/**
 * Bounded capture of a stream: the first `headBytes` and the last `tailBytes`, the rest counted,
 * so a process that prints gigabytes costs at most head + tail bytes of memory.
 */
export class HeadTailBuffer {
  private head: Buffer[] = [];
  private headLen = 0;
  private tail: Buffer[] = [];
  private tailLen = 0;
  /** Bytes seen in all. */
  total = 0;
  constructor(
    readonly headBytes: number,
    readonly tailBytes: number,
  ) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.headLen < this.headBytes) {
      const take = chunk.subarray(0, this.headBytes - this.headLen);
      this.head.push(Buffer.from(take));
      this.headLen += take.length;
      chunk = chunk.subarray(take.length);
      if (chunk.length === 0) return;
    }
    this.tail.push(Buffer.from(chunk));
    this.tailLen += chunk.length;
    while (this.tailLen - (this.tail[0]?.length ?? 0) >= this.tailBytes) this.tailLen -= this.tail.shift()!.length;
  }

  /** Bytes dropped between the head and the tail. */
  get dropped(): number {
    return Math.max(0, this.total - this.headLen - Math.min(this.tailLen, this.tailBytes));
  }

  /** The kept bytes (head, then the last `tailBytes`). */
  bytes(): Buffer {
    const tail = Buffer.concat(this.tail);
    return Buffer.concat([...this.head, tail.subarray(Math.max(0, tail.length - this.tailBytes))]);
  }
}


const live = new Set<Sandbox>();

/** Sandboxes of this process not yet destroyed. */
export function liveSandboxes(): ReadonlySet<Sandbox> {
  return live;
}

/** Sandbox creations under way (a container may exist that is not in `live` yet). */
const creating = new Set<Promise<unknown>>();
/** Set by `destroyAllSandboxes({ final: true })`: the process is exiting, no sandbox may start. */
let closing = false;

/**
 * Destroy every live sandbox of this process (signal handlers, test teardown). With `final` (the
 * process is about to exit: cli/main.ts on a signal), creations under way are awaited and their
 * sandboxes destroyed too, and any later `Sandbox.create` refuses before asking the engine, so no
 * container created at the instant of the signal outlives the process.
 */
export async function destroyAllSandboxes(opts: { final?: boolean } = {}): Promise<void> {
  if (opts.final) closing = true;
  for (let round = 0; round < 10; round++) {
    if (opts.final && creating.size) await Promise.allSettled([...creating]);
    if (!live.size) break;
    await Promise.allSettled([...live].map((s) => s.destroy()));
    if (!opts.final) break;
  }
}

/**
 * PID 1 of a sandbox: sleeps in 5 s steps until `lifetimeSeconds` have passed, then exits (the
 * container is removed). Signals from inside the container are ignored.
 */
export function pid1Script(lifetimeSeconds: number): string {
  return (
    `trap '' TERM INT HUP QUIT USR1 USR2 PIPE; end=$((SECONDS + ${Math.ceil(lifetimeSeconds)})); ` +
    `while left=$((end - SECONDS)); [ "$left" -gt 0 ]; do sleep $((left < 5 ? left : 5)) & wait $!; done`
  );
}

export class Sandbox implements Runtime, Container {
  private agent: BashSession | undefined;
  private control: BashSession | undefined;
  private destroyed = false;
  /** Number of times the agent session was restarted (timeout, overflow, exit). */
  restarts = 0;

  private constructor(
    readonly container: Docker.Container,
    readonly id: string,
    readonly name: string,
    readonly config: SandboxConfig,
    /** Default working directory of the session. */
    readonly workdir: string,
    private readonly log: Logger,
  ) {}

  /**
   * Create and start a container from `config.image` and open its bash session.
   * @throws EnvironmentError when the engine refuses (missing image, bad limits) or bash fails.
   */
  static async create(input: SandboxConfigInput, opts: { docker?: Docker; logger?: Logger; lazySessions?: boolean } = {}): Promise<Sandbox> {
    if (closing) throw new EnvironmentError("the process is exiting: no new sandbox");
    const p = Sandbox.createTracked(input, opts);
    creating.add(p);
    try {
      return await p;
    } finally {
      creating.delete(p);
    }
  }

  private static async createTracked(input: SandboxConfigInput, opts: { docker?: Docker; logger?: Logger; lazySessions?: boolean }): Promise<Sandbox> {
    const config = SandboxConfigSchema.parse(input);
    const docker = opts.docker ?? dockerClient();
    const log = opts.logger ?? silentLogger;
    const name = `${config.namePrefix}-${randomBytes(6).toString("hex")}`;
    const labels: Record<string, string> = { ...config.labels, ...ownerLabels(config.lifetimeSeconds) };
    let container: Docker.Container | undefined;
    let workdir: string;
    try {
      container = await docker.createContainer({
        name,
        Image: config.image,
        Entrypoint: [],
        Cmd: ["bash", "--noprofile", "--norc", "-c", pid1Script(config.lifetimeSeconds)],
        Labels: labels,
        WorkingDir: config.workdir,
        Env: Object.entries(config.env).map(([k, v]) => `${k}=${v}`),
        User: config.user,
        HostConfig: {
          ...networkSettings(config.network),
          Memory: config.memoryBytes,
          MemorySwap: config.memoryBytes,
          NanoCpus: Math.round(config.cpus * 1e9),
          PidsLimit: config.pidsLimit,
          CapDrop: ["ALL"],
          CapAdd: config.capabilities,
          SecurityOpt: ["no-new-privileges"],
          AutoRemove: true,
          Init: false,
        },
      });
      await container.start();
      workdir = config.workdir ?? ((await container.inspect()).Config.WorkingDir || "/");
    } catch (err) {
      // Created but not started (or not inspected): remove it, it is in no cleanup set yet.
      await container?.remove({ force: true, v: true }).catch(() => undefined);
      throw new EnvironmentError(`cannot start a sandbox from ${config.image}: ${(err as Error).message}`, { cause: err });
    }
    const sandbox = new Sandbox(container, container.id, name, config, workdir, log.child({ sandbox: name }));
    live.add(sandbox);
    if (closing) {
      await sandbox.destroy();
      throw new EnvironmentError("the process is exiting: sandbox removed");
    }
    try {
      // lazySessions: a sandbox used only through exec (an evaluation) opens no session up front.
      if (!opts.lazySessions) [sandbox.agent, sandbox.control] = await Promise.all([sandbox.openSession(true), sandbox.openSession()]);
    } catch (err) {
      await sandbox.destroy();
      throw new EnvironmentError(`sandbox ${name}: bash session failed to start: ${(err as Error).message}`, { cause: err });
    }
    log.debug({ sandbox: name, image: config.image }, "sandbox started");
    return sandbox;
  }

  /**
   * While a command runs: every `diskCheckSeconds`, the writable layer's size; over
   * `diskLimitBytes` the command ends with status "disk_limit" (the session is then restarted).
   */
  private diskWatchdog(session: BashSession): { stop(): void } {
    const limit = this.config.diskLimitBytes;
    if (!limit) return { stop: () => undefined };
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      void this.writableBytes()
        .then((n) => {
          if (n !== undefined && n > limit) {
            this.log.warn({ bytes: n, limit }, "disk limit exceeded");
            session.abort("disk_limit");
          }
        })
        .finally(() => (busy = false));
    }, this.config.diskCheckSeconds * 1000);
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  /** Bytes in the container's writable layer (the engine's SizeRw), or undefined. */
  async writableBytes(): Promise<number | undefined> {
    try {
      const info = (await (this.container.inspect as (o: { size: boolean }) => Promise<unknown>).call(this.container, { size: true })) as { SizeRw?: number };
      return typeof info.SizeRw === "number" ? info.SizeRw : undefined;
    } catch {
      return undefined;
    }
  }

  private openSession(agent = false): Promise<BashSession> {
    return BashSession.start(this.container, {
      ...(agent && this.config.diskLimitBytes ? { fileSizeLimitBytes: this.config.diskLimitBytes } : {}),
      workdir: this.workdir,
      env: this.config.env,
      user: this.config.user,
      timeoutSeconds: this.config.commandTimeoutSeconds,
      outputLimitBytes: this.config.outputLimitBytes,
    });
  }

  /**
   * Run `command` in the persistent session. On timeout, output overflow or the shell exiting,
   * the session's processes are killed and a fresh session is started in the default working
   * directory before this resolves; `status` says which of the three happened.
   * @throws EnvironmentError when a fresh session cannot be started (container gone).
   */
  async run(command: string, opts: RunOptions = {}): Promise<SessionResult> {
    this.assertUsable();
    const session = this.agent ?? (this.agent = await this.openSession(true));
    const watchdog = this.diskWatchdog(session);
    let result: SessionResult;
    try {
      result = await session.run(command, opts);
    } finally {
      watchdog.stop();
    }
    if (result.status !== "ok") {
      this.log.debug({ status: result.status }, "session restart");
      await this.restartAgent();
    }
    return result;
  }

  /**
   * End every process the agent session started (its process group, and processes that left it
   * with `setsid` or by double forking) and start a fresh session. Spared: PID 1 and the control
   * session (forager's one-off `exec`s do not run while the agent's command does).
   */
  async restartAgent(): Promise<void> {
    const old = this.agent;
    this.agent = undefined;
    if (old) {
      old.close();
      await this.killGroup(old.pgid);
      await this.killStrays();
    }
    this.restarts++;
    try {
      this.agent = await this.openSession(true);
    } catch (err) {
      throw new EnvironmentError(`sandbox ${this.name}: cannot restart the session: ${(err as Error).message}`, { cause: err });
    }
  }

  private async killGroup(pgid: number): Promise<void> {
    if (!pgid) return;
    const script = `kill -KILL -- -${pgid} 2>/dev/null; true`;
    const r = await this.controlRaw(script, undefined, 10).catch(() => undefined);
    if (!r || r.status !== "ok") {
      await this.exec(["kill", "-KILL", "--", `-${pgid}`], { timeoutSeconds: 10 }).catch(() => undefined);
    }
  }

  /** Kill every process but PID 1 (and its sleep) and the control session's process group. */
  private async killStrays(): Promise<void> {
    const control = this.control?.alive ? this.control.pgid : -1;
    const script =
      `for p in /proc/[0-9]*; do pid=\${p#/proc/}; [ "$pid" = 1 ] && continue; ` +
      `st=$(cat "$p/stat" 2>/dev/null) || continue; rest=\${st##*) }; set -- $rest; ` +
      `case " $3 " in " 1 "|" ${control} ") continue;; esac; kill -KILL "$pid" 2>/dev/null; done; true`;
    await this.controlRaw(script, undefined, 10).catch(() => undefined);
  }

  /** The agent session's current working directory (absolute path inside the container). */
  async cwd(): Promise<string> {
    const pid = this.agent?.pid;
    if (!pid) return this.workdir;
    const r = await this.controlRaw(`readlink /proc/${pid}/cwd`);
    const dir = r.stdout.toString("utf8").trim();
    return r.exitCode === 0 && dir ? dir : this.workdir;
  }

  /** Resolve `path` against the agent's cwd (absolute paths unchanged). */
  async resolvePath(path: string): Promise<string> {
    if (path.startsWith("/")) return path;
    const cwd = await this.cwd();
    return cwd.endsWith("/") ? cwd + path : `${cwd}/${path}`;
  }

  private async controlRaw(script: string, input?: Buffer, timeoutSeconds = 60, retried = false): Promise<RawResult> {
    this.assertUsable();
    if (!this.control?.alive) {
      if (this.control) await this.exec(["kill", "-KILL", "--", `-${this.control.pgid}`], { timeoutSeconds: 10 }).catch(() => undefined);
      this.control = await this.openSession();
    }
    const r = await this.control.raw(script, { input, timeoutSeconds, outputLimitBytes: 1024 ** 3 });
    if (r.status !== "exited" || retried) return r;
    // The control session was killed from inside (kill -9 -1) before its end was seen: once more.
    return this.controlRaw(script, input, timeoutSeconds, true);
  }

  /**
   * Information on a path (relative paths resolve against the agent's cwd).
   * @returns {exists, isFile, isDir, abs}
   */
  async stat(path: string): Promise<FileStat> {
    const abs = await this.resolvePath(path);
    const p = shellQuote(abs);
    const r = await this.controlRaw(`if [ -d ${p} ]; then printf d; elif [ -e ${p} ]; then printf f; else printf n; fi`);
    const c = r.stdout.toString("latin1");
    return { exists: c !== "n", isFile: c === "f", isDir: c === "d", abs };
  }

  /** Size of a regular file in bytes (relative paths resolve against the agent's cwd); undefined when it is not one. */
  async fileSize(path: string): Promise<number | undefined> {
    const abs = await this.resolvePath(path);
    const p = shellQuote(abs);
    const r = await this.controlRaw(`[ -f ${p} ] && stat -L -c %s ${p}`);
    const n = Number(r.stdout.toString("latin1").trim());
    return r.status === "ok" && r.exitCode === 0 && Number.isFinite(n) ? n : undefined;
  }

  /**
   * Read a file's bytes (relative paths resolve against the agent's cwd).
   * @throws FileNotFoundError when it does not exist or is not a readable regular file.
   */
  async readFile(path: string): Promise<Buffer> {
    const abs = await this.resolvePath(path);
    const p = shellQuote(abs);
    const r = await this.controlRaw(`[ -f ${p} ] && [ -r ${p} ] && cat ${p}`);
    if (r.status !== "ok") throw new EnvironmentError(`reading ${abs} failed: ${r.status}`);
    if (r.exitCode !== 0) throw new FileNotFoundError(path);
    return r.stdout;
  }

  /**
   * Write `data` to a file (created or truncated; mode of an existing file kept; new files get
   * `mode`, default 0644). Relative paths resolve against the agent's cwd.
   * @throws EnvironmentError when the write fails (no parent directory, permission).
   */
  async writeFile(path: string, data: string | Buffer, opts: { mode?: number } = {}): Promise<void> {
    const abs = await this.resolvePath(path);
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    const p = shellQuote(abs);
    const chmod = opts.mode !== undefined ? `; chmod ${opts.mode.toString(8)} ${p}` : "";
    // An existing file's mtime must move forward even within the same second, or Python (whose
    // .pyc check is mtime-in-seconds + size) keeps running stale bytecode after a same-size edit.
    const script =
      // The N input bytes are always consumed (the pipe drains even when the file cannot be
      // opened), so they can never be read by bash as commands.
      `__o=$(stat -c %Y ${p} 2>/dev/null); head -c ${bytes.length} | { cat > ${p} || { cat > /dev/null; false; }; } || exit_code=1; ` +
      `[ -n "$__o" ] && [ "$(stat -c %Y ${p} 2>/dev/null)" = "$__o" ] && touch -d "@$((__o + 1))" ${p} 2>/dev/null; ` +
      `[ -z "$exit_code" ]${chmod}; __rc=$?; unset exit_code; (exit $__rc)`;
    const r = await this.controlRaw(script, bytes);
    if (r.status !== "ok" || r.exitCode !== 0) {
      throw new EnvironmentError(`writing ${abs} failed (${r.status}, exit ${r.exitCode}): ${r.stdout.toString("utf8").slice(0, 300)}`);
    }
  }

  /**
   * Run `argv` once, outside the session (its own process, own timeout, stdout and stderr apart).
   * The timeout is enforced inside the container with coreutils `timeout -s KILL`.
   */
  async exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    this.assertUsable();
    const timeoutSeconds = opts.timeoutSeconds ?? this.config.commandTimeoutSeconds;
    const started = performance.now();
    const exec = await this.container.exec({
      Cmd: ["timeout", "-s", "KILL", String(timeoutSeconds), ...argv],
      AttachStdin: opts.stdin !== undefined,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      WorkingDir: opts.workdir ?? this.workdir,
      Env: Object.entries({ ...this.config.env, ...(opts.env ?? {}) }).map(([k, v]) => `${k}=${v}`),
      User: opts.user ?? this.config.user,
    });
    const stream = (await exec.start({ hijack: true, stdin: opts.stdin !== undefined })) as unknown as Duplex;
    const cap = opts.capture ?? { headBytes: Number.MAX_SAFE_INTEGER, tailBytes: 0 };
    const out = new HeadTailBuffer(cap.headBytes, cap.tailBytes);
    const err = new HeadTailBuffer(cap.headBytes, cap.tailBytes);
    const demux = new FrameDemuxer((payload, type) => (type === 2 ? err : out).push(payload));
    let hardTimeout: NodeJS.Timeout | undefined;
    let diskExceeded = false;
    let diskTimer: NodeJS.Timeout | undefined;
    if (opts.diskLimitBytes) {
      const limit = opts.diskLimitBytes;
      let busy = false;
      diskTimer = setInterval(() => {
        if (busy || diskExceeded) return;
        busy = true;
        void this.writableBytes()
          .then(async (n) => {
            if (n !== undefined && n > limit && !diskExceeded) {
              diskExceeded = true;
              this.log.warn({ bytes: n, limit }, "disk limit exceeded by a one-off command: destroying the container");
              stream.destroy();
              await this.destroy();
            }
          })
          .finally(() => (busy = false));
      }, this.config.diskCheckSeconds * 1000);
      diskTimer.unref();
    }
    await new Promise<void>((resolve) => {
      stream.on("data", (c: Buffer) => demux.push(c));
      stream.on("end", resolve);
      stream.on("close", resolve);
      stream.on("error", resolve);
      hardTimeout = setTimeout(() => {
        stream.destroy();
        resolve();
      }, (timeoutSeconds + 10) * 1000);
      if (opts.stdin !== undefined) stream.end(opts.stdin);
    });
    clearTimeout(hardTimeout);
    if (diskTimer) clearInterval(diskTimer);
    const info = diskExceeded ? undefined : await exec.inspect().catch(() => undefined);
    const exitCode = info?.ExitCode ?? null;
    const durationMs = performance.now() - started;
    return {
      exitCode,
      stdout: out.bytes(),
      stderr: err.bytes(),
      timedOut: exitCode === 137 && durationMs >= timeoutSeconds * 1000,
      durationMs,
      ...(opts.capture ? { droppedBytes: out.dropped + err.dropped } : {}),
      ...(diskExceeded ? { diskLimitExceeded: true } : {}),
    };
  }

  /**
   * A regular file's bytes read through the engine's archive API (nothing runs in the
   * container), at most `maxBytes` of it; undefined when the path is missing or not a file.
   */
  async readFileFromEngine(containerPath: string, maxBytes: number): Promise<{ bytes: Buffer; size: number } | undefined> {
    this.assertUsable();
    let archive: NodeJS.ReadableStream;
    try {
      archive = (await this.container.getArchive({ path: containerPath })) as NodeJS.ReadableStream;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw new EnvironmentError(`reading ${containerPath} through the engine: ${(err as Error).message}`, { cause: err });
    }
    const extract = tarStream.extract();
    let result: { bytes: Buffer; size: number } | undefined;
    extract.on("entry", (header, body, next) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      body.on("data", (data: unknown) => {
        const c = data as Buffer;
        if (result === undefined && header.type === "file" && kept < maxBytes) {
          const take = c.subarray(0, maxBytes - kept);
          chunks.push(take);
          kept += take.length;
        }
      });
      body.on("end", () => {
        if (result === undefined && header.type === "file") result = { bytes: Buffer.concat(chunks), size: header.size ?? kept };
        next();
      });
      body.resume();
    });
    await pipeline(archive, extract);
    return result;
  }

  /** Copy a host directory's contents into `containerDir` (created when missing). */
  async copyIn(hostDir: string, containerDir: string): Promise<void> {
    this.assertUsable();
    await this.exec(["mkdir", "-p", containerDir], { timeoutSeconds: 30 });
    const pack = tar.pack(hostDir);
    await this.container.putArchive(pack as unknown as NodeJS.ReadableStream, { path: containerDir });
  }

  /** Copy `containerPath` (file or directory) into the host directory `hostDir`. */
  async copyOut(containerPath: string, hostDir: string): Promise<void> {
    this.assertUsable();
    mkdirSync(hostDir, { recursive: true });
    const archive = (await this.container.getArchive({ path: containerPath })) as NodeJS.ReadableStream;
    await pipeline(archive, new PassThrough(), tar.extract(hostDir));
  }

  /** Stop and remove the container. Never throws; safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.agent?.close();
    this.control?.close();
    try {
      await this.container.remove({ force: true, v: true });
    } catch (err) {
      if (!isGoneError(err)) this.log.warn({ err }, "sandbox remove failed");
    } finally {
      live.delete(this);
    }
  }

  private assertUsable(): void {
    if (this.destroyed) throw new EnvironmentError(`sandbox ${this.name} was destroyed`);
  }
}
