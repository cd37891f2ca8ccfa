# The two commands of the README: `make demo` and `make test` (plus `make bench`).
# Every target first runs the idempotent setup (a no-op in well under a second once done).
SHELL := /bin/bash
STAGE := scripts/stage.sh

.PHONY: all setup pkg build test lint test-native test-wasm test-js test-worker test-browser test-ops test-fuzz bench fuzz demo demo-kafka clean

all: test

setup:
	@bash scripts/setup.sh

pkg: setup
	@$(STAGE) pkg bash scripts/build-pkg.sh

build: setup pkg
	@$(STAGE) build-central-sync cargo build --release -p central-sync
	@$(STAGE) build-worker bash scripts/build-worker.sh

lint: setup
	@$(STAGE) fmt cargo fmt --all --check
	@$(STAGE) fmt-fuzz cargo fmt --manifest-path fuzz/Cargo.toml --check
	@$(STAGE) clippy cargo clippy --workspace --all-targets -- -D warnings
	@$(STAGE) clippy-wasm cargo clippy -p edgerec -p edgerec-contract -p edge-worker --target wasm32-unknown-unknown -- -D warnings
	@$(STAGE) clippy-wasm-relaxed env CARGO_TARGET_DIR=target/relaxed RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
		cargo clippy -p edgerec --target wasm32-unknown-unknown -- -D warnings

test-native: setup
	@$(STAGE) native-tests cargo test --workspace

test-wasm: setup
	@$(STAGE) wasm-tests bash scripts/test-wasm.sh

test-js: pkg
	@$(STAGE) js-tests bash scripts/test-js.sh

test-worker: pkg
	@$(STAGE) worker-tests bash scripts/test-worker.sh

test-browser: pkg
	@$(STAGE) browser-tests bash scripts/test-browser.sh

# The shipped Prometheus config, alert rules and Grafana dashboard against a real Prometheus.
test-ops: setup
	@$(STAGE) ops-tests bash scripts/test-ops.sh

# A short run of every fuzz target from its seeds; `make fuzz` runs each for 10 M executions.
test-fuzz: setup
	@$(STAGE) fuzz-smoke bash scripts/fuzz.sh smoke

test: setup lint test-native test-wasm test-js test-worker test-browser test-ops test-fuzz
	@echo "[make test] all stages passed"

bench: setup pkg
	@$(STAGE) bench bash scripts/bench.sh

fuzz: setup
	@$(STAGE) fuzz bash scripts/fuzz.sh full

demo: build
	@bash scripts/demo.sh

# The demo with Kafka (a local tansu broker) as the event log instead of SQLite.
demo-kafka: build
	@EDGEREC_DEMO_KAFKA=1 bash scripts/demo.sh

clean:
	cargo clean
	rm -rf pkg target/parity
