#!/usr/bin/env bash
# Builds the edge worker into edge-worker/build/ with worker-build, using the local
# wasm-bindgen, binaryen wasm-opt and esbuild (env.sh), so nothing is downloaded. Prints the
# size of the worker's wasm, raw and gzipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT/edge-worker"
worker-build --release >/tmp/edgerec-worker-build.log 2>&1 || { cat /tmp/edgerec-worker-build.log; exit 1; }
wasm=build/index_bg.wasm
echo "[worker] built edge-worker/build ($wasm: $(stat -c %s "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) bytes gzip)"
