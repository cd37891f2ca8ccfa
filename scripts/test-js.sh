#!/usr/bin/env bash
# Node tests of pkg/: writes the native parity fixture, then runs node's test runner on tests/js.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
cargo run -q --release --example parity_fixture --features writer -- target/parity
node --test tests/js/
