"""The fully connected chapter (Sec. VI-A): eq. (45) layers, resumable grids, validation-based
factor choice that never sees test data, verdict logic, panel labelling, cost projection."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from jacnb.chapters import fully_connected as fx
from jacnb.core import bounds
from jacnb.core.models import WeightNormLinear, fully_connected
from jacnb.lab import datasets
from jacnb.lab.store import ResultStore, config_key, run_grid

TINY_FC = {
    "profile": "test",
    "panels": [{"paper": "MNIST", "dataset": "digits", "fallback": None}],
    "n_train": [100, 200],
    "depths": [2],
    "width_factor": 1,
    "seeds": [0, 1],
    "epochs": 1,
    "lr": 0.05,
    "lr_drop_every": 1,
    "batch_size": 64,
    "momentum": 0.9,
    "lambdas": {"weight_decay": [1e-4, 1e-2], "jacobian": [0.01, 1.0]},
    "select_n_train": [100],
    "select_seeds": [0],
    "val_fraction": 0.2,
    "jr_method": "projection",
    "n_proj": 1,
}


# --- eq. (45) --------------------------------------------------------------------------------


def test_weight_normalized_fc_has_unit_rows_in_every_layer_after_training_steps():
    torch.manual_seed(0)
    net = fully_connected(20, 3, depth=4, width=15, weight_norm=True)
    layers = [m for m in net.modules() if isinstance(m, WeightNormLinear)]
    assert len(layers) == 4  # softmax layer included (Sec. VI-A2)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(3):
        loss = net(torch.randn(8, 20)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for layer in layers:
        rows = layer.weight.detach().norm(dim=1)
        assert torch.allclose(rows, torch.ones_like(rows), atol=1e-6)
    norms = bounds.weight_norms(net)
    assert [round(n.frobenius**2) for n in norms] == [15, 15, 15, 3]  # ||W||_F = sqrt(M_l)
    assert all(n.spectral >= 1 - 1e-9 for n in norms)  # ||W||_2 >= max row norm = 1


# --- result store: resume ------------------------------------------------------------------


def test_fig3_grid_resumes_after_a_kill_without_repeating(tmp_path):
    store = ResultStore(tmp_path)
    chosen = pd.DataFrame(
        [
            {"dataset": "digits", "regularizer": r, "depth": 2, "n_train": 100, "lam": 0.01}
            for r in fx.REGULARIZERS
        ]
    )
    configs = fx.fig3_configs(TINY_FC, "digits", chosen)
    assert len(configs) == 2 * 2 * 2 and all(c["profile"] == "test" for c in configs)
    calls: list[str] = []

    def killed_after_three(cfg):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(config_key(cfg))
        return fx.fig3_run(cfg)

    with pytest.raises(KeyboardInterrupt):
        run_grid(configs, killed_after_three, store, progress=False)
    first = list(calls)

    def counting(cfg):
        calls.append(config_key(cfg))
        return fx.fig3_run(cfg)

    frame = run_grid(configs, counting, store, progress=False)
    assert len(frame) == len(configs)
    assert len(calls) == len(configs)  # the 3 finished runs were not repeated
    assert len(first) == 3 and not set(first) & set(calls[3:])
    assert frame["test_acc"].between(0, 1).all() and (frame["seconds"] > 0).all()
    calls.clear()
    run_grid(configs, counting, store, progress=False)
    assert calls == []


# --- validation-based choice of lambda -----------------------------------------------------


def test_choose_lambdas_picks_best_mean_validation_accuracy_and_smaller_on_ties():
    rows = []
    for lam, accs in {0.01: [0.80, 0.82], 0.1: [0.90, 0.88], 1.0: [0.70, 0.95]}.items():
        for seed, acc in enumerate(accs):
            rows.append(
                {
                    "dataset": "d",
                    "regularizer": "jacobian",
                    "depth": 2,
                    "n_train": 100,
                    "lam": lam,
                    "seed": seed,
                    "val_acc": acc,
                }
            )
    for lam in (1e-4, 1e-3):  # a tie: the smaller factor wins
        rows.append(
            {
                "dataset": "d",
                "regularizer": "weight_decay",
                "depth": 2,
                "n_train": 100,
                "lam": lam,
                "seed": 0,
                "val_acc": 0.5,
            }
        )
    chosen = fx.choose_lambdas(pd.DataFrame(rows)).set_index("regularizer")
    assert chosen.loc["jacobian", "lam"] == 0.1
    assert chosen.loc["jacobian", "val_acc"] == pytest.approx(0.89)
    assert chosen.loc["jacobian", "grid"] == {0.01: 0.81, 0.1: 0.89, 1.0: 0.825}
    assert chosen.loc["weight_decay", "lam"] == 1e-4
    with pytest.raises(ValueError, match="test"):
        fx.choose_lambdas(pd.DataFrame(rows).assign(test_acc=0.9))


def test_lookup_lambda_uses_nearest_selected_size():
    chosen = pd.DataFrame(
        [
            {"dataset": "d", "regularizer": "jacobian", "depth": 2, "n_train": 100, "lam": 0.1},
            {"dataset": "d", "regularizer": "jacobian", "depth": 2, "n_train": 1000, "lam": 1.0},
        ]
    )
    assert fx.lookup_lambda(chosen, "d", "jacobian", 2, 200) == 0.1
    assert fx.lookup_lambda(chosen, "d", "jacobian", 2, 900) == 1.0
    with pytest.raises(KeyError):
        fx.lookup_lambda(chosen, "d", "weight_decay", 2, 100)


class _NoTestSet:
    """A dataset whose test split cannot be read."""

    def __init__(self, ds):
        self._ds = ds

    def __getattr__(self, name):
        if name in ("x_test", "y_test"):
            raise AssertionError(f"selection read {name}")
        return getattr(self._ds, name)


def test_selection_runs_never_read_the_test_set(monkeypatch):
    real = fx.get_dataset("digits")
    monkeypatch.setattr(fx, "get_dataset", lambda name: _NoTestSet(real))
    configs = fx.select_configs(TINY_FC, "digits")
    assert len(configs) == 2 * 2  # 2 regularizers x 2 factors at one size, depth, seed
    result = fx.select_run(configs[0])
    assert not any("test" in k for k in result)
    assert 0 <= result["val_acc"] <= 1 and result["n_val"] == 20 and result["n_fit"] == 80
    chosen = pd.DataFrame([{**c, **fx.select_run(c)} for c in configs])
    fx.choose_lambdas(chosen)  # the frame has no test columns, so the choice is allowed
    final = fx.fig3_configs(TINY_FC, "digits", fx.choose_lambdas(chosen))
    with pytest.raises(AssertionError, match="x_test"):  # the guard works: final runs do read it
        fx.fig3_run(final[0])


# --- verdicts ------------------------------------------------------------------------------


def _fig3_summary(jr_minus_wd: list[float], sd: float = 0.001) -> pd.DataFrame:
    rows = []
    configs = [(d, n) for d in (2, 4) for n in (20000, 50000)]
    for (depth, n), diff in zip(configs, jr_minus_wd, strict=True):
        base = 0.9 + 0.01 * depth + (0.02 if n == 50000 else 0.0)
        for reg, acc in (("weight_decay", base), ("jacobian", base + diff)):
            rows.append(
                {
                    "dataset": "mnist",
                    "regularizer": reg,
                    "depth": depth,
                    "n_train": n,
                    "test_acc": acc,
                    "test_acc_std": sd,
                    "test_acc_count": 5,
                }
            )
    return pd.DataFrame(rows)


def test_verdict_jr_beats_wd():
    assert fx.verdict_jr_beats_wd(_fig3_summary([0.01] * 4))["verdict"] == fx.REPRODUCED
    v = fx.verdict_jr_beats_wd(_fig3_summary([0.01, 0.01, -0.01, 0.01]))
    assert v["verdict"] == fx.NOT_REPRODUCED and "3/4" in v["evidence"]
    assert fx.verdict_jr_beats_wd(pd.DataFrame())["verdict"] == fx.NOT_TESTED


def test_verdict_jr_on_less_data_matches_wd_on_more():
    # depth 4: WD@50000 = 0.96; JR@20000 = 0.94 + diff
    on_par = _fig3_summary([0.0, 0.0, 0.02, 0.0])
    v = fx.verdict_jr_matches_more_data(on_par, "mnist", depth=4)
    assert v["verdict"] == fx.REPRODUCED and "analogue" not in v["evidence"]
    worse = _fig3_summary([0.0, 0.0, 0.005, 0.0])
    assert fx.verdict_jr_matches_more_data(worse, "mnist", 4)["verdict"] == fx.NOT_REPRODUCED
    one_size = on_par[on_par["n_train"] == 50000]
    assert fx.verdict_jr_matches_more_data(one_size, "mnist", 4)["verdict"] == fx.NOT_TESTED


def test_fig3_verdicts_mark_absent_panels_not_tested():
    panels = [
        fx.Panel("MNIST", "mnist", "MNIST", ""),
        fx.Panel("CIFAR-10", None, "CIFAR-10: not run", "not run: dataset absent"),
    ]
    table = fx.fig3_verdicts(_fig3_summary([0.01, 0.01, 0.03, 0.01]), panels)
    assert list(table["verdict"]) == [fx.REPRODUCED, fx.REPRODUCED, fx.NOT_TESTED]


def _fig4_summary() -> pd.DataFrame:
    rows = []
    for depth in (2, 3, 4):
        for k in (1, 2):
            rows.append(
                {
                    "depth": depth,
                    "width": 784 * k,
                    "width_factor": k,
                    "train_acc": 0.996 if (depth, k) == (2, 1) else 1.0,
                    "test_acc": 0.9 + 0.01 * depth + 0.005 * k,
                    "min_score": 0.1 * depth + 0.05 * k,
                    "max_J_train": 1.0 / depth / k,
                    "max_J_test": 1.0 + depth,
                    "min_spectral": 1.2,
                    "gamma4_median": 10.0 ** (-depth) / k,
                    "gamma_localJ_median": 0.1 * depth * k,
                }
            )
    return pd.DataFrame(rows)


def test_fig4_verdicts_on_a_summary_that_follows_the_paper():
    table = fx.fig4_verdicts(_fig4_summary())
    assert (table["verdict"] == fx.REPRODUCED).all(), table


def test_fig4_verdicts_detect_departures():
    s = _fig4_summary()
    s.loc[s["depth"] == 4, "train_acc"] = 0.98
    s.loc[(s["depth"] == 4) & (s["width_factor"] == 2), "test_acc"] = 0.5
    s["min_spectral"] = 1.0
    s["gamma_localJ_median"] = 1.0 / s["depth"]
    v = fx.fig4_verdicts(s).set_index("claim")["verdict"]
    assert v["train accuracy 100% (99.6% for the smallest net)"] == fx.NOT_REPRODUCED
    assert v["test accuracy grows with width"] == fx.NOT_REPRODUCED
    assert v["test accuracy grows with depth"] == fx.NOT_REPRODUCED
    assert v["every ||W_l||_2 > 1"] == fx.NOT_REPRODUCED
    assert v["Jacobian proxy o/||J(x_i)||_2 does not shrink with depth"] == fx.NOT_REPRODUCED
    assert v["max ||J||_2 on test rises with depth"] == fx.REPRODUCED


def test_trend_verdict_not_tested_with_one_value():
    s = _fig4_summary()
    s = s[s["width_factor"] == 1]
    v = fx.verdict_trend(s, "test_acc", "width", "depth", +1, "grows with width")
    assert v["verdict"] == fx.NOT_TESTED


# --- panels --------------------------------------------------------------------------------


def test_stand_in_is_never_called_cifar10(monkeypatch):
    real = fx.get_dataset("digits")
    monkeypatch.setattr(datasets, "try_dataset", lambda n: None if n == "cifar10" else real)
    monkeypatch.setattr(datasets, "get_dataset", lambda n: real)
    spec = {"panels": [{"paper": "CIFAR-10", "dataset": "cifar10", "fallback": "fashion-mnist"}]}
    (panel,) = fx.plan_panels(spec)
    assert panel.dataset == "fashion-mnist"
    assert panel.label == "Fashion-MNIST (stand-in for CIFAR-10)"
    spec["panels"][0]["fallback"] = None
    (panel,) = fx.plan_panels(spec)
    assert panel.dataset is None and "not run: dataset absent" in panel.note
    spec = {"panels": [{"paper": "MNIST", "dataset": "mnist-10k", "fallback": None}]}
    assert fx.plan_panels(spec)[0].label.startswith("MNIST")


# --- Fig. 4 run and cost -------------------------------------------------------------------


def test_fig4_run_records_every_quantity(tmp_path):
    settings = {
        "profile": "test",
        "n_train": 100,
        "depths": [2],
        "width_factors": [1],
        "seeds": [0],
        "epochs": 1,
        "lr": 0.1,
        "lr_drop_every": 1,
        "batch_size": 50,
        "momentum": 0.9,
        "n_margin": 4,
    }
    frame = fx.run_fig4(settings, "digits", ResultStore(tmp_path))
    r = frame.iloc[0]
    assert r["width"] == 64 and r["min_score_printed"] == pytest.approx(2 * r["min_score"])
    assert r["frobenius"] == pytest.approx([8.0, math.sqrt(10)])
    assert r["prod_spectral"] <= r["prod_frobenius"]
    assert r["max_J_train"] > 0 and r["max_J_test"] > 0 and r["n_margin"] == 4
    assert set(fx.FIG4_METRICS) <= set(frame.columns)


def test_projected_cost_arithmetic():
    assert fx.fc_params(784, 10, 2, 784) == 623_290  # models.fully_connected docstring
    work = [
        {
            "in_dim": 784,
            "depth": 2,
            "width": 784,
            "n_fit": 1000,
            "epochs": 10,
            "regularizer": "jacobian",
        }
    ]
    proj = fx.project_gpu_hours(work, {"jacobian": 2.0}, gpu_tflops=1.0)
    flops = 6 * 623_290 * 1000 * 10 * 2.0
    assert proj["runs"] == 1 and proj["gpu_hours"] == pytest.approx(flops / 1e12 / 3600)
    paper = {
        "depths": [2, 3, 4],
        "n_train": [5000, 20000, 50000],
        "seeds": list(range(5)),
        "epochs": 120,
        "select_n_train": None,
        "select_seeds": [0],
        "val_fraction": 0.2,
        "lambdas": {"weight_decay": [1, 2, 3, 4], "jacobian": [1, 2, 3, 4]},
    }
    runs = fx.fig3_workload(paper, {"mnist": 784, "cifar10": 3072})
    assert len(runs) == 2 * 2 * 3 * (3 * 4 + 3 * 5)


# --- seeds trained together (jacnb.core.stacked) -------------------------------------------------


@pytest.fixture
def one_thread():
    """Tiny nets: one thread (two threads on a loaded 2-core machine mostly wait)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _records(store: ResultStore, configs) -> list[dict]:
    return [store.get(c) for c in configs]


def _assert_records_match(stacked: list[dict], separate: list[dict]) -> None:
    """Same keys in the same order; same numbers up to float32 rounding of another code path."""
    for a, b in zip(stacked, separate, strict=True):
        assert list(a) == list(b)
        for key, value in b.items():
            if key in ("seconds", "eval_seconds"):
                assert a[key] > 0
            elif isinstance(value, float) and not math.isnan(value):
                assert a[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
            elif not isinstance(value, float | list):
                assert a[key] == value, key


def test_stacked_fig3_grids_write_the_records_separate_runs_write(tmp_path, one_thread):
    sep, stk = ResultStore(tmp_path / "sep"), ResultStore(tmp_path / "stk")
    select = fx.select_configs(TINY_FC, "digits")
    run_grid(select, fx.select_run, sep, progress=False)
    calls: list[int] = []

    def group(configs):
        calls.append(len(configs))
        return fx.select_run_stacked(configs)

    fx.run_grid_stacked(select, fx.select_run, group, stk, stack=True, progress=False)
    assert calls == [2, 2]  # per regularizer: its two factors (one selection seed) together
    _assert_records_match(_records(stk, select), _records(sep, select))
    chosen = fx.choose_lambdas(sep.frame(fx.EXP_SELECT))
    final = fx.fig3_configs(TINY_FC, "digits", chosen)
    run_grid(final, fx.fig3_run, sep, progress=False)
    fx.run_grid_stacked(final, fx.fig3_run, fx.fig3_run_stacked, stk, stack=True, progress=False)
    _assert_records_match(_records(stk, final), _records(sep, final))


def test_stacked_grid_trains_only_the_missing_seeds(tmp_path, one_thread):
    store = ResultStore(tmp_path)
    chosen = pd.DataFrame(
        [
            {"dataset": "digits", "regularizer": r, "depth": 2, "n_train": n, "lam": 0.01}
            for r in fx.REGULARIZERS
            for n in (100, 200)
        ]
    )
    settings = {**TINY_FC, "seeds": [0, 1, 2]}
    configs = fx.fig3_configs(settings, "digits", chosen)
    done = [c for c in configs if c["seed"] == 1 or (c["seed"] == 2 and c["n_train"] == 200)]
    run_grid(done, fx.fig3_run, store, progress=False)
    before = {config_key(c): store.path(c).read_text() for c in done}
    single: list[tuple] = []
    groups: list[list[int]] = []

    def run(cfg):
        single.append((cfg["regularizer"], cfg["n_train"], cfg["seed"]))
        return fx.fig3_run(cfg)

    def run_group(cfgs):
        groups.append([c["seed"] for c in cfgs])
        return fx.fig3_run_stacked(cfgs)

    frame = fx.run_grid_stacked(configs, run, run_group, store, stack=True, progress=False)
    assert len(frame) == len(configs) and frame["key"].is_unique
    assert sorted(groups) == [[0, 2], [0, 2]]  # n_train 100: seeds 0 and 2 together
    assert sorted(single) == [("jacobian", 200, 0), ("weight_decay", 200, 0)]  # alone
    assert {config_key(c): store.path(c).read_text() for c in done} == before  # not retrained
    single.clear()
    groups.clear()
    fx.run_grid_stacked(configs, run, run_group, store, stack=True, progress=False)
    assert single == [] and groups == []


def test_stacked_fig4_matches_separate_runs(tmp_path, one_thread):
    settings = {
        "profile": "test",
        "n_train": 100,
        "depths": [2],
        "width_factors": [1],
        "seeds": [0, 1],
        "epochs": 2,
        "lr": 0.1,
        "lr_drop_every": 1,
        "batch_size": 50,
        "momentum": 0.9,
        "n_margin": 4,
    }
    sep, stk = ResultStore(tmp_path / "sep"), ResultStore(tmp_path / "stk")
    fx.run_fig4({**settings, "stack_seeds": False}, "digits", sep)
    fx.run_fig4({**settings, "stack_seeds": True}, "digits", stk)
    configs = fx.fig4_configs(settings, "digits")
    assert len(stk.records(fx.EXP_FIG4)) == 2
    _assert_records_match(_records(stk, configs), _records(sep, configs))


def test_stack_seeds_setting_and_groups():
    assert fx.stack_seeds({}) is False
    assert fx.stack_seeds({"stack_seeds": True}) is True
    assert fx.stack_seeds({"stack_seeds": "auto"}, device="cpu") is False
    assert fx.stack_seeds({"stack_seeds": "auto"}, device="cuda") is True
    with pytest.raises(ValueError, match="stack_seeds"):
        fx.stack_seeds({"stack_seeds": "yes"})
    configs = [
        {"depth": 2, "seed": 0, "lam": 0.1},
        {"depth": 3, "seed": 0, "lam": 0.1},
        {"depth": 2, "seed": 1, "lam": 1.0},
        {"depth": 2, "seed": 1, "lam": 0.0},
    ]
    groups = fx.stack_groups(configs)
    assert [[(c["depth"], c["seed"], c["lam"]) for c in g] for g in groups] == [
        [(2, 0, 0.1), (2, 1, 1.0)],
        [(3, 0, 0.1)],
        [(2, 1, 0.0)],
    ]


def test_flat_trend_is_neither_growth_nor_fall():
    """Equal accuracies at two widths must not count as 'grows with width' (polyfit leaves a
    ~1e-19 slope on a flat series)."""
    summary = pd.DataFrame({"depth": [4, 4], "width": [784, 1568], "test_acc": [0.9105, 0.9105]})
    assert fx.trend(summary, "test_acc", "width", "depth")["slope"].tolist() == [0.0]
    for direction in (1, -1):
        v = fx.verdict_trend(summary, "test_acc", "width", "depth", direction, "claim")
        assert v["verdict"] == fx.NOT_REPRODUCED


def test_fig3_and_fig4_verdict_records_keep_the_decisions():
    from jacnb.lab.verdicts import NOT_RUN, REPRODUCED

    panels = [
        fx.Panel("MNIST", "mnist", "MNIST", ""),
        fx.Panel("CIFAR-10", None, "CIFAR-10: not run", "not run: dataset absent"),
    ]
    records = fx.fig3_verdict_records(_fig3_summary([0.01, 0.01, 0.03, 0.01]), panels, "cpu")
    assert [(v.claim, v.verdict) for v in records] == [
        ("fig3.jr_beats_wd", REPRODUCED),
        ("fig3.jr_matches_more_data", REPRODUCED),
        ("fig3.jr_beats_wd", NOT_RUN),
    ]
    assert records[0].dataset == "MNIST" and records[0].profile == "cpu"
    fig4 = fx.fig4_verdict_records(_fig4_summary())
    assert len(fig4) == len(fx.fig4_verdicts(_fig4_summary()))
    assert all(v.verdict == REPRODUCED and v.claim.startswith("fig4.") for v in fig4)
    assert len({v.claim for v in fig4}) == len(fig4)
