#!/usr/bin/env bash
# Builds the Cloudflare Worker (functions/cloudflare) with worker-build, using registry-installed
# wasm-bindgen, wasm-opt and esbuild instead of worker-build's downloads (which need the open web).
#
#   scripts/build-worker.sh           build when a source is newer than the last build
#   scripts/build-worker.sh --force   always build
#   scripts/build-worker.sh --no-wasm-opt   skip wasm-opt (minutes faster, larger wasm): for
#                                       bisecting locally, never for figures or deploys
#
# Output: functions/cloudflare/build/index.js (+ index_bg.wasm), the `main` of wrangler.toml.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/functions/cloudflare"
OUT="$CRATE/build"
WASM="$OUT/index_bg.wasm"
# Touched when a build starts and kept only when it succeeds: a source edited during a build is
# newer than the stamp, so the next run builds again.
STAMP="$CRATE/target-stamp"
# worker-build 0.8.7 accepts wasm-bindgen <= 0.2.129; the CLI must equal the library in Cargo.lock.
WORKER_BUILD_VERSION="0.8.7"
WASM_BINDGEN_VERSION="0.2.129"

force=0
tools_only=0
wasm_opt=1
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --tools-only) tools_only=1 ;;
    --no-wasm-opt) wasm_opt=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-worker: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { echo "build-worker: $*" >&2; }

install_tools() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v wasm-bindgen >/dev/null || [[ "$(wasm-bindgen --version)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]]; then
    log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes)"
    cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION"
  fi
  if ! command -v worker-build >/dev/null || [[ "$(worker-build --version)" != "$WORKER_BUILD_VERSION" ]]; then
    log "installing worker-build $WORKER_BUILD_VERSION (a few minutes)"
    cargo install worker-build --version "=$WORKER_BUILD_VERSION" --locked
  fi
}

if [[ $tools_only == 1 ]]; then
  install_tools
  exit 0
fi

# Skip when the last build is newer than every input (wrangler dev runs this on every start).
if [[ $force == 0 && -f "$WASM" && -f "$OUT/index.js" && -f "$STAMP" ]]; then
  newer="$(find "$CRATE/src" "$CRATE/Cargo.toml" "$CRATE/build.rs" "$ROOT/shared/src" "$ROOT/shared/rewrite/src" "$ROOT/shared/rewrite/Cargo.toml" "$ROOT/shared/console" "$ROOT/shared/Cargo.toml" \
    "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$STAMP" -print -quit 2>/dev/null || true)"
  if [[ -z "$newer" ]]; then
    log "up to date ($WASM)"
    exit 0
  fi
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
install_tools

# esbuild and wasm-opt (binaryen) come from npm, pinned in package-lock.json.
if [[ ! -x "$ROOT/node_modules/.bin/esbuild" || ! -x "$ROOT/node_modules/binaryen/bin/wasm-opt" ]]; then
  log "installing npm packages"
  (cd "$ROOT" && npm ci --no-audit --no-fund)
fi

export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$ROOT/node_modules/binaryen/bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/esbuild/bin/esbuild"

# The workspace release profile strips symbols, which also drops the wasm `target_features`
# section; without it wasm-bindgen does not see reference-types and fails ("externref table
# required for catch wrappers"). Keep the sections here; wasm-opt strips what is left.
export CARGO_PROFILE_RELEASE_STRIP=debuginfo

# SIMD128 (which V8, and so workerd, runs): memchr's and lol_html's byte scans over every page,
# and tract-linalg's kernels, take their wasm SIMD paths.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128"

start=$(date +%s.%N)
touch "$STAMP.next"
(cd "$CRATE" && worker-build --release)
if [[ $wasm_opt == 1 ]]; then
  # worker-build's wasm-opt step is off (Cargo.toml): it always adds --debuginfo, keeping the
  # name section. Same features as worker-build enables (what workerd accepts) plus SIMD, no names.
  log "wasm-opt -Oz (several minutes)"
  "$WASM_OPT_BIN" "$WASM" -o "$WASM.opt" -Oz --strip-debug --strip-producers \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling \
    --enable-simd
  mv "$WASM.opt" "$WASM"
  mv "$STAMP.next" "$STAMP"
else
  log "wasm-opt skipped (--no-wasm-opt): not a release build"
  rm -f "$STAMP.next" "$STAMP"
fi
end=$(date +%s.%N)

raw=$(stat -c %s "$WASM")
gz=$(gzip -9 -c "$WASM" | wc -c)
awk -v s="$start" -v e="$end" -v f="${WASM#"$ROOT"/}" -v r="$raw" -v g="$gz" \
  'BEGIN { printf "build-worker: built in %.1f s; %s: %d bytes raw, %d bytes gzip -9\n", e - s, f, r, g }' >&2
