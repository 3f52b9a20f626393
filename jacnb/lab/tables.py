"""Cells of the paper-vs-ours tables (notebooks ``04_convolutional`` and ``05_resnet``: Tables
II-V of Sokolić et al. 2017 print accuracies in percent beside ours)."""

from __future__ import annotations

import pandas as pd

__all__ = ["factor_list", "percent_mean_sd"]


def percent_mean_sd(values: pd.Series) -> str:
    """Fractions in [0, 1] as ``"mean ± sd (n=k)"`` in percent (sd over seeds, ddof 1; no sd
    for one value); ``"n/a"`` when there is none."""
    v = 100 * values.dropna().astype(float)
    if v.empty:
        return "n/a"
    sd = f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else ""
    return f"{v.mean():.2f}{sd} (n={len(v)})"


def factor_list(values: list[float]) -> str:
    """Factors as ``"1, 10, 100"`` (``"–"`` for none): the *below fit (competed)* cells of the
    factor-choice tables of notebooks ``02_fully_connected`` and ``04_convolutional``."""
    return ", ".join(f"{v:g}" for v in values) or "–"
