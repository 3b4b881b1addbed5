/**
 * One `docker build` through the engine API: a generated Dockerfile (as a list of named steps)
 * plus optional context files, packed with tar-fs from a temp dir, sent to POST /build with
 * `networkmode` "host" (env layer: apt) or "none" (instance layer: installs run offline),
 * streamed into a log file, and mapped back to the failing step on error.
 *
 * Why dockerode's buildImage and not the docker CLI: the engine here is 20.10 (API 1.41) and
 * the CLI has no buildx plugin, so `docker build` would fall back to the same classic builder
 * anyway, with a deprecation warning and unstructured output. The API gives a JSON event stream
 * ("Step N/M : …", `error`/`errorDetail`, `aux.ID`) that we map to our own step names, supports
 * `networkmode=host` (apt-get needs the host network: the daemon runs with --bridge=none),
 * `forcerm` (no leftover containers after a failure), an abort signal for timeouts, and needs
 * no docker binary on the host.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pack } from "tar-fs";
import { EnvironmentError } from "../lib/errors";
import { consumeJsonStream, docker, inspectImage } from "./docker";

/** One Dockerfile instruction with a human name used in progress and errors. */
export interface DockerStep {
  /** e.g. "systemPackages", "preInstall[0]", "install[1]", "commit installed state". */
  name: string;
  /** The Dockerfile instruction, one line (RUN in exec/JSON form for anything multi-line). */
  instruction: string;
}

/** Progress of one build. */
export interface EngineBuildProgress {
  /** 1-based index of the step being run, and the number of steps. */
  step: number;
  steps: number;
  name: string;
  /** A line of build output (or the step announcement). */
  line: string;
}

/** A build failed. Names the layer, the image tag, the failing step and the log tail. */
export class ImageBuildError extends EnvironmentError {
  constructor(
    message: string,
    readonly layer: "base" | "env" | "instance",
    readonly tag: string,
    /** Name of the failing step ("install[0]: pip install …"); undefined if it failed before any step. */
    readonly step: string | undefined,
    /** Last lines of the build log (at most ~20). */
    readonly logTail: string[],
    readonly logFile: string,
  ) {
    super(message);
    this.name = "ImageBuildError";
  }
}

/** A RUN step in exec form: bash with errexit and pipefail, so any failing command fails the step. */
export function runStep(name: string, script: string): DockerStep {
  return { name, instruction: `RUN ${JSON.stringify(["/bin/bash", "-o", "pipefail", "-ec", script])}` };
}

/** Quote a value for a Dockerfile ENV/LABEL (double-quoted, `$` and `\` escaped). */
export function dockerfileQuote(v: string): string {
  return `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\$/g, "\\$").replace(/\n/g, "\\n")}"`;
}

export interface EngineBuildRequest {
  layer: "base" | "env" | "instance";
  tag: string;
  steps: DockerStep[];
  /** Files/dirs to put in the context: context-relative name → absolute host path (copied). */
  contextCopies?: Record<string, string>;
  /** Directories to move into the context (faster than copying, e.g. a prepared repository). */
  contextMoves?: Record<string, string>;
  logFile: string;
  onProgress?: (p: EngineBuildProgress) => void;
  /** Abort the build after this many ms (default 60 min). */
  timeoutMs?: number;
  /** Network of RUN steps: "host" (apt needs it; the daemon has no bridge) or "none". */
  network: "host" | "none";
  noCache?: boolean;
}

/**
 * Build `tag` from `steps`. Writes the whole build output to `logFile` (truncated first).
 * @returns the new image id (sha256:…).
 * @throws ImageBuildError naming the failing step with the last ~20 lines of its output.
 */
export async function engineBuild(req: EngineBuildRequest): Promise<string> {
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), "forager-ctx-"));
  fs.mkdirSync(path.dirname(req.logFile), { recursive: true });
  const logStream = fs.createWriteStream(req.logFile, { flags: "w" });
  const lines: string[] = [];
  let stepLines: string[] = [];
  let current = 0;
  const steps = req.steps;
  const push = (line: string) => {
    lines.push(line);
    if (lines.length > 200) lines.shift();
    stepLines.push(line);
    if (stepLines.length > 200) stepLines.shift();
  };
  try {
    for (const [name, src] of Object.entries(req.contextCopies ?? {})) {
      fs.cpSync(src, path.join(ctx, name), { recursive: true, verbatimSymlinks: true });
    }
    for (const [name, src] of Object.entries(req.contextMoves ?? {})) {
      fs.renameSync(src, path.join(ctx, name));
    }
    const dockerfile = steps.map((s) => `# ${s.name.replace(/\n/g, " ")}\n${s.instruction}\n`).join("");
    fs.writeFileSync(path.join(ctx, "Dockerfile"), dockerfile);
    logStream.write(`# forager ${req.layer} image ${req.tag}\n# ---- Dockerfile ----\n${dockerfile}# ---- build ----\n`);

    const ac = new AbortController();
    const timeoutMs = req.timeoutMs ?? 60 * 60_000;
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    let errorEvent: string | undefined;
    let builtId: string | undefined;
    try {
      // tar-fs gives a streamx stream; wrap it as a Node Readable for docker-modem.
      const tarStream = Readable.from(pack(ctx) as unknown as AsyncIterable<Buffer>);
      const stream = (await docker().buildImage(tarStream, {
        t: req.tag,
        networkmode: req.network,
        rm: true,
        forcerm: true,
        nocache: req.noCache ?? false,
        abortSignal: ac.signal,
      })) as NodeJS.ReadableStream;
      let partial = "";
      await consumeJsonStream(stream, (e) => {
        if (e.stream !== undefined) {
          logStream.write(e.stream);
          partial += e.stream;
          let i: number;
          while ((i = partial.indexOf("\n")) >= 0) {
            const line = partial.slice(0, i).replace(/\r/g, "");
            partial = partial.slice(i + 1);
            const m = /^Step (\d+)\/(\d+) : /.exec(line);
            if (m) {
              current = Number(m[1]);
              stepLines = [];
              const name = steps[current - 1]?.name ?? line;
              req.onProgress?.({ step: current, steps: steps.length, name, line });
            } else {
              push(line);
              req.onProgress?.({ step: current, steps: steps.length, name: steps[current - 1]?.name ?? "", line });
            }
          }
        } else if (e.error) {
          errorEvent = e.errorDetail?.message ?? e.error;
          logStream.write(`ERROR: ${errorEvent}\n`);
        } else if (e.aux?.ID) {
          builtId = e.aux.ID;
        } else if (e.status) {
          logStream.write(`${e.status}\n`);
        }
      });
      if (partial) push(partial);
    } catch (err) {
      errorEvent = ac.signal.aborted ? `timed out after ${timeoutMs} ms` : (err as Error).message;
      logStream.write(`ERROR: ${errorEvent}\n`);
    } finally {
      clearTimeout(timer);
    }

    if (errorEvent) {
      const failing = current > 0 ? steps[current - 1] : undefined;
      const tail = (stepLines.length ? stepLines : lines).filter((l) => l.trim() !== "").slice(-20);
      const where = failing ? `step ${current}/${steps.length} "${failing.name}"` : "before the first step";
      throw new ImageBuildError(
        `${req.layer} image ${req.tag}: build failed at ${where}: ${errorEvent}\n` +
          `--- last ${tail.length} lines (full log: ${req.logFile}) ---\n${tail.join("\n")}`,
        req.layer,
        req.tag,
        failing?.name,
        tail,
        req.logFile,
      );
    }
    const info = await inspectImage(req.tag);
    if (!info) throw new EnvironmentError(`build of ${req.tag} reported success (${builtId ?? "no id"}) but the tag is missing`);
    return info.Id;
  } finally {
    await new Promise((r) => logStream.end(r));
    fs.rmSync(ctx, { recursive: true, force: true });
  }
}
