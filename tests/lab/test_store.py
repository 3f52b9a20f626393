"""The result store: atomic records, keys, resume of an interrupted grid."""

from __future__ import annotations

import json

import pytest

from jacnb.lab.store import ResultStore, config_key, run_grid


def test_key_is_order_independent_and_value_sensitive():
    assert config_key({"a": 1, "b": 2}) == config_key({"b": 2, "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


def test_put_get_roundtrip_and_no_temp_files(tmp_path):
    store = ResultStore(tmp_path)
    cfg = {"experiment": "e", "lam": 0.1, "seed": 0}
    assert store.get(cfg) is None
    path = store.put(cfg, {"acc": 0.9, "curve": [1, 2, 3]})
    assert store.get(cfg) == {"acc": 0.9, "curve": [1, 2, 3]}
    assert json.loads(path.read_text())["config"] == cfg
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_failed_write_leaves_no_record(tmp_path):
    store = ResultStore(tmp_path)
    cfg = {"experiment": "e", "seed": 1}

    class Unserializable:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.put(cfg, {"x": Unserializable()})
    assert not store.has(cfg)
    assert list((tmp_path / "e").iterdir()) == []


def test_interrupted_grid_resumes_without_repeating(tmp_path):
    store = ResultStore(tmp_path)
    configs = [{"experiment": "grid", "seed": s} for s in range(5)]
    calls: list[int] = []

    def killed_at_three(cfg):
        if cfg["seed"] == 3:
            raise KeyboardInterrupt  # the notebook is killed mid-grid
        calls.append(cfg["seed"])
        return {"value": cfg["seed"] ** 2}

    with pytest.raises(KeyboardInterrupt):
        run_grid(configs, killed_at_three, store, progress=False)
    assert calls == [0, 1, 2]

    def counting(cfg):
        calls.append(cfg["seed"])
        return {"value": cfg["seed"] ** 2}

    frame = run_grid(configs, counting, store, progress=False)
    assert calls == [0, 1, 2, 3, 4]  # only the missing runs were executed
    assert sorted(frame["value"]) == [0, 1, 4, 9, 16]
    again = run_grid(configs, counting, store, progress=False)
    assert calls == [0, 1, 2, 3, 4] and len(again) == 5


def test_frame_is_tidy(tmp_path):
    store = ResultStore(tmp_path)
    store.put({"experiment": "t", "seed": 0, "lam": 0.0}, {"acc": 0.5})
    store.put({"experiment": "t", "seed": 1, "lam": 0.1}, {"acc": 0.7})
    df = store.frame("t")
    assert set(df.columns) >= {"key", "seed", "lam", "acc", "experiment"}
    assert len(df) == 2


def test_trained_model_is_trained_once(tmp_path):
    import torch
    from torch import nn

    from jacnb.lab.store import trained_model

    store = ResultStore(tmp_path)
    cfg = {"experiment": "m", "seed": 0}
    fits = []

    def fit(model):
        fits.append(1)
        with torch.no_grad():
            model.weight.fill_(3.0)
        return {"acc": 1.0}

    m1, r1 = trained_model(cfg, lambda: nn.Linear(2, 2), fit, store)
    m2, r2 = trained_model(cfg, lambda: nn.Linear(2, 2), fit, store)
    assert fits == [1] and r1 == r2 == {"acc": 1.0}
    assert torch.equal(m2.weight, torch.full((2, 2), 3.0))


def test_run_grid_rejects_an_executor_without_submit(tmp_path):
    with pytest.raises(TypeError, match="submit"):
        store = ResultStore(tmp_path)
        run_grid([{"experiment": "e", "a": 1}], lambda c: {}, store, executor=object())
