/**
 * The tool interface. A tool takes the text argument of `<tool: NAME>` and returns what the
 * model sees. Tools run against a Runtime (sandbox/runtime.ts: its session for bash, forager-side
 * file work for edit/create/submit), so they need no Docker of their own and a fake runtime tests them.
 */
import type { z } from "zod";
import type { Runtime } from "../sandbox/runtime";

/** What a tool returns. `output` is the observation text; `success` false marks an error. */
export interface ToolResult {
  output: string;
  success: boolean;
  /** Tool-specific details (exit code, session status, the submitted patch, …). */
  metadata?: Record<string, unknown>;
}

/** A tool of a profile. */
export interface Tool<A extends z.ZodTypeAny = z.ZodTypeAny> {
  name: string;
  /** The block the system prompt shows for this tool (CWM spec text). */
  spec: string;
  /** One-line description for OpenAI function definitions. */
  description: string;
  /** Structured arguments for function-calling mode (chat completions). */
  parameters: A;
  /** Turn structured arguments into the text argument of the `<tool: NAME>` form. */
  toText(args: z.infer<A>): string;
  /** Run with the text argument. Never throws for the model's mistakes; throws EnvironmentError. */
  run(runtime: Runtime, argument: string): Promise<ToolResult>;
}
