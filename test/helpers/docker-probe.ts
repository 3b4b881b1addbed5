/**
 * Whether a Docker engine answers (`docker info` within 10 s), for suites that also run in
 * `npm run test:unit` with no engine and skip their Docker cases there. Extra host commands
 * that the Docker cases need (e.g. `apt-cache show python3-pytest-mock`) are checked too.
 */
import { execFileSync } from "node:child_process";

export function dockerUp(...alsoNeeded: string[][]): boolean {
  try {
    execFileSync("docker", ["info"], { stdio: "ignore", timeout: 10_000 });
    for (const [cmd, ...args] of alsoNeeded) execFileSync(cmd!, args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
