#!/usr/bin/env bash
# The wasm tests (tests/wasm.rs) under Node, in both builds the package ships: simd128, then
# simd128 + relaxed SIMD (its own target directory, so the two builds' flags never invalidate
# each other). Node 20 runs relaxed SIMD only behind --experimental-wasm-relaxed-simd, and only
# correctly with --no-liftoff: its baseline compiler gets the accumulating relaxed dot product
# wrong (which is why the package's loader probes before choosing that build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
echo "[test-wasm] simd128 build"
cargo test --target wasm32-unknown-unknown -p edgerec --test wasm
echo "[test-wasm] relaxed-SIMD build"
CARGO_TARGET_DIR=target/relaxed RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
  NODE_ARGS="--experimental-wasm-relaxed-simd,--no-liftoff" \
  cargo test --target wasm32-unknown-unknown -p edgerec --test wasm
