/**
 * The set-up agent of `forager images infer --model-url` (issue 10): when the heuristics' repair
 * loop gives up, a model works in a sandbox of the last image built (after a failed build: a
 * workbench image of the repository without the failing step, infer/setup.ts), with the same episode
 * machinery, CWM tools and trajectory record as every other episode (agent/episode.ts runEpisode).
 * It is asked to make the test suite run and to write what it found into {@link SETUP_FILE} at the
 * repository root, then submit the diff that adds that file. The proposal is read from the
 * submitted patch (zod, infer/setup.ts) and inference checks it like any other spec (build,
 * reference run, accept or reject), so the model's word is never taken for a result.
 * Sandboxes have no network: the agent can find a test command, environment variables or local
 * install steps, and name Debian packages that the build (which reaches the package index) adds.
 */
import path from "node:path";
import { runEpisode } from "../agent/episode";
import { HttpPolicy, type Policy } from "../agent/policy";
import { writeTrajectory } from "../agent/trajectory";
import { SETUP_FILE, parseSetupProposal, type SetupAgent, type SetupContext } from "./setup";
import { InferenceClient } from "../inference-client/client";
import { diffBlocks } from "../lib/diff";
import { TaskSchema, type Task } from "../tasks/schema";

/** Options of {@link modelSetupAgent}. */
export interface SetupAgentOptions {
  /** OpenAI-compatible endpoints (vLLM, SGLang, CWM's server). */
  modelUrl: string[];
  model?: string;
  apiKey?: string;
  /** Turns the episode may take (default 40). */
  maxTurns?: number;
  /** Directory whose `setup.jsonl` gets the episode's trajectory (appended), default none. */
  trajectoryDir?: string;
  /** A policy to use instead of the HTTP one (tests). */
  policy?: Policy;
  onProgress?: (message: string) => void;
}

/** The task the set-up agent gets: the repository at the commit, with the failure to fix. */
export function setupTask(ctx: SetupContext): Task {
  const tail = ctx.log.trim().split("\n").slice(-60).join("\n");
  const failure = ctx.buildFailedAt
    ? [
        `The image of ${ctx.repo} did not build. The repository is at ${ctx.spec.workdir}, in an image built without the failing step and without installing the repository.`,
        `The build failed at step ${ctx.buildFailedAt}${ctx.spec.pythonPackages.length ? ` (pip installs: ${ctx.spec.pythonPackages.join(" ")})` : ""}; its log ended with:\n\n${tail}`,
        `The build reaches the package indexes; this sandbox does not. Find what the build lacks (Debian packages, environment variables, install steps).`,
      ]
    : [
        `The test suite of ${ctx.repo} does not run in this environment yet. The repository is at ${ctx.spec.workdir}.`,
        `The test command tried was:\n\n    ${ctx.spec.testCommand}\n\nand its output ended with:\n\n${tail}`,
      ];
  const statement = [
    ...failure,
    `Find what makes the suite run and pass here (there is no network access). Do not change the repository's source or its tests.`,
    `Then create the file ${SETUP_FILE} at the repository root: a JSON object with any of the keys`,
    `"testCommand" (the whole command that runs the suite), "env" (environment variables, an object of strings),`,
    `"systemPackages" (Debian packages to install), "install" (shell commands to run after the install step, a list),`,
    `"note" (one line: why). Write the diff that adds only that file to a patch file`,
    `(git add -N ${SETUP_FILE} && git diff -- ${SETUP_FILE} > /tmp/setup.patch) and submit it.`,
  ].join("\n\n");
  return TaskSchema.parse({
    id: `setup/${ctx.repo.replace("/", "__")}/${ctx.commit.slice(0, 12)}`,
    kind: "issue-fix",
    repo: ctx.repo,
    commit: ctx.spec.commit,
    image: ctx.spec,
    problemStatement: statement,
    failToPass: [],
    passToPass: [],
    referencePatch: "",
    metadata: { source: "setup-agent", commit: ctx.commit },
  });
}

/** The added lines of `file` in a git diff (the new file's content), or undefined when the diff does not add it. */
export function addedFileContent(patch: string, file: string): string | undefined {
  const block = diffBlocks(patch).find((b) => b.path === file);
  if (!block) return undefined;
  const lines = block.text.split("\n");
  const hunk = lines.findIndex((l) => l.startsWith("@@"));
  return lines
    .slice(hunk < 0 ? lines.length : hunk)
    .filter((l) => l.startsWith("+"))
    .map((l) => l.slice(1))
    .join("\n");
}

/**
 * A {@link SetupAgent} backed by a model: one episode (CWM tools, no evaluator) in the failed
 * attempt's image. Never throws for the model's failures: they come back as `reason`.
 */
export function modelSetupAgent(o: SetupAgentOptions): SetupAgent {
  return async (ctx) => {
    if (!ctx.image) return { reason: "no image was built, so there is no sandbox to work in" };
    const policy = o.policy ?? new HttpPolicy(new InferenceClient({ endpoints: o.modelUrl.map((url) => ({ url, model: o.model, apiKey: o.apiKey })) }));
    const task = setupTask(ctx);
    o.onProgress?.(`set-up agent: episode in ${ctx.image} (at most ${o.maxTurns ?? 40} turns)`);
    const t = await runEpisode({
      task,
      policy,
      image: ctx.image,
      config: { maxTurns: o.maxTurns ?? 40, maxEnvRetries: 1 },
      labels: { "forager.run": "setup-agent" },
      onTurn: (turn) => o.onProgress?.(`set-up agent: turn ${turn.index + 1}${turn.action ? ` ${turn.action.tool}` : ""}`),
    });
    if (o.trajectoryDir) {
      writeTrajectory(path.join(o.trajectoryDir, "setup.jsonl"), t);
    }
    const base = { trajectoryId: t.id };
    if (t.submittedPatch === undefined) return { ...base, reason: `no patch submitted (episode ended: ${t.endReason}${t.endDetail ? `, ${t.endDetail}` : ""})` };
    const text = addedFileContent(t.submittedPatch, SETUP_FILE);
    if (text === undefined) return { ...base, reason: `the submitted patch does not add ${SETUP_FILE}` };
    try {
      return { ...base, proposal: parseSetupProposal(text), reason: "proposal" };
    } catch (err) {
      return { ...base, reason: (err as Error).message };
    }
  };
}
