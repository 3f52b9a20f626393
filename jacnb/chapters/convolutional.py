"""Experiments of the convolutional chapter (Sokolic et al. 2017, Sec. VI-B, Tables II and III).

* **Table II** (Sec. VI-B1): the 4-layer conv net of :func:`jacnb.core.models.mnist_convnet`
  ((32,5,5)-conv, 2x2 max-pool, (32,5,5)-conv, 2x2 max-pool, softmax layer; ReLU; "same"
  padding -- the paper does not state the padding, this is our assumption) trained with weight
  decay ``sum_l ||W_l||_F^2`` or with the Jacobian regularizer ``R_F`` of eq. (49) on MNIST and
  LaRED ("same subject" and "different subject" test sets, :func:`jacnb.core.data.load_lared`).
  "The training procedure follows" Sec. VI-A1: SGD with momentum 0.9, batch 128, learning rate
  0.01 divided by 10 every 40 epochs, 120 epochs, factors chosen on a validation set.
* **Table III** (Sec. VI-B2): All-CNN-C (:func:`jacnb.core.models.all_cnn_c`; every conv batch
  normalized, the softmax layer weight normalized, eq. 45) on CIFAR-10, plain ("Batch norm.")
  vs ``+ R_F`` (eq. 49); SGD momentum 0.9, batch 64, learning rate 0.1 divided by 10 every 25
  epochs, 75 epochs. Batch norm couples the samples of a batch; the penalty takes ``J(x_i)``
  per sample with the batch statistics held fixed (``batch_norm="fixed"``, the default of
  :class:`~jacnb.core.regularizers.JacobianRegularizer`; checked by :func:`bn_jacobian_check`).

Factor selection (issue 13): every factor of a grid is trained on a drawn training set and
scored on held-out training data (``n_val`` further samples of the training split, or
``val_fraction`` of the drawn set; :func:`selection_data`), with the seeds
:func:`jacnb.lab.gates.selection_seeds` gives (disjoint from the final seeds); the test sets
are never read for the choice. Each final run records ``lam``, ``lam_grid``, ``chosen_by_tie``,
``selection_seeds`` and ``selection_steps``. Every run is one config dict that goes through
:func:`jacnb.lab.store.run_grid`, so nothing is trained twice and a killed grid resumes.

Chapter interface (``PLAN.md``): :data:`NAME`, :func:`settings`, :func:`configs`, :func:`run`
-> :class:`ConvolutionalResult` (``frames``, ``figures``, ``paper_table``, ``verdicts``). The
verdicts come only from :func:`jacnb.lab.gates.decide` on the tidy runs frame
(:meth:`ConvolutionalResult.runs`) or :func:`jacnb.lab.gates.not_run`. The notebook
``04_convolutional`` only calls into this module.
"""

from __future__ import annotations

import copy
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from jacnb.core import models
from jacnb.core.data import (
    balanced_subset,
    balanced_subset_indices,
    resize_images,
    train_val_split,
)
from jacnb.core.jacobian import logits_and_frobenius_sq
from jacnb.core.regularizers import regularizer_from_config
from jacnb.core.train import (
    TRAIN_KEYS,
    NonFiniteLossError,
    evaluate,
    pick_device,
    train,
    train_config,
)
from jacnb.lab import gates, paper
from jacnb.lab import settings as lab_settings
from jacnb.lab.claims import claims_of
from jacnb.lab.datasets import Panel, dataset_label, get_dataset, not_run, plan_panels
from jacnb.lab.datasets import stand_in_label as panel_stand_in_label
from jacnb.lab.dryrun import DryConfig, batch_of
from jacnb.lab.selection import VAL_METRICS
from jacnb.lab.selection import choose_lambdas as choose
from jacnb.lab.store import FRACTION, ResultSchema, ResultStore, run_grid
from jacnb.lab.tables import factor_list, percent_mean_sd
from jacnb.lab.timing import make_step
from jacnb.lab.verdicts import Verdict

NAME = "04_convolutional"
SETTINGS_KEY = "convolutional"


@dataclass(frozen=True)
class Table:
    """What distinguishes the two tables: the net, the compared regularizers, the grids."""

    name: str
    model: str
    #: weight layers of the net
    depth: int
    #: regularizer (= the claims' arm) -> the paper's column label; the first is the baseline
    regularizers: dict[str, str]
    #: regularizers whose factor is chosen on validation data
    selected: tuple[str, ...]
    exp_select: str
    exp_final: str


TABLES = {
    "table2": Table(
        "II",
        "mnist_convnet",
        4,
        {"weight_decay": "Weight dec.", "jacobian": "Jac. reg."},
        ("weight_decay", "jacobian"),
        "conv-table2-select",
        "conv-table2",
    ),
    "table3": Table(
        "III",
        "all_cnn_c",
        9,
        {"none": "Batch norm.", "jacobian": "Batch norm. + Jac. reg."},
        ("jacobian",),
        "conv-table3-select",
        "conv-table3",
    ),
}

#: Every run record that is not ``ok`` (diverged) is left out of means and tables, and counted in
#: the verdicts as the claims register (:func:`jacnb.lab.gates.diverged_gate`).
OK = "ok"


# ---------------------------------------------------------------------------------------------
# Settings and panels
# ---------------------------------------------------------------------------------------------


def settings(profile: str = "cpu") -> dict[str, Any]:
    """The chapter's settings at ``profile`` (:func:`jacnb.lab.settings.settings`)."""
    return lab_settings.settings(SETTINGS_KEY, profile)


def table_settings(settings: Mapping[str, Any], table: str) -> dict[str, Any]:
    """The block ``settings[table]`` of a ``convolutional`` profile, with its ``profile``."""
    return {**copy.deepcopy(dict(settings[table])), "profile": settings["profile"]}


def plan_table(ts: Mapping[str, Any]) -> list[tuple[Panel, dict[str, Any]]]:
    """Resolve every panel spec of a table against the disk: ``[(panel, spec)]``.

    A spec ``{"paper", "dataset", "fallbacks", "n_train"}`` runs ``dataset`` if it loads, else
    the first fallback that does, labelled "X (stand-in for Y)" by
    :func:`jacnb.lab.datasets.plan_panels`, else it is "not run: dataset absent". LaRED
    is
    never stood in for. Resized inputs say so in the label.
    """
    out = []
    for spec in ts["panels"]:
        if spec["paper"] == "LaRED" and spec.get("fallbacks"):
            raise ValueError("LaRED has no stand-in: its columns run LaRED or say 'not run'")
        candidates = list(spec.get("fallbacks") or []) or [None]
        panel = None
        for fallback in candidates:
            one = {"paper": spec["paper"], "dataset": spec["dataset"], "fallback": fallback}
            panel = plan_panels({"panels": [one]})[0]
            if panel.dataset is not None:
                break
        assert panel is not None
        if panel.dataset is None:
            tried = [spec["dataset"], *(spec.get("fallbacks") or [])]
            panel = Panel(spec["paper"], None, f"{spec['paper']}: not run", not_run(tried))
        elif panel.dataset == "lared":  # the real LaRED, not a stand-in
            panel = Panel("LaRED", "lared", "LaRED", panel.note)
        side = ts.get("image_size")
        if panel.dataset is not None and side and _native_side(panel.dataset) != side:
            panel = Panel(
                panel.paper, panel.dataset, f"{panel.label}, resized to {side}x{side}", panel.note
            )
        out.append((panel, dict(spec)))
    return out


def _native_side(dataset: str) -> int:
    return int(get_dataset(dataset).x_train.shape[-1])


# ---------------------------------------------------------------------------------------------
# Data, models, one run
# ---------------------------------------------------------------------------------------------


def train_split(config: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """The run's seeded class-balanced draw of ``n_train`` training images (training split of
    the dataset only), at the run's image size."""
    ds = get_dataset(config["dataset"])
    x, y = balanced_subset(ds.x_train, ds.y_train, config["n_train"], config["seed"])
    return resize_images(x, config.get("image_size")), y


def test_sets(config: Mapping[str, Any]) -> dict[str, tuple[Tensor, Tensor]]:
    """``{"test": ...}`` and, for LaRED, ``{"test_other": ...}`` (the "different subject"
    set); with ``n_test`` a fixed (seed 0) class-balanced subset of each."""
    ds = get_dataset(config["dataset"])
    sets = {"test": (ds.x_test, ds.y_test)}
    if "x_test_other" in ds.meta:
        sets["test_other"] = (ds.meta["x_test_other"], ds.meta["y_test_other"])
    n_test = config.get("n_test")
    out = {}
    for name, (x, y) in sets.items():
        if n_test is not None and n_test < len(y):
            x, y = balanced_subset(x, y, n_test, 0)
        out[name] = (resize_images(x, config.get("image_size")), y)
    return out


def build_model(config: Mapping[str, Any], in_channels: int, side: int) -> nn.Module:
    """The run's net, initialized from its seed (``n_classes`` from the dataset)."""
    n_classes = get_dataset(config["dataset"]).n_classes
    torch.manual_seed(config["seed"])
    if config["model"] == "mnist_convnet":
        kwargs: dict[str, Any] = {"image_size": side}
    elif config["model"] == "all_cnn_c":
        kwargs = {"batch_norm": True, "weight_norm_softmax": True}
    else:
        raise ValueError(f"unknown model {config['model']!r}")
    return models.build_model(
        config["model"], in_channels=in_channels, n_classes=n_classes, **kwargs
    )


def steps_of(n: int, batch_size: int, epochs: int, drop_last: bool) -> int:
    """SGD steps of :func:`jacnb.core.train.train` on ``n`` samples (its batching rule:
    the last incomplete batch is dropped for batch-normalized nets when a full one precedes it)."""
    end = n - n % batch_size if drop_last and n > batch_size else n
    return int(epochs * math.ceil(end / batch_size))


def _fit(
    config: Mapping[str, Any], x: Tensor, y: Tensor, evals: Mapping[str, tuple[Tensor, Tensor]]
) -> dict[str, Any]:
    """Train the run's net on ``(x, y)``; accuracy and mean cross-entropy on every set of
    ``evals`` (``<name>_acc``, ``<name>_loss``), the SGD ``steps`` taken. A non-finite loss stops
    the run; it is stored as diverged (status ``"diverged"``) with NaN metrics and the message."""
    model = build_model(config, int(x.shape[1]), int(x.shape[-1]))
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    steps = steps_of(len(y), config["batch_size"], config["epochs"], has_bn)
    cfg = train_config(config, eval_every=config["epochs"])  # evaluate once, at the end
    try:
        res = train(model, x, y, cfg, regularizer=regularizer_from_config(config))
    except NonFiniteLossError as err:
        nan = float("nan")
        out = {f"{name}_{m}": nan for name in evals for m in ("acc", "loss")}
        return {
            **out,
            "train_acc": nan,
            "final_loss": nan,
            "seconds": nan,
            "steps": steps,
            "device": str(pick_device()),
            "diverged": str(err),
        }
    out: dict[str, float] = {}
    for name, (ex, ey) in evals.items():
        ex, ey = ex.to(res["device"]), ey.to(res["device"])
        out[f"{name}_acc"], out[f"{name}_loss"] = evaluate(model, ex, ey)
    return {
        **out,
        "train_acc": res["train_acc"],
        "final_loss": res["final_loss"],
        "seconds": res["seconds"],
        "steps": steps,
        "device": res["device"],
        "diverged": "",
    }


def selection_data(config: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_fit, y_fit, x_val, y_val)`` of a selection run, from the training split only.

    With ``n_val`` in the config: the fit set is the run's class-balanced draw of ``n_train``
    (as a final run of that seed would draw it) and the validation set the ``n_val`` further
    samples of the same seeded balanced draw of ``n_train + n_val`` (disjoint from the fit set).
    Without it: ``val_fraction`` of the ``n_train`` drawn samples is held out."""
    ds = get_dataset(config["dataset"])
    side = config.get("image_size")
    if config.get("n_val"):
        n, seed = int(config["n_train"]), int(config["seed"])
        every = balanced_subset_indices(ds.y_train, n + int(config["n_val"]), seed)
        fit = balanced_subset_indices(ds.y_train, n, seed)
        if not np.isin(fit, every).all():
            raise ValueError("balanced draws are not nested")
        val = np.setdiff1d(every, fit)
        return (
            resize_images(ds.x_train[fit], side),
            ds.y_train[fit],
            resize_images(ds.x_train[val], side),
            ds.y_train[val],
        )
    x, y = train_split(config)
    return train_val_split(x, y, config["val_fraction"], config["seed"])


def select_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One factor-selection run: train on the fit set of :func:`selection_data`, score on its
    held-out validation set (``val_acc``). Reads only the training split of the dataset."""
    x_fit, y_fit, x_val, y_val = selection_data(config)
    res = _fit(config, x_fit, y_fit, {"val": (x_val, y_val)})
    if res["diverged"]:
        res["val_acc"] = 0.0  # a diverging factor loses the selection
    return {**res, "n_fit": int(len(y_fit)), "n_val": int(len(y_val))}


#: What every finished selection / final run reports (a stored record without it is
#: quarantined and recomputed, never shown).
SELECT = ResultSchema({"val_acc": FRACTION, "train_acc": FRACTION})
FINAL = ResultSchema({"test_acc": FRACTION, "train_acc": FRACTION})


def final_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One final run: the drawn training set, test accuracy (and LaRED's other-subject one)."""
    x, y = train_split(config)
    return _fit(config, x, y, test_sets(config))


# ---------------------------------------------------------------------------------------------
# Grids and the factor choice
# ---------------------------------------------------------------------------------------------


def _base(ts: Mapping[str, Any], table: Table, dataset: str) -> dict[str, Any]:
    return {
        "profile": ts["profile"],
        "table": table.name,
        "dataset": dataset,
        "model": table.model,
        "depth": table.depth,
        "image_size": ts.get("image_size"),
        "jr_method": ts["jr_method"],
        "n_proj": ts["n_proj"],
        **{k: ts[k] for k in TRAIN_KEYS},
    }


def select_seeds(ts: Mapping[str, Any]) -> tuple[int, ...]:
    """The seeds of the selection runs: :func:`jacnb.lab.gates.selection_seeds` of the final
    seeds (``n_select_seeds`` of them), disjoint from the final seeds."""
    return gates.selection_seeds(ts["seeds"], ts.get("n_select_seeds", 1))


def select_sizes(ts: Mapping[str, Any], n_train: Sequence[int]) -> list[int]:
    """The training-set sizes at which factors are chosen (``select_n_train``; ``None``: every
    size of the panel)."""
    return list(ts.get("select_n_train") or n_train)


def select_configs(
    ts: Mapping[str, Any], table: str, dataset: str, n_train: Sequence[int]
) -> list[dict[str, Any]]:
    """Every ``(regularizer, size, factor, selection seed)`` of one panel's selection grid."""
    t = TABLES[table]
    return [
        {
            "experiment": t.exp_select,
            **_base(ts, t, dataset),
            "regularizer": reg,
            "n_train": n,
            "lam": lam,
            "seed": seed,
            "val_metrics": VAL_METRICS,
            **({"n_val": ts["n_val"]} if ts.get("n_val") else {"val_fraction": ts["val_fraction"]}),
        }
        for reg in t.selected
        for n in select_sizes(ts, n_train)
        for lam in ts["lambdas"][reg]
        for seed in select_seeds(ts)
    ]


def choose_lambdas(select: pd.DataFrame, table: str = "table2") -> pd.DataFrame:
    """Per (dataset, regularizer, selection size) of ``table``'s selection runs, the factor
    chosen by :func:`jacnb.lab.selection.choose_lambdas`: every factor competes on validation
    accuracy alone (``unfit`` reports those whose selection nets miss the claims' fit), the
    best mean validation accuracy, exact ties broken
    by validation cross-entropy (a remaining tie: ``chosen_by_tie``). Columns as there (``grid``
    = ``{lam: mean val_acc}``). Refuses a frame with test-set columns."""
    fits = {c.gates.min_train_acc for c in claims_of(NAME) if c.id.startswith(f"{table}.")}
    fit = min((f for f in fits if f is not None), default=None)
    return choose(select, ["dataset", "regularizer", "n_train"], min_train_acc=fit)


def lookup(chosen: pd.DataFrame, dataset: str, reg: str, n: int) -> dict[str, Any]:
    """The choice that the final runs of size ``n`` use: the one made at ``n``, else at the
    nearest selection size (in log scale)."""
    sub = chosen[(chosen["dataset"] == dataset) & (chosen["regularizer"] == reg)]
    if sub.empty:
        raise ValueError(f"no factor chosen for {dataset}/{reg}")
    i = (np.log(sub["n_train"].astype(float)) - math.log(n)).abs().idxmin()
    row = sub.loc[i]
    return {
        "lam": float(row["lam"]),
        "selected_at": int(row["n_train"]),
        "lam_grid": list(row["lam_grid"]),
        "chosen_by_tie": bool(row["chosen_by_tie"]),
        "selection_seeds": list(row["selection_seeds"]),
        "selection_steps": int(row["selection_steps"]),
    }


def final_configs(
    ts: Mapping[str, Any], table: str, dataset: str, n_train: Sequence[int], chosen: pd.DataFrame
) -> list[dict[str, Any]]:
    """Every ``(regularizer, size, seed)`` of one panel at its chosen factor (0 for a baseline
    without a factor); ``n_test`` as in the settings."""
    t = TABLES[table]
    return [
        {
            "experiment": t.exp_final,
            **_base(ts, t, dataset),
            "regularizer": reg,
            "n_train": n,
            "lam": lookup(chosen, dataset, reg, n)["lam"] if reg in t.selected else 0.0,
            "seed": seed,
            "n_test": ts.get("n_test"),
        }
        for reg in t.regularizers
        for n in n_train
        for seed in ts["seeds"]
    ]


def configs(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The selection configs of every panel that can run, both tables. The final configs depend
    on the factors these choose (:func:`final_configs`), so :func:`run` makes them after."""
    out = []
    for table in TABLES:
        ts = table_settings(settings, table)
        for panel, spec in plan_table(ts):
            if panel.dataset is not None:
                out += select_configs(ts, table, panel.dataset, spec["n_train"])
    return out


@dataclass
class TableRun:
    """One table's panels and stored runs: selection runs, the choice, final runs."""

    table: str
    settings: dict[str, Any]
    panels: list[tuple[Panel, dict[str, Any]]]
    select: pd.DataFrame = field(default_factory=pd.DataFrame)
    chosen: pd.DataFrame = field(default_factory=pd.DataFrame)
    final: pd.DataFrame = field(default_factory=pd.DataFrame)


def run_table(
    ts: Mapping[str, Any],
    table: str,
    store: ResultStore | None = None,
    executor: Any = None,
) -> TableRun:
    """Selection grid, factor choice and final grid of every panel of ``table`` that can run."""
    planned = plan_table(ts)
    selects, chosens, finals = [], [], []
    for panel, spec in planned:
        if panel.dataset is None:
            continue
        desc = f"Table {TABLES[table].name} {panel.paper}"
        cfgs = select_configs(ts, table, panel.dataset, spec["n_train"])
        select = run_grid(
            cfgs, select_run, store, f"{desc}: select lambda", executor=executor, schema=SELECT
        )
        chosen = choose_lambdas(select, table)
        fcfgs = final_configs(ts, table, panel.dataset, spec["n_train"], chosen)
        final = run_grid(fcfgs, final_run, store, desc=desc, executor=executor, schema=FINAL)
        selects.append(select)
        chosens.append(chosen)
        finals.append(final)

    def cat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return TableRun(table, dict(ts), planned, cat(selects), cat(chosens), cat(finals))


def run(
    profile: str = "cpu", *, executor: Any = None, store: ResultStore | None = None
) -> ConvolutionalResult:
    """Train (or load) every run of Tables II and III at ``profile``."""
    s = settings(profile)
    store = store or ResultStore()
    tables = {t: run_table(table_settings(s, t), t, store, executor) for t in TABLES}
    return ConvolutionalResult(s["profile"], s, tables)


# ---------------------------------------------------------------------------------------------
# The result: tidy frames, figures, the paper's tables beside ours, verdicts
# ---------------------------------------------------------------------------------------------


def _columns(paper_name: str) -> list[tuple[str, str, str]]:
    """The test sets of a panel: ``(the paper's column, test_set, our record's accuracy key)``."""
    if paper_name == "LaRED":
        return [
            ("LaRED (same subject)", "same subject", "test_acc"),
            ("LaRED (different subject)", "different subject", "test_other_acc"),
        ]
    return [(paper_name, "test", "test_acc")]


def _paper_frame(table: str) -> pd.DataFrame:
    """The paper's table as ``column, n_train, regularizer, accuracy [%]``."""
    if table == "table2":
        df = paper.table2()
        df["column"] = np.where(
            df["dataset"] == "LaRED", "LaRED (" + df["test_set"] + ")", df["dataset"]
        )
    else:
        df = paper.table3()
        df["column"] = df["dataset"]
    return df[["column", "n_train", "regularizer", "accuracy"]]


def _is_stand_in(panel: Panel) -> bool:
    assert panel.dataset is not None
    return gates.is_stand_in(panel_stand_in_label(panel.dataset, panel.paper))


def _dataset_name(panel: Panel, ts: Mapping[str, Any]) -> str:
    """What ran, without the stand-in suffix (:func:`jacnb.lab.gates.decide` adds it)."""
    assert panel.dataset is not None
    side = ts.get("image_size")
    resized = side and _native_side(panel.dataset) != side
    return dataset_label(panel.dataset) + (f", resized to {side}x{side}" if resized else "")


@dataclass
class ConvolutionalResult:
    """Tables II and III as run at one profile (:func:`run`)."""

    profile: str
    settings: dict[str, Any]
    tables: dict[str, TableRun]

    # --- tidy frames ------------------------------------------------------------------------

    def runs(self, table: str) -> pd.DataFrame:
        """One row per (final run, test set) of ``table``: the columns
        :func:`jacnb.lab.gates.required_columns` asks for (``seed``, ``arm``, ``n_train``,
        ``test_set``, ``test_acc``, ``gap`` = train - test accuracy, ``train_acc``, ``steps``,
        ``lam``, ``lam_grid``, ``chosen_by_tie``, ``selection_seeds``, ``selection_steps``) plus
        ``paper`` (the paper's dataset), ``column``, ``dataset``, ``selected_at``, ``status``
        (``"ok"`` or ``"diverged"``; only ``ok`` rows count) and ``seconds``."""
        tr = self.tables[table]
        t = TABLES[table]
        rows = []
        final = tr.final
        for panel, _spec in tr.panels:
            if panel.dataset is None or final.empty:
                continue
            f = final[final["dataset"] == panel.dataset]
            for column, test_set, metric in _columns(panel.paper):
                for _, r in f.iterrows():
                    reg = r["regularizer"]
                    sel: dict[str, Any] = (
                        lookup(tr.chosen, panel.dataset, reg, int(r["n_train"]))
                        if reg in t.selected
                        else {}
                    )
                    test_acc = float(r.get(metric, np.nan))
                    train_acc = float(r.get("train_acc", np.nan))
                    rows.append(
                        {
                            "table": t.name,
                            "paper": panel.paper,
                            "column": column,
                            "dataset": panel.dataset,
                            "test_set": test_set,
                            "seed": int(r["seed"]),
                            "arm": reg,
                            "n_train": int(r["n_train"]),
                            "test_acc": test_acc,
                            "train_acc": train_acc,
                            "gap": train_acc - test_acc,
                            "steps": int(r["steps"]),
                            "lam": float(r["lam"]),
                            "lam_grid": sel.get("lam_grid"),
                            "chosen_by_tie": sel.get("chosen_by_tie", False),
                            "selection_seeds": sel.get("selection_seeds"),
                            "selection_steps": sel.get("selection_steps"),
                            "selected_at": sel.get("selected_at"),
                            "status": r.get("status", OK) or OK,
                            "seconds": float(r.get("seconds", np.nan)),
                        }
                    )
        return pd.DataFrame(rows)

    def selection(self, table: str) -> pd.DataFrame:
        """The selection runs of ``table``: one row per (regularizer, size, factor, seed) with
        ``val_acc``, ``train_acc``, ``steps``, ``status``."""
        s = self.tables[table].select
        if s.empty:
            return pd.DataFrame()
        cols = [
            "dataset",
            "regularizer",
            "n_train",
            "lam",
            "seed",
            "val_acc",
            "train_acc",
            "steps",
            "status",
            "seconds",
        ]
        return s[[c for c in cols if c in s.columns]].reset_index(drop=True)

    def frames(self) -> dict[str, pd.DataFrame]:
        """``table2_runs``/``table3_runs`` (:meth:`runs`), ``table2_selection``/
        ``table3_selection`` (:meth:`selection`), ``lambda_choice`` (:meth:`lambda_table`)."""
        out = {}
        for table in TABLES:
            out[f"{table}_runs"] = self.runs(table)
            out[f"{table}_selection"] = self.selection(table)
        out["lambda_choice"] = self.lambda_table()
        return out

    def diverged(self) -> dict[str, int]:
        """Runs stored as diverged (left out of means and tables, counted in verdicts), per
        table and phase."""
        out = {}
        for table, tr in self.tables.items():
            for phase, f in (("selection", tr.select), ("final", tr.final)):
                n = int((f["status"] != OK).sum()) if len(f) and "status" in f else 0
                out[f"{table} {phase}"] = n
        return out

    # --- tables -----------------------------------------------------------------------------

    def lambda_table(self) -> pd.DataFrame:
        """The factor choice, one row per (table, dataset, regularizer, selection size), one
        column per factor of the grids (mean validation accuracy [%] over the selection seeds),
        then the chosen ``lam``, ``chosen_by_tie``, the selection seeds and steps."""
        rows = []
        for table, tr in self.tables.items():
            for _, r in tr.chosen.iterrows():
                row: dict[str, Any] = {
                    "table": TABLES[table].name,
                    "dataset": r["dataset"],
                    "regularizer": r["regularizer"],
                    "n_train": int(r["n_train"]),
                }
                for lam, acc in sorted(r["grid"].items()):
                    row[f"λ={lam:g}"] = round(100 * acc, 2)
                row.update(
                    chosen=r["lam"],
                    below_fit_competed=factor_list(r["unfit"]),
                    tie_broken_by_val_loss=r["tie_broken_by_loss"],
                    tie=r["chosen_by_tie"],
                    selection_seeds=", ".join(str(s) for s in r["selection_seeds"]),
                    selection_steps=r["selection_steps"],
                )
                rows.append(row)
        df = pd.DataFrame(rows)
        if df.empty:
            return df
        lam_cols = sorted((c for c in df.columns if c.startswith("λ=")), key=lambda c: float(c[2:]))
        rest = [c for c in df.columns if not c.startswith("λ=")]
        head, tail = rest[:4], rest[4:]
        return df[head + lam_cols + tail]

    def paper_table(self) -> pd.DataFrame:
        """Both tables: the paper's numbers (labelled "paper") beside ours (mean ± sd over the
        ``ok`` seeds, %), one row per (table, column, training-set size) of either; ``baseline``
        names the baseline arm (weight decay in Table II, batch norm alone in Table III); the
        ``diff`` columns are the treatment minus the baseline in points (ours: the mean paired
        difference). Sizes a profile does not run and absent datasets say so."""
        rows = []
        for table, tr in self.tables.items():
            t = TABLES[table]
            base, treat = list(t.regularizers)
            runs = self.runs(table)
            ok = runs[runs["status"] == OK] if len(runs) else runs
            ref = _paper_frame(table)
            for panel, spec in tr.panels:
                for column, _test_set, _metric in _columns(panel.paper):
                    p_sizes = set(ref.loc[ref["column"] == column, "n_train"])
                    for n in sorted(p_sizes | set(spec["n_train"])):
                        p = ref[(ref["column"] == column) & (ref["n_train"] == n)]
                        p = p.set_index("regularizer")["accuracy"]
                        row: dict[str, Any] = {
                            "table": t.name,
                            "column": column,
                            "n_train": n,
                            "baseline": t.regularizers[base],
                        }
                        for reg, arm in ((base, "baseline"), (treat, "+ JR")):
                            row[f"paper: {arm}"] = p.get(reg, np.nan)
                        row["paper: diff"] = round(p[treat] - p[base], 2) if len(p) == 2 else np.nan
                        if panel.dataset is None:
                            row["ours: dataset"] = panel.note
                        else:
                            row["ours: dataset"] = panel.label
                        o = ok[(ok["column"] == column) & (ok["n_train"] == n)] if len(ok) else ok
                        for reg, arm in ((base, "baseline"), (treat, "+ JR")):
                            if panel.dataset is None:
                                cell = "not run"
                            elif len(o) == 0 or not (o["arm"] == reg).any():
                                cell = "not run at this profile"
                            else:
                                cell = percent_mean_sd(o.loc[o["arm"] == reg, "test_acc"])
                            row[f"ours: {arm}"] = cell
                        diff = np.nan
                        if len(o):
                            w = o.pivot_table(index="seed", columns="arm", values="test_acc")
                            if base in w and treat in w:
                                d = (w[treat] - w[base]).dropna()
                                diff = round(100 * d.mean(), 2) if len(d) else np.nan
                        row["ours: diff"] = diff
                        for reg, arm in ((base, "baseline"), (treat, "+ JR")):
                            lam = o.loc[o["arm"] == reg, "lam"] if len(o) else pd.Series()
                            row[f"ours: λ {arm}"] = (
                                f"{lam.iloc[0]:g}" if len(lam) and reg in t.selected else "-"
                            )
                        rows.append(row)
        return pd.DataFrame(rows)

    def cost(self) -> pd.DataFrame:
        """Runs, diverged runs and training minutes per table and phase (stored wall times)."""
        rows = []
        for table, tr in self.tables.items():
            for phase, f in (("selection", tr.select), ("final", tr.final)):
                if not len(f):
                    continue
                rows.append(
                    {
                        "table": TABLES[table].name,
                        "phase": phase,
                        "runs": len(f),
                        "diverged runs": int((f["status"] != OK).sum()) if "status" in f else 0,
                        "training minutes": round(float(f["seconds"].sum()) / 60, 2),
                    }
                )
        return pd.DataFrame(rows)

    def provenance(self, table: str) -> str:
        """The provenance line of a table: what ran, sizes per panel, grids, schedule, seeds."""
        tr = self.tables[table]
        ts = tr.settings
        ran = [p for p, _ in tr.panels if p.dataset is not None]
        sizes = {p.paper: spec["n_train"] for p, spec in tr.panels if p.dataset is not None}
        return lab_settings.provenance(
            ts,
            " + ".join(p.label for p in ran) or "none",
            n_train=sizes,
            batch=ts["batch_size"],
            lr=f"{ts['lr']} /10 every {ts['lr_drop_every']} epochs",
            jr=f"{ts['jr_method']} R_F",
            selection_seeds=list(select_seeds(ts)),
            selected_at=ts.get("select_n_train") or "every size",
            validation=f"{ts['n_val']} further training samples"
            if ts.get("n_val")
            else f"{ts['val_fraction']} of the drawn set",
        )

    def numbers(self) -> dict[str, float]:
        """Measured numbers the page's prose quotes (``myst_nb.glue``), the same keys at every
        profile: per table, the mean paired difference [points] at the smallest and largest
        size of its first column, the lowest training accuracy [%] of the final runs, training
        minutes, and diverged runs."""
        out: dict[str, float] = {}
        for table, tr in self.tables.items():
            t = TABLES[table]
            base, treat = list(t.regularizers)
            runs = self.runs(table)
            ok = runs[runs["status"] == OK] if len(runs) else runs
            for which in ("smallest", "largest"):
                out[f"{table}_diff_{which}"] = float("nan")
                out[f"{table}_n_{which}"] = float("nan")
            out[f"{table}_min_train_acc"] = (
                round(100 * float(ok["train_acc"].min()), 2) if len(ok) else float("nan")
            )
            if len(ok):
                first = ok[ok["column"] == ok["column"].iloc[0]]
                w = first.pivot_table(index=["n_train", "seed"], columns="arm", values="test_acc")
                if base in w and treat in w:
                    d = (w[treat] - w[base]).groupby(level="n_train").mean()
                    for which, n in (("smallest", d.index.min()), ("largest", d.index.max())):
                        out[f"{table}_diff_{which}"] = round(100 * float(d[n]), 2)
                        out[f"{table}_n_{which}"] = int(n)
            secs = sum(float(f["seconds"].sum()) for f in (tr.select, tr.final) if len(f))
            out[f"{table}_minutes"] = round(secs / 60, 1)
            out[f"{table}_diverged"] = sum(
                v for k, v in self.diverged().items() if k.startswith(table)
            )
        return out

    # --- figures ----------------------------------------------------------------------------

    def figures(self) -> dict[str, Figure]:
        """Per table that ran: test accuracy [%] against the training-set size, mean over seeds
        with its 95 % confidence interval, one panel per test set (seaborn); and the factor
        choice: mean validation accuracy against lambda per regularizer."""
        import seaborn as sns

        from jacnb.lab import plotting  # noqa: F401  (the book's style)

        out: dict[str, Figure] = {}
        for table, tr in self.tables.items():
            t = TABLES[table]
            runs = self.runs(table)
            if runs.empty:
                continue
            ok = runs[runs["status"] == OK].copy()
            ok["test accuracy [%]"] = 100 * ok["test_acc"]
            ok["regularizer"] = ok["arm"].map(t.regularizers)
            ok["training samples"] = ok["n_train"]
            cols = list(dict.fromkeys(ok["column"]))
            height = 4.0
            g = sns.catplot(
                data=ok,
                x="training samples",
                y="test accuracy [%]",
                hue="regularizer",
                hue_order=list(t.regularizers.values()),
                col="column",
                col_order=cols,
                kind="point",
                errorbar=("ci", 95),
                dodge=0.25,
                height=height,
                aspect=max(8.0 / (len(cols) * height), 1.0),
                sharey=False,
                capsize=0.08,
            )
            g.set_titles("{col_name}")
            g.figure.suptitle(
                f"Table {t.name}: mean and 95 % CI over seeds ({self.profile} profile)", y=1.03
            )
            plotting.stamp(g.figure, textwrap.fill(self.provenance(table), 130))
            out[f"Table {t.name}"] = g.figure
            sel = self.selection(table)
            if len(sel):
                sel = sel.copy()
                sel["validation accuracy [%]"] = 100 * sel["val_acc"].fillna(0.0)
                sel["regularizer"] = sel["regularizer"].map(t.regularizers)
                g2 = sns.relplot(
                    data=sel,
                    x="lam",
                    y="validation accuracy [%]",
                    hue="regularizer",
                    col="dataset",
                    kind="line",
                    marker="o",
                    errorbar=("ci", 95),
                    height=3.6,
                    aspect=max(8.0 / (sel["dataset"].nunique() * 3.6), 1.0),
                    facet_kws={"sharex": False},
                )
                g2.set(xscale="log", xlabel="λ")
                g2.figure.suptitle(
                    f"Table {t.name}: choosing λ on validation data (selection seeds "
                    f"{list(select_seeds(tr.settings))})",
                    y=1.04,
                )
                out[f"Table {t.name}: λ"] = g2.figure
        return out

    def figure(self, name: str = "Table II") -> Figure:
        """One of :meth:`figures` by name (``"Table II"``, ``"Table III"``, ``"Table II: λ"``,
        ``"Table III: λ"``); a figure saying "not run" where that table did not run."""
        from jacnb.lab.plotting import pick_figure

        missing = f"{name}: not run at this profile (dataset absent)"
        return pick_figure(self.figures(), name, missing)

    def settings_table(self) -> pd.DataFrame:
        """Each table's settings at this profile (panels described by :meth:`paper_table`)."""
        return pd.DataFrame(
            {
                f"Table {TABLES[t].name}": {
                    k: (", ".join(f"{r}: {v}" for r, v in val.items()) if k == "lambdas" else val)
                    for k, val in tr.settings.items()
                    if k != "panels"
                }
                for t, tr in self.tables.items()
            }
        ).astype(str)

    # --- verdicts ---------------------------------------------------------------------------

    def verdicts(self) -> list[Verdict]:
        """One verdict per claim registered on this page: :func:`jacnb.lab.gates.decide` on the
        rows of the claim's panel in :meth:`runs`, diverged ones included (counted as failures at
        chance accuracy, or undecided cells, as each claim registers; a stand-in named as such),
        or :func:`jacnb.lab.gates.not_run` where the panel's dataset is absent."""
        out = []
        for claim in claims_of(NAME):
            table = claim.id.split(".")[0]
            tr = self.tables[table]
            panel = next((p for p, _ in tr.panels if p.paper == claim.dataset), None)
            if panel is None:
                out.append(
                    gates.not_run(claim.id, "not in this profile's panels", profile=self.profile)
                )
                continue
            if panel.dataset is None:
                out.append(gates.not_run(claim.id, panel.note, profile=self.profile))
                continue
            runs = self.runs(table)
            mine = runs[runs["paper"] == claim.dataset] if len(runs) else runs
            cols = [*gates.required_columns(claim.id), "status"]  # diverged runs are counted
            v = gates.decide(
                claim.id,
                mine[cols],
                profile=self.profile,
                dataset=_dataset_name(panel, tr.settings),
                stand_in=_is_stand_in(panel),
            )
            out.append(v)
        return out


# ---------------------------------------------------------------------------------------------
# Batch norm: the per-sample Jacobian with the batch statistics held fixed
# ---------------------------------------------------------------------------------------------


def per_sample_reference(model: nn.Module, x: Tensor) -> Tensor:
    """``1/m sum_i ||J(x_i)||_F^2`` by brute force: a copy of ``model`` in eval mode whose
    running statistics are set to ``x``'s batch mean and (biased) variance, differentiated one
    sample at a time with :func:`torch.autograd.functional.jacobian` (softmax output)."""
    stats: dict[nn.Module, tuple[Tensor, Tensor]] = {}

    def hook(module: nn.Module, inp: tuple[Tensor, ...], _out: Tensor) -> None:
        z = inp[0].detach()
        dims = [0, *range(2, z.dim())]
        stats[module] = (z.mean(dims), z.var(dims, unbiased=False))

    bns = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    }
    handles = [m.register_forward_hook(hook) for m in bns.values()]
    frozen = copy.deepcopy(model).eval()  # before the forward pass: running stats untouched
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    copies = dict(frozen.named_modules())
    for name, orig in bns.items():
        copies[name].running_mean.copy_(stats[orig][0])
        copies[name].running_var.copy_(stats[orig][1])
    total = x.new_zeros(())
    for xi in x:
        jac = torch.autograd.functional.jacobian(
            lambda v: torch.softmax(frozen(v.unsqueeze(0)), -1).squeeze(0), xi
        )
        total = total + jac.pow(2).sum()
    return total / x.shape[0]


def bn_jacobian_check(seed: int = 0, batch: int = 8) -> pd.DataFrame:
    """``R_F`` (eq. 49, exact) of a tiny batch-normalized conv net in training mode, computed
    three ways: as the regularizer does it (batch statistics fixed), by brute force per sample
    (:func:`per_sample_reference`), and naively (autograd through the batch statistics)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    ).train()
    x = torch.rand(batch, 1, 6, 6)
    reference = float(per_sample_reference(net, x))
    fixed = float(logits_and_frobenius_sq(net, x, "exact", batch_norm="fixed")[1].mean().detach())
    coupled = float(
        logits_and_frobenius_sq(net, x, "exact", batch_norm="coupled")[1].mean().detach()
    )
    return pd.DataFrame(
        {
            "R_F": [fixed, reference, coupled],
            "relative difference to brute force": [
                abs(v - reference) / reference for v in (fixed, reference, coupled)
            ],
        },
        index=[
            "regularizer (batch statistics fixed)",
            "brute force per sample (torch.autograd.functional.jacobian)",
            "naive (gradient through the batch statistics)",
        ],
    )


# ---------------------------------------------------------------------------------------------
# Dry run (python -m jacnb.run convolutional --profile paper --dry-run; jacnb.lab.dryrun)
# ---------------------------------------------------------------------------------------------


def largest_factors(ts: Mapping[str, Any], select: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A stand-in for :func:`choose_lambdas` before any selection ran (what :func:`lookup`
    reads): every selection cell at the largest factor of its grid (a factor changes no step's
    shape, so the final grids of a dry run are the real ones)."""
    rows = []
    for c in select:
        grid = list(ts["lambdas"][c["regularizer"]])
        rows.append(
            {
                "dataset": c["dataset"],
                "regularizer": c["regularizer"],
                "n_train": c["n_train"],
                "lam": max(grid),
                "lam_grid": tuple(grid),
                "chosen_by_tie": False,
                "selection_seeds": (c["seed"],),
                "selection_steps": 0,
            }
        )
    return pd.DataFrame(rows).drop_duplicates(["dataset", "regularizer", "n_train"])


def dry_run(settings: Mapping[str, Any], device: torch.device) -> list[DryConfig]:
    """Every run of Tables II and III at ``settings`` as :mod:`jacnb.lab.dryrun` sees it: per
    panel that can run the selection grid and the final grid (:func:`select_configs`,
    :func:`final_configs`), each with its SGD steps (:func:`steps_of` on the samples it fits)
    and one training step of its net on a batch at the run's image size."""
    out = []
    for table in TABLES:
        ts = table_settings(settings, table)
        for panel, spec in plan_table(ts):
            if panel.dataset is None:
                continue
            select = select_configs(ts, table, panel.dataset, spec["n_train"])
            chosen = largest_factors(ts, select)
            final = final_configs(ts, table, panel.dataset, spec["n_train"], chosen)
            name = f"Table {TABLES[table].name}"
            out += [_dry_config(f"{name} selection", c) for c in select]
            out += [_dry_config(f"{name} final", c) for c in final]
    return out


def _dry_config(phase: str, c: Mapping[str, Any]) -> DryConfig:
    ds = get_dataset(c["dataset"])
    n = int(c["n_train"])
    n_fit = n - round(c["val_fraction"] * n) if "val_fraction" in c else n
    lam = float(c.get("lam", 0.0))
    side = c.get("image_size") or int(ds.x_train.shape[-1])
    with torch.device("meta"):  # the net's layers without its weights: batch norm or not
        probe = build_model(c, int(ds.x_train.shape[1]), side)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in probe.modules())
    reg = c["regularizer"] if lam > 0 else "none"
    if reg == "jacobian":
        reg = f"jacobian ({c['jr_method']})"

    def build(device: torch.device) -> Any:
        x, y = batch_of(ds, int(c["batch_size"]), torch.device("cpu"))
        x = resize_images(x, c.get("image_size"))
        model = build_model(c, int(x.shape[1]), int(x.shape[-1])).to(device)
        regularizer = regularizer_from_config(c) if lam > 0 else None
        return make_step(model, regularizer, x.to(device), y.to(device), lam, float(c["lr"]))

    shape = (c["model"], f"{ds.x_train.shape[1]}x{side}x{side}", f"batch {c['batch_size']}", reg)
    steps = steps_of(n_fit, int(c["batch_size"]), int(c["epochs"]), has_bn)
    return DryConfig(phase, ds.name, steps, shape, build, dict(c))
