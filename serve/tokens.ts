/**
 * Token records for trainers: per trajectory the concatenated token ids of the episode as the model
 * saw and produced them, the logprob of each, and a loss mask (1 on model tokens, 0 on prompt and
 * observation tokens). Built only from what was recorded (agent/token-ledger.ts): the first prompt
 * ids, then per turn the completion ids exactly as the server returned them and the ids the
 * environment appended. Nothing is re-tokenized here; a trajectory without exact ids gets
 * `exact: false`, empty arrays and the reason, never guessed ids.
 *
 * The observation after the last action is not part of the record (no model token follows it).
 * Formats: JSONL (one record a line), and parquet (hyparquet-writer; the array columns are parquet
 * JSON-annotated strings, one `json.loads` away from lists).
 */
import { z } from "zod";
import type { Trajectory } from "../agent/trajectory";

export const TokenRecordSchema = z
  .object({
    id: z.string(),
    taskId: z.string(),
    reward: z.number(),
    resolved: z.boolean(),
    weightsVersions: z.array(z.string()),
    spansWeightsVersions: z.boolean(),
    /** The ids are exact (every turn recorded its prompt delta and completion ids). */
    exact: z.boolean(),
    /** Why not exact. */
    reason: z.string().optional(),
    inputIds: z.array(z.number().int()),
    /** Logprob per token (0 on prompt / observation tokens and where the server gave none). */
    logprobs: z.array(z.number()),
    lossMask: z.array(z.number().int().min(0).max(1)),
    /** Index in `inputIds` where each turn's completion starts. */
    turnStarts: z.array(z.number().int()),
  })
  .meta({ id: "TokenRecord" });
export type TokenRecord = z.infer<typeof TokenRecordSchema>;

/** The token record of one trajectory (see module comment). */
export function tokenRecord(t: Trajectory): TokenRecord {
  const base = {
    id: t.id,
    taskId: t.taskId,
    reward: t.reward,
    resolved: t.evaluation?.resolved ?? false,
    weightsVersions: t.weightsVersions ?? [],
    spansWeightsVersions: t.spansWeightsVersions ?? false,
  };
  const ids: number[] = [];
  const lps: number[] = [];
  const mask: number[] = [];
  const starts: number[] = [];
  let reason: string | undefined;
  for (const turn of t.turns) {
    if (turn.tokenIdsUnavailable) reason = `turn ${turn.index}: ${turn.tokenIdsUnavailable}`;
    else if (!turn.promptDeltaTokenIds) reason = `turn ${turn.index}: no prompt token ids recorded (policy ${t.policy.kind})`;
    else if (!turn.tokenIds) reason = `turn ${turn.index}: no completion token ids recorded`;
    if (reason) break;
    for (const id of turn.promptDeltaTokenIds!) {
      ids.push(id);
      lps.push(0);
      mask.push(0);
    }
    starts.push(ids.length);
    turn.tokenIds!.forEach((id, i) => {
      ids.push(id);
      const lp = turn.logprobs?.[i];
      lps.push(lp === undefined || Number.isNaN(lp) ? 0 : lp);
      mask.push(1);
    });
  }
  if (t.turns.length === 0) reason = "no turns";
  if (reason) return { ...base, exact: false, reason, inputIds: [], logprobs: [], lossMask: [], turnStarts: [] };
  return { ...base, exact: true, inputIds: ids, logprobs: lps, lossMask: mask, turnStarts: starts };
}

/** JSONL text of the token records (one a line). */
export function tokenRecordsJsonl(ts: Iterable<Trajectory>): string {
  let out = "";
  for (const t of ts) out += JSON.stringify(tokenRecord(t)) + "\n";
  return out;
}

/**
 * Parquet bytes of the token records (columns as in {@link TokenRecordSchema}; the array columns
 * are JSON-annotated UTF-8 strings), for `datasets` / pandas / pyarrow.
 * @throws when hyparquet-writer is not installed (it is a development dependency).
 */
export async function tokenRecordsParquet(ts: Iterable<Trajectory>): Promise<Uint8Array> {
  const { parquetWriteBuffer } = await import("hyparquet-writer");
  const recs = [...ts].map(tokenRecord);
  const col = <K extends keyof TokenRecord>(k: K) => recs.map((r) => r[k]);
  const buf = parquetWriteBuffer({
    columnData: [
      { name: "id", data: col("id"), type: "STRING" },
      { name: "taskId", data: col("taskId"), type: "STRING" },
      { name: "reward", data: col("reward"), type: "DOUBLE" },
      { name: "resolved", data: col("resolved"), type: "BOOLEAN" },
      { name: "exact", data: col("exact"), type: "BOOLEAN" },
      { name: "spansWeightsVersions", data: col("spansWeightsVersions"), type: "BOOLEAN" },
      { name: "weightsVersions", data: col("weightsVersions"), type: "JSON" },
      { name: "inputIds", data: col("inputIds"), type: "JSON" },
      { name: "logprobs", data: col("logprobs"), type: "JSON" },
      { name: "lossMask", data: col("lossMask"), type: "JSON" },
      { name: "turnStarts", data: col("turnStarts"), type: "JSON" },
    ],
  } as never);
  return new Uint8Array(buf);
}
