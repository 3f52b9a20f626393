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

Factor selection: every factor of a grid is trained on a drawn training set and
scored on held-out training data (``n_val`` further samples of the training split, or
``val_fraction`` of the drawn set; :func:`jacnb.lab.pipeline.selection_split`), with the seeds
:func:`jacnb.lab.gates.selection_seeds` gives (disjoint from the final seeds); the test sets
are never read for the choice. A final run uses the factor chosen at the nearest selected size
(:func:`jacnb.lab.pipeline.nearest_choice`) and the runs frame records ``lam``, ``lam_grid``,
``chosen_by_tie``, ``selection_seeds`` and ``selection_steps``. Every run is one config dict
that goes through :func:`jacnb.lab.store.run_grid`, so nothing is trained twice and a killed
grid resumes.

Chapter interface: :data:`NAME`, :func:`settings`, :func:`configs`, :func:`run`
-> :class:`ConvolutionalResult` (``frames``, ``figures``, ``paper_table``, ``verdicts``). The
verdicts come only from :func:`jacnb.lab.gates.decide` on the tidy runs frame
(:meth:`ConvolutionalResult.runs`, through :func:`jacnb.lab.pipeline.decide_panel`) or
:func:`jacnb.lab.gates.not_run`. The notebook ``04_convolutional`` only calls into this module.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from jacnb.core import models
from jacnb.core.data import balanced_subset, resize_images
from jacnb.core.jacobian import logits_and_frobenius_sq
from jacnb.core.regularizers import regularizer_from_config
from jacnb.core.train import TRAIN_KEYS, evaluate, pick_device, train, train_config
from jacnb.lab import gates, paper
from jacnb.lab import settings as lab_settings
from jacnb.lab.claims import Claim, claims_of
from jacnb.lab.datasets import Panel, dataset_label, get_dataset, plan_panel
from jacnb.lab.dryrun import DryConfig, batch_of
from jacnb.lab.pipeline import (
    assemble_verdicts,
    choice_provenance,
    decide_panel,
    nearest_choice,
    selection_split,
    sgd_steps,
    validation_keys,
)
from jacnb.lab.records import RunStatus, diverged_record, is_ok, run_or_diverged, split_ok
from jacnb.lab.selection import VAL_METRICS
from jacnb.lab.selection import choose_lambdas as choose
from jacnb.lab.settings import ABSENT
from jacnb.lab.store import FRACTION, ResultSchema, ResultStore, run_grid
from jacnb.lab.tables import factor_list, percent_mean_sd
from jacnb.lab.timing import make_step
from jacnb.lab.verdicts import Verdict

NAME = "04_convolutional"


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

# ---------------------------------------------------------------------------------------------
# Settings and panels
# ---------------------------------------------------------------------------------------------


def _panel(paper: str, dataset: str, n_train: tuple[int, ...], stand_ins=()) -> dict[str, Any]:
    return {"paper": paper, "candidates": [dataset, *stand_ins], "n_train": n_train}


@dataclass(frozen=True)
class TableSettings:
    """One table's settings (defaults: Table II at ``cpu``).

    A panel runs the first of its ``candidates`` that is on disk (a stand-in labelled "X
    (stand-in for Y)"), else it says "not run: dataset absent". ``image_size``: inputs resized
    to this square side (``None``: native size). ``n_test``: class-balanced test subset
    (``None``: the whole test set). Factors are chosen on validation data with
    ``n_select_seeds`` seeds from :func:`jacnb.lab.gates.selection_seeds` (disjoint from
    ``seeds``) at the sizes ``select_n_train`` (``None``: every size); ``n_val`` validation
    samples are drawn from the rest of the training split, else ``val_fraction`` of the drawn
    set is held out.

    ``cpu`` optimizer: the paper's (SGD, momentum 0.9, lr 0.01 for Table II and 0.1 for Table
    III, /10 drops), compressed: Table II /10 every 5 of 10 epochs (the paper's second drop falls
    at the end of the run; a first try with drops after epochs 4 and 8 left 2 of 12 nets at
    98.9 % training accuracy), Table III every 2 of 6; batch 16 (paper 128) so that Table II's
    runs, selection runs included, take >= 400 SGD steps. Chosen on training accuracy and step
    counts, never on test accuracy.
    """

    panels: tuple[dict[str, Any], ...] = (
        _panel("MNIST", "mnist-10k", (1000, 2500)),
        _panel("LaRED", "lared", (2000, 5000)),
    )
    image_size: int | None = None
    n_test: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 10
    lr: float = 0.01
    lr_drop_every: int = 5
    batch_size: int = 16
    momentum: float = 0.9
    lambdas: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "weight_decay": (0.0, 0.0001, 0.001, 0.01),
            "jacobian": (0.001, 0.01, 0.1, 1.0),
        }
    )
    select_n_train: tuple[int, ...] | None = (1000,)
    n_select_seeds: int = 1
    n_val: Any = 2000
    val_fraction: Any = ABSENT
    jr_method: str = "projection"
    n_proj: int = 1


_TABLE2 = TableSettings()
_TABLE3 = replace(
    _TABLE2,
    panels=(_panel("CIFAR-10", "cifar10", (100, 200), ("fashion-mnist", "digits")),),
    image_size=16,
    n_test=500,
    seeds=(0, 1),
    epochs=6,
    lr=0.1,
    lr_drop_every=2,
    batch_size=32,
    lambdas={"jacobian": (0.001, 0.01, 0.1)},
    select_n_train=(100,),
    n_val=ABSENT,
    val_fraction=0.3,
)


@dataclass(frozen=True)
class Settings:
    """Tables II and III at the ``cpu`` profile (:data:`OVERRIDES`: the other profiles'
    changes); one :class:`TableSettings` block per table."""

    datasets: tuple[str, ...] = ("mnist-10k", "lared", "cifar10", "fashion-mnist", "digits")
    table2: TableSettings = _TABLE2
    table3: TableSettings = _TABLE3


_SMOKE = dict(seeds=(0, 1), lr=0.05, batch_size=64, n_val=ABSENT, val_fraction=0.2)
_PAPER = dict(select_n_train=None, n_val=ABSENT, val_fraction=0.2, jr_method="exact")
OVERRIDES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        datasets=("digits", "lared", "cifar10"),
        table2=replace(
            _TABLE2,
            **_SMOKE,
            panels=(_panel("MNIST", "digits", (200, 400)), _panel("LaRED", "lared", (200, 400))),
            epochs=4,
            lr_drop_every=2,
            lambdas={"weight_decay": (0.0001, 0.001, 0.01), "jacobian": (0.01, 0.1, 1.0)},
            select_n_train=(200,),
        ),
        table3=replace(
            _TABLE3,
            **{**_SMOKE, "lr": 0.1},
            panels=(_panel("CIFAR-10", "cifar10", (50, 100), ("fashion-mnist", "digits")),),
            n_test=100,
            epochs=1,
            lr_drop_every=1,
            lambdas={"jacobian": (0.01, 0.1, 1.0)},
            select_n_train=(50,),
        ),
    ),
    "paper": dict(
        datasets=("mnist", "lared", "cifar10"),
        table2=replace(
            _TABLE2,
            **_PAPER,
            panels=(
                _panel("MNIST", "mnist", (1000, 5000, 20000, 50000)),
                _panel("LaRED", "lared", (2000, 5000, 10000, 50000)),
            ),
            seeds=(0, 1, 2, 3, 4),
            epochs=120,
            lr_drop_every=40,
            batch_size=128,
            lambdas={
                "weight_decay": (0.0, 1e-05, 0.0001, 0.001, 0.01, 0.1),
                "jacobian": (0.0001, 0.001, 0.01, 0.1, 1.0),
            },
        ),
        table3=replace(
            _TABLE3,
            **_PAPER,
            panels=(_panel("CIFAR-10", "cifar10", (2500, 10000, 50000)),),
            image_size=None,
            n_test=None,
            seeds=(0, 1, 2),
            epochs=75,
            lr_drop_every=25,
            batch_size=64,
            lambdas={"jacobian": (0.0001, 0.001, 0.01, 0.1, 1.0)},
        ),
    ),
}


def settings(profile: str = "cpu") -> dict[str, Any]:
    """The chapter's settings at ``profile`` (:func:`jacnb.lab.settings.resolve`)."""
    return lab_settings.resolve(Settings(), OVERRIDES, profile)


def table_settings(settings: Mapping[str, Any], table: str) -> dict[str, Any]:
    """The block ``settings[table]`` of a ``convolutional`` profile, with its ``profile``."""
    return {**copy.deepcopy(dict(settings[table])), "profile": settings["profile"]}


def plan_table(ts: Mapping[str, Any]) -> list[tuple[Panel, dict[str, Any]]]:
    """Resolve every panel spec of a table against the disk: ``[(panel, spec)]``.

    A spec ``{"paper", "candidates", "n_train"}`` runs the first candidate on disk
    (:func:`jacnb.lab.datasets.plan_panel`: a stand-in labelled "X (stand-in for Y)"), else it is
    "not run: dataset absent". LaRED is never stood in for. Resized inputs say so in the label.
    """
    out = []
    side = ts.get("image_size")
    for spec in ts["panels"]:
        if spec["paper"] == "LaRED" and len(spec["candidates"]) > 1:
            raise ValueError("LaRED has no stand-in: its columns run LaRED or say 'not run'")
        panel = plan_panel(spec["paper"], spec["candidates"])
        if panel.ran and side and _native_side(str(panel.dataset)) != side:
            panel = Panel.running(
                panel.paper, str(panel.dataset), panel.note, label_note=f"resized to {side}x{side}"
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


def _fit(
    config: Mapping[str, Any], x: Tensor, y: Tensor, evals: Mapping[str, tuple[Tensor, Tensor]]
) -> dict[str, Any]:
    """Train the run's net on ``(x, y)``; accuracy and mean cross-entropy on every set of
    ``evals`` (``<name>_acc``, ``<name>_loss``), the SGD ``steps`` taken. A non-finite loss stops
    the run; it is stored as diverged (:func:`jacnb.lab.records.diverged_record`) with NaN metrics
    and the message."""
    model = build_model(config, int(x.shape[1]), int(x.shape[-1]))
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    steps = sgd_steps(len(y), config["batch_size"], config["epochs"], has_bn)
    cfg = train_config(config, evaluate_once=True)
    res = run_or_diverged(train, model, x, y, cfg, regularizer=regularizer_from_config(config))
    if isinstance(res, BaseException):
        nan = float("nan")
        out = {f"{name}_{m}": nan for name in evals for m in ("acc", "loss")}
        return diverged_record(
            res,
            **out,
            train_acc=nan,
            final_loss=nan,
            seconds=nan,
            steps=steps,
            device=str(pick_device()),
        )
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
    }


def selection_data(config: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_fit, y_fit, x_val, y_val)`` of a selection run, from the training split only
    (:func:`jacnb.lab.pipeline.selection_split`), at the run's image size."""
    side = config.get("image_size")
    return selection_split(
        get_dataset(config["dataset"]), config, lambda x: resize_images(x, side)
    )


def select_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One factor-selection run: train on the fit set of :func:`selection_data`, score on its
    held-out validation set (``val_acc``). Reads only the training split of the dataset."""
    x_fit, y_fit, x_val, y_val = selection_data(config)
    res = _fit(config, x_fit, y_fit, {"val": (x_val, y_val)})
    if RunStatus.of(res.get("status")) is RunStatus.DIVERGED:
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
            **validation_keys(ts, get_dataset(dataset).y_train, n),
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
    """The choice that the final runs of size ``n`` use
    (:func:`jacnb.lab.pipeline.nearest_choice`) and its provenance: ``lam``, ``selected_at``,
    ``lam_grid``, ``chosen_by_tie``, ``selection_seeds``, ``selection_steps``."""
    row = nearest_choice(chosen, n, dataset=dataset, regularizer=reg)
    prov = choice_provenance(row)
    return {
        **prov,
        "lam_grid": list(prov["lam_grid"]),
        "chosen_by_tie": bool(prov["chosen_by_tie"]),
        "selection_seeds": list(prov["selection_seeds"]),
        "selection_steps": int(prov["selection_steps"]),
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


def _dataset_name(panel: Panel, ts: Mapping[str, Any]) -> str:
    """What ran, without the stand-in suffix (:func:`jacnb.lab.gates.decide` adds it)."""
    assert panel.dataset is not None
    side = ts.get("image_size")
    resized = side and _native_side(panel.dataset) != side
    return dataset_label(panel.dataset) + (f", resized to {side}x{side}" if resized else "")


#: The two arms of a table's row as the paper-vs-ours table names them.
_ARM_NAMES = ("baseline", "+ JR")


def _paper_cells(t: Table, p: pd.Series) -> dict[str, Any]:
    """The paper's accuracy per arm at one (column, size) and the difference (points)."""
    base, treat = list(t.regularizers)
    arms = zip((base, treat), _ARM_NAMES, strict=True)
    out: dict[str, Any] = {f"paper: {arm}": p.get(reg, np.nan) for reg, arm in arms}
    out["paper: diff"] = round(p[treat] - p[base], 2) if len(p) == 2 else np.nan
    return out


def _our_cells(t: Table, panel: Panel, o: pd.DataFrame) -> dict[str, Any]:
    """Our cells at one (column, size) from its finished runs ``o``: the dataset as run, mean ±
    sd per arm (or why there is none), the mean paired difference (points), the chosen
    factors."""
    base, treat = list(t.regularizers)
    out: dict[str, Any] = {"ours: dataset": panel.label if panel.ran else panel.note}
    for reg, arm in zip((base, treat), _ARM_NAMES, strict=True):
        if not panel.ran:
            cell = "not run"
        elif len(o) == 0 or not (o["arm"] == reg).any():
            cell = "not run at this profile"
        else:
            cell = percent_mean_sd(o.loc[o["arm"] == reg, "test_acc"])
        out[f"ours: {arm}"] = cell
    diff = np.nan
    if len(o):
        w = o.pivot_table(index="seed", columns="arm", values="test_acc")
        if base in w and treat in w:
            d = (w[treat] - w[base]).dropna()
            diff = round(100 * d.mean(), 2) if len(d) else np.nan
    out["ours: diff"] = diff
    for reg, arm in zip((base, treat), _ARM_NAMES, strict=True):
        lam = o.loc[o["arm"] == reg, "lam"] if len(o) else pd.Series()
        out[f"ours: λ {arm}"] = f"{lam.iloc[0]:g}" if len(lam) and reg in t.selected else "-"
    return out


#: The columns of :func:`selection_frame`, in order (those a frame has).
_SELECTION_COLUMNS = (
    "dataset", "regularizer", "n_train", "lam", "seed", "val_acc", "train_acc", "steps",
    "status", "seconds",
)


def _run_row(
    t: Table, panel: Panel, test: tuple[str, str, str], r: pd.Series, sel: Mapping[str, Any]
) -> dict[str, Any]:
    """One row of :func:`table_runs`: final run ``r`` on one test set ``test`` = ``(column,
    test_set, metric)`` of ``panel``, with the provenance ``sel`` of its chosen factor."""
    column, test_set, metric = test
    test_acc = float(r.get(metric, np.nan))
    train_acc = float(r.get("train_acc", np.nan))
    return {
        "table": t.name,
        "paper": panel.paper,
        "column": column,
        "dataset": panel.dataset,
        "test_set": test_set,
        "seed": int(r["seed"]),
        "arm": r["regularizer"],
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
        "status": RunStatus.of(r.get("status")),
        "seconds": float(r.get("seconds", np.nan)),
    }


def _choice(tr: TableRun, dataset: str, r: pd.Series) -> dict[str, Any]:
    """The provenance of the factor final run ``r`` used (:func:`lookup`; ``{}`` for an arm
    whose factor is not chosen)."""
    if r["regularizer"] not in TABLES[tr.table].selected:
        return {}
    return lookup(tr.chosen, dataset, r["regularizer"], int(r["n_train"]))


def _panel_runs(tr: TableRun, panel: Panel) -> list[dict[str, Any]]:
    """The rows of :func:`table_runs` of one panel that ran: every final run on every test set
    of the panel (:func:`_columns`)."""
    t = TABLES[tr.table]
    dataset = str(panel.dataset)
    final = tr.final[tr.final["dataset"] == dataset]
    return [
        _run_row(t, panel, test, r, _choice(tr, dataset, r))
        for test in _columns(panel.paper)
        for _, r in final.iterrows()
    ]


def table_runs(tr: TableRun) -> pd.DataFrame:
    """The tidy runs frame of one table (:meth:`ConvolutionalResult.runs`)."""
    if tr.final.empty:
        return pd.DataFrame()
    rows = [row for panel, _ in tr.panels if panel.dataset is not None
            for row in _panel_runs(tr, panel)]
    return pd.DataFrame(rows)


def selection_frame(tr: TableRun) -> pd.DataFrame:
    """The selection runs of one table (:meth:`ConvolutionalResult.selection`)."""
    s = tr.select
    if s.empty:
        return pd.DataFrame()
    return s[[c for c in _SELECTION_COLUMNS if c in s.columns]].reset_index(drop=True)


def _lambda_row(t: Table, r: pd.Series) -> dict[str, Any]:
    """One row of :func:`lambda_table`: one factor choice ``r`` of :func:`choose_lambdas`."""
    row: dict[str, Any] = {
        "table": t.name,
        "dataset": r["dataset"],
        "regularizer": r["regularizer"],
        "n_train": int(r["n_train"]),
    }
    row.update({f"λ={lam:g}": round(100 * acc, 2) for lam, acc in sorted(r["grid"].items())})
    row.update(
        chosen=r["lam"],
        below_fit_competed=factor_list(r["unfit"]),
        tie_broken_by_val_loss=r["tie_broken_by_loss"],
        tie=r["chosen_by_tie"],
        selection_seeds=", ".join(str(s) for s in r["selection_seeds"]),
        selection_steps=r["selection_steps"],
    )
    return row


def lambda_table(tables: Mapping[str, TableRun]) -> pd.DataFrame:
    """The factor choice of every table (:meth:`ConvolutionalResult.lambda_table`), the factors'
    columns in increasing order after the first four."""
    rows = [_lambda_row(TABLES[table], r) for table, tr in tables.items()
            for _, r in tr.chosen.iterrows()]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    lam_cols = sorted((c for c in df.columns if c.startswith("λ=")), key=lambda c: float(c[2:]))
    rest = [c for c in df.columns if not c.startswith("λ=")]
    return df[rest[:4] + lam_cols + rest[4:]]


def _paper_rows(tr: TableRun, ok: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of :func:`paper_table` of one table: per panel, test set and training-set size
    that the paper or this profile has, the paper's cells beside ours (``ok``: finished runs)."""
    t = TABLES[tr.table]
    ref = _paper_frame(tr.table)
    rows = []
    for panel, spec in tr.panels:
        for column, _test_set, _metric in _columns(panel.paper):
            in_column = ref[ref["column"] == column]
            for n in sorted(set(in_column["n_train"]) | set(spec["n_train"])):
                p = in_column[in_column["n_train"] == n].set_index("regularizer")["accuracy"]
                o = ok[(ok["column"] == column) & (ok["n_train"] == n)] if len(ok) else ok
                rows.append(
                    {
                        "table": t.name,
                        "column": column,
                        "n_train": n,
                        "baseline": t.regularizers[list(t.regularizers)[0]],
                        **_paper_cells(t, p),
                        **_our_cells(t, panel, o),
                    }
                )
    return rows


def paper_table(tables: Mapping[str, TableRun]) -> pd.DataFrame:
    """Both tables beside the paper's (:meth:`ConvolutionalResult.paper_table`)."""
    rows = [row for tr in tables.values()
            for row in _paper_rows(tr, split_ok(table_runs(tr))[0])]
    return pd.DataFrame(rows)


def _phases(tr: TableRun) -> tuple[tuple[str, pd.DataFrame], ...]:
    """A table's stored runs by phase: ``("selection", ...), ("final", ...)``."""
    return (("selection", tr.select), ("final", tr.final))


def diverged_counts(tables: Mapping[str, TableRun]) -> dict[str, int]:
    """Runs stored as diverged per ``"<table> <phase>"`` (:meth:`ConvolutionalResult.diverged`)."""
    return {
        f"{table} {phase}": split_ok(f)[1]
        for table, tr in tables.items()
        for phase, f in _phases(tr)
    }


def cost_table(tables: Mapping[str, TableRun]) -> pd.DataFrame:
    """Runs, diverged runs and training minutes per table and phase (stored wall times)."""
    rows = [
        {
            "table": TABLES[table].name,
            "phase": phase,
            "runs": len(f),
            "diverged runs": split_ok(f)[1],
            "training minutes": round(float(f["seconds"].sum()) / 60, 2),
        }
        for table, tr in tables.items()
        for phase, f in _phases(tr)
        if len(f)
    ]
    return pd.DataFrame(rows)


def table_provenance(tr: TableRun) -> str:
    """The provenance line of a table: what ran, sizes per panel, grids, schedule, seeds."""
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


def _diff_ends(t: Table, ok: pd.DataFrame) -> dict[str, float]:
    """The mean paired difference [points] at the smallest and largest size of the first column
    of ``ok`` (finished runs), and those sizes (NaN where an arm is missing)."""
    out: dict[str, float] = {}
    for which in ("smallest", "largest"):
        out[f"diff_{which}"] = float("nan")
        out[f"n_{which}"] = float("nan")
    if not len(ok):
        return out
    base, treat = list(t.regularizers)
    first = ok[ok["column"] == ok["column"].iloc[0]]
    w = first.pivot_table(index=["n_train", "seed"], columns="arm", values="test_acc")
    if base in w and treat in w:
        d = (w[treat] - w[base]).groupby(level="n_train").mean()
        for which, n in (("smallest", d.index.min()), ("largest", d.index.max())):
            out[f"diff_{which}"] = round(100 * float(d[n]), 2)
            out[f"n_{which}"] = int(n)
    return out


def table_numbers(tr: TableRun, diverged: int) -> dict[str, float]:
    """One table's numbers of :meth:`ConvolutionalResult.numbers` (keys without the table's
    prefix); ``diverged``: its runs stored as diverged."""
    ok = split_ok(table_runs(tr))[0]
    out = _diff_ends(TABLES[tr.table], ok)
    out["min_train_acc"] = round(100 * float(ok["train_acc"].min()), 2) if len(ok) else float("nan")
    secs = sum(float(f["seconds"].sum()) for f in (tr.select, tr.final) if len(f))
    out["minutes"] = round(secs / 60, 1)
    out["diverged"] = diverged
    return out


def table_figures(tr: TableRun, profile: str) -> dict[str, Figure]:
    """One table's figures of :meth:`ConvolutionalResult.figures` (none if it did not run)."""
    from jacnb.chapters import _conv_plots

    t = TABLES[tr.table]
    runs = table_runs(tr)
    if runs.empty:
        return {}
    title = f"Table {t.name}: mean and 95 % CI over seeds ({profile} profile)"
    out = {
        f"Table {t.name}": _conv_plots.accuracy_figure(
            runs[is_ok(runs)], t.regularizers, title, table_provenance(tr)
        )
    }
    sel = selection_frame(tr)
    if len(sel):
        title = (
            f"Table {t.name}: choosing λ on validation data (selection seeds "
            f"{list(select_seeds(tr.settings))})"
        )
        out[f"Table {t.name}: λ"] = _conv_plots.selection_figure(sel, t.regularizers, title)
    return out


def settings_frame(tables: Mapping[str, TableRun]) -> pd.DataFrame:
    """Each table's settings (:meth:`ConvolutionalResult.settings_table`)."""
    return pd.DataFrame(
        {
            f"Table {TABLES[t].name}": {
                k: (", ".join(f"{r}: {v}" for r, v in val.items()) if k == "lambdas" else val)
                for k, val in tr.settings.items()
                if k != "panels"
            }
            for t, tr in tables.items()
        }
    ).astype(str)


@dataclass
class ConvolutionalResult:
    """Tables II and III as run at one profile (:func:`run`); its methods name what the page
    shows, the module-level functions above build it."""

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
        (a :class:`~jacnb.lab.records.RunStatus`; diverged rows are left out of means and
        tables and counted in the verdicts) and ``seconds``."""
        return table_runs(self.tables[table])

    def selection(self, table: str) -> pd.DataFrame:
        """The selection runs of ``table``: one row per (regularizer, size, factor, seed) with
        ``val_acc``, ``train_acc``, ``steps``, ``status``."""
        return selection_frame(self.tables[table])

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
        return diverged_counts(self.tables)

    # --- tables -----------------------------------------------------------------------------

    def lambda_table(self) -> pd.DataFrame:
        """The factor choice, one row per (table, dataset, regularizer, selection size), one
        column per factor of the grids (mean validation accuracy [%] over the selection seeds),
        then the chosen ``lam``, ``chosen_by_tie``, the selection seeds and steps."""
        return lambda_table(self.tables)

    def paper_table(self) -> pd.DataFrame:
        """Both tables: the paper's numbers (labelled "paper") beside ours (mean ± sd over the
        ``ok`` seeds, %), one row per (table, column, training-set size) of either; ``baseline``
        names the baseline arm (weight decay in Table II, batch norm alone in Table III); the
        ``diff`` columns are the treatment minus the baseline in points (ours: the mean paired
        difference). Sizes a profile does not run and absent datasets say so."""
        return paper_table(self.tables)

    def cost(self) -> pd.DataFrame:
        """Runs, diverged runs and training minutes per table and phase (stored wall times)."""
        return cost_table(self.tables)

    def provenance(self, table: str) -> str:
        """The provenance line of a table: what ran, sizes per panel, grids, schedule, seeds."""
        return table_provenance(self.tables[table])

    def numbers(self) -> dict[str, float]:
        """Measured numbers the page's prose quotes (``myst_nb.glue``), the same keys at every
        profile: per table, the mean paired difference [points] at the smallest and largest
        size of its first column, the lowest training accuracy [%] of the final runs, training
        minutes, and diverged runs."""
        diverged = self.diverged()
        out: dict[str, float] = {}
        for table, tr in self.tables.items():
            n = sum(v for k, v in diverged.items() if k.startswith(table))
            out.update({f"{table}_{k}": v for k, v in table_numbers(tr, n).items()})
        return out

    # --- figures ----------------------------------------------------------------------------

    def figures(self) -> dict[str, Figure]:
        """Per table that ran: test accuracy [%] against the training-set size, mean over seeds
        with its 95 % confidence interval, one panel per test set (seaborn); and the factor
        choice: mean validation accuracy against lambda per regularizer."""
        return {
            name: fig
            for tr in self.tables.values()
            for name, fig in table_figures(tr, self.profile).items()
        }

    def figure(self, name: str = "Table II") -> Figure:
        """One of :meth:`figures` by name (``"Table II"``, ``"Table III"``, ``"Table II: λ"``,
        ``"Table III: λ"``); a figure saying "not run" where that table did not run."""
        from jacnb.lab.plotting import pick_figure

        missing = f"{name}: not run at this profile (dataset absent)"
        return pick_figure(self.figures(), name, missing)

    def settings_table(self) -> pd.DataFrame:
        """Each table's settings at this profile (panels described by :meth:`paper_table`)."""
        return settings_frame(self.tables)

    # --- verdicts ---------------------------------------------------------------------------

    def verdicts(self) -> list[Verdict]:
        """One verdict per claim registered on this page: :func:`jacnb.lab.pipeline.decide_panel`
        on the rows of the claim's panel in :meth:`runs` -- the table whose panel is the claim's
        dataset -- diverged ones included (counted as each claim registers; a stand-in named as
        such), or
        :func:`jacnb.lab.gates.not_run` where the panel did not run or is not in the profile."""
        return assemble_verdicts(NAME, self._decider)

    def _panel_of(self, claim: Claim) -> tuple[str, Panel] | None:
        """The table and panel a claim is judged on: the panel of the claim's dataset."""
        for table, tr in self.tables.items():
            for panel, _spec in tr.panels:
                if panel.paper == claim.dataset:
                    return table, panel
        return None

    def _decider(self, claim: Claim):
        found = self._panel_of(claim)
        if found is None:
            return lambda c: gates.not_run(
                c.id, "not in this profile's panels", profile=self.profile
            )
        table, panel = found

        def decide(c: Claim) -> Verdict:
            runs = self.runs(table)
            mine = runs[runs["paper"] == c.dataset] if len(runs) else runs
            name = _dataset_name(panel, self.tables[table].settings) if panel.ran else None
            return decide_panel(
                c.id,
                mine,
                profile=self.profile,
                panel=panel,
                dataset=name,
                columns=gates.required_columns(c.id),
            )

        return decide


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
    :func:`final_configs`), each with its SGD steps (:func:`jacnb.lab.pipeline.sgd_steps` on
    the samples it fits) and one training step of its net on a batch at the run's image size."""
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
    steps = sgd_steps(n_fit, int(c["batch_size"]), int(c["epochs"]), has_bn)
    return DryConfig(phase, ds.name, steps, shape, build, dict(c))
