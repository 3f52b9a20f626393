"""Gates and decide(): each gate forces 'inconclusive', the rule on synthetic paired runs whose
intervals are computed by hand, stand-ins labelled, selection seeds disjoint, and claims that a
chapter cannot alter."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from jacnb.lab import gates, stats
from jacnb.lab.claims import CLAIMS, Rule
from jacnb.lab.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED

FIG3 = "fig3.mnist.jr_beats_wd"
GOOD = {  # a run that passes every gate of the Fig. 3 claim
    "train_acc": 1.0,
    "steps": 1200,
    "lam": 0.1,
    "lam_grid": [0.01, 0.1, 1.0],
    "chosen_by_tie": False,
    "selection_seeds": [10_000, 10_001, 10_002],
    "selection_steps": 1200,
}
# per-seed JR - WD differences; mean 0.011, sd 0.001, half = 4.302653 * 0.001 / sqrt(3)
# = 0.0024841 -> [0.0085159, 0.0134841]: above 0 (claimed side)
CLEAR = (0.010, 0.012, 0.011)
# mean 0.0133333, sd 0.0057735 -> [-0.0010088, 0.0276755]: straddles 0; 4 seeds would decide
# (3.182 * 0.0057735 / 2 = 0.009186 < 0.013333; see test_stats)
WIDE = (0.01, 0.02, 0.01)


def fig3_runs(diffs=None, cells=((2, 1000), (2, 2500), (4, 1000), (4, 2500)), **override):
    """Tidy paired runs: WD at 0.90 + seed/1000, JR = WD + the cell's per-seed difference."""
    diffs = diffs or {}
    rows = []
    for depth, n in cells:
        for seed, d in enumerate(diffs.get((depth, n), CLEAR)):
            wd = 0.90 + seed / 1000
            for arm, acc in (("weight_decay", wd), ("jacobian", wd + d)):
                rows.append(
                    {
                        "depth": depth,
                        "n_train": n,
                        "seed": seed,
                        "arm": arm,
                        "test_acc": acc,
                        **GOOD,
                        **override,
                    }
                )
    return pd.DataFrame(rows)


def decide(claim, runs, **kw):
    return gates.decide(claim, runs, profile="cpu", dataset=kw.pop("dataset", "MNIST"), **kw)


# --- the rule -----------------------------------------------------------------------------------


def test_every_cell_on_the_claimed_side_is_reproduced():
    v = decide(FIG3, fig3_runs())
    assert v.verdict == REPRODUCED and v.reason == ""
    assert v.estimate == pytest.approx(0.011) and v.n_seeds == 3
    assert v.low == pytest.approx(0.0085159, abs=1e-6)
    assert v.high == pytest.approx(0.0134841, abs=1e-6)
    assert v.seeds_needed is None and v.dataset == "MNIST" and v.profile == "cpu"
    assert "depth=2, n_train=1000" in v.evidence


def test_one_cell_on_the_other_side_is_not_reproduced():
    # (4, 2500) has JR - WD = -0.011 +- ...; at the Bonferroni level over 4 cells (98.75 %,
    # t_{.99375,2} = 8.860) the half-width is 8.860 * 0.001 / 1.732 = 0.005115 -> high -0.005885
    v = decide(FIG3, fig3_runs({(4, 2500): (-0.010, -0.012, -0.011)}))
    assert v.verdict == NOT_REPRODUCED
    assert v.estimate == pytest.approx(-0.011)
    cells = gates.cell_table(FIG3, fig3_runs({(4, 2500): (-0.010, -0.012, -0.011)}))
    row = cells[cells["cell"] == "depth=4, n_train=2500"].iloc[0]
    assert row["refute_high"] == pytest.approx(-0.005885, abs=2e-6)


def test_a_straddling_cell_is_inconclusive_with_the_seeds_it_needs():
    v = decide(FIG3, fig3_runs({(2, 2500): WIDE}))
    assert v.verdict == INCONCLUSIVE
    assert v.seeds_needed == 4
    assert v.low == pytest.approx(-0.0010088, abs=1e-6)
    assert "4 seeds" in v.reason and "straddles" in v.reason


def test_refutation_needs_the_bonferroni_interval():
    # one cell at -0.005 +- small spread: the 95 % interval is below 0 but the 98.75 % one is not
    # d = (-0.003, -0.007, -0.005): mean -0.005, sd 0.002; 95 %: half 4.303*0.002/1.732 = 0.00497
    # -> high -0.00003 < 0; 98.75 %: half 8.860*0.002/1.732 = 0.01023 -> high +0.0052 > 0
    v = decide(FIG3, fig3_runs({(4, 2500): (-0.003, -0.007, -0.005)}))
    assert v.verdict == INCONCLUSIVE


def test_equivalence_claim():
    par = "fig3.mnist.jr_less_data_on_par"

    def runs(diffs, depth=4):
        rows = []
        for seed, d in enumerate(diffs):
            for arm, acc in (("wd_more_data", 0.98), ("jr_less_data", 0.98 + d)):
                rows.append({"depth": depth, "seed": seed, "arm": arm, "test_acc": acc, **GOOD})
        return pd.DataFrame(rows)

    # mean 0, sd 0.001 -> [-0.00248, 0.00248] inside +-0.005
    assert decide(par, runs((0.001, -0.001, 0.0))).verdict == REPRODUCED
    # mean 0.02, sd 0.001 -> [0.0175, 0.0225] entirely above +0.005
    assert decide(par, runs((0.02, 0.021, 0.019))).verdict == NOT_REPRODUCED
    # mean 0.004, sd 0.001 -> [0.0015, 0.0065] straddles +0.005; distance 0.001 = one sd:
    # 80 % power needs 10 seeds (noncentral t; tests/lab/test_stats.py); the 50 % rule said 7
    v = decide(par, runs((0.003, 0.005, 0.004)))
    assert v.verdict == INCONCLUSIVE and v.seeds_needed == 10
    # the claim covers depth 4 only: runs at depth 3 are not its cells
    v = decide(par, runs((0.0, 0.0, 0.0), depth=3))
    assert v.verdict == NOT_RUN


def test_trend_claim_uses_per_seed_slopes():
    claim = "fig4.test_acc_grows_with_depth"
    rows = []
    for k in (1, 2):
        for seed, b in enumerate((0.010, 0.012, 0.011)):  # per-seed slope over depth
            for depth in (2, 3, 4, 5):
                rows.append(
                    {
                        "depth": depth,
                        "width_factor": k,
                        "seed": seed,
                        "test_acc": 0.9 + b * depth,
                        "train_acc": 1.0,
                        "steps": 800,
                    }
                )
    v = decide(claim, pd.DataFrame(rows))
    # slopes exactly 0.010, 0.012, 0.011 -> mean 0.011, [0.0085159, 0.0134841]
    assert v.verdict == REPRODUCED
    assert v.estimate == pytest.approx(0.011) and v.low == pytest.approx(0.0085159, abs=1e-6)
    falls = "fig4.max_jacobian_train_falls_with_depth"
    df = pd.DataFrame(rows).rename(columns={"test_acc": "max_J_train"})
    assert decide(falls, df).verdict == NOT_REPRODUCED


def test_value_claim_with_the_papers_exception_cell():
    claim = "fig4.train_acc_100"

    def runs(small_net):
        rows = []
        for depth, k in ((2, 1), (2, 2), (3, 1)):
            accs = small_net if (depth, k) == (2, 1) else (1.0, 1.0, 1.0)
            for seed, a in enumerate(accs):
                rows.append(
                    {"depth": depth, "width_factor": k, "seed": seed, "train_acc": a, "steps": 800}
                )
        return pd.DataFrame(rows)

    # (0.9975, 0.998, 0.9985): mean 0.998, sd 0.0005 -> [0.99676, 0.99924]: above the
    # exception's 0.995, so reproduced; the same values in another cell would straddle 0.999
    assert decide(claim, runs((0.9975, 0.998, 0.9985))).verdict == REPRODUCED
    df = runs((1.0, 1.0, 1.0))
    df.loc[(df["depth"] == 3), "train_acc"] = (0.9975, 0.998, 0.9985)
    assert decide(claim, df).verdict == INCONCLUSIVE
    # 99.0 %: below the paper's 99.6 % exception, decisively
    assert decide(claim, runs((0.990, 0.991, 0.989))).verdict == NOT_REPRODUCED


def test_log_ratio_claim_reports_the_geometric_mean_ratio():
    # exact / none = 5, 10, 20: mean log = (ln 5 + ln 10 + ln 20) / 3 = ln 1000 / 3 = ln 10
    # sd of logs = ln 2 = 0.693147; half = 4.302653 * 0.693147 / sqrt(3) = 1.721900
    # -> ratio in [10 / e^1.7219, 10 * e^1.7219] = [1.7872, 55.953]
    rows = []
    for seed, r in enumerate((5.0, 10.0, 20.0)):
        for arm, t in (("none", 0.01), ("exact", 0.01 * r)):
            rows.append(
                {"net": "mnist_convnet", "seed": seed, "arm": arm, "sec_per_step": t, "steps": 50}
            )
    v = decide("table6.exact_adds_cost", pd.DataFrame(rows))
    assert v.verdict == REPRODUCED
    assert v.estimate == pytest.approx(10.0)
    assert v.low == pytest.approx(1.7872, abs=1e-3) and v.high == pytest.approx(55.953, abs=1e-2)
    assert (
        decide(
            "table6.per_layer_cheaper", pd.DataFrame(rows).replace({"arm": {"none": "per_layer"}})
        ).verdict
        == REPRODUCED
    )


def test_gain_contrast_claim():
    # per seed: gain(1000) = 0.020 + e, gain(5000) = 0.006, gain(20000) = 0.004
    # contrasts at 5000: 0.014 + e, at 20000: 0.016 + e, e in (0, 0.002, -0.002) -> sd 0.002
    rows = []
    for seed, e in enumerate((0.0, 0.002, -0.002)):
        for n, g in ((1000, 0.020 + e), (5000, 0.006), (20000, 0.004)):
            for arm, acc in (("weight_decay", 0.95), ("jacobian", 0.95 + g)):
                rows.append({"n_train": n, "seed": seed, "arm": arm, "test_acc": acc, **GOOD})
    claim = "table2.mnist.gain_largest_at_smallest"
    cells = gates.cell_table(claim, pd.DataFrame(rows))
    assert list(cells["n_train"]) == [5000, 20000]
    assert list(cells["estimate"]) == pytest.approx([0.014, 0.016])
    assert decide(claim, pd.DataFrame(rows)).verdict == REPRODUCED


# --- the gates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "gate", "words"),
    [
        ({"train_acc": 0.985}, "regime", "below 99.0 %"),
        ({"train_acc": float("nan")}, "regime", "below"),
        ({"lam": 1.0}, "factor", "edge"),
        ({"lam": 0.01}, "factor", "edge"),
        ({"lam": 0.3}, "factor", "not in its grid"),
        ({"lam_grid": [0.1, 1.0]}, "factor", "no interior"),
        ({"lam_grid": None}, "factor", "no lambda grid"),
        ({"chosen_by_tie": True}, "factor", "tie"),
        ({"selection_seeds": [0, 10_001]}, "factor", "are final seeds"),
        ({"selection_seeds": []}, "factor", "not recorded"),
        ({"selection_steps": 150}, "factor", "selection runs of 150 steps"),
        ({"steps": 320}, "budget", "fewer than 400 steps"),
    ],
)
def test_each_gate_forces_inconclusive(change, gate, words):
    runs = fig3_runs()
    assert decide(FIG3, runs).verdict == REPRODUCED
    # the change hits one run only (one arm of one seed of one cell); the regime gate reads the
    # baseline arm (weight decay), the factor gate the tuned arms
    arm = "weight_decay" if gate == "regime" else "jacobian"
    idx = runs.index[(runs["depth"] == 4) & (runs["seed"] == 1) & (runs["arm"] == arm)]
    for col, value in change.items():
        runs[col] = runs[col].astype(object)
        runs.at[idx[0], col] = value
    v = decide(FIG3, runs)
    assert v.verdict == INCONCLUSIVE
    assert f"gate {gate}:" in v.reason and words in v.reason, v.reason
    assert v.estimate is not None  # the numbers are still shown


def test_the_regime_gate_asks_the_baseline_arm_to_fit_not_the_regularized_one():
    """A JR net held below the fit by its regularizer is a result; an unfit baseline means the
    budget was short. (Planted: the old rule, every compared net, withholds the first case.)"""
    runs = fig3_runs()
    runs.loc[runs["arm"] == "jacobian", "train_acc"] = 0.97
    v = decide(FIG3, runs)
    assert v.verdict == REPRODUCED and "regime" not in v.reason
    assert "arm weight_decay" in gates.regime_gate(FIG3, runs).detail
    runs = fig3_runs()
    runs.loc[runs["arm"] == "weight_decay", "train_acc"] = 0.97
    v = decide(FIG3, runs)
    assert v.verdict == INCONCLUSIVE and "gate regime" in v.reason
    assert gates.fit_arms(FIG3) == ("weight_decay",)
    assert gates.fit_arms("fig4.score_grows_with_depth") == ()  # unpaired: every net


def test_a_grid_that_starts_at_zero_has_no_edge_below_it():
    # weight decay 0 (no decay) chosen from a grid starting at 0: nothing lies below, so it is
    # bracketed like an interior factor; the top edge and a non-zero bottom edge stay edges
    assert gates.edge_reason(0.0, [0.0, 1e-4, 1e-3]) == ""
    assert "edge" in gates.edge_reason(1e-5, [1e-5, 1e-4, 1e-3])
    assert "edge" in gates.edge_reason(1e-3, [0.0, 1e-4, 1e-3])
    assert "no interior" in gates.edge_reason(0.0, [0.0, 1e-4])
    runs = fig3_runs()
    wd = runs["arm"] == "weight_decay"
    runs["lam"] = runs["lam"].astype(float)
    runs["lam_grid"] = runs["lam_grid"].astype(object)
    runs.loc[wd, "lam"] = 0.0
    runs.loc[wd, "lam_grid"] = pd.Series([[0.0, 0.01, 0.1]] * int(wd.sum()), index=runs.index[wd])
    assert decide(FIG3, runs).verdict == REPRODUCED
    runs.loc[wd, "lam_grid"] = pd.Series([[1e-5, 0.01, 0.1]] * int(wd.sum()), index=runs.index[wd])
    runs.loc[wd, "lam"] = 1e-5
    v = decide(FIG3, runs)
    assert v.verdict == INCONCLUSIVE and "edge" in v.reason


def test_too_few_seeds_is_inconclusive():
    runs = fig3_runs()
    runs = runs[runs["seed"] < 2]
    v = decide(FIG3, runs)
    assert v.verdict == INCONCLUSIVE and "gate seeds:" in v.reason
    # an unpaired seed does not count: drop the JR run of seed 2 in one cell
    runs = fig3_runs()
    drop = (runs["depth"] == 2) & (runs["n_train"] == 1000) & (runs["seed"] == 2)
    v = decide(FIG3, runs[~(drop & (runs["arm"] == "jacobian"))])
    assert v.verdict == INCONCLUSIVE and "gate seeds:" in v.reason
    assert "unpaired" in v.evidence


def test_gates_that_do_not_apply_pass():
    # Table V: no fit gate (the paper's JR net trains to 59.52 %), factor fixed by the paper
    rows = []
    for seed, d in enumerate((-0.30, -0.32, -0.31)):
        for arm, gap in (("none", 0.60), ("jacobian", 0.60 + d)):
            rows.append(
                {"augmentation": False, "seed": seed, "arm": arm, "gap": gap, "steps": 5000}
            )
    v = decide("table5.jr_smaller_ge_without_aug", pd.DataFrame(rows), dataset="ImageNet")
    assert v.verdict == REPRODUCED
    results = gates.check_gates("table5.jr_smaller_ge_without_aug", pd.DataFrame(rows))
    assert [g.name for g in results] == ["regime", "factor", "budget", "seeds", "divergence"]
    assert all(g.passed for g in results)
    assert "not applicable" in results[0].detail and "not applicable" in results[1].detail


def test_stand_in_is_named_and_flagged():
    v = decide("fig3.cifar10.jr_beats_wd", fig3_runs(), dataset="Fashion-MNIST", stand_in=True)
    assert v.verdict == REPRODUCED
    assert v.dataset == "Fashion-MNIST (stand-in for CIFAR-10)"
    assert gates.is_stand_in(v.dataset) and not gates.is_stand_in("CIFAR-10")
    assert "counted apart" in v.reason


def test_no_runs_is_not_run():
    v = decide(FIG3, fig3_runs().iloc[0:0])
    assert v.verdict == NOT_RUN
    v = gates.not_run(FIG3, "dataset absent: mnist", profile="paper")
    assert v.verdict == NOT_RUN and v.reason == "dataset absent: mnist" and v.claim == FIG3


# --- claims cannot be altered or invented -------------------------------------------------------


def test_decide_refuses_altered_or_unregistered_claims():
    claim = CLAIMS[FIG3]
    assert decide(claim, fig3_runs()).verdict == REPRODUCED  # the registered object is fine
    lenient = dataclasses.replace(claim, rule=Rule("greater", "anything goes", threshold=-1.0))
    with pytest.raises(ValueError, match="not the registered one"):
        decide(lenient, fig3_runs())
    with pytest.raises(KeyError, match="unregistered"):
        decide("fig3.mnist.jr_beats_everything", fig3_runs())


def test_bad_frames_raise():
    with pytest.raises(ValueError, match="lacks columns"):
        decide(FIG3, fig3_runs().drop(columns=["n_train"]))
    with pytest.raises(ValueError, match="lacks columns"):
        decide(FIG3, fig3_runs().drop(columns=["train_acc"]))
    doubled = pd.concat([fig3_runs(), fig3_runs().iloc[:1]])
    with pytest.raises(ValueError, match="several runs"):
        decide(FIG3, doubled)
    # other arms in the frame are ignored
    extra = fig3_runs().assign(arm=lambda d: d["arm"].replace({"weight_decay": "none"}))
    both = pd.concat([fig3_runs(), extra[extra["arm"] == "none"]])
    assert decide(FIG3, both).verdict == REPRODUCED


# --- selection seeds ----------------------------------------------------------------------------


def test_selection_seeds_are_disjoint_from_final_seeds():
    final = [0, 1, 2]
    sel = gates.selection_seeds(final)
    assert sel == (10_000, 10_001, 10_002)
    assert not set(sel) & set(final)
    assert gates.selection_seeds(final, n=5) == tuple(range(10_000, 10_005))
    gates.check_disjoint(sel, final)
    with pytest.raises(ValueError, match="share seeds"):
        gates.check_disjoint([1, 10_000], final)
    with pytest.raises(ValueError):
        gates.selection_seeds([10_001])  # a final seed inside the selection range


def test_cell_table_columns():
    cells = gates.cell_table(FIG3, fig3_runs({(2, 2500): WIDE}))
    assert len(cells) == 4 and set(cells["outcome"]) == {stats.CLAIMED, stats.STRADDLES}
    assert cells.attrs["refute_level"] == pytest.approx(1 - 0.05 / 4)
    assert all(math.isfinite(x) for x in cells["low"])


def test_required_columns_are_exactly_what_decide_reads():
    from jacnb.lab.claims import REGISTRY

    cols = gates.required_columns(FIG3)
    assert set(cols) == {
        "seed",
        "depth",
        "n_train",
        "arm",
        "test_acc",
        "train_acc",
        "steps",
        "lam",
        "lam_grid",
        "chosen_by_tie",
        "selection_seeds",
        "selection_steps",
    }
    assert gates.required_columns("table6.exact_adds_cost") == (
        "seed",
        "net",
        "arm",
        "sec_per_step",
        "steps",
    )
    runs = fig3_runs()
    assert decide(FIG3, runs[list(cols)]).verdict == REPRODUCED
    for col in cols:  # and each of them is needed
        with pytest.raises(ValueError, match="lacks columns"):
            decide(FIG3, runs[[c for c in cols if c != col]])
    for c in REGISTRY:
        assert gates.required_columns(c.id)[0] == "seed"


# --- no survivorship: diverged runs are counted ------------------------------------------------


def _diverge(runs, arm, depth=4, n=2500, seed=1):
    runs = runs.assign(status="ok")
    hit = (runs["depth"] == depth) & (runs["n_train"] == n) & (runs["seed"] == seed)
    hit &= runs["arm"] == arm
    runs.loc[hit, ["status", "test_acc", "train_acc", "steps"]] = ["diverged", np.nan, np.nan, 37]
    return runs


def test_a_diverged_treatment_run_counts_as_a_failure_at_chance():
    """Planted survivorship: dropping the diverged JR run leaves 2 good seeds per cell there;
    counting it at chance (0.1) sinks the cell. Every cell shows its diverged count."""
    runs = _diverge(fig3_runs(), "jacobian")
    v = decide(FIG3, runs)
    assert v.verdict != REPRODUCED, v.evidence
    assert "gate divergence" not in v.reason  # registered as a failure at chance: counted
    assert "depth=4, n_train=2500: " in v.evidence and "n=3, 1 diverged" in v.evidence
    cells = gates.cell_table(FIG3, runs).set_index("cell")
    assert cells.loc["depth=4, n_train=2500", "diverged"] == 1
    assert cells.loc["depth=4, n_train=2500", "estimate"] < -0.2  # (0.1 - 0.901) / 3
    assert cells["diverged"].sum() == 1 and cells.loc["depth=2, n_train=1000", "diverged"] == 0
    assert {c.cell: c.diverged for c in v.cells}["depth=4, n_train=2500"] == 1
    gate = gates.diverged_gate(FIG3, runs)
    assert gate.passed and "counted as failures of their arm at test_acc = 0.1" in gate.detail
    # dropping it instead keeps only the survivors' favourable differences: the old bug
    survivors = gates.cell_table(FIG3, runs[runs["status"] == "ok"]).set_index("cell")
    assert survivors.loc["depth=4, n_train=2500", "estimate"] > 0


def test_a_diverged_baseline_run_fails_the_regime_gate():
    v = decide(FIG3, _diverge(fig3_runs(), "weight_decay"))
    assert v.verdict == INCONCLUSIVE and "gate regime" in v.reason


def test_a_claim_without_a_chance_value_withholds_cells_with_diverged_runs():
    claim = "fig4.test_acc_grows_with_depth"
    rows = []
    for k in (1, 2):
        for seed in range(3):
            for depth in (2, 3, 4):
                rows.append({"depth": depth, "width_factor": k, "seed": seed, "steps": 800,
                             "train_acc": 1.0, "test_acc": 0.9 + 0.01 * depth, "status": "ok"})
    df = pd.DataFrame(rows)
    assert decide(claim, df).verdict == REPRODUCED
    df.loc[0, ["status", "test_acc", "train_acc"]] = ["diverged", np.nan, 1.0]
    v = decide(claim, df)
    assert v.verdict == INCONCLUSIVE and "gate divergence" in v.reason
    assert "1/18 runs diverged" in v.reason and "leaves its cell undecided" in v.reason
