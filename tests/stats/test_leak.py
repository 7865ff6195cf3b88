"""Behaviour of the leak detector on seeded synthetic traces (bench/traces.py)."""

import dataclasses
import json
import math

import numpy as np
import pytest

from bench.traces import GB, MB, memory_trace
from controlplane.stats.leak import LeakConfig, LeakDetector, LeakState, analyse, evaluations

KV = LeakConfig(load_bytes_per_unit=1.0)  # the load series of the traces is KV-cache bytes


def leak_trace(rate=10.0, seed=7, hours=2.5, start=3600.0, stop=None, kind="steps"):
    return memory_trace(kind, hours, seed, leak_mb_per_min=rate, leak_start_s=start, leak_stop_s=stop, limit=9 * GB)


def test_it_detects_a_clear_leak_with_the_right_slope_and_time_to_oom():
    trace = leak_trace()
    status = analyse(trace.times, trace.values, limit=trace.limit)
    assert status.state == LeakState.LEAK
    assert status.slope_bytes_per_min == pytest.approx(10 * MB, rel=0.1)
    low, high = status.slope_ci_bytes_per_s
    assert low <= status.slope_bytes_per_s <= high
    truth = trace.true_time_to_oom(status.time)
    assert status.time_to_oom_s == pytest.approx(truth, rel=0.2)
    assert "leak" in status.reason and status.p_value < 0.01 and status.window_s in KV.windows_s


def test_it_declares_a_fast_leak_within_ten_minutes_of_its_start():
    trace = leak_trace()
    first = next(s for s in evaluations(trace.times, trace.values) if s.state == LeakState.LEAK)
    assert 3600 < first.time <= 3600 + 600


@pytest.mark.parametrize("kind", ["sawtooth", "steps", "load", "walk"])
def test_stable_traces_never_fire(kind):
    trace = memory_trace(kind, 6, seed=11)
    states = {s.state for s in evaluations(trace.times, trace.values, trace.loads, config=KV)}
    assert LeakState.LEAK not in states


def test_growth_explained_by_load_is_not_a_leak_and_the_coefficient_is_fitted():
    trace = memory_trace("load", 6, seed=12)
    status = analyse(trace.times, trace.values, trace.loads)
    assert status.load_bytes_per_unit == pytest.approx(1.0, abs=0.05)
    checks = evaluations(trace.times, trace.values, trace.loads)
    assert all(s.state != LeakState.LEAK for s in checks)


def test_a_leak_that_stops_clears_to_ok():
    trace = leak_trace(rate=10.0, hours=3.0, start=3600.0, stop=5400.0)
    checks = evaluations(trace.times, trace.values)
    assert any(s.state == LeakState.LEAK for s in checks if s.time < 5400 + 300)
    assert checks[-1].state == LeakState.OK
    assert checks[-1].time_to_oom_s is None


def test_a_step_that_stays_flat_is_not_a_leak():
    t = np.arange(4 * 3600.0)
    rng = np.random.default_rng(5)
    values = 4 * GB + rng.normal(0, 2 * MB, t.size) + np.where(t > 2 * 3600, 300 * MB, 0.0)
    assert all(s.state != LeakState.LEAK for s in evaluations(t, values))


def test_the_streaming_and_batch_interfaces_agree():
    trace = leak_trace(rate=4.0, seed=3, hours=1.8, kind="mixed")
    detector = LeakDetector(KV, limit=trace.limit)
    for t, v, load in zip(trace.times, trace.values, trace.loads, strict=True):
        streamed = detector.update(t, v, load)
    batch = analyse(trace.times, trace.values, trace.loads, limit=trace.limit, config=KV)
    assert streamed == batch
    assert streamed.state == LeakState.LEAK


def test_it_warms_up_before_judging_and_needs_a_limit_for_time_to_oom():
    detector = LeakDetector()
    status = detector.update(0.0, 1e9)
    assert status.state == LeakState.OK and not status.ready and "no data" in status.reason
    trace = leak_trace()
    status = analyse(trace.times, trace.values)
    assert status.ready and status.time_to_oom_s is None and status.time_to_oom_range_s == (None, None)
    short = analyse(np.arange(120.0), np.full(120, 1e9))
    assert short.state == LeakState.OK and not short.ready


def test_the_status_converts_to_plain_values():
    trace = leak_trace()
    status = analyse(trace.times, trace.values, limit=trace.limit)
    plain = status.as_dict()
    assert plain["state"] == "leak" and isinstance(plain["windows"], list)
    assert json.dumps(plain, allow_nan=False)
    assert plain["slope_bytes_per_min"] == pytest.approx(status.slope_bytes_per_s * 60)


def test_reset_forgets_the_history():
    trace = leak_trace()
    detector = LeakDetector()
    for t, v in zip(trace.times, trace.values, strict=True):
        detector.update(t, v)
    assert detector.status.state == LeakState.LEAK
    detector.reset()
    assert detector.status.state == LeakState.OK and not detector.status.ready


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"block_s": 0.5}, "block_s"),
        ({"eval_every_s": 65.0}, "multiple of block_s"),
        ({"windows_s": (1800.0, 600.0)}, "windows_s"),
        ({"windows_s": (60.0,)}, "windows_s"),
        ({"alpha": 0.5}, "alpha"),
        ({"confirmations": 0}, "confirmations"),
        ({"min_growth_bytes": -1.0}, "min_growth_bytes"),
        ({"segment_s": 1.0}, "segment_s"),
        ({"load_bytes_per_unit": -2.0}, "load_bytes_per_unit"),
    ],
)
def test_a_bad_config_is_refused_with_the_value(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(LeakConfig(), **change)


@pytest.mark.parametrize(
    ("times", "values", "loads", "message"),
    [
        ([0.0, 1.0, 2.0], [1.0, math.nan, 1.0], None, "NaN"),
        ([0.0, 2.0, 1.0], [1.0, 1.0, 1.0], None, "times must increase"),
        ([0.0, 1.0], [1.0, 1.0], None, "at least 3"),
        ([0.0, 1.0, 2.0], [1.0, 1.0], None, "equal length"),
        ([0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [1.0, 1.0], "loads must match"),
        ([0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [1.0, math.inf, 1.0], "loads contain"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(times, values, loads, message):
    with pytest.raises(ValueError, match=message):
        analyse(times, values, loads)


def test_the_streaming_detector_refuses_bad_samples():
    detector = LeakDetector()
    detector.update(10.0, 1e9)
    with pytest.raises(ValueError, match="times must increase"):
        detector.update(10.0, 1e9)
    with pytest.raises(ValueError, match="finite"):
        detector.update(11.0, math.nan)
    with pytest.raises(ValueError, match="load"):
        detector.update(12.0, 1e9, load=math.nan)
