"""Leak detector figures on generated 1 Hz memory traces (bench/traces.py): time to detect 10, 4 and 1 MB/min leaks,
false alarms on 24-hour stable traces, time-to-OOM error, and the cost per update.

    python bench/bench_leak.py            # full run (a few minutes on 2 cores)
    python bench/bench_leak.py --quick    # fewer seeds and shorter stable traces

Seeds differ from the ones the defaults were tuned on (stable 1000+ and 5000+, leak 2000+ and 6000+), so these are
held-out figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.traces import GB, STABLE_KINDS, memory_trace
from controlplane.stats.leak import LeakConfig, LeakDetector, LeakState, evaluations

CONFIG = LeakConfig(load_bytes_per_unit=1.0)  # the traces' load series is KV-cache bytes
TARGETS = {10.0: 10, 4.0: 20, 1.0: 45}  # MB/min -> minutes
ONSET_S = 3600.0
LIMIT = 9 * GB  # the traces sit at about 6 GB: 3 GB of room
STABLE_SEED, LEAK_SEED = 7000, 8000


def leak_run(args: tuple[str, float, int]) -> dict:
    background, rate, seed = args
    trace = memory_trace(background, 2.5, seed, leak_mb_per_min=rate, leak_start_s=ONSET_S, limit=LIMIT)
    checks = evaluations(trace.times, trace.values, trace.loads, trace.limit, CONFIG)
    early = sum(c.state == LeakState.LEAK for c in checks if c.time < ONSET_S)
    first = next((c for c in checks if c.state == LeakState.LEAK and c.time >= ONSET_S), None)
    out = {"background": background, "rate": rate, "seed": seed, "early": early, "delay": None}
    out |= {"err": [None, None], "covered": [None, None]}
    if first is None:
        return out
    out["delay"] = (first.time - ONSET_S) / 60.0
    for i, when in enumerate((first.time, first.time + 600.0)):
        check = next((c for c in checks if c.time >= when), None)
        if check is not None and check.time_to_oom_s is not None:
            truth = trace.true_time_to_oom(check.time)
            out["err"][i] = check.time_to_oom_s / truth - 1.0
            low, high = check.time_to_oom_range_s
            out["covered"][i] = (low or 0.0) <= truth <= (high if high is not None else np.inf)
    return out


def stable_run(args: tuple[str, int, float, bool]) -> dict:
    kind, seed, hours, by_sessions = args
    trace = memory_trace(kind, hours, seed)
    loads = trace.sessions if by_sessions else trace.loads
    config = LeakConfig() if by_sessions else CONFIG
    checks = evaluations(trace.times, trace.values, loads, None, config)
    states = [c.state for c in checks]
    episodes = sum(1 for a, b in zip([LeakState.OK, *states], states, strict=False) if b == LeakState.LEAK != a)
    return {
        "kind": kind + (" (load = session count, fitted)" if by_sessions else ""),
        "hours": hours,
        "leak": states.count(LeakState.LEAK),
        "episodes": episodes,
        "suspect": states.count(LeakState.SUSPECT),
    }


def cost(hours: float) -> tuple[float, float, int]:
    trace = memory_trace("mixed", hours, 7)
    detector = LeakDetector(CONFIG)
    rows = list(zip(trace.times.tolist(), trace.values.tolist(), trace.loads.tolist(), strict=True))
    start = time.process_time()
    for t, v, load in rows:
        detector.update(t, v, load)
    per_update = (time.process_time() - start) / len(rows)
    data = [(r[0], r[1], r[2]) for r in rows[: 3600 * 2]]
    detector = LeakDetector(CONFIG)
    for t, v, load in data[:-1]:
        detector.update(t, v, load)
    start = time.process_time()
    repeats = 50
    for _ in range(repeats):
        detector._check(data[-1][0])
    per_check = (time.process_time() - start) / repeats
    return per_update * 1e6, per_check * 1e3, detector._blocks.maxlen


def fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def print_detection(results: list[dict], background: str, description: str) -> None:
    print(f"\n## Time to detect, background {background!r}: {description}")
    print(f"(leak starts after 60 min of history; limit {LIMIT / GB:.0f} GB, about 3 GB above the trace)")
    print("rate MB/min | target min | seeds | detected in target | median | p90 | max | leak before onset")
    for rate, target in TARGETS.items():
        rows = [r for r in results if r["rate"] == rate and r["background"] == background]
        delays = np.array([r["delay"] if r["delay"] is not None else np.inf for r in rows])
        inside = int(np.sum(delays <= target))
        p90 = float(np.percentile(delays, 90))
        print(
            f"{rate:11g} | {target:10d} | {len(rows):5d} | {inside:>12d}/{len(rows):<5d} | {np.median(delays):6.0f} | "
            f"{p90:3.0f} | {delays.max():3.0f} | {sum(r['early'] for r in rows)}"
        )
    print("\n time-to-OOM error (projected / true - 1), |error|: median, max, share within 20%; and the share of")
    print(" checks whose time_to_oom_range_s (from the slope's 95% interval) holds the true time")
    print("rate MB/min | at detection                           | 10 min after detection")
    for rate in TARGETS:
        rows = [r for r in results if r["rate"] == rate and r["background"] == background]
        cells = []
        for i in (0, 1):
            errs = np.abs([r["err"][i] for r in rows if r["err"][i] is not None])
            covered = [r["covered"][i] for r in rows if r["covered"][i] is not None]
            if errs.size == 0:
                cells.append("-")
                continue
            cells.append(
                f"{np.median(errs):5.1%} {errs.max():6.1%} {np.mean(errs <= 0.2):5.0%} of {errs.size:<3d}"
                f" range {np.mean(covered):4.0%}"
            )
        print(f"{rate:11g} | {cells[0]:38s} | {cells[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 seeds per leak rate, 1 x 6 h per stable kind")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    leak_seeds = 5 if args.quick else 20
    stable_seeds, hours = (1, 6.0) if args.quick else (5, 24.0)
    started = time.time()
    print("# Leak detector (controlplane/stats/leak.py), defaults:", CONFIG)
    leak_jobs = [(bg, r, LEAK_SEED + s) for bg in ("steps", "mixed") for r in TARGETS for s in range(leak_seeds)]
    stable_jobs = [(k, STABLE_SEED + s, hours, False) for k in STABLE_KINDS for s in range(stable_seeds)]
    stable_jobs += [("load", STABLE_SEED + s, hours, True) for s in range(stable_seeds)]
    with Pool(args.jobs) as pool:
        leaks = pool.map(leak_run, leak_jobs)
        stable = pool.map(stable_run, stable_jobs)
    print_detection(leaks, "steps", "noise + GC saw-tooth + allocator steps")
    print_detection(leaks, "mixed", "the same + KV-cache load + bounded random walk")

    print(f"\n## False alarms on stable traces ({stable_seeds} seed(s) x {hours:g} h per kind)")
    print("kind | traces | hours | checks in leak | leak episodes | checks in suspect")
    for kind in dict.fromkeys(r["kind"] for r in stable):
        rows = [r for r in stable if r["kind"] == kind]
        total = sum(r["hours"] for r in rows)
        print(
            f"{kind} | {len(rows)} | {total:g} | {sum(r['leak'] for r in rows)} | "
            f"{sum(r['episodes'] for r in rows)} | {sum(r['suspect'] for r in rows)}"
        )

    per_update, per_check, blocks = cost(2.0 if args.quick else 6.0)
    print("\n## Cost (CPU time, one core)")
    print(f"per update, amortised (a check every {CONFIG.eval_every_s:g} s): {per_update:.1f} us")
    print(f"per check (3 windows, {blocks} blocks of history): {per_check:.2f} ms")
    print(f"state per series: {blocks} blocks x 5 floats + one open block of samples")
    print(f"\n(bench run time {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
