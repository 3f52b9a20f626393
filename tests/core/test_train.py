"""The training loop (determinism, NaN stop, schedules) and profile validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jacnb.core.regularizers import JacobianRegularizer
from jacnb.core.train import NonFiniteLossError, TrainConfig, cross_entropy_loss, train
from jacnb.lab.settings import PROFILES, get_profile, resolve_profile


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = (x[:, 0] > 0).long()
    return x, y


def model():
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))


def test_training_is_deterministic_on_cpu_and_learns():
    x, y = data()
    cfg = TrainConfig(epochs=5, batch_size=16, lr=0.1, seed=3, progress=False, lam=0.01)
    torch.manual_seed(0)
    m1 = model()
    torch.manual_seed(0)
    m2 = model()
    r1 = train(m1, x, y, cfg, JacobianRegularizer(), x, y, device="cpu")
    r2 = train(m2, x, y, cfg, JacobianRegularizer(), x, y, device="cpu")
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert r1["curves"] == r2["curves"]
    assert r1["train_acc"] > 0.8


def test_validation_cross_entropy_is_the_mean_over_samples():
    # reference: the per-sample losses written out (log-softmax by hand), not F.cross_entropy
    x, y = data()
    torch.manual_seed(1)
    m = model()
    logits = m(x).detach()
    per_sample = torch.logsumexp(logits, 1) - logits[torch.arange(len(y)), y]
    expected = float(per_sample.mean())
    assert cross_entropy_loss(m, x, y, batch_size=7) == pytest.approx(expected, rel=1e-6)
    # train() reports it on its held-out set, for the model it returns
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.1, seed=0, progress=False)
    xv, yv = x[:20] + 0.5, y[:20]
    res = train(m, x, y, cfg, None, xv, yv, device="cpu")
    logits = m(xv).detach()
    per_sample = torch.logsumexp(logits, 1) - logits[torch.arange(20), yv]
    assert res["test_loss"] == pytest.approx(float(per_sample.mean()), rel=1e-6)
    assert "test_loss" not in train(model(), x, y, cfg, device="cpu")


def test_nan_stops_with_clear_error():
    x, y = data()
    x = x.clone()
    x[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="learning rate"):
        train(model(), x, y, TrainConfig(epochs=1, batch_size=64, progress=False), device="cpu")


def test_bad_config_errors():
    with pytest.raises(ValueError, match="lam"):
        TrainConfig(lam=-1.0)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_schedules():
    step = TrainConfig(lr=0.01, lr_drop_every=40)
    assert [step.lr_at(e) for e in (0, 39, 40, 80)] == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    phases = TrainConfig(schedule=[(0.01, 5), (0.05, 20), (0.005, 40)])
    assert phases.total_epochs == 65
    assert [phases.lr_at(e) for e in (0, 5, 24, 25, 70)] == [0.01, 0.05, 0.05, 0.005, 0.005]


def test_profiles():
    assert set(PROFILES) == {"smoke", "cpu", "paper"}
    with pytest.raises(ValueError, match="smoke, cpu, paper"):
        resolve_profile("fast")
    expected = "paper" if torch.cuda.is_available() else "cpu"
    assert resolve_profile("auto") == expected
    smoke = get_profile("theory", "smoke")
    assert smoke["profile"] == "smoke" and smoke["dataset"] == "digits"
    with pytest.raises(ValueError, match="experiment"):
        get_profile("nope", "smoke")


def test_final_batch_of_one_is_dropped_for_batch_norm_models():
    """n = 65 with batch size 64: the last batch has one sample, which BatchNorm1d refuses."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(65, 5, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.1, progress=False)
    assert cfg.drop_last is None  # auto: drop the incomplete batch when the model has batch norm
    train(bn, x, y, cfg, device="cpu")
    with pytest.raises(ValueError, match="more than 1 value"):
        train(bn, x, y, TrainConfig(epochs=1, batch_size=64, progress=False, drop_last=False))

    def steps(model: nn.Module, drop_last: bool | None, n: int = 65) -> int:
        calls = []

        def counting(m: nn.Module, xb: torch.Tensor) -> torch.Tensor:
            calls.append(xb.shape[0])
            return torch.zeros(())

        cfg = TrainConfig(epochs=1, batch_size=64, lam=1.0, progress=False, drop_last=drop_last)
        train(model, x[:n], y[:n], cfg, counting, device="cpu")
        return len(calls)

    plain = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    assert steps(plain, None) == 2  # no batch norm: every sample is used
    assert steps(plain, True) == 1
    assert steps(bn, None) == 1
    assert steps(bn, None, n=40) == 1  # a lone incomplete batch is kept: every epoch steps


def test_progress_bars_follow_tqdm_disable(monkeypatch):
    """jacnb.book sets TQDM_DISABLE while it executes pages, so no bar reaches the HTML; a
    live notebook (unset) shows them unless the caller turned them off."""
    from jacnb.core.train import progress_off

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress_off(True) is False and progress_off(False) is True
    for value in ("1", "true", "yes"):
        monkeypatch.setenv("TQDM_DISABLE", value)
        assert progress_off(True) is True
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert progress_off(True) is False


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("momentum", 5.0, "momentum"),
        ("momentum", 1.0, "< 1.0"),
        ("momentum", -0.1, ">= 0.0"),
        ("lr_drop_factor", 10.0, "<= 1.0"),
        ("lr_drop_factor", 0.0, "> 0"),
        ("loss", "mse", "cross_entropy"),
        ("progress", "yes", "bool"),
        ("drop_last", 1, "bool"),
        ("extra", [], "dict"),
        ("batch_size", 2.0, "positive integer"),
        ("diverge_factor", 0.5, ">= 1.0"),
    ],
)
def test_every_train_config_field_is_checked_at_construction(field, value, says):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}.*{says}|{says}"):
        TrainConfig(**{field: value})
    TrainConfig(momentum=0.0, lr_drop_factor=1.0, loss="squared")  # the edges that are valid


def test_train_refuses_an_empty_or_mismatched_test_set():
    x, y = data()
    cfg = TrainConfig(epochs=1, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="empty or mismatched test set"):
        train(model(), x, y, cfg, x_test=x[:0], y_test=y[:0], device="cpu")
    with pytest.raises(ValueError, match="empty or mismatched test set"):
        train(model(), x, y, cfg, x_test=x[:5], y_test=y[:4], device="cpu")
    with pytest.raises(ValueError, match="both x_test and y_test"):
        train(model(), x, y, cfg, x_test=x, device="cpu")
    with pytest.raises(ValueError, match="non-empty training set"):
        train(model(), x[:0], y[:0], cfg, device="cpu")
    assert "test_acc" in train(model(), x, y, cfg, x_test=x[:8], y_test=y[:8], device="cpu")
