#!/usr/bin/env bash
# Idempotent set-up of everything forager needs on a Debian machine (as root):
# npm packages (`npm ci` from the committed lock), a Docker engine (Debian's docker.io, started in
# the background when none answers), Redis (with --redis), a container registry on loopback (with
# --registry; the prebuilt-image tests), the multi-host test's tools (with --cluster), chromium (the browser tests of `forager view`), and forager's base image. Safe to run again and again.
#
# One line per step on stderr; the full apt/dpkg/npm output goes to the log file
# (FORAGER_SETUP_LOG, default .forager/setup.log), whose path is printed when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

want_redis=0
want_registry=0
want_cluster=0
for a in "$@"; do
  case "$a" in
    --redis) want_redis=1 ;;
    --registry) want_registry=1 ;;
    --cluster) want_cluster=1; want_redis=1; want_registry=1 ;;
  esac
done

mkdir -p .forager
log=${FORAGER_SETUP_LOG:-.forager/setup.log}
: >"$log"

say() { printf '[setup] %s\n' "$*" >&2; }
# step "what" command...: one line, the command's output to the log; on failure the log's tail and path.
step() {
  local what=$1
  shift
  say "$what"
  printf '\n==== %s: %s\n' "$(date -u +%FT%TZ)" "$what" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    say "FAILED: $what; the last lines of $log:"
    tail -n 15 "$log" | sed 's/^/    /' >&2
    say "full output: $(realpath "$log")"
    exit 1
  fi
}
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -q; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# 1. npm packages: `npm ci` (exactly the committed lock; the work tree stays clean) when
# node_modules is missing or older than the lock.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "installing npm packages (npm ci)" npm ci --no-audit --no-fund
fi

# 2. Docker engine.
start_dockerd() {
  # No bridge and no iptables: sandboxes run with --network none; image builds use the host network.
  nohup dockerd --iptables=false --ip-masq=false --bridge=none >/var/log/forager-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  echo "dockerd did not come up; its log: /var/log/forager-dockerd.log"
  tail -n 20 /var/log/forager-dockerd.log
  return 1
}
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || step "installing Debian's docker.io" apt_install docker.io
  docker info >/dev/null 2>&1 || step "starting dockerd in the background (log: /var/log/forager-dockerd.log)" start_dockerd
fi
command -v docker-init >/dev/null 2>&1 || step "installing tini (docker-init)" apt_install tini

# 3. Redis, when asked for.
start_redis() {
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no
  for _ in $(seq 1 20); do redis-cli -p 6379 ping >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}
if [ "$want_redis" = 1 ]; then
  command -v redis-server >/dev/null 2>&1 || step "installing redis-server" apt_install redis-server
  redis-cli -p 6379 ping >/dev/null 2>&1 || step "starting redis-server on 127.0.0.1:6379" start_redis
fi

# 4. Debian's docker-registry (the distribution registry), when asked for. Only the binary is
# needed: the tests start their own registry on a free loopback port (test/helpers/registry.ts).
if [ "$want_registry" = 1 ]; then
  command -v docker-registry >/dev/null 2>&1 || step "installing docker-registry" apt_install docker-registry
fi

# 4b. The multi-host test's tools, with --cluster (test/helpers/cluster.ts: network namespaces, nsenter/unshare).
if [ "$want_cluster" = 1 ]; then
  command -v ip >/dev/null 2>&1 || step "installing iproute2 (network namespaces)" apt_install iproute2
  command -v nsenter >/dev/null 2>&1 || step "installing util-linux (nsenter, unshare)" apt_install util-linux
fi

# dh-python: Debian's PyPI-name → package table (images/infer reads /usr/share/dh-python/dist/cpython3_fallback).
[ -f /usr/share/dh-python/dist/cpython3_fallback ] || step "installing dh-python (the PyPI-name → Debian package table)" apt_install dh-python

# 5. Debian's chromium, driven headless by the `forager view` browser tests (playwright-core never downloads one).
command -v chromium >/dev/null 2>&1 || step "installing chromium (browser tests of forager view)" apt_install chromium

# 6. forager's base image (mmdebstrap when no registry answers).
command -v mmdebstrap >/dev/null 2>&1 || step "installing mmdebstrap" apt_install mmdebstrap
if ! docker image inspect forager/base:bookworm-mmdebstrap-minbase >/dev/null 2>&1; then
  step "bootstrapping the base image" bin/forager images base
fi
say "done (log: $log)"
