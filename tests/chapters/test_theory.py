"""The theory chapter's checks (jacnb.chapters.theory) on tiny nets: they hold where the maths
holds and
flag a wrong identity."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jacnb.chapters import theory as checks
from jacnb.core.models import tiny_resnet

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)
    )


def test_theorem3_holds_and_detects_a_one_point_rule():
    model = net()
    x = torch.randn(20, 5) * 2
    good = checks.theorem3(model, x, n_pairs=6, n_points=4096)
    assert good["rel_error"].max() < 1e-3 and good["cor2_holds"].all()
    crude = checks.theorem3(model, x, n_pairs=6, n_points=1)
    assert crude["rel_error"].max() > 10 * good["rel_error"].max()


def test_lemma1_pooling_margins_hold():
    model = net(1)
    x = torch.randn(30, 5)
    assert checks.lemma1(model, x)["holds"].all()
    assert checks.pooling_norms(8)["holds"].all()
    with torch.no_grad():
        y = model(x).argmax(1)
    df = checks.margins(model, x, y, x, ball_samples=2)
    assert df["holds"].all() and len(df) == 30
    assert (df["gamma4"] <= df["gamma3"]).all()


def test_structural_identities():
    assert checks.orthonormal_rows([3, 5], [1, 2, 3])["holds"].all()
    assert checks.batch_norm_rows()["holds"].all()
    torch.manual_seed(0)
    assert checks.resnet_expansion(tiny_resnet().double(), torch.randn(3, 4))["holds"].all()


def test_ge_bound_grid_and_on_data():
    grid = checks.ge_bound_grid([100, 1000], [0.5, 1.0], [1, 2])
    assert len(grid) == 8 and (grid["GE bound"] > 0).all()
    model = net(2)
    x = torch.randn(40, 5)
    with torch.no_grad():
        y = model(x).argmax(1)  # every training sample correct: finite margins
    df = checks.ge_bound_on_data(model, x, y, x, y, k=2, c_m=1.0)
    assert (df["measured GE"] == 0).all()
    certified = df.set_index("margin used")["min over training set"]
    assert certified["gamma4 (certified)"] <= certified["gamma3 (certified)"]
    assert certified["gamma3 (certified)"] <= certified["measured margin (not certified)"]
    assert math.isfinite(df["GE bound (eq. 13)"].iloc[1])


@pytest.fixture
def float32():
    """The chapter trains in float32 like the notebook (this module's default is float64)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(old)


def test_smoke_run_has_no_registered_claim_and_every_check_holds(tmp_path, float32):
    from jacnb.lab.claims import claims_of
    from jacnb.lab.store import ResultStore

    assert claims_of(checks.NAME) == ()
    result = checks.run("smoke", store=ResultStore(tmp_path))
    assert result.verdicts() == []
    result.assert_holds()
    assert result.summary()["holds"].all()
    assert {"theorem3", "lemma1", "margins", "ge_data"} <= set(result.frames())
    assert set(result.figures()) == {"fig2", "margins", "orthonormal", "ge"}
    nums = result.numbers()
    assert nums["gamma4_ratio"] <= nums["gamma3_ratio"] <= 1.0
    # the second run loads the nets from the store
    again = checks.run("smoke", store=ResultStore(tmp_path))
    assert again.metrics["net"]["train_acc"] == result.metrics["net"]["train_acc"]


def test_assert_holds_names_a_failing_check(tmp_path):
    import pandas as pd

    frames = {
        k: pd.DataFrame({"holds": [True]})
        for k in ("theorem3", "lemma1", "pooling", "margins", "orthonormal", "batch_norm", "resnet")
    }
    frames["theorem3"] = pd.DataFrame({"cor2_holds": [True, False], "rel_error": [0.0, 0.0]})
    res = checks.TheoryResult({"profile": "smoke"}, frames, {}, "d", "s")
    with pytest.raises(AssertionError, match="Theorem 3"):
        res.assert_holds()


def test_margins_and_ge_bound_refuse_nets_outside_lemma1():
    torch.manual_seed(0)
    model = tiny_resnet().double()
    x = torch.randn(10, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    with pytest.raises(ValueError, match="Lemma 1"):
        checks.margins(model, x, y, x, ball_samples=1)
    with pytest.raises(ValueError, match="Lemma 1"):
        checks.ge_bound_on_data(model, x, y, x, y, k=2, c_m=1.0)


def test_ge_bound_on_data_reports_the_absolute_generalization_error():
    """eq. (3): GE = |test error - train error|, also when the training error is the larger."""
    model = net(2)
    x = torch.randn(40, 5)
    with torch.no_grad():
        y = model(x).argmax(1)
    y_train = y.clone()
    y_train[:10] = (y[:10] + 1) % 3  # 10 of 40 training labels disagree with the net
    df = checks.ge_bound_on_data(model, x, y_train, x, y, k=2, c_m=1.0)
    assert df["measured GE"].tolist() == pytest.approx([0.25] * len(df))
