#!/usr/bin/env bash
# The main job on the embedded defaults: train on MovieLens-100k, publish to wrangler's local
# KV, and serve the edge worker with the demo page on 127.0.0.1 (Ctrl-C stops it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
say() { printf '[demo] %s\n' "$*"; }
PORT=${EDGEREC_DEMO_PORT:-8787}
CS=./target/release/central-sync

# Local secrets for wrangler dev (git-ignored). Production uses `wrangler secret put`.
touch .dev.vars
if ! grep -q '^SESSION_KEY=' .dev.vars; then
  printf 'SESSION_KEY="%s"\n' "$(head -c 32 /dev/urandom | base64 | tr -d '\n=')" >> .dev.vars
  say "wrote a random SESSION_KEY to .dev.vars"
fi
WRANGLER_VARS=()
if [ -n "${EDGEREC_DEMO_KAFKA:-}" ]; then
  # The same demo with Kafka as the event log (`make demo-kafka`): a local tansu broker, the
  # events imported into a topic, the model trained from the topic, and the worker's events
  # forwarded to an ingest that appends to the topic.
  KAFKA_PORT=${EDGEREC_DEMO_KAFKA_PORT:-9092}
  export EDGEREC_EVENT_LOG="kafka://127.0.0.1:$KAFKA_PORT/edgerec.events"
  mkdir -p target/demo
  say "starting tansu (a Kafka-protocol broker) on 127.0.0.1:$KAFKA_PORT"
  tansu broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ > target/demo/tansu.log 2>&1 &
  broker=$!
  trap 'kill $broker ${ingest:-} 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break; sleep 0.1; done
  tansu topic create --broker "tcp://127.0.0.1:$KAFKA_PORT" --partitions 3 edgerec.events >/dev/null
  say "importing MovieLens-100k into $EDGEREC_EVENT_LOG"
  $CS import data/ml-100k/events.csv
  grep -q '^INGEST_TOKEN=' .dev.vars || printf 'INGEST_TOKEN="%s"\n' "$(head -c 24 /dev/urandom | base64 | tr -d '\n=/+')" >> .dev.vars
  token=$(sed -n 's/^INGEST_TOKEN="\(.*\)"$/\1/p' .dev.vars)
  say "starting the ingest (central-sync serve, Kafka sink) on 127.0.0.1:8788"
  EDGEREC_INGEST_TOKEN=$token $CS --db target/demo/serve-state.db serve --addr 127.0.0.1:8788 > target/demo/serve.log 2>&1 &
  ingest=$!
  WRANGLER_VARS=(--var "INGEST_URL:http://127.0.0.1:8788/v1/events")
  say "training from the topic (tuned on a validation split, then refitted on all events)"
  $CS train --items data/ml-100k/items.csv --out target/demo/model
else
  say "training on MovieLens-100k (tuned on a validation split, then refitted on all events)"
  $CS train --events data/ml-100k/events.csv --items data/ml-100k/items.csv --out target/demo/model
fi
say "publishing to wrangler's local KV (.wrangler/state): shards and manifest first, models/current last"
$CS publish --model target/demo/model --to local
mkdir -p www/data && cp data/ml-100k/items.csv www/data/items.csv
say "starting the worker: http://127.0.0.1:$PORT/ (demo page), /v1/recommendations, /v1/events, /v1/health"
say "  e.g. curl 'http://127.0.0.1:$PORT/v1/recommendations?k=5&device=mobile&geohash=9q8yy'"
if [ -n "${EDGEREC_DEMO_KAFKA:-}" ]; then
  say "  events posted to the worker go to the ingest and into the topic; run"
  say "  EDGEREC_EVENT_LOG=$EDGEREC_EVENT_LOG $CS sync --to local  to train on them"
  # Not exec: the broker and the ingest stop with this script (the EXIT trap).
  wrangler dev --local --ip 127.0.0.1 --port "$PORT" --test-scheduled "${WRANGLER_VARS[@]}"
else
  exec wrangler dev --local --ip 127.0.0.1 --port "$PORT" --test-scheduled
fi
