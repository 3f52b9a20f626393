"""Experiments of the fully connected chapter (Sokolic et al. 2017, Sec. VI-A1, Fig. 3).

Notebook: ``notebooks/02_fully_connected.ipynb``
(``from jacnb.chapters import fully_connected as chapter``).

Fully connected ReLU nets with L = 2, 3, 4 weight layers, hidden width equal to the input
dimension, softmax output and cross-entropy, trained with weight decay (``sum_l ||W_l||_F^2``)
or with the Jacobian regularizer ``R_F`` (eq. 49). The factors are chosen on a separate
validation set of training samples (:func:`selection_data`, :func:`choose_lambdas`) in selection
runs whose seeds are disjoint from the final runs' (:func:`jacnb.lab.gates.selection_seeds`),
never on test data; the final runs repeat
the chosen factor over seeds (a seed fixes the draw of the training set and the initialization).
One more cell trains the projection estimate of ``R_F`` beside the exact ``R_F`` at the same
factor (the book's claim ``book.projection_on_par_with_exact``).

Interface: :data:`NAME`, :class:`Settings` (:data:`OVERRIDES`), :func:`settings`, :func:`configs`,
:func:`run` -> :class:`FullyConnectedResult` with ``frames()``, ``figure()`` (Fig. 3 and, under
it, the paired per-seed differences its verdicts are decided on), ``paper_table()`` and
``verdicts()`` (every registered claim of the page through :func:`jacnb.lab.gates.decide`, on the
runs :func:`claim_runs` gives each claim).
The shared steps -- selection data, the factor at a final run's size, grids (stacked or not)
through the store, run status, verdicts -- are :mod:`jacnb.lab.pipeline`'s and
:mod:`jacnb.lab.records`'; the net and its cost arithmetic :mod:`jacnb.lab.fc_nets`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from jacnb.chapters import _fc_plots
from jacnb.core.data import Dataset, balanced_subset
from jacnb.core.models import fully_connected
from jacnb.core.regularizers import make_regularizer, regularizer_from_config
from jacnb.core.stacked import train_stacked_by_size
from jacnb.core.train import TRAIN_KEYS, pick_device, train, train_config
from jacnb.lab import gates
from jacnb.lab import settings as lab_settings
from jacnb.lab.claims import Claim, get_claim
from jacnb.lab.datasets import Panel, get_dataset, plan_panels
from jacnb.lab.dryrun import DryConfig
from jacnb.lab.fc_nets import build_fc, dry_config, input_dim, project_gpu_hours
from jacnb.lab.pipeline import (
    assemble_verdicts,
    choice_provenance,
    claims_table,
    decide_panel,
    nearest_choice,
    run_grid_stacked,
    selection_split,
    sgd_steps,
    stack_seeds,
    validation_keys,
)
from jacnb.lab.records import diverged_record, is_ok, run_or_diverged, split_ok
from jacnb.lab.selection import VAL_METRICS
from jacnb.lab.selection import choose_lambdas as choose
from jacnb.lab.settings import ABSENT
from jacnb.lab.store import FRACTION, ResultSchema, ResultStore, run_grid
from jacnb.lab.tables import factor_list
from jacnb.lab.timing import regularizer_steps, time_interleaved
from jacnb.lab.verdicts import REPRODUCED, Verdict

NAME = "02_fully_connected"

EXP_SELECT = "fc-jr-vs-wd-select"
EXP_FIG3 = "fc-jr-vs-wd"

#: Regularizer names of Fig. 3 and their legend labels.
REGULARIZERS = {"jacobian": "Jacobian reg.", "weight_decay": "weight decay"}

#: The claims of this page and the paper dataset each is about.
CLAIM_BEATS = {"MNIST": "fig3.mnist.jr_beats_wd", "CIFAR-10": "fig3.cifar10.jr_beats_wd"}
CLAIM_PAR = "fig3.mnist.jr_less_data_on_par"
CLAIM_PROJ = "book.projection_on_par_with_exact"


# ---------------------------------------------------------------------------------------------
# Settings and shared helpers
# ---------------------------------------------------------------------------------------------


def _panels(mnist: str) -> tuple[dict[str, Any], ...]:
    return (
        {"paper": "MNIST", "candidates": [mnist]},
        {"paper": "CIFAR-10", "candidates": ["cifar10"]},
    )


@dataclass(frozen=True)
class Settings:
    """Fig. 3 at the ``cpu`` profile (:data:`OVERRIDES`: the other profiles' changes).

    Selection seeds: ``n_select_seeds`` seeds from :func:`jacnb.lab.gates.selection_seeds`,
    disjoint from the final ``seeds``. ``projection_cell``: the ``(depth, n_train)`` cell where
    the projection ``R_F`` is trained beside the exact one at the same factor (absent: not run).
    A selection run fits on the seed's balanced draw of ``n_train`` (what a final run of that
    seed draws) and validates on ``n_val`` further samples of the training pool;
    ``val_fraction`` (a held-out fraction of the ``n_train`` drawn) only where the pool has no
    balanced draw of ``n_train + n_val`` (paper: CIFAR-10 / MNIST at 50000).

    Measured at ``cpu`` with a 25 % split of 400 (100 samples): 1-point steps, ties, weight decay
    at the grid's lower edge 1e-4. With 2,000 validation samples decays 1e-5 and 1e-4 still
    changed no validation prediction, so the weight-decay grids start at 0 (no decay), a lower
    edge with nothing below it (:func:`jacnb.lab.gates.edge_reason`), and ties are broken by
    validation cross-entropy (:mod:`jacnb.lab.selection`). ``cpu``: 30 epochs, lr /10 at 12 and
    24, batch 20 so that every run, selection runs included, has >= 400 SGD steps (400 fitted
    samples: 20 x 30 = 600); lr 0.02: measured at 0.05, 12 of 18 final JR runs (chosen factor 1)
    and 2 selection runs diverged; none at 0.02. One selection seed per factor, as at ``paper``
    (``cpu`` had two until its runs were cut to the book's 45-minute budget; the protocol page's
    log says when and why).
    """

    width_factor: int = 1
    momentum: float = 0.9
    n_proj: int = 1
    datasets: tuple[str, ...] = ("mnist-10k", "cifar10")
    panels: tuple[dict[str, Any], ...] = _panels("mnist-10k")
    n_train: tuple[int, ...] = (400, 1000)
    depths: tuple[int, ...] = (2, 3, 4)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 30
    lr: float = 0.02
    lr_drop_every: int = 12
    batch_size: int = 20
    lambdas: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "weight_decay": (0.0, 0.0001, 0.001, 0.01, 0.1),
            "jacobian": (0.001, 0.01, 0.1, 1.0, 10.0, 100.0),
        }
    )
    select_n_train: tuple[int, ...] | None = (400,)
    n_select_seeds: int = 1
    n_val: int = 2000
    val_fraction: float = 0.25
    jr_method: str = "projection"
    projection_cell: Any = field(default_factory=lambda: {"depth": 2, "n_train": 400})
    stack_seeds: bool | str = False


OVERRIDES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        datasets=("digits", "cifar10"),
        panels=_panels("digits"),
        n_train=(300, 600),
        depths=(2, 3),
        seeds=(0, 1),
        epochs=3,
        lr=0.05,
        lr_drop_every=2,
        batch_size=128,
        lambdas={"weight_decay": (0.0001, 0.01), "jacobian": (0.01, 1.0)},
        select_n_train=(300,),
        n_val=200,
        val_fraction=0.2,
        projection_cell={"depth": 2, "n_train": 300},
    ),
    "paper": dict(
        datasets=("mnist", "cifar10"),
        panels=_panels("mnist"),
        n_train=(5000, 20000, 50000),
        seeds=(0, 1, 2, 3, 4),
        epochs=120,
        lr=0.01,
        lr_drop_every=40,
        batch_size=128,
        lambdas={"weight_decay": (0.0, 1e-05, 0.0001, 0.001, 0.01),
                 "jacobian": (0.01, 0.1, 1.0, 10.0)},
        select_n_train=None,
        n_val=5000,
        val_fraction=0.2,
        jr_method="exact",
        projection_cell=ABSENT,
        stack_seeds="auto",
    ),
}


def settings(profile: str = "cpu") -> dict[str, Any]:
    """The chapter's settings at ``profile`` (:func:`jacnb.lab.settings.resolve`), with the
    selection seeds derived from the final seeds: ``n_select_seeds`` seeds from
    :func:`jacnb.lab.gates.selection_seeds` (disjoint from ``seeds``)."""
    s = lab_settings.resolve(Settings(), OVERRIDES, profile)
    s["select_seeds"] = list(gates.selection_seeds(s["seeds"], s.get("n_select_seeds")))
    return s


# ---------------------------------------------------------------------------------------------
# Validation-based choice of the regularization factor
# ---------------------------------------------------------------------------------------------


def _fig3_base(s: Mapping[str, Any], ds: Dataset) -> dict[str, Any]:
    width = int(round(s.get("width_factor", 1) * input_dim(ds)))
    return {
        "profile": s["profile"],
        "dataset": ds.name,
        "width": width,
        "jr_method": s["jr_method"],
        "n_proj": s["n_proj"],
        **{k: s[k] for k in TRAIN_KEYS},
    }


#: What every finished Fig. 3 run reports (a stored record without it is quarantined and
#: recomputed, never shown).
FINAL = ResultSchema({"test_acc": FRACTION, "train_acc": FRACTION})


def select_configs(s: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Configs of the factor-selection runs: every ``(regularizer, depth, n_train, lam, seed)``
    with ``n_train`` in ``s["select_n_train"]`` (``None``: every training-set size) and ``seed``
    in ``s["select_seeds"]`` (disjoint from the final seeds, see :func:`settings`).

    With ``s["n_val"]`` (and a training pool large enough, see
    :func:`jacnb.lab.pipeline.validation_keys`) each run fits on the seed's class-balanced draw
    of ``n_train`` samples (as a final run of that seed would draw it) and validates on
    ``n_val`` further training samples (:func:`selection_data`); otherwise it holds out
    ``val_fraction`` of the ``n_train`` drawn samples (class stratified) and trains on the rest.
    The test split is never read.
    """
    gates.check_disjoint(s["select_seeds"], s["seeds"])
    ds = get_dataset(dataset)
    base = _fig3_base(s, ds)
    sizes = s.get("select_n_train") or s["n_train"]
    return [
        {
            "experiment": EXP_SELECT,
            **base,
            "regularizer": reg,
            "depth": depth,
            "n_train": n,
            "lam": lam,
            "seed": seed,
            "val_metrics": VAL_METRICS,
            **validation_keys(s, ds.y_train, n),
        }
        for reg in REGULARIZERS
        for depth in s["depths"]
        for n in sizes
        for lam in s["lambdas"][reg]
        for seed in s["select_seeds"]
    ]


def selection_data(config: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_fit, y_fit, x_val, y_val)`` of a selection run, from the training split only
    (:func:`jacnb.lab.pipeline.selection_split`)."""
    return selection_split(get_dataset(config["dataset"]), config)


def select_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One selection run: train on the fit set of :func:`selection_data`, score on its held-out
    validation set. Touches only the training split of the dataset (no test accuracy is
    computed)."""
    ds = get_dataset(config["dataset"])
    x_tr, y_tr, x_val, y_val = selection_data(config)
    model = build_fc(config, ds, weight_norm=False)
    res = run_or_diverged(  # a factor that diverges scores zero; the grid goes on
        train,
        model,
        x_tr,
        y_tr,
        train_config(config, evaluate_once=True),
        regularizer=regularizer_from_config(config),
        x_test=x_val,
        y_test=y_val,
    )
    return _select_record(config, res, int(x_tr.shape[0]), int(x_val.shape[0]))


def _select_record(
    config: Mapping[str, Any], res: Mapping[str, Any] | BaseException, n_fit: int, n_val: int
) -> dict[str, Any]:
    """The stored record of a selection run from its training result (or divergence: stored
    with status ``diverged`` and validation accuracy 0, so a diverging factor is never chosen)."""
    steps = sgd_steps(n_fit, config["batch_size"], config["epochs"])
    if isinstance(res, BaseException):
        return diverged_record(
            res,
            val_acc=0.0,
            val_loss=float("nan"),
            train_acc=float("nan"),
            steps=steps,
            n_fit=n_fit,
            n_val=n_val,
        )
    return {
        "val_acc": res["test_acc"],
        "val_loss": res["test_loss"],
        "train_acc": res["train_acc"],
        "final_loss": res["final_loss"],
        "seconds": res["seconds"],
        "device": res["device"],
        "steps": steps,
        "n_fit": n_fit,
        "n_val": n_val,
    }


def choose_lambdas(
    select_frame: pd.DataFrame, by: Sequence[str] = ("dataset", "regularizer", "depth", "n_train")
) -> pd.DataFrame:
    """Per group ``by``, the factor chosen by :func:`jacnb.lab.selection.choose_lambdas`: every
    factor competes on validation accuracy alone (``unfit`` reports those whose selection runs
    stay below Fig. 3's 99 % fit), the best mean validation accuracy, exact ties broken by
    validation cross-entropy (a remaining tie is flagged ``chosen_by_tie`` and the factor gate
    withholds the verdict)."""
    fit = get_claim(CLAIM_BEATS["MNIST"]).gates.min_train_acc
    return choose(select_frame, by, min_train_acc=fit)


def chosen_row(
    chosen: pd.DataFrame, dataset: str, reg: str, depth: int, n_train: int
) -> pd.Series:
    """The :func:`choose_lambdas` row a final run uses: the one at the selected size nearest to
    ``n_train`` (:func:`jacnb.lab.pipeline.nearest_choice`; stated on the page)."""
    return nearest_choice(chosen, n_train, dataset=dataset, regularizer=reg, depth=depth)


def lookup_lambda(chosen: pd.DataFrame, dataset: str, reg: str, depth: int, n_train: int) -> float:
    """The chosen factor of :func:`chosen_row`."""
    return float(chosen_row(chosen, dataset, reg, depth, n_train)["lam"])


# ---------------------------------------------------------------------------------------------
# Final runs of Fig. 3 and the projection cell
# ---------------------------------------------------------------------------------------------


def fig3_configs(s: Mapping[str, Any], dataset: str, chosen: pd.DataFrame) -> list[dict[str, Any]]:
    """Final runs of Fig. 3: every ``(regularizer, depth, n_train, seed)`` at its chosen factor."""
    ds = get_dataset(dataset)
    base = _fig3_base(s, ds)
    return [
        {
            "experiment": EXP_FIG3,
            **base,
            "regularizer": reg,
            "depth": depth,
            "n_train": n,
            "lam": lookup_lambda(chosen, ds.name, reg, depth, n),
            "seed": seed,
        }
        for reg in REGULARIZERS
        for depth in s["depths"]
        for n in s["n_train"]
        for seed in s["seeds"]
    ]


def projection_configs(
    s: Mapping[str, Any], dataset: str, chosen: pd.DataFrame
) -> list[dict[str, Any]]:
    """The projection cell (``s["projection_cell"]``: depth and training-set size): the JR runs
    of that Fig. 3 cell with ``R_F`` by one random projection and exactly, both at the factor
    chosen for JR there; the arm that is the profile's own estimator is the Fig. 3 run itself
    (same config, trained once)."""
    cell = s.get("projection_cell")
    if not cell:
        return []
    finals = [
        c
        for c in fig3_configs(s, dataset, chosen)
        if c["regularizer"] == "jacobian"
        and c["depth"] == cell["depth"]
        and c["n_train"] == cell["n_train"]
    ]
    return [{**c, "jr_method": m} for m in ("exact", "projection") for c in finals]


def fig3_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One final Fig. 3 run: seeded draw of ``n_train`` samples, seeded init, test accuracy."""
    ds = get_dataset(config["dataset"])
    x, y = balanced_subset(ds.x_train, ds.y_train, config["n_train"], config["seed"])
    model = build_fc(config, ds, weight_norm=False)
    res = run_or_diverged(  # stored as "diverged"; the verdicts count it at chance accuracy
        train,
        model,
        x,
        y,
        train_config(config, evaluate_once=True),
        regularizer=regularizer_from_config(config),
        x_test=ds.x_test,
        y_test=ds.y_test,
    )
    return _fig3_record(config, res)


def _fig3_record(config: Mapping[str, Any], res: Mapping[str, Any] | BaseException) -> dict:
    """The stored record of a final Fig. 3 run from its training result (or divergence)."""
    steps = sgd_steps(config["n_train"], config["batch_size"], config["epochs"])
    if isinstance(res, BaseException):
        nan = float("nan")
        return diverged_record(res, test_acc=nan, train_acc=nan, steps=steps)
    return {**{k: v for k, v in res.items() if k != "curves"}, "steps": steps}


# ---------------------------------------------------------------------------------------------
# Seeds trained together (jacnb.core.stacked; jacnb.lab.pipeline.run_grid_stacked)
# ---------------------------------------------------------------------------------------------


def select_run_stacked(configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`select_run` for runs differing in seed and factor only, trained together."""
    ds = get_dataset(configs[0]["dataset"])
    splits = [selection_data(c) for c in configs]
    models = [build_fc(c, ds, weight_norm=False) for c in configs]
    results = train_stacked_by_size(
        models,
        [(s[0], s[1]) for s in splits],
        [train_config(c, evaluate_once=True) for c in configs],
        regularizer_from_config(configs[0]),
        [(s[2], s[3]) for s in splits],
    )
    return [
        _select_record(c, r, int(s[0].shape[0]), int(s[2].shape[0]))
        for c, r, s in zip(configs, results, splits, strict=True)
    ]


def fig3_run_stacked(configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`fig3_run` for the seeds of one configuration, trained together."""
    ds = get_dataset(configs[0]["dataset"])
    data = [balanced_subset(ds.x_train, ds.y_train, c["n_train"], c["seed"]) for c in configs]
    models = [build_fc(c, ds, weight_norm=False) for c in configs]
    results = train_stacked_by_size(
        models,
        data,
        [train_config(c, evaluate_once=True) for c in configs],
        regularizer_from_config(configs[0]),
        (ds.x_test, ds.y_test),
    )
    return [_fig3_record(c, r) for c, r in zip(configs, results, strict=True)]


# ---------------------------------------------------------------------------------------------
# The grids
# ---------------------------------------------------------------------------------------------


def configs(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The configs known before any run: the selection grid of every panel whose dataset is
    present. (The final runs' factors come from the selection, so :func:`run` builds those.)"""
    return [
        c
        for p in plan_panels(s)
        if p.dataset is not None
        for c in select_configs(s, p.dataset)
    ]


def run_fig3(
    s: Mapping[str, Any],
    dataset: str,
    store: ResultStore | None = None,
    executor: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Selection grid, factor choice, final grid and projection cell for one dataset:
    ``(select, chosen, final, projection)`` (store frames; ``status`` says which runs diverged).

    With ``s["stack_seeds"]`` (see :func:`jacnb.lab.pipeline.stack_seeds`) the runs of a
    configuration that differ only in seed (and, in the selection grid, factor) are trained
    together.
    """
    stack = stack_seeds(s)
    select = run_grid_stacked(
        select_configs(s, dataset),
        select_run,
        select_run_stacked,
        store,
        desc="select lambda",
        stack=stack,
        executor=executor,
    )
    chosen = choose_lambdas(select)
    final = run_grid_stacked(
        fig3_configs(s, dataset, chosen),
        fig3_run,
        fig3_run_stacked,
        store,
        desc="Fig. 3",
        stack=stack,
        executor=executor,
        schema=FINAL,
    )
    proj_cfgs = projection_configs(s, dataset, chosen)
    projection = (
        run_grid(proj_cfgs, fig3_run, store, desc="projection vs exact R_F", executor=executor)
        if proj_cfgs
        else pd.DataFrame()
    )
    return select, chosen, final, projection


# ---------------------------------------------------------------------------------------------
# Tidy runs frames and the verdicts (jacnb.lab.gates.decide, nothing else)
# ---------------------------------------------------------------------------------------------

def fig3_runs(final: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """One row per final run (every status): the config, ``arm`` (= regularizer), the metrics,
    ``steps`` and the factor's provenance (``lam_grid``, ``chosen_by_tie``, ``selection_seeds``,
    ``selection_steps``, ``selected_at`` = the selection's training-set size)."""
    if final.empty:
        return final
    rows = []
    for _, r in final.iterrows():
        ch = chosen_row(chosen, r["dataset"], r["regularizer"], int(r["depth"]), r["n_train"])
        prov = choice_provenance(ch)
        del prov["lam"]  # the run's own factor (the same) stays as stored
        rows.append({**r.to_dict(), "arm": r["regularizer"], **prov})
    return pd.DataFrame(rows)


def par_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of claim ``fig3.mnist.jr_less_data_on_par``: weight decay at the largest
    training-set size (arm ``wd_more_data``) and JR at the second largest (``jr_less_data``)."""
    sizes = sorted(runs["n_train"].unique()) if len(runs) else []
    if len(sizes) < 2:
        return runs.iloc[0:0].assign(arm=pd.Series(dtype=str))
    wd = runs[(runs["arm"] == "weight_decay") & (runs["n_train"] == sizes[-1])]
    jr = runs[(runs["arm"] == "jacobian") & (runs["n_train"] == sizes[-2])]
    return pd.concat(
        [wd.assign(arm="wd_more_data"), jr.assign(arm="jr_less_data")], ignore_index=True
    )


def par_context(runs: pd.DataFrame) -> dict[str, Any]:
    """What the on-par claim (``fig3.mnist.jr_less_data_on_par``) weighs, from the finished final
    runs of its panel at the deepest net: ``small``/``large`` (the two largest sizes), the
    points weight decay gains from the smaller to the larger set (``data_gain``) and the points
    JR adds to weight decay on the smaller set (``jr_gain``), means over seeds; the claim can
    hold only where ``jr_gain`` makes up ``data_gain``. Empty without two sizes."""
    ok, _ = split_ok(runs)
    sizes = sorted(ok["n_train"].unique()) if len(ok) else []
    if len(sizes) < 2:
        return {}
    depth = int(ok["depth"].max())
    at = ok[ok["depth"] == depth]
    mean = at.groupby(["arm", "n_train"])["test_acc"].mean()
    small, large = int(sizes[-2]), int(sizes[-1])
    try:
        wd_small, wd_large = mean[("weight_decay", small)], mean[("weight_decay", large)]
        jr_small = mean[("jacobian", small)]
    except KeyError:
        return {}
    return {
        "depth": depth,
        "small": small,
        "large": large,
        "data_gain": round(100 * float(wd_large - wd_small), 2),
        "jr_gain": round(100 * float(jr_small - wd_small), 2),
    }


def projection_runs(projection: pd.DataFrame) -> pd.DataFrame:
    """The runs of claim ``book.projection_on_par_with_exact``: ``arm`` = the ``R_F`` estimator."""
    if projection.empty:
        return projection
    return projection.assign(arm=projection["jr_method"])


def claim_runs(
    runs: pd.DataFrame, panels: Sequence[Panel]
) -> dict[str, tuple[Panel | None, pd.DataFrame]]:
    """Per Fig. 3 claim of this page, its panel and the runs it is judged on (every status): the
    runs of the claim's dataset for ``fig3.*.jr_beats_wd``, :func:`par_runs` of the MNIST
    panel's for the on-par claim. What :func:`verdicts_from_runs` decides and the figure's
    paired panels draw (:func:`jacnb.lab.gates.cell_table` of the same frames)."""
    by_paper = {p.paper: p for p in panels}

    def panel_runs(paper: str) -> tuple[Panel | None, pd.DataFrame]:
        panel = by_paper.get(paper)
        return panel, (runs[runs["dataset"] == panel.dataset] if panel and panel.ran else runs)

    out = {cid: panel_runs(paper) for paper, cid in CLAIM_BEATS.items()}
    panel, sub = panel_runs("MNIST")
    out[CLAIM_PAR] = (panel, par_runs(sub) if len(sub) else sub)
    return out


def fig3_figure(runs: pd.DataFrame, panels: Sequence[Panel], provenance: str | None = None):
    """Fig. 3 of the tidy runs frame (:func:`fig3_runs`, every status): the accuracy panels and,
    per dataset that ran, the paired panels of its claims from the runs :func:`claim_runs`
    gives them (:func:`jacnb.chapters._fc_plots.fig3`)."""
    deciding: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for cid, (panel, sub) in claim_runs(runs, panels).items():
        if panel is not None and panel.ran and len(sub):
            deciding.setdefault(str(panel.dataset), []).append((cid, sub))
    return _fc_plots.fig3(runs, panels, REGULARIZERS, provenance, deciding)


def verdicts_from_runs(
    runs: pd.DataFrame,
    projection: pd.DataFrame,
    panels: Sequence[Panel],
    profile: str,
) -> list[Verdict]:
    """One :class:`Verdict` per registered claim of this page, from the tidy runs frames
    (:func:`fig3_runs`, :func:`projection_runs`); the only verdict path of the chapter."""
    by_paper = {p.paper: p for p in panels}
    judged = claim_runs(runs, panels)

    def beats(claim: Claim) -> Verdict:
        panel, sub = judged[claim.id]
        return decide_panel(claim.id, sub, profile=profile, panel=panel)

    def par(claim: Claim) -> Verdict:
        panel, pr = judged[claim.id]
        if panel is not None and panel.ran and pr.empty:
            why = "fewer than two training-set sizes at this profile"
            return gates.not_run(claim.id, why, profile=profile)
        return decide_panel(claim.id, pr, profile=profile, panel=panel)

    def projection_claim(claim: Claim) -> Verdict:
        if projection.empty:
            why = "the projection cell runs at the smoke and cpu profiles only"
            return gates.not_run(claim.id, why, profile=profile)
        return decide_panel(
            claim.id, projection_runs(projection), profile=profile, panel=by_paper.get("MNIST")
        )

    deciders = {cid: beats for cid in CLAIM_BEATS.values()}
    deciders.update({CLAIM_PAR: par, CLAIM_PROJ: projection_claim})
    return assemble_verdicts(NAME, deciders)


# ---------------------------------------------------------------------------------------------
# The chapter's result
# ---------------------------------------------------------------------------------------------


def paper_table_of(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """Ours beside the paper, one row per claim (:func:`jacnb.lab.pipeline.claims_table`; Fig. 3
    is a plot: the paper prints no number, :attr:`Claim.paper_note` says so)."""
    return claims_table(verdicts)


@dataclass
class FullyConnectedResult:
    """Everything the Fig. 3 page shows: the store frames (every status) and the panels."""

    profile: str
    settings: dict[str, Any]
    panels: list[Panel]
    select: pd.DataFrame
    chosen: pd.DataFrame
    final: pd.DataFrame
    projection: pd.DataFrame
    _verdicts: list[Verdict] | None = field(default=None, repr=False)

    def runs(self) -> pd.DataFrame:
        """The tidy Fig. 3 runs frame (:func:`fig3_runs`), every status."""
        return fig3_runs(self.final, self.chosen)

    def frames(self) -> dict[str, pd.DataFrame]:
        """``runs`` (final runs, one row each, with ``status``), ``selection`` (selection runs),
        ``chosen`` (the factor per group) and ``projection`` (the projection cell's runs)."""
        return {
            "runs": self.runs(),
            "selection": self.select,
            "chosen": self.chosen,
            "projection": projection_runs(self.projection),
        }

    def left_out(self) -> dict[str, int]:
        """Diverged runs per grid (stored as such; left out of the tables' means and Fig. 3's
        accuracy panel, counted in the verdicts and the paired panels as a failure of their arm
        at chance accuracy); ``projection`` counts only the arm that is not a Fig. 3 run
        itself."""
        proj = self.projection
        if not proj.empty:
            proj = proj[proj["jr_method"] != self.settings["jr_method"]]
        return {
            name: split_ok(f)[1]
            for name, f in (("selection", self.select), ("final", self.final),
                            ("projection", proj))
        }

    def verdicts(self) -> list[Verdict]:
        if self._verdicts is None:
            self._verdicts = verdicts_from_runs(
                self.runs(), self.projection, self.panels, self.profile
            )
        return list(self._verdicts)

    def paper_table(self) -> pd.DataFrame:
        return paper_table_of(self.verdicts())

    def provenance(self) -> str:
        s = self.settings
        used = [p.dataset for p in self.panels if p.dataset]
        return lab_settings.provenance(
            s, " + ".join(used) or "none", depths=s["depths"], jr=f"{s['jr_method']} R_F",
            batch=s["batch_size"], lr=s["lr"], select_seeds=s["select_seeds"],
        )

    def figure(self):
        """Fig. 3 (:func:`jacnb.chapters._fc_plots.fig3`): per dataset that ran, test accuracy
        against depth (colour = training-set size, solid = JR, dashed = weight decay; each arm's
        mean and 95 % t-interval over its finished seeds), and under it the paired per-seed
        statistic of each Fig. 3 claim per cell, from the runs its verdict is decided on
        (:func:`claim_runs`)."""
        return fig3_figure(self.runs(), self.panels, self.provenance())

    def selection_table(self) -> pd.DataFrame:
        """Mean validation accuracy [%] per factor (the λ grid as columns), the chosen factor, the
        factors whose selection nets stayed below the fit (they competed all the same), and the
        flags, per (dataset, regularizer, depth, selection size)."""
        if self.select.empty:
            return pd.DataFrame()
        ok = self.select
        wide = ok.pivot_table(
            index=["dataset", "regularizer", "depth", "n_train"], columns="lam", values="val_acc"
        ) * 100
        wide.columns = [f"λ={c:g}" for c in wide.columns]
        wide = wide.round(2)
        ch = self.chosen.set_index(["dataset", "regularizer", "depth", "n_train"])
        wide["chosen λ"] = ch["lam"].map(lambda v: f"{v:g}")
        wide["below fit (competed)"] = ch["unfit"].map(factor_list)
        wide["tie broken by val. loss"] = ch["tie_broken_by_loss"]
        wide["at grid edge"] = ch["at_grid_edge"]
        wide["tie"] = ch["chosen_by_tie"]
        return wide

    def accuracy_table(self) -> pd.DataFrame:
        """Mean test accuracy [%] over finished seeds per (dataset, n_train, depth) and
        regularizer, JR − WD, the chosen factors and the number of finished / diverged seeds."""
        runs = self.runs()
        if runs.empty:
            return pd.DataFrame()
        ok, _ = split_ok(runs)
        idx = ["dataset", "n_train", "depth"]
        t = ok.pivot_table(index=idx, columns="arm", values="test_acc", aggfunc="mean") * 100
        t.columns = [f"{REGULARIZERS[c]} [%]" for c in t.columns]
        if {"Jacobian reg. [%]", "weight decay [%]"} <= set(t.columns):
            t["JR − WD [pts]"] = t["Jacobian reg. [%]"] - t["weight decay [%]"]
        t = t.round(2)
        lam = runs.pivot_table(index=idx, columns="arm", values="lam", aggfunc="first")
        for c in lam.columns:
            t[f"λ {REGULARIZERS[c]}"] = lam[c].map(lambda v: f"{v:g}")
        done = ok.pivot_table(index=idx, columns="arm", values="seed", aggfunc="count")
        for c in done.columns:
            t[f"seeds {REGULARIZERS[c]}"] = done[c].reindex(t.index).fillna(0).astype(int)
        t["diverged"] = (~is_ok(runs)).groupby([runs[i] for i in idx]).sum()
        return t

    def settings_table(self) -> pd.DataFrame:
        """The profile's scalar and list settings, one row each (the λ grids and panels are in
        :meth:`lambda_table` and :meth:`panels_table`)."""
        s = {k: v for k, v in self.settings.items() if k not in ("lambdas", "panels")}
        return pd.Series({k: str(v) for k, v in s.items()}, name="setting").to_frame()

    def lambda_table(self) -> pd.DataFrame:
        """The factor grids of the selection, one row per regularizer, the factors as columns."""
        grids = self.settings["lambdas"]
        return pd.DataFrame(
            [[*g, *[None] * (max(map(len, grids.values())) - len(g))] for g in grids.values()],
            index=[REGULARIZERS[r] for r in grids],
            columns=[f"λ{i + 1}" for i in range(max(map(len, grids.values())))],
        )

    def panels_table(self) -> pd.DataFrame:
        """Which dataset each panel of Fig. 3 ran (a stand-in named as such, or not run)."""
        return pd.DataFrame([p.__dict__ for p in self.panels])

    def cost(self) -> tuple[pd.DataFrame, dict[str, float]]:
        """Seconds per SGD step measured here on the paper's 4-layer MNIST net (input and width
        784, batch 128) per regularizer, and the projected GPU-hours of the ``paper`` profile at
        an *assumed* 10 TFLOP/s (an estimate, not a measurement)."""
        steps = step_seconds(784, 10, depth=4, steps=3, regularizers={
            "warm-up": {"name": "none"},  # the first timing pays for thread start-up: dropped
            "plain": {"name": "none"},
            "weight_decay": {"name": "weight_decay"},
            "jacobian exact": {"name": "jacobian", "method": "exact"},
            "jacobian projection": {"name": "jacobian", "method": "projection", "n_proj": 1},
        })
        steps.pop("warm-up")
        ratio = {k: v / steps["plain"] for k, v in steps.items()}
        table = pd.DataFrame({"s/step (batch 128)": steps, "x plain SGD": ratio}).round(3)
        work = fig3_workload(settings("paper"), {"mnist": 784, "cifar10": 3072})
        mult = {"weight_decay": ratio["weight_decay"], "jacobian": ratio["jacobian exact"]}
        return table, project_gpu_hours(work, mult, gpu_tflops=10.0)

    def numbers(self) -> dict[str, Any]:
        """Measured numbers the page glues into its prose."""
        runs = self.runs()
        ok, _ = split_ok(runs)
        left = self.left_out()
        n_sel = len(self.select)
        return {
            "fc_n_final": len(runs),
            "fc_n_select": n_sel,
            "fc_diverged": sum(left.values()),
            "fc_min_train_acc": round(100 * float(ok["train_acc"].min()), 2) if len(ok) else None,
            "fc_min_steps": int(runs["steps"].min()) if len(runs) else None,
            "fc_train_minutes": float(round(
                (self.select.get("seconds", pd.Series(dtype=float)).sum()
                 + self.final.get("seconds", pd.Series(dtype=float)).sum()
                 + self.projection.get("seconds", pd.Series(dtype=float)).sum()) / 60, 1)),
            "fc_n_reproduced": sum(v.verdict == REPRODUCED for v in self.verdicts()),
            "fc_n_claims": len(self.verdicts()),
            **{f"fc_par_{k}": None for k in ("depth", "small", "large", "data_gain", "jr_gain")},
            **{f"fc_par_{k}": v for k, v in self.par_context().items()},
            "fc_par_verdict": next(
                (v.verdict for v in self.verdicts() if v.claim == CLAIM_PAR), "not run"
            ),
        }

    def par_context(self) -> dict[str, Any]:
        """:func:`par_context` of the MNIST panel's final runs (empty if it did not run)."""
        runs = self.runs()
        if runs.empty:
            return {}
        mnist = [p.dataset for p in self.panels if p.paper == "MNIST" and p.dataset is not None]
        return par_context(runs[runs["dataset"].isin(mnist)]) if mnist else {}


def run(
    profile: str = "cpu", *, executor: Any = None, store: ResultStore | None = None
) -> FullyConnectedResult:
    """Train (or load) every run of the page at ``profile``: per present panel the selection
    grid, the final grid at the chosen factors and the projection cell."""
    s = settings(profile)
    store = store or ResultStore()
    panels = plan_panels(s)
    parts = [run_fig3(s, p.dataset, store, executor) for p in panels if p.dataset is not None]

    def cat(i: int) -> pd.DataFrame:
        frames = [p[i] for p in parts if not p[i].empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return FullyConnectedResult(
        s["profile"], s, panels, cat(0), cat(1), cat(2), cat(3)
    )


# ---------------------------------------------------------------------------------------------
# Timing and the projected cost of the paper profile (shared with jacnb.chapters.weight_norm)
# ---------------------------------------------------------------------------------------------


def step_seconds(
    in_dim: int,
    n_classes: int,
    depth: int,
    regularizers: Mapping[str, Mapping[str, Any]],
    batch_size: int = 128,
    steps: int = 5,
    weight_norm: bool = False,
) -> dict[str, float]:
    """Seconds of one SGD step (:func:`jacnb.lab.timing.regularizer_steps`, the training
    loop's step, each regularizer on a copy of the same net; timed interleaved by
    :func:`jacnb.lab.timing.time_interleaved`, the fastest of ``steps``: the least disturbed by
    other load; batch ``batch_size``, width ``in_dim``) per regularizer
    ``{label: {"name": ..., **kwargs}}`` (``"none"``: plain SGD), on this machine."""
    dev = pick_device()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, in_dim, generator=gen).to(dev)
    y = torch.randint(n_classes, (batch_size,), generator=gen).to(dev)
    regs = {}
    for label, spec in regularizers.items():
        spec = dict(spec)
        regs[label] = make_regularizer(spec.pop("name"), **spec)
    torch.manual_seed(0)
    base = fully_connected(in_dim, n_classes, depth, weight_norm=weight_norm).to(dev)
    steps_ = regularizer_steps(base, regs, x, y, lam=1e-3, lr=1e-3)
    times = time_interleaved(steps_, dev, repeats=steps, warmup=1, rounds=steps)
    return {label: float(np.min(t)) for label, t in times.items()}


def fig3_workload(s: Mapping[str, Any], in_dims: Mapping[str, int]) -> list[dict]:
    """Every run (selection and final) of Fig. 3 at settings ``s`` (as :func:`settings` returns
    them) without loading any data; ``in_dims``: input dimension per dataset of the panels
    (e.g. 784 MNIST, 3072 CIFAR-10)."""
    out = []
    sel_sizes = s.get("select_n_train") or s["n_train"]
    for dataset, dim in in_dims.items():
        for reg in REGULARIZERS:
            for depth in s["depths"]:
                base = {
                    "dataset": dataset,
                    "in_dim": dim,
                    "depth": depth,
                    "width": dim,
                    "epochs": s["epochs"],
                    "regularizer": reg,
                }
                for n in sel_sizes:
                    n_fit = n if s.get("n_val") else n - round(s["val_fraction"] * n)
                    k = len(s["lambdas"][reg]) * len(s["select_seeds"])
                    out += [{**base, "n_fit": n_fit, "phase": "select"}] * k
                for n in s["n_train"]:
                    out += [{**base, "n_fit": n, "phase": "final"}] * len(s["seeds"])
    return out


# ---------------------------------------------------------------------------------------------
# Dry run (python -m jacnb.run fully_connected --profile paper --dry-run; jacnb.lab.dryrun)
# ---------------------------------------------------------------------------------------------


def largest_factors(s: Mapping[str, Any], select: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A stand-in for :func:`choose_lambdas` before any selection ran: every selection cell at
    the largest factor of its grid (a factor changes no step's shape, so the final grids of a
    dry run are the real ones)."""
    rows = [
        {k: c[k] for k in ("dataset", "regularizer", "depth", "n_train")}
        | {"lam": max(s["lambdas"][c["regularizer"]])}
        for c in select
    ]
    return pd.DataFrame(rows).drop_duplicates(ignore_index=True)


def dry_run(s: Mapping[str, Any], device: torch.device) -> list[DryConfig]:
    """Every run of the page at settings ``s`` as the dry run sees it: per present panel the
    selection grid, the final grid and the projection cell (:func:`configs`,
    :func:`fig3_configs`, :func:`projection_configs`), each with its SGD steps
    (:func:`jacnb.lab.pipeline.sgd_steps` on the samples it fits) and one training step of its
    net."""
    out = []
    for panel in plan_panels(s):
        if panel.dataset is None:
            continue
        select = select_configs(s, panel.dataset)
        chosen = largest_factors(s, select)
        grids = {
            "Fig. 3 selection": select,
            "Fig. 3 final": fig3_configs(s, panel.dataset, chosen),
            "projection cell": projection_configs(s, panel.dataset, chosen),
        }
        out += [dry_config(phase, c) for phase, cs in grids.items() for c in cs]
    return out


