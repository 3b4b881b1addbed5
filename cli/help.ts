/**
 * Examples at the end of every command's `--help` (one table, keyed by the command's path), and
 * the check that every command has some (test/cli-newcomer.test.ts runs `--help` of each).
 */
import type { Command } from "commander";

/** Examples per command path (`forage`, `tasks mutate`); each a command line, `# …` comments allowed. */
export const EXAMPLES: Record<string, string[]> = {
  "": ["forager doctor                       # is this machine ready?", "forager demo                         # a sandbox and the four tools, in seconds", "forager forage --help                # the main job", "source <(forager completion bash)    # shell completion"],
  doctor: ["forager doctor", "forager doctor --redis redis://127.0.0.1:6379"],
  demo: ["forager demo"],
  images: ["forager images base", "forager images ls", "forager images prune --dry-run"],
  "images base": ["forager images base", "forager images base --pull-from REGISTRY/forager/base:TAG"],
  "images build": ["forager images build --tasks tasks.jsonl", "forager images build --spec spec.json"],
  "images ls": ["forager images ls"],
  "images prune": ["forager images prune --dry-run"],
  "images infer": ["forager images infer --repo ~/src/attrs", "forager images infer --repos clones/ --summary infer.jsonl"],
  eval: [
    "forager eval --dataset SWE-bench_Verified/ --predictions gold --repos DIR --instances ID,ID",
    "forager eval --dataset verified.jsonl --predictions preds.jsonl --repos DIR --workers 4 --run-id r1",
    "forager eval --dataset_name verified.jsonl --predictions_path preds.jsonl --max_workers 4 --run_id r1   # the harness's spellings",
    "forager eval --dataset verified.jsonl --predictions preds.jsonl --run-id r1 --redo   # evaluate finished instances again",
  ],
  sandbox: ["forager sandbox reap --dry-run"],
  "sandbox reap": ["forager sandbox reap --dry-run", "forager sandbox reap"],
  run: [
    "forager run --tasks tasks.jsonl --task ID --model-url http://127.0.0.1:8000 --model NAME",
    "forager run --tasks tasks.jsonl --task ID --policy oracle",
    "forager run --tasks tasks.jsonl --task ID --model-url http://127.0.0.1:8000 --config quick",
  ],
  debug: ["forager debug --tasks tasks.jsonl --task ID", "forager debug --tasks tasks.jsonl --task ID --step oracle"],
  replay: ["forager replay runs/single/ID-….jsonl --tasks tasks.jsonl", "forager replay RUN --task ID --sample 0      # a forage run: the task comes from the run"],
  show: ["forager show runs/single/ID-….jsonl", "forager show RUN                      # every trajectory of a forage run", "forager show RUN --task ID --sample 1", "forager show RUN/shards/shard-….jsonl.gz --json"],
  forage: [
    "forager forage --tasks tasks.jsonl --samples 2 --policy oracle --out runs/try",
    "forager forage --tasks tasks.jsonl --samples 4 --model-url http://127.0.0.1:8000 --model NAME --out runs/m",
    "forager forage --tasks tasks.jsonl --samples 4 --model-url http://127.0.0.1:8000 --config quick --out runs/q",
    "forager forage --tasks SWE-bench_Verified/ --instances @ids.txt --repos DIR --samples 1 --model-url URL --out runs/v",
  ],
  worker: ["forager worker --redis redis://HOST:6379"],
  status: ["forager status runs/try", "forager status runs/try --json"],
  collect: ["forager collect runs/remote --follow"],
  resume: ["forager resume runs/try"],
  export: [
    "forager export runs/try --format openai --output train.jsonl       # OpenAI fine-tuning chat (tool_calls, tools)",
    "forager export runs/try --format chat --resolved-only                 # CWM's chat form (tool calls as CWM text)",
    "forager export runs/try --format parquet --output dataset/            # Hugging Face layout: dataset/data/train-*.parquet",
    "forager export runs/try --format verl --output rl/                    # RL prompt set (verl; also skyrl)",
    "forager export runs/try --format predictions --vote majority --output preds.jsonl",
  ],
  tasks: ["forager tasks mutate --repo ~/src/calc --max 10 --out calc.jsonl", "forager tasks commits --repo ~/src/calc --out calc-commits.jsonl"],
  "tasks mutate": ["forager tasks mutate --repo ~/src/calc --max 10 --out calc.jsonl   # --commit defaults to the clone's HEAD", "forager tasks mutate --repo DIR --commit SHA --spec spec.json --max 50 --out t.jsonl --resume"],
  "tasks commits": ["forager tasks commits --repo ~/src/calc --out calc-commits.jsonl"],
  traces: ["forager traces --repo ~/src/calc --out traces/calc    # --commit defaults to HEAD", "forager traces --tasks tasks.jsonl --out traces/tasks"],
  view: ["forager view runs/try", "forager view runs/single/ID-….jsonl --port 8081"],
  serve: ["forager serve --tasks tasks.jsonl --port 8090"],
  completion: ["source <(forager completion bash)    # in ~/.bashrc", "source <(forager completion zsh)     # in ~/.zshrc"],
};

/** The path of a command below the program: `tasks mutate`. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/** Add each command's examples (walks the whole tree). @returns the paths that have none. */
export function addExamples(program: Command): string[] {
  const missing: string[] = [];
  const walk = (cmd: Command) => {
    const p = commandPath(cmd);
    const ex = EXAMPLES[p];
    if (ex?.length) cmd.addHelpText("after", `\nExamples:\n${ex.map((l) => `  ${l}`).join("\n")}`);
    else missing.push(p);
    cmd.commands.forEach(walk);
  };
  walk(program);
  return missing;
}
