/**
 * forager's structured logger: pino to stderr, so that a command's stdout stays for people and pipes.
 *
 * Two forms: JSON lines (pino's own) when asked — `FORAGER_LOG_LEVEL` set, `FORAGER_LOG_JSON=1`, or the
 * CLI's `--log-json` / `--log-level` ({@link configureLogging}) — and otherwise one human line per
 * record (`warn [component] message: error`), no stack, at level "warn". Workers and services set a
 * level (docker-compose.yml), so they log JSON.
 */
import { pino, destination, type Logger } from "pino";

export type { Logger };

let root: Logger | undefined;
let settings: { json?: boolean; level?: string } = {};

/**
 * Choose the log form before the first {@link logger} call (the CLI's global options).
 * `json`: JSON lines; `level`: a pino level (also turns JSON on). Later calls after the logger
 * exists change its level only.
 */
export function configureLogging(s: { json?: boolean; level?: string }): void {
  settings = { ...settings, ...s };
  if (root && s.level) root.level = s.level;
}

const LEVELS: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
const SKIP = new Set(["level", "time", "pid", "hostname", "msg", "component", "err", "error"]);

/** One pino JSON line as one human line: `warn [component] message (key=value …): error message`. */
export function humanLogLine(json: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.trimEnd();
  }
  const level = LEVELS[Number(r.level)] ?? String(r.level);
  const comp = typeof r.component === "string" ? ` [${r.component}]` : "";
  const extra = Object.entries(r)
    .filter(([k, v]) => !SKIP.has(k) && (typeof v === "string" || typeof v === "number" || typeof v === "boolean"))
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(" ");
  const e = (r.err ?? r.error) as { message?: unknown } | string | undefined;
  const err = typeof e === "string" ? e : e && typeof e.message === "string" ? e.message : "";
  return `${level}${comp} ${String(r.msg ?? "")}${extra ? ` (${extra})` : ""}${err ? `: ${err.split("\n")[0]}` : ""}`;
}

/** The process-wide pino logger (see the module comment for its form). */
export function logger(): Logger {
  if (root) return root;
  const envLevel = process.env.FORAGER_LOG_LEVEL;
  const level = settings.level ?? envLevel ?? "warn";
  const json = settings.json || !!settings.level || !!envLevel || process.env.FORAGER_LOG_JSON === "1";
  root = json
    ? pino({ level, base: { pid: process.pid } }, destination({ dest: 2, sync: false }))
    : pino({ level, base: { pid: process.pid } }, { write: (line: string) => void process.stderr.write(humanLogLine(line) + "\n") });
  return root;
}

/** A child logger carrying `component` (and any other bindings). */
export function childLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return logger().child({ component, ...bindings });
}

/** A logger that writes nothing (tests, libraries used without a logger). */
export const silentLogger: Logger = pino({ level: "silent" });
