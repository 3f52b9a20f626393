"""One regularizer vocabulary for the step timers (jacnb.lab.timing.STEP_REGULARIZERS): keys and
labels derived from jacnb.core.regularizers' names, used alike by the timing chapter (Table VI),
its claims' arms and benchmarks/."""

from __future__ import annotations

import pytest

from jacnb.chapters import timing
from jacnb.core.regularizers import JacobianRegularizer, PerLayerJacobianRegularizer, WeightDecay
from jacnb.lab.claims import claims_of
from jacnb.lab.timing import STEP_REGULARIZERS, StepRegularizer, step_label, step_regularizer


def test_keys_and_labels_are_derived_from_the_core_names() -> None:
    for key, spec in STEP_REGULARIZERS.items():
        assert spec.key == key
    assert StepRegularizer("jacobian", "exact", strategy="class_loop").key == "exact_class_loop"
    assert StepRegularizer("jacobian", "projection", n_proj=4).key == "projection_4"
    assert step_label("projection_1") == "Jac. reg., projection (49), n_proj=1"
    assert step_label("per_layer") == "Jac. reg., per-layer (52)"
    assert len({s.label for s in STEP_REGULARIZERS.values()}) == len(STEP_REGULARIZERS)


def test_each_key_builds_what_it_names() -> None:
    assert step_regularizer("none") is None
    assert isinstance(step_regularizer("weight_decay"), WeightDecay)
    assert isinstance(step_regularizer("per_layer"), PerLayerJacobianRegularizer)
    exact = step_regularizer("exact_class_loop")
    assert isinstance(exact, JacobianRegularizer)
    assert (exact.method, exact.strategy) == ("exact", "class_loop")
    proj = step_regularizer("projection_4")
    assert (proj.method, proj.n_proj) == ("projection", 4)
    with pytest.raises(ValueError, match="unknown regularizer"):
        step_regularizer("exact")


def test_timing_chapter_and_benchmarks_use_the_vocabulary() -> None:
    from benchmarks import regularizer_cost

    assert set(timing.REGULARIZERS) <= set(STEP_REGULARIZERS)
    # benchmark-only: the naive reference loop, which is not a regularizer of the book
    assert set(regularizer_cost.REGULARIZERS) - set(STEP_REGULARIZERS) == {"naive_class_loop"}
    # every row has an arm, and every arm a claim of the page compares is a row's
    assert set(timing.ARMS) == set(timing.REGULARIZERS)
    arms = {a for c in claims_of(timing.NAME) for a in c.statistic.arms}
    assert arms <= set(timing.ARMS.values())
