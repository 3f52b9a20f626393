"""Cells of the paper-vs-ours tables (notebooks ``04_convolutional`` and ``05_resnet``: Tables
II-V of Sokolić et al. 2017 print accuracies in percent beside ours)."""

from __future__ import annotations

import pandas as pd

__all__ = ["percent_mean_sd"]


def percent_mean_sd(values: pd.Series) -> str:
    """Fractions in [0, 1] as ``"mean ± sd (n=k)"`` in percent (sd over seeds, ddof 1; no sd
    for one value); ``"n/a"`` when there is none."""
    v = 100 * values.dropna().astype(float)
    if v.empty:
        return "n/a"
    sd = f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else ""
    return f"{v.mean():.2f}{sd} (n={len(v)})"
