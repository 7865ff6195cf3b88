"""Inference worker benchmarks, printed side by side in one run.

    .venv/bin/python bench/bench_worker.py            # full run (a few minutes on 2 cores)
    .venv/bin/python bench/bench_worker.py --quick    # smaller workloads
    .venv/bin/python bench/bench_worker.py --only throughput,memory

Figures: throughput at 32 concurrent requests vs one at a time; continuous vs static batching on mixed lengths;
latency at concurrency 1 with batching on vs off; memory after N sessions created and expired; weight bytes and
held-out perplexity per precision. Requests use ``ignore_eos`` so every run generates exactly the tokens asked for.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m inference serve` runs

from bench._workloads import (
    DEMO,
    WorkerProcess,
    concurrent,
    engine_on,
    http_run,
    sequential,
    table,
    verdict,
    wide_context_model,
)
from inference.corpus import heldout_texts
from inference.stats import release_memory, rss_bytes

MiB = 1 << 20


def bench_throughput(quick: bool, http: bool) -> None:
    n, tokens = (16, 32) if quick else (32, 64)
    engine = engine_on(DEMO, max_batch_size=32)
    concurrent(engine, [8] * 4)  # warm up
    ones, manys = [], []
    for _ in range(2):  # alternate, best of two each, so background load hits both alike
        engine.update_config({"max_batch_size": 1})
        ones.append(sequential(engine, [tokens] * n))
        engine.update_config({"max_batch_size": 32})
        manys.append(concurrent(engine, [tokens] * n))
    engine.stop()
    one, many = (max(runs, key=lambda r: r.tokens_per_s) for runs in (ones, manys))
    rows = [
        ["one at a time (max_batch_size 1)", one.requests, one.tokens, one.seconds, one.tokens_per_s],
        [f"{n} concurrent (max_batch_size 32)", many.requests, many.tokens, many.seconds, many.tokens_per_s],
    ]
    speedup = many.tokens_per_s / one.tokens_per_s
    if http:
        worker = WorkerProcess()
        worker.configure(max_batch_size=1)
        h_one = http_run(worker.url, DEMO.name, [tokens] * n, parallel=False)
        worker.configure(max_batch_size=32)
        h_many = http_run(worker.url, DEMO.name, [tokens] * n, parallel=True)
        worker.stop()
        rows += [
            ["HTTP: one at a time", h_one.requests, h_one.tokens, h_one.seconds, h_one.tokens_per_s],
            [f"HTTP: {n} concurrent", h_many.requests, h_many.tokens, h_many.seconds, h_many.tokens_per_s],
        ]
    table(
        f"Throughput: demo model fp32, {tokens} new tokens per request (engine API, best of 2; HTTP rows: the CLI "
        "worker in a subprocess, one run)",
        ["workload", "requests", "tokens", "seconds", "tokens/s"],
        rows,
    )
    print(f"  speed-up (engine): {speedup:.1f}x  target >= 5x  {verdict(speedup, 5)}")
    if http:
        h_speedup = h_many.tokens_per_s / h_one.tokens_per_s
        print(f"  speed-up (HTTP):   {h_speedup:.1f}x  target >= 5x  {verdict(h_speedup, 5)}")


def bench_continuous(quick: bool, n: int | None = None) -> None:
    n = n or (48 if quick else 128)
    rng = random.Random(0)
    lengths = [rng.randint(8, 256) for _ in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        path = wide_context_model(Path(tmp) / "demo-arch-512")
        engines = {mode: engine_on(path, max_batch_size=16, scheduling=mode) for mode in ("static", "continuous")}
        runs: dict[str, list] = {mode: [] for mode in engines}
        for _ in range(1 if quick else 2):  # alternate, so background load hits both alike
            for mode, engine in engines.items():
                concurrent(engine, [8] * 4)
                runs[mode].append(concurrent(engine, lengths))
        for engine in engines.values():
            engine.stop()
    results = {mode: max(rs, key=lambda r: r.tokens_per_s) for mode, rs in runs.items()}
    rows = [[m, r.requests, r.tokens, r.seconds, r.tokens_per_s, r.p50] for m, r in results.items()]
    table(
        f"Continuous vs static batching: {n} requests, max_tokens uniform in 8..256, max_batch_size 16 "
        "(demo architecture, random weights, 512-token context)",
        ["scheduling", "requests", "tokens", "seconds", "tokens/s", "p50 latency s"],
        rows,
    )
    ratio = results["continuous"].tokens_per_s / results["static"].tokens_per_s
    print(f"  continuous / static: {ratio:.2f}x  target >= 1.5x  {verdict(ratio, 1.5)}")


def bench_latency(quick: bool) -> None:
    n, tokens = (10, 32) if quick else (40, 32)
    configs = {
        "batching off (max_batch_size 1)": {"max_batch_size": 1},
        "batching on (max_batch_size 32, max_wait_ms 0)": {"max_batch_size": 32},
        "batching on, max_wait_ms 5 (for contrast)": {"max_batch_size": 32, "max_wait_ms": 5.0},
    }
    engines = {label: engine_on(DEMO, **cfg) for label, cfg in configs.items()}
    latencies: dict[str, list[float]] = {label: [] for label in configs}
    for engine in engines.values():
        sequential(engine, [8] * 3)
    for _ in range(n):  # interleaved, so background load hits every configuration alike
        for label, engine in engines.items():
            latencies[label] += sequential(engine, [tokens]).latencies
    for engine in engines.values():
        engine.stop()
    p50 = {label: statistics.median(v) for label, v in latencies.items()}
    rows = [[label, len(v), p50[label] * 1000, min(v) * 1000, max(v) * 1000] for label, v in latencies.items()]
    table(
        f"Latency at concurrency 1: demo model fp32, {tokens} new tokens, {n} requests per configuration (interleaved)",
        ["configuration", "requests", "p50 ms", "min ms", "max ms"],
        rows,
    )
    off, on = list(p50.values())[:2]
    change = (on - off) / off
    print(
        f"  batching on vs off: {change:+.1%}  target within 10%  {verdict(abs(change), 0.10, higher_is_better=False)}"
    )


def bench_memory(quick: bool) -> None:
    total = 1_000 if quick else 10_000
    engine = engine_on(DEMO, max_batch_size=64, max_sessions=total * 2, max_session_kv_bytes=64 << 30)
    concurrent(engine, [4] * 64, session_prefix="warm-")
    engine.expire_sessions(idle_s=0)
    release_memory()
    start = rss_bytes()
    t0, peak_kv, peak_rss = time.perf_counter(), 0, 0
    for first in range(0, total, 256):
        count = min(256, total - first)
        concurrent(engine, [4] * count, session_prefix=f"s{first}-")
        peak_kv, peak_rss = max(peak_kv, engine.sessions.kv_bytes), max(peak_rss, rss_bytes())
    created_s = time.perf_counter() - t0
    sessions = len(engine.sessions)
    out = engine.expire_sessions(idle_s=0)
    gc.collect()
    after = rss_bytes()
    engine.stop()
    table(
        f"Memory: {total:,} sessions created through the engine (demo model), then expired",
        ["measure", "value"],
        [
            ["RSS before (MiB)", start / MiB],
            ["sessions held at peak", sessions],
            ["session KV bytes at peak (MiB)", peak_kv / MiB],
            ["KV bytes per session", peak_kv // max(sessions, 1)],
            ["RSS at peak (MiB)", peak_rss / MiB],
            ["expired / freed KV bytes (MiB)", f"{out['expired']:,} / {out['freed_bytes'] / MiB:.1f}"],
            ["RSS after expiry (MiB)", after / MiB],
            ["seconds to create them", created_s],
        ],
    )
    change = (after - start) / start
    print(
        f"  RSS after vs before: {change:+.1%}  target within 5%  {verdict(abs(change), 0.05, higher_is_better=False)}"
    )


def bench_precision(quick: bool) -> None:
    texts = heldout_texts(max_chars=20_000 if quick else 60_000)
    rows, base = [], None
    for precision in ("fp32", "bf16", "int8"):
        engine = engine_on(DEMO, precision=precision, max_batch_size=32)
        info = engine.active_model()
        ppl = engine.perplexity(texts)
        concurrent(engine, [8] * 8)
        speed = concurrent(engine, [32] * 32).tokens_per_s
        engine.stop()
        base = base or (info["weight_bytes"], ppl["perplexity"])
        rows.append([
            precision, info["weight_bytes"], info["weight_bytes"] / base[0], ppl["perplexity"],
            (ppl["perplexity"] - base[1]) / base[1] * 100, ppl["tokens"], speed,
        ])  # fmt: skip
    table(
        "Precision: demo model on CPU, held-out perplexity (python stdlib docstrings), decode at 32 concurrent",
        ["precision", "weight bytes", "vs fp32", "perplexity", "ppl change %", "tokens scored", "tokens/s"],
        rows,
    )


BENCHES = {
    "throughput": lambda a: bench_throughput(a.quick, not a.no_http),
    "continuous": lambda a: bench_continuous(a.quick, a.requests),
    "latency": lambda a: bench_latency(a.quick),
    "memory": lambda a: bench_memory(a.quick),
    "precision": lambda a: bench_precision(a.quick),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP rows of the throughput bench")
    parser.add_argument("--requests", type=int, default=None, help="requests in the continuous-vs-static bench")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, demo model {DEMO.name}")
    for name in args.only.split(","):
        t0 = time.perf_counter()
        BENCHES[name.strip()](args)
        print(f"  ({time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
