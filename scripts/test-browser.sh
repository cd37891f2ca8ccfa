#!/usr/bin/env bash
# Browser tests: the www/ demo in headless Chromium against the worker under Miniflare, and
# both wasm builds of pkg/ against the native engine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
cargo build -q --release -p central-sync
# The parity fixture (native rankings) the builds test compares both wasm builds with.
cargo run -q --release --example parity_fixture --features writer -- target/parity
[ -f edge-worker/build/index.js ] || bash scripts/build-worker.sh
node --test tests/browser/
