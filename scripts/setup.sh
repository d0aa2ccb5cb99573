#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need; skips what is already there.
# Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

installed_targets=$(rustup target list --installed)
for target in wasm32-unknown-unknown wasm32-wasip2; do
  if ! grep -qx "$target" <<<"$installed_targets"; then
    log "rustup target add $target"
    rustup target add "$target"
  fi
done

# npm packages (wrangler, workerd, esbuild, binaryen), exactly as package-lock.json pins them.
if [[ ! -x node_modules/.bin/wrangler || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund
fi

# Redis: the central queue and key-value store of Spin deployments, used by the Spin tests.
if ! command -v redis-server >/dev/null; then
  log "apt-get install redis-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

# Python 3 (standard library only): the off-policy evaluation check against obp's figures.
if ! command -v python3 >/dev/null; then
  log "apt-get install python3"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
fi

# Chromium for the console's browser tests (driven by npm's playwright-core, which downloads no browser).
if ! command -v chromium >/dev/null; then
  log "apt-get install chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# worker-build and wasm-bindgen-cli at the versions the Worker needs (installed only when missing).
scripts/build-worker.sh --tools-only

# Python for the reward-model trainer (tests/e2e/contextual.test.mjs trains a model from the
# Worker's training logs): models/.venv with the pinned requirements, created once.
if [[ ! -x models/.venv/bin/python ]]; then
  python="$(command -v python3.11 || command -v python3)"
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    log "apt-get install python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  log "python venv models/.venv ($python)"
  "$python" -m venv models/.venv
  models/.venv/bin/pip install --quiet --disable-pip-version-check -r models/requirements.txt
fi
