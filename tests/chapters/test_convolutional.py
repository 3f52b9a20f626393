"""The convolutional chapter (Sec. VI-B): grid and config logic, resume through the result
store, factor choice on validation data only, panel labels (no stand-in under a real name),
verdict logic, and the batch-norm Jacobian of Table III."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from jacnb.chapters import convolutional as cx
from jacnb.chapters import fully_connected as fx
from jacnb.core.data import Dataset
from jacnb.core.jacobian import logits_and_frobenius_sq
from jacnb.core.regularizers import JacobianRegularizer
from jacnb.lab import datasets
from jacnb.lab.settings import PROFILES, get_profile
from jacnb.lab.store import ResultStore, config_key, run_grid

TINY = {
    "profile": "test",
    "panels": [{"paper": "MNIST", "dataset": "digits", "fallbacks": [], "n_train": [100, 200]}],
    "image_size": None,
    "n_test": None,
    "seeds": [0, 1],
    "epochs": 1,
    "lr": 0.05,
    "lr_drop_every": 1,
    "batch_size": 64,
    "momentum": 0.9,
    "lambdas": {"weight_decay": [1e-4, 1e-2], "jacobian": [0.01, 1.0], "none": [0.0]},
    "select_n_train": [100],
    "select_seeds": [0],
    "val_fraction": 0.2,
    "jr_method": "projection",
    "n_proj": 1,
}


def _chosen(table: str, lam: float = 0.01) -> pd.DataFrame:
    t = cx.TABLES[table]
    return pd.DataFrame(
        [
            {"dataset": "digits", "regularizer": r, "depth": t.depth, "n_train": 100, "lam": lam}
            for r in t.selected
        ]
    )


# --- settings and grids ------------------------------------------------------------------


def test_profiles_have_both_tables_and_the_papers_settings():
    for profile in PROFILES:
        s = get_profile("convolutional", profile)
        for table in ("table2", "table3"):
            ts = cx.table_settings(s, table)
            assert ts["profile"] == profile and ts["panels"]
    paper = get_profile("convolutional", "paper")
    t2, t3 = paper["table2"], paper["table3"]
    assert (t2["epochs"], t2["lr"], t2["lr_drop_every"], t2["batch_size"]) == (120, 0.01, 40, 128)
    assert (t3["epochs"], t3["lr"], t3["lr_drop_every"], t3["batch_size"]) == (75, 0.1, 25, 64)
    assert [p["n_train"] for p in t2["panels"]] == [[1000, 5000, 20000, 50000]] + [
        [2000, 5000, 10000, 50000]
    ]
    assert t3["panels"][0]["n_train"] == [2500, 10000, 50000]
    # the paper profile never stands in: absent datasets are not run
    assert all(not p["fallbacks"] for p in t2["panels"] + t3["panels"])
    cpu = get_profile("convolutional", "cpu")["table2"]["panels"][0]
    assert (cpu["dataset"], cpu["n_train"]) == ("mnist-10k", [1000, 5000])


def test_grids_cover_every_regularizer_size_factor_and_seed():
    sel2 = cx.select_configs(TINY, "table2", "digits", [100, 200])
    assert len(sel2) == 2 * 1 * 2 * 1  # 2 regularizers x 1 selection size x 2 factors x 1 seed
    assert {c["model"] for c in sel2} == {"mnist_convnet"} and {c["depth"] for c in sel2} == {4}
    sel3 = cx.select_configs(TINY, "table3", "digits", [100, 200])
    assert {c["regularizer"] for c in sel3} == {"jacobian"}  # the BN baseline has no factor
    every = cx.select_configs({**TINY, "select_n_train": None}, "table2", "digits", [100, 200])
    assert sorted({c["n_train"] for c in every}) == [100, 200]
    fin3 = cx.final_configs(TINY, "table3", "digits", [100, 200], _chosen("table3", 0.3))
    assert len(fin3) == 2 * 2 * 2
    assert {(c["regularizer"], c["lam"]) for c in fin3} == {("none", 0.0), ("jacobian", 0.3)}
    assert {c["model"] for c in fin3} == {"all_cnn_c"}
    assert len({config_key(c) for c in fin3}) == len(fin3)


def test_panels_label_stand_ins_and_absent_datasets(monkeypatch, tmp_path):
    monkeypatch.setenv("JACNB_DATA", str(tmp_path))  # nothing on disk but sklearn's digits
    datasets.clear_cache()
    ts = {
        **TINY,
        "image_size": 16,
        "panels": [
            {"paper": "CIFAR-10", "dataset": "cifar10", "fallbacks": ["fashion-mnist", "digits"]},
            {"paper": "LaRED", "dataset": "lared", "fallbacks": []},
            {"paper": "CIFAR-10", "dataset": "cifar10", "fallbacks": []},
        ],
    }
    try:
        (stand_in, _), (lared, _), (absent, _) = cx.plan_table(ts)
    finally:
        datasets.clear_cache()
    assert stand_in.dataset == "digits" and "stand-in for CIFAR-10" in stand_in.label
    assert "resized to 16x16" in stand_in.label
    assert lared.dataset is None and lared.note.startswith("not run: dataset absent")
    assert absent.dataset is None and "cifar10" in absent.note


# --- resume and validation-only selection ---------------------------------------------------


def test_grid_resumes_and_a_second_call_trains_nothing(tmp_path):
    store = ResultStore(tmp_path)
    configs = cx.final_configs({**TINY, "seeds": [0]}, "table2", "digits", [100], _chosen("table2"))
    calls: list[str] = []

    def counting(cfg):
        calls.append(config_key(cfg))
        return cx.final_run(cfg)

    frame = run_grid(configs, counting, store, progress=False)
    assert len(calls) == len(configs) == 2 and len(frame) == 2
    assert frame["test_acc"].between(0, 1).all() and (frame["diverged"] == "").all()
    calls.clear()
    again = run_grid(configs, counting, store, progress=False)
    assert calls == [] and again["test_acc"].tolist() == frame["test_acc"].tolist()


class _NoTestSet:
    """A dataset whose test sets cannot be read."""

    def __init__(self, ds):
        self._ds = ds

    def __getattr__(self, name):
        if name in ("x_test", "y_test", "meta"):
            raise AssertionError(f"selection read {name}")
        return getattr(self._ds, name)


def test_selection_reads_validation_data_only(monkeypatch):
    real = fx.get_dataset("digits")
    monkeypatch.setattr(cx, "get_dataset", lambda name: _NoTestSet(real))
    configs = cx.select_configs(TINY, "table2", "digits", [100])
    record = cx.select_run(configs[0])
    assert not any("test" in k for k in record)
    assert record["n_fit"] == 80 and record["n_val"] == 20 and 0 <= record["val_acc"] <= 1
    picked = [configs[0], configs[2]]  # one factor of each regularizer
    assert [c["regularizer"] for c in picked] == ["weight_decay", "jacobian"]
    frame = pd.DataFrame([{**picked[0], **record}, {**picked[1], **cx.select_run(picked[1])}])
    chosen = fx.choose_lambdas(frame)
    assert set(chosen["regularizer"]) == {"weight_decay", "jacobian"}
    with pytest.raises(ValueError, match="test"):
        fx.choose_lambdas(frame.assign(test_acc=0.5))
    final = cx.final_configs(TINY, "table2", "digits", [100], chosen)
    with pytest.raises(AssertionError, match="x_test"):  # the guard bites: final runs do read it
        cx.final_run(final[0])


def test_table3_run_trains_the_bn_net_with_jr_and_lared_gets_two_test_sets(monkeypatch):
    digits = fx.get_dataset("digits")
    fake = Dataset(
        "lared",
        digits.x_train,
        digits.y_train,
        digits.x_test[:50],
        digits.y_test[:50],
        10,
        "fake",
        meta={"x_test_other": digits.x_test[50:90], "y_test_other": digits.y_test[50:90]},
    )
    monkeypatch.setattr(cx, "get_dataset", lambda name: fake if name == "lared" else digits)
    ts = {**TINY, "image_size": 16, "batch_size": 16, "seeds": [0], "n_test": 40}
    (cfg,) = [
        c
        for c in cx.final_configs(ts, "table3", "digits", [30], _chosen("table3", 0.1))
        if c["regularizer"] == "jacobian"
    ]
    rec = cx.final_run(cfg)
    assert rec["diverged"] == "" and 0 <= rec["test_acc"] <= 1
    t2 = {**TINY, "seeds": [0]}
    (wd, _) = cx.final_configs(
        t2, "table2", "lared", [30], _chosen("table2").assign(dataset="lared")
    )
    rec2 = cx.final_run(wd)
    assert 0 <= rec2["test_acc"] <= 1 and 0 <= rec2["test_other_acc"] <= 1


# --- verdicts ------------------------------------------------------------------------------


def _result(table: str, accs: dict[tuple[str, int], list[float]], panel_paper="MNIST"):
    rows = []
    for (reg, n), values in accs.items():
        for seed, acc in enumerate(values):
            rows.append(
                {
                    "dataset": "digits",
                    "regularizer": reg,
                    "depth": cx.TABLES[table].depth,
                    "n_train": n,
                    "lam": 0.1,
                    "seed": seed,
                    "test_acc": acc,
                    "train_acc": 1.0,
                }
            )
    panel = fx.Panel(panel_paper, "digits", "digits (stand-in)", "")
    return {
        "panels": [(panel, {"n_train": sorted({n for _, n in accs})})],
        "final": pd.DataFrame(rows),
    }


def test_verdicts_follow_the_numbers_and_check_the_papers_own_table():
    good = _result(
        "table2",
        {
            ("weight_decay", 1000): [0.90, 0.91],
            ("jacobian", 1000): [0.95, 0.96],
            ("weight_decay", 5000): [0.97, 0.97],
            ("jacobian", 5000): [0.98, 0.98],
        },
    )
    v = cx.verdicts({"table2": good}).set_index("claim")
    assert v.loc["JR beats weight decay in every cell", "verdict"] == fx.REPRODUCED
    assert v.loc["JR's advantage is largest at the smallest training set", "verdict"] == (
        fx.REPRODUCED
    )
    assert (v["paper's own table"] == fx.REPRODUCED).all()  # MNIST column of Table II
    bad = copy.deepcopy(good)
    bad["final"].loc[bad["final"]["regularizer"] == "jacobian", "test_acc"] -= 0.06
    v = cx.verdicts({"table2": bad}).set_index("claim")
    assert v.loc["JR beats weight decay in every cell", "verdict"] == fx.NOT_REPRODUCED
    # the paper's own LaRED numbers: JR's gain is not largest at the smallest size
    lared = {
        "panels": [
            (
                fx.Panel("LaRED", None, "LaRED: not run", "not run: dataset absent"),
                {"n_train": [2000]},
            )
        ],
        "final": pd.DataFrame(),
    }
    v = cx.verdicts({"table2": lared})
    assert (v["verdict"] == fx.NOT_TESTED).all() and len(v) == 4
    own = v.set_index(["column", "claim"])["paper's own table"]
    assert own[("LaRED (same subject)", "JR beats weight decay in every cell")] == fx.REPRODUCED
    assert own[
        ("LaRED (same subject)", "JR's advantage is largest at the smallest training set")
    ] == (fx.NOT_REPRODUCED)


def test_table3_verdicts_and_comparison_beside_the_paper():
    res = _result(
        "table3",
        {("none", 250): [0.50, 0.52], ("jacobian", 250): [0.49, 0.47]},
        panel_paper="CIFAR-10",
    )
    v = cx.verdicts({"table3": res}).set_index("claim")
    assert (v["verdict"] == fx.NOT_REPRODUCED).all()
    assert "not given" in v.iloc[1]["paper's own table"]
    table = cx.comparison(res, "table3").set_index("n_train")
    assert table.loc[2500, "paper: Batch norm."] == "60.86"
    assert table.loc[2500, "ours: Batch norm."] == "not run at this profile"
    assert table.loc[250, "ours: Batch norm."] == "51.00 ± 1.41"
    assert table.loc[250, "ours: diff"] == pytest.approx(-3.0)


# --- batch norm: J(x_i) with the batch statistics held fixed ---------------------------------


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 6),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Linear(6, 4),
    ).train()


def _functional_reference(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``1/m sum_i ||J(x_i)||_F^2`` written out: the batch's mean and biased variance are taken
    from a forward pass and used as constants in a per-sample function, whose Jacobian
    ``torch.autograd.functional.jacobian`` differentiates one sample at a time (differentiable
    in the weights through ``create_graph``)."""
    conv, bn1, _, _, lin1, bn2, _, lin2 = net
    with torch.no_grad():
        z1 = conv(x)
        m1, v1 = z1.mean((0, 2, 3)), z1.var((0, 2, 3), unbiased=False)
        z2 = lin1(torch.relu(bn1(z1)).flatten(1))
        m2, v2 = z2.mean(0), z2.var(0, unbiased=False)

    def f(xi: torch.Tensor) -> torch.Tensor:
        z = conv(xi[None])
        z = (z - m1[None, :, None, None]) / torch.sqrt(v1[None, :, None, None] + bn1.eps)
        z = torch.relu(z * bn1.weight[None, :, None, None] + bn1.bias[None, :, None, None])
        z = lin1(z.flatten(1))
        z = torch.relu((z - m2) / torch.sqrt(v2 + bn2.eps) * bn2.weight + bn2.bias)
        return torch.softmax(lin2(z), -1)[0]

    total = sum(
        torch.autograd.functional.jacobian(f, xi, create_graph=True).pow(2).sum() for xi in x
    )
    return total / x.shape[0]


def test_bn_penalty_is_the_per_sample_jacobian_with_batch_statistics_fixed():
    net = _bn_net()
    x = torch.rand(7, 2, 4, 4)
    reference = _functional_reference(net, x)
    reg = JacobianRegularizer(method="exact")
    logits, penalty = reg.logits_and_penalty(net, x)
    assert float(penalty.detach()) == pytest.approx(float(reference.detach()), rel=1e-5)
    # the weights' gradients agree too (batch statistics are constants in both)
    params = [p for p in net.parameters()]
    g_reg = torch.autograd.grad(penalty, params, allow_unused=True)
    g_ref = torch.autograd.grad(reference, params, allow_unused=True)
    for a, b in zip(g_reg, g_ref, strict=True):
        a = torch.zeros_like(params[0]) if a is None else a
        if b is not None:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    # the loss sees the ordinary batch-norm forward pass
    twin = copy.deepcopy(net)
    assert torch.allclose(logits, twin(x), atol=1e-6)
    # the naive gradient through the batch statistics is a different number
    naive = JacobianRegularizer(method="exact", batch_norm="coupled")(copy.deepcopy(net), x)
    naive, reference = naive.detach(), reference.detach()
    assert abs(float(naive) - float(reference)) > 1e-3 * float(reference)
    # and the module-level brute force of the notebook agrees
    check = cx.bn_jacobian_check()
    rel = check["relative difference to brute force"].to_numpy()
    assert rel[0] < 1e-5 and rel[2] > 1e-3


def test_bn_running_statistics_move_once_per_step_and_eval_mode_is_unchanged():
    net, twin = _bn_net(), _bn_net()
    x = torch.rand(5, 2, 4, 4)
    JacobianRegularizer(method="projection").logits_and_penalty(net, x)
    twin(x)  # one ordinary training forward pass
    for a, b in zip(net.modules(), twin.modules(), strict=True):
        if isinstance(a, nn.modules.batchnorm._BatchNorm):
            assert torch.allclose(a.running_mean, b.running_mean)
            assert torch.allclose(a.running_var, b.running_var)
            assert int(a.num_batches_tracked) == 1
    assert not any("forward" in vars(m) for m in net.modules())  # patched forwards removed
    net.eval()
    fixed = logits_and_frobenius_sq(net, x, "exact", batch_norm="fixed")[1]
    coupled = logits_and_frobenius_sq(net, x, "exact", batch_norm="coupled")[1]
    assert torch.allclose(fixed, coupled)  # running statistics: the samples are independent
    with pytest.raises(ValueError, match="batch_norm"):
        logits_and_frobenius_sq(net, x, batch_norm="frozen")
    assert np.isfinite(float(fixed.mean().detach()))


def test_cost_tables_with_and_without_runs():
    empty = {"select": pd.DataFrame(), "final": pd.DataFrame()}
    cost, per_config = cx.cost_tables({"Table II": empty, "Table III": empty})
    assert cost.empty and per_config.empty
    final = pd.DataFrame(
        {
            "table": ["Table II"] * 2,
            "dataset": ["digits"] * 2,
            "n_train": [100, 100],
            "regularizer": ["weight_decay", "jacobian"],
            "seconds": [60.0, 120.0],
            "diverged": ["", "loss nan at epoch 2"],
        }
    )
    cost, per_config = cx.cost_tables({"Table II": {"select": pd.DataFrame(), "final": final}})
    assert cost.to_dict("records") == [
        {
            "table": "Table II",
            "phase": "final",
            "runs": 2,
            "training minutes": 3.0,
            "diverged runs": 1,
        }
    ]
    assert per_config.loc[("Table II", "digits", 100), "jacobian"] == 120.0


def test_verdict_records_keep_the_decisions():
    from jacnb.lab.verdicts import NOT_REPRODUCED

    good = _result(
        "table2",
        {
            ("weight_decay", 1000): [0.90, 0.91],
            ("jacobian", 1000): [0.95, 0.96],
            ("weight_decay", 5000): [0.97, 0.97],
            ("jacobian", 5000): [0.98, 0.98],
        },
    )
    rows = cx.verdicts({"table2": good})
    records = cx.verdict_records({"table2": good}, "smoke")
    assert [v.verdict for v in records] == list(rows["verdict"])
    assert all(v.claim.startswith("table2.") for v in records)
    bad = copy.deepcopy(good)
    bad["final"].loc[bad["final"]["regularizer"] == "jacobian", "test_acc"] -= 0.06
    by = {v.claim: v.verdict for v in cx.verdict_records({"table2": bad})}
    assert by["table2.jr_beats_weight_decay_in_every_cell"] == NOT_REPRODUCED
