"""Every counted claim can fail: a runs frame drawn from its null world is not "reproduced".

For every registered :attr:`jacnb.lab.claims.Kind.CLAIM`, :func:`null_frame` draws a synthetic,
seeded runs frame in which the claim's per-seed statistic has the mean its
:class:`~jacnb.lab.claims.NullWorld` names (seed-to-seed noise, centred so the mean is exactly the
null world's), with every gate column set so that the gates pass: the verdict then comes from the
rule alone, and must not be "reproduced".

Two controls keep that test honest:

* the same generator, moved to a world where the claim clearly holds, gives "reproduced" (so a
  broken generator cannot make the null-world test pass vacuously);
* for every *size* claim, the rule weakened to a sign (:func:`jacnb.lab.claims.weakened_to_sign`,
  e.g. "exact costs more than plain" instead of "exact costs 5-20 x plain") calls the null world
  "reproduced" -- i.e. the null-world test fails for the weakened rule (the planted bug).
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

import numpy as np
import pandas as pd
import pytest

from jacnb.lab import gates
from jacnb.lab.claims import (
    CLAIMS,
    DIFFERENCE,
    EQUIVALENT,
    GAIN_CONTRAST,
    GREATER,
    LESS,
    LOG_RATIO,
    REGISTRY,
    SLOPE,
    VALUE,
    Claim,
    Kind,
    weakened_to_sign,
)
from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

N_SEEDS = 5
COUNTED = [c for c in REGISTRY if c.kind == Kind.CLAIM]
SIZE_CLAIMS = [c for c in COUNTED if weakened_to_sign(c) is not None]


def _cells(claim: Claim) -> list[dict]:
    """Two values per cell key (the filter's values where the claim filters that key)."""
    filt = dict(claim.cell_filter)
    out: list[dict] = [{}]
    for key in claim.cell_keys:
        values = list(filt.get(key, (1, 2)))
        out = [{**cell, key: v} for cell in out for v in values]
    for key, values in claim.cell_filter:  # filtered columns that are not cell keys
        if key not in claim.cell_keys:
            out = [{**cell, key: values[0]} for cell in out]
    return out


def _gate_columns(claim: Claim, arm: str | None) -> dict:
    g = claim.gates
    cols: dict = {"train_acc": 1.0, "steps": 10**6}
    if g.tuned_arms:
        cols.update(
            lam=0.1 if arm in g.tuned_arms else 0.0,
            lam_grid=[0.0, 0.01, 0.1, 1.0],
            chosen_by_tie=False,
            selection_seeds=[gates.SELECTION_SEED_BASE + i for i in range(N_SEEDS)],
            selection_steps=10**6,
        )
    return cols


def null_frame(claim: Claim, value: float, seed: int = 0) -> pd.DataFrame:
    """Runs whose per-seed statistic has mean exactly ``value`` (natural units: a ratio for
    log-ratio claims) in every cell, with centred Gaussian noise across seeds."""
    st = claim.statistic
    rng = np.random.default_rng(seed)
    log_ratio = st.kind == LOG_RATIO
    centre = math.log(value) if log_ratio else value
    thr = math.log(claim.rule.threshold) if log_ratio else claim.rule.threshold
    sd = 0.1 * max(abs(centre - thr), 1e-3)  # a tenth of the distance to the rule's threshold
    rows = []
    for cell in _cells(claim):
        z = rng.standard_normal(N_SEEDS)
        stat = centre + sd * (z - z.mean())
        for s in range(N_SEEDS):
            if st.kind == VALUE:
                rows.append({**_gate_columns(claim, None), **cell, "seed": s, st.metric: stat[s]})
            elif st.kind in (DIFFERENCE, LOG_RATIO):
                base, treat = st.arms
                b = 1.0 if log_ratio else 0.5
                t = b * math.exp(stat[s]) if log_ratio else b + stat[s]
                for arm, m in ((base, b), (treat, t)):
                    rows.append({**_gate_columns(claim, arm), **cell, "seed": s, "arm": arm,
                                 st.metric: m})
            elif st.kind == GAIN_CONTRAST:
                base, treat = st.arms
                for n, gain in ((1, 0.05), (2, 0.05 - stat[s]), (3, 0.05 - stat[s])):
                    for arm, m in ((base, 0.5), (treat, 0.5 + gain)):
                        rows.append({**_gate_columns(claim, arm), **cell, "seed": s,
                                     "arm": arm, str(st.along): n, st.metric: m})
            elif st.kind == SLOPE:
                for x in (1.0, 2.0, 3.0, 4.0):
                    xt = math.log(x) if st.log_along else x
                    y = 0.5 + stat[s] * xt
                    m = math.exp(y) if st.log_metric else y
                    rows.append({**_gate_columns(claim, None), **cell, "seed": s,
                                 str(st.along): x, st.metric: m})
            else:  # pragma: no cover
                raise AssertionError(st.kind)
    return pd.DataFrame(rows)


def claimed_value(claim: Claim) -> float:
    """A value of the statistic well inside the claimed side of the registered rule."""
    r = claim.rule
    thr = r.threshold
    if r.side == EQUIVALENT:
        return thr
    step = 0.5 * (abs(thr) or 0.1)
    if claim.statistic.kind == LOG_RATIO:
        return thr * 1.5 if r.side == GREATER else thr / 1.5
    if claim.statistic.kind == VALUE and 0.0 < thr < 1.0:  # fractions, bounded by 1 / 0
        return thr + (1 - thr) / 2 if r.side == GREATER else thr / 2
    return thr + step if r.side == GREATER else thr - step


def _decide(claim: Claim, runs: pd.DataFrame):
    return gates.decide(claim, runs, profile="cpu", dataset=claim.dataset)


def test_every_claim_names_a_null_world_and_every_check_its_basis():
    for c in REGISTRY:
        if c.kind == Kind.CLAIM:
            assert c.null_world is not None and c.null_world.text, c.id
        else:
            assert c.null_world is None and c.check_basis, c.id
    assert len(COUNTED) > len(REGISTRY) / 2


@pytest.mark.parametrize("claim", COUNTED, ids=lambda c: c.id)
def test_the_null_world_is_not_reproduced(claim):
    v = _decide(claim, null_frame(claim, claim.null_world.value))
    assert "gate" not in v.reason, v.reason  # the rule decided, not a gate
    assert v.verdict in (NOT_REPRODUCED, INCONCLUSIVE), (claim.id, v.verdict, v.evidence)


@pytest.mark.parametrize("claim", COUNTED, ids=lambda c: c.id)
def test_the_generator_reproduces_a_world_where_the_claim_holds(claim):
    v = _decide(claim, null_frame(claim, claimed_value(claim)))
    assert v.verdict == REPRODUCED, (claim.id, v.verdict, v.reason, v.evidence)


def test_there_are_size_claims():
    assert {"book.projection_fifth_of_cost", "oymak.test_error_dips_then_rises"} <= {
        c.id for c in SIZE_CLAIMS
    }


@pytest.mark.parametrize("claim", SIZE_CLAIMS, ids=lambda c: c.id)
def test_a_rule_weakened_to_a_sign_lets_the_null_world_through(claim, monkeypatch):
    """The planted bug: the size claim's rule replaced by its sign. The null world is then
    "reproduced", so :func:`test_the_null_world_is_not_reproduced` would fail."""
    weak = dataclasses.replace(claim, rule=weakened_to_sign(claim))
    monkeypatch.setattr(gates, "CLAIMS", MappingProxyType({**CLAIMS, claim.id: weak}))
    v = gates.decide(weak, null_frame(weak, claim.null_world.value), profile="cpu",
                     dataset=claim.dataset)
    assert v.verdict == REPRODUCED, (claim.id, v.verdict, v.evidence)


def test_weakened_rule_side_follows_the_null_world():
    c = CLAIMS["book.projection_fifth_of_cost"]
    weak = weakened_to_sign(c)
    assert weak.side == LESS and weak.threshold == 1.0
    assert weakened_to_sign(CLAIMS["fig3.mnist.jr_beats_wd"]) is None
