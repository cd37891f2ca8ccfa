#!/usr/bin/env bash
# Load figures of the edge worker under `wrangler dev` on 127.0.0.1: a packed 10,000-item x 64
# model in wrangler's local KV, the cold start (first request, including the model load), then
# a bounded wrk run (50 connections, 2 threads, 15 s) with a session token so every request
# ranks in full (no Cache API shortcut). Only loopback traffic; wrk stops by itself.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
PORT=${EDGEREC_BENCH_PORT:-8797}
out=target/bench/worker
mkdir -p "$out"
python3 - "$out" <<'PY'
import random, struct, sys
out = sys.argv[1]; n, d = 10_000, 64
rng = random.Random(5)
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, d)
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
with open(f"{out}/vectors.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    f.write(struct.pack("<%df" % (n * d), *[rng.gauss(0, 1) for _ in range(n * d)]))
with open(f"{out}/ids.txt", "w") as f:
    f.writelines(f"sku-{i}\n" for i in range(n))
PY
./target/release/central-sync pack --embeddings "$out/vectors.npy" --ids "$out/ids.txt" --out "$out/model"
./target/release/central-sync publish --model "$out/model" --to local
touch .dev.vars
grep -q '^SESSION_KEY=' .dev.vars || printf 'SESSION_KEY="%s"\n' "$(head -c 32 /dev/urandom | base64 | tr -d '\n=')" >> .dev.vars
wrangler dev --local --ip 127.0.0.1 --port "$PORT" > "$out/wrangler.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; pkill -f "workerd.*$PORT" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do grep -q "Ready on" "$out/wrangler.log" && break; sleep 1; done
grep -q "Ready on" "$out/wrangler.log" || { cat "$out/wrangler.log"; echo "wrangler dev did not start"; exit 1; }
base="http://127.0.0.1:$PORT"
cold=$(curl -s -o /dev/null -w '%{time_total}' "$base/v1/recommendations?k=10&device=mobile&geohash=9q8yy")
warm=$(curl -s -o /dev/null -w '%{time_total}' "$base/v1/recommendations?k=10&device=mobile&geohash=9q8yy")
token=$(curl -s -X POST "$base/v1/events" -H 'Content-Type: application/json' -d '[{"item":"sku-1"},{"item":"sku-2"},{"item":"sku-3"}]' | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
wrk -t2 -c50 -d15s --latency -H "X-Edgerec-Session: $token" "$base/v1/recommendations?k=10&device=mobile&geohash=9q8yy" > "$out/wrk.txt"
wrk -t1 -c1 -d5s --latency -H "X-Edgerec-Session: $token" "$base/v1/recommendations?k=10&device=mobile&geohash=9q8yy" > "$out/wrk1.txt"
rps=$(awk '/Requests\/sec/ {print $2}' "$out/wrk.txt")
p50=$(awk '$1=="50%" {print $2}' "$out/wrk.txt")
p99=$(awk '$1=="99%" {print $2}' "$out/wrk.txt")
errors=$(grep -E "Non-2xx|Socket errors" "$out/wrk.txt" || echo "none")
wasm=edge-worker/build/index_bg.wasm
echo "[bench-worker] 10,000 x 64 int8 model, wrangler dev on 127.0.0.1, wrk 2 threads x 50 connections x 15 s, session token (full ranking per request)"
echo "[bench-worker] requests/s $rps, p50 $p50, p99 $p99 (target p99 <= 10 ms); errors: $errors"
echo "[bench-worker] one connection: requests/s $(awk '/Requests\/sec/ {print $2}' "$out/wrk1.txt"), p50 $(awk '$1=="50%" {print $2}' "$out/wrk1.txt"), p99 $(awk '$1=="99%" {print $2}' "$out/wrk1.txt")"
echo "[bench-worker] cold start (first request incl. KV read + model load) $(python3 -c "print(f'{$cold*1000:.1f} ms')"), next request $(python3 -c "print(f'{$warm*1000:.1f} ms')")"
echo "[bench-worker] worker wasm: $(stat -c %s $wasm) bytes, $(gzip -9 -c $wasm | wc -c) bytes gzip (target <= 500 KB)"
