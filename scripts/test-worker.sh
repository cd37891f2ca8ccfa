#!/usr/bin/env bash
# Worker tests: builds central-sync (to train and publish models) and the worker, then runs
# the suite in tests/worker (under Miniflare, and under workerd run directly).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
cargo build -q --release -p central-sync
bash scripts/build-worker.sh
node --test --test-concurrency=1 tests/worker/
