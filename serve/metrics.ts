/**
 * Prometheus metrics of `forager serve` (text exposition format 0.0.4, GET /metrics): counters the
 * service adds to as trajectories finish, and gauges read when scraped. Names follow Prometheus
 * conventions (base units: seconds; `_total` for counters).
 */
import type { Trajectory } from "../agent/trajectory";

type Labels = Record<string, string>;

const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const fmtLabels = (l: Labels) => {
  const e = Object.entries(l);
  return e.length ? `{${e.map(([k, v]) => `${k}="${esc(v)}"`).join(",")}}` : "";
};

export interface MetricFamily {
  name: string;
  help: string;
  type: "counter" | "gauge";
  samples: Array<{ labels: Labels; value: number }>;
}

/** Text exposition of metric families. */
export function renderMetrics(families: readonly MetricFamily[]): string {
  let out = "";
  for (const f of families) {
    out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.samples) out += `${f.name}${fmtLabels(s.labels)} ${Number.isFinite(s.value) ? s.value : 0}\n`;
  }
  return out;
}

/** Counters of the service (trajectories, environment vs model time, failures by reason). */
export class ServeCounters {
  private readonly trajectories = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  modelSeconds = 0;
  toolSeconds = 0;
  sandboxStartSeconds = 0;
  evalSeconds = 0;
  steps = 0;
  weightSwitches = 0;

  /** Count a finished trajectory (`source`: rollouts or envs). */
  trajectory(t: Trajectory, source: "rollouts" | "envs"): void {
    const k = `${source}\u0000${t.endReason}`;
    this.trajectories.set(k, (this.trajectories.get(k) ?? 0) + 1);
    this.modelSeconds += t.times.modelSeconds;
    this.toolSeconds += t.times.toolSeconds;
    this.sandboxStartSeconds += t.times.sandboxStartSeconds;
    this.evalSeconds += t.times.evalSeconds;
    if (["env_error", "policy_error", "sandbox_timeout", "format_error"].includes(t.endReason)) this.failure(t.endReason);
  }

  failure(reason: string): void {
    this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
  }

  families(): MetricFamily[] {
    const split = (m: Map<string, number>, a: string, b?: string) =>
      [...m].map(([k, value]) => {
        const [x, y] = k.split("\u0000");
        return { labels: b ? { [a]: x!, [b]: y! } : { [a]: x! }, value };
      });
    return [
      { name: "forager_trajectories_total", help: "Finished trajectories by source and end reason.", type: "counter", samples: split(this.trajectories, "source", "end_reason") },
      { name: "forager_failures_total", help: "Failures by reason (episode end reasons, job failures, HTTP errors).", type: "counter", samples: split(this.failures, "reason") },
      {
        name: "forager_episode_seconds_total",
        help: "Time of finished episodes by part: model (policy), environment (tools), sandbox start, evaluation.",
        type: "counter",
        samples: [
          { labels: { part: "model" }, value: this.modelSeconds },
          { labels: { part: "environment" }, value: this.toolSeconds },
          { labels: { part: "sandbox_start" }, value: this.sandboxStartSeconds },
          { labels: { part: "evaluation" }, value: this.evalSeconds },
        ],
      },
      { name: "forager_steps_total", help: "Step API actions taken.", type: "counter", samples: [{ labels: {}, value: this.steps }] },
      { name: "forager_weights_switches_total", help: "Weights version switches.", type: "counter", samples: [{ labels: {}, value: this.weightSwitches }] },
    ];
  }
}
