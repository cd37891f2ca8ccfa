#!/usr/bin/env python3
"""Training-time benchmark (part of `make bench`): `central-sync train` (validation tuning
included, default settings) pinned to one core on MovieLens-100k at 25, 50 and 100% of its
users, and on a resampled log of about 1M events (ten copies of ML-100k, each copy's users
renamed and its timestamps shifted past the previous copy's). Prints events/s, the time ratio
between 100% and 25% (4.0 would be exactly linear in events) and the 1M-event time against the
15-minute budget of issue 11.

Usage: bench-train.py CENTRAL_SYNC_BINARY OUT_DIR
"""
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

binary, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with open("data/ml-100k/events.csv", newline="") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames
    rows = list(reader)


def user_rank(user):
    # A fixed pseudo-random order of users, so each subset keeps whole sequences.
    return hashlib.sha256(user.encode()).hexdigest()


def write(path, subset):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(subset)
    return len(subset)


users = sorted({r["user"] for r in rows}, key=user_rank)
logs = []
for pct in (25, 50, 100):
    keep = set(users[: len(users) * pct // 100])
    path = os.path.join(out, f"ml100k-{pct}.csv")
    logs.append((f"ML-100k {pct}% of users", path, write(path, [r for r in rows if r["user"] in keep])))
span = max(int(r["ts"]) for r in rows) - min(int(r["ts"]) for r in rows) + 1
copies = []
for k in range(10):
    for r in rows:
        c = dict(r)
        c["user"] = f"c{k}-{r['user']}"
        c["ts"] = str(int(r["ts"]) + k * span)
        copies.append(c)
path = os.path.join(out, "resampled-1m.csv")
logs.append(("resampled ML-100k x10", path, write(path, copies)))

times = {}
for name, path, events in logs:
    model = os.path.join(out, "model")
    shutil.rmtree(model, ignore_errors=True)
    started = time.monotonic()
    run = subprocess.run(
        ["taskset", "-c", "0", binary, "--json", "--log", "warn", "train", "--events", path, "--out", model],
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    if run.returncode != 0:
        sys.exit(f"[bench-train] {name}: central-sync train failed: {run.stderr.strip()}")
    manifest = json.loads(run.stdout)
    shard_bytes = sum(s["bytes"] for s in manifest["shards"])
    times[name] = (events, seconds)
    print(
        f"[bench-train] {name}: {events} events, train (tuning included, 1 core) {seconds:.1f} s, "
        f"{events / seconds:,.0f} events/s, model {shard_bytes / 1e6:.2f} MB"
    )
    encoder = manifest.get("info", {}).get("encoder")
    if encoder:
        print(
            f"[bench-train]   its final fit's session encoder: {encoder['examples']} examples x "
            f"{encoder['epochs']} epochs in {encoder['seconds']:.1f} s "
            f"({encoder['examples_per_second']:,.0f} examples/s); the tuning fit trains one more"
        )
(e25, t25), (e100, t100) = times["ML-100k 25% of users"], times["ML-100k 100% of users"]
print(f"[bench-train] growth: 100% / 25% of ML-100k: {e100 / e25:.2f}x events, {t100 / t25:.2f}x time")
e1m, t1m = times["resampled ML-100k x10"]
verdict = "met" if t1m <= 15 * 60 else "NOT met"
print(f"[bench-train] 1M-event log: {t1m / 60:.1f} min (target <= 15 min on this machine: {verdict})")
