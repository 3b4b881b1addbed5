/**
 * The one builder of a test-run script: every place forager runs a repository's tests (the
 * evaluation's hidden run, mutate-fix validation and its reference run, commit mining, traces,
 * image inference's reference runs) gets its bash from {@link testRunScript}.
 *
 * The script: output merged (`exec 2>&1`), the working directory, the spec's `evalPreamble`, then
 * the spec's test command with its arguments and the selection — the harness's directives, or the
 * ids listed in a file in the container (`mapfile`, so no id meets the shell). Options add:
 * - `timeoutSeconds`: `timeout -k 5 N` around the command and `forager-exit-code=N` printed at the
 *   end (runs whose exec has no timeout of its own, and whose exit status is read from the log);
 * - `noBytecode`: PYTHONDONTWRITEBYTECODE (validation runs; an evaluation runs as the harness does);
 * - `pins` (the evaluation, rewards/evaluate.ts): forager's environment (PYTEST_ADDOPTS,
 *   PYTEST_PLUGINS and PYTHONSTARTUP unset, PYTHONNOUSERSITE), RLIMIT_FSIZE, pytest's base
 *   configuration (`-c`, `--rootdir`, `--confcutdir`), plugin autoload off with forager's plugin
 *   and the base state's plugins by `-p`, the unprivileged test user (setpriv, runuser as a
 *   fallback), and the result channel (a root `cat` of the FIFO into a root-only file; every
 *   process of the test user killed afterwards so the copy ends).
 */
import { shellQuote } from "../lib/shell";

/** The parts of an image spec a test run needs. */
export interface SuiteSpec {
  workdir: string;
  testCommand: string;
  evalPreamble: readonly string[];
}

/** How an evaluation's test run is pinned and contained (all optional). */
export interface TestRunPins {
  /** pytest: the base commit's configuration file, kept outside the tree (`-c`). */
  configFile?: string;
  /** pytest: plugins installed at the base state; autoload is disabled and these are loaded with `-p`. */
  plugins?: readonly string[];
  /** pytest: forager's own plugin module (`-p`), loaded first. */
  foragerPlugin?: string;
  /** RLIMIT_FSIZE of the test processes, bytes (the sandbox's disk bound). */
  fileSizeLimitBytes?: number;
  /** The result channel (a FIFO) and the root-only file its reader writes. */
  channel?: { fifo: string; out: string };
  /** Drop to this unprivileged user for the test command. */
  user?: { uid: number; name: string; home: string };
}

/** What to run and how (see the module comment). */
export interface TestRunOptions {
  /** Test directives appended to the command (shell-quoted). */
  directives?: readonly string[];
  /** A file in the container listing the test ids to run, one a line (instead of directives). */
  listFile?: string;
  /** Extra arguments after the command (shell words, already quoted as needed). */
  extraArgs?: string;
  /** Wrap the command in `timeout -k 5 N` and print `forager-exit-code=N` (0: the marker only). */
  timeoutSeconds?: number;
  /** Export PYTHONDONTWRITEBYTECODE=1. */
  noBytecode?: boolean;
  /** Lines run before the preamble (environment for a traced run, say). */
  env?: readonly string[];
  pins?: TestRunPins;
}

/** The exit-code line {@link testRunScript} prints with `timeoutSeconds`: `forager-exit-code=N` at the end of the log. */
export const EXIT_CODE_LINE = /forager-exit-code=(\d+)\s*$/;

/** The test-run script (bash). */
export function testRunScript(spec: SuiteSpec, o: TestRunOptions = {}): string {
  const p = o.pins;
  const lines = ["exec 2>&1", `cd ${shellQuote(spec.workdir)}`];
  if (o.noBytecode) lines.push("export PYTHONDONTWRITEBYTECODE=1");
  if (p) {
    lines.push("unset PYTEST_ADDOPTS PYTEST_PLUGINS PYTHONSTARTUP", "export PYTHONNOUSERSITE=1");
    if (p.fileSizeLimitBytes) lines.push(`ulimit -f ${Math.max(1, Math.floor(p.fileSizeLimitBytes / 1024))} 2>/dev/null`);
    if (p.plugins || p.foragerPlugin) lines.push("export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1");
  }
  lines.push(...(o.env ?? []), ...spec.evalPreamble);
  const args: string[] = [];
  if (p?.configFile) args.push("-c", shellQuote(p.configFile), `--rootdir=${shellQuote(spec.workdir)}`, `--confcutdir=${shellQuote(spec.workdir)}`);
  if (p?.foragerPlugin) args.push("-p", shellQuote(p.foragerPlugin));
  for (const plugin of p?.plugins ?? []) args.push("-p", shellQuote(plugin));
  if (o.extraArgs?.trim()) args.push(o.extraArgs.trim());
  let selection: string[] = (o.directives ?? []).map(shellQuote);
  if (o.listFile) {
    lines.push(`mapfile -t FORAGER_TESTS < ${shellQuote(o.listFile)}`);
    selection = ['"${FORAGER_TESTS[@]}"'];
  } else if (o.timeoutSeconds !== undefined && !o.directives) {
    lines.push("FORAGER_TESTS=()");
    selection = ['"${FORAGER_TESTS[@]}"'];
  }
  const command = [spec.testCommand, ...args, ...selection].join(" ");
  const timed = o.timeoutSeconds !== undefined && o.timeoutSeconds > 0 ? `timeout -k 5 ${Math.ceil(o.timeoutSeconds)} ${command}` : command;
  const u = p?.user;
  if (u) {
    lines.push(
      `__forager_as_user() { if command -v setpriv >/dev/null 2>&1; then setpriv --reuid=${u.uid} --regid=${u.uid} --clear-groups -- "$@"; ` +
        `elif command -v runuser >/dev/null 2>&1; then runuser -u ${shellQuote(u.name)} -- "$@"; ` +
        `else echo ">>>>> forager: cannot drop privileges: the tests run as root" >&2; "$@"; fi; }`,
      `export HOME=${shellQuote(u.home)} USER=${shellQuote(u.name)} LOGNAME=${shellQuote(u.name)}`,
    );
  }
  const run = u ? `__forager_as_user bash -c ${shellQuote(timed)}` : timed;
  const marker = o.timeoutSeconds !== undefined ? ['echo "forager-exit-code=$?"'] : [];
  if (!p?.channel) return [...lines, run, ...marker].join("\n");
  const { fifo, out } = p.channel;
  return [
    ...lines,
    // The reader starts after the preamble, so nothing the preamble left running holds the FIFO.
    `cat ${shellQuote(fifo)} > ${shellQuote(out)} &`,
    "__forager_reader=$!",
    `exec 4<>${shellQuote(fifo)}`,
    `${run} 4>&-`,
    "__forager_rc=$?",
    "exec 4>&-",
    ...(u ? [`__forager_as_user bash -c 'kill -KILL -1' >/dev/null 2>&1`] : []),
    'for __i in $(seq 1 100); do kill -0 "$__forager_reader" 2>/dev/null || break; sleep 0.05; done',
    'kill "$__forager_reader" 2>/dev/null',
    ...(marker.length ? ['echo "forager-exit-code=$__forager_rc"'] : []),
    'exit "$__forager_rc"',
  ].join("\n");
}

/** pytest node ids → the unique function-level ids (parameters cut) to pass on a command line. */
export function selectionArgs(ids: readonly string[]): string[] {
  return [...new Set(ids.map((id) => id.replace(/\[.*$/, "")))].sort();
}
