#!/usr/bin/env bash
# forager's main job on a fresh machine: set-up, then the job (today: the sandbox demonstration;
# it grows into `forager forage` on the bundled example repository).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bin/forager demo "$@"
