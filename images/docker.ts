/**
 * The shared Docker client for the images module (and anything else that wants one), plus
 * small helpers over it: engine info, image existence and inspection, and reading Docker's
 * JSON-lines progress streams. (A one-shot run in a fresh container is sandbox/oneshot.ts.)
 *
 * Connection: `DOCKER_HOST` when it is a `unix://` path or `tcp://host:port`, else the socket
 * `/var/run/docker.sock`. Only the engine's API is used (no docker CLI).
 */
import Docker from "dockerode";
import { EnvironmentError } from "../lib/errors";

let client: Docker | undefined;

/** Options for the connection, resolved from `DOCKER_HOST`. */
function connectionOptions(): Docker.DockerOptions {
  const host = process.env.DOCKER_HOST;
  if (host?.startsWith("unix://")) return { socketPath: host.slice("unix://".length) };
  if (host?.startsWith("tcp://")) {
    const u = new URL(host.replace(/^tcp:/, "http:"));
    return { host: u.hostname, port: Number(u.port || 2375), protocol: "http" };
  }
  return { socketPath: "/var/run/docker.sock" };
}

/** The process-wide dockerode client (created on first use; no I/O until a call). */
export function docker(): Docker {
  client ??= new Docker(connectionOptions());
  return client;
}

/** What the engine says about itself. */
export interface EngineInfo {
  /** Engine version, e.g. "20.10.24+dfsg1". */
  version: string;
  /** API version the engine speaks, e.g. "1.41". */
  apiVersion: string;
  /** Oldest API version it accepts. */
  minApiVersion: string;
  os: string;
  arch: string;
}

/**
 * Version and API version of the running engine.
 * @throws EnvironmentError when the engine cannot be reached.
 */
export async function engineInfo(): Promise<EngineInfo> {
  try {
    const v = await docker().version();
    return {
      version: v.Version,
      apiVersion: v.ApiVersion,
      minApiVersion: v.MinAPIVersion ?? "",
      os: v.Os,
      arch: v.Arch,
    };
  } catch (err) {
    throw new EnvironmentError(`Docker engine unreachable: ${(err as Error).message}`, { cause: err });
  }
}

/** HTTP status carried by a docker-modem error, if any. */
export function dockerStatus(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown })?.statusCode;
  return typeof s === "number" ? s : undefined;
}

/**
 * Inspect an image by tag or id; `undefined` when it does not exist.
 * @throws EnvironmentError on any other engine failure.
 */
export async function inspectImage(ref: string): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    return await docker().getImage(ref).inspect();
  } catch (err) {
    if (dockerStatus(err) === 404) return undefined;
    throw new EnvironmentError(`inspecting image ${ref} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** True when an image with this tag (or id) exists locally. */
export async function imageExists(tag: string): Promise<boolean> {
  return (await inspectImage(tag)) !== undefined;
}

/** One event of a Docker JSON-lines progress stream (build, pull, import). */
export interface DockerStreamEvent {
  stream?: string;
  status?: string;
  progress?: string;
  id?: string;
  error?: string;
  errorDetail?: { code?: number; message?: string };
  aux?: { ID?: string };
}

/**
 * Read a Docker JSON-lines stream to its end, calling `onEvent` for each event. Resolves with
 * every event; an `error` event does not reject here (callers decide what it means).
 * Rejects if the stream itself errors (connection dropped, aborted).
 */
export function consumeJsonStream(
  stream: NodeJS.ReadableStream,
  onEvent: (e: DockerStreamEvent) => void = () => undefined,
): Promise<DockerStreamEvent[]> {
  return new Promise((resolve, reject) => {
    const events: DockerStreamEvent[] = [];
    let buf = "";
    const handle = (line: string) => {
      const t = line.trim();
      if (!t) return;
      let e: DockerStreamEvent;
      try {
        e = JSON.parse(t) as DockerStreamEvent;
      } catch {
        e = { stream: t + "\n" };
      }
      events.push(e);
      onEvent(e);
    };
    stream.on("data", (chunk: Buffer | string) => {
      buf += chunk.toString();
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        handle(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    stream.on("end", () => {
      handle(buf);
      resolve(events);
    });
    stream.on("error", reject);
  });
}
