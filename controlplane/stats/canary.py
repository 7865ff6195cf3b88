"""Canary against stable: is the canary significantly AND materially worse? (The statistics of the rollout gates.)

Pure numpy/scipy (no Django). Each comparison is one-sided ("the canary is worse") and needs both:

- **significance**: a test of the two samples of the same window rejects "no worse" at ``alpha``;
- **materiality**: the estimated effect exceeds a tolerance a person would care about.

A test alone fails good versions with big samples (any tiny difference is significant) and an effect alone fails
them with small samples (a p95 of 20 requests moves by half under load); both together do neither.

- ``compare_latency``: Mann-Whitney U (``alternative="greater"``: canary slower), as Kayenta's canary judge does,
  plus the Hodges-Lehmann estimate of the canary/stable latency ratio (the median of all pairwise ratios).
- ``compare_error_rates``: Fisher's exact test (one-sided: canary errs more), plus the observed difference of rates.
- ``compare_shares``: expert activation shares per layer; the total variation distance of the share vectors decides
  (with millions of routed tokens a chi-square test rejects anything), the chi-square p-value is reported beside it.
- ``counts_from_report`` / ``window_counts``: per-layer expert counts from a worker's ``expert_activation_shares``
  (cumulative) and the counts of one window, given the counts at its start.

docs/rollouts.md has the defaults and what they were calibrated on; bench/bench_gates.py prints the figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "MAX_PAIRS",
    "ProportionTest",
    "ShareTest",
    "ShiftTest",
    "compare_error_rates",
    "compare_latency",
    "compare_shares",
    "counts_from_report",
    "hodges_lehmann_ratio",
    "total_variation",
    "window_counts",
]

FloatArray = npt.NDArray[np.float64]

# Above this many canary x stable pairs the Hodges-Lehmann median is taken over a fixed random subsample of each
# side (seeded, so that the same window always gives the same figure); 2,000 x 2,000 pairs cost ~50 ms.
MAX_PAIRS = 4_000_000
_FLOOR_S = 1e-6  # a latency of 0 (a clock's resolution) is treated as 1 us, so that ratios stay finite


def _check_level(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _sample(name: str, values: Sequence[float] | FloatArray) -> FloatArray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    return np.maximum(x, _FLOOR_S)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class ShiftTest:
    """Canary latencies against stable's: Mann-Whitney one-sided p-value and the Hodges-Lehmann ratio."""

    n_canary: int
    n_stable: int
    median_canary: float
    median_stable: float
    ratio: float  # Hodges-Lehmann: median over all pairs of canary / stable
    p_value: float
    alpha: float
    max_ratio: float
    worse: bool  # p < alpha and ratio > max_ratio

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def material(self) -> bool:
        return self.ratio > self.max_ratio

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hodges_lehmann_ratio(canary: Sequence[float] | FloatArray, stable: Sequence[float] | FloatArray) -> float:
    """exp(median of log(c_i) - log(s_j) over all pairs): the multiplicative shift that the rank test tests.

    It inverts the Mann-Whitney test (the shift at which U is at its null median), ignores the tails that spikes
    make (unlike a p95), and uses every pair (so it is steadier than a ratio of two medians at 20 requests).
    """
    c, s = np.log(_sample("canary", canary)), np.log(_sample("stable", stable))
    if c.size * s.size > MAX_PAIRS:
        rng = np.random.default_rng(0)
        side = int(math.sqrt(MAX_PAIRS))
        c = rng.choice(c, size=min(c.size, side), replace=False) if c.size > side else c
        s = rng.choice(s, size=min(s.size, side), replace=False) if s.size > side else s
    return float(np.exp(np.median(np.subtract.outer(c, s))))


def compare_latency(
    canary: Sequence[float] | FloatArray,
    stable: Sequence[float] | FloatArray,
    *,
    alpha: float = 0.005,
    max_ratio: float = 1.2,
) -> ShiftTest:
    """Is the canary slower? Mann-Whitney U, one-sided, on the two samples of one window, and the HL ratio."""
    _check_level(alpha)
    if not max_ratio >= 1:
        raise ValueError(f"max_ratio must be at least 1, got {max_ratio!r}")
    c, s = _sample("canary", canary), _sample("stable", stable)
    p = float(stats.mannwhitneyu(c, s, alternative="greater").pvalue)
    ratio = hodges_lehmann_ratio(c, s)
    return ShiftTest(
        n_canary=int(c.size),
        n_stable=int(s.size),
        median_canary=float(np.median(c)),
        median_stable=float(np.median(s)),
        ratio=ratio,
        p_value=p,
        alpha=alpha,
        max_ratio=max_ratio,
        worse=p < alpha and ratio > max_ratio,
    )


@dataclass(frozen=True)
class ProportionTest:
    """Canary error rate against stable's: Fisher's exact one-sided p-value and the difference of rates."""

    errors_canary: int
    n_canary: int
    errors_stable: int
    n_stable: int
    rate_canary: float
    rate_stable: float
    delta: float  # rate_canary - rate_stable
    p_value: float
    alpha: float
    max_delta: float
    worse: bool  # p < alpha and delta > max_delta

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_error_rates(
    errors_canary: int,
    n_canary: int,
    errors_stable: int,
    n_stable: int,
    *,
    alpha: float = 0.005,
    max_delta: float = 0.02,
) -> ProportionTest:
    """Does the canary err more? Fisher's exact test on the 2x2 table, one-sided, and the difference of rates.

    Fisher's test is exact at any count (error counts are often 0-3, where a normal approximation is wrong) and
    scipy computes it in about a millisecond even for millions of requests, so no switch to a z-test is needed;
    at large counts the two agree.
    """
    _check_level(alpha)
    for name, k, n in (("canary", errors_canary, n_canary), ("stable", errors_stable, n_stable)):
        if n <= 0 or not 0 <= k <= n:
            raise ValueError(f"{name}: need 0 <= errors <= requests and requests > 0, got {k} of {n}")
    if not 0 <= max_delta <= 1:
        raise ValueError(f"max_delta must be in [0, 1], got {max_delta!r}")
    table = np.array([[errors_canary, n_canary - errors_canary], [errors_stable, n_stable - errors_stable]])
    p = float(stats.fisher_exact(table, alternative="greater").pvalue)
    rate_c, rate_s = errors_canary / n_canary, errors_stable / n_stable
    delta = rate_c - rate_s
    return ProportionTest(
        errors_canary=errors_canary,
        n_canary=n_canary,
        errors_stable=errors_stable,
        n_stable=n_stable,
        rate_canary=rate_c,
        rate_stable=rate_s,
        delta=delta,
        p_value=p,
        alpha=alpha,
        max_delta=max_delta,
        worse=p < alpha and delta > max_delta,
    )


# ---------------------------------------------------------------------------------------------------------------
# Expert activation shares
# ---------------------------------------------------------------------------------------------------------------


def _counts(name: str, values: Sequence[Sequence[float]] | FloatArray) -> FloatArray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"{name} must be counts per [layer, expert] with at least 2 experts, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"{name} must be finite, non-negative counts")
    return x


def counts_from_report(report: Mapping[str, Any] | None) -> FloatArray | None:
    """Counts per [layer, expert] from a worker's ``expert_activation_shares`` (per-layer shares and the total
    token-slots routed, cumulative since the worker started or its counters were reset); None for a dense model."""
    if not report or not report.get("layers"):
        return None
    shares = np.asarray(report["layers"], dtype=np.float64)
    if shares.ndim != 2:
        raise ValueError(f"expert_activation_shares.layers must be [layer][expert], got shape {shares.shape}")
    per_layer = float(report.get("tokens_routed", 0)) / shares.shape[0]
    counts: FloatArray = np.rint(shares * per_layer)
    return counts


def window_counts(now: FloatArray, start: FloatArray | None) -> FloatArray:
    """The counts of one window: ``now - start`` for cumulative counters; ``now`` when there is no start or the
    worker's counters went back (it restarted or reset them, so everything it counted is inside the window)."""
    if start is None or start.shape != now.shape or np.any(now < start):
        return now
    return now - start


def total_variation(p: FloatArray, q: FloatArray) -> float:
    """Half the L1 distance of two share vectors: the share of token-slots that would have to move expert."""
    return float(0.5 * np.abs(p - q).sum())


@dataclass(frozen=True)
class ShareTest:
    """Expert shares of the canary against stable's: the largest per-layer total variation distance decides."""

    layers: int
    experts: int
    tokens_canary: float  # token-slots routed in the window, per layer
    tokens_stable: float
    distance: float  # max over layers of the total variation distance
    layer: int  # where it is largest
    distances: list[float]
    shares_canary: list[float]  # that layer's shares
    shares_stable: list[float]
    p_value: float | None  # chi-square test of that layer's 2 x experts table (reported; not what decides)
    max_distance: float
    worse: bool  # distance > max_distance

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_shares(
    canary: Sequence[Sequence[float]] | FloatArray,
    stable: Sequence[Sequence[float]] | FloatArray,
    *,
    max_distance: float = 0.2,
) -> ShareTest:
    """Are the canary's tokens routed to other experts than stable's? Per layer, the total variation distance of
    the share vectors; the largest decides against ``max_distance``.

    The effect size decides, not a p-value: counts are token-slots (millions, and correlated within a request), so
    a chi-square test rejects two healthy workers on slightly different traffic. ``max_distance`` is calibrated on
    such pairs (bench/bench_gates.py). Counts are of one window on both sides (see ``window_counts``).
    """
    if not 0 < max_distance <= 1:
        raise ValueError(f"max_distance must be in (0, 1], got {max_distance!r}")
    c, s = _counts("canary", canary), _counts("stable", stable)
    if c.shape != s.shape:
        raise ValueError(f"canary counts have shape {c.shape}, stable counts {s.shape}: not the same model")
    totals_c, totals_s = c.sum(axis=1), s.sum(axis=1)
    if np.any(totals_c <= 0) or np.any(totals_s <= 0):
        raise ValueError("every layer needs routed tokens on both sides")
    pc, ps = c / totals_c[:, None], s / totals_s[:, None]
    distances = [total_variation(pc[i], ps[i]) for i in range(c.shape[0])]
    layer = int(np.argmax(distances))
    table = np.vstack([c[layer], s[layer]])
    table = table[:, table.sum(axis=0) > 0]
    p_value = float(stats.chi2_contingency(table).pvalue) if table.shape[1] > 1 else 1.0
    return ShareTest(
        layers=int(c.shape[0]),
        experts=int(c.shape[1]),
        tokens_canary=float(totals_c.mean()),
        tokens_stable=float(totals_s.mean()),
        distance=distances[layer],
        layer=layer,
        distances=[round(d, 6) for d in distances],
        shares_canary=[round(float(v), 6) for v in pc[layer]],
        shares_stable=[round(float(v), 6) for v in ps[layer]],
        p_value=_finite(p_value),
        max_distance=max_distance,
        worse=distances[layer] > max_distance,
    )
