/**
 * A scripted policy server for foraging runs without a model: an OpenAI-compatible server on
 * 127.0.0.1 that answers every completion after a fixed delay with a well-formed CWM action, cycling
 * through a few harmless exploration commands (it never submits, so its episodes end at the turn
 * limit with reward −1). Used for the orchestrator's throughput figures on real tasks:
 *
 *   npx tsx test/helpers/serve-scripted-policy.ts --delay-ms 200 > url.txt &   # prints its URL
 *   bin/forager forage --tasks TASKS --samples 4 --model-url "$(head -1 url.txt)" --max-turns 10 --out DIR
 */
import { startScriptedServer } from "./scripted-server";

const ACTIONS = [
  "ls",
  "git status --short | head -20",
  "git log --oneline | head -3",
  "grep -rn 'def ' --include=*.py . | head -20",
  "python3 -c 'import sys; print(sys.version)'",
];

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

let n = 0;
const server = await startScriptedServer({
  delayMs: flag("delay-ms", 200),
  model: "scripted-policy",
  recordRequests: false,
  handler: () => ({ text: `Exploring.\n</think>\n<tool: bash>\n${ACTIONS[n++ % ACTIONS.length]}\n</tool>` }),
});
// The server picks a free loopback port: its URL is the first line printed.
console.log(server.url);
process.on("SIGTERM", () => void server.close().then(() => process.exit(0)));
process.on("SIGINT", () => void server.close().then(() => process.exit(0)));
