/**
 * The one door to a task's sandbox: a container of the task's instance image, with the task's
 * working directory and environment, put into the task's start state when it has one (the
 * mutate-fix bug applied, the commit-mined start commit; history squashed: tasks/start.ts).
 * Episodes (agent/env.ts), evaluation (rewards/evaluate.ts) and traces (traces/run.ts) open their
 * sandboxes here, so an agent and its grader always start from the same tree.
 */
import type { Logger } from "../lib/log";
import type { SandboxConfigInput } from "../sandbox/config";
import type { Container, Runtime } from "../sandbox/runtime";
import { Sandbox } from "../sandbox/sandbox";
import type { Task } from "./schema";
import { needsStartState, prepareTaskSandbox } from "./start";

/** The task cannot be set up (its start patch or start commit does not apply): not retried. */
export class TaskSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TaskSetupError";
  }
}

/** What a task's sandbox must offer: a runtime to work in and a container to destroy. */
export type TaskSandbox = Runtime & Pick<Container, "name" | "destroy">;

export interface OpenTaskSandboxOptions<S extends TaskSandbox> {
  /** The instance image tag. */
  image: string;
  /** Limits, labels and the rest of the sandbox's configuration (image, workdir and env are the task's). */
  config?: Omit<SandboxConfigInput, "image">;
  /** Makes the sandbox (default: a Docker `Sandbox`; tests pass an in-memory one). */
  factory?: (cfg: SandboxConfigInput) => Promise<S>;
  /** Docker sandboxes only: open no bash session up front (a sandbox used through exec only). */
  lazySessions?: boolean;
  logger?: Logger;
}

/**
 * Open a sandbox for `task` in its start state.
 * @throws TaskSetupError when the start state cannot be made (the sandbox is destroyed first);
 *   EnvironmentError (or what the factory throws) when the sandbox cannot start.
 */
export async function openTaskSandbox<S extends TaskSandbox = Sandbox>(
  task: Pick<Task, "id" | "image" | "startPatch"> & { startCommit?: string | undefined },
  o: OpenTaskSandboxOptions<S>,
): Promise<S> {
  const cfg: SandboxConfigInput = { network: "none", env: task.image.env, ...(o.config ?? {}), image: o.image, workdir: task.image.workdir };
  const make = o.factory ?? ((c: SandboxConfigInput) => Sandbox.create(c, { ...(o.logger ? { logger: o.logger } : {}), ...(o.lazySessions ? { lazySessions: true } : {}) }) as unknown as Promise<S>);
  const sandbox = await make(cfg);
  if (needsStartState(task)) {
    try {
      await prepareTaskSandbox(sandbox, task);
    } catch (err) {
      await sandbox.destroy();
      throw new TaskSetupError(`start state of ${task.id}: ${(err as Error).message.slice(0, 500)}`);
    }
  }
  return sandbox;
}
