/**
 * The Docker engine client shared by forager (one dockerode client per process; connection from
 * DOCKER_HOST or the local socket, see images/docker.ts).
 */
export { docker as dockerClient } from "../images/docker";

/** True when an HTTP status error from dockerode means "already gone" (404) or "in progress" (409). */
export function isGoneError(err: unknown): boolean {
  const code = (err as { statusCode?: number })?.statusCode;
  return code === 404 || code === 409;
}
