"""Drift statistics figures on generated data (bench/traces.py): the CUSUM's false alarms and detection delay and
how its threshold was calibrated, Page-Hinkley for comparison, and the output-distribution test's false-positive
rate and power.

    python bench/bench_drift.py            # 1,000 runs per row (a few minutes on 2 cores)
    python bench/bench_drift.py --quick    # 200 runs per row
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

from bench.traces import latency_series, output_lengths, token_outputs
from controlplane.stats.drift import (
    ChangePointConfig,
    DistributionConfig,
    compare_outputs,
    detect,
    output_statistics,
    standardised,
)

BASELINE, SERIES, SHIFT_AT = 500, 500, 100
SHUFFLES = 500


def false_alarms(base: np.ndarray, series: np.ndarray, cfg: ChangePointConfig) -> int:
    """Alarms on an unchanged series, restarting the CUSUM after each (as an operator would after looking)."""
    count = 0
    while series.size:
        alarm = detect(base, series, cfg).alarm_index
        if alarm is None:
            break
        count += 1
        series = series[alarm + 1 :]
    return count


def delay(base: np.ndarray, series: np.ndarray, cfg: ChangePointConfig) -> tuple[float | None, int]:
    """Samples from the shift to the alarm (None: missed), and the false alarms before the shift (with restarts)."""
    offset, early = 0, 0
    while offset < series.size:
        alarm = detect(base, series[offset:], cfg).alarm_index
        if alarm is None:
            return None, early
        if offset + alarm >= SHIFT_AT:
            return float(offset + alarm - SHIFT_AT), early
        early += 1
        offset += alarm + 1
    return None, early


def cusum_row(args: tuple[dict, bool, int, int, int]) -> dict:
    overrides, heavy, baseline_n, runs, seed = args
    cfg = ChangePointConfig(**overrides)
    rng = np.random.default_rng(seed)
    alarms, runs_with_alarm, delays, missed, early = 0, 0, [], 0, 0
    for _ in range(runs):
        base = latency_series(rng, baseline_n, heavy=heavy)
        n = false_alarms(base, latency_series(rng, SERIES, heavy=heavy), cfg)
        alarms += n
        runs_with_alarm += n > 0
        shifted = latency_series(rng, SHIFT_AT + 400, heavy=heavy, shift_sigma=1.0, shift_at=SHIFT_AT)
        d, e = delay(base, shifted, cfg)
        early += e
        if d is None:
            missed += 1
        else:
            delays.append(d)
    return {
        "cfg": cfg,
        "heavy": heavy,
        "baseline": baseline_n,
        "per500": alarms / runs * 500 / SERIES,
        "any": runs_with_alarm / runs,
        "median": float(np.median(delays)) if delays else float("nan"),
        "p90": float(np.percentile(delays, 90)) if delays else float("nan"),
        "missed": missed,
        "runs": runs,
    }


def page_hinkley(u: np.ndarray, delta: float, lam: float) -> np.ndarray:
    """First alarm index per row of ``u`` (runs x samples) for Page-Hinkley (increase), or -1."""
    n = u.shape[1]
    running_mean = np.cumsum(u, axis=1) / np.arange(1, n + 1)
    m = np.cumsum(u - running_mean - delta, axis=1)
    gap = m - np.minimum.accumulate(np.minimum(m, 0.0), axis=1)
    hit = gap > lam
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def ph_comparison(runs: int, seed: int, target_any: float) -> tuple[float, float, float, float]:
    """Page-Hinkley (delta = k = 0.5) with lambda set so that the share of unchanged 500-sample runs with an alarm
    matches the CUSUM's; returns lambda, that share, and PH's median and p90 delay on a 1-sigma shift."""
    rng = np.random.default_rng(seed)
    null, shifted = [], []
    for _ in range(runs):
        base = latency_series(rng, BASELINE)
        null.append(standardised(base, latency_series(rng, SERIES)))
        shifted.append(standardised(base, latency_series(rng, SHIFT_AT + 400, shift_sigma=1.0, shift_at=SHIFT_AT)))
    null_u, shift_u = np.array(null), np.array(shifted)
    lo, hi = 1.0, 100.0
    for _ in range(30):
        lam = (lo + hi) / 2
        share = np.mean(page_hinkley(null_u, 0.5, lam) >= 0)
        lo, hi = (lam, hi) if share > target_any else (lo, lam)
    lam = hi
    share = float(np.mean(page_hinkley(null_u, 0.5, lam) >= 0))
    first = page_hinkley(shift_u, 0.5, lam)
    delays = first[first >= SHIFT_AT] - SHIFT_AT
    return lam, share, float(np.median(delays)), float(np.percentile(delays, 90))


def window(rng: np.random.Generator, n: int, scale: float = 1.0, add: float = 0.0) -> dict[str, np.ndarray]:
    lengths = output_lengths(rng, n, scale=scale)
    if add:
        lengths = np.clip(lengths + round(add), 1, 512)
    return output_statistics(token_outputs(rng, lengths))


def distribution_row(args: tuple[int, int, int, float]) -> dict:
    """One block of runs: each run draws a reference and, per scenario, an independent current window."""
    seed, runs, n, add = args
    rng = np.random.default_rng(seed)
    configs = {
        "ks": DistributionConfig(method="ks"),
        "psi": DistributionConfig(method="psi", permutations=0),  # the chi-square rule (1,000 shuffles x 6,000 tests
        # would take too long here; the permutation test has its own, smaller study below)
    }
    out: dict[str, list] = {}
    for _ in range(runs):
        ref = window(rng, n)
        scenarios = {"unchanged": window(rng, n), "x1.1": window(rng, n, scale=1.1), "+0.1sd": window(rng, n, add=add)}
        for name, cur in scenarios.items():
            for method, cfg in configs.items():
                family = compare_outputs(ref, cur, cfg)
                alone = compare_outputs({"length": ref["length"]}, {"length": cur["length"]}, cfg)
                psi = next(t.psi for t in family.tests if t.name == "length")
                out.setdefault((name, method), []).append((family.verdict == "drift", alone.verdict == "drift", psi))
            out.setdefault((name, "mean"), []).append(cur["length"].mean() / ref["length"].mean() - 1)
    return out


def permutation_row(args: tuple[int, int, int]) -> dict:
    seed, runs, n = args
    rng = np.random.default_rng(seed)
    cfg = DistributionConfig(method="psi", permutations=SHUFFLES, seed=seed)
    hits = {"unchanged": 0, "x1.1": 0}
    for _ in range(runs):
        ref = {"length": window(rng, n)["length"]}
        for name, scale in (("unchanged", 1.0), ("x1.1", 1.1)):
            cur = {"length": window(rng, n, scale=scale)["length"]}
            hits[name] += compare_outputs(ref, cur, cfg).verdict == "drift"
    return hits


def merge(parts: list[dict]) -> dict:
    """Lists are concatenated, counts added."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, list):
                out.setdefault(key, []).extend(value)
            else:
                out[key] = out.get(key, 0) + value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 runs per row instead of 1,000")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    runs = 200 if args.quick else 1000
    started = time.time()
    default = ChangePointConfig()

    rows = [({"target_arl0": a}, heavy, BASELINE) for a in (1000, 2000, 5000, 10000) for heavy in (False, True)]
    rows += [({"family_size": 2}, heavy, BASELINE) for heavy in (False, True)]
    rows += [({}, heavy, b) for b in (100, 200, 2000) for heavy in (False, True)]
    rows += [({"clip_sigma": 3.0}, heavy, BASELINE) for heavy in (False, True)]
    n_out = 1000
    lengths = output_lengths(np.random.default_rng(0), 200_000)
    add = 0.1 * float(lengths.std())
    blocks = max(1, args.jobs * 2)
    with Pool(args.jobs) as pool:
        cusum = pool.map(cusum_row, [(o, h, b, runs, 100 + i) for i, (o, h, b) in enumerate(rows)])
        ph = ph_comparison(runs, 7, next(r["any"] for r in cusum if r["cfg"] == default and not r["heavy"]))
        dist = merge(pool.map(distribution_row, [(200 + i, runs // blocks, n_out, add) for i in range(blocks)]))
        perm_runs = max(blocks, runs // 5)
        perm = merge(pool.map(permutation_row, [(300 + i, perm_runs // blocks, n_out) for i in range(blocks)]))

    print("# Latency change points (controlplane/stats/drift.py): one-sided CUSUM on standardised log-latency")
    print(f"defaults: {default}; h = {default.h:.2f}, k = {default.reference}")
    print(
        f"{runs} runs per row; each run draws a baseline, an unchanged series of {SERIES} samples (false alarms, "
        f"the CUSUM restarted after each) and a series with a 1-sigma shift of log-latency at sample {SHIFT_AT}."
    )
    print("tails: gaussian = log-normal latencies; heavy = Student-t(3) log-latency plus 1% stragglers x3-10")
    print("config | tails | baseline | h | false alarms per 500 | runs with any | median delay | p90 delay | missed")
    for r in cusum:
        changed = {k: v for k, v in vars(r["cfg"]).items() if v != getattr(default, k)} or "defaults"
        print(
            f"{changed} | {'heavy' if r['heavy'] else 'gaussian'} | {r['baseline']} | {r['cfg'].h:.2f} | "
            f"{r['per500']:.3f} | {r['any']:.1%} | {r['median']:.0f} | {r['p90']:.0f} | {r['missed']}/{r['runs']}"
        )
    lam, share, ph_median, ph_p90 = ph
    print(
        f"\nPage-Hinkley (delta 0.5, lambda {lam:.2f} set to the same false-alarm share, {share:.1%} of gaussian "
        f"runs): median delay {ph_median:.0f}, p90 {ph_p90:.0f} samples (its running mean absorbs part of the shift)"
    )

    print(f"\n# Output distribution: {n_out} outputs per window, {len(dist[('unchanged', 'mean')])} runs per row")
    print("statistics: length, distinct_ratio, mean_log_token_id; family-wise alpha 0.05 (Holm); 10 quantile bins")
    print("scenario | mean length change (median) | KS family | KS length alone | PSI (chi2 rule) family | PSI alone")
    for name, label in (("unchanged", "unchanged"), ("x1.1", "lengths x1.1"), ("+0.1sd", f"lengths +{add:.0f} tokens")):
        change = float(np.median(dist[(name, "mean")]))
        cells = []
        for method in ("ks", "psi"):
            results = np.array(dist[(name, method)], dtype=float)
            cells += [f"{results[:, 0].mean():.1%}", f"{results[:, 1].mean():.1%}"]
        print(f"{label} | {change:+.1%} | " + " | ".join(cells))
    psi_null = np.array(dist[("unchanged", "psi")])[:, 2]
    psi_shift = np.array(dist[("x1.1", "psi")])[:, 2]
    print(
        f"PSI of length, unchanged: median {np.median(psi_null):.4f}, 95th pct {np.percentile(psi_null, 95):.4f} "
        f"(chi-square rule at alpha 0.05: {(2 / n_out) * 16.92:.4f}); folklore 0.1 would flag "
        f"{np.mean(psi_null > 0.1):.1%} unchanged and {np.mean(psi_shift > 0.1):.1%} of x1.1 windows"
    )
    total = perm_runs // blocks * blocks
    print(
        f"PSI permutation test (the default for PSI; {SHUFFLES} shuffles, length only, {total} runs): false positives "
        f"{perm['unchanged'] / total:.1%}, power on x1.1 {perm['x1.1'] / total:.1%}"
    )
    print(f"\n(bench run time {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
