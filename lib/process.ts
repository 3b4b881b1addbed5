/**
 * Identity of a process that can outlive pid reuse: host name, pid and the process start time
 * (field 22 of /proc/PID/stat, clock ticks since boot). Used to label containers with their
 * owner so a reaper can tell whether the owner is still alive.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";

/** Start time of `pid` in clock ticks since boot, or undefined when the process is gone. */
export function processStartTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // comm (field 2) may contain spaces and parentheses: split after the last ")".
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19]; // field 22 overall
  } catch {
    return undefined;
  }
}

/** This process's owner identity. */
export function selfIdentity(): { host: string; pid: number; start: string } {
  return { host: hostname(), pid: process.pid, start: processStartTicks(process.pid) ?? "0" };
}

/**
 * Whether the owner (host, pid, start) is alive. Owners on another host are assumed alive
 * (only their lifetime label can expire them).
 */
export function ownerAlive(owner: { host?: string; pid?: number; start?: string }): boolean {
  if (!owner.host || owner.host !== hostname()) return true;
  if (!owner.pid) return false;
  const start = processStartTicks(owner.pid);
  return start !== undefined && (owner.start === undefined || owner.start === start);
}
