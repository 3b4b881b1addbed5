/**
 * forager's structured logger: pino JSON lines. Level from FORAGER_LOG_LEVEL (default "warn": the CLI prints for people; workers set "info"),
 * destination stderr so that a command's stdout stays for people and pipes.
 */
import { pino, destination, type Logger } from "pino";

export type { Logger };

let root: Logger | undefined;

/** The process-wide pino logger (JSON to stderr). */
export function logger(): Logger {
  root ??= pino(
    { level: process.env.FORAGER_LOG_LEVEL ?? "warn", base: { pid: process.pid } },
    destination({ dest: 2, sync: false }),
  );
  return root;
}

/** A child logger carrying `component` (and any other bindings). */
export function childLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return logger().child({ component, ...bindings });
}

/** A logger that writes nothing (tests, libraries used without a logger). */
export const silentLogger: Logger = pino({ level: "silent" });
