"""Table VI timing logic (Sec. VI-D) and the Fig. 4 max-norm cost comparison."""

from __future__ import annotations

import pandas as pd
import torch

from jacnb.chapters import timing
from jacnb.lab import paper
from jacnb.lab.settings import get_profile
from jacnb.lab.store import ResultStore

SMALL = {
    "profile": "smoke",
    "resnet_batch": 2,
    "resnet_size": 32,
    "mnist_batch": 4,
    "repeats": 1,
    "warmup": 0,
    "rounds": 1,
}


def test_table6_rows_mnist_and_store(tmp_path) -> None:
    rows = timing.table6_rows("mnist_convnet", "cpu", batch=4, repeats=1, warmup=0, rounds=1)
    assert [r["regularizer"] for r in rows] == list(timing.REGULARIZERS)
    none = next(r for r in rows if r["regularizer"] == "none")
    assert none["ratio"] == 1.0 and all(r["device"].startswith("cpu") for r in rows)
    assert all(r["sec_per_batch"] > 0 for r in rows)
    # CPU memory: the profiler's accounting, > 0 for every row, none on CUDA's column
    assert all(r["step_mem_mb"] > 0 and r["cuda_max_allocated_mb"] is None for r in rows)
    store = ResultStore(tmp_path)
    config = timing.timing_configs(SMALL, torch.device("cpu"))[0]
    store.put(config, {"rows": rows, "load": "x", "when": "now"})
    # a record of another schema or profile is not shown
    store.put({**config, "schema": 1}, {"rows": rows, "load": "x"})
    got = timing.stored_rows("smoke", store)
    assert len(got) == len(rows) and timing.stored_rows("cpu", store).empty
    view = timing.table6_view(got)
    assert set(view.source) == {"this book", "paper (Table VI)"}
    assert (view[view.source == "paper (Table VI)"].device == "Titan X (Theano)").all()
    wide = timing.table6_wide(got, "mnist_convnet")
    assert list(wide.index) == [timing.LABELS[r] for r in timing.REGULARIZERS]
    assert wide.loc["no reg.", (timing.PAPER_SOURCE, "x no reg.")] == "1.00x"
    assert wide.loc["weight decay", (timing.PAPER_SOURCE, "s/batch")] == "-"
    assert any(line.startswith("cpu") for line in timing.run_provenance(got))


def test_cpu_step_memory_sees_the_step_allocations() -> None:
    big = 4 * 2**20  # one float32 tensor of 4 MiB allocated and freed inside the step

    def step() -> None:
        torch.ones(big // 4).sum()

    mem = timing.step_memory(step, torch.device("cpu"))
    assert 4.0 <= mem["step_mem_mb"] < 4.5 and mem["cuda_max_allocated_mb"] is None


def test_run_timing_goes_through_the_store_and_keeps_other_devices(tmp_path, monkeypatch) -> None:
    calls = []

    def fake_rows(net, device, batch, size, repeats, warmup, rounds):
        calls.append(net)
        regs = [r for r in timing.REGULARIZERS if net == "mnist_convnet" or r != "exact"]
        return [
            {
                "net": net,
                "regularizer": r,
                "label": timing.LABELS[r],
                "device": timing.device_name(torch.device(device)),
                "device_type": "cpu",
                "batch": batch,
                "input": "x",
                "sec_per_batch": 0.1 * (k + 1),
                "sec_min": 0.1 * (k + 1),
                "sec_max": 0.1 * (k + 1),
                "ratio": float(k + 1),
                "step_mem_mb": 1.0,
                "cuda_max_allocated_mb": None,
                "repeats": repeats,
                "warmup": warmup,
                "rounds": rounds,
            }
            for k, r in enumerate(regs)
        ]

    monkeypatch.setattr(timing, "table6_rows", fake_rows)
    store = ResultStore(tmp_path)
    first = timing.run_timing(SMALL, store)
    assert set(first.net) == set(timing.NETS) and len(calls) == len(timing.NETS)
    # rows recorded on a GPU machine (another device name) are shown next to ours
    gpu = first[first.net == "mnist_convnet"].assign(device="NVIDIA H100", device_type="cuda")
    config = {**timing.timing_configs(SMALL, torch.device("cpu"))[0], "device": "NVIDIA H100"}
    store.put(config, {"rows": gpu.drop(columns=["load", "when", "torch"]).to_dict("records")})
    second = timing.run_timing(SMALL, store)
    assert len(calls) == len(timing.NETS)  # nothing re-timed
    assert list(second.device.unique()) == [first.device.iloc[0], "NVIDIA H100"]
    assert len(second) == len(first) + len(gpu)
    assert len(timing.verdict_table6(second)) == 2
    wide = timing.table6_wide(second, "mnist_convnet")
    assert {c[0] for c in wide.columns} == {
        f"{first.device.iloc[0]}, batch 4",
        "NVIDIA H100, batch 4",
        timing.PAPER_SOURCE,
    }


def test_resnet_rows_skip_exact_and_verdict() -> None:
    rows = timing.table6_rows(
        "resnet18", "cpu", batch=2, size=32, repeats=1, warmup=0, rounds=1, memory=False
    )
    assert "exact" not in {r["regularizer"] for r in rows}
    fake = pd.DataFrame(
        [
            {"device": "cpu", "net": "mnist_convnet", "regularizer": "exact", "ratio": 8.0},
            {"device": "cpu", "net": "mnist_convnet", "regularizer": "per_layer", "ratio": 1.5},
            {"device": "cpu", "net": "resnet18", "regularizer": "per_layer", "ratio": 4.0},
        ]
    )
    (v,) = timing.verdict_table6(fake)
    assert "8.00x" in v and "4.00x" in v and "reproduced" in v
    # 8 vs 10: within the factor 1.5; 4 vs 1.58: higher by 2.53x
    assert "-> agrees" in v and "higher by 2.53x" in v


def test_exact_estimate_and_fastest_ratio() -> None:
    fake = pd.DataFrame(
        [
            {"device": "d", "net": n, "regularizer": r, "ratio": q, "sec_min": m}
            for n, r, q, m in [
                ("mnist_convnet", "none", 1.0, 1.0),
                ("mnist_convnet", "exact", 14.0, 12.0),
                ("mnist_convnet", "projection_1", 2.5, 2.0),
                ("mnist_convnet", "per_layer", 2.0, 2.0),
                ("resnet18", "none", 1.0, 1.0),
                ("resnet18", "projection_1", 3.0, 3.0),
                ("resnet18", "per_layer", 2.5, 3.2),
            ]
        ]
    )
    (line,) = timing.exact_cost_estimates(fake)
    assert "estimated 16.0x, measured 14.0x" in line and "estimated 2001.0x (not timed)" in line
    (v,) = timing.verdict_table6(fake)
    assert "ratio of the fastest steps 12.00x" in v and "ratio of the fastest steps 3.20x" in v
    noisy = fake.assign(ratio=fake.ratio.where(fake.regularizer != "projection_1", 0.9))
    (line,) = timing.exact_cost_estimates(noisy)
    assert "no estimate (r_1 = 0.90)" in line


def test_cpu_threads_are_part_of_the_device_name() -> None:
    before = torch.get_num_threads()
    with timing.cpu_threads(1):
        assert timing.device_name(torch.device("cpu")).startswith("cpu (1 thread,")
    assert torch.get_num_threads() == before
    labels = timing.device_labels({"threads": 1})
    assert labels[0].startswith("cpu (1 thread,") and torch.get_num_threads() == before


def test_paper_claims_come_from_jacnb_paper() -> None:
    claims = timing.paper_claims().set_index("net")
    p = paper.table6()
    assert claims.loc["mnist_convnet", "paper_ratio"] == p.increase_factor.iloc[1]
    assert claims.loc["resnet18", "regularizer"] == "per_layer"
    assert claims.loc["resnet18", "paper_sec_none"] == p.seconds_per_batch.iloc[2]


def test_device_settings_override_per_device() -> None:
    s = get_profile("timing", "paper")
    cpu = timing.device_settings(s, torch.device("cpu"))
    cuda = timing.device_settings(s, torch.device("cuda"))
    assert cpu["resnet_batch"] < cuda["resnet_batch"] == 256
    assert "cpu" not in cpu and cpu["profile"] == "paper"


def test_fig4_cost_library_agrees_with_naive_loop(tmp_path) -> None:
    x = torch.rand(6, 1, 28, 28)
    out = timing.fig4_cost(x, naive_n=3)
    assert out["agree_on_subset"] and out["extrapolated"] and out["naive_n"] == 3
    assert out["naive_seconds_full"] == out["naive_seconds_measured"] * 2
    settings = {"profile": "smoke", "naive_n": 3, "seeds": [0]}
    store = ResultStore(tmp_path)
    res = timing.run_fig4_cost(settings, x, "random", store)
    again = timing.run_fig4_cost(settings, x, "random", store)
    assert again.library_seconds.tolist() == res.library_seconds.tolist()
    view = timing.fig4_view(res)
    assert "extrapolated from 3" in view["naive per-sample loop [s]"].iloc[0]


def test_verdict_records_keep_the_table6_decisions() -> None:
    from jacnb.lab.verdicts import NOT_REPRODUCED, NOT_RUN, REPRODUCED

    fake = pd.DataFrame(
        [
            {"device": "cpu", "net": "mnist_convnet", "regularizer": "exact", "ratio": 8.0},
            {"device": "cpu", "net": "mnist_convnet", "regularizer": "per_layer", "ratio": 1.5},
            {"device": "cpu", "net": "resnet18", "regularizer": "per_layer", "ratio": 4.0},
        ]
    )
    by = {v.claim: v.verdict for v in timing.verdict_records(fake)}
    assert by["table6.ratio.mnist_convnet.exact"] == REPRODUCED  # 8 vs 10: within 1.5x
    assert by["table6.ratio.resnet18.per_layer"] == NOT_REPRODUCED  # 4 vs 1.58
    assert by["table6.per_layer_cheaper"] == REPRODUCED
    by = {v.claim: v.verdict for v in timing.verdict_records(fake.iloc[:1])}
    assert by["table6.per_layer_cheaper"] == NOT_RUN
