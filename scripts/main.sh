#!/usr/bin/env bash
# forager's main job on a fresh machine, end to end, on the bundled example repository
# (examples/textkit): set-up; the repository as a git repository; mutate-fix tasks generated and
# validated by its own tests (gold resolves, empty does not); K episodes per task with the oracle
# policy — or a model, with `--model-url URL [--model NAME]` — rewards, and a summary.
#
#   bash scripts/main.sh                                  # oracle policy
#   bash scripts/main.sh --model-url http://127.0.0.1:8000 --model cwm
#
# Environment: FORAGER_EXAMPLE_TASKS (default 8), FORAGER_SAMPLES (default 2), FORAGER_OUT (runs/example).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --redis

out=${FORAGER_OUT:-runs/example}
tasks_wanted=${FORAGER_EXAMPLE_TASKS:-8}
samples=${FORAGER_SAMPLES:-2}
repo="$out/textkit.git-work"
mkdir -p "$out"

# 1. The example as a git repository with a fixed identity and date: the same commit every time,
#    so images and tasks are reused on later runs.
if [ ! -d "$repo/.git" ] || [ -n "$(diff -rq examples/textkit "$repo" -x .git 2>/dev/null | head -1)" ]; then
  rm -rf "$repo" && mkdir -p "$repo" && cp -r examples/textkit/. "$repo/"
  (cd "$repo" && git init -q && git add -A &&
    GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z \
    git -c user.name=forager -c user.email=forager@localhost commit -qm "textkit example")
fi
commit=$(git -C "$repo" rev-parse HEAD)

# 2. Mutate-fix tasks, validated (kept when the repository's own tests catch the bug).
tasks="$out/tasks-$commit-$tasks_wanted.jsonl"
if [ ! -s "$tasks" ]; then
  echo "== mutate-fix tasks from examples/textkit @ ${commit:0:12}"
  bin/forager tasks mutate --repo "$repo" --commit "$commit" --name forager/textkit \
    --max "$tasks_wanted" --seed 1 --out "$tasks.partial"
  mv "$tasks.partial" "$tasks"
fi

# 3. Foraging: K samples per task, rewards from the hidden tests in fresh containers.
echo "== foraging: $(wc -l < "$tasks") tasks × $samples samples"
exec bin/forager forage --tasks "$tasks" --samples "$samples" --out "$out/run-$(date +%Y%m%dT%H%M%S)" "$@"
