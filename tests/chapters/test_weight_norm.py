"""The weight-normalization chapter (Sec. VI-A2, Fig. 4): eq. (45) layers, the recorded
quantities, stacked seeds, and the verdict path through jacnb.lab.gates.decide."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from jacnb.chapters import weight_norm as wn
from jacnb.core import bounds
from jacnb.core.models import WeightNormLinear, fully_connected
from jacnb.lab import gates
from jacnb.lab.claims import CLAIMS, claims_of
from jacnb.lab.datasets import Panel
from jacnb.lab.store import ResultStore
from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

TINY = {
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


def test_fig4_run_records_every_quantity(tmp_path):
    frame = wn.run_fig4(TINY, "digits", ResultStore(tmp_path))
    r = frame.iloc[0]
    assert r["width"] == 64 and r["min_score_printed"] == pytest.approx(2 * r["min_score"])
    assert r["frobenius"] == pytest.approx([8.0, math.sqrt(10)])
    assert r["prod_spectral"] <= r["prod_frobenius"]
    assert r["max_J_train"] > 0 and r["max_J_test"] > 0 and r["n_margin"] == 4
    assert r["steps"] == 2 and r["status"] == "ok"
    assert set(wn.FIG4_METRICS) <= set(frame.columns)


def test_stacked_fig4_matches_separate_runs(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = {**TINY, "seeds": [0, 1], "epochs": 2}
        sep, stk = ResultStore(tmp_path / "sep"), ResultStore(tmp_path / "stk")
        wn.run_fig4({**settings, "stack_seeds": False}, "digits", sep)
        wn.run_fig4({**settings, "stack_seeds": True}, "digits", stk)
    finally:
        torch.set_num_threads(threads)
    configs = wn.fig4_configs(settings, "digits")
    assert len(stk.records(wn.EXP_FIG4)) == 2
    for c in configs:
        a, b = stk.get(c), sep.get(c)
        assert list(a) == list(b)
        for key in ("train_acc", "test_acc", "min_score", "max_J_train"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), key


# --- the chapter interface and its one verdict path ------------------------------------------


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory):
    return wn.run("smoke", store=ResultStore(tmp_path_factory.mktemp("wn-smoke")))


def test_smoke_gives_no_decided_verdict_and_one_per_claim(smoke_result):
    verdicts = smoke_result.verdicts()
    assert [v.claim for v in verdicts] == [c.id for c in claims_of(wn.NAME)]
    assert {v.verdict for v in verdicts} <= {INCONCLUSIVE, NOT_RUN}, verdicts
    assert all("stand-in" in v.dataset for v in verdicts)  # digits stand in for MNIST
    assert smoke_result.paper_table().index.tolist() == [v.claim for v in verdicts]


def test_runs_frame_has_the_columns_the_gates_read(smoke_result):
    runs = smoke_result.frames()["runs"]
    for claim in claims_of(wn.NAME):
        assert set(gates.required_columns(claim)) <= set(runs.columns), claim.id


def _planted(
    sign: int = 1, train_acc: float = 1.0, spectral: float = 1.2, frobenius: float = 28.0
) -> pd.DataFrame:
    """Runs with every Fig. 4 trend planted in the paper's direction (``sign=1``) or reversed."""
    rng = np.random.default_rng(0)
    rows = []
    for depth in (2, 3, 4, 5):
        for k in (1, 2, 3):
            for seed in range(4):
                e = 0.001 * rng.standard_normal()
                rows.append({
                    "depth": depth, "width_factor": k, "width": 784 * k, "seed": seed,
                    "status": "ok", "steps": 500, "train_acc": train_acc,
                    "test_acc": 0.9 + sign * (0.01 * depth + 0.005 * k) + e,
                    "min_score": 0.3 + sign * (0.05 * depth + 0.02 * k) + e,
                    "max_J_train": 2.0 - sign * (0.2 * depth + 0.1 * k) + e,
                    "max_J_test": 2.0 + sign * 0.3 * depth + e,
                    "min_spectral": spectral + abs(e),
                    "min_score_printed": 1.35 + sign * 0.01 * depth + e,
                    "spectral": [spectral + abs(e), 1.5],
                    "frobenius": [frobenius, 3.5],
                })
    return pd.DataFrame(rows)


def _decided(runs: pd.DataFrame) -> dict[str, str]:
    panel = Panel("MNIST", "mnist", "MNIST", "")
    return {v.claim: v.verdict for v in wn.verdicts_from_runs(runs, panel, "test")}


def test_planted_effects_are_reproduced_and_reversed_ones_are_not():
    ok = _decided(_planted())
    assert set(ok.values()) == {REPRODUCED}, ok
    bad = _decided(_planted(sign=-1))
    trends = [c.id for c in claims_of(wn.NAME) if c.statistic.kind == "slope"]
    assert len(trends) == 7 and all(bad[c] == NOT_REPRODUCED for c in trends), bad
    low = _decided(_planted(train_acc=0.95, spectral=0.9))
    assert low["fig4.train_acc_100"] == NOT_REPRODUCED
    assert low["fig4.spectral_norms_above_one"] == INCONCLUSIVE  # the fit gate fails first
    assert _decided(_planted(spectral=0.9))["fig4.spectral_norms_above_one"] == NOT_REPRODUCED
    # rows aligned: ||W||_2 close to ||W||_F in the first layer
    aligned = _decided(_planted(spectral=1.2, frobenius=1.3))
    assert aligned["fig4.spectral_much_below_frobenius"] == NOT_REPRODUCED


def test_score_claims_need_every_net_at_100_percent():
    """One net short of 100 % training accuracy withholds the smallest-score claims (their
    regime gate), not the others (99 % suffices there)."""
    runs = _planted()
    short = (runs["width_factor"] == 1) & (runs["seed"] == 0) & runs["depth"].isin([2, 3])
    runs.loc[short, "train_acc"] = 0.998
    panel = Panel("MNIST", "mnist", "MNIST", "")
    got = {v.claim: v for v in wn.verdicts_from_runs(runs, panel, "test")}
    for cid, v in got.items():
        if CLAIMS[cid].statistic.metric.startswith("min_score"):
            assert v.verdict == INCONCLUSIVE and "gate regime" in v.reason, (cid, v.reason)
        elif cid != "fig4.train_acc_100":
            assert v.verdict == REPRODUCED, (cid, v.reason)


def test_absent_dataset_is_not_run():
    panel = Panel("MNIST", None, "MNIST: not run", "not run: dataset absent (mnist)")
    verdicts = wn.verdicts_from_runs(pd.DataFrame(), panel, "paper")
    assert {v.verdict for v in verdicts} == {NOT_RUN}


# --- the figures draw what decided --------------------------------------------------------------


def _drawn(fig) -> dict[str, np.ndarray]:
    """Per claim panel (its title's last line is the claim id): the plotted estimates."""
    out = {}
    for ax in fig.axes:
        for coll in ax.collections:
            if coll.get_gid() == "cell-estimates":
                out[ax.get_title().splitlines()[-1]] = coll.get_offsets()[:, 1].data.copy()
    return out


def test_trend_figure_draws_the_per_seed_slopes_the_verdicts_use():
    """Brute force with numpy: per width and seed the least-squares slope of test accuracy
    against depth (a diverged run's point left out), its mean over seeds in points per layer;
    every trend panel equals its verdict's cells; one panel per trend claim, tick labels count
    the diverged runs."""
    import matplotlib.pyplot as plt

    runs = _planted()
    bad = (runs["depth"] == 4) & (runs["width_factor"] == 2) & (runs["seed"] == 1)
    runs.loc[bad, "status"] = "diverged"
    result = wn.WeightNormResult("test", {"depths": [2, 3, 4, 5], "width_factors": [1, 2, 3],
                                          "batch_size": 64, "lr": 0.1, "profile": "test",
                                          "seeds": [0, 1, 2, 3]},
                                 Panel("MNIST", "mnist", "MNIST", ""), runs)
    fig = result.trends_figure()
    drawn = _drawn(fig)
    trends = [c.id for c in claims_of(wn.NAME) if c.statistic.kind == "slope"]
    assert sorted(drawn) == sorted(trends)

    expect = []
    for k in (1, 2, 3):
        slopes = []
        for seed in range(4):
            at = runs[(runs["width_factor"] == k) & (runs["seed"] == seed)
                      & (runs["status"] == "ok")]
            slopes.append(np.polyfit(at["depth"].to_numpy(float), at["test_acc"].to_numpy(), 1)[0])
        expect.append(100 * np.mean(slopes))
    np.testing.assert_allclose(drawn["fig4.test_acc_grows_with_depth"], expect, rtol=1e-9)

    verdicts = {v.claim: v for v in result.verdicts()}
    for cid in trends:
        scale = CLAIMS[cid].statistic.scale
        np.testing.assert_allclose(
            drawn[cid], [scale * c.estimate for c in verdicts[cid].cells], rtol=1e-9
        )
    ax = next(a for a in fig.axes if a.get_title().endswith("fig4.test_acc_grows_with_depth"))
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "M=1x\n0 div.", "M=2x\n1 div.", "M=3x\n0 div."
    ]
    plt.close(fig)

    values = result.values_figure()
    assert sorted(_drawn(values)) == sorted(
        c.id for c in claims_of(wn.NAME) if c.statistic.kind == "value"
    )
    plt.close(values)
