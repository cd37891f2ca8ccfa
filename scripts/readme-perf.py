#!/usr/bin/env python3
"""Regenerates the README's performance table from a `make bench` summary.

Usage: python3 scripts/readme-perf.py [SUMMARY] [README]
(defaults: target/bench/summary.txt, README.md). `scripts/bench.sh` runs it last.

Every figure is read from the summary's lines with the pattern its bench prints; a figure whose
line is missing (a bench that did not run or whose output changed) is shown as "not in this
run", never carried over from an older table. The table goes between the README's
`<!-- perf:begin -->` and `<!-- perf:end -->` markers.
"""
import re
import sys
from datetime import date

BEGIN, END = "<!-- perf:begin -->", "<!-- perf:end -->"
NOT_RUN = "not in this run"


def ms(value: str, unit: str) -> float:
    return float(value) / 1000 if unit == "µs" else float(value)


def find(text: str, pattern: str):
    m = re.search(pattern, text, re.MULTILINE)
    return m.groups() if m else None


def wrk_ms(value: str) -> float:
    """A wrk latency ("629.00us", "54.48ms", "1.02s") in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        return float("inf")
    return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m[2]]


def verdict(ok) -> str:
    return NOT_RUN if ok is None else ("met" if ok else "**missed**")


def rows(summary: str):
    """(figure, measured, target, verdict) for every figure the issues set."""
    out = []

    def add(figure, measured, target, ok):
        out.append((figure, measured if measured is not None else NOT_RUN, target, verdict(ok)))

    num = r"([\d.]+) (ms|µs)"
    node = find(summary, rf"^\[bench-node\] recommend 100k x 64 int8.*?: median {num}")
    add("Node, simd128: recommend 100k x 64, top-10, median",
        node and f"{node[0]} {node[1]}", "≤ 0.30 ms", node and ms(*node) <= 0.30)
    peer = find(summary, r"^\[bench-node\]\s+hnswlib-wasm.*?-> edgerec is ([\d.]+)x faster")
    add("… vs hnswlib-wasm brute force, same run", peer and f"{peer[0]}x", "≥ 15x",
        peer and float(peer[0]) >= 15)
    relaxed = find(summary, rf"^\[bench-node relaxed\] recommend 100k x 64 int8.*?: median {num}")
    add("Node, relaxed build (where the probe accepts it): 100k median",
        relaxed and f"{relaxed[0]} {relaxed[1]}", "≤ 0.20 ms", relaxed and ms(*relaxed) <= 0.20)
    chromium = find(summary, rf"^\[bench-browser\] Chromium ([\d.]+), simd128 build: recommend 100k x 64 median {num}.*?1M x 64 median {num}")
    add("Chromium, simd128: 100k median", chromium and f"{chromium[1]} {chromium[2]}", "≤ 0.30 ms",
        chromium and ms(chromium[1], chromium[2]) <= 0.30)
    chromium_r = find(summary, rf"^\[bench-browser\] Chromium ([\d.]+), relaxed-SIMD build: recommend 100k x 64 median {num}.*?1M x 64 median {num}")
    add("Chromium, relaxed SIMD: 100k median", chromium_r and f"{chromium_r[1]} {chromium_r[2]}",
        "≤ 0.20 ms", chromium_r and ms(chromium_r[1], chromium_r[2]) <= 0.20)
    recall = find(summary, r"^\[bench-node\]\s+recall@10 of int8 path vs exact float32: ([\d.]+)")
    add("recall@10 vs exact f32 (100k)", recall and recall[0], "≥ 0.95", recall and float(recall[0]) >= 0.95)
    big = find(summary, rf"^\[bench-node\] recommend 1M x 64 int8 over \d+ shards: median {num}.*?wasm memory ([\d.]+) MiB")
    add("Node, simd128: recommend 1M x 64, median", big and f"{big[0]} {big[1]}", "≤ 2 ms",
        big and ms(big[0], big[1]) <= 2)
    add("Node: wasm memory with the 1M model loaded", big and f"{big[2]} MiB", "≤ 40 MB",
        big and float(big[2]) * 1.048576 <= 40)
    paged = find(summary, r"^\[bench-paged\] wasm memory with the 1M model paged: ([\d.]+) MiB after (\d+) requests \(index alone ([\d.]+) MiB")
    cache = find(summary, r"^\[bench-paged\] per request over \d+ sessions, LRU page cache of (\d+) MiB: pages read median (\d+), p90 (\d+)")
    add("… the same model paged (format 7): index shards loaded, pages read as requests ask"
        + (f", an LRU page cache of {cache[0]} MiB; pages per request median {cache[1]}, p90 {cache[2]}" if cache else ""),
        paged and f"{paged[0]} MiB after {paged[1]} requests (index {paged[2]} MiB)", "≤ 40 MB",
        paged and float(paged[0]) * 1.048576 <= 40)
    paged_ms = find(summary, rf"^\[bench-paged\] recommend 1M x 64 paged: median {num} with its pages loaded; {num} median")
    add("… its recommend, median: with its pages loaded / reading the missing ones from disk",
        paged_ms and f"{paged_ms[0]} {paged_ms[1]} / {paged_ms[2]} {paged_ms[3]}", "≤ 2 ms",
        paged_ms and ms(paged_ms[0], paged_ms[1]) <= 2)
    worker_paged = find(summary, r"^\[bench-memory\] 1M paged \((\d+) pages, page cache (\d+) MiB\) \| index ([\d.]+) MiB \| ([\d.]+) MiB after (\d+) ranked sessions.*?request median ([\d.]+) ms")
    add("Worker on workerd: wasm memory, 1M x 64 paged (clustered embeddings; index, and a page cache"
        + (f" of {worker_paged[1]} MiB" if worker_paged else "") + ")",
        worker_paged and f"{worker_paged[3]} MiB after {worker_paged[4]} ranked sessions (index {worker_paged[2]} MiB; request median {worker_paged[5]} ms)",
        "≤ 40 MB", worker_paged and float(worker_paged[3]) * 1.048576 <= 40)
    if chromium:
        add("Chromium, simd128: 1M median", f"{chromium[3]} {chromium[4]}", "≤ 2 ms",
            ms(chromium[3], chromium[4]) <= 2)
    load = find(summary, rf"^\[bench-node\] Engine.fromShards 100k x 64.*?: median {num}")
    add("Node: shard load 100k x 64 (checksums verified)", load and f"{load[0]} {load[1]}", "≤ 10 ms",
        load and ms(*load) <= 10)
    session = find(summary, rf"^\[bench-node\] session update \+ query vector: median {num}")
    add("Node: session update + query vector", session and f"{session[0]} {session[1]}", "≤ 50 µs",
        session and ms(*session) <= 0.05)
    encoder = find(summary, rf"^\[bench-node\] session encoder forward \+ query vector, 24-click session.*?: median {num}")
    add("Node: session encoder forward + query vector, 24-click session (the most a session holds)",
        encoder and f"{encoder[0]} {encoder[1]}", "≤ 0.15 ms", encoder and ms(*encoder) <= 0.15)
    for wasm, kib in re.findall(r"^\[bench-node(?: relaxed)?\] pkg/(\S+): \d+ bytes, ([\d.]+) KiB gzip",
                                summary, re.MULTILINE):
        add(f"`pkg/{wasm}` gzip", f"{kib} KiB", "≤ 150 KB", float(kib) * 1.024 <= 150)
    for build in ("relaxed-simd", "simd128"):
        load_line = find(summary, rf"^\[bench-workerd\] .*?, {build} build, workerd serve run directly.*\n\[bench-workerd\]\s+requests/s ([\d.]+), p50 (\S+), p99 (\S+) .*?errors: (.*)$")
        add(f"Worker on workerd run directly ({build}), 50 connections: p99 as wrk reports it (corrected for coordinated omission)",
            load_line and f"{load_line[2]} ({load_line[0]} req/s, errors: {load_line[3]})", "≤ 10 ms, no errors",
            load_line and wrk_ms(load_line[2]) <= 10 and load_line[3] == "none")
        # The same server under oha, which reports each request's own time (wrk's percentiles
        # are corrected for coordinated omission; scripts/bench-workerd.mjs says how).
        oha = find(summary, rf"^\[bench-workerd\] .*?, {build} build, workerd serve run directly.*\n.*\n.*\n"
                            r"\[bench-workerd\]\s+as each request took \(oha, no correction\): 50 connections ([\d.]+) req/s, "
                            r"p50 \S+ ms, p99 ([\d.]+) ms, .*?errors: (.*?); one connection [\d.]+ req/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms$")
        add(f"… the same, as each request took (oha, no correction): p99",
            oha and f"{oha[1]} ms at 50 connections ({oha[0]} req/s, errors: {oha[2]}); one connection p50 {oha[3]} ms, p99 {oha[4]} ms",
            "≤ 10 ms, no errors", oha and float(oha[1]) <= 10 and oha[2] == "none")
        # And below saturation: 50 connections at a fixed rate of half that throughput, each
        # request timed from when it was due (the lines indented under the build's header).
        fixed = find(summary, rf"^\[bench-workerd\] .*?, {build} build, workerd serve run directly.*\n(?:\[bench-workerd\]   .*\n)*?"
                              r"\[bench-workerd\]\s+at a fixed rate, half that throughput \(oha -q (\d+) .*?\): ([\d.]+) req/s, "
                              r"p50 ([\d.]+) ms, p99 ([\d.]+) ms, .*?errors: (.*)$")
        add("… the same at a fixed rate of half that throughput (open loop, each request timed from when it was due): p99",
            fixed and f"{fixed[3]} ms at {fixed[0]} req/s over 50 connections (p50 {fixed[2]} ms, errors: {fixed[4]})",
            "≤ 10 ms, no errors", fixed and float(fixed[3]) <= 10 and fixed[4] == "none")
    floor = find(summary, r"^\[bench-workerd\] runtime floor, .*?: 50 connections ([\d.]+) req/s, p50 (\S+), p99 (\S+), errors: .*?; one connection p50 (\S+), p99 (\S+)$")
    mini = find(summary, r"^\[bench-workerd\] .*?, (\S+) build, workerd serve under Miniflare's config.*\n\[bench-workerd\]\s+requests/s ([\d.]+), p50 (\S+), p99 (\S+) ")
    out.append((f"… the same worker under Miniflare's config ({mini[0] if mini else 'default'} build), 50 connections: p99",
                f"{mini[3]} ({mini[1]} req/s)" if mini else NOT_RUN, "(comparison)", "—"))
    out.append(("… a worker answering a fixed JSON body on workerd run directly, same wrk loads (the runtime's floor): p99",
                f"{floor[2]} at 50 connections ({floor[0]} req/s), {floor[4]} at one" if floor else NOT_RUN,
                "(baseline)", "—"))
    floor_oha = find(summary, r"^\[bench-workerd\] runtime floor as each request took \(oha, no correction\): 50 connections ([\d.]+) req/s, p50 \S+ ms, p99 ([\d.]+) ms, .*?; one connection [\d.]+ req/s, p50 \S+ ms, p99 ([\d.]+) ms$")
    out.append(("… the runtime's floor, as each request took (oha): p99",
                f"{floor_oha[1]} ms at 50 connections ({floor_oha[0]} req/s), {floor_oha[2]} ms at one" if floor_oha else NOT_RUN,
                "(baseline)", "—"))
    floor_fixed = find(summary, r"^\[bench-workerd\] runtime floor at a fixed rate, the \S+ worker's \(oha -q (\d+) .*?\): [\d.]+ req/s, p50 \S+ ms, p99 ([\d.]+) ms")
    out.append(("… the runtime's floor at the worker's fixed rate: p99",
                f"{floor_fixed[1]} ms at {floor_fixed[0]} req/s" if floor_fixed else NOT_RUN, "(baseline)", "—"))
    node_floor = find(summary, r"^\[bench-workerd\] load generator's floor, .*?oha -q (\d+) .*?: [\d.]+ req/s, p50 \S+ ms, p99 ([\d.]+) ms")
    out.append(("… Node's http server under the same fixed-rate load (what oha and the machine add): p99",
                f"{node_floor[1]} ms at {node_floor[0]} req/s" if node_floor else NOT_RUN, "(baseline)", "—"))
    cold = find(summary, r"^\[bench-workerd\] (\S+) vs (\S+): .*?cold start ([\d.]+) vs ([\d.]+) ms")
    if cold:
        for build, value in ((cold[0], cold[2]), (cold[1], cold[3])):
            add(f"Worker on workerd run directly ({build}): cold start, 100k model in KV", f"{value} ms", "≤ 50 ms",
                float(value) <= 50)
    else:
        add("Worker on workerd: cold start, 100k model in KV", None, "≤ 50 ms", None)
    train = find(summary, r"^\[bench-train\] ML-100k 100% of users: (\d+) events, train \(tuning included, 1 core\) ([\d.]+) s")
    add("Training ML-100k (one core, tuning included)", train and f"{train[1]} s", "≤ 2 min",
        train and float(train[1]) <= 120)
    growth = find(summary, r"^\[bench-train\] growth: 100% / 25% of ML-100k: ([\d.]+)x events, ([\d.]+)x time")
    add("Training time growth, 4x the events", growth and f"{growth[0]}x events, {growth[1]}x time",
        "linear", None if growth is None else float(growth[1]) <= 1.25 * float(growth[0]))
    million = find(summary, r"^\[bench-train\] 1M-event log: ([\d.]+) min")
    add("Training a 1M-event log (one core)", million and f"{million[0]} min", "≤ 15 min",
        million and float(million[0]) <= 15)
    return out


def table(summary: str, when: str) -> str:
    lines = [
        f"Regenerated from `make bench` (`target/bench/summary.txt`) on {when} by "
        "`scripts/readme-perf.py`; docs/FIGURES.md has the runs behind each figure and what "
        "dominates where one misses.",
        "",
        "| figure | measured | target | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(summary)]
    return "\n".join(lines)


def main():
    summary_path = sys.argv[1] if len(sys.argv) > 1 else "target/bench/summary.txt"
    readme_path = sys.argv[2] if len(sys.argv) > 2 else "README.md"
    summary = open(summary_path, encoding="utf-8").read()
    readme = open(readme_path, encoding="utf-8").read()
    if BEGIN not in readme or END not in readme:
        sys.exit(f"[readme-perf] {readme_path} has no {BEGIN} … {END} markers")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = table(summary, date.today().isoformat())
    open(readme_path, "w", encoding="utf-8").write(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    print(f"[readme-perf] {readme_path}: performance table regenerated from {summary_path}")


if __name__ == "__main__":
    main()
