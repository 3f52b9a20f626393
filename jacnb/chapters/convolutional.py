"""Experiments of the convolutional chapter (Sokolic et al. 2017, Sec. VI-B, Tables II and III).

* **Table II** (Sec. VI-B1): the 4-layer conv net of :func:`jacnb.core.models.mnist_convnet`
  ((32,5,5)-conv, 2x2 max-pool, (32,5,5)-conv, 2x2 max-pool, softmax layer; ReLU) trained with
  weight decay ``sum_l ||W_l||_F^2`` or with the Jacobian regularizer ``R_F`` of eq. (49) on
  MNIST and LaRED ("same subject" and "different subject" test sets,
  :func:`jacnb.core.data.load_lared`).
  "The training procedure follows" Sec. VI-A1: SGD with momentum 0.9, batch 128, learning rate
  0.01 divided by 10 every 40 epochs, 120 epochs, factors chosen on a validation set.
* **Table III** (Sec. VI-B2): All-CNN-C (:func:`jacnb.core.models.all_cnn_c`; every conv batch
  normalized, the softmax layer weight normalized, eq. 45) on CIFAR-10, plain ("Batch norm.")
  vs ``+ R_F`` (eq. 49); SGD momentum 0.9, batch 64, learning rate 0.1 divided by 10 every 25
  epochs, 75 epochs. Batch norm couples the samples of a batch; the penalty takes ``J(x_i)``
  per sample with the batch statistics held fixed
  (:func:`jacnb.core.jacobian.fixed_batch_statistics`, checked by :func:`bn_jacobian_check`).

The regularization factors are chosen as in the fully connected chapter and with its code
(:func:`jacnb.chapters.fully_connected.choose_lambdas`,
:func:`~jacnb.chapters.fully_connected.lookup_lambda`): each
factor of a grid is trained on ``1 - val_fraction`` of a drawn training set and scored on the
held-out rest; the test sets are never read for the choice. Every run is one config dict that
goes through :func:`jacnb.lab.store.run_grid`, so nothing is trained twice and a killed grid
resumes. The notebook ``04_convolutional`` only calls into this module.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from jacnb.chapters import fully_connected as fx
from jacnb.chapters.fully_connected import NOT_REPRODUCED, NOT_TESTED, REPRODUCED
from jacnb.core import models
from jacnb.core.data import balanced_subset, resize_images, train_val_split
from jacnb.core.jacobian import logits_and_frobenius_sq
from jacnb.core.regularizers import regularizer_from_config
from jacnb.core.train import (
    TRAIN_KEYS,
    NonFiniteLossError,
    accuracy,
    pick_device,
    train,
    train_config,
)
from jacnb.lab import paper
from jacnb.lab.datasets import Panel, get_dataset, not_run, plan_panels
from jacnb.lab.settings import provenance
from jacnb.lab.store import ResultStore, run_grid
from jacnb.lab.verdicts import Verdict, from_row, slug


@dataclass(frozen=True)
class Table:
    """What distinguishes the two tables: the net, the compared regularizers, the grids."""

    name: str
    model: str
    #: weight layers of the net; the ``depth`` key the factor lookup of fc_experiments groups by
    depth: int
    #: regularizer -> the paper's column label; the first is the baseline
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


def table_settings(settings: Mapping[str, Any], table: str) -> dict[str, Any]:
    """The block ``settings[table]`` of a ``convolutional`` profile, with its ``profile``."""
    return {**copy.deepcopy(dict(settings[table])), "profile": settings["profile"]}


def plan_table(ts: Mapping[str, Any]) -> list[tuple[Panel, dict[str, Any]]]:
    """Resolve every panel spec of a table against the disk: ``[(panel, spec)]``.

    A spec ``{"paper", "dataset", "fallbacks", "n_train"}`` runs ``dataset`` if it loads, else
    the first fallback that does, labelled "X (stand-in for Y)" by
    :func:`jacnb.chapters.fully_connected.plan_panels`, else it is "not run: dataset absent". LaRED
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


def _fit(
    config: Mapping[str, Any], x: Tensor, y: Tensor, evals: Mapping[str, tuple[Tensor, Tensor]]
) -> dict[str, Any]:
    """Train the run's net on ``(x, y)``; accuracy on every set of ``evals`` (``<name>_acc``).

    A non-finite loss stops the run; it is recorded with NaN accuracies and the message.
    """
    model = build_model(config, int(x.shape[1]), int(x.shape[-1]))
    cfg = train_config(config, eval_every=config["epochs"])  # evaluate once, at the end
    try:
        res = train(model, x, y, cfg, regularizer=regularizer_from_config(config))
    except NonFiniteLossError as err:
        nan = float("nan")
        out = {f"{name}_acc": nan for name in evals}
        return {
            **out,
            "train_acc": nan,
            "final_loss": nan,
            "seconds": nan,
            "device": str(pick_device()),
            "diverged": str(err),
        }
    out = {
        f"{name}_acc": accuracy(model, ex.to(res["device"]), ey.to(res["device"]))
        for name, (ex, ey) in evals.items()
    }
    return {
        **out,
        "train_acc": res["train_acc"],
        "final_loss": res["final_loss"],
        "seconds": res["seconds"],
        "device": res["device"],
        "diverged": "",
    }


def select_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One factor-selection run: train on ``1 - val_fraction`` of the drawn training set, score
    on the held-out rest (``val_acc``). Reads only the training split of the dataset."""
    x, y = train_split(config)
    x_fit, y_fit, x_val, y_val = train_val_split(x, y, config["val_fraction"], config["seed"])
    res = _fit(config, x_fit, y_fit, {"val": (x_val, y_val)})
    if res["diverged"]:
        res["val_acc"] = 0.0  # a diverging factor loses the selection
    return {**res, "n_fit": int(len(y_fit)), "n_val": int(len(y_val))}


def final_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """One final run: the drawn training set, test accuracy (and LaRED's other-subject one)."""
    x, y = train_split(config)
    return _fit(config, x, y, test_sets(config))


# ---------------------------------------------------------------------------------------------
# Grids
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


def select_configs(
    ts: Mapping[str, Any], table: str, dataset: str, n_train: Sequence[int]
) -> list[dict[str, Any]]:
    """Every ``(regularizer, size, factor, seed)`` of the selection grid of one panel: the
    regularizers of ``table`` whose factor is chosen, sizes ``ts["select_n_train"]`` (``None``:
    every training-set size ``n_train`` of the panel)."""
    t = TABLES[table]
    sizes = ts.get("select_n_train") or list(n_train)
    return [
        {
            "experiment": t.exp_select,
            **_base(ts, t, dataset),
            "regularizer": reg,
            "n_train": n,
            "lam": lam,
            "seed": seed,
            "val_fraction": ts["val_fraction"],
        }
        for reg in t.selected
        for n in sizes
        for lam in ts["lambdas"][reg]
        for seed in ts["select_seeds"]
    ]


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
            "lam": (
                fx.lookup_lambda(chosen, dataset, reg, t.depth, n) if reg in t.selected else 0.0
            ),
            "seed": seed,
            "n_test": ts.get("n_test"),
        }
        for reg in t.regularizers
        for n in n_train
        for seed in ts["seeds"]
    ]


def run_panel(
    ts: Mapping[str, Any],
    table: str,
    panel: Panel,
    spec: Mapping[str, Any],
    store: ResultStore | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Selection grid, factor choice, final grid of one panel: ``(select, chosen, final)``."""
    if panel.dataset is None:
        raise ValueError(f"panel {panel.label!r} is not run: {panel.note}")
    desc = f"Table {TABLES[table].name} {panel.paper}"
    configs = select_configs(ts, table, panel.dataset, spec["n_train"])
    select = run_grid(configs, select_run, store, desc=f"{desc}: select lambda")
    chosen = fx.choose_lambdas(select)  # refuses a frame with test-set columns
    finals = final_configs(ts, table, panel.dataset, spec["n_train"], chosen)
    final = run_grid(finals, final_run, store, desc=desc)
    return select, chosen, final


def run_table(
    ts: Mapping[str, Any], table: str, store: ResultStore | None = None
) -> dict[str, Any]:
    """Every panel of a table that can run: ``{"panels", "select", "chosen", "final"}``."""
    planned = plan_table(ts)
    parts: list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]] = []
    for panel, spec in planned:
        if panel.dataset is not None:
            parts.append(run_panel(ts, table, panel, spec, store))

    def cat(i: int) -> pd.DataFrame:
        frames = [p[i] for p in parts]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return {"panels": planned, "select": cat(0), "chosen": cat(1), "final": cat(2)}


def panels_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """What each panel of a table runs: the paper's dataset, ours (label), sizes, source."""
    return pd.DataFrame(
        [
            {
                "paper": p.paper,
                "runs": p.label,
                "dataset": p.dataset or "-",
                "n_train": spec["n_train"],
                "source": p.note,
            }
            for p, spec in result["panels"]
        ]
    )


def provenance_line(ts: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    """:func:`jacnb.lab.settings.provenance` of a table: what ran, sizes per panel, the factor
    grids."""
    ran = [p for p, _ in result["panels"] if p.dataset is not None]
    sizes = {p.paper: spec["n_train"] for p, spec in result["panels"] if p.dataset is not None}
    return provenance(
        ts,
        " + ".join(p.label for p in ran) or "none",
        n_train=sizes,
        batch=ts["batch_size"],
        lr=f"{ts['lr']} /10 every {ts['lr_drop_every']}",
        jr=f"{ts['jr_method']} R_F",
        lambdas=ts["lambdas"],
        selected_at=ts.get("select_n_train") or "every size",
        val_fraction=ts["val_fraction"],
    )


# ---------------------------------------------------------------------------------------------
# Tables beside the paper's
# ---------------------------------------------------------------------------------------------


def _columns(paper_name: str) -> list[tuple[str, str]]:
    """The test sets of a panel: ``(the paper's column, our record's accuracy key)``."""
    if paper_name == "LaRED":
        return [
            ("LaRED (same subject)", "test_acc"),
            ("LaRED (different subject)", "test_other_acc"),
        ]
    return [(paper_name, "test_acc")]


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


def long_summary(result: Mapping[str, Any]) -> pd.DataFrame:
    """Our final runs as one row per (test-set column, regularizer, size): mean, sd and count
    of the accuracy over seeds (fractions), with the chosen factor. Columns as in
    :func:`jacnb.chapters.fully_connected.summarize` (``test_acc``, ``test_acc_std``, ...), plus
    ``column`` (the paper's column), ``panel`` (what ran), ``gap`` (train - test accuracy)."""
    rows = []
    final = result["final"]
    for panel, _spec in result["panels"]:
        if panel.dataset is None or final.empty:
            continue
        sub = final[final["dataset"] == panel.dataset].copy()
        for column, metric in _columns(panel.paper):
            if metric not in sub:
                continue
            sub["_acc"] = sub[metric]
            sub["_gap"] = sub["train_acc"] - sub[metric]
            s = fx.summarize(
                sub, ["dataset", "regularizer", "depth", "n_train", "lam"], ["_acc", "_gap"]
            )
            s = s.rename(columns=lambda c: c.replace("_acc", "test_acc").replace("_gap", "gap"))
            s.insert(0, "column", column)
            s.insert(1, "panel", panel.label)
            rows.append(s)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _pm(mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f}" if math.isfinite(sd) else "")


def comparison(result: Mapping[str, Any], table: str) -> pd.DataFrame:
    """The paper's table beside ours, one row per (column, training-set size) of either.

    Paper cells are labelled "paper", ours "ours" (mean ± sd over seeds, %). A size the
    profile does not run shows "not run at this profile"; a panel whose dataset is absent says
    so; the difference columns are JR minus the baseline in accuracy points.
    """
    t = TABLES[table]
    base, treat = list(t.regularizers)
    ours = long_summary(result)
    ref = _paper_frame(table)
    rows = []
    for panel, spec in result["panels"]:
        for column, _metric in _columns(panel.paper):
            sizes = sorted(set(ref.loc[ref["column"] == column, "n_train"]) | set(spec["n_train"]))
            for n in sizes:
                row: dict[str, Any] = {"column": column, "n_train": n}
                p = ref[(ref["column"] == column) & (ref["n_train"] == n)].set_index("regularizer")
                for reg, label in t.regularizers.items():
                    row[f"paper: {label}"] = (
                        f"{p.loc[reg, 'accuracy']:.2f}" if reg in p.index else "-"
                    )
                row["paper: diff"] = (
                    round(p.loc[treat, "accuracy"] - p.loc[base, "accuracy"], 2)
                    if len(p) == 2
                    else np.nan
                )
                row["ours: dataset"] = panel.label
                o = (
                    ours[(ours["column"] == column) & (ours["n_train"] == n)].set_index(
                        "regularizer"
                    )
                    if len(ours)
                    else pd.DataFrame()
                )
                for reg, label in t.regularizers.items():
                    if panel.dataset is None:
                        cell = panel.note
                    elif reg in o.index:
                        cell = _pm(o.loc[reg, "test_acc"], o.loc[reg, "test_acc_std"])
                    else:
                        cell = "not run at this profile"
                    row[f"ours: {label}"] = cell
                row["ours: diff"] = (
                    round(100 * (o.loc[treat, "test_acc"] - o.loc[base, "test_acc"]), 2)
                    if len(o) == 2
                    else np.nan
                )
                row["ours: chosen lambda"] = (
                    ", ".join(f"{r}={o.loc[r, 'lam']:g}" for r in t.selected if r in o.index)
                    if len(o)
                    else ""
                )
                rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------


def paired_differences(
    summary: pd.DataFrame, base: str, treat: str, metric: str = "test_acc"
) -> pd.DataFrame:
    """Per training-set size: ``treat - base`` of the seed means of ``metric`` and its standard
    error (NaN with one seed). ``summary``: one column's rows of :func:`long_summary`."""
    wide = summary.pivot_table(
        index="n_train",
        columns="regularizer",
        values=[metric, f"{metric}_std", f"{metric}_count"],
        dropna=False,
    )
    diff = wide[metric][treat] - wide[metric][base]
    se = np.sqrt(
        wide[f"{metric}_std"][treat] ** 2 / wide[f"{metric}_count"][treat]
        + wide[f"{metric}_std"][base] ** 2 / wide[f"{metric}_count"][base]
    )
    return pd.DataFrame({"diff": diff, "se": se}).sort_index()


def _for_fx(summary: pd.DataFrame) -> pd.DataFrame:
    """A :func:`long_summary` slice in the shape :func:`fx.verdict_jr_beats_wd` reads."""
    return summary[
        ["dataset", "regularizer", "depth", "n_train", "test_acc", "test_acc_std", "test_acc_count"]
    ]


def verdict_gap_largest_at_smallest(
    diffs: pd.DataFrame, claim: str = "JR's advantage is largest at the smallest training set"
) -> dict[str, Any]:
    """Sec. VI-B1: "This is most obvious at smaller training set sizes". Reproduced iff the
    JR - baseline difference at the smallest size exceeds the one at every larger size."""
    if len(diffs) < 2:
        return {"claim": claim, "verdict": NOT_TESTED, "evidence": "needs two or more sizes"}
    d = diffs["diff"]
    ok = bool((d.iloc[0] > d.iloc[1:]).all())
    text = ", ".join(f"{n}: {100 * v:+.2f}" for n, v in d.items())
    return {
        "claim": claim,
        "verdict": REPRODUCED if ok else NOT_REPRODUCED,
        "evidence": f"JR - baseline [points] by size: {text}",
    }


def verdict_treat_wins(
    diffs: pd.DataFrame, claim: str, what: str = "accuracy", higher_is_better: bool = True
) -> dict[str, Any]:
    """Reproduced iff the treatment is better than the baseline at every size; the evidence
    counts the differences beyond two standard errors."""
    if diffs.empty:
        return {"claim": claim, "verdict": NOT_TESTED, "evidence": "no runs"}
    sign = 1 if higher_is_better else -1
    d, se = sign * diffs["diff"], diffs["se"]
    wins, clear = int((d > 0).sum()), int((d > 2 * se).sum())
    losses = int((d < -2 * se).sum())
    text = ", ".join(f"{n}: {100 * v:+.2f}" for n, v in diffs["diff"].items())
    evidence = (
        f"JR better in {wins}/{len(d)} sizes ({clear} by > 2 s.e., worse by > 2 s.e. in "
        f"{losses}); JR - baseline {what} [points]: {text}"
    )
    if se.isna().any():
        evidence += "; one seed, so no standard errors"
    return {
        "claim": claim,
        "verdict": REPRODUCED if wins == len(d) else NOT_REPRODUCED,
        "evidence": evidence,
    }


def _on_paper(table: str, column: str, check: Any, metric: str) -> str:
    """The same check applied to the paper's own numbers of that column."""
    if metric != "test_acc":
        return "not given (the paper prints test accuracy only)"
    ref = _paper_frame(table)
    ref = ref[ref["column"] == column]
    if ref.empty:
        return ""
    base, treat = list(TABLES[table].regularizers)
    w = ref.pivot_table(index="n_train", columns="regularizer", values="accuracy") / 100
    diffs = pd.DataFrame({"diff": w[treat] - w[base], "se": np.nan}).sort_index()
    return check(diffs)["verdict"]


def _every_size(diffs: pd.DataFrame) -> dict[str, Any]:
    return verdict_treat_wins(diffs, "")


def _smaller_gap(diffs: pd.DataFrame) -> dict[str, Any]:
    return verdict_treat_wins(diffs, "", what="gap", higher_is_better=False)


#: The claims of Sec. VI-B: ``(claim, check on paired differences, metric)`` per table.
CLAIMS: dict[str, list[tuple[str, Any, str]]] = {
    "table2": [
        ("JR beats weight decay in every cell", _every_size, "test_acc"),
        (
            "JR's advantage is largest at the smallest training set",
            verdict_gap_largest_at_smallest,
            "test_acc",
        ),
    ],
    "table3": [
        (
            "JR helps the batch-normalized net (higher test accuracy at every size)",
            _every_size,
            "test_acc",
        ),
        (
            "JR gives a smaller generalization gap (train - test accuracy) at every size",
            _smaller_gap,
            "gap",
        ),
    ],
}


def verdicts(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The claims of Sec. VI-B (:data:`CLAIMS`), per column of Tables II and III.

    ``results``: ``{"table2": run_table(...), "table3": run_table(...)}`` (either may be
    missing). "JR beats weight decay in every cell" is
    :func:`jacnb.chapters.fully_connected.verdict_jr_beats_wd`. Column ``paper's own table``
    applies the
    same test to the paper's numbers. ``tested on`` names what ran (a stand-in as such); the
    evidence states the sizes; an absent dataset gives "not tested at this scale" and why.
    """
    rows = []
    for table, result in results.items():
        t = TABLES[table]
        base, treat = list(t.regularizers)
        summary = long_summary(result)
        for panel, _spec in result["panels"]:
            for column, _ in _columns(panel.paper):
                sub = summary[summary["column"] == column] if len(summary) else summary
                for claim, check, metric in CLAIMS[table]:
                    if panel.dataset is None or sub.empty:
                        v = {"verdict": NOT_TESTED, "evidence": panel.note}
                    elif table == "table2" and check is _every_size:
                        v = fx.verdict_jr_beats_wd(_for_fx(sub))
                    else:
                        v = check(paired_differences(sub, base, treat, metric))
                    if panel.dataset is not None and not sub.empty:
                        v["evidence"] += (
                            f"; sizes {[int(n) for n in sorted(sub['n_train'].unique())]}"
                        )
                    rows.append(
                        {
                            "table": t.name,
                            "column": column,
                            "tested on": panel.label if panel.dataset else "-",
                            "claim": claim,
                            "verdict": v["verdict"],
                            "evidence": v["evidence"],
                            "paper's own table": _on_paper(table, column, check, metric),
                        }
                    )
    return pd.DataFrame(rows)


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


def cost_tables(
    results: Mapping[str, Mapping[str, pd.DataFrame]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Cost section's two tables from ``{"Table II": r2, "Table III": r3}`` (each with
    ``select``/``final`` frames of stored runs): runs and training minutes per table and phase,
    and seconds per final run by configuration. Tables that did not run contribute nothing; with
    none run both frames are empty (the page then says so instead of failing)."""
    rows = []
    finals = []
    for name, r in results.items():
        for phase in ("select", "final"):
            f = r[phase]
            if not len(f):
                continue
            diverged = f["diverged"] if "diverged" in f else pd.Series("", index=f.index)
            rows.append(
                {
                    "table": name,
                    "phase": phase,
                    "runs": len(f),
                    "training minutes": round(f["seconds"].sum() / 60, 2),
                    "diverged runs": int((diverged.fillna("") != "").sum()),
                }
            )
        if len(r["final"]):
            finals.append(r["final"])
    per_config = pd.DataFrame()
    if finals:
        per_config = (
            pd.concat(finals, ignore_index=True)
            .pivot_table(
                index=["table", "dataset", "n_train"], columns="regularizer", values="seconds"
            )
            .round(1)
        )
    return pd.DataFrame(rows), per_config


def verdict_records(
    results: Mapping[str, Mapping[str, Any]], profile: str = ""
) -> list[Verdict]:
    """:func:`verdicts` as :class:`~jacnb.lab.verdicts.Verdict` records (same decisions); claim
    ids ``table2.<claim>`` / ``table3.<claim>``, the column named in the evidence."""
    out = []
    for row in verdicts(results).to_dict("records"):
        table = "table2" if row["table"] == TABLES["table2"].name else "table3"
        v = from_row(
            {**row, "claim": f"{row['column']}: {row['claim']}"},
            f"{table}.{slug(row['claim'])}",
            dataset=row["tested on"] if row["tested on"] != "-" else "",
            profile=profile,
        )
        out.append(v)
    return out
