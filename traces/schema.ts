/**
 * The records of `forager traces`: tracer settings (the JSON config the Python tracer reads), one
 * trace record per traced call of a repository function (JSONL), and the tracer's run stats.
 * The one definition; types come from the schemas.
 *
 * Format facts (CWM, 2025; /work/shared/reference/cwm-traces.md): per step the LOCALS are a JSON
 * object of repr strings, diff-based (`".."` = unchanged since the previous frame, until the
 * next call or return); traces over 10k line events or 1 MB are dropped.
 */
import { z } from "zod";

export const TRACE_SCHEMA_VERSION = 1;

/** Locals of a call or line event: name → bounded repr, or `".."` when unchanged. */
export const TraceLocalsSchema = z.record(z.string(), z.string());

/**
 * One event of an activation. `line` is the 1-based line in `file`. `call`: the frame starts
 * (or a generator resumes), `locals` all set; `line`: the line about to run and the locals
 * before it runs; `return` / `yield`: the value; `exception`: the exception's bounded repr (raised
 * in the frame or propagating through it).
 */
export const TraceEventSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("call"), line: z.number().int(), locals: TraceLocalsSchema }),
  z.object({ kind: z.literal("line"), line: z.number().int(), locals: TraceLocalsSchema }),
  z.object({ kind: z.literal("return"), line: z.number().int(), value: z.string() }),
  z.object({ kind: z.literal("yield"), line: z.number().int(), value: z.string() }),
  z.object({ kind: z.literal("exception"), line: z.number().int(), value: z.string() }),
]);
export type TraceEvent = z.infer<typeof TraceEventSchema>;

/** What was cut in a kept trace (dropped traces are not written; they are counted in the stats). */
export const TruncationSchema = z.object({
  /** Some repr was cut to `maxReprChars` (strings to `maxStringChars`). */
  repr: z.boolean(),
  /** Some collection lost items beyond `maxCollectionItems` or nesting beyond `maxReprDepth`. */
  collection: z.boolean(),
  /** Some value's `__repr__` raised (shown as `<type object; repr raised E>`). */
  reprError: z.boolean(),
});

/** What the Python tracer writes per finished activation (no repository/commit: the host adds them). */
export const RawTraceSchema = z.object({
  /** pytest node id of the test during which the call ran. */
  test: z.string(),
  /** `co_qualname`, e.g. `Context.invoke` or `outer.<locals>.inner`. */
  qualname: z.string(),
  /** Path relative to the repository root. */
  file: z.string(),
  /** 1-based line of the first source line (a decorator's, when decorated). */
  firstLine: z.number().int().positive(),
  /** The function's source (inspect.getsourcelines). */
  source: z.string(),
  events: z.array(TraceEventSchema).min(1),
  /** Line events in `events`. */
  lineEvents: z.number().int().nonnegative(),
  truncated: TruncationSchema,
  /** The activation ended by an exception (its last event is that exception). */
  propagated: z.boolean().optional(),
});

/** One trace record of the JSONL output. */
export const TraceRecordSchema = RawTraceSchema.extend({
  schemaVersion: z.literal(TRACE_SCHEMA_VERSION).default(TRACE_SCHEMA_VERSION),
  /** `owner/name`. */
  repository: z.string().min(1),
  /** Full sha of the traced commit. */
  commit: z.string().min(4),
  /** Task instance id when traced from a task's start state (`--tasks`). */
  task: z.string().optional(),
});
export type TraceRecord = z.infer<typeof TraceRecordSchema>;
export type TraceRecordInput = z.input<typeof TraceRecordSchema>;

/**
 * Tracer settings (the JSON the tracer reads from `FORAGER_TRACE_CONFIG`). Defaults are CWM's
 * where CWM published one (10k line events, 1 MB); the repr bounds are ours (CWM's are not
 * published).
 */
export const TracerSettingsSchema = z.object({
  /** Drop an activation with more line events than this. */
  maxLineEvents: z.number().int().positive().default(10_000),
  /** Drop an activation over this size: approximate bytes (characters of its source, names and reprs). */
  maxBytes: z.number().int().positive().default(1_000_000),
  /** A repr longer than this is cut (ending in `...`). */
  maxReprChars: z.number().int().min(8).default(200),
  /** A str/bytes value longer than this is cut before repr. */
  maxStringChars: z.number().int().min(1).default(100),
  /** Items shown per list/tuple/set/dict (then `...`). */
  maxCollectionItems: z.number().int().min(1).default(10),
  /** Nesting of built-in collections shown. */
  maxReprDepth: z.number().int().min(1).default(3),
  /** Activations recorded per function over the whole run (the first ones). */
  maxCallsPerFunction: z.number().int().positive().default(10),
  /** Distinct functions recorded (0: no limit). */
  maxFunctions: z.number().int().nonnegative().default(0),
  /** Records written (0: no limit). */
  maxRecords: z.number().int().nonnegative().default(0),
  /** Trace test code too (tests/, test_*.py, conftest.py). */
  includeTests: z.boolean().default(false),
  /** Only these functions: qualnames or `path::qualname` (empty: all of the repository). */
  functions: z.array(z.string()).default([]),
  /** Replace ` at 0x…` addresses by ` at 0x..` and unittest.mock's ` id='…'` by ` id='..'` in reprs (deterministic traces). */
  normalizeAddresses: z.boolean().default(true),
  /** `auto`: sys.monitoring on Python >= 3.12, else sys.settrace. */
  backend: z.enum(["auto", "settrace", "monitoring"]).default("auto"),
});
export type TracerSettings = z.infer<typeof TracerSettingsSchema>;
export type TracerSettingsInput = z.input<typeof TracerSettingsSchema>;

/** The tracer's stats file (written at pytest's end). Byte and event counts cover kept records. */
export const TracerStatsSchema = z.object({
  backend: z.enum(["settrace", "monitoring"]).nullable(),
  python: z.string(),
  tests: z.number().int(),
  records: z.number().int(),
  events: z.number().int(),
  lineEvents: z.number().int(),
  /** Bytes of the JSONL lines written. */
  bytes: z.number().int(),
  droppedLines: z.number().int(),
  droppedBytes: z.number().int(),
  /** Calls not recorded because of maxCallsPerFunction / maxFunctions / maxRecords, counted until the function is switched off (a lower bound). */
  skippedCap: z.number().int(),
  functions: z.number().int(),
  tracerErrors: z.number().int(),
  firstError: z.string().nullable(),
  /** Wall seconds inside traced test calls. */
  seconds: z.number(),
});
export type TracerStats = z.infer<typeof TracerStatsSchema>;
