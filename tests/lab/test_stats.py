"""jacnb.lab.stats against numbers computed by hand (the arithmetic is in the comments; t
critical values from a printed Student-t table), never against the scipy calls the code makes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jacnb.lab import stats


def test_critical_t_matches_the_printed_table():
    # Student-t table, two-sided 95 %: df=1 -> 12.706, df=2 -> 4.303, df=4 -> 2.776, df=30 -> 2.042
    assert stats.critical_t(2) == pytest.approx(12.706, abs=1e-3)
    assert stats.critical_t(3) == pytest.approx(4.303, abs=1e-3)
    assert stats.critical_t(5) == pytest.approx(2.776, abs=1e-3)
    assert stats.critical_t(31) == pytest.approx(2.042, abs=1e-3)
    # two-sided 99 %, df=4 -> 4.604
    assert stats.critical_t(5, 0.99) == pytest.approx(4.604, abs=1e-3)
    with pytest.raises(ValueError):
        stats.critical_t(1)


def test_t_interval_by_hand():
    # x = 1..5: mean 3; sd = sqrt((4+1+0+1+4)/4) = sqrt(2.5) = 1.581139; se = sd/sqrt(5) = 0.707107
    # half = t_{.975,4} * se = 2.776445 * 0.707107 = 1.963243 -> [1.036757, 4.963243]
    iv = stats.t_interval([1, 2, 3, 4, 5])
    assert iv.estimate == pytest.approx(3.0)
    assert iv.sd == pytest.approx(1.581139, abs=1e-6)
    assert iv.low == pytest.approx(1.036757, abs=1e-5)
    assert iv.high == pytest.approx(4.963243, abs=1e-5)
    assert iv.n == 5 and iv.half_width == pytest.approx(1.963243, abs=1e-5)


def test_single_value_has_no_interval():
    iv = stats.t_interval([0.7])
    assert iv.estimate == 0.7 and iv.n == 1
    assert math.isnan(iv.low) and math.isnan(iv.high) and math.isnan(iv.sd)


def test_paired_difference_by_hand_uses_only_common_seeds():
    # seeds 0,1,2 in both arms; seed 3 only in the treatment (left out)
    # d = [0.95-0.94, 0.97-0.95, 0.96-0.95] = [0.01, 0.02, 0.01]; mean 0.0133333
    # sd = sqrt(((-1/300)^2 + (2/300)^2 + (-1/300)^2) / 2) = sqrt(6/90000 / 2) = 0.0057735
    # se = 0.0057735 / sqrt(3) = 0.0033333; half = 4.302653 * 0.0033333 = 0.0143422
    # -> [-0.0010088, 0.0276755]
    treat = {0: 0.95, 1: 0.97, 2: 0.96, 3: 0.99}
    base = {0: 0.94, 1: 0.95, 2: 0.95}
    iv = stats.paired_difference(treat, base)
    assert iv.n == 3
    assert iv.estimate == pytest.approx(0.0133333, abs=1e-7)
    assert iv.sd == pytest.approx(0.0057735, abs=1e-7)
    assert iv.low == pytest.approx(-0.0010088, abs=1e-6)
    assert iv.high == pytest.approx(0.0276755, abs=1e-6)
    with pytest.raises(ValueError):
        stats.paired_difference({0: 1.0}, {1: 1.0})


def test_slope_by_hand():
    # x = [2,3,4,5] (mean 3.5, dx = [-1.5,-.5,.5,1.5], sum dx^2 = 5)
    # y = [.90,.92,.93,.97] (mean .93, dy = [-.03,-.01,0,.04]); sum dx*dy = .045+.005+0+.06 = .11
    # slope = .11 / 5 = 0.022
    assert stats.slope([2, 3, 4, 5], [0.90, 0.92, 0.93, 0.97]) == pytest.approx(0.022)
    with pytest.raises(ValueError):
        stats.slope([3, 3], [1, 2])


def test_paired_slope_is_the_t_interval_of_per_seed_slopes():
    # seeds with exact lines of slope 1, 2, 3: mean 2, sd 1, se 1/sqrt(3) = 0.577350
    # half = 4.302653 * 0.577350 = 2.484138 -> [-0.484138, 4.484138]
    x = [2, 3, 4]
    ys = {s: [10 + b * xi for xi in x] for s, b in ((0, 1.0), (1, 2.0), (2, 3.0))}
    iv = stats.paired_slope(x, ys)
    assert iv.estimate == pytest.approx(2.0)
    assert iv.low == pytest.approx(-0.484138, abs=1e-5)
    assert iv.high == pytest.approx(4.484138, abs=1e-5)


@pytest.mark.parametrize(
    ("low", "high", "side", "thr", "margin", "expected"),
    [
        (0.1, 0.3, "greater", 0.0, None, stats.CLAIMED),
        (-0.3, -0.1, "greater", 0.0, None, stats.OTHER),
        (-0.1, 0.3, "greater", 0.0, None, stats.STRADDLES),
        (-0.3, -0.1, "less", 0.0, None, stats.CLAIMED),
        (0.1, 0.3, "less", 0.0, None, stats.OTHER),
        (-0.004, 0.004, "equivalent", 0.0, 0.005, stats.CLAIMED),
        (0.006, 0.01, "equivalent", 0.0, 0.005, stats.OTHER),
        (-0.01, -0.006, "equivalent", 0.0, 0.005, stats.OTHER),
        (0.003, 0.007, "equivalent", 0.0, 0.005, stats.STRADDLES),
        (0.45, 0.55, "equivalent", 0.5, 0.1, stats.CLAIMED),
        (float("nan"), float("nan"), "greater", 0.0, None, stats.STRADDLES),
        # an interval touching the threshold is not on the claimed side
        (0.0, 0.2, "greater", 0.0, None, stats.STRADDLES),
    ],
)
def test_classify(low, high, side, thr, margin, expected):
    assert stats.classify(low, high, side, thr, margin) == expected


def _mc_power(n: int, sd: float, effect: float, level: float = 0.95, reps: int = 40_000) -> float:
    """Brute force: the share of simulated n-seed samples (mean ``effect`` above a boundary at
    0) whose t-interval lies entirely above 0."""
    rng = np.random.default_rng(n)
    x = effect + sd * rng.standard_normal((reps, n))
    half = stats.critical_t(n, level) * x.std(axis=1, ddof=1) / math.sqrt(n)
    return float((x.mean(axis=1) - half > 0).mean())


def test_power_against_simulation():
    for n, sd, eff in ((3, 1.0, 1.0), (5, 0.01, 0.008), (12, 2.0, 1.0)):
        assert stats.power(n, sd, eff) == pytest.approx(_mc_power(n, sd, eff), abs=0.01)


def test_seeds_needed_reaches_80_percent_power_and_no_fewer_seeds_do():
    for sd, eff in ((0.0057735, 0.0133333), (1.0, 1.0), (1.0, 0.5), (0.02, 0.005)):
        n = stats.seeds_needed(sd, eff)
        assert _mc_power(n, sd, eff) >= 0.79 and stats.power(n, sd, eff) >= 0.8
        assert stats.power(n - 1, sd, eff) < 0.8
        # the 50 %-power rule (half-width below the observed effect) never asks more seeds
        half50 = next(m for m in range(2, 10**5)
                      if stats.critical_t(m) * sd / math.sqrt(m) < eff)
        assert half50 <= n
    # sd 1, effect 1: n = 10 (power 0.803; n = 9: 0.748); by the 50 % rule it was 7
    assert stats.seeds_needed(1.0, 1.0) == 10
    assert stats.seeds_needed(1.0, -1.0) == 10
    assert stats.seeds_needed(0.0, 0.1) == 2
    assert stats.seeds_needed(1.0, 0.0) is None
    assert stats.seeds_needed(1.0, 1e-6) is None  # beyond max_n


def test_distance_to_decision():
    assert stats.distance_to_decision(0.3, "greater", 0.1) == pytest.approx(0.2)
    # equivalence, margin 0.005: mean 0.002 -> 0.003 inside; mean 0.008 -> 0.003 outside
    assert stats.distance_to_decision(0.002, "equivalent", 0.0, 0.005) == pytest.approx(0.003)
    assert stats.distance_to_decision(0.008, "equivalent", 0.0, 0.005) == pytest.approx(0.003)
