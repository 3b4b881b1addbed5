/**
 * The task record shared by every task source (issue-fix from SWE-bench, mutate-fix
 * generation). The one definition; types come from the schema.
 */
import { z } from "zod";
import { ImageSpecSchema } from "../images/spec";

export const TaskKindSchema = z.enum(["issue-fix", "mutate-fix"]);
export type TaskKind = z.infer<typeof TaskKindSchema>;

export const TASK_SCHEMA_VERSION = 1;

export const TaskSchema = z.object({
  schemaVersion: z.literal(TASK_SCHEMA_VERSION).default(TASK_SCHEMA_VERSION),
  /** Task instance id, e.g. `sympy__sympy-20590` or `mutate/owner__name/<hash>`. */
  id: z.string().min(1),
  kind: TaskKindSchema,
  /** `owner/name`. */
  repo: z.string().min(1),
  /** The commit the task starts from (SWE-bench `base_commit`). */
  commit: z.string().min(4),
  /** How to build and test the repository. */
  image: ImageSpecSchema,
  /** The issue text the agent sees. */
  problemStatement: z.string(),
  /** Hidden tests (a git diff), applied only at evaluation. May be empty (mutate-fix). */
  testPatch: z.string().default(""),
  /**
   * How test ids are written: "harness" (the SWE-bench harness's reading of pytest's `-rA`
   * summary, cut at the first whitespace, as the datasets' lists are) or "exact" (pytest's whole
   * node ids, from its JUnit report: tasks forager generates). Graded in the same form.
   */
  testIds: z.enum(["harness", "exact"]).default("harness"),
  /** Tests that must go from failing to passing. */
  failToPass: z.array(z.string()),
  /** Tests that must keep passing. */
  passToPass: z.array(z.string()),
  /** Gold patch (the reference fix, a git diff). */
  referencePatch: z.string(),
  /** Mutate-fix: the bug (a git diff) applied when the sandbox starts; empty for issue-fix. */
  startPatch: z.string().default(""),
  /**
   * Commit-mined issue-fix (taskgen/commits): the commit whose tree the agent starts from (the
   * fix's parent), an ancestor of `image.commit` and so in the instance image's object store (one
   * image serves every task of a dependency set). When set, the sandbox start moves the image's
   * tree (`image.commit` plus its installed state) to this commit's tree, then squashes history
   * to one orphan commit and prunes (tasks/start.ts), so no object of the fix or of any later
   * commit stays. Absent (every record written before it existed): the image's tree as built.
   * Episodes and evaluation make the same start state.
   */
  startCommit: z.string().regex(/^[0-9a-f]{7,40}$/, "a commit sha (7–40 lowercase hex digits)").optional(),
  /** Free-form provenance (dataset, version, operator, created_at, …). */
  metadata: z.record(z.string(), z.unknown()).default({}),
});
export type Task = z.infer<typeof TaskSchema>;
export type TaskInput = z.input<typeof TaskSchema>;
