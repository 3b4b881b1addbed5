/**
 * Comparing a replay with its recording: per turn, whether the tool observation is the same
 * once the things that legitimately vary are normalised (durations, the token budget, hex
 * addresses, temporary names).
 */
import type { Trajectory } from "./trajectory";

/** Normalise an observation for comparison. */
export function normalizeObservation(s: string): string {
  return s
    .replace(/\b\d+(\.\d+)?\s*(ms|s|sec|secs|seconds?|minutes?)\b/g, "<dur>")
    .replace(/\b\d+m\d+(\.\d+)?s\b/g, "<dur>")
    .replace(/\* Remaining tokens: -?\d+/g, "* Remaining tokens: <n>")
    .replace(/0x[0-9a-f]{6,}/gi, "0x<addr>")
    .replace(/\/tmp\/tmp[\w.-]+/g, "/tmp/<tmp>");
}

export interface TurnComparison {
  index: number;
  same: boolean;
  /** First differing line (recorded / replayed), when different. */
  recorded?: string;
  replayed?: string;
}

/** Compare the observations turn by turn (missing turns count as different). */
export function compareReplay(recorded: Trajectory, replayed: Trajectory): { turns: TurnComparison[]; same: boolean } {
  const n = Math.max(recorded.turns.length, replayed.turns.length);
  const turns: TurnComparison[] = [];
  for (let i = 0; i < n; i++) {
    const a = recorded.turns[i]?.observation;
    const b = replayed.turns[i]?.observation;
    const na = a === undefined ? undefined : normalizeObservation(a);
    const nb = b === undefined ? undefined : normalizeObservation(b);
    if (na === nb && i < recorded.turns.length && i < replayed.turns.length) {
      turns.push({ index: i, same: true });
      continue;
    }
    const la = (na ?? "<no turn>").split("\n");
    const lb = (nb ?? "<no turn>").split("\n");
    let k = 0;
    while (k < la.length && la[k] === lb[k]) k++;
    turns.push({ index: i, same: false, recorded: la[k] ?? "<end>", replayed: lb[k] ?? "<end>" });
  }
  const same = turns.every((t) => t.same) && recorded.endReason === replayed.endReason;
  return { turns, same };
}
