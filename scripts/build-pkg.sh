#!/usr/bin/env bash
# Builds pkg/: the npm package `edgerec` (web target, TypeScript types) from the core crate.
# wasm-pack runs in no-install mode with the pinned wasm-bindgen on PATH; wasm-opt is binaryen
# 132 from node_modules. Two builds of the same code: edgerec_bg.wasm (simd128, runs
# everywhere) and edgerec_relaxed_bg.wasm (simd128 + relaxed SIMD, which turns on the coarse
# pass; see src/coarse.rs); the loader in edgerec.js picks one by feature detection. Their JS
# glue must be identical, which this script checks. Prints each .wasm's size, raw and gzipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
wasm-pack build --mode no-install --target web --release --out-dir pkg --out-name edgerec . >/tmp/edgerec-wasm-pack.log 2>&1 \
  || { cat /tmp/edgerec-wasm-pack.log; exit 1; }
wasm="pkg/edgerec_bg.wasm"
opt() {
  "$WASM_OPT_BIN" -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue "$@"
}
opt "$wasm" -o "$wasm.opt"
mv "$wasm.opt" "$wasm"
# The relaxed build has its own target directory: its RUSTFLAGS would otherwise invalidate the
# simd128 build's artifacts on every alternation.
relaxed_out="target/pkg-relaxed"
CARGO_TARGET_DIR=target/relaxed RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
  wasm-pack build --mode no-install --target web --release --out-dir "$relaxed_out" --out-name edgerec . >/tmp/edgerec-wasm-pack-relaxed.log 2>&1 \
  || { cat /tmp/edgerec-wasm-pack-relaxed.log; exit 1; }
cmp -s "$relaxed_out/edgerec.js" pkg/edgerec.js \
  || { echo "[pkg] the relaxed build's JS glue differs from the simd128 build's"; diff "$relaxed_out/edgerec.js" pkg/edgerec.js | head; exit 1; }
opt --enable-relaxed-simd "$relaxed_out/edgerec_bg.wasm" -o pkg/edgerec_relaxed_bg.wasm
# The loader: `init()` fetches the build wasmFileName() picks (scripts/pkg-select-wasm.js, with
# the probe check shared with the worker, scripts/relaxed-probe-check.js).
probe_b64=$(node_modules/.bin/wasm-as --enable-simd --enable-relaxed-simd scripts/relaxed-probe.wat -o - | base64 -w0)
default_url="module_or_path = new URL('edgerec_bg.wasm', import.meta.url);"
grep -qF "$default_url" pkg/edgerec.js || { echo "[pkg] wasm-bindgen's default wasm URL line not found in pkg/edgerec.js"; exit 1; }
python3 - "$probe_b64" <<'PY'
import sys
glue = open('pkg/edgerec.js').read()
glue = glue.replace("module_or_path = new URL('edgerec_bg.wasm', import.meta.url);",
                    "module_or_path = new URL(wasmFileName(), import.meta.url);")
glue += open('scripts/pkg-select-wasm.js').read().replace('@RELAXED_PROBE_BASE64@', sys.argv[1])
glue += open('scripts/relaxed-probe-check.js').read()
open('pkg/edgerec.js', 'w').write(glue)
types = open('pkg/edgerec.d.ts').read()
types += "\n/** The wasm build for this engine: 'edgerec_relaxed_bg.wasm' where relaxed SIMD works, else 'edgerec_bg.wasm'. */\nexport function wasmFileName(): string;\n"
open('pkg/edgerec.d.ts', 'w').write(types)
PY
cp www/pkg-README.md pkg/README.md
node - <<'JS'
const fs = require('fs');
const p = JSON.parse(fs.readFileSync('pkg/package.json', 'utf8'));
p.name = 'edgerec';
p.description = 'Edge/WebAssembly personalization: rank items for a visitor session from quantized model shards, in the browser or in Node.';
p.files = Array.from(new Set([...(p.files || []), 'edgerec_relaxed_bg.wasm', 'README.md']));
fs.writeFileSync('pkg/package.json', JSON.stringify(p, null, 2) + '\n');
JS
for w in "$wasm" pkg/edgerec_relaxed_bg.wasm; do
  raw=$(stat -c %s "$w"); gz=$(gzip -9 -c "$w" | wc -c)
  echo "[pkg] built $w: $raw bytes, $gz bytes gzip"
done
# The demo page imports the package from www/pkg/ (git-ignored copy).
mkdir -p www/pkg
cp pkg/edgerec.js pkg/edgerec_bg.wasm pkg/edgerec_relaxed_bg.wasm www/pkg/
