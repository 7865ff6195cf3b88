"""Behaviour of the drift statistics on seeded synthetic data (bench/traces.py)."""

import dataclasses
import json
import math

import numpy as np
import pytest

from bench.traces import latency_series, output_lengths, token_outputs
from controlplane.stats.drift import (
    ChangePointConfig,
    ChangePointDetector,
    DistributionConfig,
    QualityConfig,
    Verdict,
    agreement,
    compare_outputs,
    cusum_threshold,
    detect,
    holm,
    output_statistics,
    perplexity,
    quality_check,
)


def rng(seed):
    return np.random.default_rng(seed)


# -- change points ------------------------------------------------------------------------------------------------


def test_a_latency_shift_is_detected_near_where_it_began():
    baseline = latency_series(rng(1), 500)
    series = latency_series(rng(2), 400, shift_sigma=1.5, shift_at=200)
    result = detect(baseline, series)
    assert result.verdict == Verdict.DRIFT
    assert 200 <= result.alarm_index <= 240
    assert abs(result.change_index - 200) <= 15
    assert result.ratio == pytest.approx(np.exp(0.35 * 1.5), rel=0.25)
    assert result.statistic > result.threshold
    assert result.after.median > result.before.median
    assert "drift" in result.reason and result.as_dict()["verdict"] == "drift"


@pytest.mark.parametrize("heavy", [False, True])
def test_an_unchanged_series_does_not_fire(heavy):
    baseline = latency_series(rng(3), 500, heavy=heavy)
    result = detect(baseline, latency_series(rng(4), 1000, heavy=heavy))
    assert result.verdict == Verdict.OK
    assert result.alarm_index is None and result.statistic <= result.threshold
    assert result.baseline.n == 500 and result.series.n == 1000
    assert json.dumps(result.as_dict(), allow_nan=False)  # stores in a JSON field as it is


def test_one_huge_straggler_does_not_raise_an_alarm():
    baseline = latency_series(rng(5), 500)
    series = latency_series(rng(6), 300)
    series[150] = 1000.0
    assert detect(baseline, series).verdict == Verdict.OK


def test_the_streaming_detector_agrees_with_the_batch_one_and_latches():
    baseline = latency_series(rng(7), 300)
    series = latency_series(rng(8), 300, shift_sigma=1.0, shift_at=100)
    batch = detect(baseline, series)
    detector = ChangePointDetector(baseline)
    states = [detector.update(x) for x in series]
    first = next(i for i, s in enumerate(states) if s.verdict == Verdict.DRIFT)
    assert first == batch.alarm_index
    assert states[-1].alarm_index == batch.alarm_index and states[-1].change_index == batch.change_index
    assert states[-1].verdict == Verdict.DRIFT
    detector.reset()
    assert detector.update(series[0]).verdict == Verdict.OK


def test_the_direction_decides_which_shifts_count():
    baseline = latency_series(rng(9), 500)
    faster = latency_series(rng(10), 300, shift_sigma=-1.5, shift_at=100)
    assert detect(baseline, faster).verdict == Verdict.OK
    assert detect(baseline, faster, ChangePointConfig(direction="down")).verdict == Verdict.DRIFT
    assert detect(baseline, faster, ChangePointConfig(direction="both")).verdict == Verdict.DRIFT


def test_a_short_baseline_is_inconclusive():
    result = detect(latency_series(rng(11), 20), latency_series(rng(12), 100))
    assert result.verdict == Verdict.INCONCLUSIVE and "baseline" in result.reason
    detector = ChangePointDetector(latency_series(rng(11), 20))
    assert detector.update(1.0).verdict == Verdict.INCONCLUSIVE


def test_thresholds_follow_siegmund_and_grow_with_the_family():
    assert cusum_threshold(338.0, 0.5) == pytest.approx(4.0, abs=0.01)
    single = ChangePointConfig().h
    assert ChangePointConfig(family_size=2).h > single
    assert ChangePointConfig(direction="both").h == pytest.approx(ChangePointConfig(family_size=2).h)
    assert ChangePointConfig(threshold=3.0).h == 3.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target_arl0": 10.0}, "target_arl0"),
        ({"direction": "sideways"}, "direction"),
        ({"clip_sigma": 0.5}, "clip_sigma"),
        ({"family_size": 0}, "family_size"),
        ({"threshold": -1.0}, "threshold"),
    ],
)
def test_a_bad_change_point_config_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ChangePointConfig(), **change)


def test_bad_latencies_are_refused():
    with pytest.raises(ValueError, match="non-positive"):
        detect([1.0] * 200, [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        detect([1.0] * 200, [1.0, math.nan])
    with pytest.raises(ValueError, match="positive"):
        ChangePointDetector([1.0] * 200).update(-1.0)


# -- output distribution ------------------------------------------------------------------------------------------


def outputs(seed, n=1000, scale=1.0):
    generator = rng(seed)
    return output_statistics(token_outputs(generator, output_lengths(generator, n, scale=scale)))


def test_output_statistics_are_per_output():
    stats = output_statistics([[1, 1, 2, 3], [5], []])
    assert stats["length"].tolist() == [4.0, 1.0]
    assert stats["distinct_ratio"].tolist() == [0.75, 1.0]
    assert stats["mean_log_token_id"][1] == pytest.approx(math.log(6))


@pytest.mark.parametrize("method", ["ks", "psi"])
def test_identical_distributions_pass(method):
    result = compare_outputs(outputs(1), outputs(2), DistributionConfig(method=method))
    assert result.verdict == Verdict.OK
    assert {t.name for t in result.tests} == {"length", "distinct_ratio", "mean_log_token_id"}
    assert all(t.statistic <= t.threshold for t in result.tests)


@pytest.mark.parametrize("method", ["ks", "psi"])
def test_shifted_lengths_fail_and_the_summary_shows_why(method):
    result = compare_outputs(outputs(1), outputs(2, scale=1.3), DistributionConfig(method=method))
    assert result.verdict == Verdict.DRIFT
    length = next(t for t in result.tests if t.name == "length")
    assert length.verdict == Verdict.DRIFT and length.statistic > length.threshold
    assert length.current.median > length.reference.median
    assert len(length.reference.shares) == len(length.reference.edges) + 1
    assert sum(length.current.shares) == pytest.approx(1.0)
    assert "length" in result.reason and json.dumps(result.as_dict(), allow_nan=False)


@pytest.mark.parametrize("permutations", [0, 200])
def test_psi_is_calibrated_by_permutation_or_by_the_chi_square_rule(permutations):
    config = DistributionConfig(method="psi", permutations=permutations)
    same = compare_outputs(outputs(3, 300), outputs(4, 300), config)
    assert same.verdict == Verdict.OK and all(t.statistic <= t.threshold for t in same.tests)
    moved = compare_outputs(outputs(3, 300), outputs(4, 300, scale=1.5), config)
    length = next(t for t in moved.tests if t.name == "length")
    assert moved.verdict == Verdict.DRIFT and length.statistic > length.threshold > 0


def test_holm_levels_step_down():
    assert holm([0.04, 0.001, 0.2], 0.06) == [pytest.approx(0.03), pytest.approx(0.02), pytest.approx(0.06)]


def test_too_few_outputs_is_inconclusive_and_bad_input_is_refused():
    small = {"length": np.arange(10.0)}
    assert compare_outputs(small, small).verdict == Verdict.INCONCLUSIVE
    with pytest.raises(ValueError, match="no statistic"):
        compare_outputs({"a": [1.0]}, {"b": [1.0]})
    with pytest.raises(ValueError, match="NaN"):
        compare_outputs({"a": [1.0] * 60}, {"a": [math.nan] * 60})
    with pytest.raises(ValueError, match="method"):
        DistributionConfig(method="chi")


# -- quality ------------------------------------------------------------------------------------------------------


def golden(seed, n=40):
    generator = rng(seed)
    return [list(generator.integers(0, 1000, 40)) for _ in range(n)]


def test_a_faithful_golden_run_passes():
    refs = golden(1)
    result = quality_check(refs, refs, perplexity=5.0, baseline_perplexity=4.9)
    assert result.verdict == Verdict.OK and result.agreement == 1.0
    assert result.perplexity_ratio == pytest.approx(5.0 / 4.9)


def test_a_decayed_golden_run_fails_and_names_the_worst_items():
    refs = golden(2)
    outs = [r[:] for r in refs]
    for i in (3, 7, 11, 19):
        outs[i][2] = -1  # diverges after two tokens
    result = quality_check(outs, refs)
    assert result.verdict == Verdict.DRIFT and "agreement" in result.reason
    assert set(result.worst_items[:4]) == {3, 7, 11, 19}
    assert result.per_item[3] == pytest.approx(2 / 32)


def test_a_perplexity_rise_fails_even_with_perfect_agreement():
    refs = golden(3)
    result = quality_check(refs, refs, perplexity=6.0, baseline_perplexity=5.0)
    assert result.verdict == Verdict.DRIFT and "perplexity" in result.reason


def test_agreement_methods_and_perplexity():
    assert agreement([1, 2, 3, 9], [1, 2, 3, 4], prefix_tokens=4) == 0.75
    assert agreement([1, 2, 4, 3], [1, 2, 3, 4], method="similarity") == pytest.approx(0.75)
    assert agreement([], []) == 1.0
    assert perplexity([math.log(4.0)] * 3) == pytest.approx(4.0)


def test_quality_check_refuses_bad_input_and_is_inconclusive_on_a_tiny_set():
    with pytest.raises(ValueError, match="pair up"):
        quality_check([[1]], [[1], [2]])
    with pytest.raises(ValueError, match="perplexity"):
        quality_check([[1]], [[1]], perplexity=0.5)
    with pytest.raises(ValueError, match="max_perplexity_ratio"):
        QualityConfig(max_perplexity_ratio=0.9)
    assert quality_check([[1]], [[1]]).verdict == Verdict.INCONCLUSIVE
    assert json.dumps(quality_check([], []).as_dict(), allow_nan=False)
