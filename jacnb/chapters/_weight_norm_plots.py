"""Figures of the weight-normalization chapter (Sokolic et al. 2017, Fig. 4), with seaborn.

:func:`fig4` and :func:`bounds_vs_depth` draw what the paper plots, from the finished runs
(``split_ok``: a diverged run has no metrics to draw): means over seeds with their 95 %
Student-t intervals (:func:`jacnb.lab.plotting.t_errorbar`), a description of each
configuration. What decides the page's verdicts is drawn by :func:`fig4_trends` and
:func:`fig4_values`: each claim's per-cell statistic exactly as :func:`jacnb.lab.gates.cell_table`
computes it for the verdict from every run (per seed the least-squares slope of a metric against
depth or width; or the metric itself), against the claim's threshold, coloured by the cell's
outcome, with the diverged runs of each cell counted (:func:`jacnb.lab.plotting.cell_panel`).
Without runs a figure is a one-line note (:func:`jacnb.lab.plotting.note_figure`), never an
empty panel; the provenance line goes under every figure.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from jacnb.lab import gates
from jacnb.lab.claims import SLOPE, VALUE, Claim, claims_of
from jacnb.lab.plotting import cell_panel, note_figure, outcome_handles, stamp, t_errorbar

#: The page whose claims :func:`fig4_trends` and :func:`fig4_values` draw.
PAGE = "03_weight_norm"
#: How the cells of the page's claims are named in the panels.
KEY_FORMAT = {"depth": "L={}", "width_factor": "M={}x"}
#: Short names of the metrics the trend claims are about (panel titles).
METRIC_NAMES = {
    "test_acc": "test accuracy",
    "min_score": "smallest training score o(s_i)",
    "max_J_train": "max ||J(x)||_2, training set",
    "max_J_test": "max ||J(x)||_2, test set",
}
#: One step of the variable a trend runs along, for the slope's unit.
ALONG_STEP = {"depth": "layer", "width_factor": "+1x width"}


def _note(what: str, note: str | None, provenance: str | None) -> Figure:
    fig = note_figure(f"{what}: {note or 'no finished runs'}")
    stamp(fig, provenance)
    return fig


def fig4(runs: pd.DataFrame, provenance: str | None = None, note: str | None = None) -> Figure:
    """Fig. 4 (a)-(d) against the width ``M`` (in units of the input dimension), one line per
    depth L, mean and 95 % interval over the finished seeds: test accuracy, the smallest
    training score (unit-norm scale; right axis: the printed √2 scale the paper plots, 2x), max
    ``||J(x)||_2`` on the training and on the test set. Without runs: a note saying ``note``
    (why none ran)."""
    if runs.empty:
        return _note("Fig. 4", note, provenance)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        ("test_acc", 100, "(a) test accuracy [%]"),
        ("min_score", 1, "(b) smallest training score $o(s_i)$, unit scale"),
        ("max_J_train", 1, "(c) max $\\|J(x)\\|_2$, training set"),
        ("max_J_test", 1, "(d) max $\\|J(x)\\|_2$, test set"),
    ]
    data = runs.assign(L=runs["depth"].astype(str)) if len(runs) else runs
    for ax, (col, scale, title) in zip(axes.ravel(), panels, strict=True):
        ax.set_title(title, fontsize=10)
        sns.lineplot(
            data=data.assign(_y=data[col] * scale), x="width_factor", y="_y", hue="L",
            hue_order=sorted(data["L"].unique(), key=int),
            marker="o", errorbar=t_errorbar, err_style="bars", err_kws={"capsize": 3}, ax=ax,
        )
        ax.set(xlabel="width $M_l$ / input dimension", ylabel="")
        ax.set_xticks(sorted(data["width_factor"].unique()))
        ax.legend(title="L", fontsize=8)
    sec = axes[0, 1].secondary_yaxis("right", functions=(lambda y: 2 * y, lambda y: y / 2))
    sec.set_ylabel("printed $\\sqrt{2}(f_y-f_j)$ scale (2x)", fontsize=8)
    fig.suptitle("Fig. 4: weight-normalized fully connected nets (eq. 45); mean and 95 % "
                 "interval over seeds", fontsize=11)
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def bounds_vs_depth(
    runs: pd.DataFrame, provenance: str | None = None, note: str | None = None
) -> Figure:
    """Sec. VI-A2 discussion: (a) products of layer norms, (b) margin bounds beside the measured
    margin (medians over correctly classified training samples), against depth, per width; mean
    over the finished seeds. Without runs: a note saying ``note``."""
    if runs.empty:
        return _note("Margin bounds", note, provenance)
    fig, (ax_n, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = sns.color_palette()
    for i, (k, sel) in enumerate(runs.groupby("width_factor")):
        sel = sel.groupby("depth").mean(numeric_only=True).reset_index()
        c = colors[i % len(colors)]
        ax_n.plot(sel["depth"], sel["prod_spectral"], "o-", color=c,
                  label=f"$\\prod\\|W_l\\|_2$, M={k}x")
        ax_n.plot(sel["depth"], sel["prod_frobenius"], "s--", color=c,
                  label=f"$\\prod\\|W_l\\|_F$, M={k}x")
        for col, marker, ls, name in (
            ("measured_margin_median", "x", "-", "measured"),
            ("gamma_localJ_median", "o", "-", "$o/\\|J(x_i)\\|_2$ (eq. 34 proxy)"),
            ("gamma_supJ_median", "^", ":", "$o/\\max\\|J\\|_2$ (eq. 35 est.)"),
            ("gamma3_median", "s", "-.", "$\\gamma_3$ (eq. 36)"),
            ("gamma4_median", "d", "--", "$\\gamma_4$ (eq. 37)"),
        ):
            ax_m.plot(sel["depth"], sel[col], marker=marker, ls=ls, color=c,
                      label=f"{name}, M={k}x")
    ax_n.set(yscale="log", xlabel="number of layers L", ylabel="product of layer norms",
             title="(a) products of layer norms")
    ax_m.set(yscale="log", xlabel="number of layers L", ylabel="median over training samples",
             title="(b) margin bounds and measured margin")
    ax_n.legend(fontsize=7)
    ax_m.legend(fontsize=6, ncol=2)
    for ax in (ax_n, ax_m):
        ax.set_xticks(sorted(runs["depth"].unique()))
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def _claims_figure(
    rows: Sequence[Sequence[tuple[Claim, pd.DataFrame, str, str]]],
    title: str,
    provenance: str | None,
    notes: Sequence[str],
) -> Figure:
    """Rows of :func:`jacnb.lab.plotting.cell_panel` panels, two columns (a row of one panel
    spans both); each entry ``(claim, cells, title, ylabel)``; the outcome legend above them,
    ``title`` as its title."""
    fig = plt.figure(figsize=(8.0, 2.45 * len(rows) + 0.9), layout="constrained")
    grid = fig.add_gridspec(len(rows), 2)
    letters = iter("abcdefghijklmnop")
    for i, row in enumerate(rows):
        for j, (claim, cells, name, ylabel) in enumerate(row):
            ax = fig.add_subplot(grid[i, j] if len(row) > 1 else grid[i, :])
            cell_panel(ax, claim, cells, key_format=KEY_FORMAT, ylabel=ylabel)
            head = textwrap.fill(f"({next(letters)}) {name}", 48)
            ax.set_title(f"{head}\n{claim.id}", fontsize=8)
    fig.legend(handles=outcome_handles(), loc="outside upper center", ncol=4, fontsize=8,
               frameon=False, title=title, title_fontsize=10)
    stamp(fig, "; ".join([*notes, *([provenance] if provenance else [])]) or None)
    return fig


def _page_cells(runs: pd.DataFrame, kind: str) -> tuple[list[tuple[Claim, pd.DataFrame]], list]:
    """``(claim, gates.cell_table(claim, runs))`` for each claim of the page of statistic
    ``kind`` that has cells, and a caption note for each that has none."""
    out, notes = [], []
    for claim in claims_of(PAGE):
        if claim.statistic.kind != kind:
            continue
        cells = gates.cell_table(claim.id, runs)
        if cells.empty:
            notes.append(f"{claim.id} not drawn: no cell at this profile")
        else:
            out.append((claim, cells))
    return out, notes


def fig4_trends(
    runs: pd.DataFrame, provenance: str | None = None, note: str | None = None
) -> Figure:
    """What decided Fig. 4's trend claims: per claim (rows: the metric; columns: the slope along
    depth, along width) the mean per-seed least-squares slope per cell with its t-interval, the
    threshold 0, the cell's outcome and diverged runs (``runs``: the tidy runs frame, every
    status). Without runs: a note saying ``note``."""
    if runs.empty:
        return _note("Fig. 4 trends", note, provenance)
    drawn, notes = _page_cells(runs, SLOPE)
    rows: dict[str, list[tuple[Claim, pd.DataFrame, str, str]]] = {}
    for claim, cells in drawn:
        st = claim.statistic
        along = "L" if st.along == "depth" else "M"
        step = ALONG_STEP.get(str(st.along), "step")
        unit = st.unit.replace("step", step) if st.unit else f"per {step}"
        name = f"{METRIC_NAMES.get(st.metric, st.metric)} against {along}"
        rows.setdefault(st.metric, []).append((claim, cells, name, f"slope [{unit}]"))
    for row in rows.values():
        row.sort(key=lambda e: e[0].statistic.along != "depth")
    return _claims_figure(
        list(rows.values()),
        "Fig. 4, what decided the trends: per-seed slope, mean and 95 % t-interval per cell",
        provenance,
        notes,
    )


def fig4_values(
    runs: pd.DataFrame, provenance: str | None = None, note: str | None = None
) -> Figure:
    """What decided the page's claims on a value per net (training fit, spectral norms, the
    smallest score near √2, spectral over Frobenius norm): per claim the mean per (depth, width)
    cell with its t-interval against the claim's threshold, the cell's outcome and diverged runs
    (``runs``: the tidy runs frame with ``spec_frob_ratio``, every status). Without runs: a note
    saying ``note``."""
    if runs.empty:
        return _note("Fig. 4 values", note, provenance)
    drawn, notes = _page_cells(runs, VALUE)
    entries = [
        (claim, cells,
         claim.statistic.description + (" [%]" if claim.statistic.metric.endswith("_acc") else ""),
         "")
        for claim, cells in drawn
    ]
    return _claims_figure(
        [[e] for e in entries],  # one per row: a value claim has a cell per (depth, width)
        "Fig. 4, what decided the value claims: mean and 95 % t-interval per cell",
        provenance,
        notes,
    )
