export { Sandbox, FileNotFoundError, destroyAllSandboxes, liveSandboxes, type ExecResult } from "./sandbox";
export type { SessionResult, SessionStatus } from "./session";
export { SandboxConfigSchema, type SandboxConfig, type SandboxConfigInput, LABELS } from "./config";
export { reapSandboxes, listForagerContainers } from "./reaper";
export type { Runtime, Container, ExecOptions, RunOptions, FileStat } from "./runtime";
