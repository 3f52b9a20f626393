"""Table VI timing logic (Sec. VI-D) and the Fig. 4 max-norm cost comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from jacnb.chapters import timing
from jacnb.lab import gates, paper
from jacnb.lab.claims import claims_of
from jacnb.lab.store import ResultStore
from jacnb.lab.timing import step_label
from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

SMALL = {
    "profile": "smoke",
    "resnet_batch": 2,
    "resnet_size": 32,
    "mnist_batch": 4,
    "repeats": 1,
    "repetitions": 1,
    "resnet_repeats": 1,
    "resnet_repetitions": 1,
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
    assert list(wide.index) == [step_label(r) for r in timing.REGULARIZERS]
    assert wide.index[2] == "Jac. reg., exact (49), class loop"
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

    def fake_rows(net, device, batch, size, repeats, warmup, rounds, repetitions=1):
        calls.append(net)
        regs = [r for r in timing.REGULARIZERS if net == "mnist_convnet" or r != timing.EXACT]
        return [
            {
                "net": net,
                "repetition": 0,
                "steps": repeats,
                "regularizer": r,
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
    assert timing.verdict_device(second := timing.run_timing(SMALL, store)) == "NVIDIA H100"
    second = timing.run_timing(SMALL, store)
    assert len(calls) == len(timing.NETS)  # nothing re-timed
    assert list(second.device.unique()) == [first.device.iloc[0], "NVIDIA H100"]
    assert len(second) == len(first) + len(gpu)
    wide = timing.table6_wide(timing.summary_rows(second), "mnist_convnet")
    assert {c[0] for c in wide.columns} == {
        f"{first.device.iloc[0]}, batch 4",
        "NVIDIA H100, batch 4",
        timing.PAPER_SOURCE,
    }


def test_resnet_rows_skip_exact() -> None:
    rows = timing.table6_rows(
        "resnet18", "cpu", batch=2, size=32, repeats=1, warmup=0, rounds=1, memory=False
    )
    assert timing.EXACT not in {r["regularizer"] for r in rows}


def test_exact_estimate() -> None:
    fake = pd.DataFrame(
        [
            {"device": "d", "net": n, "regularizer": r, "ratio": q, "sec_min": m}
            for n, r, q, m in [
                ("mnist_convnet", "none", 1.0, 1.0),
                ("mnist_convnet", timing.EXACT, 14.0, 12.0),
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
    s = timing.settings("paper")
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


def test_repetitions_are_seeds_of_the_runs_frame() -> None:
    rows = timing.table6_rows(
        "mnist_fc", "cpu", batch=2, repeats=2, warmup=0, rounds=2, memory=False, repetitions=2
    )
    assert {(r["repetition"], r["regularizer"]) for r in rows} == {
        (k, r) for k in (0, 1) for r in ("none", timing.EXACT, "projection_1")
    }
    df = pd.DataFrame(rows).assign(when="", load="", torch="")
    runs = timing.runs_frame(df)
    assert set(runs["arm"]) == {"none", "exact", "projection"} and set(runs["seed"]) == {0, 1}
    assert (runs["steps"] == 2).all()
    summ = timing.summary_rows(df)
    assert len(summ) == 3 and (summ["repetitions"] == 2).all()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return timing.run("smoke", store=ResultStore(tmp_path_factory.mktemp("results")))


def test_smoke_claims_are_never_decided_and_frames_have_the_columns(smoke) -> None:
    verdicts = smoke.verdicts()
    assert [v.claim for v in verdicts] == [c.id for c in claims_of(timing.NAME)]
    assert all(v.verdict in (INCONCLUSIVE, NOT_RUN) for v in verdicts)
    for claim in claims_of(timing.NAME):
        runs = smoke.runs(claim.id)
        assert set(gates.required_columns(claim)) <= set(runs.columns) and len(runs)
    assert {"runs", "table6", "fig4"} <= set(smoke.frames())
    assert "paper (Table VI)" in set(smoke.paper_table()["source"])
    assert list(smoke.figures()) == ["ratios"]


def _planted(
    exact: float, per_layer: float, projection: float, resnet_per_layer: float = 1.5
) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for rep in range(4):
        for net, regs in (
            ("mnist_convnet", {"none": 1.0, timing.EXACT: exact, "per_layer": per_layer}),
            ("mnist_fc", {"none": 1.0, timing.EXACT: 10.0, "projection_1": projection}),
            ("resnet18", {"none": 1.0, "per_layer": resnet_per_layer}),
        ):
            for reg, sec in regs.items():
                sec *= float(np.exp(rng.normal(0, 0.02)))
                rows.append(
                    {
                        "device": "cpu (1 thread, x86_64)",
                        "device_type": "cpu",
                        "net": net,
                        "regularizer": reg,
                        "batch": 32,
                        "input": "1x28x28",
                        "repetition": rep,
                        "sec_per_batch": sec,
                        "sec_min": sec,
                        "sec_max": sec,
                        "ratio": sec,
                        "step_mem_mb": 1.0,
                        "cuda_max_allocated_mb": None,
                        "steps": 20,
                        "repeats": 20,
                        "warmup": 2,
                        "rounds": 20,
                        "when": "",
                        "load": "",
                        "torch": "",
                    }
                )
    return pd.DataFrame(rows)


def test_planted_costs_are_reproduced_and_reversed_ones_not() -> None:
    s = timing.settings("cpu")
    good = timing.TimingResult(s, _planted(10.0, 2.0, 1.0), pd.DataFrame())
    assert {v.verdict for v in good.verdicts()} == {REPRODUCED}
    bad = timing.TimingResult(s, _planted(0.5, 20.0, 9.0, 3.0), pd.DataFrame())
    assert {v.verdict for v in bad.verdicts()} == {NOT_REPRODUCED}
    nums = good.numbers()
    assert nums["fc_projection_over_exact"] == pytest.approx(0.1, rel=0.1)
