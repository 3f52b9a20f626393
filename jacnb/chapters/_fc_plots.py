"""Figures of the fully connected chapter (Sokolic et al. 2017, Fig. 3), with seaborn.

Takes a tidy runs frame (one row per finished run; the chapter leaves diverged runs out) and
draws the mean over seeds with its 95 % Student-t interval
(:func:`jacnb.lab.plotting.t_errorbar`, the interval the verdicts use), in the book's
style (:mod:`jacnb.lab.plotting`); the provenance line goes under the figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from jacnb.lab.datasets import Panel
from jacnb.lab.plotting import show, stamp, t_errorbar  # noqa: F401 - show: for the notebooks


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
