#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each one.
#
#   scripts/fuzz.sh smoke   every target for FUZZ_SMOKE_SECONDS (default 15) from its seeds
#                           (part of `make test`)
#   scripts/fuzz.sh full    every target for at least FUZZ_RUNS executions (default 10 M;
#                           `make fuzz`)
#
# The fuzzer is libFuzzer, linked by the libfuzzer-sys crate and built with the stable toolchain:
# the coverage instrumentation is LLVM's sanitizer-coverage pass, enabled with stable `-C`
# options (`passes`, `llvm-args`). cargo-fuzz would need nightly for its sanitizer flags, and
# nightly cannot be fetched here (shared/TOOLCHAIN.md). There is no AddressSanitizer; the
# targets are safe Rust, built with debug assertions and overflow checks, so a panic, an
# arithmetic overflow or a failed assertion is a crash.
#
# A crash stops the run; the input is saved in target/fuzz/artifacts/<target>/. Turn it into a
# regression test (tests/fuzz_regressions.rs) before fixing it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
mode=${1:-smoke}
targets=(shard token events query)
triple=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="$EDGEREC_ROOT/target/fuzz"
# Build scripts and proc macros are not instrumented: --target keeps RUSTFLAGS off the host.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cdebug-assertions -Coverflow-checks"
cargo build --release --manifest-path fuzz/Cargo.toml --target "$triple" --quiet

case $mode in
  smoke) limit=(-max_total_time="${FUZZ_SMOKE_SECONDS:-15}") ;;
  full) limit=(-runs="${FUZZ_RUNS:-10000000}") ;;
  *) echo "usage: $0 smoke|full" >&2; exit 2 ;;
esac

printf '%-8s %14s %10s %8s\n' target executions exec/s seconds
for t in "${targets[@]}"; do
  corpus="$CARGO_TARGET_DIR/corpus/$t"
  artifacts="$CARGO_TARGET_DIR/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  log="$CARGO_TARGET_DIR/$t.log"
  start=$(date +%s)
  if ! "$CARGO_TARGET_DIR/$triple/release/$t" "${limit[@]}" -print_final_stats=1 \
      -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts" \
      "$corpus" "fuzz/seeds/$t" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $t crashed; the input is in $artifacts" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  printf '%-8s %14s %10s %8s\n' "$t" "$runs" "$rate" "$(( $(date +%s) - start ))"
done
