/**
 * Benchmark runner: `npm run bench -- NAME [args]` imports `bench/NAME.ts` and calls its
 * `main(args)` (see BenchMain in ./lib). The benchmark prints human-readable lines while it
 * runs; the runner then prints exactly one JSON line of its figures, always the last line of
 * stdout (`npm run -s bench -- NAME | tail -n 1`). Without NAME, or with an unknown one, it lists
 * the benchmarks. Any error exits non-zero, after destroying the sandboxes still alive.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { destroyAllSandboxes, liveSandboxes } from "../sandbox/sandbox";
import type { BenchMain } from "./lib";

const here = path.dirname(fileURLToPath(import.meta.url));
/** Files of this folder that are not benchmarks. */
const NOT_BENCHMARKS = new Set(["run", "lib", "scripted-model"]);

function available(): string[] {
  return readdirSync(here)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
    .map((f) => f.slice(0, -3))
    .filter((n) => !NOT_BENCHMARKS.has(n) && /^[a-z0-9][a-z0-9-]*$/.test(n))
    .sort();
}

function usage(): string {
  const names = available();
  return `usage: npm run bench -- NAME [args]\nbenchmarks:\n${names.map((n) => `  ${n}`).join("\n") || "  (none)"}`;
}

/** Write the last line and exit once stdout has drained (dockerode's agent may hold the loop). */
function finish(code: number, lastLine?: string): void {
  const exit = (): void => process.exit(code);
  if (lastLine === undefined) exit();
  else process.stdout.write(lastLine + "\n", exit);
}

async function cleanup(): Promise<void> {
  const n = liveSandboxes().size;
  if (n === 0) return;
  console.error(`destroying ${n} sandbox(es) left alive`);
  await destroyAllSandboxes();
}

async function main(argv: string[]): Promise<void> {
  const [name, ...args] = argv;
  if (!name || name === "--help" || name === "-h") {
    console.error(usage());
    finish(name ? 0 : 2);
    return;
  }
  if (!available().includes(name)) {
    console.error(`unknown benchmark ${JSON.stringify(name)}\n${usage()}`);
    finish(2);
    return;
  }

  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(`${sig}: stopping`);
    void cleanup().finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const mod = (await import(pathToFileURL(path.join(here, `${name}.ts`)).href)) as { main?: BenchMain };
    if (typeof mod.main !== "function") throw new Error(`bench/${name}.ts does not export main(args)`);
    const started = performance.now();
    console.log(`bench ${name} ${args.join(" ")}`.trimEnd());
    const figures = await mod.main(args);
    const bad = Object.entries(figures).filter(([, v]) => typeof v !== "number" || !Number.isFinite(v));
    if (bad.length) throw new Error(`non-numeric figures: ${bad.map(([k, v]) => `${k}=${String(v)}`).join(", ")}`);
    await cleanup();
    console.log(`bench ${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    finish(0, JSON.stringify(figures));
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? `\ncaused by: ${err.cause.message}` : "";
    console.error(`bench ${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}${cause}`);
    await cleanup().catch(() => undefined);
    finish(1);
  }
}

void main(process.argv.slice(2));
