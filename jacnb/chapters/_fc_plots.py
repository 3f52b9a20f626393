"""Figures of the fully connected chapter (Sokolic et al. 2017, Fig. 3), with seaborn.

Fig. 3 has two kinds of panel per dataset that ran. The first draws what the paper plots: test
accuracy against depth, each arm's mean over its finished seeds with that arm's own 95 %
Student-t interval (:func:`jacnb.lab.plotting.t_errorbar`) -- a description, not the test. The
second draws what decided: the claim's paired statistic per cell exactly as
:func:`jacnb.lab.gates.cell_table` computes it for the verdict (per seed JR − weight decay, its
mean and t-interval over seeds, diverged runs counted as the claim registers), against the
threshold, coloured by the cell's outcome (:func:`jacnb.lab.plotting.cell_panel`). A dataset that
did not run is named in the caption, never drawn; the provenance line goes under the figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from jacnb.lab import gates
from jacnb.lab.claims import EQUIVALENT
from jacnb.lab.datasets import Panel
from jacnb.lab.plotting import (  # noqa: F401 - show: for the notebooks
    cell_panel,
    note_figure,
    outcome_handles,
    show,
    stamp,
    t_errorbar,
)
from jacnb.lab.records import split_ok

#: How the cells of Fig. 3's claims are named under the paired panels.
KEY_FORMAT = {"depth": "L={}", "n_train": "n={}"}
#: The paired panel's title per pair of arms (baseline, treatment) of a claim's statistic.
ARM_TITLES = {
    ("weight_decay", "jacobian"): "JR − WD, same L and n",
    ("wd_more_data", "jr_less_data"): "JR, less data\n− WD, more data",
}


def _accuracy_panel(ax: plt.Axes, ok: pd.DataFrame, labels: Mapping[str, str]) -> None:
    dashes = dict(zip(labels.values(), ["", (4, 2)], strict=True))
    data = ok.assign(
        **{
            "test accuracy [%]": 100 * ok["test_acc"],
            "regularizer": ok["regularizer"].map(labels),
            "training samples": ok["n_train"].astype(str),
        }
    )
    sns.lineplot(
        data=data, x="depth", y="test accuracy [%]", hue="training samples",
        style="regularizer", dashes=dashes, style_order=list(labels.values()),
        hue_order=sorted(data["training samples"].unique(), key=int), markers=True,
        errorbar=t_errorbar, err_style="bars", err_kws={"capsize": 3}, ax=ax,
    )
    ax.set_xlabel("number of layers L")
    ax.set_xticks(sorted(ok["depth"].unique()))
    ax.legend(fontsize=8, ncol=2)


def fig3(
    runs: pd.DataFrame,
    panels: Sequence[Panel],
    labels: Mapping[str, str],
    provenance: str | None = None,
    deciding: Mapping[str, Sequence[tuple[str, pd.DataFrame]]] | None = None,
) -> Figure:
    """Fig. 3, one pair of rows per dataset that ran.

    ``runs``: the tidy final runs (every status; :func:`jacnb.chapters.fully_connected.fig3_runs`).
    The first row draws test accuracy against the number of layers of the finished runs; colour =
    training-set size, solid = JR, dashed = weight decay (``labels``: legend label per regularizer,
    JR first); each arm's mean and 95 % interval over its seeds. The second row draws, for each
    ``(claim id, the runs it is judged on)`` of ``deciding[dataset]``, the claim's per-cell paired
    statistic from :func:`jacnb.lab.gates.cell_table` (:func:`jacnb.lab.plotting.cell_panel`;
    a claim without a cell at this profile is named in the caption). Panels whose dataset did
    not run, or has no finished run, are named in the caption, not drawn."""
    deciding = deciding or {}
    ok = split_ok(runs)[0] if len(runs) else runs

    def ok_of(panel: Panel) -> pd.DataFrame:
        if not panel.dataset or ok.empty:
            return ok.iloc[0:0]
        return ok[ok["dataset"] == panel.dataset]

    drawn = [p for p in panels if not ok_of(p).empty]
    notes = [
        f"{p.label.split(':')[0]} not drawn: {p.note if p.dataset is None else 'no finished runs'}"
        for p in panels
        if p not in drawn
    ]
    if not drawn:
        fig = note_figure("Fig. 3: no finished runs. " + "; ".join(notes))
        stamp(fig, provenance)
        return fig
    tables: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for p in drawn:
        for cid, claim_runs in deciding.get(str(p.dataset), ()):
            cells = gates.cell_table(cid, claim_runs) if len(claim_runs) else pd.DataFrame()
            if cells.empty:
                notes.append(f"{cid} not drawn: no cell at this profile")
            else:
                tables.setdefault(str(p.dataset), []).append((cid, cells))
    n_rows = sum(2 if tables.get(str(p.dataset)) else 1 for p in drawn)
    ratios = [r for p in drawn for r in ([1.1, 1.0] if tables.get(str(p.dataset)) else [1.1])]
    fig = plt.figure(figsize=(8.0, 3.6 * n_rows + 0.6), layout="constrained")
    grid = fig.add_gridspec(n_rows, 1, height_ratios=ratios)
    letters = iter("abcdefghij")
    row = 0
    for p in drawn:
        ax = fig.add_subplot(grid[row])
        ax.set_title(f"({next(letters)}) {p.label}: test accuracy, each arm's mean and "
                     "95 % interval", fontsize=10)
        _accuracy_panel(ax, ok_of(p), labels)
        row += 1
        claims = tables.get(str(p.dataset), [])
        if not claims:
            continue
        margin = any(gates.registered(c).rule.side == EQUIVALENT for c, _ in claims)
        widths = [max(len(c), 3.5) for _, c in claims]  # room for a claim id as title
        inner = grid[row].subgridspec(1, len(claims), width_ratios=widths)
        for j, (cid, cells) in enumerate(claims):
            ax = fig.add_subplot(inner[j])
            claim = gates.registered(cid)
            cell_panel(ax, claim, cells, key_format=KEY_FORMAT, headroom=0.3 if j == 0 else 0.0,
                       ylabel="paired difference [pts]" if j == 0 else "")
            what = ARM_TITLES.get(tuple(claim.statistic.arms), claim.statistic.description)
            ax.set_title(f"({next(letters)}) {what}\n{cid}", fontsize=9)
            if j == 0:
                ax.legend(handles=outcome_handles(margin), fontsize=8, loc="upper center",
                          ncol=3, frameon=False)
        row += 1
    fig.suptitle("Fig. 3: Jacobian regularization (solid) vs weight decay (dashed);\n"
                 "below: the paired per-seed difference that decides each verdict", fontsize=11)
    stamp(fig, "; ".join([*notes, *([provenance] if provenance else [])]) or None)
    return fig
