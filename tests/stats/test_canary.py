"""Canary statistics: a canary fails only when it is significantly AND materially worse than stable."""

import json

import numpy as np
import pytest

from controlplane.stats.canary import (
    compare_error_rates,
    compare_latency,
    compare_shares,
    counts_from_report,
    hodges_lehmann_ratio,
    total_variation,
    window_counts,
)


def lognormal(seed: int, n: int, median: float = 0.2, sigma: float = 0.35) -> np.ndarray:
    return median * np.exp(np.random.default_rng(seed).normal(0, sigma, n))


# --- latency -----------------------------------------------------------------------------------------------------
def test_a_canary_twice_as_slow_is_significantly_and_materially_worse():
    test = compare_latency(lognormal(1, 40, median=0.4), lognormal(2, 200))
    assert test.worse and test.significant and test.material
    assert 1.7 < test.ratio < 2.3 and test.p_value < 1e-6
    assert test.n_canary == 40 and test.n_stable == 200


def test_a_canary_from_the_same_distribution_is_not_worse():
    test = compare_latency(lognormal(3, 20), lognormal(4, 180))
    assert not test.worse and test.p_value > 0.005


def test_a_significant_but_small_slowdown_is_not_material():
    # 10,000 requests a side: 5% slower is significant, but within the tolerated 20%
    test = compare_latency(lognormal(5, 10_000, median=0.21), lognormal(6, 10_000, median=0.2))
    assert test.significant and not test.material and not test.worse
    assert 1.02 < test.ratio < 1.08


def test_a_large_ratio_on_three_requests_is_not_significant():
    test = compare_latency([0.30, 0.33, 0.36], [0.2, 0.25, 0.22, 0.31, 0.19, 0.24])
    assert test.material and not test.significant and not test.worse


def test_a_p95_blown_up_by_one_spike_does_not_fail_the_canary():
    # the case: two slow requests move a 20-request p95 by half; the ranks barely move
    stable = lognormal(7, 180)
    canary = np.append(lognormal(8, 18), [1.0, 1.2])
    assert np.percentile(canary, 95) / np.percentile(stable, 95) > 1.5
    assert not compare_latency(canary, stable).worse


def test_hodges_lehmann_recovers_a_multiplicative_shift():
    stable = lognormal(9, 101)
    assert hodges_lehmann_ratio(stable * 1.5, stable) == pytest.approx(1.5, rel=1e-9)


def test_hodges_lehmann_on_large_samples_is_subsampled_deterministically():
    canary, stable = lognormal(10, 5000, median=0.3), lognormal(11, 5000)
    first = hodges_lehmann_ratio(canary, stable)
    assert first == hodges_lehmann_ratio(canary, stable)
    assert first == pytest.approx(1.5, rel=0.05)


@pytest.mark.parametrize(
    ("canary", "stable", "kwargs", "message"),
    [
        ([], [0.1], {}, "canary"),
        ([0.1], [float("nan")], {}, "stable"),
        ([-0.1], [0.1], {}, "canary"),
        ([0.1], [0.1], {"alpha": 0}, "alpha"),
        ([0.1], [0.1], {"alpha": 1.5}, "alpha"),
        ([0.1], [0.1], {"max_ratio": 0.5}, "max_ratio"),
    ],
)
def test_bad_latency_input_raises_naming_it(canary, stable, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare_latency(canary, stable, **kwargs)


def test_a_zero_latency_is_allowed():
    assert compare_latency([0.0, 0.1, 0.2], [0.1, 0.2, 0.3]).ratio > 0


# --- error rate --------------------------------------------------------------------------------------------------
def test_one_error_in_twenty_requests_is_not_enough_evidence():
    # 5% against 1%: the old rule (difference > 2 points) rolled this back
    test = compare_error_rates(1, 20, 2, 180)
    assert test.delta > 0.02 and not test.worse and test.p_value > 0.1


def test_many_more_errors_on_the_canary_fail_it():
    test = compare_error_rates(10, 40, 2, 200)
    assert test.worse and test.p_value < 1e-4 and test.delta == pytest.approx(0.24)


def test_a_tiny_but_significant_difference_in_errors_is_not_material():
    test = compare_error_rates(12_000, 1_000_000, 10_000, 1_000_000)
    assert test.p_value < 1e-6 and test.delta < 0.02 and not test.worse


def test_fewer_errors_on_the_canary_never_fail_it():
    test = compare_error_rates(0, 50, 40, 50)
    assert test.p_value == pytest.approx(1.0) and not test.worse


@pytest.mark.parametrize("args", [(1, 0, 0, 10), (5, 4, 0, 10), (0, 10, -1, 10), (0, 10, 11, 10)])
def test_impossible_counts_raise(args):
    with pytest.raises(ValueError):
        compare_error_rates(*args)


# --- expert shares -----------------------------------------------------------------------------------------------
def shares_counts(shares: list[float], tokens: int, layers: int = 4) -> np.ndarray:
    return np.tile(np.asarray(shares) * tokens, (layers, 1))


EVEN = [0.125] * 8


def test_starved_experts_are_caught_by_the_distance():
    canary = shares_counts([0.5, 0, 0, 0, 0, 0, 0, 0.5], 5000)
    test = compare_shares(canary, shares_counts(EVEN, 50_000))
    assert test.worse and test.distance == pytest.approx(0.75)
    assert test.layers == 4 and test.experts == 8 and test.p_value is not None and test.p_value < 1e-10


def test_huge_counts_with_a_small_shift_are_significant_but_pass():
    canary = shares_counts([0.135, 0.115, *EVEN[2:]], 10_000_000)
    test = compare_shares(canary, shares_counts(EVEN, 10_000_000))
    assert test.p_value is not None and test.p_value < 1e-10
    assert test.distance == pytest.approx(0.01) and not test.worse


def test_the_layer_that_moved_most_is_reported():
    stable = shares_counts(EVEN, 1000)
    canary = stable.copy()
    canary[2] = np.asarray([0.4, 0.4, 0.2, 0, 0, 0, 0, 0]) * 1000
    test = compare_shares(canary, stable)
    assert test.layer == 2 and test.distances[0] == 0 and test.worse
    assert test.shares_canary[:3] == [0.4, 0.4, 0.2]


def test_shares_of_different_models_are_refused():
    with pytest.raises(ValueError, match="not the same model"):
        compare_shares(shares_counts(EVEN, 10), shares_counts([0.25] * 4, 10))


def test_a_layer_without_tokens_is_refused():
    with pytest.raises(ValueError, match="routed tokens"):
        compare_shares(np.zeros((2, 8)), shares_counts(EVEN, 10, layers=2))


def test_total_variation_is_half_the_l1_distance():
    assert total_variation(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0
    assert total_variation(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0


def test_counts_are_rebuilt_from_a_workers_report():
    report = {"layers": [[0.25, 0.75], [0.5, 0.5]], "total": [0.375, 0.625], "tokens_routed": 800}
    assert counts_from_report(report).tolist() == [[100, 300], [200, 200]]
    assert counts_from_report(None) is None and counts_from_report({"layers": []}) is None


def test_a_window_is_the_difference_of_cumulative_counters_unless_they_went_back():
    start, now = np.array([[10.0, 20.0]]), np.array([[15.0, 40.0]])
    assert window_counts(now, start).tolist() == [[5, 20]]
    assert window_counts(now, None).tolist() == [[15, 40]]
    restarted = np.array([[3.0, 4.0]])
    assert window_counts(restarted, start).tolist() == [[3, 4]]


def test_every_result_stores_as_strict_json():
    results = [
        compare_latency(lognormal(1, 30), lognormal(2, 30)),
        compare_error_rates(0, 20, 0, 20),
        compare_shares(shares_counts(EVEN, 100), shares_counts(EVEN, 100)),
    ]
    for result in results:
        json.dumps(result.as_dict(), allow_nan=False)
