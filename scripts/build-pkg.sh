#!/usr/bin/env bash
# Builds pkg/: the npm package `edgerec` (web target, TypeScript types) from the core crate.
# wasm-pack runs in no-install mode with the pinned wasm-bindgen on PATH; wasm-opt is binaryen
# 132 from node_modules. Prints the .wasm size, raw and gzipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
wasm-pack build --mode no-install --target web --release --out-dir pkg --out-name edgerec . >/tmp/edgerec-wasm-pack.log 2>&1 \
  || { cat /tmp/edgerec-wasm-pack.log; exit 1; }
wasm="pkg/edgerec_bg.wasm"
"$WASM_OPT_BIN" -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue "$wasm" -o "$wasm.opt"
mv "$wasm.opt" "$wasm"
cp www/pkg-README.md pkg/README.md
node - <<'JS'
const fs = require('fs');
const p = JSON.parse(fs.readFileSync('pkg/package.json', 'utf8'));
p.name = 'edgerec';
p.description = 'Edge/WebAssembly personalization: rank items for a visitor session from quantized model shards, in the browser or in Node.';
p.files = Array.from(new Set([...(p.files || []), 'README.md']));
fs.writeFileSync('pkg/package.json', JSON.stringify(p, null, 2) + '\n');
JS
raw=$(stat -c %s "$wasm"); gz=$(gzip -9 -c "$wasm" | wc -c)
echo "[pkg] built pkg/ ($wasm: $raw bytes, $gz bytes gzip)"
# The demo page imports the package from www/pkg/ (git-ignored copy).
mkdir -p www/pkg
cp pkg/edgerec.js pkg/edgerec_bg.wasm www/pkg/
