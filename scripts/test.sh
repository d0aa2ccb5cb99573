#!/usr/bin/env bash
# Every test Stellwerk has: lint, the core and CLI natively (unit, property, conformance),
# the core for both WebAssembly targets.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "core and CLI: unit, property and conformance tests"
cargo test --workspace

step "core builds for WebAssembly"
for target in wasm32-unknown-unknown wasm32-wasip2; do
  cargo build -p stellwerk-core --release --target "$target"
done
