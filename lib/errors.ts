/**
 * Errors that cross module boundaries. Each carries a `kind` so callers can branch without
 * string matching, and a message a person can act on.
 */

/** The Docker engine (or something it runs) failed: not the model's or the task's fault. */
export class EnvironmentError extends Error {
  readonly kind = "env_error" as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EnvironmentError";
  }
}

/** A record (task, trajectory, config, …) failed validation. Names the file, line and field. */
export class RecordError extends Error {
  readonly kind = "record_error" as const;
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
    readonly field?: string,
  ) {
    super(message);
    this.name = "RecordError";
  }
}
