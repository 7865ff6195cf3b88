"""Rollout gates: canary against stable over the same window. Each gate returns what it measured, the threshold
and a verdict, so the decision log shows why a rollout went on or was rolled back.

Traffic gates (error rate, latency, time to first token, output distribution) need enough requests on both sides;
with fewer they are skipped and say so. The quality gate scores both versions on the same golden texts through
their workers; the memory gate reads the canary worker's measured memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
from scipy import stats as scipy_stats

from controlplane.models import InferenceRecord, Rollout

__all__ = ["DEFAULT_GATES", "GATES", "GateResult", "evaluate", "validate_gates"]

DEFAULT_GATES = {
    "enabled": ["error_rate", "latency", "ttft", "distribution", "quality", "memory"],
    "min_requests": 20,
    "max_error_rate_delta": 0.02,
    "max_latency_p95_ratio": 1.5,
    "max_ttft_p95_ratio": 1.5,
    "distribution_alpha": 0.01,
    "max_quality_ratio": 1.10,
    "max_memory_ratio": 1.5,
}
PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class GateResult:
    gate: str
    verdict: str
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Window:
    """The requests of both variants since the step started."""

    stable: list[InferenceRecord]
    canary: list[InferenceRecord]

    @classmethod
    def load(cls, rollout: Rollout, since: datetime, until: datetime) -> Window:
        rows = list(
            InferenceRecord.objects.filter(deployment=rollout.deployment, at__gte=since, at__lte=until, cached=False)
        )
        return cls(
            [r for r in rows if r.variant == InferenceRecord.STABLE],
            [r for r in rows if r.variant == InferenceRecord.CANARY],
        )


def _enough(window: Window, gates: dict, gate: str) -> GateResult | None:
    n = gates["min_requests"]
    if len(window.canary) < n or len(window.stable) < n:
        return GateResult(
            gate,
            SKIP,
            detail=f"needs {n} requests on each side; canary {len(window.canary)}, stable {len(window.stable)}",
        )
    return None


def _error_rate(rows: list[InferenceRecord]) -> float:
    return sum(1 for r in rows if r.status_code >= 500) / len(rows)


def gate_error_rate(rollout, window, gates, clients) -> GateResult:
    short = _enough(window, gates, "error_rate")
    if short:
        return short
    canary, stable = _error_rate(window.canary), _error_rate(window.stable)
    delta, limit = canary - stable, gates["max_error_rate_delta"]
    return GateResult(
        "error_rate",
        FAIL if delta > limit else PASS,
        round(delta, 4),
        limit,
        f"canary {canary:.2%} vs stable {stable:.2%} errors",
    )


def _p95_ratio(window, gates, gate: str, field: str, limit_key: str) -> GateResult:
    canary = [getattr(r, field) for r in window.canary if getattr(r, field) is not None and r.status_code < 400]
    stable = [getattr(r, field) for r in window.stable if getattr(r, field) is not None and r.status_code < 400]
    n = gates["min_requests"]
    if len(canary) < n or len(stable) < n:
        return GateResult(
            gate, SKIP, detail=f"needs {n} measured requests on each side; canary {len(canary)}, stable {len(stable)}"
        )
    p_canary, p_stable = float(np.percentile(canary, 95)), float(np.percentile(stable, 95))
    ratio, limit = p_canary / max(p_stable, 1e-9), gates[limit_key]
    return GateResult(
        gate,
        FAIL if ratio > limit else PASS,
        round(ratio, 3),
        limit,
        f"p95 canary {p_canary * 1000:.1f} ms vs stable {p_stable * 1000:.1f} ms",
    )


def gate_latency(rollout, window, gates, clients) -> GateResult:
    return _p95_ratio(window, gates, "latency", "latency_s", "max_latency_p95_ratio")


def gate_ttft(rollout, window, gates, clients) -> GateResult:
    return _p95_ratio(window, gates, "ttft", "ttft_s", "max_ttft_p95_ratio")


def gate_distribution(rollout, window, gates, clients) -> GateResult:
    """Kolmogorov–Smirnov on completion lengths: does the canary answer differently (much longer, shorter)?"""
    short = _enough(window, gates, "distribution")
    if short:
        return short
    canary = [r.completion_tokens for r in window.canary if r.status_code < 400]
    stable = [r.completion_tokens for r in window.stable if r.status_code < 400]
    if not canary or not stable:
        return GateResult("distribution", SKIP, detail="no successful requests to compare")
    result = scipy_stats.ks_2samp(canary, stable)
    alpha = gates["distribution_alpha"]
    return GateResult(
        "distribution",
        FAIL if result.pvalue < alpha else PASS,
        round(float(result.pvalue), 5),
        alpha,
        f"KS D={result.statistic:.3f} on completion lengths (mean canary {np.mean(canary):.1f}, "
        f"stable {np.mean(stable):.1f} tokens); fails when p < alpha",
    )


def gate_quality(rollout, window, gates, clients) -> GateResult:
    """Perplexity of both versions on the same golden texts, measured through their workers."""
    texts = clients.get("golden_texts") or []
    if not texts or clients.get("canary") is None or clients.get("stable") is None:
        return GateResult("quality", SKIP, detail="no golden texts or no worker to score them")
    canary = clients["canary"].perplexity(texts)["perplexity"]
    stable = clients["stable"].perplexity(texts)["perplexity"]
    ratio, limit = canary / max(stable, 1e-9), gates["max_quality_ratio"]
    return GateResult(
        "quality",
        FAIL if ratio > limit else PASS,
        round(ratio, 4),
        limit,
        f"golden-set perplexity canary {canary:.3f} vs stable {stable:.3f} ({len(texts)} texts)",
    )


def gate_memory(rollout, window, gates, clients) -> GateResult:
    """The canary's measured memory against the stable worker's (same model size: much more means trouble)."""
    if clients.get("canary") is None or clients.get("stable") is None:
        return GateResult("memory", SKIP, detail="no workers to measure")
    canary, stable = clients["canary"].stats(), clients["stable"].stats()
    key = "torch_allocated_bytes" if canary.get("device", "cpu").startswith("cuda") else "rss_bytes"
    ratio = canary[key] / max(stable[key], 1)
    limit = gates["max_memory_ratio"]
    return GateResult(
        "memory",
        FAIL if ratio > limit else PASS,
        round(ratio, 3),
        limit,
        f"{key}: canary {canary[key] / 2**20:.0f} MiB vs stable {stable[key] / 2**20:.0f} MiB",
    )


GATES: dict[str, Callable[..., GateResult]] = {
    "error_rate": gate_error_rate,
    "latency": gate_latency,
    "ttft": gate_ttft,
    "distribution": gate_distribution,
    "quality": gate_quality,
    "memory": gate_memory,
}


def validate_gates(raw: dict | None) -> dict:
    """Defaults filled in; unknown keys, unknown gates and out-of-range thresholds refused (raises ValueError with
    the key)."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError("gates: must be an object")
    unknown = sorted(set(raw) - set(DEFAULT_GATES))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown gate setting; known: {', '.join(DEFAULT_GATES)}")
    gates = {**DEFAULT_GATES, **raw}
    enabled = gates["enabled"]
    if not isinstance(enabled, list) or any(name not in GATES for name in enabled):
        raise ValueError(f"enabled: must be a list of gates from {', '.join(GATES)}")
    for key, value in gates.items():
        if key == "enabled":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key}: must be a non-negative number; got {value!r}")
    if gates["distribution_alpha"] >= 1:
        raise ValueError("distribution_alpha: must be below 1")
    return gates


def evaluate(
    rollout: Rollout, since: datetime, until: datetime, clients: dict, only: list[str] | None = None
) -> list[GateResult]:
    """Run the enabled gates (or ``only`` those) over the window; a gate that errors fails with the error."""
    window = Window.load(rollout, since, until)
    results = []
    for name in only or rollout.gates["enabled"]:
        if name not in rollout.gates["enabled"]:
            continue
        try:
            results.append(GATES[name](rollout, window, rollout.gates, clients))
        except Exception as exc:
            results.append(GateResult(name, FAIL, detail=f"could not be evaluated: {type(exc).__name__}: {exc}"))
    return results
