/**
 * Readable verdicts (issue 30, class 6): the decisive lines of a build or test log (the exception
 * and its message, the step that failed), the cause class of a rejection, git errors of an
 * incomplete clone named as such, and the verdict table `forager images infer` ends with,
 * grouped by cause. Pure functions over text.
 */

/** Cause classes of a verdict, in the order the table lists them. */
export const CAUSES = [
  "accepted",
  "incomplete clone",
  "missing submodule",
  "python version",
  "missing runtime dependency",
  "version skew",
  "pytest configuration",
  "build failed",
  "no tests found",
  "no tests collected",
  "timeout",
  "suite mostly deselected",
  "suite mostly uncollected",
  "suite mostly skipped",
  "tests need the network",
  "tests failing",
  "error",
] as const;
export type Cause = (typeof CAUSES)[number];

const EXC = /\b([A-Za-z_][\w.]*(?:Error|Exception|Exit|Warning|Interrupt))\b(?::\s*(.*))?$/;

/** Whether a line names a Python exception with its message (`ValueError: bad`, `E   ImportError: …`). */
function exceptionLine(line: string): boolean {
  const l = line.replace(/^(INTERNALERROR>|E)\s+/, "").trim();
  return /^[A-Za-z_][\w.]*(Error|Exception|Exit|Warning|Interrupt)(:\s|$)/.test(l);
}

function clean(line: string, max = 240): string {
  return line.replace(/\x1b\[[0-9;]*m/g, "").replace(/\s+/g, " ").trim().slice(0, max);
}

/**
 * The decisive lines of a log, most telling first, at most `max` (each at most 240 characters):
 * a warning filter pytest could not parse (the filter and the error), the final exception of an
 * INTERNALERROR or usage error, a conftest that failed to import, collection errors (file and
 * exception), failed tests with their exception, unittest errors, a failed build's compiler, pip
 * or apt error, a git error, a timeout. Falls back to the last non-empty line.
 */
export function decisiveLines(log: string, max = 6): string[] {
  const lines = log.split("\n").map((l) => l.replace(/\r$/, ""));
  const out: string[] = [];
  const push = (l: string | undefined) => {
    if (!l) return;
    const c = clean(l);
    if (c && !out.includes(c)) out.push(c);
  };
  // A warning filter pytest could not parse: the filter, then the error it raised.
  const wp = lines.findIndex((l) => /while parsing the following warning configuration/.test(l));
  if (wp >= 0) {
    const filter = lines.slice(wp + 1, wp + 6).find((l) => l.trim() && !/^\s*INTERNALERROR>\s*$/.test(l));
    const err = lines.slice(wp + 1, wp + 80).filter((l) => exceptionLine(l.replace(/^INTERNALERROR>\s*/, ""))).pop();
    push(`pytest could not parse the warning filter ${clean((filter ?? "").replace(/^INTERNALERROR>\s*/, ""))}${err ? `: ${clean(err.replace(/^INTERNALERROR>\s*/, ""))}` : ""}`);
  }
  // INTERNALERROR: its last exception line is the cause.
  const internal = lines.filter((l) => /^INTERNALERROR>/.test(l)).map((l) => l.replace(/^INTERNALERROR>\s?/, ""));
  if (internal.length) {
    const exc = internal.filter(exceptionLine).pop() ?? internal.filter((l) => l.trim()).pop();
    push(`pytest INTERNALERROR: ${clean(exc ?? "")}`);
  }
  // Usage errors and conftest import errors (pytest stops before collecting).
  for (const l of lines) if (/^[\w.-]+: error: /.test(l) || /^ERROR: (?!usage:|while parsing|\S+ \()/.test(l)) push(l);
  const ci = lines.findIndex((l) => /ImportError while loading conftest/.test(l));
  if (ci >= 0) push(`${clean(lines[ci]!)}: ${clean(lines.slice(ci + 1, ci + 40).find((l) => /^E\s+\S/.test(l) && exceptionLine(l)) ?? "")}`);
  // Collection errors: the file and its exception.
  const collecting = [...log.matchAll(/_{3,} ERROR collecting (\S+) _{3,}\n([\s\S]*?)(?=\n_{3,} |\n={3,} |$)/g)];
  for (const m of collecting.slice(0, 3)) {
    const blk = m[2]!.split("\n");
    const e = blk.filter((l) => /^E\s+/.test(l) && exceptionLine(l)).pop() ?? blk.filter((l) => /^E\s+\S/.test(l)).pop() ?? blk.filter((l) => l.trim()).pop();
    push(`collecting ${m[1]}: ${clean((e ?? "").replace(/^E\s+/, ""))}`);
  }
  if (collecting.length > 3) push(`(${collecting.length - 3} more collection errors)`);
  // Failed tests: the short summary's lines carry the exception.
  const failed = lines.filter((l) => /^(FAILED|ERROR) \S+ - /.test(l));
  for (const l of failed.slice(0, 3)) push(l);
  if (!failed.length && !collecting.length) {
    const e = lines.filter((l) => /^E\s+\S/.test(l) && exceptionLine(l));
    for (const l of e.slice(0, 2)) push(l.replace(/^E\s+/, ""));
    // A summary line with no message (a fixture error, say): the test and the first `E` line.
    const bare = lines.filter((l) => /^(FAILED|ERROR) \S+\s*$/.test(l));
    const firstE = lines.find((l) => /^E\s+\S/.test(l));
    if (bare.length && !e.length) push(`${bare[0]!.trim()}${firstE ? `: ${clean(firstE.replace(/^E\s+/, ""))}` : ""}`);
  }
  // Nothing collected at all: say so with what pytest was given, rather than its closing banner.
  const zero = lines.find((l) => /^collected 0 items\b/.test(l));
  if (zero && !out.length) push(`pytest collected 0 items${/no tests ran/.test(log) ? " (no tests ran)" : ""}: the paths given hold no test pytest recognises`);
  // unittest: the error headers and the exception under each.
  for (let i = 0; i < lines.length && out.length < max + 2; i++) {
    if (/^(ERROR|FAIL): \S+ \(/.test(lines[i]!)) {
      const exc = lines.slice(i + 1, i + 60).find((l, j, a) => exceptionLine(l) && !/^\s/.test(l) && (a[j + 1] === undefined || /^-{5,}|^={5,}|^\s*$/.test(a[j + 1]!)));
      push(`${clean(lines[i]!)}${exc ? `: ${clean(exc)}` : ""}`);
    }
  }
  // Builds: compiler, pip, apt and git errors.
  const build = lines.find((l) => /fatal error:|No matching distribution found|ResolutionImpossible|^E: (Unable|Package|Version)|^ERROR: (Could not|Failed|No matching)|^fatal: |^error: (?!subprocess-exited-with-error|metadata-generation-failed)/.test(l.trim()));
  push(build);
  if (/forager-exit-code=(124|137)\s*$/.test(log.trim())) push("the reference run was stopped by its time limit");
  // A plain traceback (pytest stopped while starting up): its final exception, with the frame
  // that raised it when the exception carries no message (a bare AssertionError).
  if (!out.length) {
    const i = lines.map((l) => exceptionLine(l) && !/^\s/.test(l)).lastIndexOf(true);
    if (i >= 0) {
      const exc = exceptionOf(lines[i]!);
      const frame = lines.slice(0, i).reverse().findIndex((l) => /^\s*File "[^"]+", line \d+/.test(l));
      const at = frame >= 0 ? /File "([^"]+)", line (\d+)/.exec(lines[i - 1 - frame]!) : null;
      const code = frame >= 0 ? lines[i - frame]?.trim() : undefined;
      push(exc?.message || !at ? lines[i] : `${lines[i]!.trim()} at ${at[1]}:${at[2]}${code && !/^\^+$/.test(code) ? ` (${code})` : ""}`);
    }
  }
  // Last resort: the last line that is not pytest's closing banner (`==== 1 error in 0.03s ====`).
  const meaningful = lines.filter((l) => l.trim() && !/^forager-exit-code=/.test(l));
  if (!out.length) push(meaningful.filter((l) => !/^=+ .* =+$/.test(l.trim())).pop() ?? meaningful.pop());
  return out.slice(0, max);
}

/** The Python exception of a line (`ImportError`, its message), when it names one. */
export function exceptionOf(line: string): { type: string; message: string } | undefined {
  const m = EXC.exec(line.replace(/^(INTERNALERROR>|E)\s+/, ""));
  return m ? { type: m[1]!, message: (m[2] ?? "").trim() } : undefined;
}

/**
 * Signs in a test log that an installed dependency is from another era than the code: a name
 * the package lacks (`cannot import name 'X' from 'pkg'`, `module 'pkg' has no attribute 'X'`),
 * an abstract method added later (`Can't instantiate abstract class … abstract method`), an
 * unexpected keyword. `own` is the project's import name and `local` the top-level names of the
 * repository's tree (its directories, and those under `src/`): their modules are not skew, nor is
 * a module of "unknown location" (a directory with no `__init__.py`, e.g. a native part not built).
 * @returns the decisive line, or undefined when the log shows no skew.
 */
export function versionSkew(log: string, own?: string, local: string[] = []): string | undefined {
  const mine = new Set([own?.toLowerCase().replace(/-/g, "_"), ...local.map((x) => x.toLowerCase())].filter(Boolean));
  const foreign = (mod: string) => !mine.has(mod.split(".")[0]!.toLowerCase());
  for (const line of log.split("\n")) {
    const l = line.replace(/^(INTERNALERROR>|E)\s+/, "").trim();
    let m = /ImportError: cannot import name '([\w.]+)' from '([\w.]+)'/.exec(l);
    if (m && foreign(m[2]!) && !/\(unknown location\)/.test(l)) return clean(l);
    m = /AttributeError: module '([\w.]+)' has no attribute '(\w+)'/.exec(l);
    if (m && foreign(m[1]!) && !/^(os|sys|builtins)$/.test(m[1]!)) return clean(l);
    if (/TypeError: Can't instantiate abstract class \w+ (with|without an implementation for) abstract method/.test(l)) return clean(l);
    // A call into a dependency whose signature changed (the project's tests and code agree at any commit).
    if (/TypeError: [\w.]+\(\) got an unexpected keyword argument '\w+'/.test(l)) return clean(l);
  }
  return undefined;
}

/** Words of a failure to reach a host or a package index (DNS, routes, pip). A refused connection is not one: a test's own server on loopback refuses too. */
const NETWORK = /Could not find a version that satisfies the requirement|No matching distribution found for|Temporary failure in name resolution|Name or service not known|No address associated with hostname|Network is unreachable|socket\.gaierror|getaddrinfo failed|NameResolutionError|Failed to resolve '|urlopen error \[Errno -?\d+\]/;

/**
 * Whether a failing suite fails for the network the sandbox does not have: at least 5 tests fail,
 * and either lines naming a network failure ({@link NETWORK}: name resolution, unreachable routes,
 * pip finding no distribution) number at least half of them, or the log's most decisive line
 * ({@link decisiveLines}) is one (a session fixture that installs from an index fails once, and
 * every test after it). Returns the network line, else undefined.
 */
export function networkNeed(log: string, failed: number): string | undefined {
  if (failed < 5) return undefined;
  const lines = log.split("\n").filter((l) => NETWORK.test(l));
  if (!lines.length) return undefined;
  const first = decisiveLines(log, 1)[0];
  if (first && NETWORK.test(first)) return first;
  return lines.length * 2 >= failed ? clean(lines[0]!.replace(/^(INTERNALERROR>|E)\s+/, "")) : undefined;
}

/**
 * The tests of a pytest run (`-rA`) that failed for the network the sandbox does not have: the
 * FAILED / ERROR lines of the short test summary whose message is a network failure
 * ({@link NETWORK}: name resolution, unreachable routes, pip finding no distribution), keeping
 * only ids the status map (`statuses`, from the same log) has as failed. A refused connection
 * is not one (a test's own loopback server refuses too).
 * @returns the node ids, in log order, without repeats.
 */
export function networkFailedTests(log: string, statuses: ReadonlyMap<string, string>): string[] {
  return failedTestsMatching(log, statuses, (msg) => NETWORK.test(msg));
}

/**
 * The failed tests of a pytest run (`-rA`) whose short-summary message (`FAILED id - message`,
 * `ERROR id - message`) satisfies `test`, keeping only ids `statuses` has as FAILED or ERROR.
 * @returns node ids in log order, without repeats.
 */
export function failedTestsMatching(log: string, statuses: ReadonlyMap<string, string>, test: (message: string) => boolean): string[] {
  const out = new Set<string>();
  for (const line of log.split("\n")) {
    const m = /^(FAILED|ERROR) (\S+) - (.*)$/.exec(line.trim());
    if (!m || !test(m[3]!)) continue;
    const s = statuses.get(m[2]!);
    if (s === "FAILED" || s === "ERROR") out.add(m[2]!);
  }
  return [...out];
}

/** git's words for an object the repository does not have. */
const MISSING_OBJECT = /(bad object|missing (blob|tree|commit) object|unable to read (tree|blob|commit)?\s*\w*|could not read (\w+ )?[0-9a-f]{7,}|object file .* is empty|loose object .* is corrupt|invalid object [0-9a-f]+|did not receive expected object|fatal: bad tree|unable to parse object|packfile .* cannot be accessed|is not a valid '?(tree|blob|commit)'? object|Not a valid object name)/i;

/**
 * An incomplete clone named as such: when `message` (a git error) says an object is missing or
 * corrupt, a sentence naming the object and what to do; otherwise undefined.
 */
export function incompleteClone(message: string): string | undefined {
  const m = MISSING_OBJECT.exec(message);
  if (!m) return undefined;
  // git names the object several ways: `sha1 file of PATH (SHA)`, `SHA for 'PATH'`, `COMMIT:PATH`, or the sha alone.
  const ofFile = /file of (\S+) \(([0-9a-f]{40})\)/.exec(message) ?? /\b([0-9a-f]{40}) for '([^']+)'/.exec(message);
  const file = /\b([0-9a-f]{40}):(\S+)/.exec(message);
  const sha = /\b([0-9a-f]{40})\b/.exec(m[0])?.[1] ?? /\b([0-9a-f]{40})\b/.exec(message.slice(message.indexOf(m[0])))?.[1] ?? /\b([0-9a-f]{40})\b/.exec(message)?.[1];
  const what = ofFile
    ? ofFile[0].startsWith("file of") ? `${ofFile[2]!.slice(0, 12)} (${ofFile[1]}) ` : `${ofFile[1]!.slice(0, 12)} (${ofFile[2]}) `
    : file ? `of ${file[2]} at ${file[1]!.slice(0, 12)} ` : sha ? `${sha.slice(0, 12)} ` : "";
  return `incomplete clone: git object ${what}is missing (${clean(m[0], 80)}); the clone or fetch stopped early, fetch the repository again`;
}

/** What the verdict table needs of one repository's line (the `--summary` fields). */
export interface VerdictRow {
  repo: string;
  commit: string;
  accepted: boolean;
  reason: string;
  cause?: Cause;
  tests_collected: number;
  passed: number;
  failed: number;
  skipped: number;
  deselected: string[];
  total_seconds: number;
  suite?: string | undefined;
}

/**
 * The cause class of a verdict, from its reason and decisive lines.
 */
export function causeOf(accepted: boolean, reason: string, decisive: string[] = []): Cause {
  if (accepted) return "accepted";
  const all = [reason, ...decisive].join("\n");
  if (/^incomplete clone/m.test(all)) return "incomplete clone";
  if (/^error: /.test(reason)) return incompleteClone(reason) ? "incomplete clone" : "error";
  if (/requires-python .* excludes/.test(reason)) return "python version";
  if (/git submodule \S+ is not in the clone/.test(reason)) return "missing submodule";
  if (/no Debian package in|runtime dependenc/.test(reason)) return "missing runtime dependency";
  if (/^version skew|version skew:/.test(reason)) return "version skew";
  if (/timed out|time limit/.test(reason)) return "timeout";
  if (/^build failed/.test(reason)) return "build failed";
  if (/^no tests found/.test(reason)) return "no tests found";
  if (/^no tests collected/.test(reason)) return /pytest (INTERNALERROR|could not parse)|usage:|error: unrecognized|ImportError while loading conftest|not found in `markers`|PytestConfigWarning|'minversion' requires pytest/.test(all) ? "pytest configuration" : "no tests collected";
  if (/^most of the suite deselected/.test(reason)) return "suite mostly deselected";
  if (/^most test files collected nothing/.test(reason)) return "suite mostly uncollected";
  if (/^most tests skipped/.test(reason)) return "suite mostly skipped";
  if (/^tests need the network/.test(reason)) return "tests need the network";
  if (/pass \(/.test(reason)) return "tests failing";
  return "error";
}

/**
 * The table `forager images infer` ends with: one block per cause (in {@link CAUSES} order), a
 * line per repository with its commit, counts (collected / passed / failed / skipped /
 * deselected files), minutes and reason; then the acceptance line.
 */
export function verdictTable(rows: VerdictRow[]): string[] {
  const out: string[] = [];
  const by = new Map<Cause, VerdictRow[]>();
  for (const r of rows) {
    const c = r.cause ?? causeOf(r.accepted, r.reason);
    by.set(c, [...(by.get(c) ?? []), r]);
  }
  const w = Math.max(10, ...rows.map((r) => r.repo.length));
  for (const cause of CAUSES) {
    const list = by.get(cause);
    if (!list) continue;
    out.push(`${cause} (${list.length})`);
    for (const r of list) {
      const counts = `${r.tests_collected} collected, ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped, ${r.deselected.length} deselected`;
      out.push(`  ${r.repo.padEnd(w)}  ${(r.commit || "-").slice(0, 12).padEnd(12)}  ${(r.suite ?? "").padEnd(8)}  ${(r.total_seconds / 60).toFixed(1).padStart(5)} min  ${counts}  ${r.reason}`);
    }
  }
  const acc = rows.filter((r) => r.accepted).length;
  out.push(`accepted ${acc}/${rows.length} (${rows.length ? ((acc / rows.length) * 100).toFixed(0) : 0}%)`);
  return out;
}
