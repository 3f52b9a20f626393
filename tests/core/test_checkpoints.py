"""Checkpoints of the ResNet loop (jacnb.core.distributed) cannot lie either (issue 11): a damaged
checkpoint is named, set aside, and training restarts from the last good one (or from scratch);
an interrupted write's temp file is cleaned; a finished run's checkpoint is removed once its
record is stored, unless the user keeps the weights."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from jacnb.core.distributed import FitConfig, SimulatedCrash, fit
from jacnb.lab.store import ResultStore, run_grid


def _data(n: int = 24, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=gen), torch.randint(3, (n,), generator=gen)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))


CFG = FitConfig(schedule=[(0.05, 3)], batch_size=8)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _reference() -> dict:
    return fit(_mlp(), _data(), _data(12, 1), CFG)


def test_truncated_checkpoint_is_set_aside_and_training_resumes_from_the_last_good_one(
    tmp_path: Path,
) -> None:
    ckpt = tmp_path / "run.train.pt"
    with pytest.raises(SimulatedCrash):
        fit(_mlp(), _data(), _data(12, 1), CFG, checkpoint=ckpt, crash_after_epoch=2)
    _truncate(ckpt)  # e.g. a copy to other storage that stopped half-way
    with pytest.warns(UserWarning, match=ckpt.name):
        result = fit(_mlp(), _data(), _data(12, 1), CFG, checkpoint=ckpt)
    assert result["resumed_from"] == 1  # the checkpoint before the damaged one
    assert result["curves"] == _reference()["curves"]
    assert len(list((tmp_path / ".quarantine").glob("run.train.pt*"))) == 1


def test_all_checkpoints_damaged_restarts_from_scratch(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.train.pt"
    with pytest.raises(SimulatedCrash):
        fit(_mlp(), _data(), _data(12, 1), CFG, checkpoint=ckpt, crash_after_epoch=2)
    for p in tmp_path.glob("run.train.pt*"):
        p.write_bytes(b"")
    with pytest.warns(UserWarning, match="run.train.pt"):
        result = fit(_mlp(), _data(), _data(12, 1), CFG, checkpoint=ckpt)
    assert result["resumed_from"] == 0
    assert result["curves"] == _reference()["curves"]


def test_interrupted_checkpoint_temp_file_is_cleaned(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.train.pt"
    with pytest.raises(SimulatedCrash):
        fit(_mlp(), _data(), None, CFG, checkpoint=ckpt, crash_after_epoch=1)
    # what a SIGKILL inside torch.save leaves: a partial temp file (fresh and old)
    fresh = tmp_path / f".tmp-{ckpt.name}-abc123.pt"
    fresh.write_bytes(ckpt.read_bytes()[:100])
    old = tmp_path / ".tmp-x8f2k1.pt"
    old.write_bytes(b"\x00" * 100)
    t = time.time() - 2 * 24 * 3600
    os.utime(old, (t, t))
    fit(_mlp(), _data(), None, CFG, checkpoint=ckpt)
    assert not fresh.exists()
    ResultStore(tmp_path.parent).clean_tmp()
    assert not old.exists()


def _run(store: ResultStore):
    def run(config):
        ckpt = store.path(config).with_suffix(".train.pt")
        return fit(_mlp(), _data(), None, CFG, checkpoint=ckpt)

    return run


@pytest.mark.parametrize("keep", [False, True])
def test_finished_run_checkpoint_removed_unless_weights_are_kept(tmp_path: Path, keep) -> None:
    store = ResultStore(tmp_path, keep_weights=keep)
    cfg = {"experiment": "resnet", "seed": 0}
    run_grid([cfg], _run(store), store, progress=False)
    ckpt = store.path(cfg).with_suffix(".train.pt")
    assert store.has(cfg)
    assert ckpt.exists() == keep
    leftovers = [p.name for p in ckpt.parent.iterdir() if p.name != store.path(cfg).name]
    assert leftovers == ([ckpt.name] if keep else [])
