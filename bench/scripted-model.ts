/**
 * The benchmarks' scripted model server, run as its own process so its CPU is not counted as
 * forager's: test/helpers/scripted-server answering every request with {@link SCRIPTED_TURN_TEXT}
 * (a turn without a tool call) after `FORAGER_BENCH_MODEL_LATENCY_MS`. Prints its URL on the first
 * line of stdout; stops on SIGTERM. Started by bench/lib.ts startScriptedModel.
 */
import { startScriptedServer } from "../test/helpers/scripted-server";
import { SCRIPTED_MODEL_ENV, SCRIPTED_TURN_TEXT } from "./lib";

const server = await startScriptedServer({ delayMs: Number(process.env[SCRIPTED_MODEL_ENV] ?? 200), recordRequests: false, handler: () => ({ text: SCRIPTED_TURN_TEXT }) });
process.stdout.write(`${server.url}\n`);
process.on("SIGTERM", () => void server.close().then(() => process.exit(0)));
