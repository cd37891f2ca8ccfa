#!/usr/bin/env bash
# `make bench`: native criterion benchmarks, then the Node benchmark with its peers (hnswlib-wasm,
# usearch) in the same run, both wasm builds in Node and in headless Chromium, training time,
# the worker under load, then the summary lines with ratios. Figures are written to
# target/bench/summary.txt as well, and README.md's performance table is regenerated from it
# (scripts/readme-perf.py); docs/FIGURES.md records measured runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
bash scripts/setup.sh --bench
mkdir -p target/bench
summary=target/bench/summary.txt
: > "$summary"

echo "[bench] writing benchmark models (100k x 64, 1M x 64 whole and paged)"
cargo run -q --release --example bench_model --features writer -- target/bench

echo "[bench] native (criterion)"
cargo bench -q --bench scoring 2>&1 | grep -E "^[a-z0-9_]+|time:" || true

# Criterion's median estimates, in ns.
est() { python3 -c "import json,sys; print(json.load(open('target/criterion/$1/new/estimates.json'))['median']['point_estimate'])"; }
{
  python3 - "$(est recommend_100k_x64_i8_top10)" "$(est recommend_1m_x64_i8_top10)" "$(est kernel_scalar_100k_x64)" \
    "$(est kernel_simd_100k_x64)" "$(est session_update_and_query_vector)" "$(est load_100k_x64_model)" <<'PY'
import sys
r100, r1m, scalar, simd, sess, load = map(float, sys.argv[1:])
print(f"[bench-native] recommend 100k x 64 int8 top-10: median {r100/1e6:.3f} ms")
print(f"[bench-native] recommend 1M x 64 int8 top-10 (8 shards): median {r1m/1e6:.3f} ms")
print(f"[bench-native] kernel 100k x 64: scalar {scalar/1e6:.3f} ms, SIMD {simd/1e6:.3f} ms -> SIMD {scalar/simd:.1f}x faster")
print(f"[bench-native] session update + query vector: median {sess/1e3:.2f} µs")
print(f"[bench-native] load 100k x 64 model (checksums verified): median {load/1e6:.2f} ms")
PY
} | tee -a "$summary"

echo "[bench] Node (V8) with peers"
node scripts/bench-node.mjs target/bench 2> target/bench/node-stderr.log | tee -a "$summary"
echo "[bench] Node (V8), the relaxed-SIMD build (Node 20: behind a flag, and without its baseline compiler, which gets relaxed dot products wrong)"
EDGEREC_BENCH_BUILD=relaxed node --experimental-wasm-relaxed-simd --no-liftoff scripts/bench-node.mjs target/bench \
  2>> target/bench/node-stderr.log | grep '^\[bench-node' | tee -a "$summary"
echo "[bench] Node (V8), the 1M model paged: index loaded, pages read as requests ask (a process of its own, for its memory)"
PAGE_CACHE_MIB=4 node scripts/bench-paged.mjs target/bench | tee -a "$summary"
echo "[bench] headless Chromium: both wasm builds, alternating rounds, rankings compared"
node scripts/bench-browser.mjs target/bench | tee -a "$summary"
echo "[bench] training time (central-sync train, one core, ML-100k at 25/50/100% and a 1M-event log)"
cargo build -q --release -p central-sync
python3 scripts/bench-train.py target/release/central-sync target/bench/train | tee -a "$summary"
echo "[bench] edge worker under wrangler dev (wrk)"
bash scripts/build-worker.sh
bash scripts/bench-worker.sh | grep '^\[bench-worker\]' | tee -a "$summary"
echo "[bench] edge worker on workerd itself (no wrangler dev proxy), 100k x 64 model, cold start"
node scripts/bench-workerd.mjs | grep '^\[bench-workerd\]' | tee -a "$summary"
echo "[bench] worker memory: peak wasm memory after loading 10k / 100k / 400k x 64 models"
node scripts/bench-memory.mjs | tee -a "$summary"
echo "[bench] fault run: the worker under load while a publish breaks, KV loses the pointer and the ingest dies"
node scripts/bench-fault.mjs > target/bench/fault.log 2>&1 || { tail -30 target/bench/fault.log; exit 1; }
grep '^\[bench-fault\]' target/bench/fault.log | tee -a "$summary"
echo "[bench] Kafka event log beside SQLite (ingest, sync consumption, end-to-end delay)"
python3 scripts/bench-kafka.py target/release/central-sync target/bench/kafka | tee -a "$summary"
echo "[bench] summary written to $summary"
python3 scripts/readme-perf.py "$summary" README.md
