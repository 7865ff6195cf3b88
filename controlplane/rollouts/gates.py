"""Rollout gates: canary against stable over the same window. Each gate returns what it measured, the threshold
and a verdict, so the decision log shows why a rollout went on or was rolled back.

Every gate is one ``Gate`` entry in the ``GATES`` registry (name, label, unit, function, a one-line doc and the
settings it reads, with their defaults and bounds); ``default_gates`` and ``validate_gates`` are derived from the
entries, so adding a gate is one entry plus its function.

Traffic gates decide on evidence, not on noise: a one-sided test of the two samples of the same window (the canary
is worse) AND an effect larger than a tolerance, both (controlplane/stats/canary.py). With fewer than
``min_requests`` on either side they are skipped and say so. The expert-share gate compares what the outputs are
made of (token-slots per expert, per layer) from the workers' counters; the quality gate scores both versions on
the same golden texts through their workers; the memory gate reads the canary worker's measured memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from controlplane.extensions import Registry
from controlplane.models import InferenceRecord, Rollout
from controlplane.stats import canary as canary_stats

__all__ = [
    "DEFAULT_GATES",
    "GATES",
    "Gate",
    "GateResult",
    "Setting",
    "default_gates",
    "evaluate",
    "validate_gates",
]

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class GateResult:
    gate: str
    verdict: str
    value: float | None = None
    threshold: float | None = None
    detail: str = ""
    p_value: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
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


GateFunction = Callable[[Rollout, Window, dict[str, Any], dict[str, Any]], GateResult]


# --- the declarations ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """A threshold a gate reads from ``rollout.gates``: its default, its bounds and what it means."""

    key: str
    default: float
    low: float
    high: float
    doc: str
    integer: bool = False
    low_open: bool = False  # the bound ``low`` itself is not allowed (a significance level of 0)

    def check(self, value: object) -> float:
        """``value`` if it is a number within the bounds; otherwise ValueError naming the key."""
        kind = "a whole number" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float) or (self.integer and value != int(value)):
            raise ValueError(f"{self.key}: must be {kind}; got {value!r}")
        below = value <= self.low if self.low_open else value < self.low
        if below or value > self.high:
            left = "(" if self.low_open else "["
            raise ValueError(f"{self.key}: must be in {left}{self.low:g}, {self.high:g}]; got {value!r}")
        return int(value) if self.integer else value


@dataclass(frozen=True)
class Gate:
    """One rollout gate: ``func(rollout, window, gates, clients) -> GateResult`` and the settings it reads."""

    name: str
    label: str
    unit: str
    func: GateFunction
    doc: str
    settings: tuple[Setting, ...] = ()
    enabled: bool = True  # in ``enabled`` by default


def _check_gate(gate: Gate) -> None:
    if not gate.label or not gate.doc or "\n" in gate.doc:
        raise ValueError("needs a label and a one-line doc")
    if not callable(gate.func):
        raise TypeError(f"func must be callable, got {gate.func!r}")
    keys = [s.key for s in gate.settings]
    if len(set(keys)) != len(keys) or "enabled" in keys:
        raise ValueError(f"settings must have distinct keys other than 'enabled'; got {keys}")
    for setting in gate.settings:
        setting.check(setting.default)
        for other in GATES:
            shared = next((s for s in other.settings if s.key == setting.key), None)
            if shared is not None and shared != setting:
                raise ValueError(f"setting {setting.key!r} is declared differently by gate {other.name!r}")


GATES = Registry[Gate]("gate", check=_check_gate)


def default_gates() -> dict[str, Any]:
    """``enabled`` (the gates enabled by default, in declaration order) and every setting's default."""
    defaults: dict[str, Any] = {"enabled": [g.name for g in GATES if g.enabled]}
    for gate in GATES:
        defaults |= {s.key: s.default for s in gate.settings}
    return defaults


def _settings() -> dict[str, Setting]:
    return {s.key: s for gate in GATES for s in gate.settings}


def validate_gates(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults filled in; unknown keys, unknown gates and out-of-range thresholds refused (raises ValueError with
    the key)."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError("gates: must be an object")
    known = _settings()
    unknown = sorted(set(raw) - set(known) - {"enabled"})
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown gate setting; known: enabled, {', '.join(known)}")
    gates = {**default_gates(), **raw}
    enabled = gates["enabled"]
    if not isinstance(enabled, list) or any(not isinstance(n, str) or n not in GATES for n in enabled):
        raise ValueError(f"enabled: must be a list of gates from {', '.join(GATES.names())}")
    for key, setting in known.items():
        gates[key] = setting.check(gates[key])
    return gates


# --- shared settings -------------------------------------------------------------------------------------------
MIN_REQUESTS = Setting(
    "min_requests", 50, 2, 1_000_000, "Requests each side needs in the window; fewer skips the traffic gates.", True
)
ALPHA = Setting(
    "alpha",
    0.005,
    0.0,
    0.5,
    "Significance level of the one-sided tests 'the canary is worse' (error rate, latency, TTFT).",
    low_open=True,
)


def _short(gate: str, n: int, canary: int, stable: int, what: str = "requests") -> GateResult:
    return GateResult(gate, SKIP, detail=f"needs {n} {what} on each side; canary {canary}, stable {stable}")


def _p(p: float) -> float:
    return float(f"{p:.3g}")


# --- traffic gates ---------------------------------------------------------------------------------------------
def gate_error_rate(rollout: Rollout, window: Window, gates: dict[str, Any], clients: dict[str, Any]) -> GateResult:
    n = gates["min_requests"]
    if len(window.canary) < n or len(window.stable) < n:
        return _short("error_rate", n, len(window.canary), len(window.stable))
    errors_c = sum(1 for r in window.canary if r.status_code >= 500)
    errors_s = sum(1 for r in window.stable if r.status_code >= 500)
    test = canary_stats.compare_error_rates(
        errors_c,
        len(window.canary),
        errors_s,
        len(window.stable),
        alpha=gates["alpha"],
        max_delta=gates["max_error_rate_delta"],
    )
    return GateResult(
        "error_rate",
        FAIL if test.worse else PASS,
        round(test.delta, 4),
        gates["max_error_rate_delta"],
        f"canary {test.rate_canary:.2%} vs stable {test.rate_stable:.2%} errors ({errors_c} of {test.n_canary} vs "
        f"{errors_s} of {test.n_stable}); Fisher one-sided p={test.p_value:.3g} (alpha {test.alpha:g}); fails "
        f"when p < alpha and the difference > {test.max_delta:g}",
        _p(test.p_value),
    )


def _shift(window: Window, gates: dict[str, Any], gate: str, attr: str, limit_key: str, what: str) -> GateResult:
    canary = [getattr(r, attr) for r in window.canary if getattr(r, attr) is not None and r.status_code < 400]
    stable = [getattr(r, attr) for r in window.stable if getattr(r, attr) is not None and r.status_code < 400]
    n = gates["min_requests"]
    if len(canary) < n or len(stable) < n:
        return _short(gate, n, len(canary), len(stable), "measured requests")
    test = canary_stats.compare_latency(canary, stable, alpha=gates["alpha"], max_ratio=gates[limit_key])
    return GateResult(
        gate,
        FAIL if test.worse else PASS,
        round(test.ratio, 3),
        test.max_ratio,
        f"canary {what} x{test.ratio:.3f} of stable's (Hodges-Lehmann; medians {test.median_canary * 1000:.1f} vs "
        f"{test.median_stable * 1000:.1f} ms, n {test.n_canary}/{test.n_stable}); Mann-Whitney one-sided "
        f"p={test.p_value:.3g} (alpha {test.alpha:g}); fails when p < alpha and the ratio > {test.max_ratio:g}",
        _p(test.p_value),
    )


def gate_latency(rollout: Rollout, window: Window, gates: dict[str, Any], clients: dict[str, Any]) -> GateResult:
    return _shift(window, gates, "latency", "latency_s", "max_latency_ratio", "latency")


def gate_ttft(rollout: Rollout, window: Window, gates: dict[str, Any], clients: dict[str, Any]) -> GateResult:
    return _shift(window, gates, "ttft", "ttft_s", "max_ttft_ratio", "time to first token")


def gate_distribution(rollout: Rollout, window: Window, gates: dict[str, Any], clients: dict[str, Any]) -> GateResult:
    """Kolmogorov–Smirnov on completion lengths: does the canary answer differently (much longer, shorter)?"""
    n = gates["min_requests"]
    if len(window.canary) < n or len(window.stable) < n:
        return _short("distribution", n, len(window.canary), len(window.stable))
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
        _p(float(result.pvalue)),
    )


# --- gates that ask the workers --------------------------------------------------------------------------------
def _expert_counts(client: Any) -> np.ndarray | None:
    return canary_stats.counts_from_report(client.stats().get("expert_activation_shares"))


def _start_counts(rollout: Rollout, side: str) -> np.ndarray | None:
    """The counters at the start of this step: what the previous evaluation left in the rollout's figures."""
    previous = ((rollout.figures or {}).get("experts") or {}).get("data") or {}
    counts = (previous.get("counts") or {}).get(side)
    return np.asarray(counts, dtype=np.float64) if counts else None


def gate_experts(rollout: Rollout, window: Window, gates: dict[str, Any], clients: dict[str, Any]) -> GateResult:
    """What the outputs are made of: each layer's share of token-slots per expert, canary against stable."""
    if clients.get("canary") is None or clients.get("stable") is None:
        return GateResult("experts", SKIP, detail="no workers to read expert counters from")
    read = {"canary": _expert_counts(clients["canary"]), "stable": _expert_counts(clients["stable"])}
    now = {side: counts for side, counts in read.items() if counts is not None}
    if len(now) < 2:
        return GateResult("experts", SKIP, detail="no expert counters (not a mixture-of-experts model)")
    if now["canary"].shape != now["stable"].shape:
        return GateResult(
            "experts", SKIP, detail=f"different expert layouts: {now['canary'].shape} vs {now['stable'].shape}"
        )
    start = {side: _start_counts(rollout, side) for side in now}
    counts = {side: canary_stats.window_counts(now[side], start[side]) for side in now}
    tokens = {side: int(counts[side].sum(axis=1).min()) for side in now}
    n = gates["min_routed_tokens"]
    if min(tokens.values()) < n:
        # keep the window open: the next evaluation counts from the same start
        keep = {side: (now[side] * 0 if (begun := start[side]) is None else begun).tolist() for side in now}
        result = _short("experts", n, tokens["canary"], tokens["stable"], "token-slots routed per layer")
        result.data = {"counts": keep}
        return result
    test = canary_stats.compare_shares(counts["canary"], counts["stable"], max_distance=gates["max_expert_shift"])
    shares = ", ".join(f"{c:.2f}/{s:.2f}" for c, s in zip(test.shares_canary, test.shares_stable, strict=True))
    p = "" if test.p_value is None else f"; chi-square p={test.p_value:.3g} (reported, not deciding)"
    return GateResult(
        "experts",
        FAIL if test.worse else PASS,
        round(test.distance, 4),
        test.max_distance,
        f"layer {test.layer}: {test.distance:.1%} of token-slots go to other experts than on stable (total "
        f"variation; shares canary/stable {shares}; {tokens['canary']} vs {tokens['stable']} per layer){p}; "
        f"fails when the distance > {test.max_distance:g}",
        None if test.p_value is None else _p(test.p_value),
        {"counts": {side: now[side].tolist() for side in now}, "distances": test.distances},
    )


def gate_quality(rollout: Rollout, window: Window, gates: dict[str, Any], clients: dict[str, Any]) -> GateResult:
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


def gate_memory(rollout: Rollout, window: Window, gates: dict[str, Any], clients: dict[str, Any]) -> GateResult:
    """The canary's measured memory against the stable worker's (same model size: much more means trouble)."""
    if clients.get("canary") is None or clients.get("stable") is None:
        return GateResult("memory", SKIP, detail="no workers to measure")
    canary, stable = clients["canary"].stats(), clients["stable"].stats()
    key = "torch_allocated_bytes" if (canary.get("device") or "cpu").startswith("cuda") else "rss_bytes"
    ratio = canary[key] / max(stable[key], 1)
    limit = gates["max_memory_ratio"]
    return GateResult(
        "memory",
        FAIL if ratio > limit else PASS,
        round(ratio, 3),
        limit,
        f"{key}: canary {canary[key] / 2**20:.0f} MiB vs stable {stable[key] / 2**20:.0f} MiB",
    )


# --- the registry ----------------------------------------------------------------------------------------------
GATES.register(
    Gate(
        "error_rate",
        "Error rate",
        "difference of rates",
        gate_error_rate,
        "Fails when the canary errs significantly more (Fisher, one-sided) and by more than the tolerance.",
        (
            MIN_REQUESTS,
            ALPHA,
            Setting("max_error_rate_delta", 0.02, 0.0, 1.0, "Tolerated canary minus stable error rate."),
        ),
    )
)
GATES.register(
    Gate(
        "latency",
        "Latency",
        "ratio",
        gate_latency,
        "Fails when the canary is significantly slower (Mann-Whitney, one-sided) by more than the tolerated ratio.",
        (
            MIN_REQUESTS,
            ALPHA,
            Setting("max_latency_ratio", 1.2, 1.0, 100.0, "Tolerated Hodges-Lehmann latency ratio canary/stable."),
        ),
    )
)
GATES.register(
    Gate(
        "ttft",
        "Time to first token",
        "ratio",
        gate_ttft,
        "Fails when the canary's first token comes significantly later by more than the tolerated ratio.",
        (
            MIN_REQUESTS,
            ALPHA,
            Setting("max_ttft_ratio", 1.2, 1.0, 100.0, "Tolerated Hodges-Lehmann TTFT ratio canary/stable."),
        ),
    )
)
GATES.register(
    Gate(
        "distribution",
        "Completion lengths",
        "p-value",
        gate_distribution,
        "Fails when completion lengths differ (two-sample Kolmogorov-Smirnov, p below the level).",
        (
            MIN_REQUESTS,
            Setting("distribution_alpha", 0.01, 0.0, 1.0, "Level of the KS test on lengths.", low_open=True),
        ),
    )
)
GATES.register(
    Gate(
        "experts",
        "Expert shares",
        "total variation distance",
        gate_experts,
        "Fails when a layer routes its tokens to other experts than stable does (total variation of the shares).",
        (
            Setting(
                "max_expert_shift", 0.2, 0.01, 1.0, "Tolerated total variation distance of a layer's expert shares."
            ),
            Setting(
                "min_routed_tokens",
                2000,
                1,
                10**12,
                "Token-slots each side must route per layer in the window; fewer skips the gate.",
                True,
            ),
        ),
    )
)
GATES.register(
    Gate(
        "quality",
        "Golden-set perplexity",
        "ratio",
        gate_quality,
        "Fails when the canary's perplexity on the golden texts exceeds stable's by more than the ratio.",
        (Setting("max_quality_ratio", 1.10, 1.0, 100.0, "Tolerated perplexity ratio canary/stable."),),
    )
)
GATES.register(
    Gate(
        "memory",
        "Memory",
        "ratio",
        gate_memory,
        "Fails when the canary worker holds more memory than stable's by more than the ratio.",
        (Setting("max_memory_ratio", 1.5, 1.0, 100.0, "Tolerated measured memory ratio canary/stable."),),
    )
)

DEFAULT_GATES = default_gates()


def evaluate(
    rollout: Rollout, since: datetime, until: datetime, clients: dict[str, Any], only: list[str] | None = None
) -> list[GateResult]:
    """Run the enabled gates (or ``only`` those) over the window; a gate that errors fails with the error. Settings
    a rollout created before a gate existed lacks take their defaults."""
    window = Window.load(rollout, since, until)
    gates = {**default_gates(), **rollout.gates}
    results = []
    for name in only or gates["enabled"]:
        if name not in gates["enabled"]:
            continue
        entry = GATES.get(name)
        if entry is None:
            results.append(GateResult(name, SKIP, detail="no such gate any more"))
            continue
        try:
            results.append(entry.func(rollout, window, gates, clients))
        except Exception as exc:
            results.append(GateResult(name, FAIL, detail=f"could not be evaluated: {type(exc).__name__}: {exc}"))
    return results
