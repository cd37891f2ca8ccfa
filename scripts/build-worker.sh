#!/usr/bin/env bash
# Builds the edge worker into edge-worker/build/ with worker-build, using the local
# wasm-bindgen, binaryen wasm-opt and esbuild (env.sh), so nothing is downloaded. Two builds of
# the same code, as for pkg/: index_bg.wasm (simd128) and index_relaxed_bg.wasm (simd128 +
# relaxed SIMD, own target directory); their JS bundles must be identical, and the bundle is
# patched to import both plus the relaxed-SIMD probe and to instantiate the one the probe allows
# (scripts/worker-select-wasm.js). Prints the size of each wasm, raw and gzipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT/edge-worker"
worker-build --release >/tmp/edgerec-worker-build.log 2>&1 || { cat /tmp/edgerec-worker-build.log; exit 1; }
CARGO_TARGET_DIR=../target/relaxed RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
  worker-build --release --out-dir build-relaxed >/tmp/edgerec-worker-build-relaxed.log 2>&1 \
  || { cat /tmp/edgerec-worker-build-relaxed.log; exit 1; }
cmp -s build/index.js build-relaxed/index.js \
  || { echo "[worker] the relaxed build's bundle differs from the simd128 build's"; exit 1; }
cp build-relaxed/index_bg.wasm build/index_relaxed_bg.wasm
"$EDGEREC_ROOT/node_modules/.bin/wasm-as" --enable-simd --enable-relaxed-simd \
  "$EDGEREC_ROOT/scripts/relaxed-probe.wat" -o build/relaxed_probe.wasm
python3 - "$EDGEREC_ROOT/scripts" <<'PY'
import re, sys
scripts = sys.argv[1]
bundle = open('build/index.js').read()
# esbuild names the module binding; keep that name for the chosen module.
found = re.findall(r'import ([\w$]+) from"\./index_bg\.wasm";', bundle)
if len(found) != 1:
    sys.exit(f"[worker] expected one import of ./index_bg.wasm in build/index.js, found {len(found)}")
name = found[0]
bundle = bundle.replace(
    f'import {name} from"./index_bg.wasm";',
    'import edgerecWasmSimd128 from"./index_bg.wasm";'
    'import edgerecWasmRelaxed from"./index_relaxed_bg.wasm";'
    'import edgerecRelaxedProbe from"./relaxed_probe.wasm";'
    f'var {name}=edgerecPickWasm();',
)
bundle += open(f'{scripts}/worker-select-wasm.js').read() + open(f'{scripts}/relaxed-probe-check.js').read()
open('build/index.js', 'w').write(bundle)
PY
for wasm in build/index_bg.wasm build/index_relaxed_bg.wasm; do
  echo "[worker] built edge-worker/$wasm: $(stat -c %s "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) bytes gzip"
done
