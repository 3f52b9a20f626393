"""Figures of the low-rank Jacobian chapter (Oymak et al. 2019, Figs. 3-7, and the bridge).

Every function takes tidy data from :mod:`jacnb.chapters.low_rank_jacobian` and an optional
provenance line (profile, dataset, sizes, seeds) that goes under the figure."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jacnb.lab.plotting import show, stamp  # noqa: F401 - show: for the notebooks


def synthetic_spectrum(
    df: pd.DataFrame, clusters: int, classes: int, provenance: str | None = None, top: int = 0
) -> Figure:
    """Fig. 3: singular values of ``𝒥(W₀)`` (left) and of ``sqrt(KC/n)·𝒥(W₀)`` (right) per ``n``;
    dotted lines at ``KC`` (clusters) and ``KC·C`` (clusters x outputs)."""
    top = top or 3 * clusters * classes * classes // 2
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for n, g in df.groupby("n"):
        g = g[g["index"] <= top]
        axes[0].plot(g["index"], g["sv"], "o-", ms=3, label=f"n = {n}")
        axes[1].plot(g["index"], g["sv_normalized"], "o-", ms=3, label=f"n = {n}")
    for ax, title in zip(
        axes,
        ("$\\lambda_s(\\mathcal{J}(W_0))$", "$\\lambda_s(\\sqrt{KC/n}\\,\\mathcal{J}(W_0))$"),
        strict=True,
    ):
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


def dynamics(
    frames: Mapping[str, pd.DataFrame], which: str = "final", provenance: str | None = None
) -> Figure:
    """Figs. 5/6: one row per run (e.g. clean / corrupted): residual energy on 𝓘 and 𝓝 on
    train data, on test data (fractions of the initial residual energy; spaces of the
    ``which`` Jacobian of that data), and train / test error over epochs."""
    fig, axes = plt.subplots(len(frames), 3, figsize=(13, 3.4 * len(frames)), squeeze=False)
    for row, (name, df) in zip(axes, frames.items(), strict=True):
        ep = df["epoch"].clip(lower=0.5)
        for ax, split in zip(row[:2], ("train", "test"), strict=True):
            ax.plot(ep, df[f"{split}_info_{which}"], "o-", ms=3, label="on $\\mathcal{I}$")
            ax.plot(ep, df[f"{split}_nuis_{which}"], "s-", ms=3, label="on $\\mathcal{N}$")
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="epoch (0 drawn at 0.5)",
                ylabel="$\\|\\Pi r_t\\|^2 / \\|r_0\\|^2$",
                title=f"{name}: {split} residual",
            )
            ax.legend(fontsize=8)
        row[2].plot(ep, df["train_error"], "o-", ms=3, label="train error (training labels)")
        row[2].plot(ep, df["test_error"], "s-", ms=3, label="test error")
        best = df.loc[df["test_error"].idxmin()]
        row[2].axvline(
            max(best["epoch"], 0.5),
            color="0.5",
            ls=":",
            lw=1,
            label=f"best test error, epoch {int(best['epoch'])}",
        )
        row[2].set(
            xscale="log", xlabel="epoch (0 drawn at 0.5)", ylabel="error", title=f"{name}: errors"
        )
        row[2].legend(fontsize=8)
    fig.tight_layout()
    stamp(fig, provenance)
    return fig


def corruption_sweep(df: pd.DataFrame, provenance: str | None = None) -> Figure:
    """Fig. 7: label energy on 𝓝 (initial / final / early-stopping Jacobian) and test error
    (final, best) against the corrupted fraction."""
    fig, (ax_n, ax_e) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = 100 * df["corruption"]
    for col, mk in (
        ("label energy on N, initial J", "o-"),
        ("label energy on N, final J", "s-"),
        ("label energy on N, early-stop J", "^--"),
    ):
        ax_n.plot(x, df[col], mk, ms=4, label=col.replace("label energy on N, ", ""))
    ax_n.set(
        xlabel="corrupted labels (%)",
        ylabel="$\\|\\Pi_\\mathcal{N} y\\|^2/\\|y\\|^2$",
        title="label energy on the nuisance space",
    )
    ax_n.legend(fontsize=8)
    ax_e.plot(x, df["final test error"], "o-", ms=4, label="test error, end of training")
    ax_e.plot(x, df["best test error"], "s--", ms=4, label="best test error (early stop)")
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
