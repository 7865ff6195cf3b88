"""Rollout gate figures (controlplane/stats/canary.py, controlplane/rollouts/gates.py): how often a GOOD canary is
rolled back by chance and how often a bad one is caught, the new gates beside the old p95-ratio rule.

- Latency and TTFT: simulated windows. Stable and canary requests of one window share its load spikes (a busy
  machine slows both); a good canary has stable's latency distribution, a slow one 1.5x it.
- Error rate: the same windows with 1% errors (3x during spikes); a bad canary has 5 points more.
- Expert shares: the bundled demo model (inference/demo/moe-demo-v1) loaded in-process with the worker's own loading
  code; real forward passes over held-out stdlib docstrings count token-slots per [layer, expert], with neutral
  router weights and with weights that starve six of eight experts.

    python bench/bench_gates.py            # 200 canaries per row as the issue asks (about 2 minutes on 2 cores)
    python bench/bench_gates.py --more     # and 1,000 more per row to tighten the rates (about 4 minutes)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.stats.canary import compare_error_rates, compare_latency, compare_shares

ALPHA, MAX_RATIO, MAX_DELTA, MAX_SHIFT, MIN_TOKENS = 0.005, 1.2, 0.02, 0.2, 2000  # the gates' defaults
OLD_P95_RATIO, OLD_DELTA = 1.5, 0.02
SIZES = [(20, 180), (30, 270), (50, 450), (100, 900)]  # canary, stable requests: a 10% step
DEMO = Path(__file__).resolve().parent.parent / "inference" / "demo" / "moe-demo-v1"


# --- simulated traffic -------------------------------------------------------------------------------------------
def spikes(rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Load spikes of one window: (start, end, slow-down factor); about 1.5 per window, 5-30% of it, x1.5-4."""
    out = []
    for _ in range(rng.poisson(1.5)):
        start = rng.uniform(0, 1)
        out.append((start, start + rng.uniform(0.05, 0.3), rng.uniform(1.5, 4.0)))
    return out


def requests(rng: np.random.Generator, n: int, window: list, slower: float = 1.0, error_rate: float = 0.01) -> tuple:
    """Latency (median 200 ms, log-normal sigma 0.35), TTFT (a fifth to a third of it) and errors of ``n``
    requests spread over the window; spikes slow both sides alike and triple the error rate while they last."""
    at = rng.uniform(0, 1, n)
    factor = np.ones(n)
    for start, end, k in window:
        factor[(at >= start) & (at < end)] *= k
    latency = 0.2 * np.exp(rng.normal(0, 0.35, n)) * factor * slower
    ttft = latency * rng.uniform(0.2, 0.33, n)
    errors = int((rng.uniform(0, 1, n) < error_rate * np.where(factor > 1, 3, 1)).sum())
    return latency, ttft, errors


def p95_ratio(canary: np.ndarray, stable: np.ndarray) -> float:
    return float(np.percentile(canary, 95) / np.percentile(stable, 95))


def traffic_trial(seed: int, n_c: int, n_s: int, slower: float, extra_errors: float) -> dict[str, bool]:
    rng = np.random.default_rng(seed)
    window = spikes(rng)
    lat_s, ttft_s, err_s = requests(rng, n_s, window)
    lat_c, ttft_c, err_c = requests(rng, n_c, window, slower, 0.01 + extra_errors)
    latency = compare_latency(lat_c, lat_s, alpha=ALPHA, max_ratio=MAX_RATIO).worse
    ttft = compare_latency(ttft_c, ttft_s, alpha=ALPHA, max_ratio=MAX_RATIO).worse
    errors = compare_error_rates(err_c, n_c, err_s, n_s, alpha=ALPHA, max_delta=MAX_DELTA).worse
    old_latency = p95_ratio(lat_c, lat_s) > OLD_P95_RATIO
    old_ttft = p95_ratio(ttft_c, ttft_s) > OLD_P95_RATIO
    old_errors = err_c / n_c - err_s / n_s > OLD_DELTA
    return {
        "latency": latency,
        "ttft": ttft,
        "errors": errors,
        "any": latency or ttft or errors,
        "old latency": old_latency,
        "old ttft": old_ttft,
        "old errors": old_errors,
        "old any": old_latency or old_ttft or old_errors,
    }


def rates(runs: int, n_c: int, n_s: int, slower: float = 1.0, extra_errors: float = 0.0, base: int = 0) -> dict:
    trials = [traffic_trial(base + i, n_c, n_s, slower, extra_errors) for i in range(runs)]
    return {key: sum(t[key] for t in trials) / runs for key in trials[0]}


def traffic_section(runs: int, base: int) -> None:
    print(f"\n## Traffic gates, {runs} simulated canaries per row (seeds {base}..{base + runs - 1})")
    print(
        f"new: one-sided test p < {ALPHA} AND effect beyond the tolerance (HL ratio > {MAX_RATIO}, error delta > "
        f"{MAX_DELTA}); old: p95 ratio > {OLD_P95_RATIO}, error delta > {OLD_DELTA}"
    )
    print("GOOD canaries (same distributions as stable): false rollbacks")
    print(
        "canary/stable requests | latency new | ttft new | errors new | any gate new || latency old | ttft old | "
        "errors old | any gate old"
    )
    for n_c, n_s in SIZES:
        r = rates(runs, n_c, n_s, base=base)
        print(
            f"{n_c:>4} / {n_s:<4} | {r['latency']:6.1%} | {r['ttft']:6.1%} | {r['errors']:6.1%} | {r['any']:6.1%} || "
            f"{r['old latency']:6.1%} | {r['old ttft']:6.1%} | {r['old errors']:6.1%} | {r['old any']:6.1%}"
        )
    print("SLOW canaries (latency and TTFT x1.5): detection")
    print("canary/stable requests | latency new | ttft new | either new || latency old | ttft old | either old")
    for n_c, n_s in SIZES:
        r = rates(runs, n_c, n_s, slower=1.5, base=base + 10**6)
        either_new = max(r["latency"], r["ttft"])
        either_old = max(r["old latency"], r["old ttft"])
        print(
            f"{n_c:>4} / {n_s:<4} | {r['latency']:6.1%} | {r['ttft']:6.1%} | {either_new:6.1%} || "
            f"{r['old latency']:6.1%} | {r['old ttft']:6.1%} | {either_old:6.1%}"
        )
    print("ERRING canaries (+5 points: 6% against 1%, both x3 during spikes): detection")
    print("canary/stable requests | error gate new | error gate old")
    for n_c, n_s in [*SIZES, (200, 1800), (500, 4500)]:
        r = rates(runs, n_c, n_s, extra_errors=0.05, base=base + 2 * 10**6)
        print(f"{n_c:>4} / {n_s:<4} | {r['errors']:6.1%} | {r['old errors']:6.1%}")


# --- expert shares on the demo model -----------------------------------------------------------------------------
def demo_runner():  # torch and the worker code are imported only when this section runs
    from inference.loading import LoadProgress, load_runner

    return load_runner(str(DEMO), "fp32", "cpu", None, None, LoadProgress())


def expert_counts_per_doc(runner, weights: list[float] | None, docs: list[str]) -> np.ndarray:
    """[doc, layer, expert] token-slots of one real forward pass per document (its first 128 tokens)."""
    import torch

    runner.set_router_weights(weights)
    model = runner.model
    out = []
    with torch.inference_mode():
        for text in docs:
            ids = runner.tokenizer.encode(text)[:128]
            model.reset_expert_counts()
            model(torch.tensor([ids]), count=True)
            out.append(model.expert_counts().numpy().astype(np.float64))
    return np.stack(out)


def expert_section(runs: int) -> None:
    from inference.corpus import gather

    docs = gather()[1]
    docs = [d for d in docs if len(d.text) >= 80][:400]
    texts = [d.text for d in docs]
    started = time.process_time()
    runner = demo_runner()
    neutral = expert_counts_per_doc(runner, None, texts)
    starve_a = expert_counts_per_doc(runner, [1, 0, 0, 0, 0, 0, 0, 1], texts)
    starve_b = expert_counts_per_doc(runner, [0, 0, 0, 0, 0, 0, 1, 1], texts)
    mild = expert_counts_per_doc(runner, [1, 1, 1, 1, 1, 1, 0.5, 0.5], texts)
    rebalance = expert_counts_per_doc(runner, [1, 1.5, 1, 1, 1, 1, 1, 0.5], texts)  # docs/rollouts.md's example
    print(
        f"\n## Expert-share gate on the demo model ({neutral.shape[1]} layers x {neutral.shape[2]} experts, top-2), "
        f"{len(texts)} held-out docstrings, first 128 tokens each, one forward pass each ({time.process_time() - started:.0f} s CPU)"
    )
    print(
        f"max_expert_shift {MAX_SHIFT} (total variation, largest layer); min_routed_tokens {MIN_TOKENS}; "
        f"{runs} windows per row"
    )
    # shifted traffic: the canary's documents come from other stdlib modules than stable's
    by_source = sorted(range(len(docs)), key=lambda i: docs[i].source)
    half = len(by_source) // 2
    print("canary | canary/stable docs | TV median | TV p99 | TV max | flagged | chi-square p < 0.01 | skipped")
    for label, canary_counts, n_c, n_s, shifted in [
        ("good: neutral, other prompts", neutral, 20, 180, False),
        ("good: neutral, other prompts", neutral, 10, 90, False),
        ("good: neutral, other modules", neutral, 20, 180, True),
        ("starve [1,0,0,0,0,0,0,1]", starve_a, 20, 180, False),
        ("starve [1,0,0,0,0,0,0,1]", starve_a, 10, 90, False),
        ("starve [0,0,0,0,0,0,1,1]", starve_b, 20, 180, False),
        ("mild [1,1,1,1,1,1,.5,.5]", mild, 20, 180, False),
        ("rebalance [1,1.5,1,1,1,1,1,.5]", rebalance, 20, 180, False),
    ]:
        rng = np.random.default_rng(7)
        distances, flagged, chi, skipped = [], 0, 0, 0
        for _ in range(runs):
            if shifted:
                c_idx = rng.choice(by_source[:half], n_c, replace=False)
                s_idx = rng.choice(by_source[half:], min(n_s, len(by_source) - half), replace=False)
            else:
                order = rng.permutation(len(texts))
                c_idx, s_idx = order[:n_c], order[n_c : n_c + n_s]
            c, s = canary_counts[c_idx].sum(axis=0), neutral[s_idx].sum(axis=0)
            if min(c.sum(axis=1).min(), s.sum(axis=1).min()) < MIN_TOKENS:
                skipped += 1
                continue
            test = compare_shares(c, s, max_distance=MAX_SHIFT)
            distances.append(test.distance)
            flagged += test.worse
            chi += test.p_value is not None and test.p_value < 0.01
        judged = max(len(distances), 1)
        d = np.array(distances or [np.nan])
        print(
            f"{label} | {n_c} / {n_s} | {np.median(d):.3f} | {np.percentile(d, 99):.3f} | {d.max():.3f} | "
            f"{flagged}/{judged} ({flagged / judged:.1%}) | {chi / judged:.0%} | {skipped}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--more", action="store_true", help="also 1,000 more canaries per row")
    args = parser.parse_args()
    started = time.time()
    traffic_section(200, base=0)
    if args.more:
        traffic_section(1000, base=10_000)
    expert_section(200)
    print(f"\n(bench run time {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
