#!/usr/bin/env python3
"""Kafka event-log figures for `make bench` (issue 16), beside the SQLite path in the same run.

1. Ingest: `central-sync serve` with the SQLite sink, then with the Kafka sink (tansu, memory
   storage, 3 partitions), each under 8 concurrent posters sending batches of 50 events for
   10 s: events/s acknowledged and the p50/p99 latency of an acknowledgement.
2. `sync` consumption from Kafka: messages/s while reading the topic into its local store.
3. End to end: one event posted to the ingest, then `sync` run at once: seconds from the post
   to a published model whose training input holds it (a cron adds its interval on top).
Usage: bench-kafka.py CENTRAL_SYNC WORK_DIR
"""
import json, os, shutil, socket, subprocess, sys, threading, time, urllib.error, urllib.request

cs, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
TOKEN = "bench-kafka-token"
THREADS, SECONDS, BATCH = 8, 10, 50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def serve(args, port):
    env = dict(os.environ, EDGEREC_INGEST_TOKEN=TOKEN)
    p = subprocess.Popen([cs, "--log", "warn", *args, "serve", "--addr", f"127.0.0.1:{port}"],
                         env=env, stdout=subprocess.DEVNULL)
    wait_port(port, "serve")
    return p


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data=body.encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def load(port, tag):
    lat, acked, stop = [], [0], time.time() + SECONDS
    lock = threading.Lock()

    def worker(t):
        n = 0
        while time.time() < stop:
            events = [{"id": f"{tag}{t}-{n}-{i}", "user": f"v{t}-{n % 500}", "item": f"m{(n * 7 + i) % 1000}",
                       "ts": 978_300_000 + n * 60 + i, "type": "click"} for i in range(BATCH)]
            t0 = time.perf_counter()
            if post(port, json.dumps(events)) == 200:
                with lock:
                    lat.append(time.perf_counter() - t0)
                    acked[0] += BATCH
            n += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    started = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    return acked[0], acked[0] / (time.time() - started), pct(0.5), pct(0.99)


broker_port = free_port()
broker = subprocess.Popen(["tansu", "broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}",
                           "--advertised-listener-url", f"tcp://127.0.0.1:{broker_port}",
                           "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    wait_port(broker_port, "tansu")
    subprocess.run(["tansu", "topic", "create", "--broker", f"tcp://127.0.0.1:{broker_port}", "--partitions", "3", "events"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kafka = f"kafka://127.0.0.1:{broker_port}/events"
    rows = {}
    for name, args in [("SQLite", ["--db", f"{work}/ingest.db"]), ("Kafka", ["--event-log", kafka, "--db", f"{work}/serve-state.db"])]:
        port = free_port()
        p = serve(args, port)
        try:
            rows[name] = load(port, name[0])
        finally:
            p.terminate()
            p.wait()
    print(f"[bench-kafka] ingest through serve, {THREADS} posters x {BATCH}-event batches x {SECONDS} s (tansu memory storage, 3 partitions):")
    for name, (n, rate, p50, p99) in rows.items():
        print(f"[bench-kafka]   {name:6}: {rate:,.0f} events/s acknowledged ({n:,} events), ack latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"[bench-kafka]   Kafka / SQLite throughput: {rows['Kafka'][1] / rows['SQLite'][1]:.2f}x")

    sync = [cs, "--log", "warn", "--json", "--event-log", kafka, "--db", f"{work}/sync.db", "sync", "--group", "bench",
            "--to", f"dir:{work}/kv", "--work-dir", f"{work}/models", "--epochs", "2", "--margin", "1"]
    t0 = time.time()
    first = json.loads(subprocess.run(sync, check=True, capture_output=True, text=True).stdout)
    k = first["kafka"]
    rate = k["messages"] / max(k["read_seconds"], 1e-9)
    print(f"[bench-kafka] sync consumption: {k['messages']:,} messages in {k['read_seconds']:.2f} s = {rate:,.0f} messages/s "
          f"(stored {k['stored']:,}, duplicates {k['duplicates']}); whole first sync {time.time() - t0:.1f} s, {first['status']}")

    port = free_port()
    p = serve(["--event-log", kafka, "--db", f"{work}/serve-state.db"], port)
    try:
        posted = time.time()
        post(port, json.dumps([{"id": "e2e-1", "user": "v-e2e", "item": "m1", "ts": 978_400_000, "type": "click"}]))
    finally:
        p.terminate()
        p.wait()
    second = json.loads(subprocess.run(sync, check=True, capture_output=True, text=True).stdout)
    delay = time.time() - posted
    assert second["kafka"]["stored"] == 1 and second["status"] == "published", second
    print(f"[bench-kafka] end to end: event posted -> model published that trained on it: {delay:.1f} s "
          f"({second['mode']} sync over {second['total_events']:,} events; a cron adds its interval)")
finally:
    broker.terminate()
    broker.wait()
