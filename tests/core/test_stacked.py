"""Stacked training (jacnb.core.stacked) against separate jacnb.core.train runs, member by member.

A member of the stack must be the run :func:`jacnb.core.train.train` would make with the same seed:
same initialization, same training subset, same batch order, same projection directions of the
Jacobian regularizer (eq. 49), same SGD momentum and step schedule; in float64 the two agree to
rounding. The members must not share data, initialization or batch order.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from jacnb.core.models import fully_connected
from jacnb.core.regularizers import (
    JacobianRegularizer,
    PerLayerJacobianRegularizer,
    WeightDecay,
    make_regularizer,
)
from jacnb.core.stacked import train_stacked, weight_names
from jacnb.core.train import NonFiniteLossError, TrainConfig, train

SEEDS = (0, 1, 2)
N_IN, N_CLASSES = 12, 3


@pytest.fixture(autouse=True)
def _float64_one_thread():
    """float64 (agreement to rounding); one thread: these nets are tiny, and on a loaded 2-core
    machine two threads per op spend far more time waiting on each other than computing."""
    old, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(old)
    torch.set_num_threads(threads)


def member_data(seed: int, n: int = 40) -> tuple[Tensor, Tensor]:
    """A training set per seed (as fc_experiments draws one per seed), image-shaped."""
    gen = torch.Generator().manual_seed(100 + seed)
    x = torch.rand(n, 1, 3, 4, generator=gen)
    return x, torch.randint(N_CLASSES, (n,), generator=gen)


def held_out() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(7)
    return torch.rand(25, 1, 3, 4, generator=gen), torch.randint(N_CLASSES, (25,), generator=gen)


def build(seed: int, weight_norm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    return fully_connected(N_IN, N_CLASSES, depth=3, width=9, weight_norm=weight_norm)


def config(seed: int, lam: float = 0.0, **kw) -> TrainConfig:
    base = {"epochs": 4, "batch_size": 16, "lr": 0.1, "lr_drop_every": 2, "progress": False}
    return TrainConfig(lam=lam, seed=seed, **{**base, **kw})


def separate_and_stacked(reg, lams, weight_norm=False, data=None, seeds=SEEDS, **kw):
    data = data or [member_data(s) for s in seeds]
    test = held_out()
    configs = [config(s, lam, **kw) for s, lam in zip(seeds, lams, strict=True)]
    sep_models = [build(s, weight_norm) for s in seeds]
    stk_models = [copy.deepcopy(m) for m in sep_models]
    sep = []
    for m, (x, y), c in zip(sep_models, data, configs, strict=True):
        try:
            sep.append(train(m, x, y, c, reg, *test, device="cpu"))
        except NonFiniteLossError as err:
            sep.append(err)
    stk = train_stacked(stk_models, data, configs, reg, test, device="cpu")
    return sep_models, sep, stk_models, stk


def assert_same_run(m_sep, r_sep, m_stk, r_stk):
    for (name, a), b in zip(m_sep.named_parameters(), m_stk.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
    assert r_sep.keys() == r_stk.keys()
    for key in ("epoch", "train_acc", "test_acc"):
        assert r_sep["curves"][key] == r_stk["curves"][key]
    assert r_stk["curves"]["loss"] == pytest.approx(r_sep["curves"]["loss"], rel=1e-12)
    assert r_stk["final_loss"] == pytest.approx(r_sep["final_loss"], rel=1e-12)
    assert (r_stk["train_acc"], r_stk["test_acc"]) == (r_sep["train_acc"], r_sep["test_acc"])
    assert r_stk["test_loss"] == pytest.approx(r_sep["test_loss"], rel=1e-10)


CASES = {
    "none": (None, 0.0, False),
    "weight_decay": (WeightDecay(), 0.01, False),
    "jacobian_exact": (JacobianRegularizer("exact"), 0.1, False),
    "jacobian_projection": (JacobianRegularizer("projection", n_proj=1), 0.1, False),
    "jacobian_projection_3": (JacobianRegularizer("projection", n_proj=3), 0.1, False),
    "weight_norm": (None, 0.0, True),
    "weight_norm_jacobian_exact": (JacobianRegularizer("exact"), 0.1, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stacked_members_equal_separate_runs(case):
    reg, lam, wn = CASES[case]
    sep_m, sep, stk_m, stk = separate_and_stacked(reg, [lam] * 3, weight_norm=wn)
    for args in zip(sep_m, sep, stk_m, stk, strict=True):
        assert_same_run(*args)
    assert stk[0]["seconds"] > 0 and stk[0]["device"] == "cpu"


def test_members_may_differ_in_lam_and_use_momentum_free_sgd():
    reg = make_regularizer("jacobian", method="projection", n_proj=1)
    sep_m, sep, stk_m, stk = separate_and_stacked(reg, [0.01, 0.1, 1.0], momentum=0.0)
    for args in zip(sep_m, sep, stk_m, stk, strict=True):
        assert_same_run(*args)


def test_members_share_neither_data_nor_init_nor_batch_order():
    reg = WeightDecay()
    sep_m, _, stk_m, _ = separate_and_stacked(reg, [0.01] * 3)
    flat = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in stk_m]
    ref = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in sep_m]
    for i in range(3):  # member i is run i, and far from every other run
        dist = [float((flat[i] - r).norm()) for r in ref]
        assert dist[i] < 1e-10 and min(d for j, d in enumerate(dist) if j != i) > 1e-2
    # same data and same init, different seeds: only the batch order differs, and it must
    same = [member_data(0)] * 2
    models = [build(0), build(0)]
    train_stacked(models, same, [config(0), config(5)], None, device="cpu")
    a, b = (torch.cat([p.detach().flatten() for p in m.parameters()]) for m in models)
    assert float((a - b).norm()) > 1e-3
    # and everything equal: identical members
    models = [build(0), build(0)]
    train_stacked(models, same, [config(3), config(3)], None, device="cpu")
    a, b = (torch.cat([p.detach().flatten() for p in m.parameters()]) for m in models)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_a_diverging_member_is_stopped_alone_with_the_error_train_raises():
    data = [member_data(s) for s in SEEDS]
    x_bad = data[1][0].clone()
    x_bad[23, 0, 0, 0] = float("nan")  # somewhere in the first epoch, at a seeded position
    data[1] = (x_bad, data[1][1])
    sep_m, sep, stk_m, stk = separate_and_stacked(WeightDecay(), [0.01] * 3, data=data)
    assert isinstance(sep[1], NonFiniteLossError) and isinstance(stk[1], NonFiniteLossError)
    assert str(stk[1]) == str(sep[1]) and "at epoch 0" in str(stk[1])
    untouched = build(1)  # a diverged member's model is not written back
    for a, b in zip(untouched.parameters(), stk_m[1].parameters(), strict=True):
        assert torch.equal(a, b)
    for i in (0, 2):
        assert_same_run(sep_m[i], sep[i], stk_m[i], stk[i])


def test_a_member_whose_loss_explodes_is_stopped_like_a_separate_run():
    """Loss growth past ``diverge_factor`` x the first loss (issue 11): lam = 1e4 weight decay at
    lr 0.1 multiplies the weights by about -2000 per step; the stacked member stops at the step
    and with the message :func:`train` gives, the others go on."""
    sep_m, sep, stk_m, stk = separate_and_stacked(WeightDecay(), [0.01, 1e4, 0.01])
    assert isinstance(sep[1], NonFiniteLossError) and isinstance(stk[1], NonFiniteLossError)
    assert "above diverge_factor=100" in str(sep[1])
    assert str(stk[1]) == str(sep[1])
    assert stk[1].status == "diverged"
    assert stk[1].details["step"] == sep[1].details["step"]
    for i in (0, 2):
        assert_same_run(sep_m[i], sep[i], stk_m[i], stk[i])


def test_float32_members_agree_closely():
    torch.set_default_dtype(torch.float32)
    reg = JacobianRegularizer("exact")
    sep_m, sep, stk_m, stk = separate_and_stacked(reg, [0.1] * 3)
    for m1, r1, m2, r2 in zip(sep_m, sep, stk_m, stk, strict=True):
        for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert r2["final_loss"] == pytest.approx(r1["final_loss"], rel=1e-4)


def test_weight_names_follow_weight_decay_order():
    model = fully_connected(5, 2, depth=3, width=4, weight_norm=True)
    assert weight_names(model) == ["1.weight_raw", "3.weight_raw", "5.weight_raw"]
    assert weight_names(fully_connected(5, 2, depth=2)) == ["1.weight", "3.weight"]


def test_refuses_what_it_cannot_stack():
    data = [member_data(0), member_data(1, n=30)]
    with pytest.raises(ValueError, match="one size"):
        train_stacked([build(0), build(1)], data, [config(0), config(1)], device="cpu")
    data = [member_data(0), member_data(1)]
    with pytest.raises(ValueError, match="share"):
        train_stacked([build(0), build(1)], data, [config(0), config(1, lr=0.5)], device="cpu")
    with pytest.raises(ValueError, match="lam"):
        cfgs = [config(0, 0.0), config(1, 0.1)]
        train_stacked([build(0), build(1)], data, cfgs, WeightDecay(), device="cpu")
    with pytest.raises(TypeError, match="regularizer"):
        cfgs = [config(0, 0.1), config(1, 0.1)]
        train_stacked([build(0), build(1)], data, cfgs, PerLayerJacobianRegularizer())
