/**
 * The image spec: everything needed to turn a repository at a commit into an executable
 * image (base → environment → instance), and how to run its tests. The one definition of the
 * record; types come from the schema.
 *
 * Layers follow the SWE-bench harness (base, env keyed by a hash of its setup, instance).
 */
import { z } from "zod";

/** Default tag of forager's base image (made by `forager images base`). */
export const DEFAULT_BASE_IMAGE = "forager/base:bookworm-mmdebstrap-minbase";

/** Where a repository comes from. */
export const RepoSourceSchema = z.discriminatedUnion("type", [
  /** A local clone (bare or not) on the host. */
  z.object({ type: z.literal("path"), path: z.string().min(1) }),
  /** A git URL (cloned on the host, never from inside a sandbox). */
  z.object({ type: z.literal("git"), url: z.string().min(1) }),
  /** A git bundle file on the host. */
  z.object({ type: z.literal("bundle"), path: z.string().min(1) }),
  /**
   * A git bundle in the cluster registry (images/registry.ts publishSource): the gzip tar layer
   * `digest` (holding `source.bundle`) of the image `name` (relative to the registry's namespace,
   * default `forager/source`). Fetched into a local bundle file before a build
   * (images/registry.ts fetchSource); a submitter's local path becomes this with `--registry`.
   */
  z.object({
    type: z.literal("registry"),
    name: z.string().regex(/^[a-z0-9]+(?:[._/-][a-z0-9]+)*$/, "a lowercase repository name").default("forager/source"),
    digest: z.string().regex(/^sha256:[0-9a-f]{64}$/, "sha256:<64 hex digits>"),
    /** The tag the layer was published under (for people and registry garbage collection). */
    tag: z.string().optional(),
  }),
]);
export type RepoSource = z.infer<typeof RepoSourceSchema>;

/** Names of the test-log parsers (suite/log-parsers). */
export const LogParserNameSchema = z.enum(["pytest", "django", "sympy", "unittest"]);
export type LogParserName = z.infer<typeof LogParserNameSchema>;

export const ImageSpecSchema = z.object({
  /** Repository identity, `owner/name`. */
  repo: z.string().min(1),
  /** Where the repository's git history comes from; resolved at build time. */
  source: RepoSourceSchema.optional(),
  /** The commit the instance layer checks out (full or abbreviated sha). */
  commit: z.string().min(4),
  /** Base image tag. */
  baseImage: z.string().default(DEFAULT_BASE_IMAGE),
  /** Debian packages installed in the environment layer (apt-get, at build time, with network). */
  systemPackages: z.array(z.string()).default([]),
  /** Python requirement strings installed with pip when an index is reachable (optional). */
  pythonPackages: z.array(z.string()).default([]),
  /**
   * Install only files uploaded to the index before this instant (ISO 8601, e.g. the commit's
   * date): pythonPackages come through a date-filtering view of the index (images/pip-cutoff.ts).
   */
  pipUploadedBefore: z.iso.datetime({ offset: true }).optional(),
  /** Shell lines run in the environment layer after the packages (no repository yet). */
  preInstall: z.array(z.string()).default([]),
  /** Shell lines run in the instance layer inside the repository (e.g. an editable install). */
  install: z.array(z.string()).default([]),
  /** Environment variables set in the image (build and run). */
  env: z.record(z.string(), z.string()).default({}),
  /** Where the repository lives inside the image. */
  workdir: z.string().default("/testbed"),
  /** Test command; test directives (files) are appended when grading. */
  testCommand: z.string().min(1),
  /** Shell lines run before the test command at evaluation (e.g. start a local httpbin). */
  evalPreamble: z.array(z.string()).default([]),
  /** Which parser reads the test log. */
  logParser: LogParserNameSchema,
  /** Seconds the whole evaluation's test run may take (CWM: 600). */
  testTimeoutSeconds: z.number().positive().default(600),
  /**
   * Who runs the test command at evaluation: an unprivileged user that owns the tree (the
   * default; forager's files, .git and the trusted test files are out of its reach), or root for
   * a repository whose tests need it (rewards/evaluate.ts). Not part of any image hash.
   */
  evalUser: z.enum(["unprivileged", "root"]).optional(),
  /** Keep tags that point at ancestors of `commit` (setuptools-scm versions); newer ones are always removed. */
  keepAncestorTags: z.boolean().default(false),
});
export type ImageSpec = z.infer<typeof ImageSpecSchema>;
export type ImageSpecInput = z.input<typeof ImageSpecSchema>;
