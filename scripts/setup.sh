#!/usr/bin/env bash
# Idempotent set-up of everything forager needs on a Debian machine (as root):
# npm packages, a Docker engine (Debian's docker.io, started in the background when none
# answers), Redis (with --redis), and forager's base image. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

want_redis=0
for a in "$@"; do [ "$a" = "--redis" ] && want_redis=1; done

say() { printf '[setup] %s\n' "$*" >&2; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# 1. npm packages (only when the lock file changed since the last install).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm install --no-audit --no-fund --loglevel=error >&2
fi

# 2. Docker engine.
if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing Debian's docker.io"
    apt_install docker.io
  fi
  if ! docker info >/dev/null 2>&1; then
    say "starting dockerd in the background (log: /var/log/forager-dockerd.log)"
    # No bridge and no iptables: sandboxes run with --network none; image builds use the host network.
    nohup dockerd --iptables=false --ip-masq=false --bridge=none >/var/log/forager-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { say "dockerd did not come up; see /var/log/forager-dockerd.log"; exit 1; }
  fi
fi
command -v docker-init >/dev/null 2>&1 || apt_install tini

# 3. Redis, when asked for.
if [ "$want_redis" = 1 ]; then
  if ! command -v redis-server >/dev/null 2>&1; then say "installing redis-server"; apt_install redis-server; fi
  if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    say "starting redis-server on 127.0.0.1:6379"
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no >/dev/null
    for _ in $(seq 1 20); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
  fi
fi

# 4. dh-python: Debian's PyPI-name → package table (images/infer reads /usr/share/dh-python/dist/cpython3_fallback).
[ -f /usr/share/dh-python/dist/cpython3_fallback ] || apt_install dh-python

# 5. forager's base image (mmdebstrap when no registry answers).
command -v mmdebstrap >/dev/null 2>&1 || apt_install mmdebstrap
bin/forager images base >&2
