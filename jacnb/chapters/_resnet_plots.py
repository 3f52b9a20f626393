"""Figures of the ResNet chapter (Sokolic et al. 2017, Sec. VI-C, Fig. 5)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

COLOURS = {"per_layer": "tab:blue", "none": "tab:red"}
NAMES = {"per_layer": "Jac. reg.", "none": "baseline"}


def fig5(curves: Mapping[tuple[str, str], Mapping[str, list[float]]], title: str = "") -> Figure:
    """Fig. 5: top-1 (a, c) and top-5 (b, d) accuracy during training; (a, b) without and
    (c, d) with augmentation. Training set dashed, test set solid; per-layer Jacobian
    regularization (eq. 52) blue, baseline red. ``curves[(augment, regularizer)]`` holds the
    per-epoch lists of :func:`jacnb.core.distributed.fit`."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    panels = [
        ("none", 1, "(a)"),
        ("none", 5, "(b)"),
        ("crop_colour", 1, "(c)"),
        ("crop_colour", 5, "(d)"),
    ]
    for ax, (aug, k, tag) in zip(axes.flat, panels, strict=True):
        for reg in ("none", "per_layer"):
            c = curves.get((aug, reg))
            if c is None:
                continue
            ep = c["epoch"]
            ax.plot(
                ep,
                [100 * v for v in c[f"train_top{k}"]],
                "--",
                color=COLOURS[reg],
                label=f"{NAMES[reg]}, train",
            )
            ax.plot(
                ep,
                [100 * v for v in c[f"test_top{k}"]],
                "-",
                color=COLOURS[reg],
                label=f"{NAMES[reg]}, test",
            )
        aug_name = "with augmentation" if aug != "none" else "without augmentation"
        ax.set_title(f"{tag} top-{k}, {aug_name}")
        ax.set_ylabel(f"top-{k} accuracy [%]")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
