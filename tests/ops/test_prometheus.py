#!/usr/bin/env python3
"""The shipped monitoring against the real thing: Debian's Prometheus scraping a running
`central-sync serve` whose event log has two syncs behind it (so every gauge, drift included,
exists), with the repo's alert rules loaded.

Checks: promtool's config, rules and metrics checks; the scrape is up; every query of the
Grafana dashboard (ops/grafana/edgerec-central.json) returns data; every rule evaluates without
error; the no-model alert stays quiet while a model is published. Run by scripts/test-ops.sh.
Standard library only; every process started here is stopped before it exits.
"""
import csv
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPS = os.path.join(ROOT, "ops")
BIN = os.environ.get("CENTRAL_SYNC", os.path.join(ROOT, "target", "debug", "central-sync"))
TOKEN = "ops-test-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_events(path, users, per_user, ts0, seed):
    """Users walking a ring of 40 items in steps of 4, as the Rust tests' fixtures do."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "ts", "type"])
        for u in users:
            item = u % 4 + 4 * rng.randrange(10)
            for t in range(per_user):
                w.writerow([f"u{u}", f"m{item}", ts0 + u * 10_000 + t * 60, "click"])
                item = (item + 4) % 40 if rng.random() < 0.8 else rng.randrange(40)


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def query(base, expr):
    return get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as e:  # not listening yet
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


class PrometheusAgainstCentral(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = cls.tmp.name
        env = dict(os.environ, EDGEREC_DB=os.path.join(tmp, "events.db"), EDGEREC_INGEST_TOKEN=TOKEN)
        env.pop("RUST_LOG", None)
        cls.env = env

        def central(*args):
            subprocess.run([BIN, "--log", "warn", *args], env=env, check=True, stdout=subprocess.DEVNULL)

        # Two syncs: the second has a served model to compare with, so the drift gauges exist.
        sync = ["sync", "--to", f"dir:{tmp}/kv", "--work-dir", f"{tmp}/work", "--dim", "8", "--epochs", "2"]
        write_events(f"{tmp}/a.csv", range(40), 12, 978_300_000, 1)
        central("import", f"{tmp}/a.csv")
        central(*sync)
        write_events(f"{tmp}/b.csv", range(40, 60), 12, 978_900_000, 2)
        central("import", f"{tmp}/b.csv")
        central(*sync)

        cls.procs = []
        serve = subprocess.Popen(
            [BIN, "--log", "warn", "serve", "--addr", "127.0.0.1:0"],
            env=env, stdout=subprocess.PIPE, text=True,
        )
        cls.procs.append(serve)
        cls.central = serve.stdout.readline().strip().removeprefix("listening on ")
        assert cls.central.startswith("http://127.0.0.1:"), cls.central

        port = free_port()
        cls.prom = f"http://127.0.0.1:{port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [os.path.join(OPS, "prometheus", "alerts.yml")],
            "scrape_configs": [{
                "job_name": "edgerec-central",
                "static_configs": [{"targets": [cls.central.removeprefix("http://")]}],
            }],
        }
        # JSON is YAML: no YAML library needed.
        with open(f"{tmp}/prometheus.yml", "w") as f:
            json.dump(config, f)
        subprocess.run(["promtool", "check", "config", f"{tmp}/prometheus.yml"], check=True, stdout=subprocess.DEVNULL)
        cls.log = open(f"{tmp}/prometheus.log", "w")
        cls.procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/tsdb",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=cls.log, stderr=subprocess.STDOUT,
        ))

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            p.terminate()
        for p in cls.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        cls.procs[0].stdout.close()
        cls.log.close()
        cls.tmp.cleanup()

    def post_events(self, body, path="/v1/events"):
        req = urllib.request.Request(
            f"{self.central}{path}", data=body.encode(), method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def test_scrape_dashboard_and_rules(self):
        # Events through the real ingest: two stored, one rejected, so every counter moves.
        stored = self.post_events(json.dumps([
            {"id": "ops-1", "user": "u1", "item": "m4", "ts": 978_999_000, "type": "click"},
            {"id": "ops-2", "user": "u1", "item": "", "ts": 978_999_001},
            {"id": "ops-3", "user": "u2", "item": "m8", "ts": 978_999_002},
        ]))
        self.assertEqual(stored["stored"], 2)
        # An edge isolate's report: lists served and cached, and a KV outage's 503s.
        def series(route, status, model, cache, error, count, ms):
            buckets = [0] * 11
            buckets[3] = count
            return {"route": route, "status": status, "model": model, "cache": cache, "error": error,
                    "count": count, "ms_sum": ms * count, "buckets": buckets}
        report = {"isolate": "i-ops", "ts": 978_999_100, "series": [
            series("recommendations", 200, "v1", "miss", "", 40, 8.0),
            series("recommendations", 200, "v1", "hit", "", 60, 6.0),
            series("recommendations", 503, "none", "none", "kv_unavailable", 1, 7.0),
        ]}
        self.assertEqual(self.post_events(json.dumps(report), "/v1/edge-metrics")["stored"], 1)

        # The exposition passes Prometheus' own linter.
        with urllib.request.urlopen(f"{self.central}/metrics", timeout=10) as r:
            metrics = r.read()
        lint = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True)
        self.assertEqual(lint.returncode, 0, lint.stdout.decode() + lint.stderr.decode())

        wait_for("the scrape to be up", lambda: [
            t for t in get_json(f"{self.prom}/api/v1/targets")["data"]["activeTargets"]
            if t["health"] == "up"
        ])
        # rate() needs two samples of the moved counters inside its window.
        wait_for("two scrapes after the posts", lambda: query(
            self.prom, 'count_over_time(edgerec_events_rejected_total{job="edgerec-central"}[1m]) >= 2'
        )["data"]["result"])
        self.assertEqual(
            query(self.prom, 'edgerec_events_rejected_total{job="edgerec-central"}')["data"]["result"][0]["value"][1],
            "1",
        )

        with open(os.path.join(OPS, "grafana", "edgerec-central.json")) as f:
            dashboard = json.load(f)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        self.assertGreaterEqual(len(exprs), 10)
        for expr in exprs:
            r = query(self.prom, expr)
            self.assertEqual(r["status"], "success", expr)
            self.assertTrue(r["data"]["result"], f"no data for the dashboard query {expr}")

        def rules_evaluated():
            groups = get_json(f"{self.prom}/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

        rules = wait_for("every rule to be evaluated", rules_evaluated)
        self.assertEqual(len(rules), 9)
        for r in rules:
            self.assertEqual(r["health"], "ok", f"{r['name']}: {r.get('lastError')}")
        active = {a["labels"]["alertname"] for a in get_json(f"{self.prom}/api/v1/alerts")["data"]["alerts"]}
        self.assertNotIn("EdgerecNoModel", active)
        self.assertNotIn("EdgerecCentralDown", active)
        self.assertNotIn("EdgerecEdgeFallback", active)


if __name__ == "__main__":
    unittest.main(verbosity=2)
