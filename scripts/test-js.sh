#!/usr/bin/env bash
# Node tests of the repository's scripts (tests/scripts), then of pkg/: writes the native
# parity fixture, then runs node's test runner on tests/js, once per wasm build. The relaxed-SIMD build needs Node 20's --experimental-wasm-relaxed-simd,
# and --no-liftoff, whose absence would make the baseline compiler get relaxed dot products wrong.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
cargo run -q --release --example parity_fixture --features writer -- target/parity
echo "[test-js] scripts (the README's performance table)"
node --test tests/scripts/
echo "[test-js] simd128 build"
node --test tests/js/
echo "[test-js] relaxed-SIMD build"
EDGEREC_PKG_WASM=edgerec_relaxed_bg.wasm node --experimental-wasm-relaxed-simd --no-liftoff --test tests/js/
