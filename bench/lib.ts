/**
 * Small helpers shared by the benchmarks in this folder: timing, warm-up, percentiles,
 * argument flags and running a host command (the docker CLI) to completion.
 *
 * A benchmark is a module `bench/NAME.ts` exporting {@link BenchMain}; `bench/run.ts` runs it.
 */
import { spawn } from "node:child_process";
import type { CostModelOptions, PrefixCacheOptions } from "../test/helpers/scripted-server";

/**
 * A benchmark's entry point. Prints human-readable lines while it runs and returns its figures,
 * one number per key, the unit in the key's name (`_ms`, `_ratio`, `_bytes`, …).
 */
export type BenchMain = (args: string[]) => Promise<Record<string, number>>;

/** Milliseconds since `start` (a `performance.now()` value). */
export function msSince(start: number): number {
  return performance.now() - start;
}

/** A stopwatch: call the returned function for the milliseconds elapsed since `timer()`. */
export function timer(): () => number {
  const start = performance.now();
  return () => performance.now() - start;
}

/** Run `fn` once and return its result with the wall time it took, milliseconds. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

/** Run `fn` `times` times, untimed, so caches, JIT and connection pools are warm. */
export async function warmUp(times: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < times; i++) await fn(i);
}

/**
 * The `p`-th percentile (0 < p ≤ 100) of samples sorted ascending, nearest-rank method:
 * the smallest sample with at least p % of the samples at or below it (p50 of 500 samples is
 * the 250th, p99 the 495th). Never interpolates, so it is always a measured value.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new Error("percentile of no samples");
  if (!(p > 0 && p <= 100)) throw new Error(`percentile ${p} out of (0, 100]`);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Summary statistics of a sample set, milliseconds in, milliseconds out. */
export interface Summary {
  n: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

/** Sort a copy of `samples` and summarise it. */
export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    min: sorted[0]!,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1]!,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  };
}

/** Format milliseconds with enough digits for sub-millisecond figures. */
export function fmtMs(ms: number): string {
  if (ms < 10) return `${ms.toFixed(3)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** A one-line summary: `label  n=…  p50 …  p99 …  (min … max … mean …)`. */
export function describe(label: string, s: Summary): string {
  return (
    `${label.padEnd(34)} n=${String(s.n).padEnd(4)} p50 ${fmtMs(s.p50).padStart(10)}  p99 ${fmtMs(s.p99).padStart(10)}` +
    `  (min ${fmtMs(s.min)}, max ${fmtMs(s.max)}, mean ${fmtMs(s.mean)})`
  );
}

/** Round to `digits` decimals (figures in the JSON line). */
export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * A positive integer flag from `args`: `--name N` or `--name=N`; `fallback` when absent.
 * @throws Error when the value is not a positive integer.
 */
export function intFlag(args: readonly string[], name: string, fallback: number): number {
  const raw = stringFlag(args, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} wants a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** A string flag from `args`: `--name VALUE` or `--name=VALUE`; undefined when absent. */
export function stringFlag(args: readonly string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === `--${name}`) {
      const v = args[i + 1];
      if (v === undefined) throw new Error(`--${name} needs a value`);
      return v;
    }
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return undefined;
}

/**
 * Flags in `args` that are not among `known` (each `--name` consumes the following value
 * unless written `--name=value`).
 */
export function unknownFlags(args: readonly string[], known: readonly string[]): string[] {
  const bad: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const name = a.startsWith("--") ? a.slice(2).split("=")[0]! : undefined;
    if (name !== undefined && known.includes(name)) {
      if (!a.includes("=")) i++;
      continue;
    }
    bad.push(a);
  }
  return bad;
}

/**
 * Run a host program to completion with stdio ignored (nothing is read, so nothing but the
 * process's own cost is timed).
 * @throws Error when it cannot be spawned or exits non-zero.
 */
export function runProgram(file: string, argv: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ["ignore", "ignore", "pipe"] });
    const err: Buffer[] = [];
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) resolve();
      else {
        const tail = Buffer.concat(err).toString("utf8").trim().slice(-500);
        reject(new Error(`${file} ${argv.join(" ")} exited ${code ?? signal}${tail ? `: ${tail}` : ""}`));
      }
    });
  });
}

/** Environment variable giving bench/scripted-model.ts its answer latency (ms). */
export const SCRIPTED_MODEL_ENV = "FORAGER_BENCH_MODEL_LATENCY_MS";
/** What the scripted model answers every turn: thinking, then prose without a tool call. */
export const SCRIPTED_TURN_TEXT = "Let me think about the failing test and where the bug could be.\n</think>\nI need to look at the code first.";

/**
 * Start bench/scripted-model.ts in its own process (its CPU is not forager's), answering every
 * request after `latencyMs` ms. Resolves with its URL once it listens.
 * @throws Error when the process exits before printing its URL.
 */
export async function startScriptedModel(latencyMs: number): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const script = new URL("./scripted-model.ts", import.meta.url).pathname;
  const child = spawn(process.execPath, ["--import", "tsx", script], { env: { ...process.env, [SCRIPTED_MODEL_ENV]: String(latencyMs) }, stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      const m = /(http:\/\/\S+)\n/.exec(buf);
      if (m) resolve(m[1]!);
    });
    child.once("exit", (c) => reject(new Error(`scripted model server exited (${c})`)));
  });
  return {
    url,
    pid: child.pid!,
    stop: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null) return r();
        child.once("exit", () => r());
        child.kill("SIGTERM");
      }),
  };
}

/** Environment variable giving bench/scripted-model.ts a {@link StandInConfig} (JSON): stand-in servers instead of one scripted server. */
export const STANDIN_ENV = "FORAGER_BENCH_STANDIN";

/** Stand-in model servers for bench/model-routing.ts (test/helpers/scripted-server.ts options). */
export interface StandInConfig {
  servers: number;
  /** Tokens generated per request (fresh ids, so no two episodes share them). */
  completionTokens: number;
  prefixCache: PrefixCacheOptions;
  costModel: CostModelOptions;
}
