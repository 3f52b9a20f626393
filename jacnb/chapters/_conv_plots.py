"""Figures of the convolutional chapter (Sokolic et al. 2017, Sec. VI-B: Tables II and III),
drawn with seaborn in the book's style (:mod:`jacnb.lab.plotting`): means over seeds with their
95 % confidence intervals."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from jacnb.lab import plotting


def accuracy_figure(
    ok: pd.DataFrame, regularizers: Mapping[str, str], title: str, provenance: str
) -> Figure:
    """A table as a figure: test accuracy [%] against the training-set size, one line per
    regularizer (named by ``regularizers``: arm -> the paper's label), one panel per test set
    (``column``), mean and 95 % CI over seeds. ``ok``: the finished rows of
    :meth:`jacnb.chapters.convolutional.ConvolutionalResult.runs`."""
    ok = ok.copy()
    ok["test accuracy [%]"] = 100 * ok["test_acc"]
    ok["regularizer"] = ok["arm"].map(regularizers)
    ok["training samples"] = ok["n_train"]
    cols = list(dict.fromkeys(ok["column"]))
    height = 4.0
    g = sns.catplot(
        data=ok,
        x="training samples",
        y="test accuracy [%]",
        hue="regularizer",
        hue_order=list(regularizers.values()),
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
    g.figure.suptitle(title, y=1.03)
    plotting.stamp(g.figure, textwrap.fill(provenance, 130))
    return g.figure


def selection_figure(sel: pd.DataFrame, regularizers: Mapping[str, str], title: str) -> Figure:
    """The factor choice: mean validation accuracy [%] against lambda (log scale) per
    regularizer, one panel per dataset, 95 % CI over the selection seeds (a diverged selection
    run at 0). ``sel``: :meth:`jacnb.chapters.convolutional.ConvolutionalResult.selection`."""
    sel = sel.copy()
    sel["validation accuracy [%]"] = 100 * sel["val_acc"].fillna(0.0)
    sel["regularizer"] = sel["regularizer"].map(regularizers)
    g = sns.relplot(
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
    g.set(xscale="log", xlabel="λ")
    g.figure.suptitle(title, y=1.04)
    return g.figure
