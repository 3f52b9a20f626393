"""The ResNet training loop (jacnb.core.distributed): resume after a crash, DDP on CPU (gloo, 2
processes), augmentations. Sokolic et al. 2017, Sec. VI-C."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from jacnb.core.distributed import (
    FitConfig,
    SimulatedCrash,
    augment_batch,
    center_crop,
    fit,
    topk_correct,
)


def _data(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=gen), torch.randint(3, (n,), generator=gen)


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))


def test_killed_training_resumes_and_equals_uninterrupted_run(tmp_path: Path) -> None:
    cfg = FitConfig(
        schedule=[(0.05, 2), (0.01, 1)],
        batch_size=8,
        regularizer="per_layer",
        lam=0.5,
        augment="cifar",
        seed=3,
    )
    data, test = _data(), _data(12, seed=1)
    ref = _convnet()
    ref_result = fit(ref, data, test, cfg, checkpoint=tmp_path / "ref.pt")
    model = _convnet()
    with pytest.raises(SimulatedCrash):
        fit(model, data, test, cfg, checkpoint=tmp_path / "run.pt", crash_after_epoch=1)
    fresh = _convnet()  # the process died: start from a fresh model
    result = fit(fresh, data, test, cfg, checkpoint=tmp_path / "run.pt")
    assert result["resumed_from"] == 1 and ref_result["resumed_from"] == 0
    assert result["curves"]["epoch"] == [1, 2, 3]
    assert result["curves"]["loss"] == ref_result["curves"]["loss"]
    for (k, a), b in zip(ref.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # a finished run restarted with its checkpoint trains nothing more
    again = fit(_convnet(), data, test, cfg, checkpoint=tmp_path / "run.pt")
    assert again["resumed_from"] == 3 and again["test_acc"] == result["test_acc"]


def test_evaluating_only_after_the_last_epoch_trains_the_same_net() -> None:
    """``eval_final_only`` (Table IV at ``cpu``) skips the evaluations of the other epochs: the
    trained weights, the losses and the final accuracies are those of a run evaluated every
    epoch; the skipped epochs' accuracies are NaN, not a stale or made-up number."""
    base = dict(schedule=[(0.05, 2), (0.01, 1)], batch_size=8, augment="cifar", seed=3)
    data, test = _data(), _data(12, seed=1)
    every, final = _convnet(), _convnet()
    a = fit(every, data, test, FitConfig(**base))
    b = fit(final, data, test, FitConfig(**base, eval_final_only=True))
    assert a["curves"]["loss"] == b["curves"]["loss"]
    for (k, x), y in zip(every.state_dict().items(), final.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    assert (a["train_acc"], a["test_acc"]) == (b["train_acc"], b["test_acc"])
    assert all(math.isnan(v) for v in b["curves"]["test_top1"][:-1])
    assert not any(math.isnan(v) for v in a["curves"]["test_top1"])


def test_changed_config_does_not_resume(tmp_path: Path) -> None:
    data = _data()
    cfg = FitConfig(schedule=[(0.05, 1)], batch_size=8)
    fit(_mlp(), data, None, cfg, checkpoint=tmp_path / "c.pt")
    other = FitConfig(schedule=[(0.05, 1)], batch_size=8, seed=1)
    assert fit(_mlp(), data, None, other, checkpoint=tmp_path / "c.pt")["resumed_from"] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for reg in ("none", "per_layer"):
            model = _mlp() if reg == "none" else _convnet()
            cfg = FitConfig(schedule=[(0.1, 2)], batch_size=8, regularizer=reg, lam=0.5, seed=1)
            ckpt = Path(out) / f"ddp-{reg}.pt"
            result = fit(model, _data(), _data(12, seed=1), cfg, checkpoint=ckpt)
            torch.save(
                {"state": model.state_dict(), "result": result}, Path(out) / f"{reg}-rank{rank}.pt"
            )
    finally:
        dist.destroy_process_group()


def test_ddp_two_cpu_processes_gloo(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for reg in ("none", "per_layer"):
        r0, r1 = (torch.load(tmp_path / f"{reg}-rank{r}.pt", weights_only=False) for r in (0, 1))
        for k, a in r0["state"].items():
            torch.testing.assert_close(a, r1["state"][k], msg=k)  # ranks stay in sync
        assert r0["result"]["world_size"] == 2
        assert r0["result"]["test_acc"] == r1["result"]["test_acc"]
        assert (tmp_path / f"ddp-{reg}.pt").exists()
    # DDP averages the gradients of the two half batches = one process on the global batch
    model = _mlp()
    fit(model, _data(), None, FitConfig(schedule=[(0.1, 2)], batch_size=8, seed=1))
    ddp = torch.load(tmp_path / "none-rank0.pt", weights_only=False)["state"]
    for k, a in model.state_dict().items():
        torch.testing.assert_close(a, ddp[k], rtol=1e-5, atol=1e-6, msg=k)


def test_augmentations_shapes_and_ranges() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 16, 16)
    assert augment_batch(x, "cifar", gen).shape == x.shape
    out = augment_batch(x, "crop_colour", gen, crop=14)
    assert out.shape == (5, 3, 14, 14) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(augment_batch(x, "none", gen), x)
    assert center_crop(x, 14).shape == (5, 3, 14, 14)
    with pytest.raises(ValueError):
        FitConfig(schedule=[(0.1, 1)], augment="crop_colour")


def test_topk_and_bf16_step_runs() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    assert topk_correct(logits, torch.tensor([1, 2]), ks=(1, 2)) == [1, 2]
    cfg = FitConfig(schedule=[(0.05, 1)], batch_size=8, bf16=True, regularizer="per_layer", lam=0.1)
    result = fit(_convnet(), _data(), None, cfg)
    assert 0.0 <= result["train_acc"] <= 1.0
