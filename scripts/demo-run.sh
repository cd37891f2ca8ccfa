#!/usr/bin/env bash
# The main job on the embedded defaults: train on MovieLens-100k, publish to wrangler's local
# KV, and serve the edge worker with the demo page on 127.0.0.1 (Ctrl-C stops it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
say() { printf '[demo] %s\n' "$*"; }
PORT=${EDGEREC_DEMO_PORT:-8787}
CS=./target/release/central-sync

say "training on MovieLens-100k (tuned on a validation split, then refitted on all events)"
$CS train --events data/ml-100k/events.csv --items data/ml-100k/items.csv --out target/demo/model
say "publishing to wrangler's local KV (.wrangler/state): shards and manifest first, models/current last"
$CS publish --model target/demo/model --to local
if [ ! -f .dev.vars ]; then
  # Local secrets for wrangler dev (git-ignored). Production uses `wrangler secret put`.
  printf 'SESSION_KEY="%s"\n' "$(head -c 32 /dev/urandom | base64 | tr -d '\n=')" > .dev.vars
  say "wrote .dev.vars with a random SESSION_KEY"
fi
mkdir -p www/data && cp data/ml-100k/items.csv www/data/items.csv
say "starting the worker: http://127.0.0.1:$PORT/ (demo page), /v1/recommendations, /v1/events, /v1/health"
say "  e.g. curl 'http://127.0.0.1:$PORT/v1/recommendations?k=5&device=mobile&geohash=9q8yy'"
exec wrangler dev --local --ip 127.0.0.1 --port "$PORT" --test-scheduled
