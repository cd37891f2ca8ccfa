#!/usr/bin/env bash
# Browser test: the www/ demo in headless Chromium against the worker under Miniflare.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
cargo build -q --release -p central-sync
[ -f edge-worker/build/index.js ] || bash scripts/build-worker.sh
node --test tests/browser/
