# Sourced by the Makefile, .ci/run and every script: one place for the build environment.
# Paths are derived from this file's location so it works from any clone.
EDGEREC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EDGEREC_ROOT
# node_modules/.bin first: its wasm-opt (binaryen 132) must shadow any Debian binaryen, which
# corrupts wasm-bindgen 0.2.130 output.
export PATH="$EDGEREC_ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$EDGEREC_ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$EDGEREC_ROOT/node_modules/.bin/esbuild"
export CI="${CI:-true}"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export DEBIAN_FRONTEND=noninteractive
