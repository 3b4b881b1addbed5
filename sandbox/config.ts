/**
 * Sandbox settings: the limits of one container and of the bash session inside it. Each has a
 * safe default; the CWM defaults (120 s per command, 480 KiB of output, 2400 s lifetime) are
 * from ../shared/reference/cwm-environment.md.
 */
import { z } from "zod";
import { selfIdentity } from "../lib/process";

/** Capabilities kept when all others are dropped: enough for git, pip and most test suites. */
export const DEFAULT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"];

export const SandboxConfigSchema = z.object({
  /** Image tag or id. */
  image: z.string().min(1),
  /** Docker network mode. "none" (the default) gives the container no network at all. */
  network: z.string().default("none"),
  /** Memory limit, bytes (default 4 GiB). Swap is not allowed beyond it. */
  memoryBytes: z.number().int().positive().default(4 * 1024 ** 3),
  /** CPU limit, cores (fractional allowed). */
  cpus: z.number().positive().default(1),
  /** Maximum number of processes/threads in the container. */
  pidsLimit: z.number().int().positive().default(1024),
  /** Seconds after which the container stops and is removed, even if forager died (CWM training: 2400). */
  lifetimeSeconds: z.number().positive().default(2400),
  /** Linux capabilities kept; all others are dropped. */
  capabilities: z.array(z.string()).default(DEFAULT_CAPABILITIES),
  /** Working directory of the session; default: the image's WorkingDir, else "/". */
  workdir: z.string().optional(),
  /** Extra environment variables, NAME → value. */
  env: z.record(z.string(), z.string()).default({}),
  /** User to run as (default: the image's). */
  user: z.string().optional(),
  /** Seconds one session command may run (CWM: 120). */
  commandTimeoutSeconds: z.number().positive().default(120),
  /** Bytes of output one session command may produce before the session is killed (CWM: 480 KiB). */
  outputLimitBytes: z.number().int().positive().default(480 * 1024),
  /**
   * Bound of the container's writable layer, bytes (default 8 GiB; 0: none). The engine's storage
   * quota needs overlay2 on xfs with pquota, which forager does not assume: a watchdog reads the
   * writable size (the engine's SizeRw) while a session command runs and kills the session over
   * the bound, and the agent session's processes get RLIMIT_FSIZE at the same bound.
   */
  diskLimitBytes: z.number().int().nonnegative().default(8 * 1024 ** 3),
  /** Seconds between two reads of the writable size while a command runs. */
  diskCheckSeconds: z.number().positive().default(2),
  /** Extra labels on the container (run id, episode id, …). */
  labels: z.record(z.string(), z.string()).default({}),
  /** Container name prefix. */
  namePrefix: z.string().default("forager"),
});
export type SandboxConfig = z.infer<typeof SandboxConfigSchema>;
export type SandboxConfigInput = z.input<typeof SandboxConfigSchema>;

/**
 * The network part of a container's settings, for sandboxes and one-shot containers alike:
 * `NetworkMode` as given; with "none", the loopback interface only, as a test harness's container
 * has it — `localhost` in /etc/hosts (the engine writes it for "none", not for a container created
 * with `NetworkDisabled`, where `localhost` does not resolve) and IPv6 on loopback (`::1`, which
 * "none" alone disables; local servers of test suites bind it). Nothing beyond loopback either way.
 */
export function networkSettings(network: string): { NetworkMode: string; Sysctls?: Record<string, string> } {
  return network === "none" ? { NetworkMode: "none", Sysctls: { "net.ipv6.conf.lo.disable_ipv6": "0" } } : { NetworkMode: network };
}

/** Label keys every forager container carries. */
export const LABELS = {
  forager: "forager",
  owner: "forager.owner",
  ownerPid: "forager.owner.pid",
  ownerStart: "forager.owner.start",
  host: "forager.host",
  createdAt: "forager.created-at",
  expiresAt: "forager.expires-at",
  run: "forager.run",
  episode: "forager.episode",
} as const;

/**
 * The labels that make a container forager's and name its owner process: what the reaper
 * (reaper.ts) reads to remove the containers of a dead owner or past `lifetimeSeconds`. Used by
 * sandboxes and one-shot containers alike.
 */
export function ownerLabels(lifetimeSeconds: number): Record<string, string> {
  const me = selfIdentity();
  const now = Date.now();
  return {
    [LABELS.forager]: "1",
    [LABELS.owner]: `${me.host}/${me.pid}/${me.start}`,
    [LABELS.ownerPid]: String(me.pid),
    [LABELS.ownerStart]: me.start,
    [LABELS.host]: me.host,
    [LABELS.createdAt]: new Date(now).toISOString(),
    [LABELS.expiresAt]: new Date(now + lifetimeSeconds * 1000).toISOString(),
  };
}
