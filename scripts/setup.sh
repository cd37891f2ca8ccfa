#!/usr/bin/env bash
# Idempotent setup of everything edgerec needs on a bare machine (see ../shared/TOOLCHAIN.md).
# Each step checks first and does nothing when its piece is already there at the pinned version,
# so a second run finishes in seconds. Nothing here downloads from hosts other than the package
# registries (crates.io, npm, Debian, PyPI), and nothing waits on a prompt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"

WASM_BINDGEN_VERSION=0.2.130
WASM_PACK_VERSION=0.15.1
WORKER_BUILD_VERSION=0.8.7
TANSU_VERSION=0.6.0
OHA_VERSION=1.16.0
# zlib1g-dev, gcc, g++ and make build librdkafka (the rdkafka crate) from source.
APT_PACKAGES=(pkg-config libssl-dev zlib1g-dev chromium chromium-driver wrk prometheus)

step() { printf '[setup] %s\n' "$*"; }
t0=$(date +%s)

# 1. Debian packages. `dpkg -s` answers without the network, so the common case costs nothing.
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  step "apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  $SUDO apt-get update -qq </dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
else
  step "apt: all present"
fi

# 2. The wasm32 target (a no-op when present).
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "rustup: wasm32-unknown-unknown present"
else
  step "rustup: adding wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# 3. Cargo-installed tools, pinned. One shared target dir makes the three builds share work.
cargo_tool() { # name version version-probe-command...
  local crate=$1 version=$2; shift 2
  if "$@" 2>/dev/null | grep -q "$version"; then
    step "cargo: $crate $version present"
  else
    step "cargo: installing $crate $version"
    # wasm-bindgen-cli's own lockfile pins a crate the index cannot resolve, so no --locked.
    CARGO_TARGET_DIR=/tmp/cargo-install-target cargo install -q "$crate" --version "$version" --force
  fi
}
cargo_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen --version
cargo_tool wasm-pack "$WASM_PACK_VERSION" wasm-pack --version
cargo_tool worker-build "$WORKER_BUILD_VERSION" worker-build --version
# tansu: a Kafka-protocol broker (Apache-2.0) for the Kafka event-log tests and demo; Apache
# Kafka's own jars come only from Maven Central, which is unreachable here. ~9 min, once.
if tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  step "cargo: tansu $TANSU_VERSION present"
else
  step "cargo: installing tansu $TANSU_VERSION (a Kafka-protocol broker for the tests)"
  CARGO_TARGET_DIR=/tmp/cargo-install-target cargo install -q tansu --version "$TANSU_VERSION" \
    --locked --features dynostore,libsql --force
fi

# oha: an HTTP load generator for `make bench` only (`setup.sh --bench`), beside wrk. wrk
# corrects its latencies for coordinated omission, so its percentiles are not the times requests
# took; oha's are (scripts/bench-workerd.mjs prints both). ~5 min, once.
if [ "${1:-}" = "--bench" ]; then
  if oha --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    step "cargo: oha $OHA_VERSION present"
  else
    step "cargo: installing oha $OHA_VERSION (an HTTP load generator for make bench)"
    CARGO_TARGET_DIR=/tmp/cargo-install-target cargo install -q oha --version "$OHA_VERSION" --locked --force
  fi
fi

# 4. npm packages from the committed lockfile. A stamp holding the lockfile's hash makes this a
# no-op until package-lock.json changes.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f node_modules/.edgerec-lock-hash ] && [ "$(cat node_modules/.edgerec-lock-hash)" = "$lock_hash" ]; then
  step "npm: node_modules up to date"
else
  step "npm: npm ci"
  npm ci --no-audit --no-fund --loglevel=error </dev/null
  echo "$lock_hash" > node_modules/.edgerec-lock-hash
fi

# 5. Real data (MovieLens-100k from the recbole wheel), checksummed.
python3 scripts/fetch_data.py

step "done in $(( $(date +%s) - t0 )) s"
