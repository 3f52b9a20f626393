"""Figures of the ResNet chapter (Sokolic et al. 2017, Sec. VI-C: Table IV, Fig. 5), drawn with
seaborn in the book's style (:mod:`jacnb.lab.plotting`): means over seeds with their 95 %
confidence intervals."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from jacnb.lab import plotting

#: the paper's colours: Jacobian regularization blue, baseline red
PALETTE = {"Jac. reg.": "tab:blue", "baseline": "tab:red"}
NAMES = {"per_layer": "Jac. reg.", "none": "baseline"}


def table4_figure(runs: pd.DataFrame, provenance: str = "") -> Figure:
    """Table IV as a figure: test accuracy [%] per row (training-set size, "+ aug." with
    augmentation), baseline and per-layer JR, mean and 95 % CI over seeds. ``runs``: the ``ok``
    rows of :meth:`jacnb.chapters.resnet.ResnetResult.runs`."""
    df = runs.copy()
    df["row"] = [
        f"{n}" + (" + aug." if a else "")
        for n, a in zip(df["n_train"], df["augmentation"], strict=True)
    ]
    df["test accuracy [%]"] = 100 * df["test_acc"]
    df["regularizer"] = df["regularizer"].map(NAMES)
    order = list(dict.fromkeys(df.sort_values(["augmentation", "n_train"])["row"]))
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    sns.pointplot(
        data=df,
        x="row",
        y="test accuracy [%]",
        hue="regularizer",
        order=order,
        hue_order=["baseline", "Jac. reg."],
        palette=PALETTE,
        errorbar=("ci", 95),
        dodge=0.2,
        capsize=0.08,
        ax=ax,
    )
    ax.set(xlabel="training samples", title="Table IV: mean and 95 % CI over seeds")
    fig.tight_layout()
    plotting.stamp(fig, textwrap.fill(provenance, 130))
    return fig


def fig5(curves: pd.DataFrame, provenance: str = "") -> Figure:
    """Fig. 5: top-1 (a, c) and top-5 (b, d) accuracy during training; (a, b) without and
    (c, d) with augmentation. Training set dashed, test set solid; per-layer Jacobian
    regularization (eq. 52) blue, baseline red; mean and 95 % CI over seeds. ``curves``: the
    long frame of :meth:`jacnb.chapters.resnet.ResnetResult.curves`."""
    df = curves.copy()
    df["accuracy [%]"] = 100 * df["accuracy"]
    df["regularizer"] = df["regularizer"].map(NAMES)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    panels = [
        ("none", 1, "(a)"),
        ("none", 5, "(b)"),
        ("crop_colour", 1, "(c)"),
        ("crop_colour", 5, "(d)"),
    ]
    for i, (ax, (aug, k, tag)) in enumerate(zip(axes.flat, panels, strict=True)):
        sel = df[(df["augment"] == aug) & (df["k"] == k)]
        if len(sel):
            sns.lineplot(
                data=sel,
                x="epoch",
                y="accuracy [%]",
                hue="regularizer",
                style="split",
                hue_order=["baseline", "Jac. reg."],
                style_order=["test", "train"],
                palette=PALETTE,
                errorbar=("ci", 95),
                ax=ax,
                legend=i == 0,
            )
        aug_name = "with augmentation" if aug != "none" else "without augmentation"
        ax.set_title(f"{tag} top-{k}, {aug_name}")
        ax.set_ylabel(f"top-{k} accuracy [%]")
    if axes[0, 0].get_legend() is not None:
        axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    plotting.stamp(fig, textwrap.fill(provenance, 130))
    return fig
