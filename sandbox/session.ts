/**
 * A persistent bash session inside a container, driven over ONE attached docker-exec stream
 * (not one `docker exec` per command).
 *
 * Protocol: the exec runs `bash -c 'read MARKER; bash --noprofile --norc; printf MARKER'`: the
 * outer bash reads the exit marker from the attached stdin (never from its command line, which
 * any process can read in /proc/PID/cmdline), then runs the inner bash, which reads commands from
 * the same stdin. The outer bash is the exec's process-group leader. Each command is sent as a
 * quoted here-document to a wrapper function (defined once at start) that `eval`s it with stdin
 * from /dev/null; then a second function prints a sentinel made of the per-session random nonce
 * (sent with each command as an argument, so it is in no function body, variable, environment or
 * command line of the session) and `$?`. Completion is detected the
 * moment the sentinel arrives on the stream: no polling, and a background job that keeps stdout
 * open (`sleep 1000 &`) does not delay it. When the inner bash exits (`exit`), the outer one
 * prints an exit marker, so a shell exit is seen even while a background job holds the pipe.
 *
 * On a timeout, an output overflow or the shell exiting, the session is dead: the caller
 * (Sandbox) kills its process group and starts a fresh one. CWM semantics:
 * ../shared/reference/cwm-environment.md (bash).
 */
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import type Docker from "dockerode";
import { decodeOutput } from "./decode";
import { FrameDemuxer } from "./demux";

/** Why a command ended. `ok`: the sentinel arrived. The other three kill the session. */
export type SessionStatus = "ok" | "timeout" | "output_limit" | "exited" | "disk_limit";

/** Result of one session command. */
export interface SessionResult {
  /** Decoded output (stdout and stderr merged), one trailing newline removed, as CWM. */
  output: string;
  /** The command's exit status; null when it did not complete. */
  exitCode: number | null;
  status: SessionStatus;
  /** Wall time, milliseconds. */
  durationMs: number;
  /** Raw output size, bytes (capped at the limit). */
  outputBytes: number;
}

/** Result of a raw (forager-internal) script. */
export interface RawResult {
  stdout: Buffer;
  exitCode: number | null;
  status: SessionStatus;
}

export interface SessionOptions {
  workdir?: string;
  env?: Record<string, string>;
  user?: string;
  /** Default seconds per command. */
  timeoutSeconds: number;
  /** Default output cap, bytes. */
  outputLimitBytes: number;
  /** RLIMIT_FSIZE of the session's processes, bytes (`ulimit -f`); none when unset. */
  fileSizeLimitBytes?: number;
}

interface Pending {
  chunks: Buffer[];
  bytes: number;
  limit: number;
  /** Last bytes seen, so a marker split across frames is still found. */
  tail: Buffer;
  resolve: (r: { status: SessionStatus; body: Buffer; exitCode: number | null }) => void;
  timer?: NodeJS.Timeout;
}

/** One bash process in a container, attached over a single stream. */
export class BashSession {
  /** Pid (inside the container) of the outer bash = the session's process-group id. */
  pgid = 0;
  /** Pid of the inner bash, whose cwd is the agent's working directory. */
  pid = 0;
  private dead = false;
  private pending: Pending | undefined;
  private readonly sentinelPrefix: Buffer;
  private readonly exitMarker: Buffer;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly stream: Duplex,
    private readonly nonce: string,
    readonly options: SessionOptions,
  ) {
    this.sentinelPrefix = Buffer.from(`__FRG_${nonce}_RC_`);
    this.exitMarker = Buffer.from(`__FRG_${nonce}_EXIT__`);
    const demux = new FrameDemuxer((payload) => this.onData(payload));
    stream.on("data", (chunk: Buffer) => demux.push(chunk));
    const onEnd = (): void => this.onExit();
    stream.on("end", onEnd);
    stream.on("close", onEnd);
    stream.on("error", onEnd);
  }

  /**
   * Start a session in `container`. Resolves once bash answered its first command.
   * @throws Error when the exec cannot be created or bash does not answer within 30 s.
   */
  static async start(container: Docker.Container, options: SessionOptions): Promise<BashSession> {
    const nonce = randomBytes(12).toString("hex");
    const outer = `IFS= read -r __frg_m; bash --noprofile --norc; printf '\\n%s\\n' "$__frg_m"`;
    const exec = await container.exec({
      Cmd: ["bash", "--noprofile", "--norc", "-c", outer],
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      WorkingDir: options.workdir,
      Env: Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`),
      User: options.user,
    });
    const stream = (await exec.start({ hijack: true, stdin: true })) as unknown as Duplex;
    const session = new BashSession(stream, nonce, options);
    stream.write(`__FRG_${nonce}_EXIT__\n`);
    // The command wrapper is defined once, so each command sends only a few dozen bytes of
    // framing (bash reads a pipe one byte at a time): __frg_run reads the here-document that
    // carries the command and evals it; __frg_s prints the sentinel with the status.
    const init =
      `exec 2>&1\n` +
      `__frg_run() { IFS= read -r -d '' __frg_c; { eval "\${__frg_c%$'\\n'}"; } </dev/null 2>&1; }\n` +
      `__frg_s() { printf '%s_RC_%s__\\n' "$1" "$?"; }\n` +
      (options.fileSizeLimitBytes ? `ulimit -f ${Math.max(1, Math.floor(options.fileSizeLimitBytes / 1024))} 2>/dev/null\n` : "") +
      `printf '%s %s' "$PPID" "$$"`;
    const r = await session.raw(init, { timeoutSeconds: 30 });
    const m = /^(\d+) (\d+)$/.exec(r.stdout.toString("utf8"));
    if (r.status !== "ok" || !m) {
      session.close();
      throw new Error(`bash session did not start (${r.status}): ${r.stdout.toString("utf8").slice(0, 500)}`);
    }
    session.pgid = Number(m[1]);
    session.pid = Number(m[2]);
    return session;
  }

  /** False once the session timed out, overflowed, exited or was closed. */
  get alive(): boolean {
    return !this.dead;
  }

  /**
   * Run an agent command: `eval`ed in the session's shell (state, cwd, environment persist),
   * stdin from /dev/null, stderr merged. Commands are serialised.
   */
  run(command: string, opts: { timeoutSeconds?: number; outputLimitBytes?: number } = {}): Promise<SessionResult> {
    const delim = `__FRG_${this.nonce}`;
    const script = `__frg_run <<'${delim}'\n${command}\n${delim}\n__frg_s '${delim}'\n`;
    const started = performance.now();
    return this.enqueue(async () => {
      const r = await this.exchange(Buffer.from(script), opts.timeoutSeconds, opts.outputLimitBytes);
      let output = decodeOutput(r.body);
      if (r.status === "ok" && output.endsWith("\n")) output = output.slice(0, -1);
      return {
        output,
        exitCode: r.exitCode,
        status: r.status,
        durationMs: performance.now() - started,
        outputBytes: r.body.length,
      };
    });
  }

  /**
   * Run a forager-internal script verbatim (no eval wrapper), optionally feeding `input` bytes
   * to its stdin (the script must read exactly input.length bytes, e.g. `head -c N`).
   * Output is returned raw (binary-safe).
   */
  raw(
    script: string,
    opts: { input?: Buffer; timeoutSeconds?: number; outputLimitBytes?: number } = {},
  ): Promise<RawResult> {
    const line = `{ ${script}\n}; printf '%s%s__\\n' '__FRG_${this.nonce}''_RC_' "$?"\n`;
    const payload = opts.input ? Buffer.concat([Buffer.from(line), opts.input]) : Buffer.from(line);
    return this.enqueue(async () => {
      const r = await this.exchange(payload, opts.timeoutSeconds, opts.outputLimitBytes);
      return { stdout: r.body, exitCode: r.exitCode, status: r.status };
    });
  }

  /** End the running command with `status` (a watchdog's verdict); the session is dead afterwards. */
  abort(status: Exclude<SessionStatus, "ok">): void {
    this.dead = true;
    this.finish(status);
  }

  /** Close the stream (does not kill processes: the Sandbox does that by process group). */
  close(): void {
    this.dead = true;
    this.stream.destroy();
    this.finish("exited");
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private exchange(
    payload: Buffer,
    timeoutSeconds = this.options.timeoutSeconds,
    limit = this.options.outputLimitBytes,
  ): Promise<{ status: SessionStatus; body: Buffer; exitCode: number | null }> {
    if (this.dead) return Promise.resolve({ status: "exited", body: Buffer.alloc(0), exitCode: null });
    return new Promise((resolve) => {
      const pending: Pending = { chunks: [], bytes: 0, limit, resolve, tail: Buffer.alloc(0) };
      pending.timer = setTimeout(() => this.finish("timeout"), timeoutSeconds * 1000);
      this.pending = pending;
      this.stream.write(payload);
    });
  }

  private onData(payload: Buffer): void {
    const p = this.pending;
    if (!p) return; // output of a background job between commands: dropped, as a fresh read would
    p.chunks.push(payload);
    p.bytes += payload.length;
    // Search only the new bytes plus the end of the previous ones (a marker may be split).
    const tail = p.tail.length ? Buffer.concat([p.tail, payload]) : payload;
    p.tail = tail.subarray(Math.max(0, tail.length - (this.exitMarker.length + 32)));
    if (tail.includes(this.sentinelPrefix) || tail.includes(this.exitMarker)) {
      const all = Buffer.concat(p.chunks);
      p.chunks = [all];
      const at = all.indexOf(this.sentinelPrefix);
      if (at >= 0) {
        const end = all.indexOf("__\n", at + this.sentinelPrefix.length);
        if (end >= 0) {
          const rc = Number(all.subarray(at + this.sentinelPrefix.length, end).toString("latin1"));
          this.complete("ok", all.subarray(0, at), Number.isFinite(rc) ? rc : null);
          return;
        }
      }
      const ex = all.indexOf(this.exitMarker);
      if (ex >= 0) {
        this.dead = true;
        // The outer bash printed "\n" before the marker.
        const cut = ex > 0 && all[ex - 1] === 0x0a ? ex - 1 : ex;
        this.complete("exited", all.subarray(0, cut), null);
        return;
      }
    }
    if (p.bytes > p.limit) {
      this.finish("output_limit");
    }
  }

  private onExit(): void {
    this.dead = true;
    this.finish("exited");
  }

  private finish(status: SessionStatus): void {
    const p = this.pending;
    if (!p) return;
    if (status !== "ok") this.dead = true;
    const all = Buffer.concat(p.chunks);
    this.complete(status, all.subarray(0, Math.min(all.length, p.limit)), null);
  }

  private complete(status: SessionStatus, body: Buffer, exitCode: number | null): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    if (p.timer) clearTimeout(p.timer);
    p.resolve({ status, body: Buffer.from(body), exitCode });
  }
}

