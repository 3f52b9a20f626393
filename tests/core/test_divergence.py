"""Divergence honestly recorded (issue 11): the training loop of :mod:`jacnb.train` stops a run
whose loss, weights or gradients turn non-finite at any step, or whose loss grows past
``diverge_factor`` times its initial value; ``TrainConfig`` rejects nonsense settings naming the
field; the store keeps such a run as ``status: "diverged"`` with its reason."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jacnb.core import train as T
from jacnb.lab.store import ResultStore, run_grid


def _data(n: int = 256, classes: int = 10):
    """Inputs in [0, 1] like image pixels (with them, ``lr=1e4`` ends at a huge but finite loss,
    as the MNIST runs of the issue did; Gaussian inputs reach NaN first)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 20, generator=g)
    w = torch.randn(20, classes, generator=g)
    return x, (x @ w).argmax(1)


def _model(classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, classes))


def _diverged_error():
    return getattr(T, "DivergedError", T.NonFiniteLossError)


def test_huge_learning_rate_with_cross_entropy_is_a_divergence() -> None:
    x, y = _data()
    cfg = T.TrainConfig(epochs=3, batch_size=32, lr=1e4, progress=False)
    with pytest.raises(_diverged_error(), match="initial") as err:
        T.train(_model(), x, y, cfg, device="cpu")
    assert err.value.status == "diverged"


def test_healthy_runs_are_not_stopped_even_when_resumed_near_zero_loss() -> None:
    """The growth test is relative to the first loss of a call, floored at 1: a run resumed at a
    tiny loss (as the low-rank chapter trains in segments) is not stopped by batch noise."""
    x, y = _data(classes=2)
    model = _model(2)
    cfg = T.TrainConfig(epochs=30, batch_size=32, lr=0.1, loss="squared", progress=False)
    first = T.train(model, x, y, cfg, device="cpu")
    again = T.train(model, x, y, cfg, device="cpu")
    assert again["final_loss"] < first["curves"]["loss"][0]


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -0.1, 0.0])
def test_nonsense_learning_rates_are_rejected_naming_the_field(lr: float) -> None:
    with pytest.raises(ValueError, match="lr"):
        T.TrainConfig(lr=lr)


@pytest.mark.parametrize(
    "field, value",
    [
        ("batch_size", 2.5),
        ("batch_size", 0),
        ("batch_size", "32"),
        ("epochs", 1.5),
        ("epochs", -1),
        ("lr_drop_every", 0),
        ("eval_every", 0.5),
        ("momentum", float("nan")),
        ("lam", float("inf")),
        ("lr_drop_factor", float("nan")),
    ],
)
def test_nonsense_sizes_and_factors_are_rejected_naming_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        T.TrainConfig(**{field: value})


def test_nonsense_schedule_is_rejected() -> None:
    with pytest.raises(ValueError, match="schedule"):
        T.TrainConfig(schedule=[(0.1, 2), (float("nan"), 1)])
    with pytest.raises(ValueError, match="schedule"):
        T.TrainConfig(schedule=[(0.1, 2.5)])


class NaNGradient:
    """A penalty whose value is 0 but whose gradient is NaN (d sqrt(u)/du at u = 0, times 0)."""

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        w = next(model.parameters())
        return torch.sqrt((w * 0).pow(2).sum())


def test_nan_weights_after_the_last_step_are_caught() -> None:
    x, y = _data(32)
    model = _model()
    cfg = T.TrainConfig(epochs=1, batch_size=32, lr=0.01, lam=1.0, progress=False)
    with pytest.raises(_diverged_error(), match="gradient"):
        T.train(model, x, y, cfg, regularizer=NaNGradient(), device="cpu")  # one step only


class HugeGradient:
    """A finite penalty with a finite gradient (3e38 on one weight) whose SGD step overflows."""

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return 3e38 * next(model.parameters())[0, 0]


def test_overflowing_weights_with_finite_gradients_are_caught() -> None:
    x, y = _data(32)
    cfg = T.TrainConfig(epochs=1, batch_size=32, lr=10.0, lam=1.0, momentum=0.0, progress=False)
    with pytest.raises(_diverged_error(), match="weights"):
        T.train(_model(), x, y, cfg, regularizer=HugeGradient(), device="cpu")


def _diverging_run(config):
    x, y = _data()
    cfg = T.TrainConfig(epochs=2, batch_size=32, lr=config["lr"], progress=False)
    return T.train(_model(), x, y, cfg, device="cpu")


def test_a_diverged_run_is_stored_as_diverged_not_as_a_result(tmp_path) -> None:
    store = ResultStore(tmp_path)
    configs = [{"experiment": "div", "lr": 1e4}, {"experiment": "div", "lr": 0.05}]
    frame = run_grid(configs, _diverging_run, store, progress=False).set_index("lr")
    assert frame.loc[1e4, "status"] == "diverged"
    assert "initial" in frame.loc[1e4, "reason"]
    assert math.isnan(frame.loc[1e4, "train_acc"])  # no accuracy is claimed for it
    assert frame.loc[0.05, "status"] == "ok" and frame.loc[0.05, "train_acc"] > 0.3


def test_nan_weights_mid_epoch_stop_the_run_at_the_next_step() -> None:
    """The weights are checked once per epoch; a step that leaves them NaN earlier in the epoch
    makes the next step's loss NaN, and the run stops there (step 1 of epoch 0), not at the end."""
    x, y = _data(96)
    cfg = T.TrainConfig(epochs=2, batch_size=32, lr=0.01, lam=1.0, progress=False)
    with pytest.raises(_diverged_error(), match="loss became nan") as err:
        T.train(_model(), x, y, cfg, regularizer=NaNGradient(), device="cpu")
    assert err.value.details["epoch"] == 0 and err.value.details["step"] == 1
