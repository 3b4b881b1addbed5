#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (npm packages, Docker, Redis, docker-registry, base image),
# then `npm test` (vitest, real Docker). Fails when the suite leaked a container.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --redis --registry
npm test -- "$@"
leaks=$(cat .forager/test-leaks.json 2>/dev/null || echo '[]')
if [ "$leaks" != "[]" ]; then echo "test suite leaked containers: $leaks" >&2; exit 1; fi
