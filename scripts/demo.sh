#!/usr/bin/env bash
# One command from a fresh checkout to the demo running locally: installs what is missing
# (npm packages, the wasm target, wasm-bindgen-cli and worker-build), builds the Worker, seeds
# local KV and R2, then serves the demo origin and the Worker in front of it.
#
#   scripts/demo.sh [--port 8787] [--origin-port 8080]
#
# Needs: Node >= 20 with npm, and Rust via rustup (https://rustup.rs). Nothing leaves 127.0.0.1
# once the tools are installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export WRANGLER_SEND_METRICS=false

command -v node >/dev/null || { echo "demo: Node.js >= 20 is required" >&2; exit 1; }
command -v cargo >/dev/null || [[ -x "$HOME/.cargo/bin/cargo" ]] || { echo "demo: Rust is required (https://rustup.rs)" >&2; exit 1; }

if [[ ! -x node_modules/.bin/wrangler ]]; then
  echo "demo: installing npm packages (wrangler 4.86.0, esbuild, binaryen)" >&2
  npm ci --no-audit --no-fund
fi
node scripts/dev-vars.mjs
scripts/build-worker.sh

PERSIST=".wrangler/state"
node scripts/seed.mjs --persist-to "$PERSIST"
exec node scripts/dev.mjs --persist-to "$PERSIST" "$@"
