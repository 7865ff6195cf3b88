"""Robust trend and scale statistics shared by the leak detector and the drift checks (numpy and scipy only).

- ``mann_kendall``: the Mann-Kendall trend test (tie-corrected; exact null distribution for small samples).
- ``theil_sen``: the Theil-Sen slope with Sen's rank-based confidence interval.
- ``robust_scale``: median and MAD-based standard deviation, with a floor so that flat data does not divide by zero.
- ``huber_fit``: a linear least-squares fit that down-weights outliers (iteratively reweighted, Huber weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from scipy.special import erfinv

__all__ = ["MannKendall", "TheilSen", "huber_fit", "mann_kendall", "robust_scale", "theil_sen"]

MAD_TO_SD = 1.482602218505602
"""The factor that turns a median absolute deviation into a standard deviation for normal data."""
_EXACT_MAX_N = 10


@dataclass(frozen=True)
class MannKendall:
    """The Mann-Kendall statistic S (concordant minus discordant pairs), its z-score and one-sided p-value."""

    s: float
    z: float
    p_value: float
    """P(S >= observed) under no trend (for an increasing trend); use ``1 - p`` territory for decreasing ones."""
    n: int


@dataclass(frozen=True)
class TheilSen:
    slope: float
    intercept: float
    low: float
    high: float


@lru_cache(maxsize=32)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, k=1)
    return i.astype(np.int32), j.astype(np.int32)


def _pairwise(values: np.ndarray) -> np.ndarray:
    """Differences ``values[j] - values[i]`` for all i < j, as a flat array."""
    i, j = _pairs(values.size)
    diffs: np.ndarray = values[j] - values[i]
    return diffs


def _tie_term(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    counts = counts[counts > 1]
    return float(np.sum(counts * (counts - 1) * (2 * counts + 5)))


@cache
def _exact_upper_tail(n: int) -> tuple[float, ...]:
    """P(S >= s) for s = -N..N (N = n(n-1)/2) under no trend and no ties, from the Mahonian numbers."""
    counts = np.array([1.0])
    for k in range(2, n + 1):  # inversions of permutations of k items: convolve with k ones
        counts = np.convolve(counts, np.ones(k))
    probs = counts / counts.sum()  # index = number of inversions; S = N - 2 * inversions
    tail = np.cumsum(probs)  # P(inversions <= i) = P(S >= N - 2i)
    pairs = n * (n - 1) // 2
    return tuple(float(tail[(pairs - s) // 2]) for s in range(-pairs, pairs + 1))


def _strata(n: int, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Index pairs (i < j) within the same group, and the group sizes."""
    i, j = _pairs(n)
    if groups is None:
        return i, j, [n]
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have one label per value ({n}), got shape {groups.shape}")
    same = groups[i] == groups[j]
    return i[same], j[same], np.unique(groups, return_counts=True)[1].tolist()


def _variance(values: np.ndarray, groups: np.ndarray | None) -> float:
    """Null variance of S: the sum over groups of the tie-corrected Mann-Kendall variance."""
    parts = [values] if groups is None else [values[groups == g] for g in np.unique(groups)]
    total = 0.0
    for part in parts:
        n = part.size
        total += (n * (n - 1) * (2 * n + 5) - _tie_term(part)) / 18.0
    return total


def mann_kendall(values: np.ndarray, groups: np.ndarray | None = None) -> MannKendall:
    """Mann-Kendall test for an increasing trend in ``values`` (in time order).

    With ``groups`` (a label per value), only pairs within a group count and S and its variance are summed over the
    groups (the stratified test of Hirsch et al., 1982): a level shift between groups is not a trend. Exact for one
    group of n <= 10 without ties; otherwise the normal approximation with the tie-corrected variance and a
    continuity correction.
    """
    y = np.asarray(values, dtype=float)
    n = y.size
    if n < 3:
        raise ValueError(f"Mann-Kendall needs at least 3 values, got {n}")
    i, j, sizes = _strata(n, groups)
    s = float(np.sum(np.sign(y[j] - y[i])))
    var = _variance(y, None if groups is None else np.asarray(groups))
    z = (s - math.copysign(1.0, s)) / math.sqrt(var) if s and var > 0 else 0.0
    if len(sizes) == 1 and n <= _EXACT_MAX_N and np.unique(y).size == n:
        pairs = n * (n - 1) // 2
        p = _exact_upper_tail(n)[int(s) + pairs]
    else:
        p = 0.5 * math.erfc(z / math.sqrt(2.0))
    return MannKendall(s=s, z=z, p_value=p, n=n)


def theil_sen(x: np.ndarray, y: np.ndarray, confidence: float = 0.95, groups: np.ndarray | None = None) -> TheilSen:
    """Median of pairwise slopes, with Sen's distribution-free confidence interval at ``confidence``.

    With ``groups``, only pairs within a group count (the slope of a series with level shifts between groups).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    i, j, _ = _strata(y.size, groups)
    dx = x[j] - x[i]
    keep = dx != 0
    slopes = np.sort((y[j] - y[i])[keep] / dx[keep])
    if slopes.size == 0:
        raise ValueError("Theil-Sen needs at least two distinct x values in one group")
    slope = float(np.median(slopes))
    intercept = float(np.median(y - slope * x))
    var = _variance(y, None if groups is None else np.asarray(groups))
    z = math.sqrt(2.0) * float(erfinv(confidence))
    reach = z * math.sqrt(max(var, 0.0))
    lo = int(np.clip(np.floor((slopes.size - reach) / 2.0), 0, slopes.size - 1))
    hi = int(np.clip(np.ceil((slopes.size + reach) / 2.0), 0, slopes.size - 1))
    return TheilSen(slope=slope, intercept=intercept, low=float(slopes[lo]), high=float(slopes[hi]))


def robust_scale(values: np.ndarray, floor: float = 0.0) -> tuple[float, float]:
    """``(median, 1.4826 * MAD)``; the scale is at least ``floor`` (and positive when ``floor`` is)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("robust_scale needs at least one value")
    med = float(np.median(x))
    return med, max(MAD_TO_SD * float(np.median(np.abs(x - med))), floor)


def huber_fit(design: np.ndarray, y: np.ndarray, c: float = 1.345, iterations: int = 6) -> np.ndarray:
    """Coefficients of ``y ~ design`` by iteratively reweighted least squares with Huber weights (tuning ``c``)."""
    X = np.asarray(design, dtype=float)
    y = np.asarray(y, dtype=float)
    beta: np.ndarray = np.linalg.lstsq(X, y, rcond=None)[0]
    for _ in range(iterations):
        resid = y - X @ beta
        _, scale = robust_scale(resid)
        if scale == 0.0:
            break
        u = np.abs(resid) / (c * scale)
        w = np.sqrt(np.where(u <= 1.0, 1.0, 1.0 / np.maximum(u, 1e-12)))
        beta = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)[0]
    return beta
