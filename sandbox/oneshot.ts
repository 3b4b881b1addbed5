/**
 * A one-shot command in a fresh container of an image: create, attach, start, wait, collect the
 * output, remove — whatever happens. Used where no persistent session is wanted: image
 * inference's reference runs and Debian suite probes (infer/), checks and benches. Agent
 * sandboxes and evaluations use the persistent session (sandbox.ts) instead.
 */
import { PassThrough } from "node:stream";
import { docker } from "../images/docker";
import { EnvironmentError } from "../lib/errors";
import { networkSettings, ownerLabels } from "./config";

/** Result of {@link runInImage}. */
export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Wall time in seconds. */
  seconds: number;
}

/**
 * Run `cmd` (argv, or a string for `bash -lc`) in a fresh container of `image`, wait for it,
 * collect stdout/stderr, and remove the container whatever happens. Network "none" unless
 * told otherwise. Meant for checks and tests, not for agent sandboxes.
 *
 * @param opts.timeoutMs kill the container after this many ms (default 120 000).
 * @throws EnvironmentError when the engine fails or the timeout is hit.
 */
export async function runInImage(
  image: string,
  cmd: string | string[],
  opts: { network?: string; workdir?: string; env?: Record<string, string>; timeoutMs?: number; user?: string } = {},
): Promise<RunResult> {
  const d = docker();
  const started = Date.now();
  const argv = typeof cmd === "string" ? ["bash", "-c", cmd] : cmd;
  const container = await d.createContainer({
    Image: image,
    Cmd: argv,
    WorkingDir: opts.workdir,
    User: opts.user,
    Env: Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`),
    // The owner labels of a sandbox: a one-shot container whose process was killed before its
    // `finally` ran is removed by `forager sandbox reap` (and by workers at start) like any sandbox.
    Labels: { "forager.kind": "probe", ...ownerLabels((opts.timeoutMs ?? 120_000) / 1000 + 60) },
    // The network of a sandbox (config.ts networkSettings): loopback only, localhost and ::1 there.
    HostConfig: { ...networkSettings(opts.network ?? "none"), AutoRemove: false },
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
  });
  const out = new PassThrough();
  const errS = new PassThrough();
  const outChunks: Buffer[] = [];
  const errChunks: Buffer[] = [];
  out.on("data", (c: Buffer) => outChunks.push(c));
  errS.on("data", (c: Buffer) => errChunks.push(c));
  let timer: NodeJS.Timeout | undefined;
  try {
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    d.modem.demuxStream(stream, out, errS);
    const ended = new Promise<void>((resolve) => stream.on("end", () => resolve()));
    await container.start();
    const timeoutMs = opts.timeoutMs ?? 120_000;
    let timedOut = false;
    timer = setTimeout(() => {
      timedOut = true;
      container.kill().catch(() => undefined);
    }, timeoutMs);
    const res = (await container.wait()) as { StatusCode: number };
    await Promise.race([ended, new Promise((r) => setTimeout(r, 2000))]);
    if (timedOut) throw new EnvironmentError(`command in ${image} timed out after ${timeoutMs} ms: ${argv.join(" ")}`);
    return {
      exitCode: res.StatusCode,
      stdout: Buffer.concat(outChunks).toString("utf8"),
      stderr: Buffer.concat(errChunks).toString("utf8"),
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    if (timer) clearTimeout(timer);
    await container.remove({ force: true }).catch(() => undefined);
  }
}
