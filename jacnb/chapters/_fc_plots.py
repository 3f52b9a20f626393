"""Figures of the fully connected chapters (Sokolic et al. 2017, Figs. 3 and 4), with seaborn.

Every function takes a tidy runs frame (one row per finished run; the chapters leave diverged
runs out) and draws the mean over seeds with its 95 % Student-t interval
(:func:`t_errorbar`, the interval the verdicts use), in the book's
style (:mod:`jacnb.lab.plotting`); the provenance line goes under the figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from jacnb.lab.datasets import Panel
from jacnb.lab.plotting import show, stamp  # noqa: F401 - show: for the notebooks
from jacnb.lab.stats import t_interval


def t_errorbar(values: Sequence[float]) -> tuple[float, float]:
    """Seaborn ``errorbar=`` callable: the 95 % Student-t interval of the mean over seeds (the
    interval :mod:`jacnb.lab.gates` uses); the mean itself for a single seed."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        m = float(x.mean()) if x.size else float("nan")
        return m, m
    iv = t_interval(x, 0.95)
    return iv.low, iv.high


def fig3(
    runs: pd.DataFrame,
    panels: Sequence[Panel],
    labels: Mapping[str, str],
    provenance: str | None = None,
) -> Figure:
    """Fig. 3: test accuracy against the number of layers; colour = training-set size, solid =
    JR, dashed = weight decay (``labels``: legend label per regularizer, JR first); mean and
    95 % interval over seeds; one panel per dataset (a panel whose dataset is absent says so)."""
    dashes = dict(zip(labels.values(), ["", (4, 2)], strict=True))

    def runs_of(panel: Panel) -> pd.DataFrame | None:
        return runs[runs["dataset"] == panel.dataset] if panel.dataset and len(runs) else None

    # Only panels with runs are drawn (no empty panel); the others are named in the caption.
    drawn = [p for p in panels if runs_of(p) is not None and not runs_of(p).empty] or panels[:1]
    absent = [
        f"{p.label.split(':')[0]}: {p.note if p.dataset is None else 'no finished runs'}"
        for p in panels
        if p not in drawn
    ]
    fig, axes = plt.subplots(1, len(drawn), figsize=(6.5 * len(drawn), 4.8), squeeze=False)
    for ax, panel, letter in zip(axes[0], drawn, "abcdef", strict=False):
        ax.set_title(f"({letter}) {panel.label}", fontsize=10)
        sub = runs_of(panel)
        if sub is None or sub.empty:
            ax.text(0.5, 0.5, panel.note if panel.dataset is None else "no finished runs",
                    ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=9)
            ax.set_axis_off()
            continue
        data = sub.assign(
            **{
                "test accuracy [%]": 100 * sub["test_acc"],
                "regularizer": sub["regularizer"].map(labels),
                "training samples": sub["n_train"].astype(str),
            }
        )
        sns.lineplot(
            data=data, x="depth", y="test accuracy [%]", hue="training samples",
            style="regularizer", dashes=dashes, style_order=list(labels.values()),
            hue_order=sorted(data["training samples"].unique(), key=int), markers=True,
            errorbar=t_errorbar,
            err_style="bars", err_kws={"capsize": 3}, ax=ax,
        )
        ax.set_xlabel("number of layers L")
        ax.set_xticks(sorted(sub["depth"].unique()))
        ax.legend(fontsize=8)
    fig.suptitle("Fig. 3: Jacobian regularization (solid) vs weight decay (dashed); "
                 "mean and 95 % interval over seeds", fontsize=11)
    fig.tight_layout()
    stamp(fig, "; ".join([*(["not drawn: " + "; ".join(absent)] if absent else []),
                          *([provenance] if provenance else [])]) or None)
    return fig


def fig4(runs: pd.DataFrame, provenance: str | None = None) -> Figure:
    """Fig. 4 (a)-(d) against the width ``M`` (in units of the input dimension), one line per
    depth L, mean and 95 % interval over seeds: test accuracy, the smallest training score
    (unit-norm scale; right axis: the printed √2 scale the paper plots, 2x), max ``||J(x)||_2``
    on the training and on the test set."""
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
        if data.empty:
            ax.text(0.5, 0.5, "no finished runs", ha="center", transform=ax.transAxes)
            continue
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


def bounds_vs_depth(runs: pd.DataFrame, provenance: str | None = None) -> Figure:
    """Sec. VI-A2 discussion: (a) products of layer norms, (b) margin bounds beside the measured
    margin (medians over correctly classified training samples), against depth, per width; mean
    over seeds."""
    fig, (ax_n, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    if runs.empty:
        stamp(fig, provenance)
        return fig
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
