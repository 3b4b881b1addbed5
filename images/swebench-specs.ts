/**
 * Image specs for SWE-bench task instances: the data table `swebench-specs.json` (per repository,
 * per version: Debian packages, shims, install lines, test command, log parser), validated here,
 * and `specForSweBench(row)` turning a dataset row into an {@link ImageSpec}.
 *
 * Merge order for a (repo, version): `common` → repo `defaults` → version entry. Package and
 * preInstall lists are concatenated (shim snippets named by `shims` first); `install`,
 * `testCommand`, `evalPreamble`, `keepAncestorTags` are replaced by the most specific level that
 * sets them; `env` maps are merged.
 *
 * `environment_setup_commit` is accepted but not used: the harness reads requirement files at
 * that commit to pin pip packages, while forager's environments come from Debian packages
 * chosen per version in the table.
 */
import { findRepository } from "./repo";
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { RecordError } from "../lib/errors";
import { parseRecord } from "../lib/zod-util";
import { ImageSpecSchema, LogParserNameSchema, type ImageSpec, type RepoSource } from "./spec";

/** Where the table lives (next to this module). */
export const SWEBENCH_SPECS_FILE = fileURLToPath(new URL("./swebench-specs.json", import.meta.url));

const StatusSchema = z.enum(["verified", "untested", "best-effort"]);
export type SweBenchSpecStatus = z.infer<typeof StatusSchema>;

const LevelSchema = z.object({
  systemPackages: z.array(z.string()).optional(),
  pythonPackages: z.array(z.string()).optional(),
  preInstall: z.array(z.string()).optional(),
  install: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()).optional(),
  testCommand: z.string().optional(),
  evalPreamble: z.array(z.string()).optional(),
  keepAncestorTags: z.boolean().optional(),
  testTimeoutSeconds: z.number().positive().optional(),
  /** Names of `shimSnippets` whose preInstall lines are prepended. */
  shims: z.array(z.string()).optional(),
  notes: z.string().optional(),
});

const VersionSchema = LevelSchema.extend({ status: StatusSchema });

const InstanceNoteSchema = z.object({ instanceId: z.string(), reason: z.string() });

export const SweBenchSpecTableSchema = z.object({
  $comment: z.string().optional(),
  schemaVersion: z.literal(1),
  python: z.string(),
  common: LevelSchema,
  shimSnippets: z.record(z.string(), z.array(z.string())),
  repos: z.record(
    z.string(),
    z.object({
      logParser: LogParserNameSchema,
      /** The harness's parser name, for reference (e.g. parse_log_sphinx). */
      harnessLogParser: z.string(),
      defaults: LevelSchema,
      versions: z.record(z.string(), VersionSchema),
    }),
  ),
  /** Instances whose tests need the real network (cannot be evaluated under --network none). */
  needsNetwork: z.array(InstanceNoteSchema),
  /** Instances that are known not to run in these environments, with the reason. */
  knownIssues: z.array(InstanceNoteSchema),
});
export type SweBenchSpecTable = z.infer<typeof SweBenchSpecTableSchema>;

/** The fields of a SWE-bench dataset row that decide the image. */
export interface SweBenchRow {
  repo: string;
  version: string;
  base_commit: string;
  environment_setup_commit?: string;
  instance_id?: string;
}

const cache = new Map<string, SweBenchSpecTable>();

/**
 * Read and validate the table (cached per file).
 * @throws RecordError naming the file and field when the data is malformed.
 */
export function loadSweBenchSpecs(file: string = SWEBENCH_SPECS_FILE): SweBenchSpecTable {
  const hit = cache.get(file);
  if (hit) return hit;
  const table = parseRecord(SweBenchSpecTableSchema, JSON.parse(fs.readFileSync(file, "utf8")), {
    file,
    what: "SWE-bench spec table",
  });
  for (const [repo, r] of Object.entries(table.repos)) {
    for (const [version, v] of Object.entries(r.versions)) {
      for (const s of [...(r.defaults.shims ?? []), ...(v.shims ?? [])]) {
        if (!table.shimSnippets[s]) throw new RecordError(`${repo} ${version}: unknown shim "${s}"`, file, undefined, "shims");
      }
    }
  }
  cache.set(file, table);
  return table;
}

/** Versions in the table, per repository. */
export function sweBenchVersions(table = loadSweBenchSpecs()): Record<string, string[]> {
  return Object.fromEntries(Object.entries(table.repos).map(([repo, r]) => [repo, Object.keys(r.versions)]));
}

/** Status and notes of a (repo, version); undefined when the table has no entry. */
export function sweBenchSupport(
  repo: string,
  version: string,
  table = loadSweBenchSpecs(),
): { status: SweBenchSpecStatus; notes: string[] } | undefined {
  const r = table.repos[repo];
  const v = r?.versions[version];
  if (!r || !v) return undefined;
  return { status: v.status, notes: [r.defaults.notes, v.notes].filter((n): n is string => !!n) };
}

/** Why an instance needs the real network, or undefined when it does not. */
export function networkRequirement(instanceId: string, table = loadSweBenchSpecs()): string | undefined {
  return table.needsNetwork.find((n) => n.instanceId === instanceId)?.reason;
}

/** A known reason the instance cannot run here, or undefined. */
export function knownIssue(instanceId: string, table = loadSweBenchSpecs()): string | undefined {
  return table.knownIssues.find((n) => n.instanceId === instanceId)?.reason;
}

/**
 * The image spec for a SWE-bench row: repository, `base_commit`, and the table's entry for
 * (repo, version). `source` is left unset unless given (the caller knows where clones live).
 *
 * @throws RecordError when the table has no entry for the repo or the version (the message
 *   lists the known versions).
 */
export function specForSweBench(
  row: SweBenchRow,
  opts: { source?: RepoSource; table?: SweBenchSpecTable } = {},
): ImageSpec {
  const table = opts.table ?? loadSweBenchSpecs();
  const r = table.repos[row.repo];
  if (!r) {
    throw new RecordError(
      `no forager image spec for repository ${row.repo} (known: ${Object.keys(table.repos).join(", ")})`,
      undefined,
      undefined,
      "repo",
    );
  }
  const v = r.versions[row.version];
  if (!v) {
    throw new RecordError(
      `no forager image spec for ${row.repo} version ${row.version} (known: ${Object.keys(r.versions).join(", ")})`,
      undefined,
      undefined,
      "version",
    );
  }
  const levels = [table.common, r.defaults, v];
  const last = <K extends keyof z.infer<typeof LevelSchema>>(k: K) =>
    levels.reduce<z.infer<typeof LevelSchema>[K] | undefined>((acc, l) => (l[k] !== undefined ? l[k] : acc), undefined);
  const concat = (k: "systemPackages" | "pythonPackages" | "preInstall") => levels.flatMap((l) => l[k] ?? []);
  const shims = [...new Set(levels.flatMap((l) => l.shims ?? []))];
  const testCommand = last("testCommand");
  if (!testCommand) throw new RecordError(`${row.repo} ${row.version}: no testCommand in the table`, undefined, undefined, "testCommand");

  return ImageSpecSchema.parse({
    repo: row.repo,
    commit: row.base_commit,
    source: opts.source,
    systemPackages: [...new Set(concat("systemPackages"))],
    pythonPackages: concat("pythonPackages"),
    preInstall: [...shims.flatMap((s) => table.shimSnippets[s]!), ...concat("preInstall")],
    install: last("install") ?? [],
    env: Object.assign({}, ...levels.map((l) => l.env ?? {})) as Record<string, string>,
    testCommand,
    evalPreamble: last("evalPreamble") ?? [],
    logParser: r.logParser,
    keepAncestorTags: last("keepAncestorTags") ?? false,
    ...(last("testTimeoutSeconds") !== undefined ? { testTimeoutSeconds: last("testTimeoutSeconds") } : {}),
  });
}

/**
 * Directories that hold local clones for SWE-bench tasks: `FORAGER_REPOS` (colon-separated), as
 * set by `--repos DIR` of `forager forage`/`run`/`debug`.
 */
export function reposDirs(): string[] {
  return (process.env.FORAGER_REPOS ?? "").split(":").filter(Boolean);
}

/**
 * {@link specForSweBench} with the repository source found under {@link reposDirs} (layouts of
 * `findRepository`); no source when none is found (an existing instance image can still serve).
 * @throws RecordError when the table has no spec for the row's repository or version.
 */
export function specForSweBenchLocal(row: SweBenchRow): ImageSpec {
  for (const dir of reposDirs()) {
    const found = findRepository(dir, row.repo);
    if (found) return specForSweBench(row, { source: { type: "path", path: found } });
  }
  return specForSweBench(row);
}
