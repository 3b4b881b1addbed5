/**
 * The Docker engine client shared by forager (dockerode over DOCKER_HOST or the local socket).
 */
import Docker from "dockerode";

let client: Docker | undefined;

/** The process-wide dockerode client. */
export function dockerClient(): Docker {
  client ??= new Docker();
  return client;
}

/** True when an HTTP status error from dockerode means "already gone" (404) or "in progress" (409). */
export function isGoneError(err: unknown): boolean {
  const code = (err as { statusCode?: number })?.statusCode;
  return code === 404 || code === 409;
}
