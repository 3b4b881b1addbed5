/**
 * The benchmarks' scripted model servers, run as their own process so their CPU is not counted as
 * forager's. Prints the URL(s) on the first line of stdout; stops on SIGTERM.
 *
 * - Default (bench/lib.ts startScriptedModel): one test/helpers/scripted-server answering every
 *   request with {@link SCRIPTED_TURN_TEXT} (a turn without a tool call; `FORAGER_BENCH_MODEL_TEXT`
 *   overrides it) after `FORAGER_BENCH_MODEL_LATENCY_MS`, on 127.0.0.1 (`FORAGER_BENCH_MODEL_HOST`
 *   overrides it: bench/cluster.ts listens in its hub namespace).
 * - With `FORAGER_BENCH_STANDIN` set to a JSON {@link StandInConfig} (bench/model-routing.ts): that
 *   many stand-in servers with a prefix cache and a cost model (simulated time), each answering
 *   `completionTokens` fresh random token ids, with the `/_scripted/*` control routes; the URLs are
 *   printed space-separated.
 */
import { startScriptedServer } from "../test/helpers/scripted-server";
import { SCRIPTED_MODEL_ENV, SCRIPTED_TURN_TEXT, STANDIN_ENV, type StandInConfig } from "./lib";

async function main(): Promise<void> {
  const raw = process.env[STANDIN_ENV];
  if (raw) {
    const cfg = JSON.parse(raw) as StandInConfig;
    let next = 1_000_000;
    const servers = await Promise.all(
      Array.from({ length: cfg.servers }, () =>
        startScriptedServer({
          recordRequests: false,
          control: true,
          prefixCache: cfg.prefixCache,
          costModel: cfg.costModel,
          handler: () => ({ text: "", tokenIds: Array.from({ length: cfg.completionTokens }, () => next++ % 120_000) }),
        }),
      ),
    );
    process.stdout.write(`${servers.map((s) => s.url).join(" ")}\n`);
    process.on("SIGTERM", () => void Promise.all(servers.map((s) => s.close())).then(() => process.exit(0)));
    return;
  }
  const text = process.env.FORAGER_BENCH_MODEL_TEXT ?? SCRIPTED_TURN_TEXT;
  const host = process.env.FORAGER_BENCH_MODEL_HOST;
  const server = await startScriptedServer({ delayMs: Number(process.env[SCRIPTED_MODEL_ENV] ?? 200), recordRequests: false, handler: () => ({ text }), ...(host ? { host } : {}) });
  process.stdout.write(`${server.url}\n`);
  process.on("SIGTERM", () => void server.close().then(() => process.exit(0)));
}

await main();
