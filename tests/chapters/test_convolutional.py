"""The convolutional chapter (Sec. VI-B): settings, grids, factor choice on validation data only
with disjoint selection seeds, panel labels (no stand-in under a real name), the runs frame ->
gates.decide path (smoke: never decisive; a planted effect: reproduced, reversed: not
reproduced), and the batch-norm Jacobian of Table III."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from jacnb.chapters import convolutional as cx
from jacnb.core.data import Dataset
from jacnb.core.jacobian import logits_and_frobenius_sq
from jacnb.core.regularizers import JacobianRegularizer
from jacnb.lab import datasets, gates
from jacnb.lab.claims import claims_of
from jacnb.lab.datasets import Panel
from jacnb.lab.settings import PROFILES, get_profile
from jacnb.lab.store import ResultStore, config_key, run_grid
from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

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
    "n_select_seeds": 1,
    "val_fraction": 0.2,
    "jr_method": "projection",
    "n_proj": 1,
}


def _chosen(table: str, lam: float = 0.01) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "dataset": "digits",
                "regularizer": r,
                "n_train": 100,
                "lam": lam,
                "lam_grid": [lam / 10, lam, lam * 10],
                "chosen_by_tie": False,
                "selection_seeds": [10_000],
                "selection_steps": 500,
                "val_acc": {lam: 0.5},
            }
            for r in cx.TABLES[table].selected
        ]
    )


# --- settings and grids ------------------------------------------------------------------


def test_profiles_have_both_tables_and_the_papers_settings():
    for profile in PROFILES:
        s = cx.settings(profile)
        for table in ("table2", "table3"):
            ts = cx.table_settings(s, table)
            assert ts["profile"] == profile and ts["panels"]
            assert "select_seeds" not in ts  # selection seeds come from gates.selection_seeds
            assert set(cx.select_seeds(ts)).isdisjoint(ts["seeds"])
    paper = get_profile("convolutional", "paper")
    t2, t3 = paper["table2"], paper["table3"]
    assert (t2["epochs"], t2["lr"], t2["lr_drop_every"], t2["batch_size"]) == (120, 0.01, 40, 128)
    assert (t3["epochs"], t3["lr"], t3["lr_drop_every"], t3["batch_size"]) == (75, 0.1, 25, 64)
    assert [p["n_train"] for p in t2["panels"]] == [[1000, 5000, 20000, 50000]] + [
        [2000, 5000, 10000, 50000]
    ]
    assert t3["panels"][0]["n_train"] == [2500, 10000, 50000]
    assert all(not p["fallbacks"] for p in t2["panels"] + t3["panels"])
    # cpu Table II in the paper's regime (issue 13): 3 seeds, >= 400 steps per run, selection
    # runs included, the paper's optimizer (lr 0.01, momentum 0.9, two /10 drops)
    cpu = get_profile("convolutional", "cpu")["table2"]
    assert (cpu["panels"][0]["dataset"], cpu["panels"][0]["n_train"]) == ("mnist-10k", [1000, 2500])
    assert len(cpu["seeds"]) >= 3 and (cpu["lr"], cpu["momentum"]) == (0.01, 0.9)
    n_fit = min(cpu["select_n_train"])  # n_val further samples validate (selection_data)
    assert cpu["n_val"] >= 1000 and "val_fraction" not in cpu
    assert cx.steps_of(n_fit, cpu["batch_size"], cpu["epochs"], False) >= 400
    assert cpu["lambdas"]["jacobian"] == [0.001, 0.01, 0.1, 1.0]


def test_grids_cover_every_regularizer_size_factor_and_seed():
    sel2 = cx.select_configs(TINY, "table2", "digits", [100, 200])
    assert len(sel2) == 2 * 1 * 2 * 1  # 2 regularizers x 1 selection size x 2 factors x 1 seed
    assert {c["model"] for c in sel2} == {"mnist_convnet"}
    assert {c["seed"] for c in sel2} == {gates.SELECTION_SEED_BASE}  # never a final seed
    sel3 = cx.select_configs(TINY, "table3", "digits", [100, 200])
    assert {c["regularizer"] for c in sel3} == {"jacobian"}  # the BN baseline has no factor
    every = cx.select_configs({**TINY, "select_n_train": None}, "table2", "digits", [100, 200])
    assert sorted({c["n_train"] for c in every}) == [100, 200]
    fin3 = cx.final_configs(TINY, "table3", "digits", [100, 200], _chosen("table3", 0.3))
    assert len(fin3) == 2 * 2 * 2
    assert {(c["regularizer"], c["lam"]) for c in fin3} == {("none", 0.0), ("jacobian", 0.3)}
    assert {c["model"] for c in fin3} == {"all_cnn_c"}
    assert len({config_key(c) for c in fin3}) == len(fin3)
    assert {c["seed"] for c in fin3} == {0, 1}


def test_selection_seeds_are_disjoint_from_the_final_seeds():
    for profile in PROFILES:
        s = cx.settings(profile)
        for c in cx.configs(s):
            assert c["seed"] >= gates.SELECTION_SEED_BASE
            assert c["seed"] not in s[{"II": "table2", "III": "table3"}[c["table"]]]["seeds"]
    with pytest.raises(ValueError):
        gates.check_disjoint(cx.select_seeds(TINY), [gates.SELECTION_SEED_BASE])


def test_choice_records_grid_tie_seeds_and_steps():
    rows = []
    for lam, accs in ((0.01, [0.5, 0.6]), (0.1, [0.7, 0.8]), (1.0, [0.6, 0.6])):
        for seed, acc in zip((10_000, 10_001), accs, strict=True):
            rows.append(
                {
                    "dataset": "d",
                    "regularizer": "jacobian",
                    "n_train": 100,
                    "lam": lam,
                    "seed": seed,
                    "val_acc": acc,
                    "val_loss": 1.0,
                    "train_acc": 1.0 if lam < 1.0 else 0.95,
                    "steps": 420 + seed % 2,
                }
            )
    chosen = cx.choose_lambdas(pd.DataFrame(rows))
    (r,) = chosen.to_dict("records")
    assert r["lam"] == 0.1 and r["lam_grid"] == [0.01, 0.1, 1.0] and not r["chosen_by_tie"]
    assert r["selection_seeds"] == [10_000, 10_001] and r["selection_steps"] == 420
    assert r["unfit"] == [1.0]  # reported (Table II's claims ask a 99 % fit), not excluded
    tied = pd.DataFrame(rows).assign(val_acc=0.5)  # equal losses too: a tie remains
    assert cx.choose_lambdas(tied)["chosen_by_tie"].item()
    with pytest.raises(ValueError, match="test"):
        cx.choose_lambdas(pd.DataFrame(rows).assign(test_acc=0.5))


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
    assert frame["test_acc"].between(0, 1).all() and (frame["status"] == "ok").all()
    assert (frame["steps"] == 2).all()  # 100 samples, batch 64, one epoch
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
    real = datasets.get_dataset("digits")
    monkeypatch.setattr(cx, "get_dataset", lambda name: _NoTestSet(real))
    configs = cx.select_configs(TINY, "table2", "digits", [100])
    record = cx.select_run(configs[0])
    assert not any("test" in k for k in record)
    assert record["n_fit"] == 80 and record["n_val"] == 20 and 0 <= record["val_acc"] <= 1
    assert record["val_loss"] > 0  # the tie-breaker of jacnb.lab.selection
    picked = [configs[0], configs[2]]  # one factor of each regularizer
    assert [c["regularizer"] for c in picked] == ["weight_decay", "jacobian"]
    frame = pd.DataFrame([{**picked[0], **record}, {**picked[1], **cx.select_run(picked[1])}])
    chosen = cx.choose_lambdas(frame)
    assert set(chosen["regularizer"]) == {"weight_decay", "jacobian"}
    final = cx.final_configs(TINY, "table2", "digits", [100], chosen)
    with pytest.raises(AssertionError, match="x_test"):  # the guard bites: final runs do read it
        cx.final_run(final[0])


def test_selection_with_n_val_fits_the_final_draw_and_validates_on_other_samples(monkeypatch):
    real = datasets.get_dataset("digits")
    monkeypatch.setattr(cx, "get_dataset", lambda name: _NoTestSet(real))
    ts = {**TINY, "n_val": 300}
    (cfg, *_) = cx.select_configs(ts, "table2", "digits", [100])
    assert cfg["n_val"] == 300 and "val_fraction" not in cfg
    x_fit, y_fit, x_val, y_val = cx.selection_data(cfg)
    x_draw, _ = cx.train_split(cfg)  # what a final run with this seed would train on
    assert torch.equal(x_fit, x_draw) and len(y_val) == 300
    fit_rows = {tuple(r.flatten().tolist()) for r in x_fit}
    assert not any(tuple(r.flatten().tolist()) in fit_rows for r in x_val[:50])
    record = cx.select_run(cfg)
    assert record["n_fit"] == 100 and record["n_val"] == 300


def test_table3_run_trains_the_bn_net_with_jr_and_lared_gets_two_test_sets(monkeypatch):
    digits = datasets.get_dataset("digits")
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
    assert rec["steps"] == 1  # batch norm: the last incomplete batch is dropped
    t2 = {**TINY, "seeds": [0]}
    (wd, _) = cx.final_configs(
        t2, "table2", "lared", [30], _chosen("table2").assign(dataset="lared")
    )
    rec2 = cx.final_run(wd)
    assert 0 <= rec2["test_acc"] <= 1 and 0 <= rec2["test_other_acc"] <= 1


# --- the runs frame -> gates.decide path ----------------------------------------------------


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("conv-smoke"))
    return cx.run("smoke", store=store)


def test_smoke_is_never_decisive_and_frames_have_the_required_columns(smoke_result):
    verdicts = smoke_result.verdicts()
    assert [v.claim for v in verdicts] == [c.id for c in claims_of(cx.NAME)]
    assert {v.verdict for v in verdicts} <= {INCONCLUSIVE, NOT_RUN}
    frames = smoke_result.frames()
    for claim in claims_of(cx.NAME):
        table = claim.id.split(".")[0]
        runs = frames[f"{table}_runs"]
        if claim.dataset == "LaRED":
            continue  # not on disk: not run
        assert set(gates.required_columns(claim.id)) <= set(runs.columns), claim.id
    runs = frames["table2_runs"]
    assert runs["status"].eq("ok").all() and runs["steps"].gt(0).all()
    sel = [s for ss in runs["selection_seeds"].dropna() for s in ss]
    assert sel and set(sel).isdisjoint(set(runs["seed"]))
    assert {"λ=0.0001", "λ=1", "chosen", "tie"} <= set(frames["lambda_choice"].columns)
    table = smoke_result.paper_table()
    assert {"paper: baseline", "paper: + JR", "ours: baseline", "ours: + JR"} <= set(table.columns)
    figs = smoke_result.figures()
    assert "Table II" in figs and all(f.get_size_inches()[0] >= 8 for f in figs.values())
    numbers = smoke_result.numbers()
    assert {"table2_diff_smallest", "table2_min_train_acc", "table3_minutes"} <= set(numbers)


def _planted(sign: float) -> cx.ConvolutionalResult:
    """Synthetic stored runs of both tables with JR better (``sign=1``) or worse (``-1``) than
    the baseline by 3 points at the smallest size and 1 point at the larger one, in the paper's
    regime (fit, enough steps, interior factors, 4 seeds)."""
    rng = np.random.default_rng(0)
    tables = {}
    for table, (paper_name, dataset, steps) in {
        "table2": ("MNIST", "mnist", 500),
        "table3": ("CIFAR-10", "cifar10", 1200),
    }.items():
        t = cx.TABLES[table]
        base, treat = list(t.regularizers)
        sizes = [1000, 2500]
        chosen = pd.DataFrame(
            [
                {
                    "dataset": dataset,
                    "regularizer": r,
                    "n_train": 1000,
                    "lam": 0.01,
                    "lam_grid": [0.001, 0.01, 0.1],
                    "chosen_by_tie": False,
                    "selection_seeds": [10_000],
                    "selection_steps": steps,
                    "val_acc": {0.001: 0.5, 0.01: 0.6, 0.1: 0.55},
                }
                for r in t.selected
            ]
        )
        rows = []
        for n, gain in zip(sizes, (0.03, 0.01), strict=True):
            for seed in range(4):
                acc = 0.9 + 0.002 * rng.standard_normal()
                for reg, a in ((base, acc), (treat, acc + sign * gain)):
                    rows.append(
                        {
                            "dataset": dataset,
                            "regularizer": reg,
                            "n_train": n,
                            "seed": seed,
                            "lam": 0.01 if reg in t.selected else 0.0,
                            "test_acc": a,
                            "train_acc": 1.0,
                            "steps": steps,
                            "status": "ok",
                            "seconds": 1.0,
                        }
                    )
        panels = [(Panel(paper_name, dataset, paper_name, ""), {"n_train": sizes})]
        if table == "table2":
            panels.append(
                (
                    Panel("LaRED", None, "LaRED: not run", "not run: dataset absent"),
                    {"n_train": sizes},
                )
            )
        ts = {"image_size": None}
        tables[table] = cx.TableRun(table, ts, panels, pd.DataFrame(), chosen, pd.DataFrame(rows))
    return cx.ConvolutionalResult("paper", {}, tables)


def test_a_planted_effect_is_reproduced_and_its_reverse_is_not():
    good = {v.claim: v for v in _planted(+1).verdicts()}
    bad = {v.claim: v for v in _planted(-1).verdicts()}
    for claim in (
        "table2.mnist.jr_beats_wd",
        "table2.mnist.gain_largest_at_smallest",
        "table3.jr_helps_batch_norm",
        "table3.jr_smaller_ge",
    ):
        assert good[claim].verdict == REPRODUCED, (claim, good[claim].reason)
        assert bad[claim].verdict == NOT_REPRODUCED, (claim, bad[claim].reason)
    for claim in ("table2.lared.jr_beats_wd", "table2.lared.gain_largest_at_smallest"):
        assert good[claim].verdict == NOT_RUN
    assert good["table2.mnist.jr_beats_wd"].dataset == "MNIST"  # the real dataset, no stand-in


def test_gates_bite_on_the_chapter_frames():
    result = _planted(+1)
    # a diverged run is counted in its cell; a factor at the grid's edge is inconclusive
    result.tables["table2"].final.loc[0, "status"] = "diverged"
    result.tables["table2"].chosen["lam_grid"] = [[0.01, 0.1, 1.0]] * 2
    v = {x.claim: x for x in result.verdicts()}["table2.mnist.jr_beats_wd"]
    assert v.verdict == INCONCLUSIVE and "grid's edge" in v.reason and "1 diverged" in v.evidence


# --- batch norm ------------------------------------------------------------------------------


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
