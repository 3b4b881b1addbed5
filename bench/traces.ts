/**
 * Tracing cost: traced functions per CPU-second of `forager traces` on a real repository's suite,
 * and the tracer's CPU overhead over the same suite untraced.
 *
 *   npm run bench -- traces [--repo PATH] [--commit SHA] [--spec FILE] [--name owner/name]
 *                           [--tests SELECTION] [--max-calls N] [--backend auto|settrace|monitoring]
 *
 * Default: pallets/click at the commit of taskgen/mutate/specs/click.json, from /work/.mirror, its
 * whole suite. One container of 1 CPU runs the suite untraced, then traced (traces/run.ts); CPU is
 * the container's cgroup CPU usage (engine stats) over each pytest run, so it includes pytest's
 * own start-up and collection. Figures: traced calls (records) and distinct functions per
 * CPU-second of the traced run, traces per CPU-second the tracing adds (traced − untraced CPU),
 * events and bytes per CPU-second, and traced/untraced CPU.
 */
import fs from "node:fs";
import { mutateSpec } from "../cli/tasks";
import { buildInstanceImage } from "../images/build";
import { traceRepository } from "../traces/run";

function flag(args: string[], name: string, dflt?: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
}

export async function main(args: string[]): Promise<Record<string, number>> {
  const repo = flag(args, "repo", "/work/.mirror/pallets+click/repo")!;
  const specFile = flag(args, "spec", repo.includes("click") ? "taskgen/mutate/specs/click.json" : undefined);
  const specCommit = specFile ? (JSON.parse(fs.readFileSync(specFile, "utf8")) as { commit?: string }).commit : undefined;
  const commit = flag(args, "commit", specCommit);
  if (!commit) throw new Error("--commit SHA (or a --spec with a commit)");
  const name = flag(args, "name");
  const tests = flag(args, "tests");
  const maxCalls = Number(flag(args, "max-calls", "10"));
  const backend = flag(args, "backend", "auto") as "auto" | "settrace" | "monitoring";
  const spec = mutateSpec({ repo, commit, spec: specFile, name });
  const built = await buildInstanceImage(spec);
  console.log(`image ${built.tag}`);
  const r = await traceRepository({
    image: built.tag,
    spec,
    repository: spec.repo,
    commit: built.commit,
    ...(tests ? { tests: tests.split(/[\s,]+/) } : {}),
    settings: { maxCallsPerFunction: maxCalls, backend },
    onProgress: (m) => console.log(m),
  });
  const s = r.stats;
  const cpu = r.cpuSeconds ?? NaN;
  const base = r.outcome?.untracedCpuSeconds ?? NaN;
  console.log(
    `${spec.repo}: ${s.tests} tests, ${s.records} traces of ${s.functions} functions, ${s.events} events, ${(s.bytes / 1e6).toFixed(2)} MB; ` +
      `traced ${cpu.toFixed(1)} s CPU (${r.tracedSeconds.toFixed(1)} s wall), untraced ${base.toFixed(1)} s CPU; outcomes agree ${r.outcome?.agree}/${r.outcome?.tests}`,
  );
  return {
    tests_count: s.tests,
    traces_count: s.records,
    functions_count: s.functions,
    events_count: s.events,
    trace_bytes: s.bytes,
    traced_cpu_s: cpu,
    untraced_cpu_s: base,
    traced_wall_s: r.tracedSeconds,
    traced_calls_per_cpu_second: s.records / cpu,
    traced_functions_per_cpu_second: s.functions / cpu,
    events_per_cpu_second: s.events / cpu,
    bytes_per_cpu_second: s.bytes / cpu,
    traces_per_tracing_cpu_second: s.records / (cpu - base),
    cpu_overhead_ratio: cpu / base,
    outcome_agreement_ratio: r.outcome ? r.outcome.agree / r.outcome.tests : NaN,
  };
}
