"""Paired statistics for the verdicts (issue 13): Student-t intervals over seeds.

One seed fixes the training draw, the initialization and the batch order for *both* arms of a
comparison, so the unit of evidence is the per-seed paired difference (or the per-seed slope of a
trend), and the interval is the Student-t interval of its mean over seeds:

    mean ± t_{1-α/2, n-1} · sd / √n,        sd with ddof = 1.

* :func:`t_interval` -- the interval of a sample's mean;
* :func:`paired_difference` -- of ``treatment - baseline`` matched by seed (Fig. 3, Tables
  II-V of Sokolic et al. 2017, Sec. VI);
* :func:`slope` / :func:`paired_slope` -- per-seed least-squares slope of a metric against depth,
  width, n, ... then the interval over seeds (trend claims: Fig. 4, Sec. VI-A2; Oymak et al.);
* :func:`classify` -- where an interval lies relative to a claim's threshold (or equivalence
  band, for "on par" claims such as Fig. 3 (a));
* :func:`seeds_needed` -- how many seeds a decisive verdict would need with 80 % power, from the
  observed effect (the mean's distance to the decision boundary) and the observed sd;
* :func:`power` -- the probability that the interval of ``n`` seeds clears the boundary.

Pure functions of numbers; no torch. Used by :mod:`jacnb.lab.gates` for every chapter's verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

__all__ = [
    "Interval",
    "critical_t",
    "t_interval",
    "paired_difference",
    "slope",
    "paired_slope",
    "CLAIMED",
    "OTHER",
    "STRADDLES",
    "classify",
    "distance_to_decision",
    "seeds_needed",
    "power",
    "POWER",
]

#: The power :func:`seeds_needed` plans for (the verdicts' "seeds needed").
POWER = 0.8

CLAIMED = "claimed side"
OTHER = "other side"
STRADDLES = "straddles"


@dataclass(frozen=True)
class Interval:
    """Mean ``estimate`` of ``n`` values with its two-sided ``level`` Student-t interval
    ``[low, high]``; ``sd`` is the sample standard deviation (ddof = 1). With one value, ``sd``,
    ``low`` and ``high`` are NaN (no interval)."""

    estimate: float
    low: float
    high: float
    n: int
    sd: float
    level: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def critical_t(n: int, level: float = 0.95) -> float:
    """``t_{1-(1-level)/2, n-1}``: the two-sided critical value for a mean of ``n`` values."""
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(_st.t.ppf(1.0 - (1.0 - level) / 2.0, n - 1))


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> Interval:
    """The mean of ``values`` with its Student-t interval (NaN bounds for a single value)."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("no values")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"non-finite values: {x.tolist()}")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, math.nan, math.nan, 1, math.nan, level)
    sd = float(x.std(ddof=1))
    half = critical_t(x.size, level) * sd / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half, int(x.size), sd, level)


def paired_difference(
    treatment: Mapping[int, float], baseline: Mapping[int, float], level: float = 0.95
) -> Interval:
    """Interval of the mean of ``treatment[s] - baseline[s]`` over the seeds ``s`` present in
    both (each mapping: seed -> metric). Seeds present in only one arm are not used."""
    seeds = sorted(set(treatment) & set(baseline))
    if not seeds:
        raise ValueError("no seed is present in both arms")
    return t_interval([treatment[s] - baseline[s] for s in seeds], level)


def slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Least-squares slope of ``y`` on ``x``: ``Σ(x-x̄)(y-ȳ) / Σ(x-x̄)²``."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError("x and y must be 1-d and of the same length")
    dx = xa - xa.mean()
    ss = float(dx @ dx)
    if xa.size < 2 or ss == 0.0:
        raise ValueError("a slope needs at least two distinct x values")
    return float(dx @ (ya - ya.mean())) / ss


def paired_slope(
    x: Sequence[float] | np.ndarray,
    y_by_seed: Mapping[int, Sequence[float] | np.ndarray],
    level: float = 0.95,
) -> Interval:
    """Trend claims: per seed, the slope of its ``y`` (one value per ``x``) on ``x``; then the
    t-interval of the mean slope over seeds."""
    if not y_by_seed:
        raise ValueError("no seeds")
    return t_interval([slope(x, y) for _, y in sorted(y_by_seed.items())], level)


def classify(
    low: float, high: float, side: str, threshold: float = 0.0, margin: float | None = None
) -> str:
    """Where ``[low, high]`` lies for a claim of ``side`` (``"greater"``, ``"less"`` or
    ``"equivalent"``, see :mod:`jacnb.lab.claims`): :data:`CLAIMED`, :data:`OTHER` or
    :data:`STRADDLES`. Equivalence: claimed when the interval lies inside
    ``(threshold - margin, threshold + margin)``, other side when it lies entirely outside that
    band, straddles otherwise. NaN bounds straddle."""
    if math.isnan(low) or math.isnan(high):
        return STRADDLES
    if side == "greater":
        return CLAIMED if low > threshold else OTHER if high < threshold else STRADDLES
    if side == "less":
        return CLAIMED if high < threshold else OTHER if low > threshold else STRADDLES
    if side == "equivalent":
        if margin is None or margin <= 0:
            raise ValueError("an equivalence claim needs a positive margin")
        lo_band, hi_band = threshold - margin, threshold + margin
        if lo_band < low and high < hi_band:
            return CLAIMED
        if low > hi_band or high < lo_band:
            return OTHER
        return STRADDLES
    raise ValueError(f"unknown side {side!r}")


def distance_to_decision(
    estimate: float, side: str, threshold: float = 0.0, margin: float | None = None
) -> float:
    """How far the mean must stay from the nearest decision boundary: the half-width an interval
    around ``estimate`` may have and still be decisive (either way). 0 when the mean sits on a
    boundary (no number of seeds decides)."""
    if side in ("greater", "less"):
        return abs(estimate - threshold)
    if side == "equivalent":
        if margin is None:
            raise ValueError("an equivalence claim needs a margin")
        return abs(margin - abs(estimate - threshold))
    raise ValueError(f"unknown side {side!r}")


def power(n: int, sd: float, effect: float, level: float = 0.95) -> float:
    """Probability that the ``level`` Student-t interval of ``n`` seeds lies entirely on the far
    side of a boundary ``|effect|`` away from the true mean, the seeds' sd being ``sd``: with
    ``δ = |effect| √n / sd``, ``P(T' > t_{1-α/2, n-1})`` for ``T'`` noncentral t with ``n - 1``
    degrees of freedom and noncentrality ``δ`` (the interval clears the boundary iff the
    one-sided t statistic exceeds the two-sided critical value; the far tail is neglected)."""
    if n < 2:
        return 0.0
    if sd == 0.0:
        return 1.0 if effect != 0.0 else 0.0
    delta = abs(effect) * math.sqrt(n) / sd
    return float(_st.nct.sf(critical_t(n, level), n - 1, delta))


def seeds_needed(
    sd: float,
    effect: float,
    level: float = 0.95,
    max_n: int = 100_000,
    target: float = POWER,
) -> int | None:
    """The smallest ``n >= 2`` with :func:`power` ``(n, sd, effect, level) >= target`` (80 % by
    default): how many seeds a decisive verdict would need, with 80 % probability, if the true
    mean sat ``effect`` away from the decision boundary (see :func:`distance_to_decision`) and
    the seeds' sd were ``sd`` -- both as observed. (Plugging the observed mean into the
    interval's half-width alone, ``t · sd / √n < |effect|``, gives only 50 % power.) ``None``
    when ``effect`` is 0 or no ``n <= max_n`` suffices; 2 when ``sd`` is 0."""
    if not (math.isfinite(sd) and math.isfinite(effect)) or sd < 0:
        raise ValueError(f"sd and effect must be finite, sd >= 0 (got {sd}, {effect})")
    if not 0.0 < target < 1.0:
        raise ValueError(f"target power must be in (0, 1), got {target}")
    effect = abs(effect)
    if effect == 0.0:
        return None
    if sd == 0.0:
        return 2
    # normal approximation n ~ ((z_{1-α/2} + z_power) sd / effect)^2 from below, then walk up
    z = float(_st.norm.ppf(1.0 - (1.0 - level) / 2.0)) + float(_st.norm.ppf(target))
    n = max(2, math.floor((z * sd / effect) ** 2) - 2)
    while n <= max_n:
        if power(n, sd, effect, level) >= target:
            return n
        n += 1
    return None
