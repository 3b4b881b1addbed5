#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (npm packages, Docker, Redis, base image),
# then `npm test` (vitest, real Docker).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --redis
npm test -- "$@"
