"""Table VI timing logic (Sec. VI-D) and the Fig. 4 max-norm cost comparison."""

from __future__ import annotations

import pandas as pd
import torch

from jacnb import timing
from jacnb.results import ResultStore


def test_table6_rows_mnist_and_store(tmp_path) -> None:
    rows = timing.table6_rows("mnist_convnet", "cpu", batch=4, repeats=1, warmup=0, rounds=1)
    assert [r["regularizer"] for r in rows] == list(timing.REGULARIZERS)
    none = next(r for r in rows if r["regularizer"] == "none")
    assert none["ratio"] == 1.0 and all(r["device"].startswith("cpu") for r in rows)
    assert all(r["sec_per_batch"] > 0 for r in rows)
    store = ResultStore(tmp_path)
    config = timing.timing_configs(
        {
            "profile": "smoke",
            "resnet_batch": 1,
            "resnet_size": 32,
            "mnist_batch": 4,
            "repeats": 1,
            "warmup": 0,
            "rounds": 1,
        },
        torch.device("cpu"),
    )[0]
    store.put(config, {"rows": rows, "load": "x"})
    got = timing.stored_rows("smoke", store)
    assert len(got) == len(rows) and timing.stored_rows("cpu", store).empty
    view = timing.table6_view(got)
    assert set(view.source) == {"this book", "paper (Table VI)"}
    assert (view[view.source == "paper (Table VI)"].device == "Titan X (Theano)").all()


def test_resnet_rows_skip_exact_and_verdict() -> None:
    rows = timing.table6_rows("resnet18", "cpu", batch=2, size=32, repeats=1, warmup=0, rounds=1)
    assert "exact" not in {r["regularizer"] for r in rows}
    fake = pd.DataFrame(
        [
            {"device": "cpu", "net": "mnist_convnet", "regularizer": "exact", "ratio": 8.0},
            {"device": "cpu", "net": "resnet18", "regularizer": "per_layer", "ratio": 2.0},
        ]
    )
    (v,) = timing.verdict_table6(fake)
    assert "8.00x" in v and "2.00x" in v and "reproduced" in v


def test_fig4_cost_library_agrees_with_naive_loop() -> None:
    x = torch.rand(6, 1, 28, 28)
    out = timing.fig4_cost(x, naive_n=3)
    assert out["agree_on_subset"] and out["extrapolated"] and out["naive_n"] == 3
    assert out["naive_seconds_full"] == out["naive_seconds_measured"] * 2
