#!/usr/bin/env bash
# `make demo`: after setup and build, run the main job on the embedded defaults. Each step says
# what it did; steps whose components have not landed yet say so instead of pretending.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
say() { printf '[demo] %s\n' "$*"; }

say "data: $(wc -l < data/ml-100k/events.csv) lines in data/ml-100k/events.csv (MovieLens-100k)"
say "pkg/: $(stat -c %s pkg/edgerec_bg.wasm) bytes of wasm ($(gzip -9 -c pkg/edgerec_bg.wasm | wc -c) gzip), npm package 'edgerec'"

if ./target/release/central-sync --help >/dev/null 2>&1; then
  bash scripts/demo-run.sh
else
  say "central-sync (training/publishing) is not built yet: see issue 5. Nothing was trained."
  say "edge worker is not built yet: see issue 6. Nothing is served."
  exit 0
fi
