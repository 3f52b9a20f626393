"""The fully connected chapter (Sec. VI-A1, Fig. 3): resumable and stacked grids (with the store's
claims), validation-based factor choice that never sees test data on seeds disjoint from the final
runs', the verdict path through jacnb.lab.gates.decide, panel labelling, cost projection."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from jacnb.chapters import fully_connected as fx
from jacnb.core.train import DivergedError
from jacnb.lab import datasets, fc_nets, gates, pipeline
from jacnb.lab.claims import claims_of
from jacnb.lab.records import split_ok
from jacnb.lab.store import ResultStore, config_key, run_grid
from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

TINY_FC = {
    "profile": "test",
    "panels": [{"paper": "MNIST", "candidates": ["digits"]}],
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
    "select_seeds": [10_000],
    "val_fraction": 0.2,
    "jr_method": "projection",
    "n_proj": 1,
}


# --- eq. (45) --------------------------------------------------------------------------------


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


def test_choose_lambdas_uses_the_shared_rule_with_the_claims_fit():
    # the rule itself is tested in tests/lab/test_selection.py; here: Fig. 3's wiring -- per
    # (dataset, regularizer, depth, n_train), validation accuracy alone (the 99 % fit of its
    # claims only reported), ties broken by loss
    rows = []
    table = {  # lam: (val_acc, val_loss, train_acc)
        ("jacobian", 0.01): (0.84, 0.5, 1.0),
        ("jacobian", 0.1): (0.85, 0.5, 1.0),
        ("jacobian", 1.0): (0.86, 0.5, 0.985),  # best on validation, does not fit: chosen
        ("weight_decay", 0.0): (0.85, 0.61, 1.0),
        ("weight_decay", 1e-4): (0.85, 0.55, 1.0),  # tie on accuracy, lowest loss
        ("weight_decay", 1e-3): (0.84, 0.40, 1.0),
    }
    for (reg, lam), (acc, loss, fit) in table.items():
        for depth in (2, 3):
            rows.append(
                {
                    "dataset": "d",
                    "regularizer": reg,
                    "depth": depth,
                    "n_train": 100,
                    "lam": lam,
                    "seed": 10_000,
                    "val_acc": acc,
                    "val_loss": loss,
                    "train_acc": fit,
                    "steps": 600,
                }
            )
    chosen = fx.choose_lambdas(pd.DataFrame(rows))
    assert len(chosen) == 4
    lam = chosen.set_index(["regularizer", "depth"])["lam"].to_dict()
    assert lam == {("jacobian", 2): 1.0, ("jacobian", 3): 1.0,
                   ("weight_decay", 2): 1e-4, ("weight_decay", 3): 1e-4}
    assert chosen["unfit"].tolist() == [[1.0], [1.0], [], []]
    assert chosen["tie_broken_by_loss"].tolist() == [False, False, True, True]
    assert not chosen["chosen_by_tie"].any()
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
    assert result["val_loss"] > 0  # the tie-breaker of jacnb.lab.selection
    chosen = pd.DataFrame([{**c, **fx.select_run(c)} for c in configs])
    fx.choose_lambdas(chosen)  # the frame has no test columns, so the choice is allowed
    final = fx.fig3_configs(TINY_FC, "digits", fx.choose_lambdas(chosen))
    with pytest.raises(AssertionError, match="x_test"):  # the guard works: final runs do read it
        fx.fig3_run(final[0])


def test_separate_validation_set_is_disjoint_from_the_fit_set_and_never_the_test_set(monkeypatch):
    """With ``n_val``: the fit set is the final run's draw of that seed (n_train samples, not a
    fraction of them) and the validation set n_val further training samples, disjoint from it."""
    real = fx.get_dataset("digits")
    monkeypatch.setattr(fx, "get_dataset", lambda name: _NoTestSet(real))
    s = {**TINY_FC, "n_val": 150}
    configs = fx.select_configs(s, "digits")
    assert configs and all(c["n_val"] == 150 and "val_fraction" not in c for c in configs)
    c0 = configs[0]
    fit, val = pipeline.selection_indices(real.y_train, c0["n_train"], c0["n_val"], c0["seed"])
    assert len(fit) == 100 and len(val) == 150 and not set(fit) & set(val)
    final_x, _ = fx.balanced_subset(real.x_train, real.y_train, 100, configs[0]["seed"])
    x_fit, y_fit, x_val, y_val = fx.selection_data(configs[0])
    assert torch.equal(torch.as_tensor(x_fit), torch.as_tensor(final_x))  # the final run's draw
    assert torch.equal(torch.as_tensor(x_val), torch.as_tensor(real.x_train[val]))
    assert np.bincount(np.asarray(y_val)).min() == 15  # class balanced
    result = fx.select_run(configs[0])
    assert not any("test" in k for k in result)
    assert result["n_fit"] == 100 and result["n_val"] == 150 and 0 <= result["val_acc"] <= 1
    stacked = fx.select_run_stacked(configs[:2])
    assert [r["n_val"] for r in stacked] == [150, 150]
    # a pool without a balanced draw of n_train + n_val falls back to the held-out fraction
    y = real.y_train
    assert pipeline.validation_keys({**s, "n_val": 10_000}, y, 100) == {"val_fraction": 0.2}
    assert pipeline.validation_keys(TINY_FC, y, 100) == {"val_fraction": 0.2}


def test_profiles_validate_on_a_separate_set_and_weight_decay_grids_start_at_zero():
    for profile in ("smoke", "cpu", "paper"):
        assert fx.settings(profile)["n_val"] > 0
    for profile in ("cpu", "paper"):  # no decay is the floor: the factor gate sees no edge there
        assert min(fx.settings(profile)["lambdas"]["weight_decay"]) == 0.0
    assert fx.settings("cpu")["n_val"] >= 1000


# --- panels --------------------------------------------------------------------------------


def test_stand_in_is_never_called_cifar10(monkeypatch):
    real = fx.get_dataset("digits")
    monkeypatch.setattr(datasets, "try_dataset", lambda n: None if n == "cifar10" else real)
    monkeypatch.setattr(datasets, "get_dataset", lambda n: real)
    spec = {"panels": [{"paper": "CIFAR-10", "candidates": ["cifar10", "fashion-mnist"]}]}
    (panel,) = fx.plan_panels(spec)
    assert panel.dataset == "fashion-mnist"
    assert panel.label == "Fashion-MNIST (stand-in for CIFAR-10)"
    spec["panels"][0]["candidates"] = ["cifar10"]
    (panel,) = fx.plan_panels(spec)
    assert panel.dataset is None and "not run: dataset absent" in panel.note
    spec = {"panels": [{"paper": "MNIST", "candidates": ["mnist-10k"]}]}
    assert fx.plan_panels(spec)[0].label.startswith("MNIST")


# --- Fig. 4 run and cost -------------------------------------------------------------------


def test_projected_cost_arithmetic():
    assert fc_nets.fc_params(784, 10, 2, 784) == 623_290  # models.fully_connected docstring
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
    proj = fc_nets.project_gpu_hours(work, {"jacobian": 2.0}, gpu_tflops=1.0)
    flops = 6 * 623_290 * 1000 * 10 * 2.0
    assert proj["runs"] == 1 and proj["gpu_hours"] == pytest.approx(flops / 1e12 / 3600)
    paper = {
        "depths": [2, 3, 4],
        "n_train": [5000, 20000, 50000],
        "seeds": list(range(5)),
        "epochs": 120,
        "select_n_train": None,
        "select_seeds": [10_000],
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

    pipeline.run_grid_stacked(select, fx.select_run, group, stk, stack=True, progress=False)
    assert calls == [2, 2]  # per regularizer: its two factors (one selection seed) together
    _assert_records_match(_records(stk, select), _records(sep, select))
    chosen = fx.choose_lambdas(sep.frame(fx.EXP_SELECT))
    final = fx.fig3_configs(TINY_FC, "digits", chosen)
    run_grid(final, fx.fig3_run, sep, progress=False)
    pipeline.run_grid_stacked(
        final, fx.fig3_run, fx.fig3_run_stacked, stk, stack=True, progress=False
    )
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

    frame = pipeline.run_grid_stacked(configs, run, run_group, store, stack=True, progress=False)
    assert len(frame) == len(configs) and frame["key"].is_unique
    assert sorted(groups) == [[0, 2], [0, 2]]  # n_train 100: seeds 0 and 2 together
    assert sorted(single) == [("jacobian", 200, 0), ("weight_decay", 200, 0)]  # alone
    assert {config_key(c): store.path(c).read_text() for c in done} == before  # not retrained
    single.clear()
    groups.clear()
    pipeline.run_grid_stacked(configs, run, run_group, store, stack=True, progress=False)
    assert single == [] and groups == []


def test_stack_seeds_setting_and_groups():
    assert pipeline.stack_seeds({}) is False
    assert pipeline.stack_seeds({"stack_seeds": True}) is True
    assert pipeline.stack_seeds({"stack_seeds": "auto"}, device="cpu") is False
    assert pipeline.stack_seeds({"stack_seeds": "auto"}, device="cuda") is True
    with pytest.raises(ValueError, match="stack_seeds"):
        pipeline.stack_seeds({"stack_seeds": "yes"})
    configs = [
        {"depth": 2, "seed": 0, "lam": 0.1},
        {"depth": 3, "seed": 0, "lam": 0.1},
        {"depth": 2, "seed": 1, "lam": 1.0},
        {"depth": 2, "seed": 1, "lam": 0.0},
    ]
    groups = pipeline.stack_groups(configs)
    assert [[(c["depth"], c["seed"], c["lam"]) for c in g] for g in groups] == [
        [(2, 0, 0.1), (2, 1, 1.0)],
        [(3, 0, 0.1)],
        [(2, 1, 0.0)],
    ]




# --- the chapter interface and its one verdict path ------------------------------------------


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory):
    return fx.run("smoke", store=ResultStore(tmp_path_factory.mktemp("fc-smoke")))


def test_smoke_gives_no_decided_verdict_and_one_per_claim(smoke_result):
    verdicts = smoke_result.verdicts()
    assert [v.claim for v in verdicts] == [c.id for c in claims_of(fx.NAME)]
    assert {v.verdict for v in verdicts} <= {INCONCLUSIVE, NOT_RUN}, verdicts
    by = {v.claim: v for v in verdicts}
    assert by["fig3.cifar10.jr_beats_wd"].verdict == NOT_RUN  # CIFAR-10 is not on disk
    assert "stand-in" in by["fig3.mnist.jr_beats_wd"].dataset  # digits stand in for MNIST
    assert set(smoke_result.frames()) == {"runs", "selection", "chosen", "projection"}
    assert smoke_result.paper_table().index.tolist() == list(by)


def test_runs_frames_have_the_columns_the_gates_read(smoke_result):
    runs = smoke_result.frames()["runs"]
    for claim in fx.CLAIM_BEATS.values():
        assert set(gates.required_columns(claim)) <= set(runs.columns), claim
    assert set(gates.required_columns(fx.CLAIM_PAR)) <= set(fx.par_runs(runs).columns)
    proj = smoke_result.frames()["projection"]
    assert set(gates.required_columns(fx.CLAIM_PROJ)) <= set(proj.columns)
    assert set(proj["arm"]) == {"exact", "projection"}
    assert (runs["status"] == "ok").all() and "steps" in smoke_result.select


def test_selection_seeds_are_disjoint_from_final_seeds():
    for profile in ("smoke", "cpu", "paper"):
        s = fx.settings(profile)
        assert s["select_seeds"] and not set(s["select_seeds"]) & set(s["seeds"]), profile
    with pytest.raises(ValueError, match="share seeds"):
        fx.select_configs({**TINY_FC, "select_seeds": [0]}, "digits")


def _planted(jr_minus_wd: float, par_gap: float, proj_gap: float, sd: float = 0.002):
    """Store-like final and chosen frames with a planted JR - WD effect (every cell), a planted
    JR(less data) - WD(more data) gap at depth 4, and a projection - exact gap."""
    rng = np.random.default_rng(0)
    final, chosen = [], []
    for reg in fx.REGULARIZERS:
        grid = [0.01, 0.1, 1.0, 10.0] if reg == "jacobian" else [1e-4, 1e-3, 1e-2, 1e-1]
        for depth in (2, 3, 4):
            chosen.append({"dataset": "mnist", "regularizer": reg, "depth": depth,
                           "n_train": 400, "lam": grid[1], "lam_grid": grid,
                           "chosen_by_tie": False, "selection_seeds": [10_000, 10_001],
                           "selection_steps": 450})
            for n in (400, 1000):
                for seed in range(4):
                    base = 0.90 + 0.01 * depth + (0.03 if n == 1000 else 0.0)
                    if reg == "jacobian":
                        base += jr_minus_wd + (par_gap - jr_minus_wd + 0.03 if (
                            depth == 4 and n == 400) else 0.0)
                    final.append({"dataset": "mnist", "regularizer": reg, "depth": depth,
                                  "n_train": n, "seed": seed, "lam": grid[1], "status": "ok",
                                  "test_acc": base + sd * rng.standard_normal(),
                                  "train_acc": 1.0, "steps": 600})
    runs = fx.fig3_runs(pd.DataFrame(final), pd.DataFrame(chosen))
    exact = runs[(runs["arm"] == "jacobian") & (runs["depth"] == 2) & (runs["n_train"] == 400)]
    proj = pd.concat([exact.assign(jr_method="exact"),
                      exact.assign(jr_method="projection", test_acc=exact["test_acc"] + proj_gap)])
    return runs, proj


def _decided(runs, proj) -> dict[str, str]:
    panels = [fx.Panel("MNIST", "mnist", "MNIST", ""),
              fx.Panel("CIFAR-10", None, "CIFAR-10: not run", "not run: dataset absent")]
    return {v.claim: v.verdict for v in fx.verdicts_from_runs(runs, proj, panels, "test")}


def test_planted_effects_are_reproduced_and_reversed_ones_are_not():
    ok = _decided(*_planted(jr_minus_wd=0.02, par_gap=0.0, proj_gap=0.0))
    assert ok == {
        "fig3.mnist.jr_beats_wd": REPRODUCED,
        "fig3.cifar10.jr_beats_wd": NOT_RUN,
        "fig3.mnist.jr_less_data_on_par": REPRODUCED,
        "book.projection_on_par_with_exact": REPRODUCED,
    }
    bad = _decided(*_planted(jr_minus_wd=-0.02, par_gap=-0.03, proj_gap=-0.03))
    assert bad["fig3.mnist.jr_beats_wd"] == NOT_REPRODUCED
    assert bad["fig3.mnist.jr_less_data_on_par"] == NOT_REPRODUCED
    assert bad["book.projection_on_par_with_exact"] == NOT_REPRODUCED


def test_a_tie_or_a_diverged_run_withholds_the_verdict():
    runs, proj = _planted(jr_minus_wd=0.02, par_gap=0.0, proj_gap=0.0)
    tied = runs.assign(chosen_by_tie=runs["arm"] == "jacobian")
    assert _decided(tied, proj)["fig3.mnist.jr_beats_wd"] == INCONCLUSIVE
    # a diverged JR run is counted as a failure at chance accuracy, never dropped
    jr = runs.index[runs["arm"] == "jacobian"][0]
    runs.loc[jr, ["status", "test_acc"]] = ["diverged", float("nan")]
    panel = fx.Panel("MNIST", "mnist", "MNIST", "")
    v = pipeline.decide_panel("fig3.mnist.jr_beats_wd", runs, profile="test", panel=panel)
    assert v.verdict != REPRODUCED and "1 diverged" in v.evidence


def test_stacked_grid_skips_configs_claimed_by_live_workers_and_stores_divergence(
    tmp_path, monkeypatch
):
    store = ResultStore(tmp_path)
    chosen = pd.DataFrame(
        [{"dataset": "digits", "regularizer": r, "depth": 2, "n_train": 100, "lam": 0.01}
         for r in fx.REGULARIZERS]
    )
    configs = fx.fig3_configs({**TINY_FC, "seeds": [0, 1, 2]}, "digits", chosen)
    busy = configs[0]
    held = store.claim(busy)  # a live worker (this process) holds it
    assert held is not None
    trained: list[int] = []

    def run_group(cfgs):
        trained.extend(c["seed"] for c in cfgs)
        return [DivergedError("loss became nan", epoch=0) if c["seed"] == 2 else {"test_acc": 0.5}
                for c in cfgs]

    left: list[dict] = []
    monkeypatch.setattr(pipeline, "run_grid", lambda cfgs, *a, **k: left.extend(
        c for c in cfgs if not store.has(c)))
    pipeline.run_grid_stacked(configs, fx.fig3_run, run_group, store, stack=True, progress=False)
    held.release()
    assert not store.has(busy) and left == [busy]  # left to its worker, waited for by run_grid
    assert len(trained) == len(configs) - 1
    statuses = {c["seed"]: store.record(c)["status"] for c in configs[3:]}
    assert statuses == {0: "ok", 1: "ok", 2: "diverged"}
    assert store.frame(fx.EXP_FIG3).pipe(split_ok)[1] == 4  # seed 2 of each of the 4 groups


# --- Fig. 3 draws what decided -----------------------------------------------------------------


def _paired_axes(fig):
    """The paired panels of a figure, in order, with their plotted estimates."""
    out = []
    for ax in fig.axes:
        for coll in ax.collections:
            if coll.get_gid() == "cell-estimates":
                out.append((ax, coll.get_offsets()[:, 1].data.copy()))
    return out


def test_fig3_paired_panel_draws_the_paired_means_the_verdict_uses():
    """Brute force with numpy/scipy on the planted frame (one JR run diverged: counted at chance
    accuracy 0.1, as the claim registers): the paired panel's dots are the per-cell means of
    JR - WD per seed in points, its bars the 95 % t-intervals, its tick labels the diverged
    counts; and the same numbers as the verdict's cells."""
    import matplotlib.pyplot as plt
    from scipy import stats as sps

    runs, proj = _planted(jr_minus_wd=0.02, par_gap=0.0, proj_gap=0.0, sd=0.004)
    bad = runs.index[(runs["arm"] == "jacobian") & (runs["depth"] == 3)
                     & (runs["n_train"] == 1000) & (runs["seed"] == 1)][0]
    runs.loc[bad, ["status", "test_acc"]] = ["diverged", float("nan")]
    panels = [fx.Panel("MNIST", "mnist", "MNIST", ""),
              fx.Panel("CIFAR-10", None, "CIFAR-10: not run", "not run: dataset absent")]
    fig = fx.fig3_figure(runs, panels, "profile=test")
    (ax, drawn), (ax_par, drawn_par) = _paired_axes(fig)

    acc = runs["test_acc"].to_numpy(dtype=float).copy()
    acc[runs["status"].to_numpy() != "ok"] = 0.1
    expect, bars, labels = [], [], []
    for depth in (2, 3, 4):
        for n in (400, 1000):
            at = (runs["depth"].to_numpy() == depth) & (runs["n_train"].to_numpy() == n)
            arm = runs["arm"].to_numpy()
            seeds = runs["seed"].to_numpy()
            d = np.array([
                acc[at & (arm == "jacobian") & (seeds == s)][0]
                - acc[at & (arm == "weight_decay") & (seeds == s)][0]
                for s in range(4)
            ]) * 100
            half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            expect.append(d.mean())
            bars.append((d.mean() - half, d.mean() + half))
            labels.append(f"n={n}\n{int(depth == 3 and n == 1000)} div.")
    np.testing.assert_allclose(drawn, expect, rtol=1e-9, atol=1e-9)
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    vertical = [  # the bars, in the cells' order
        line.get_ydata() for line in ax.get_lines()
        if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
    ]
    assert len(vertical) == len(bars)
    for i, (bar, (low, high)) in enumerate(zip(vertical, bars, strict=True)):
        if i == 3:  # (L=3, n=1000): the diverged run's bar is far wider: clipped, bound written
            assert bar[0] == ax.get_ylim()[0] and bar[1] < ax.get_ylim()[1]
            assert f"{low:.3g}" in [t.get_text() for t in ax.texts]
        else:
            np.testing.assert_allclose(sorted(bar), [low, high], rtol=1e-9)

    # the on-par panel: JR at 400 - WD at 1000, depth 4
    at4 = runs[runs["depth"] == 4]
    jr = at4[(at4["arm"] == "jacobian") & (at4["n_train"] == 400)].sort_values("seed")
    wd = at4[(at4["arm"] == "weight_decay") & (at4["n_train"] == 1000)].sort_values("seed")
    np.testing.assert_allclose(
        drawn_par, [100 * (jr["test_acc"].to_numpy() - wd["test_acc"].to_numpy()).mean()]
    )

    verdicts = {v.claim: v for v in fx.verdicts_from_runs(runs, proj, panels, "test")}
    np.testing.assert_allclose(
        drawn, [100 * c.estimate for c in verdicts["fig3.mnist.jr_beats_wd"].cells], rtol=1e-9
    )
    assert "CIFAR-10 not drawn" in " ".join(t.get_text() for t in fig.texts)
    plt.close(fig)
