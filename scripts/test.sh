#!/usr/bin/env bash
# Every test Stellwerk has: lints; the core and CLI natively (unit, property, conformance); the
# Cloudflare Worker built with worker-build and tested end to end in wrangler dev (workerd with
# local KV, R2 and Queues), conformance vectors included; the Spin component (wasm32-wasip2)
# tested end to end in a Wasmtime host against a real redis-server. Run scripts/setup.sh first on a new
# machine (CI does: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
SECONDS=0

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "core, CLI and Worker helpers natively: unit, property and conformance tests"
# The Spin component is a cdylib for wasm32-wasip2 only; scripts/spin-test.sh builds and tests it.
cargo test --workspace --exclude stellwerk-spin
cargo build -q -p stellwerk-cli

step "off-policy evaluation pinned against obp on the Open Bandit Dataset fixture"
python3 models/ope/check_fixture.py target/debug/stellwerk

step "Cloudflare Worker: build (wasm size below) and end-to-end tests in wrangler dev"
scripts/build-worker.sh
node --test --test-concurrency=1 tests/e2e/*.test.mjs

step "Spin: the component (wasm32-wasip2) in a Wasmtime test host with a real redis-server"
scripts/spin-test.sh

printf '\nall tests passed in %d s\n' "$SECONDS"
