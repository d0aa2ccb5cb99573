#!/usr/bin/env bash
# The Spin path: builds the component (what `spin build` builds), the test host and the CLI,
# shows the component's size and imports, then runs the end-to-end tests against a real
# redis-server and the demo origin (tests/spin/).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*"; }

command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install -y redis-server" >&2; exit 1; }

step "component (wasm32-wasip2, release)"
cargo build -p stellwerk-spin --target wasm32-wasip2 --release
wasm=target/wasm32-wasip2/release/stellwerk_spin.wasm

step "test host (Wasmtime 44) and CLI"
scripts/spin-wit.sh --check
cargo build --release --manifest-path tests/spin-host/Cargo.toml
cargo build -p stellwerk-cli
host=tests/spin-host/target/release/stellwerk-spin-host

step "component size and imports"
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
printf 'stellwerk_spin.wasm: %s bytes raw, %s bytes gzip -9\n' "$raw" "$gz"
"$host" "$wasm" --list-imports
# Beyond the WASI families `wasmtime serve` knows, only these may be imported.
unexpected=$("$host" "$wasm" --list-imports | awk '$1=="import"{print $2}' \
  | grep -Ev '^wasi:(http|io|cli|random|clocks|filesystem|sockets)/|^wasi:keyvalue/store@|^wasi:config/store@|^fermyon:spin/redis@' || true)
if [[ -n "$unexpected" ]]; then
  echo "unexpected imports:" >&2; echo "$unexpected" >&2; exit 1
fi

step "end-to-end (redis-server + demo origin + component in the test host)"
node --test tests/spin/
