"""The rollout gates on real request records and fake worker clients: declared in one registry, deciding on
evidence (significant AND material), explaining themselves."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from controlplane.extensions import RegistryError
from controlplane.models import InferenceRecord
from controlplane.rollouts import gates
from controlplane.rollouts import machine as rollouts
from controlplane.services import registry

from ..conftest import make_checkpoint

pytestmark = pytest.mark.django_db

# The windows these tests build hold 20 canary requests (and 180 stable): the gates judge from that many.
SMALL_WINDOWS = {"min_requests": 20}


@pytest.fixture
def rollout(actor, deployment, model_dir):
    path = make_checkpoint(model_dir / "demo-v2", seed=1)
    v2 = registry.register_model_version(actor, name="demo", version="v2", artifact_path=str(path))
    return rollouts.create_rollout(actor, deployment, model_version=v2, gates=SMALL_WINDOWS, bake_s=60)


def record(deployment, variant, latencies, *, at, status=200, ttft=None):
    InferenceRecord.objects.bulk_create(
        [
            InferenceRecord(
                at=at,
                deployment=deployment,
                variant=variant,
                endpoint="completions",
                status_code=status,
                latency_s=float(latency),
                ttft_s=None if ttft is None else float(latency) * ttft,
                completion_tokens=16,
            )
            for latency in latencies
        ]
    )


def lognormal(seed, n, median=0.2):
    return median * np.exp(np.random.default_rng(seed).normal(0, 0.35, n))


def run(rollout, clients=None, only=None):
    start = timezone.now() - timedelta(minutes=1)
    return {r.gate: r for r in gates.evaluate(rollout, start, timezone.now(), clients or {}, only)}


# --- the registry ------------------------------------------------------------------------------------------------
def test_every_gate_is_declared_with_its_settings_and_the_defaults_are_derived_from_them():
    names = gates.GATES.names()
    assert names == ["error_rate", "latency", "ttft", "distribution", "experts", "quality", "memory"]
    for gate in gates.GATES:
        assert gate.label and gate.unit and gate.doc and "\n" not in gate.doc
    defaults = gates.default_gates()
    assert defaults == gates.DEFAULT_GATES and defaults["enabled"] == names
    declared = {s.key for g in gates.GATES for s in g.settings}
    assert set(defaults) == declared | {"enabled"}
    assert defaults["alpha"] == 0.005 and defaults["max_latency_ratio"] == 1.2 and defaults["min_requests"] == 50


def test_adding_a_gate_is_one_entry_and_its_setting_becomes_valid():
    def gate_always(rollout, window, settings, clients):
        return gates.GateResult("always", gates.PASS, settings["always_level"], 1.0, "always passes")

    entry = gates.Gate(
        "always", "Always", "level", gate_always, "Passes.", (gates.Setting("always_level", 0.5, 0, 1, "A level."),)
    )
    gates.GATES.register(entry)
    try:
        checked = gates.validate_gates({"always_level": 0.7})
        assert checked["always_level"] == 0.7 and "always" in checked["enabled"]
        with pytest.raises(ValueError, match="always_level"):
            gates.validate_gates({"always_level": 2})
    finally:
        gates.GATES.unregister("always")
    with pytest.raises(ValueError, match="always_level: unknown gate setting"):
        gates.validate_gates({"always_level": 0.7})


def test_a_gate_that_redeclares_a_shared_setting_differently_is_refused():
    clash = gates.Setting("min_requests", 5, 1, 10, "Another meaning.", True)
    with pytest.raises(RegistryError, match="min_requests"):
        gates.GATES.register(gates.Gate("clash", "Clash", "x", gates.gate_latency, "Clashes.", (clash,)))
    assert "clash" not in gates.GATES


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"max_latency_p95_ratio": 1.5}, "max_latency_p95_ratio"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": 0.7}, "alpha"),
        ({"min_requests": 1.5}, "min_requests"),
        ({"min_requests": True}, "min_requests"),
        ({"max_latency_ratio": 0.9}, "max_latency_ratio"),
        ({"max_expert_shift": "big"}, "max_expert_shift"),
        ({"enabled": ["latency", "vibes"]}, "enabled"),
        ({"enabled": "latency"}, "enabled"),
    ],
)
def test_bad_gate_settings_raise_naming_the_key(raw, key):
    with pytest.raises(ValueError, match=f"^{key}:"):
        gates.validate_gates(raw)


def test_settings_missing_from_an_older_rollout_take_their_defaults(rollout, deployment):
    rollout.gates = {"enabled": ["latency"], "min_requests": 20, "max_latency_p95_ratio": 1.5}
    now = timezone.now()
    record(deployment, "stable", lognormal(1, 100), at=now)
    record(deployment, "canary", lognormal(2, 30), at=now)
    result = run(rollout)["latency"]
    assert result.verdict == gates.PASS and result.threshold == 1.2


# --- latency and errors ------------------------------------------------------------------------------------------
def test_a_good_canary_whose_p95_is_half_again_stables_passes(rollout, deployment):
    now = timezone.now()
    stable, canary = lognormal(7, 180), np.append(lognormal(8, 18), [1.0, 1.2])
    assert np.percentile(canary, 95) / np.percentile(stable, 95) > 1.5  # the old rule rolled this back
    record(deployment, "stable", stable, at=now, ttft=0.3)
    record(deployment, "canary", canary, at=now, ttft=0.3)
    results = run(rollout, only=["latency", "ttft"])
    for name in ("latency", "ttft"):
        assert results[name].verdict == gates.PASS, results[name].detail
        assert "Mann-Whitney one-sided p=" in results[name].detail and "Hodges-Lehmann" in results[name].detail
        assert results[name].p_value > 0.005


def test_a_canary_twice_as_slow_fails_latency_and_ttft_with_the_evidence(rollout, deployment):
    now = timezone.now()
    record(deployment, "stable", lognormal(1, 180), at=now, ttft=0.3)
    record(deployment, "canary", lognormal(2, 30, median=0.4), at=now, ttft=0.3)
    results = run(rollout, only=["latency", "ttft"])
    for name in ("latency", "ttft"):
        result = results[name]
        assert result.verdict == gates.FAIL and result.value > 1.6 and result.threshold == 1.2
        assert result.p_value < 0.005 and "n 30/180" in result.detail
        assert set(result.as_dict()) >= {"gate", "verdict", "value", "threshold", "detail", "p_value"}


def test_ttft_is_skipped_without_streamed_requests(rollout, deployment):
    now = timezone.now()
    record(deployment, "stable", lognormal(1, 40), at=now)
    record(deployment, "canary", lognormal(2, 40), at=now)
    result = run(rollout, only=["ttft"])["ttft"]
    assert result.verdict == gates.SKIP and "needs 20 measured requests" in result.detail


def test_one_error_in_twenty_canary_requests_passes_but_many_fail(rollout, deployment):
    now = timezone.now()
    record(deployment, "stable", [0.1] * 180, at=now)
    record(deployment, "canary", [0.1] * 19, at=now)
    record(deployment, "canary", [0.1], at=now, status=500)
    result = run(rollout, only=["error_rate"])["error_rate"]
    assert result.verdict == gates.PASS and result.value == 0.05  # 5 points more, but one error is no evidence
    assert "1 of 20 vs 0 of 180" in result.detail and "Fisher one-sided p=" in result.detail
    record(deployment, "canary", [0.1] * 8, at=now, status=503)
    result = run(rollout, only=["error_rate"])["error_rate"]
    assert result.verdict == gates.FAIL and result.p_value < 1e-6


# --- expert shares -----------------------------------------------------------------------------------------------
class FakeWorker:
    """A worker's /control/stats with cumulative expert counters (4 layers x 8 experts, top-2)."""

    def __init__(self, shares, tokens):
        self.counts = np.tile(np.asarray(shares, dtype=float) * tokens, (4, 1))

    def serve(self, shares, tokens):
        self.counts = self.counts + np.tile(np.asarray(shares, dtype=float) * tokens, (4, 1))

    def stats(self):
        totals = self.counts.sum(axis=1, keepdims=True)
        return {
            "expert_activation_shares": {
                "layers": (self.counts / totals).tolist(),
                "total": (self.counts.sum(axis=0) / self.counts.sum()).tolist(),
                "tokens_routed": int(self.counts.sum()),
            }
        }


EVEN = [0.125] * 8
STARVED = [0.5, 0, 0, 0, 0, 0, 0, 0.5]


def test_a_canary_that_starves_experts_fails_and_a_healthy_one_passes(rollout):
    stable = FakeWorker([0.13, 0.12, 0.125, 0.125, 0.13, 0.12, 0.125, 0.125], 1_000_000)
    healthy = run(rollout, {"stable": stable, "canary": FakeWorker(EVEN, 20_000)}, ["experts"])["experts"]
    assert healthy.verdict == gates.PASS and healthy.value < 0.05
    starved = run(rollout, {"stable": stable, "canary": FakeWorker(STARVED, 20_000)}, ["experts"])["experts"]
    assert starved.verdict == gates.FAIL and starved.value == pytest.approx(0.75, abs=0.01)
    assert "of token-slots go to other experts" in starved.detail and starved.threshold == 0.2


def test_the_next_step_compares_only_what_was_routed_since_the_last_evaluation(rollout):
    stable, canary = FakeWorker(EVEN, 1_000_000), FakeWorker(EVEN, 200_000)
    first = run(rollout, {"stable": stable, "canary": canary}, ["experts"])["experts"]
    assert first.verdict == gates.PASS
    rollout.figures = {"experts": first.as_dict()}  # what the machine stores after each evaluation
    # in the next step the canary starts starving experts: cumulatively it still looks 80% healthy
    canary.serve(STARVED, 40_000)
    stable.serve(EVEN, 40_000)
    second = run(rollout, {"stable": stable, "canary": canary}, ["experts"])["experts"]
    assert second.verdict == gates.FAIL and second.value == pytest.approx(0.75, abs=0.01)
    rollout.figures = {}  # without the counters at the step's start, the cumulative shares hide it
    cumulative = run(rollout, {"stable": stable, "canary": canary}, ["experts"])["experts"]
    assert cumulative.verdict == gates.PASS and cumulative.value < 0.2


def test_too_few_routed_tokens_skip_the_gate_and_keep_the_window_open(rollout):
    stable, canary = FakeWorker(EVEN, 1_000_000), FakeWorker(EVEN, 400)
    result = run(rollout, {"stable": stable, "canary": canary}, ["experts"])["experts"]
    assert result.verdict == gates.SKIP and "needs 2000 token-slots routed per layer" in result.detail
    rollout.figures = {"experts": result.as_dict()}
    canary.serve(STARVED, 40_000)
    result = run(rollout, {"stable": stable, "canary": canary}, ["experts"])["experts"]
    assert result.verdict == gates.FAIL


def test_a_restarted_canary_counts_from_zero(rollout):
    stable, canary = FakeWorker(EVEN, 1_000_000), FakeWorker(EVEN, 200_000)
    rollout.figures = {"experts": run(rollout, {"stable": stable, "canary": canary}, ["experts"])["experts"].as_dict()}
    restarted = FakeWorker(STARVED, 20_000)  # fewer counts than at the snapshot: a new process
    stable.serve(EVEN, 20_000)
    result = run(rollout, {"stable": stable, "canary": restarted}, ["experts"])["experts"]
    assert result.verdict == gates.FAIL


def test_the_expert_gate_skips_without_workers_or_without_experts(rollout):
    assert run(rollout, {}, ["experts"])["experts"].verdict == gates.SKIP

    class Dense:
        def stats(self):
            return {"expert_activation_shares": None}

    result = run(rollout, {"stable": Dense(), "canary": Dense()}, ["experts"])["experts"]
    assert result.verdict == gates.SKIP and "not a mixture-of-experts" in result.detail


def test_a_gate_that_cannot_be_evaluated_fails_with_the_error(rollout):
    class Broken:
        def stats(self):
            raise ConnectionError("worker gone")

    result = run(rollout, {"stable": Broken(), "canary": Broken()}, ["experts"])["experts"]
    assert result.verdict == gates.FAIL and "ConnectionError: worker gone" in result.detail
