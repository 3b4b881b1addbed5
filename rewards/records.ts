/**
 * The result channel of a hidden-test run: records written by forager's guard
 * (rewards/driver/guard.py) and pytest plugin (rewards/driver/pytest_plugin.py) from inside the
 * test processes into a FIFO whose only reader is a root process forwarding every byte to
 * forager (the exec's stdout), so nothing the test process does later can take a record back.
 *
 * Record kinds (`k`):
 * - pytest: `sess` (a session started), `coll` (collection finished), `rep` (a test report as
 *   pytest logged it: node id, phase, outcome, xfail), `body` (what the test body did: the
 *   exception it raised or null), `end` (the session finished, its exit status);
 * - unittest (also Django's runner): `ut-start`, `ut` (id, str, docstring line, status), `ut-end`;
 * - sympy's runner: `sy-start`, `sy` (name, status), `sy-end`;
 * - evidence: `tamper` (the runner tampered with: the run is forged) and `flag` (a reach for
 *   the machinery: recorded, not graded), with `why` and `where` (file:line);
 * - `start`: a Python process opened the channel (pid, uid, Python version, audit hooks).
 *
 * A record is a line `<MAGIC>{json}`; garbage another writer puts before it on the same line is
 * skipped (each record is one write below PIPE_BUF, so none is split).
 */
import { z } from "zod";
import { shortenPathOption, type StatusMap, type TestStatus } from "../suite/log-parsers";

/** The prefix of every record line. */
export const RECORD_MAGIC = "@@forager-rec@@";

/** One record (the fields of each kind are read where they are used; unknown kinds are kept). */
export const ChannelRecordSchema = z.object({ k: z.string() }).passthrough();
export type ChannelRecord = z.infer<typeof ChannelRecordSchema>;

/** Records of a channel's bytes, and how many record-like lines could not be read. */
export function parseChannel(text: string): { records: ChannelRecord[]; malformed: number } {
  const records: ChannelRecord[] = [];
  let malformed = 0;
  for (const line of text.split("\n")) {
    const at = line.lastIndexOf(RECORD_MAGIC);
    if (at < 0) continue;
    try {
      const r = ChannelRecordSchema.safeParse(JSON.parse(line.slice(at + RECORD_MAGIC.length)));
      if (r.success) records.push(r.data);
      else malformed++;
    } catch {
      malformed++;
    }
  }
  return { records, malformed };
}

/** Evidence records of the run: `tamper` (graded forged) and `flag` (recorded only). */
export function evidenceOf(records: readonly ChannelRecord[]): { tamper: string[]; flags: { why: string; where: string }[] } {
  const tamper: string[] = [];
  const flags: { why: string; where: string }[] = [];
  const seen = new Set<string>();
  for (const r of records) {
    if (r.k !== "tamper" && r.k !== "flag") continue;
    const why = String(r.why ?? "").slice(0, 300);
    const where = String(r.where ?? "").slice(0, 300);
    const key = `${r.k}\u0000${why}\u0000${where}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (r.k === "tamper") tamper.push(`${why}${where ? ` (at ${where})` : ""}`);
    else flags.push({ why, where });
  }
  return { tamper, flags };
}

const OUTCOME_RANK: Record<string, number> = { passed: 0, skipped: 1, failed: 2 };

/** Options for reading pytest records into dataset-form ids (as the log parsers do). */
export interface PytestRecordOptions {
  /** Keep node ids whole (tasks forager generates); otherwise cut at the first whitespace. */
  exactIds?: boolean;
  /** Shorten absolute path parameters (`psf/requests`, `pylint-dev/pylint`, `pydicom/pydicom`). */
  pathOptions?: boolean;
  /** matplotlib writes MouseButton.LEFT|RIGHT as 1|3 in the datasets. */
  mouseButtons?: boolean;
}

/** pytest statuses read from the records, and what they say about the run. */
export interface PytestRecordResult {
  /** Sessions started and finished (a started session that never finished: not gradable). */
  sessions: number;
  ended: number;
  /** Exit statuses the sessions reported at their end. */
  exitStatuses: (number | null)[];
  statuses: StatusMap;
  /** Ids (dataset form) the records report as XPASS (absent = failing, as the harness). */
  xpass: Set<string>;
  /** A call reported passed whose body raised or never ran through forager's wrapper. */
  contradictions: string[];
}

/** The dataset form of a pytest node id. */
export function datasetId(nodeid: string, o: PytestRecordOptions): string {
  let id = nodeid;
  if (o.mouseButtons) id = id.replaceAll("MouseButton.LEFT", "1").replaceAll("MouseButton.RIGHT", "3");
  if (!o.exactIds) id = id.split(/\s/)[0] ?? id;
  if (o.pathOptions) id = shortenPathOption(id);
  return id;
}

/**
 * Statuses of the pytest sessions of a run from their records, as pytest's terminal summary
 * derives them: setup failed → ERROR; call failed → FAILED; call passed → PASSED (XPASS with an
 * xfail mark, dropped); skipped → SKIPPED (XFAIL with an xfail mark); a teardown failure makes
 * the test ERROR. Several reports of one phase (reruns, or records written by someone else):
 * the worst outcome wins, reruns aside. A call reported passed needs a body record of the same
 * id that raised nothing, else it is FAILED and the contradiction is returned.
 */
export function pytestStatusesFromRecords(records: readonly ChannelRecord[], o: PytestRecordOptions = {}): PytestRecordResult {
  type Phases = { setup?: string; call?: string; teardown?: string; xfail: boolean };
  const phases = new Map<string, Phases>();
  const body = new Map<string, { clean: boolean; raised: string | null }>();
  let sessions = 0;
  let ended = 0;
  const exitStatuses: (number | null)[] = [];
  for (const r of records) {
    if (r.k === "sess") sessions++;
    else if (r.k === "end") {
      ended++;
      exitStatuses.push(typeof r.exit === "number" ? r.exit : null);
    } else if (r.k === "rep" && typeof r.id === "string" && typeof r.when === "string" && typeof r.outcome === "string") {
      if (!(r.outcome in OUTCOME_RANK)) continue; // "rerun" and plugins' own outcomes
      const p = phases.get(r.id) ?? { xfail: false };
      const when = r.when as "setup" | "call" | "teardown";
      if (when !== "setup" && when !== "call" && when !== "teardown") continue;
      const prev = p[when];
      if (prev === undefined || (OUTCOME_RANK[r.outcome] ?? 0) > (OUTCOME_RANK[prev] ?? 0)) p[when] = r.outcome;
      if (r.xfail === true && (when === "call" || when === "setup")) p.xfail = true;
      phases.set(r.id, p);
    } else if (r.k === "body" && typeof r.id === "string") {
      const raised = typeof r.raised === "string" ? r.raised : null;
      const prev = body.get(r.id);
      // Worst wins: one body record that raised is enough.
      if (!prev || (prev.clean && raised !== null)) body.set(r.id, { clean: raised === null, raised });
    }
  }
  const statuses: StatusMap = new Map();
  const xpass = new Set<string>();
  const contradictions: string[] = [];
  const put = (id: string, s: TestStatus) => {
    const cur = statuses.get(id);
    if (cur === undefined || SEVERITY[s] > SEVERITY[cur]) statuses.set(id, s);
  };
  for (const [nodeid, p] of phases) {
    const id = datasetId(nodeid, o);
    let s: TestStatus | "XPASS";
    if (p.setup === "failed") s = "ERROR";
    else if (p.call === "failed") s = "FAILED";
    else if (p.setup === "skipped" || p.call === "skipped") s = p.xfail ? "XFAIL" : "SKIPPED";
    else if (p.call === "passed") {
      const b = body.get(nodeid);
      if (!b || !b.clean) {
        contradictions.push(`${nodeid}: reported passed, but ${b ? `its body raised ${b.raised}` : "its body never ran through forager's wrapper"}`);
        s = "FAILED";
      } else s = p.xfail ? "XPASS" : "PASSED";
    } else s = "ERROR"; // set up, never called
    if (p.teardown === "failed" && s !== "XPASS") s = "ERROR";
    if (s === "XPASS") {
      xpass.add(id);
      continue;
    }
    put(id, s);
  }
  return { sessions, ended, exitStatuses, statuses, xpass, contradictions };
}

const SEVERITY: Record<TestStatus, number> = { PASSED: 0, XFAIL: 1, SKIPPED: 2, FAILED: 3, ERROR: 4 };

/**
 * Statuses from the unittest recorder (`ut` records), keyed the way the log parser of the spec
 * keys them: `unittest` → `module.Class.name` (test.id()); `django` → what the runner prints
 * before ` ... ` (the docstring's first line when there is one, else `name (module.Class)`).
 * Worst wins for an id recorded twice. `started`: the recorder was active.
 */
export function unittestStatusesFromRecords(records: readonly ChannelRecord[], parser: "unittest" | "django"): { started: boolean; statuses: StatusMap } {
  const statuses: StatusMap = new Map();
  let started = false;
  for (const r of records) {
    if (r.k === "ut-start") started = true;
    if (r.k !== "ut" || typeof r.st !== "string" || !(r.st in SEVERITY)) continue;
    let id: string;
    if (parser === "unittest") id = String(r.id ?? "");
    else if (typeof r.doc === "string" && r.doc.trim()) id = r.doc.trim();
    else {
      // str(test) is `name (module.Class)` (< 3.11) or `name (module.Class.name)` (≥ 3.11).
      const m = /^(\S+) \((.*)\)$/.exec(String(r.str ?? ""));
      id = m ? `${m[1]} (${(m[2] as string).endsWith(`.${m[1]}`) ? (m[2] as string).slice(0, -(m[1] as string).length - 1) : m[2]})` : String(r.str ?? "");
    }
    if (!id) continue;
    const s = r.st as TestStatus;
    const cur = statuses.get(id);
    if (cur === undefined || SEVERITY[s] > SEVERITY[cur]) statuses.set(id, s);
  }
  return { started, statuses };
}

/** Statuses from the sympy recorder (`sy` records): bare test function names, worst wins. */
export function sympyStatusesFromRecords(records: readonly ChannelRecord[]): { started: boolean; statuses: StatusMap } {
  const statuses: StatusMap = new Map();
  let started = false;
  for (const r of records) {
    if (r.k === "sy-start") started = true;
    if (r.k !== "sy" || typeof r.name !== "string" || typeof r.st !== "string" || !(r.st in SEVERITY)) continue;
    const s = r.st as TestStatus;
    const cur = statuses.get(r.name);
    if (cur === undefined || SEVERITY[s] > SEVERITY[cur]) statuses.set(r.name, s);
  }
  return { started, statuses };
}
