/**
 * What a set-up agent may change in an inferred image spec (`forager images infer --model-url`,
 * issue 10), and how the change is applied. The agent itself (an episode with the CWM tools) lives
 * above this layer, in infer/setup-agent.ts; inference only sees a {@link SetupAgent} callback and
 * checks its result like any other spec: build, reference run, accept or reject.
 */
import { z } from "zod";
import { formatZodIssues } from "../lib/zod-util";
import type { ImageSpec } from "../images/spec";

/** The file the set-up agent writes at the repository root (and submits as a patch). */
export const SETUP_FILE = ".forager-setup.json";

/**
 * The set-up agent's proposal (the JSON of {@link SETUP_FILE}). Every field is optional; an
 * empty proposal changes nothing and so is refused.
 */
export const SetupProposalSchema = z
  .object({
    /** The whole test command (replaces the spec's; run from the workdir). */
    testCommand: z.string().min(1).optional(),
    /** Debian packages to add to the image (installed by the build, where the package index answers). */
    systemPackages: z.array(z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/, "a Debian package name")).default([]),
    /** Environment variables for the build and the test runs. */
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "a variable name"), z.string()).default({}),
    /** Shell commands appended to the install step (no network in the sandbox: local work only). */
    install: z.array(z.string().min(1)).default([]),
    /** Why (kept in the provenance). */
    note: z.string().default(""),
  })
  .strict();
export type SetupProposal = z.infer<typeof SetupProposalSchema>;

/** What the set-up agent is given: the spec that failed, the image it built (if any) and the last log. */
export interface SetupContext {
  repo: string;
  commit: string;
  spec: ImageSpec;
  /** The instance image of the failed attempt, or the workbench image after a failed build (absent when neither could be built). */
  image?: string;
  /** The tail of the failed reference run or build log. */
  log: string;
  /**
   * Set when the build failed (the step's name): `image` is then a workbench, the repository
   * in an image built without the failing step's packages and without the install steps.
   */
  buildFailedAt?: string;
}

/**
 * The spec of the workbench the set-up agent gets after a failed build: the same spec without
 * what can fail to build (pythonPackages, preInstall, the install lines) and, when the env layer
 * failed, with only `basePackages` of its Debian packages. It builds wherever the base does.
 */
export function workbenchSpec(spec: ImageSpec, failedLayer: "base" | "env" | "instance", basePackages: string[]): ImageSpec {
  return {
    ...spec,
    ...(failedLayer === "instance" ? {} : { systemPackages: spec.systemPackages.filter((p) => basePackages.includes(p)), pythonPackages: [], preInstall: [] }),
    install: [],
  };
}

/**
 * A set-up agent: a proposal, or undefined when it has none (it gave up, or wrote nothing usable:
 * then `reason` says why). Must not throw for the model's failures.
 */
export type SetupAgent = (ctx: SetupContext) => Promise<{ proposal?: SetupProposal; reason: string; trajectoryId?: string }>;

/**
 * Parse a proposal from its JSON text.
 * @throws Error naming the field (`testCommand: …`) and the file {@link SETUP_FILE}
 */
export function parseSetupProposal(text: string): SetupProposal {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${SETUP_FILE}: not JSON (${(err as Error).message})`);
  }
  const r = SetupProposalSchema.safeParse(raw);
  if (!r.success) throw new Error(`${SETUP_FILE}: ${formatZodIssues(r.error)}`);
  const p = r.data;
  if (!p.testCommand && !p.systemPackages.length && !Object.keys(p.env).length && !p.install.length) throw new Error(`${SETUP_FILE}: proposes no change`);
  return p;
}

/** The spec with a proposal applied, and one line per change for the provenance. */
export function applySetupProposal(spec: ImageSpec, p: SetupProposal): { spec: ImageSpec; changes: string[] } {
  const changes: string[] = [];
  let out: ImageSpec = { ...spec };
  if (p.testCommand && p.testCommand !== spec.testCommand) {
    out = { ...out, testCommand: p.testCommand };
    changes.push(`test command → ${p.testCommand}`);
  }
  const add = p.systemPackages.filter((x) => !spec.systemPackages.includes(x));
  if (add.length) {
    out = { ...out, systemPackages: [...spec.systemPackages, ...add].sort() };
    changes.push(`add ${add.join(" ")}`);
  }
  const env = Object.entries(p.env).filter(([k, v]) => spec.env[k] !== v);
  if (env.length) {
    out = { ...out, env: { ...spec.env, ...Object.fromEntries(env) } };
    changes.push(`env ${env.map(([k, v]) => `${k}=${v}`).join(" ")}`);
  }
  if (p.install.length) {
    out = { ...out, install: [...spec.install, ...p.install] };
    changes.push(`install + ${p.install.join(" && ")}`);
  }
  return { spec: out, changes };
}
