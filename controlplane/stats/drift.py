"""Drift statistics: latency change points, output-distribution tests and the golden-set quality check.

Pure numpy/scipy (no Django), so that a scheduled job or a test can call them directly. docs/statistics.md has the
methods, how the thresholds were calibrated and the measured figures (bench/bench_drift.py prints them).

- ``ChangePointDetector`` / ``detect``: a one-sided CUSUM on robustly standardised log-latency against a baseline
  window (the streaming and the batch form).
- ``output_statistics`` / ``compare_outputs``: two-sample tests (Kolmogorov-Smirnov or PSI with a calibrated
  threshold) of output lengths and token statistics against a reference window, Holm-corrected across statistics.
- ``quality_check``: a golden-set run against its baseline (agreement with the references, perplexity ratio).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import optimize, stats

from .trends import robust_scale

__all__ = [
    "ChangePointConfig",
    "ChangePointDetector",
    "ChangePointResult",
    "ChangePointState",
    "DistributionConfig",
    "DistributionResult",
    "Histogram",
    "QualityConfig",
    "QualityResult",
    "SampleSummary",
    "StatisticTest",
    "Verdict",
    "agreement",
    "compare_outputs",
    "cusum_threshold",
    "detect",
    "holm",
    "output_statistics",
    "perplexity",
    "quality_check",
    "standardised",
]


class Verdict(StrEnum):
    """The same values as ``controlplane.choices.DriftVerdict`` (ok, drift, inconclusive)."""

    OK = "ok"
    DRIFT = "drift"
    INCONCLUSIVE = "inconclusive"


def _check(cls: str, checks: list[tuple[str, bool, str, object]]) -> None:
    for name, ok, bound, value in checks:
        if not ok:
            raise ValueError(f"{cls}.{name} must be {bound}, got {value!r}")


def _array(name: str, values: Sequence[float] | np.ndarray, positive: bool = False) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {x.shape}")
    bad = ~np.isfinite(x) | ((x <= 0) if positive else False)
    if np.any(bad):
        what = "NaN, infinite or non-positive" if positive else "NaN or infinite"
        raise ValueError(f"{name} contain {np.count_nonzero(bad)} {what} value(s), first at index {np.argmax(bad)}")
    return x


# ---------------------------------------------------------------------------------------------------------------
# Latency change points
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePointConfig:
    """Parameters of the CUSUM change-point detector. Defaults calibrated in bench/bench_drift.py."""

    target_arl0: float = 5000.0
    """Wanted average number of samples between false alarms of one detector on unchanged data. 50..1e7."""
    shift_sigma: float = 1.0
    """The shift to detect fastest, in baseline SDs of the transformed values; the CUSUM reference is half of it.
    0.1..5."""
    direction: str = "up"
    """"up" (latency grows: the usual alarm), "down", or "both"."""
    log: bool = True
    """Work on log(x): latencies are positive and spread multiplicatively."""
    clip_sigma: float = 2.0
    """Standardised values are clipped to +-this, so that one straggler cannot raise an alarm. 1..20."""
    min_baseline: int = 100
    """A baseline shorter than this gives an inconclusive verdict. 10..1e6."""
    family_size: int = 1
    """Detectors watched together (e.g. latency and time to first token: 2); each gets ``family_size`` times the
    target ARL0 (Bonferroni) so that the family's false-alarm rate stays at 1 / ``target_arl0``. 1..1000."""
    threshold: float | None = None
    """The CUSUM threshold h; None: from ``target_arl0`` by Siegmund's approximation (see ``cusum_threshold``)."""

    def __post_init__(self) -> None:
        _check(
            "ChangePointConfig",
            [
                ("target_arl0", 50 <= self.target_arl0 <= 1e7, "between 50 and 1e7", self.target_arl0),
                ("shift_sigma", 0.1 <= self.shift_sigma <= 5, "between 0.1 and 5", self.shift_sigma),
                ("direction", self.direction in ("up", "down", "both"), 'one of "up", "down", "both"', self.direction),
                ("clip_sigma", 1 <= self.clip_sigma <= 20, "between 1 and 20", self.clip_sigma),
                ("min_baseline", 10 <= self.min_baseline <= 1e6, "between 10 and 1e6", self.min_baseline),
                ("family_size", 1 <= self.family_size <= 1000, "between 1 and 1000", self.family_size),
                (
                    "threshold",
                    self.threshold is None or 0 < self.threshold <= 1000,
                    "None or in (0, 1000]",
                    self.threshold,
                ),
            ],
        )

    @property
    def reference(self) -> float:
        """The CUSUM reference value k (half the shift to detect)."""
        return self.shift_sigma / 2.0

    @property
    def h(self) -> float:
        """The threshold in use."""
        if self.threshold is not None:
            return self.threshold
        sides = 2 if self.direction == "both" else 1
        return cusum_threshold(self.target_arl0 * self.family_size * sides, self.reference)


def cusum_threshold(arl0: float, k: float) -> float:
    """The threshold h of a one-sided CUSUM with reference ``k`` on N(0, 1) data whose in-control average run
    length is ``arl0``, by Siegmund's approximation ARL0 = (exp(2kb) - 2kb - 1) / (2k^2), b = h + 1.166."""

    def excess(h: float) -> float:
        b = 2.0 * k * (h + 1.166)
        return (math.expm1(b) - b) / (2.0 * k * k) - arl0

    return float(optimize.brentq(excess, 1e-6, 200.0))


@dataclass(frozen=True)
class SampleSummary:
    """A compact description of a sample of latencies (seconds) or any positive values (None when empty, so that
    it stores as JSON)."""

    n: int
    median: float | None
    p90: float | None
    p99: float | None
    mean: float | None

    @classmethod
    def of(cls, values: np.ndarray) -> SampleSummary:
        if values.size == 0:
            return cls(0, None, None, None, None)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return cls(int(values.size), float(p50), float(p90), float(p99), float(np.mean(values)))


@dataclass(frozen=True)
class _Standardiser:
    """log (optionally), centre by the baseline median, divide by its MAD-SD, clip, then make the clipped baseline
    mean 0 and SD 1 (so that the CUSUM's calibration on N(0, 1) holds for any baseline shape)."""

    log: bool
    median: float
    scale: float
    clip: float
    mean: float
    sd: float

    @classmethod
    def fit(cls, baseline: np.ndarray, config: ChangePointConfig) -> _Standardiser:
        y = np.log(baseline) if config.log else baseline
        median, scale = robust_scale(y)
        if scale <= 0:
            scale = max(float(np.std(y)), 1e-12 * max(1.0, abs(median)))
        z = np.clip((y - median) / scale, -config.clip_sigma, config.clip_sigma)
        sd = float(np.std(z))
        return cls(config.log, median, scale, config.clip_sigma, float(np.mean(z)), sd if sd > 0 else 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.log(x) if self.log else x
        return (np.clip((y - self.median) / self.scale, -self.clip, self.clip) - self.mean) / self.sd


@dataclass(frozen=True)
class ChangePointState:
    """The streaming detector after one more sample."""

    verdict: Verdict
    statistic: float
    """The CUSUM statistic now (the larger side with ``direction="both"``)."""
    threshold: float
    n: int
    """Samples seen since the baseline (or the last reset)."""
    alarm_index: int | None = None
    """Index (0-based, since the baseline) of the sample that raised the alarm; the verdict stays drift until reset."""
    change_index: int | None = None
    """Where the change most likely began: the first sample after the CUSUM last stood at zero before the alarm."""


@dataclass(frozen=True)
class ChangePointResult:
    """The batch test of a series against a baseline, with what a person needs to see why it fired."""

    verdict: Verdict
    statistic: float
    """The CUSUM at the alarm, or its maximum over the series when there was none."""
    threshold: float
    reference: float
    direction: str
    alarm_index: int | None
    change_index: int | None
    shift_sigma: float | None
    """Estimated shift after ``change_index``: median of the standardised values (baseline SDs)."""
    ratio: float | None
    """With ``log``: the factor by which the median moved (after/before)."""
    baseline: SampleSummary
    series: SampleSummary
    before: SampleSummary
    """The series before ``change_index`` (the whole series without a change)."""
    after: SampleSummary
    reason: str

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = str(self.verdict)
        return out


class ChangePointDetector:
    """Streaming CUSUM against a baseline: ``update(x)`` per request latency, O(1) per call."""

    def __init__(self, baseline: Sequence[float] | np.ndarray, config: ChangePointConfig | None = None) -> None:
        self.config = config or ChangePointConfig()
        base = _array("baseline", baseline, positive=self.config.log)
        self.baseline = SampleSummary.of(base)
        self.ready = base.size >= self.config.min_baseline
        self._std = _Standardiser.fit(base, self.config) if base.size >= 2 else None
        self._h = self.config.h
        self.reset()

    def reset(self) -> None:
        """Start again from zero after an alarm has been handled (the baseline is kept)."""
        self._up = self._down = 0.0
        self._last_zero = {1: -1, -1: -1}
        self._n = 0
        self._alarm: int | None = None
        self._change: int | None = None

    def update(self, x: float) -> ChangePointState:
        x = float(x)
        if not math.isfinite(x) or (self.config.log and x <= 0):
            raise ValueError(f"each value must be a finite {'positive ' if self.config.log else ''}number, got {x!r}")
        i = self._n
        self._n += 1
        if not self.ready or self._std is None:
            return ChangePointState(Verdict.INCONCLUSIVE, 0.0, self._h, self._n)
        if self._alarm is None:
            u = float(self._std(np.array([x]))[0])
            k = self.config.reference
            if self.config.direction in ("up", "both"):
                self._up = max(0.0, self._up + u - k)
                if self._up == 0.0:
                    self._last_zero[1] = i
            if self.config.direction in ("down", "both"):
                self._down = max(0.0, self._down - u - k)
                if self._down == 0.0:
                    self._last_zero[-1] = i
            side = 1 if self._up >= self._down else -1
            if max(self._up, self._down) > self._h:
                self._alarm, self._change = i, self._last_zero[side] + 1
        verdict = Verdict.DRIFT if self._alarm is not None else Verdict.OK
        stat = max(self._up, self._down)
        return ChangePointState(verdict, stat, self._h, self._n, self._alarm, self._change)


def standardised(
    baseline: Sequence[float] | np.ndarray,
    series: Sequence[float] | np.ndarray,
    config: ChangePointConfig | None = None,
) -> np.ndarray:
    """The values the CUSUM adds up: ``series`` logged (by default), centred and scaled by the baseline's median and
    MAD-SD, clipped to +-``clip_sigma``, and shifted and scaled so that the clipped baseline has mean 0 and SD 1
    (useful to chart, and for comparing other detectors on the same footing)."""
    cfg = config or ChangePointConfig()
    base = _array("baseline", baseline, positive=cfg.log)
    if base.size < 2:
        raise ValueError(f"baseline needs at least 2 values, got {base.size}")
    return _Standardiser.fit(base, cfg)(_array("series", series, positive=cfg.log))


def _cusum(u: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided CUSUM S_t = max(0, S_{t-1} + u_t - k) for all t at once (Lindley), and the index of the last zero."""
    c = np.cumsum(u - k)
    low = np.minimum.accumulate(np.minimum(c, 0.0))
    s = np.maximum(c - low, 0.0)
    zero = np.where(s == 0.0, np.arange(u.size), -1)
    return s, np.maximum.accumulate(zero)


def detect(
    baseline: Sequence[float] | np.ndarray,
    series: Sequence[float] | np.ndarray,
    config: ChangePointConfig | None = None,
) -> ChangePointResult:
    """Test ``series`` (in time order) for a change against ``baseline``; stops at the first alarm."""
    cfg = config or ChangePointConfig()
    base = _array("baseline", baseline, positive=cfg.log)
    x = _array("series", series, positive=cfg.log)
    h = cfg.h
    summary = dict(baseline=SampleSummary.of(base), series=SampleSummary.of(x), threshold=h, reference=cfg.reference)
    if base.size < max(cfg.min_baseline, 2) or x.size == 0:
        why = f"baseline has {base.size} values (need {cfg.min_baseline})" if x.size else "the series is empty"
        return _result(Verdict.INCONCLUSIVE, 0.0, None, None, None, x, cfg, summary, f"inconclusive: {why}")
    std = _Standardiser.fit(base, cfg)
    u = std(x)
    sides = {"up": [1], "down": [-1], "both": [1, -1]}[cfg.direction]
    alarms, peak = [], 0.0
    for sign in sides:
        s, last_zero = _cusum(sign * u, cfg.reference)
        peak = max(peak, float(s.max()))
        over = np.flatnonzero(s > h)
        if over.size:
            alarms.append((int(over[0]), float(s[over[0]]), int(last_zero[over[0]]) + 1))
    if not alarms:
        return _result(Verdict.OK, peak, None, None, u, x, cfg, summary, f"ok: CUSUM peaked at {peak:.2f} <= {h:.2f}")
    alarm, stat, change = min(alarms)
    return _result(Verdict.DRIFT, stat, alarm, change, u, x, cfg, summary, "")


def _result(
    verdict: Verdict,
    stat: float,
    alarm: int | None,
    change: int | None,
    u: np.ndarray | None,
    x: np.ndarray,
    cfg: ChangePointConfig,
    summary: dict[str, Any],
    reason: str,
) -> ChangePointResult:
    cut = change if change is not None else x.size
    shift = ratio = None
    if change is not None:
        assert alarm is not None and u is not None  # a change comes with its alarm, on the standardised series
        after = u[change : alarm + 1]
        shift = float(np.median(after))
        before = x[:change]
        ref = np.median(before) if before.size else summary["baseline"].median
        ratio = float(np.median(x[change : alarm + 1]) / ref) if cfg.log else None
        move = f"x{ratio:.2f} in the median" if ratio is not None else f"{shift:+.2f} SD"
        reason = (
            f"drift: CUSUM {stat:.2f} > {summary['threshold']:.2f} at sample {alarm}; the change began near sample "
            f"{change} ({move}, {shift:+.2f} baseline SDs)"
        )
    return ChangePointResult(
        verdict=verdict,
        statistic=stat,
        direction=cfg.direction,
        alarm_index=alarm,
        change_index=change,
        shift_sigma=shift,
        ratio=ratio,
        before=SampleSummary.of(x[:cut]),
        after=SampleSummary.of(x[cut : (alarm + 1) if alarm is not None else x.size]),
        reason=reason,
        **summary,
    )


# ---------------------------------------------------------------------------------------------------------------
# Output distribution
# ---------------------------------------------------------------------------------------------------------------


def output_statistics(outputs: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """Per-output statistics of generated token ids (one value per non-empty output):

    - ``length``: tokens generated;
    - ``distinct_ratio``: distinct tokens / length (falls when a model starts repeating itself);
    - ``mean_log_token_id``: mean of log(1 + token id), a cheap proxy for how rare the tokens are (BPE vocabularies
      give frequent pieces low ids).
    """
    lengths = np.array([len(o) for o in outputs], dtype=np.int64)
    keep = lengths > 0
    if not np.any(keep):
        return {"length": np.zeros(0), "distinct_ratio": np.zeros(0), "mean_log_token_id": np.zeros(0)}
    flat = np.concatenate([np.asarray(o, dtype=np.int64) for o, k in zip(outputs, keep, strict=True) if k])
    if np.any(flat < 0):
        raise ValueError("token ids must be non-negative integers")
    owner = np.repeat(np.arange(int(keep.sum())), lengths[keep])
    pairs = np.unique(owner * (int(flat.max()) + 1) + flat)
    distinct = np.bincount(pairs // (int(flat.max()) + 1), minlength=owner.max() + 1)
    logs = np.bincount(owner, weights=np.log1p(flat.astype(float)))
    n = lengths[keep].astype(float)
    return {"length": n, "distinct_ratio": distinct / n, "mean_log_token_id": logs / n}


@dataclass(frozen=True)
class DistributionConfig:
    """Parameters of the output-distribution test."""

    alpha: float = 0.05
    """Family-wise false-positive rate of one check over all its statistics (Holm-corrected). 1e-6..0.5."""
    method: str = "ks"
    """"ks": two-sample Kolmogorov-Smirnov; "psi": population stability index with a calibrated threshold."""
    bins: int = 10
    """Histogram bins (at the reference's quantiles) for the summary and for PSI. 2..100."""
    min_samples: int = 50
    """Fewer outputs than this in either window gives an inconclusive verdict. 5..1e6."""
    permutations: int = 1000
    """PSI only: shuffles of the permutation test that calibrates its threshold; 0 uses the chi-square rule
    (1/n + 1/m) * chi2(bins - 1) instead, which is faster but measured slightly liberal (6% at alpha 5%, n = 1,000).
    0..100000."""
    seed: int = 0
    """Seed of the permutations (a check is reproducible)."""

    def __post_init__(self) -> None:
        _check(
            "DistributionConfig",
            [
                ("alpha", 1e-6 <= self.alpha <= 0.5, "between 1e-6 and 0.5", self.alpha),
                ("method", self.method in ("ks", "psi"), 'one of "ks", "psi"', self.method),
                ("bins", 2 <= self.bins <= 100, "between 2 and 100", self.bins),
                ("min_samples", 5 <= self.min_samples <= 1e6, "between 5 and 1e6", self.min_samples),
                ("permutations", 0 <= self.permutations <= 100_000, "between 0 and 100000", self.permutations),
            ],
        )


@dataclass(frozen=True)
class Histogram:
    """Shares of a sample in bins with the given edges (the reference's quantiles; first and last bins open)."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]
    n: int
    median: float
    mean: float


@dataclass(frozen=True)
class StatisticTest:
    """The test of one statistic: what was computed, against what threshold, and the two histograms."""

    name: str
    method: str
    statistic: float
    """KS distance D, or PSI."""
    threshold: float
    """The value of ``statistic`` above which this test rejects at ``alpha``."""
    p_value: float
    alpha: float
    """The level this test was held to after the Holm correction."""
    verdict: Verdict
    ks: float
    psi: float
    reference: Histogram
    current: Histogram


@dataclass(frozen=True)
class DistributionResult:
    verdict: Verdict
    alpha: float
    tests: tuple[StatisticTest, ...] = field(default=())
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = str(self.verdict)
        for test in out["tests"]:
            test["verdict"] = str(test["verdict"])
        return out


def holm(p_values: Sequence[float], alpha: float) -> list[float]:
    """The level each p-value is held to by Holm's step-down procedure (family-wise error ``alpha``); a p-value
    rejects when it is below its level and every smaller one rejected too (checked by the caller in order)."""
    order = np.argsort(p_values, kind="stable")
    levels = [0.0] * len(p_values)
    for rank, i in enumerate(order):
        levels[int(i)] = alpha / (len(p_values) - rank)
    return levels


def _edges(reference: np.ndarray, bins: int) -> np.ndarray:
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    return inner


def _shares(values: np.ndarray, inner: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=inner.size + 1)
    return counts.astype(float)


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    p = (ref_counts + 0.5) / (ref_counts.sum() + 0.5 * ref_counts.size)
    q = (cur_counts + 0.5) / (cur_counts.sum() + 0.5 * cur_counts.size)
    return float(np.sum((q - p) * np.log(q / p)))


def _psi_null(ref: np.ndarray, cur: np.ndarray, cfg: DistributionConfig) -> np.ndarray:
    """PSI of ``cfg.permutations`` random splits of the pooled sample (the bins re-cut on each split's reference)."""
    rng = np.random.default_rng(cfg.seed)
    pooled = np.concatenate([ref, cur])
    null = np.empty(cfg.permutations)
    for i in range(cfg.permutations):
        perm = rng.permutation(pooled)
        r, c = perm[: ref.size], perm[ref.size :]
        inner = _edges(r, cfg.bins)
        null[i] = _psi(_shares(r, inner), _shares(c, inner))
    return null


def _histogram(values: np.ndarray, inner: np.ndarray) -> Histogram:
    counts = _shares(values, inner)
    return Histogram(
        edges=tuple(float(e) for e in inner),
        shares=tuple(float(c) for c in counts / max(values.size, 1)),
        n=int(values.size),
        median=float(np.median(values)),
        mean=float(np.mean(values)),
    )


def _test_one(
    name: str, ref: np.ndarray, cur: np.ndarray, cfg: DistributionConfig
) -> tuple[dict[str, Any], Callable[[float], float]]:
    """The test of one statistic, and a function giving its rejection threshold at a level."""
    inner = _edges(ref, cfg.bins)
    psi = _psi(_shares(ref, inner), _shares(cur, inner))
    ks = stats.ks_2samp(ref, cur)
    scale = 1.0 / ref.size + 1.0 / cur.size
    if cfg.method == "ks":
        p = float(ks.pvalue)

        def threshold(level: float) -> float:  # the asymptotic critical D
            return math.sqrt(-math.log(level / 2.0) / 2.0) * math.sqrt(scale)

    elif cfg.permutations:
        null = _psi_null(ref, cur, cfg)
        p = float((np.count_nonzero(null >= psi) + 1) / (null.size + 1))

        def threshold(level: float) -> float:  # the permutation quantile
            return float(np.quantile(null, 1.0 - level))

    else:
        p = float(stats.chi2.sf(psi / scale, max(inner.size, 1)))

        def threshold(level: float) -> float:  # (1/n + 1/m) * chi-square(bins - 1) quantile
            return float(scale * stats.chi2.isf(level, max(inner.size, 1)))

    parts = dict(
        name=name,
        method=cfg.method,
        statistic=float(ks.statistic) if cfg.method == "ks" else psi,
        p_value=p,
        ks=float(ks.statistic),
        psi=psi,
        reference=_histogram(ref, inner),
        current=_histogram(cur, inner),
    )
    return parts, threshold


def compare_outputs(
    reference: Mapping[str, Sequence[float] | np.ndarray],
    current: Mapping[str, Sequence[float] | np.ndarray],
    config: DistributionConfig | None = None,
) -> DistributionResult:
    """Two-sample test of each statistic in both mappings (e.g. from ``output_statistics``), Holm-corrected so that
    the chance of any false alarm in one check is at most ``alpha``."""
    cfg = config or DistributionConfig()
    names = [k for k in reference if k in current]
    if not names:
        raise ValueError(f"no statistic in both windows: reference has {sorted(reference)}, current {sorted(current)}")
    samples = {k: (_array(f"reference[{k!r}]", reference[k]), _array(f"current[{k!r}]", current[k])) for k in names}
    small = {k: (r.size, c.size) for k, (r, c) in samples.items() if min(r.size, c.size) < cfg.min_samples}
    if small:
        why = ", ".join(f"{k}: {n} vs {m}" for k, (n, m) in small.items())
        return DistributionResult(
            Verdict.INCONCLUSIVE, cfg.alpha, reason=f"too few outputs ({why}; need {cfg.min_samples})"
        )
    parts = [_test_one(k, *samples[k], cfg) for k in names]
    levels = holm([p["p_value"] for p, _ in parts], cfg.alpha)
    order = sorted(range(len(parts)), key=lambda i: parts[i][0]["p_value"])
    rejected, still = set(), True
    for i in order:
        still = still and parts[i][0]["p_value"] < levels[i]
        if still:
            rejected.add(i)
    tests = []
    for i, (p, threshold) in enumerate(parts):
        verdict = Verdict.DRIFT if i in rejected else Verdict.OK
        tests.append(StatisticTest(threshold=threshold(levels[i]), alpha=levels[i], verdict=verdict, **p))
    fired = [t for t in tests if t.verdict == Verdict.DRIFT]
    if fired:
        what = "; ".join(
            f"{t.name}: {t.method} {t.statistic:.3g} > {t.threshold:.3g} (p={t.p_value:.2g}), median "
            f"{t.reference.median:.3g} -> {t.current.median:.3g}"
            for t in fired
        )
        return DistributionResult(Verdict.DRIFT, cfg.alpha, tuple(tests), f"drift: {what}")
    return DistributionResult(
        Verdict.OK, cfg.alpha, tuple(tests), f"ok: no statistic moved (family-wise alpha {cfg.alpha:g})"
    )


# ---------------------------------------------------------------------------------------------------------------
# Golden-set quality
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityConfig:
    """Tolerances of the golden-set quality check."""

    method: str = "prefix"
    """"prefix": share of the reference's first ``prefix_tokens`` tokens reproduced before the first difference;
    "similarity": difflib's ratio of the two first-``prefix_tokens`` token lists (1 = identical)."""
    prefix_tokens: int = 32
    """How many leading tokens are compared. 1..100000."""
    max_agreement_drop: float = 0.05
    """Drift when agreement falls more than this below the baseline's (absolute, on 0..1). 0..1."""
    max_perplexity_ratio: float = 1.10
    """Drift when held-out perplexity exceeds the baseline's by more than this factor. 1..100."""
    min_items: int = 10
    """Fewer golden items than this gives an inconclusive verdict. 1..1e6."""

    def __post_init__(self) -> None:
        _check(
            "QualityConfig",
            [
                ("method", self.method in ("prefix", "similarity"), 'one of "prefix", "similarity"', self.method),
                ("prefix_tokens", 1 <= self.prefix_tokens <= 100_000, "between 1 and 100000", self.prefix_tokens),
                ("max_agreement_drop", 0 <= self.max_agreement_drop <= 1, "between 0 and 1", self.max_agreement_drop),
                (
                    "max_perplexity_ratio",
                    1 <= self.max_perplexity_ratio <= 100,
                    "between 1 and 100",
                    self.max_perplexity_ratio,
                ),
                ("min_items", 1 <= self.min_items <= 1e6, "between 1 and 1e6", self.min_items),
            ],
        )


@dataclass(frozen=True)
class QualityResult:
    verdict: Verdict
    agreement: float | None
    """Mean agreement of the run's outputs with the references, 0..1 (None without items)."""
    baseline_agreement: float
    agreement_drop: float | None
    perplexity: float | None
    baseline_perplexity: float | None
    perplexity_ratio: float | None
    n_items: int
    per_item: tuple[float, ...]
    """Agreement of each golden item, in input order."""
    worst_items: tuple[int, ...]
    """Indices of the (up to 5) items that agree least, for a person to read."""
    reason: str

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = str(self.verdict)
        return out


def agreement(
    output: Sequence[object], reference: Sequence[object], method: str = "prefix", prefix_tokens: int = 32
) -> float:
    """Agreement of one output with its reference (token ids, or any comparable items), in 0..1."""
    ref = list(reference)[:prefix_tokens]
    out = list(output)[:prefix_tokens]
    if not ref:
        return 1.0 if not out else 0.0
    if method == "similarity":
        return SequenceMatcher(None, out, ref, autojunk=False).ratio()
    if method != "prefix":
        raise ValueError(f'method must be "prefix" or "similarity", got {method!r}')
    same = 0
    for a, b in zip(out, ref, strict=False):
        if a != b:
            break
        same += 1
    return same / len(ref)


def perplexity(token_nlls: Sequence[float] | np.ndarray) -> float:
    """Perplexity from per-token negative log-likelihoods (natural log): exp(mean NLL)."""
    nll = _array("token_nlls", token_nlls)
    if nll.size == 0:
        raise ValueError("token_nlls is empty")
    return float(np.exp(np.mean(nll)))


def quality_check(
    outputs: Sequence[Sequence[object]],
    references: Sequence[Sequence[object]],
    *,
    baseline_agreement: float = 1.0,
    perplexity: float | None = None,
    baseline_perplexity: float | None = None,
    config: QualityConfig | None = None,
) -> QualityResult:
    """Score a golden-set run: mean agreement of ``outputs`` with ``references`` against the baseline's, and the
    held-out perplexity against the baseline's (both optional: pass neither to skip that part)."""
    cfg = config or QualityConfig()
    if len(outputs) != len(references):
        raise ValueError(f"outputs ({len(outputs)}) and references ({len(references)}) must pair up")
    if not 0 <= baseline_agreement <= 1:
        raise ValueError(f"baseline_agreement must be in [0, 1], got {baseline_agreement!r}")
    for name, value in (("perplexity", perplexity), ("baseline_perplexity", baseline_perplexity)):
        if value is not None and not (math.isfinite(value) and value >= 1.0):
            raise ValueError(f"{name} must be a finite number >= 1, got {value!r}")
    scores = tuple(agreement(o, r, cfg.method, cfg.prefix_tokens) for o, r in zip(outputs, references, strict=True))
    mean = float(np.mean(scores)) if scores else None
    ratio = perplexity / baseline_perplexity if perplexity is not None and baseline_perplexity is not None else None
    worst = tuple(int(i) for i in np.argsort(scores, kind="stable")[:5]) if scores else ()
    common: dict[str, Any] = dict(
        agreement=mean,
        baseline_agreement=baseline_agreement,
        agreement_drop=baseline_agreement - mean if mean is not None else None,
        perplexity=perplexity,
        baseline_perplexity=baseline_perplexity,
        perplexity_ratio=ratio,
        n_items=len(scores),
        per_item=scores,
        worst_items=worst,
    )
    if len(scores) < cfg.min_items:
        return QualityResult(
            Verdict.INCONCLUSIVE, reason=f"inconclusive: {len(scores)} items (need {cfg.min_items})", **common
        )
    assert mean is not None  # min_items >= 1
    problems = []
    if baseline_agreement - mean > cfg.max_agreement_drop:
        problems.append(
            f"agreement {mean:.3f} is {baseline_agreement - mean:.3f} below the baseline {baseline_agreement:.3f} "
            f"(tolerance {cfg.max_agreement_drop:g})"
        )
    if ratio is not None and ratio > cfg.max_perplexity_ratio:
        problems.append(
            f"perplexity {perplexity:.3f} is x{ratio:.3f} the baseline {baseline_perplexity:.3f} "
            f"(tolerance x{cfg.max_perplexity_ratio:g})"
        )
    if problems:
        return QualityResult(Verdict.DRIFT, reason="drift: " + "; ".join(problems), **common)
    ppl = f", perplexity x{ratio:.3f}" if ratio is not None else ""
    return QualityResult(
        Verdict.OK, reason=f"ok: agreement {mean:.3f} (baseline {baseline_agreement:.3f}){ppl}", **common
    )
