"""``scripts/train_resnet.py`` (issue 11): finished runs' checkpoints removed unless
``--keep-weights``, a diverged run stored as such, a read-only or full store refused before the
first epoch. The ResNet chapter is replaced by a tiny stand-in (same interface)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from jacnb.core.distributed import FitConfig, fit
from jacnb.lab.store import ResultStore

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("train_resnet", REPO / "scripts/train_resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.fixture
def script(monkeypatch):
    module = _script()
    rx = module.rx
    configs = [
        {"experiment": "resnet-t5", "regularizer": "none", "augment": "none", "n_train": 24,
         "lr": lr, "seed": 0}
        for lr in (0.05, 1e30)
    ]  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    data = (torch.rand(24, 1, 8, 8, generator=gen), torch.randint(3, (24,), generator=gen))
    trained: list[float] = []

    def run_config(config, store, device=None):
        trained.append(config["lr"])
        cfg = FitConfig(schedule=[(config["lr"], 2)], batch_size=8)
        ckpt = store.path(config).with_suffix(".train.pt")
        return fit(_mlp(), data, data, cfg, checkpoint=ckpt, device=device)

    monkeypatch.setattr(rx, "pick_dataset", lambda candidates: "tiny")
    monkeypatch.setattr(rx, "table5_configs", lambda settings, name: configs)
    monkeypatch.setattr(rx, "run_config", run_config)
    monkeypatch.setattr(rx, "build_and_data", lambda config: (_mlp(), data, data, None))
    return module, configs, trained


@pytest.mark.parametrize("keep", [False, True])
def test_script_stores_runs_and_removes_checkpoints_unless_kept(script, tmp_path, keep) -> None:
    module, configs, trained = script
    argv = ["--table", "5", "--profile", "smoke", "--results", str(tmp_path)]
    assert module.main(argv + (["--keep-weights"] if keep else [])) == 0
    store = ResultStore(tmp_path)
    ok, diverged = (store.record(c) for c in configs)
    assert ok["status"] == "ok" and ok["result"]["test_acc"] >= 0
    assert diverged["status"] == "diverged" and "lower lr" in diverged["reason"]
    assert store.path(configs[0]).with_suffix(".train.pt").exists() == keep
    assert module.main(argv) == 0
    assert trained == [0.05, 1e30]  # stored runs, diverged included, are not trained again


def test_script_refuses_a_full_store_before_training(script, tmp_path, monkeypatch) -> None:
    module, _, trained = script
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(OSError, match="free"):
        module.main(["--table", "5", "--profile", "smoke", "--results", str(tmp_path)])
    assert trained == []
