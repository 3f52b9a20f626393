"""Figures of the low-rank Jacobian chapter (Oymak et al. 2019, Figs. 3-7, and the bridge).

Every function takes tidy data from :mod:`jacnb.chapters.low_rank_jacobian` and an optional
provenance line (profile, dataset, sizes, seeds) that goes under the figure. Statistical
figures are seaborn line plots: the mean with its 95 % confidence interval over seeds (mixture
draws for Fig. 3). The book's style comes from :mod:`jacnb.lab.plotting`."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from jacnb.lab.plotting import show, stamp


def synthetic_spectrum(
    df: pd.DataFrame, clusters: int, classes: int, provenance: str | None = None, top: int = 0
) -> Figure:
    """Fig. 3: singular values of ``𝒥(W₀)`` (left) and of ``sqrt(KC/n)·𝒥(W₀)`` (right) per ``n``,
    mean with 95 % CI over the mixture draws (``seed``); dotted lines at ``KC`` (clusters) and
    dashed at ``KC·C`` (clusters x outputs)."""
    top = top or 3 * clusters * classes * classes // 2
    d = df[df["index"] <= top].assign(n=lambda f: "n = " + f["n"].astype(str))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, col, title in zip(
        axes,
        ("sv", "sv_normalized"),
        ("$\\lambda_s(\\mathcal{J}(W_0))$", "$\\lambda_s(\\sqrt{KC/n}\\,\\mathcal{J}(W_0))$"),
        strict=True,
    ):
        sns.lineplot(
            d, x="index", y=col, hue="n", marker="o", markersize=3, errorbar=("ci", 95), ax=ax
        )
        ax.axvline(clusters * classes, color="0.5", ls=":", lw=1)
        ax.axvline(clusters * classes * classes, color="0.5", ls="--", lw=1)
        ax.set(title=title, xlabel="index s", ylabel="singular value")
        ax.legend(fontsize=8)
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def spectrum_histogram(
    spectra: Mapping[str, list[float]], rank: int, provenance: str | None = None
) -> Figure:
    """Fig. 4: histogram of the top singular values (left) and the sorted values (right, log),
    one series per Jacobian (e.g. initial / final); the information-space cutoff marked."""
    fig, (ax_h, ax_s) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, s in spectra.items():
        s = np.asarray(s)
        ax_h.hist(s, bins=40, alpha=0.5, label=f"{name} ({len(s)} largest)")
        ax_s.semilogy(np.arange(1, len(s) + 1), s, label=name)
    ax_s.axvline(rank, color="0.4", ls="--", lw=1, label=f"cutoff r = {rank}")
    ax_h.set(xlabel="singular value", ylabel="count", title="top singular values")
    ax_s.set(xlabel="index s", ylabel="$\\lambda_s$", title="sorted")
    ax_h.legend(fontsize=8)
    ax_s.legend(fontsize=8)
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def dynamics(df: pd.DataFrame, provenance: str | None = None) -> Figure:
    """Figs. 5/6 from :func:`jacnb.chapters.low_rank_jacobian.dynamics_long`: one row per
    corruption level; residual energy on 𝓘 and 𝓝 on train data, on test data (fractions of the
    initial residual energy; spaces of the final Jacobian of that data), and train / test error
    over epochs; mean with 95 % CI over seeds."""
    levels = sorted(df["corruption"].unique())
    fig, axes = plt.subplots(len(levels), 3, figsize=(13, 3.4 * len(levels)), squeeze=False)
    d = df.assign(epoch=df["epoch"].clip(lower=0.5))
    for row, c in zip(axes, levels, strict=True):
        sub = d[d["corruption"] == c]
        name = f"{int(100 * c)}% corrupted"
        for ax, split in zip(row[:2], ("train", "test"), strict=True):
            sns.lineplot(
                sub[sub["split"] == split],
                x="epoch",
                y="energy",
                hue="space",
                hue_order=["I", "N"],
                marker="o",
                markersize=3,
                errorbar=("ci", 95),
                ax=ax,
            )
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="epoch (0 drawn at 0.5)",
                ylabel="$\\|\\Pi r_t\\|^2 / \\|r_0\\|^2$",
                title=f"{name}: {split} residual",
            )
            ax.legend(fontsize=8, title="space")
        err = sub[(sub["split"] == "train") & (sub["space"] == "I")].melt(
            id_vars=["epoch", "seed"],
            value_vars=["train_error", "test_error"],
            var_name="error",
            value_name="value",
        )
        sns.lineplot(
            err,
            x="epoch",
            y="value",
            hue="error",
            marker="o",
            markersize=3,
            errorbar=("ci", 95),
            ax=row[2],
        )
        row[2].set(
            xscale="log", xlabel="epoch (0 drawn at 0.5)", ylabel="error", title=f"{name}: errors"
        )
        row[2].legend(fontsize=8)
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def corruption_sweep(df: pd.DataFrame, provenance: str | None = None) -> Figure:
    """Fig. 7 from :func:`jacnb.chapters.low_rank_jacobian.sweep_frame`: label energy on 𝓝
    (initial / final / early-stopping Jacobian) and test error (final, best) against the
    corrupted fraction; mean with 95 % CI over seeds."""
    fig, (ax_n, ax_e) = plt.subplots(1, 2, figsize=(10, 3.6))
    d = df.assign(corrupted=100 * df["corruption"])
    energy = d.melt(
        id_vars=["corrupted", "seed"],
        value_vars=[
            "label energy on N, initial J",
            "label energy on N, final J",
            "label energy on N, early-stop J",
        ],
        var_name="Jacobian",
        value_name="energy",
    )
    energy["Jacobian"] = energy["Jacobian"].str.replace("label energy on N, ", "")
    sns.lineplot(
        energy,
        x="corrupted",
        y="energy",
        hue="Jacobian",
        style="Jacobian",
        markers=True,
        errorbar=("ci", 95),
        ax=ax_n,
    )
    ax_n.set(
        xlabel="corrupted labels (%)",
        ylabel="$\\|\\Pi_\\mathcal{N} y\\|^2/\\|y\\|^2$",
        title="label energy on the nuisance space",
    )
    ax_n.legend(fontsize=8)
    errs = d.melt(
        id_vars=["corrupted", "seed"],
        value_vars=["final test error", "best test error"],
        var_name="test error",
        value_name="error",
    )
    sns.lineplot(
        errs,
        x="corrupted",
        y="error",
        hue="test error",
        style="test error",
        markers=True,
        errorbar=("ci", 95),
        ax=ax_e,
    )
    ax_e.set(xlabel="corrupted labels (%)", ylabel="error", title="test error")
    ax_e.legend(fontsize=8)
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def bridge(
    spectra: Mapping[str, list[float]],
    frames: Mapping[str, pd.DataFrame],
    rank: int,
    provenance: str | None = None,
) -> Figure:
    """The bridge: final spectra with / without the input-Jacobian regularizer (left) and the
    test error over training of each run (right)."""
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, s in spectra.items():
        ax_s.semilogy(np.arange(1, len(s) + 1), s, label=name)
    ax_s.axvline(rank, color="0.4", ls="--", lw=1)
    ax_s.set(xlabel="index s", ylabel="$\\lambda_s$ (final $\\mathcal{J}$)", title="spectrum")
    ax_s.legend(fontsize=8)
    for name, df in frames.items():
        ax_e.plot(df["epoch"].clip(lower=0.5), df["test_error"], "o-", ms=3, label=name)
    ax_e.set(
        xscale="log",
        xlabel="epoch (0 drawn at 0.5)",
        ylabel="test error",
        title="test error over training",
    )
    ax_e.legend(fontsize=8)
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


__all__: list[str] = [
    "bridge",
    "corruption_sweep",
    "show",
    "dynamics",
    "spectrum_histogram",
    "synthetic_spectrum",
]
