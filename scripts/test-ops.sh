#!/usr/bin/env bash
# The shipped monitoring (ops/): promtool's checks of the Prometheus config and alert rules, the
# rules' unit tests, then the real Prometheus against a running `central-sync serve`
# (tests/ops/test_prometheus.py).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
promtool check config ops/prometheus/prometheus.yml
promtool test rules ops/prometheus/alerts.test.yml
cargo build -q -p central-sync
python3 tests/ops/test_prometheus.py
