import numpy as np
import pytest
from scipy import stats

from controlplane.stats.trends import huber_fit, mann_kendall, robust_scale, theil_sen


def test_mann_kendall_matches_kendalls_tau_on_small_and_large_samples():
    rng = np.random.default_rng(1)
    for n in (5, 9, 40):
        y = rng.normal(size=n) + 0.05 * np.arange(n)
        expected = stats.kendalltau(np.arange(n), y, alternative="greater").pvalue
        assert mann_kendall(y).p_value == pytest.approx(expected, rel=0.1 if n > 10 else 1e-9)


def test_mann_kendall_within_groups_ignores_a_level_shift_between_them():
    rng = np.random.default_rng(2)
    y = np.r_[rng.normal(0, 1, 20), rng.normal(50, 1, 20)]
    assert mann_kendall(y).p_value < 1e-4
    assert mann_kendall(y, groups=np.repeat([0, 1], 20)).p_value > 0.01


def test_theil_sen_recovers_a_slope_with_outliers_and_brackets_it():
    rng = np.random.default_rng(3)
    x = np.arange(60.0)
    y = 2.0 * x + rng.normal(0, 1, 60)
    y[[5, 17, 40]] += 500
    fit = theil_sen(x, y)
    assert fit.slope == pytest.approx(2.0, abs=0.05)
    assert fit.low < 2.0 < fit.high


def test_theil_sen_within_groups_gives_the_slope_without_the_step():
    x = np.arange(40.0)
    y = 0.5 * x + np.where(x >= 20, 100.0, 0.0)
    assert theil_sen(x, y, groups=(x >= 20).astype(int)).slope == pytest.approx(0.5)


def test_robust_scale_and_huber_fit():
    rng = np.random.default_rng(4)
    x = rng.normal(10, 2, 5000)
    med, sd = robust_scale(x)
    assert med == pytest.approx(10, abs=0.1) and sd == pytest.approx(2, rel=0.05)
    assert robust_scale(np.ones(5), floor=0.5) == (1.0, 0.5)
    t = np.arange(200.0)
    y = 3 + 0.5 * t + rng.normal(0, 0.1, 200)
    y[::20] += 100
    assert huber_fit(np.column_stack([np.ones_like(t), t]), y)[1] == pytest.approx(0.5, abs=0.01)


def test_they_reject_inputs_they_cannot_use():
    with pytest.raises(ValueError, match="at least 3"):
        mann_kendall([1.0, 2.0])
    with pytest.raises(ValueError, match="groups"):
        mann_kendall([1.0, 2.0, 3.0], groups=[0, 1])
    with pytest.raises(ValueError, match="two distinct x"):
        theil_sen([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
