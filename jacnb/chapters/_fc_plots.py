"""Figures of the fully connected chapter (Sokolic et al. 2017, Figs. 3 and 4).

Every function takes tidy summaries from :mod:`jacnb.chapters.fully_connected` (means with ``*_std``
columns over seeds) and a provenance line (profile, dataset, sizes, seeds) that is printed under
the figure, as in :mod:`jacnb.lab.plotting`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from jacnb.chapters.fully_connected import REGULARIZERS, Panel
from jacnb.lab.plotting import show, stamp  # noqa: F401 - show: for the notebooks

_STYLE = {"jacobian": "-", "weight_decay": "--"}


def _errorbar(ax: Axes, sel: pd.DataFrame, x: str, y: str, scale: float = 1.0, **kw) -> None:
    err = sel.get(f"{y}_std")
    err = None if err is None or err.isna().all() else err.fillna(0) * scale
    ax.errorbar(sel[x], sel[y] * scale, yerr=err, capsize=3, marker="o", ms=4, **kw)


def fig3(summary: pd.DataFrame, panels: Sequence[Panel], provenance: str | None = None) -> Figure:
    """Fig. 3: test accuracy vs number of layers; colour = training-set size, JR solid, weight
    decay dashed, mean +- sd over seeds; one panel per dataset (or a "not run" note)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel, letter in zip(axes[0], panels, "abcdef", strict=False):
        ax.set_title(f"({letter}) {panel.label}", fontsize=10)
        if panel.dataset is None:
            ax.text(
                0.5,
                0.5,
                panel.note,
                ha="center",
                va="center",
                wrap=True,
                transform=ax.transAxes,
                fontsize=9,
            )
            ax.set_axis_off()
            continue
        sub = summary[summary["dataset"] == panel.dataset]
        for i, n in enumerate(sorted(sub["n_train"].unique())):
            for reg, label in REGULARIZERS.items():
                sel = sub[(sub["n_train"] == n) & (sub["regularizer"] == reg)].sort_values("depth")
                # a small horizontal offset keeps coinciding error bars apart
                sel = sel.assign(depth=sel["depth"] + (0.03 if reg == "weight_decay" else -0.03))
                _errorbar(
                    ax,
                    sel,
                    "depth",
                    "test_acc",
                    100,
                    color=colors[i % len(colors)],
                    ls=_STYLE[reg],
                    label=f"{label}, m={n}",
                )
        ax.set(xlabel="number of layers L", ylabel="test accuracy [%]")
        ax.set_xticks(sorted(sub["depth"].unique()))
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 3: Jacobian regularization (solid) vs weight decay (dashed)")
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def fig4(summary: pd.DataFrame, provenance: str | None = None) -> Figure:
    """Fig. 4 (a)-(d) against the width ``M`` (in units of the input dimension), one line per
    depth L: test accuracy, smallest training score (unit-norm scale; right axis: the printed
    sqrt(2) scale the paper plots, 2x), max ``||J(x)||_2`` on the training and on the test set."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    panels = [
        ("test_acc", 100, "(a) test accuracy [%]"),
        ("min_score", 1, "(b) smallest training score $o(s_i)$ (unit scale)"),
        ("max_J_train", 1, "(c) max $\\|J(x)\\|_2$, training set"),
        ("max_J_test", 1, "(d) max $\\|J(x)\\|_2$, test set"),
    ]
    for ax, (col, scale, title) in zip(axes, panels, strict=True):
        for depth, sel in summary.groupby("depth"):
            _errorbar(
                ax, sel.sort_values("width_factor"), "width_factor", col, scale, label=f"L={depth}"
            )
        ax.set(title=title, xlabel="width $M_l$ / input dimension")
        ax.title.set_fontsize(10)
        ax.set_xticks(sorted(summary["width_factor"].unique()))
    axes[0].legend(fontsize=8)
    sec = axes[1].secondary_yaxis("right", functions=(lambda y: 2 * y, lambda y: y / 2))
    sec.set_ylabel("printed $\\sqrt{2}$ scale (2x)", fontsize=8)
    fig.suptitle("Fig. 4: weight-normalized fully connected nets (eq. 45), no other regularization")
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def bounds_vs_depth(summary: pd.DataFrame, provenance: str | None = None) -> Figure:
    """Sec. VI-A2 discussion: (a) products of layer norms, (b) margin bounds beside the measured
    margin (medians over correctly classified training samples), against depth, per width."""
    fig, (ax_n, ax_m) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (k, sel) in enumerate(summary.groupby("width_factor")):
        sel = sel.sort_values("depth")
        c = colors[i % len(colors)]
        ax_n.plot(
            sel["depth"], sel["prod_spectral"], "o-", color=c, label=f"$\\prod\\|W_l\\|_2$, M={k}x"
        )
        ax_n.plot(
            sel["depth"],
            sel["prod_frobenius"],
            "s--",
            color=c,
            label=f"$\\prod\\|W_l\\|_F$, M={k}x",
        )
        for col, marker, ls, name in (
            ("measured_margin_median", "x", "-", "measured"),
            ("gamma_localJ_median", "o", "-", "$o/\\|J(x_i)\\|_2$ (eq. 34 proxy)"),
            ("gamma_supJ_median", "^", ":", "$o/\\max\\|J\\|_2$ (eq. 35 est.)"),
            ("gamma3_median", "s", "-.", "$\\gamma_3$ (eq. 36)"),
            ("gamma4_median", "d", "--", "$\\gamma_4$ (eq. 37)"),
        ):
            ax_m.plot(
                sel["depth"], sel[col], marker=marker, ls=ls, color=c, label=f"{name}, M={k}x"
            )
    ax_n.set(
        yscale="log",
        xlabel="number of layers L",
        ylabel="product of layer norms",
        title="(a) products of layer norms",
    )
    ax_m.set(
        yscale="log",
        xlabel="number of layers L",
        ylabel="median over training samples",
        title="(b) margin bounds and measured margin",
    )
    ax_n.legend(fontsize=7)
    ax_m.legend(fontsize=6, ncol=2)
    for ax in (ax_n, ax_m):
        ax.set_xticks(sorted(summary["depth"].unique()))
    fig.tight_layout()
    stamp(fig, provenance)
    return fig
