#!/usr/bin/env bash
# Copies the WIT of the Spin interfaces the component imports, from the spin-sdk crate the
# component builds with, into the test host (whose bindgen! reads them). `--check` fails when
# the committed copy differs from the crate's, so the host never binds a stale interface.
set -euo pipefail
cd "$(dirname "$0")/.."
sdk=$(cargo metadata --format-version 1 --manifest-path functions/spin/Cargo.toml \
  | python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="spin-sdk").rsplit("/",1)[0])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/keyvalue" "$out/config" "$out/spin"
cp "$sdk"/wit/deps/keyvalue-2024-10-17/*.wit "$out/keyvalue/"
cp "$sdk"/wit/deps/wasi-runtime-config-2024-09-27/*.wit "$out/config/"
cp "$sdk"/wit/deps/spin@2.0.0/redis.wit "$out/spin/"
# Only the package line of Spin's world.wit: its worlds pull in every other Spin interface.
grep -m1 '^package ' "$sdk"/wit/deps/spin@2.0.0/world.wit > "$out/spin/package.wit"
dest=tests/spin-host/wit/deps
if [[ "${1:-}" == "--check" ]]; then
  diff -r "$out" "$dest" && echo "spin-host WIT matches $(basename "$sdk")"
else
  rm -rf "$dest" && mkdir -p "$dest" && cp -r "$out"/. "$dest"/
  echo "copied WIT from $(basename "$sdk") to $dest"
fi
