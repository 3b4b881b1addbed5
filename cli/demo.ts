/**
 * `forager demo`: what a policy does in a sandbox, in a few tool calls — the README's first
 * command until the main job (`forage`) takes its place.
 */
import { ensureBaseImage } from "../images/base";
import { Sandbox } from "../sandbox/sandbox";
import { parseAction } from "../tools/parse";
import { TOOLS, toolProfile } from "../tools/registry";

const ACTIONS = [
  "Set up a tiny repository.\n</think>\n<tool: bash>\nmkdir -p /demo && cd /demo && git init -q && git config user.email demo@forager && git config user.name demo\necho __pycache__ > .gitignore\nprintf 'def add(a, b):\\n    return a - b\\n' > calc.py && git add . && git commit -qm base && python3 -c 'import calc; print(calc.add(2, 2))'\n</tool>",
  "The bug: add subtracts.\n</think>\n<tool: edit>\ncalc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n</tool>",
  "Add a test.\n</think>\n<tool: create>\ntest_calc.py\nfrom calc import add\n\nassert add(2, 2) == 4\nprint('test passed')\n</tool>",
  "Run it and write the patch.\n</think>\n<tool: bash>\npython3 test_calc.py && git add -N . && git diff > /tmp/fix.patch && wc -l /tmp/fix.patch\n</tool>",
  "Submit.\n</think>\n<tool: submit>\n/tmp/fix.patch\n</tool>",
];

const fold = (s: string, max = 12): string => {
  const lines = s.split("\n");
  return lines.length <= max ? s : [...lines.slice(0, max), `… (${lines.length - max} more lines)`].join("\n");
};

/** Run the demonstration; prints each turn. */
export async function runDemo(opts: { image?: string } = {}): Promise<void> {
  const image = opts.image ?? (await ensureBaseImage({ onProgress: (p) => process.stderr.write(`[base image] ${p.message}\n`) })).tag;
  const started = performance.now();
  const sandbox = await Sandbox.create({ image, lifetimeSeconds: 600 });
  const names = toolProfile("cwm").map((t) => t.name);
  console.log(`sandbox ${sandbox.name} from ${image} (no network, ${sandbox.config.memoryBytes / 1024 ** 3} GiB, ${sandbox.config.cpus} CPU)\n`);
  try {
    for (const [i, action] of ACTIONS.entries()) {
      const call = parseAction(action, { think: true, tools: names });
      const t0 = performance.now();
      const result = await TOOLS[call.name]!.run(sandbox, call.argument);
      const ms = performance.now() - t0;
      console.log(`── turn ${i + 1}: ${call.name} (${ms.toFixed(1)} ms) ${result.success ? "" : "[error]"}`);
      console.log(`   ${call.reasoning.trim()}`);
      console.log(fold(result.output).replace(/^/gm, "   │ "));
      console.log();
    }
  } finally {
    await sandbox.destroy();
  }
  console.log(`demo done in ${((performance.now() - started) / 1000).toFixed(1)} s; sandbox removed.`);
}
