#!/usr/bin/env bash
# Every test Stellwerk has: lints; the core and CLI natively (unit, property, conformance); the
# Cloudflare Worker built with worker-build and tested end to end in wrangler dev (workerd with
# local KV, R2 and Queues), conformance vectors included. Run scripts/setup.sh first on a new
# machine (CI does: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
SECONDS=0

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "core, CLI and Worker helpers natively: unit, property and conformance tests"
cargo test --workspace
cargo build -q -p stellwerk-cli

step "core builds for wasm32-wasip2 (the Worker build below covers wasm32-unknown-unknown)"
cargo build -q -p stellwerk-core --release --target wasm32-wasip2

step "Cloudflare Worker: build (wasm size below) and end-to-end tests in wrangler dev"
scripts/build-worker.sh
node --test --test-concurrency=1 tests/e2e/*.test.mjs

printf '\nall tests passed in %d s\n' "$SECONDS"
